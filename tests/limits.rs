//! Upload figures and limits as users see them, with the `uringseed` binary, a real tracker
//! (tests/tools/tracker.js, HTTP and UDP, re-announce every 10 s) and a real client
//! (libtorrent): trackers are told what the client received (regular and `stopped` announces,
//! both protocols) and the per-torrent metric agrees; `--upload-limit` holds for a real
//! download; a used-up quota pauses payload with the peer kept, survives kill -9 and is lifted
//! by SIGHUP; bad rates are refused at start and on SIGHUP (the running limits kept), and a
//! SIGHUP changes a running torrent's limit without dropping its peer.

mod common;

use common::raw::RawPeer;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};
use uringseed::wire::message::{self, Block, Message};

fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A data file of `len` bytes under `dir/data` and a torrent of it (with `args` for make).
fn seeded_file(dir: &Path, name: &str, len: usize, args: &[&str]) -> (std::path::PathBuf, String) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join(name);
    std::fs::write(&file, pseudo_random(len, len as u64)).unwrap();
    let torrent = dir.join(format!("{name}.torrent"));
    let ih = make_torrent(&file, &torrent, args);
    (torrent, ih)
}

fn value(lines: &[(String, String)], key: &str) -> u64 {
    lines
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {lines:?}"))
}

#[test]
fn trackers_are_told_what_a_real_client_received() {
    if !have_node_tools() || !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tracker = Tracker::start(dir.path());
    let (torrent, ih) = seeded_file(
        dir.path(),
        "release.iso",
        6_000_000,
        &["-t", &tracker.announce_url(), "-t", &tracker.udp_url()],
    );
    let config = dir.path().join("c.toml");
    // tracker.js asks for 10 s; the default floor (300 s) would put the next announce off.
    std::fs::write(
        &config,
        "[metrics]\nper_torrent = true\n[tracker]\nmin_announce_interval_secs = 10\n",
    )
    .unwrap();
    let mut s = serve(
        "seed",
        &torrent,
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
        &[],
        dir.path(),
    );
    s.ready();
    let port = s.addr.port();
    let ours = |a: &Announce| a.port == port && a.info_hash == ih;
    for kind in ["http", "udp"] {
        let (_, a) = tracker
            .wait_announce(0, Duration::from_secs(15), |a| {
                ours(a) && a.kind == kind && a.event == "started"
            })
            .unwrap_or_else(|| panic!("no {kind} started announce"));
        assert_eq!(a.uploaded, Some(0), "{a:?}");
    }
    let seen = tracker.announces().len();
    let got = lt_tool(&[
        "download",
        torrent.to_str().unwrap(),
        dir.path().join("out").to_str().unwrap(),
        &s.addr.to_string(),
        "60",
    ]);
    let received = value(&got, "downloaded");
    assert!(received >= 6_000_000, "{got:?}");
    // The next regular announces, and the per-torrent metric.
    let metric = format!(
        "uringseed_torrent_uploaded_bytes_total{{info_hash=\"{ih}\",name=\"release.iso\"}}"
    );
    let sent = s.metric(&metric) as u64;
    for kind in ["http", "udp"] {
        let (_, a) = tracker
            .wait_announce(seen, Duration::from_secs(25), |a| {
                ours(a) && a.kind == kind && a.event == "update"
            })
            .unwrap_or_else(|| panic!("no regular {kind} announce after the download"));
        let told = a.uploaded.unwrap();
        eprintln!("{kind}: told uploaded={told}; the client received {received}; metric {sent}");
        assert!(
            told >= received,
            "{kind}: told {told} < received {received}"
        );
        assert!(
            told <= 6_000_000 + 2 * 262_144,
            "{kind}: told {told}: more than the torrent and its re-requests"
        );
        assert_eq!(told, sent, "{kind}: the announce and the metric disagree");
    }
    let before_stop = tracker.announces().len();
    s.stop();
    for kind in ["http", "udp"] {
        let (_, a) = tracker
            .wait_announce(before_stop, Duration::from_secs(10), |a| {
                ours(a) && a.kind == kind && a.event == "stopped"
            })
            .unwrap_or_else(|| panic!("no {kind} stopped announce"));
        assert_eq!(a.uploaded, Some(sent), "{kind}: {a:?}");
    }
}

