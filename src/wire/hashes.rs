//! BEP 52 hash requests (message 21), answered with `hashes` (22) or `hash reject` (23) from a
//! v2 torrent's piece layers.
//!
//! When a torrent goes live, the rows of each file's merkle tree from its piece layer up to its
//! root are built once ([`Trees::new`]); a request is then a bounds check and a copy. A request
//! names a file by its root, a layer (`base`, 0 being the 16 KiB blocks), a run of `length`
//! nodes starting at `index`, and `proof_layers`: the reply holds the run, then one uncle per
//! proof layer above the run's own subtree (BEP 52 omits the first `log2(length) - 1`, which the
//! run itself gives), nearest the root last; this is what libtorrent sends and checks.
//!
//! What is answered: the piece layer and the layers above it, for every file longer than one
//! piece (a shorter file's root is its only node, so nobody needs to ask). Block hashes are
//! refused: serving them would mean reading and hashing a piece for each request, and a seed
//! is asked for them only by a peer whose piece failed its check. A peer gets [`BURST`]
//! requests at once and [`PER_SEC`] a second after that; past them, and for anything outside
//! the tree, it gets a `hash reject`, never a dropped connection.
//!
//! It owns those rules and the rows; `peer` calls [`answer`]. Sans I/O: time is passed in.

use super::message::{self, HashRange, Message, HASH_RANGE_LEN};
use crate::merkle::{self, Hash};
use crate::metainfo::{FileHashes, InfoHash, V2Info};
use crate::reasons::HashReply;
use std::collections::HashMap;
use std::time::Instant;

/// Longest run of nodes answered (BEP 52: "SHOULD NOT be greater than 512"; libtorrent asks for
/// 512 at a time).
pub const MAX_LENGTH: u32 = 512;
/// Hash requests a peer may send at once.
pub const BURST: u64 = 64;
/// Hash requests a peer may send per second once its burst is spent.
pub const PER_SEC: u64 = 32;

/// A file's tree from its piece layer (`rows[0]`) to its root (the last row, one node). Rows
/// are not padded: a node past a row's end is the pad of its height.
#[derive(Debug)]
struct FileTree {
    rows: Vec<Vec<Hash>>,
}

/// The answerable part of a v2 torrent's trees.
#[derive(Debug)]
pub struct Trees {
    /// The 20-byte truncation of the v2 info-hash (handshakes, trackers, the DHT).
    pub info_hash: InfoHash,
    /// Layer of the piece nodes above the blocks: log2(piece length / 16 KiB).
    piece_height: u32,
    /// By root; None for a file of one piece or less.
    files: HashMap<Hash, Option<FileTree>>,
    /// `pads[h]`: the node over 2^h zero leaves.
    pads: Vec<Hash>,
}

impl Trees {
    /// Builds the rows above every file's piece layer (two SHA-256 of 64 bytes per piece at
    /// most). `piece_length` is a power of two of at least 16 KiB (checked at load).
    pub fn new(v2: &V2Info, piece_length: u64) -> Trees {
        Trees::build(v2.truncated(), piece_length, v2.files.iter().flatten())
    }

