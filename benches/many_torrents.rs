//! 10,000 torrents in one configuration (issue 20, item 1): URINGSEED_BENCH_SMALL (10,000)
//! small multi-file torrents (3 files of 1, 3 and 10 KiB, one 16 KiB piece) and
//! URINGSEED_BENCH_LARGE (100) large ones of URINGSEED_BENCH_LARGE_MB (16) MiB each (1 MiB
//! pieces), all `[[torrent]]` tables of one config, no trackers. Two starts of one server with
//! the same state directory: the first hashes everything, the second (after SIGTERM) starts
//! from the fast-resume records. For each: process start to `listening:`, to the last torrent's
//! `ready:` line, the server's RSS once all are ready and its peak, and SIGTERM to exit. The
//! per-torrent overhead is (RSS with all torrents − RSS of the same server with one small
//! torrent) / torrents − their piece hashes. With libtorrent's Python bindings importable, the
//! same torrents go through `benches/lt_many.py` in the same run: added to a session, checked,
//! resume data saved, then a fresh session adds all with that resume data; the time to all
//! seeding and its RSS are printed beside ours (URINGSEED_BENCH_LT=0: not).
//! Then a SIGHUP removes URINGSEED_BENCH_SWAP (1,000) of the small torrents and adds as many
//! new ones while one leecher downloads a large torrent over and over: its throughput during
//! the reload against just before. URINGSEED_BENCH_PARALLEL sets `hashing.parallel_torrents`. Each start also times a
//! /metrics scrape with `metrics.per_torrent` on (the quickest of 3) and reports its size.
//!
//! `cargo bench --bench many_torrents` (about 3 minutes; release build, ~2 GB of disk).

#[path = "../tests/common/mod.rs"]
mod common;
/// The benchmarks' simulated leecher.
#[path = "common/mod.rs"]
mod load;

use common::{http_get, pseudo_random, uringseed, Proc};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uringseed::make::{make, MakeOptions};

