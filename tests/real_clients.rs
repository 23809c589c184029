//! Real BitTorrent clients download from `uringseed serve` on loopback: libtorrent (dialing it
//! directly), aria2 (finding it through a real HTTP tracker), webtorrent@1 (given its address),
//! and all three at once from one server. Every file must arrive byte for byte.
//!
//! Tools: Debian python3-libtorrent and aria2, node with tests/tools/node_modules (see
//! tests/tools/README.md). Missing tools skip a test on a developer machine and fail it under CI.
//! Each test has its own temp dir and ports (port 0, parsed from what the processes print), and
//! every process it starts is stopped by PID when the test ends, even when it panics.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a client may take to download (its own timeout); the harness waits a bit longer.
const CLIENT_TIMEOUT_S: u64 = 60;

/// A multi-file tree: `common::write_tree` (files straddling pieces, a short last piece, a
/// zero-length file) plus, with `big`, a 20 MB file so that clients pipeline many requests and
/// the server's reads span many blocks.
fn data_tree(dir: &Path, big: bool) -> PathBuf {
    let data = dir.join("data");
    let root = write_tree(&data, "tree");
    if big {
        std::fs::create_dir_all(root.join("big")).unwrap();
        std::fs::write(root.join("big/twenty.bin"), pseudo_random(20_000_003, 77)).unwrap();
    }
    root
}

fn total_len(root: &Path) -> u64 {
    list_files(root).iter().map(|(_, l)| l).sum()
}

/// One client download running as a child process.
struct Download {
    proc: Proc,
    /// Where the torrent's `tree/` lands.
    out: PathBuf,
    empty_files_required: bool,
    /// A log the client writes itself (aria2), shown on failure.
    extra_log: Option<PathBuf>,
}

fn libtorrent(dir: &Path, torrent: &Path, seed: &Seed) -> Download {
    libtorrent_encrypted(dir, torrent, seed, None)
}

/// libtorrent, optionally requiring Message Stream Encryption with the payload level `enc`
/// (`rc4`, `plaintext` or `both`: lt_tool.py's LT_ENCRYPTION).
fn libtorrent_encrypted(dir: &Path, torrent: &Path, seed: &Seed, enc: Option<&str>) -> Download {
    let name = enc.map_or("libtorrent".to_string(), |e| format!("libtorrent-{e}"));
    let out = dir.join(format!("out_{name}"));
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(tools_dir().join("lt_tool.py"))
        .arg("download")
        .arg(torrent)
        .arg(&out)
        .arg(seed.addr())
        .arg(CLIENT_TIMEOUT_S.to_string());
    match enc {
        Some(e) => cmd.env("LT_ENCRYPTION", e),
        None => cmd.env_remove("LT_ENCRYPTION"),
    };
    let proc = Proc::spawn(&name, &mut cmd, dir);
    Download {
        proc,
        out,
        // libtorrent 2.0 does not create zero-length files of a multi-file torrent.
        empty_files_required: false,
        extra_log: None,
    }
}

fn webtorrent(dir: &Path, torrent: &Path, seed: &Seed) -> Download {
    let out = dir.join("out_webtorrent");
    let proc = Proc::spawn(
        "webtorrent",
        Command::new("node")
            .arg(tools_dir().join("webtorrent_get.js"))
            .arg(torrent)
            .arg(&out)
            .arg(seed.addr())
            .arg(CLIENT_TIMEOUT_S.to_string()),
        dir,
    );
    Download {
        proc,
        out,
        empty_files_required: true,
        extra_log: None,
    }
}

/// aria2 finds the seed only through the tracker: the seed must have been announced.
fn aria2(dir: &Path, torrent: &Path, tracker: &Tracker) -> Download {
    let out = dir.join("out_aria2");
    let log = dir.join("aria2.log");
    let proc = Proc::spawn(
        "aria2",
        Command::new("sh")
            .arg(tools_dir().join("aria2_get.sh"))
            .arg(torrent)
            .arg(&out)
            .arg(tracker.announce_url())
            .arg(CLIENT_TIMEOUT_S.to_string())
            .arg(format!("--log={}", log.display()))
            .arg("--log-level=info"),
        dir,
    );
    Download {
        proc,
        out,
        empty_files_required: true,
        extra_log: Some(log),
    }
}

/// The small multi-file tree under `dir/data`, its torrent (32 KiB pieces) and uringseed
/// seeding it.
fn seed_small_tree(dir: &Path) -> (PathBuf, PathBuf, Seed) {
    let root = data_tree(dir, false);
    let torrent = dir.join("tree.torrent");
    make_torrent(&root, &torrent, &["--piece-length", "32768"]);
    let seed = Seed::start(&torrent, &dir.join("data"), dir, Duration::from_secs(30));
    (root, torrent, seed)
}

/// Waits for every download to exit, then checks each one exited 0 and wrote `root`'s files.
/// Panics with every client's output and uringseed's debug log on any failure.
fn finish(downloads: &mut [Download], root: &Path, seed: &Seed) {
    let deadline = Instant::now() + Duration::from_secs(CLIENT_TIMEOUT_S + 20);
    let mut failures = Vec::new();
    for d in downloads.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        let status = d.proc.wait_exit(left);
        let verdict = match status {
            None => Some(format!("still running after {CLIENT_TIMEOUT_S} s + 20 s")),
            Some(s) if !s.success() => Some(format!("exited with {s}")),
            Some(_) => {
                let diffs = tree_differences(root, &d.out.join("tree"), d.empty_files_required);
                (!diffs.is_empty()).then(|| format!("wrong files:\n    {}", diffs.join("\n    ")))
            }
        };
        if let Some(v) = verdict {
            failures.push((d.proc.name.clone(), v));
        }
    }
    if failures.is_empty() {
        return;
    }
    let mut msg = String::from("downloads failed:\n");
    for (name, verdict) in &failures {
        msg.push_str(&format!("  {name}: {verdict}\n"));
    }
    for d in downloads.iter() {
        msg.push_str(&d.proc.report());
        if let Some(log) = &d.extra_log {
            let text =
                String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
            msg.push_str(&format!(
                "---- {} ({}), last 8000 bytes:\n{}\n",
                log.file_name().unwrap().to_string_lossy(),
                log.display(),
                tail(&text, 8000)
            ));
        }
    }
    msg.push_str(&seed.proc.report());
    panic!("{msg}");
}

