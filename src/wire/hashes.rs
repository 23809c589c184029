//! BEP 52 hash requests (message 21), answered with `hashes` (22) or `hash reject` (23) from a
//! v2 torrent's piece layers, and below them from the data.
//!
//! When a torrent goes live, the rows of each file's merkle tree from its piece layer up to its
//! root are built once ([`Trees::new`]); a request at the piece layer or above is then a bounds
//! check and a copy. A request names a file by its root, a layer (`base`, 0 being the 16 KiB
//! blocks), a run of `length` nodes starting at `index`, and `proof_layers`: the reply holds the
//! run, then one uncle per proof layer above the run's own subtree (BEP 52 omits the first
//! `log2(length) - 1`, which the run itself gives), nearest the root last; this is what
//! libtorrent sends and checks.
//!
//! Below the piece layer (block hashes, which a peer asks for when a piece failed its check) the
//! nodes come from the data: the request becomes a [`LeafJob`] naming the stretch of the
//! torrent's byte stream that holds the pieces it covers (at most [`MAX_READ`] or one piece);
//! the I/O layer reads it and [`HashServer::finish`] hashes it, checks each piece against its
//! piece-layer node (data that changed since the check is refused, never sent as hashes) and
//! answers. A file of one piece or less has no piece layer and is not answered: its root is its
//! only node above the blocks, and nobody needs to ask.
//!
//! Budgets per peer: [`BURST`] requests at once and [`PER_SEC`] a second; of those, requests
//! that read data [`READ_BURST`] at once and [`READ_PER_SEC`] a second, one waiting at a time.
//! Past them, and for anything outside the tree, the peer gets a `hash reject`, never a dropped
//! connection. It owns those rules and the rows; `peer` feeds it. Sans I/O: time is passed in.

use super::message::{self, HashRange, Message, HASH_RANGE_LEN};
use crate::merkle::{self, Hash};
use crate::metainfo::{FileHashes, InfoHash, V2Info};
use crate::reasons::HashReply;
use std::collections::HashMap;
use std::time::Instant;

/// Longest run of nodes answered (BEP 52: "SHOULD NOT be greater than 512"; libtorrent asks for
/// 512 at a time).
pub const MAX_LENGTH: u32 = 512;
/// Hash requests a peer may send at once, and per second once its burst is spent.
pub const BURST: u64 = 64;
pub const PER_SEC: u64 = 32;
/// Requests below the piece layer (each reads and hashes data) at once, and per second.
pub const READ_BURST: u64 = 4;
pub const READ_PER_SEC: u64 = 1;
/// Most bytes one request below the piece layer may read (or one piece, if larger): 512 blocks.
pub const MAX_READ: u64 = 512 * merkle::BLOCK;

/// A file's tree from its piece layer (`rows[0]`) to its root (the last row, one node). Rows
/// are not padded: a node past a row's end is the pad of its height.
#[derive(Debug)]
struct FileTree {
    rows: Vec<Vec<Hash>>,
    /// Where the file starts in the torrent's byte stream, and its length.
    offset: u64,
    length: u64,
}

/// The answerable part of a v2 torrent's trees.
#[derive(Debug)]
pub struct Trees {
    /// The 20-byte truncation of the v2 info-hash (handshakes, trackers, the DHT).
    pub info_hash: InfoHash,
    piece_length: u64,
    /// Layer of the piece nodes above the blocks: log2(piece length / 16 KiB).
    piece_height: u32,
    /// By root; None for a file of one piece or less.
    files: HashMap<Hash, Option<FileTree>>,
    /// `pads[h]`: the node over 2^h zero leaves.
    pads: Vec<Hash>,
}

/// A request below the piece layer, waiting for the bytes `start..start + len` of the
/// torrent's stream (whole pieces of one file, the last one possibly short).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafJob {
    pub range: HashRange,
    pub start: u64,
    pub len: usize,
    /// The first piece read, counted within the file.
    first: u64,
}

/// What a request needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// The reply's nodes, at hand.
    Nodes(Vec<u8>),
    /// Data to read first.
    Read(LeafJob),
}

impl Trees {
    /// Builds the rows above every file's piece layer (two SHA-256 of 64 bytes per piece at
    /// most). `piece_length` is a power of two of at least 16 KiB (checked at load).
    pub fn new(v2: &V2Info, piece_length: u64) -> Trees {
        let files = v2
            .files_at()
            .map(|(first, f)| (first as u64 * piece_length, f));
        Trees::build(v2.truncated(), piece_length, files)
    }

