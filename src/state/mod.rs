#![doc = include_str!("STATE.md")]
//!
//! This module may not start threads, open sockets or files, or name `io`, `metrics`,
//! `tracker` or `server`: those use it.

pub mod evict;
pub mod limits;
pub mod mse_budget;
pub mod superseed;
mod table;
mod torrent;

pub use table::{Checking, Failed, Paused, StateCounts, TorrentState, TorrentTable};
pub(crate) use torrent::address_group;
pub use torrent::{Origin, PeerHandle, PeerInfo, TorrentCtx, TorrentLimits, TorrentSpec};

use limits::{TorrentUpload, UploadLimits};

use crate::blocklist::{Blocklist, BlocklistError};
use crate::config::Config;
use crate::lifecycle::{Shutdown, StartError};
use crate::metainfo::InfoHash;
use crate::peer_source::{Candidate, Dial, IntakeLimits, PeerIntake};
use crate::reasons::CandidateResult;
use crate::stats::Stats;
use crate::wire::peer::Limits;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// Last known state of one tracker of one torrent (for logs, metrics and the API).
#[derive(Debug, Clone, Default)]
pub struct TrackerStatus {
    pub ok: bool,
    pub last_error: Option<String>,
    pub announces: u64,
    pub failures: u64,
    pub peers_returned: u64,
    pub seeders: Option<u32>,
    pub leechers: Option<u32>,
    pub next_announce: Option<Instant>,
    pub last_latency: Option<Duration>,
    /// Downloads the tracker counted (from scrapes only: announce replies do not carry it).
    pub completed: Option<u32>,
    /// When a scrape last brought this torrent's counts. `seeders` and `leechers` are those
    /// of the newer of the last announce reply and the last scrape.
    pub last_scrape: Option<Instant>,
    /// Seconds since the Unix epoch of the last announce reply or failure.
    pub last_announce_unix: Option<i64>,
}

/// Everything the server's threads share.
pub struct Shared {
    pub config: Config,
    pub torrents: TorrentTable,
    pub peer_id: [u8; 20],
    pub limits: Limits,
    pub stats: Stats,
    pub shutdown: Shutdown,
    next_key: AtomicU64,
    /// The port announced to trackers (that of the first listen address).
    pub listen_port: AtomicU16,
    /// The tracker `key` of this session.
    pub announce_key: u32,
    /// Queues of outgoing connections, one per worker.
    dial_queues: OnceLock<Vec<tokio::sync::mpsc::UnboundedSender<Candidate>>>,
    next_queue: AtomicUsize,
    trackers: Mutex<HashMap<(InfoHash, String), TrackerStatus>>,
    /// Connections per IP address (those counted against the per-IP cap).
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    blocklist: RwLock<Blocklist>,
    intake: Mutex<PeerIntake>,
    /// Every admitted connection, and whom to evict when a cap is full.
    pub evictor: evict::Evictor,
    /// What encrypted handshakes may still cost (`server.mse_handshakes_per_*`).
    pub mse_budget: mse_budget::MseBudget,
    /// Wakes the dialer when addresses are offered.
    dial_wake: tokio::sync::Notify,
    /// The server's upload limit and quota.
    pub upload: UploadLimits,
    /// Quota counts of this period for torrents not live now (from the record, or removed),
    /// so that a torrent added again keeps counting where it was.
    quota_carry: Mutex<HashMap<InfoHash, u64>>,
    /// The origin of [`Shared::clock_ns`].
    epoch: Instant,
    /// Regular upload slots per torrent (`server.upload_slots`, changed by the API).
    upload_slots: AtomicUsize,
    /// The addresses listened on.
    listen: Mutex<Vec<SocketAddr>>,
    /// Torrents whose trackers are to be announced to now (the API's reannounce).
    reannounce: Mutex<std::collections::HashSet<InfoHash>>,
}

