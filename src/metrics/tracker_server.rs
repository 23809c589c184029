//! The built-in tracker's series (`tracker_server.listen`): announces by protocol and result,
//! scrapes, malformed requests, UDP connects and requests dropped for a bad connection id,
//! HTTP requests for unknown paths, and the peers and torrents in its table.

use super::{counter_vec, gauge_vec, sample};
use crate::tracker_server::Stats;
use prometheus::Registry;

pub(super) fn render(reg: &Registry, s: &Stats) {
    let protos = [("http", &s.http), ("udp", &s.udp)];
    let mut announces = Vec::new();
    for (proto, p) in protos {
        announces.push(sample(&[proto, "ok"], p.announces_ok));
        announces.push(sample(&[proto, "refused"], p.announces_refused));
    }
    counter_vec(
        reg,
        "uringseed_tracker_server_announces_total",
        "Announces to the built-in tracker, by protocol and result (ok: answered with peers; refused: unknown torrent or table full).",
        &["proto", "result"],
        announces,
    );
    counter_vec(
        reg,
        "uringseed_tracker_server_scrapes_total",
        "Scrapes answered by the built-in tracker, by protocol.",
        &["proto"],
        protos
            .iter()
            .map(|(n, p)| sample(&[n], p.scrapes))
            .collect(),
    );
    counter_vec(
        reg,
        "uringseed_tracker_server_malformed_total",
        "Requests to the built-in tracker that did not decode, by protocol.",
        &["proto"],
        protos
            .iter()
            .map(|(n, p)| sample(&[n], p.malformed))
            .collect(),
    );
    counter_vec(
        reg,
        "uringseed_tracker_server_udp_connects_total",
        "BEP 15 connect requests answered by the built-in tracker.",
        &[],
        vec![sample(&[], s.udp_connects)],
    );
    counter_vec(
        reg,
        "uringseed_tracker_server_udp_bad_connection_id_total",
        "UDP requests to the built-in tracker dropped unanswered for a wrong or expired connection id.",
        &[],
        vec![sample(&[], s.udp_bad_connection_id)],
    );
    counter_vec(
        reg,
        "uringseed_tracker_server_http_not_found_total",
        "HTTP requests to the built-in tracker for a path other than /announce and /scrape.",
        &[],
        vec![sample(&[], s.http_not_found)],
    );
    gauge_vec(
        reg,
        "uringseed_tracker_server_peers",
        "Peers in the built-in tracker's table (all torrents).",
        &[],
        vec![sample(&[], s.peers as i64)],
    );
    gauge_vec(
        reg,
        "uringseed_tracker_server_torrents",
        "Torrents with peers or an entry in the built-in tracker's table.",
        &[],
        vec![sample(&[], s.torrents as i64)],
    );
}
