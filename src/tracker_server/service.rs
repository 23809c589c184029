//! The built-in tracker's I/O (`tracker_server.listen`): for every configured address an HTTP
//! server ([`crate::http`], with its connection and size limits; `/announce` and `/scrape`) and
//! a UDP socket thread (BEP 15), all feeding one [`TrackerCore`] behind a mutex. The async
//! service `tracker-server` runs the HTTP side, ticks the core every [`TICK`] (peer expiry,
//! connection-id secrets) and keeps the core's allow-list equal to the server's torrent table
//! (at start, whenever the table changes, and on every tick), so a torrent added later is
//! tracked as soon as it is in the table. [`TrackerServerStatus`] hands the counters to the
//! metrics. The sans-IO core knows nothing of sockets or clocks; this module owns them.

use super::swarm::SwarmConfig;
use super::{Stats, TrackerConfig, TrackerCore};
use crate::config::TrackerServerConfig;
use crate::http::{Limits, Reply, Router};
use crate::lifecycle::{Services, StartError};
use crate::metainfo::InfoHash;
use crate::state::Shared;
use hyper::{Method, StatusCode};
use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often the core is ticked and the allow-list compared with the torrent table.
pub const TICK: Duration = Duration::from_secs(5);
/// How long a UDP thread blocks in one receive: it sees the shutdown within this.
const UDP_POLL: Duration = Duration::from_millis(500);

/// What one HTTP tracker connection may use: requests are one short GET.
const LIMITS: Limits = Limits {
    max_connections: 512,
    // Announces from one address (a NAT, a load test) may use every slot.
    max_per_ip: 512,
    per_ip_on_loopback: false,
    max_header_bytes: 8192,
    deadline: Duration::from_secs(10),
    header_timeout: Duration::from_secs(5),
    max_body_bytes: 1024,
};

/// The running tracker's counters, for the metrics (read under the core's lock when scraped).
#[derive(Debug)]
pub struct TrackerServerStatus {
    core: Arc<Mutex<TrackerCore>>,
    /// The addresses served (ports resolved), TCP and UDP alike.
    pub addrs: Vec<SocketAddr>,
}

impl TrackerServerStatus {
    pub fn stats(&self) -> Stats {
        lock(&self.core).stats
    }
}

fn lock(core: &Mutex<TrackerCore>) -> MutexGuard<'_, TrackerCore> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}

/// The core's configuration from the `[tracker_server]` table.
pub fn core_config(c: &TrackerServerConfig) -> TrackerConfig {
    TrackerConfig {
        swarm: SwarmConfig {
            open: c.open,
            interval: Duration::from_secs(c.interval_secs),
            min_interval: Duration::from_secs(c.min_interval_secs),
            max_peers_per_torrent: c.max_peers_per_torrent,
            max_torrents: c.max_torrents,
            max_peers_total: c.max_peers_total,
            default_numwant: SwarmConfig::default().default_numwant.min(c.max_numwant),
            max_numwant: c.max_numwant,
        },
        trust_ip_param: c.trust_ip_param,
    }
}

/// 32 bytes from the kernel's generator, for the connection-id secrets and the peer rotation.
fn random_seed() -> std::io::Result<[u8; 32]> {
    use std::io::Read;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    Ok(seed)
}

