//! A swarm's load on a seed, and data larger than memory (issue 20, items 5 and 6):
//! `cargo bench --bench random_load`.
//!
//! The data set: URINGSEED_BENCH_GB (default 4) GiB in URINGSEED_BENCH_FILES (4) files of one
//! multi-file torrent with 256 KiB pieces, written once under URINGSEED_BENCH_DATA (default
//! `target/random-load-data`) and reused while its size matches. Every leecher is a thread of
//! this bench: it connects from its own loopback address (127.20.x.y), handshakes, says
//! interested, and then, until the measurement ends, keeps URINGSEED_BENCH_DEPTH (32) block
//! requests in flight, taking pieces in a random order of its own (as rarest-first looks to a
//! seed) and asking for each piece's 16 KiB blocks in order. Latency is from a request's send
//! to the last byte of its piece message. The server runs with every peer unchoked
//! (`--upload-slots 0`) and URINGSEED_BENCH_WORKERS (2) workers.
//!
//! Scenarios (URINGSEED_BENCH_SCENARIOS, default "limited,unlimited,cold-limited,cold"), each
//! measured for
//! URINGSEED_BENCH_SECS (30) after URINGSEED_BENCH_WARMUP (5) seconds:
//! - `limited`: URINGSEED_BENCH_LEECHERS (500) leechers, leecher `i` reading at most
//!   1 + 3·i/(N−1) MB/s (1–4 MB/s, by not reading its socket faster), data in the page cache;
//! - `unlimited`: URINGSEED_BENCH_UNLIMITED (32) leechers reading as fast as they can, data in
//!   the page cache;
//! - `cold`: the server in a memory cgroup of its own limited to URINGSEED_BENCH_MEM_MB (1024)
//!   MiB (page cache included, so most of the data set cannot stay cached), the files dropped
//!   from the page cache (`posix_fadvise(DONTNEED)`) before each run; for each queue depth `q`
//!   of URINGSEED_BENCH_QD ("1,4,16,64") `q × workers` unlimited leechers (each connection
//!   has one read in flight, so `q` reads per worker), and in the same run `fio` (random
//!   buffered reads of one piece, io_uring engine, `numjobs` = workers, `iodepth` = `q`, the
//!   same files, the same cgroup limit, the same seconds) as the disk's limit. Needs root and a
//!   writable memory cgroup (v1 or v2) and `fio`; otherwise the scenario says why it is skipped;
//! - `cold-limited`: the `limited` load (500 leechers at 1–4 MB/s) on the `cold` server.
//!
//! URINGSEED_BENCH_BASELINE_BIN: a second build measured the same way, row by row in the same
//! run (for `cold`, against the same fio figure). URINGSEED_BENCH_SERVER_CPUS: a `taskset -c`
//! list the server is pinned to (`benches/cores.sh` gives the leechers the other cores).
//!
//! Reported per row: payload MB/s received by the leechers, server CPU seconds per GiB, latency
//! p50/p99, the server's own `uringseed_uploaded_bytes_total{type="payload"}` against what the
//! leechers received, the machine's block-device reads (`pgpgin`) over what the leechers
//! received ("disk/rx"), and for `cold` fio's MB/s and the ratio. URINGSEED_BENCH_BIN picks the
//! build measured (default: the one cargo built for the bench).

#[path = "random_load/cgroup.rs"]
mod cgroup;
mod common;
#[path = "random_load/leecher.rs"]
mod leecher;

use common::*;
use leecher::{Load, Tally};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

const PIECE: u64 = 256 << 10;

struct Row {
    name: String,
    leechers: usize,
    mbps: f64,
    cpu_per_gib: f64,
    p50_ms: f64,
    p99_ms: f64,
    reported_ratio: f64,
    /// The load generator's CPU in the window, in cores.
    gen_cores: f64,
    /// Bytes read from block devices in the window (the whole machine's `pgpgin`) over the
    /// bytes the leechers received: above 1, the kernel read data nobody asked for.
    disk_ratio: f64,
    fio_mbps: Option<f64>,
}

