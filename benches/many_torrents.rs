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
//! URINGSEED_BENCH_PARALLEL sets `hashing.parallel_torrents`. Each start also times a
//! /metrics scrape with `metrics.per_torrent` on (the quickest of 3) and reports its size.
//!
//! `cargo bench --bench many_torrents` (about 3 minutes; release build, ~2 GB of disk).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{http_get, pseudo_random, uringseed, Proc};
use std::path::{Path, PathBuf};
use std::process::Command;
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
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\nstate_dir = \"{}\"\n\
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

fn made(path: &Path, piece_length: u64, out: &Path) -> usize {
    let (bytes, t) = make(&MakeOptions {
        path: path.to_path_buf(),
        piece_length: Some(piece_length),
        threads: 1,
        quiet: true,
        ..Default::default()
    })
    .unwrap();
    std::fs::write(out, bytes).unwrap();
    t.num_pieces()
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
    for i in 0..small {
        let root = data.join(format!("s{i:05}"));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        for (j, (rel, len)) in [("a.bin", 1024), ("sub/b.bin", 3072), ("c.bin", 10240)]
            .iter()
            .enumerate()
        {
            std::fs::write(root.join(rel), pseudo_random(*len, (i * 3 + j) as u64)).unwrap();
        }
        let t = tdir.join(format!("s{i:05}.torrent"));
        pieces += made(&root, 16384, &t);
        torrents.push((t, data.clone()));
    }
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
        pieces += made(&file, 1 << 20, &t);
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
