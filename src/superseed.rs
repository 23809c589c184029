//! BEP 16 super-seeding for one torrent, sans I/O (time is passed in, results are polled).
//!
//! It owns the super-seed's decisions: what each peer has (from its bitfield, `have_all` and
//! `have` messages), how many leechers hold each piece, which piece each peer is offered (a
//! `have` the seed sends; the seed advertises nothing else), which requests may be served, and
//! when super-seeding should end. It sends nothing and knows no connections or clocks.
//!
//! A leecher is offered the rarest piece it lacks that nobody else is being offered (ties broken
//! by the seed given to [`SuperSeed::new`]), at most [`Config::max_offers`] at a time. An offer
//! ends when another peer announces that piece (it reached the swarm), or [`Config::offer_timeout`]
//! after it was made (whether or not the peer announced it), or, for a lone leecher (no other
//! leecher to pass it on to), when that peer itself announces it; a piece
//! in a peer's first bitfield that it was offered ends that offer at once. Peers with every piece
//! are seeds: they get no offers and are counted by [`SuperSeed::seeds`].
//!
//! # Call order
//! 1. [`SuperSeed::new`] when the torrent starts super-seeding; send peers no bitfield/have_all.
//! 2. [`SuperSeed::handle_joined`] once a peer's handshake is done; then
//!    [`SuperSeed::handle_bitfield`], [`SuperSeed::handle_have_all`] and
//!    [`SuperSeed::handle_have`] as its messages arrive; [`SuperSeed::handle_left`] when it goes
//!    (events for a peer not joined are ignored); [`SuperSeed::handle_timeout`] at
//!    [`SuperSeed::poll_timeout`].
//! 3. After every `handle_*`: [`SuperSeed::poll_offer`] until `None`, sending each `(peer, piece)`
//!    to that peer as a `have`; then [`SuperSeed::poll_stop`]: on `Some`, seed normally (send
//!    every peer its bitfield/have_all) and drop this value.
//! 4. On each `request`: serve it only if [`SuperSeed::may_serve`].
//!
//! # Cost
//! Availability is kept as pieces sorted by count with bucket bounds (`Rarity`), so a `have` is
//! O(1) plus O(log) map work; a bitfield is O(bytes + set bits); a peer turning seed or leaving
//! is O(its pieces). Picking an offer scans from the rarest bucket and stops at the first piece
//! the peer lacks and nobody is offered: O(pieces skipped), at worst O(pieces). Memory is
//! O(pieces) shared, pieces/8 bytes per leecher (none per seed), and O(offers).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::bitfield;
use crate::choke::PeerKey;

/// Super-seeding settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// An offer ends this long after it was made, announced by the peer or not.
    pub offer_timeout: Duration,
    /// Offers outstanding per peer at most.
    pub max_offers: usize,
    /// Offers outstanding at most for a lone leecher (nobody to pass pieces on to: a deeper
    /// queue keeps its download going).
    pub alone_offers: usize,
    /// Super-seeding ends once the swarm has been a single leecher this long.
    pub alone_grace: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            offer_timeout: Duration::from_secs(30),
            max_offers: 1,
            alone_offers: 4,
            alone_grace: Duration::from_secs(60),
        }
    }
}

/// Why super-seeding should end (the caller then seeds normally).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Every piece is held by at least two peers.
    EveryPieceOutTwice,
    /// One leecher has been alone for [`Config::alone_grace`].
    SingleLeecher,
}

/// splitmix64: small, deterministic, good enough for tie-breaking.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Pieces sorted by availability: `order[start[k]..start[k + 1]]` are the pieces held by exactly
/// `k` leechers, and `pos[p]` is piece `p`'s index in `order`. Moving a piece up or down one
/// count is a swap with its bucket's edge and a bound moved by one.
#[derive(Debug)]
struct Rarity {
    avail: Vec<u32>,
    order: Vec<u32>,
    pos: Vec<u32>,
    /// Always ends with `order.len()`, and is longer than the highest count plus one.
    start: Vec<u32>,
}

