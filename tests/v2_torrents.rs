//! BEP 52 torrents: `make --v2/--hybrid` gives libtorrent's info-hashes, libtorrent's v2 and
//! hybrid torrents parse to its hashes and piece counts, the merkle trees are checked against
//! the data, and torrents whose layers, roots or halves disagree are refused naming the field.

mod common;

use common::*;
use serde_bencode::value::Value;
use std::path::Path;
use std::process::Command;
use uringseed::make::{self, Format, MakeOptions};
use uringseed::metainfo::{self, HashKind};

/// Files of awkward sizes: unaligned ends, one of exactly a block, an empty one, a subdirectory.
fn write_dir(root: &Path) -> std::path::PathBuf {
    let d = root.join("d");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("a.bin"), pseudo_random(100_000, 1)).unwrap();
    std::fs::write(d.join("c"), pseudo_random(70_000, 2)).unwrap();
    std::fs::write(d.join("empty"), b"").unwrap();
    std::fs::write(d.join("sub/b.bin"), pseudo_random(16_384, 3)).unwrap();
    d
}

fn ours(path: &Path, format: Format) -> (Vec<u8>, metainfo::Torrent) {
    let opts = MakeOptions {
        path: path.to_path_buf(),
        piece_length: Some(32_768),
        quiet: true,
        format,
        ..Default::default()
    };
    make::make(&opts).unwrap()
}

const LT_MAKE: &str = r#"
import libtorrent as lt, os, sys
path, flag, out = sys.argv[1], sys.argv[2], sys.argv[3]
fs = lt.file_storage()
lt.add_files(fs, path)
flags = lt.create_torrent.v2_only if flag == "v2" else 0
ct = lt.create_torrent(fs, 32768, flags=flags)
lt.set_piece_hashes(ct, os.path.dirname(path))
open(out, "wb").write(lt.bencode(ct.generate()))
ti = lt.torrent_info(out)
ih = ti.info_hashes()
print(ih.v1 if ih.has_v1() else "-", ih.v2 if ih.has_v2() else "-", ti.num_pieces(),
      ti.total_size())
"#;

#[test]
fn made_torrents_have_libtorrents_info_hashes_and_its_torrents_parse_to_them() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = write_dir(dir.path());
    for (path, flag, format) in [
        (d.clone(), "v2", Format::V2),
        (d.clone(), "hybrid", Format::Hybrid),
        (d.join("a.bin"), "v2", Format::V2),
        (d.join("a.bin"), "hybrid", Format::Hybrid),
    ] {
        let out = dir.path().join("lt.torrent");
        let o = Command::new("/usr/bin/python3")
            .args(["-c", LT_MAKE])
            .arg(&path)
            .arg(flag)
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let line = String::from_utf8(o.stdout).unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        let (lt_v1, lt_v2, lt_pieces) = (f[0], f[1], f[2].parse::<usize>().unwrap());
        let lt_total: u64 = f[3].parse().unwrap();
        let what = format!("{flag} of {}", path.display());

        let (_, mine) = ours(&path, format);
        let v2 = mine.v2.as_ref().expect("a v2 half");
        assert_eq!(metainfo::hex(&v2.info_hash), lt_v2, "{what}: v2 info-hash");
        match format {
            Format::Hybrid => {
                assert_eq!(mine.info_hash.to_hex(), lt_v1, "{what}: v1 info-hash");
                assert_eq!(mine.hash_kind(), HashKind::Hybrid);
            }
            _ => {
                assert_eq!(lt_v1, "-");
                assert_eq!(mine.info_hash.to_hex(), lt_v2[..40], "{what}: truncated");
                assert_eq!(mine.hash_kind(), HashKind::V2);
            }
        }
        assert_eq!(mine.num_pieces(), lt_pieces, "{what}: pieces");
        // The byte stream, pads included (libtorrent asks for pad bytes of a partial block).
        assert_eq!(mine.total_length, lt_total, "{what}: total length");

        // libtorrent's file parses to the same hashes and, checked against the data, passes.
        let theirs = metainfo::load(&out).unwrap();
        assert_eq!(theirs.info_hash, mine.info_hash, "{what}");
        assert_eq!(
            theirs.v2.as_ref().unwrap().info_hash,
            v2.info_hash,
            "{what}"
        );
        assert_eq!(theirs.num_pieces(), lt_pieces, "{what}");
        let v = verify(&out, path.parent().unwrap());
        assert!(
            v.contains(&format!("{lt_pieces} good, 0 bad")),
            "{what}: {v}"
        );
    }
}

