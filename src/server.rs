//! Server assembly: loads and verifies torrents, holds the state shared by all worker threads
//! (torrent table, chokers, counters, shutdown signal) and starts the I/O workers.
//!
//! Tests call [`start`] with listen addresses on 127.0.0.1:0 and talk to the returned
//! [`ServerHandle`]; `uringseed serve` does the same and waits for a signal.

use crate::choke::{self, Choker, PeerKey};
use crate::config::Config;
use crate::metainfo::{self, InfoHash, Torrent};
use crate::storage::{hasher, Layout};
use crate::wire::peer::{Limits, TorrentView};
use crate::wire::Handshake;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A torrent to seed: its parsed metainfo and the data directory (a client's "save path").
#[derive(Debug, Clone)]
pub struct TorrentSpec {
    pub torrent: Torrent,
    pub data_dir: PathBuf,
    /// Set when the data was hashed moments ago (by `make`), so startup need not hash it again.
    pub just_hashed: bool,
}

impl TorrentSpec {
    /// Loads a .torrent file for seeding from `data_dir`.
    pub fn load(
        torrent: &std::path::Path,
        data_dir: PathBuf,
    ) -> Result<TorrentSpec, metainfo::MetainfoError> {
        Ok(TorrentSpec {
            torrent: metainfo::load(torrent)?,
            data_dir,
            just_hashed: false,
        })
    }
}

/// Counters shared by all workers (exported as metrics by the metrics endpoint).
#[derive(Debug, Default)]
pub struct Stats {
    pub uploaded_payload_bytes: AtomicU64,
    pub uploaded_protocol_bytes: AtomicU64,
    pub peers_connected: AtomicUsize,
    pub connections_accepted: AtomicU64,
    pub requests_served: AtomicU64,
    pub piece_read_errors: AtomicU64,
    pub piece_read_nanos: AtomicU64,
    rejected: Mutex<HashMap<&'static str, u64>>,
    dropped: Mutex<HashMap<&'static str, u64>>,
}

impl Stats {
    pub fn count_rejected(&self, reason: &'static str) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    pub fn count_dropped(&self, reason: &'static str) {
        *self
            .dropped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    pub fn rejected(&self, reason: &str) -> u64 {
        self.rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(reason)
            .copied()
            .unwrap_or(0)
    }

    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(reason)
            .copied()
            .unwrap_or(0)
    }
}

/// Commands from the choker to one connection.
#[derive(Debug, Default)]
pub struct PeerHandle {
    /// 0 = nothing pending, 1 = choke, 2 = unchoke.
    pub choke_cmd: AtomicU8,
    pub wake: tokio::sync::Notify,
}

/// One torrent being seeded, shared by every worker.
pub struct TorrentCtx {
    pub view: Arc<TorrentView>,
    pub name: String,
    pub data_dir: PathBuf,
    /// Open data files (None for pad files and files that could not be opened).
    pub files: Vec<Option<std::fs::File>>,
    pub peers: AtomicUsize,
    choker: Mutex<Choker>,
    handles: Mutex<HashMap<PeerKey, Arc<PeerHandle>>>,
}

impl TorrentCtx {
    fn apply(&self, changes: Vec<choke::Change>) {
        if changes.is_empty() {
            return;
        }
        let handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        for (key, choke) in changes {
            if let Some(h) = handles.get(&key) {
                h.choke_cmd
                    .store(if choke { 1 } else { 2 }, Ordering::Release);
                h.wake.notify_one();
            }
        }
    }

    /// Registers a connection with the choker; returns its handle.
    pub fn join(&self, key: PeerKey, now: Instant) -> Arc<PeerHandle> {
        let h = Arc::new(PeerHandle::default());
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, h.clone());
        self.choker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(key, now);
        h
    }

    pub fn leave(&self, key: PeerKey, now: Instant) {
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        let changes = self
            .choker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key, now);
        self.apply(changes);
    }

    pub fn set_interested(&self, key: PeerKey, interested: bool, now: Instant) {
        let changes = self
            .choker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_interested(key, interested, now);
        self.apply(changes);
    }

    fn choke_tick(&self, now: Instant) {
        let changes = self
            .choker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tick(now);
        self.apply(changes);
    }
}

/// Everything the workers share.
pub struct Shared {
    pub config: Config,
    pub torrents: HashMap<InfoHash, Arc<TorrentCtx>>,
    pub peer_id: [u8; 20],
    pub limits: Limits,
    pub stats: Stats,
    pub next_key: AtomicU64,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Set once every worker has its listener bound.
    pub started: AtomicBool,
}