#[test]
fn a_rate_limited_server_holds_its_cap_for_a_real_client() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (torrent, _) = seeded_file(dir.path(), "big.bin", 12 << 20, &[]);
    let cap = 2u64 << 20;
    let mut s = serve(
        "limited",
        &torrent,
        &dir.path().join("data"),
        &["--upload-limit", "2MiB"],
        &[],
        dir.path(),
    );
    s.ready();
    assert_eq!(s.metric("uringseed_upload_rate_in_force_bytes"), cap as f64);
    let t = Instant::now();
    let got = lt_tool(&[
        "download",
        torrent.to_str().unwrap(),
        dir.path().join("out").to_str().unwrap(),
        &s.addr.to_string(),
        "60",
    ]);
    let secs = t.elapsed().as_secs_f64();
    let payload = s.metric("uringseed_uploaded_bytes_total{type=\"payload\"}");
    let rate = payload / secs;
    eprintln!(
        "{payload} bytes in {secs:.2} s (client start included): {rate:.0} B/s against a cap of \
         {cap}; the client took {} s",
        got.iter()
            .find(|(k, _)| k == "seconds")
            .map_or("?", |(_, v)| v.as_str())
    );
    // At most the cap and its burst; not far below it even on a loaded machine.
    let ceiling = cap as f64 * 1.05 + (cap / 10 + (1 << 20)) as f64 / secs;
    assert!(rate <= ceiling, "{rate} > {ceiling}");
    assert!(rate >= cap as f64 * 0.5, "{rate}: under half the cap");
    assert!(s.metric("uringseed_upload_throttled_seconds_total{scope=\"server\"}") > 0.5);
    s.stop();
}

fn quota_config(path: &Path, state: &Path, quota: &str) {
    std::fs::write(
        path,
        format!(
            "[server]\nupload_quota = {quota:?}\nupload_quota_rate = 0\nstate_dir = {:?}\n",
            state.display().to_string()
        ),
    )
    .unwrap();
}

#[test]
fn a_used_up_quota_pauses_payload_keeps_the_peer_and_survives_kill_9() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (torrent, _) = seeded_file(dir.path(), "q.bin", 8 << 20, &["--piece-length", "65536"]);
    let data = dir.path().join("data");
    let config = dir.path().join("q.toml");
    let state = dir.path().join("state");
    quota_config(&config, &state, "3MB");
    let cfg = ["--config", config.to_str().unwrap()];
    let mut s = serve("quota", &torrent, &data, &cfg, &[], dir.path());
    s.ready();
    let addr = s.addr.to_string();
    let mut lt = spawn_lt_download(
        &torrent,
        &dir.path().join("out"),
        &addr,
        120,
        0,
        None,
        dir.path(),
    );
    wait_for(Duration::from_secs(30), "the quota to be used up", || {
        s.metric("uringseed_upload_paused") == 1.0
    });
    let peers = |s: &Serve| {
        ["incoming", "outgoing"]
            .iter()
            .flat_map(|d| ["ipv4", "ipv6"].map(|f| (d.to_string(), f)))
            .map(|(d, f)| {
                s.metric(&format!(
                    "uringseed_peers_connected{{direction=\"{d}\",family=\"{f}\"}}"
                ))
            })
            .sum::<f64>()
    };
    wait_for(Duration::from_secs(5), "the peer to be choked", || {
        s.metric("uringseed_peers_unchoked") == 0.0
    });
    let payload = || s.metric("uringseed_uploaded_bytes_total{type=\"payload\"}");
    let at_pause = payload();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(payload(), at_pause, "payload went out while paused");
    assert!(peers(&s) >= 1.0, "the peer was dropped");
    assert!(
        (3_000_000.0..=3_000_000.0 + (1 << 20) as f64).contains(&at_pause),
        "{at_pause}"
    );
    let used = s.metric("uringseed_upload_quota_used_bytes");
    assert_eq!(used, at_pause, "the quota count is the payload sent");
    assert_eq!(s.metric("uringseed_upload_quota_remaining_bytes"), 0.0);
    // Saved within a few seconds; kill -9; the restart takes the count as it was.
    std::thread::sleep(Duration::from_millis(2500));
    let pid = s.pid();
    s.kill9();
    let _ = lt.terminate(Duration::from_secs(5));
    let record = std::fs::read_to_string(state.join("quota.json")).unwrap();
    assert!(
        record.contains(&format!("\"used\": {}", used as u64)),
        "{record}"
    );
    let mut s = serve("quota-again", &torrent, &data, &cfg, &[], dir.path());
    s.ready();
    assert_ne!(s.pid(), pid);
    assert_eq!(
        s.metric("uringseed_upload_quota_used_bytes"),
        used,
        "counted twice or lost"
    );
    assert_eq!(
        s.metric("uringseed_upload_paused"),
        1.0,
        "the restart forgot the quota"
    );
    // A larger quota by SIGHUP: payload flows again and a client completes.
    quota_config(&config, &state, "100MB");
    s.proc.signal("HUP");
    wait_for(Duration::from_secs(10), "the pause to be lifted", || {
        s.metric("uringseed_upload_paused") == 0.0
    });
    let got = lt_tool(&[
        "download",
        torrent.to_str().unwrap(),
        dir.path().join("out2").to_str().unwrap(),
        &s.addr.to_string(),
        "60",
    ]);
    assert!(value(&got, "downloaded") >= 8 << 20, "{got:?}");
    let total = s.metric("uringseed_upload_quota_used_bytes");
    assert!(total >= used + (8 << 20) as f64, "{total}");
    s.stop();
}

