//! UDP announces per second (BEP 15) of uringseed's built-in tracker against Debian's
//! `opentracker`, one after the other in the same run, under the same load.
//!
//! Run: `cargo bench --bench tracker_server` (the binary is built in release for it;
//! URINGSEED_BENCH_BIN overrides it). Needs `opentracker` on PATH (`apt-get install
//! opentracker`); without it only uringseed is measured and the bench says so.
//!
//! The servers: `uringseed serve` of one small torrent with `--tracker-listen 127.0.0.1:P` and
//! `tracker_server.open = true` (so the bench's info-hashes are tracked), announces, DHT, API
//! and metrics off; `opentracker -i 127.0.0.1 -P P -p P -w WHITELIST` (Debian's build is
//! whitelist-only: the bench writes its info-hashes there). The load: URINGSEED_BENCH_CLIENTS
//! (default 1) threads, each with its own UDP socket: one connect, then announces with
//! URINGSEED_BENCH_WINDOW (default 64) in flight, over a pool of URINGSEED_BENCH_HASHES (default
//! 1,000) info-hashes × URINGSEED_BENCH_PEERS (default 50) peers each (distinct peer ids and
//! ports, so each torrent fills to 50 peers and every answer carries up to numwant = 50).
//! A request unanswered for 200 ms is counted lost and replaced. After a 2 s warm-up,
//! URINGSEED_BENCH_SECS (default 10) are measured: answers per second, the server's CPU seconds
//! over the window (utime + stime from /proc/PID/stat, all threads), announces per CPU-second,
//! and the ratios uringseed / opentracker. URINGSEED_BENCH_ROUNDS (default 3) rounds, the order
//! alternating; the summary gives the medians. On 2 cores the load generator competes with the
//! server for CPU; per CPU-second is the fairer figure.

mod common;

use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROTOCOL_ID: u64 = 0x0417_2710_1980;

struct Load {
    clients: usize,
    window: usize,
    hashes: usize,
    peers: usize,
    secs: u64,
}

#[derive(Default, Clone, Copy)]
struct Counters {
    answered: u64,
    errors: u64,
    lost: u64,
}

struct Row {
    server: &'static str,
    per_sec: f64,
    cpu: f64,
    errors: u64,
    lost: u64,
}

fn info_hash(i: usize) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    h[8..16].copy_from_slice(&0x7472_6163_6b65_7221u64.to_be_bytes());
    h
}

fn free_port() -> u16 {
    // A port free for both TCP and UDP.
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// A connection id from `server`, or None within 5 s.
fn connect(sock: &UdpSocket, server: SocketAddr) -> Option<u64> {
    let mut req = [0u8; 16];
    req[..8].copy_from_slice(&PROTOCOL_ID.to_be_bytes());
    req[12..16].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        let _ = sock.send_to(&req, server);
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if n >= 16 && buf[..8] == [0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78] {
                return Some(u64::from_be_bytes(buf[8..16].try_into().unwrap()));
            }
        }
    }
    None
}

fn announce(conn: u64, seq: u64, client: usize, load: &Load) -> [u8; 98] {
    let i = seq as usize;
    let (ih, peer) = (i % load.hashes, (i / load.hashes) % load.peers);
    let mut p = [0u8; 98];
    p[..8].copy_from_slice(&conn.to_be_bytes());
    p[8..12].copy_from_slice(&1u32.to_be_bytes());
    p[12..16].copy_from_slice(&(seq as u32).to_be_bytes());
    p[16..36].copy_from_slice(&info_hash(ih));
    p[36..40].copy_from_slice(b"-BN-");
    p[40..48].copy_from_slice(&(client as u64).to_be_bytes());
    p[48..56].copy_from_slice(&(peer as u64).to_be_bytes());
    // downloaded 0, left 1000 (a leecher), uploaded 0, event none, ip 0, key, numwant 50.
    p[64..72].copy_from_slice(&1000u64.to_be_bytes());
    p[88..92].copy_from_slice(&(seq as u32 ^ 0x5a5a).to_be_bytes());
    p[92..96].copy_from_slice(&50i32.to_be_bytes());
    let port = 10_000 + (client * load.peers + peer) as u16;
    p[96..98].copy_from_slice(&port.to_be_bytes());
    p
}

/// One client thread: announces with `load.window` in flight until `stop`.
fn client(
    server: SocketAddr,
    id: usize,
    load: Arc<Load>,
    stop: Arc<AtomicBool>,
    counting: Arc<AtomicBool>,
    out: Arc<[AtomicU64; 3]>,
) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let Some(conn) = connect(&sock, server) else {
        eprintln!("client {id}: no connect reply from {server}");
        return;
    };
    let mut seq: u64 = (id as u64) << 40;
    let mut buf = [0u8; 2048];
    for _ in 0..load.window {
        let _ = sock.send_to(&announce(conn, seq, id, &load), server);
        seq += 1;
    }
    while !stop.load(Ordering::Relaxed) {
        let (kind, n) = match sock.recv_from(&mut buf) {
            Ok((n, _)) if n >= 8 && buf[..4] == 1u32.to_be_bytes() => (0, 1),
            Ok((n, _)) if n >= 8 && buf[..4] == 3u32.to_be_bytes() => (1, 1),
            Ok(_) => continue,
            // Nothing for 200 ms: the window's requests are lost; send a fresh window.
            Err(_) => (2, load.window),
        };
        if counting.load(Ordering::Relaxed) {
            out[kind].fetch_add(n as u64, Ordering::Relaxed);
        }
        for _ in 0..n {
            let _ = sock.send_to(&announce(conn, seq, id, &load), server);
            seq += 1;
        }
    }
}

