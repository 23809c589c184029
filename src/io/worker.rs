//! One worker thread's life, the same for every backend: accept loops on its listeners, its
//! queue of outgoing connections (from the peer-address intake), admission (blocklist and
//! connection caps, O(1) on the serving thread), and at shutdown a bounded drain that waits for
//! the connections' guards to go (woken by the last one, never polling). Backends supply
//! sockets through [`Net`] and piece reads through [`Disk`].

use super::admit::{admit, Active};
use super::conn;
use super::stream::{Disk, Stream};
use crate::peer_source::Candidate;
use crate::state::Shared;
use crate::watchdog::{Heartbeats, HEARTBEAT};
use std::io;
use std::net::{SocketAddr, TcpListener};
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
    /// The uTP endpoints (the first worker only).
    pub utp: Option<super::utp::UtpParts>,
    /// Where a peer goes when dialling it over TCP failed: the uTP dialler.
    pub utp_fallback: Option<super::utp::Fallback>,
    /// This worker's web seed listeners (when `webseed.listen` is set).
    pub webseed: Option<super::webseed::WebParts>,
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
    if let Some(parts) = worker.utp {
        super::utp::start(parts, &worker.shared, &disk, &active)?;
    }
    let mut accepts = Vec::new();
    for listener in worker.listeners {
        let listener = N::listen(listener)?;
        let (shared, disk, active) = (worker.shared.clone(), disk.clone(), active.clone());
        accepts.push(tokio::task::spawn_local(async move {
            while let Some((stream, addr)) = next_accept::<N>(&listener, &shared).await {
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
    if let Some(parts) = worker.webseed {
        accepts.extend(web_accepts::<N, D>(parts, &worker.shared, &disk, &active)?);
    }
    let (shared, outgoing_active) = (worker.shared.clone(), active.clone());
    let mut rx = worker.outgoing;
    let fallback = worker.utp_fallback;
    tokio::task::spawn_local(async move {
        loop {
            let c = tokio::select! {
                c = rx.recv() => match c { Some(c) => c, None => break },
                _ = shared.shutdown.triggered() => break,
            };
            if let Some(f) = fallback.as_ref().filter(|f| f.first.contains(c.addr)) {
                // Its TCP port failed us before and uTP worked: straight to uTP.
                f.status.dialed_direct.add(1);
                let _ = f.tx.send(c);
                continue;
            }
            let Some(guard) = admit(&shared, &outgoing_active, c.addr, Some(&c)) else {
                continue;
            };
            let (shared, disk, fallback) = (shared.clone(), disk.clone(), fallback.clone());
            tokio::task::spawn_local(async move {
                let failed = match tokio::time::timeout(CONNECT_TIMEOUT, N::connect(c.addr)).await {
                    Ok(Ok(stream)) => {
                        tracing::debug!(addr = %c.addr, source = %c.source, "connected out");
                        conn::serve(shared, stream, &*disk, c.addr, Some(c.info_hash)).await;
                        false
                    }
                    Ok(Err(e)) => {
                        dial_failed(&shared, &c, &e.to_string());
                        true
                    }
                    Err(_) => {
                        dial_failed(&shared, &c, "timed out");
                        true
                    }
                };
                drop(guard);
                // TCP refused or unanswered: the peer may take uTP (NAT, or uTP only).
                if let (true, Some(f)) = (failed, fallback) {
                    let _ = f.tx.send(c);
                }
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

/// The web seed's accept loops (one per listener); each connection is admitted by the web
/// seed's own caps and counted in the worker's drain.
fn web_accepts<N: Net, D: Disk + 'static>(
    parts: super::webseed::WebParts,
    shared: &Arc<Shared>,
    disk: &Rc<D>,
    active: &Rc<Active>,
) -> io::Result<Vec<tokio::task::JoinHandle<()>>> {
    use super::webseed::{admit as web_admit, serve as web_serve, Catalog};
    let catalog = Rc::new(Catalog::new(shared));
    let mut accepts = Vec::new();
    for listener in parts.listeners {
        let listener = N::listen(listener)?;
        let (shared, disk, active, web, catalog) = (
            shared.clone(),
            disk.clone(),
            active.clone(),
            parts.shared.clone(),
            catalog.clone(),
        );
        accepts.push(tokio::task::spawn_local(async move {
            while let Some((stream, addr)) = next_accept::<N>(&listener, &shared).await {
                let Some(guard) = web_admit(&shared, &web, &active, addr) else {
                    stream.shutdown();
                    continue;
                };
                let (shared, disk, web, catalog) =
                    (shared.clone(), disk.clone(), web.clone(), catalog.clone());
                tokio::task::spawn_local(async move {
                    web_serve(shared, web, catalog, stream, &*disk).await;
                    drop(guard);
                });
            }
        }));
    }
    Ok(accepts)
}

/// The next accepted connection, past failed accepts (backing off); None at shutdown.
async fn next_accept<N: Net>(
    listener: &N::Listener,
    shared: &Shared,
) -> Option<(N::Conn, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            r = N::accept(listener) => r,
            _ = shared.shutdown.triggered() => return None,
        };
        match accepted {
            Ok(a) => return Some(a),
            Err(e) => {
                tokio::select! {
                    _ = accept_error(&e) => {}
                    _ = shared.shutdown.triggered() => return None,
                }
            }
        }
    }
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