fn env(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// (VmRSS, VmHWM) of `pid` in KiB.
fn rss(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}

struct Start {
    listening: Duration,
    all_ready: Option<Duration>,
    rss_kib: u64,
    peak_kib: u64,
    stop: Duration,
    /// Pieces reported good on the `ready:` lines, and pieces in all.
    good: u64,
    pieces: u64,
    /// The quickest of 3 /metrics scrapes once all are ready (per-torrent series on), and
    /// the page's size in bytes.
    scrape: Option<(Duration, usize)>,
}

/// Writes a config with `torrents` (torrent, data) pairs and state under `state`.
fn config(dir: &Path, name: &str, torrents: &[(PathBuf, PathBuf)]) -> PathBuf {
    let mut c = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\nupload_slots = 0\nstate_dir = \"{}\"\n\
         [tracker]\nannounce = false\n[metrics]\nlisten = \"127.0.0.1:0\"\nper_torrent = true\n",
        dir.join("state").display()
    );
    if let Ok(n) = std::env::var("URINGSEED_BENCH_PARALLEL") {
        c.push_str(&format!("[hashing]\nparallel_torrents = {n}\n"));
    }
    for (t, d) in torrents {
        c.push_str(&format!(
            "[[torrent]]\ntorrent = \"{}\"\ndata = \"{}\"\n",
            t.display(),
            d.display()
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, c).unwrap();
    path
}

/// One start of `config` until every one of `n` torrents is ready (bounded by 600 s).
fn start(dir: &Path, config: &Path, n: usize) -> Start {
    let t0 = Instant::now();
    let mut p = Proc::spawn(
        "uringseed",
        uringseed()
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--log-level", "warn"]),
        dir,
    );
    p.wait_line("listening: ", Duration::from_secs(600));
    let listening = t0.elapsed();
    let metrics = p
        .wait_line("metrics: ", Duration::from_secs(60))
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    let mut all_ready = None;
    while t0.elapsed() < Duration::from_secs(600) {
        if p.stdout_text().matches("\nready: ").count() >= n {
            all_ready = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (rss_kib, peak_kib) = rss(p.pid());
    let scrape = (0..3)
        .filter_map(|_| {
            let t = Instant::now();
            let (code, body) = http_get(&metrics, "/metrics", Duration::from_secs(30)).ok()?;
            (code == 200 && body.contains("uringseed_torrent_peers"))
                .then(|| (t.elapsed(), body.len()))
        })
        .min();
    let (mut good, mut pieces) = (0, 0);
    for l in p.stdout_text().lines().filter(|l| l.starts_with("ready: ")) {
        // "ready: HEX NAME (G of P pieces good)"
        let tail = l.rsplit_once('(').map_or("", |(_, t)| t);
        let mut w = tail.split_whitespace();
        good += w.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        pieces += w.nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    let t1 = Instant::now();
    let status = p.terminate(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}\n{}",
        p.report()
    );
    Start {
        listening,
        all_ready,
        rss_kib,
        peak_kib,
        stop: t1.elapsed(),
        good,
        pieces,
        scrape,
    }
}

fn show(label: &str, s: &Start) {
    println!(
        "{label}: listening {:.2?}, all ready {}, RSS {} KiB (peak {} KiB), SIGTERM to exit \
         {:.2?}; {} of {} pieces good; /metrics (per torrent) {}",
        s.listening,
        s.all_ready
            .map_or("NOT within 600 s".to_string(), |d| format!("{d:.2?}")),
        s.rss_kib,
        s.peak_kib,
        s.stop,
        s.good,
        s.pieces,
        s.scrape.map_or("failed".to_string(), |(t, n)| format!(
            "in {t:.2?}, {} KiB",
            n / 1024
        ))
    );
}

/// A SIGHUP that removes `swap` torrents and adds `swap` others (the config rewritten from
/// `before` to `after`) while one leecher downloads `large` over and over: the leecher's MB/s
/// over the 3 s before the SIGHUP and from the SIGHUP until every added torrent is ready (at
/// least 1 s), and how long that took.
fn reload(
    dir: &Path,
    before: &[(PathBuf, PathBuf)],
    after: &[(PathBuf, PathBuf)],
    large: &uringseed::metainfo::Torrent,
) -> Option<(f64, f64, Duration)> {
    let config_path = config(dir, "reload.toml", before);
    let mut p = Proc::spawn(
        "uringseed",
        uringseed()
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .args(["--log-level", "warn"]),
        dir,
    );
    let addr: std::net::SocketAddr = p
        .wait_line("listening: ", Duration::from_secs(600))
        .trim()
        .parse()
        .ok()?;
    let ready = |p: &Proc| p.stdout_text().matches("\nready: ").count();
    let t0 = Instant::now();
    while ready(&p) < before.len() && t0.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let leecher = {
        let (stop, done) = (stop.clone(), done.clone());
        let (ih, pl, total) = (large.info_hash.0, large.piece_length, large.total_length);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                load::leech(addr, ih, pl, total, 64);
                done.lock().unwrap().push((Instant::now(), total));
            }
        })
    };
    let rate = |from: Instant, to: Instant| {
        let bytes: u64 = done
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t > from && *t <= to)
            .map(|(_, b)| b)
            .sum();
        bytes as f64 / 1e6 / (to - from).as_secs_f64()
    };
    std::thread::sleep(Duration::from_secs(1));
    let warm = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let hup = Instant::now();
    let seen = ready(&p);
    config(dir, "reload.toml", after);
    p.signal("HUP");
    let added = after.iter().filter(|t| !before.contains(t)).count();
    while ready(&p) < seen + added && hup.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = hup.elapsed();
    std::thread::sleep(Duration::from_secs(1).saturating_sub(took));
    let end = Instant::now();
    stop.store(true, Ordering::Relaxed);
    leecher.join().ok()?;
    let all_added = ready(&p) >= seen + added;
    p.terminate(Duration::from_secs(60));
    all_added.then(|| (rate(warm, hup), rate(hup, end), took))
}

fn made(path: &Path, piece_length: u64, out: &Path) -> uringseed::metainfo::Torrent {
    let (bytes, t) = make(&MakeOptions {
        path: path.to_path_buf(),
        piece_length: Some(piece_length),
        threads: 1,
        quiet: true,
        ..Default::default()
    })
    .unwrap();
    std::fs::write(out, bytes).unwrap();
    t
}

