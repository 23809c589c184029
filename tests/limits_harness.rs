//! Upload limits and quotas on the in-process harness (real connection code and upload
//! pipeline over in-memory streams, paused tokio time): achieved rates, fair shares between
//! peers (a greedy one included), bounded bursts, a limit changed while peers download, a
//! torrent's own limit beside the server's, a used-up quota dropping to its rate or pausing
//! payload, and the accounting that trackers and metrics report, compared with what the peers
//! actually received.

mod common;

use common::harness::{run, HPeer, Harness};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;
use uringseed::units::ByteRate;
use uringseed::wire::message::{self, Message};

const PL: u64 = 1 << 18;

/// A 16 MiB torrent served with `tweak`.
fn harness(tweak: impl FnOnce(&mut uringseed::config::Config)) -> Harness {
    Harness::new(16 << 20, PL, |c| {
        c.server.upload_slots = 0;
        c.server.idle_timeout_secs = 3600;
        tweak(c);
    })
}

/// Downloads with `depth` requests in flight, cycling through the torrent, until `until`;
/// adds the payload bytes received to `got` as they come.
async fn download(h: Rc<Harness>, mut p: HPeer, depth: usize, until: Instant, got: Rc<Cell<u64>>) {
    let blocks = h.blocks();
    let mut next = 0usize;
    for _ in 0..depth {
        p.send(&[Message::Request(blocks[next % blocks.len()])])
            .await;
        next += 1;
    }
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let Ok(Some((id, payload))) = tokio::time::timeout(left, p.recv()).await else {
            return;
        };
        if id == message::PIECE {
            got.set(got.get() + payload.len() as u64 - 8);
            p.send(&[Message::Request(blocks[next % blocks.len()])])
                .await;
            next += 1;
        }
    }
}

/// `n` unchoked peers downloading for `secs` (the first with `greedy_depth` requests in flight,
/// the others 4); returns what each received.
async fn downloads(h: &Rc<Harness>, n: usize, greedy_depth: usize, secs: u64) -> Vec<u64> {
    let until = Instant::now() + Duration::from_secs(secs);
    let mut counts = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..n {
        let p = h.unchoked(true).await;
        let got = Rc::new(Cell::new(0));
        counts.push(got.clone());
        let depth = if i == 0 { greedy_depth } else { 4 };
        tasks.push(tokio::task::spawn_local(download(
            h.clone(),
            p,
            depth,
            until,
            got,
        )));
    }
    for t in tasks {
        t.await.unwrap();
    }
    counts.iter().map(|c| c.get()).collect()
}

#[test]
fn the_server_cap_holds_over_ten_seconds_for_one_and_for_eight_peers() {
    for (n, rate) in [(1usize, 1_000_000u64), (8, 4_000_000), (8, 100_000)] {
        let h = Rc::new(harness(|c| c.server.upload_rate_limit = ByteRate(rate)));
        run(async {
            let got = downloads(&h, n, 4, 10).await;
            let total: u64 = got.iter().sum();
            let want = 10 * rate;
            eprintln!("{n} peer(s) at {rate} B/s: {total} bytes in 10 s, shares {got:?}");
            // The cap plus the burst (100 ms of rate and a chunk per peer), and not much less.
            let chunk = (rate / 50).max(16397);
            assert!(
                total <= want + rate / 10 + n as u64 * chunk,
                "{total} > {want}"
            );
            assert!(total >= want * 97 / 100, "{total} < 97% of {want}");
            assert!(
                h.shared
                    .stats
                    .throttled_ns
                    .get(uringseed::reasons::ThrottleScope::Server)
                    > 0
            );
        });
    }
}

#[test]
fn peers_get_fair_shares_and_a_greedy_one_cannot_starve_the_others() {
    let h = Rc::new(harness(|c| {
        c.server.upload_rate_limit = ByteRate(2_000_000)
    }));
    run(async {
        // The first peer keeps 400 requests in flight, the other five 4 each.
        let got = downloads(&h, 6, 400, 10).await;
        let mean = got.iter().sum::<u64>() as f64 / got.len() as f64;
        eprintln!("shares over 10 s at 2 MB/s: {got:?} (mean {mean:.0})");
        for (i, g) in got.iter().enumerate() {
            let off = (*g as f64 - mean).abs() / mean;
            assert!(
                off <= 0.25,
                "peer {i} got {g}, {:.0}% off the mean",
                off * 100.0
            );
        }
    });
}

