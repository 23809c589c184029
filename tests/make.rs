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

/// Without -o the torrent goes to NAME.torrent in the current directory, as with mktorrent and
/// transmission-create; an existing one is refused before any hashing unless --force.
#[test]
fn default_output_is_name_dot_torrent_and_is_never_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let tree = write_tree(dir.path(), "tree");
    let run_in = |args: &[&str]| {
        uringseed()
            .current_dir(dir.path())
            .arg("make")
            .args(args)
            .arg("-q")
            .output()
            .unwrap()
    };
    let first = run_in(&["tree"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let out = dir.path().join("tree.torrent");
    let t = metainfo::load(&out).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&first.stdout).trim(),
        t.info_hash.to_hex()
    );
    let before = std::fs::read(&out).unwrap();
    // Another torrent of the same name is refused and the file left alone.
    let again = run_in(&["tree", "-t", "http://t/announce"]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{err}");
    assert!(
        err.contains("tree.torrent: already exists (--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), before);
    let forced = run_in(&["tree", "-t", "http://t/announce", "--force"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_ne!(std::fs::read(&out).unwrap(), before);
    // --name names the default file too.
    assert!(run_in(&[tree.to_str().unwrap(), "--name", "renamed"])
        .status
        .success());
    assert_eq!(
        metainfo::load(&dir.path().join("renamed.torrent"))
            .unwrap()
            .name,
        "renamed"
    );
}

/// -w/--web-seed goes into url-list (outside the info dictionary, so the info-hash does not
/// change) and --name into info.name, as libtorrent reads them.
#[test]
fn web_seeds_and_name_read_back_in_libtorrent_and_keep_the_info_hash() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = write_tree(dir.path(), "tree");
    let file = dir.path().join("single.bin");
    std::fs::write(&file, pseudo_random(70_000, 4)).unwrap();
    for (src, name) in [(&tree, "My Release"), (&file, "other.bin")] {
        let plain = dir.path().join(format!("{name}-plain.torrent"));
        let seeded = dir.path().join(format!("{name}-seeded.torrent"));
        let hash = make_torrent(src, &plain, &["--name", name]);
        let seeds = ["http://mirror.example/pub/", "https://cdn.example:8443/x/y"];
        let hash_ws = make_torrent(
            src,
            &seeded,
            &["--name", name, "-w", seeds[0], "--web-seed", seeds[1]],
        );
        assert_eq!(hash, hash_ws, "web seeds changed the info-hash");
        let info = lt_tool(&["info", seeded.to_str().unwrap()]);
        let get = |k: &str| -> Vec<&str> {
            info.iter()
                .filter(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(get("infohash"), [hash.as_str()]);
        assert_eq!(get("name"), [name]);
        // libtorrent reads a multi-file torrent's web seed as a directory (BEP 19) and adds the
        // slash; the file holds the URLs as given.
        let dir_form = |u: &str| match src == &tree && !u.ends_with('/') {
            true => format!("{u}/"),
            false => u.to_string(),
        };
        assert_eq!(get("webseed"), seeds.map(dir_form));
        let bytes = std::fs::read(&seeded).unwrap();
        let root = bencode::decode(&bytes).unwrap();
        let listed: Vec<&[u8]> = match &root.get("url-list").expect("url-list").value {
            bencode::Value::List(items) => items
                .iter()
                .map(|n| match n.value {
                    bencode::Value::Bytes(b) => b,
                    _ => panic!("url-list entry is not a string"),
                })
                .collect(),
            _ => panic!("url-list is not a list"),
        };
        assert_eq!(listed, seeds.map(str::as_bytes));
        let plain_info = lt_tool(&["info", plain.to_str().unwrap()]);
        assert!(!plain_info.iter().any(|(k, _)| k == "webseed"));
        // Same data under another name: another info-hash (the name is inside info).
        let other = dir.path().join(format!("{name}-default.torrent"));
        assert_ne!(make_torrent(src, &other, &[]), hash);
    }
}

#[test]
fn bad_web_seeds_and_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x");
    std::fs::write(&f, b"hello").unwrap();
    let out = dir.path().join("x.torrent");
    for (args, want) in [
        (
            vec!["-w", "ftp://mirror/x"],
            "--web-seed \"ftp://mirror/x\": must be an http",
        ),
        (vec!["-w", "mirror/x"], "--web-seed \"mirror/x\""),
        (vec!["--name", "a/b"], "--name \"a/b\": must be a file name"),
        (vec!["--name", ".."], "--name \"..\""),
    ] {
        let mut argv = vec![f.to_str().unwrap(), "-o", out.to_str().unwrap()];
        argv.extend(&args);
        let r = make(&argv);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!out.exists());
    }
}