impl Shared {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.config.server.handshake_timeout_secs)
    }

    /// Our handshake for a torrent.
    pub fn our_handshake(&self, info_hash: InfoHash) -> Handshake {
        Handshake::ours(info_hash, self.peer_id)
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

/// A running server.
pub struct ServerHandle {
    pub shared: Arc<Shared>,
    /// The addresses actually listened on (ports resolved).
    pub local_addrs: Vec<SocketAddr>,
    /// Which I/O backend the workers use ("io_uring" or "portable").
    pub backend: &'static str,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Stops accepting, lets in-flight writes finish (bounded), and waits for the workers.
    pub fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Verifies each torrent's data, then starts the worker threads on `listen` (empty = the
/// configured or default addresses).
pub fn start(config: Config, specs: Vec<TorrentSpec>) -> Result<ServerHandle, StartError> {
    if specs.is_empty() {
        return Err(StartError("no torrents to seed".into()));
    }
    let mut torrents = HashMap::new();
    for spec in specs {
        let ctx = prepare(&config, spec)?;
        if torrents.insert(ctx.view.info_hash, Arc::new(ctx)).is_some() {
            return Err(StartError("the same torrent is configured twice".into()));
        }
    }
    let s = &config.server;
    let limits = Limits {
        max_request: s.max_request_bytes,
        max_queued: s.max_queued_requests,
        max_control_bytes: s.max_send_buffer_bytes,
        idle_timeout: Duration::from_secs(s.idle_timeout_secs),
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared {
        peer_id: crate::wire::handshake::new_peer_id(seed, u64::from(std::process::id())),
        config,
        torrents,
        limits,
        stats: Stats::default(),
        next_key: AtomicU64::new(1),
        shutdown: shutdown_rx,
        started: AtomicBool::new(false),
    });
    let (threads, local_addrs, backend) = crate::io::spawn_workers(shared.clone())?;
    let mut handle = ServerHandle {
        shared: shared.clone(),
        local_addrs,
        backend,
        shutdown_tx,
        threads,
    };
    handle.threads.push(spawn_choker(shared));
    Ok(handle)
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
                    for t in shared.torrents.values() {
                        t.choke_tick(now);
                    }
                }
            }
        })
        .expect("spawn choker thread")
}

/// Checks the data directory and hashes every piece; only pieces that pass are advertised.
fn prepare(config: &Config, spec: TorrentSpec) -> Result<TorrentCtx, StartError> {
    let t = &spec.torrent;
    let layout = Layout::new(t);
    for problem in layout.check_data(&spec.data_dir) {
        tracing::warn!(torrent = %t.name, "data: {problem}; its pieces will not be served");
    }
    let have = if spec.just_hashed {
        crate::wire::peer::full_bitfield(t.num_pieces())
    } else {
        verify(config, t, &layout, &spec.data_dir)
    };
    let files = (0..layout.files().len())
        .map(|i| {
            if layout.files()[i].pad {
                return None;
            }
            std::fs::File::open(layout.file_path(&spec.data_dir, i)).ok()
        })
        .collect();
    Ok(TorrentCtx {
        view: Arc::new(TorrentView {
            info_hash: t.info_hash,
            layout,
            have,
        }),
        name: t.name.clone(),
        data_dir: spec.data_dir,
        files,
        peers: AtomicUsize::new(0),
        choker: Mutex::new(Choker::new(config.server.upload_slots)),
        handles: Mutex::new(HashMap::new()),
    })
}

/// Hashes every piece from disk; returns the bitfield of pieces that match the torrent.
fn verify(config: &Config, t: &Torrent, layout: &Layout, data_dir: &std::path::Path) -> Vec<u8> {
    let started = Instant::now();
    let progress =
        crate::progress::Progress::start(&format!("checking {}", t.name), t.total_length, false);
    let digests = hasher::hash_pieces(
        layout,
        data_dir,
        hasher::Access::Pread,
        config.hashing.threads,
        &progress.done,
    );
    progress.finish();
    let mut have = vec![0u8; t.num_pieces().div_ceil(8)];
    let mut bad = 0usize;
    for (i, d) in digests.iter().enumerate() {
        if d.as_ref().is_ok_and(|h| *h == t.piece_hashes[i]) {
            have[i / 8] |= 0x80 >> (i % 8);
        } else {
            bad += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(torrent = %t.name, info_hash = %t.info_hash, pieces = t.num_pieces(), bad, "verified data in {secs:.2} s");
    have
}
