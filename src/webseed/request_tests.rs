//! Tests of the request-head parser: a sample head at every split point, the size and header
//! count bounds, each `HeadError`, keep-alive rules and the headers a web seed keeps.

use super::*;

const SAMPLE: &[u8] = b"GET /big.bin HTTP/1.1\r\nHost: seed.example\r\nRange: bytes=0-99\r\n\
If-Range: \"abc\"\r\nIf-None-Match: \"x\"\r\nIf-None-Match: W/\"y\"\r\n\
If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\nUser-Agent: t\r\n\r\nNEXT";

fn done(buf: &[u8]) -> (Request, usize) {
    match parse_head(buf, 8192) {
        Parsed::Done { req, consumed } => (req, consumed),
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buf)),
    }
}

fn err(buf: &[u8]) -> HeadError {
    match parse_head(buf, 8192) {
        Parsed::Error(e) => e,
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buf)),
    }
}

#[test]
fn sample_fields() {
    let (req, consumed) = done(SAMPLE);
    assert_eq!(consumed, SAMPLE.len() - 4);
    assert_eq!(req.method, Method::Get);
    assert_eq!(req.target, b"/big.bin");
    assert!(req.http11 && req.keep_alive);
    assert_eq!(req.range.as_deref(), Some(&b"bytes=0-99"[..]));
    assert_eq!(req.if_range.as_deref(), Some(&b"\"abc\""[..]));
    assert_eq!(req.if_none_match.as_deref(), Some(&b"\"x\", W/\"y\""[..]));
    assert_eq!(
        req.if_modified_since.as_deref(),
        Some(&b"Sun, 06 Nov 1994 08:49:37 GMT"[..])
    );
}

#[test]
fn every_split_point_is_incomplete_until_the_end() {
    let whole = &SAMPLE[..SAMPLE.len() - 4];
    let expected = done(whole);
    for cut in 0..whole.len() {
        assert_eq!(
            parse_head(&whole[..cut], 8192),
            Parsed::Incomplete,
            "cut {cut}"
        );
    }
    assert_eq!(done(whole), expected);
    assert_eq!(done(SAMPLE), expected);
    // The same with bare LF line ends.
    let lf: Vec<u8> = whole.iter().copied().filter(|&b| b != b'\r').collect();
    for cut in 0..lf.len() {
        assert_eq!(
            parse_head(&lf[..cut], 8192),
            Parsed::Incomplete,
            "cut {cut}"
        );
    }
    let (req, consumed) = done(&lf);
    assert_eq!((req, consumed), (expected.0, lf.len()));
}

#[test]
fn size_limit() {
    let head = b"GET / HTTP/1.1\r\n\r\n";
    assert!(matches!(parse_head(head, head.len()), Parsed::Done { .. }));
    assert_eq!(
        parse_head(head, head.len() - 1),
        Parsed::Error(HeadError::TooLarge)
    );
    let partial = b"GET / HTTP/1.1\r\nX: aaaaaaaa";
    assert_eq!(parse_head(partial, partial.len()), Parsed::Incomplete);
    assert_eq!(
        parse_head(partial, partial.len() - 1),
        Parsed::Error(HeadError::TooLarge)
    );
    assert_eq!(
        parse_head(&[b'A'; 100], 64),
        Parsed::Error(HeadError::TooLarge)
    );
    assert_eq!(parse_head(b"", 0), Parsed::Incomplete);
    assert_eq!(HeadError::TooLarge.status(), 431);
}

#[test]
fn header_count_limit() {
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    let mut ok = head.clone();
    ok.extend_from_slice(b"\r\n");
    done(&ok);
    head.extend_from_slice(b"X-last: v\r\n\r\n");
    assert_eq!(err(&head), HeadError::TooManyHeaders);
}

