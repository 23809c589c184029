//! Network and disk I/O: the only module that names tokio_uring.
//!
//! One worker thread per core (or `server.workers`), each with its own runtime and its own
//! SO_REUSEPORT listener per listen address, so the kernel spreads incoming connections over
//! the workers. The io_uring backend is used when the kernel allows it; otherwise (e.g. Docker's
//! default seccomp profile) the portable tokio/epoll + `pread` backend, and the log says so.
//! `server.io_backend` forces one or the other.

pub mod conn;
mod handshake;
mod portable;
mod uring;
mod worker;

use crate::server::{Outgoing, Shared, StartError};
use socket2::{Domain, Protocol, Socket, Type};
use std::cell::Cell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most buffers handed to one vectored write (IOV_MAX is 1024).
pub const MAX_IOVECS: usize = 512;
/// Ports tried in turn when no listen address is configured.
pub const DEFAULT_PORTS: std::ops::RangeInclusive<u16> = 6881..=6889;
/// How long shutdown waits for connections to finish their writes.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What one worker thread serves.
pub struct Worker {
    pub shared: Arc<Shared>,
    pub listeners: Vec<TcpListener>,
    /// Connections to make (peers from trackers).
    pub outgoing: tokio::sync::mpsc::UnboundedReceiver<Outgoing>,
}

/// Random bytes from the kernel (getrandom(2)), for MSE keys and padding.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let mut filled = 0;
    while filled < N {
        // SAFETY: getrandom writes at most N - filled bytes at the given position of `out`.
        let r = unsafe { libc::getrandom(out[filled..].as_mut_ptr().cast(), N - filled, 0) };
        if r > 0 {
            filled += r as usize;
        } else if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            panic!("getrandom failed: {}", io::Error::last_os_error());
        }
    }
    out
}

/// How long an outgoing connection may take to be established.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Spawned = (
    Vec<std::thread::JoinHandle<()>>,
    Vec<SocketAddr>,
    &'static str,
);

