//! Magnet links (BEP 9) and peer exchange (BEP 11) with real clients on loopback.
//!
//! - `uringseed magnet` prints the info-hash, name, length and every tier's trackers,
//!   percent-encoded; libtorrent's own parser reads back the same info-hash, name and trackers;
//!   a bad torrent is refused with exit status 2.
//! - Given only a magnet link, libtorrent, aria2 and webtorrent@1 fetch the metadata from the
//!   seed and download every file byte for byte: libtorrent with the link `serve PATH -t
//!   TRACKER` printed (its only source of peers is that tracker) and, separately, with nothing
//!   but `xt=urn:btih:HEX` and the seed's address; aria2 and webtorrent with the printed link,
//!   through the tracker.
//! - An info dictionary larger than 1 MiB (16,000 small files) fetched by libtorrent from a
//!   magnet link.
//! - Peer exchange: two libtorrent leechers that know only the seed's address learn each other's
//!   from it (one lists the other with source `pex`) within 90 s and trade pieces (the seed sends
//!   200 kB/s in all, so they must); for a private torrent (BEP 27) neither ever lists a peer
//!   other than the seed, and a check with a peer that does leak a list shows that such a
//!   leecher would have listed one.
//!
//! The harness is checked against a reference seed: with `URINGSEED_TEST_SEED=libtorrent` every
//! test runs `lt_tool.py seed` (libtorrent 2.0.8, which serves ut_metadata and ut_pex) in place
//! of uringseed, and passes. Against uringseed (the default) the download and PEX tests need the
//! server's BEP 10 extension handshake with ut_metadata and ut_pex.
//!
//! Tools: Debian python3-libtorrent and aria2, node with tests/tools/node_modules (see
//! tests/tools/README.md). Missing tools skip a test on a developer machine and fail it under CI.
//! Each test has its own temp dir, tracker and ports; every process it starts is stopped by PID
//! when the test ends, even when it panics.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a client may take to download (its own timeout); the harness waits a bit longer.
const CLIENT_TIMEOUT_S: u64 = 60;
/// How soon the leechers must learn each other's address from the seed.
const PEX_WITHIN: Duration = Duration::from_secs(90);
/// How soon, once they have, they must have sent each other payload.
const TRADE_WITHIN: Duration = Duration::from_secs(30);
/// The seed's whole upload in the PEX tests (bytes/s): slow enough that leechers must trade.
const SLOW_SEED: &str = "200000";
/// The leechers' loopback addresses (the seed is on 127.0.0.1).
const LEECHERS: [&str; 2] = ["127.0.0.2", "127.0.0.3"];

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn total_len(root: &Path) -> u64 {
    list_files(root).iter().map(|(_, l)| l).sum()
}

/// Waits until the tracker has the seed's `started` (so a client's first announce finds it).
fn seed_announced(tracker: &Tracker, seed: &TestSeed) {
    let found = tracker.wait_announce(0, Duration::from_secs(20), |a| {
        a.port == seed.port && a.event == "started"
    });
    assert!(
        found.is_some(),
        "the seed's `started` never reached the tracker; announces: {:?}\n{}{}",
        tracker.announces(),
        tracker.proc.report(),
        seed.proc.report()
    );
}

/// Waits for a client to exit (its own timeout plus 20 s at most); it must exit 0 with `root`'s
/// files under `got`. Panics with the output of the client and of `others` otherwise.
fn expect_download(client: &mut Proc, root: &Path, got: &Path, empty: bool, others: &[&Proc]) {
    let status = client.wait_exit(Duration::from_secs(CLIENT_TIMEOUT_S + 20));
    let verdict = match status {
        None => Some(format!("still running after {CLIENT_TIMEOUT_S} s + 20 s")),
        Some(s) if !s.success() => Some(format!("exited with {s}")),
        Some(_) => {
            let diffs = tree_differences(root, got, empty);
            (!diffs.is_empty()).then(|| format!("wrong files:\n    {}", diffs.join("\n    ")))
        }
    };
    if let Some(v) = verdict {
        let mut msg = format!("{} download failed: {v}\n{}", client.name, client.report());
        for p in others {
            msg.push_str(&p.report());
        }
        panic!("{msg}");
    }
}