/// Starts the tracker when `tracker_server.listen` names addresses (None otherwise).
pub fn spawn(
    shared: &Arc<Shared>,
    services: &mut Services,
) -> Result<Option<Arc<TrackerServerStatus>>, StartError> {
    let cfg = &shared.config.tracker_server;
    if cfg.listen.is_empty() {
        return Ok(None);
    }
    let bind_err = |addr: SocketAddr, e: std::io::Error| {
        StartError::bind(format!("tracker_server.listen {addr}: {e}"), &e)
    };
    let mut sockets = Vec::new();
    for &addr in &cfg.listen {
        let tcp = TcpListener::bind(addr).map_err(|e| bind_err(addr, e))?;
        let local = tcp.local_addr()?;
        // Port 0: UDP on the port TCP got.
        let udp = UdpSocket::bind(local).map_err(|e| bind_err(addr, e))?;
        tcp.set_nonblocking(true)?;
        udp.set_read_timeout(Some(UDP_POLL))?;
        sockets.push((local, tcp, udp));
    }
    let seed = random_seed().map_err(|e| StartError::new(format!("tracker_server: {e}")))?;
    let core = Arc::new(Mutex::new(TrackerCore::new(
        core_config(cfg),
        seed,
        Instant::now(),
    )));
    let mut allowed = HashSet::new();
    reconcile(shared, &core, &mut allowed);
    let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.0).collect();
    let mut listeners = Vec::new();
    for (local, tcp, udp) in sockets {
        let c = core.clone();
        services.spawn(format!("tracker-udp {local}"), move |shutdown| {
            udp_loop(&udp, &c, &shutdown)
        })?;
        listeners.push(tcp);
    }
    let router = Arc::new(router(core.clone()));
    let (sh, c) = (shared.clone(), core.clone());
    services.spawn_async("tracker-server", move |shutdown| async move {
        for tcp in listeners {
            match tokio::net::TcpListener::from_std(tcp) {
                Ok(l) => {
                    let (r, s) = (router.clone(), shutdown.clone());
                    tokio::spawn(crate::http::serve(l, r, LIMITS, s, "tracker"));
                }
                Err(e) => tracing::error!("tracker_server: HTTP not started: {e}"),
            }
        }
        let mut changed = sh.torrents.subscribe();
        let mut next = tokio::time::Instant::now() + TICK;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    next = tokio::time::Instant::now() + TICK;
                    lock(&c).tick(Instant::now());
                }
                r = changed.changed() => {
                    if r.is_err() {
                        break;
                    }
                }
                _ = shutdown.triggered() => break,
            }
            reconcile(&sh, &c, &mut allowed);
        }
    })?;
    let shown: Vec<String> = addrs
        .iter()
        .map(|a| format!("http://{a}/announce udp://{a}"))
        .collect();
    tracing::info!(
        "tracker: serving {} ({})",
        shown.join(", "),
        if cfg.open {
            "open: any torrent"
        } else {
            "the torrents served here"
        }
    );
    Ok(Some(Arc::new(TrackerServerStatus { core, addrs })))
}

/// Makes the core's allow-list the torrent table's info-hashes (`allowed` is what it was).
fn reconcile(shared: &Shared, core: &Mutex<TrackerCore>, allowed: &mut HashSet<InfoHash>) {
    let now: HashSet<InfoHash> = shared
        .torrents
        .snapshot()
        .into_iter()
        .map(|t| t.0)
        .collect();
    if now == *allowed {
        return;
    }
    let mut c = lock(core);
    for ih in now.difference(allowed) {
        c.allow(*ih);
    }
    for ih in allowed.difference(&now) {
        c.disallow(*ih);
    }
    drop(c);
    *allowed = now;
}

/// `/announce` and `/scrape` (any other path: the core's 404), GET and HEAD.
fn router(core: Arc<Mutex<TrackerCore>>) -> Router {
    Router::new().prefix("/", move |req| {
        if req.method != Method::GET && req.method != Method::HEAD {
            return Reply::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let r = lock(&core).handle_http(target.as_bytes(), req.peer, Instant::now());
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
        Reply::new(status, "text/plain", r.body)
    })
}

/// Answers datagrams on `udp` until shutdown, a batch at a time: one recvmmsg (waiting for the
/// first), one lock of the core for all of them, one sendmmsg of the replies.
fn udp_loop(udp: &UdpSocket, core: &Mutex<TrackerCore>, shutdown: &crate::lifecycle::Shutdown) {
    use std::io::ErrorKind;
    use std::os::fd::AsRawFd;
    let fd = udp.as_raw_fd();
    let mut batch = crate::io::RecvBatch::default();
    let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    while !shutdown.is_triggered() {
        // Blocks at most UDP_POLL (the socket's read timeout) for the first datagram.
        let n = match batch.recv_wait(fd) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                continue
            }
            Err(e) => {
                // ICMP errors of earlier sends (ECONNREFUSED) and the like: keep serving.
                tracing::debug!("tracker udp: receive: {e}");
                shutdown.wait_timeout(Duration::from_millis(10));
                continue;
            }
        };
        let now = Instant::now();
        let mut c = lock(core);
        for (from, pkt) in (0..n).filter_map(|i| batch.get(i)) {
            if let Some(reply) = c.handle_udp(pkt, from, now) {
                out.push((from, reply));
            }
        }
        drop(c);
        crate::io::send_batch(fd, &out);
        out.clear();
    }
}
