//! The web seed's series (the HTTP seeding server, BEP 19): requests by status, body bytes,
//! connections open, accepted and refused, timeouts, and refused paths.

use super::{counter_vec, gauge_vec, sample};
use crate::webseed::{Status, WebStats};
use prometheus::Registry;
use std::sync::atomic::Ordering;

pub(super) fn render(reg: &Registry, w: &WebStats) {
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    counter_vec(
        reg,
        "uringseed_webseed_requests_total",
        "HTTP requests the web seed answered, by status.",
        &["status"],
        Status::ALL
            .iter()
            .map(|s| sample(&[s.label()], w.requests(*s)))
            .collect(),
    );
    counter_vec(
        reg,
        "uringseed_webseed_payload_bytes_total",
        "Torrent data bytes sent in web seed response bodies.",
        &[],
        vec![sample(&[], get(&w.payload_bytes))],
    );
    gauge_vec(
        reg,
        "uringseed_webseed_connections_active",
        "Web seed HTTP connections open now.",
        &[],
        vec![sample(&[], w.connections_active.load(Ordering::Relaxed))],
    );
    counter_vec(
        reg,
        "uringseed_webseed_connections_total",
        "Web seed HTTP connections accepted.",
        &[],
        vec![sample(&[], get(&w.connections_total))],
    );
    counter_vec(
        reg,
        "uringseed_webseed_connections_refused_total",
        "Web seed HTTP connections closed at once: blocked address, or a connection cap reached.",
        &[],
        vec![sample(&[], get(&w.connections_refused))],
    );
    counter_vec(
        reg,
        "uringseed_webseed_timeouts_total",
        "Web seed connections dropped for a request head not complete in time or a reader that took no byte for webseed.write_stall_secs.",
        &[],
        vec![sample(&[], get(&w.timeouts))],
    );
    counter_vec(
        reg,
        "uringseed_webseed_refused_paths_total",
        "Web seed request targets refused (traversal, NUL, bad escapes) with 404.",
        &[],
        vec![sample(&[], get(&w.refused_paths))],
    );
}
