//! Unit tests of the v1 parts: magnet links and their percent-encoding.
use super::*;

fn torrent(name: &str, trackers: Vec<Vec<&str>>) -> Torrent {
    Torrent {
        info_hash: InfoHash([0xab; 20]),
        name: name.to_string(),
        piece_length: 16384,
        piece_hashes: vec![[0; 20]; 2],
        files: Vec::new(),
        single_file: true,
        total_length: 20_000,
        private: false,
        source: None,
        announce: None,
        trackers: trackers
            .into_iter()
            .map(|t| t.into_iter().map(String::from).collect())
            .collect(),
        comment: None,
        created_by: None,
        creation_date: None,
        info_bytes: Vec::new(),
        v2: None,
    }
}

#[test]
fn magnet_carries_hash_name_length_and_every_tier() {
    let t = torrent(
        "a b&c=d+é~x.y-z_",
        vec![
            vec!["http://t.example/announce?passkey=1&x=2", "udp://u:80"],
            vec!["http://second/announce"],
            vec!["udp://u:80"],
        ],
    );
    assert_eq!(
        t.magnet(),
        format!(
            "magnet:?xt=urn:btih:{}&dn=a%20b%26c%3Dd%2B%C3%A9~x.y-z_&xl=20000\
             &tr=http%3A%2F%2Ft.example%2Fannounce%3Fpasskey%3D1%26x%3D2\
             &tr=udp%3A%2F%2Fu%3A80&tr=http%3A%2F%2Fsecond%2Fannounce",
            "ab".repeat(20)
        )
    );
}

#[test]
fn magnet_without_trackers_has_no_tr() {
    let m = torrent("n", Vec::new()).magnet();
    assert_eq!(
        m,
        format!("magnet:?xt=urn:btih:{}&dn=n&xl=20000", "ab".repeat(20))
    );
}

#[test]
fn percent_encoding_keeps_only_unreserved_characters() {
    let all: String = (1u8..128).map(char::from).collect();
    let enc = pct(&all);
    let kept: String = enc.split('%').map(|p| p.get(2..).unwrap_or("")).collect();
    assert!(kept
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)));
    assert_eq!(kept.len(), 26 * 2 + 10 + 4);
    assert_eq!(pct("\u{7f}/%"), "%7F%2F%25");
}
