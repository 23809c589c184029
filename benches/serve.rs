//! End-to-end seeding throughput: uringseed against a plain `sendfile` streamer, same run.
//!
//! Run: `cargo bench --bench serve`. Writes a file (URINGSEED_BENCH_MB, default 1024), makes a
//! torrent of it, then runs the scenarios in URINGSEED_BENCH_SCENARIOS (default "warm,idle,cold").
//! `warm`, for 1 and 4 connections (URINGSEED_BENCH_CONNS="1,4"), in page cache:
//! - starts `uringseed serve` (release build) and a load generator of simulated leechers, each
//!   downloading the whole torrent with URINGSEED_BENCH_DEPTH (default 128) 16 KiB requests in
//!   flight, and reports aggregate MB/s, p50/p99 request-to-block latency and the server's CPU
//!   seconds per GiB (utime + stime from /proc/PID/stat);
//! - starts this binary as a `sendfile` server (a thread per connection streaming the file) and
//!   reads the same bytes over the same number of connections: the kernel's baseline;
//! - where Debian's libtorrent Python bindings are installed, libtorrent with its
//!   `high_performance_seed` settings serving the same torrent to the same load generator;
//! - with URINGSEED_BENCH_BASELINE_BIN=PATH, that other build of `uringseed` (e.g. the commit
//!   before a change) under the same load in the same run, as a "baseline build" row.
//!
//! Each uringseed server runs URINGSEED_BENCH_SETTLE (default 6) seconds before its warm
//! measurement, as a seed that has been up a while.
//!
//! `idle`: URINGSEED_BENCH_IDLE (default 10000) connections that handshake and stay silent;
//! reports the server's RSS per peer and an active leecher's throughput beside them vs alone.
//!
//! `cold`: the file dropped from the page cache; one leecher against `dd iflag=direct`.
//!
//! Servers are separate processes, so their CPU is measured apart from the load generator's.
//! On 2 cores the load generator competes with the server for CPU in every case.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn sendfile_server(path: &str) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{}", listener.local_addr().unwrap());
    std::io::stdout().flush().unwrap();
    for conn in listener.incoming() {
        let conn = conn.unwrap();
        let path = path.to_string();
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let f = std::fs::File::open(path).unwrap();
            let len = f.metadata().unwrap().len() as usize;
            let mut off: libc::off_t = 0;
            while (off as usize) < len {
                let n = unsafe {
                    libc::sendfile(
                        conn.as_raw_fd(),
                        f.as_raw_fd(),
                        &mut off,
                        len - off as usize,
                    )
                };
                if n <= 0 {
                    break;
                }
            }
        });
    }
}

/// Starts a server process and reads its stdout until it printed its address (a line starting
/// with `addr_prefix`; a bare port means 127.0.0.1) and, if given, a line starting with `ready`.
struct Row {
    name: String,
    mbps: f64,
    cpu_per_gib: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn measure(name: String, child: &mut Child, body: impl FnOnce() -> (u64, Vec<u32>)) -> Row {
    let cpu0 = cpu_secs(child.id());
    let t = Instant::now();
    let (bytes, mut lat) = body();
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_secs(child.id()) - cpu0;
    lat.sort_unstable();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .map_or(f64::NAN, |v| f64::from(*v) / 1000.0)
    };
    Row {
        name,
        mbps: bytes as f64 / secs / 1e6,
        cpu_per_gib: cpu / (bytes as f64 / (1u64 << 30) as f64),
        p50_ms: q(0.5),
        p99_ms: q(0.99),
    }
}

/// `n` plain streams of the whole file from the sendfile server.
fn streams(n: usize, addr: SocketAddr, total: u64) -> (u64, Vec<u32>) {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let mut buf = vec![0u8; 1 << 20];
                let mut got = 0u64;
                while got < total {
                    let k = s.read(&mut buf).unwrap();
                    assert!(k > 0);
                    got += k as u64;
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    (total * n as u64, Vec::new())
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Opens `n` connections that handshake and then stay silent; returns them (keep them open).
fn idle_peers(addr: SocketAddr, info_hash: [u8; 20], n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&handshake(info_hash)).unwrap();
        conns.push(s);
    }
    // Every handshake answered: the server holds each as a peer.
    for s in &mut conns {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut hs = [0u8; 68];
        s.read_exact(&mut hs).unwrap();
    }
    conns
}

fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit on this process.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Drops the file from the page cache, then times a direct sequential read of it.
fn disk_read_mbps(path: &std::path::Path) -> f64 {
    drop_cache(path);
    let t = Instant::now();
    let out = Command::new("dd")
        .arg(format!("if={}", path.display()))
        .args(["of=/dev/null", "bs=4M", "iflag=direct"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::metadata(path).unwrap().len() as f64 / t.elapsed().as_secs_f64() / 1e6
}

fn drop_cache(path: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    // Written back first: dirty pages cannot be dropped, and writeback still running would
    // compete with the reads being measured.
    f.sync_all().unwrap();
    // SAFETY: advisory call on an open descriptor.
    unsafe {
        libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

fn uringseed_cmd(
    torrent: &std::path::Path,
    dir: &std::path::Path,
    config: &std::path::Path,
) -> Command {
    serve_cmd(&bench_bin(), torrent, dir, config)
}

/// The build measured as "uringseed": URINGSEED_BENCH_BIN, else the one cargo built for this
/// bench. (That one is built with the dev-dependencies' features, among them tokio's
/// `test-util`, which the tests' paused clock needs; for figures of the shipped build, pass a
/// plain `cargo build --release` binary as URINGSEED_BENCH_BIN.)
fn bench_bin() -> String {
    std::env::var("URINGSEED_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_uringseed").into())
}

fn main() {
    if let Ok(path) = std::env::var("URINGSEED_SENDFILE_SERVER") {
        return sendfile_server(&path);
    }
    raise_fd_limit();
    let mb = env("URINGSEED_BENCH_MB", 1024);
    let depth = env("URINGSEED_BENCH_DEPTH", 128);
    let idle = env("URINGSEED_BENCH_IDLE", 10_000);
    // Seconds a uringseed server runs before a warm measurement: a seed that has been up a
    // while (for the first 5 s after it opened a file it probes cached pages before sending
    // them from the mapping; see src/storage/resident.rs).
    let settle = Duration::from_secs(env("URINGSEED_BENCH_SETTLE", 6) as u64);
    let scenarios =
        std::env::var("URINGSEED_BENCH_SCENARIOS").unwrap_or_else(|_| "warm,idle,cold".into());
    let conns: Vec<usize> = std::env::var("URINGSEED_BENCH_CONNS")
        .unwrap_or_else(|_| "1,4".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.iso");
    write_pseudo_random(&file, mb);
    let torrent_path = dir.path().join("bench.torrent");
    let t = make_torrent(&file, &torrent_path);
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        "[server]\nmax_connections = 20000\nmax_connections_per_torrent = 20000\n[metrics]\nenabled = false\n[tracker]\nannounce = false\n",
    )
    .unwrap();
    let _ = std::fs::read(&file); // page cache
    let have_lt = Command::new("/usr/bin/python3")
        .args(["-c", "import libtorrent"])
        .output()
        .is_ok_and(|o| o.status.success());
    println!("serve benchmark: {mb} MiB torrent, {depth} requests in flight per leecher, scenarios {scenarios}");
    println!("uringseed build measured: {}", bench_bin());
    let mut groups: Vec<Vec<Row>> = Vec::new();

    if scenarios.contains("warm") {
        for &n in &conns {
            let mut group = Vec::new();
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.env("URINGSEED_SENDFILE_SERVER", &file);
            let (mut child, addr) = spawn_server(cmd, "", None);
            group.push(measure(
                format!("sendfile stream, {n} conn(s)"),
                &mut child,
                || streams(n, addr, t.total_length),
            ));
            stop(child);
            let (mut child, addr) = spawn_server(
                uringseed_cmd(&torrent_path, dir.path(), &config),
                "listening: ",
                Some("ready: "),
            );
            std::thread::sleep(settle);
            group.push(measure(
                format!("uringseed, {n} leecher(s)"),
                &mut child,
                || leechers(n, addr, &t, depth),
            ));
            stop(child);
            if let Ok(bin) = std::env::var("URINGSEED_BENCH_BASELINE_BIN") {
                let (mut child, addr) = spawn_server(
                    serve_cmd(&bin, &torrent_path, dir.path(), &config),
                    "listening: ",
                    Some("ready: "),
                );
                std::thread::sleep(settle);
                group.push(measure(
                    format!("baseline build, {n} leecher(s)"),
                    &mut child,
                    || leechers(n, addr, &t, depth),
                ));
                stop(child);
            }
            if have_lt {
                let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/lt_tool.py");
                let mut cmd = Command::new("/usr/bin/python3");
                cmd.args([script, "seed"])
                    .arg(&torrent_path)
                    .arg(dir.path())
                    .args(["-", "3600"])
                    .env("LT_HIGH_PERFORMANCE", "1");
                let (mut child, addr) = spawn_server(cmd, "listening ", Some("ready "));
                group.push(measure(
                    format!("libtorrent hp-seed, {n} leecher(s)"),
                    &mut child,
                    || leechers(n, addr, &t, depth),
                ));
                stop(child);
            }
            groups.push(group);
        }
    }
    print_rows(&groups);

    if scenarios.contains("idle") {
        let (mut child, addr) = spawn_server(
            uringseed_cmd(&torrent_path, dir.path(), &config),
            "listening: ",
            Some("ready: "),
        );
        let alone = measure("1 leecher, no idle peers".into(), &mut child, || {
            leechers(1, addr, &t, depth)
        });
        let rss0 = rss_kib(child.id());
        let conns = idle_peers(addr, t.info_hash.0, idle);
        std::thread::sleep(Duration::from_millis(500));
        let rss1 = rss_kib(child.id());
        let (anon, file_kib) = (
            status_kib(child.id(), "RssAnon:"),
            status_kib(child.id(), "RssFile:"),
        );
        let loaded = measure(
            format!("1 leecher beside {idle} idle peers"),
            &mut child,
            || leechers(1, addr, &t, depth),
        );
        println!(
            "\n{idle} idle handshaken peers: server RSS {} MiB -> {} MiB ({} MiB anon + {} MiB data-file pages mapped for sending; {:.1} KiB per peer); active leecher {:.0} MB/s alone, {:.0} MB/s beside them ({:.0}%)",
            rss0 / 1024,
            rss1 / 1024,
            anon / 1024,
            file_kib / 1024,
            (rss1 as f64 - rss0 as f64) / idle as f64,
            alone.mbps,
            loaded.mbps,
            100.0 * loaded.mbps / alone.mbps
        );
        drop(conns);
        stop(child);
    }

    if scenarios.contains("cold") {
        let disk = disk_read_mbps(&file);
        let (mut child, addr) = spawn_server(
            uringseed_cmd(&torrent_path, dir.path(), &config),
            "listening: ",
            Some("ready: "),
        );
        drop_cache(&file);
        let cold = measure(
            "uringseed, 1 leecher, cold cache".into(),
            &mut child,
            || leechers(1, addr, &t, depth),
        );
        stop(child);
        println!(
            "\ncold cache: disk sequential read (dd, O_DIRECT) {disk:.0} MB/s; uringseed 1 leecher {:.0} MB/s ({:.0}% of the disk)",
            cold.mbps,
            100.0 * cold.mbps / disk
        );
    }
}

fn print_rows(groups: &[Vec<Row>]) {
    if groups.is_empty() {
        return;
    }
    println!(
        "{:<34} {:>9} {:>16} {:>8} {:>8} {:>11}",
        "what", "MB/s", "server CPU s/GiB", "p50 ms", "p99 ms", "x sendfile"
    );
    for group in groups {
        let base = group[0].mbps;
        for r in group {
            println!(
                "{:<34} {:>9.0} {:>16.2} {:>8.2} {:>8.2} {:>11.2}",
                r.name,
                r.mbps,
                r.cpu_per_gib,
                r.p50_ms,
                r.p99_ms,
                r.mbps / base
            );
        }
    }
}
