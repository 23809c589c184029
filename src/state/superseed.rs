//! A torrent's super-seeding (BEP 16) as its connections share it: one lock around the
//! sans-IO [`crate::superseed::SuperSeed`], fed by the connections (joined, the peer's
//! bitfield and `have`s, left) and by the choker's tick (its timers), and the delivery of what
//! it decides: each offer goes to its connection's handle (`PeerHandle::offers`, then a wake),
//! and when super-seeding stops, every connection is told to advertise everything.
//!
//! Lock order: the super-seed lock is taken alone; it is released before the handles' lock is
//! taken to deliver (see `STATE.md`).

use super::torrent::TorrentCtx;
use crate::choke::PeerKey;
use crate::superseed::{Config, Stop, SuperSeed};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Why a torrent's super-seeding ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The core's own reasons: every piece out twice, or a lone leecher alone too long.
    Core(Stop),
    /// `seeding.super_seed = "auto"`: another seed connected.
    OtherSeed,
    /// `seeding.super_seed = "auto"`: a tracker counted this many seeds (this server and
    /// others) in an announce reply or a scrape.
    TrackerSeeds(u32),
}

/// One torrent's super-seeding state.
pub struct SuperSeeding {
    core: Mutex<SuperSeed>,
    /// Still super-seeding (false once it ended).
    on: AtomicBool,
    /// `"auto"`: ends when another seed connects.
    pub auto: bool,
    /// Why it ended, once it has.
    pub stopped: Mutex<Option<Ended>>,
}

impl SuperSeeding {
    pub fn new(pieces: usize, seed: u64, auto: bool, now: Instant) -> SuperSeeding {
        SuperSeeding {
            core: Mutex::new(SuperSeed::new(pieces, Config::default(), seed, now)),
            on: AtomicBool::new(true),
            auto,
            stopped: Mutex::new(None),
        }
    }

    /// Whether new connections are served super-seeding style.
    pub fn active(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SuperSeed> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a connection tells the torrent's super-seeder.
pub enum Seen<'a> {
    Joined,
    Bitfield(&'a [u8]),
    Have(u32),
    Left,
    /// The choker's tick: timers only.
    Tick,
}

impl TorrentCtx {
    /// Feeds what a connection (`key`) saw to the super-seeder, then delivers its offers and,
    /// if it stops, ends super-seeding for every connection. Nothing when not super-seeding.
    pub fn super_seed_saw(&self, key: PeerKey, seen: Seen<'_>, now: Instant) {
        let Some(ss) = self.superseed.as_ref().filter(|s| s.active()) else {
            return;
        };
        let (offers, stop) = {
            let mut core = ss.lock();
            match seen {
                Seen::Joined => core.handle_joined(key, now),
                Seen::Bitfield(bits) => core.handle_bitfield(key, bits, now),
                Seen::Have(i) => core.handle_have(key, i, now),
                Seen::Left => core.handle_left(key, now),
                Seen::Tick => core.handle_timeout(now),
            }
            let mut offers = Vec::new();
            while let Some(o) = core.poll_offer() {
                offers.push(o);
            }
            (offers, core.poll_stop())
        };
        if offers.is_empty() && stop.is_none() {
            return;
        }
        let handles = self.handles_locked();
        for (peer, piece) in offers {
            if let Some(h) = handles.get(&peer) {
                h.offers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(piece);
                h.wake.notify_one();
            }
        }
        drop(handles);
        if let Some(stop) = stop {
            self.end_super_seeding(Ended::Core(stop));
        }
    }

    /// A seed connected (and was let go: seeds need nothing from us). In `"auto"` mode this
    /// server is no longer the only seed, so super-seeding ends.
    pub fn super_seed_saw_seed(&self) {
        if self
            .superseed
            .as_ref()
            .is_some_and(|s| s.auto && s.active())
        {
            self.end_super_seeding(Ended::OtherSeed);
        }
    }

    /// A tracker's count of seeds for this torrent (announce reply or scrape). It counts this
    /// server too, once it has announced, so more than one means another seed: in `"auto"`
    /// mode super-seeding ends. (A tracker still listing a crashed earlier run of this server
    /// until it expires ends it too: then it ends early, never late.)
    pub fn super_seed_tracker_seeds(&self, seeders: Option<u32>) {
        let Some(n) = seeders.filter(|&n| n > 1) else {
            return;
        };
        if self
            .superseed
            .as_ref()
            .is_some_and(|s| s.auto && s.active())
        {
            self.end_super_seeding(Ended::TrackerSeeds(n));
        }
    }

    /// Ends super-seeding (once): every connection advertises everything from now on.
    fn end_super_seeding(&self, why: Ended) {
        let Some(ss) = &self.superseed else { return };
        if !ss.on.swap(false, Ordering::AcqRel) {
            return;
        }
        tracing::info!(torrent = %self.name, reason = ?why, "super-seeding ends: every peer is offered every piece now");
        *ss.stopped.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        for h in self.handles_locked().values() {
            h.unrestrict.store(true, Ordering::Release);
            h.wake.notify_one();
        }
    }
}
