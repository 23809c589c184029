//! Connection slots a newcomer may take when a cap is full (issue 21, item 3): a record of
//! every admitted connection (half-open until its handshake completes, then its torrent and
//! whether the peer is interested), and the choice of whom to evict for a newcomer.
//!
//! Whom: the oldest half-open connection that has had [`HALF_OPEN_GRACE`] to finish its
//! handshake (one that has sent nothing at all before one that has); else the handshaken peer,
//! uninterested the longest (in the torrent whose cap is full, or in any); never an interested
//! peer. Half-open connections also have a budget of their own (`server.max_half_open`): a
//! connection beyond it evicts the oldest half-open one that has sent nothing (else the oldest
//! at all), whatever its age, so connections that never handshake cannot hold the server's
//! slots while an honest peer, which sends its handshake at once, keeps its own.
//! Eviction only asks: the connection's own task sees [`Slot::evicted`] and ends itself, counted
//! as `evicted`. Time is passed in; the lock is taken alone (see `STATE.md`).

use crate::metainfo::InfoHash;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A half-open connection younger than this is not evicted to make room at the server cap
/// (an honest handshake takes a round trip or two).
pub const HALF_OPEN_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    HalfOpen,
    /// Handshaken for this torrent; `interested` as the peer said last.
    Peer {
        torrent: InfoHash,
        interested: bool,
    },
}

#[derive(Debug)]
struct Record {
    phase: Phase,
    /// The peer has sent something (half-open ones that have not go first).
    talking: bool,
    /// When it was admitted (half-open) or last became uninterested (or handshaken).
    since: Instant,
}

/// One connection's line to the evictor.
#[derive(Debug, Default)]
pub struct Slot {
    kill: tokio::sync::Notify,
    killed: AtomicBool,
}

impl Slot {
    /// Resolves once the connection has been chosen to make room for a newcomer.
    pub async fn evicted(&self) {
        loop {
            let notified = self.kill.notified();
            if self.killed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill.notify_one();
    }
}

/// Every admitted connection's record.
#[derive(Debug, Default)]
pub struct Evictor {
    records: Mutex<HashMap<u64, (Record, Arc<Slot>)>>,
    half_open: AtomicUsize,
}

impl Evictor {
    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Record, Arc<Slot>)>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections admitted that have not completed their handshake.
    pub fn half_open(&self) -> usize {
        self.half_open.load(Ordering::Relaxed)
    }

