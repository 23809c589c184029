//! uringseed's tracker client end to end, against a real tracker (tests/tools/tracker.js: npm
//! bittorrent-tracker, HTTP + UDP, re-announce interval 10 s) and real clients that find the seed
//! only through that tracker. Nothing announces uringseed on its behalf: it must announce itself.
//!
//! - aria2 through an HTTP tracker; libtorrent through a UDP tracker (BEP 15);
//! - Transmission 3.00, which never dials loopback peers: it downloads only because uringseed
//!   learns its address from a tracker reply and connects out to it;
//! - `started` to every tier (an HTTP tier and a UDP tier) within 10 s of `ready:`, the next
//!   announce on the tracker's 10 s interval (not before ~8.5 s, not after 16 s), `stopped` to
//!   every tier on SIGTERM before exiting 0.
//!
//! The harness is checked against a reference seed: with `URINGSEED_TEST_SEED=libtorrent` every
//! test runs `lt_tool.py seed` (libtorrent 2.0, announcing and connecting out by itself) in
//! place of uringseed, and must pass (libtorrent re-announces after 30 s, not 10 s: the interval
//! check allows it that).
//!
//! Tools: node with tests/tools/node_modules, Debian aria2, python3-libtorrent and
//! transmission-cli (see tests/tools/README.md). Missing tools skip a test on a developer machine
//! and fail it under CI. Each test has its own temp dir, tracker and ports (port 0, parsed from
//! what the processes print); every process it starts is stopped by PID when the test ends, even
//! when it panics.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a client may take to download (its own timeout); the harness waits a bit longer.
const CLIENT_TIMEOUT_S: u64 = 40;
/// How soon after `ready:` the seed's `started` must reach the tracker.
const ANNOUNCE_WITHIN: Duration = Duration::from_secs(10);
/// How long the harness looks for the seed's `stopped` in the tracker's log once the seed has
/// exited (it must exit 0 within 10 s of SIGTERM; `stopped` should reach the tracker before).
const STOPPED_WITHIN: Duration = Duration::from_secs(10);
/// tracker.js's re-announce interval (its replies' `interval`).
const TRACKER_INTERVAL: Duration = Duration::from_secs(10);

/// True when URINGSEED_TEST_SEED=libtorrent: the libtorrent reference seed stands in for
/// uringseed (to check the harness itself).
fn reference_seed() -> bool {
    std::env::var("URINGSEED_TEST_SEED").as_deref() == Ok("libtorrent")
}

/// The seed under test: uringseed, or the libtorrent reference seed (URINGSEED_TEST_SEED).
struct TestSeed {
    proc: Proc,
    port: u16,
}

impl TestSeed {
    /// `uringseed serve --torrent T --data DIR --listen 127.0.0.1:0` (common::Seed), waiting for
    /// `listening:` and `ready:`; or `lt_tool.py seed T DIR` with URINGSEED_TEST_SEED=libtorrent.
    fn start(torrent: &Path, data: &Path, dir: &Path) -> TestSeed {
        if reference_seed() {
            assert!(
                have_libtorrent(),
                "URINGSEED_TEST_SEED=libtorrent needs python3-libtorrent"
            );
            let mut proc = Proc::spawn(
                "libtorrent-seed",
                Command::new("/usr/bin/python3")
                    .arg(tools_dir().join("lt_tool.py"))
                    .arg("seed")
                    .arg(torrent)
                    .arg(data)
                    .arg("-")
                    .arg("300"),
                dir,
            );
            let port = proc.wait_line("listening ", Duration::from_secs(30));
            let port = port.trim().parse().unwrap();
            proc.wait_line("ready ", Duration::from_secs(30));
            return TestSeed { proc, port };
        }
        let config = floor_config(dir);
        let Seed { proc, port, .. } = Seed::start_with(
            torrent,
            data,
            dir,
            Duration::from_secs(30),
            "127.0.0.1",
            &["--config", config.to_str().unwrap()],
        );
        TestSeed { proc, port }
    }

    /// SIGTERM; it must exit with status 0 within 10 s (like `Seed::stop`, but the process stays
    /// here so that later failures can still show its log).
    fn stop(&mut self) {
        let status = self.proc.terminate(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "{} did not exit 0 on SIGTERM within 10 s: {status:?}\n{}",
            self.proc.name,
            self.proc.report()
        );
    }
}

