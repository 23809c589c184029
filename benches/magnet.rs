//! Metadata by magnet link: `cargo bench --bench magnet`.
//!
//! How long a libtorrent client given only `magnet:?xt=urn:btih:HEX` and the seed's address
//! takes to get the info dictionary (BEP 9), from uringseed and from a libtorrent 2.0 seed
//! (`tests/tools/lt_tool.py seed`) in the same run, for two torrents: a small one (one 4 MiB
//! file: an info dictionary of 1,351 bytes, one metadata piece) and a large one
//! (URINGSEED_BENCH_FILES small files, default 5000: 223,738 bytes, 14 pieces of 16 KiB).
//!
//! Each round runs `lt_tool.py magnet-download MAGNET DIR 127.0.0.1:PORT T` with
//! LT_STOP_AT_METADATA=1 (a fresh client and save directory each time) against each seed, the
//! seeds' order alternating from round to round (URINGSEED_BENCH_ROUNDS, default 7). The client
//! prints `connect_seconds` (add_torrent to its first connection attempt: libtorrent starts a
//! torrent on its next tick, about 0.5 s) and `metadata_seconds` (add_torrent to
//! metadata_received_alert); the table gives the medians of both and of their difference ("after
//! dial": connection, handshakes and the metadata exchange itself) with its spread. A round
//! without metadata within URINGSEED_BENCH_TIMEOUT seconds (default 30) counts as failed.
//!
//! URINGSEED_BENCH_SEEDS (default "uringseed,libtorrent") picks the seeds; URINGSEED_BENCH_BIN
//! the uringseed build (default: the one cargo built for the bench). Needs Debian's
//! python3-libtorrent for /usr/bin/python3.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use uringseed::make::{make, MakeOptions};

const LT_TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/lt_tool.py");

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.into())
}

/// Deterministic pseudo-random bytes (xorshift).
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Makes a torrent of `path` (piece length `pl`) at `out`; returns its info-hash (hex) and the
/// size of its info dictionary.
fn torrent_of(path: &Path, pl: u64, out: &Path) -> (String, usize) {
    let opts = MakeOptions {
        path: path.to_path_buf(),
        piece_length: Some(pl),
        quiet: true,
        ..Default::default()
    };
    let (data, t) = make(&opts).unwrap();
    std::fs::write(out, &data).unwrap();
    let info = uringseed::bencode::decode(&data).unwrap();
    let len = info.get("info").unwrap().span.len();
    (t.info_hash.to_hex(), len)
}

