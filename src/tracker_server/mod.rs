//! The built-in tracker sans I/O (issue 18): [`TrackerCore`] takes an HTTP request target or a
//! UDP datagram with the client's address and the time, and returns what to send back (or, for
//! a UDP request that does not prove its source, nothing). It owns the peer table
//! ([`swarm`]), the HTTP codec ([`http`]), the BEP 15 codec and connection ids ([`udp`]), and
//! the counters the caller reads ([`Stats`]).
//!
//! No sockets, no clock, no threads here or in those three: the listeners that feed it are
//! [`service`].

pub mod http;
pub mod service;
pub mod swarm;
pub mod udp;

use crate::metainfo::InfoHash;
use http::{HttpError, HttpRequest};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;
use swarm::{Announce, Counts, Family, Swarm, SwarmConfig};
use udp::{ConnectionIds, UdpRequest};

/// The tracker's configuration.
#[derive(Clone, Debug, Default)]
pub struct TrackerConfig {
    pub swarm: SwarmConfig,
    /// Honour the announce's `ip` parameter (HTTP) or field (UDP, IPv4 only) instead of the
    /// connection's source address: only behind a trusted proxy or on a private network.
    pub trust_ip_param: bool,
}

/// Counters of one protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProtoStats {
    /// Announces answered with peers.
    pub announces_ok: u64,
    /// Announces refused by the policy (unknown torrent, table full).
    pub announces_refused: u64,
    /// Scrapes answered.
    pub scrapes: u64,
    /// Requests that did not decode.
    pub malformed: u64,
}

/// What the tracker has done, for the metrics; a plain struct the caller reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub http: ProtoStats,
    pub udp: ProtoStats,
    /// HTTP requests for a path other than `/announce` and `/scrape`.
    pub http_not_found: u64,
    /// UDP connect requests answered.
    pub udp_connects: u64,
    /// UDP requests dropped for a wrong or expired connection id.
    pub udp_bad_connection_id: u64,
    /// Peers in the table now.
    pub peers: usize,
    /// Torrents in the table now.
    pub torrents: usize,
}

/// An HTTP answer: the status and the bencoded body (`text/plain` by convention).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The tracker; see the module doc.
#[derive(Debug)]
pub struct TrackerCore {
    pub swarm: Swarm,
    pub conn_ids: ConnectionIds,
    pub stats: Stats,
    trust_ip: bool,
}

/// A v4-mapped IPv6 address (a dual-stack socket's IPv4 client) as the IPv4 address it is.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

impl TrackerCore {
    /// `seed`: secret randomness for the connection ids and the peer rotation.
    pub fn new(cfg: TrackerConfig, seed: [u8; 32], now: Instant) -> TrackerCore {
        let rot = u64::from_le_bytes(seed[..8].try_into().expect("8 bytes"));
        TrackerCore {
            swarm: Swarm::new(cfg.swarm, rot),
            conn_ids: ConnectionIds::new(seed, now),
            stats: Stats::default(),
            trust_ip: cfg.trust_ip_param,
        }
    }

    /// Registers a torrent this server seeds.
    pub fn allow(&mut self, ih: InfoHash) {
        self.swarm.allow(ih);
        self.refresh();
    }

    /// Unregisters one.
    pub fn disallow(&mut self, ih: InfoHash) {
        self.swarm.disallow(ih);
        self.refresh();
    }

    /// The periodic work: expire peers, rotate the connection-id secrets. Call it every few
    /// seconds to a minute; answers stay correct without it (expiry is also lazy).
    pub fn tick(&mut self, now: Instant) {
        self.swarm.expire(now);
        self.conn_ids.rotate(now);
        self.refresh();
    }

    fn refresh(&mut self) {
        self.stats.peers = self.swarm.peer_count();
        self.stats.torrents = self.swarm.torrent_count();
    }