#[test]
fn bursts_are_bounded_and_a_new_limit_applies_to_running_peers() {
    let h = Rc::new(harness(|c| c.server.upload_rate_limit = ByteRate(500_000)));
    run(async {
        let p = h.unchoked(true).await;
        let got = Rc::new(Cell::new(0));
        let until = Instant::now() + Duration::from_secs(20);
        let t0 = Instant::now();
        let task = tokio::task::spawn_local(download(h.clone(), p, 64, until, got.clone()));
        // After an idle start, the first 200 ms carry at most the burst and a chunk or two
        // beyond the rate.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            got.get() <= 500_000 / 5 + 50_000 + 2 * 16_397,
            "burst {}",
            got.get()
        );
        tokio::time::sleep_until(t0 + Duration::from_secs(5)).await;
        let at5 = got.get();
        // SIGHUP-style: the server's limit goes to 2 MB/s; the same connection speeds up.
        h.shared.upload.set(2_000_000, 0, 0);
        tokio::time::sleep_until(t0 + Duration::from_secs(10)).await;
        let faster = got.get() - at5;
        eprintln!("5 s at 500 kB/s: {at5}; next 5 s at 2 MB/s: {faster}");
        assert!((2_300_000..=2_700_000).contains(&at5), "{at5}");
        assert!((9_500_000..=10_300_000).contains(&faster), "{faster}");
        // Unlimited again: no reservation waits. (Not downloaded here: under paused time an
        // unthrottled transfer never lets the clock move.)
        h.shared.upload.set(0, 0, 0);
        let now = h.shared.clock_ns(uringseed::io::conn::now());
        assert!(h.shared.upload.bucket.reserve(now, 1 << 40).is_zero());
        task.abort();
        assert_eq!(h.dropped_total(), 0, "no peer dropped");
    });
}

#[test]
fn a_torrent_limit_applies_beside_the_server_limit() {
    let h = Rc::new(harness(|c| {
        c.server.upload_rate_limit = ByteRate(4_000_000)
    }));
    h.ctx.upload.set(1_000_000, 0, 0);
    run(async {
        let got = downloads(&h, 3, 4, 10).await;
        let total: u64 = got.iter().sum();
        eprintln!("torrent cap 1 MB/s under a server cap of 4 MB/s: {total} bytes in 10 s");
        assert!((9_700_000..=10_300_000).contains(&total), "{total}");
        let torrent = uringseed::reasons::ThrottleScope::Torrent;
        assert!(h.shared.stats.throttled_ns.get(torrent) > 0);
    });
}

#[test]
fn a_used_up_quota_drops_to_the_quota_rate_or_pauses_payload() {
    // 3 MB of quota, then 200 kB/s.
    let h = Rc::new(harness(|c| {
        c.server.upload_quota = uringseed::units::ByteSize(3_000_000);
        c.server.upload_quota_rate = ByteRate(200_000);
    }));
    run(async {
        let p = h.unchoked(true).await;
        let got = Rc::new(Cell::new(0));
        let until = Instant::now() + Duration::from_secs(10);
        tokio::task::spawn_local(download(h.clone(), p, 16, until, got.clone()));
        // Unlimited until the quota is used up...
        while got.get() < 3_000_000 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(h.shared.upload.quota.exhausted());
        assert_eq!(h.shared.upload.bucket.rate(), 200_000);
        let t = Instant::now();
        let at = got.get();
        tokio::time::sleep_until(until).await;
        let slow = got.get() - at;
        let rate = slow as f64 / t.elapsed().as_secs_f64();
        eprintln!("after the quota: {rate:.0} B/s");
        assert!((150_000.0..=260_000.0).contains(&rate), "{rate}");
    });
    // With a quota rate of 0, payload stops; the peer stays connected.
    let h = Rc::new(harness(|c| {
        c.server.upload_quota = uringseed::units::ByteSize(2_000_000);
    }));
    run(async {
        let p = h.unchoked(true).await;
        let got = Rc::new(Cell::new(0));
        let until = Instant::now() + Duration::from_secs(30);
        let task = tokio::task::spawn_local(download(h.clone(), p, 16, until, got.clone()));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let stopped = got.get();
        assert!(h.shared.upload.paused());
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(got.get(), stopped, "payload after the quota was used up");
        // At most one write past the quota.
        assert!(stopped <= 2_000_000 + (1 << 20), "{stopped}");
        assert_eq!(h.dropped_total(), 0, "the peer stays connected");
        task.await.unwrap();
    });
}

#[test]
fn what_is_accounted_is_what_the_peers_received() {
    let h = Rc::new(harness(|c| {
        c.server.upload_rate_limit = ByteRate(3_000_000)
    }));
    run(async {
        let got = downloads(&h, 3, 8, 5).await;
        // Let the last writes be accounted.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let received: u64 = got.iter().sum();
        let ctx_uploaded = h.ctx.uploaded.load(Ordering::Relaxed);
        let payload = uringseed::stats::Stats::get(&h.shared.stats.uploaded_payload_bytes);
        let quota_used = h.shared.upload.quota.used();
        eprintln!("received {received}; torrent uploaded {ctx_uploaded}; payload {payload}");
        // Sent and counted but not yet read by a peer that stopped: at most a write each.
        assert!(ctx_uploaded >= received, "{ctx_uploaded} < {received}");
        assert!(ctx_uploaded <= received + 3 * (1 << 20), "{ctx_uploaded}");
        assert_eq!(payload, ctx_uploaded);
        assert_eq!(quota_used, ctx_uploaded);
        let now = uringseed::io::conn::now();
        let secs = h.shared.clock_ns(now) / 1_000_000_000;
        let rate = h.ctx.meter.rate(secs);
        assert!(
            (1_000_000..=3_500_000).contains(&rate),
            "10 s meter: {rate}"
        );
    });
}
