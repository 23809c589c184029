//! Prometheus exposition and the small HTTP endpoint serving it (/metrics, /healthz, /readyz).
//!
//! Counters live as atomics in [`crate::stats::Stats`] (cheap on hot paths); each scrape copies
//! them into a fresh `prometheus` registry together with the shared histograms and the process
//! collector, and encodes the text format. The endpoint runs on its own thread, answers each
//! connection on a short-lived thread with read and write timeouts, and caps how many it serves
//! at once, so a hanging scraper cannot block the others or the server.

use crate::server::Shared;
use crate::stats::{ANNOUNCE_RESULTS, DROP_REASONS, HANDSHAKE_KINDS, REJECT_REASONS};
use prometheus::core::Collector;
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Connections answered at once; more are closed immediately.
const MAX_CONCURRENT: usize = 64;
/// Time a client has to send its whole request, and to take the reply.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Label values and a value.
type Sample<T> = (Vec<String>, T);

fn sample<T>(labels: &[&str], v: T) -> Sample<T> {
    (labels.iter().map(|l| l.to_string()).collect(), v)
}

fn counter_vec(reg: &Registry, name: &str, help: &str, labels: &[&str], values: Vec<Sample<u64>>) {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    for (l, n) in values {
        v.with_label_values(&l.iter().map(String::as_str).collect::<Vec<_>>())
            .inc_by(n);
    }
    reg.register(Box::new(v)).expect("unique metric");
}

fn gauge_vec(reg: &Registry, name: &str, help: &str, labels: &[&str], values: Vec<Sample<i64>>) {
    let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    for (l, n) in values {
        v.with_label_values(&l.iter().map(String::as_str).collect::<Vec<_>>())
            .set(n);
    }
    reg.register(Box::new(v)).expect("unique metric");
}

fn register<C: Collector + 'static>(reg: &Registry, c: C) {
    reg.register(Box::new(c)).expect("unique metric");
}

