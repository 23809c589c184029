//! Unit tests of `tracker::scrape` (URL derivation, reply parsing, the schedule) and of the
//! UDP scrape codec in `tracker::udp`: no sockets, time passed in.

use super::*;
use crate::tracker::udp;

fn ih(n: u8) -> InfoHash {
    InfoHash([n; 20])
}

/// A bencoded byte string.
fn bstr(b: &[u8]) -> Vec<u8> {
    let mut v = format!("{}:", b.len()).into_bytes();
    v.extend_from_slice(b);
    v
}

/// `d5:filesd<entries>e<rest>e`, entries as (key, bencoded value).
fn reply(entries: &[(Vec<u8>, &str)], rest: &str) -> Vec<u8> {
    let mut v = b"d5:filesd".to_vec();
    for (k, val) in entries {
        v.extend(bstr(k));
        v.extend_from_slice(val.as_bytes());
    }
    v.push(b'e');
    v.extend_from_slice(rest.as_bytes());
    v.push(b'e');
    v
}

const COUNTS: &str = "d8:completei5e10:downloadedi50e10:incompletei3ee";

fn counts(s: u32, l: u32, c: u32) -> ScrapeCounts {
    ScrapeCounts {
        seeders: Some(s),
        leechers: Some(l),
        completed: Some(c),
    }
}

#[test]
fn scrape_urls_replace_a_last_component_starting_with_announce() {
    let cases = [
        ("http://t/announce?pk=x", Some("http://t/scrape?pk=x")),
        ("http://t/x/announce.php", Some("http://t/x/scrape.php")),
        ("https://t:8443/announce", Some("https://t:8443/scrape")),
        (
            "http://t/a1b2/announce?passkey=k&x=/announce",
            Some("http://t/a1b2/scrape?passkey=k&x=/announce"),
        ),
        ("http://t/announce#f", Some("http://t/scrape#f")),
        ("http://t/announce_v2", Some("http://t/scrape_v2")),
        // No component starting with `announce`: no HTTP scrape.
        ("http://t/a", None),
        ("http://t/announce/", None),
        ("http://t/announce/x", None),
        ("http://t/x.announce", None),
        ("http://t/", None),
        ("http://t", None),
        ("http://t?x=/announce", None),
        ("http://t#/announce", None),
        ("udp://t:1/announce", None),
        ("wss://t/announce", None),
        ("", None),
    ];
    for (url, want) in cases {
        assert_eq!(scrape_url(url).as_deref(), want, "{url}");
    }
    // UDP trackers are scraped over BEP 15 whatever their path; other schemes never.
    assert_eq!(batch_size("udp://t:1"), Some(MAX_UDP_BATCH));
    assert_eq!(batch_size("http://t/announce"), Some(MAX_HTTP_BATCH));
    assert_eq!(batch_size("http://t/a"), None);
    assert_eq!(batch_size("wss://t/announce"), None);
}

#[test]
fn request_urls_carry_one_info_hash_per_torrent() {
    let two = [InfoHash(*b"\x00\x01 &?=%/abcdefghijkl"), ih(0xff)];
    assert_eq!(
        request_url("http://t/scrape", &two),
        format!(
            "http://t/scrape?info_hash=%00%01%20%26%3F%3D%25%2Fabcdefghijkl&info_hash={}",
            "%FF".repeat(20)
        )
    );
    assert_eq!(
        request_url("http://t/scrape?pk=x", &two[1..]),
        format!("http://t/scrape?pk=x&info_hash={}", "%FF".repeat(20))
    );
}

