//! Network and disk I/O: the only module that names tokio_uring.
//!
//! One worker thread per core (or `server.workers`), each with its own runtime and its own
//! SO_REUSEPORT listener per listen address, so the kernel spreads incoming connections over
//! the workers. The io_uring backend is used when the kernel allows it; otherwise (e.g. Docker's
//! default seccomp profile) the portable tokio/epoll + `pread` backend, and the log says so.
//! `server.io_backend` forces one or the other.
//!
//! Inside, each module only calls down: `worker` (accept and dial loops, admission, drain) runs
//! `conn` (one connection: handshake via `handshake`, then its reader and writer), which reaches
//! sockets and disks through the seams of `stream` (`Stream`, `Disk`, `send_all`); `uring` and
//! `portable` implement those seams and `worker::Net`; `mem` implements them in memory for the
//! connection harness.
//!
//! Nothing outside this module may name tokio_uring; this module may not decide protocol rules
//! (that is `wire`) or own torrent state (that is `state`).
//!
//! uTP: `udp` binds the peer port's UDP sockets and moves datagrams in batches; `utp` serves
//! uTP connections on the first worker through the same `conn` code, and passes the DHT's
//! datagrams on ([`crate::dht::service::UdpShare`]). The batch calls (`RecvBatch`,
//! `send_batch`) are public for the other UDP servers (the built-in tracker).

mod admit;
pub mod conn;
mod handshake;
pub mod mem;
mod portable;
mod sendfile;
pub mod stream;
mod udp;
mod upload;
mod uring;
pub mod utp;
mod webseed;
mod worker;

pub use udp::{send_batch, RecvBatch};
pub use worker::{Worker, CONNECT_TIMEOUT, SHUTDOWN_GRACE};

use crate::lifecycle::{Services, StartError};
use crate::state::Shared;
use crate::watchdog::Heartbeats;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::Arc;

/// Ports tried in turn when no listen address is configured.
pub const DEFAULT_PORTS: std::ops::RangeInclusive<u16> = 6881..=6889;

/// What [`spawn_workers`] started.
pub struct Workers {
    /// The bound addresses (ports resolved).
    pub addrs: Vec<SocketAddr>,
    /// The backend's name ("io_uring" or "portable").
    pub backend: &'static str,
    /// One heartbeat per worker, bumped from inside its runtime.
    pub heartbeats: Arc<Heartbeats>,
    /// The peer port's UDP sockets the DHT may share (when uTP is on).
    pub udp: Vec<crate::dht::service::UdpShare>,
    /// uTP's counters (when uTP is on).
    pub utp: Option<Arc<crate::utp::UtpStatus>>,
    /// The web seed's bound addresses and counters (when it is on).
    pub webseed: Option<(Vec<SocketAddr>, Arc<crate::webseed::WebStats>)>,
}

/// DHT datagrams queued for the DHT thread at most.
const DHT_QUEUE: usize = 1024;

/// Binds the listeners and starts the worker threads (`worker-N`) as services.
pub fn spawn_workers(shared: &Arc<Shared>, services: &mut Services) -> Result<Workers, StartError> {
    let workers = crate::storage::hasher::thread_count(shared.config.server.workers);
    let heartbeats = Arc::new(Heartbeats::new(workers));
    let need_udp = shared.config.utp.enabled || shared.config.dht.enabled;
    let addrs = resolve_listen(&shared.config.server.listen, need_udp)?;
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    for addr in &addrs {
        for listeners in per_worker.iter_mut() {
            let l =
                bind(*addr).map_err(|e| StartError::bind(format!("listen on {addr}: {e}"), &e))?;
            listeners.push(l);
        }
    }
    let backend = match shared.config.server.io_backend.as_str() {
        "portable" => "portable",
        wanted => match uring::available() {
            Ok(()) => "io_uring",
            Err(e) if wanted == "io_uring" => {
                return Err(StartError::new(format!(
                    "server.io_backend is \"io_uring\" but io_uring is not available: {e}"
                )));
            }
            Err(e) => {
                tracing::warn!("io_uring is not available ({e}); using the portable epoll backend");
                "portable"
            }
        },
    };
    tracing::info!(backend, workers, listen = ?addrs, "serving");
    let (mut udp_shares, mut utp_parts, mut fallback) = (Vec::new(), None, None);
    let status = shared
        .config
        .utp
        .enabled
        .then(|| Arc::new(crate::utp::UtpStatus::default()));
    if let Some(status) = &status {
        let mut endpoints = Vec::new();
        for addr in &addrs {
            let socket = udp::bind(*addr)
                .map_err(|e| StartError::bind(format!("utp: udp {addr}: {e}"), &e))?;
            let (wake, inbox) = std::sync::mpsc::sync_channel(DHT_QUEUE);
            udp_shares.push(crate::dht::service::UdpShare {
                local: *addr,
                socket: socket.try_clone()?,
                inbox,
                wake: wake.clone(),
            });
            endpoints.push(utp::Endpoint { socket, dht: wake });
        }
        *status.addrs.lock().unwrap_or_else(|e| e.into_inner()) = addrs.clone();
        tracing::info!(listen = ?addrs, "uTP: listening on udp");
        let (tx, dials) = tokio::sync::mpsc::unbounded_channel();
        let first = Arc::new(utp::UtpFirst::default());
        fallback = Some(utp::Fallback {
            tx,
            first: first.clone(),
            status: status.clone(),
        });
        utp_parts = Some(utp::UtpParts {
            endpoints,
            dials,
            first,
            status: status.clone(),
        });
    }
    let (mut web_listeners, web_shared, web_addrs) = web_listeners(shared, workers)?;
    let mut queues = Vec::new();
    for (i, listeners) in per_worker.into_iter().enumerate() {
        let (tx, outgoing) = tokio::sync::mpsc::unbounded_channel();
        queues.push(tx);
        let worker = Worker {
            shared: shared.clone(),
            listeners,
            outgoing,
            heartbeats: heartbeats.clone(),
            index: i,
            utp: if i == 0 { utp_parts.take() } else { None },
            utp_fallback: fallback.clone(),
            webseed: web_shared.as_ref().map(|w| webseed::WebParts {
                listeners: std::mem::take(&mut web_listeners[i]),
                shared: w.clone(),
            }),
        };
        services.spawn(format!("worker-{i}"), move |_shutdown| {
            let result = if backend == "io_uring" {
                uring::run(worker)
            } else {
                portable::run(worker)
            };
            if let Err(e) = result {
                tracing::error!("worker {i} stopped: {e}");
            }
        })?;
    }
    shared.set_dial_queues(queues);
    Ok(Workers {
        addrs,
        backend,
        heartbeats,
        udp: udp_shares,
        utp: status,
        webseed: web_shared.map(|w| (web_addrs, w.stats.clone())),
    })
}

