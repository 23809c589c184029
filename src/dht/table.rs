//! The routing table for one address family: 160 fixed k-buckets ([`K`] = 8) indexed by the
//! length of the prefix a node's id shares with ours, each node good, questionable or bad.
//!
//! Why fixed buckets rather than BEP 5's split-bucket tree: the tree only ever splits the
//! bucket that holds our own id, so its buckets are exactly "nodes sharing i leading bits with
//! us" for i below the split depth, plus one catch-all; the fixed array keeps the same
//! contents for every bucket that holds nodes (the deeper ones fill naturally: a random
//! network has about log2(n) non-empty buckets) and needs no split logic. It is bounded by
//! 160 × 8 = 1,280 nodes plus one replacement candidate per bucket.
//!
//! States: good = answered us within [`GOOD_FOR`]; bad = [`BAD_AFTER`] failures in a row;
//! questionable otherwise. A full bucket takes a new node by replacing a bad one; failing
//! that, the new node waits as the bucket's replacement while its questionable nodes are
//! pinged (the caller sends the pings [`Insert::PingFirst`] names and reports failures with
//! [`Table::failed`], which swaps the replacement in). No more than [`PER_SUBNET`] nodes share
//! a /24 (IPv4) or /64 (IPv6) unless loopback; our own id is never stored.

use super::id::NodeId;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub const K: usize = 8;
/// A node is good this long after its last response.
pub const GOOD_FOR: Duration = Duration::from_secs(15 * 60);
/// Failures in a row that make a node bad.
pub const BAD_AFTER: u32 = 2;
/// Most nodes from one /24 (v4) or /64 (v6), loopback exempt.
pub const PER_SUBNET: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Good,
    Questionable,
    Bad,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub id: NodeId,
    pub addr: SocketAddr,
    pub last_response: Option<Instant>,
    pub last_ping: Option<Instant>,
    pub failures: u32,
}

impl Entry {
    pub fn state(&self, now: Instant) -> State {
        if self.failures >= BAD_AFTER {
            State::Bad
        } else if self
            .last_response
            .is_some_and(|t| now.saturating_duration_since(t) < GOOD_FOR)
        {
            State::Good
        } else {
            State::Questionable
        }
    }
}

#[derive(Debug, Clone)]
struct Bucket {
    nodes: Vec<Entry>,
    replacement: Option<Entry>,
    touched: Instant,
}

/// What [`Table::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    Added,
    Updated,
    /// The bucket is full of live nodes: these questionable ones should be pinged; the new
    /// node waits as the replacement.
    PingFirst(Vec<(NodeId, SocketAddr)>),
    /// Refused: our own id, a different address for a known id (or id for a known address),
    /// the subnet cap, or a bucket of good nodes.
    Refused(&'static str),
}

pub struct Table {
    own: NodeId,
    buckets: Vec<Bucket>,
}

fn subnet_key(ip: IpAddr) -> Option<[u8; 8]> {
    match ip.to_canonical() {
        IpAddr::V4(v4) if !v4.is_loopback() => {
            let o = v4.octets();
            Some([4, o[0], o[1], o[2], 0, 0, 0, 0])
        }
        IpAddr::V6(v6) if !v6.is_loopback() => {
            let mut k = [0u8; 8];
            k.copy_from_slice(&v6.octets()[..8]);
            Some(k)
        }
        _ => None,
    }
}

impl Table {
    pub fn new(own: NodeId, now: Instant) -> Table {
        let bucket = Bucket {
            nodes: Vec::new(),
            replacement: None,
            touched: now,
        };
        Table {
            own,
            buckets: vec![bucket; 160],
        }
    }

    pub fn own(&self) -> NodeId {
        self.own
    }

