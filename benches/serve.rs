//! End-to-end seeding throughput: uringseed against a plain `sendfile` streamer, same run.
//!
//! Run: `cargo bench --bench serve`. Writes a file (URINGSEED_BENCH_MB, default 1024), makes a
//! torrent of it, then for 1 and 4 connections (URINGSEED_BENCH_CONNS="1,4"):
//! - starts `uringseed serve` (release build) and a load generator of simulated leechers, each
//!   downloading the whole torrent with URINGSEED_BENCH_DEPTH (default 128) 16 KiB requests in
//!   flight, and reports aggregate MB/s, p50/p99 request-to-block latency and the server's CPU
//!   seconds per GiB (utime + stime from /proc/PID/stat);
//! - starts this binary as a `sendfile` server (a thread per connection streaming the file) and
//!   reads the same bytes over the same number of connections: the kernel's baseline.
//!
//! Both servers are separate processes, so their CPU is measured apart from the load generator's.
//! On 2 cores the load generator competes with the server for CPU in both cases.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BLOCK: u32 = 16384;

fn env(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0 // USER_HZ is 100 on Linux
}

/// One simulated leecher: downloads the whole torrent with `depth` requests in flight; returns
/// per-block latencies in microseconds.
fn leech(
    addr: SocketAddr,
    info_hash: [u8; 20],
    piece_len: u64,
    total: u64,
    depth: usize,
) -> Vec<u32> {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut hs = vec![19u8];
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 4]);
    hs.extend_from_slice(&info_hash);
    hs.extend_from_slice(b"-LG0001-loadgenerator"[..20].as_ref());
    s.write_all(&hs).unwrap();
    s.write_all(&[0, 0, 0, 1, 2]).unwrap(); // interested
    let mut blocks = Vec::new();
    let mut off = 0u64;
    while off < total {
        let index = off / piece_len;
        let begin = off % piece_len;
        let len = (piece_len - begin).min(u64::from(BLOCK)).min(total - off);
        blocks.push((index as u32, begin as u32, len as u32));
        off += len;
    }
    let mut buf = vec![0u8; 1 << 20];
    let (mut have, mut pos) = (0usize, 0usize);
    let mut handshake_left = 68usize;
    let mut unchoked = false;
    let (mut next, mut done) = (0usize, 0usize);
    let mut sent_at: std::collections::VecDeque<Instant> = Default::default();
    let mut lat = Vec::with_capacity(blocks.len());
    let mut skip = 0usize;
    let mut out = Vec::new();
    while done < blocks.len() {
        if unchoked && next < blocks.len() && next - done < depth {
            out.clear();
            while next < blocks.len() && next - done < depth {
                let (i, b, l) = blocks[next];
                out.extend_from_slice(&[0, 0, 0, 13, 6]);
                for v in [i, b, l] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                sent_at.push_back(Instant::now());
                next += 1;
            }
            s.write_all(&out).unwrap();
        }
        if pos == have {
            pos = 0;
            have = 0;
        }
        let n = s.read(&mut buf[have..]).unwrap();
        assert!(n > 0, "server closed the connection");
        have += n;
        loop {
            if handshake_left > 0 {
                let k = handshake_left.min(have - pos);
                handshake_left -= k;
                pos += k;
                continue;
            }
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
                if have - pos == 4 && buf[pos..pos + 4] == [0; 4] {
                    pos += 4;
                    continue;
                }
                break;
            }
            let len = u32::from_be_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
            if len == 0 {
                pos += 4;
                continue;
            }
            match buf[pos + 4] {
                1 => unchoked = true,
                7 => {
                    done += 1;
                    lat.push(
                        sent_at
                            .pop_front()
                            .map_or(0, |t| t.elapsed().as_micros() as u32),
                    );
                }
                16 => panic!("request rejected"),
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
        // Keep unconsumed bytes at the front of the buffer.
        if pos > 0 && pos < have {
            buf.copy_within(pos..have, 0);
            have -= pos;
            pos = 0;
        }
    }
    lat
}

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

fn spawn_server(mut cmd: Command) -> (Child, SocketAddr) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut text = String::new();
    let mut byte = [0u8; 1];
    let deadline = Instant::now() + Duration::from_secs(120);
    let addr = loop {
        assert!(Instant::now() < deadline, "server did not start");
        out.read_exact(&mut byte).unwrap();
        text.push(byte[0] as char);
        if byte[0] == b'\n' {
            let line = text.trim().trim_start_matches("listening: ").to_string();
            text.clear();
            if let Ok(a) = line.parse() {
                break a;
            }
        }
    };
    std::mem::forget(out);
    (child, addr)
}

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
    let _ = child.kill();
    let _ = child.wait();
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

fn main() {
    if let Ok(path) = std::env::var("URINGSEED_SENDFILE_SERVER") {
        return sendfile_server(&path);
    }
    let mb = env("URINGSEED_BENCH_MB", 1024);
    let depth = env("URINGSEED_BENCH_DEPTH", 128);
    let conns: Vec<usize> = std::env::var("URINGSEED_BENCH_CONNS")
        .unwrap_or_else(|_| "1,4".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.iso");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..mb {
            for c in block.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&block).unwrap();
        }
    }
    let torrent_path = dir.path().join("bench.torrent");
    let opts = uringseed::make::MakeOptions {
        path: file.clone(),
        quiet: true,
        ..Default::default()
    };
    let (bytes, t) = uringseed::make::make(&opts).unwrap();
    std::fs::write(&torrent_path, bytes).unwrap();
    let total = t.total_length;
    println!(
        "serve benchmark: {mb} MiB torrent in page cache, {depth} requests in flight per leecher"
    );
    let mut rows = Vec::new();
    for &n in &conns {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_uringseed"));
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upload-slots",
            "0",
            "--log-level",
            "warn",
            "--torrent",
        ])
        .arg(&torrent_path)
        .arg("--data")
        .arg(dir.path());
        let (mut child, addr) = spawn_server(cmd);
        let (ih, pl) = (t.info_hash.0, t.piece_length);
        rows.push(measure(
            format!("uringseed, {n} leecher(s)"),
            &mut child,
            || {
                let handles: Vec<_> = (0..n)
                    .map(|_| std::thread::spawn(move || leech(addr, ih, pl, total, depth)))
                    .collect();
                let lat: Vec<u32> = handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap())
                    .collect();
                (total * n as u64, lat)
            },
        ));
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env("URINGSEED_SENDFILE_SERVER", &file);
        let (mut child, addr) = spawn_server(cmd);
        rows.push(measure(
            format!("sendfile stream, {n} conn(s)"),
            &mut child,
            || {
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
            },
        ));
    }
    println!(
        "{:<28} {:>9} {:>14} {:>8} {:>8} {:>12}",
        "what", "MB/s", "server CPU s/GiB", "p50 ms", "p99 ms", "x sendfile"
    );
    for pair in rows.chunks(2) {
        let base = pair[1].mbps;
        for r in pair {
            println!(
                "{:<28} {:>9.0} {:>14.2} {:>8.2} {:>8.2} {:>12.2}",
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
