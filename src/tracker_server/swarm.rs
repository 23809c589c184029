//! The built-in tracker's peer table: per info-hash a bounded set of peers (address, peer id,
//! seed flag, last seen), the announce and scrape answers drawn from it, expiry after two
//! intervals, and the open/closed policy (closed: only registered info-hashes are tracked).
//!
//! Sans I/O: time comes in as an [`Instant`], the peer rotation is a seeded PRNG, and every
//! table is bounded (peers per torrent, torrents when open, peers per answer).

use crate::metainfo::InfoHash;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The announce `event`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    None,
    Started,
    Stopped,
    Completed,
}

/// Which address families an answer may carry (UDP answers only the request's family).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Both,
    V4,
    V6,
}

/// The swarm's limits and policy.
#[derive(Clone, Debug)]
pub struct SwarmConfig {
    /// Track any info-hash (true) or only those registered with [`Swarm::allow`].
    pub open: bool,
    /// The announce interval handed out; peers expire after two of them.
    pub interval: Duration,
    /// The `min interval` handed out.
    pub min_interval: Duration,
    /// Peers kept per torrent; a new peer past it evicts the one seen longest ago.
    pub max_peers_per_torrent: usize,
    /// Torrents tracked when open (registered ones always are).
    pub max_torrents: usize,
    /// Peers kept over all torrents (about 110 bytes each): past it, a new peer evicts the
    /// oldest of its torrent, or is refused when its torrent has none.
    pub max_peers_total: usize,
    /// Peers returned when the request names no `numwant`.
    pub default_numwant: usize,
    /// The most peers one answer returns, whatever `numwant` asks.
    pub max_numwant: usize,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            open: false,
            interval: Duration::from_secs(1800),
            min_interval: Duration::from_secs(300),
            max_peers_per_torrent: 2000,
            max_torrents: 100_000,
            max_peers_total: 1_000_000,
            default_numwant: 50,
            max_numwant: 200,
        }
    }
}

/// One announce, already decoded (HTTP or UDP); `addr` is the connection's source address
/// (or a configured-trusted `ip` parameter), never taken from the query by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce {
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
    pub addr: SocketAddr,
    pub left: u64,
    pub event: Event,
    /// `None`: the default; capped at `max_numwant`.
    pub numwant: Option<usize>,
    pub family: Family,
}

/// A peer handed out in an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    pub peer_id: [u8; 20],
}

/// The answer to an announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Seconds.
    pub interval: u32,
    /// Seconds.
    pub min_interval: u32,
    /// Seeds.
    pub complete: u32,
    /// Leechers.
    pub incomplete: u32,
    /// IPv4 peers (compact `peers`, 6 bytes each).
    pub peers4: Vec<PeerInfo>,
    /// IPv6 peers (compact `peers6`, 18 bytes each).
    pub peers6: Vec<PeerInfo>,
}

/// One torrent's scrape counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub complete: u32,
    pub downloaded: u32,
    pub incomplete: u32,
}

/// Why an announce was refused (the text is the `failure reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwarmError {
    /// Closed mode and the info-hash is not one of ours.
    UnknownTorrent,
    /// Open mode and the torrent table is full.
    TooManyTorrents,
    /// The table holds `max_peers_total` and the torrent has no peer to evict.
    TooManyPeers,
}

impl SwarmError {
    pub fn reason(self) -> &'static str {
        match self {
            SwarmError::UnknownTorrent => "unknown torrent",
            SwarmError::TooManyTorrents | SwarmError::TooManyPeers => "tracker full",
        }
    }
}

#[derive(Clone, Debug)]
struct Peer {
    addr: SocketAddr,
    peer_id: [u8; 20],
    seed: bool,
    seen: Instant,
}

#[derive(Debug, Default)]
struct Torrent {
    /// Dense, for rotation; `index` maps an address to its slot.
    peers: Vec<Peer>,
    index: HashMap<SocketAddr, usize>,
    seeds: usize,
    downloaded: u32,
    /// When this torrent is next swept for expired peers during an announce.
    next_sweep: Option<Instant>,
}

impl Torrent {
    fn remove_at(&mut self, i: usize) {
        let p = self.peers.swap_remove(i);
        self.index.remove(&p.addr);
        if p.seed {
            self.seeds -= 1;
        }
        if let Some(moved) = self.peers.get(i) {
            self.index.insert(moved.addr, i);
        }
    }

