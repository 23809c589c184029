//! The budget of encrypted handshakes (issue 21, item 1). Answering a Message Stream Encryption
//! handshake costs two 768-bit modular exponentiations (about 0.2 ms of a core in a release
//! build, seven times a plain handshake), spent before the peer has proved anything, on the
//! serving threads. So each one is paid for first: from its address group's bucket (an IPv4
//! address or an IPv6 /64: `server.mse_per_ip_per_sec`, bursts of four seconds' worth) and from
//! the server's (`server.mse_handshakes_per_sec`, bursts of one second's worth). A handshake
//! either bucket cannot pay for is refused before any key is made (`mse_budget`); plain
//! handshakes are never charged, and clients that offer encryption by choice (libtorrent,
//! qBittorrent) try again in plaintext when an encrypted attempt is closed on them.
//!
//! The flood this stops sends 96 random bytes per connection and computes nothing; a peer that
//! completes a handshake did the same exponentiations we did. So groups that have completed
//! one for a torrent we serve ([`MseBudget::proved`], the last [`MAX_PROVEN`]) draw on a second
//! server bucket of the same size: a flood from fresh addresses cannot spend it, and returning
//! honest peers keep getting in (each group still at its own rate).
//!
//! Token buckets, sans I/O: time is passed in. One mutex, taken only for encrypted attempts.
//! The table of groups is bounded ([`MAX_GROUPS`]): when it is full, groups whose buckets have
//! filled up again are forgotten (they would start full anyway); if none has, the attempt is
//! refused.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

/// Address groups remembered at once.
pub const MAX_GROUPS: usize = 16_384;
/// Groups remembered as having completed a handshake (the oldest forgotten first).
pub const MAX_PROVEN: usize = 16_384;
/// A group's burst, in seconds of its rate.
const GROUP_BURST_SECS: f64 = 4.0;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    /// Tokens now, at most `burst`.
    fn level(&self, rate: f64, burst: f64, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + dt * rate).min(burst)
    }
}

/// Rates in handshakes per second; 0 = unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MseRates {
    pub server: u32,
    pub per_group: u32,
}

#[derive(Debug)]
struct Inner {
    rates: MseRates,
    server: Bucket,
    /// The server bucket of proven groups.
    proven_bucket: Bucket,
    groups: HashMap<u64, Bucket>,
    proven: HashSet<u64>,
    proven_order: VecDeque<u64>,
}

/// Why an attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its address group has spent its share.
    Group,
    /// The server has spent its budget.
    Server,
}

#[derive(Debug)]
pub struct MseBudget {
    inner: Mutex<Inner>,
}

impl MseBudget {
    pub fn new(rates: MseRates, now: Instant) -> MseBudget {
        MseBudget {
            inner: Mutex::new(Inner {
                rates,
                server: Bucket::full(f64::from(rates.server), now),
                proven_bucket: Bucket::full(f64::from(rates.server), now),
                groups: HashMap::new(),
                proven: HashSet::new(),
                proven_order: VecDeque::new(),
            }),
        }
    }

