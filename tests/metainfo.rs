//! Metainfo parsing: info-hash over raw bytes, and every rejection with its field and reason.

use sha1::{Digest, Sha1};
use uringseed::metainfo::{self, MetainfoError};

/// Builds a bencoded string.
fn s(x: &str) -> String {
    format!("{}:{}", x.len(), x)
}

fn pieces(n: usize) -> String {
    // 20 ASCII bytes per piece keep the test torrents printable.
    format!("{}:{}", n * 20, "a".repeat(n * 20))
}

/// A single-file info dict of `len` bytes with pieces of 16 KiB.
fn single_info(len: u64) -> String {
    let n = len.div_ceil(16384) as usize;
    format!(
        "d6:lengthi{len}e4:name{}12:piece lengthi16384e6:pieces{}e",
        s("a.iso"),
        pieces(n)
    )
}

fn torrent_with_info(info: &str) -> String {
    format!("d8:announce{}4:info{info}e", s("http://t/announce"))
}

fn reject(text: &str) -> MetainfoError {
    metainfo::parse(text.as_bytes(), "bad.torrent").expect_err("torrent should be rejected")
}

fn assert_rejects(text: &str, field: &str, reason: &str) {
    let e = reject(text);
    assert_eq!(e.file, "bad.torrent");
    assert_eq!(e.field, field, "{e}");
    assert!(
        e.reason.contains(reason),
        "{e} (want reason containing {reason:?})"
    );
}

#[test]
fn info_hash_is_sha1_of_raw_info_bytes_with_unknown_keys_and_odd_order() {
    // Keys out of canonical order, an unknown key and private=0: a re-encoding would change all
    // three, so the hash must come from the bytes as written.
    let info = format!(
        "d4:name{}6:lengthi20000e12:piece lengthi16384e6:pieces{}7:privatei0e9:x-unknownli1ei2eee",
        s("a.iso"),
        pieces(2)
    );
    let t = metainfo::parse(torrent_with_info(&info).as_bytes(), "t").unwrap();
    let want: [u8; 20] = Sha1::digest(info.as_bytes()).into();
    assert_eq!(t.info_hash.0, want);
    assert!(!t.private);
    assert_eq!(t.total_length, 20000);
    assert_eq!(t.piece_size(1), 20000 - 16384);
}

#[test]
fn parses_multi_file_with_tiers_pad_files_and_extras() {
    let info = format!(
        "d5:filesld6:lengthi100e4:pathl{}{}eed4:attr1:p6:lengthi16284e4:pathl{}{}eed6:lengthi0e4:pathl{}eed6:lengthi5e4:pathl{}eee4:name{}12:piece lengthi16384e6:pieces{}7:privatei1e6:source{}e",
        s("dir"), s("x.bin"), s(".pad"), s("16284"), s("empty"), s("y"), s("root"), pieces(2), s("SRC")
    );
    let text = format!(
        "d8:announce{}13:announce-listll{}{}el{}ee7:comment{}10:created by{}13:creation datei1700000000e4:info{info}e",
        s("http://a/1"), s("http://a/1"), s("http://a/2"), s("udp://b:80"), s("hi"), s("tool"),
    );
    let t = metainfo::parse(text.as_bytes(), "t").unwrap();
    assert!(!t.single_file);
    assert_eq!(t.files.len(), 4);
    assert!(t.files[1].pad && !t.files[0].pad);
    assert_eq!(t.files[0].path, vec!["dir", "x.bin"]);
    assert_eq!(t.total_length, 100 + 16284 + 5);
    assert_eq!(
        t.trackers,
        vec![
            vec!["http://a/1".to_string(), "http://a/2".into()],
            vec!["udp://b:80".into()]
        ]
    );
    assert!(t.private);
    assert_eq!(t.source.as_deref(), Some("SRC"));
    assert_eq!(t.comment.as_deref(), Some("hi"));
    assert_eq!(t.created_by.as_deref(), Some("tool"));
    assert_eq!(t.creation_date, Some(1_700_000_000));
    assert!(t
        .magnet()
        .starts_with(&format!("magnet:?xt=urn:btih:{}", t.info_hash)));
}

#[test]
fn rejects_missing_keys() {
    assert_rejects("d8:announce1:xe", "info", "missing");
    let no_name = format!("d6:lengthi5e12:piece lengthi16384e6:pieces{}e", pieces(1));
    assert_rejects(&torrent_with_info(&no_name), "info.name", "missing");
    let no_pl = format!("d6:lengthi5e4:name1:a6:pieces{}e", pieces(1));
    assert_rejects(&torrent_with_info(&no_pl), "info.piece length", "missing");
    let no_pieces = "d6:lengthi5e4:name1:a12:piece lengthi16384ee";
    assert_rejects(&torrent_with_info(no_pieces), "info.pieces", "missing");
    let neither = format!("d4:name1:a12:piece lengthi16384e6:pieces{}e", pieces(1));
    assert_rejects(&torrent_with_info(&neither), "info", "neither");
    let no_path = format!(
        "d5:filesld6:lengthi5eee4:name1:a12:piece lengthi16384e6:pieces{}e",
        pieces(1)
    );
    assert_rejects(
        &torrent_with_info(&no_path),
        "info.files[0].path",
        "missing",
    );
}

