//! /metrics under a flood (issue 21, item 5), against the real binary: 64 clients from four
//! addresses scraping as fast as they can and 300 slow ones from a fifth that send half a
//! request line and wait. An honest scraper from its own address still gets its page promptly,
//! and a scrape costs the server about what a /healthz answer does under the same flood: busy
//! scrapes share a page at most 1 s old instead of rendering one each, one address holds at most
//! 32 of the endpoint's 256 connections, and the endpoint's thread yields the CPU to serving. An
//! honest leecher's throughput beside each flood is printed.

mod common;

use common::flood::{connect_from, median};
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uringseed::metainfo::InfoHash;

fn download(addr: SocketAddr, ih: InfoHash) -> f64 {
    common::flood::download(addr, ih, LEN, PIECE_LEN)
}

const LEN: usize = 16 << 20;
const PIECE_LEN: u32 = 1 << 18;

fn get(
    from: &str,
    metrics: SocketAddr,
    path: &str,
    limit: Duration,
) -> Result<(u16, usize), String> {
    let mut s = connect_from(from, metrics).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    s.read_to_end(&mut text).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&text);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    Ok((code, text.len()))
}

/// What one flood measured.
struct Flood {
    /// The leecher's MB/s over its downloads during the flood.
    mbps: Vec<f64>,
    /// Answers (status 200) the flood's clients got.
    answers: usize,
    /// Server CPU seconds per answer while the flood ran without the leecher.
    cpu_per_answer: f64,
    /// The honest scrape from 127.0.0.1 (status and length) and its time.
    honest: Result<(u16, usize), String>,
    honest_s: Duration,
}

/// 300 slow clients from 127.0.0.2 holding half a request each, and 64 from 127.0.0.3-6
/// fetching `path` as fast as they can: first 2 s alone (the server's CPU per answer), then an
/// honest scrape from 127.0.0.1 and six downloads by the leecher.
fn flood(s: &Serve, ih: InfoHash, metrics: SocketAddr, path: &'static str) -> Flood {
    let stop = Arc::new(AtomicBool::new(false));
    let slow: Vec<TcpStream> = (0..300)
        .filter_map(|_| {
            let mut c = connect_from("127.0.0.2", metrics).ok()?;
            let _ = c.write_all(b"GET /metr");
            Some(c)
        })
        .collect();
    let answers = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..64)
        .map(|i| {
            let (stop, answers) = (stop.clone(), answers.clone());
            let from = format!("127.0.0.{}", 3 + i % 4);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((200, _)) = get(&from, metrics, path, Duration::from_secs(5)) {
                        answers.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (cpu0, n0) = (cpu_secs(s.pid()), answers.load(Ordering::Relaxed));
    std::thread::sleep(Duration::from_secs(2));
    let (cpu1, n1) = (cpu_secs(s.pid()), answers.load(Ordering::Relaxed));
    let t = Instant::now();
    let honest = get("127.0.0.1", metrics, "/metrics", Duration::from_secs(5));
    let honest_s = t.elapsed();
    let mbps: Vec<f64> = (0..6).map(|_| download(s.addr, ih)).collect();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    drop(slow);
    Flood {
        mbps,
        answers: answers.load(Ordering::Relaxed),
        cpu_per_answer: (cpu1 - cpu0) / (n1 - n0).max(1) as f64,
        honest,
        honest_s,
    }
}

#[test]
fn a_scrape_flood_neither_locks_out_an_honest_scraper_nor_costs_more_than_a_health_check() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("f.bin");
    std::fs::write(&file, pseudo_random(LEN, 4)).unwrap();
    let torrent = dir.path().join("t.torrent");
    let piece = PIECE_LEN.to_string();
    let ih = hex_hash(&make_torrent(&file, &torrent, &["--piece-length", &piece]));
    // Every client here is on loopback: the per-address cap counts it too.
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[server]\nlimit_loopback = true\n").unwrap();
    let mut s = serve(
        "serve",
        &torrent,
        &data,
        &["--upload-slots", "0", "--config", config.to_str().unwrap()],
        &[],
        dir.path(),
    );
    s.ready();
    let metrics: SocketAddr = s.metrics.parse().unwrap();
    download(s.addr, ih);
    let alone: Vec<f64> = (0..3).map(|_| download(s.addr, ih)).collect();

    // The same load generator against /healthz (a few bytes, nothing to render) and against
    // /metrics. The leecher's throughput beside them is printed, not judged: the 64 clients
    // share this machine's cores, and that dominates it. What is judged is the server's own CPU
    // per answer: a page per scrape rendered afresh costs many times a /healthz answer.
    let health = flood(&s, ih, metrics, "/healthz");
    let scrape = flood(&s, ih, metrics, "/metrics");
    let ratio = scrape.cpu_per_answer / health.cpu_per_answer;
    eprintln!(
        "leecher alone {alone:.0?} MB/s (median {:.0}); beside a /healthz flood {:.0?} ({} \
         answers, {:.1} us server CPU each); beside a /metrics flood {:.0?} ({} pages, {:.1} us \
         each: {ratio:.2}x); honest scrape {:?} in {:?}",
        median(&alone),
        health.mbps,
        health.answers,
        health.cpu_per_answer * 1e6,
        scrape.mbps,
        scrape.answers,
        scrape.cpu_per_answer * 1e6,
        scrape.honest,
        scrape.honest_s
    );
    let (code, len) = scrape
        .honest
        .unwrap_or_else(|e| panic!("honest scrape failed: {e}"));
    assert_eq!(code, 200);
    assert!(len > 1000);
    assert!(
        scrape.honest_s < Duration::from_secs(2),
        "honest scrape took {:?}",
        scrape.honest_s
    );
    assert!(
        ratio < 3.0,
        "a scrape costs the server {ratio:.2}x a /healthz answer"
    );
    s.stop();
}
