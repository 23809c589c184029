//! The announcer at scale (issue 20, a size that fits CI): 1,000 torrents, each with a UDP tier
//! and an HTTP tier, on one server (the scenario is `common::announce_scale`; the 10,000-torrent
//! run is `benches/tracker_scale.rs`). Every torrent's `started` and, on SIGTERM, `stopped` must
//! reach both trackers (the `stopped` ones within `tracker.stop_timeout_secs`), while the
//! server's thread count stays bounded and the HTTP announces reuse a few keep-alive connections
//! instead of one connection each.

mod common;

use common::announce_scale;
use std::time::Duration;

const TORRENTS: usize = 1000;
/// The server's thread count may never exceed this: 11 named threads (main, 2 workers, 2
/// checkers, choker, dialer, DHT, HTTP, quota, tracker) and at most 16 in the announcer's
/// blocking pool, with some headroom (an uncapped pool reached 63 at 10,000 torrents).
const MAX_THREADS: usize = 36;
const STOP_TIMEOUT_SECS: u64 = 5;

#[test]
fn a_thousand_torrents_announce_and_stop_with_bounded_threads_and_connections() {
    let r = announce_scale::run(TORRENTS, 2, STOP_TIMEOUT_SECS, None);
    eprintln!("{}", r.summary());
    assert_eq!(
        r.udp_started, r.want,
        "UDP `started` for every torrent\n{}",
        r.log
    );
    assert_eq!(
        r.http_started, r.want,
        "HTTP `started` for every torrent\n{}",
        r.log
    );
    assert!(r.exit_ok, "exit after SIGTERM\n{}", r.log);
    assert_eq!(
        r.udp_stopped, r.want,
        "UDP `stopped` for every torrent\n{}",
        r.log
    );
    assert_eq!(
        r.http_stopped, r.want,
        "HTTP `stopped` for every torrent\n{}",
        r.log
    );
    assert!(
        r.sigterm_to_exit < Duration::from_secs(STOP_TIMEOUT_SECS + 3),
        "stopping took {:?}",
        r.sigterm_to_exit
    );
    assert!(
        r.max_threads > 0 && r.max_threads <= MAX_THREADS,
        "thread count reached {}",
        r.max_threads
    );
    assert!(
        r.http_connections <= 40,
        "{} HTTP connections for {} announces",
        r.http_connections,
        r.http_announces
    );
}
