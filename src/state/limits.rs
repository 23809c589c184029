//! The server's upload limits and quotas as they stand now: the configured rates, the rates in
//! force (a used-up quota lowers them to `server.upload_quota_rate`, or pauses payload
//! altogether when that is 0), and the quota counts. One [`UploadLimits`] for the server, one
//! [`TorrentUpload`] per live torrent; every upload path reserves through them and counts what
//! it sent through [`account`]. Lock-free on the per-write path: atomics only.
//!
//! This module decides what the limits are; it does not sleep, save or wake anyone: the upload
//! pipeline (`io::upload`) waits, the quota keeper (`crate::keeper`) saves the counts, rolls
//! the period over and applies the pause to the chokers.

use crate::quota::{PeriodBounds, QuotaCount};
use crate::ratelimit::RateLimit;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Limits of the whole server.
#[derive(Debug, Default)]
pub struct UploadLimits {
    /// The bucket every upload reserves from (its rate is the one in force).
    pub bucket: RateLimit,
    /// `server.upload_rate_limit` (0 = unlimited).
    configured: AtomicU64,
    /// `server.upload_quota_rate`: the rate once a quota is used up (0 = pause).
    quota_rate: AtomicU64,
    pub quota: QuotaCount,
    pub period: PeriodBounds,
    /// Payload is paused (the server's quota is used up and the quota rate is 0).
    paused: AtomicBool,
    /// Wakes the quota keeper: a quota was used up, or the limits changed (SIGHUP), so the
    /// chokers' pause must be looked at again now.
    pub wake_keeper: tokio::sync::Notify,
}

/// Limits of one torrent.
#[derive(Debug, Default)]
pub struct TorrentUpload {
    pub bucket: RateLimit,
    configured: AtomicU64,
    pub quota: QuotaCount,
    /// Payload is paused (the torrent's own quota is used up and the quota rate is 0).
    paused: AtomicBool,
}

/// The rate in force: the configured one, lowered to `quota_rate` when the quota is used up.
fn in_force(configured: u64, exhausted: bool, quota_rate: u64) -> u64 {
    match (exhausted, configured, quota_rate) {
        (false, c, _) => c,
        // Paused instead (see `paused`): the rate does not matter.
        (true, c, 0) => c,
        (true, 0, q) => q,
        (true, c, q) => c.min(q),
    }
}

impl UploadLimits {
    /// `rate` (0 = unlimited), a quota of `quota` bytes per period (0 = none) and the rate once
    /// it is used up.
    pub fn new(rate: u64, quota: u64, quota_rate: u64) -> UploadLimits {
        let l = UploadLimits {
            quota: QuotaCount::new(quota, 0),
            ..UploadLimits::default()
        };
        l.set(rate, quota, quota_rate);
        l
    }

    /// New settings (start, SIGHUP); the count of the period stays.
    pub fn set(&self, rate: u64, quota: u64, quota_rate: u64) {
        self.configured.store(rate, Ordering::Relaxed);
        self.quota_rate.store(quota_rate, Ordering::Relaxed);
        self.quota.set_limit(quota);
        self.refresh();
    }

    /// Recomputes the rate in force and the pause from the quota's state.
    pub fn refresh(&self) {
        let exhausted = self.quota.exhausted();
        let q = self.quota_rate();
        self.bucket
            .set_rate(in_force(self.configured(), exhausted, q));
        self.paused.store(exhausted && q == 0, Ordering::Relaxed);
    }

    pub fn configured(&self) -> u64 {
        self.configured.load(Ordering::Relaxed)
    }

    pub fn quota_rate(&self) -> u64 {
        self.quota_rate.load(Ordering::Relaxed)
    }

    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }
}

impl TorrentUpload {
    pub fn new(rate: u64, quota: u64, used: u64) -> TorrentUpload {
        let t = TorrentUpload {
            quota: QuotaCount::new(quota, used),
            ..TorrentUpload::default()
        };
        t.configured.store(rate, Ordering::Relaxed);
        t
    }

    /// New settings (SIGHUP).
    pub fn set(&self, rate: u64, quota: u64, quota_rate: u64) {
        self.configured.store(rate, Ordering::Relaxed);
        self.quota.set_limit(quota);
        self.refresh(quota_rate);
    }

    /// Recomputes the rate in force and the pause from the torrent's quota.
    pub fn refresh(&self, quota_rate: u64) {
        let exhausted = self.quota.exhausted();
        self.bucket
            .set_rate(in_force(self.configured(), exhausted, quota_rate));
        self.paused
            .store(exhausted && quota_rate == 0, Ordering::Relaxed);
    }

    pub fn configured(&self) -> u64 {
        self.configured.load(Ordering::Relaxed)
    }

    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }
}

/// Counts `payload` bytes sent for a torrent against the quotas: true if a quota (the server's
/// or the torrent's) was used up by them, so the keeper should act now.
pub fn account(server: &UploadLimits, torrent: &TorrentUpload, payload: u64) -> bool {
    let a = server.quota.add(payload);
    let b = torrent.quota.add(payload);
    if a {
        server.refresh();
    }
    if b {
        torrent.refresh(server.quota_rate());
    }
    a || b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_used_up_quota_lowers_the_rate_or_pauses() {
        assert_eq!(in_force(0, false, 5), 0);
        assert_eq!(in_force(1000, false, 5), 1000);
        assert_eq!(
            in_force(0, true, 500),
            500,
            "unlimited drops to the quota rate"
        );
        assert_eq!(in_force(1000, true, 500), 500);
        assert_eq!(
            in_force(300, true, 500),
            300,
            "never above the configured cap"
        );
        assert_eq!(in_force(300, true, 0), 300, "paused instead (see `paused`)");
        let s = UploadLimits::new(0, 1000, 20_000);
        let t = TorrentUpload::new(50_000, 0, 0);
        assert!(!account(&s, &t, 999));
        assert_eq!(s.bucket.rate(), 0);
        assert!(account(&s, &t, 1), "the server's quota is used up");
        assert_eq!((s.bucket.rate(), s.paused()), (20_000, false));
        // A torrent's own quota, with quota rate 0: paused.
        let s = UploadLimits::new(0, 0, 0);
        let t = TorrentUpload::new(0, 100, 90);
        assert!(account(&s, &t, 10));
        assert!(t.paused() && !s.paused());
        // A new period (the keeper resets the counts) lifts it.
        t.quota.reset();
        t.refresh(0);
        assert!(!t.paused());
        // SIGHUP: a larger quota lifts a pause; the count stays.
        let s = UploadLimits::new(0, 10, 0);
        s.quota.add(20);
        s.refresh();
        assert!(s.paused());
        s.set(0, 100, 0);
        assert!(!s.paused());
        assert_eq!(s.quota.used(), 20);
    }
}