impl Rarity {
    fn new(n: u32, rng: &mut Rng) -> Rarity {
        let mut order: Vec<u32> = (0..n).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut pos = vec![0; order.len()];
        for (i, &p) in order.iter().enumerate() {
            pos[p as usize] = i as u32;
        }
        Rarity {
            avail: vec![0; order.len()],
            order,
            pos,
            start: vec![0, n],
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.order.swap(a, b);
        self.pos[self.order[a] as usize] = a as u32;
        self.pos[self.order[b] as usize] = b as u32;
    }

    fn inc(&mut self, p: u32) {
        let p = p as usize;
        let k = self.avail[p] as usize;
        if self.start.len() < k + 3 {
            self.start.push(self.order.len() as u32);
        }
        let last = self.start[k + 1] as usize - 1;
        self.swap(self.pos[p] as usize, last);
        self.start[k + 1] -= 1;
        self.avail[p] += 1;
    }

    fn dec(&mut self, p: u32) {
        let p = p as usize;
        let k = self.avail[p] as usize;
        if k == 0 {
            return;
        }
        let first = self.start[k] as usize;
        self.swap(self.pos[p] as usize, first);
        self.start[k] += 1;
        self.avail[p] -= 1;
    }

    /// How many pieces are held by fewer than `k` leechers.
    fn below(&self, k: usize) -> usize {
        self.start.get(k).map_or(self.order.len(), |&s| s as usize)
    }
}

#[derive(Debug, Clone, Copy)]
struct Offer {
    piece: u32,
    /// `None` when the timeout does not fit in an `Instant` (never expires).
    deadline: Option<Instant>,
}

#[derive(Debug)]
struct Peer {
    /// Pieces held (empty for a seed).
    has: Vec<u8>,
    count: usize,
    seed: bool,
    offers: Vec<Offer>,
}

/// One torrent's super-seeding state.
#[derive(Debug)]
pub struct SuperSeed {
    pieces: u32,
    cfg: Config,
    rng: Rng,
    rarity: Rarity,
    peers: BTreeMap<PeerKey, Peer>,
    /// Who is offered each piece now.
    offers_of: BTreeMap<u32, Vec<PeerKey>>,
    deadlines: BTreeSet<(Instant, PeerKey, u32)>,
    /// Leechers that may be owed an offer.
    pending: BTreeSet<PeerKey>,
    seeds: usize,
    alone_since: Option<Instant>,
    /// The latest time an event brought (offers made in `poll_offer` start then).
    now: Instant,
    stop: Option<Stop>,
    stopped: bool,
}

impl SuperSeed {
    /// A torrent of `pieces` pieces (at most `u32::MAX` are used); `seed` breaks ties.
    pub fn new(pieces: usize, cfg: Config, seed: u64, now: Instant) -> SuperSeed {
        let pieces = pieces.min(u32::MAX as usize) as u32;
        let mut rng = Rng(seed);
        let rarity = Rarity::new(pieces, &mut rng);
        let mut s = SuperSeed {
            pieces,
            cfg,
            rng,
            rarity,
            peers: BTreeMap::new(),
            offers_of: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            pending: BTreeSet::new(),
            seeds: 0,
            alone_since: None,
            now,
            stop: None,
            stopped: false,
        };
        s.check(now);
        s
    }

    /// A peer finished its handshake (a repeat is ignored); it is owed an offer.
    pub fn handle_joined(&mut self, peer: PeerKey, now: Instant) {
        if !self.peers.contains_key(&peer) {
            let has = vec![0; (self.pieces as usize).div_ceil(8)];
            let p = Peer {
                has,
                count: 0,
                seed: false,
                offers: Vec::new(),
            };
            self.peers.insert(peer, p);
            self.pending.insert(peer);
            if self.pieces == 0 {
                self.make_seed(peer);
            }
        }
        self.check(now);
    }

    /// A peer's bitfield: its set bits are added to what it has (spare bits and bytes past the
    /// end are ignored; a short one covers only its bytes). Offers of pieces in it end.
    pub fn handle_bitfield(&mut self, peer: PeerKey, bits: &[u8], now: Instant) {
        let n = self.pieces as usize;
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        if p.seed {
            return;
        }
        let full = bitfield::full(n);
        let covers = |i: usize| bits.get(i).map_or(0, |b| b & full[i]);
        if p.count == 0 && (0..full.len()).all(|i| covers(i) == full[i]) {
            self.make_seed(peer);
            self.check(now);
            return;
        }
        for (i, byte) in (0..full.len()).map(|i| (i, covers(i))) {
            if byte == 0 {
                continue;
            }
            for j in 0..8 {
                if byte & (0x80 >> j) != 0 {
                    self.add_piece(peer, (i * 8 + j) as u32, true);
                }
            }
        }
        self.seed_if_full(peer);
        self.check(now);
    }

