//! The announcer at scale (issue 20, a size that fits CI): 1,000 torrents, each with a UDP tier
//! and an HTTP tier, on one server. Every torrent's `started` and, on SIGTERM, `stopped` must
//! reach both trackers (the `stopped` ones within `tracker.stop_timeout_secs`), while the
//! server's thread count stays bounded (sampled from /proc/PID/task the whole time) and the HTTP
//! announces reuse a few keep-alive connections instead of one connection each.
//!
//! Both trackers are small fakes in this test (loopback, port 0): they record each announce's
//! info-hash and event and answer with a 30-minute interval so no regular re-announce happens.

mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uringseed::make::{make, MakeOptions};

const TORRENTS: usize = 1000;
/// The server's thread count may never exceed this (2 workers, the services, the hashing
/// threads of the startup check, at most 16 HTTP announce threads).
const MAX_THREADS: usize = 48;

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
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    if w.write_all(head.as_bytes()).is_err() || w.write_all(body).is_err() {
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

#[test]
fn a_thousand_torrents_announce_and_stop_with_bounded_threads_and_connections() {
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
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\nstate_dir = \"{}\"\n\
         [tracker]\nstop_timeout_secs = 5\nscrape_interval_secs = 0\nconnect_out = false\n",
        dir.path().join("state").display()
    );
    let mut want = HashSet::new();
    for i in 0..TORRENTS {
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

    let mut proc = Proc::spawn(
        "uringseed",
        uringseed()
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
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(300) {
                max.fetch_max(threads(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    proc.wait_line("listening: ", Duration::from_secs(60));
    let t0 = Instant::now();
    while (events(&udp_seen, 2).len() < TORRENTS || events(&http_seen, 2).len() < TORRENTS)
        && t0.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = t0.elapsed();
    assert_eq!(
        events(&udp_seen, 2),
        want,
        "UDP `started` for every torrent\n{}",
        proc.report()
    );
    assert_eq!(
        events(&http_seen, 2),
        want,
        "HTTP `started` for every torrent\n{}",
        proc.report()
    );

    let t1 = Instant::now();
    let status = proc.terminate(Duration::from_secs(15));
    let stopped = t1.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit: {status:?}\n{}",
        proc.report()
    );
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let (max, conns) = (
        max_threads.load(Ordering::Relaxed),
        http_conns.load(Ordering::Relaxed),
    );
    eprintln!(
        "{TORRENTS} torrents x 2 trackers: all started in {started:?}; SIGTERM to exit {stopped:?}; \
         max threads {max}; HTTP connections {conns} for {} announces",
        http_seen.lock().unwrap().len()
    );
    assert_eq!(
        events(&udp_seen, 3),
        want,
        "UDP `stopped` for every torrent\n{}",
        proc.report()
    );
    assert_eq!(
        events(&http_seen, 3),
        want,
        "HTTP `stopped` for every torrent\n{}",
        proc.report()
    );
    assert!(
        stopped < Duration::from_secs(5 + 3),
        "stopping took {stopped:?}"
    );
    assert!(max > 0 && max <= MAX_THREADS, "thread count reached {max}");
    assert!(
        conns <= 40,
        "{conns} HTTP connections for {} announces",
        2 * TORRENTS
    );
}
