//! The web seed's head parser, target splitter and answers never panic, and what they answer
//! keeps its bounds. The input goes in whole as a request target, then as a byte stream of
//! pipelined heads (each parsed, split and answered from one of two small torrents: a
//! single-file `f` and a multi-file `d` with an empty and an unreachable file; ranges from 900
//! to 949 of the stream are not verified). Every head is ASCII, ends with its blank line and has
//! one Content-Length (none on a 304) equal to the text body's length, or to the data range's,
//! which lies inside the file; `servable` is only asked about non-empty ranges in the torrent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uringseed::webseed::{
    error_answer, parse_head, respond, split_target, Answer, Body, Method, Parsed, Servable,
    WebFile, WebIndex,
};

const NOW: u64 = 1_700_000_000;
const TOTAL: u64 = 1_000;

fn file(path: &[&str], start: u64, length: u64, reachable: bool) -> WebFile {
    WebFile {
        path: path.iter().map(|s| s.to_string()).collect(),
        start,
        length,
        mtime: 1_600_000_000,
        reachable,
    }
}

fn indexes() -> [WebIndex; 2] {
    [
        WebIndex::new([1; 20], "f".into(), false, vec![file(&[], 0, TOTAL, true)]),
        WebIndex::new(
            [2; 20],
            "d".into(),
            true,
            vec![
                file(&["a"], 0, 700, true),
                file(&["s", "b b"], 700, 300, true),
                file(&["empty"], 1_000, 0, true),
                file(&["gone"], 1_000, 0, false),
            ],
        ),
    ]
}

fn content_length(head: &str) -> Option<u64> {
    let mut found = None;
    for line in head.split("\r\n") {
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            assert!(found.is_none(), "two Content-Length in {head}");
            found = Some(v.parse::<u64>().expect("a number"));
        }
    }
    found
}

fn check(a: &Answer, index: Option<&WebIndex>, head_only: bool) {
    let head = std::str::from_utf8(&a.head).expect("ASCII head");
    assert!(head.is_ascii() && head.ends_with("\r\n\r\n"), "{head:?}");
    assert!(
        head.starts_with(&format!("HTTP/1.1 {} ", a.status)),
        "{head:?}"
    );
    let cl = content_length(head);
    match &a.body {
        Body::Text(t) => {
            assert!(a.status >= 400, "{head}");
            assert_eq!(cl, Some(t.len() as u64));
        }
        Body::Data { start, len } => {
            assert!(matches!(a.status, 200 | 206));
            assert_eq!(cl, Some(*len));
            let index = index.expect("data only from an index");
            let inside = index
                .files()
                .iter()
                .any(|f| f.reachable && *start >= f.start && start + len <= f.start + f.length);
            assert!(*len > 0 && inside, "{start}+{len} outside every file");
        }
        Body::Empty => {
            if a.status == 304 {
                assert_eq!(cl, None);
            } else if !head_only {
                assert_eq!((a.status, cl), (200, Some(0)), "{head}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = split_target(data);
    let idx = indexes();
    let mut rest = data;
    for _ in 0..16 {
        let max_head = 64 + usize::from(rest.first().copied().unwrap_or(0)) * 16;
        let (req, consumed) = match parse_head(rest, max_head) {
            Parsed::Incomplete => break,
            Parsed::Error(e) => {
                let a = error_answer(e.status(), true, NOW);
                assert!(!a.keep_alive || e.status() == 404 || e.status() == 503);
                check(&a, None, false);
                break;
            }
            Parsed::Done { req, consumed } => (req, consumed),
        };
        assert!(consumed > 0 && consumed <= rest.len().min(max_head));
        rest = &rest[consumed..];
        let head_only = req.method == Method::Head;
        let target = match split_target(&req.target) {
            Ok(t) => t,
            Err(e) => {
                assert!(!e.reason().is_empty());
                check(&error_answer(404, req.keep_alive, NOW), None, false);
                continue;
            }
        };
        let Some(index) = idx.iter().find(|i| i.name() == target.name) else {
            continue;
        };
        let servable = |s: u64, l: u64| {
            assert!(
                l > 0 && s.checked_add(l).is_some_and(|e| e <= TOTAL),
                "{s}+{l}"
            );
            if s < 950 && s + l > 900 {
                Servable::NotVerified
            } else {
                Servable::Yes
            }
        };
        let a = respond(&req, &target, index, servable, NOW);
        check(&a, Some(index), head_only);
        if a.status == 206 {
            assert!(a.head.windows(20).any(|w| w == b"Content-Range: bytes"));
        }
    }
});