/// The "downloaded BYTES" line lt_tool.py prints: libtorrent's payload counter.
fn libtorrent_downloaded(d: &Download) -> u64 {
    d.proc
        .stdout_text()
        .lines()
        .find_map(|l| l.strip_prefix("downloaded "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no downloaded line\n{}", d.proc.report()))
}

#[test]
fn libtorrent_downloads_multi_file_torrent() {
    if !have_libtorrent() {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (root, torrent, seed) = seed_small_tree(dir.path());
    let mut downloads = [libtorrent(dir.path(), &torrent, &seed)];
    finish(&mut downloads, &root, &seed);
    // The only peer libtorrent had was uringseed: everything came from it.
    assert!(libtorrent_downloaded(&downloads[0]) >= total_len(&root));
    seed.stop();
    eprintln!("libtorrent download test took {:?}", t0.elapsed());
}

/// Clients set to require encryption (qBittorrent's and Deluge's "require encryption") connect
/// with an MSE handshake only: one downloads with an RC4 payload, one with an obfuscated
/// handshake and plaintext payload, one offering both (given plaintext: cheaper for the seed).
#[test]
fn libtorrent_requiring_encryption_downloads_over_mse() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (root, torrent, seed) = seed_small_tree(dir.path());
    let mut downloads = ["rc4", "plaintext", "both"]
        .map(|e| libtorrent_encrypted(dir.path(), &torrent, &seed, Some(e)));
    finish(&mut downloads, &root, &seed);
    for d in &downloads {
        assert!(libtorrent_downloaded(d) >= total_len(&root));
    }
    // The seed's debug log names how each peer connected: no plain handshake among them.
    let log = seed.proc.stderr_text();
    let kinds: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("peer connected"))
        .filter_map(|l| l.split("handshake=").nth(1))
        .map(|k| k.split_whitespace().next().unwrap_or("").trim_matches('"'))
        .collect();
    eprintln!("handshakes seen by the seed: {kinds:?}");
    let count = |k: &str| kinds.iter().filter(|&&x| x == k).count();
    assert!(
        count("mse_rc4") >= 1 && count("mse_plaintext") >= 2 && count("plaintext") == 0,
        "handshakes seen: {kinds:?}\n{}",
        seed.proc.report()
    );
    seed.stop();
}

#[test]
fn aria2_downloads_via_http_tracker() {
    if !have("aria2c") || !have("/usr/bin/python3") || !have_node_tools() {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let root = data_tree(dir.path(), false);
    let tracker = Tracker::start(dir.path());
    let torrent = dir.path().join("tree.torrent");
    let hash = make_torrent(&root, &torrent, &["-t", &tracker.announce_url()]);
    let seed = Seed::start(
        &torrent,
        &dir.path().join("data"),
        dir.path(),
        Duration::from_secs(30),
    );
    // Announced by hand as well, so aria2's first tracker reply already lists the seed (its own
    // `started` may reach the tracker after aria2's first announce).
    tracker.announce_seed(&hash, seed.port);
    let mut downloads = [aria2(dir.path(), &torrent, &tracker)];
    finish(&mut downloads, &root, &seed);
    seed.stop();
    drop(tracker);
    eprintln!("aria2 download test took {:?}", t0.elapsed());
}

#[test]
fn webtorrent_downloads_multi_file_torrent() {
    if !have_node_tools() {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (root, torrent, seed) = seed_small_tree(dir.path());
    let mut downloads = [webtorrent(dir.path(), &torrent, &seed)];
    finish(&mut downloads, &root, &seed);
    seed.stop();
    eprintln!("webtorrent download test took {:?}", t0.elapsed());
}

#[test]
fn three_clients_download_at_once() {
    if !have_libtorrent() || !have("aria2c") || !have("/usr/bin/python3") || !have_node_tools() {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // 20 MB more, in 256 KiB pieces (16 blocks each): deep request pipelines from all three.
    let root = data_tree(dir.path(), true);
    let tracker = Tracker::start(dir.path());
    let torrent = dir.path().join("tree.torrent");
    // No tracker in the torrent: aria2 gets it with --bt-tracker, and libtorrent and webtorrent
    // learn of no peer but uringseed (the tracker lists only uringseed and aria2 itself).
    let hash = make_torrent(&root, &torrent, &["--piece-length", "262144"]);
    let seed = Seed::start(
        &torrent,
        &dir.path().join("data"),
        dir.path(),
        Duration::from_secs(60),
    );
    tracker.announce_seed(&hash, seed.port);
    let mut downloads = [
        libtorrent(dir.path(), &torrent, &seed),
        webtorrent(dir.path(), &torrent, &seed),
        aria2(dir.path(), &torrent, &tracker),
    ];
    finish(&mut downloads, &root, &seed);
    assert!(libtorrent_downloaded(&downloads[0]) >= total_len(&root));
    seed.stop();
    drop(tracker);
    eprintln!("three clients download test took {:?}", t0.elapsed());
}