#[test]
fn rejects_duplicate_keys() {
    let dup = format!(
        "d6:lengthi5e6:lengthi5e4:name1:a12:piece lengthi16384e6:pieces{}e",
        pieces(1)
    );
    let e = reject(&torrent_with_info(&dup));
    assert!(
        e.reason.contains("duplicate dictionary key \"length\""),
        "{e}"
    );
}

#[test]
fn rejects_bad_piece_data() {
    let odd = "d6:lengthi5e4:name1:a12:piece lengthi16384e6:pieces21:aaaaaaaaaaaaaaaaaaaaae";
    assert_rejects(&torrent_with_info(odd), "info.pieces", "multiple of 20");
    let too_few = format!(
        "d6:lengthi20000e4:name1:a12:piece lengthi16384e6:pieces{}e",
        pieces(1)
    );
    assert_rejects(&torrent_with_info(&too_few), "info.pieces", "need 2");
    let too_many = format!(
        "d6:lengthi5e4:name1:a12:piece lengthi16384e6:pieces{}e",
        pieces(2)
    );
    assert_rejects(&torrent_with_info(&too_many), "info.pieces", "need 1");
    let zero = format!(
        "d6:lengthi5e4:name1:a12:piece lengthi0e6:pieces{}e",
        pieces(1)
    );
    assert_rejects(
        &torrent_with_info(&zero),
        "info.piece length",
        "greater than zero",
    );
    let neg = format!(
        "d6:lengthi-5e4:name1:a12:piece lengthi16384e6:pieces{}e",
        pieces(1)
    );
    assert_rejects(&torrent_with_info(&neg), "info.length", "negative");
    let empty = "d6:lengthi0e4:name1:a12:piece lengthi16384e6:pieces0:e";
    assert_rejects(&torrent_with_info(empty), "info", "no data");
}

#[test]
fn rejects_path_traversal() {
    let multi = |parts: &str| {
        torrent_with_info(&format!(
            "d5:filesld6:lengthi5e4:pathl{parts}eee4:name1:a12:piece lengthi16384e6:pieces{}e",
            pieces(1)
        ))
    };
    assert_rejects(&multi(&s("..")), "info.files[0].path", "traversal");
    assert_rejects(
        &multi(&format!("{}{}", s("ok"), s(".."))),
        "info.files[0].path",
        "traversal",
    );
    assert_rejects(&multi(&s("/etc/passwd")), "info.files[0].path", "separator");
    assert_rejects(&multi(&s("a/b")), "info.files[0].path", "separator");
    assert_rejects(&multi(&s("a\\b")), "info.files[0].path", "separator");
    assert_rejects(&multi(&s("")), "info.files[0].path", "empty path component");
    assert_rejects(&multi(""), "info.files[0].path", "path is empty");
    let name = |n: &str| {
        torrent_with_info(&format!(
            "d6:lengthi5e4:name{}12:piece lengthi16384e6:pieces{}e",
            s(n),
            pieces(1)
        ))
    };
    assert_rejects(&name(".."), "info.name", "traversal");
    assert_rejects(&name("/abs"), "info.name", "separator");
    assert_rejects(&name(""), "info.name", "empty");
    let dup = torrent_with_info(&format!(
        "d5:filesld6:lengthi5e4:pathl1:xeed6:lengthi5e4:pathl1:xeee4:name1:a12:piece lengthi16384e6:pieces{}e",
        pieces(1)
    ));
    assert_rejects(&dup, "info.files[1].path", "duplicate path");
}

#[test]
fn rejects_structural_garbage() {
    let good = torrent_with_info(&single_info(5));
    assert!(metainfo::parse(good.as_bytes(), "t").is_ok());
    let trailing = format!("{good}garbage");
    assert!(reject(&trailing).reason.contains("trailing data"));
    assert!(reject(&good[..good.len() - 1])
        .reason
        .contains("end of data"));
    let deep = format!(
        "d4:info{}4:junk{}{}e",
        single_info(5),
        "l".repeat(100),
        "e".repeat(100)
    );
    assert!(reject(&deep).reason.contains("nesting"));
    assert!(reject("le").reason.contains("not a dictionary"));
    assert_rejects("d4:infolee", "info", "expected a dictionary, found list");
    assert_rejects("d4:infoi3ee", "info", "expected a dictionary");
}

#[test]
fn load_names_the_file_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.torrent");
    std::fs::write(&path, b"d4:infoi3ee").unwrap();
    let e = metainfo::load(&path).unwrap_err();
    assert!(e.to_string().contains("broken.torrent"), "{e}");
    let missing = metainfo::load(&dir.path().join("nope.torrent")).unwrap_err();
    assert!(
        missing.to_string().contains("nope.torrent: cannot read"),
        "{missing}"
    );
}
