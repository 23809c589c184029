//! Transfer quotas: the period a quota counts in (a day, a week or a month from its reset day,
//! starting at 00:00 UTC), the running count of bytes used in it (lock-free), and the record
//! that carries the counts across restarts (`state_dir/quota.json`, written atomically).
//!
//! Period arithmetic is pure (Unix time is passed in); the record is encoded and decoded here
//! but read and written by the quota keeper (`crate::limits`). A count only ever grows within
//! a period and restarts at zero in the next, so a record that is saved every few seconds loses
//! at most those seconds on a crash and never counts a byte twice.

use crate::config::QuotaPeriod;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

const DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month 1-12, day 1-31) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The period holding Unix time `now`, as [start, end) in Unix seconds. `reset_day`: day of the
/// month (1-28) for months, ISO weekday (1 = Monday) for weeks, ignored for days.
pub fn period_bounds(now: i64, period: QuotaPeriod, reset_day: u32) -> (i64, i64) {
    let today = now.div_euclid(DAY);
    match period {
        QuotaPeriod::Day => (today * DAY, (today + 1) * DAY),
        QuotaPeriod::Week => {
            // 1970-01-01 was a Thursday (ISO weekday 4).
            let weekday = (today + 3).rem_euclid(7) + 1;
            let back = (weekday - i64::from(reset_day.clamp(1, 7))).rem_euclid(7);
            let start = today - back;
            (start * DAY, (start + 7) * DAY)
        }
        QuotaPeriod::Month => {
            let d = reset_day.clamp(1, 28);
            let (mut y, mut m, day) = civil_from_days(today);
            if day < d {
                (y, m) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
            }
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (
                days_from_civil(y, m, d) * DAY,
                days_from_civil(ny, nm, d) * DAY,
            )
        }
    }
}

/// Bytes used of a quota in the current period; lock-free.
#[derive(Debug, Default)]
pub struct QuotaCount {
    /// Bytes allowed per period (0 = no quota).
    limit: AtomicU64,
    used: AtomicU64,
}

impl QuotaCount {
    pub fn new(limit: u64, used: u64) -> QuotaCount {
        QuotaCount {
            limit: AtomicU64::new(limit),
            used: AtomicU64::new(used),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Bytes left (0 when used up; u64::MAX without a quota).
    pub fn remaining(&self) -> u64 {
        match self.limit() {
            0 => u64::MAX,
            l => l.saturating_sub(self.used()),
        }
    }

    pub fn exhausted(&self) -> bool {
        self.limit() != 0 && self.used() >= self.limit()
    }

    /// Counts `n` bytes; true if this crossed the limit (the quota is used up now).
    pub fn add(&self, n: u64) -> bool {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        let limit = self.limit();
        limit != 0 && before < limit && before + n >= limit
    }

    /// A new period: nothing used.
    pub fn reset(&self) {
        self.used.store(0, Ordering::Relaxed);
    }
}

/// The current period's bounds, shared (Unix seconds).
#[derive(Debug, Default)]
pub struct PeriodBounds {
    start: AtomicI64,
    end: AtomicI64,
}

impl PeriodBounds {
    pub fn set(&self, (start, end): (i64, i64)) {
        self.start.store(start, Ordering::Relaxed);
        self.end.store(end, Ordering::Relaxed);
    }

    pub fn get(&self) -> (i64, i64) {
        (
            self.start.load(Ordering::Relaxed),
            self.end.load(Ordering::Relaxed),
        )
    }
}

/// What `quota.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaRecord {
    pub version: u32,
    /// Start of the period the counts belong to (Unix seconds).
    pub period_start: i64,
    /// Bytes the server uploaded in that period.
    pub used: u64,
    /// Bytes per torrent (info-hash in hex) in that period, for torrents with quotas.
    pub torrents: BTreeMap<String, u64>,
}

impl QuotaRecord {
    pub const VERSION: u32 = 1;

    /// The record's counts if it belongs to the period starting at `period_start`; an older
    /// period's counts are void (that period is over).
    pub fn decode(bytes: &[u8], period_start: i64) -> Result<Option<QuotaRecord>, String> {
        let r: QuotaRecord =
            serde_json::from_slice(bytes).map_err(|e| format!("not a quota record: {e}"))?;
        if r.version != Self::VERSION {
            return Err(format!("unknown quota record version {}", r.version));
        }
        Ok((r.period_start == period_start).then_some(r))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a record serializes");
        v.push(b'\n');
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, m: u32, d: u32) -> i64 {
        days_from_civil(y, m, d) * DAY
    }

    #[test]
    fn dates_round_trip() {
        for z in [-800_000, -1, 0, 1, 11_016, 19_000, 20_454, 2_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(days_from_civil(2026, 12, 1), 20_788);
    }

    #[test]
    fn periods_start_at_midnight_utc_on_their_reset_day() {
        let now = at(2026, 12, 1) + 13 * 3600; // Tuesday 2026-12-01 13:00 UTC
        assert_eq!(
            period_bounds(now, QuotaPeriod::Day, 1),
            (at(2026, 12, 1), at(2026, 12, 2))
        );
        // Weeks from Monday, and from Friday.
        assert_eq!(
            period_bounds(now, QuotaPeriod::Week, 1),
            (at(2026, 11, 30), at(2026, 12, 7))
        );
        assert_eq!(
            period_bounds(now, QuotaPeriod::Week, 5),
            (at(2026, 11, 27), at(2026, 12, 4))
        );
        // Months from the 1st (today), from the 15th (last month's), across a year.
        assert_eq!(
            period_bounds(now, QuotaPeriod::Month, 1),
            (at(2026, 12, 1), at(2027, 1, 1))
        );
        assert_eq!(
            period_bounds(now, QuotaPeriod::Month, 15),
            (at(2026, 11, 15), at(2026, 12, 15))
        );
        assert_eq!(
            period_bounds(at(2027, 1, 10), QuotaPeriod::Month, 15),
            (at(2026, 12, 15), at(2027, 1, 15))
        );
        // The last second of a period belongs to it, the next to the next one.
        let (_, end) = period_bounds(now, QuotaPeriod::Month, 1);
        assert_eq!(period_bounds(end - 1, QuotaPeriod::Month, 1).1, end);
        assert_eq!(period_bounds(end, QuotaPeriod::Month, 1).0, end);
    }

    #[test]
    fn counts_cross_the_limit_once_and_records_belong_to_one_period() {
        let q = QuotaCount::new(100, 0);
        assert!(!q.add(60));
        assert!(q.add(50), "crossed");
        assert!(!q.add(10), "already used up");
        assert!(q.exhausted());
        assert_eq!(q.remaining(), 0);
        q.reset();
        assert_eq!((q.used(), q.remaining()), (0, 100));
        assert_eq!(QuotaCount::new(0, 5).remaining(), u64::MAX);
        let r = QuotaRecord {
            version: QuotaRecord::VERSION,
            period_start: 1000,
            used: 42,
            torrents: [("ab".to_string(), 7)].into_iter().collect(),
        };
        assert_eq!(QuotaRecord::decode(&r.encode(), 1000), Ok(Some(r.clone())));
        assert_eq!(QuotaRecord::decode(&r.encode(), 2000), Ok(None));
        assert!(QuotaRecord::decode(b"{\"torn", 1000).is_err());
    }
}
