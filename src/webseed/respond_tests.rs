//! Tests of the answers: 200/206/416/304/503/404/405 heads checked for their key headers,
//! Content-Range math at the boundaries, If-Range, multi-file lookup, HEAD, error helpers,
//! and a property: head and body agree and stay inside the file for any valid range.

use super::*;
use crate::webseed::request::{parse_head, Parsed};
use crate::webseed::target::split_target;
use proptest::prelude::*;

const IH: [u8; 20] = [0xab; 20];
const NOW: u64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
const MTIME: u64 = 784_000_000; // Sat, 05 Nov 1994 01:46:40 GMT
const ETAG0: &str = "\"abababababababababababababababababababab-0\"";

fn file(path: &[&str], start: u64, length: u64) -> WebFile {
    WebFile {
        path: path.iter().map(|s| s.to_string()).collect(),
        start,
        length,
        mtime: MTIME,
        reachable: true,
    }
}

fn single(length: u64) -> WebIndex {
    WebIndex::new(IH, "big.bin".into(), false, vec![file(&[], 0, length)])
}

fn multi() -> WebIndex {
    let mut gone = file(&["gone.txt"], 1500, 10);
    gone.reachable = false;
    WebIndex::new(
        IH,
        "album".into(),
        true,
        vec![
            file(&["a.txt"], 0, 1000),
            file(&["sub", "b.bin"], 1000, 500),
            gone,
            file(&["empty"], 1510, 0),
        ],
    )
}

fn ask(index: &WebIndex, head: &str, servable: Servable) -> (Answer, Vec<(u64, u64)>) {
    let buf = format!("{head}\r\n\r\n");
    let Parsed::Done { req, .. } = parse_head(buf.as_bytes(), 8192) else {
        panic!("{head}");
    };
    let target = split_target(&req.target).expect("target");
    let calls = std::cell::RefCell::new(Vec::new());
    let a = respond(
        &req,
        &target,
        index,
        |s, l| {
            calls.borrow_mut().push((s, l));
            servable
        },
        NOW,
    );
    (a, calls.into_inner())
}

fn get(index: &WebIndex, head: &str) -> Answer {
    ask(index, head, Servable::Yes).0
}

fn head_text(a: &Answer) -> String {
    String::from_utf8(a.head.clone()).expect("ASCII head")
}

fn has(a: &Answer, line: &str) {
    let h = head_text(a);
    assert!(
        h.contains(&format!("\r\n{line}\r\n")),
        "no {line:?} in\n{h}"
    );
}

fn lacks(a: &Answer, name: &str) {
    let h = head_text(a).to_ascii_lowercase();
    assert!(
        !h.contains(&format!("\r\n{}:", name.to_ascii_lowercase())),
        "{name} in\n{h}"
    );
}

#[test]
fn whole_file() {
    let (a, calls) = ask(
        &single(1000),
        "GET /big.bin HTTP/1.1\r\nHost: h",
        Servable::Yes,
    );
    assert_eq!(a.status, 200);
    let h = head_text(&a);
    assert!(h.starts_with("HTTP/1.1 200 OK\r\n"), "{h}");
    assert!(h.ends_with("\r\n\r\n"));
    for line in [
        "Date: Sun, 06 Nov 1994 08:49:37 GMT",
        "Content-Type: application/octet-stream",
        "Content-Length: 1000",
        "Accept-Ranges: bytes",
        "Last-Modified: Sat, 05 Nov 1994 01:46:40 GMT",
        &format!("ETag: {ETAG0}"),
        "Connection: keep-alive",
    ] {
        has(&a, line);
    }
    lacks(&a, "Content-Range");
    assert_eq!(
        a.body,
        Body::Data {
            start: 0,
            len: 1000
        }
    );
    assert!(a.keep_alive);
    assert_eq!(calls, [(0, 1000)]);
}

#[test]
fn head_has_the_same_head_and_no_body() {
    let idx = single(1000);
    let g = get(&idx, "GET /big.bin HTTP/1.1");
    let h = get(&idx, "HEAD /big.bin HTTP/1.1");
    assert_eq!(h.head, g.head);
    assert_eq!((h.status, h.body), (200, Body::Empty));
    // HEAD ignores Range (RFC 9110 14.2).
    let r = get(&idx, "HEAD /big.bin HTTP/1.1\r\nRange: bytes=0-9");
    assert_eq!((r.status, r.head), (200, g.head));
    let nf = get(&idx, "HEAD /other HTTP/1.1");
    assert_eq!((nf.status, &nf.body), (404, &Body::Empty));
    has(&nf, "Content-Length: 10");
}

