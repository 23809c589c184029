//! The DHT node's series: nodes in the routing table, queries in (by method and by result) and
//! out (by method), timeouts, announces, peers found, what is stored for others, and packets
//! dropped by reason; each with a `family` label (ipv4, ipv6).

use super::{counter_vec, gauge_vec, sample};
use crate::dht::service::DhtStatus;
use prometheus::Registry;
use std::sync::atomic::Ordering;

pub(super) fn render(reg: &Registry, status: &DhtStatus) {
    let mut nodes = Vec::new();
    let mut qin = Vec::new();
    let mut results = Vec::new();
    let mut qout = Vec::new();
    let mut timeouts = Vec::new();
    let mut announces = Vec::new();
    let mut found = Vec::new();
    let mut stored = Vec::new();
    let mut dropped = Vec::new();
    for (family, f) in status.families() {
        if f.addr.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
            continue;
        }
        let s = f.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        nodes.push(sample(&[family], f.nodes.load(Ordering::Relaxed) as i64));
        for (m, v) in [
            ("ping", s.queries_in_ping),
            ("find_node", s.queries_in_find_node),
            ("get_peers", s.queries_in_get_peers),
            ("announce_peer", s.queries_in_announce_peer),
            ("unknown", s.queries_in_unknown),
        ] {
            qin.push(sample(&[family, m], v));
        }
        for (r, v) in [
            ("answered", s.queries_answered),
            ("rate_limited", s.queries_refused_rate_limit),
            ("bad_token", s.announces_bad_token),
        ] {
            results.push(sample(&[family, r], v));
        }
        for (m, v) in [
            ("ping", s.queries_out_ping),
            ("find_node", s.queries_out_find_node),
            ("get_peers", s.queries_out_get_peers),
            ("announce_peer", s.queries_out_announce_peer),
        ] {
            qout.push(sample(&[family, m], v));
        }
        timeouts.push(sample(&[family], s.timeouts));
        announces.push(sample(&[family], s.announces_sent));
        found.push(sample(&[family], f.peers_found.load(Ordering::Relaxed)));
        stored.push(sample(
            &[family, "info_hashes"],
            s.stored_info_hashes as i64,
        ));
        stored.push(sample(&[family, "peers"], s.stored_peers as i64));
        for (r, v) in [
            ("malformed", s.malformed),
            ("too_large", s.dropped_too_large),
            ("wrong_family", s.dropped_wrong_family),
            ("unmatched", s.dropped_unmatched),
            ("id_mismatch", s.dropped_id_mismatch),
            ("read_only", s.dropped_read_only),
            ("own_id", s.dropped_own_id),
            ("transactions_full", s.dropped_txn_full),
            ("queue_full", s.dropped_out_full),
        ] {
            dropped.push(sample(&[family, r], v));
        }
    }
    gauge_vec(
        reg,
        "uringseed_dht_nodes",
        "Nodes in the DHT routing table.",
        &["family"],
        nodes,
    );
    counter_vec(
        reg,
        "uringseed_dht_queries_in_total",
        "DHT queries received, by method.",
        &["family", "method"],
        qin,
    );
    counter_vec(
        reg,
        "uringseed_dht_query_results_total",
        "What became of received DHT queries (answered; dropped over the per-address or global rate limit; announce_peer with a bad token).",
        &["family", "result"],
        results,
    );
    counter_vec(
        reg,
        "uringseed_dht_queries_out_total",
        "DHT queries sent, by method.",
        &["family", "method"],
        qout,
    );
    counter_vec(
        reg,
        "uringseed_dht_timeouts_total",
        "DHT queries sent that got no answer in time.",
        &["family"],
        timeouts,
    );
    counter_vec(
        reg,
        "uringseed_dht_announces_total",
        "announce_peer queries sent for our torrents.",
        &["family"],
        announces,
    );
    counter_vec(
        reg,
        "uringseed_dht_peers_found_total",
        "Peer addresses found for our torrents and offered for dialling.",
        &["family"],
        found,
    );
    gauge_vec(
        reg,
        "uringseed_dht_stored",
        "What the node stores for other peers.",
        &["family", "kind"],
        stored,
    );
    counter_vec(
        reg,
        "uringseed_dht_dropped_total",
        "DHT packets dropped, by reason.",
        &["family", "reason"],
        dropped,
    );
}
