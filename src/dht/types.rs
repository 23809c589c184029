//! The node's public types: its configuration ([`NodeConfig`], [`Family`]), what it hands the
//! driver ([`Transmit`], [`Event`]), its counters ([`NodeStats`]), and the per-source-IP query
//! limiter (a token bucket per IP, at most [`MAX_LIMITER_IPS`] IPs, the oldest dropped first, and
//! one for all sources together).

use super::node::MAX_LIMITER_IPS;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// Most `values` in one reply, so it stays under [`super::node::MAX_REPLY`].
pub fn max_values(family: Family) -> usize {
    match family {
        Family::V4 => 100,
        Family::V6 => 50,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub(super) fn of(addr: SocketAddr) -> Family {
        match addr.ip().to_canonical() {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub family: Family,
    /// Token bucket per source IP (burst = one second's worth); 0 refuses every query.
    pub max_queries_per_ip_per_sec: u32,
    /// Token bucket for all sources together (burst = one second's worth); 0 = unlimited. UDP
    /// source addresses are cheap to vary (and to forge), so this bounds what the node spends
    /// answering whatever the per-address buckets let through.
    pub max_queries_per_sec: u32,
    /// BEP 43: we say `ro` in our queries and answer no queries.
    pub read_only: bool,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            family: Family::V4,
            max_queries_per_ip_per_sec: 20,
            max_queries_per_sec: 2000,
            read_only: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Peers {
        info_hash: [u8; 20],
        peers: Vec<SocketAddr>,
    },
    /// `announced`: `announce_peer` queries sent (0 unless asked to announce).
    LookupDone {
        info_hash: [u8; 20],
        answered: usize,
        announced: usize,
    },
    ExternalIp(IpAddr),
}

/// Plain counters; the server's metrics read them.
#[derive(Debug, Clone, Default)]
pub struct NodeStats {
    pub queries_in_ping: u64,
    pub queries_in_find_node: u64,
    pub queries_in_get_peers: u64,
    pub queries_in_announce_peer: u64,
    pub queries_in_unknown: u64,
    pub queries_answered: u64,
    pub queries_refused_rate_limit: u64,
    pub announces_bad_token: u64,
    pub malformed: u64,
    pub responses_in: u64,
    pub errors_in: u64,
    pub queries_out_ping: u64,
    pub queries_out_find_node: u64,
    pub queries_out_get_peers: u64,
    pub queries_out_announce_peer: u64,
    pub timeouts: u64,
    pub announces_sent: u64,
    pub peers_found: u64,
    pub stored_info_hashes: u64,
    pub stored_peers: u64,
    pub dropped_too_large: u64,
    pub dropped_wrong_family: u64,
    pub dropped_unmatched: u64,
    pub dropped_id_mismatch: u64,
    pub dropped_read_only: u64,
    pub dropped_own_id: u64,
    pub dropped_txn_full: u64,
    pub dropped_out_full: u64,
    pub dropped_events: u64,
    pub lookups_refused: u64,
}

pub(super) struct Limiter {
    pub(super) rate: f64,
    /// All sources together (0 = unlimited): tokens and when last looked at.
    pub(super) global_rate: f64,
    pub(super) global: (f64, Instant),
    pub(super) map: HashMap<IpAddr, (f64, Instant)>,
    pub(super) order: VecDeque<IpAddr>,
}

impl Limiter {
    /// A query from `ip` may be answered: its address's bucket, then the global one.
    pub(super) fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.allow_ip(ip, now) {
            return false;
        }
        if self.global_rate == 0.0 {
            return true;
        }
        let (tokens, last) = &mut self.global;
        let dt = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + dt * self.global_rate).min(self.global_rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return true;
        }
        false
    }

    fn allow_ip(&mut self, ip: IpAddr, now: Instant) -> bool {
        if let Some((tokens, last)) = self.map.get_mut(&ip) {
            let dt = now.saturating_duration_since(*last).as_secs_f64();
            *tokens = (*tokens + dt * self.rate).min(self.rate);
            *last = now;
            if *tokens >= 1.0 {
                *tokens -= 1.0;
                return true;
            }
            return false;
        }
        while self.map.len() >= MAX_LIMITER_IPS {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.map.insert(ip, (self.rate - 1.0, now));
        self.order.push_back(ip);
        self.rate >= 1.0
    }
}