fn verify(torrent: &Path, data: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_uringseed"))
        .args(["verify", "-q", "--torrent"])
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn verify_finds_the_piece_whose_merkle_node_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = write_dir(dir.path());
    for format in [Format::V2, Format::Hybrid] {
        let (bytes, t) = ours(&d, format);
        let file = dir.path().join("t.torrent");
        std::fs::write(&file, &bytes).unwrap();
        let v = verify(&file, dir.path());
        assert!(v.contains("8 total, 8 good, 0 bad"), "{format:?}: {v}");
        assert_eq!(t.num_pieces(), 8);
    }
    // `c` starts at piece 4 (after a.bin's four pieces); byte 40,000 lies in its second piece.
    let c = d.join("c");
    let mut data = std::fs::read(&c).unwrap();
    for format in [Format::V2, Format::Hybrid] {
        let (bytes, _) = ours(&d, format);
        let file = dir.path().join("t.torrent");
        std::fs::write(&file, &bytes).unwrap();
        data[40_000] ^= 1;
        std::fs::write(&c, &data).unwrap();
        let v = verify(&file, dir.path());
        data[40_000] ^= 1;
        std::fs::write(&c, &data).unwrap();
        assert!(v.contains("bad pieces: 5\n"), "{format:?}: {v}");
        assert!(v.contains("file d/c: 1 bad piece(s)"), "{format:?}: {v}");
    }
}

fn dict(v: &mut Value) -> &mut std::collections::HashMap<Vec<u8>, Value> {
    match v {
        Value::Dict(d) => d,
        _ => panic!("not a dict"),
    }
}

fn refused(v: &Value) -> String {
    let bytes = serde_bencode::to_bytes(v).unwrap();
    metainfo::parse(&bytes, "x.torrent")
        .unwrap_err()
        .to_string()
}

#[test]
fn torrents_whose_layers_roots_or_halves_disagree_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = write_dir(dir.path());
    let (bytes, _) = ours(&d, Format::Hybrid);
    let good: Value = serde_bencode::from_bytes(&bytes).unwrap();

    // A layer that does not hash to its root.
    let mut v = good.clone();
    if let Some(Value::Dict(layers)) = dict(&mut v).get_mut(&b"piece layers"[..]) {
        let layer = layers.values_mut().next().unwrap();
        if let Value::Bytes(b) = layer {
            b[0] ^= 1;
        }
    }
    let e = refused(&v);
    assert!(
        e.contains("field `piece layers`") && e.contains("does not hash"),
        "{e}"
    );

    // No layers at all.
    let mut v = good.clone();
    dict(&mut v).remove(&b"piece layers"[..]);
    let e = refused(&v);
    assert!(
        e.contains("field `piece layers`") && e.contains("no layer for"),
        "{e}"
    );

    // The v1 half lists another length for `c` than the file tree.
    let mut v = good.clone();
    let info = dict(dict(&mut v).get_mut(&b"info"[..]).unwrap());
    if let Some(Value::List(files)) = info.get_mut(&b"files"[..]) {
        dict(&mut files[2]).insert(b"length".to_vec(), Value::Int(69_999));
    }
    let e = refused(&v);
    assert!(e.contains("halves disagree"), "{e}");

    // Without its pad files the v1 half puts `c` off a piece boundary.
    let mut v = good.clone();
    let info = dict(dict(&mut v).get_mut(&b"info"[..]).unwrap());
    if let Some(Value::List(files)) = info.get_mut(&b"files"[..]) {
        files.retain(|f| !matches!(f, Value::Dict(d) if d.contains_key(&b"attr"[..])));
    }
    let e = refused(&v);
    assert!(e.contains("not on a piece boundary"), "{e}");

    // A root of the wrong size, and a version from the future.
    let (bytes, _) = ours(&d, Format::V2);
    let good: Value = serde_bencode::from_bytes(&bytes).unwrap();
    let mut v = good.clone();
    let info = dict(dict(&mut v).get_mut(&b"info"[..]).unwrap());
    info.insert(b"meta version".to_vec(), Value::Int(3));
    let e = refused(&v);
    assert!(e.contains("field `info.meta version`"), "{e}");
    let mut v = good;
    let info = dict(dict(&mut v).get_mut(&b"info"[..]).unwrap());
    let tree = dict(info.get_mut(&b"file tree"[..]).unwrap());
    let leaf = dict(
        dict(tree.get_mut(&b"c"[..]).unwrap())
            .get_mut(&b""[..])
            .unwrap(),
    );
    leaf.insert(b"pieces root".to_vec(), Value::Bytes(vec![0; 31]));
    let e = refused(&v);
    assert!(
        e.contains("field `info.file tree.c.pieces root`: 31 bytes"),
        "{e}"
    );
}
