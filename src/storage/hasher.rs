//! Parallel, batched hashing of a torrent's pieces from the data directory: SHA-1 (v1), the
//! piece's SHA-256 merkle node (v2, [`crate::merkle`]), or both from the same reads (hybrids).
//!
//! Worker threads take batches of consecutive pieces (at least [`BATCH_BYTES`] each) from a shared
//! counter and hash each piece with the `sha1` and `sha2` crates (SHA-NI where the CPU has it,
//! detected at run time), reading either
//! straight from a guarded read-only mapping or with sequential 256 KiB `pread`s. Pad files are
//! hashed as zeros without touching the disk. An unreadable file only costs the pieces that touch
//! it. Used by `make`, `verify` and the server's startup check.
//!
//! It hashes what it is given and decides nothing about which pieces may be served
//! ([`super::verify`] does).

use super::files::DataFiles;
use super::layout::Layout;
use super::mapped::{self, GuardedMap};
use super::pool::OpenFile;
use crate::merkle::{self, PieceHasher};
use sha1::{Digest, Sha1};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes read and hashed per batch by one thread.
pub const BATCH_BYTES: u64 = 4 << 20;

/// Bytes read per `pread`: large enough for few syscalls, small enough to stay in L2 cache.
pub const CHUNK_BYTES: usize = 256 << 10;

/// How file bytes reach the hasher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `pread` into a small buffer (a copy out of the page cache).
    Pread,
    /// Hash straight from a read-only mapping without a copy (about 25% faster per core). A
    /// file that shrinks while mapped reads as zeros there ([`super::mapped`]) and the pieces
    /// hashed meanwhile are reported unreadable, so this is safe inside a running server too.
    Mmap,
}

/// Where one file's bytes come from during a hash.
enum Source {
    Read(Arc<OpenFile>),
    Map(GuardedMap),
    Unusable(String),
}

/// Files smaller than this are read, not mapped (a mapping per small file costs more than the
/// copy it saves).
const MAP_MIN_BYTES: u64 = 1 << 20;

/// One hashing thread's open file: the file of the span it hashes now, replaced when a span
/// lies in another, so a thread holds one descriptor (and at most one mapping) at a time
/// however many files the torrent has.
struct Cursor<'a> {
    files: &'a DataFiles,
    access: Access,
    current: Option<(usize, Source)>,
}

impl Cursor<'_> {
    fn source(&mut self, layout: &Layout, i: usize) -> &Source {
        if self.current.as_ref().is_none_or(|(f, _)| *f != i) {
            let src = match self.files.file(i) {
                Err(why) => Source::Unusable(format!("{}: {why}", self.files.path(i).display())),
                Ok(open) => {
                    let len = layout.files()[i].length;
                    if self.access == Access::Pread || len < MAP_MIN_BYTES {
                        Source::Read(open)
                    } else {
                        // No mapping to be had (the guard's slots, the map count): read instead.
                        GuardedMap::new(open.file()).map_or(Source::Read(open), Source::Map)
                    }
                }
            };
            self.current = Some((i, src));
        }
        &self.current.as_ref().expect("just set").1
    }
}

/// Result of hashing one piece: its SHA-1, or why its bytes could not be read.
pub type PieceDigest = Result<[u8; 20], String>;

/// Which digests to compute per piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub sha1: bool,
    pub v2: bool,
}

/// The digests of one piece, as asked for in [`Want`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digests {
    pub sha1: Option<[u8; 20]>,
    /// The merkle node over the piece's blocks (width as [`merkle::piece_width`] says for the
    /// one file the piece holds).
    pub v2: Option<merkle::Hash>,
}