/// Counts by label, with every `known` label present (0 if it never occurred).
fn by_label(known: &[&str], v: Vec<(&'static str, u64)>) -> Vec<Sample<u64>> {
    let mut out: Vec<Sample<u64>> = known
        .iter()
        .filter(|k| !v.iter().any(|(l, _)| l == *k))
        .map(|k| sample(&[k], 0))
        .collect();
    out.extend(v.into_iter().map(|(k, n)| sample(&[k], n)));
    out
}

/// The metrics in Prometheus text format.
pub fn render(shared: &Shared, backend: &str) -> String {
    let s = &shared.stats;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let reg = Registry::new();
    counter_vec(
        &reg,
        "uringseed_uploaded_bytes_total",
        "Bytes sent to peers: piece data (payload) and everything else (protocol).",
        &["type"],
        vec![
            sample(&["payload"], get(&s.uploaded_payload_bytes)),
            sample(&["protocol"], get(&s.uploaded_protocol_bytes)),
        ],
    );
    let mut peers = Vec::new();
    for (dir, out) in [("incoming", false), ("outgoing", true)] {
        for (fam, v6) in [("ipv4", false), ("ipv6", true)] {
            peers.push(sample(&[dir, fam], s.peers.get(out, v6) as i64));
        }
    }
    gauge_vec(
        &reg,
        "uringseed_peers_connected",
        "Peers past the handshake.",
        &["direction", "family"],
        peers,
    );
    let torrents = shared.torrents();
    let unchoked: usize = torrents.iter().map(|t| t.unchoked()).sum();
    gauge_vec(
        &reg,
        "uringseed_peers_unchoked",
        "Peers allowed to request data.",
        &[],
        vec![sample(&[], unchoked as i64)],
    );
    for (name, help, v) in [
        (
            "uringseed_connections_accepted_total",
            "Incoming connections accepted.",
            get(&s.connections_accepted),
        ),
        (
            "uringseed_connections_dialed_total",
            "Outgoing connections attempted.",
            get(&s.connections_dialed),
        ),
        (
            "uringseed_connections_dial_failed_total",
            "Outgoing connections that could not be made.",
            get(&s.connections_dial_failed),
        ),
        (
            "uringseed_requests_served_total",
            "Block requests served.",
            get(&s.requests_served),
        ),
        (
            "uringseed_zero_copy_bytes_total",
            "Payload bytes sent straight from the page cache (the rest is read from disk first).",
            get(&s.zero_copy_bytes),
        ),
        (
            "uringseed_piece_read_errors_total",
            "Reads of piece data that failed.",
            get(&s.piece_read_errors),
        ),
        (
            "uringseed_pieces_withdrawn_total",
            "Pieces withdrawn while serving because their data could not be read.",
            get(&s.pieces_withdrawn),
        ),
        (
            "uringseed_hash_verified_bytes_total",
            "Bytes hashed by data checks.",
            get(&s.hash_bytes),
        ),
        (
            "uringseed_hash_verified_pieces_total",
            "Pieces hashed by data checks.",
            get(&s.hash_pieces),
        ),
        (
            "uringseed_hash_failed_pieces_total",
            "Pieces found bad (hash mismatch, missing or wrong-sized file) by data checks.",
            get(&s.hash_failed_pieces),
        ),
    ] {
        counter_vec(&reg, name, help, &[], vec![sample(&[], v)]);
    }
    counter_vec(
        &reg,
        "uringseed_requests_rejected_total",
        "Block requests refused, by reason.",
        &["reason"],
        by_label(REJECT_REASONS, s.rejected_all()),
    );
    counter_vec(
        &reg,
        "uringseed_peers_dropped_total",
        "Connections closed by the server, by reason.",
        &["reason"],
        by_label(DROP_REASONS, s.dropped_all()),
    );
    counter_vec(
        &reg,
        "uringseed_peer_handshakes_total",
        "Peers that completed the handshake, by kind (plain, or encrypted handshake with a \
         plaintext or RC4 payload).",
        &["kind"],
        by_label(HANDSHAKE_KINDS, s.handshakes_all()),
    );
    counter_vec(
        &reg,
        "uringseed_tracker_announces_total",
        "Tracker announces, by result.",
        &["result"],
        by_label(ANNOUNCE_RESULTS, s.announces_all()),
    );
    let state = |a: &AtomicUsize| a.load(Ordering::Relaxed) as i64;
    gauge_vec(
        &reg,
        "uringseed_torrents",
        "Torrents by state.",
        &["state"],
        vec![
            sample(&["checking"], state(&s.torrents_checking)),
            sample(
                &["seeding"],
                torrents.iter().filter(|t| t.view.have.count() > 0).count() as i64,
            ),
            // Served but with no piece that can be served (data missing or all bad).
            sample(
                &["error"],
                torrents.iter().filter(|t| t.view.have.count() == 0).count() as i64,
            ),
        ],
    );
    let trackers = shared.tracker_status();
    let working = trackers.iter().filter(|t| t.2.ok).count() as i64;
    gauge_vec(
        &reg,
        "uringseed_trackers",
        "Trackers by the result of their last announce.",
        &["state"],
        vec![
            sample(&["working"], working),
            sample(&["failing"], trackers.len() as i64 - working),
        ],
    );
    gauge_vec(
        &reg,
        "uringseed_io_backend",
        "The I/O backend in use (1).",
        &["backend"],
        vec![sample(&[backend], 1)],
    );
    gauge_vec(
        &reg,
        "uringseed_resident_memory_bytes",
        "Resident memory by kind: anon is the server's own, file is page cache of the data files \
         mapped for zero-copy sends (reclaimable by the kernel).",
        &["kind"],
        resident_memory()
            .into_iter()
            .map(|(kind, bytes)| sample(&[kind], bytes))
            .collect(),
    );
    gauge_vec(
        &reg,
        "uringseed_build_info",
        "Build information (1).",
        &["version"],
        vec![sample(&[env!("CARGO_PKG_VERSION")], 1)],
    );
    register(&reg, s.hist.piece_read_seconds.clone());
    register(&reg, s.hist.write_bytes.clone());
    register(&reg, s.hist.announce_seconds.clone());
    register(
        &reg,
        prometheus::process_collector::ProcessCollector::for_self(),
    );
    if shared.config.metrics.per_torrent {
        let (mut up, mut peer_counts, mut pieces) = (Vec::new(), Vec::new(), Vec::new());
        let mut swarm = Vec::new();
        for t in &torrents {
            let ih = t.view.info_hash.to_hex();
            let have = t.view.have.count() as i64;
            let l = |extra: &[&str]| -> Vec<String> {
                let mut v = vec![ih.clone(), t.name.clone()];
                v.extend(extra.iter().map(|e| e.to_string()));
                v
            };
            up.push((l(&[]), t.uploaded.load(Ordering::Relaxed)));
            peer_counts.push((l(&[]), t.peers.load(Ordering::Relaxed) as i64));
            pieces.push((l(&["verified"]), have));
            pieces.push((l(&["missing"]), t.view.layout.num_pieces() as i64 - have));
            // The swarm as the trackers see it: the largest count any of them last reported.
            let of_torrent = || trackers.iter().filter(|s| s.0 == t.view.info_hash);
            let seeders = of_torrent().filter_map(|s| s.2.seeders).max();
            let leechers = of_torrent().filter_map(|s| s.2.leechers).max();
            for (role, n) in [("seeders", seeders), ("leechers", leechers)] {
                if let Some(n) = n {
                    swarm.push((l(&[role]), i64::from(n)));
                }
            }
        }
        counter_vec(
            &reg,
            "uringseed_torrent_uploaded_bytes_total",
            "Payload bytes sent, per torrent.",
            &["info_hash", "name"],
            up,
        );
        gauge_vec(
            &reg,
            "uringseed_torrent_peers",
            "Connected peers, per torrent.",
            &["info_hash", "name"],
            peer_counts,
        );
        gauge_vec(
            &reg,
            "uringseed_torrent_pieces",
            "Pieces per torrent, verified or missing.",
            &["info_hash", "name", "state"],
            pieces,
        );
        gauge_vec(
            &reg,
            "uringseed_torrent_swarm_peers",
            "Seeders and leechers in the swarm, as the trackers' last announce replies counted them.",
            &["info_hash", "name", "role"],
            swarm,
        );
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&reg.gather(), &mut out)
        .expect("text encoding");
    String::from_utf8(out).expect("text format is UTF-8")
}

/// RssAnon and RssFile of this process, in bytes (from /proc/self/status).
fn resident_memory() -> Vec<(&'static str, i64)> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| -> i64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok())
            .unwrap_or(0)
    };
    vec![
        ("anon", kib("RssAnon:") * 1024),
        ("file", kib("RssFile:") * 1024),
    ]
}

