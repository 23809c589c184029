//! Process-wide counters and gauges, updated lock-free on hot paths by every worker thread and
//! read by the metrics endpoint and by tests.
//!
//! It holds numbers only (atomics, no locks on hot paths) and knows no other module but
//! [`crate::reasons`].

use crate::reasons::{
    AnnounceResult, CandidateResult, DropReason, HandshakeKind, HashReply, Label, LabelCounters,
    PeerSourceKind, RejectReason, ThrottleScope,
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
    /// BEP 9 metadata pieces sent, and requests for them refused.
    pub metadata_served: AtomicU64,
    pub metadata_rejected: AtomicU64,
    /// BEP 11 peer-exchange messages sent and received (acted on).
    pub pex_sent: AtomicU64,
    pub pex_received: AtomicU64,
    /// Pieces offered to leechers (a `have`) by super-seeding (BEP 16).
    pub superseed_offers: AtomicU64,
    pub rejected: LabelCounters<RejectReason>,
    /// BEP 52 hash requests, by what became of them.
    pub hash_requests: LabelCounters<HashReply>,
    pub announces: LabelCounters<AnnounceResult>,
    /// Scrape requests (one per batch of torrents), by result.
    pub scrapes: LabelCounters<AnnounceResult>,
    pub dropped: LabelCounters<DropReason>,
    pub handshakes: LabelCounters<HandshakeKind>,
    /// Nanoseconds connections waited for an upload limit, summed over connections.
    pub throttled_ns: LabelCounters<ThrottleScope>,
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

    pub fn count_scrape(&self, result: AnnounceResult) {
        self.scrapes.inc(result);
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

    pub fn scrapes(&self, result: AnnounceResult) -> u64 {
        self.scrapes.get(result)
    }

    pub fn candidates(&self, source: PeerSourceKind, result: CandidateResult) -> u64 {
        self.candidates.0[source.index()].get(result)
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Bytes per second over the last [`RateMeter::WINDOW`] seconds, lock-free: one counter per
/// second in a ring, each stamped with its second.
#[derive(Debug, Default)]
pub struct RateMeter {
    bytes: [AtomicU64; 16],
    second: [AtomicU64; 16],
}

impl RateMeter {
    /// Seconds the rate is averaged over.
    pub const WINDOW: u64 = 10;

    /// Counts `n` bytes at `now_secs` (any monotonic second count).
    pub fn add(&self, now_secs: u64, n: u64) {
        let i = (now_secs % 16) as usize;
        let stamp = self.second[i].load(Ordering::Acquire);
        if stamp != now_secs
            && self.second[i]
                .compare_exchange(stamp, now_secs, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // This thread moved the slot on: it starts the new second's count. (A racing add
            // of the old second may land here; it is one write's worth, in one second.)
            self.bytes[i].store(n, Ordering::Release);
            return;
        }
        self.bytes[i].fetch_add(n, Ordering::AcqRel);
    }

    /// Average bytes per second over the whole seconds before `now_secs`.
    pub fn rate(&self, now_secs: u64) -> u64 {
        let from = now_secs.saturating_sub(Self::WINDOW);
        let total: u64 = (0..16)
            .filter(|&i| {
                let s = self.second[i].load(Ordering::Acquire);
                s >= from && s < now_secs
            })
            .map(|i| self.bytes[i].load(Ordering::Acquire))
            .sum();
        total / Self::WINDOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_averages_the_last_ten_whole_seconds() {
        let m = RateMeter::default();
        for s in 100..120 {
            m.add(s, 1000);
            m.add(s, 500);
        }
        assert_eq!(m.rate(120), 1500);
        // The current second is not whole yet; older ones have left the window.
        m.add(120, 1_000_000);
        assert_eq!(m.rate(120), 1500);
        assert_eq!(m.rate(125), (5 * 1500 + 1_000_000) / 10);
        assert_eq!(m.rate(1000), 0);
    }
}
