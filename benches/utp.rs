//! Seeding over uTP (BEP 29), paired in one run: uringseed over uTP against uringseed over TCP
//! and against libtorrent seeding over uTP, to real libtorrent leechers.
//!
//! Run: `cargo build --release && URINGSEED_BENCH_BIN=target/release/uringseed cargo bench --bench utp`.
//! Needs Debian's `python3-libtorrent` for /usr/bin/python3 (the leechers and the libtorrent
//! seeds); without it the bench says so and ends.
//!
//! Writes a pseudo-random file (URINGSEED_BENCH_MB, default 256), makes a torrent of it and reads
//! it into the page cache. For 1 and 4 leechers (URINGSEED_BENCH_CONNS="1,4"), each seed in
//! URINGSEED_BENCH_SEEDS (default "uringseed-tcp,uringseed-utp,lt-utp,lt-hp-utp,lt-tcp") is
//! started on 127.0.0.1 as its own process, then one helper process
//! (`tests/tools/lt_bench_utp.py leech`) runs that many libtorrent sessions, default settings,
//! session i on 127.0.0.(i+2), each downloading the whole torrent from the seed with one
//! transport only (uTP: libtorrent's TCP off; TCP: its uTP off), with socket buffers of
//! URINGSEED_BENCH_LT_SOCKBUF bytes (default 4 MiB, this machine's rmem_max; 0: the OS default,
//! 208 KiB, which a leecher's UDP socket overflows on loopback, libtorrent's uTP then falling to
//! a few MB/s in about half the runs, against any seed). Seeds:
//! - `uringseed-tcp`, `uringseed-utp`: `uringseed serve` (uTP on its default, the TCP port's
//!   UDP twin), `--upload-slots 0`, metrics on a loopback port, announces, DHT and API off;
//! - `lt-utp`: a libtorrent session seeding the same data with uTP only, default settings;
//! - `lt-hp-utp`: the same with libtorrent's `high_performance_seed` preset (and unlimited
//!   unchoke slots);
//! - `lt-tcp`: libtorrent seeding over TCP only, default settings (what uTP costs libtorrent).
//!
//! All that, URINGSEED_BENCH_ROUNDS (default 3) times, each round starting the seeds' order one
//! further along; the summary gives per seed the medians of the rounds that finished.
//!
//! Per row: aggregate MB/s (all leechers' payload over first dial to last finish), the seed's CPU
//! seconds per GiB sent (utime + stime of its process from /proc/PID/stat, across the helper's
//! whole run), the leechers' CPU per GiB, the leechers' uTP counters (packets lost, timeouts,
//! resends, as libtorrent counts them), UDP datagrams the kernel dropped on full receive
//! buffers during the row (RcvbufErrors, machine-wide), and for uringseed its own
//! `uringseed_utp_*` metrics (bytes sent; retransmits and timeouts while all the leechers were
//! connected, and until AFTER_EXIT s after they closed; connections still open then).
//! Then, of those medians, the ratios uringseed-uTP / libtorrent-uTP (default and hp; throughput
//! and CPU/GiB), uringseed-uTP / uringseed-TCP and libtorrent-uTP / libtorrent-TCP. A leecher
//! whose payload does not grow for URINGSEED_BENCH_STALL seconds (default 20) ends its row
//! "stalled", one not done in URINGSEED_BENCH_TIMEOUT seconds (default 300) "timeout"; the
//! helper is killed if it outlives that by 30 s ("hung"). The leechers' peer exchange is off
//! (uringseed's ut_pex names the other leechers, which then trade pieces among themselves), and
//! a row where a leecher had more peers than the seed is marked "peers N".
//! On 2 cores the leechers compete with the seed for CPU in every row.

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/lt_bench_utp.py");
const PY: &str = "/usr/bin/python3";

/// One seed under one load.
struct Row {
    seed: String,
    round: usize,
    n: usize,
    /// "ok", "stalled", "timeout", "error", "hung", or why the seed did not start.
    result: String,
    mbps: f64,
    seed_cpu_per_gib: f64,
    leech_cpu_per_gib: f64,
    /// The leechers' summed libtorrent uTP counters (name without `utp_`, value).
    lt_utp: Vec<(String, u64)>,
    /// UDP datagrams the kernel dropped on full receive buffers during the row, all sockets
    /// (RcvbufErrors in /proc/net/snmp).
    udp_drops: u64,
    /// uringseed's uTP metrics over the row.
    server: Option<ServerUtp>,
}

