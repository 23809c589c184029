//! Process-wide counters and gauges, updated lock-free on hot paths by every worker thread and
//! read by the metrics endpoint and by tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Histograms observed on hot paths (prometheus histograms are lock-free).
#[derive(Debug, Clone)]
pub struct Histograms {
    pub piece_read_seconds: prometheus::Histogram,
    pub write_bytes: prometheus::Histogram,
    pub announce_seconds: prometheus::Histogram,
}

impl Default for Histograms {
    fn default() -> Self {
        let h = |name: &str, help: &str, buckets: Vec<f64>| {
            prometheus::Histogram::with_opts(
                prometheus::HistogramOpts::new(name, help).buckets(buckets),
            )
            .expect("valid histogram")
        };
        Histograms {
            piece_read_seconds: h(
                "uringseed_piece_read_seconds",
                "Latency of one (coalesced) read of piece data from disk.",
                prometheus::exponential_buckets(0.000_01, 4.0, 10).expect("buckets"),
            ),
            write_bytes: h(
                "uringseed_write_bytes",
                "Bytes handed to the kernel per socket write.",
                prometheus::exponential_buckets(64.0, 4.0, 10).expect("buckets"),
            ),
            announce_seconds: h(
                "uringseed_tracker_announce_seconds",
                "Latency of successful tracker announces.",
                prometheus::exponential_buckets(0.005, 3.0, 10).expect("buckets"),
            ),
        }
    }
}

/// Connected peers by direction and address family.
#[derive(Debug, Default)]
pub struct PeerGauges([AtomicUsize; 4]);

impl PeerGauges {
    fn index(outgoing: bool, ipv6: bool) -> usize {
        usize::from(outgoing) * 2 + usize::from(ipv6)
    }

    pub fn add(&self, outgoing: bool, ipv6: bool) {
        self.0[Self::index(outgoing, ipv6)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn remove(&self, outgoing: bool, ipv6: bool) {
        self.0[Self::index(outgoing, ipv6)].fetch_sub(1, Ordering::Relaxed);
    }

    pub fn get(&self, outgoing: bool, ipv6: bool) -> usize {
        self.0[Self::index(outgoing, ipv6)].load(Ordering::Relaxed)
    }
}

/// Label values exported (as 0) before they first occur, so dashboards and alerts see them.
pub const REJECT_REASONS: &[&str] = &[
    "choked",
    "oversized",
    "out_of_range",
    "unavailable",
    "queue_full",
    "read_error",
];
pub const DROP_REASONS: &[&str] = &[
    "bad_handshake",
    "unknown_info_hash",
    "handshake_timeout",
    "closed_in_handshake",
    "connection_cap",
    "ip_connection_cap",
    "blocked",
    "torrent_connection_cap",
    "duplicate_peer",
    "self_connection",
    "wrong_info_hash",
    "message_too_long",
    "malformed_message",
    "bad_bitfield",
    "bad_have",
    "oversized_request",
    "request_out_of_range",
    "unavailable_piece",
    "queue_full",
    "output_backlog",
    "idle_timeout",
    "write_stall",
    "piece_read_error",
    "peer_is_seed",
    "torrent_removed",
    "encryption_required",
    "mse_bad_key",
    "mse_no_sync",
    "mse_bad_vc",
    "mse_bad_length",
    "mse_no_common_method",
];
pub const ANNOUNCE_RESULTS: &[&str] = &["ok", "failure", "unreachable", "malformed"];
/// How peers completed their handshake: plain, or Message Stream Encryption with a plaintext
/// or RC4 payload.
pub const HANDSHAKE_KINDS: &[&str] = &["plaintext", "mse_plaintext", "mse_rc4"];

/// Counters by a label value (reasons, results): few distinct values, counted rarely.
#[derive(Debug, Default)]
pub struct Labeled(Mutex<HashMap<&'static str, u64>>);

impl Labeled {
    pub fn inc(&self, label: &'static str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(label)
            .or_default() += 1;
    }

    pub fn get(&self, label: &str) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(label)
            .copied()
            .unwrap_or(0)
    }

    /// Every (label, count), sorted by label.
    pub fn all(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<_> = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        v.sort();
        v
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    pub hist: Histograms,
    /// Peers past the handshake, by direction and family.
    pub peers: PeerGauges,
    pub uploaded_payload_bytes: AtomicU64,
    pub uploaded_protocol_bytes: AtomicU64,
    pub peers_connected: AtomicUsize,
    pub connections_accepted: AtomicU64,
    pub connections_dialed: AtomicU64,
    pub connections_dial_failed: AtomicU64,
    pub requests_served: AtomicU64,
    /// Payload bytes sent straight from the page cache (no read into a buffer).
    pub zero_copy_bytes: AtomicU64,
    pub piece_read_errors: AtomicU64,
    /// Pieces withdrawn while serving because their data could not be read.
    pub pieces_withdrawn: AtomicU64,
    pub hash_bytes: AtomicU64,
    pub hash_pieces: AtomicU64,
    pub hash_failed_pieces: AtomicU64,
    pub torrents_checking: AtomicUsize,
    rejected: Labeled,
    /// Announces by result.
    announces: Labeled,
    dropped: Labeled,
    handshakes: Labeled,
}

impl Stats {
    pub fn count_rejected(&self, reason: &'static str) {
        self.rejected.inc(reason);
    }

    pub fn count_dropped(&self, reason: &'static str) {
        self.dropped.inc(reason);
    }

    pub fn count_handshake(&self, kind: &'static str) {
        self.handshakes.inc(kind);
    }

    pub fn handshakes(&self, kind: &str) -> u64 {
        self.handshakes.get(kind)
    }

    /// All completed handshakes by kind.
    pub fn handshakes_all(&self) -> Vec<(&'static str, u64)> {
        self.handshakes.all()
    }

    pub fn count_announce(&self, result: &'static str, latency: std::time::Duration) {
        self.announces.inc(result);
        if result == "ok" {
            self.hist.announce_seconds.observe(latency.as_secs_f64());
        }
    }

    pub fn rejected(&self, reason: &str) -> u64 {
        self.rejected.get(reason)
    }

    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped.get(reason)
    }

    pub fn announces(&self, result: &str) -> u64 {
        self.announces.get(result)
    }

    /// All rejection counts by reason.
    pub fn rejected_all(&self) -> Vec<(&'static str, u64)> {
        self.rejected.all()
    }

    /// All drop counts by reason.
    pub fn dropped_all(&self) -> Vec<(&'static str, u64)> {
        self.dropped.all()
    }

    /// All announce counts by result.
    pub fn announces_all(&self) -> Vec<(&'static str, u64)> {
        self.announces.all()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