fn measure(name: &'static str, server: SocketAddr, pid: u32, load: &Arc<Load>) -> Row {
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let out = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let threads: Vec<_> = (0..load.clients)
        .map(|id| {
            let (l, s, c, o) = (load.clone(), stop.clone(), counting.clone(), out.clone());
            std::thread::spawn(move || client(server, id, l, s, c, o))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let cpu0 = cpu_secs(pid);
    let t0 = Instant::now();
    counting.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(load.secs));
    counting.store(false, Ordering::Relaxed);
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_secs(pid) - cpu0);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let c = Counters {
        answered: out[0].load(Ordering::Relaxed),
        errors: out[1].load(Ordering::Relaxed),
        lost: out[2].load(Ordering::Relaxed),
    };
    Row {
        server: name,
        per_sec: c.answered as f64 / secs,
        cpu,
        errors: c.errors,
        lost: c.lost,
    }
}

fn start_uringseed(bin: &str, dir: &std::path::Path, torrent: &std::path::Path) -> (Child, u16) {
    let port = free_port();
    let config = dir.join("tracker-bench.toml");
    std::fs::write(
        &config,
        format!(
            "[metrics]\nenabled = false\n[api]\nenabled = false\n[tracker]\nannounce = false\n\
             [dht]\nenabled = false\n[tracker_server]\nlisten = [\"127.0.0.1:{port}\"]\nopen = true\n"
        ),
    )
    .unwrap();
    let cmd = serve_cmd(bin, torrent, dir, &config);
    let (child, _) = spawn_server(cmd, "listening: ", None);
    (child, port)
}

fn start_opentracker(dir: &std::path::Path, load: &Load) -> Option<(Child, u16)> {
    let list: String = (0..load.hashes)
        .map(|i| {
            let h = info_hash(i);
            h.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n"
        })
        .collect();
    let wl = dir.join("whitelist");
    std::fs::write(&wl, list).unwrap();
    let port = free_port();
    let child = Command::new("opentracker")
        .args([
            "-i",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-p",
            &port.to_string(),
        ])
        .arg("-d")
        .arg(dir)
        .arg("-w")
        .arg(&wl)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Bound: its UDP socket answers a connect within 5 s.
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    connect(&probe, SocketAddr::from(([127, 0, 0, 1], port)))?;
    Some((child, port))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 0 {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

fn main() {
    let load = Arc::new(Load {
        clients: env("URINGSEED_BENCH_CLIENTS", 1).max(1),
        window: env("URINGSEED_BENCH_WINDOW", 64).max(1),
        hashes: env("URINGSEED_BENCH_HASHES", 1000).max(1),
        peers: env("URINGSEED_BENCH_PEERS", 50).clamp(1, 2000),
        secs: env("URINGSEED_BENCH_SECS", 10).max(1) as u64,
    });
    let rounds = env("URINGSEED_BENCH_ROUNDS", 3).max(1);
    let have_ot = Command::new("sh")
        .args(["-c", "command -v opentracker"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_ot {
        println!(
            "opentracker not installed (apt-get install opentracker): measuring uringseed only"
        );
    }
    let bin = std::env::var("URINGSEED_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_uringseed").into());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("small.bin");
    write_pseudo_random(&file, 1);
    let torrent = dir.path().join("small.torrent");
    make_torrent(&file, &torrent);
    println!(
        "UDP announces: {} client thread(s), {} in flight each, {} info-hashes x {} peers, {} s per row, {} rounds",
        load.clients, load.window, load.hashes, load.peers, load.secs, rounds
    );
    let mut rows: Vec<Row> = Vec::new();
    for round in 0..rounds {
        let mut order = vec!["uringseed", "opentracker"];
        if round % 2 == 1 {
            order.reverse();
        }
        for name in order {
            let started = match name {
                "uringseed" => Some(start_uringseed(&bin, dir.path(), &torrent)),
                _ if have_ot => {
                    let r = start_opentracker(dir.path(), &load);
                    if r.is_none() {
                        println!("opentracker did not answer a UDP connect within 5 s");
                    }
                    r
                }
                _ => None,
            };
            let Some((child, port)) = started else {
                continue;
            };
            let server = SocketAddr::from(([127, 0, 0, 1], port));
            let row = measure(name, server, child.id(), &load);
            stop(child);
            println!(
                "round {round} {:<12} {:>9.0} announces/s  cpu {:>5.2} s  {:>9.0} announces/cpu-s  errors {} lost {}",
                row.server,
                row.per_sec,
                row.cpu,
                row.per_sec * load.secs as f64 / row.cpu.max(0.01),
                row.errors,
                row.lost
            );
            rows.push(row);
        }
    }
    let summary = |name: &str| {
        let r: Vec<&Row> = rows.iter().filter(|r| r.server == name).collect();
        let rate = median(r.iter().map(|r| r.per_sec).collect());
        let per_cpu = median(
            r.iter()
                .map(|r| r.per_sec * load.secs as f64 / r.cpu.max(0.01))
                .collect(),
        );
        (rate, per_cpu)
    };
    let (u_rate, u_cpu) = summary("uringseed");
    println!("median uringseed   {u_rate:>9.0} announces/s  {u_cpu:>9.0} announces/cpu-s");
    if have_ot {
        let (o_rate, o_cpu) = summary("opentracker");
        println!("median opentracker {o_rate:>9.0} announces/s  {o_cpu:>9.0} announces/cpu-s");
        println!(
            "ratio uringseed/opentracker: announces/s {:.2}, announces per cpu-second {:.2}",
            u_rate / o_rate,
            u_cpu / o_cpu
        );
    }
}
