//! The announcer at the size issue 20 names: 10,000 torrents (URINGSEED_BENCH_TORRENTS), each
//! with a UDP and an HTTP tracker tier, on one server with 2 workers; the scenario and its fake
//! trackers are `tests/common/announce_scale.rs`, which the CI-sized test shares. Prints the
//! time to all `started`, SIGTERM to exit with every `stopped` sent, the thread-count and RSS
//! peaks and the TCP connections the HTTP announces used; exits non-zero if any `started` or
//! `stopped` is missing or stopping overran `tracker.stop_timeout_secs` (+3 s to exit).
//!
//! `cargo bench --bench tracker_scale` (about a minute; release build).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

fn main() {
    let torrents = std::env::var("URINGSEED_BENCH_TORRENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let stop_timeout = 5;
    let r = common::announce_scale::run(torrents, 2, stop_timeout);
    println!("{}", r.summary());
    let missing = |name: &str, got: &std::collections::HashSet<[u8; 20]>| {
        let n = r.want.difference(got).count();
        println!("{name}: {} of {} torrents", got.len(), r.want.len());
        n
    };
    let lost = missing("UDP started", &r.udp_started)
        + missing("HTTP started", &r.http_started)
        + missing("UDP stopped", &r.udp_stopped)
        + missing("HTTP stopped", &r.http_stopped);
    let late = r.sigterm_to_exit >= Duration::from_secs(stop_timeout + 3);
    if lost > 0 || late || !r.exit_ok {
        eprintln!(
            "FAILED: {lost} announces missing, stop {:?}, exit ok {}\n{}",
            r.sigterm_to_exit, r.exit_ok, r.log
        );
        std::process::exit(1);
    }
}