impl Row {
    fn failed(seed: &str, n: usize, why: &str) -> Row {
        Row {
            seed: seed.into(),
            round: 0,
            n,
            result: why.into(),
            mbps: f64::NAN,
            seed_cpu_per_gib: f64::NAN,
            leech_cpu_per_gib: f64::NAN,
            lt_utp: Vec::new(),
            udp_drops: 0,
            server: None,
        }
    }

    fn counter(&self, k: &str) -> u64 {
        self.lt_utp
            .iter()
            .find(|(n, _)| n == k)
            .map_or(0, |(_, v)| *v)
    }
}

struct Setup {
    bin: String,
    torrent: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    total: u64,
    timeout: u64,
    stall: u64,
    sockbuf: usize,
}

/// RcvbufErrors of /proc/net/snmp's Udp line: datagrams dropped on a full receive buffer.
fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// The transport the leechers use against `seed`.
fn transport(seed: &str) -> &'static str {
    if seed.ends_with("tcp") {
        "tcp"
    } else {
        "utp"
    }
}

/// Starts `seed`; returns the process, the peer address to dial, and uringseed's metrics address.
fn start_seed(s: &Setup, seed: &str) -> Result<(Child, SocketAddr, Option<SocketAddr>), String> {
    let within = Duration::from_secs(180);
    if seed.starts_with("uringseed") {
        let cmd = serve_cmd(&s.bin, &s.torrent, &s.dir, &s.config);
        let (child, lines) = spawn_until(cmd, "ready: ", within).ok_or("did not start")?;
        let addr = lines
            .iter()
            .find_map(|l| l.strip_prefix("listening: ")?.trim().parse().ok())
            .ok_or("printed no address")?;
        let metrics = lines.iter().find_map(|l| {
            l.strip_prefix("metrics: http://")?
                .trim()
                .trim_end_matches("/metrics")
                .parse()
                .ok()
        });
        Ok((child, addr, metrics))
    } else {
        let mut cmd = Command::new(PY);
        cmd.args([SCRIPT, "seed"])
            .arg(&s.torrent)
            .arg(&s.dir)
            .arg(transport(seed));
        if seed.contains("-hp-") {
            cmd.arg("hp");
        }
        cmd.arg("7200");
        let (child, lines) = spawn_until(cmd, "ready ", within).ok_or("did not start")?;
        let port: u16 = lines
            .iter()
            .find_map(|l| l.strip_prefix("listening ")?.trim().parse().ok())
            .ok_or("printed no port")?;
        Ok((child, SocketAddr::from(([127, 0, 0, 1], port)), None))
    }
}

/// How long the leechers stay connected after their last report, and how long after the
/// helper's exit the server's counters are read again.
const LINGER: u64 = 2;
/// (A connection the peer has left retransmits its FIN with backoff from the 200 ms RTO
/// floor: 0.2 + 0.4 + ... + 3.2 s.)
const AFTER_EXIT: u64 = 7;

/// uringseed's uTP counters over a row.
#[derive(Clone, Copy)]
struct ServerUtp {
    /// Payload bytes sent (first transmissions), from the start to the leechers' last report.
    sent: f64,
    /// Retransmitted packets and retransmission timeouts up to the server's last sample in
    /// which all the leechers were still connected (libtorrent closes its connection to a seed
    /// once complete; what follows is the closing), polled twice a second.
    retransmits_loaded: f64,
    timeouts_loaded: f64,
    /// The same AFTER_EXIT s after the helper (all its sessions closed) exited, and the uTP
    /// connections still open then.
    retransmits_total: f64,
    timeouts_total: f64,
    open_after: f64,
}

/// A sample of uringseed's uTP counters.
#[derive(Clone, Copy)]
struct UtpSample {
    sent: f64,
    retransmits: f64,
    timeouts: f64,
    open: f64,
}

fn utp_metrics(m: Option<SocketAddr>) -> Option<UtpSample> {
    let m = m?;
    Some(UtpSample {
        sent: metric_sum(m, "uringseed_utp_bytes_sent_total")?,
        retransmits: metric_sum(m, "uringseed_utp_retransmits_total").unwrap_or(f64::NAN),
        timeouts: metric_sum(m, "uringseed_utp_timeouts_total").unwrap_or(f64::NAN),
        open: metric_sum(m, "uringseed_utp_connections").unwrap_or(f64::NAN),
    })
}

