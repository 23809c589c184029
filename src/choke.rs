//! Seed choking decisions, pure (time is passed in, results are returned).
//!
//! A seed has nothing to gain from a peer, so in [`Mode::RoundRobin`] slots rotate: an
//! interested peer is unchoked at once when a regular slot is free; every 10 s, peers that have
//! held a slot for at least [`ROTATE_AFTER`] give it to the interested peers that have waited
//! longest; and one extra optimistic slot moves every [`OPTIMISTIC_EVERY`] to the
//! longest-waiting peer. Peers that lose interest are choked and their slot refilled at once.
//!
//! [`Mode::AntiLeech`] ranks peers by how far their progress (given by [`Choker::set_progress`])
//! is from half the torrent: peers just starting and peers almost done come first, so the seed's
//! upload seeds new peers with pieces to trade and finishes nearly-done peers into seeds, while
//! peers in the middle trade with each other. Free slots go to the best-ranked waiting peer; at
//! each tick a better-ranked waiting peer takes the slot of a worse-ranked peer that has held it
//! for at least [`TICK`], and equally ranked peers rotate as in round robin. The optimistic
//! slot is the same in both modes.
//!
//! In both modes a regular slot is taken back, at the first tick a peer waits for it, from a
//! holder that starved it for a whole round (between two ticks): took no payload at all, or had
//! one send in flight all round that never completed (it stopped reading, or reads far slower
//! than it asks). [`Choker::set_activity`] reports what each peer took before each tick. Such a
//! peer, and every peer of its address group ([`Choker::add_in`]: one IPv4 address or IPv6
//! /64), then waits behind all others for [`STARVED_PENALTY`], so a few addresses holding many
//! connections cannot pass slots among themselves while an honest newcomer waits.
//!
//! It owns the decisions only: no I/O, no clock, no knowledge of connections (`state::torrent`
//! applies its changes).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often [`Choker::tick`] should run.
pub const TICK: Duration = Duration::from_secs(10);
/// A regular slot is handed on after being held this long, if someone is waiting.
pub const ROTATE_AFTER: Duration = Duration::from_secs(30);
/// The optimistic slot moves this often.
pub const OPTIMISTIC_EVERY: Duration = Duration::from_secs(30);
/// How long the address group of a peer that starved its slot waits behind every other peer.
pub const STARVED_PENALTY: Duration = Duration::from_secs(60);

/// A connection's id, unique in the process.
pub type PeerKey = u64;

/// How slots are handed out (`seeding.choker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    RoundRobin,
    AntiLeech,
}

impl Mode {
    /// Every mode, by its config name.
    pub const NAMES: [(&'static str, Mode); 2] = [
        ("round_robin", Mode::RoundRobin),
        ("anti_leech", Mode::AntiLeech),
    ];

    pub fn name(self) -> &'static str {
        Mode::NAMES
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("round_robin", |(n, _)| n)
    }

    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| *m)
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    interested: bool,
    unchoked: bool,
    /// When the peer last became unchoked (if unchoked) or started waiting (if interested).
    since: Instant,
    /// Pieces the peer has, as far as we know (anti-leech ranking).
    pieces: u32,
    /// Payload bytes sent to it and sends completed, at the last tick while unchoked (None
    /// until a round has started).
    last: Option<(u64, u64)>,
    /// The last whole round it held a slot, it took nothing or one send never completed.
    starving: bool,
    /// Its address group.
    group: u64,
}

/// A change to apply to a peer: `true` = choke, `false` = unchoke.
pub type Change = (PeerKey, bool);

/// Choking state of one torrent's peers.
#[derive(Debug)]
pub struct Choker {
    mode: Mode,
    /// The torrent's piece count (anti-leech ranking).
    total: u32,
    slots: usize,
    /// Nobody is unchoked while paused (a used-up quota with no rate left).
    paused: bool,
    peers: BTreeMap<PeerKey, Entry>,
    /// Address groups whose peers starved a slot, and when (the penalty runs from then).
    starved: std::collections::HashMap<u64, Instant>,
    optimistic: Option<PeerKey>,
    last_optimistic: Option<Instant>,
}

impl Choker {
    /// `slots` regular upload slots (0 = unlimited), plus one optimistic slot.
    pub fn new(slots: usize) -> Choker {
        Choker::with_mode(slots, Mode::RoundRobin, 0)
    }

    /// A choker in `mode` for a torrent of `total` pieces.
    pub fn with_mode(slots: usize, mode: Mode, total: u32) -> Choker {
        Choker {
            mode,
            total,
            slots,
            paused: false,
            peers: BTreeMap::new(),
            starved: std::collections::HashMap::new(),
            optimistic: None,
            last_optimistic: None,
        }
    }

    /// A peer in an address group of its own.
    pub fn add(&mut self, key: PeerKey, now: Instant) {
        self.add_in(key, key | 1 << 63, now);
    }

