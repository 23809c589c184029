//! What the rest of the server sees of the uTP endpoints: counters and gauges the I/O driver
//! stores (once a second and as events happen) and the metrics and the API read. No logic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// One counter or gauge.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every uTP endpoint of the server, summed.
#[derive(Debug, Default)]
pub struct UtpStatus {
    /// UDP addresses listened on.
    pub addrs: Mutex<Vec<std::net::SocketAddr>>,
    /// Open connections (accepted or dialled, not yet removed).
    pub connections: Counter,
    pub accepted: Counter,
    pub dialed: Counter,
    /// Of those, dialled without trying TCP first (its TCP dial failed before, uTP worked).
    pub dialed_direct: Counter,
    /// Dials that never connected (timed out, reset, or refused by a cap).
    pub dial_failed: Counter,
    /// Payload bytes sent (first transmissions only) and acknowledged.
    pub bytes_sent: Counter,
    pub bytes_acked: Counter,
    pub bytes_received: Counter,
    pub packets_sent: Counter,
    pub packets_received: Counter,
    pub retransmits: Counter,
    pub timeouts: Counter,
    /// Datagrams by what became of them.
    pub datagrams_utp: Counter,
    pub datagrams_dht: Counter,
    pub datagrams_malformed: Counter,
    /// DHT datagrams dropped because the DHT's queue was full (or no DHT runs).
    pub datagrams_dht_dropped: Counter,
    /// Datagrams the kernel would not take (socket buffer full); uTP resends them.
    pub send_dropped: Counter,
    pub syn_refused_total: Counter,
    pub syn_refused_per_ip: Counter,
    pub half_open_evicted: Counter,
    pub resets_sent: Counter,
    pub unknown_conn: Counter,
    /// Connections closed by us whose peer never finished within the linger time.
    pub linger_expired: Counter,
    /// Sum of the open connections' smoothed RTTs (microseconds) and how many have one: the
    /// mean RTT is their quotient.
    pub rtt_sum_us: Counter,
    pub rtt_conns: Counter,
    /// Sum of the open connections' congestion windows, and of the peers' windows, bytes.
    pub cwnd_bytes: Counter,
    /// Sum of the open connections' packet sizes (what their MTU search proved).
    pub packet_bytes_sum: Counter,
    pub peer_window_bytes: Counter,
}