/// `n` libtorrent leechers against `seed`, bounded; one row.
fn row(s: &Setup, seed: &str, n: usize) -> Row {
    let (child, addr, metrics) = match start_seed(s, seed) {
        Ok(v) => v,
        Err(e) => return Row::failed(seed, n, &format!("seed {e}")),
    };
    let before = utp_metrics(metrics);
    let work = s.dir.join(format!("leech-{seed}-{n}"));
    let log_path = s.dir.join(format!("leech-{seed}-{n}.log"));
    let cpu0 = cpu_secs(child.id());
    let drops0 = udp_rcvbuf_errors();
    let mut helper = Command::new(PY)
        .args([SCRIPT, "leech"])
        .arg(&s.torrent)
        .arg(addr.to_string())
        .arg(transport(seed))
        .arg(n.to_string())
        .arg(s.timeout.to_string())
        .arg(s.stall.to_string())
        .arg(&work)
        .env("LT_BENCH_LEECH_SOCKBUF", s.sockbuf.to_string())
        .env("LT_BENCH_LINGER", LINGER.to_string())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let out = helper.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Lines until the helper's last report ("cpu"), bounded, meanwhile polling uringseed's uTP
    // counters (it samples them once a second) for the last sample with every leecher
    // connected; then the seed's CPU and, after a sampling period, its bytes sent (the leechers
    // linger LINGER); then its counters again once the helper has exited and closed its
    // connections.
    let deadline = Instant::now() + Duration::from_secs(s.timeout + 30);
    let mut lines = Vec::new();
    let mut hung = true;
    let mut loaded = before;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match rx.recv_timeout(left.min(Duration::from_millis(500))) {
            Ok(line) => {
                let last = line.starts_with("cpu ");
                lines.push(line);
                if last {
                    hung = false;
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(u) = utp_metrics(metrics).filter(|u| u.open >= n as f64) {
                    loaded = Some(u);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let cpu = cpu_secs(child.id()) - cpu0;
    let udp_drops = udp_rcvbuf_errors().saturating_sub(drops0);
    let during = metrics.and_then(|m| {
        std::thread::sleep(Duration::from_millis(1200));
        utp_metrics(Some(m))
    });
    let exit_by = Instant::now() + Duration::from_secs(LINGER + 30);
    loop {
        if helper.try_wait().ok().flatten().is_some() {
            break;
        }
        if Instant::now() >= exit_by {
            hung = true;
            let _ = helper.kill();
            let _ = helper.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let server = metrics.and_then(|m| {
        if transport(seed) == "utp" {
            std::thread::sleep(Duration::from_secs(AFTER_EXIT));
        }
        let after = utp_metrics(Some(m))?;
        let (b, d, l) = (before?, during?, loaded?);
        Some(ServerUtp {
            sent: d.sent - b.sent,
            retransmits_loaded: l.retransmits - b.retransmits,
            timeouts_loaded: l.timeouts - b.timeouts,
            retransmits_total: after.retransmits - b.retransmits,
            timeouts_total: after.timeouts - b.timeouts,
            open_after: after.open,
        })
    });
    stop(child);
    let _ = std::fs::remove_dir_all(&work);
    let get = |k: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(' ').map(str::trim))
    };
    let result = if hung {
        "hung".to_string()
    } else {
        get("result").unwrap_or("no output").to_string()
    };
    let bytes: u64 = get("bytes").and_then(|v| v.parse().ok()).unwrap_or(0);
    let secs: f64 = get("elapsed")
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    let max_peers: u64 = get("max_peers").and_then(|v| v.parse().ok()).unwrap_or(0);
    let leech_cpu: f64 = get("cpu").and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
    let lt_utp = get("utp")
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim_start_matches("utp_").to_string(), v.parse().ok()?))
        })
        .collect();
    if result != "ok" {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(6).collect();
        println!("  {seed}, {n} leecher(s): {result}; per session:");
        for l in lines.iter().filter(|l| l.starts_with("session ")) {
            println!("    {l}");
        }
        println!("  its log's last lines:");
        for l in tail.iter().rev() {
            println!("    {l}");
        }
    }
    let gib = bytes as f64 / (1u64 << 30) as f64;
    Row {
        seed: seed.into(),
        round: 0,
        n,
        mbps: bytes as f64 / secs / 1e6,
        seed_cpu_per_gib: cpu / gib,
        leech_cpu_per_gib: leech_cpu / gib,
        lt_utp,
        udp_drops,
        server,
        result: if result == "ok" && bytes < s.total * n as u64 {
            format!("short ({bytes} bytes)")
        } else if result == "ok" && max_peers > 1 {
            // A leecher talked to another peer than the seed: not the seed's throughput alone.
            format!("peers {max_peers}")
        } else {
            result
        },
    }
}

