//! `uringseed make` as a user runs it: deterministic canonical output, trackers, flags, errors.

mod common;

use common::*;
use uringseed::bencode;
use uringseed::make::auto_piece_length;
use uringseed::metainfo;

fn make(args: &[&str]) -> std::process::Output {
    uringseed()
        .arg("make")
        .args(args)
        .arg("-q")
        .output()
        .unwrap()
}

#[test]
fn output_is_deterministic_canonical_and_carries_options() {
    let dir = tempfile::tempdir().unwrap();
    let tree = write_tree(dir.path(), "tree");
    let (a, b) = (dir.path().join("a.torrent"), dir.path().join("b.torrent"));
    let args = |out: &std::path::Path| {
        vec![
            tree.to_str().unwrap().to_string(),
            "-o".into(),
            out.to_str().unwrap().to_string(),
            "-t".into(),
            "http://t1/announce,http://t1b/announce".into(),
            "--tracker".into(),
            "udp://t2:6969".into(),
            "--private".into(),
            "--comment".into(),
            "release day".into(),
            "--source".into(),
            "SEEDBOX".into(),
        ]
    };
    for out in [&a, &b] {
        let argv = args(out);
        let o = make(&argv.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(
        bytes,
        std::fs::read(&b).unwrap(),
        "same input must give the same bytes"
    );
    assert!(bencode::is_canonical(&bencode::decode(&bytes).unwrap()));
    assert!(!String::from_utf8_lossy(&bytes).contains("creation date"));
    let t = metainfo::parse(&bytes, "a").unwrap();
    assert_eq!(
        t.trackers,
        vec![
            vec![
                "http://t1/announce".to_string(),
                "http://t1b/announce".into()
            ],
            vec!["udp://t2:6969".into()]
        ]
    );
    assert_eq!(t.announce.as_deref(), Some("http://t1/announce"));
    assert!(t.private);
    assert_eq!(t.source.as_deref(), Some("SEEDBOX"));
    assert_eq!(t.comment.as_deref(), Some("release day"));
    // Sorted file order, the empty file included.
    let paths: Vec<String> = t.files.iter().map(|f| f.path.join("/")).collect();
    assert_eq!(
        paths,
        [
            "a.bin",
            "sub/b.txt",
            "sub/deeper/c.dat",
            "z-last.bin",
            "zero"
        ]
    );
    assert_eq!(t.piece_length, auto_piece_length(t.total_length));
}

#[test]
fn date_flag_adds_creation_date() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x");
    std::fs::write(&f, b"hello").unwrap();
    let out = dir.path().join("x.torrent");
    assert!(
        make(&[f.to_str().unwrap(), "-o", out.to_str().unwrap(), "--date"])
            .status
            .success()
    );
    let t = metainfo::load(&out).unwrap();
    assert!(t.creation_date.unwrap() > 1_700_000_000);
    assert!(t.trackers.is_empty() && t.single_file);
}

#[test]
fn auto_piece_length_is_a_sane_power_of_two() {
    assert_eq!(auto_piece_length(1), 16 << 10);
    assert_eq!(auto_piece_length(1 << 30), 1 << 20);
    assert_eq!(auto_piece_length(4_700_000_000), 4 << 20);
    assert_eq!(auto_piece_length(u64::MAX / 2), 16 << 20);
}

#[test]
fn errors_are_clear_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.torrent");
    let o = out.to_str().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![dir.path().join("missing").display().to_string()],
            "missing: cannot read",
        ),
        (vec![dir.path().display().to_string()], "holds no files"),
        (
            vec![".".into(), "--piece-length".into(), "1000".into()],
            "power of two",
        ),
    ];
    for (args, want) in cases {
        let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
        argv.extend(["-o", o]);
        let r = make(&argv);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success() && err.contains(want), "{argv:?}: {err}");
        assert!(!out.exists(), "no output on failure");
    }
}