    fn remove(&mut self, addr: &SocketAddr) -> bool {
        match self.index.get(addr).copied() {
            Some(i) => {
                self.remove_at(i);
                true
            }
            None => false,
        }
    }

    /// Removes every peer not seen since `cutoff`; returns how many went.
    fn sweep(&mut self, cutoff: Instant) -> usize {
        let mut gone = 0;
        let mut i = 0;
        while i < self.peers.len() {
            if self.peers[i].seen < cutoff {
                self.remove_at(i);
                gone += 1;
            } else {
                i += 1;
            }
        }
        gone
    }

    fn counts(&self) -> Counts {
        Counts {
            complete: sat32(self.seeds),
            downloaded: self.downloaded,
            incomplete: sat32(self.peers.len() - self.seeds),
        }
    }
}

fn sat32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The peer table. See the module doc.
#[derive(Debug)]
pub struct Swarm {
    cfg: SwarmConfig,
    torrents: HashMap<InfoHash, Torrent>,
    allowed: HashSet<InfoHash>,
    /// Torrents in `torrents` that are in `allowed`: the others share `max_torrents`.
    registered_in: usize,
    peers: usize,
    rng: u64,
}

impl Swarm {
    /// `seed` drives the peer rotation (any value; a random one in production).
    pub fn new(cfg: SwarmConfig, seed: u64) -> Swarm {
        Swarm {
            cfg,
            torrents: HashMap::new(),
            allowed: HashSet::new(),
            registered_in: 0,
            peers: 0,
            rng: seed | 1,
        }
    }

    pub fn config(&self) -> &SwarmConfig {
        &self.cfg
    }

    /// Registers a torrent this server seeds: tracked in closed mode, never evicted.
    pub fn allow(&mut self, ih: InfoHash) {
        if self.allowed.insert(ih) && self.torrents.contains_key(&ih) {
            self.registered_in += 1;
        }
    }

    /// Unregisters a torrent; in closed mode its peers are dropped.
    pub fn disallow(&mut self, ih: InfoHash) {
        if self.allowed.remove(&ih) && self.torrents.contains_key(&ih) {
            self.registered_in -= 1;
        }
        if !self.cfg.open {
            if let Some(t) = self.torrents.remove(&ih) {
                self.peers -= t.peers.len();
            }
        }
    }

    pub fn is_allowed(&self, ih: &InfoHash) -> bool {
        self.allowed.contains(ih)
    }

    /// Whether announces for `ih` are accepted under the policy.
    pub fn tracks(&self, ih: &InfoHash) -> bool {
        self.cfg.open || self.allowed.contains(ih)
    }

    /// Peers in the table (all torrents).
    pub fn peer_count(&self) -> usize {
        self.peers
    }

