//! Test data (deterministic bytes, file trees), info-hashes from hex, and Prometheus samples.

use std::path::{Path, PathBuf};

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Writes a multi-file tree under `parent/name`: nested dirs, an empty file, odd sizes.
pub fn write_tree(parent: &Path, name: &str) -> PathBuf {
    let root = parent.join(name);
    let files: &[(&str, usize)] = &[
        ("a.bin", 300_001),
        ("sub/b.txt", 17),
        ("sub/deeper/c.dat", 65_536),
        ("zero", 0),
        ("z-last.bin", 40_000),
    ];
    for (i, (rel, len)) in files.iter().enumerate() {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, pseudo_random(*len, i as u64 + 1)).unwrap();
    }
    root
}

/// The value of one Prometheus sample, e.g. `uringseed_uploaded_bytes_total{type="payload"}`.
pub fn sample(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

/// An info-hash from its 40 hex characters.
pub fn hex_hash(hex: &str) -> uringseed::metainfo::InfoHash {
    let mut ih = [0u8; 20];
    for (i, b) in ih.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    uringseed::metainfo::InfoHash(ih)
}

/// The block a reject or piece message's payload names (index, begin and, for a reject, length).
pub fn block_of(payload: &[u8]) -> uringseed::wire::message::Block {
    let be = |i: usize| u32::from_be_bytes(payload[i..i + 4].try_into().unwrap());
    uringseed::wire::message::Block {
        index: be(0),
        begin: be(4),
        length: be(8),
    }
}
