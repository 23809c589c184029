//! Interop with real torrent tools: torrents they make parse to the info-hash they report, and
//! torrents `uringseed make` writes load in libtorrent with the same hash and piece hashes.

mod common;

use common::*;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use uringseed::metainfo::{self, Torrent};
use uringseed::storage::{hasher, Layout};

fn value<'a>(lines: &'a [(String, String)], key: &str) -> &'a str {
    lines
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {lines:?}"))
}

/// Our hasher over the data must reproduce every piece hash the torrent carries.
fn assert_pieces_match_data(t: &Torrent, data_dir: &Path) {
    let layout = Layout::new(t);
    assert_eq!(
        uringseed::storage::files::DataFiles::open(&layout, data_dir).problems(),
        vec![]
    );
    let got = hasher::hash_pieces(
        &layout,
        data_dir,
        hasher::Access::Pread,
        2,
        &AtomicU64::new(0),
    );
    for (i, (g, want)) in got.iter().zip(&t.piece_hashes).enumerate() {
        assert_eq!(g.as_ref().unwrap(), want, "piece {i}");
    }
}

#[test]
fn transmission_create_hashes_match() {
    if !have("transmission-create") || !have("transmission-show") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = write_tree(dir.path(), "tree");
    let single = dir.path().join("single.iso");
    std::fs::write(&single, pseudo_random(1_000_003, 9)).unwrap();
    for (src, out) in [(&tree, "tree.torrent"), (&single, "single.torrent")] {
        let out = dir.path().join(out);
        run(std::process::Command::new("transmission-create")
            .args(["-p", "-t", "http://127.0.0.1:1/announce", "-o"])
            .args([&out, src]));
        let shown = stdout(&run(
            std::process::Command::new("transmission-show").arg(&out)
        ));
        let want = shown
            .lines()
            .find_map(|l| l.trim().strip_prefix("Hash: "))
            .expect("transmission-show prints Hash:");
        let t = metainfo::load(&out).unwrap();
        assert_eq!(t.info_hash.to_hex(), want, "{}", out.display());
        assert!(t.private);
        assert_pieces_match_data(&t, dir.path());
    }
}

#[test]
fn mktorrent_hash_matches_libtorrent() {
    if !have("mktorrent") || !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = write_tree(dir.path(), "tree");
    let out = dir.path().join("mk.torrent");
    run(std::process::Command::new("mktorrent")
        .args([
            "-l",
            "15",
            "-a",
            "http://127.0.0.1:1/a",
            "-a",
            "udp://127.0.0.1:2",
            "-c",
            "hi",
            "-o",
        ])
        .args([&out, &tree]));
    let t = metainfo::load(&out).unwrap();
    assert_eq!(
        t.info_hash.to_hex(),
        value(&lt_tool(&["info", out.to_str().unwrap()]), "infohash")
    );
    assert_eq!(t.piece_length, 1 << 15);
    assert_eq!(t.comment.as_deref(), Some("hi"));
    assert_pieces_match_data(&t, dir.path());
}

#[test]
fn libtorrent_hybrid_torrent_with_pad_files() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = write_tree(dir.path(), "tree");
    for kind in ["v1", "hybrid"] {
        let out = dir.path().join(format!("{kind}.torrent"));
        let lines = lt_tool(&[
            "create",
            tree.to_str().unwrap(),
            out.to_str().unwrap(),
            kind,
        ]);
        let t = metainfo::load(&out).unwrap();
        assert_eq!(t.info_hash.to_hex(), value(&lines, "infohash"), "{kind}");
        // libtorrent 2 aligns files with BEP 47 pad files in hybrid torrents; they are not on disk.
        assert_eq!(
            kind == "hybrid",
            t.files.iter().any(|f| f.pad),
            "{kind}: {:?}",
            t.files
        );
        assert_pieces_match_data(&t, dir.path());
    }
}

#[test]
fn make_output_loads_in_libtorrent_with_its_own_piece_hashes() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = write_tree(dir.path(), "tree");
    let single = dir.path().join("one.iso");
    std::fs::write(&single, pseudo_random(123_457, 5)).unwrap();
    for (src, piece_len) in [(&tree, "32768"), (&single, "16384")] {
        let out = dir.path().join("made.torrent");
        let printed = stdout(&run(uringseed()
            .arg("make")
            .arg(src)
            .arg("-o")
            .arg(&out)
            .args([
                "-t",
                "http://127.0.0.1:1/announce",
                "--piece-length",
                piece_len,
                "-q",
            ])));
        let t = metainfo::load(&out).unwrap();
        assert_eq!(printed.trim(), t.info_hash.to_hex());
        let info = lt_tool(&["info", out.to_str().unwrap()]);
        assert_eq!(value(&info, "infohash"), t.info_hash.to_hex());
        let rehash = lt_tool(&["rehash", out.to_str().unwrap(), src.to_str().unwrap()]);
        let lt_pieces: Vec<&str> = rehash
            .iter()
            .filter(|(k, _)| k == "lt_piece")
            .map(|(_, v)| &v[v.find(' ').unwrap() + 1..])
            .collect();
        let ours: Vec<String> = t.piece_hashes.iter().map(|h| metainfo::hex(h)).collect();
        assert_eq!(lt_pieces, ours, "{}", src.display());
        // libtorrent checks our torrent against the data and finds every piece good.
        assert_eq!(value(&rehash, "state"), "seeding", "{rehash:?}");
        assert_eq!(
            value(&rehash, "num_pieces_have"),
            t.num_pieces().to_string()
        );
    }
}