/// The data set's files (written if missing or of another size) and its torrent.
fn data_set(
    dir: &Path,
    gib: usize,
    files: usize,
) -> (Vec<PathBuf>, PathBuf, uringseed::metainfo::Torrent) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mb_each = gib * 1024 / files.max(1);
    let paths: Vec<PathBuf> = (0..files)
        .map(|i| data.join(format!("part{i:02}.bin")))
        .collect();
    for p in &paths {
        let want = (mb_each as u64) << 20;
        if std::fs::metadata(p).map(|m| m.len()).ok() != Some(want) {
            println!("writing {} ({mb_each} MiB)", p.display());
            write_pseudo_random(p, mb_each);
        }
    }
    // Files from an earlier data set of another shape are not part of this one.
    for e in std::fs::read_dir(&data).unwrap().flatten() {
        if !paths.contains(&e.path()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let torrent = dir.join("data.torrent");
    let opts = uringseed::make::MakeOptions {
        path: data.clone(),
        piece_length: Some(PIECE),
        quiet: true,
        ..Default::default()
    };
    let (bytes, t) = uringseed::make::make(&opts).unwrap();
    std::fs::write(&torrent, bytes).unwrap();
    (paths, torrent, t)
}

fn drop_cache(paths: &[PathBuf]) {
    use std::os::fd::AsRawFd;
    for p in paths {
        let f = std::fs::File::open(p).unwrap();
        // SAFETY: advisory call on an open descriptor.
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
}

fn warm(paths: &[PathBuf]) {
    for p in paths {
        let _ = std::fs::read(p);
    }
}

fn payload_uploaded(metrics: SocketAddr) -> f64 {
    let body = http_get(metrics, "/metrics").unwrap_or_default();
    body.lines()
        .filter(|l| {
            l.starts_with("uringseed_uploaded_bytes_total") && l.contains("type=\"payload\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Server {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
}

impl Drop for Server {
    /// Stopped by its PID whichever way the bench ends (a panicking leecher included).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(
    bin: &str,
    torrent: &Path,
    dir: &Path,
    workers: usize,
    group: Option<&cgroup::Group>,
) -> Server {
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nworkers = {workers}\nmax_connections = 2000\nmax_connections_per_torrent = 2000\n[metrics]\nlisten = \"127.0.0.1:0\"\n[tracker]\nannounce = false\n"
        ),
    )
    .unwrap();
    let state = dir.join("state");
    let _ = std::fs::remove_dir_all(&state);
    let cmd = serve_cmd(bin, torrent, dir, &config);
    // Pinned to the cores of URINGSEED_BENCH_SERVER_CPUS (a taskset list), if given, so the
    // load generator can have cores of its own (benches/cores.sh).
    let cmd = match std::env::var("URINGSEED_BENCH_SERVER_CPUS") {
        Ok(cpus) => {
            let mut t = std::process::Command::new("taskset");
            t.args(["-c", &cpus])
                .arg(cmd.get_program())
                .args(cmd.get_args());
            for (k, v) in cmd.get_envs() {
                if let Some(v) = v {
                    t.env(k, v);
                }
            }
            t
        }
        Err(_) => cmd,
    };
    let cmd = match group {
        Some(g) => g.wrap(cmd),
        None => cmd,
    };
    let mut cmd = cmd;
    cmd.env("XDG_STATE_HOME", &state);
    let (child, lines) =
        spawn_until(cmd, "ready: ", Duration::from_secs(300)).expect("server ready");
    let find = |prefix: &str| -> SocketAddr {
        let l = lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .expect(prefix);
        l.trim()
            .trim_start_matches("http://")
            .trim_end_matches("/metrics")
            .parse()
            .unwrap()
    };
    Server {
        addr: find("listening: "),
        metrics: find("metrics: "),
        child,
    }
}

/// Runs `load` against `server` and makes its row.
fn measure(name: String, server: &Server, load: &Load) -> Row {
    let before = payload_uploaded(server.metrics);
    let pid = server.child.id();
    // Server and load-generator CPU seconds at the window's start and end.
    let mut cpu: Vec<(f64, f64, f64)> = Vec::new();
    let me = std::process::id();
    let tally: Tally = leecher::run(load, || {
        cpu.push((cpu_secs(pid), cpu_secs(me), paged_in_bytes()))
    });
    let (server_cpu, gen_cpu) = (cpu[1].0 - cpu[0].0, cpu[1].1 - cpu[0].1);
    let disk = cpu[1].2 - cpu[0].2;
    // Bytes the server had sent while the leechers were still connected, counted once they
    // are gone (all of it was received: each leecher reads what it asked for).
    std::thread::sleep(Duration::from_millis(300));
    let after = payload_uploaded(server.metrics);
    if std::env::var_os("URINGSEED_BENCH_VERBOSE").is_some() {
        println!(
            "  {name}: server payload {before} -> {after}, leechers received {}",
            tally.total_bytes
        );
        let m = |k: &str| metric_sum(server.metrics, k).unwrap_or(0.0);
        let (n, secs) = (
            m("uringseed_piece_read_seconds_count"),
            m("uringseed_piece_read_seconds_sum"),
        );
        let zc = m("uringseed_zero_copy_bytes_total");
        println!(
            "  {n} disk reads, {:.0} KiB and {:.2} ms each on average; {:.0} MiB sent from mappings",
            (after - zc) / n.max(1.0) / 1024.0,
            secs * 1e3 / n.max(1.0),
            zc / 1048576.0
        );
    }
    let (p50, p99) = tally.percentiles();
    Row {
        name,
        leechers: load.leechers,
        mbps: tally.window_bytes as f64 / load.secs as f64 / 1e6,
        cpu_per_gib: server_cpu / (tally.window_bytes as f64 / (1u64 << 30) as f64),
        gen_cores: gen_cpu / load.secs as f64,
        disk_ratio: disk / tally.window_bytes.max(1) as f64,
        p50_ms: p50,
        p99_ms: p99,
        reported_ratio: (after - before) / tally.total_bytes.max(1) as f64,
        fio_mbps: None,
    }
}

/// Bytes this machine has read from block devices since boot (`pgpgin`, in KiB, /proc/vmstat).
fn paged_in_bytes() -> f64 {
    let text = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("pgpgin "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib * 1024.0)
}

fn print_rows(rows: &[Row]) {
    println!(
        "\n{:<40} {:>8} {:>8} {:>10} {:>8} {:>8} {:>12} {:>9} {:>8} {:>8} {:>7}",
        "what",
        "leechers",
        "MB/s",
        "CPU s/GiB",
        "p50 ms",
        "p99 ms",
        "reported/rx",
        "gen cores",
        "disk/rx",
        "fio MB/s",
        "x fio"
    );
    for r in rows {
        let (fio, x) = match r.fio_mbps {
            Some(f) => (format!("{f:.0}"), format!("{:.2}", r.mbps / f)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<40} {:>8} {:>8.0} {:>10.2} {:>8.1} {:>8.1} {:>12.3} {:>9.2} {:>8.2} {:>8} {:>7}",
            r.name,
            r.leechers,
            r.mbps,
            r.cpu_per_gib,
            r.p50_ms,
            r.p99_ms,
            r.reported_ratio,
            r.gen_cores,
            r.disk_ratio,
            fio,
            x
        );
    }
}

fn main() {
    let gib = env("URINGSEED_BENCH_GB", 4);
    let files = env("URINGSEED_BENCH_FILES", 4);
    let workers = env("URINGSEED_BENCH_WORKERS", 2);
    let secs = env("URINGSEED_BENCH_SECS", 30) as u64;
    let warmup = env("URINGSEED_BENCH_WARMUP", 5) as u64;
    let depth = env("URINGSEED_BENCH_DEPTH", 32);
    let mem_mb = env("URINGSEED_BENCH_MEM_MB", 1024);
    let scenarios = std::env::var("URINGSEED_BENCH_SCENARIOS")
        .unwrap_or_else(|_| "limited,unlimited,cold-limited,cold".into());
    let has = |name: &str| scenarios.split(',').any(|s| s.trim() == name);
    let qds: Vec<usize> = std::env::var("URINGSEED_BENCH_QD")
        .unwrap_or_else(|_| "1,4,16,64".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let bin = std::env::var("URINGSEED_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_uringseed").into());
    let dir = std::env::var("URINGSEED_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/random-load-data"
            ))
        });
    println!("random-load benchmark: {gib} GiB in {files} files, 256 KiB pieces, {workers} workers, {depth} requests in flight per leecher, {secs} s per row after {warmup} s");
    println!("uringseed build measured: {bin}");
    let (paths, torrent, t) = data_set(&dir, gib, files);
    let mut rows = Vec::new();
    let base = Load {
        info_hash: t.info_hash.0,
        pieces: t.num_pieces() as u32,
        piece_len: t.piece_length as u32,
        total: t.total_length,
        leechers: 0,
        rate: None,
        depth,
        warmup,
        secs,
        addr: "127.0.0.1:1".parse().unwrap(),
    };

    // The build measured, and a baseline build measured the same way in the same run.
    let mut builds = vec![("", bin.clone())];
    if let Ok(b) = std::env::var("URINGSEED_BENCH_BASELINE_BIN") {
        println!("baseline build: {b}");
        builds.push(("baseline, ", b));
    }
    if has("limited") || has("unlimited") {
        warm(&paths);
        for (label, bin) in &builds {
            let server = start_server(bin, &torrent, &dir, workers, None);
            if has("limited") {
                let n = env("URINGSEED_BENCH_LEECHERS", 500);
                let load = Load {
                    leechers: n,
                    rate: Some((1e6, 4e6)),
                    addr: server.addr,
                    ..base.clone()
                };
                rows.push(measure(
                    format!("{label}{n} leechers at 1-4 MB/s, warm"),
                    &server,
                    &load,
                ));
            }
            if has("unlimited") {
                let n = env("URINGSEED_BENCH_UNLIMITED", 32);
                let load = Load {
                    leechers: n,
                    addr: server.addr,
                    ..base.clone()
                };
                rows.push(measure(
                    format!("{label}{n} unlimited leechers, warm"),
                    &server,
                    &load,
                ));
            }
            drop(server);
        }
    }

    if has("cold") || has("cold-limited") {
        println!(
            "(demand of the rate-limited leechers: {:.0} MB/s)",
            2.5 * env("URINGSEED_BENCH_LEECHERS", 500) as f64
        );
        match cgroup::Group::create(mem_mb as u64) {
            Err(why) => println!("\ncold: skipped ({why})"),
            Ok(group) if !cgroup::has_fio() => {
                drop(group);
                println!("\ncold: skipped (no fio: apt-get install fio)")
            }
            Ok(group) => {
                println!(
                    "\ncold: server and fio in memory cgroup {} limited to {mem_mb} MiB",
                    group.describe()
                );
                // One row: a fresh server in the group, the files out of the page cache.
                let cold_row = |bin: &str, name: String, leechers: usize, rate| {
                    drop_cache(&paths);
                    let server = start_server(bin, &torrent, &dir, workers, Some(&group));
                    drop_cache(&paths);
                    let load = Load {
                        leechers,
                        rate,
                        addr: server.addr,
                        ..base.clone()
                    };
                    measure(name, &server, &load)
                };
                if has("cold-limited") {
                    let n = env("URINGSEED_BENCH_LEECHERS", 500);
                    for (label, bin) in &builds {
                        let name = format!("{label}{n} leechers at 1-4 MB/s, cold");
                        rows.push(cold_row(bin, name, n, Some((1e6, 4e6))));
                    }
                }
                for &q in qds.iter().filter(|_| has("cold")) {
                    let first = rows.len();
                    for (label, bin) in &builds {
                        let name = format!("{label}cold, {q} connection(s) per worker");
                        rows.push(cold_row(bin, name, q * workers, None));
                    }
                    drop_cache(&paths);
                    let fio = group.fio(&paths, PIECE, q, workers, warmup, secs);
                    rows[first..].iter_mut().for_each(|r| r.fio_mbps = fio);
                }
            }
        }
    }
    print_rows(&rows);
}
