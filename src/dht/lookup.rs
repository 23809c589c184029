//! One iterative lookup (BEP 5): `find_node` towards a target (bootstrap, bucket refresh) or
//! `get_peers` for an info-hash. Candidates are kept sorted by XOR distance to the target (at
//! most [`MAX_CANDIDATES`]); [`ALPHA`] queries are in flight at a time; the lookup is done when
//! the [`K`] closest candidates not failed have all answered, or nothing is left to ask, or
//! [`MAX_QUERIES`] were sent. It collects peers (`values`, at most [`MAX_PEERS`] distinct) and
//! the tokens of the nodes that answered, for `announce_peer` to the [`K`] closest.
//! Routers (bootstrap addresses without an id) are asked first; one that answers counts by the
//! id it answered with from then on (a private swarm's bootstrap nodes are ordinary nodes). Timeouts are the caller's (its transactions): it reports them as failures.

use super::id::NodeId;
use super::table::K;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const ALPHA: usize = 3;
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
pub const MAX_QUERIES: usize = 100;
pub const MAX_CANDIDATES: usize = 200;
pub const MAX_PEERS: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    FindNode,
    GetPeers { announce_port: Option<u16> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CState {
    New,
    InFlight,
    Answered,
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate {
    id: Option<NodeId>,
    addr: SocketAddr,
    key: [u8; 20],
    state: CState,
    token: Option<Vec<u8>>,
}

#[derive(Debug)]
pub struct Lookup {
    pub target: NodeId,
    pub kind: Kind,
    cands: Vec<Candidate>,
    queries: usize,
    answered: usize,
    peers: HashSet<SocketAddr>,
    pub started: Instant,
}

impl Lookup {
    pub fn new(
        target: NodeId,
        kind: Kind,
        start: &[(Option<NodeId>, SocketAddr)],
        now: Instant,
    ) -> Lookup {
        let mut l = Lookup {
            target,
            kind,
            cands: Vec::new(),
            queries: 0,
            answered: 0,
            peers: HashSet::new(),
            started: now,
        };
        for (id, addr) in start {
            l.add(*id, *addr);
        }
        l
    }

    /// Adds a candidate (ignored when its address or id is already known, or it is farther
    /// than every kept candidate of a full list).
    pub fn add(&mut self, id: Option<NodeId>, addr: SocketAddr) {
        if self
            .cands
            .iter()
            .any(|c| c.addr == addr || (id.is_some() && c.id == id))
        {
            return;
        }
        let key = id.map_or([0; 20], |id| id.distance(&self.target));
        let pos = self.cands.partition_point(|c| c.key <= key);
        if self.cands.len() >= MAX_CANDIDATES {
            // Make room by dropping the farthest candidate not in flight, if it is farther.
            let Some(drop) = self
                .cands
                .iter()
                .rposition(|c| c.state != CState::InFlight)
                .filter(|&i| i >= pos)
            else {
                return;
            };
            self.cands.remove(drop);
        }
        self.cands.insert(
            pos,
            Candidate {
                id,
                addr,
                key,
                state: CState::New,
                token: None,
            },
        );
    }

    pub fn in_flight(&self) -> usize {
        self.cands
            .iter()
            .filter(|c| c.state == CState::InFlight)
            .count()
    }

    pub fn answered(&self) -> usize {
        self.answered
    }

    pub fn queries(&self) -> usize {
        self.queries
    }

    /// The next queries to send (up to [`ALPHA`] in flight), marked in flight.
    pub fn next_queries(&mut self) -> Vec<(Option<NodeId>, SocketAddr)> {
        let mut out = Vec::new();
        let mut room = ALPHA.saturating_sub(self.in_flight());
        for c in self.cands.iter_mut() {
            if room == 0 || self.queries >= MAX_QUERIES {
                break;
            }
            if c.state == CState::New {
                c.state = CState::InFlight;
                self.queries += 1;
                room -= 1;
                out.push((c.id, c.addr));
            }
        }
        out
    }

    /// `addr` answered: its nodes become candidates; returns the peers not seen before.
    pub fn on_response(
        &mut self,
        addr: SocketAddr,
        responder: NodeId,
        nodes: &[(NodeId, SocketAddr)],
        values: &[SocketAddr],
        token: Option<Vec<u8>>,
    ) -> Vec<SocketAddr> {
        let Some(i) = self.cands.iter().position(|c| c.addr == addr) else {
            return Vec::new();
        };
        if self.cands[i].state != CState::InFlight {
            return Vec::new();
        }
        let mut c = self.cands.remove(i);
        c.state = CState::Answered;
        c.token = token;
        if c.id.is_none() && !self.cands.iter().any(|o| o.id == Some(responder)) {
            // A router that answered with an id now counts by its distance.
            c.id = Some(responder);
            c.key = responder.distance(&self.target);
        }
        let pos = self.cands.partition_point(|o| o.key <= c.key);
        self.cands.insert(pos, c);
        self.answered += 1;
        for (id, a) in nodes {
            self.add(Some(*id), *a);
        }
        let mut fresh = Vec::new();
        for v in values {
            if self.peers.len() < MAX_PEERS && self.peers.insert(*v) {
                fresh.push(*v);
            }
        }
        fresh
    }

    /// A query to `addr` timed out or was answered with an error.
    pub fn on_failure(&mut self, addr: SocketAddr) {
        if let Some(c) = self
            .cands
            .iter_mut()
            .find(|c| c.addr == addr && c.state == CState::InFlight)
        {
            c.state = CState::Failed;
        }
    }

    pub fn is_done(&self) -> bool {
        let in_flight = self.in_flight();
        let any_new = self.cands.iter().any(|c| c.state == CState::New);
        if in_flight == 0 && (self.queries >= MAX_QUERIES || !any_new) {
            return true;
        }
        let mut closest = self
            .cands
            .iter()
            .filter(|c| c.id.is_some() && c.state != CState::Failed)
            .take(K)
            .peekable();
        closest.peek().is_some() && closest.all(|c| c.state == CState::Answered)
    }

    /// The [`K`] closest nodes that answered with a token, for `announce_peer`.
    pub fn announce_targets(&self) -> Vec<(NodeId, SocketAddr, Vec<u8>)> {
        self.cands
            .iter()
            .filter(|c| c.state == CState::Answered)
            .filter_map(|c| Some((c.id?, c.addr, c.token.clone()?)))
            .take(K)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u8) -> (NodeId, SocketAddr) {
        let mut id = [0u8; 20];
        id[0] = i;
        (NodeId(id), SocketAddr::from(([10, 0, 0, i], 1)))
    }

    #[test]
    fn alpha_in_flight_sorted_by_distance_and_done_when_closest_answer() {
        let now = Instant::now();
        let target = NodeId([0; 20]);
        let start: Vec<_> = (1..=20u8)
            .rev()
            .map(|i| (Some(node(i).0), node(i).1))
            .collect();
        let mut l = Lookup::new(target, Kind::FindNode, &start, now);
        let q = l.next_queries();
        assert_eq!(q.len(), ALPHA);
        assert_eq!(
            q.iter().map(|x| x.1).collect::<Vec<_>>(),
            vec![node(1).1, node(2).1, node(3).1]
        );
        assert!(l.next_queries().is_empty(), "alpha bound");
        let mut rounds = 0;
        while !l.is_done() {
            rounds += 1;
            assert!(rounds < 50);
            for (_, a) in l.next_queries() {
                let _ = a;
            }
            let flying: Vec<_> = l
                .cands
                .iter()
                .filter(|c| c.state == CState::InFlight)
                .map(|c| c.addr)
                .collect();
            for a in flying {
                if a == node(2).1 {
                    l.on_failure(a);
                } else {
                    let id = l
                        .cands
                        .iter()
                        .find(|c| c.addr == a)
                        .and_then(|c| c.id)
                        .unwrap();
                    l.on_response(a, id, &[], &[], Some(vec![a.ip().to_string().len() as u8]));
                }
            }
        }
        // The 8 closest not failed answered: 1, 3..=9; nothing beyond 9 asked more than alpha-ahead.
        assert_eq!(l.answered(), K);
        assert!(l.queries() <= K + ALPHA);
        let targets = l.announce_targets();
        assert_eq!(targets.len(), K);
        assert!(!targets.iter().any(|t| t.1 == node(2).1));
    }

    #[test]
    fn routers_first_peers_deduplicated_and_query_bound() {
        let now = Instant::now();
        let router: SocketAddr = "10.9.9.9:1".parse().unwrap();
        let mut l = Lookup::new(
            NodeId([0; 20]),
            Kind::GetPeers {
                announce_port: None,
            },
            &[(None, router)],
            now,
        );
        assert_eq!(l.next_queries(), vec![(None, router)]);
        let peer: SocketAddr = "1.2.3.4:5".parse().unwrap();
        let nodes: Vec<_> = (1..=200u8).map(node).collect();
        assert_eq!(
            l.on_response(router, NodeId([0xff; 20]), &nodes, &[peer, peer], None),
            vec![peer]
        );
        assert!(l.cands.len() <= MAX_CANDIDATES);
        assert!(
            l.announce_targets().is_empty(),
            "a router that gave no token is no announce target"
        );
        // Every query fails: the lookup stops at MAX_QUERIES, with candidates left.
        let mut rounds = 0;
        while !l.is_done() {
            rounds += 1;
            assert!(rounds <= MAX_QUERIES);
            for (_, a) in l.next_queries() {
                l.on_failure(a);
            }
        }
        assert_eq!(l.queries(), MAX_QUERIES);
        assert!(l.cands.iter().any(|c| c.state == CState::New));
    }
}
