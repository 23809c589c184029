//! Log lines that outsiders (a refused login, a page opened with a wrong token) or a lasting
//! fault (a full or read-only state directory) would repeat: at most one per period for each,
//! carrying how many were left out since, so neither a flood of bad requests nor a disk that
//! stays full fills the journal. Sans I/O: the caller passes the time, in
//! seconds on any monotonic clock; lock-free (two atomics).

use std::sync::atomic::{AtomicU64, Ordering};

/// One kind of line.
#[derive(Debug, Default)]
pub struct LogEvery {
    /// When the last line was written, plus one (0: never).
    last: AtomicU64,
    /// Occurrences since then that were not written.
    left_out: AtomicU64,
}

impl LogEvery {
    pub const fn new() -> LogEvery {
        LogEvery {
            last: AtomicU64::new(0),
            left_out: AtomicU64::new(0),
        }
    }

    /// An occurrence at `now`: `Some(n)` when it is to be written (n left out since the last
    /// line), None when not.
    pub fn occur(&self, now: u64, period: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last - 1) >= period;
        if due
            && self
                .last
                .compare_exchange(last, now + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.left_out.swap(0, Ordering::Relaxed));
        }
        self.left_out.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Seconds since the first call, for [`LogEvery::occur`].
pub fn now_secs() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_left_out() {
        let l = LogEvery::new();
        assert_eq!(l.occur(0, 10), Some(0));
        for t in 0..10 {
            assert_eq!(l.occur(t, 10), None);
        }
        assert_eq!(l.occur(10, 10), Some(10));
        assert_eq!(l.occur(15, 10), None);
        assert_eq!(l.occur(100, 10), Some(1));
    }
}