#[test]
fn ranges_at_the_boundaries() {
    let idx = single(1000);
    let cases = [
        ("bytes=0-0", 0, 1),
        ("bytes=0-999", 0, 1000),
        ("bytes=999-999", 999, 1),
        ("bytes=999-", 999, 1),
        ("bytes=500-", 500, 500),
        ("bytes=10-5000", 10, 990),
        ("bytes=0-18446744073709551615", 0, 1000),
        ("bytes=0-99999999999999999999999", 0, 1000),
        ("bytes=-1", 999, 1),
        ("bytes=-1000", 0, 1000),
        ("bytes=-5000", 0, 1000),
        ("Bytes=1-2", 1, 2),
        ("bytes= 1-2 ", 1, 2),
    ];
    for (range, first, len) in cases {
        let (a, calls) = ask(
            &idx,
            &format!("GET /big.bin HTTP/1.1\r\nRange: {range}"),
            Servable::Yes,
        );
        assert_eq!(a.status, 206, "{range}");
        assert!(head_text(&a).starts_with("HTTP/1.1 206 Partial Content\r\n"));
        has(
            &a,
            &format!("Content-Range: bytes {first}-{}/1000", first + len - 1),
        );
        has(&a, &format!("Content-Length: {len}"));
        assert_eq!(a.body, Body::Data { start: first, len }, "{range}");
        assert_eq!(calls, [(first, len)]);
    }
}

#[test]
fn unsatisfiable_and_ignored_ranges() {
    let idx = single(1000);
    for range in [
        "bytes=1000-",
        "bytes=1000-2000",
        "bytes=-0",
        "bytes=99999999999999999999-",
        "bytes=5000-1",
    ] {
        let (a, calls) = ask(
            &idx,
            &format!("GET /big.bin HTTP/1.1\r\nRange: {range}"),
            Servable::Yes,
        );
        if range == "bytes=5000-1" {
            assert_eq!(a.status, 200, "b < a is invalid: ignored");
            continue;
        }
        assert_eq!(a.status, 416, "{range}");
        has(&a, "Content-Range: bytes */1000");
        has(&a, "Content-Type: text/plain; charset=utf-8");
        assert_eq!(a.body, Body::Text(b"range not satisfiable\n".to_vec()));
        assert!(calls.is_empty());
    }
    for range in [
        "bytes=0-1,5-6",
        "items=0-1",
        "bytes=a-b",
        "bytes=",
        "bytes=-",
        "bytes 0-1",
    ] {
        let a = get(&idx, &format!("GET /big.bin HTTP/1.1\r\nRange: {range}"));
        assert_eq!(a.status, 200, "{range}");
        assert_eq!(
            a.body,
            Body::Data {
                start: 0,
                len: 1000
            }
        );
    }
    let empty = single(0);
    let a = get(&empty, "GET /big.bin HTTP/1.1\r\nRange: bytes=0-");
    assert_eq!(a.status, 416);
    has(&a, "Content-Range: bytes */0");
    let a = get(&empty, "GET /big.bin HTTP/1.1\r\nRange: bytes=-5");
    assert_eq!(a.status, 416);
}

#[test]
fn zero_length_file() {
    let (a, calls) = ask(&single(0), "GET /big.bin HTTP/1.1", Servable::Gone);
    assert_eq!((a.status, &a.body), (200, &Body::Empty));
    has(&a, "Content-Length: 0");
    assert!(calls.is_empty());
}

#[test]
fn if_range() {
    let idx = single(1000);
    let range = |if_range: &str| {
        get(
            &idx,
            &format!("GET /big.bin HTTP/1.1\r\nRange: bytes=0-9\r\nIf-Range: {if_range}"),
        )
        .status
    };
    assert_eq!(range(ETAG0), 206);
    assert_eq!(range("Sat, 05 Nov 1994 01:46:40 GMT"), 206);
    assert_eq!(range(&format!("W/{ETAG0}")), 200);
    assert_eq!(range("\"other\""), 200);
    assert_eq!(range("Sat, 05 Nov 1994 01:46:41 GMT"), 200);
    assert_eq!(range("Saturday, 05-Nov-94 01:46:40 GMT"), 200);
    assert_eq!(range("garbage"), 200);
}

#[test]
fn not_modified() {
    let idx = single(1000);
    let st = |extra: &str| {
        let (a, calls) = ask(
            &idx,
            &format!("GET /big.bin HTTP/1.1\r\n{extra}"),
            Servable::Yes,
        );
        if a.status == 304 {
            assert_eq!(a.body, Body::Empty);
            assert!(calls.is_empty());
            has(&a, &format!("ETag: {ETAG0}"));
            lacks(&a, "Content-Length");
        }
        a.status
    };
    assert_eq!(st(&format!("If-None-Match: {ETAG0}")), 304);
    assert_eq!(st(&format!("If-None-Match: \"x\", W/{ETAG0}")), 304);
    assert_eq!(st("If-None-Match: *"), 304);
    assert_eq!(st("If-None-Match: \"x\""), 200);
    assert_eq!(st("If-Modified-Since: Sat, 05 Nov 1994 01:46:40 GMT"), 304);
    assert_eq!(st("If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT"), 304);
    assert_eq!(st("If-Modified-Since: Sat, 05 Nov 1994 01:46:39 GMT"), 200);
    assert_eq!(
        st("If-Modified-Since: Saturday, 05-Nov-94 01:46:40 GMT"),
        200
    );
    // If-None-Match wins over If-Modified-Since.
    assert_eq!(
        st("If-None-Match: \"x\"\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT"),
        200
    );
}

