//! What the benchmarks share: simulated leechers (a handshake, then the whole torrent with
//! `depth` requests in flight), starting a server and reading its address from its stdout,
//! stopping it (or killing it if the bench panics), a process's CPU seconds, and numbers from
//! the environment.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BLOCK: u32 = 16384;

/// The number in environment variable `k`, else `d`.
pub fn env(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// A field of /proc/PID/status in KiB (VmRSS, RssAnon, RssFile); 0 if unreadable.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0 // USER_HZ is 100 on Linux
}

/// One simulated leecher: downloads the whole torrent with `depth` requests in flight; returns
/// per-block latencies in microseconds.
/// A handshake with a peer id unique in this process.
pub fn handshake(info_hash: [u8; 20]) -> Vec<u8> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut hs = vec![19u8];
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 4]);
    hs.extend_from_slice(&info_hash);
    hs.extend_from_slice(format!("-LG0001-{n:012}").as_bytes());
    hs
}

pub fn leech(
    addr: SocketAddr,
    info_hash: [u8; 20],
    piece_len: u64,
    total: u64,
    depth: usize,
) -> Vec<u32> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&handshake(info_hash)).unwrap();
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

pub fn spawn_server(
    mut cmd: Command,
    addr_prefix: &str,
    ready: Option<&str>,
) -> (Child, SocketAddr) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    reap_on_panic(child.id());
    let out = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(out));
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut addr = None;
    while let Some(Ok(line)) = lines.next() {
        assert!(Instant::now() < deadline, "server did not start");
        if let Some(rest) = line.strip_prefix(addr_prefix) {
            let rest = rest.trim();
            addr = rest.parse().ok().or_else(|| {
                rest.parse::<u16>()
                    .ok()
                    .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            });
            if ready.is_none() {
                break;
            }
        } else if ready.is_some_and(|r| line.starts_with(r)) && addr.is_some() {
            break;
        }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr.expect("server printed no address"))
}

/// Servers started here, killed if the bench panics (a leecher's assertion, say) instead of
/// being left running: by PID, and only while that PID is still a child of this process.
static STARTED: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn reap_on_panic(pid: u32) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let pids = STARTED.lock().map(|p| p.clone()).unwrap_or_default();
            for pid in pids.into_iter().filter(|&p| is_my_child(p)) {
                // SAFETY: a signal to a process this one started and has not reaped.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            default(info);
        }));
    });
    if let Ok(mut p) = STARTED.lock() {
        p.push(pid);
    }
}

/// True while `pid` is a child of this process not yet reaped (waitid needs no descriptor, so
/// this holds even when the panic was running out of them).
fn is_my_child(pid: u32) -> bool {
    // SAFETY: waitid writes one siginfo_t, which `info` is; WNOWAIT leaves the child as it is.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        ) == 0
    }
}

pub fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// `n` leechers each pulling the whole torrent from `addr`.
pub fn leechers(
    n: usize,
    addr: SocketAddr,
    t: &uringseed::metainfo::Torrent,
    depth: usize,
) -> (u64, Vec<u32>) {
    let (ih, pl, total) = (t.info_hash.0, t.piece_length, t.total_length);
    let handles: Vec<_> = (0..n)
        .map(|_| std::thread::spawn(move || leech(addr, ih, pl, total, depth)))
        .collect();
    let lat = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    (total * n as u64, lat)
}

/// Starts a server process and collects its stdout lines until one starts with `ready`
/// (bounded: `None` if that line has not come within `within`, the child killed); keeps
/// draining stdout afterwards so it never blocks on a full pipe.
pub fn spawn_until(
    mut cmd: Command,
    ready: &str,
    within: Duration,
) -> Option<(Child, Vec<String>)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    reap_on_panic(child.id());
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(Result::ok) {
            // Once nobody listens any more, keep draining.
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + within;
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let done = line.starts_with(ready);
                lines.push(line);
                if done {
                    return Some((child, lines));
                }
            }
            Err(_) => {
                stop(child);
                return None;
            }
        }
    }
}

/// The sum of every sample of metric `name` (any labels) on the Prometheus endpoint at `addr`
/// (`/metrics`); `None` if it could not be read or has no such metric. Bounded by a 5 s timeout.
pub fn metric_sum(addr: SocketAddr, name: &str) -> Option<f64> {
    let body = http_get(addr, "/metrics")?;
    let mut found = None;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let v: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        *found.get_or_insert(0.0) += v;
    }
    found
}

/// The body of a plain HTTP/1.0 GET (no chunked encoding) of `path` from `addr` (5 s timeouts).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some(body.to_string())
}

/// Writes `mb` MiB of xorshift bytes to `path` (incompressible, the same every run).
pub fn write_pseudo_random(path: &std::path::Path, mb: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
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

/// Makes a torrent of `file` with uringseed's own maker and writes it to `out`.
pub fn make_torrent(file: &std::path::Path, out: &std::path::Path) -> uringseed::metainfo::Torrent {
    let opts = uringseed::make::MakeOptions {
        path: file.to_path_buf(),
        quiet: true,
        ..Default::default()
    };
    let (bytes, t) = uringseed::make::make(&opts).unwrap();
    std::fs::write(out, bytes).unwrap();
    t
}

/// `BIN serve` of one torrent on a loopback port, every peer unchoked, quiet, its state under
/// `dir`, no DHT bootstrap off the machine.
pub fn serve_cmd(
    bin: &str,
    torrent: &std::path::Path,
    dir: &std::path::Path,
    config: &std::path::Path,
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("URINGSEED_DHT_BOOTSTRAP", "")
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upload-slots",
            "0",
            "--log-level",
            "warn",
            "--config",
        ])
        .arg(config)
        .arg("--torrent")
        .arg(torrent)
        .arg("--data")
        .arg(dir)
        .env("XDG_STATE_HOME", dir.join("state"));
    cmd
}
