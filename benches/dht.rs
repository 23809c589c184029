//! The DHT node under load, in one run: how many queries it answers per second of its CPU, and
//! what a query flood costs a leecher.
//!
//! Run: `cargo build --release && URINGSEED_BENCH_BIN=target/release/uringseed cargo bench --bench dht`.
//! Writes a file (URINGSEED_BENCH_MB, default 256), makes a torrent of it and starts
//! `uringseed serve` with its DHT on a loopback UDP port and no bootstrap node (nothing leaves
//! the machine). Then, alternating for URINGSEED_BENCH_ROUNDS (default 3) rounds:
//! - one simulated leecher (as in `benches/serve.rs`: 128 requests in flight) downloads the
//!   whole torrent alone, and again while a flood of `get_peers` and `ping` queries runs at
//!   URINGSEED_BENCH_QPS (default 10,000) per second from 200 loopback addresses (127.0.1.x,
//!   127.0.2.x), each under the node's per-address limit or over it as the rate says;
//! - then a flood at full speed for 3 s from the same addresses, counting the replies: the
//!   queries answered per second of the server's CPU time (per core).
//!
//! Reports the leecher's MB/s alone and under the flood (medians, and their ratio), the replies
//! received, and the server's CPU seconds.

mod common;

use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A KRPC query from node `id`: `get_peers` for `ih` or a `ping`.
fn query(id: [u8; 20], tid: u16, ih: Option<[u8; 20]>) -> Vec<u8> {
    let mut q = b"d1:ad2:id20:".to_vec();
    q.extend_from_slice(&id);
    if let Some(ih) = ih {
        q.extend_from_slice(b"9:info_hash20:");
        q.extend_from_slice(&ih);
        q.extend_from_slice(b"e1:q9:get_peers");
    } else {
        q.extend_from_slice(b"e1:q4:ping");
    }
    q.extend_from_slice(b"1:t2:");
    q.extend_from_slice(&tid.to_be_bytes());
    q.extend_from_slice(b"1:y1:qe");
    q
}