    /// A newly admitted connection `id` (half-open).
    pub fn register(&self, id: u64, now: Instant) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        let record = Record {
            phase: Phase::HalfOpen,
            talking: false,
            since: now,
        };
        self.records().insert(id, (record, slot.clone()));
        self.half_open.fetch_add(1, Ordering::Relaxed);
        slot
    }

    /// Connection `id` has gone.
    pub fn unregister(&self, id: u64) {
        if let Some((r, _)) = self.records().remove(&id) {
            if r.phase == Phase::HalfOpen {
                self.half_open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// The peer of connection `id` has sent its first bytes.
    pub fn talking(&self, id: u64) {
        if let Some((r, _)) = self.records().get_mut(&id) {
            r.talking = true;
        }
    }

    /// Connection `id` completed its handshake for `torrent`.
    pub fn handshaken(&self, id: u64, torrent: InfoHash, now: Instant) {
        if let Some((r, _)) = self.records().get_mut(&id) {
            if r.phase == Phase::HalfOpen {
                self.half_open.fetch_sub(1, Ordering::Relaxed);
            }
            r.phase = Phase::Peer {
                torrent,
                interested: false,
            };
            r.since = now;
        }
    }

    /// The peer of connection `id` said (not) interested.
    pub fn set_interested(&self, id: u64, interested: bool, now: Instant) {
        if let Some((r, _)) = self.records().get_mut(&id) {
            if let Phase::Peer { interested: i, .. } = &mut r.phase {
                if *i != interested {
                    *i = interested;
                    r.since = now;
                }
            }
        }
    }

    /// Evicts the oldest half-open connection (the half-open budget is full); false if none.
    pub fn evict_half_open(&self) -> bool {
        self.evict_by(|r| (r.phase == Phase::HalfOpen).then_some((0, r.talking, r.since)))
    }

    /// Makes room for a newcomer: in `torrent` (its cap is full) or anywhere (the server's).
    /// False if nobody may go.
    pub fn evict_for(&self, torrent: Option<&InfoHash>, now: Instant) -> bool {
        self.evict_by(|r| match r.phase {
            Phase::HalfOpen if torrent.is_none() => (now.saturating_duration_since(r.since)
                >= HALF_OPEN_GRACE)
                .then_some((0, r.talking, r.since)),
            Phase::Peer {
                torrent: t,
                interested: false,
            } if torrent.is_none_or(|want| *want == t) => Some((1, false, r.since)),
            _ => None,
        })
    }

    /// Kills the connection with the least `(class, talking, since)` among those `eligible`
    /// gives one.
    fn evict_by(&self, eligible: impl Fn(&Record) -> Option<(u8, bool, Instant)>) -> bool {
        let records = self.records();
        let victim = records
            .values()
            .filter(|(_, s)| !s.killed.load(Ordering::Relaxed))
            .filter_map(|(r, s)| eligible(r).map(|k| (k, s)))
            .min_by_key(|(k, _)| *k);
        match victim {
            Some((_, slot)) => {
                slot.kill();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_stale_half_open_first_then_the_longest_uninterested_never_the_interested() {
        let t0 = Instant::now();
        let e = Evictor::default();
        let (a, b) = (InfoHash([1; 20]), InfoHash([2; 20]));
        let s1 = e.register(1, t0);
        e.handshaken(1, a, t0);
        e.set_interested(1, true, t0);
        let s2 = e.register(2, t0);
        e.handshaken(2, a, t0 + Duration::from_secs(1));
        let s3 = e.register(3, t0 + Duration::from_secs(2));
        e.handshaken(3, b, t0 + Duration::from_secs(2));
        let s4 = e.register(4, t0 + Duration::from_secs(3));
        assert_eq!(e.half_open(), 1);
        // The half-open one is too young for the server cap: the longest uninterested goes.
        let now = t0 + Duration::from_secs(3) + Duration::from_millis(100);
        assert!(e.evict_for(None, now));
        assert!(s2.killed.load(Ordering::Relaxed));
        // Once past its grace, the half-open one goes before any peer.
        let later = now + HALF_OPEN_GRACE;
        assert!(e.evict_for(None, later));
        assert!(s4.killed.load(Ordering::Relaxed));
        // Torrent a's cap: only its uninterested peers count; 1 is interested.
        assert!(!e.evict_for(Some(&a), later));
        assert!(!s1.killed.load(Ordering::Relaxed));
        assert!(e.evict_for(Some(&b), later));
        assert!(s3.killed.load(Ordering::Relaxed));
        assert!(!e.evict_for(None, later), "only an interested peer is left");
        for id in 1..=4 {
            e.unregister(id);
        }
        assert_eq!(e.half_open(), 0);
    }

    #[test]
    fn the_half_open_budget_evicts_the_oldest_silent_one_whatever_its_age() {
        let t0 = Instant::now();
        let e = Evictor::default();
        let talks = e.register(0, t0);
        e.talking(0);
        let old = e.register(1, t0 + Duration::from_millis(1));
        let young = e.register(2, t0 + Duration::from_millis(2));
        assert!(e.evict_half_open());
        assert!(
            old.killed.load(Ordering::Relaxed),
            "the oldest silent one goes first"
        );
        assert!(!young.killed.load(Ordering::Relaxed));
        assert!(
            !talks.killed.load(Ordering::Relaxed),
            "one that sent its handshake stays"
        );
        e.handshaken(0, InfoHash([1; 20]), t0);
        e.handshaken(2, InfoHash([1; 20]), t0);
        assert!(!e.evict_half_open(), "a handshaken peer is not half-open");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_evicted_slot_wakes_its_connection() {
        let e = Evictor::default();
        let s = e.register(1, Instant::now());
        assert!(e.evict_half_open());
        tokio::time::timeout(Duration::from_secs(1), s.evicted())
            .await
            .expect("woken");
    }
}
