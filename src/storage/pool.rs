//! The process's open data files: a bounded, least-recently-used cache of descriptors (each
//! with the mapping made of it for zero-copy sends), so torrents with hundreds of thousands of
//! files in total serve under a small `ulimit -n` and a bounded number of mappings.
//!
//! [`super::files::DataFiles`] asks it for a file and opens (and re-validates) one that is not
//! here. An entry is an `Arc`: evicting it only drops the cache's reference, so a read in
//! flight keeps its descriptor open until it is done; descriptors open at once are the capacity
//! plus the reads in flight. The capacity is set once at server start
//! (`server.max_open_files`); by default it follows `ulimit -n` ([`auto_capacity`]).

use super::resident::FileMap;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The capacity by default (`server.max_open_files = 0`, and tools such as `verify`): a quarter
/// of the process's open-file limit (`nofile`), at least 16 and at most 1024.
pub fn auto_capacity() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    let soft = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } {
        0 => usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX),
        _ => 1024,
    };
    (soft / 4).clamp(16, 1024)
}

/// One open data file.
pub struct OpenFile {
    file: File,
    /// Mapping for zero-copy sends, made on first use (None: mapping failed).
    map: OnceLock<Option<Arc<FileMap>>>,
    /// When the server last read this file from disk (coarse monotonic seconds; a file just
    /// opened counts as just read).
    last_read: AtomicU64,
}

/// Seconds after the server's last disk read of a file during which readahead it started may
/// still be in flight, so the file's cached pages are probed before a send from its mapping
/// (see `super::resident`); once reads have been quiet this long, residency alone decides.
pub const READ_QUIET_SECS: u64 = 5;

fn coarse_secs() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64
}

impl OpenFile {
    pub fn new(file: File) -> OpenFile {
        OpenFile {
            file,
            map: OnceLock::new(),
            last_read: AtomicU64::new(coarse_secs()),
        }
    }

    /// A read of this file from disk is starting (its readahead may follow it).
    pub fn note_disk_read(&self) {
        self.last_read.store(coarse_secs(), Ordering::Relaxed);
    }

    /// No disk read of this file for [`READ_QUIET_SECS`].
    pub fn reads_quiet(&self) -> bool {
        coarse_secs().saturating_sub(self.last_read.load(Ordering::Relaxed)) >= READ_QUIET_SECS
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// The whole file mapped read-only, mapped on first use.
    pub fn map(&self) -> Option<&Arc<FileMap>> {
        self.map.get_or_init(|| FileMap::new(&self.file)).as_ref()
    }
}

/// An entry's key: the owning `DataFiles`' id and the file's index in its torrent.
pub type Key = (u64, usize);

#[derive(Default)]
struct Inner {
    tick: u64,
    entries: HashMap<Key, (u64, Arc<OpenFile>)>,
    /// Last use → key, oldest first.
    order: BTreeMap<u64, Key>,
}

/// The cache (one per process: [`pool`]).
pub struct Pool {
    inner: Mutex<Inner>,
    capacity: AtomicUsize,
    /// Files opened (first opens and reopens after an eviction) and entries evicted.
    pub opened: AtomicU64,
    pub evicted: AtomicU64,
}

/// The process's pool.
pub fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool::new(auto_capacity()))
}

/// Sets the process pool's capacity (at least 1), evicting what is over it.
pub fn set_capacity(n: usize) {
    let p = pool();
    p.capacity.store(n.max(1), Ordering::Relaxed);
    let mut inner = p.lock();
    p.evict(&mut inner);
}

/// A new id for a `DataFiles`, unique in the process.
pub fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Pool {
    pub fn new(capacity: usize) -> Pool {
        Pool {
            inner: Mutex::default(),
            capacity: AtomicUsize::new(capacity.max(1)),
            opened: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn evict(&self, inner: &mut Inner) {
        let cap = self.capacity.load(Ordering::Relaxed);
        while inner.entries.len() > cap {
            let Some((_, key)) = inner.order.pop_first() else {
                break;
            };
            inner.entries.remove(&key);
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The entry for `key`, now the most recently used.
    pub fn get(&self, key: Key) -> Option<Arc<OpenFile>> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.tick += 1;
        let tick = inner.tick;
        let (used, file) = inner.entries.get_mut(&key)?;
        inner.order.remove(used);
        *used = tick;
        inner.order.insert(tick, key);
        Some(file.clone())
    }

    /// Adds (or replaces) the entry for `key`, evicting the least recently used beyond the
    /// capacity.
    pub fn put(&self, key: Key, file: Arc<OpenFile>) {
        self.opened.fetch_add(1, Ordering::Relaxed);
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((old, _)) = inner.entries.insert(key, (tick, file)) {
            inner.order.remove(&old);
        }
        inner.order.insert(tick, key);
        self.evict(inner);
    }

    /// Drops the entries of files `0..n` of `DataFiles` `id` (it is gone).
    pub fn forget(&self, id: u64, n: usize) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        for i in 0..n {
            if let Some((used, _)) = inner.entries.remove(&(id, i)) {
                inner.order.remove(&used);
            }
        }
    }

    /// Entries now, and the capacity.
    pub fn len(&self) -> (usize, usize) {
        (
            self.lock().entries.len(),
            self.capacity.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<OpenFile> {
        Arc::new(OpenFile::new(tempfile::tempfile().unwrap()))
    }

    #[test]
    fn a_file_just_opened_or_read_is_not_quiet() {
        let f = file();
        assert!(!f.reads_quiet(), "what opened it may have read it");
        f.note_disk_read();
        assert!(!f.reads_quiet());
        f.last_read.store(0, Ordering::Relaxed);
        assert_eq!(f.reads_quiet(), coarse_secs() >= READ_QUIET_SECS);
    }

    #[test]
    fn keeps_at_most_its_capacity_evicting_the_least_recently_used() {
        let p = Pool::new(2);
        p.put((1, 0), file());
        p.put((1, 1), file());
        assert!(p.get((1, 0)).is_some(), "(1, 0) is now the most recent");
        p.put((1, 2), file());
        assert_eq!(p.len(), (2, 2));
        assert!(p.get((1, 1)).is_none(), "the least recently used went");
        assert!(p.get((1, 0)).is_some() && p.get((1, 2)).is_some());
        assert_eq!(p.evicted.load(Ordering::Relaxed), 1);

        // An evicted entry still held by a reader stays open for it.
        let held = p.get((1, 0)).unwrap();
        p.put((2, 0), file());
        p.put((2, 1), file());
        assert!(p.get((1, 0)).is_none());
        assert!(held.file().metadata().is_ok());

        p.forget(2, 2);
        assert_eq!(p.len().0, 0);
        p.put((3, 0), file());
        assert_eq!(p.len().0, 1);
    }
}