/// Number of hashing threads to use for `requested` (0 means one per available core).
pub fn thread_count(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Hashes every piece of `layout` from the files under `data_dir` on `threads` threads.
/// `progress` is increased by the number of bytes hashed as work completes.
pub fn hash_pieces(
    layout: &Layout,
    data_dir: &Path,
    access: Access,
    threads: usize,
    progress: &AtomicU64,
) -> Vec<PieceDigest> {
    let all: Vec<usize> = (0..layout.num_pieces()).collect();
    let files = DataFiles::open(layout, data_dir);
    hash_files(
        layout,
        &files,
        access,
        threads,
        progress,
        &all,
        &AtomicBool::new(false),
    )
}

/// Hashes the pieces listed in `pieces` (ascending) from `files`; results are in the same
/// order. Once `cancel` is set, the pieces not hashed yet come back as errors.
pub fn hash_files(
    layout: &Layout,
    files: &DataFiles,
    access: Access,
    threads: usize,
    progress: &AtomicU64,
    pieces: &[usize],
    cancel: &AtomicBool,
) -> Vec<PieceDigest> {
    let want = Want {
        sha1: true,
        v2: false,
    };
    hash_kinds(
        layout, files, access, threads, progress, pieces, cancel, want,
    )
    .into_iter()
    .map(|d| d.map(|d| d.sha1.expect("asked for")))
    .collect()
}

/// As [`hash_files`], computing the digests `want` names.
#[allow(clippy::too_many_arguments)]
pub fn hash_kinds(
    layout: &Layout,
    files: &DataFiles,
    access: Access,
    threads: usize,
    progress: &AtomicU64,
    pieces: &[usize],
    cancel: &AtomicBool,
    want: Want,
) -> Vec<Result<Digests, String>> {
    let n = pieces.len();
    if n == 0 {
        // A fast-resume check that trusts every piece: no thread to start and join.
        return Vec::new();
    }
    let per_batch = (BATCH_BYTES / layout.piece_length()).max(1) as usize;
    let batches = n.div_ceil(per_batch);
    let next = AtomicUsize::new(0);
    let results = Mutex::new(vec![Err(String::from("not hashed")); n]);
    let threads = thread_count(threads).clamp(1, batches.max(1));

    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = vec![0u8; CHUNK_BYTES];
                let mut local = Vec::with_capacity(per_batch);
                let mut cursor = Cursor {
                    files,
                    access,
                    current: None,
                };
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches || cancel.load(Ordering::Relaxed) {
                        break;
                    }
                    let batch = &pieces[b * per_batch..((b + 1) * per_batch).min(n)];
                    local.clear();
                    let mut bytes = 0;
                    for &p in batch {
                        let r = layout.piece_range(p).expect("piece in range");
                        bytes += r.end - r.start;
                        local.push(hash_range(
                            layout,
                            &mut cursor,
                            r.start,
                            r.end - r.start,
                            &mut buf,
                            want,
                        ));
                    }
                    let mut all = results.lock().unwrap_or_else(|e| e.into_inner());
                    for (i, digest) in local.drain(..).enumerate() {
                        all[b * per_batch + i] = digest;
                    }
                    drop(all);
                    progress.fetch_add(bytes, Ordering::Relaxed);
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Digests of `len` torrent bytes from `start`, read in chunks of `buf`'s size. Chunks small
/// enough to stay in the CPU cache between the read and the hash are markedly faster than reading
/// a whole batch first and hashing it from memory. The v2 node covers only the bytes of the one
/// file the piece holds (pad bytes are not part of any merkle tree).
fn hash_range(
    layout: &Layout,
    files: &mut Cursor<'_>,
    start: u64,
    len: u64,
    buf: &mut [u8],
    want: Want,
) -> Result<Digests, String> {
    let faults = mapped::faults();
    let mut sha = want.sha1.then(Sha1::new);
    let mut tree = want.v2.then(PieceHasher::new);
    let mut tree_file = None;
    for span in layout.spans(start, len) {
        if want.v2 && !span.pad && span.len > 0 {
            if tree_file.is_some_and(|f| f != span.file) {
                return Err("a v2 piece holds bytes of two files".into());
            }
            tree_file = Some(span.file);
        }
        let mut done = 0u64;
        while done < span.len {
            let n = (span.len - done).min(buf.len() as u64) as usize;
            let chunk = &mut buf[..n];
            let at = span.file_offset + done;
            if span.pad {
                chunk.fill(0);
            } else {
                match files.source(layout, span.file) {
                    Source::Unusable(why) => return Err(why.clone()),
                    Source::Map(map) => {
                        let bytes =
                            map.bytes()
                                .get(at as usize..at as usize + n)
                                .ok_or_else(|| {
                                    let path = layout.files()[span.file].rel_path.display();
                                    format!("{path}: shorter than the torrent says")
                                })?;
                        feed(&mut sha, &mut tree, bytes, span.pad);
                        done += n as u64;
                        continue;
                    }
                    Source::Read(open) => open.file().read_exact_at(chunk, at).map_err(|e| {
                        let path = layout.files()[span.file].rel_path.display();
                        format!("{path}: read at offset {at}: {e}")
                    })?,
                }
            }
            feed(&mut sha, &mut tree, chunk, span.pad);
            done += n as u64;
        }
    }
    if mapped::faults() != faults {
        // Some mapped file shrank meanwhile (possibly one this piece does not touch, when
        // threads overlap: reporting the piece unreadable errs on the safe side).
        return Err("a data file shrank while it was being hashed".into());
    }
    let v2 = tree.map(|t| {
        let file_len = tree_file.map_or(0, |f| layout.files()[f].length);
        t.finish(merkle::piece_width(file_len, layout.piece_length()))
    });
    Ok(Digests {
        sha1: sha.map(|s| s.finalize().into()),
        v2,
    })
}

fn feed(sha: &mut Option<Sha1>, tree: &mut Option<PieceHasher>, bytes: &[u8], pad: bool) {
    if let Some(s) = sha {
        s.update(bytes);
    }
    if let (Some(t), false) = (tree, pad) {
        t.update(bytes);
    }
}