type WebListeners = (
    Vec<Vec<TcpListener>>,
    Option<Arc<webseed::WebShared>>,
    Vec<SocketAddr>,
);

/// The web seed's listeners, one per address for each worker (none when it is off).
fn web_listeners(shared: &Arc<Shared>, workers: usize) -> Result<WebListeners, StartError> {
    let cfg = &shared.config.webseed;
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    if cfg.listen.is_empty() {
        return Ok((per_worker, None, Vec::new()));
    }
    let mut addrs = Vec::new();
    for addr in &cfg.listen {
        let bound = probe_tcp(*addr)
            .map_err(|e| StartError::bind(format!("webseed.listen {addr}: {e}"), &e))?;
        for listeners in per_worker.iter_mut() {
            let l = bind(bound)
                .map_err(|e| StartError::bind(format!("webseed.listen {bound}: {e}"), &e))?;
            listeners.push(l);
        }
        addrs.push(bound);
    }
    tracing::info!(listen = ?addrs, "web seed: serving HTTP");
    let web = Arc::new(webseed::WebShared::new(cfg.clone()));
    Ok((per_worker, Some(web), addrs))
}

/// Resolves the configured addresses (port 0 becomes a real port) or, when none are given,
/// picks the first free port of 6881..=6889 on all IPv4 and IPv6 addresses. Every address is
/// probed first without SO_REUSEPORT, so one that another process (another uringseed, whose
/// reuse-port listeners would otherwise share it with ours) listens on is refused by name.
fn resolve_listen(configured: &[SocketAddr], udp: bool) -> Result<Vec<SocketAddr>, StartError> {
    let probe = |addr: SocketAddr| -> io::Result<SocketAddr> {
        let tcp = probe_tcp(addr)?;
        if udp {
            udp::probe(tcp)
                .map_err(|e| io::Error::new(e.kind(), format!("udp (uTP, DHT): {e}")))?;
        }
        Ok(tcp)
    };
    if !configured.is_empty() {
        return configured
            .iter()
            .map(|addr| {
                probe(*addr).map_err(|e| {
                    let why = match e.kind() {
                        io::ErrorKind::AddrInUse => {
                            " (another process listens there, perhaps another uringseed: each \
                             server needs its own port)"
                        }
                        _ => "",
                    };
                    StartError::bind(format!("listen on {addr}: {e}{why}"), &e)
                })
            })
            .collect();
    }
    for port in DEFAULT_PORTS {
        let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        if probe(v4).is_err() {
            continue;
        }
        let mut addrs = vec![v4];
        let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
        if probe(v6).is_ok() {
            addrs.push(v6);
        } else {
            tracing::warn!("cannot listen on {v6}; serving IPv4 only");
        }
        return Ok(addrs);
    }
    Err(StartError::temporary(
        "no free port in 6881..=6889; set server.listen or --listen",
    ))
}

/// Binds `addr` without SO_REUSEPORT (but with SO_REUSEADDR, so that connections of an earlier
/// run still in TIME_WAIT do not count) and lets go of it again: fails if anything else
/// listens there, even a reuse-port listener. Returns the address with its port resolved.
fn probe_tcp(addr: SocketAddr) -> io::Result<SocketAddr> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an IP socket address"))
}

/// A non-blocking SO_REUSEPORT listener (IPv6 sockets are IPv6-only).
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}
