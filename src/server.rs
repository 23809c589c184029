//! Server assembly: the state shared by all worker threads (torrent table, counters, shutdown
//! signal), startup (listeners first, then torrents checked in the background and added as each
//! is ready), the choke timer, and the handle tests and `main` use to stop it.
//!
//! Tests call [`start`] with listen addresses on 127.0.0.1:0 and talk to the returned
//! [`ServerHandle`]; `uringseed serve` does the same and waits for a signal.

use crate::blocklist::Blocklist;
use crate::choke;
use crate::config::Config;
use crate::metainfo::InfoHash;
use crate::stats::Stats;
pub use crate::torrent::{PeerHandle, TorrentCtx, TorrentSpec};
use crate::tracker::TrackerStatus;
use crate::wire::peer::Limits;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// Everything the workers share.
pub struct Shared {
    pub config: Config,
    torrents: RwLock<HashMap<InfoHash, Arc<TorrentCtx>>>,
    pub peer_id: [u8; 20],
    pub limits: Limits,
    pub stats: Stats,
    pub next_key: AtomicU64,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// The port announced to trackers (that of the first listen address).
    pub listen_port: AtomicU16,
    /// The tracker `key` of this session.
    pub announce_key: u32,
    /// Queues of outgoing connections, one per worker.
    pub(crate) connectors: OnceLock<Vec<tokio::sync::mpsc::UnboundedSender<Outgoing>>>,
    next_connector: AtomicUsize,
    trackers: Mutex<HashMap<(InfoHash, String), TrackerStatus>>,
    /// Torrents being checked before they are served.
    pending: Mutex<std::collections::HashSet<InfoHash>>,
    /// Connections per IP address (those counted against the per-IP cap).
    per_ip: Mutex<HashMap<std::net::IpAddr, usize>>,
    blocklist: RwLock<Blocklist>,
}

/// A connection to make: the torrent and the peer's address.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing {
    pub info_hash: InfoHash,
    pub addr: SocketAddr,
}

impl Shared {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.config.server.handshake_timeout_secs)
    }

    /// The torrent with this info-hash, if it is being served.
    pub fn torrent(&self, info_hash: &InfoHash) -> Option<Arc<TorrentCtx>> {
        self.torrents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(info_hash)
            .cloned()
    }

    /// Every torrent being served.
    pub fn torrents(&self) -> Vec<Arc<TorrentCtx>> {
        self.torrents
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn blocked(&self, ip: std::net::IpAddr) -> bool {
        self.blocklist
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(ip)
    }

    /// Counts a connection of `ip`; false (and not counted) if it is at the per-IP cap.
    pub fn ip_enter(&self, ip: std::net::IpAddr) -> bool {
        let mut m = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= self.config.server.max_connections_per_ip {
            return false;
        }
        *n += 1;
        true
    }

    pub fn ip_leave(&self, ip: std::net::IpAddr) {
        let mut m = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }

    /// Queues an outgoing connection on one of the workers (round robin).
    pub fn connect_out(&self, info_hash: InfoHash, addr: SocketAddr) {
        if let Some(c) = self.connectors.get() {
            let i = self.next_connector.fetch_add(1, Ordering::Relaxed) % c.len();
            let _ = c[i].send(Outgoing { info_hash, addr });
        }
    }

    /// Updates the recorded state of one tracker of one torrent.
    pub fn update_tracker(
        &self,
        info_hash: InfoHash,
        url: &str,
        f: impl FnOnce(&mut TrackerStatus),
    ) {
        let mut t = self.trackers.lock().unwrap_or_else(|e| e.into_inner());
        f(t.entry((info_hash, url.to_string())).or_default());
    }

    /// Every tracker's recorded state: (info-hash, URL, state).
    pub fn tracker_status(&self) -> Vec<(InfoHash, String, TrackerStatus)> {
        let t = self.trackers.lock().unwrap_or_else(|e| e.into_inner());
        t.iter()
            .map(|((ih, url), st)| (*ih, url.clone(), st.clone()))
            .collect()
    }

    /// Stops serving a torrent: it leaves the table and its connections close.
    fn remove_torrent(&self, info_hash: &InfoHash) -> bool {
        let removed = self
            .torrents
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(info_hash);
        match removed {
            Some(ctx) => {
                ctx.close();
                true
            }
            None => self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(info_hash),
        }
    }

    fn add_torrent(&self, ctx: TorrentCtx) {
        self.torrents
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ctx.view.info_hash, Arc::new(ctx));
    }
}