/// Binds the listeners and starts the worker threads; returns them, the bound addresses and the
/// backend's name.
pub fn spawn_workers(shared: Arc<Shared>) -> Result<Spawned, StartError> {
    let workers = crate::storage::hasher::thread_count(shared.config.server.workers);
    let addrs = resolve_listen(&shared.config.server.listen)?;
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    for addr in &addrs {
        for listeners in per_worker.iter_mut() {
            let l = bind(*addr).map_err(|e| StartError(format!("listen on {addr}: {e}")))?;
            listeners.push(l);
        }
    }
    let backend = match shared.config.server.io_backend.as_str() {
        "portable" => "portable",
        wanted => match uring::available() {
            Ok(()) => "io_uring",
            Err(e) if wanted == "io_uring" => {
                return Err(StartError(format!(
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
    let mut threads = Vec::new();
    let mut senders = Vec::new();
    for (i, listeners) in per_worker.into_iter().enumerate() {
        let (tx, outgoing) = tokio::sync::mpsc::unbounded_channel();
        senders.push(tx);
        let worker = Worker {
            shared: shared.clone(),
            listeners,
            outgoing,
        };
        let t = std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                let result = if backend == "io_uring" {
                    uring::run(worker)
                } else {
                    portable::run(worker)
                };
                if let Err(e) = result {
                    tracing::error!("worker {i} stopped: {e}");
                }
            })
            .map_err(|e| StartError(format!("cannot start worker thread: {e}")))?;
        threads.push(t);
    }
    let _ = shared.connectors.set(senders);
    Ok((threads, addrs, backend))
}

/// Resolves the configured addresses (port 0 becomes a real port) or, when none are given,
/// picks the first free port of 6881..=6889 on all IPv4 and IPv6 addresses.
fn resolve_listen(configured: &[SocketAddr]) -> Result<Vec<SocketAddr>, StartError> {
    if !configured.is_empty() {
        return configured
            .iter()
            .map(|addr| {
                let probe =
                    bind(*addr).map_err(|e| StartError(format!("listen on {addr}: {e}")))?;
                probe
                    .local_addr()
                    .map_err(|e| StartError(format!("listen on {addr}: {e}")))
            })
            .collect();
    }
    for port in DEFAULT_PORTS {
        let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        if !port_free(v4) {
            continue;
        }
        let mut addrs = vec![v4];
        let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
        if port_free(v6) {
            addrs.push(v6);
        } else {
            tracing::warn!("cannot listen on {v6}; serving IPv4 only");
        }
        return Ok(addrs);
    }
    Err(StartError(
        "no free port in 6881..=6889; set server.listen or --listen".into(),
    ))
}

/// True if nothing else listens on `addr` (probed without SO_REUSEPORT, so another process's
/// reuse-port listener on the same port counts as taken).
fn port_free(addr: SocketAddr) -> bool {
    let Ok(s) = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)) else {
        return false;
    };
    if addr.is_ipv6() && s.set_only_v6(true).is_err() {
        return false;
    }
    s.bind(&addr.into()).is_ok()
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

/// Counts a connection in; refuses it (returns None) for a blocked address, above
/// `server.max_connections`, above the per-IP cap, and (for outgoing ones) above the torrent's
/// cap. Cheap and non-blocking: it runs on the accept path of the serving threads.
fn admit(
    shared: &Arc<Shared>,
    active: &Rc<Cell<usize>>,
    addr: SocketAddr,
    dialing: Option<&Outgoing>,
) -> Option<ConnGuard> {
    let stats = &shared.stats;
    let ip = addr.ip().to_canonical();
    if shared.blocked(ip) {
        stats.count_dropped("blocked");
        return None;
    }
    match dialing {
        None => stats.connections_accepted.fetch_add(1, Ordering::Relaxed),
        Some(o) => {
            let full = shared.torrent(&o.info_hash).is_none_or(|t| {
                t.peers.load(Ordering::Relaxed) >= shared.config.server.max_connections_per_torrent
            });
            if full {
                return None;
            }
            stats.connections_dialed.fetch_add(1, Ordering::Relaxed)
        }
    };
    if stats.peers_connected.fetch_add(1, Ordering::AcqRel) >= shared.config.server.max_connections
    {
        stats.peers_connected.fetch_sub(1, Ordering::AcqRel);
        stats.count_dropped("connection_cap");
        return None;
    }
    let per_ip = (!ip.is_loopback() || shared.config.server.limit_loopback).then_some(ip);
    if let Some(ip) = per_ip {
        if !shared.ip_enter(ip) {
            stats.peers_connected.fetch_sub(1, Ordering::AcqRel);
            stats.count_dropped("ip_connection_cap");
            return None;
        }
    }
    active.set(active.get() + 1);
    Some(ConnGuard {
        shared: shared.clone(),
        active: active.clone(),
        ip: per_ip,
    })
}

/// Keeps a connection counted while it lives.
struct ConnGuard {
    shared: Arc<Shared>,
    active: Rc<Cell<usize>>,
    /// The address counted against the per-IP cap, if it is.
    ip: Option<IpAddr>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shared
            .stats
            .peers_connected
            .fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.ip {
            self.shared.ip_leave(ip);
        }
        self.active.set(self.active.get() - 1);
    }
}

/// Records a failed outgoing connection.
fn dial_failed(shared: &Shared, o: &Outgoing, why: &str) {
    shared
        .stats
        .connections_dial_failed
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(addr = %o.addr, "connecting out failed: {why}");
}

/// Backs off after a failed accept so that, e.g., running out of file descriptors does not spin.
async fn accept_error(e: &io::Error) {
    // At most one warning every 10 s (per process): EMFILE can last.
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 10
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            "accept failed: {e} (backing off; repeated failures are not logged for 10 s)"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Waits (bounded) for this worker's connections to finish after shutdown.
async fn drain(active: &Rc<Cell<usize>>) {
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while active.get() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