#[test]
fn magnet_command_prints_every_tier_and_libtorrent_reads_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_tree(dir.path(), "tree");
    let torrent = dir.path().join("t.torrent");
    let name = "Ünï code & more=1+2";
    let urls = [
        "http://127.0.0.1:1/announce?passkey=k&x=1",
        "udp://127.0.0.1:2",
        "http://[::1]:3/announce",
    ];
    // Tiers [0, 1], [2], and [1] again: each URL once, in tier order.
    let tier0 = format!("{},{}", urls[0], urls[1]);
    let hash = make_torrent(
        &root,
        &torrent,
        &["--name", name, "-t", &tier0, "-t", urls[2], "-t", urls[1]],
    );
    let magnet = magnet_of(&torrent);
    assert_eq!(
        magnet,
        format!(
            "magnet:?xt=urn:btih:{hash}&dn=%C3%9Cn%C3%AF%20code%20%26%20more%3D1%2B2&xl=405554\
             &tr=http%3A%2F%2F127.0.0.1%3A1%2Fannounce%3Fpasskey%3Dk%26x%3D1\
             &tr=udp%3A%2F%2F127.0.0.1%3A2&tr=http%3A%2F%2F%5B%3A%3A1%5D%3A3%2Fannounce"
        )
    );
    assert_eq!(total_len(&root), 405_554);
    if !have_libtorrent() {
        return;
    }
    let read = lt_tool(&["magnet-info", &magnet]);
    let get = |k: &str| -> Vec<&str> {
        read.iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("infohash"), [hash.as_str()], "{read:?}");
    assert_eq!(get("name"), [name], "{read:?}");
    assert_eq!(get("tracker"), urls, "{read:?}");
}

#[test]
fn magnet_command_refuses_a_bad_torrent_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.torrent");
    std::fs::write(&bad, "d4:infoi1ee").unwrap();
    let missing = dir.path().join("missing.torrent");
    for (file, want) in [(&bad, "`info`"), (&missing, "cannot read")] {
        let out = uringseed().arg("magnet").arg(file).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(out.stdout.is_empty(), "{:?}", out.stdout);
        assert!(
            err.contains(path_str(file)) && err.contains(want),
            "want the file and {want:?}: {err}"
        );
    }
}

/// A tracker, `data/tree` (common::write_tree) and a seed of it started as `serve PATH -t
/// TRACKER` (or the reference seed), announced at the tracker; and the magnet link printed.
struct PathSeed {
    dir: tempfile::TempDir,
    tracker: Tracker,
    root: PathBuf,
    seed: TestSeed,
    magnet: String,
}