    /// Pays for one encrypted handshake from `group` (see `address_group`), or says who
    /// could not.
    pub fn take(&self, group: u64, now: Instant) -> Result<(), Refused> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let MseRates { server, per_group } = g.rates;
        let (rate, burst) = (
            f64::from(per_group),
            f64::from(per_group) * GROUP_BURST_SECS,
        );
        let group_level = if per_group == 0 {
            None
        } else {
            if g.groups.len() >= MAX_GROUPS && !g.groups.contains_key(&group) {
                g.groups.retain(|_, b| b.level(rate, burst, now) < burst);
                if g.groups.len() >= MAX_GROUPS {
                    return Err(Refused::Group);
                }
            }
            let b = g
                .groups
                .get(&group)
                .copied()
                .unwrap_or(Bucket::full(burst, now));
            let level = b.level(rate, burst, now);
            if level < 1.0 {
                return Err(Refused::Group);
            }
            Some(level)
        };
        if server != 0 {
            let s = f64::from(server);
            let proven = g.proven.contains(&group);
            let bucket = if proven {
                &mut g.proven_bucket
            } else {
                &mut g.server
            };
            let level = bucket.level(s, s, now);
            if level < 1.0 {
                return Err(Refused::Server);
            }
            *bucket = Bucket {
                tokens: level - 1.0,
                at: now,
            };
        }
        if let Some(level) = group_level {
            g.groups.insert(
                group,
                Bucket {
                    tokens: level - 1.0,
                    at: now,
                },
            );
        }
        Ok(())
    }

    /// `group` completed an encrypted handshake for a torrent we serve.
    pub fn proved(&self, group: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.proven.insert(group) {
            g.proven_order.push_back(group);
            if g.proven_order.len() > MAX_PROVEN {
                if let Some(old) = g.proven_order.pop_front() {
                    g.proven.remove(&old);
                }
            }
        }
    }

    /// Address groups remembered now.
    pub fn groups(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .groups
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn budget(server: u32, per_group: u32) -> (MseBudget, Instant) {
        let now = Instant::now();
        (MseBudget::new(MseRates { server, per_group }, now), now)
    }

    #[test]
    fn a_group_gets_its_burst_then_its_rate() {
        let (b, t) = budget(0, 2);
        for _ in 0..8 {
            assert_eq!(b.take(1, t), Ok(()));
        }
        assert_eq!(b.take(1, t), Err(Refused::Group));
        // Another group is not affected.
        assert_eq!(b.take(2, t), Ok(()));
        // Two per second come back.
        let later = t + Duration::from_millis(1000);
        assert_eq!(b.take(1, later), Ok(()));
        assert_eq!(b.take(1, later), Ok(()));
        assert_eq!(b.take(1, later), Err(Refused::Group));
    }

    #[test]
    fn the_server_budget_holds_across_groups_and_refusals_cost_nothing() {
        let (b, t) = budget(10, 1);
        let mut ok = 0;
        for g in 0..100 {
            ok += usize::from(b.take(g, t).is_ok());
        }
        assert_eq!(ok, 10);
        assert_eq!(b.take(500, t), Err(Refused::Server));
        // Group 500 was refused by the server: its own bucket was not charged, so after the
        // server refills it gets its whole burst of 4.
        let later = t + Duration::from_secs(1);
        for _ in 0..4 {
            assert_eq!(b.take(500, later), Ok(()));
        }
        assert_eq!(b.take(500, later), Err(Refused::Group));
    }

    #[test]
    fn proven_groups_draw_on_their_own_server_bucket() {
        let (b, t) = budget(5, 0);
        b.proved(42);
        for g in 0..5 {
            assert!(b.take(g, t).is_ok());
        }
        assert_eq!(b.take(6, t), Err(Refused::Server));
        for _ in 0..5 {
            assert!(b.take(42, t).is_ok());
        }
        assert_eq!(b.take(42, t), Err(Refused::Server));
        // Only the newest MAX_PROVEN are remembered.
        for g in 1000..1000 + MAX_PROVEN as u64 {
            b.proved(g);
        }
        let later = t + Duration::from_secs(2);
        for _ in 0..5 {
            assert!(b.take(7, later).is_ok());
        }
        assert_eq!(b.take(42, later), Err(Refused::Server));
    }

    #[test]
    fn unlimited_is_zero_and_the_group_table_is_bounded() {
        let (b, t) = budget(0, 0);
        for g in 0..100_000 {
            assert!(b.take(g, t).is_ok());
        }
        assert_eq!(b.groups(), 0);

        let (b, t) = budget(0, 1);
        for g in 0..MAX_GROUPS as u64 {
            assert!(b.take(g, t).is_ok());
        }
        // Full, and nobody has refilled yet: a new group is refused, a known one is served.
        assert_eq!(b.take(u64::MAX, t), Err(Refused::Group));
        assert!(b.take(0, t).is_ok());
        // Four seconds later every bucket is full again and is forgotten for the newcomer.
        let later = t + Duration::from_secs(5);
        assert!(b.take(u64::MAX, later).is_ok());
        assert_eq!(b.groups(), 1);
    }
}
