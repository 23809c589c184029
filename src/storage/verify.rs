//! Checking a torrent's data: which pieces may be served, hashing only what a resume record
//! cannot vouch for.
//!
//! It reads only through the [`super::files::DataFiles`] it is given and writes nothing (the caller
//! saves the record).

use super::files::DataFiles;
use super::hasher::{self, Access};
use super::layout::{DataProblem, Layout};
use super::resume::{FileStamp, ResumeRecord};
use crate::bitfield;
use crate::metainfo::Torrent;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What a check found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Pieces that may be served (BEP 3 layout).
    pub have: Vec<u8>,
    /// Pieces hashed in this check (the rest were trusted from the resume record or lie in
    /// missing or wrong-sized files).
    pub hashed_pieces: usize,
    pub hashed_bytes: u64,
    /// Pieces that may not be served, ascending.
    pub bad_pieces: Vec<usize>,
    /// Files missing or of the wrong size.
    pub problems: Vec<DataProblem>,
    /// The record to save for the next start.
    pub record: ResumeRecord,
}

impl CheckReport {
    /// For each file with bad pieces: (file index, number of its pieces that are bad).
    /// Linear in the files (a binary search of the ascending bad pieces per file).
    pub fn bad_files(&self, layout: &Layout) -> Vec<(usize, usize)> {
        let bad = &self.bad_pieces;
        (0..layout.files().len())
            .filter(|&i| !layout.files()[i].pad)
            .filter_map(|i| {
                let r = layout.file_pieces(i);
                let n = bad.partition_point(|&p| p < r.end) - bad.partition_point(|&p| p < r.start);
                (n > 0).then_some((i, n))
            })
            .collect()
    }
}

/// Checks `torrent`'s data as opened in `data` (the descriptors the server then serves from).
/// Pieces touching a missing or wrong-sized file are bad without hashing; pieces whose files
/// all carry the same stamps as in `previous` take the record's verdict; every other piece is
/// hashed. `progress` counts bytes dealt with; once `cancel` is set the check ends early and
/// the pieces not hashed yet count as bad (the caller throws such a report away).
pub fn check(
    torrent: &Torrent,
    layout: &Layout,
    data: &DataFiles,
    previous: Option<&ResumeRecord>,
    threads: usize,
    progress: &AtomicU64,
    cancel: &AtomicBool,
) -> CheckReport {
    let files = layout.files();
    // Stamps as the files were opened: a file changed while it is being hashed gets a newer
    // stamp than this one, so the next start hashes it again.
    let stamps: Vec<Option<FileStamp>> = (0..files.len()).map(|i| data.stamp(i)).collect();
    let problems = data.problems();
    let mut unusable = vec![false; files.len()];
    for p in &problems {
        unusable[p.file] = true;
    }
    let unchanged: Vec<bool> = (0..files.len())
        .map(|i| match previous {
            Some(r) => files[i].pad || (stamps[i].is_some() && stamps[i] == r.files[i]),
            None => false,
        })
        .collect();

    let n = layout.num_pieces();
    let mut have = vec![0u8; n.div_ceil(8)];
    let mut bad = Vec::new();
    let mut to_hash = Vec::new();
    for p in 0..n {
        let r = layout.piece_range(p).expect("piece in range");
        let touched: Vec<usize> = layout
            .spans(r.start, r.end - r.start)
            .map(|s| s.file)
            .collect();
        if touched.iter().any(|&f| unusable[f]) {
            bad.push(p);
            progress.fetch_add(r.end - r.start, Ordering::Relaxed);
        } else if let Some(rec) = previous.filter(|_| touched.iter().all(|&f| unchanged[f])) {
            if bitfield::get(&rec.have, p) {
                bitfield::set(&mut have, p);
            } else {
                bad.push(p);
            }
            progress.fetch_add(r.end - r.start, Ordering::Relaxed);
        } else {
            to_hash.push(p);
        }
    }
    let kind = torrent.hash_kind();
    let want = hasher::Want {
        sha1: kind.sha1(),
        v2: kind.sha256(),
    };
    let digests = hasher::hash_kinds(
        layout,
        data,
        Access::Mmap,
        threads,
        progress,
        &to_hash,
        cancel,
        want,
    );
    let mut hashed_bytes = 0;
    for (&p, d) in to_hash.iter().zip(&digests) {
        hashed_bytes += layout.piece_size(p).unwrap_or(0);
        if d.as_ref()
            .is_ok_and(|d| torrent.piece_matches(p, d.sha1.as_ref(), d.v2.as_ref()))
        {
            bitfield::set(&mut have, p);
        } else {
            bad.push(p);
        }
    }
    bad.sort_unstable();
    let record = ResumeRecord {
        info_hash: torrent.info_hash,
        files: stamps,
        have: have.clone(),
        hash: kind,
    };
    CheckReport {
        have,
        hashed_pieces: to_hash.len(),
        hashed_bytes,
        bad_pieces: bad,
        problems,
        record,
    }
}
