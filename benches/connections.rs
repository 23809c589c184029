//! Tens of thousands of idle peers (issue 20, item 4): `cargo bench --bench connections`.
//!
//! Seeds one torrent (URINGSEED_BENCH_MB, default 512 MiB, in the page cache) with
//! `max_connections` and `max_connections_per_torrent` raised, measures one active leecher
//! alone (the median of URINGSEED_BENCH_RUNS = 5 downloads of the whole torrent), then opens URINGSEED_BENCH_PEERS (default 50,000) connections that handshake and stay
//! silent, from many loopback source addresses (127.10.x.y, URINGSEED_BENCH_PER_ADDR = 50 per
//! address, so no address needs more than a few ephemeral ports). The connections are held by
//! child processes of this bench (at most URINGSEED_BENCH_PER_HOLDER = 15,000 each, to stay
//! inside one process's descriptor limit), opened in parallel. Reports: the accept rate (peers
//! handshaken per second over the whole ramp) and the server's CPU for it, the server's RSS
//! before and after (anon and file-backed) and per idle peer, the kernel's TCP memory for the
//! sockets (/proc/net/sockstat, both ends), the server's own count of connected peers
//! (`uringseed_peers_connected`, which must equal what the holders hold), and the active
//! leecher beside them against alone.
//!
//! The server can hold no more peers than its descriptor limit allows: the bench raises its
//! soft RLIMIT_NOFILE to the hard one (inherited by the server) and, when that is below the
//! peers asked for, measures as many as fit and says so. URINGSEED_BENCH_BIN picks the build
//! measured (default: the one cargo built for the bench).

mod common;

use common::*;
use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Descriptors the server keeps for everything but peers (listeners, files, metrics, rings).
const SERVER_SPARE_FDS: u64 = 200;

fn nofile() -> (u64, u64) {
    // SAFETY: plain getrlimit/setrlimit on this process.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            return (r.rlim_cur, r.rlim_max);
        }
    }
    (1024, 1024)
}

/// The kernel's TCP memory in KiB (pages of /proc/net/sockstat's `TCP: ... mem N`).
fn tcp_mem_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let pages: u64 = s
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let i = f.iter().position(|&w| w == "mem")?;
            f.get(i + 1)?.parse().ok()
        })
        .unwrap_or(0);
    pages * 4
}

/// The source address of connection `i`.
fn source(i: usize, per_addr: usize) -> SocketAddr {
    let a = i / per_addr.max(1);
    let ip = Ipv4Addr::new(
        127,
        10 + (a / 62_500) as u8,
        1 + (a / 250 % 250) as u8,
        1 + (a % 250) as u8,
    );
    SocketAddr::V4(SocketAddrV4::new(ip, 0))
}