#[test]
fn good_replies_give_the_counts_of_the_torrents_asked_about() {
    let body = reply(
        &[
            (ih(1).0.to_vec(), COUNTS),
            (
                ih(2).0.to_vec(),
                "d8:completei0e10:downloadedi7e10:incompletei1e4:name3:abc5:extrai1ee",
            ),
            // Not asked about: ignored.
            (ih(3).0.to_vec(), COUNTS),
        ],
        "5:flagsd20:min_request_intervali900e5:otheri1ee7:unknown0:",
    );
    let r = parse_reply(&body, &[ih(1), ih(2), ih(4)]).unwrap();
    assert_eq!(
        r.files,
        vec![(ih(1), counts(5, 3, 50)), (ih(2), counts(0, 1, 7))]
    );
    assert_eq!(r.min_request_interval, Some(Duration::from_secs(900)));
    assert_eq!(r.skipped, 1);
    // An empty `files`: the tracker knows none of them.
    let r = parse_reply(b"d5:filesdee", &[ih(1)]).unwrap();
    assert_eq!(
        (r.files.len(), r.skipped, r.min_request_interval),
        (0, 0, None)
    );
    // Missing or out-of-range counts are unknown, not zero; an entry without any is skipped.
    let body = reply(
        &[
            (
                ih(1).0.to_vec(),
                "d8:completei-1e10:incompletei4294967296ee",
            ),
            (ih(2).0.to_vec(), "d10:downloadedi9ee"),
            (ih(3).0.to_vec(), "de"),
        ],
        "5:flagsd20:min_request_intervali-5ee",
    );
    let r = parse_reply(&body, &[ih(1), ih(2), ih(3)]).unwrap();
    assert_eq!(
        r.files,
        vec![(
            ih(2),
            ScrapeCounts {
                completed: Some(9),
                ..Default::default()
            }
        )]
    );
    assert_eq!(r.skipped, 2);
    assert_eq!(r.min_request_interval, Some(Duration::ZERO));
}

#[test]
fn wrong_length_keys_non_dictionaries_and_second_entries_are_skipped() {
    // npm bittorrent-tracker 11 writes the key's bytes as Latin-1 text in UTF-8: read back.
    let hash = InfoHash(
        *b"\xff\x00\xee\x11\xdd\x22\xcc\x33\xbb\x44\xaa\x55\x99\x66\x88\x77\xaa\x00\x80\xfe",
    );
    let latin1: String = hash.0.iter().map(|&b| char::from(b)).collect();
    assert_eq!(latin1.len(), 31);
    let body = reply(
        &[
            (b"short".to_vec(), COUNTS),
            (vec![1u8; 21], COUNTS),
            (vec![0xc3; 40], COUNTS),
            (hex(&ih(1)), COUNTS),
            (ih(1).0.to_vec(), "i5e"),
            (ih(2).0.to_vec(), "l8:completei1ee"),
            (latin1.clone().into_bytes(), COUNTS),
            // The same torrent again, as raw bytes: the first entry counts.
            (hash.0.to_vec(), "d8:completei9ee"),
        ],
        "",
    );
    let r = parse_reply(&body, &[ih(1), ih(2), hash]).unwrap();
    assert_eq!(r.files, vec![(hash, counts(5, 3, 50))]);
    assert_eq!(r.skipped, 7);
    // The same key twice is not valid bencode: the whole reply is refused.
    let body = reply(
        &[(ih(1).0.to_vec(), COUNTS), (ih(1).0.to_vec(), COUNTS)],
        "",
    );
    let e = parse_reply(&body, &[ih(1)]).unwrap_err();
    assert!(e.to_string().contains("duplicate"), "{e}");
}

fn hex(h: &InfoHash) -> Vec<u8> {
    h.to_hex().into_bytes()
}

#[test]
fn malformed_replies_are_clear_errors() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"d14:failure reason9:forbiddene",
            "tracker refused: forbidden",
        ),
        (b"", "not bencode"),
        (b"<html>404</html>", "not bencode"),
        (b"d5:filesde", "not bencode"),
        (b"le", "not a dictionary"),
        (b"d8:intervali60e5:peers0:e", "no `files` dictionary"),
        (b"d5:fileslee", "no `files` dictionary"),
        (b"d5:files3:abce", "no `files` dictionary"),
    ];
    for (body, want) in cases {
        let e = parse_reply(body, &[ih(1)]).unwrap_err();
        assert!(
            e.to_string().contains(want),
            "{:?}: {e}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(matches!(
        parse_reply(b"d14:failure reason1:xe", &[]),
        Err(TrackerError::Failure(_))
    ));
}