fn main() {
    let mb = env("URINGSEED_BENCH_MB", 256);
    let timeout = env("URINGSEED_BENCH_TIMEOUT", 300) as u64;
    let stall = env("URINGSEED_BENCH_STALL", 20) as u64;
    let sockbuf = env("URINGSEED_BENCH_LT_SOCKBUF", 4 << 20);
    let rounds = env("URINGSEED_BENCH_ROUNDS", 3).max(1);
    let conns: Vec<usize> = std::env::var("URINGSEED_BENCH_CONNS")
        .unwrap_or_else(|_| "1,4".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let seeds: Vec<String> = std::env::var("URINGSEED_BENCH_SEEDS")
        .unwrap_or_else(|_| "uringseed-tcp,uringseed-utp,lt-utp,lt-hp-utp,lt-tcp".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let have_lt = Command::new(PY)
        .args(["-c", "import libtorrent"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_lt {
        println!("utp bench: needs Debian's python3-libtorrent for {PY} (the leechers); not run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("utp-bench.bin");
    write_pseudo_random(&file, mb);
    let torrent = dir.path().join("utp-bench.torrent");
    let t = make_torrent(&file, &torrent);
    let config = dir.path().join("utp-bench.toml");
    std::fs::write(
        &config,
        "[metrics]\nenabled = true\nlisten = \"127.0.0.1:0\"\n[api]\nenabled = false\n[tracker]\nannounce = false\n",
    )
    .unwrap();
    let _ = std::fs::read(&file); // page cache
    let s = Setup {
        bin: std::env::var("URINGSEED_BENCH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_uringseed").into()),
        torrent,
        dir: dir.path().to_path_buf(),
        config,
        total: t.total_length,
        timeout,
        stall,
        sockbuf,
    };
    println!(
        "utp bench: {mb} MiB torrent ({} pieces of {} KiB), libtorrent {} leechers, seeds {}, {rounds} round(s), stall {stall} s, timeout {timeout} s, leecher socket buffers {sockbuf} B (0: OS default); uringseed build {}",
        t.num_pieces(),
        t.piece_length / 1024,
        lt_version(),
        seeds.join(","),
        s.bin
    );
    let mut rows = Vec::new();
    for round in 0..rounds {
        for &n in &conns {
            // Each round starts the seeds' order one further along.
            for k in 0..seeds.len() {
                let seed = &seeds[(k + round) % seeds.len()];
                let mut r = row(&s, seed, n);
                r.round = round + 1;
                println!(
                    "  round {}, {seed}, {n} leecher(s): {} {:.0} MB/s, seed CPU {:.2} s/GiB",
                    round + 1,
                    r.result,
                    r.mbps,
                    r.seed_cpu_per_gib
                );
                rows.push(r);
            }
        }
    }
    rows.sort_by_key(|r| {
        (
            r.n,
            seeds.iter().position(|x| *x == r.seed).unwrap_or(0),
            r.round,
        )
    });
    print_rows(&rows);
    let medians = print_medians(&rows, &seeds, &conns);
    print_ratios(&medians, &conns);
    drop(dir);
}

fn lt_version() -> String {
    Command::new(PY)
        .args(["-c", "import libtorrent; print(libtorrent.__version__)"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn print_rows(rows: &[Row]) {
    let head = [
        "seed",
        "n",
        "round",
        "result",
        "MB/s",
        "seed s/GiB",
        "leech s/GiB",
        "lt loss",
        "lt tmo",
        "lt resend",
        "udp drops",
        "srv MB",
        "retx loaded",
        "tmo loaded",
        "retx total",
        "tmo total",
        "open after",
    ];
    let widths = [15, 3, 5, 8, 6, 10, 11, 7, 6, 9, 9, 7, 11, 10, 10, 9, 10];
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i < 4 && i != 1 && i != 2 {
                out += &format!("{c:<w$} ");
            } else {
                out += &format!("{c:>w$} ");
            }
        }
        println!("{}", out.trim_end());
    };
    println!();
    line(&head.map(String::from));
    for r in rows {
        let mut cells = vec![
            r.seed.clone(),
            r.n.to_string(),
            r.round.to_string(),
            r.result.clone(),
            format!("{:.0}", r.mbps),
            format!("{:.2}", r.seed_cpu_per_gib),
            format!("{:.2}", r.leech_cpu_per_gib),
            r.counter("packet_loss").to_string(),
            r.counter("timeout").to_string(),
            r.counter("packet_resend").to_string(),
            r.udp_drops.to_string(),
        ];
        match r.server {
            Some(v) => cells.extend([
                format!("{:.0}", v.sent / 1e6),
                format!("{:.0}", v.retransmits_loaded),
                format!("{:.0}", v.timeouts_loaded),
                format!("{:.0}", v.retransmits_total),
                format!("{:.0}", v.timeouts_total),
                format!("{:.0}", v.open_after),
            ]),
            None => cells.extend(std::iter::repeat_n("-".to_string(), 6)),
        }
        line(&cells);
    }
    println!(
        "(lt: the leechers' libtorrent uTP counters; udp drops: RcvbufErrors, whole machine; then uringseed's \
         uTP metrics: MB sent; retransmits and timeouts while all leechers were connected (loaded) and until \
         {AFTER_EXIT} s after they closed (total); connections open then)"
    );
}

/// Per seed and leecher count, the medians over the rounds that finished: (seed, n, MB/s, seed
/// CPU s/GiB, rounds ok, rounds).
type Median = (String, usize, f64, f64, usize, usize);

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn print_medians(rows: &[Row], seeds: &[String], conns: &[usize]) -> Vec<Median> {
    println!(
        "\nmedians over the rounds that finished\n{:<15} {:>3} {:>8} {:>10} {:>9} {:>10}",
        "seed", "n", "MB/s", "seed s/GiB", "ok", "MB/s range"
    );
    let mut out = Vec::new();
    for &n in conns {
        for seed in seeds {
            let all: Vec<&Row> = rows
                .iter()
                .filter(|r| r.n == n && r.seed == *seed)
                .collect();
            let ok: Vec<&Row> = all.iter().copied().filter(|r| r.result == "ok").collect();
            let mbps = median(ok.iter().map(|r| r.mbps).collect());
            let cpu = median(ok.iter().map(|r| r.seed_cpu_per_gib).collect());
            let lo = ok.iter().map(|r| r.mbps).fold(f64::INFINITY, f64::min);
            let hi = ok.iter().map(|r| r.mbps).fold(0.0, f64::max);
            println!(
                "{:<15} {:>3} {:>8.0} {:>10.2} {:>9} {:>10}",
                seed,
                n,
                mbps,
                cpu,
                format!("{}/{}", ok.len(), all.len()),
                if ok.is_empty() {
                    "-".to_string()
                } else {
                    format!("{lo:.0}..{hi:.0}")
                }
            );
            out.push((seed.clone(), n, mbps, cpu, ok.len(), all.len()));
        }
    }
    out
}

fn print_ratios(medians: &[Median], conns: &[usize]) {
    let find = |seed: &str, n: usize| medians.iter().find(|m| m.0 == seed && m.1 == n);
    println!();
    for &n in conns {
        for (mine, other, label) in [
            ("uringseed-utp", "lt-utp", "uringseed-uTP / libtorrent-uTP"),
            (
                "uringseed-utp",
                "lt-hp-utp",
                "uringseed-uTP / libtorrent-hp-uTP",
            ),
            (
                "uringseed-utp",
                "uringseed-tcp",
                "uringseed-uTP / uringseed-TCP",
            ),
            ("lt-utp", "lt-tcp", "libtorrent-uTP / libtorrent-TCP"),
        ] {
            let (Some(u), Some(o)) = (find(mine, n), find(other, n)) else {
                continue;
            };
            println!(
                "{n} leecher(s): {label:<34} throughput {:.2}, seed CPU/GiB {:.2}{}",
                u.2 / o.2,
                u.3 / o.3,
                if u.4 == u.5 && o.4 == o.5 {
                    String::new()
                } else {
                    format!(" (rounds finished: {}/{} and {}/{})", u.4, u.5, o.4, o.5)
                }
            );
        }
    }
}
