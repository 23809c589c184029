//! The announcer at the size issue 20 names: 10,000 torrents (URINGSEED_BENCH_TORRENTS), each
//! with a UDP and an HTTP tracker tier, on one server with 2 workers; the scenario and its fake
//! trackers are `tests/common/announce_scale.rs`, which the CI-sized test shares. Prints the
//! time to all ready and all `started`, SIGTERM to exit with every `stopped` sent, the
//! thread-count and RSS peaks and the TCP connections the HTTP announces used; with
//! URINGSEED_BENCH_BASELINE_BIN (an older build) the same again with that binary, and the
//! ratios. Exits non-zero if this build misses any `started` or `stopped` or overruns
//! `tracker.stop_timeout_secs` (+3 s to exit).
//!
//! `cargo bench --bench tracker_scale` (about a minute; release build).

#[path = "../tests/common/mod.rs"]
mod common;

use common::announce_scale::{run, Report};
use std::path::PathBuf;
use std::time::Duration;

const STOP_TIMEOUT_SECS: u64 = 5;

/// Prints one build's figures; returns the number of `started`/`stopped` announces missing.
fn show(label: &str, r: &Report) -> usize {
    println!("{label}: {}", r.summary());
    let mut lost = 0;
    for (name, got) in [
        ("UDP started", &r.udp_started),
        ("HTTP started", &r.http_started),
        ("UDP stopped", &r.udp_stopped),
        ("HTTP stopped", &r.http_stopped),
    ] {
        lost += r.want.difference(got).count();
        println!("  {name}: {} of {} torrents", got.len(), r.want.len());
    }
    lost
}

fn main() {
    let torrents = std::env::var("URINGSEED_BENCH_TORRENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let r = run(torrents, 2, STOP_TIMEOUT_SECS, None);
    let lost = show("this build", &r);
    if let Some(base) = std::env::var_os("URINGSEED_BENCH_BASELINE_BIN").map(PathBuf::from) {
        let b = run(torrents, 2, STOP_TIMEOUT_SECS, Some(&base));
        show(&format!("baseline {}", base.display()), &b);
        let ratio = |x: Duration, y: Duration| x.as_secs_f64() / y.as_secs_f64().max(1e-9);
        println!(
            "this / baseline: all started {:.2}x, SIGTERM to exit {:.2}x, max threads {:.2}x, \
             stopped sent {:.2}x",
            ratio(r.to_all_started, b.to_all_started),
            ratio(r.sigterm_to_exit, b.sigterm_to_exit),
            r.max_threads as f64 / b.max_threads.max(1) as f64,
            (r.udp_stopped.len() + r.http_stopped.len()) as f64
                / (b.udp_stopped.len() + b.http_stopped.len()).max(1) as f64
        );
    }
    let late = r.sigterm_to_exit >= Duration::from_secs(STOP_TIMEOUT_SECS + 3);
    if lost > 0 || late || !r.exit_ok {
        eprintln!(
            "FAILED: {lost} announces missing, stop {:?}, exit ok {}\n{}",
            r.sigterm_to_exit, r.exit_ok, r.log
        );
        std::process::exit(1);
    }
}