#[test]
fn many_entries_are_bounded() {
    let asked: Vec<InfoHash> = (0..=MAX_REPLY_ENTRIES as u32)
        .map(|i| {
            let mut h = [0u8; 20];
            h[..4].copy_from_slice(&i.to_be_bytes());
            InfoHash(h)
        })
        .collect();
    let entries = |n: usize| -> Vec<(Vec<u8>, &str)> {
        asked[..n].iter().map(|h| (h.0.to_vec(), COUNTS)).collect()
    };
    let body = reply(&entries(MAX_REPLY_ENTRIES), "");
    assert!(body.len() < crate::tracker::http::MAX_REPLY_BYTES as usize);
    let r = parse_reply(&body, &asked[..50]).unwrap();
    assert_eq!((r.files.len(), r.skipped), (50, MAX_REPLY_ENTRIES - 50));
    let e = parse_reply(&reply(&entries(MAX_REPLY_ENTRIES + 1), ""), &asked).unwrap_err();
    assert!(e.to_string().contains("more than 1000"), "{e}");
}

#[test]
fn udp_scrape_packets_encode_and_decode_in_request_order() {
    let hashes: Vec<InfoHash> = (0..80).map(ih).collect();
    let p = udp::scrape_request(0x1122_3344_5566_7788, 9, &hashes[..2]);
    assert_eq!(p.len(), 56);
    assert_eq!(&p[..8], &0x1122_3344_5566_7788u64.to_be_bytes());
    assert_eq!(&p[8..12], &2u32.to_be_bytes());
    assert_eq!(&p[12..16], &9u32.to_be_bytes());
    assert_eq!((&p[16..36], &p[36..56]), (&[0u8; 20][..], &[1u8; 20][..]));
    assert_eq!(
        udp::scrape_request(1, 1, &hashes).len(),
        16 + 20 * MAX_UDP_BATCH
    );
    let entry = |s: u32, c: u32, l: u32| {
        [s, c, l]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect::<Vec<u8>>()
    };
    let head = |action: u32, tid: u32| {
        [action, tid]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect::<Vec<u8>>()
    };
    let mut good = head(2, 9);
    good.extend(entry(5, 50, 3));
    good.extend(entry(0, 7, 1));
    assert_eq!(
        udp::parse_scrape(&good, 9, 2).unwrap(),
        Some(vec![counts(5, 3, 50), counts(0, 1, 7)])
    );
    // Fewer entries than asked: the rest are unknown; more: ignored.
    assert_eq!(udp::parse_scrape(&good, 9, 3).unwrap().unwrap().len(), 2);
    assert_eq!(udp::parse_scrape(&good, 9, 1).unwrap().unwrap().len(), 1);
    assert_eq!(udp::parse_scrape(&head(2, 9), 9, 1).unwrap(), Some(vec![]));
    // Another transaction's packet is not ours.
    assert_eq!(udp::parse_scrape(&good, 8, 2).unwrap(), None);
    // Errors: the tracker's message, a partial entry, a short packet, another action.
    let mut err = head(3, 9);
    err.extend(b"unknown torrent");
    assert_eq!(
        udp::parse_scrape(&err, 9, 2).unwrap_err(),
        TrackerError::Failure("unknown torrent".into())
    );
    for bad in [&good[..good.len() - 1], &good[..5], &head(1, 9)[..]] {
        assert!(
            matches!(
                udp::parse_scrape(bad, 9, 2),
                Err(TrackerError::Malformed(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn trackers_are_scraped_after_their_first_announce_then_regularly() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let half_hour = Duration::from_secs(1800);
    let mut s = Scrapes::new(half_hour);
    let (http, udp) = ("http://t/announce?pk=1", "udp://t:1");
    s.announced(http, ih(1), t0);
    s.announced("http://t/no-scrape-here", ih(1), t0);
    assert_eq!(s.next_due(), Some(t0 + BATCH_DELAY));
    assert!(s.due(at(1)).is_empty(), "waits for others to batch");
    // Torrents announcing within the delay go in the same scrape.
    s.announced(http, ih(2), at(1));
    s.announced(http, ih(1), at(1));
    s.announced(udp, ih(2), at(1));
    assert_eq!(s.due(at(2)), vec![http.to_string()]);
    assert_eq!(s.begin(http, at(2)), vec![ih(1), ih(2)]);
    assert_eq!(s.due(at(3)), vec![udp.to_string()], "in flight is not due");
    assert_eq!(s.next_due(), Some(at(1) + BATCH_DELAY));
    // Then every interval, or the tracker's min_request_interval when longer.
    assert_eq!(s.succeeded(http, None, at(4)), Some(half_hour));
    assert_eq!(s.next_due(), Some(at(3)));
    s.begin(udp, at(3));
    assert_eq!(s.next_due(), Some(at(4) + half_hour));
    let hour = Duration::from_secs(3600);
    assert_eq!(s.succeeded(udp, Some(hour), at(5)), Some(hour));
    assert_eq!(s.targets[udp].next, Some(at(5) + hour));
    assert_eq!(s.succeeded("udp://other:1", None, at(5)), None);
    // A torrent added later brings the next scrape forward, to MIN_GAP after the last.
    s.announced(http, ih(3), at(10));
    assert_eq!(s.targets[http].next, Some(at(2) + MIN_GAP));
    s.announced(http, ih(4), at(100));
    assert_eq!(
        s.targets[http].next,
        Some(at(2) + MIN_GAP),
        "already sooner"
    );
    s.begin(http, at(62));
    // One announcing while a scrape is in flight is scraped MIN_GAP after that one.
    s.announced(http, ih(5), at(63));
    assert_eq!(s.targets[http].next, None);
    assert_eq!(s.succeeded(http, None, at(64)), Some(MIN_GAP));
    assert_eq!(s.targets[http].next, Some(at(64) + MIN_GAP));
    // Removed torrents are forgotten, and a tracker without torrents with them.
    s.forget(&ih(2));
    assert!(!s.targets.contains_key(udp));
    assert_eq!(s.targets[http].torrents.len(), 4);
    // Interval 0: never.
    let mut off = Scrapes::new(Duration::ZERO);
    off.announced(http, ih(1), t0);
    assert_eq!((off.next_due(), off.due(at(9999)).len()), (None, 0));
}

#[test]
fn failed_scrapes_back_off_like_announces() {
    let t0 = Instant::now();
    let mut s = Scrapes::new(Duration::from_secs(1800));
    let url = "udp://t:1";
    s.announced(url, ih(1), t0);
    for n in 1..=12 {
        s.begin(url, t0);
        let wait = s.failed(url, t0).unwrap();
        assert_eq!(wait, crate::tracker::backoff(n), "failure {n}");
        assert!(wait >= crate::tracker::FIRST_BACKOFF);
        assert_eq!(s.next_due(), Some(t0 + wait));
        // A new torrent does not cut the backoff short.
        s.announced(url, ih(n as u8 + 1), t0);
        assert_eq!(s.next_due(), Some(t0 + wait));
    }
    assert_eq!(s.failed(url, t0), Some(crate::tracker::MAX_BACKOFF));
    assert_eq!(s.failed("udp://unknown:1", t0), None);
    // Success ends the backoff; the torrents that joined meanwhile were in the retry.
    assert_eq!(s.begin(url, t0).len(), 13);
    assert_eq!(s.succeeded(url, None, t0), Some(Duration::from_secs(1800)));
    assert_eq!(s.targets[url].failures, 0);
}