    /// [`Trees::new`] from the files' hashes and where each starts in the byte stream.
    pub fn build<'a>(
        info_hash: InfoHash,
        piece_length: u64,
        files: impl Iterator<Item = (u64, &'a FileHashes)>,
    ) -> Trees {
        let piece_height = (piece_length / merkle::BLOCK).trailing_zeros().min(63);
        let mut pads = vec![merkle::pad(0)];
        for h in 1..64 {
            let below = pads[h - 1];
            pads.push(merkle::parent(&below, &below));
        }
        let mut by_root = HashMap::new();
        for (offset, f) in files {
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
                FileTree {
                    rows,
                    offset,
                    length: f.length,
                }
            });
            by_root.insert(f.root, tree);
        }
        Trees {
            info_hash,
            piece_length,
            piece_height,
            files: by_root,
            pads,
        }
    }

    /// The file `r` names and its root's layer, if `r` lies inside that file's tree.
    fn check(&self, r: &HashRange) -> Result<(&FileTree, u32), HashReply> {
        let tree = match self.files.get(&r.root) {
            None => return Err(HashReply::UnknownRoot),
            Some(None) => return Err(HashReply::NoPieceLayer),
            Some(Some(t)) => t,
        };
        let h = self.piece_height;
        // A file longer than one piece has at least two piece nodes.
        let top = h + (tree.rows.len() - 1) as u32;
        let width = (tree.rows[0].len().next_power_of_two() as u64) << h;
        if !(2..=MAX_LENGTH).contains(&r.length)
            || !r.length.is_power_of_two()
            || r.index % r.length != 0
            || r.base >= top
            || u64::from(r.index) + u64::from(r.length) > width >> r.base
            || r.proof_layers >= top - r.base
        {
            return Err(HashReply::BadRange);
        }
        Ok((tree, top))
    }

    /// What answering `r` takes: its nodes (the piece layer or above), or a read.
    pub fn plan(&self, r: &HashRange) -> Result<Plan, HashReply> {
        let (tree, _) = self.check(r)?;
        let h = self.piece_height;
        if r.base >= h {
            return Ok(Plan::Nodes(self.reply(tree, r, &|_, _| None)));
        }
        // The pieces the run covers (one, if it lies inside a piece), those of the file only.
        let (down, pl) = (h - r.base, self.piece_length);
        let first = u64::from(r.index) >> down;
        let end = (u64::from(r.index) + u64::from(r.length)).div_ceil(1 << down);
        let start = (first * pl).min(tree.length);
        let stop = (end * pl).min(tree.length);
        if start == stop {
            // Past the file's end: every node is a pad.
            return Ok(Plan::Nodes(self.reply(tree, r, &|_, _| None)));
        }
        if stop - start > MAX_READ.max(pl) {
            return Err(HashReply::BadRange);
        }
        Ok(Plan::Read(LeafJob {
            range: *r,
            start: tree.offset + start,
            len: (stop - start) as usize,
            first,
        }))
    }

    /// The reply to a [`LeafJob`] from its bytes: every piece's subtree is rebuilt from 16 KiB
    /// leaves and must equal its piece-layer node.
    pub fn finish(&self, job: &LeafJob, data: &[u8]) -> Result<Vec<u8>, HashReply> {
        let (tree, _) = self.check(&job.range)?;
        if data.len() != job.len {
            return Err(HashReply::Unavailable);
        }
        let h = self.piece_height;
        let mut pieces = Vec::new();
        for (k, bytes) in data.chunks(self.piece_length as usize).enumerate() {
            let layers = subtree(bytes, h);
            let want = tree.rows[0].get(job.first as usize + k);
            if want != Some(&layers[h as usize][0]) {
                return Err(HashReply::Unavailable);
            }
            pieces.push(layers);
        }
        // A node below the piece layer: from the piece read, or a pad past the file's end.
        let lookup = |layer: u32, at: u64| -> Option<Hash> {
            let piece = at >> (h - layer);
            let within = (at - (piece << (h - layer))) as usize;
            let got = piece
                .checked_sub(job.first)
                .and_then(|k| pieces.get(k as usize));
            Some(got.map_or(self.pads[layer as usize], |p| p[layer as usize][within]))
        };
        Ok(self.reply(tree, &job.range, &lookup))
    }

    /// The run, then the uncles; nodes below the piece layer from `below(layer, index)`.
    fn reply(
        &self,
        tree: &FileTree,
        r: &HashRange,
        below: &dyn Fn(u32, u64) -> Option<Hash>,
    ) -> Vec<u8> {
        let h = self.piece_height;
        let node = |layer: u32, at: u64| -> Hash {
            if layer < h {
                return below(layer, at).unwrap_or(self.pads[layer as usize]);
            }
            let row = &tree.rows[(layer - h) as usize];
            *row.get(at as usize).unwrap_or(&self.pads[layer as usize])
        };
        let run = r.length.trailing_zeros();
        let mut out = Vec::with_capacity(32 * (r.length + r.proof_layers) as usize);
        for at in r.index..r.index + r.length {
            out.extend_from_slice(&node(r.base, at.into()));
        }
        for up in (1..=r.proof_layers).filter(|&up| up >= run) {
            let ancestor = u64::from(r.index) >> up;
            out.extend_from_slice(&node(r.base + up, ancestor ^ 1));
        }
        out
    }
}