impl PathSeed {
    fn start() -> PathSeed {
        let dir = tempfile::tempdir().unwrap();
        let tracker = Tracker::start(dir.path());
        let root = write_tree(&dir.path().join("data"), "tree");
        let out = dir.path().join("tree.torrent");
        let (seed, magnet) = TestSeed::serve_path(&root, &tracker.announce_url(), &out, dir.path());
        // The link names the tracker: the clients' only way to the seed.
        let read = lt_tool(&["magnet-info", &magnet]);
        assert!(
            read.contains(&("tracker".into(), tracker.announce_url())),
            "{magnet}: {read:?}"
        );
        seed_announced(&tracker, &seed);
        PathSeed {
            dir,
            tracker,
            root,
            seed,
            magnet,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn finish(mut self, client: &mut Proc, out: &Path, empty_files_required: bool) {
        let others = [&self.seed.proc, &self.tracker.proc];
        expect_download(client, &self.root, out, empty_files_required, &others);
        self.seed.stop();
    }
}

#[test]
fn libtorrent_downloads_from_the_magnet_link_serve_path_printed() {
    if !have_libtorrent() || !have_node_tools() {
        return;
    }
    let t0 = Instant::now();
    let s = PathSeed::start();
    let out = s.path().join("out_libtorrent");
    let timeout = CLIENT_TIMEOUT_S.to_string();
    let mut lt = spawn_lt(
        "libtorrent-magnet",
        &["magnet-download", &s.magnet, path_str(&out), "-", &timeout],
        &[],
        s.path(),
    );
    let total = total_len(&s.root);
    // libtorrent 2.0 does not create zero-length files of a multi-file torrent.
    s.finish(&mut lt, &out.join("tree"), false);
    assert!(number(&lt, "downloaded") >= total as f64);
    eprintln!(
        "libtorrent via the printed magnet: metadata after {} s, all in {:?}",
        number(&lt, "metadata_seconds"),
        t0.elapsed()
    );
}

#[test]
fn libtorrent_downloads_from_info_hash_and_seed_address_alone() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = write_tree(&dir.path().join("data"), "tree");
    let torrent = dir.path().join("tree.torrent");
    let hash = make_torrent(&root, &torrent, &["--piece-length", "32768"]);
    let mut seed = TestSeed::start(&torrent, &dir.path().join("data"), dir.path(), &[], &[]);
    let out = dir.path().join("out_libtorrent");
    let magnet = format!("magnet:?xt=urn:btih:{hash}");
    let timeout = CLIENT_TIMEOUT_S.to_string();
    let mut lt = spawn_lt(
        "libtorrent-magnet",
        &[
            "magnet-download",
            &magnet,
            path_str(&out),
            &seed.addr(),
            &timeout,
        ],
        &[],
        dir.path(),
    );
    expect_download(&mut lt, &root, &out.join("tree"), false, &[&seed.proc]);
    assert!(number(&lt, "downloaded") >= total_len(&root) as f64);
    eprintln!(
        "libtorrent from xt + address: metadata after {} s (dialled after {} s)",
        number(&lt, "metadata_seconds"),
        number(&lt, "connect_seconds")
    );
    seed.stop();
}

#[test]
fn aria2_downloads_from_the_magnet_link_via_http_tracker() {
    if !have("aria2c") || !have_libtorrent() || !have_node_tools() {
        return;
    }
    let s = PathSeed::start();
    let out = s.path().join("out_aria2");
    let log = s.path().join("aria2.log");
    // No tracker added: the magnet's own `tr` is aria2's only source of peers.
    let mut aria2 = Proc::spawn(
        "aria2",
        Command::new("sh")
            .arg(tools_dir().join("aria2_get.sh"))
            .arg(&s.magnet)
            .arg(&out)
            .arg("-")
            .arg(CLIENT_TIMEOUT_S.to_string())
            .arg(format!("--log={}", log.display()))
            .arg("--log-level=info"),
        s.path(),
    );
    let status = aria2.wait_exit(Duration::from_secs(CLIENT_TIMEOUT_S + 20));
    if status.is_none_or(|s| !s.success()) {
        let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
        eprintln!("---- aria2.log, last 8000 bytes:\n{}", tail(&text, 8000));
    }
    s.finish(&mut aria2, &out.join("tree"), true);
}

#[test]
fn webtorrent_downloads_from_the_magnet_link() {
    if !have_libtorrent() || !have_node_tools() {
        return;
    }
    let s = PathSeed::start();
    let out = s.path().join("out_webtorrent");
    // PEER `-`: webtorrent's tracker client announces to the magnet's `tr`, its only source.
    let mut wt = Proc::spawn(
        "webtorrent",
        Command::new("node")
            .arg(tools_dir().join("webtorrent_get.js"))
            .arg(&s.magnet)
            .arg(&out)
            .arg("-")
            .arg(CLIENT_TIMEOUT_S.to_string()),
        s.path(),
    );
    s.finish(&mut wt, &out.join("tree"), true);
}

#[test]
fn libtorrent_fetches_an_info_dictionary_over_1_mib_from_a_magnet_link() {
    if !have_libtorrent() {
        return;
    }
    const FILES: usize = 16_000;
    // uringseed keeps every data file open (as its systemd unit allows, LimitNOFILE=1048576).
    if !raise_open_files(FILES as u64 + 1000) {
        assert!(
            !tools_required(),
            "the hard limit on open files is below {FILES} + 1000"
        );
        eprintln!("SKIPPED: the hard limit on open files is below {FILES} + 1000");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data/many");
    let sizes = pseudo_random(FILES, 9);
    for (i, size) in sizes.iter().enumerate() {
        let sub = root.join(format!("d{:02}", i % 40));
        std::fs::create_dir_all(&sub).unwrap();
        let file = sub.join(format!("file-{i:05}-of-many-small-ones-in-one-torrent.bin"));
        std::fs::write(file, pseudo_random(usize::from(*size) + 1, i as u64)).unwrap();
    }
    let torrent = dir.path().join("many.torrent");
    let hash = make_torrent(&root, &torrent, &["--piece-length", "16384"]);
    let bytes = std::fs::read(&torrent).unwrap();
    let doc = uringseed::bencode::decode(&bytes).unwrap();
    let info_len = doc.get("info").unwrap().span.len();
    assert!(
        info_len > 1 << 20,
        "the info dictionary is only {info_len} bytes"
    );

    let t0 = Instant::now();
    let mut seed = TestSeed::start(&torrent, &dir.path().join("data"), dir.path(), &[], &[]);
    let started = t0.elapsed();
    let out = dir.path().join("out_libtorrent");
    let magnet = format!("magnet:?xt=urn:btih:{hash}");
    let mut lt = spawn_lt(
        "libtorrent-magnet",
        &[
            "magnet-download",
            &magnet,
            path_str(&out),
            &seed.addr(),
            "120",
        ],
        &[],
        dir.path(),
    );
    // Its own timeout (120 s) is longer than expect_download's wait for most clients.
    let _ = lt.wait_exit(Duration::from_secs(130));
    expect_download(&mut lt, &root, &out.join("many"), false, &[&seed.proc]);
    assert_eq!(number(&lt, "metadata_bytes") as usize, info_len);
    assert_eq!(number(&lt, "files") as usize, FILES);
    eprintln!(
        "info dictionary of {info_len} bytes ({FILES} files): seed ready after {started:?}, \
         metadata after {} s, all files after {} s",
        number(&lt, "metadata_seconds"),
        number(&lt, "seconds")
    );
    seed.stop();
}

/// A single 24 MB file in 64 KiB pieces under `dir/data`, its torrent (`make EXTRA`) and a seed
/// of it sending 200 kB/s in all: `serve --upload-limit`, or the reference seed's LT_UPLOAD_RATE.
fn slow_seed(dir: &Path, extra: &[&str]) -> (PathBuf, PathBuf, TestSeed) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("big.bin");
    std::fs::write(&file, pseudo_random(24_000_000, 5)).unwrap();
    let torrent = dir.join("big.torrent");
    let mut args = vec!["--piece-length", "65536"];
    args.extend_from_slice(extra);
    make_torrent(&file, &torrent, &args);
    let limit = ["--upload-limit", SLOW_SEED];
    let seed = TestSeed::start(
        &torrent,
        &data,
        dir,
        &limit,
        &[("LT_UPLOAD_RATE", SLOW_SEED)],
    );
    (file, torrent, seed)
}

/// `lt_tool.py pex-leech` on `ip`, knowing only the seed's address.
fn pex_leecher(dir: &Path, torrent: &Path, peer: &str, ip: &str, env: &[(&str, &str)]) -> Proc {
    let out = dir.join(format!("out_{ip}"));
    let mut vars = vec![("LT_BIND_IP", ip)];
    vars.extend_from_slice(env);
    let args = ["pex-leech", path_str(torrent), path_str(&out), peer, "300"];
    spawn_lt(&format!("leecher-{ip}"), &args, &vars, dir)
}

#[test]
fn pex_leechers_learn_of_each_other_from_the_seed_and_trade() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, torrent, mut seed) = slow_seed(dir.path(), &[]);
    let t0 = Instant::now();
    let mut leechers = LEECHERS.map(|ip| pex_leecher(dir.path(), &torrent, &seed.addr(), ip, &[]));
    let report = |l: &[Proc]| reports(&[&l[0], &l[1], &seed.proc]);
    // Until one lists the other with source pex (only the seed can have told it: they share
    // no tracker, DHT or LSD) and each has payload from the other.
    let mut learned_at = None;
    loop {
        let [(a_pex, a_down), (b_pex, b_down)] = [
            heard_of(&leechers[0], LEECHERS[1]),
            heard_of(&leechers[1], LEECHERS[0]),
        ];
        if (a_pex || b_pex) && learned_at.is_none() {
            learned_at = Some(t0.elapsed());
        }
        let exited = leechers.iter_mut().any(|l| l.try_status().is_some());
        if learned_at.is_some() && a_down > 0 && b_down > 0 || exited {
            break;
        }
        let late = match learned_at {
            None => t0.elapsed() > PEX_WITHIN,
            Some(at) => t0.elapsed() > at + TRADE_WITHIN,
        };
        assert!(
            !late,
            "within {PEX_WITHIN:?}: learned of each other by PEX at {learned_at:?}, payload \
             from each other {a_down} and {b_down} bytes (want both > 0 within {TRADE_WITHIN:?} \
             of learning)\n{}",
            report(&leechers)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    if let Some(e) = stop_leechers(&mut leechers) {
        panic!("{e}\n{}", report(&leechers));
    }
    let [(a_pex, a_down), (b_pex, b_down)] = [
        heard_of(&leechers[0], LEECHERS[1]),
        heard_of(&leechers[1], LEECHERS[0]),
    ];
    assert!(
        (a_pex || b_pex) && a_down > 0 && b_down > 0,
        "at the end: {} heard of {} by PEX: {a_pex}, got {a_down} bytes from it; the other way: \
         {b_pex}, {b_down} bytes\n{}",
        LEECHERS[0],
        LEECHERS[1],
        report(&leechers)
    );
    eprintln!(
        "PEX: learned of each other after {:?}; traded {a_down} and {b_down} bytes by {:?}",
        learned_at.unwrap_or_default(),
        t0.elapsed()
    );
    seed.stop();
}

/// The peers a leecher listed that are not the seed (IP:PORT), and whether any came by PEX.
fn strangers(leecher: &Proc, seed: &TestSeed) -> (Vec<String>, bool) {
    let lines = peer_lines(&leecher.stdout_text());
    let pex = lines.values().any(PeerLine::via_pex);
    let others = lines.into_keys().filter(|k| *k != seed.addr()).collect();
    (others, pex)
}

#[test]
fn private_torrent_peers_are_never_exchanged() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, torrent, mut seed) = slow_seed(dir.path(), &["--private"]);
    let t0 = Instant::now();
    // Leechers that would act on a peer list even for a private torrent (see the next test).
    let on = [("LT_PEX_ON_PRIVATE", "1")];
    let mut leechers = LEECHERS.map(|ip| pex_leecher(dir.path(), &torrent, &seed.addr(), ip, &on));
    let report = |l: &[Proc]| reports(&[&l[0], &l[1], &seed.proc]);
    // As long as the public test gives the seed to tell them: nobody but the seed, ever.
    while t0.elapsed() < PEX_WITHIN {
        for i in 0..leechers.len() {
            let (others, pex) = strangers(&leechers[i], &seed);
            assert!(
                others.is_empty() && !pex,
                "{} of a private torrent listed peers other than the seed ({others:?}; by PEX: \
                 {pex})\n{}",
                leechers[i].name,
                report(&leechers)
            );
            let exited = leechers[i].try_status();
            assert!(exited.is_none(), "{exited:?}\n{}", report(&leechers));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    if let Some(e) = stop_leechers(&mut leechers) {
        panic!("{e}\n{}", report(&leechers));
    }
    for l in &leechers {
        let (others, pex) = strangers(l, &seed);
        assert!(others.is_empty() && !pex, "{}: {others:?}", l.name);
        // The swarm was alive all along: each got payload from the seed.
        let lines = peer_lines(&l.stdout_text());
        let from_seed = lines.get(&seed.addr()).map_or(0, |p| p.down);
        assert!(
            from_seed > 0,
            "{} got nothing from the seed\n{}",
            l.name,
            report(&leechers)
        );
    }
    seed.stop();
}

/// The check above can fail: a leecher set up as there (LT_PEX_ON_PRIVATE=1) offers ut_pex for
/// a private torrent, and lists, with source pex, the address a peer that leaks one
/// (tests/tools/pex_probe.py) sends it. Without that setting libtorrent would not offer ut_pex
/// at all, and so could never show a leak.
#[test]
fn a_private_torrent_leecher_would_list_a_leaked_peer() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = write_tree(&dir.path().join("data"), "tree");
    let torrent = dir.path().join("tree.torrent");
    let hash = make_torrent(&root, &torrent, &["--private"]);
    for (pex_on_private, want) in [("1", true), ("0", false)] {
        let mut probe = Proc::spawn(
            "pex-probe",
            Command::new("/usr/bin/python3")
                .arg(tools_dir().join("pex_probe.py"))
                .args([hash.as_str(), "127.0.0.9", "30"]),
            dir.path(),
        );
        let at = probe.wait_line("listening ", Duration::from_secs(10));
        let env = [("LT_PEX_ON_PRIVATE", pex_on_private)];
        let mut leecher = pex_leecher(dir.path(), &torrent, at.trim(), "127.0.0.4", &env);
        let m = probe.wait_line("ext_m ", Duration::from_secs(30));
        assert_eq!(
            m.contains("ut_pex="),
            want,
            "ut_pex offered\n{}",
            reports(&[&probe, &leecher])
        );
        if want {
            probe.wait_line("dialled ", Duration::from_secs(20));
            let deadline = Instant::now() + Duration::from_secs(10);
            while !heard_of(&leecher, "127.0.0.9").0 {
                assert!(
                    Instant::now() < deadline,
                    "not listed by PEX\n{}",
                    reports(&[&probe, &leecher])
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if let Some(e) = stop_leechers(std::slice::from_mut(&mut leecher)) {
            panic!("{e}\n{}", reports(&[&probe, &leecher]));
        }
        probe.terminate(Duration::from_secs(5));
    }
}
