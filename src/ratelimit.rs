//! Upload rate limits, shared by every worker thread without a lock: a byte-rate bucket kept as
//! one atomic "theoretical arrival time" (the generic cell rate algorithm), sans I/O — time is
//! passed in as nanoseconds on any monotonic clock.
//!
//! A sender reserves the bytes it is about to send and is told how long to wait first. The
//! reservations line up one after the other at the configured rate, so senders that all want
//! more are served in turn, each with the same chunk: equal shares, whatever one of them asks
//! for. A sender may go at once while the bucket is at most [`BURST`] ahead of real time, so a
//! burst is bounded by one chunk per sender plus `BURST` of rate. A limit of 0 is unlimited and
//! costs one atomic load. This module owns the arithmetic only; it neither sleeps nor counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How far ahead of real time reservations may run before senders must wait.
pub const BURST: Duration = Duration::from_millis(100);

/// One byte-rate limit.
#[derive(Debug, Default)]
pub struct RateLimit {
    /// Bytes per second; 0 = unlimited.
    rate: AtomicU64,
    /// When the bucket is next free, in nanoseconds on the caller's clock.
    tat: AtomicU64,
}

impl RateLimit {
    pub fn new(rate: u64) -> RateLimit {
        RateLimit {
            rate: AtomicU64::new(rate),
            tat: AtomicU64::new(0),
        }
    }

    /// Bytes per second (0 = unlimited).
    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    /// A new rate, for reservations from now on (0 = unlimited).
    pub fn set_rate(&self, rate: u64) {
        self.rate.store(rate, Ordering::Relaxed);
    }

    /// Reserves `bytes` at time `now` (ns); returns how long to wait before sending them.
    pub fn reserve(&self, now: u64, bytes: u64) -> Duration {
        let rate = self.rate();
        if rate == 0 {
            return Duration::ZERO;
        }
        let cost = (u128::from(bytes) * 1_000_000_000 / u128::from(rate)) as u64;
        let burst = BURST.as_nanos() as u64;
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(cost);
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Duration::from_nanos(tat.saturating_sub(now.saturating_add(burst)))
                }
                Err(actual) => tat = actual,
            }
        }
    }

    /// How far the bucket is booked ahead of `now`: time a new sender would wait, plus
    /// [`BURST`] (0 when idle or unlimited).
    pub fn backlog(&self, now: u64) -> Duration {
        if self.rate() == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.tat.load(Ordering::Relaxed).saturating_sub(now))
    }
}

/// The bytes one reservation should cover at `rate`: about 20 ms of rate, at least one block,
/// at most `max`. Small enough that many senders at a low rate still take turns often (fair
/// shares over seconds), large enough that a fast limit does not cost a wait per block.
pub fn chunk(rate: u64, block: u64, max: u64) -> u64 {
    if rate == 0 {
        return max;
    }
    (rate / 50).clamp(block, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn reservations_line_up_at_the_rate_after_a_bounded_burst() {
        let r = RateLimit::new(1_000_000); // 1 MB/s
        let t0 = 10 * S;
        // 100 ms of burst goes at once...
        let mut waits = Vec::new();
        for _ in 0..12 {
            waits.push(r.reserve(t0, 10_000)); // 10 ms each
        }
        assert!(waits[..11].iter().all(|w| w.is_zero()), "{waits:?}");
        assert_eq!(waits[11], Duration::from_millis(10));
        // ...then one chunk per 10 ms: over 10 s, at most the rate plus the burst.
        let mut sent = 12 * 10_000u64;
        let mut t = t0;
        while t < t0 + 10 * S {
            let w = r.reserve(t, 10_000);
            t += w.as_nanos() as u64;
            sent += 10_000;
        }
        let allowed = 10 * 1_000_000 + 100_000 + 2 * 10_000;
        assert!(sent <= allowed && sent >= 10 * 1_000_000, "{sent}");
    }

    #[test]
    fn idle_time_earns_no_more_than_the_burst_and_unlimited_never_waits() {
        let r = RateLimit::new(100_000);
        assert!(r.reserve(S, 100_000).is_zero());
        // An hour idle: still only BURST ahead allowed.
        let later = 3600 * S;
        let mut free = 0;
        while r.reserve(later, 1_000).is_zero() {
            free += 1_000;
        }
        assert_eq!(free, 11_000, "100 ms of 100 kB/s plus the one that crossed");
        let u = RateLimit::new(0);
        assert!(u.reserve(0, u64::MAX).is_zero());
        assert_eq!(u.backlog(0), Duration::ZERO);
        // A new rate applies from the next reservation.
        r.set_rate(0);
        assert!(r.reserve(later, 1 << 40).is_zero());
    }

    #[test]
    fn senders_taking_turns_get_equal_shares() {
        // Four senders, one reserving as soon as it may; each chunk the same size.
        let r = RateLimit::new(1_000_000);
        let mut next = [0u64; 4];
        let mut got = [0u64; 4];
        for _ in 0..400 {
            let i = (0..4).min_by_key(|&i| next[i]).unwrap();
            let now = next[i];
            let w = r.reserve(now, 20_000);
            next[i] = now + w.as_nanos() as u64 + 1;
            got[i] += 20_000;
        }
        let (min, max) = (got.iter().min().unwrap(), got.iter().max().unwrap());
        assert!(max - min <= 20_000, "{got:?}");
        assert_eq!(chunk(1_000_000, 16_397, 1 << 20), 20_000);
        assert_eq!(chunk(100_000, 16_397, 1 << 20), 16_397);
        assert_eq!(chunk(0, 16_397, 1 << 20), 1 << 20);
    }
}
