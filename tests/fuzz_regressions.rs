//! Regressions found while fuzzing (see fuzz/README.md).

use std::time::{Duration, Instant};

/// A bencoded dictionary of `n` distinct keys with empty string values: `d1:00:1:10:...e`.
fn wide_dict(n: usize) -> Vec<u8> {
    let mut out = b"d".to_vec();
    for i in 0..n {
        let k = format!("{i:x}");
        out.extend_from_slice(format!("{}:{k}0:", k.len()).as_bytes());
    }
    out.push(b'e');
    out
}

/// The bencode decoder checks each new dictionary key against every earlier one, so a
/// dictionary of n keys costs O(n²) comparisons. A tracker reply may be 256 KiB (about 33,000
/// such keys): found with a hand-built input after fuzzing `tracker_http`; it took 52 s in the
/// fuzz build. Parsing it must take well under a second now that the check is linear.
#[test]
fn wide_dictionary_in_a_tracker_reply_parses_quickly() {
    let body = wide_dict(33_000);
    assert!(body.len() <= uringseed::tracker::http::MAX_REPLY_BYTES as usize);
    let t = Instant::now();
    let r = uringseed::tracker::http::parse_reply(&body);
    let took = t.elapsed();
    assert!(r.is_err(), "no interval: must be refused");
    assert!(took < Duration::from_secs(2), "256 KiB reply took {took:?}");
}

/// Duplicate keys must still be refused, wherever they are in a wide dictionary.
#[test]
fn duplicate_key_in_a_wide_dictionary_is_refused() {
    let mut body = wide_dict(2_000);
    body.pop();
    body.extend_from_slice(b"3:7cf0:e"); // 0x7cf = 1999, already present
    let e = uringseed::bencode::decode(&body).unwrap_err();
    assert!(e.reason.contains("duplicate"), "{e}");
}

/// Spots found by reading while writing the fuzz targets: neither may panic.
#[test]
fn piece_size_past_the_end_and_config_errors_after_multibyte_text() {
    let t = uringseed::metainfo::parse(
        b"d4:infod6:lengthi5e4:name1:a12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaee",
        "t",
    )
    .unwrap();
    assert_eq!(t.piece_size(0), 5);
    assert_eq!(t.piece_size(1), 0);
    assert_eq!(t.piece_size(usize::MAX), 0);
    let e = uringseed::config::Config::parse("# é ü ñ\n[server]\nworkers = \"é\"\n", "c.toml")
        .unwrap_err();
    assert!(e.reason.contains("line 3"), "{e}");
}
