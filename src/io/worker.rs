//! One worker thread's life, the same for every backend: accept loops on its listeners, its
//! queue of outgoing connections (from the peer-address intake), admission (blocklist and
//! connection caps, O(1) on the serving thread), and at shutdown a bounded drain that waits for
//! the connections' guards to go (woken by the last one, never polling). Backends supply
//! sockets through [`Net`] and piece reads through [`Disk`].

use super::conn;
use super::stream::{Disk, Stream};
use crate::peer_source::Candidate;
use crate::reasons::DropReason;
use crate::state::Shared;
use crate::watchdog::{Heartbeats, HEARTBEAT};
use std::cell::Cell;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long an outgoing connection may take to be established.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for connections to finish their writes.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What one worker thread serves.
pub struct Worker {
    pub shared: Arc<Shared>,
    pub listeners: Vec<TcpListener>,
    /// Connections to make (peers from the intake).
    pub outgoing: tokio::sync::mpsc::UnboundedReceiver<Candidate>,
    /// Where this worker shows it is alive (its own counter, `index`), for the watchdog.
    pub heartbeats: Arc<Heartbeats>,
    pub index: usize,
}

/// A backend's sockets.
#[allow(async_fn_in_trait)]
pub trait Net: 'static {
    type Listener: 'static;
    type Conn: Stream + 'static;
    /// Adopts a bound, listening, non-blocking std listener.
    fn listen(l: TcpListener) -> io::Result<Self::Listener>;
    async fn accept(l: &Self::Listener) -> io::Result<(Self::Conn, SocketAddr)>;
    async fn connect(addr: SocketAddr) -> io::Result<Self::Conn>;
}

/// This worker's live connections: a count, and a wake-up for the drain when it reaches zero.
#[derive(Default)]
struct Active {
    count: Cell<usize>,
    idle: tokio::sync::Notify,
}

/// Keeps a connection counted while it lives.
struct ConnGuard {
    shared: Arc<Shared>,
    active: Rc<Active>,
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
        let n = self.active.count.get() - 1;
        self.active.count.set(n);
        if n == 0 {
            self.active.idle.notify_one();
        }
    }
}

/// Counts a connection in; refuses it (None, counted) for a blocked address, above
/// `server.max_connections`, above the per-IP cap, and (for outgoing ones) above the torrent's
/// cap. Cheap and non-blocking: it runs on the accept path of the serving threads.
fn admit(
    shared: &Arc<Shared>,
    active: &Rc<Active>,
    addr: SocketAddr,
    dialing: Option<&Candidate>,
) -> Option<ConnGuard> {
    let stats = &shared.stats;
    let ip = addr.ip().to_canonical();
    if shared.blocked(ip) {
        stats.count_dropped(DropReason::Blocked);
        return None;
    }
    match dialing {
        None => stats.connections_accepted.fetch_add(1, Ordering::Relaxed),
        Some(c) => {
            let full = shared.torrent(&c.info_hash).is_none_or(|t| {
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
        stats.count_dropped(DropReason::ConnectionCap);
        return None;
    }
    let per_ip = (!ip.is_loopback() || shared.config.server.limit_loopback).then_some(ip);
    if let Some(ip) = per_ip {
        if !shared.ip_enter(ip) {
            stats.peers_connected.fetch_sub(1, Ordering::AcqRel);
            stats.count_dropped(DropReason::IpConnectionCap);
            return None;
        }
    }
    active.count.set(active.count.get() + 1);
    Some(ConnGuard {
        shared: shared.clone(),
        active: active.clone(),
        ip: per_ip,
    })
}

/// Runs the worker until shutdown; must run inside a `LocalSet` (both backends' runtimes are).
pub async fn run<N: Net, D: Disk + 'static>(worker: Worker, disk: Rc<D>) -> io::Result<()> {
    let active = Rc::new(Active::default());
    // A beat from inside this runtime: it stops when the runtime is stuck.
    let (shared, beats, me) = (
        worker.shared.clone(),
        worker.heartbeats.clone(),
        worker.index,
    );
    tokio::task::spawn_local(async move {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => beats.beat(me),
                _ = shared.shutdown.triggered() => break,
            }
        }
    });
    let mut accepts = Vec::new();
    for listener in worker.listeners {
        let listener = N::listen(listener)?;
        let (shared, disk, active) = (worker.shared.clone(), disk.clone(), active.clone());
        accepts.push(tokio::task::spawn_local(async move {
            loop {
                let accepted = tokio::select! {
                    r = N::accept(&listener) => r,
                    _ = shared.shutdown.triggered() => break,
                };
                let (stream, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tokio::select! {
                            _ = accept_error(&e) => continue,
                            _ = shared.shutdown.triggered() => break,
                        }
                    }
                };
                let Some(guard) = admit(&shared, &active, addr, None) else {
                    continue;
                };
                let (shared, disk) = (shared.clone(), disk.clone());
                tokio::task::spawn_local(async move {
                    conn::serve(shared, stream, &*disk, addr, None).await;
                    drop(guard);
                });
            }
        }));
    }
    let (shared, outgoing_active) = (worker.shared.clone(), active.clone());
    let mut rx = worker.outgoing;
    tokio::task::spawn_local(async move {
        loop {
            let c = tokio::select! {
                c = rx.recv() => match c { Some(c) => c, None => break },
                _ = shared.shutdown.triggered() => break,
            };
            let Some(guard) = admit(&shared, &outgoing_active, c.addr, Some(&c)) else {
                continue;
            };
            let (shared, disk) = (shared.clone(), disk.clone());
            tokio::task::spawn_local(async move {
                match tokio::time::timeout(CONNECT_TIMEOUT, N::connect(c.addr)).await {
                    Ok(Ok(stream)) => {
                        tracing::debug!(addr = %c.addr, source = %c.source, "connected out");
                        conn::serve(shared, stream, &*disk, c.addr, Some(c.info_hash)).await
                    }
                    Ok(Err(e)) => dial_failed(&shared, &c, &e.to_string()),
                    Err(_) => dial_failed(&shared, &c, "timed out"),
                }
                drop(guard);
            });
        }
    });
    for a in accepts {
        let _ = a.await;
    }
    // Bounded drain: woken by the last connection's guard.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while active.count.get() > 0 {
            active.idle.notified().await;
        }
    })
    .await;
    Ok(())
}

/// Records a failed outgoing connection.
fn dial_failed(shared: &Shared, c: &Candidate, why: &str) {
    shared
        .stats
        .connections_dial_failed
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(addr = %c.addr, source = %c.source, "connecting out failed: {why}");
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
