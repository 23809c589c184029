//! Upload limit accuracy: `cargo bench --bench limits`.
//!
//! Seeds a torrent (URINGSEED_BENCH_MB, default 256 MiB, in the page cache) with
//! `serve --upload-limit CAP` for each cap of URINGSEED_BENCH_CAPS (MB/s, default "1,10,100,1000")
//! and each connection count of URINGSEED_BENCH_CONNS (default "1,4,32"), and lets that many
//! simulated leechers (a thread each, 64 requests of 16 KiB in flight, cycling through the
//! torrent) download for URINGSEED_BENCH_SECS (default 20) seconds. Reports, per row, the
//! achieved rate against the cap, the slowest and fastest whole second, the worst one-second
//! window (the burst), and the leechers' shares (smallest and largest against the mean).
//! URINGSEED_BENCH_BIN picks the build measured (default: the one cargo built for the bench).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uringseed::make::{make, MakeOptions};

/// Received payload, in 100 ms buckets since the start.
type Buckets = Arc<Mutex<Vec<u64>>>;

fn env_list(key: &str, default: &str) -> Vec<u64> {
    std::env::var(key)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

fn handshake(info_hash: [u8; 20], n: usize) -> Vec<u8> {
    let mut h = vec![19];
    h.extend_from_slice(b"BitTorrent protocol");
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&info_hash);
    h.extend_from_slice(format!("-LB0001-{n:012}").as_bytes());
    h
}

fn request(index: u32, begin: u32) -> [u8; 17] {
    let mut m = [0u8; 17];
    m[..4].copy_from_slice(&13u32.to_be_bytes());
    m[4] = 6;
    m[5..9].copy_from_slice(&index.to_be_bytes());
    m[9..13].copy_from_slice(&begin.to_be_bytes());
    m[13..].copy_from_slice(&16384u32.to_be_bytes());
    m
}

/// One leecher: downloads until `until`, counting payload into `buckets` (shared start `t0`).
#[allow(clippy::too_many_arguments)]
fn leech(
    addr: SocketAddr,
    ih: [u8; 20],
    n: usize,
    pieces: u32,
    pl: u32,
    t0: Instant,
    until: Instant,
    buckets: Buckets,
) -> u64 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(&handshake(ih, n)).unwrap();
    let mut hs = [0u8; 68];
    s.read_exact(&mut hs).unwrap();
    s.write_all(&[0, 0, 0, 1, 2]).unwrap(); // interested
    let blocks = pl / 16384;
    let mut next = (n as u32 * 97) % (pieces * blocks);
    let mut req = || {
        let b = next;
        next = (next + 1) % (pieces * blocks);
        request(b / blocks, (b % blocks) * 16384)
    };
    let mut buf = vec![0u8; 1 << 20];
    let (mut have, mut pos) = (0usize, 0usize);
    let mut skip = 0usize;
    let mut total = 0u64;
    let mut unchoked = false;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while Instant::now() < until {
        if pos == have {
            (pos, have) = (0, 0);
        }
        let k = match s.read(&mut buf[have..]) {
            Ok(0) => break,
            Ok(k) => k,
            Err(_) => continue,
        };
        have += k;
        let mut out = Vec::new();
        loop {
            if skip > 0 {
                let k = skip.min(have - pos);
                skip -= k;
                pos += k;
                if k == 0 {
                    break;
                }
                continue;
            }
            if have - pos < 5 {
                break;
            }
            let len = u32::from_be_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
            if len == 0 {
                pos += 4;
                continue;
            }
            match buf[pos + 4] {
                1 if !unchoked => {
                    unchoked = true;
                    for _ in 0..64 {
                        out.extend_from_slice(&req());
                    }
                }
                7 => {
                    let payload = (len - 9) as u64;
                    total += payload;
                    let i = (t0.elapsed().as_millis() / 100) as usize;
                    let mut b = buckets.lock().unwrap();
                    if b.len() <= i {
                        b.resize(i + 1, 0);
                    }
                    b[i] += payload;
                    drop(b);
                    out.extend_from_slice(&req());
                }
                _ => {}
            }
            let avail = have - pos;
            if avail >= 4 + len {
                pos += 4 + len;
            } else {
                skip = 4 + len - avail;
                pos = have;
            }
        }
        if pos > 0 && pos < have {
            buf.copy_within(pos..have, 0);
            have -= pos;
            pos = 0;
        }
        if !out.is_empty() {
            s.write_all(&out).unwrap();
        }
    }
    total
}

