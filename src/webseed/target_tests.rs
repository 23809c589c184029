//! Tests of the target splitter: each refusal (dot segments raw and encoded, absolute paths,
//! NUL, backslash, encoded slash, control bytes, escapes, bounds) and the names it accepts
//! (spaces, UTF-8, queries, absolute-form targets).

use super::*;

fn ok(raw: &str) -> (String, Vec<String>) {
    let t = split_target(raw.as_bytes()).unwrap_or_else(|e| panic!("{raw}: {e:?}"));
    (t.name, t.path)
}

fn refused(raw: &[u8]) -> Refused {
    match split_target(raw) {
        Err(e) => e,
        Ok(t) => panic!("{:?} accepted as {t:?}", String::from_utf8_lossy(raw)),
    }
}

#[test]
fn accepted() {
    assert_eq!(ok("/big.bin"), ("big.bin".into(), vec![]));
    assert_eq!(
        ok("/album/disc%201/track%20one.flac"),
        (
            "album".into(),
            vec!["disc 1".into(), "track one.flac".into()]
        )
    );
    assert_eq!(
        ok("/caf%C3%A9/%c3%a9t%C3%A9"),
        ("café".into(), vec!["été".into()])
    );
    assert_eq!(ok("/caf\u{e9}"), ("café".into(), vec![]));
    assert_eq!(ok("/a/b?x=1/../..#f"), ("a".into(), vec!["b".into()]));
    assert_eq!(ok("/a#frag?x"), ("a".into(), vec![]));
    assert_eq!(ok("http://host:8080/a/b"), ("a".into(), vec!["b".into()]));
    assert_eq!(ok("HTTPS://host/a"), ("a".into(), vec![]));
    assert_eq!(ok("/...%2e"), ("....".into(), vec![]));
    assert_eq!(ok("/a+b%2B"), ("a+b+".into(), vec![]));
    assert_eq!(ok("/.hidden/x."), (".hidden".into(), vec!["x.".into()]));
}

#[test]
fn each_refusal() {
    let cases: &[(&[u8], Refused)] = &[
        (b"", Refused::NotAPath),
        (b"*", Refused::NotAPath),
        (b"a/b", Refused::NotAPath),
        (b"host:80", Refused::NotAPath),
        (b"/", Refused::EmptyName),
        (b"//etc/passwd", Refused::EmptyName),
        (b"http://host", Refused::EmptyName),
        (b"http://host//etc/passwd", Refused::EmptyName),
        (b"/?x", Refused::EmptyName),
        (b"/a//b", Refused::EmptySegment),
        (b"/a/", Refused::EmptySegment),
        (b"/..", Refused::DotSegment),
        (b"/.", Refused::DotSegment),
        (b"/a/../b", Refused::DotSegment),
        (b"/a/./b", Refused::DotSegment),
        (b"/%2e%2e", Refused::DotSegment),
        (b"/a/%2E%2e/etc", Refused::DotSegment),
        (b"/a/%2e%2E", Refused::DotSegment),
        (b"/a/.%2e", Refused::DotSegment),
        (b"/a/%2e.", Refused::DotSegment),
        (b"/a/%2e", Refused::DotSegment),
        (b"/a%00", Refused::Nul),
        (b"/a\0b", Refused::Nul),
        (b"/a/b%00.txt", Refused::Nul),
        (b"/a\\..\\b", Refused::Backslash),
        (b"/a/%5c..", Refused::Backslash),
        (b"/a%2Fb", Refused::EncodedSlash),
        (b"/a/..%2fetc", Refused::EncodedSlash),
        (b"/a%0ab", Refused::Control),
        (b"/a\x1bb", Refused::Control),
        (b"/a%7F", Refused::Control),
        (b"/a%", Refused::BadEscape),
        (b"/a%4", Refused::BadEscape),
        (b"/a%zz", Refused::BadEscape),
        (b"/a%%41", Refused::BadEscape),
        (b"/a%ff", Refused::NotUtf8),
        (b"/a\xc3", Refused::NotUtf8),
        (b"/%C0%AE%C0%AE", Refused::NotUtf8),
    ];
    for (raw, want) in cases {
        assert_eq!(refused(raw), *want, "{:?}", String::from_utf8_lossy(raw));
        assert!(!want.reason().is_empty());
    }
}

#[test]
fn bounds() {
    let long = format!("/{}", "a".repeat(MAX_PATH - 1));
    assert_eq!(ok(&long).0.len(), MAX_PATH - 1);
    let too_long = format!("/{}", "a".repeat(MAX_PATH));
    assert_eq!(refused(too_long.as_bytes()), Refused::TooLong);
    // A long query does not count.
    let query = format!("/a?{}", "q".repeat(10 * MAX_PATH));
    assert_eq!(ok(&query).0, "a");
    let many = "/a".repeat(MAX_SEGMENTS);
    assert_eq!(ok(&many).1.len(), MAX_SEGMENTS - 1);
    let too_many = "/a".repeat(MAX_SEGMENTS + 1);
    assert_eq!(refused(too_many.as_bytes()), Refused::TooManySegments);
}