fn main() {
    let (small, large, large_mb) = (
        env("URINGSEED_BENCH_SMALL", 10_000),
        env("URINGSEED_BENCH_LARGE", 100),
        env("URINGSEED_BENCH_LARGE_MB", 16),
    );
    let dir = tempfile::tempdir().unwrap();
    let (data, tdir) = (dir.path().join("data"), dir.path().join("torrents"));
    std::fs::create_dir_all(&tdir).unwrap();
    let t_make = Instant::now();
    let mut torrents = Vec::new();
    let mut pieces = 0;
    let swap = env("URINGSEED_BENCH_SWAP", 1000).min(small);
    let mut extra = Vec::new();
    for i in 0..small + swap {
        let root = data.join(format!("s{i:05}"));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        for (j, (rel, len)) in [("a.bin", 1024), ("sub/b.bin", 3072), ("c.bin", 10240)]
            .iter()
            .enumerate()
        {
            std::fs::write(root.join(rel), pseudo_random(*len, (i * 3 + j) as u64)).unwrap();
        }
        let t = tdir.join(format!("s{i:05}.torrent"));
        let n = made(&root, 16384, &t).num_pieces();
        if i < small {
            pieces += n;
            torrents.push((t, data.clone()));
        } else {
            extra.push((t, data.clone()));
        }
    }
    let mut first_large = None;
    let block = pseudo_random(1 << 20, 77);
    for i in 0..large {
        let file = data.join(format!("large{i:03}.bin"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        for k in 0..large_mb {
            use std::io::Write;
            f.write_all(&(i * 100_000 + k).to_le_bytes()).unwrap();
            f.write_all(&block[8..]).unwrap();
        }
        drop(f);
        let t = tdir.join(format!("large{i:03}.torrent"));
        let made = made(&file, 1 << 20, &t);
        pieces += made.num_pieces();
        first_large.get_or_insert(made);
        torrents.push((t, data.clone()));
    }
    let n = torrents.len();
    println!(
        "{small} small + {large} x {large_mb} MiB torrents ({pieces} pieces) made in {:.1?}",
        t_make.elapsed()
    );

    // The same server with one small torrent: its RSS is the base the overhead is counted from.
    let one = config(dir.path(), "one.toml", &torrents[..1]);
    let base = start(dir.path(), &one, 1);
    show("1 torrent", &base);
    let all = config(dir.path(), "all.toml", &torrents);
    let first = start(dir.path(), &all, n);
    show(&format!("{n} torrents, first start (hashing)"), &first);
    let again = start(dir.path(), &all, n);
    show(&format!("{n} torrents, restart (fast resume)"), &again);
    let per = |s: &Start| {
        (s.rss_kib.saturating_sub(base.rss_kib) as f64 * 1024.0 - pieces as f64 * 20.0) / n as f64
    };
    println!(
        "per-torrent overhead beyond its piece hashes: first start {:.0} B, restart {:.0} B",
        per(&first),
        per(&again)
    );

    if let Some(large) = first_large.as_ref().filter(|_| swap > 0) {
        let after: Vec<_> = torrents[swap..].iter().chain(&extra).cloned().collect();
        match reload(dir.path(), &torrents, &after, large) {
            Some((before, during, took)) => println!(
                "SIGHUP removing {swap} and adding {swap} torrents: all added ready {took:.2?} \
                 after it; one leecher of {} MiB downloads over and over: {before:.0} MB/s \
                 before, {during:.0} MB/s from the SIGHUP until then ({:.2}x)",
                large.total_length >> 20,
                during / before
            ),
            None => {
                eprintln!("FAILED: the reload did not bring every added torrent up");
                std::process::exit(1);
            }
        }
    }

    let lt_ok = std::env::var("URINGSEED_BENCH_LT").as_deref() != Ok("0")
        && Command::new("/usr/bin/python3")
            .args(["-c", "import libtorrent"])
            .output()
            .is_ok_and(|o| o.status.success());
    if lt_ok {
        let list = dir.path().join("torrents.txt");
        let names: Vec<String> = torrents
            .iter()
            .map(|(t, _)| t.display().to_string())
            .collect();
        std::fs::write(&list, names.join("\n")).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/lt_many.py");
        let out = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(&list)
            .arg(&data)
            .arg(dir.path().join("lt"))
            .output()
            .unwrap();
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            eprintln!("lt_many.py: {}", String::from_utf8_lossy(&out.stderr));
        }
    } else {
        println!("libtorrent (python3-libtorrent) not importable: no comparison");
    }
    if first.all_ready.is_none() || again.all_ready.is_none() || again.good != pieces as u64 {
        eprintln!("FAILED: not every torrent came up with every piece");
        std::process::exit(1);
    }
}
