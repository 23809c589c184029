//! `metainfo::parse` never panics; accepted torrents give a usable layout and magnet link
//! (`btih` for v1 and hybrids, `btmh` for v2-only); a v2 half gives merkle rows that answer a
//! piece-layer hash request for every file longer than one piece.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uringseed::metainfo::{self, HashKind};
use uringseed::wire::hashes::{Plan, Trees};
use uringseed::wire::message::HashRange;
use uringseed::storage::Layout;

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, x) in b.iter_mut().enumerate() {
        *x = data.get(at.wrapping_add(i)).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let Ok(t) = metainfo::parse(data, "fuzz") else {
        return;
    };
    assert!(t.piece_length > 0);
    assert_eq!(
        t.files.iter().map(|f| f.length).sum::<u64>(),
        t.total_length
    );
    assert_eq!(
        t.total_length.div_ceil(t.piece_length),
        t.num_pieces() as u64
    );
    let magnet = t.magnet();
    let scheme = match t.hash_kind() {
        HashKind::V2 => "magnet:?xt=urn:btmh:1220",
        HashKind::V1 | HashKind::Hybrid => "magnet:?xt=urn:btih:",
    };
    assert!(magnet.starts_with(scheme), "{magnet}");
    if let Some(v2) = &t.v2 {
        let trees = Trees::new(v2, t.piece_length);
        let height = (t.piece_length / 16384).trailing_zeros();
        for f in v2.files.iter().flatten().filter(|f| !f.layer.is_empty()).take(64) {
            let r = HashRange {
                root: f.root,
                base: height,
                index: 0,
                length: 2,
                proof_layers: 0,
            };
            let Ok(Plan::Nodes(nodes)) = trees.plan(&r) else {
                panic!("a piece-layer request of {:?} was refused or needs a read", f.root);
            };
            assert_eq!(&nodes[..32], &f.layer[0][..]);
        }
    }
    let layout = Layout::new(&t);
    assert_eq!(layout.num_pieces(), t.num_pieces());
    assert_eq!(layout.total_length(), t.total_length);
    // Piece sizes add up to the total.
    if t.num_pieces() <= 4096 {
        let sum: u64 = (0..t.num_pieces())
            .map(|i| layout.piece_size(i).unwrap())
            .sum();
        assert_eq!(sum, t.total_length);
    }
    assert!(layout.piece_size(t.num_pieces()).is_none());
    // A few block ranges, derived from the input bytes (from its end, where they vary most).
    let n = data.len();
    for k in 0..4usize {
        let at = n.saturating_sub(24 * (k + 1));
        let piece = (u64_at(data, at) % (t.num_pieces() as u64 + 2)) as usize;
        let begin = u64_at(data, at + 8) % (t.piece_length + 2);
        let len = match k {
            0 => 16384,
            1 => t.piece_length,
            _ => u64_at(data, at + 16) % (t.piece_length + 2),
        };
        let len = len
            .min(t.piece_length.saturating_sub(begin))
            .max(u64::from(k == 3));
        match layout.block_spans(piece, begin, len) {
            Ok(spans) => {
                let mut total = 0u64;
                for s in spans.take(100_000) {
                    let f = &layout.files()[s.file];
                    assert!(
                        s.len > 0 && s.file_offset + s.len <= f.length,
                        "{s:?} outside {f:?}"
                    );
                    total += s.len;
                }
                if t.files.len() <= 100_000 {
                    assert_eq!(
                        total, len,
                        "spans of ({piece}, {begin}, {len}) cover {total}"
                    );
                }
            }
            Err(_) => {
                let size = layout.piece_size(piece);
                assert!(size.is_none() || len == 0 || begin + len > size.unwrap());
            }
        }
    }
    for i in 0..t.files.len().min(64) {
        let r = layout.file_pieces(i);
        assert!(r.end <= t.num_pieces());
    }
});
