//! uTP's series (BEP 29 connections on the peer port's UDP sockets): open connections and those
//! accepted and dialled, payload bytes, packets, retransmissions, timeouts, mean RTT and
//! windows, datagrams by kind, refused SYNs and RESETs.

use super::{counter_vec, gauge_vec, register, sample};
use crate::utp::UtpStatus;
use prometheus::{Gauge, Opts, Registry};

pub(super) fn render(reg: &Registry, u: &UtpStatus) {
    gauge_vec(
        reg,
        "uringseed_utp_connections",
        "Open uTP connections (served by the BitTorrent connection code).",
        &[],
        vec![sample(&[], u.connections.get() as i64)],
    );
    counter_vec(
        reg,
        "uringseed_utp_connections_total",
        "uTP connections accepted (in) and dialled (out, after a failed TCP dial).",
        &["direction"],
        vec![
            sample(&["in"], u.accepted.get()),
            sample(&["out"], u.dialed.get()),
        ],
    );
    counter_vec(
        reg,
        "uringseed_utp_dials_direct_total",
        "uTP dials made without trying TCP first: the peer's TCP port failed before and uTP worked.",
        &[],
        vec![sample(&[], u.dialed_direct.get())],
    );
    counter_vec(
        reg,
        "uringseed_utp_dials_failed_total",
        "uTP dials that never connected.",
        &[],
        vec![sample(&[], u.dial_failed.get())],
    );
    counter_vec(
        reg,
        "uringseed_utp_bytes_sent_total",
        "uTP payload bytes sent, first transmissions only (BitTorrent messages included).",
        &[],
        vec![sample(&[], u.bytes_sent.get())],
    );
    counter_vec(
        reg,
        "uringseed_utp_bytes_acked_total",
        "uTP payload bytes the peers acknowledged.",
        &[],
        vec![sample(&[], u.bytes_acked.get())],
    );
    counter_vec(
        reg,
        "uringseed_utp_bytes_received_total",
        "uTP payload bytes received in order.",
        &[],
        vec![sample(&[], u.bytes_received.get())],
    );
    counter_vec(
        reg,
        "uringseed_utp_packets_total",
        "uTP packets, by direction.",
        &["direction"],
        vec![
            sample(&["sent"], u.packets_sent.get()),
            sample(&["received"], u.packets_received.get()),
        ],
    );
    counter_vec(
        reg,
        "uringseed_utp_retransmits_total",
        "uTP data packets sent again.",
        &[],
        vec![sample(&[], u.retransmits.get())],
    );
    counter_vec(
        reg,
        "uringseed_utp_timeouts_total",
        "uTP retransmission timeouts.",
        &[],
        vec![sample(&[], u.timeouts.get())],
    );
    let rtt = Gauge::with_opts(Opts::new(
        "uringseed_utp_rtt_seconds",
        "Mean smoothed round-trip time of the open uTP connections (0 when none).",
    ))
    .expect("valid metric");
    if let Some(n) = std::num::NonZeroU64::new(u.rtt_conns.get()) {
        rtt.set(u.rtt_sum_us.get() as f64 / n.get() as f64 / 1e6);
    }
    register(reg, rtt);
    let size = u.packet_bytes_sum.get() / u.connections.get().max(1);
    gauge_vec(
        reg,
        "uringseed_utp_packet_bytes",
        "Mean datagram size of the open uTP connections (1,400 at first, raised by each connection's path MTU search; 0 when none).",
        &[],
        vec![sample(&[], size as i64)],
    );
    gauge_vec(
        reg,
        "uringseed_utp_window_bytes",
        "Summed over open uTP connections: our congestion windows (cwnd) and the peers' receive windows (peer).",
        &["kind"],
        vec![
            sample(&["cwnd"], u.cwnd_bytes.get() as i64),
            sample(&["peer"], u.peer_window_bytes.get() as i64),
        ],
    );
    counter_vec(
        reg,
        "uringseed_utp_datagrams_total",
        "Datagrams received on the peer port's UDP sockets, by what they were (utp, dht, malformed: neither, or a uTP header that did not decode; dht_dropped: the DHT's queue was full or no DHT runs) and datagrams the kernel would not take (send_dropped).",
        &["result"],
        vec![
            sample(&["utp"], u.datagrams_utp.get()),
            sample(&["dht"], u.datagrams_dht.get()),
            sample(&["malformed"], u.datagrams_malformed.get()),
            sample(&["dht_dropped"], u.datagrams_dht_dropped.get()),
            sample(&["send_dropped"], u.send_dropped.get()),
        ],
    );
    counter_vec(
        reg,
        "uringseed_utp_refused_total",
        "uTP SYNs refused or dropped (total: connection cap; per_ip: per-address cap; half_open_evicted: unproven SYNs dropped for newer ones or expired), packets to unknown connections, RESETs sent, and closed connections removed after the linger time.",
        &["reason"],
        vec![
            sample(&["total"], u.syn_refused_total.get()),
            sample(&["per_ip"], u.syn_refused_per_ip.get()),
            sample(&["half_open_evicted"], u.half_open_evicted.get()),
            sample(&["unknown_connection"], u.unknown_conn.get()),
            sample(&["resets_sent"], u.resets_sent.get()),
            sample(&["linger_expired"], u.linger_expired.get()),
        ],
    );
}