impl Shared {
    /// The state of a server with this configuration, before anything runs: no sockets, no
    /// threads, an empty torrent table. Fails only for a blocklist that cannot be read.
    pub fn new(config: Config, shutdown: Shutdown) -> Result<Shared, StartError> {
        let s = &config.server;
        let limits = Limits {
            max_request: s.max_request_bytes,
            max_queued: s.max_queued_requests,
            max_control_bytes: s.max_send_buffer_bytes,
            idle_timeout: Duration::from_secs(s.idle_timeout_secs),
            // Known once the listeners are bound; each connection takes the current value.
            listen_port: 0,
            remote_ip: None,
            // Per torrent, set by each connection.
            super_seed: false,
        };
        let blocklist = match &s.blocklist {
            p if p.as_os_str().is_empty() => Blocklist::default(),
            p => {
                Blocklist::load(p).map_err(|e| StartError::new(format!("server.blocklist: {e}")))?
            }
        };
        let intake = PeerIntake::new(IntakeLimits {
            dials_per_sec: s.max_dials_per_sec,
            dial_privileged_ports: s.dial_privileged_ports,
            ..IntakeLimits::default()
        });
        let upload = UploadLimits::new(
            s.upload_rate_limit.0,
            s.upload_quota.0,
            s.upload_quota_rate.0,
        );
        upload.period.set(crate::quota::period_bounds(
            unix_now(),
            s.upload_quota_period,
            s.upload_quota_reset_day,
        ));
        let upload_slots = config.server.upload_slots;
        let mse_budget = mse_budget::MseBudget::new(
            mse_budget::MseRates {
                server: s.mse_handshakes_per_sec,
                per_group: s.mse_handshakes_per_ip_per_sec,
            },
            std::time::Instant::now(),
        );
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(Shared {
            peer_id: crate::wire::handshake::new_peer_id(seed, u64::from(std::process::id())),
            limits,
            config,
            torrents: TorrentTable::default(),
            stats: Stats::default(),
            shutdown,
            next_key: AtomicU64::new(1),
            listen_port: AtomicU16::new(0),
            announce_key: random_u32(),
            dial_queues: OnceLock::new(),
            next_queue: AtomicUsize::new(0),
            trackers: Mutex::new(HashMap::new()),
            per_ip: Mutex::new(HashMap::new()),
            blocklist: RwLock::new(blocklist),
            intake: Mutex::new(intake),
            evictor: evict::Evictor::default(),
            mse_budget,
            dial_wake: tokio::sync::Notify::new(),
            upload,
            quota_carry: Mutex::new(HashMap::new()),
            epoch: tokio::time::Instant::now().into_std(),
            reannounce: Mutex::new(std::collections::HashSet::new()),
            upload_slots: AtomicUsize::new(upload_slots),
            listen: Mutex::new(Vec::new()),
        })
    }