    /// Torrents with an entry in the table.
    pub fn torrent_count(&self) -> usize {
        self.torrents.len()
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: enough to rotate which peers an answer starts from.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn expiry(&self) -> Duration {
        self.cfg.interval.saturating_mul(2)
    }

    /// Records an announce and answers it with counts and up to `numwant` other peers.
    pub fn announce(&mut self, a: &Announce, now: Instant) -> Result<Reply, SwarmError> {
        if !self.tracks(&a.info_hash) {
            return Err(SwarmError::UnknownTorrent);
        }
        let cutoff = now.checked_sub(self.expiry());
        if !self.torrents.contains_key(&a.info_hash) {
            if a.event == Event::Stopped {
                return Ok(self.reply(Counts::default(), Vec::new(), Vec::new()));
            }
            // Registered torrents always get in; the others share `max_torrents` (counted
            // apart: they may not take the room of registered ones not announced yet, which
            // the `tracker_server` fuzz target found they did).
            let registered = self.allowed.contains(&a.info_hash);
            let unregistered = self.torrents.len() - self.registered_in;
            if !registered && unregistered >= self.cfg.max_torrents {
                return Err(SwarmError::TooManyTorrents);
            }
            self.registered_in += usize::from(registered);
            self.torrents.insert(a.info_hash, Torrent::default());
        }
        let max_peers = self.cfg.max_peers_per_torrent.max(1);
        let table_full = self.peers >= self.cfg.max_peers_total;
        let mut refused = false;
        let want = a
            .numwant
            .unwrap_or(self.cfg.default_numwant)
            .min(self.cfg.max_numwant);
        let start = self.next_rand();
        let sweep_every = self.cfg.interval / 4;
        let t = self.torrents.get_mut(&a.info_hash).expect("inserted above");
        let before = t.peers.len();
        if let Some(cutoff) = cutoff {
            if t.next_sweep.is_none_or(|at| now >= at) {
                t.sweep(cutoff);
                t.next_sweep = Some(now + sweep_every);
            }
        }
        let seed = a.left == 0;
        if a.event == Event::Stopped {
            t.remove(&a.addr);
        } else {
            match t.index.get(&a.addr).copied() {
                Some(i) => {
                    let p = &mut t.peers[i];
                    if a.event == Event::Completed && !p.seed {
                        t.downloaded = t.downloaded.saturating_add(1);
                    }
                    if p.seed != seed {
                        if seed {
                            t.seeds += 1;
                        } else {
                            t.seeds -= 1;
                        }
                    }
                    p.seed = seed;
                    p.peer_id = a.peer_id;
                    p.seen = now;
                }
                None if table_full && t.peers.is_empty() => refused = true,
                None => {
                    if t.peers.len() >= max_peers || table_full {
                        let oldest = (0..t.peers.len()).min_by_key(|&i| t.peers[i].seen);
                        if let Some(oldest) = oldest {
                            t.remove_at(oldest);
                        }
                    }
                    if a.event == Event::Completed {
                        t.downloaded = t.downloaded.saturating_add(1);
                    }
                    t.index.insert(a.addr, t.peers.len());
                    t.peers.push(Peer {
                        addr: a.addr,
                        peer_id: a.peer_id,
                        seed,
                        seen: now,
                    });
                    if seed {
                        t.seeds += 1;
                    }
                }
            }
        }
        let n = t.peers.len();
        let room = want.min(n);
        let (mut peers4, mut peers6, mut stale) =
            (Vec::with_capacity(room), Vec::new(), Vec::new());
        if want > 0 && a.event != Event::Stopped && n > 0 {
            let first = (start % n as u64) as usize;
            for k in 0..n {
                if peers4.len() + peers6.len() >= want {
                    break;
                }
                let i = (first + k) % n;
                let p = &t.peers[i];
                if p.addr == a.addr {
                    continue;
                }
                if cutoff.is_some_and(|c| p.seen < c) {
                    stale.push(p.addr);
                    continue;
                }
                // A seed gets no seeds: they have nothing for each other.
                if seed && p.seed {
                    continue;
                }
                let info = PeerInfo {
                    addr: p.addr,
                    peer_id: p.peer_id,
                };
                match (p.addr, a.family) {
                    (SocketAddr::V4(_), Family::Both | Family::V4) => peers4.push(info),
                    (SocketAddr::V6(_), Family::Both | Family::V6) => peers6.push(info),
                    _ => {}
                }
            }
        }
        for s in &stale {
            t.remove(s);
        }
        let counts = t.counts();
        let after = t.peers.len();
        let empty = after == 0 && !self.allowed.contains(&a.info_hash);
        self.peers = self.peers + after - before;
        if empty {
            self.torrents.remove(&a.info_hash);
        }
        if refused {
            return Err(SwarmError::TooManyPeers);
        }
        Ok(self.reply(counts, peers4, peers6))
    }

    fn reply(&self, c: Counts, peers4: Vec<PeerInfo>, peers6: Vec<PeerInfo>) -> Reply {
        Reply {
            interval: secs32(self.cfg.interval),
            min_interval: secs32(self.cfg.min_interval),
            complete: c.complete,
            incomplete: c.incomplete,
            peers4,
            peers6,
        }
    }

    /// The counts of each info-hash asked for, in order; `None` for one not tracked under the
    /// policy (closed and not ours). A tracked torrent with no peers gets zeros.
    pub fn scrape(&self, hashes: &[InfoHash]) -> Vec<Option<Counts>> {
        hashes
            .iter()
            .map(|ih| match self.torrents.get(ih) {
                Some(t) => Some(t.counts()),
                None => self.tracks(ih).then(Counts::default),
            })
            .collect()
    }

    /// Drops every peer not seen for two intervals, and the torrents left empty that are not
    /// registered. Returns how many peers went.
    pub fn expire(&mut self, now: Instant) -> usize {
        let Some(cutoff) = now.checked_sub(self.expiry()) else {
            return 0;
        };
        let mut gone = 0;
        let allowed = &self.allowed;
        self.torrents.retain(|ih, t| {
            gone += t.sweep(cutoff);
            !t.peers.is_empty() || allowed.contains(ih)
        });
        self.peers -= gone;
        gone
    }
}

fn secs32(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[path = "swarm_tests.rs"]
mod tests;
