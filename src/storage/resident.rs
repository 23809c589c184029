//! Sending piece data straight from the page cache, without a copy in user space.
//!
//! Reading a run into a buffer copies it (page cache → buffer) before the socket write copies
//! it again (buffer → socket). Instead, each data file is mapped read-only once for the life
//! of its torrent ([`FileMap`]), and a run whose pages are all in the page cache right now is
//! handed to the socket write as [`Bytes`] pointing into that mapping: the kernel copies it
//! once, from the page cache into the socket. A run with any page not cached gets None and the
//! caller reads it with io_uring as before, so a worker thread never waits on a page fault that
//! goes to the disk (and, in `io::conn`, keeps reading for a while: streaming cold data through
//! reads keeps the kernel's readahead going). (Mapping per run instead was tried and is slower with several peers:
//! mmap/munmap serialise the threads on the address-space lock; see benches/README.md.)
//!
//! Only the kernel reads the mapping (inside the socket write, where a page past the end of a
//! file truncated meanwhile makes the write fail with EFAULT instead of raising SIGBUS); no code
//! in user space touches it. Pages the kernel has copied from count in the process's RSS (as
//! RssFile: page cache, not memory of the server's own) until the file's next trim, every
//! `TRIM_BYTES` sent.
//!
//! It owns the mapping and the residency probes; it may not read the mapping in user space.

use bytes::Bytes;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Pages checked with one `mincore` call (runs are at most 1 MiB = 256 pages).
const MAX_PAGES: usize = 1024;

/// After this many bytes sent from one file, its pages are taken out of the process's page
/// tables again (they stay in the page cache): without that, every page ever sent would stay
/// mapped and count in the RSS (and the OOM killer's score). Costs a refault per 16 pages
/// afterwards.
const TRIM_BYTES: usize = 64 << 20;
/// Distance between readability probes (readahead works in windows of 128 KiB and more).
const PROBE_STRIDE: usize = 64 << 10;

/// True if the byte at `pos` of `file` can be read without waiting for the disk.
fn readable_now(file: &File, pos: u64) -> bool {
    let mut byte = 0u8;
    let iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    // SAFETY: one iovec describing one writable byte on our stack.
    let r = unsafe {
        libc::preadv2(
            file.as_raw_fd(),
            &iov,
            1,
            pos as libc::off_t,
            libc::RWF_NOWAIT,
        )
    };
    r == 1
}

/// A whole data file mapped read-only.
pub struct FileMap {
    base: *mut libc::c_void,
    len: usize,
    /// Bytes handed out since the mapping was created (drives [`TRIM_BYTES`]).
    sent: AtomicUsize,
}

// SAFETY: the mapping is read-only, never written through, and unmapped only on drop.
unsafe impl Send for FileMap {}
// SAFETY: as above; shared references only hand out its address to the kernel.
unsafe impl Sync for FileMap {}

