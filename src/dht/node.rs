//! The DHT node: answers queries (to the querying address only, after a per-IP rate limit),
//! matches responses to our transactions by transaction id and address, runs lookups, keeps the
//! routing table fresh (pings questionable nodes, refreshes buckets untouched for
//! [`REFRESH_AFTER`]) and votes on our external address from the `ip` field of responses.
//!
//! Bounds: [`MAX_TXNS`] transactions in flight (each timing out after
//! [`lookup::QUERY_TIMEOUT`]), [`MAX_LOOKUPS`] lookups, [`MAX_OUT`] queued transmits,
//! [`MAX_EVENTS`] queued events, [`MAX_LIMITER_IPS`] source IPs in the rate limiter (the
//! oldest dropped first), [`MAX_VERIFY`] pings to unknown queriers in flight.
//!
//! No amplification: only the echoed transaction id (≤ 16 bytes, part of the query) depends on
//! the query's size, so every reply is at most `2 × query + REPLY_BODY_MAX` and never more
//! than [`MAX_REPLY`] bytes: `REPLY_BODY_MAX` ([`REPLY_BODY_MAX`] = 1,100 bytes) covers what
//! BEP 5 requires, 8 compact nodes or the `values` (capped at [`max_values`]: 100 for IPv4,
//! 50 for IPv6) with an 8-byte token.
//!
//! External address: when [`EXTERNAL_IP_VOTES`] responders from distinct IPs report the same
//! address for us, the node emits [`Event::ExternalIp`] and applies it itself with
//! [`Node::set_external_ip`] (taking a BEP 42 id if ours is not valid for it).
//!
//! Answering queries and the periodic maintenance live in `serve.rs` (a child module).
//!
//! Nodes enter the table only when they answer one of our queries: an unknown node that
//! queries us (without `ro`) is pinged, and added when it answers, as is a bootstrap address
//! that answers with an id.

use super::id::{self, NodeId, Rng};
use super::krpc::{self, Body, Message, Query, Response, Want};
use super::lookup::{self, Kind, Lookup};
use super::store::{PeerStore, Tokens};
use super::table::{Insert, Table, K};
use super::types::Limiter;
pub use super::types::{max_values, Event, Family, NodeConfig, NodeStats, Transmit};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub const MAX_TXNS: usize = 512;
pub const MAX_LOOKUPS: usize = 64;
pub const MAX_OUT: usize = 1_024;
pub const MAX_EVENTS: usize = 4_096;
pub const MAX_LIMITER_IPS: usize = 10_000;
pub const MAX_VERIFY: usize = 16;
pub const MAX_ROUTERS: usize = 16;
pub const MAX_REPLY: usize = 1_400;
pub const REPLY_BODY_MAX: usize = 1_100;
pub const EXTERNAL_IP_VOTES: usize = 3;
pub const REFRESH_AFTER: Duration = Duration::from_secs(15 * 60);
pub const PING_EVERY: Duration = Duration::from_secs(60);
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(5);
/// Questionable nodes pinged per maintenance round.
pub const PINGS_PER_ROUND: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnKind {
    Lookup(u64),
    Ping,
    Verify,
    Announce,
}

#[derive(Debug)]
struct Txn {
    addr: SocketAddr,
    /// The id we expect to answer (`None`: a router); only such responders enter the table.
    id: Option<NodeId>,
    kind: TxnKind,
    deadline: Instant,
}

pub struct Node {
    id: NodeId,
    config: NodeConfig,
    rng: Rng,
    table: Table,
    store: PeerStore,
    tokens: Tokens,
    limiter: Limiter,
    txns: HashMap<[u8; 2], Txn>,
    next_tid: u16,
    lookups: HashMap<u64, Lookup>,
    peer_lookups: HashMap<[u8; 20], u64>,
    next_lookup: u64,
    bootstrap_lookup: Option<u64>,
    refresh_lookup: Option<u64>,
    routers: Vec<SocketAddr>,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    votes: HashMap<IpAddr, Vec<IpAddr>>,
    external: Option<IpAddr>,
    next_maintenance: Instant,
    now: Instant,
    stats: NodeStats,
}