/// A config in `dir` that lowers the re-announce floor to tracker.js's 10 s interval (the
/// default floor, 300 s, would stretch it).
fn floor_config(dir: &Path) -> PathBuf {
    let config = dir.join("floor.toml");
    std::fs::write(&config, "[tracker]\nmin_announce_interval_secs = 10\n").unwrap();
    config
}

/// A test's temp dir, tracker, data tree (`data/tree`, multi-file, with a zero-length file) and
/// torrent made by `uringseed make` with `trackers` (one tier each) and 32 KiB pieces.
struct Setup {
    dir: tempfile::TempDir,
    tracker: Tracker,
    root: PathBuf,
    torrent: PathBuf,
    info_hash: String,
}

impl Setup {
    fn new(trackers: impl Fn(&Tracker) -> Vec<String>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let tracker = Tracker::start(dir.path());
        let root = write_tree(&dir.path().join("data"), "tree");
        let torrent = dir.path().join("tree.torrent");
        let mut args = vec!["--piece-length".to_string(), "32768".to_string()];
        for url in trackers(&tracker) {
            args.push("-t".into());
            args.push(url);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let info_hash = make_torrent(&root, &torrent, &args);
        Setup {
            dir,
            tracker,
            root,
            torrent,
            info_hash,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn start_seed(&self) -> TestSeed {
        TestSeed::start(&self.torrent, &self.path().join("data"), self.path())
    }

    /// The announces of this torrent from 127.0.0.1:`port`, as the tracker logged them.
    fn announces_from(&self, port: u16) -> Vec<Announce> {
        self.tracker
            .announces()
            .into_iter()
            .filter(|a| a.port == port && a.info_hash == self.info_hash)
            .collect()
    }

    /// Waits for an announce of this torrent from 127.0.0.1:`port` with `event` over `kind`
    /// (http or udp; "" for either), after the first `skip` logged announces. Panics with the
    /// tracker's log and the output of `procs` (the first one is the announcing process) if none
    /// comes within `timeout`.
    fn expect_announce(
        &self,
        skip: usize,
        port: u16,
        (event, kind): (&str, &str),
        timeout: Duration,
        procs: &[&Proc],
    ) -> (usize, Announce) {
        let found = self.tracker.wait_announce(skip, timeout, |a| {
            a.info_hash == self.info_hash
                && a.port == port
                && a.ip == "127.0.0.1"
                && a.event == event
                && (kind.is_empty() || a.kind == kind)
        });
        found.unwrap_or_else(|| {
            let over = if kind.is_empty() { "" } else { " over " };
            let who = procs.first().map_or("?", |p| p.name.as_str());
            panic!(
                "the tracker got no `{event}` announce{over}{kind} from {who} (127.0.0.1:{port}, \
                 info-hash {}) within {timeout:?}; its announces from that port: {:?}\n{}",
                self.info_hash,
                self.announces_from(port),
                self.report(procs)
            )
        })
    }

    /// Polls the tracker's log (every 50 ms, at most `timeout`) for, per (kind, index), the first
    /// announce of this torrent from 127.0.0.1:`port` over that kind (http or udp) logged at or
    /// after that index, whatever its event. Returns each with its index and when it was first
    /// seen (None: none in time).
    fn first_after(
        &self,
        port: u16,
        wanted: &[(&str, usize)],
        timeout: Duration,
    ) -> Vec<Option<(usize, Announce, Instant)>> {
        let deadline = Instant::now() + timeout;
        let mut found: Vec<Option<(usize, Announce, Instant)>> = vec![None; wanted.len()];
        loop {
            let all = self.tracker.announces();
            let now = Instant::now();
            for (slot, &(kind, from)) in found.iter_mut().zip(wanted) {
                if slot.is_none() {
                    *slot = all
                        .iter()
                        .enumerate()
                        .skip(from)
                        .find(|(_, a)| {
                            a.port == port
                                && a.ip == "127.0.0.1"
                                && a.kind == kind
                                && a.info_hash == self.info_hash
                        })
                        .map(|(i, a)| (i, a.clone(), now));
                }
            }
            if found.iter().all(Option::is_some) || now >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The tracker's log and every given process's output, for failure messages.
    fn report(&self, procs: &[&Proc]) -> String {
        let mut msg = self.tracker.proc.report();
        for p in procs {
            msg.push_str(&p.report());
        }
        msg
    }
}

/// A file's last 8000 bytes, for failure messages.
fn file_tail(path: &Path) -> String {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
    format!(
        "---- {}, last 8000 bytes:\n{}\n",
        path.display(),
        tail(&text, 8000)
    )
}

/// The lines of transmission-cli's own log (TRANSMISSION_DEEP_LOG) about trackers and peer
/// connections (at most 100), and its last 4000 bytes, for failure messages.
fn transmission_log_summary(path: &Path) -> String {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
    let keys = [
        "tracker",
        "Announcing",
        "handshake",
        "Interested",
        "Choke",
        "Unchoke",
        "HAVE_ALL",
        "rror",
        "Seed ratio",
        "State changed",
    ];
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| keys.iter().any(|k| l.contains(k)))
        .filter(|l| !l.contains("refcount") && !l.contains("canRead") && !l.contains("web: "))
        .take(100)
        .collect();
    format!(
        "---- {} (tracker and peer lines, first 100):\n{}\n---- its last 4000 bytes:\n{}\n",
        path.display(),
        lines.join("\n"),
        tail(&text, 4000)
    )
}

/// Waits for a client to exit (its own timeout plus 20 s at most), then checks it exited 0 and
/// wrote `root`'s files under `out/tree`. Panics with the client's output, `extra()` (its own
/// log), the tracker's log and the seed's log otherwise.
fn finish_download(
    setup: &Setup,
    client: &mut Proc,
    out: &Path,
    empty_files_required: bool,
    extra: &dyn Fn() -> String,
    seed: &TestSeed,
) {
    let status = client.wait_exit(Duration::from_secs(CLIENT_TIMEOUT_S + 20));
    let verdict = match status {
        None => Some(format!("still running after {CLIENT_TIMEOUT_S} s + 20 s")),
        Some(s) if !s.success() => Some(format!("exited with {s}")),
        Some(_) => {
            let diffs = tree_differences(&setup.root, &out.join("tree"), empty_files_required);
            (!diffs.is_empty()).then(|| format!("wrong files:\n    {}", diffs.join("\n    ")))
        }
    };
    if let Some(v) = verdict {
        let mut msg = format!(
            "{} download failed: {v}\nthe seed's announces (127.0.0.1:{}): {:?}\n",
            client.name,
            seed.port,
            setup.announces_from(seed.port)
        );
        msg.push_str(&client.report());
        msg.push_str(&extra());
        msg.push_str(&setup.report(&[&seed.proc]));
        panic!("{msg}");
    }
}

#[test]
fn http_tracker_only_download_aria2() {
    if !have("aria2c") || !have_node_tools() {
        return;
    }
    let t0 = Instant::now();
    let setup = Setup::new(|t| vec![t.announce_url()]);
    let mut seed = setup.start_seed();
    // aria2 is started only once the tracker knows the seed, so that its first reply lists it.
    setup.expect_announce(
        0,
        seed.port,
        ("started", "http"),
        ANNOUNCE_WITHIN,
        &[&seed.proc],
    );
    let out = setup.path().join("out_aria2");
    let log = setup.path().join("aria2.log");
    let mut aria2 = Proc::spawn(
        "aria2",
        Command::new("sh")
            .arg(tools_dir().join("aria2_get.sh"))
            .arg(&setup.torrent)
            .arg(&out)
            .arg(setup.tracker.announce_url())
            .arg(CLIENT_TIMEOUT_S.to_string())
            .arg(format!("--log={}", log.display()))
            .arg("--log-level=info"),
        setup.path(),
    );
    finish_download(&setup, &mut aria2, &out, true, &|| file_tail(&log), &seed);
    seed.stop();
    eprintln!("aria2 via HTTP tracker took {:?}", t0.elapsed());
}

#[test]
fn udp_tracker_only_download() {
    if !have_libtorrent() || !have_node_tools() {
        return;
    }
    let t0 = Instant::now();
    let setup = Setup::new(|t| vec![t.udp_url()]);
    let mut seed = setup.start_seed();
    setup.expect_announce(
        0,
        seed.port,
        ("started", "udp"),
        ANNOUNCE_WITHIN,
        &[&seed.proc],
    );
    // libtorrent gets no peer address: only the torrent's (UDP) tracker.
    let out = setup.path().join("out_libtorrent");
    let mut lt = Proc::spawn(
        "libtorrent",
        Command::new("/usr/bin/python3")
            .arg(tools_dir().join("lt_tool.py"))
            .arg("tracker_download")
            .arg(&setup.torrent)
            .arg(&out)
            .arg(CLIENT_TIMEOUT_S.to_string()),
        setup.path(),
    );
    // libtorrent 2.0 does not create zero-length files of a multi-file torrent.
    finish_download(&setup, &mut lt, &out, false, &String::new, &seed);
    // The seed was its only peer (the tracker also lists libtorrent itself, which it drops).
    let downloaded: u64 = lt
        .stdout_text()
        .lines()
        .find_map(|l| l.strip_prefix("downloaded "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no downloaded line\n{}", lt.report()));
    let total: u64 = list_files(&setup.root).iter().map(|(_, l)| l).sum();
    assert!(downloaded >= total, "downloaded {downloaded} < {total}");
    seed.stop();
    eprintln!("libtorrent via UDP tracker took {:?}", t0.elapsed());
}

#[test]
fn transmission_downloads_because_uringseed_connects_out() {
    if !have("transmission-cli") || !have("/usr/bin/python3") || !have_node_tools() {
        return;
    }
    let t0 = Instant::now();
    let setup = Setup::new(|t| vec![t.announce_url()]);
    let out = setup.path().join("out_transmission");
    let tm_log = setup.path().join("transmission-cli.log");
    // Transmission first: once it has announced, the seed's very first reply lists it (the other
    // way round the seed would learn of it only at its next re-announce, 10 s later).
    let mut tm = Proc::spawn(
        "transmission",
        Command::new("/usr/bin/python3")
            .arg(tools_dir().join("transmission_get.py"))
            .arg(&setup.torrent)
            .arg(&out)
            .arg(setup.path().join("transmission-config"))
            .arg("0")
            .arg(CLIENT_TIMEOUT_S.to_string())
            // Debug level, and the peer-level log: its announces, the peers the tracker gave it,
            // incoming handshakes, interest (shown on failure).
            .env("TRANSMISSION_MESSAGE_LEVEL", "3")
            .env("TRANSMISSION_DEEP_LOG", &tm_log),
        setup.path(),
    );
    let tm_port: u16 = tm
        .wait_line("port ", Duration::from_secs(15))
        .trim()
        .parse()
        .unwrap();
    setup.expect_announce(
        0,
        tm_port,
        ("started", "http"),
        Duration::from_secs(15),
        &[&tm],
    );
    let t_seed = Instant::now();
    let mut seed = setup.start_seed();
    setup.expect_announce(
        0,
        seed.port,
        ("started", "http"),
        ANNOUNCE_WITHIN,
        &[&seed.proc, &tm],
    );
    // Transmission never dials 127.0.0.1 itself: the seed must connect out to 127.0.0.1:tm_port.
    // It sends `interested` only on its 10 s rechoke timer, so the download starts up to ~10 s
    // after the seed connects.
    finish_download(
        &setup,
        &mut tm,
        &out,
        false,
        &|| transmission_log_summary(&tm_log),
        &seed,
    );
    seed.stop();
    eprintln!(
        "transmission download took {:?} ({:?} after the seed started)",
        t0.elapsed(),
        t_seed.elapsed()
    );
}

/// With `--encryption required` the seed opens its outgoing connections with an MSE handshake
/// and an RC4 stream. libtorrent, set to require encryption and finding peers only through the
/// tracker, cannot reach the seed itself (the seed listens on 127.0.0.3 while the tracker hands
/// out its announce's source address, 127.0.0.1), so the download can only come over a
/// connection the seed made, which the seed's log must show as outgoing `mse_rc4`.
#[test]
fn required_encryption_connects_out_to_libtorrent_over_mse() {
    if !have_libtorrent() || !have_node_tools() || reference_seed() {
        return;
    }
    let setup = Setup::new(|t| vec![t.announce_url()]);
    let out = setup.path().join("out_libtorrent");
    let mut lt = Proc::spawn(
        "libtorrent-rc4",
        Command::new("/usr/bin/python3")
            .arg(tools_dir().join("lt_tool.py"))
            .arg("tracker_download")
            .arg(&setup.torrent)
            .arg(&out)
            .arg(CLIENT_TIMEOUT_S.to_string())
            .env("LT_ENCRYPTION", "rc4"),
        setup.path(),
    );
    let lt_port: u16 = lt
        .wait_line("port ", Duration::from_secs(15))
        .trim()
        .parse()
        .unwrap();
    // libtorrent first, so the seed's first tracker reply already names it.
    setup.expect_announce(
        0,
        lt_port,
        ("started", "http"),
        Duration::from_secs(15),
        &[&lt],
    );
    // On the tracker's 10 s interval, so that a first connection libtorrent turns away (it
    // happened once in CI, 0.2 s after libtorrent had dialled itself) is tried again.
    let config = floor_config(setup.path());
    let Seed { proc, port, .. } = Seed::start_with(
        &setup.torrent,
        &setup.path().join("data"),
        setup.path(),
        Duration::from_secs(30),
        "127.0.0.3",
        &[
            "--encryption",
            "required",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let mut seed = TestSeed { proc, port };
    finish_download(&setup, &mut lt, &out, false, &String::new, &seed);
    let log = seed.proc.stderr_text();
    let connected: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("peer connected"))
        .collect();
    assert!(
        !connected.is_empty()
            && connected
                .iter()
                .all(|l| l.contains("mse_rc4") && l.contains("outgoing=true")),
        "the seed's connections: {connected:#?}\n{}",
        seed.proc.report()
    );
    seed.stop();
}

#[test]
fn stopped_reaches_tracker_on_shutdown() {
    if !have_node_tools() {
        return;
    }
    let setup = Setup::new(|t| vec![t.announce_url()]);
    let mut seed = setup.start_seed();
    let (at, _) = setup.expect_announce(
        0,
        seed.port,
        ("started", "http"),
        ANNOUNCE_WITHIN,
        &[&seed.proc],
    );
    seed.stop();
    setup.expect_announce(
        at + 1,
        seed.port,
        ("stopped", "http"),
        STOPPED_WITHIN,
        &[&seed.proc],
    );
}

#[test]
fn every_tier_gets_started_reannounces_and_stopped() {
    if !have_node_tools() {
        return;
    }
    // Two tiers (BEP 12): the HTTP tracker, then the UDP one. Both must hear from the seed.
    let setup = Setup::new(|t| vec![t.announce_url(), t.udp_url()]);
    let mut seed = setup.start_seed();
    let port = seed.port;
    let kinds = ["http", "udp"];
    // Both are watched at once, so each announce's time is when it reached the tracker (±50 ms).
    let started = setup.first_after(port, &[(kinds[0], 0), (kinds[1], 0)], ANNOUNCE_WITHIN);
    let mut after = Vec::new();
    for (kind, found) in kinds.iter().zip(&started) {
        match found {
            Some((at, a, seen)) if a.event == "started" => after.push((*kind, at + 1, *seen)),
            other => panic!(
                "the seed's first announce over {kind} within {ANNOUNCE_WITHIN:?} of ready: \
                 {other:?}, want `started` (every tier)\nannounces from 127.0.0.1:{port}: {:?}\n{}",
                setup.announces_from(port),
                setup.report(&[&seed.proc])
            ),
        }
    }
    // The next announce over each must come on the tracker's interval: not before ~10 s (allow
    // 1.5 s for timers and polling), at most 6 s late, and be a regular one (no event).
    // (libtorrent, the reference seed, never re-announces sooner than 30 s when a reply has no
    // `min interval`, as tracker.js's have not.)
    let late = if reference_seed() {
        Duration::from_secs(36)
    } else {
        TRACKER_INTERVAL + Duration::from_secs(6)
    };
    let lookup: Vec<(&str, usize)> = after.iter().map(|&(k, at, _)| (k, at)).collect();
    let next = setup.first_after(port, &lookup, late + Duration::from_secs(1));
    for ((kind, _, started_seen), found) in after.iter().zip(&next) {
        let problem = match found {
            None => Some(format!(
                "no re-announce over {kind} within {late:?} of started"
            )),
            Some((_, a, _)) if a.event != "update" => Some(format!(
                "the announce over {kind} after started is {a:?}, want a regular re-announce"
            )),
            Some((_, a, seen)) => {
                let gap = seen.duration_since(*started_seen);
                (gap < TRACKER_INTERVAL - Duration::from_millis(1500) || gap > late).then(|| {
                    format!(
                        "re-announce over {kind} {gap:?} after started ({a:?}); the tracker's \
                         interval is {TRACKER_INTERVAL:?}"
                    )
                })
            }
        };
        if let Some(p) = problem {
            panic!(
                "{p}\nannounces from 127.0.0.1:{port}: {:?}\n{}",
                setup.announces_from(port),
                setup.report(&[&seed.proc])
            );
        }
    }
    let skip = setup.tracker.announces().len();
    seed.stop();
    let t_exit = Instant::now();
    for kind in kinds {
        setup.expect_announce(
            skip,
            port,
            ("stopped", kind),
            STOPPED_WITHIN.saturating_sub(t_exit.elapsed()),
            &[&seed.proc],
        );
    }
}