/// Binds the endpoint; returns its address and the thread serving it until shutdown.
pub fn spawn(
    shared: Arc<Shared>,
    addr: SocketAddr,
    backend: &'static str,
) -> std::io::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let busy = Arc::new(AtomicUsize::new(0));
    let t = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            while !*shared.shutdown.borrow() {
                match listener.accept() {
                    Ok((conn, _)) => {
                        if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONCURRENT {
                            busy.fetch_sub(1, Ordering::AcqRel);
                            continue; // dropped: closed at once
                        }
                        let (shared, busy) = (shared.clone(), busy.clone());
                        std::thread::spawn(move || {
                            let _ = answer(&shared, conn, backend);
                            busy.fetch_sub(1, Ordering::AcqRel);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    Err(e) => {
                        tracing::warn!("metrics endpoint: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok((local, t))
}

fn answer(shared: &Shared, conn: TcpStream, backend: &str) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    // One deadline for the whole request (a client trickling bytes cannot hold a slot longer).
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    let mut reader = conn.try_clone()?;
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || head.len() > 8192 {
            return Ok(());
        }
        reader.set_read_timeout(Some(left))?;
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let request = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match path {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(shared, backend),
        ),
        "/healthz" if !*shared.shutdown.borrow() => ("200 OK", "text/plain", "ok\n".to_string()),
        "/healthz" => (
            "503 Service Unavailable",
            "text/plain",
            "shutting down\n".to_string(),
        ),
        "/readyz" if shared.stats.torrents_checking.load(Ordering::Relaxed) == 0 => {
            ("200 OK", "text/plain", "ready\n".to_string())
        }
        "/readyz" => (
            "503 Service Unavailable",
            "text/plain",
            "checking data\n".to_string(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let mut w = conn;
    write!(w, "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
    w.flush()
}