#[test]
fn unavailable() {
    let idx = single(1000);
    for (servable, after) in [(Servable::NotVerified, "60"), (Servable::Gone, "300")] {
        let (a, calls) = ask(
            &idx,
            "GET /big.bin HTTP/1.1\r\nRange: bytes=100-199",
            servable,
        );
        assert_eq!(a.status, 503);
        assert!(head_text(&a).starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        has(&a, &format!("Retry-After: {after}"));
        assert!(matches!(a.body, Body::Text(_)));
        assert!(a.keep_alive);
        assert_eq!(calls, [(100, 100)]);
        let (h, _) = ask(&idx, "HEAD /big.bin HTTP/1.1", servable);
        assert_eq!((h.status, h.body), (503, Body::Empty));
    }
}

#[test]
fn lookups() {
    let idx = multi();
    let a = get(&idx, "GET /album/sub/b.bin HTTP/1.1\r\nRange: bytes=-100");
    assert_eq!(a.status, 206);
    assert_eq!(
        a.body,
        Body::Data {
            start: 1400,
            len: 100
        }
    );
    has(&a, "Content-Range: bytes 400-499/500");
    has(&a, "ETag: \"abababababababababababababababababababab-1\"");
    assert_eq!(get(&idx, "GET /album/a.txt HTTP/1.1").status, 200);
    let e = get(&idx, "GET /album/empty HTTP/1.1");
    assert_eq!((e.status, e.body), (200, Body::Empty));
    for path in [
        "/album",
        "/album/sub",
        "/album/gone.txt",
        "/album/nope",
        "/other/a.txt",
    ] {
        let a = get(&idx, &format!("GET {path} HTTP/1.1"));
        assert_eq!(a.status, 404, "{path}");
        has(&a, "Content-Length: 10");
        assert_eq!(a.body, Body::Text(b"not found\n".to_vec()));
    }
    let s = single(10);
    assert_eq!(get(&s, "GET /big.bin/x HTTP/1.1").status, 404);
    assert_eq!(s.name(), "big.bin");
    assert_eq!(s.lookup(&[]), Some(0));
}

#[test]
fn methods_and_connections() {
    let idx = single(10);
    let a = get(&idx, "POST /big.bin HTTP/1.1");
    assert_eq!(a.status, 405);
    has(&a, "Allow: GET, HEAD");
    assert!(a.keep_alive);
    let a = get(&idx, "GET /big.bin HTTP/1.1\r\nConnection: close");
    has(&a, "Connection: close");
    assert!(!a.keep_alive);
    let a = get(&idx, "GET /big.bin HTTP/1.0\r\nConnection: keep-alive");
    has(&a, "Connection: keep-alive");
    assert!(a.keep_alive);
}

#[test]
fn error_helpers() {
    for (status, ka) in [
        (400, false),
        (431, false),
        (505, false),
        (404, true),
        (503, true),
    ] {
        let a = error_answer(status, true, NOW);
        assert_eq!((a.status, a.keep_alive), (status, ka));
        let Body::Text(t) = &a.body else { panic!() };
        has(&a, &format!("Content-Length: {}", t.len()));
        has(
            &a,
            if ka {
                "Connection: keep-alive"
            } else {
                "Connection: close"
            },
        );
    }
    assert_eq!(error_answer(200, true, NOW).status, 500);
    let Parsed::Done { req, .. } = parse_head(b"HEAD /x HTTP/1.1\r\n\r\n", 100) else {
        panic!()
    };
    let a = error_for(&req, 404, NOW);
    assert_eq!((a.status, a.body, a.keep_alive), (404, Body::Empty, true));
}

proptest! {
    #[test]
    fn range_head_and_body_agree(len in 0u64..5000, a in 0u64..6000, b in 0u64..6000,
                                 kind in 0u8..3, start in 0u64..1_000_000) {
        let idx = WebIndex::new(IH, "f".into(), false, vec![file(&[], start, len)]);
        let range = match kind {
            0 => format!("bytes={}-{}", a.min(b), a.max(b)),
            1 => format!("bytes={a}-"),
            _ => format!("bytes=-{a}"),
        };
        let a = get(&idx, &format!("GET /f HTTP/1.1\r\nRange: {range}"));
        let h = head_text(&a);
        let field = |name: &str| {
            h.split("\r\n").find_map(|l| l.strip_prefix(name)).map(str::to_string)
        };
        let cl: u64 = field("Content-Length: ").expect("length").parse().expect("number");
        match (&a.status, &a.body) {
            (206, Body::Data { start: s, len: n }) => {
                prop_assert_eq!(cl, *n);
                prop_assert!(*n >= 1 && *s >= start && s + n <= start + len);
                let cr = field("Content-Range: bytes ").expect("range");
                prop_assert_eq!(cr, format!("{}-{}/{len}", s - start, s - start + n - 1));
            }
            (416, Body::Text(t)) => {
                prop_assert_eq!(cl, t.len() as u64);
                prop_assert_eq!(field("Content-Range: "), Some(format!("bytes */{len}")));
            }
            (200, Body::Empty) => prop_assert_eq!((cl, len), (0, 0)),
            other => prop_assert!(false, "{:?} for {} of {}", other, range, len),
        }
    }
}