    /// Answers an HTTP request target (`/announce?...` or `/scrape?...`) from `client`.
    pub fn handle_http(&mut self, target: &[u8], client: SocketAddr, now: Instant) -> HttpResponse {
        let client = canonical(client);
        let ok = |body| HttpResponse { status: 200, body };
        let resp = match http::parse_target(target) {
            Err(HttpError::NotFound) => {
                self.stats.http_not_found += 1;
                HttpResponse {
                    status: 404,
                    body: http::encode_failure("not found"),
                }
            }
            Err(e) => {
                self.stats.http.malformed += 1;
                ok(http::encode_failure(&e.reason()))
            }
            Ok(HttpRequest::Scrape(hashes)) => {
                self.stats.http.scrapes += 1;
                let counts = self.swarm.scrape(&hashes);
                let found: Vec<(InfoHash, Counts)> = hashes
                    .iter()
                    .zip(counts)
                    .filter_map(|(ih, c)| c.map(|c| (*ih, c)))
                    .collect();
                ok(http::encode_scrape(&found))
            }
            Ok(HttpRequest::Announce(a)) => {
                let ip = match a.ip {
                    Some(ip) if self.trust_ip => ip.to_canonical(),
                    _ => client.ip(),
                };
                let req = Announce {
                    info_hash: a.info_hash,
                    peer_id: a.peer_id,
                    addr: SocketAddr::new(ip, a.port),
                    left: a.left,
                    event: a.event,
                    numwant: a.numwant,
                    family: Family::Both,
                };
                match self.swarm.announce(&req, now) {
                    Ok(r) => {
                        self.stats.http.announces_ok += 1;
                        ok(http::encode_announce(&r, a.compact, a.no_peer_id))
                    }
                    Err(e) => {
                        self.stats.http.announces_refused += 1;
                        ok(http::encode_failure(e.reason()))
                    }
                }
            }
        };
        self.refresh();
        resp
    }

    /// Answers a UDP datagram from `from`; `None`: send nothing (a wrong or expired connection
    /// id, or a datagram too short or odd to prove anything).
    pub fn handle_udp(&mut self, pkt: &[u8], from: SocketAddr, now: Instant) -> Option<Vec<u8>> {
        let from = canonical(from);
        let Some((conn, action, tid)) = udp::header(pkt) else {
            self.stats.udp.malformed += 1;
            return None;
        };
        if action == udp::ACTION_CONNECT {
            return match udp::decode(pkt) {
                Ok(_) => {
                    self.stats.udp_connects += 1;
                    Some(udp::encode_connect(tid, self.conn_ids.issue(from, now)))
                }
                Err(_) => {
                    self.stats.udp.malformed += 1;
                    None
                }
            };
        }
        if !self.conn_ids.check(conn, from, now) {
            self.stats.udp_bad_connection_id += 1;
            return None;
        }
        // The source is proven from here on: errors get an answer.
        let reply = match udp::decode(pkt) {
            Err(e) => {
                self.stats.udp.malformed += 1;
                udp::encode_error(tid, e.reason())
            }
            // Not produced for an action other than 0 (handled above).
            Ok(UdpRequest::Connect { .. }) => udp::encode_error(tid, "unexpected connect"),
            Ok(UdpRequest::Scrape { hashes, .. }) => {
                self.stats.udp.scrapes += 1;
                let counts: Vec<Counts> = self
                    .swarm
                    .scrape(&hashes)
                    .into_iter()
                    .map(Option::unwrap_or_default)
                    .collect();
                udp::encode_scrape(tid, &counts)
            }
            Ok(UdpRequest::Announce(a)) => self.udp_announce(&a, from, now),
        };
        self.refresh();
        Some(reply)
    }

    fn udp_announce(&mut self, a: &udp::UdpAnnounce, from: SocketAddr, now: Instant) -> Vec<u8> {
        let tid = a.transaction_id;
        if a.port == 0 {
            self.stats.udp.malformed += 1;
            return udp::encode_error(tid, "invalid port");
        }
        let ip = match (self.trust_ip, a.ip, from) {
            (true, ip, SocketAddr::V4(_)) if ip != 0 => IpAddr::V4(Ipv4Addr::from(ip)),
            _ => from.ip(),
        };
        let family = udp::family_of(from);
        let req = Announce {
            info_hash: a.info_hash,
            peer_id: a.peer_id,
            addr: SocketAddr::new(ip, a.port),
            left: a.left,
            event: a.event,
            numwant: Some(
                a.numwant
                    .unwrap_or(self.swarm.config().default_numwant)
                    .min(udp::max_peers(family == Family::V6)),
            ),
            family,
        };
        match self.swarm.announce(&req, now) {
            Ok(r) => {
                self.stats.udp.announces_ok += 1;
                udp::encode_announce(tid, &r, family == Family::V6)
            }
            Err(e) => {
                self.stats.udp.announces_refused += 1;
                udp::encode_error(tid, e.reason())
            }
        }
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