    fn index(&self, id: &NodeId) -> Option<usize> {
        let p = self.own.shared_prefix(id);
        (p < 160).then_some(p)
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.nodes.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn find(&self, id: &NodeId) -> Option<&Entry> {
        let i = self.index(id)?;
        self.buckets[i].nodes.iter().find(|e| e.id == *id)
    }

    fn find_mut(&mut self, id: &NodeId) -> Option<&mut Entry> {
        let i = self.index(id)?;
        self.buckets[i].nodes.iter_mut().find(|e| e.id == *id)
    }

    pub fn contains(&self, id: &NodeId) -> bool {
        self.find(id).is_some()
    }

    fn subnet_count(&self, ip: IpAddr) -> usize {
        let Some(key) = subnet_key(ip) else { return 0 };
        self.buckets
            .iter()
            .flat_map(|b| b.nodes.iter())
            .filter(|e| subnet_key(e.addr.ip()) == Some(key))
            .count()
    }

    fn addr_known(&self, addr: SocketAddr) -> bool {
        self.buckets
            .iter()
            .flat_map(|b| b.nodes.iter())
            .any(|e| e.addr == addr)
    }

    /// Adds or refreshes a node. `responded`: it just answered one of our queries (good);
    /// otherwise it is stored as questionable (a saved node, not yet heard from).
    pub fn insert(
        &mut self,
        id: NodeId,
        addr: SocketAddr,
        responded: bool,
        now: Instant,
    ) -> Insert {
        let Some(i) = self.index(&id) else {
            return Insert::Refused("own_id");
        };
        if let Some(e) = self.find_mut(&id) {
            if e.addr != addr {
                return Insert::Refused("id_moved");
            }
            if responded {
                e.last_response = Some(now);
                e.failures = 0;
                self.buckets[i].touched = now;
            }
            return Insert::Updated;
        }
        if self.addr_known(addr) {
            return Insert::Refused("addr_taken");
        }
        if self.subnet_count(addr.ip()) >= PER_SUBNET {
            return Insert::Refused("subnet");
        }
        let entry = Entry {
            id,
            addr,
            last_response: responded.then_some(now),
            last_ping: None,
            failures: 0,
        };
        let bucket = &mut self.buckets[i];
        if responded {
            bucket.touched = now;
        }
        if bucket.nodes.len() < K {
            bucket.nodes.push(entry);
            return Insert::Added;
        }
        if let Some(bad) = bucket.nodes.iter().position(|e| e.state(now) == State::Bad) {
            bucket.nodes[bad] = entry;
            return Insert::Added;
        }
        let questionable: Vec<_> = bucket
            .nodes
            .iter()
            .filter(|e| e.state(now) == State::Questionable)
            .map(|e| (e.id, e.addr))
            .collect();
        if questionable.is_empty() || !responded {
            return Insert::Refused("bucket_full");
        }
        bucket.replacement = Some(entry);
        Insert::PingFirst(questionable)
    }

    /// A query to `id` failed (timeout or error); a node that turns bad is replaced by the
    /// bucket's waiting replacement, if any.
    pub fn failed(&mut self, id: &NodeId, now: Instant) {
        let Some(i) = self.index(id) else { return };
        let bucket = &mut self.buckets[i];
        let Some(pos) = bucket.nodes.iter().position(|e| e.id == *id) else {
            return;
        };
        bucket.nodes[pos].failures += 1;
        if bucket.nodes[pos].state(now) == State::Bad {
            if let Some(r) = bucket.replacement.take() {
                bucket.nodes[pos] = r;
            }
        }
    }

    /// Records that we pinged `id` now.
    pub fn pinged(&mut self, id: &NodeId, now: Instant) {
        if let Some(e) = self.find_mut(id) {
            e.last_ping = Some(now);
        }
    }

    /// The `n` non-bad nodes closest to `target`, closest first.
    pub fn closest(&self, target: &NodeId, n: usize, now: Instant) -> Vec<(NodeId, SocketAddr)> {
        let mut all: Vec<_> = self
            .buckets
            .iter()
            .flat_map(|b| b.nodes.iter())
            .filter(|e| e.state(now) != State::Bad)
            .map(|e| (e.id, e.addr))
            .collect();
        all.sort_by_key(|(id, _)| id.distance(target));
        all.truncate(n);
        all
    }

    /// Good and questionable nodes, for saving.
    pub fn nodes(&self, now: Instant) -> Vec<(NodeId, SocketAddr)> {
        self.buckets
            .iter()
            .flat_map(|b| b.nodes.iter())
            .filter(|e| e.state(now) != State::Bad)
            .map(|e| (e.id, e.addr))
            .collect()
    }

    /// Loads a saved node as questionable (to be pinged before it counts as good).
    pub fn insert_saved(&mut self, id: NodeId, addr: SocketAddr, now: Instant) -> Insert {
        self.insert(id, addr, false, now)
    }

    /// Questionable nodes not pinged within `every`, at most `max`.
    pub fn to_ping(&self, now: Instant, every: Duration, max: usize) -> Vec<(NodeId, SocketAddr)> {
        self.buckets
            .iter()
            .flat_map(|b| b.nodes.iter())
            .filter(|e| e.state(now) == State::Questionable)
            .filter(|e| {
                e.last_ping
                    .is_none_or(|t| now.saturating_duration_since(t) >= every)
            })
            .take(max)
            .map(|e| (e.id, e.addr))
            .collect()
    }

    /// Bucket indexes untouched for `stale`, up to one past the deepest non-empty bucket (the
    /// deeper ones are all "near us" and refreshed by our own-id lookups).
    pub fn stale_buckets(&self, now: Instant, stale: Duration) -> Vec<usize> {
        let deepest = self.buckets.iter().rposition(|b| !b.nodes.is_empty());
        let Some(deepest) = deepest else {
            return Vec::new();
        };
        (0..=(deepest + 1).min(159))
            .filter(|&i| now.saturating_duration_since(self.buckets[i].touched) >= stale)
            .collect()
    }

    /// Marks bucket `i` as refreshed now.
    pub fn touch(&mut self, i: usize, now: Instant) {
        if let Some(b) = self.buckets.get_mut(i) {
            b.touched = now;
        }
    }

    pub fn state_of(&self, id: &NodeId, now: Instant) -> Option<State> {
        self.find(id).map(|e| e.state(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_at(own: &NodeId, prefix: usize, salt: u8) -> NodeId {
        let mut rng = super::super::id::Rng::new(u64::from(salt) + 1000 * prefix as u64);
        own.random_in_bucket(prefix, &mut rng)
    }

    fn addr(a: u8, b: u8, c: u8, d: u8) -> SocketAddr {
        SocketAddr::from(([a, b, c, d], 6881))
    }

    #[test]
    fn own_id_and_duplicates_are_refused() {
        let now = Instant::now();
        let own = NodeId([0x55; 20]);
        let mut t = Table::new(own, now);
        assert_eq!(
            t.insert(own, addr(1, 2, 3, 4), true, now),
            Insert::Refused("own_id")
        );
        let a = id_at(&own, 0, 1);
        assert_eq!(t.insert(a, addr(1, 2, 3, 4), true, now), Insert::Added);
        assert_eq!(t.insert(a, addr(1, 2, 3, 4), true, now), Insert::Updated);
        assert_eq!(
            t.insert(a, addr(1, 2, 3, 5), true, now),
            Insert::Refused("id_moved")
        );
        let b = id_at(&own, 1, 1);
        assert_eq!(
            t.insert(b, addr(1, 2, 3, 4), true, now),
            Insert::Refused("addr_taken")
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn full_buckets_replace_bad_nodes_and_ping_questionable_ones_first() {
        let t0 = Instant::now();
        let own = NodeId([0; 20]);
        let mut t = Table::new(own, t0);
        let ids: Vec<_> = (0..K as u8).map(|i| id_at(&own, 0, i)).collect();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                t.insert(*id, addr(9, i as u8, 0, 1), true, t0),
                Insert::Added
            );
        }
        let new = id_at(&own, 0, 100);
        // All good: refused.
        assert_eq!(
            t.insert(new, addr(8, 0, 0, 1), true, t0),
            Insert::Refused("bucket_full")
        );
        // Later all questionable: ping them first, the new node waits.
        let later = t0 + GOOD_FOR;
        match t.insert(new, addr(8, 0, 0, 1), true, later) {
            Insert::PingFirst(list) => assert_eq!(list.len(), K),
            other => panic!("{other:?}"),
        }
        assert!(!t.contains(&new));
        // One fails twice: bad, and the replacement takes its place.
        t.failed(&ids[3], later);
        assert!(!t.contains(&new));
        t.failed(&ids[3], later);
        assert!(t.contains(&new) && !t.contains(&ids[3]));
        // A bad node is replaced directly.
        t.failed(&ids[4], later);
        t.failed(&ids[4], later);
        assert_eq!(t.state_of(&ids[4], later), Some(State::Bad));
        let other = id_at(&own, 0, 101);
        assert_eq!(
            t.insert(other, addr(8, 0, 1, 1), true, later),
            Insert::Added
        );
        assert!(!t.contains(&ids[4]));
        assert_eq!(t.len(), K);
    }

    #[test]
    fn subnets_are_capped_except_loopback() {
        let now = Instant::now();
        let own = NodeId([0; 20]);
        let mut t = Table::new(own, now);
        let mut added = 0;
        for i in 0..40u8 {
            let id = id_at(&own, usize::from(i % 20), i);
            if t.insert(id, addr(5, 6, 7, i), true, now) == Insert::Added {
                added += 1;
            }
        }
        assert_eq!(added, PER_SUBNET);
        let v6 = |i: u16| SocketAddr::new(IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, i]), 1);
        let mut added6 = 0;
        for i in 0..20u16 {
            let id = id_at(&own, usize::from(i) + 30, i as u8);
            if t.insert(id, v6(i), true, now) == Insert::Added {
                added6 += 1;
            }
        }
        assert_eq!(added6, PER_SUBNET);
        let mut lo = Table::new(own, now);
        for i in 0..40u8 {
            let id = id_at(&own, usize::from(i % 20), i);
            assert_eq!(
                lo.insert(id, addr(127, 0, 0, i + 1), true, now),
                Insert::Added
            );
        }
        assert_eq!(lo.len(), 40);
    }

    #[test]
    fn closest_saving_and_refresh_bookkeeping() {
        let t0 = Instant::now();
        let own = NodeId([0; 20]);
        let mut t = Table::new(own, t0);
        for p in 0..30usize {
            t.insert(id_at(&own, p, 1), addr(127, 0, 1, p as u8 + 1), true, t0);
        }
        let target = id_at(&own, 29, 9);
        let c = t.closest(&target, 8, t0);
        assert_eq!(c.len(), 8);
        assert!(c
            .windows(2)
            .all(|w| w[0].0.distance(&target) <= w[1].0.distance(&target)));
        let saved = t.nodes(t0);
        assert_eq!(saved.len(), 30);
        let mut u = Table::new(own, t0);
        for (id, a) in &saved {
            assert_eq!(u.insert_saved(*id, *a, t0), Insert::Added);
            assert_eq!(u.state_of(id, t0), Some(State::Questionable));
        }
        assert_eq!(u.to_ping(t0, Duration::from_secs(60), 5).len(), 5);
        u.pinged(&saved[0].0, t0);
        assert!(!u
            .to_ping(t0, Duration::from_secs(60), 100)
            .iter()
            .any(|n| n.0 == saved[0].0));
        assert!(t.stale_buckets(t0, GOOD_FOR).is_empty());
        let stale = t.stale_buckets(t0 + GOOD_FOR, GOOD_FOR);
        assert_eq!(stale, (0..=30).collect::<Vec<_>>());
        t.touch(3, t0 + GOOD_FOR);
        assert!(!t.stale_buckets(t0 + GOOD_FOR, GOOD_FOR).contains(&3));
    }
}
