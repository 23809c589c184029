//! The distribution-point tables: `[webseed]` (the HTTP seeding server, BEP 19) and
//! `[tracker_server]` (the built-in tracker), each a serde struct with its built-in defaults
//! and its own checks (re-exported by [`crate::config`], which calls them from `validate`).
//!
//! Settings' shapes, defaults and checks only: it reads no file and starts nothing.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The HTTP seeding server: the torrents' verified data over HTTP/1.1 (GET/HEAD, single
/// ranges) at the URL layout BEP 19 clients request (`BASE/NAME`, `BASE/NAME/PATH`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebseedConfig {
    /// Addresses to serve HTTP on (none: the web seed is off).
    pub listen: Vec<SocketAddr>,
    /// Connections served at once (more are closed at once, counted).
    pub max_connections: usize,
    /// Connections from one address at once (loopback too only with server.limit_loopback).
    pub max_connections_per_ip: usize,
    /// Largest request head (request line and headers), bytes.
    pub max_header_bytes: usize,
    /// Time for a request head to arrive (also the keep-alive idle time between requests).
    pub header_timeout_secs: u64,
    /// A reply during which the client takes no byte for this long is dropped (a slow reader
    /// that keeps taking bytes is fine).
    pub write_stall_secs: u64,
}

impl Default for WebseedConfig {
    fn default() -> Self {
        WebseedConfig {
            listen: Vec::new(),
            max_connections: 1024,
            max_connections_per_ip: 16,
            max_header_bytes: 8192,
            header_timeout_secs: 10,
            write_stall_secs: 30,
        }
    }
}

/// The built-in tracker: HTTP `/announce` and `/scrape`, and UDP (BEP 15), by default only for
/// the torrents this server seeds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerServerConfig {
    /// Addresses to serve the tracker on, HTTP (TCP) and UDP on the same port (none: off).
    pub listen: Vec<SocketAddr>,
    /// Track any info-hash announced (bounded by max_torrents), not only the ones seeded here.
    pub open: bool,
    /// `interval` told to clients, seconds; peers expire after two intervals.
    pub interval_secs: u64,
    /// `min interval` told to clients, seconds.
    pub min_interval_secs: u64,
    /// Most peers returned per announce (a larger numwant is capped).
    pub max_numwant: usize,
    /// Peers kept per torrent (the longest-silent one goes first when full).
    pub max_peers_per_torrent: usize,
    /// Peers kept over all torrents (about 110 bytes each).
    pub max_peers_total: usize,
    /// Torrents tracked at most when `open` (new ones are refused when full).
    pub max_torrents: usize,
    /// Honour the announce's `ip` parameter instead of the source address (only behind a
    /// trusted proxy or on a private network).
    pub trust_ip_param: bool,
}

impl Default for TrackerServerConfig {
    fn default() -> Self {
        TrackerServerConfig {
            listen: Vec::new(),
            open: false,
            interval_secs: 1800,
            min_interval_secs: 300,
            max_numwant: 200,
            max_peers_per_torrent: 2000,
            max_peers_total: 1_000_000,
            max_torrents: 100_000,
            trust_ip_param: false,
        }
    }
}

/// The first bad key of the two tables and why, as (key, reason).
pub(super) fn check(w: &WebseedConfig, t: &TrackerServerConfig) -> Result<(), (String, String)> {
    let positive = [
        ("webseed.max_connections", w.max_connections as u64),
        (
            "webseed.max_connections_per_ip",
            w.max_connections_per_ip as u64,
        ),
        ("webseed.header_timeout_secs", w.header_timeout_secs),
        ("webseed.write_stall_secs", w.write_stall_secs),
        ("tracker_server.interval_secs", t.interval_secs),
        ("tracker_server.max_numwant", t.max_numwant as u64),
        (
            "tracker_server.max_peers_per_torrent",
            t.max_peers_per_torrent as u64,
        ),
        ("tracker_server.max_torrents", t.max_torrents as u64),
        ("tracker_server.max_peers_total", t.max_peers_total as u64),
    ];
    for (key, v) in positive {
        if v == 0 {
            return Err((key.to_string(), "must be at least 1".to_string()));
        }
    }
    if !(1024..=1 << 20).contains(&w.max_header_bytes) {
        return Err((
            "webseed.max_header_bytes".to_string(),
            format!("{} is outside 1024..=1048576", w.max_header_bytes),
        ));
    }
    if t.min_interval_secs > t.interval_secs {
        return Err((
            "tracker_server.min_interval_secs".to_string(),
            format!(
                "{} is larger than tracker_server.interval_secs ({})",
                t.min_interval_secs, t.interval_secs
            ),
        ));
    }
    Ok(())
}