#[test]
fn bad_rates_are_refused_at_start_and_on_sighup_and_a_new_torrent_limit_keeps_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let (torrent, ih) = seeded_file(
        dir.path(),
        "r.bin",
        16 << 20,
        &["--piece-length", "1048576"],
    );
    let data = dir.path().join("data");
    // Refused at start, naming what is wrong.
    let out = uringseed()
        .args(["serve", "--listen", "127.0.0.1:0", "--upload-limit", "fast"])
        .arg(&torrent)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--upload-limit") && err.contains("\"fast\""),
        "{err}"
    );
    let config = dir.path().join("r.toml");
    let table = |rate: &str| {
        format!(
            "[[torrent]]\ntorrent = {:?}\ndata = {:?}\nupload_rate_limit = {rate}\n",
            torrent.display().to_string(),
            data.display().to_string()
        )
    };
    for (bad, says) in [
        ("\"10 megs\"", "unknown unit"),
        ("1000", "less than one block"),
    ] {
        std::fs::write(&config, table(bad)).unwrap();
        let out = uringseed()
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("r.toml") && err.contains("upload_rate_limit") && err.contains(says),
            "{err}"
        );
    }
    // Running at 1 MiB/s for this torrent, with a peer downloading.
    std::fs::write(
        &config,
        format!("[metrics]\nper_torrent = true\n\n{}", table("\"1MiB\"")),
    )
    .unwrap();
    let mut s = serve_args(
        "reload",
        &["--config", config.to_str().unwrap()],
        &[],
        dir.path(),
    );
    s.ready();
    let (mut p, _) = RawPeer::handshake(s.addr, hex_hash(&ih), true);
    p.expect(message::HAVE_ALL);
    p.send(&[Message::Interested]);
    p.expect(message::UNCHOKE);
    let blocks: Vec<Block> = (0..16u32)
        .flat_map(|index| {
            (0..64u32).map(move |i| Block {
                index,
                begin: i * 16384,
                length: 16384,
            })
        })
        .collect();
    let mut next = 0usize;
    // Keeps 32 requests in flight for `secs`; returns the payload rate.
    let mut pull = |p: &mut RawPeer, secs: f64| {
        for _ in 0..32 {
            p.send(&[Message::Request(blocks[next % blocks.len()])]);
            next += 1;
        }
        let t = Instant::now();
        let mut got = 0usize;
        while t.elapsed().as_secs_f64() < secs {
            let piece = p.expect(message::PIECE);
            got += piece.len() - 8;
            p.send(&[Message::Request(blocks[next % blocks.len()])]);
            next += 1;
        }
        // Drain what is in flight so the next phase starts clean.
        for _ in 0..32 {
            p.expect(message::PIECE);
        }
        got as f64 / t.elapsed().as_secs_f64()
    };
    let slow = pull(&mut p, 3.0);
    // A bad value on SIGHUP: rejected, the running limit kept.
    std::fs::write(&config, table("\"lots\"")).unwrap();
    s.proc.signal("HUP");
    wait_for(Duration::from_secs(10), "the reload to be rejected", || {
        s.proc.stderr_text().contains("reload rejected")
    });
    let limit =
        format!("uringseed_torrent_upload_rate_limit_bytes{{info_hash=\"{ih}\",name=\"r.bin\"}}");
    assert_eq!(s.metric(&limit), (1u64 << 20) as f64);
    // A good one: the same connection goes faster.
    std::fs::write(
        &config,
        format!("[metrics]\nper_torrent = true\n\n{}", table("\"4MiB\"")),
    )
    .unwrap();
    s.proc.signal("HUP");
    wait_for(Duration::from_secs(10), "the new limit", || {
        s.metric(&limit) == (4u64 << 20) as f64
    });
    let fast = pull(&mut p, 3.0);
    eprintln!("1 MiB/s limit: {slow:.0} B/s; after SIGHUP to 4 MiB/s: {fast:.0} B/s");
    assert!(
        slow <= 1.2 * (1 << 20) as f64 && slow >= 0.5 * (1 << 20) as f64,
        "{slow}"
    );
    assert!(
        fast >= 2.0 * slow,
        "{fast} after raising the limit from {slow}"
    );
    assert_eq!(
        s.metric("uringseed_peers_dropped_total{reason=\"torrent_removed\"}"),
        0.0
    );
    s.stop();
}
