//! Storage layout checked against a brute-force byte-by-byte model, and the data-directory check
//! and piece hasher against files written by the test.

use proptest::prelude::*;
use sha1::{Digest, Sha1};
use std::sync::atomic::AtomicU64;
use uringseed::metainfo::{FileEntry, InfoHash, Torrent};
use uringseed::storage::files::DataFiles;
use uringseed::storage::hasher::{self, Access};
use uringseed::storage::{Layout, RangeError};

fn torrent(files: &[(u64, bool)], piece_length: u64) -> Torrent {
    let total: u64 = files.iter().map(|f| f.0).sum();
    Torrent {
        info_hash: InfoHash([0; 20]),
        name: "root".into(),
        piece_length,
        piece_hashes: vec![[0; 20]; total.div_ceil(piece_length) as usize],
        files: files
            .iter()
            .enumerate()
            .map(|(i, &(length, pad))| FileEntry {
                path: vec![format!("f{i}")],
                length,
                pad,
            })
            .collect(),
        single_file: false,
        total_length: total,
        private: false,
        source: None,
        announce: None,
        trackers: vec![],
        comment: None,
        created_by: None,
        creation_date: None,
        info_bytes: Vec::new(),
        v2: None,
    }
}

/// For every byte of the torrent stream: (file index, offset in file).
fn model(files: &[(u64, bool)]) -> Vec<(usize, u64)> {
    let mut v = Vec::new();
    for (i, &(len, _)) in files.iter().enumerate() {
        for off in 0..len {
            v.push((i, off));
        }
    }
    v
}

fn files_strategy() -> impl Strategy<Value = Vec<(u64, bool)>> {
    prop::collection::vec(
        prop_oneof![3 => (1u64..5000, Just(false)), 1 => Just((0u64, false)), 1 => (1u64..3000, Just(true))],
        1..8,
    )
    .prop_filter("non-empty torrent", |f| f.iter().any(|x| x.0 > 0))
}

proptest! {
    #[test]
    fn block_spans_match_brute_force(
        files in files_strategy(),
        piece_length in 1u64..6000,
        picks in prop::collection::vec((any::<u32>(), any::<u32>(), any::<u32>()), 20),
    ) {
        let t = torrent(&files, piece_length);
        let layout = Layout::new(&t);
        let bytes = model(&files);
        prop_assert_eq!(layout.num_pieces() as u64, t.total_length.div_ceil(piece_length));
        for (p, b, l) in picks {
            let piece = p as usize % (layout.num_pieces() + 1);
            let Some(size) = layout.piece_size(piece) else {
                prop_assert_eq!(piece, layout.num_pieces());
                prop_assert_eq!(layout.block_spans(piece, 0, 1).err(), Some(RangeError::PieceOutOfRange));
                continue;
            };
            let begin = u64::from(b) % size;
            let len = 1 + u64::from(l) % (size - begin);
            let spans: Vec<_> = layout.block_spans(piece, begin, len).unwrap().collect();
            let mut flat = Vec::new();
            for s in &spans {
                prop_assert!(s.len > 0);
                prop_assert_eq!(s.pad, files[s.file].1);
                prop_assert!(s.file_offset + s.len <= files[s.file].0);
                flat.extend((0..s.len).map(|k| (s.file, s.file_offset + k)));
            }
            let start = (piece as u64 * piece_length + begin) as usize;
            prop_assert_eq!(&flat[..], &bytes[start..start + len as usize]);
            // One past the end of the piece, and zero length, are refused.
            prop_assert_eq!(layout.block_spans(piece, begin, size - begin + 1).err(), Some(RangeError::BeyondPiece));
            prop_assert_eq!(layout.block_spans(piece, begin, 0).err(), Some(RangeError::ZeroLength));
        }
        for (i, &(len, _)) in files.iter().enumerate() {
            let r = layout.file_pieces(i);
            let want: Vec<usize> = (0..layout.num_pieces())
                .filter(|&p| bytes.iter().enumerate().any(|(at, &(f, _))| f == i && at as u64 / piece_length == p as u64))
                .collect();
            prop_assert_eq!(r.collect::<Vec<_>>(), want, "file {} of {} bytes", i, len);
        }
    }
}