impl Node {
    pub fn new(id: NodeId, config: NodeConfig, seed: u64, now: Instant) -> Node {
        let mut rng = Rng::new(seed);
        let tokens = Tokens::new(&mut rng, now);
        let rate = f64::from(config.max_queries_per_ip_per_sec);
        let global_rate = f64::from(config.max_queries_per_sec);
        Node {
            id,
            config,
            table: Table::new(id, now),
            store: PeerStore::default(),
            tokens,
            limiter: Limiter {
                rate,
                global_rate,
                global: (global_rate, now),
                map: HashMap::new(),
                order: VecDeque::new(),
            },
            txns: HashMap::new(),
            next_tid: (rng.next_u64() & 0xffff) as u16,
            rng,
            lookups: HashMap::new(),
            peer_lookups: HashMap::new(),
            next_lookup: 0,
            bootstrap_lookup: None,
            refresh_lookup: None,
            routers: Vec::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            votes: HashMap::new(),
            external: None,
            next_maintenance: now + MAINTENANCE_EVERY,
            now,
            stats: NodeStats::default(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    pub fn table_len(&self) -> usize {
        self.table.len()
    }

    /// Good and questionable nodes, for saving.
    pub fn nodes(&self) -> Vec<(NodeId, SocketAddr)> {
        self.table.nodes(self.now)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let txn = self.txns.values().map(|t| t.deadline).min();
        Some(txn.map_or(self.next_maintenance, |d| d.min(self.next_maintenance)))
    }

    fn event(&mut self, e: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.stats.dropped_events += 1;
        } else {
            self.events.push_back(e);
        }
    }

    fn transmit(&mut self, to: SocketAddr, bytes: Vec<u8>) -> bool {
        if self.out.len() >= MAX_OUT {
            self.stats.dropped_out_full += 1;
            return false;
        }
        self.out.push_back(Transmit { to, bytes });
        true
    }

    fn want(&self) -> Want {
        Want {
            n4: self.config.family == Family::V4,
            n6: self.config.family == Family::V6,
        }
    }

    fn send_query(
        &mut self,
        to: SocketAddr,
        id: Option<NodeId>,
        query: Query,
        kind: TxnKind,
        now: Instant,
    ) -> bool {
        if self.txns.len() >= MAX_TXNS || self.out.len() >= MAX_OUT {
            self.stats.dropped_txn_full += 1;
            return false;
        }
        let tid = loop {
            let t = self.next_tid.to_be_bytes();
            self.next_tid = self.next_tid.wrapping_add(1);
            if !self.txns.contains_key(&t) {
                break t;
            }
        };
        match query {
            Query::Ping => self.stats.queries_out_ping += 1,
            Query::FindNode { .. } => self.stats.queries_out_find_node += 1,
            Query::GetPeers { .. } => self.stats.queries_out_get_peers += 1,
            Query::AnnouncePeer { .. } => self.stats.queries_out_announce_peer += 1,
            Query::Unknown(_) => {}
        }
        let msg = Message {
            tid: tid.to_vec(),
            ip: None,
            body: Body::Query {
                id: self.id,
                ro: self.config.read_only,
                query,
            },
        };
        self.transmit(to, krpc::encode(&msg));
        let deadline = now + lookup::QUERY_TIMEOUT;
        self.txns.insert(
            tid,
            Txn {
                addr: to,
                id,
                kind,
                deadline,
            },
        );
        true
    }

    fn ping(&mut self, id: NodeId, addr: SocketAddr, kind: TxnKind, now: Instant) {
        if self.send_query(addr, Some(id), Query::Ping, kind, now) {
            self.table.pinged(&id, now);
        }
    }

    /// `find_node(own id)` through `addrs` (routers: never put in the table) and the nodes we
    /// already know.
    pub fn bootstrap(&mut self, addrs: &[SocketAddr], now: Instant) {
        self.now = now;
        for a in addrs {
            if Family::of(*a) == self.config.family
                && !self.routers.contains(a)
                && self.routers.len() < MAX_ROUTERS
            {
                self.routers.push(*a);
            }
        }
        if self
            .bootstrap_lookup
            .is_some_and(|k| self.lookups.contains_key(&k))
        {
            return;
        }
        let key = self.start_lookup(self.id, Kind::FindNode, true, now);
        self.bootstrap_lookup = key;
        if let Some(k) = key {
            self.drive(k, now);
        }
    }

    /// A node from a saved table: stored as questionable and pinged now.
    pub fn add_node(&mut self, id: NodeId, addr: SocketAddr, now: Instant) {
        self.now = now;
        if Family::of(addr) != self.config.family {
            return;
        }
        if self.table.insert_saved(id, addr, now) == Insert::Added {
            self.ping(id, addr, TxnKind::Ping, now);
        }
    }

    /// Starts a lookup of peers for `info_hash` (none while one for it runs, or when
    /// [`MAX_LOOKUPS`] run); `Some(port)`: announce that port to the closest nodes when done.
    /// False when it was refused (no room): ask again later.
    pub fn get_peers(
        &mut self,
        info_hash: [u8; 20],
        announce_port: Option<u16>,
        now: Instant,
    ) -> bool {
        self.now = now;
        if self.peer_lookups.contains_key(&info_hash) {
            return true;
        }
        let Some(key) = self.start_lookup(
            NodeId(info_hash),
            Kind::GetPeers { announce_port },
            false,
            now,
        ) else {
            return false;
        };
        self.peer_lookups.insert(info_hash, key);
        self.drive(key, now);
        true
    }

    /// Lookups that may still start before [`MAX_LOOKUPS`] run.
    pub fn lookups_free(&self) -> usize {
        MAX_LOOKUPS.saturating_sub(self.lookups.len())
    }

    fn start_lookup(
        &mut self,
        target: NodeId,
        kind: Kind,
        with_routers: bool,
        now: Instant,
    ) -> Option<u64> {
        if self.lookups.len() >= MAX_LOOKUPS {
            self.stats.lookups_refused += 1;
            return None;
        }
        let mut start: Vec<_> = self
            .table
            .closest(&target, 2 * K, now)
            .into_iter()
            .map(|(id, a)| (Some(id), a))
            .collect();
        if with_routers || start.is_empty() {
            start.extend(self.routers.iter().map(|a| (None, *a)));
        }
        let key = self.next_lookup;
        self.next_lookup += 1;
        self.lookups
            .insert(key, Lookup::new(target, kind, &start, now));
        Some(key)
    }

    fn drive(&mut self, key: u64, now: Instant) {
        loop {
            let Some(l) = self.lookups.get_mut(&key) else {
                return;
            };
            if l.is_done() {
                self.finish(key, now);
                return;
            }
            let (target, kind) = (l.target, l.kind);
            let next = l.next_queries();
            if next.is_empty() {
                return;
            }
            let mut failed = Vec::new();
            for (id, addr) in next {
                let want = self.want();
                let query = match kind {
                    Kind::FindNode => Query::FindNode { target, want },
                    Kind::GetPeers { .. } => Query::GetPeers {
                        info_hash: target,
                        want,
                    },
                };
                if !self.send_query(addr, id, query, TxnKind::Lookup(key), now) {
                    failed.push(addr);
                }
            }
            if failed.is_empty() {
                return;
            }
            let Some(l) = self.lookups.get_mut(&key) else {
                return;
            };
            for a in failed {
                l.on_failure(a);
            }
            // Transactions are full: stop here unless that finished the lookup.
            if !l.is_done() {
                return;
            }
        }
    }

    fn finish(&mut self, key: u64, now: Instant) {
        let Some(l) = self.lookups.remove(&key) else {
            return;
        };
        let Kind::GetPeers { announce_port } = l.kind else {
            return;
        };
        let info_hash = l.target.0;
        self.peer_lookups.remove(&info_hash);
        let mut announced = 0;
        if let Some(port) = announce_port {
            for (id, addr, token) in l.announce_targets() {
                let q = Query::AnnouncePeer {
                    info_hash: l.target,
                    port,
                    token,
                    implied_port: false,
                };
                if self.send_query(addr, Some(id), q, TxnKind::Announce, now) {
                    announced += 1;
                }
            }
        }
        self.stats.announces_sent += announced as u64;
        self.event(Event::LookupDone {
            info_hash,
            answered: l.answered(),
            announced,
        });
    }

    /// BEP 42: records our external address and, if our id is not valid for it, takes one that
    /// is and rebuilds the table around it (its nodes kept as questionable).
    pub fn set_external_ip(&mut self, ip: IpAddr, now: Instant) {
        self.now = now;
        self.external = Some(ip);
        if id::is_valid_for(&self.id, ip) {
            return;
        }
        let r = (self.rng.next_u64() & 0xff) as u8;
        self.id = id::id_for_ip(ip, r, &mut self.rng);
        let old = self.table.nodes(now);
        self.table = Table::new(self.id, now);
        for (nid, addr) in old {
            self.table.insert_saved(nid, addr, now);
        }
    }

    fn vote(&mut self, voter: IpAddr, claimed: SocketAddr) {
        let claimed = claimed.ip().to_canonical();
        if self.external == Some(claimed)
            || Family::of(SocketAddr::new(claimed, 0)) != self.config.family
        {
            return;
        }
        if !self.votes.contains_key(&claimed) && self.votes.len() >= 16 {
            return;
        }
        let voters = self.votes.entry(claimed).or_default();
        if voters.contains(&voter) || voters.len() >= 8 {
            return;
        }
        voters.push(voter);
        if voters.len() >= EXTERNAL_IP_VOTES {
            self.votes.clear();
            self.event(Event::ExternalIp(claimed));
            self.set_external_ip(claimed, self.now);
        }
    }

    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.now = now;
        if bytes.len() > krpc::MAX_PACKET {
            self.stats.dropped_too_large += 1;
            return;
        }
        if Family::of(from) != self.config.family {
            self.stats.dropped_wrong_family += 1;
            return;
        }
        let msg = match krpc::decode(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        match msg.body {
            Body::Query { id, ro, query } => self.handle_query(now, from, msg.tid, id, ro, query),
            Body::Response(r) => self.handle_response(now, from, &msg.tid, Some(r), msg.ip),
            Body::Error { .. } => self.handle_response(now, from, &msg.tid, None, None),
        }
    }

    fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: &[u8],
        r: Option<Response>,
        ip: Option<SocketAddr>,
    ) {
        let key: Option<[u8; 2]> = tid.try_into().ok();
        let Some(key) = key.filter(|k| self.txns.get(k).is_some_and(|t| t.addr == from)) else {
            self.stats.dropped_unmatched += 1;
            return;
        };
        let txn = self.txns.remove(&key).expect("matched");
        let Some(r) = r else {
            self.stats.errors_in += 1;
            if let TxnKind::Lookup(k) = txn.kind {
                if let Some(l) = self.lookups.get_mut(&k) {
                    l.on_failure(from);
                }
                self.drive(k, now);
            }
            return;
        };
        self.stats.responses_in += 1;
        if txn.id.is_some_and(|want| want != r.id) || r.id == self.id {
            self.stats.dropped_id_mismatch += 1;
            if let Some(want) = txn.id {
                self.table.failed(&want, now);
            }
            if let TxnKind::Lookup(k) = txn.kind {
                if let Some(l) = self.lookups.get_mut(&k) {
                    l.on_failure(from);
                }
                self.drive(k, now);
            }
            return;
        }
        if let Some(ip) = ip {
            self.vote(from.ip().to_canonical(), ip);
        }
        // A bootstrap address that answers with an id is a node like any other: operators'
        // bootstrap lists may name ordinary nodes (a private swarm's), which would otherwise
        // never enter the table nor count among a lookup's closest.
        {
            if let Insert::PingFirst(list) = self.table.insert(r.id, from, true, now) {
                for (qid, qaddr) in list {
                    if !self.txns.values().any(|t| t.addr == qaddr) {
                        self.ping(qid, qaddr, TxnKind::Ping, now);
                    }
                }
            }
        }
        if let TxnKind::Lookup(k) = txn.kind {
            let fam = self.config.family;
            let own = self.id;
            let nodes: Vec<_> = match fam {
                Family::V4 => r.nodes,
                Family::V6 => r.nodes6,
            }
            .into_iter()
            .filter(|(id, a)| *id != own && Family::of(*a) == fam && a.port() != 0)
            .collect();
            let values: Vec<_> = r.values.into_iter().filter(|a| a.port() != 0).collect();
            if let Some(l) = self.lookups.get_mut(&k) {
                let fresh = l.on_response(from, r.id, &nodes, &values, r.token);
                if let (Kind::GetPeers { .. }, false) = (l.kind, fresh.is_empty()) {
                    let info_hash = l.target.0;
                    self.stats.peers_found += fresh.len() as u64;
                    self.event(Event::Peers {
                        info_hash,
                        peers: fresh,
                    });
                }
            }
            self.drive(k, now);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        let expired: Vec<[u8; 2]> = self
            .txns
            .iter()
            .filter(|(_, t)| t.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            let t = self.txns.remove(&k).expect("listed");
            self.stats.timeouts += 1;
            if let Some(id) = t.id {
                self.table.failed(&id, now);
            }
            if let TxnKind::Lookup(key) = t.kind {
                if let Some(l) = self.lookups.get_mut(&key) {
                    l.on_failure(t.addr);
                }
                self.drive(key, now);
            }
        }
        if now >= self.next_maintenance {
            self.next_maintenance = now + MAINTENANCE_EVERY;
            self.maintain(now);
        }
    }
}

#[path = "serve.rs"]
mod serve;

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