impl Drop for FileMap {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are what mmap returned, and no `Bytes` of it is alive (they
        // hold an `Arc` of this value).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

impl FileMap {
    /// Maps `file` as it is now; None for an empty file or where mapping fails (a file system
    /// without mmap, the map count limit): its runs are then read as before.
    pub fn new(file: &File) -> Option<Arc<FileMap>> {
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: a fresh shared read-only mapping of an open file at offset 0; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        (base != libc::MAP_FAILED).then(|| {
            Arc::new(FileMap {
                base,
                len,
                sent: AtomicUsize::new(0),
            })
        })
    }

    /// `len` bytes at `offset` if they lie inside the mapping and inside `file` as it is now
    /// (the file this maps), and every page of them is in the page cache right now (and, if
    /// `probe`, readable without waiting); None otherwise (read them instead, and see the read
    /// fail if the file shrank).
    pub fn resident(
        self: &Arc<FileMap>,
        file: &File,
        offset: u64,
        len: usize,
        probe: bool,
    ) -> Option<Bytes> {
        let end = offset.checked_add(len as u64)?;
        // mincore still reports pages past the end of a file truncated under the mapping as
        // resident (seen on Linux 6.18), so the file's current size decides.
        if len == 0 || end > self.len as u64 || end > file.metadata().ok()?.len() {
            return None;
        }
        let offset = offset as usize;
        let page = page_size();
        let first = offset - offset % page;
        let span = offset + len - first;
        let pages = span.div_ceil(page);
        if pages > MAX_PAGES {
            return None;
        }
        let mut resident = [0u8; MAX_PAGES];
        // SAFETY: [first, first + span) lies inside the mapping (page-aligned start); mincore
        // writes `pages` bytes, which `resident` has room for.
        let r = unsafe {
            libc::mincore(
                self.base.cast::<u8>().add(first).cast(),
                span,
                resident.as_mut_ptr(),
            )
        };
        if r != 0 || resident[..pages].iter().any(|&p| p & 1 == 0) {
            return None;
        }
        // In the page cache is not yet readable: pages under readahead are there, locked, until
        // their read completes, and a socket write from them would wait for the disk inside
        // the worker thread. A one-byte RWF_NOWAIT read, which fails instead of waiting, probes
        // every PROBE_STRIDE bytes and the last byte. The caller asks for it while the server
        // has read the file from disk lately (its readahead may be in flight); once those
        // reads have been quiet for a while, the probes (about a tenth of a warm seed's CPU,
        // measured) are skipped: the server's own readahead has completed, and what a
        // process reading the same files meanwhile has under I/O costs at most one wait.
        let mut at = offset;
        while probe && at < offset + len {
            if !readable_now(file, at as u64) {
                return None;
            }
            at += PROBE_STRIDE;
        }
        if probe && !readable_now(file, (offset + len - 1) as u64) {
            return None;
        }
        let before = self.sent.fetch_add(len, Ordering::Relaxed);
        if before / TRIM_BYTES != (before + len) / TRIM_BYTES {
            // SAFETY: advice on our own mapping; for a shared file mapping MADV_DONTNEED only
            // drops page-table entries (a write in flight faults them back in).
            unsafe { libc::madvise(self.base, self.len, libc::MADV_DONTNEED) };
        }
        Some(Bytes::from_owner(Window {
            map: Arc::clone(self),
            offset,
            len,
        }))
    }
}

/// A range of a mapping, kept alive by the `Bytes` that owns it.
struct Window {
    map: Arc<FileMap>,
    offset: usize,
    len: usize,
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

impl AsRef<[u8]> for Window {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `offset + len <= map.len` was checked, and the mapping lives as long as the
        // `Arc` this window holds. (Only the address is taken; see the module docs.)
        unsafe { std::slice::from_raw_parts(self.map.base.cast::<u8>().add(self.offset), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn cached_ranges_map_to_their_bytes_and_the_rest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        File::create(&path).unwrap().write_all(&data).unwrap();
        let f = File::open(&path).unwrap();
        let map = FileMap::new(&f).expect("maps");
        // Just written, so cached: an unaligned range is exactly those bytes. (The test, unlike
        // the server, may read the mapping: the file does not change under it.)
        let b = map.resident(&f, 4097, 100_000, true).expect("cached range");
        assert_eq!(&b[..], &data[4097..104_097]);
        let tail = b.slice(99_990..);
        drop((b, map));
        assert_eq!(
            &tail[..],
            &data[104_087..104_097],
            "a slice keeps the mapping"
        );
        // Without the readability probes, cached bytes are the same bytes.
        let map = FileMap::new(&f).unwrap();
        let b = map
            .resident(&f, 4097, 100_000, false)
            .expect("cached range");
        assert_eq!(&b[..], &data[4097..104_097]);
        // Past the end, empty, overflowing, or longer than one mincore call: read instead.
        assert!(map.resident(&f, 299_000, 2_000, true).is_none());
        assert!(map.resident(&f, 0, 0, true).is_none());
        assert!(map.resident(&f, u64::MAX - 10, 100, true).is_none());
        // Past the end of the file once it was truncated under the mapping.
        assert!(map.resident(&f, 200_000, 16_384, true).is_some());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100_000)
            .unwrap();
        assert!(map.resident(&f, 200_000, 16_384, true).is_none());
        assert!(
            map.resident(&f, 0, 16_384, true).is_some(),
            "what is left still maps"
        );
        let big_path = dir.path().join("big");
        File::create(&big_path).unwrap().set_len(8 << 20).unwrap();
        let big_file = File::open(&big_path).unwrap();
        let big = FileMap::new(&big_file).unwrap();
        assert!(big.resident(&big_file, 0, 5 << 20, true).is_none());
        // A sparse file's holes are not in the page cache until read, probed or not.
        assert!(big.resident(&big_file, 4 << 20, 65536, true).is_none());
        assert!(big.resident(&big_file, 4 << 20, 65536, false).is_none());
        // Nothing to map in an empty file.
        assert!(FileMap::new(&File::create(dir.path().join("empty")).unwrap()).is_none());
    }
}