/// A seed process and its address; killed (by its PID) when dropped.
struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` (stderr to `log`) and reads its stdout until a line starting with `addr_prefix`
/// (an address, or a bare port on 127.0.0.1) and then one starting with `ready`.
fn start(
    name: &'static str,
    mut cmd: Command,
    addr_prefix: &str,
    ready: &str,
    log: &Path,
) -> Server {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut addr = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        assert!(Instant::now() < deadline, "{name} did not start");
        if let Some(rest) = line.strip_prefix(addr_prefix) {
            let rest = rest.trim();
            addr = rest.parse().ok().or_else(|| {
                let port = rest.parse::<u16>().ok()?;
                Some(SocketAddr::from(([127, 0, 0, 1], port)))
            });
        } else if line.starts_with(ready) && addr.is_some() {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let addr = addr.unwrap_or_else(|| panic!("{name} printed no address; see {}", log.display()));
    Server { name, child, addr }
}

fn uringseed(bin: &str, torrent: &Path, data: &Path, dir: &Path) -> Server {
    let mut cmd = Command::new(bin);
    // No DHT bootstrap off the machine.
    cmd.env("URINGSEED_DHT_BOOTSTRAP", "");
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-level", "warn"])
        .arg("--torrent")
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .env("XDG_STATE_HOME", dir.join("state"));
    start(
        "uringseed",
        cmd,
        "listening: ",
        "ready: ",
        &dir.join("uringseed.log"),
    )
}

fn libtorrent(torrent: &Path, data: &Path, dir: &Path) -> Server {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args([LT_TOOL, "seed"])
        .arg(torrent)
        .arg(data)
        .args(["-", "3600"]);
    start(
        "libtorrent",
        cmd,
        "listening ",
        "ready ",
        &dir.join("libtorrent.log"),
    )
}

/// One magnet-only client: (connect_seconds, metadata_seconds), or None without metadata.
fn fetch(hash: &str, seed: &Server, dir: &Path, round: usize, timeout: &str) -> Option<(f64, f64)> {
    let save = dir.join(format!("client-{}-{round}", seed.name));
    let out = Command::new("/usr/bin/python3")
        .args([
            LT_TOOL,
            "magnet-download",
            &format!("magnet:?xt=urn:btih:{hash}"),
        ])
        .arg(&save)
        .arg(seed.addr.to_string())
        .arg(timeout)
        .env("LT_STOP_AT_METADATA", "1")
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&save);
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
    };
    match (
        out.status.success(),
        value("connect_seconds"),
        value("metadata_seconds"),
    ) {
        (true, Some(c), Some(m)) => Some((c, m)),
        _ => None,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Raises the soft limit on open files to the hard one (uringseed keeps every data file open).
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

fn main() {
    let rounds: usize = env_or("URINGSEED_BENCH_ROUNDS", "7").parse().unwrap();
    let files: usize = env_or("URINGSEED_BENCH_FILES", "5000").parse().unwrap();
    let timeout = env_or("URINGSEED_BENCH_TIMEOUT", "30");
    let seeds = env_or("URINGSEED_BENCH_SEEDS", "uringseed,libtorrent");
    let bin = env_or("URINGSEED_BENCH_BIN", env!("CARGO_BIN_EXE_uringseed"));
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let small = data.join("small.bin");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(&small, bytes(4 << 20, 1)).unwrap();
    let large = data.join("large");
    let sizes = bytes(files, 2);
    for (i, size) in sizes.iter().enumerate() {
        let sub = large.join(format!("d{:02}", i % 50));
        std::fs::create_dir_all(&sub).unwrap();
        let len = usize::from(*size) + 1;
        std::fs::write(sub.join(format!("file-{i:05}.bin")), bytes(len, i as u64)).unwrap();
    }
    let torrents: Vec<(String, PathBuf, String, usize)> = [
        ("small".to_string(), small, 1u64 << 16),
        (format!("{files} files"), large, 1 << 14),
    ]
    .into_iter()
    .map(|(name, path, pl)| {
        let out = dir.path().join(format!(
            "{}.torrent",
            path.file_name().unwrap().to_string_lossy()
        ));
        let (hash, info) = torrent_of(&path, pl, &out);
        (name, out, hash, info)
    })
    .collect();
    println!("magnet metadata: libtorrent 2.0 client given xt + the seed's address, {rounds} rounds, medians");
    println!("uringseed build: {bin}");
    println!(
        "{:<12} {:>10} {:<11} {:>11} {:>10} {:>13} {:>19} {:>6}",
        "torrent",
        "info bytes",
        "seed",
        "connect s",
        "metadata s",
        "after dial s",
        "after dial min..max",
        "ok"
    );
    for (name, torrent, hash, info) in &torrents {
        let mut servers = Vec::new();
        for s in seeds.split(',').map(str::trim) {
            match s {
                "uringseed" => servers.push(uringseed(&bin, torrent, &data, dir.path())),
                "libtorrent" => servers.push(libtorrent(torrent, &data, dir.path())),
                other => panic!("unknown seed {other:?} in URINGSEED_BENCH_SEEDS"),
            }
        }
        let mut results: Vec<Vec<(f64, f64)>> = vec![Vec::new(); servers.len()];
        for round in 0..rounds {
            for k in 0..servers.len() {
                // Alternate which seed goes first.
                let i = (k + round) % servers.len();
                if let Some(r) = fetch(hash, &servers[i], dir.path(), round, &timeout) {
                    results[i].push(r);
                }
            }
        }
        let mut dial_medians = Vec::new();
        for (server, got) in servers.iter().zip(&results) {
            let mut connect: Vec<f64> = got.iter().map(|r| r.0).collect();
            let mut meta: Vec<f64> = got.iter().map(|r| r.1).collect();
            let mut after: Vec<f64> = got.iter().map(|r| r.1 - r.0).collect();
            let (c, m, a) = (median(&mut connect), median(&mut meta), median(&mut after));
            let spread = match (after.first(), after.last()) {
                (Some(lo), Some(hi)) => format!("{lo:.3}..{hi:.3}"),
                _ => "-".into(),
            };
            println!(
                "{:<12} {:>10} {:<11} {:>11.3} {:>10.3} {:>13.3} {:>19} {:>3}/{}",
                name,
                info,
                server.name,
                c,
                m,
                a,
                spread,
                got.len(),
                rounds
            );
            dial_medians.push((server.name, a));
        }
        if let [(a, x), (b, y)] = dial_medians[..] {
            println!(
                "{:<12} {:>10} {a} / {b}, after dial: {:.2}",
                name,
                "",
                x / y
            );
        }
    }
}