/// Every layer of one piece's subtree from its bytes: 16 KiB leaves (the last may be short),
/// padded with zero leaves to 2^height, up to the piece's node (`layers[height][0]`).
fn subtree(bytes: &[u8], height: u32) -> Vec<Vec<Hash>> {
    let mut leaves: Vec<Hash> = bytes
        .chunks(merkle::BLOCK as usize)
        .map(merkle::leaf)
        .collect();
    leaves.resize(1 << height, [0; 32]);
    let mut layers = vec![leaves];
    while layers[layers.len() - 1].len() > 1 {
        let below = &layers[layers.len() - 1];
        let up = below
            .chunks(2)
            .map(|c| merkle::parent(&c[0], &c[1]))
            .collect();
        layers.push(up);
    }
    layers
}

/// An allowance of requests: `burst` at once, refilled at `per_sec`.
#[derive(Debug)]
pub struct HashBudget {
    /// Thousandths of a request.
    milli: u64,
    burst: u64,
    per_sec: u64,
    at: Option<Instant>,
}

impl HashBudget {
    pub fn new(burst: u64, per_sec: u64) -> HashBudget {
        HashBudget {
            milli: burst * 1000,
            burst,
            per_sec,
            at: None,
        }
    }

    /// Takes one request's worth at `now`; false when none is left.
    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let ms = now.saturating_duration_since(at).as_millis();
            let gained = u64::try_from(ms)
                .unwrap_or(u64::MAX)
                .saturating_mul(self.per_sec);
            self.milli = self.milli.saturating_add(gained).min(self.burst * 1000);
        }
        self.at = Some(now);
        if self.milli < 1000 {
            return false;
        }
        self.milli -= 1000;
        true
    }
}

/// One peer's side of hash requests: its budgets and the read it waits for.
#[derive(Debug)]
pub struct HashServer {
    budget: HashBudget,
    reads: HashBudget,
    job: Option<LeafJob>,
}

impl Default for HashServer {
    fn default() -> Self {
        HashServer {
            budget: HashBudget::new(BURST, PER_SEC),
            reads: HashBudget::new(READ_BURST, READ_PER_SEC),
            job: None,
        }
    }
}

/// Appends `hashes` for `r` if it fits in `room`, else `hash reject`.
fn send(
    r: &HashRange,
    nodes: Result<Vec<u8>, HashReply>,
    room: usize,
    out: &mut Vec<u8>,
) -> HashReply {
    let nodes = nodes.and_then(|n| {
        if 5 + HASH_RANGE_LEN + n.len() <= room {
            Ok(n)
        } else {
            Err(HashReply::Backlog)
        }
    });
    match nodes {
        Ok(n) => {
            message::encode(
                &Message::Hashes {
                    range: *r,
                    hashes: &n,
                },
                out,
            );
            HashReply::Served
        }
        Err(why) => {
            message::encode(&Message::HashReject(*r), out);
            why
        }
    }
}

impl HashServer {
    /// Handles the hash request `r`: `hashes` or `hash reject` into `out` (at most `room`
    /// bytes), or None when it waits for a read ([`HashServer::take_job`]).
    pub fn handle(
        &mut self,
        trees: Option<&Trees>,
        now: Instant,
        r: &HashRange,
        room: usize,
        out: &mut Vec<u8>,
    ) -> Option<HashReply> {
        let plan = if self.budget.take(now) {
            trees.ok_or(HashReply::UnknownRoot).and_then(|t| t.plan(r))
        } else {
            Err(HashReply::Rate)
        };
        let nodes = match plan {
            Ok(Plan::Read(job)) if self.job.is_none() && self.reads.take(now) => {
                self.job = Some(job);
                return None;
            }
            Ok(Plan::Read(_)) => Err(HashReply::Rate),
            Ok(Plan::Nodes(n)) => Ok(n),
            Err(why) => Err(why),
        };
        Some(send(r, nodes, room, out))
    }

    /// The read a request below the piece layer waits for, if any (taken once).
    pub fn take_job(&mut self) -> Option<LeafJob> {
        self.job.take()
    }

    /// Answers a taken job from its bytes (None: they could not be read).
    pub fn finish(
        trees: Option<&Trees>,
        job: &LeafJob,
        data: Option<&[u8]>,
        room: usize,
        out: &mut Vec<u8>,
    ) -> HashReply {
        let nodes = match (trees, data) {
            (Some(t), Some(d)) => t.finish(job, d),
            _ => Err(HashReply::Unavailable),
        };
        send(&job.range, nodes, room, out)
    }
}

#[cfg(test)]
#[path = "hashes_tests.rs"]
mod tests;