#[test]
fn huge_begin_does_not_overflow() {
    let layout = Layout::new(&torrent(&[(100, false)], 64));
    assert_eq!(
        layout.block_spans(0, u64::MAX, 2).err(),
        Some(RangeError::BeyondPiece)
    );
    assert_eq!(layout.piece_size(1), Some(36));
}

#[test]
fn opening_data_names_missing_and_wrong_sized_files() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent(
        &[(10, false), (5, true), (7, false), (0, false), (3, false)],
        16,
    );
    let layout = Layout::new(&t);
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("f0"), [1u8; 10]).unwrap();
    std::fs::write(root.join("f2"), [2u8; 6]).unwrap();
    std::fs::write(root.join("f3"), []).unwrap();
    std::fs::create_dir(root.join("f4")).unwrap();
    let problems = DataFiles::open(&layout, dir.path()).problems();
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 2, "{text:?}");
    assert!(
        text[0].ends_with("root/f2: size is 6 bytes, torrent says 7"),
        "{text:?}"
    );
    assert!(
        text[1].ends_with("root/f4: is not a regular file"),
        "{text:?}"
    );
    std::fs::remove_file(root.join("f0")).unwrap();
    assert!(DataFiles::open(&layout, dir.path()).problems()[0]
        .to_string()
        .ends_with("root/f0: missing"));
}

#[test]
fn hasher_matches_sha1_of_stream_and_isolates_unreadable_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        (40_000u64, false),
        (3_000, true),
        (0, false),
        (70_001, false),
        (9, false),
    ];
    let t = torrent(&files, 16384);
    let layout = Layout::new(&t);
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mut stream = Vec::new();
    for (i, &(len, pad)) in files.iter().enumerate() {
        let data: Vec<u8> = if pad {
            vec![0; len as usize]
        } else {
            (0..len).map(|k| (k * 7 + i as u64) as u8).collect()
        };
        if !pad {
            std::fs::write(root.join(format!("f{i}")), &data).unwrap();
        }
        stream.extend(data);
    }
    for (threads, access) in [(1, Access::Pread), (3, Access::Pread), (2, Access::Mmap)] {
        let progress = AtomicU64::new(0);
        let got = hasher::hash_pieces(&layout, dir.path(), access, threads, &progress);
        assert_eq!(progress.into_inner(), t.total_length);
        for (p, chunk) in stream.chunks(16384).enumerate() {
            let want: [u8; 20] = Sha1::digest(chunk).into();
            assert_eq!(got[p].as_ref().unwrap(), &want, "piece {p}");
        }
    }
    // Without the last file only the last piece (which holds it) is unreadable.
    std::fs::remove_file(root.join("f4")).unwrap();
    for access in [Access::Pread, Access::Mmap] {
        let got = hasher::hash_pieces(&layout, dir.path(), access, 2, &AtomicU64::new(0));
        let last = got.len() - 1;
        assert!(got[..last].iter().all(Result::is_ok));
        assert!(
            got[last].as_ref().unwrap_err().contains("f4"),
            "{:?}",
            got[last]
        );
    }
    // A file shorter than the torrent says fails only its pieces, in both modes.
    std::fs::write(root.join("f0"), [0u8; 100]).unwrap();
    for access in [Access::Pread, Access::Mmap] {
        let got = hasher::hash_pieces(&layout, dir.path(), access, 2, &AtomicU64::new(0));
        assert!(
            got[0].is_err() && got[1].is_err() && got[2].is_err(),
            "{access:?}"
        );
        assert!(got[3].is_ok(), "{access:?}: {:?}", got[3]);
    }
}
