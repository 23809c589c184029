//! BitTorrent v2 (BEP 52) merkle trees: SHA-256 over 16 KiB blocks, pure functions only.
//!
//! A file's tree has one leaf per 16 KiB block (the last block may be short and is hashed as it
//! is); the leaf count is rounded up to a power of two with leaves of 32 zero bytes, and every
//! inner node is the SHA-256 of its two children. The file's `pieces root` is the tree's root; its
//! piece layer is the row whose nodes each cover one piece (`piece length / 16 KiB` leaves), the
//! last one padded like the rest. A file of at most one piece has no piece layer: its root covers
//! only its own blocks, rounded up to a power of two.
//!
//! It owns the arithmetic of those trees (leaves, roots, layers, padding) and reads nothing.

use sha2::{Digest, Sha256};

/// Bytes under one leaf.
pub const BLOCK: u64 = 16 << 10;

/// One node of a tree.
pub type Hash = [u8; 32];

/// The SHA-256 of one block's bytes (a leaf).
pub fn leaf(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// The node above `left` and `right`.
pub fn parent(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of a subtree of `2^height` zero leaves (what padding contributes at that height).
pub fn pad(height: u32) -> Hash {
    let mut h = [0u8; 32];
    for _ in 0..height {
        h = parent(&h, &h);
    }
    h
}

/// Number of blocks in `len` bytes.
pub fn blocks(len: u64) -> u64 {
    len.div_ceil(BLOCK)
}

/// The root over `nodes` at height `height` (each the root of `2^height` leaves), padded on the
/// right to `width` nodes (a power of two, at least `nodes.len()`) with [`pad`]`(height)`.
pub fn root_of(nodes: &[Hash], width: usize, height: u32) -> Hash {
    debug_assert!(width.is_power_of_two() && width >= nodes.len());
    let mut row: Vec<Hash> = nodes.to_vec();
    let mut filler = pad(height);
    let mut w = width;
    while w > 1 {
        let next: Vec<Hash> = row
            .chunks(2)
            .map(|c| parent(&c[0], c.get(1).unwrap_or(&filler)))
            .collect();
        row = next;
        filler = parent(&filler, &filler);
        w /= 2;
    }
    row.first().copied().unwrap_or(filler)
}

/// How wide (in leaves) the subtree is whose root the hash of one piece of a file of
/// `file_len` bytes is compared with: a whole piece for files longer than one piece, else the
/// file's own blocks rounded up to a power of two.
pub fn piece_width(file_len: u64, piece_length: u64) -> usize {
    if file_len > piece_length {
        (piece_length / BLOCK) as usize
    } else {
        (blocks(file_len).max(1) as usize).next_power_of_two()
    }
}

/// The root of a file's tree from its piece layer (`piece_length` a power of two, at least
/// [`BLOCK`]).
pub fn root_from_layer(layer: &[Hash], piece_length: u64) -> Hash {
    let height = (piece_length / BLOCK).trailing_zeros();
    root_of(layer, layer.len().next_power_of_two(), height)
}

/// Incremental hashing of one piece's bytes into leaves, then into the node that stands for the
/// piece (see [`piece_width`]). Bytes are fed in order; a block is hashed once 16 KiB of it have
/// arrived or at [`PieceHasher::finish`].
pub struct PieceHasher {
    leaves: Vec<Hash>,
    block: Sha256,
    in_block: u64,
}

impl Default for PieceHasher {
    fn default() -> Self {
        PieceHasher::new()
    }
}

impl PieceHasher {
    pub fn new() -> PieceHasher {
        PieceHasher {
            leaves: Vec::new(),
            block: Sha256::new(),
            in_block: 0,
        }
    }

    /// Feeds the next bytes of the piece's file data (never pad bytes).
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = (BLOCK - self.in_block).min(data.len() as u64) as usize;
            self.block.update(&data[..take]);
            self.in_block += take as u64;
            data = &data[take..];
            if self.in_block == BLOCK {
                self.leaves.push(self.block.finalize_reset().into());
                self.in_block = 0;
            }
        }
    }

    /// The piece's node over `width` leaves (a power of two, at least the leaves fed).
    pub fn finish(mut self, width: usize) -> Hash {
        if self.in_block > 0 {
            self.leaves.push(self.block.finalize_reset().into());
        }
        let width = width.max(self.leaves.len()).next_power_of_two();
        root_of(&self.leaves, width, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_root(data: &[u8], min_width: usize) -> Hash {
        let mut leaves: Vec<Hash> = data.chunks(BLOCK as usize).map(leaf).collect();
        let w = leaves.len().max(min_width).max(1).next_power_of_two();
        leaves.resize(w, [0; 32]);
        while leaves.len() > 1 {
            leaves = leaves.chunks(2).map(|c| parent(&c[0], &c[1])).collect();
        }
        leaves[0]
    }

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 16384) as u8).collect()
    }

    #[test]
    fn pad_is_the_root_of_zero_leaves() {
        assert_eq!(pad(0), [0; 32]);
        let z = [0u8; 32];
        assert_eq!(pad(2), parent(&parent(&z, &z), &parent(&z, &z)));
    }

    #[test]
    fn a_one_block_file_has_its_leaf_as_root() {
        let data = bytes(1000);
        let mut h = PieceHasher::new();
        h.update(&data);
        assert_eq!(h.finish(piece_width(1000, 1 << 20)), leaf(&data));
    }

    #[test]
    fn piece_nodes_and_layer_give_the_naive_root() {
        let piece_length = 64 << 10; // 4 blocks per piece
        for len in [
            1usize,
            16384,
            16385,
            65536,
            65537,
            3 * 65536 + 5000,
            5 * 65536,
        ] {
            let data = bytes(len);
            let width = piece_width(len as u64, piece_length);
            let nodes: Vec<Hash> = data
                .chunks(piece_length as usize)
                .map(|piece| {
                    let mut h = PieceHasher::new();
                    // Fed in uneven slices, as reads arrive.
                    for part in piece.chunks(5000) {
                        h.update(part);
                    }
                    h.finish(width)
                })
                .collect();
            let root = if len as u64 > piece_length {
                root_from_layer(&nodes, piece_length)
            } else {
                nodes[0]
            };
            assert_eq!(root, naive_root(&data, 1), "length {len}");
        }
    }
}