    /// A peer has every piece: it is a seed from now on.
    pub fn handle_have_all(&mut self, peer: PeerKey, now: Instant) {
        if self.peers.get(&peer).is_some_and(|p| !p.seed) {
            self.make_seed(peer);
        }
        self.check(now);
    }

    /// A peer announced one piece (out of range: ignored). Offers of it to others end.
    pub fn handle_have(&mut self, peer: PeerKey, piece: u32, now: Instant) {
        if piece < self.pieces && self.peers.get(&peer).is_some_and(|p| !p.seed) {
            self.add_piece(peer, piece, false);
            self.seed_if_full(peer);
        }
        self.check(now);
    }

    /// A peer went away: its pieces no longer count and its offers end.
    pub fn handle_left(&mut self, peer: PeerKey, now: Instant) {
        self.drop_offers(peer);
        self.pending.remove(&peer);
        if let Some(p) = self.peers.remove(&peer) {
            if p.seed {
                self.seeds -= 1;
            } else {
                self.forget_pieces(&p.has);
            }
        }
        self.check(now);
    }

    /// Ends the offers that are due; checks the single-leecher grace.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, peer, piece)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.end_offer(peer, piece);
            self.pending.insert(peer);
        }
        self.check(now);
    }

    /// The next `have` to send: `(peer, piece)`. Call until `None` after every `handle_*`.
    pub fn poll_offer(&mut self) -> Option<(PeerKey, u32)> {
        let max = if self.leechers() <= 1 {
            self.cfg.max_offers.max(self.cfg.alone_offers)
        } else {
            self.cfg.max_offers
        };
        while let Some(&key) = self.pending.first() {
            let room = self
                .peers
                .get(&key)
                .is_some_and(|p| !p.seed && p.offers.len() < max);
            let piece = if room { self.pick(key) } else { None };
            let Some(piece) = piece else {
                self.pending.remove(&key);
                continue;
            };
            // Made at the last `handle_*` call's time: the caller sends it now.
            let deadline = self.now.checked_add(self.cfg.offer_timeout);
            if let Some(p) = self.peers.get_mut(&key) {
                p.offers.push(Offer { piece, deadline });
            }
            self.offers_of.entry(piece).or_default().push(key);
            if let Some(d) = deadline {
                self.deadlines.insert((d, key, piece));
            }
            return Some((key, piece));
        }
        None
    }

    /// When [`SuperSeed::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let offer = self.deadlines.first().map(|d| d.0);
        let alone = if self.stopped || self.stop.is_some() {
            None
        } else {
            self.alone_since
                .and_then(|t| t.checked_add(self.cfg.alone_grace))
        };
        match (offer, alone) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Why super-seeding should end, once.
    pub fn poll_stop(&mut self) -> Option<Stop> {
        let s = self.stop.take();
        if s.is_some() {
            self.stopped = true;
        }
        s
    }

    /// True only for a piece that peer is offered now.
    pub fn may_serve(&self, peer: PeerKey, piece: u32) -> bool {
        self.peers
            .get(&peer)
            .is_some_and(|p| p.offers.iter().any(|o| o.piece == piece))
    }

    /// Peers with every piece.
    pub fn seeds(&self) -> usize {
        self.seeds
    }

    /// Peers without every piece (including those yet to send a bitfield).
    pub fn leechers(&self) -> usize {
        self.peers.len() - self.seeds
    }

    /// How many peers (seeds included) hold `piece`; 0 when out of range.
    pub fn availability(&self, piece: u32) -> u32 {
        self.rarity
            .avail
            .get(piece as usize)
            .map_or(0, |&a| a.saturating_add(self.seeds as u32))
    }

    /// The pieces `peer` is offered now, oldest first.
    pub fn offered(&self, peer: PeerKey) -> Vec<u32> {
        self.peers
            .get(&peer)
            .map_or_else(Vec::new, |p| p.offers.iter().map(|o| o.piece).collect())
    }

    /// The rarest piece `key` lacks and is not offered, preferring pieces offered to nobody
    /// else; a random start inside each bucket breaks ties.
    fn pick(&mut self, key: PeerKey) -> Option<u32> {
        let peer = self.peers.get(&key)?;
        let r = &self.rarity;
        let mut fallback = None;
        for k in 0..r.start.len().saturating_sub(1) {
            let (a, b) = (r.start[k] as usize, r.start[k + 1] as usize);
            let len = b.saturating_sub(a);
            let off = self.rng.below(len);
            for i in 0..len {
                let piece = r.order[a + (off + i) % len];
                if bitfield::get(&peer.has, piece as usize)
                    || peer.offers.iter().any(|o| o.piece == piece)
                {
                    continue;
                }
                if !self.offers_of.contains_key(&piece) {
                    return Some(piece);
                }
                fallback = fallback.or(Some(piece));
            }
        }
        fallback
    }

    fn add_piece(&mut self, key: PeerKey, piece: u32, from_bitfield: bool) {
        // A lone leecher has no one else to pass its piece to: its own `have` ends its offer
        // (else it would wait out the offer timeout for every piece).
        let alone = self.leechers() <= 1;
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if piece >= self.pieces || p.seed || bitfield::get(&p.has, piece as usize) {
            return;
        }
        bitfield::set(&mut p.has, piece as usize);
        p.count += 1;
        self.rarity.inc(piece);
        let others: Vec<PeerKey> = self
            .offers_of
            .get(&piece)
            .map_or_else(Vec::new, |v| v.clone());
        for other in others {
            if other != key || from_bitfield || alone {
                self.end_offer(other, piece);
                self.pending.insert(other);
            }
        }
    }

    fn seed_if_full(&mut self, key: PeerKey) {
        if self
            .peers
            .get(&key)
            .is_some_and(|p| !p.seed && p.count >= self.pieces as usize)
        {
            self.make_seed(key);
        }
    }

    /// Turns a leecher into a seed: its pieces move from the counts to `seeds`.
    fn make_seed(&mut self, key: PeerKey) {
        self.drop_offers(key);
        self.pending.remove(&key);
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.seed {
            return;
        }
        p.seed = true;
        p.count = self.pieces as usize;
        let has = std::mem::take(&mut p.has);
        self.seeds += 1;
        self.forget_pieces(&has);
    }

    fn forget_pieces(&mut self, has: &[u8]) {
        for (i, &byte) in has.iter().enumerate() {
            for j in 0..8 {
                let piece = i * 8 + j;
                if byte & (0x80 >> j) != 0 && piece < self.pieces as usize {
                    self.rarity.dec(piece as u32);
                }
            }
        }
    }

    fn drop_offers(&mut self, key: PeerKey) {
        for piece in self.offered(key) {
            self.end_offer(key, piece);
        }
    }

    fn end_offer(&mut self, key: PeerKey, piece: u32) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        let Some(i) = p.offers.iter().position(|o| o.piece == piece) else {
            return;
        };
        let o = p.offers.remove(i);
        if let Some(d) = o.deadline {
            self.deadlines.remove(&(d, key, piece));
        }
        if let Some(v) = self.offers_of.get_mut(&piece) {
            v.retain(|&k| k != key);
            if v.is_empty() {
                self.offers_of.remove(&piece);
            }
        }
    }

    /// After every event: the time, the single-leecher clock and the stop conditions.
    fn check(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.leechers() == 1 {
            self.alone_since.get_or_insert(now);
        } else {
            self.alone_since = None;
        }
        if self.stopped || self.stop.is_some() {
            return;
        }
        // Fewer than two holders, counting seeds, which every piece has.
        let thin = self.rarity.below(2usize.saturating_sub(self.seeds));
        if thin == 0 {
            self.stop = Some(Stop::EveryPieceOutTwice);
        } else if self
            .alone_since
            .and_then(|t| t.checked_add(self.cfg.alone_grace))
            .is_some_and(|t| t <= now)
        {
            self.stop = Some(Stop::SingleLeecher);
        }
    }
}

#[cfg(test)]
#[path = "superseed_tests.rs"]
mod tests;