    /// The addresses listened on.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.listen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn upload_slots(&self) -> usize {
        self.upload_slots.load(Ordering::Relaxed)
    }

    /// Sets the regular upload slots of every torrent, live now or later.
    pub fn set_upload_slots(&self, slots: usize) {
        self.upload_slots.store(slots, Ordering::Relaxed);
        for t in self.live_torrents() {
            t.set_slots(slots);
        }
    }

    /// Asks the announcer to announce `info_hash` to every tier now.
    pub fn request_reannounce(&self, info_hash: InfoHash) {
        self.reannounce
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(info_hash);
        self.torrents.poke();
    }

    /// The torrents whose reannounce was asked for since the last call.
    pub fn take_reannounces(&self) -> std::collections::HashSet<InfoHash> {
        std::mem::take(&mut *self.reannounce.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Nanoseconds since this state was built, on the clock connections use (tokio's): the
    /// rate limits' time line.
    pub fn clock_ns(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// A new live torrent's limits: its own settings, and its quota count of this period if
    /// it was served earlier in it.
    pub fn torrent_upload(&self, info_hash: &InfoHash, limits: &TorrentLimits) -> TorrentUpload {
        let used = self.carried(info_hash);
        let t = TorrentUpload::new(limits.upload_rate, limits.upload_quota, used);
        t.refresh(self.upload.quota_rate());
        t
    }

    /// The quota count carried for a torrent that is not live.
    pub fn carried(&self, info_hash: &InfoHash) -> u64 {
        self.quota_carry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(info_hash)
            .copied()
            .unwrap_or(0)
    }

    /// Replaces the carried quota counts (the keeper, at start and at each period's end).
    pub fn set_carried(&self, counts: HashMap<InfoHash, u64>) {
        *self.quota_carry.lock().unwrap_or_else(|e| e.into_inner()) = counts;
    }

    /// Keeps a torrent's count for the rest of the period (it is being removed).
    pub fn carry(&self, info_hash: InfoHash, used: u64) {
        if used > 0 {
            self.quota_carry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(info_hash, used);
        }
    }

    /// Every carried count.
    pub fn carried_all(&self) -> HashMap<InfoHash, u64> {
        self.quota_carry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.config.server.handshake_timeout_secs)
    }

    /// The torrent with this info-hash, if it is being served.
    pub fn torrent(&self, info_hash: &InfoHash) -> Option<Arc<TorrentCtx>> {
        self.torrents.live(info_hash)
    }

    /// Every torrent being served.
    pub fn live_torrents(&self) -> Vec<Arc<TorrentCtx>> {
        self.torrents.all_live()
    }

    /// A key unique in the process for a new connection.
    pub fn next_peer_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    pub fn blocked(&self, ip: IpAddr) -> bool {
        self.blocklist
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(ip)
    }

    /// Re-reads `server.blocklist` (on SIGHUP); on error the old list stays. Returns the
    /// number of ranges (0 when no blocklist is configured).
    pub fn reload_blocklist(&self) -> Result<usize, BlocklistError> {
        let path = &self.config.server.blocklist;
        if path.as_os_str().is_empty() {
            return Ok(0);
        }
        let b = Blocklist::load(path)?;
        let n = b.len();
        *self.blocklist.write().unwrap_or_else(|e| e.into_inner()) = b;
        Ok(n)
    }

    /// Counts a connection of `ip`; false (and not counted) if it is at the per-IP cap.
    pub fn ip_enter(&self, ip: IpAddr) -> bool {
        let mut m = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= self.config.server.max_connections_per_ip {
            return false;
        }
        *n += 1;
        true
    }

    pub fn ip_leave(&self, ip: IpAddr) {
        let mut m = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }

    /// Our bound listen addresses (once known): never dialled, and the port announced.
    pub fn set_listen_addrs(&self, addrs: &[SocketAddr]) {
        *self.listen.lock().unwrap_or_else(|e| e.into_inner()) = addrs.to_vec();
        self.listen_port
            .store(addrs.first().map_or(0, |a| a.port()), Ordering::Relaxed);
        self.intake().set_own_addrs(addrs);
    }

    /// Our other listeners (metrics/API, web seed, built-in tracker) and this machine's
    /// interface addresses (what a wildcard listener answers on): never dialled either.
    pub fn set_service_addrs(&self, addrs: &[SocketAddr], local_ips: Vec<std::net::IpAddr>) {
        let mut intake = self.intake();
        intake.set_service_addrs(addrs);
        intake.set_local_ips(local_ips);
    }

    /// The workers' queues of connections to make (set once, at start).
    pub fn set_dial_queues(&self, queues: Vec<tokio::sync::mpsc::UnboundedSender<Candidate>>) {
        let _ = self.dial_queues.set(queues);
    }

    fn intake(&self) -> std::sync::MutexGuard<'_, PeerIntake> {
        self.intake.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry point for a peer address from any source: decided and counted in the
    /// intake ([`crate::peer_source`]); a queued one is dialled by [`Shared::run_dials`].
    pub fn offer_peer(&self, cand: Candidate) {
        let result = self
            .intake()
            .handle_offer(Instant::now(), cand, |ip| self.blocked(ip));
        match result {
            Ok(()) => self.dial_wake.notify_one(),
            Err(why) => self.stats.count_candidate(cand.source, why),
        }
    }

    /// Wakes when addresses are offered (see [`Shared::run_dials`]).
    pub fn dial_wake(&self) -> &tokio::sync::Notify {
        &self.dial_wake
    }

    /// Hands every address that may be dialled now to a worker (round robin); returns when the
    /// next one may go (None: nothing queued).
    pub fn run_dials(&self, now: Instant) -> Option<Instant> {
        let max_total = self.config.server.max_connections;
        let max_torrent = self.config.server.max_connections_per_torrent;
        let has_room = |ih: &InfoHash| {
            self.stats.peers_connected.load(Ordering::Relaxed) < max_total
                && self
                    .torrent(ih)
                    .is_some_and(|t| t.peers.load(Ordering::Relaxed) < max_torrent)
        };
        let mut intake = self.intake();
        loop {
            match intake.poll_dial(now, has_room) {
                Dial::Go(c) => {
                    self.stats
                        .count_candidate(c.source, CandidateResult::Dialed);
                    if let Some(q) = self.dial_queues.get() {
                        let i = self.next_queue.fetch_add(1, Ordering::Relaxed) % q.len();
                        let _ = q[i].send(c);
                    }
                }
                Dial::Dropped(c, why) => self.stats.count_candidate(c.source, why),
                Dial::Wait(at) => return Some(at),
                Dial::Idle => return None,
            }
        }
    }

    /// Drops queued addresses of a torrent that is no longer served.
    pub fn forget_peers_of(&self, info_hash: &InfoHash) {
        self.intake().forget_torrent(info_hash);
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

    /// Forgets the trackers of a torrent that is no longer served.
    pub fn forget_trackers_of(&self, info_hash: &InfoHash) {
        self.trackers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(ih, _), _| ih != info_hash);
    }

    /// Every tracker's recorded state: (info-hash, URL, state).
    pub fn tracker_status(&self) -> Vec<(InfoHash, String, TrackerStatus)> {
        let t = self.trackers.lock().unwrap_or_else(|e| e.into_inner());
        t.iter()
            .map(|((ih, url), st)| (*ih, url.clone(), st.clone()))
            .collect()
    }
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A fresh random number (from the standard library's randomly keyed hasher).
pub fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}