/// Child-process side: opens connections `first..first + count` to `addr`, handshakes each,
/// prints `held N SECS` once every handshake is answered, and holds them until stdin closes.
fn holder(spec: &str) {
    nofile();
    let f: Vec<&str> = spec.split(' ').collect();
    let addr: SocketAddr = f[0].parse().unwrap();
    let ih: [u8; 20] = (0..20)
        .map(|i| u8::from_str_radix(&f[1][2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let (first, count, per_addr): (usize, usize, usize) = (
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
        f[4].parse().unwrap(),
    );
    let t0 = Instant::now();
    let mut conns = Vec::with_capacity(count);
    // In batches: a batch's handshakes are all sent before its replies are read, so the
    // server always has work queued but the accept queue never holds more than a batch.
    for batch in (first..first + count).collect::<Vec<_>>().chunks(256) {
        let start = conns.len();
        for &i in batch {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.bind(&source(i, per_addr).into()).unwrap();
            s.connect_timeout(&addr.into(), Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            let mut s: TcpStream = s.into();
            // Peer ids unique across the holders (the server refuses a duplicate).
            let mut hs = handshake(ih);
            hs[48..].copy_from_slice(format!("-LH0001-{i:012}").as_bytes());
            s.write_all(&hs).unwrap();
            conns.push(s);
        }
        for s in &mut conns[start..] {
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            let mut hs = [0u8; 68];
            s.read_exact(&mut hs).expect("handshake answered");
        }
    }
    println!("held {} {:.3}", conns.len(), t0.elapsed().as_secs_f64());
    std::io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(conns);
}

/// The median of `runs` downloads of the whole torrent by one leecher, in MB/s.
fn leecher_mbps(
    addr: SocketAddr,
    t: &uringseed::metainfo::Torrent,
    depth: usize,
    runs: usize,
) -> f64 {
    let mut v: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let t0 = Instant::now();
            let (bytes, _) = leechers(1, addr, t, depth);
            bytes as f64 / t0.elapsed().as_secs_f64() / 1e6
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A child process stopped by its PID when this goes, however the bench ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    if let Ok(spec) = std::env::var("URINGSEED_CONN_HOLDER") {
        return holder(&spec);
    }
    let (_, hard) = nofile();
    let mb = env("URINGSEED_BENCH_MB", 512);
    let asked = env("URINGSEED_BENCH_PEERS", 50_000);
    let per_addr = env("URINGSEED_BENCH_PER_ADDR", 50);
    let per_holder = env("URINGSEED_BENCH_PER_HOLDER", 15_000)
        .min(hard.saturating_sub(64) as usize)
        .max(1);
    let depth = env("URINGSEED_BENCH_DEPTH", 128);
    let runs = env("URINGSEED_BENCH_RUNS", 5);
    let peers = asked.min(hard.saturating_sub(SERVER_SPARE_FDS) as usize);
    let bin = std::env::var("URINGSEED_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_uringseed").into());
    println!("connections benchmark: {mb} MiB torrent, {asked} idle peers asked, {per_addr} per source address");
    println!("uringseed build measured: {bin}");
    if peers < asked {
        println!(
            "note: RLIMIT_NOFILE hard limit here is {hard} (the server cannot raise it without CAP_SYS_RESOURCE), so {peers} peers are measured, not {asked}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.iso");
    write_pseudo_random(&file, mb);
    let torrent_path = dir.path().join("bench.torrent");
    let t = make_torrent(&file, &torrent_path);
    let _ = std::fs::read(&file); // page cache
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nmax_connections = {m}\nmax_connections_per_torrent = {m}\nidle_timeout_secs = 3600\n[metrics]\nlisten = \"127.0.0.1:0\"\n[tracker]\nannounce = false\n",
            m = peers + 64
        ),
    )
    .unwrap();
    let (child, lines) = spawn_until(
        serve_cmd(&bin, &torrent_path, dir.path(), &config),
        "ready: ",
        Duration::from_secs(120),
    )
    .expect("server ready");
    let child = Reaped(child);
    let find = |prefix: &str| -> SocketAddr {
        let l = lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .expect(prefix);
        let l = l
            .trim()
            .trim_start_matches("http://")
            .trim_end_matches("/metrics");
        l.parse().unwrap()
    };
    let (addr, metrics) = (find("listening: "), find("metrics: "));
    let pid = child.0.id();

    let alone = leecher_mbps(addr, &t, depth, runs);
    std::thread::sleep(Duration::from_millis(300));
    let (rss0, tcp0) = (status_kib(pid, "VmRSS:"), tcp_mem_kib());
    let cpu0 = cpu_secs(pid);
    let t0 = Instant::now();
    let mut holders = Vec::new();
    let mut first = 0;
    while first < peers {
        let count = per_holder.min(peers - first);
        let mut c = Command::new(std::env::current_exe().unwrap())
            .env(
                "URINGSEED_CONN_HOLDER",
                format!("{addr} {} {first} {count} {per_addr}", hex(&t.info_hash.0)),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(c.stdout.take().unwrap());
        holders.push((Reaped(c), out));
        first += count;
    }
    let mut held = 0usize;
    for (_, out) in &mut holders {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        held += line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("holder failed: {line:?}"));
    }
    let ramp = t0.elapsed().as_secs_f64();
    let ramp_cpu = cpu_secs(pid) - cpu0;
    std::thread::sleep(Duration::from_secs(1));
    let rss1 = status_kib(pid, "VmRSS:");
    let (anon, filek) = (status_kib(pid, "RssAnon:"), status_kib(pid, "RssFile:"));
    let tcp1 = tcp_mem_kib();
    let reported = metric_sum(metrics, "uringseed_peers_connected").unwrap_or(-1.0);
    let beside = leecher_mbps(addr, &t, depth, runs);
    let rss2 = status_kib(pid, "VmRSS:");

    println!(
        "\n{held} idle handshaken peers from {} source addresses",
        held.div_ceil(per_addr)
    );
    println!(
        "accept rate: {:.0} peers/s ({ramp:.2} s for all, {} holder processes), server CPU {:.1} µs per peer",
        held as f64 / ramp,
        holders.len(),
        ramp_cpu * 1e6 / held as f64
    );
    println!(
        "server RSS {} MiB -> {} MiB ({} MiB anon + {} MiB file-backed): {:.2} KiB per idle peer; after the leecher {} MiB",
        rss0 / 1024,
        rss1 / 1024,
        anon / 1024,
        filek / 1024,
        (rss1 as f64 - rss0 as f64) / held as f64,
        rss2 / 1024
    );
    println!(
        "kernel TCP memory (both ends of every socket): {} MiB -> {} MiB ({:.2} KiB per peer)",
        tcp0 / 1024,
        tcp1 / 1024,
        (tcp1 as f64 - tcp0 as f64) / held as f64
    );
    let ok = reported as usize == held;
    println!(
        "server reports uringseed_peers_connected = {reported} (holders hold {held}){}",
        if ok { "" } else { "  MISMATCH" }
    );
    println!(
        "active leecher: {alone:.0} MB/s alone, {beside:.0} MB/s beside them ({:.0}%)",
        100.0 * beside / alone
    );
    for (mut c, _) in holders {
        // Stdin closed: the holder lets its connections go and exits.
        drop(c.0.stdin.take());
        let _ = c.0.wait();
    }
    drop(child);
    assert!(
        ok,
        "the server's peer count disagrees with the connections held"
    );
}