fn spawn_server(
    bin: &str,
    torrent: &std::path::Path,
    dir: &std::path::Path,
    cap: u64,
) -> (Child, SocketAddr) {
    let mut child = Command::new(bin)
        .env("URINGSEED_DHT_BOOTSTRAP", "")
        .args(["serve", "--listen", "127.0.0.1:0", "--upload-slots", "0"])
        .args(["--log-level", "warn", "--upload-limit", &format!("{cap}M")])
        .arg("--torrent")
        .arg(torrent)
        .arg("--data")
        .arg(dir)
        .env("XDG_STATE_HOME", dir.join("state"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    loop {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0);
        if let Some(a) = line.strip_prefix("listening: ") {
            addr = a.trim().parse().ok();
        }
        if line.starts_with("ready: ") {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (child, addr.unwrap())
}

fn main() {
    let mb = env_list("URINGSEED_BENCH_MB", "256")[0];
    let caps = env_list("URINGSEED_BENCH_CAPS", "1,10,100,1000");
    let conns = env_list("URINGSEED_BENCH_CONNS", "1,4,32");
    let secs = env_list("URINGSEED_BENCH_SECS", "20")[0];
    let bin = std::env::var("URINGSEED_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_uringseed").into());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("limits.bin");
    let mut f = std::fs::File::create(&file).unwrap();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..mb {
        for b in chunk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = (x >> 24) as u8;
        }
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    let opts = MakeOptions {
        path: file.clone(),
        piece_length: Some(1 << 20),
        quiet: true,
        ..Default::default()
    };
    let (bytes, t) = make(&opts).unwrap();
    let torrent = dir.path().join("limits.torrent");
    std::fs::write(&torrent, bytes).unwrap();
    println!("upload limit accuracy: {mb} MiB torrent, {secs} s per row, build {bin}");
    println!(
        "{:>9} {:>5} {:>11} {:>8} {:>14} {:>14} {:>12} {:>16}",
        "cap MB/s",
        "conns",
        "MB/s",
        "x cap",
        "slowest 1s/cap",
        "fastest 1s/cap",
        "burst/cap",
        "shares min..max"
    );
    for &cap in &caps {
        for &n in &conns {
            let (mut child, addr) = spawn_server(&bin, &torrent, dir.path(), cap);
            let buckets: Buckets = Arc::new(Mutex::new(Vec::new()));
            let t0 = Instant::now();
            let until = t0 + Duration::from_secs(secs);
            let handles: Vec<_> = (0..n as usize)
                .map(|i| {
                    let b = buckets.clone();
                    let (ih, pieces) = (t.info_hash.0, t.num_pieces() as u32);
                    std::thread::spawn(move || leech(addr, ih, i, pieces, 1 << 20, t0, until, b))
                })
                .collect();
            let per: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let _ = child.kill();
            let _ = child.wait();
            let b = buckets.lock().unwrap().clone();
            let capb = cap as f64 * 1e6;
            // Whole seconds after the first (the first holds the start-up burst), and the worst
            // window of ten consecutive buckets anywhere.
            let seconds: Vec<f64> = b
                .chunks(10)
                .skip(1)
                .filter(|c| c.len() == 10)
                .map(|c| c.iter().sum::<u64>() as f64)
                .collect();
            let worst = b
                .windows(10)
                .map(|w| w.iter().sum::<u64>())
                .max()
                .unwrap_or(0) as f64;
            let total: u64 = per.iter().sum();
            let rate = total as f64 / secs as f64;
            let mean = total as f64 / n as f64;
            let (lo, hi) = per.iter().fold((f64::MAX, 0f64), |(lo, hi), &p| {
                (lo.min(p as f64 / mean), hi.max(p as f64 / mean))
            });
            let min_s = seconds.iter().cloned().fold(f64::MAX, f64::min);
            let max_s = seconds.iter().cloned().fold(0f64, f64::max);
            println!(
                "{:>9} {:>5} {:>11.2} {:>8.3} {:>14.3} {:>14.3} {:>12.3} {:>10.2}..{:.2}",
                cap,
                n,
                rate / 1e6,
                rate / capb,
                min_s / capb,
                max_s / capb,
                worst / capb,
                lo,
                hi
            );
        }
    }
}