#[test]
fn each_error() {
    let cases: &[(&[u8], HeadError)] = &[
        (b"GET /\r\n\r\n", HeadError::BadRequestLine),
        (b"GET  / HTTP/1.1\r\n\r\n", HeadError::BadRequestLine),
        (b"GET / HTTP/1.1 \r\n\r\n", HeadError::BadRequestLine),
        (b"G(T / HTTP/1.1\r\n\r\n", HeadError::BadRequestLine),
        (b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n", HeadError::BadRequestLine),
        (b"GET / FTP/1.1\r\n\r\n", HeadError::BadRequestLine),
        (b"GET / http/1.1\r\n\r\n", HeadError::BadRequestLine),
        (b"GET / HTTP/2.0\r\n\r\n", HeadError::Version),
        (b"GET / HTTP/0.9\r\n\r\n", HeadError::Version),
        (b"GET\t/ HTTP/1.1\r\n\r\n", HeadError::ControlByte),
        (b"GET / HTTP/1.1\r\nHost x\r\n\r\n", HeadError::BadHeader),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", HeadError::BadHeader),
        (b"GET / HTTP/1.1\r\n: x\r\n\r\n", HeadError::BadHeader),
        (b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", HeadError::ObsFold),
        (b"GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n", HeadError::ObsFold),
        (
            b"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n",
            HeadError::ControlByte,
        ),
        (b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", HeadError::ControlByte),
        (b"GET / HTTP/1.1\r\nA: \x7f\r\n\r\n", HeadError::ControlByte),
        (
            b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            HeadError::BadContentLength,
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 0, 0\r\n\r\n",
            HeadError::BadContentLength,
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            HeadError::BadContentLength,
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 0\r\ncontent-length: 0\r\n\r\n",
            HeadError::BadContentLength,
        ),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            HeadError::Body,
        ),
        (
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            HeadError::Body,
        ),
        (
            b"GET / HTTP/1.1\r\nRange: bytes=0-1\r\nrange: bytes=2-3\r\n\r\n",
            HeadError::Duplicate,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nHOST: b\r\n\r\n",
            HeadError::Duplicate,
        ),
    ];
    for (head, want) in cases {
        assert_eq!(err(head), *want, "{:?}", String::from_utf8_lossy(head));
        assert!(!want.reason().is_empty());
    }
    assert_eq!(HeadError::Version.status(), 505);
    assert_eq!(HeadError::Body.status(), 400);
    assert_eq!(HeadError::ObsFold.status(), 400);
}

#[test]
fn accepted_forms() {
    let (req, _) = done(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(req.target, b"/");
    let (req, consumed) = done(b"\r\n\r\nHEAD /a HTTP/1.1\r\n\r\n");
    assert_eq!((req.method, consumed), (Method::Head, 24));
    let (req, _) = done(b"DELETE /a HTTP/1.1\r\n\r\n");
    assert_eq!(req.method, Method::Other);
    let (req, _) = done(b"get /a HTTP/1.1\r\n\r\n");
    assert_eq!(req.method, Method::Other);
    let (req, _) = done(b"GET /a HTTP/1.1\r\nrAnGe:\t bytes=1-2 \t\r\nX-Empty:\r\n\r\n");
    assert_eq!(req.range.as_deref(), Some(&b"bytes=1-2"[..]));
    let (req, _) = done(b"GET /a HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n");
    assert_eq!(req.target, b"/a");
    let (req, consumed) = done(b"GET /a HTTP/1.1\nHost: h\r\n\nrest");
    assert_eq!((req.target.as_slice(), consumed), (&b"/a"[..], 26));
}

#[test]
fn keep_alive_rules() {
    let ka = |h: &[u8]| done(h).0.keep_alive;
    assert!(ka(b"GET / HTTP/1.1\r\n\r\n"));
    assert!(!ka(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
    assert!(!ka(b"GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n"));
    assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
    assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    assert!(!ka(
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"
    ));
    assert!(!done(b"GET / HTTP/1.0\r\n\r\n").0.http11);
}
