//! Process-wide counters and gauges, updated lock-free on hot paths by every worker thread and
//! read by the metrics endpoint and by tests.
//!
//! It holds numbers only (atomics, no locks on hot paths) and knows no other module but
//! [`crate::reasons`].

use crate::reasons::{
    AnnounceResult, CandidateResult, DropReason, HandshakeKind, Label, LabelCounters,
    PeerSourceKind, RejectReason,
};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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

/// Counters and gauges of the whole process. Labelled counters are per value of a
/// [`crate::reasons`] enum, so every value is exported from the start.
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
    pub rejected: LabelCounters<RejectReason>,
    pub announces: LabelCounters<AnnounceResult>,
    pub dropped: LabelCounters<DropReason>,
    pub handshakes: LabelCounters<HandshakeKind>,
    /// Peer addresses offered for dialling, by source, then by what became of them.
    candidates: Candidates,
}

/// [`CandidateResult`] counts for each [`PeerSourceKind`].
#[derive(Debug)]
struct Candidates(Vec<LabelCounters<CandidateResult>>);

impl Default for Candidates {
    fn default() -> Self {
        Candidates(
            PeerSourceKind::ALL
                .iter()
                .map(|_| Default::default())
                .collect(),
        )
    }
}

impl Stats {
    pub fn count_rejected(&self, reason: RejectReason) {
        self.rejected.inc(reason);
    }

    pub fn count_dropped(&self, reason: DropReason) {
        self.dropped.inc(reason);
    }

    pub fn count_handshake(&self, kind: HandshakeKind) {
        self.handshakes.inc(kind);
    }

    pub fn count_announce(&self, result: AnnounceResult, latency: std::time::Duration) {
        self.announces.inc(result);
        if result == AnnounceResult::Ok {
            self.hist.announce_seconds.observe(latency.as_secs_f64());
        }
    }

    pub fn count_candidate(&self, source: PeerSourceKind, result: CandidateResult) {
        self.candidates.0[source.index()].inc(result);
    }

    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected.get(reason)
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(reason)
    }

    pub fn handshakes(&self, kind: HandshakeKind) -> u64 {
        self.handshakes.get(kind)
    }

    pub fn announces(&self, result: AnnounceResult) -> u64 {
        self.announces.get(result)
    }

    pub fn candidates(&self, source: PeerSourceKind, result: CandidateResult) -> u64 {
        self.candidates.0[source.index()].get(result)
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