/// A failure to start serving.
#[derive(Debug)]
pub struct StartError(pub String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// A torrent that finished its startup check and is now served.
#[derive(Debug, Clone)]
pub struct Ready {
    pub info_hash: InfoHash,
    pub name: String,
    pub pieces: usize,
    pub bad_pieces: usize,
}

/// A running server.
pub struct ServerHandle {
    pub shared: Arc<Shared>,
    /// The addresses actually listened on (ports resolved).
    pub local_addrs: Vec<SocketAddr>,
    /// Which I/O backend the workers use ("io_uring" or "portable").
    pub backend: &'static str,
    /// Where /metrics is served, if it is.
    pub metrics_addr: Option<SocketAddr>,
    ready: Arc<(Mutex<Vec<Ready>>, std::sync::Condvar)>,
    expected: usize,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Waits until `count` torrents have finished their startup check (bounded by `limit`);
    /// returns those that have.
    pub fn wait_ready_n(&self, count: usize, limit: Duration) -> Vec<Ready> {
        let (lock, cv) = &*self.ready;
        let deadline = Instant::now() + limit;
        let mut ready = lock.lock().unwrap_or_else(|e| e.into_inner());
        while ready.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            ready = cv
                .wait_timeout(ready, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        ready.clone()
    }

    /// Waits (bounded) until every torrent given to [`start`] is served.
    pub fn wait_ready(&self, limit: Duration) -> bool {
        self.wait_ready_n(self.expected, limit).len() >= self.expected
    }

    /// Calls `f` (on a thread of its own) for each torrent as it becomes ready (also those
    /// added later), until the server shuts down.
    pub fn on_ready(&self, f: impl Fn(&Ready) + Send + 'static) {
        let (ready, shutdown) = (self.ready.clone(), self.shared.shutdown.clone());
        std::thread::spawn(move || {
            let (lock, cv) = &*ready;
            let mut seen = 0;
            while !*shutdown.borrow() {
                let mut list = lock.lock().unwrap_or_else(|e| e.into_inner());
                if list.len() == seen {
                    list = cv
                        .wait_timeout(list, Duration::from_millis(500))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                let new: Vec<Ready> = list[seen..].to_vec();
                drop(list);
                for r in &new {
                    f(r);
                }
                seen += new.len();
            }
        });
    }

    /// Starts checking and then serving another torrent; false if it is already served or
    /// being checked.
    pub fn add_torrent(&self, spec: TorrentSpec) -> bool {
        let ih = spec.torrent.info_hash;
        if self.shared.torrent(&ih).is_some()
            || !self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(ih)
        {
            return false;
        }
        self.shared
            .stats
            .torrents_checking
            .fetch_add(1, Ordering::Relaxed);
        let (shared, ready) = (self.shared.clone(), self.ready.clone());
        std::thread::spawn(move || {
            lower_priority();
            check_one(&shared, spec, &ready, false);
        });
        true
    }

    /// Re-reads `server.blocklist` (on SIGHUP); on error the old list stays.
    pub fn reload_blocklist(&self) -> Result<usize, crate::blocklist::BlocklistError> {
        let path = &self.shared.config.server.blocklist;
        if path.as_os_str().is_empty() {
            return Ok(0);
        }
        let b = Blocklist::load(path)?;
        let n = b.len();
        *self
            .shared
            .blocklist
            .write()
            .unwrap_or_else(|e| e.into_inner()) = b;
        Ok(n)
    }

    /// Stops serving a torrent (its peers are disconnected, its trackers told `stopped`).
    pub fn remove_torrent(&self, info_hash: &InfoHash) -> bool {
        self.shared.remove_torrent(info_hash)
    }

    /// Stops accepting, lets in-flight writes finish (bounded), and waits for the workers.
    pub fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Binds the listeners and starts the workers, then checks each torrent's data in the
/// background (several at once) and serves each as soon as its check is done.
pub fn start(config: Config, specs: Vec<TorrentSpec>) -> Result<ServerHandle, StartError> {
    let mut seen = std::collections::HashSet::new();
    for s in &specs {
        if !seen.insert(s.torrent.info_hash) {
            return Err(StartError(format!(
                "torrent {} ({}) is configured twice",
                s.torrent.name, s.torrent.info_hash
            )));
        }
    }
    let s = &config.server;
    let limits = Limits {
        max_request: s.max_request_bytes,
        max_queued: s.max_queued_requests,
        max_control_bytes: s.max_send_buffer_bytes,
        idle_timeout: Duration::from_secs(s.idle_timeout_secs),
        // Known once the listeners are bound; each connection takes the current value.
        listen_port: 0,
    };
    let blocklist = match &config.server.blocklist {
        p if p.as_os_str().is_empty() => Blocklist::default(),
        p => Blocklist::load(p).map_err(|e| StartError(format!("server.blocklist: {e}")))?,
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared {
        peer_id: crate::wire::handshake::new_peer_id(seed, u64::from(std::process::id())),
        config,
        torrents: RwLock::new(HashMap::new()),
        limits,
        stats: Stats::default(),
        next_key: AtomicU64::new(1),
        shutdown: shutdown_rx,
        listen_port: AtomicU16::new(0),
        announce_key: crate::tracker::runner_random(),
        connectors: OnceLock::new(),
        next_connector: AtomicUsize::new(0),
        trackers: Mutex::new(HashMap::new()),
        pending: Mutex::new(specs.iter().map(|s| s.torrent.info_hash).collect()),
        per_ip: Mutex::new(HashMap::new()),
        blocklist: RwLock::new(blocklist),
    });
    let (mut threads, local_addrs, backend) = crate::io::spawn_workers(shared.clone())?;
    shared.listen_port.store(
        local_addrs.first().map_or(0, |a| a.port()),
        Ordering::Relaxed,
    );
    threads.push(spawn_choker(shared.clone()));
    threads.push(crate::tracker::spawn(shared.clone()));
    let mut metrics_addr = None;
    if shared.config.metrics.enabled {
        let m = &shared.config.metrics;
        let addr = m.listen.unwrap_or_else(|| {
            crate::config::DEFAULT_METRICS_LISTEN
                .parse()
                .expect("valid default")
        });
        match crate::metrics::spawn(shared.clone(), addr, backend) {
            Ok((local, t)) => {
                metrics_addr = Some(local);
                threads.push(t);
            }
            Err(e) if m.listen.is_none() => {
                tracing::warn!("metrics endpoint not started: {addr}: {e} (set metrics.listen)")
            }
            Err(e) => {
                let _ = shutdown_tx.send(true);
                for t in threads {
                    let _ = t.join();
                }
                return Err(StartError(format!("metrics.listen {addr}: {e}")));
            }
        }
    }
    let ready = Arc::new((Mutex::new(Vec::new()), std::sync::Condvar::new()));
    let expected = specs.len();
    threads.extend(spawn_checkers(shared.clone(), specs, ready.clone()));
    Ok(ServerHandle {
        shared,
        local_addrs,
        backend,
        metrics_addr,
        ready,
        expected,
        shutdown_tx,
        threads,
    })
}

type ReadyList = Arc<(Mutex<Vec<Ready>>, std::sync::Condvar)>;

/// Checks torrents on `hashing.parallel_torrents` threads, adding each to the table when done.
fn spawn_checkers(
    shared: Arc<Shared>,
    specs: Vec<TorrentSpec>,
    ready: ReadyList,
) -> Vec<std::thread::JoinHandle<()>> {
    let show_progress = specs.len() == 1;
    shared
        .stats
        .torrents_checking
        .fetch_add(specs.len(), Ordering::Relaxed);
    let queue = Arc::new(Mutex::new(specs));
    (0..shared.config.hashing.parallel_torrents)
        .map(|i| {
            let (shared, queue, ready) = (shared.clone(), queue.clone(), ready.clone());
            std::thread::Builder::new()
                .name(format!("checker-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let Some(spec) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop()
                        else {
                            return;
                        };
                        check_one(&shared, spec, &ready, show_progress);
                    }
                })
                .expect("spawn checker thread")
        })
        .collect()
}

/// Makes this thread (and threads it starts) yield the CPU to the serving threads.
fn lower_priority() {
    // SAFETY: setpriority on this thread's own id has no memory effects.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
    }
}

/// Checks one torrent's data and starts serving it (unless the server is stopping).
fn check_one(shared: &Shared, spec: TorrentSpec, ready: &ReadyList, show_progress: bool) {
    let ih = spec.torrent.info_hash;
    if !*shared.shutdown.borrow() {
        let ctx =
            crate::torrent::check_and_open(&shared.config, spec, &shared.stats, show_progress);
        let pieces = ctx.view.layout.num_pieces();
        let r = Ready {
            info_hash: ih,
            name: ctx.name.clone(),
            pieces,
            bad_pieces: pieces - ctx.view.have.count(),
        };
        let cancelled = !shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ih);
        if !cancelled {
            shared.add_torrent(ctx);
            tracing::info!(torrent = %r.name, info_hash = %r.info_hash, "seeding");
            let (lock, cv) = &**ready;
            lock.lock().unwrap_or_else(|e| e.into_inner()).push(r);
            cv.notify_all();
        }
    }
    shared
        .stats
        .torrents_checking
        .fetch_sub(1, Ordering::Relaxed);
}

/// Runs every torrent's choker every [`choke::TICK`] until shutdown.
fn spawn_choker(shared: Arc<Shared>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("choker".into())
        .spawn(move || {
            let mut next = Instant::now() + choke::TICK;
            while !*shared.shutdown.borrow() {
                std::thread::sleep(Duration::from_millis(200));
                let now = Instant::now();
                if now >= next {
                    next = now + choke::TICK;
                    for t in shared.torrents() {
                        t.choke_tick(now);
                    }
                }
            }
        })
        .expect("spawn choker thread")
}
