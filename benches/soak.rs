//! Soak (issue 21, item 8): one release server for URINGSEED_SOAK_SECS (1,800) with two honest
//! leechers downloading a 64 MiB torrent over and over, while the abusers of tests/cpu_floods.rs
//! and tests/hostile.rs take turns, URINGSEED_SOAK_TURN_SECS (60) each: encrypted-handshake
//! keys, unknown-torrent churn, DHT get_peers and UDP tracker connects from 256 addresses,
//! unauthenticated HTTP requests, /metrics scrapers (each flood 1,000 units/s), 500 silent
//! connections with 200 half HTTP requests (slowloris), and 20 upload-slot squatters that
//! request and never read. Every 10 s: the server's RSS and open descriptors, and what the
//! leechers received. At the end: the slopes of RSS and descriptors (least squares, per hour,
//! over the run after its first turn), the leechers' throughput per abuser and overall
//! (mean, lowest 10 s, coefficient of variation), and the server's panics (must be none).
//!
//! `cargo bench --bench soak` (30 minutes; URINGSEED_SOAK_SECS=120 for a short run).

#[path = "../tests/common/mod.rs"]
mod common;

use common::flood::*;
use common::raw::RawPeer;
use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uringseed::metainfo::InfoHash;
use uringseed::wire::message::{Block, Message};

const SIZE: usize = 64 << 20;
const PIECE: u32 = 1 << 18;