    /// [`Trees::new`] from the files' hashes themselves.
    pub fn build<'a>(
        info_hash: InfoHash,
        piece_length: u64,
        files: impl Iterator<Item = &'a FileHashes>,
    ) -> Trees {
        let piece_height = (piece_length / merkle::BLOCK).trailing_zeros();
        let mut pads = vec![merkle::pad(0)];
        for h in 1..64 {
            let below = pads[h - 1];
            pads.push(merkle::parent(&below, &below));
        }
        let mut by_root = HashMap::new();
        for f in files {
            let tree = (!f.layer.is_empty()).then(|| {
                let mut rows = vec![f.layer.clone()];
                let mut height = piece_height as usize;
                while rows[rows.len() - 1].len() > 1 {
                    let below = &rows[rows.len() - 1];
                    let next = below
                        .chunks(2)
                        .map(|c| merkle::parent(&c[0], c.get(1).unwrap_or(&pads[height])))
                        .collect();
                    rows.push(next);
                    height += 1;
                }
                FileTree { rows }
            });
            by_root.insert(f.root, tree);
        }
        Trees {
            info_hash,
            piece_height,
            files: by_root,
            pads,
        }
    }

    /// The nodes of a `hashes` reply to `r` (32 bytes each, run first, then the proof), or why
    /// it is refused.
    pub fn nodes(&self, r: &HashRange) -> Result<Vec<u8>, HashReply> {
        let tree = match self.files.get(&r.root) {
            None => return Err(HashReply::UnknownRoot),
            Some(None) => return Err(HashReply::NoPieceLayer),
            Some(Some(t)) => t,
        };
        let h = self.piece_height;
        if r.base < h {
            return Err(HashReply::BlockLayer);
        }
        // The root's layer; a file longer than one piece has at least two piece nodes.
        let top = h + (tree.rows.len() - 1) as u32;
        let width = |layer: u32| tree.rows[0].len().next_power_of_two() >> (layer - h);
        if !(2..=MAX_LENGTH).contains(&r.length)
            || !r.length.is_power_of_two()
            || r.index % r.length != 0
            || r.base >= top
            || u64::from(r.index) + u64::from(r.length) > width(r.base) as u64
            || r.proof_layers >= top - r.base
        {
            return Err(HashReply::BadRange);
        }
        let node = |layer: u32, at: usize| -> &Hash {
            let row = &tree.rows[(layer - h) as usize];
            row.get(at).unwrap_or(&self.pads[layer as usize])
        };
        let run = r.length.trailing_zeros();
        let mut out = Vec::with_capacity(32 * (r.length + r.proof_layers) as usize);
        for at in r.index..r.index + r.length {
            out.extend_from_slice(node(r.base, at as usize));
        }
        for up in 1..=r.proof_layers {
            if up >= run {
                let ancestor = (u64::from(r.index) >> up) as usize;
                out.extend_from_slice(node(r.base + up, ancestor ^ 1));
            }
        }
        Ok(out)
    }
}

/// A peer's allowance of hash requests: [`BURST`] at once, refilled at [`PER_SEC`].
#[derive(Debug)]
pub struct HashBudget {
    /// Thousandths of a request.
    milli: u64,
    at: Option<Instant>,
}

impl Default for HashBudget {
    fn default() -> Self {
        HashBudget {
            milli: BURST * 1000,
            at: None,
        }
    }
}

impl HashBudget {
    /// Takes one request's worth at `now`; false when none is left.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let ms = now.saturating_duration_since(at).as_millis();
            let gained = u64::try_from(ms)
                .unwrap_or(u64::MAX)
                .saturating_mul(PER_SEC);
            self.milli = self.milli.saturating_add(gained).min(BURST * 1000);
        }
        self.at = Some(now);
        if self.milli < 1000 {
            return false;
        }
        self.milli -= 1000;
        true
    }
}

/// Answers the hash request `r` into `out`: `hashes` if the torrent has v2 trees that hold the
/// range, the peer is within its budget and the reply fits in `room` bytes; else `hash reject`.
pub fn answer(
    trees: Option<&Trees>,
    budget: &mut HashBudget,
    now: Instant,
    r: &HashRange,
    room: usize,
    out: &mut Vec<u8>,
) -> HashReply {
    let result = if !budget.take(now) {
        Err(HashReply::Rate)
    } else {
        trees
            .ok_or(HashReply::UnknownRoot)
            .and_then(|t| t.nodes(r))
            .and_then(|nodes| {
                let size = 5 + HASH_RANGE_LEN + nodes.len();
                if size <= room {
                    Ok(nodes)
                } else {
                    Err(HashReply::Backlog)
                }
            })
    };
    match result {
        Ok(nodes) => {
            let reply = Message::Hashes {
                range: *r,
                hashes: &nodes,
            };
            message::encode(&reply, out);
            HashReply::Served
        }
        Err(why) => {
            message::encode(&Message::HashReject(*r), out);
            why
        }
    }
}

#[cfg(test)]
#[path = "hashes_tests.rs"]
mod tests;
