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
            optimistic: None,
            last_optimistic: None,
        }
    }

    pub fn add(&mut self, key: PeerKey, now: Instant) {
        self.peers.insert(
            key,
            Entry {
                interested: false,
                unchoked: false,
                since: now,
                pieces: 0,
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
        let mut waiting: Vec<(PeerKey, u64)> = self
            .waiting()
            .into_iter()
            .filter(|k| Some(*k) != self.optimistic)
            .map(|k| (k, self.rank(&self.peers[&k])))
            .collect();
        waiting.truncate(self.slots);
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
            .waiting()
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

    /// Interested, choked peers, best-ranked first, then longest-waiting first.
    fn waiting(&self) -> Vec<PeerKey> {
        let mut w: Vec<(std::cmp::Reverse<u64>, Instant, PeerKey)> = self
            .peers
            .iter()
            .filter(|(_, e)| e.interested && !e.unchoked)
            .map(|(k, e)| (std::cmp::Reverse(self.rank(e)), e.since, *k))
            .collect();
        w.sort();
        w.into_iter().map(|(_, _, k)| k).collect()
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
        for k in self.waiting().into_iter().take(free) {
            self.set(k, true, now, changes);
        }
    }

    fn set(&mut self, key: PeerKey, unchoke: bool, now: Instant, changes: &mut Vec<Change>) {
        if let Some(e) = self.peers.get_mut(&key) {
            if e.unchoked != unchoke {
                e.unchoked = unchoke;
                e.since = now;
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
mod tests {
    use super::*;

    fn unchoked(c: &Choker) -> Vec<PeerKey> {
        c.peers
            .iter()
            .filter(|(_, e)| e.unchoked)
            .map(|(k, _)| *k)
            .collect()
    }

    #[test]
    fn fills_free_slots_at_once_and_refills_on_leave() {
        let t0 = Instant::now();
        let mut c = Choker::new(2);
        for k in 1..=4 {
            c.add(k, t0);
        }
        assert_eq!(c.set_interested(1, true, t0), vec![(1, false)]);
        assert_eq!(c.set_interested(2, true, t0), vec![(2, false)]);
        assert_eq!(c.set_interested(3, true, t0), vec![]);
        assert_eq!(c.set_interested(1, false, t0), vec![(1, true), (3, false)]);
        assert_eq!(c.remove(2, t0), vec![]);
        assert_eq!(unchoked(&c), vec![3]);
    }

    #[test]
    fn rotates_round_robin_with_one_optimistic_slot() {
        let t0 = Instant::now();
        let mut c = Choker::new(1);
        for k in 1..=3 {
            c.add(k, t0);
            c.set_interested(k, true, t0);
        }
        assert_eq!(unchoked(&c), vec![1]);
        // First tick: the optimistic slot goes to the longest-waiting peer.
        c.tick(t0 + TICK);
        assert_eq!(unchoked(&c), vec![1, 2]);
        assert_eq!(c.optimistic, Some(2));
        // After ROTATE_AFTER peer 1 hands its slot to 3; the optimistic slot is not yet due.
        c.tick(t0 + ROTATE_AFTER);
        assert_eq!(unchoked(&c), vec![2, 3]);
        // Optimistic moves on: 2 is choked, the longest waiting (1) takes the extra slot.
        c.tick(t0 + TICK + OPTIMISTIC_EVERY);
        assert_eq!(unchoked(&c), vec![1, 3]);
        assert!(c.unchoked_count() <= 2);
    }

    #[test]
    fn pausing_chokes_everyone_until_resumed() {
        let t0 = Instant::now();
        let mut c = Choker::new(2);
        for k in 1..=3 {
            c.add(k, t0);
            c.set_interested(k, true, t0);
        }
        c.tick(t0 + TICK);
        assert_eq!(
            unchoked(&c),
            vec![1, 2, 3],
            "two slots and the optimistic one"
        );
        let changes = c.set_paused(true, t0 + TICK);
        assert_eq!(changes, vec![(1, true), (2, true), (3, true)]);
        assert!(c.set_interested(4, true, t0).is_empty());
        c.add(5, t0);
        assert!(c.set_interested(5, true, t0).is_empty());
        assert!(c.tick(t0 + ROTATE_AFTER * 3).is_empty());
        assert_eq!(c.unchoked_count(), 0);
        let resumed = c.set_paused(false, t0 + ROTATE_AFTER * 3);
        assert_eq!(
            resumed.len(),
            2,
            "the free slots filled at once: {resumed:?}"
        );
        assert!(resumed.iter().all(|(_, choke)| !choke));
    }

    #[test]
    fn unlimited_slots_unchoke_everyone_interested() {
        let t0 = Instant::now();
        let mut c = Choker::new(0);
        for k in 1..=50 {
            c.add(k, t0);
            assert_eq!(c.set_interested(k, true, t0), vec![(k, false)]);
        }
        assert!(c.tick(t0 + ROTATE_AFTER * 2).is_empty());
        assert_eq!(c.unchoked_count(), 50);
    }

    #[test]
    fn anti_leech_serves_new_and_nearly_done_peers_before_the_middle() {
        let t0 = Instant::now();
        let mut c = Choker::with_mode(1, Mode::AntiLeech, 100);
        for k in 1..=3 {
            c.add(k, t0);
        }
        c.set_progress(1, 50);
        c.set_progress(2, 97);
        c.set_progress(3, 0);
        // 1 waited longest, but is halfway: the free slot goes to the best-ranked peer.
        c.set_interested(1, true, t0);
        assert_eq!(
            c.set_interested(2, true, t0),
            vec![],
            "the one slot is held by 1"
        );
        c.set_interested(3, true, t0);
        assert_eq!(unchoked(&c), vec![1]);
        // Before TICK nobody is moved but the optimistic slot fills (best rank: 3, then 2).
        c.tick(t0 + TICK / 2);
        assert_eq!(unchoked(&c), vec![1, 3]);
        assert_eq!(c.optimistic, Some(3));
        // After TICK the halfway holder yields to the waiting peer that ranks better (2).
        c.tick(t0 + TICK);
        assert_eq!(unchoked(&c), vec![2, 3]);
        // 2 is now halfway too, 1 is still halfway: equal ranks rotate only after ROTATE_AFTER.
        c.set_progress(2, 50);
        c.tick(t0 + TICK * 2);
        assert_eq!(unchoked(&c), vec![2, 3]);
        c.tick(t0 + TICK + ROTATE_AFTER);
        // 1 took 2's regular slot; the optimistic slot, due again, moved from 3 to 2.
        assert_eq!(unchoked(&c), vec![1, 2]);
        assert_eq!(c.optimistic, Some(2));
    }

    #[test]
    fn anti_leech_with_unknown_progress_is_round_robin() {
        let t0 = Instant::now();
        let (mut rr, mut al) = (Choker::new(2), Choker::with_mode(2, Mode::AntiLeech, 64));
        for k in 1..=6 {
            for c in [&mut rr, &mut al] {
                c.add(k, t0);
                c.set_interested(k, true, t0 + Duration::from_millis(k));
            }
        }
        for step in 1..=8 {
            let now = t0 + TICK * step;
            assert_eq!(rr.tick(now), al.tick(now), "tick {step}");
        }
        assert_eq!(Mode::from_name("anti_leech"), Some(Mode::AntiLeech));
        assert_eq!(
            Mode::from_name(Mode::RoundRobin.name()),
            Some(Mode::RoundRobin)
        );
        assert_eq!(Mode::from_name("fastest"), None);
    }
}