fn env(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// A flood's name and how each of its threads makes its unit.
type Abuser = (&'static str, Box<dyn Fn(usize) -> Unit>);

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Least-squares slope of (x, y).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// An abuser that holds connections instead of flooding: returns what to drop at its end.
fn hold(kind: &str, peer: SocketAddr, http: SocketAddr, ih: InfoHash) -> Vec<TcpStream> {
    match kind {
        "slowloris" => {
            let mut v: Vec<TcpStream> = (0..500)
                .filter_map(|i| connect_from(&source(i % 16), peer).ok())
                .collect();
            v.extend((0..200).filter_map(|i| {
                let mut c = connect_from(&source(i % 16), http).ok()?;
                let _ = c.write_all(b"GET /metr");
                Some(c)
            }));
            v
        }
        // Unchoked, requesting, never reading.
        _ => (0..20)
            .filter_map(|i| {
                let c = connect_from(&source(i % 3), peer).ok()?;
                let mut p = RawPeer::from_stream(c);
                let hs = uringseed::wire::Handshake::ours(
                    ih,
                    pseudo_random(20, 900 + i as u64).try_into().unwrap(),
                );
                p.s.write_all(&hs.encode()).ok()?;
                p.send(&[Message::HaveNone, Message::Interested]);
                for k in 0..64u32 {
                    p.send(&[Message::Request(Block {
                        index: k * 16384 / PIECE,
                        begin: k * 16384 % PIECE,
                        length: 16384,
                    })]);
                }
                Some(p.s)
            })
            .collect(),
    }
}

fn main() {
    let secs = env("URINGSEED_SOAK_SECS", 1800);
    let turn = env("URINGSEED_SOAK_TURN_SECS", 60);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("soak.bin");
    std::fs::write(&file, pseudo_random(SIZE, 31)).unwrap();
    let torrent = dir.path().join("soak.torrent");
    let piece = PIECE.to_string();
    let ih = hex_hash(&make_torrent(&file, &torrent, &["--piece-length", &piece]));
    let (dht, tracker) = (free_port(), free_port());
    let config = dir.path().join("soak.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlimit_loopback = true\nmax_connections_per_ip = 100000\n\
             [dht]\nenabled = true\nlisten = \"127.0.0.1:{dht}\"\nbootstrap = []\n"
        ),
    )
    .unwrap();
    let tl = format!("127.0.0.1:{tracker}");
    let mut s = serve(
        "soak",
        &torrent,
        &data,
        &[
            "--config",
            config.to_str().unwrap(),
            "--tracker-listen",
            &tl,
            "--log-level",
            "info",
        ],
        &[],
        dir.path(),
    );
    s.ready();
    let (peer, http): (SocketAddr, SocketAddr) = (s.addr, s.metrics.parse().unwrap());
    let (dht, tracker): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{dht}").parse().unwrap(),
        tl.parse().unwrap(),
    );

    // Two honest leechers, each downloading the whole torrent again and again.
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let leechers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, received, failed) = (stop.clone(), received.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // A download that fails (the seed closed it, or a minute without a
                    // block) is counted and started again.
                    match std::panic::catch_unwind(|| download(peer, ih, SIZE, PIECE)) {
                        Ok(_) => received.fetch_add(SIZE as u64, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();

    let floods: [Abuser; 6] = [
        ("mse keys", Box::new(move |i| tcp_unit(i, peer, mse_key))),
        (
            "unknown torrent",
            Box::new(move |i| tcp_unit(i, peer, unknown_torrent)),
        ),
        (
            "dht get_peers",
            Box::new(move |i| udp_unit(i, dht, get_peers)),
        ),
        (
            "udp tracker",
            Box::new(move |i| udp_unit(i, tracker, udp_connect)),
        ),
        (
            "http unauthenticated",
            Box::new(move |i| tcp_unit(i, http, http_unauthenticated)),
        ),
        (
            "metrics scrapers",
            Box::new(move |i| {
                tcp_unit(i, http, |_| {
                    b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec()
                })
            }),
        ),
    ];
    let kinds: Vec<&str> = floods
        .iter()
        .map(|(k, _)| *k)
        .chain(["slowloris", "squatters"])
        .collect();

    println!("t_s,abuser,rss_kib,fds,leechers_mb_s");
    let t0 = Instant::now();
    let mut rows: Vec<(f64, String, f64, f64, f64)> = Vec::new();
    let mut turn_no = 0;
    while t0.elapsed().as_secs() < secs {
        let kind = kinds[turn_no % kinds.len()];
        turn_no += 1;
        let flood = floods
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, make)| Flood::start(make.as_ref()));
        let held = flood.is_none().then(|| hold(kind, peer, http, ih));
        let turn_end = Instant::now() + Duration::from_secs(turn);
        while Instant::now() < turn_end && t0.elapsed().as_secs() < secs {
            let before = received.load(Ordering::Relaxed);
            let t = Instant::now();
            std::thread::sleep(Duration::from_secs(10));
            let mbs = (received.load(Ordering::Relaxed) - before) as f64
                / t.elapsed().as_secs_f64()
                / 1e6;
            let row = (
                t0.elapsed().as_secs_f64(),
                kind.to_string(),
                rss_kib(Some(s.pid())) as f64,
                open_fds(s.pid()) as f64,
                mbs,
            );
            println!("{:.0},{},{},{},{:.0}", row.0, row.1, row.2, row.3, row.4);
            rows.push(row);
            assert!(s.alive(), "the server died\n{}", s.proc.report());
        }
        if let Some(f) = flood {
            f.stop();
        }
        drop(held);
    }
    stop.store(true, Ordering::Relaxed);
    for l in leechers {
        l.join().unwrap();
    }

    let settled: Vec<&(f64, String, f64, f64, f64)> =
        rows.iter().filter(|r| r.0 > turn as f64).collect();
    let per_hour = |f: fn(&(f64, String, f64, f64, f64)) -> f64| {
        slope(&settled.iter().map(|r| (r.0, f(r))).collect::<Vec<_>>()) * 3600.0
    };
    let stats = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt();
        let low = v.iter().copied().fold(f64::INFINITY, f64::min);
        (mean, low, sd / mean)
    };
    let all: Vec<f64> = rows.iter().map(|r| r.4).collect();
    let (mean, low, cv) = stats(&all);
    println!(
        "\nsoak {:.0} s, {} turns of {turn} s: RSS {:.0}..{:.0} KiB, slope {:+.0} KiB/h; descriptors \
         {:.0}..{:.0}, slope {:+.1}/h; leechers {mean:.0} MB/s mean, lowest 10 s {low:.0}, cv {cv:.2}",
        t0.elapsed().as_secs_f64(),
        turn_no,
        settled.iter().map(|r| r.2).fold(f64::INFINITY, f64::min),
        settled.iter().map(|r| r.2).fold(0.0, f64::max),
        per_hour(|r| r.2),
        settled.iter().map(|r| r.3).fold(f64::INFINITY, f64::min),
        settled.iter().map(|r| r.3).fold(0.0, f64::max),
        per_hour(|r| r.3),
    );
    for k in &kinds {
        let v: Vec<f64> = rows.iter().filter(|r| r.1 == *k).map(|r| r.4).collect();
        if !v.is_empty() {
            let (m, l, c) = stats(&v);
            println!(
                "  beside {k}: {m:.0} MB/s mean ({:.2} of all), lowest {l:.0}, cv {c:.2}",
                m / mean
            );
        }
    }
    let log = s.proc.stderr_text();
    let panics = log.lines().filter(|l| l.contains("panicked")).count();
    println!(
        "server panics: {panics}; log {} lines, {} bytes; failed downloads {}",
        log.lines().count(),
        log.len(),
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(panics, 0, "the server panicked");
    s.stop();
}
