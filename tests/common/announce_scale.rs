//! The announcer-at-scale scenario (issue 20), shared by `tests/tracker_scale.rs` (1,000
//! torrents, a size that fits CI) and `benches/tracker_scale.rs` (10,000): N one-file torrents,
//! each with a UDP tier and an HTTP tier pointing at small fake trackers in this process
//! (loopback, port 0) that record each announce's info-hash and event and answer with a 30-minute
//! interval so no regular re-announce happens. [`run`] starts one server with all of them, waits
//! until every `started` has reached both trackers, sends SIGTERM, and reports what the trackers
//! saw, how long it took, the server's thread-count peak (sampled from /proc/PID/task every 5 ms)
//! and memory peak, and how many TCP connections the HTTP announces used.

use super::proc::*;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uringseed::make::{make, MakeOptions};

/// (info-hash, event) of every announce a tracker got.
type Seen = Arc<Mutex<Vec<([u8; 20], u32)>>>;

fn events(seen: &Seen, event: u32) -> HashSet<[u8; 20]> {
    let seen = seen.lock().unwrap();
    seen.iter()
        .filter(|(_, e)| *e == event)
        .map(|(h, _)| *h)
        .collect()
}

/// A BEP 15 tracker: connect id 0x1234, announces recorded (event 2 started, 3 stopped).
fn udp_tracker(stop: Arc<AtomicBool>) -> (u16, Seen) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let out = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let p = &buf[..n];
            if n < 16 {
                continue;
            }
            let action = u32::from_be_bytes(p[8..12].try_into().unwrap());
            let mut r = action.to_be_bytes().to_vec();
            r.extend_from_slice(&p[12..16]);
            match action {
                0 => r.extend_from_slice(&0x1234u64.to_be_bytes()),
                1 if n >= 98 => {
                    let ih: [u8; 20] = p[16..36].try_into().unwrap();
                    let event = u32::from_be_bytes(p[80..84].try_into().unwrap());
                    out.lock().unwrap().push((ih, event));
                    for v in [1800u32, 0, 1] {
                        r.extend_from_slice(&v.to_be_bytes());
                    }
                }
                _ => continue,
            }
            let _ = sock.send_to(&r, from);
        }
    });
    (port, seen)
}

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// An HTTP/1.1 tracker with keep-alive: returns its port, the announces and the number of TCP
/// connections it accepted.
fn http_tracker(stop: Arc<AtomicBool>) -> (u16, Seen, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen, conns): (Seen, Arc<AtomicUsize>) = Default::default();
    let (out, count) = (seen.clone(), conns.clone());
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            count.fetch_add(1, Ordering::Relaxed);
            let out = out.clone();
            std::thread::spawn(move || {
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let mut w = stream.try_clone().unwrap();
                let mut r = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                    }
                    let target = line.split_whitespace().nth(1).unwrap_or_default();
                    let query = target.split_once('?').map_or("", |(_, q)| q);
                    let params: HashMap<&str, &str> = query
                        .split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .collect();
                    let ih: [u8; 20] = unescape(params["info_hash"]).try_into().unwrap();
                    let event = match params.get("event") {
                        Some(&"started") => 2,
                        Some(&"stopped") => 3,
                        _ => 0,
                    };
                    out.lock().unwrap().push((ih, event));
                    let body = b"d8:intervali1800e5:peers0:e";
                    // One write: head and body in separate small segments would wait for a
                    // delayed ACK (Nagle) and cap this tracker at ~25 replies/s per connection.
                    let mut reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    reply.extend_from_slice(body);
                    if w.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen, conns)
}

