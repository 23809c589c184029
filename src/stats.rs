//! Process-wide counters and gauges, updated lock-free on hot paths by every worker thread and
//! read by the metrics endpoint and by tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Stats {
    pub uploaded_payload_bytes: AtomicU64,
    pub uploaded_protocol_bytes: AtomicU64,
    pub peers_connected: AtomicUsize,
    pub connections_accepted: AtomicU64,
    pub connections_dialed: AtomicU64,
    pub connections_dial_failed: AtomicU64,
    pub requests_served: AtomicU64,
    pub piece_read_errors: AtomicU64,
    pub piece_read_nanos: AtomicU64,
    /// Pieces withdrawn while serving because their data could not be read.
    pub pieces_withdrawn: AtomicU64,
    pub hash_bytes: AtomicU64,
    pub hash_pieces: AtomicU64,
    pub hash_failed_pieces: AtomicU64,
    pub torrents_checking: AtomicUsize,
    pub torrents_seeding: AtomicUsize,
    pub torrents_error: AtomicUsize,
    rejected: Mutex<HashMap<&'static str, u64>>,
    /// Announces by result.
    announces: Mutex<HashMap<&'static str, u64>>,
    /// Sum of successful announces' latencies, in nanoseconds.
    pub announce_latency_nanos: AtomicU64,
    dropped: Mutex<HashMap<&'static str, u64>>,
}

impl Stats {
    pub fn count_rejected(&self, reason: &'static str) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    pub fn count_dropped(&self, reason: &'static str) {
        *self
            .dropped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    pub fn count_announce(&self, result: &'static str, latency: std::time::Duration) {
        *self
            .announces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(result)
            .or_default() += 1;
        self.announce_latency_nanos
            .fetch_add(latency.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn announces(&self, result: &str) -> u64 {
        self.announces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(result)
            .copied()
            .unwrap_or(0)
    }

    pub fn rejected(&self, reason: &str) -> u64 {
        self.rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(reason)
            .copied()
            .unwrap_or(0)
    }

    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(reason)
            .copied()
            .unwrap_or(0)
    }

    /// All rejection counts by reason.
    pub fn rejected_all(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<_> = self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        v.sort();
        v
    }

    /// All drop counts by reason.
    pub fn dropped_all(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<_> = self
            .dropped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        v.sort();
        v
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