    /// A peer from address group `group` (peers of one group share a starved slot's penalty).
    pub fn add_in(&mut self, key: PeerKey, group: u64, now: Instant) {
        self.peers.insert(
            key,
            Entry {
                interested: false,
                unchoked: false,
                since: now,
                pieces: 0,
                last: None,
                starving: false,
                group,
            },
        );
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// How many pieces `key` has (from its bitfield, its `have`s and what we sent it); the
    /// next tick ranks by it.
    pub fn set_progress(&mut self, key: PeerKey, pieces: u32) {
        if let Some(e) = self.peers.get_mut(&key) {
            e.pieces = pieces.min(self.total);
        }
    }

    /// What `key` has taken so far: payload bytes sent to it, sends completed, and whether a
    /// send is in flight now. Called for every peer before each [`Choker::tick`]: between two
    /// calls while it held a slot, no new byte, or a send in flight throughout with none
    /// completed, marks it as starving its slot.
    pub fn set_activity(&mut self, key: PeerKey, uploaded: u64, sends_done: u64, sending: bool) {
        if let Some(e) = self.peers.get_mut(&key) {
            if !e.unchoked {
                e.last = None;
                e.starving = false;
                return;
            }
            e.starving = e
                .last
                .is_some_and(|(u, d)| uploaded == u || (sending && sends_done == d));
            e.last = Some((uploaded, sends_done));
        }
    }

    /// Anti-leech rank: distance from half the torrent (higher is served first); 0 in round
    /// robin, so only waiting time orders peers.
    fn rank(&self, e: &Entry) -> u64 {
        match self.mode {
            Mode::RoundRobin => 0,
            Mode::AntiLeech => (2 * u64::from(e.pieces)).abs_diff(u64::from(self.total)),
        }
    }

    /// Forgets a peer; its slot goes to a waiting peer.
    pub fn remove(&mut self, key: PeerKey, now: Instant) -> Vec<Change> {
        let was = self.peers.remove(&key);
        if self.optimistic == Some(key) {
            self.optimistic = None;
        }
        let mut changes = Vec::new();
        if was.is_some_and(|e| e.unchoked) {
            self.fill(now, &mut changes);
        }
        changes
    }

    pub fn set_interested(&mut self, key: PeerKey, interested: bool, now: Instant) -> Vec<Change> {
        let mut changes = Vec::new();
        let Some(e) = self.peers.get_mut(&key) else {
            return changes;
        };
        if e.interested == interested {
            return changes;
        }
        e.interested = interested;
        e.since = now;
        if !interested && e.unchoked {
            e.unchoked = false;
            changes.push((key, true));
            if self.optimistic == Some(key) {
                self.optimistic = None;
            }
        }
        self.fill(now, &mut changes);
        changes
    }

    /// Changes the number of regular slots; the next tick fills or rotates to it.
    pub fn set_slots(&mut self, slots: usize) {
        self.slots = slots;
    }

    /// Pauses (every peer choked, none unchoked until resumed) or resumes (free slots
    /// filled at once).
    pub fn set_paused(&mut self, paused: bool, now: Instant) -> Vec<Change> {
        let mut changes = Vec::new();
        if paused == self.paused {
            return changes;
        }
        self.paused = paused;
        if paused {
            let unchoked: Vec<PeerKey> = self
                .peers
                .iter()
                .filter(|(_, e)| e.unchoked)
                .map(|(k, _)| *k)
                .collect();
            for k in unchoked {
                self.set(k, false, now, &mut changes);
            }
            self.optimistic = None;
        } else {
            self.fill(now, &mut changes);
        }
        changes
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Periodic round-robin rotation and optimistic unchoke.
    pub fn tick(&mut self, now: Instant) -> Vec<Change> {
        let mut changes = Vec::new();
        if self.paused {
            return changes;
        }
        if self.slots > 0 {
            self.rotate(now, &mut changes);
            self.rotate_optimistic(now, &mut changes);
        }
        self.fill(now, &mut changes);
        changes
    }

    /// Hands regular slots on: to the best-ranked waiting peers, from the worst-ranked holders
    /// that may lose theirs (held [`ROTATE_AFTER`] for an equal rank, [`TICK`] for a worse one).
    fn rotate(&mut self, now: Instant, changes: &mut Vec<Change>) {
        // The groups of this round's starving holders wait last from now on (their peers
        // already waiting included).
        self.starved
            .retain(|_, at| now.saturating_duration_since(*at) < STARVED_PENALTY);
        let groups: Vec<u64> = self
            .peers
            .values()
            .filter(|e| e.unchoked && e.starving)
            .map(|e| e.group)
            .collect();
        for g in groups {
            self.starved.insert(g, now);
        }
        let mut waiting: Vec<(PeerKey, u64)> = self
            .waiting(now)
            .into_iter()
            .filter(|k| Some(*k) != self.optimistic)
            .map(|k| (k, self.rank(&self.peers[&k])))
            .collect();
        waiting.truncate(self.slots);
        // Slots starved for a whole round go first, to the best waiting peers, whatever rank.
        let starving: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(k, e)| e.unchoked && e.starving && Some(**k) != self.optimistic)
            .map(|(k, _)| *k)
            .collect();
        let taken = starving.len().min(waiting.len());
        for (out, (incoming, _)) in starving.into_iter().zip(waiting.drain(..taken)) {
            self.set(out, false, now, changes);
            self.set(incoming, true, now, changes);
        }
        let mut holders: Vec<(u64, Instant, PeerKey)> = self
            .peers
            .iter()
            .filter(|(k, e)| e.unchoked && Some(**k) != self.optimistic)
            .map(|(k, e)| (self.rank(e), e.since, *k))
            .collect();
        holders.sort();
        for (incoming, rank) in waiting {
            let yields = |&(held_rank, since, _): &(u64, Instant, PeerKey)| {
                let held = now.saturating_duration_since(since);
                (rank > held_rank && held >= TICK) || (rank == held_rank && held >= ROTATE_AFTER)
            };
            // Later waiting peers rank no higher: if nobody yields to this one, nobody will.
            let Some(pos) = holders.iter().position(yields) else {
                break;
            };
            let (_, _, out) = holders.remove(pos);
            self.set(out, false, now, changes);
            self.set(incoming, true, now, changes);
        }
    }

    fn rotate_optimistic(&mut self, now: Instant, changes: &mut Vec<Change>) {
        let due = self
            .last_optimistic
            .is_none_or(|t| now.saturating_duration_since(t) >= OPTIMISTIC_EVERY);
        if !due {
            return;
        }
        let Some(next) = self
            .waiting(now)
            .into_iter()
            .find(|k| Some(*k) != self.optimistic)
        else {
            return;
        };
        if let Some(old) = self.optimistic.take() {
            self.set(old, false, now, changes);
        }
        self.set(next, true, now, changes);
        self.optimistic = Some(next);
        self.last_optimistic = Some(now);
    }

    /// Interested, choked peers: those of groups that starved a slot within
    /// [`STARVED_PENALTY`] last; before that, those whose group holds fewer slots first (one
    /// address with many connections does not take turns ahead of others), then best-ranked,
    /// then longest-waiting.
    fn waiting(&self, now: Instant) -> Vec<PeerKey> {
        let penalized = |e: &Entry| {
            self.starved
                .get(&e.group)
                .is_some_and(|at| now.saturating_duration_since(*at) < STARVED_PENALTY)
        };
        let mut held: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
        for e in self.peers.values().filter(|e| e.unchoked) {
            *held.entry(e.group).or_default() += 1;
        }
        let mut w: Vec<_> = self
            .peers
            .iter()
            .filter(|(_, e)| e.interested && !e.unchoked)
            .map(|(k, e)| {
                let holds = held.get(&e.group).copied().unwrap_or(0);
                (
                    penalized(e),
                    holds,
                    std::cmp::Reverse(self.rank(e)),
                    e.since,
                    *k,
                )
            })
            .collect();
        w.sort();
        w.into_iter().map(|(_, _, _, _, k)| k).collect()
    }

    fn regular_unchoked(&self) -> usize {
        self.peers
            .iter()
            .filter(|(k, e)| e.unchoked && Some(**k) != self.optimistic)
            .count()
    }

    /// Unchokes waiting peers into free regular slots (none while paused).
    fn fill(&mut self, now: Instant, changes: &mut Vec<Change>) {
        if self.paused {
            return;
        }
        let free = if self.slots == 0 {
            usize::MAX
        } else {
            self.slots.saturating_sub(self.regular_unchoked())
        };
        for k in self.waiting(now).into_iter().take(free) {
            self.set(k, true, now, changes);
        }
    }

    fn set(&mut self, key: PeerKey, unchoke: bool, now: Instant, changes: &mut Vec<Change>) {
        if let Some(e) = self.peers.get_mut(&key) {
            if e.unchoked != unchoke {
                e.unchoked = unchoke;
                e.since = now;
                e.last = None;
                e.starving = false;
                // A peer leaving the optimistic slot by being choked is no longer optimistic.
                if !unchoke && self.optimistic == Some(key) {
                    self.optimistic = None;
                }
                changes.push((key, !unchoke));
            }
        }
    }

    pub fn is_unchoked(&self, key: PeerKey) -> bool {
        self.peers.get(&key).is_some_and(|e| e.unchoked)
    }

    pub fn unchoked_count(&self) -> usize {
        self.peers.values().filter(|e| e.unchoked).count()
    }
}

#[cfg(test)]
#[path = "choke_tests.rs"]
mod tests;