/// Floods `to` from 200 loopback addresses at `qps` queries per second in all (0 = as fast as
/// possible) until `stop`; returns (queries sent, replies received).
fn flood(to: SocketAddr, qps: usize, stop: Arc<AtomicBool>) -> (u64, u64) {
    let sent = Arc::new(AtomicU64::new(0));
    let got = Arc::new(AtomicU64::new(0));
    let threads = 4;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, sent, got) = (stop.clone(), sent.clone(), got.clone());
            std::thread::spawn(move || {
                let socks: Vec<UdpSocket> = (0..50)
                    .map(|i| {
                        let n = t * 50 + i;
                        let ip = format!("127.0.{}.{}", 1 + n / 200, 1 + n % 200);
                        let s = UdpSocket::bind((ip.as_str(), 0)).unwrap();
                        s.set_nonblocking(true).unwrap();
                        s
                    })
                    .collect();
                let mut buf = [0u8; 2048];
                let per_thread = qps / threads;
                let start = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let s = &socks[(n as usize) % socks.len()];
                    let mut id = [0u8; 20];
                    id[..8].copy_from_slice(&(n ^ (t as u64) << 56).to_be_bytes());
                    let ih = (n % 2 == 0).then_some([n as u8; 20]);
                    if s.send_to(&query(id, n as u16, ih), to).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                    for s in &socks {
                        while s.recv(&mut buf).is_ok() {
                            got.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if per_thread > 0 {
                        let due = start + Duration::from_secs_f64(n as f64 / per_thread as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                }
                // Late replies.
                std::thread::sleep(Duration::from_millis(200));
                for s in &socks {
                    while s.recv(&mut buf).is_ok() {
                        got.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    (sent.load(Ordering::Relaxed), got.load(Ordering::Relaxed))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Downloads the whole torrent over and over with one simulated leecher for `secs` seconds;
/// returns MB/s.
fn leech_for(addr: SocketAddr, t: &uringseed::metainfo::Torrent, secs: f64) -> f64 {
    let start = Instant::now();
    let mut bytes = 0;
    while start.elapsed().as_secs_f64() < secs {
        bytes += leechers(1, addr, t, 128).0;
    }
    bytes as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// A server for `torrent` whose DHT is on `udp` (no bootstrap node) answering at most
/// `per_ip` queries per second per address.
fn server(
    bin: &str,
    dir: &std::path::Path,
    torrent: &std::path::Path,
    udp: SocketAddr,
    per_ip: u32,
) -> (std::process::Child, SocketAddr) {
    let config = dir.join(format!("c{per_ip}.toml"));
    std::fs::write(
        &config,
        format!(
            "[dht]\nlisten = \"{udp}\"\nbootstrap = []\nmax_queries_per_ip_per_sec = {per_ip}\n[metrics]\nenabled = false\n[api]\nenabled = false\n[server]\nstate_dir = \"{}\"\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--upload-slots",
        "0",
        "--log-level",
        "warn",
    ])
    .arg("--config")
    .arg(&config)
    .arg("--torrent")
    .arg(torrent)
    .arg("--data")
    .arg(dir);
    spawn_server(cmd, "listening: ", Some("ready: "))
}

fn main() {
    let mb = env("URINGSEED_BENCH_MB", 256);
    let rounds = env("URINGSEED_BENCH_ROUNDS", 3);
    let qps = env("URINGSEED_BENCH_QPS", 10_000);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dht-bench.bin");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&file).unwrap();
        let chunk: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        for _ in 0..mb {
            f.write_all(&chunk).unwrap();
        }
    }
    let tpath = dir.path().join("dht-bench.torrent");
    let torrent = make_torrent(&file, &tpath);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let bin = std::env::var("URINGSEED_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_uringseed").into());
    println!("dht bench: {mb} MiB torrent, 1 leecher for 3 s per row, flood {qps} queries/s from 200 loopback addresses, {rounds} rounds; build {bin}");
    // The default per-address limit: what a flood costs a leecher.
    let (child, addr) = server(&bin, dir.path(), &tpath, udp, 20);
    let (mut alone, mut flooded) = (Vec::new(), Vec::new());
    let (mut flood_sent, mut flood_got) = (0, 0);
    for _ in 0..rounds {
        alone.push(leech_for(addr, &torrent, 3.0));
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let f = std::thread::spawn(move || flood(udp, qps, s2));
        std::thread::sleep(Duration::from_millis(200));
        flooded.push(leech_for(addr, &torrent, 3.0));
        stop.store(true, Ordering::Relaxed);
        let (s, g) = f.join().unwrap();
        flood_sent += s;
        flood_got += g;
    }
    stop(child);
    let (a, b) = (median(alone.clone()), median(flooded.clone()));
    println!("leecher alone        MB/s {a:8.1}  (rounds {alone:.1?})");
    println!("leecher under flood  MB/s {b:8.1}  (rounds {flooded:.1?})");
    println!("under flood / alone       {:8.3}", b / a);
    println!("flood during the flooded rows: {flood_sent} queries sent, {flood_got} datagrams back (default limit 20/s per address)");
    // No per-address limit: how many queries the node answers per second of its CPU.
    let (child, _) = server(&bin, dir.path(), &tpath, udp, 1_000_000);
    let cpu0 = cpu_secs(child.id());
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let f = std::thread::spawn(move || flood(udp, 0, s2));
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let (sent, got) = f.join().unwrap();
    let cpu = cpu_secs(child.id()) - cpu0;
    println!(
        "full-speed flood 3 s, no per-address limit: {sent} queries sent, {got} answered, server CPU {cpu:.2} s: {:.0} answers per CPU second",
        got as f64 / cpu.max(0.01)
    );
    common::stop(child);
}