/// Threads of process `pid` now (0 once it is gone).
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// Peak resident set (VmHWM) of process `pid` in KiB, 0 if unknown.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What one [`run`] saw.
pub struct Report {
    pub torrents: usize,
    /// Every torrent's info-hash.
    pub want: HashSet<[u8; 20]>,
    pub udp_started: HashSet<[u8; 20]>,
    pub http_started: HashSet<[u8; 20]>,
    pub udp_stopped: HashSet<[u8; 20]>,
    pub http_stopped: HashSet<[u8; 20]>,
    /// Start of the process to its `listening:` line.
    pub to_listening: Duration,
    /// `listening:` to the last torrent's `ready:` line (checked and serving; to 0.1 s; `None`
    /// if that was not seen before every `started` was).
    pub to_all_ready: Option<Duration>,
    /// `listening:` to the last `started` heard by either tracker (or the 300 s bound).
    pub to_all_started: Duration,
    /// SIGTERM to exit.
    pub sigterm_to_exit: Duration,
    pub exit_ok: bool,
    pub max_threads: usize,
    pub peak_rss_kib: u64,
    pub http_connections: usize,
    pub http_announces: usize,
    /// The server's output, for failure messages.
    pub log: String,
}

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "{} torrents x 2 trackers: listening {:.2?} after start, all ready {:.1?} and all \
             started {:.2?} after that; SIGTERM to exit {:.2?}; max threads {}; peak RSS {} KiB; HTTP connections {} \
             for {} announces",
            self.torrents,
            self.to_listening,
            self.to_all_ready,
            self.to_all_started,
            self.sigterm_to_exit,
            self.max_threads,
            self.peak_rss_kib,
            self.http_connections,
            self.http_announces
        )
    }
}

/// Runs the scenario with `torrents` torrents, `workers` serving threads and
/// `tracker.stop_timeout_secs = stop_timeout_secs`, with the binary `bin` (else this build's).
pub fn run(
    torrents: usize,
    workers: usize,
    stop_timeout_secs: u64,
    bin: Option<&std::path::Path>,
) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (udp_port, udp_seen) = udp_tracker(stop.clone());
    let (http_port, http_seen, http_conns) = http_tracker(stop.clone());
    let tiers = vec![
        vec![format!("udp://127.0.0.1:{udp_port}/announce")],
        vec![format!("http://127.0.0.1:{http_port}/announce")],
    ];
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = {workers}\nstate_dir = \"{}\"\n\
         [tracker]\nstop_timeout_secs = {stop_timeout_secs}\nscrape_interval_secs = 0\n\
         connect_out = false\n",
        dir.path().join("state").display()
    );
    let mut want = HashSet::new();
    for i in 0..torrents {
        let file = data.join(format!("f{i}.bin"));
        std::fs::write(&file, format!("torrent number {i}")).unwrap();
        let (bytes, t) = make(&MakeOptions {
            path: file,
            trackers: tiers.clone(),
            threads: 1,
            quiet: true,
            ..Default::default()
        })
        .unwrap();
        want.insert(t.info_hash.0);
        let path: PathBuf = dir.path().join(format!("t{i}.torrent"));
        std::fs::write(&path, bytes).unwrap();
        config.push_str(&format!(
            "[[torrent]]\ntorrent = \"{}\"\ndata = \"{}\"\n",
            path.display(),
            data.display()
        ));
    }
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config).unwrap();

    let t_spawn = Instant::now();
    let mut proc = Proc::spawn(
        "uringseed",
        bin.map_or_else(uringseed, uringseed_at)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .args(["--log-level", "info"]),
        dir.path(),
    );
    let pid = proc.pid();
    let max_threads = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (max, stop) = (max_threads.clone(), stop.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(600) {
                max.fetch_max(threads(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    proc.wait_line("listening: ", Duration::from_secs(300));
    let to_listening = t_spawn.elapsed();
    let t0 = Instant::now();
    let mut to_all_ready = None;
    while (events(&udp_seen, 2).len() < torrents || events(&http_seen, 2).len() < torrents)
        && t0.elapsed() < Duration::from_secs(300)
    {
        if to_all_ready.is_none() && proc.stdout_text().matches("\nready: ").count() >= torrents {
            to_all_ready = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let to_all_started = t0.elapsed();
    if to_all_ready.is_none() && proc.stdout_text().matches("\nready: ").count() >= torrents {
        to_all_ready = Some(to_all_started);
    }
    let peak_rss_kib = peak_rss_kib(pid);

    let t1 = Instant::now();
    let status = proc.terminate(Duration::from_secs(stop_timeout_secs + 30));
    let sigterm_to_exit = t1.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let http_announces = http_seen.lock().unwrap().len();
    Report {
        torrents,
        want,
        udp_started: events(&udp_seen, 2),
        http_started: events(&http_seen, 2),
        udp_stopped: events(&udp_seen, 3),
        http_stopped: events(&http_seen, 3),
        to_listening,
        to_all_ready,
        to_all_started,
        sigterm_to_exit,
        exit_ok: status.is_some_and(|s| s.success()),
        max_threads: max_threads.load(Ordering::Relaxed),
        peak_rss_kib,
        http_connections: http_conns.load(Ordering::Relaxed),
        http_announces,
        log: proc.report(),
    }
}
