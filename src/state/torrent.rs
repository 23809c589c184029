//! One live torrent, shared by every worker: its verified pieces, its data files, its choker
//! and its connected peers. Built by the checker once the data is checked; reached through
//! [`super::TorrentTable`]. It may not open files or sockets itself: its files come from
//! [`crate::storage::files::DataFiles`], its connections from `io`.

use super::limits::TorrentUpload;
use crate::choke::{Choker, Mode as ChokerMode, PeerKey};
use crate::config::Config;
use crate::metainfo::{self, Torrent};
use crate::reasons::{ChokeCmd, PendingChoke};
use crate::stats::RateMeter;
use crate::storage::files::DataFiles;
use crate::storage::Layout;
use crate::wire::peer::TorrentView;
use crate::wire::pex::PexPeer;
use crate::wire::Block;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A torrent to seed: its parsed metainfo and the data directory (a client's "save path").
#[derive(Debug, Clone)]
pub struct TorrentSpec {
    pub torrent: Torrent,
    pub data_dir: PathBuf,
    /// Set when the data was hashed moments ago (by `make`), so startup need not hash it again.
    pub just_hashed: bool,
    /// This torrent's own upload limits (`[[torrent]]` keys; 0 = none).
    pub limits: TorrentLimits,
    /// Where the torrent came from (the API may remove only what it or the watch directory
    /// added).
    pub origin: Origin,
    /// Hash every piece, ignoring the resume record (a recheck).
    pub force_check: bool,
}

/// Where a torrent came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Origin {
    /// A `[[torrent]]` table of the configuration file.
    Config,
    /// The command line (`serve PATH`, `serve --torrent`).
    #[default]
    Cli,
    /// The watch directory.
    Watch,
    /// The control API (persisted in the state directory).
    Api,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Cli => "cli",
            Origin::Watch => "watch",
            Origin::Api => "api",
        }
    }
}

/// A torrent's own upload limits, beside the server's, and how it offers its pieces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TorrentLimits {
    /// Bytes per second (0 = only the server's cap).
    pub upload_rate: u64,
    /// Bytes per quota period (0 = no quota of its own).
    pub upload_quota: u64,
    /// Super-seeding (BEP 16) for this torrent; None: `seeding.super_seed`.
    pub super_seed: Option<bool>,
}

impl TorrentSpec {
    /// Loads a .torrent file for seeding from `data_dir`.
    pub fn load(torrent: &Path, data_dir: PathBuf) -> Result<TorrentSpec, metainfo::MetainfoError> {
        Ok(TorrentSpec {
            torrent: metainfo::load(torrent)?,
            data_dir,
            just_hashed: false,
            limits: TorrentLimits::default(),
            origin: Origin::default(),
            force_check: false,
        })
    }
}

/// What the API shows of one connection, fixed at its handshake.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: std::net::SocketAddr,
    pub peer_id: [u8; 20],
    /// How the connection was opened.
    pub encryption: crate::reasons::HandshakeKind,
    /// We dialled it (from a tracker, PEX or the API) rather than it us.
    pub outgoing: bool,
    /// Carried over uTP (BEP 29) rather than TCP.
    pub utp: bool,
    /// Seconds since the Unix epoch.
    pub connected_unix: i64,
}

/// The choker's line to one connection.
#[derive(Debug)]
pub struct PeerHandle {
    /// The latest choke decision not yet carried out.
    pub choke: PendingChoke,
    /// Wakes the connection's writer (a choke decision, new requests, removal).
    pub wake: tokio::sync::Notify,
    /// Payload bytes sent to this peer.
    pub uploaded: AtomicU64,
    /// Sends of payload runs started and completed (the choker tells a peer that stopped
    /// reading by a send that never completes).
    pub sends_started: AtomicU64,
    pub sends_done: AtomicU64,
    /// Its upload rate over the last seconds.
    pub meter: RateMeter,
    /// The choker's last decision: unchoked.
    pub unchoked: AtomicBool,
    /// The peer's last word: interested.
    pub interested: AtomicBool,
    /// Super-seeding: pieces to offer this peer (`have`), and whether to advertise
    /// everything now (super-seeding stopped).
    pub offers: Mutex<Vec<u32>>,
    pub unrestrict: AtomicBool,
    /// Pieces the peer reported (its bitfield's count plus its `have`s), for the anti-leech
    /// choker; kept only in that mode.
    pub pieces: AtomicU32,
    pub info: PeerInfo,
}

impl PeerHandle {
    pub fn new(info: PeerInfo) -> PeerHandle {
        PeerHandle {
            choke: PendingChoke::default(),
            wake: tokio::sync::Notify::new(),
            uploaded: AtomicU64::new(0),
            sends_started: AtomicU64::new(0),
            sends_done: AtomicU64::new(0),
            meter: RateMeter::default(),
            unchoked: AtomicBool::new(false),
            interested: AtomicBool::new(false),
            offers: Mutex::new(Vec::new()),
            unrestrict: AtomicBool::new(false),
            pieces: AtomicU32::new(0),
            info,
        }
    }
}

/// One torrent being seeded, shared by every worker.
///
/// Lock order inside: `handles` before `choker` is never needed; each lock is taken alone and
/// released before the next (see `STATE.md`).
pub struct TorrentCtx {
    pub view: Arc<TorrentView>,
    pub name: String,
    pub data_dir: PathBuf,
    /// The data files, opened once; closed when the last holder of this torrent lets go.
    pub files: Arc<DataFiles>,
    /// Connections past the handshake.
    pub peers: AtomicUsize,
    /// Set when the torrent is removed: its connections end.
    closed: AtomicBool,
    /// Tracker tiers (BEP 12).
    pub trackers: Vec<Vec<String>>,
    /// Payload bytes sent to peers of this torrent since it started (the trackers' `uploaded`).
    pub uploaded: AtomicU64,
    /// Its upload limit and quota.
    pub upload: TorrentUpload,
    /// Its upload rate over the last seconds.
    pub meter: RateMeter,
    /// Super-seeding (BEP 16), when on for this torrent.
    pub superseed: Option<super::superseed::SuperSeeding>,
    /// Peer ids of connected peers (a second connection from the same peer is refused).
    peer_ids: Mutex<HashSet<[u8; 20]>>,
    choker: Mutex<Choker>,
    choker_mode: ChokerMode,
    handles: Mutex<HashMap<PeerKey, Arc<PeerHandle>>>,
    /// Connected peers that may be shared by peer exchange (listen addresses we know).
    shareable: Mutex<HashMap<PeerKey, PexPeer>>,
}

impl TorrentCtx {
    /// The swarms this torrent is in: its info-hash, and a hybrid's truncated v2 one too.
    pub fn swarms(&self) -> Vec<metainfo::InfoHash> {
        let v2 = self.view.v2.as_ref().map(|t| t.info_hash);
        std::iter::once(self.view.info_hash)
            .chain(v2.filter(|h| *h != self.view.info_hash))
            .collect()
    }

    /// A live torrent over checked data: `have` holds the pieces that passed (BEP 3 layout).
    pub fn new(
        config: &Config,
        torrent: &Torrent,
        data_dir: PathBuf,
        files: Arc<DataFiles>,
        have: &[u8],
        upload: TorrentUpload,
    ) -> TorrentCtx {
        let layout = Layout::new(torrent);
        let layout_pieces = layout.num_pieces();
        TorrentCtx {
            view: Arc::new(TorrentView {
                info_hash: torrent.info_hash,
                metadata: (!torrent.private)
                    .then(|| bytes::Bytes::from(torrent.info_bytes.clone())),
                pex: !torrent.private,
                have: crate::bitfield::SharedBitfield::from_bytes(have, torrent.num_pieces()),
                layout,
                v2: torrent
                    .v2
                    .as_ref()
                    .map(|v2| crate::wire::hashes::Trees::new(v2, torrent.piece_length)),
            }),
            name: torrent.name.clone(),
            data_dir,
            files,
            peers: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            trackers: if config.tracker.announce {
                torrent.trackers.clone()
            } else {
                Vec::new()
            },
            uploaded: AtomicU64::new(0),
            upload,
            meter: RateMeter::default(),
            superseed: None,
            peer_ids: Mutex::new(HashSet::new()),
            choker: Mutex::new(Choker::with_mode(
                config.server.upload_slots,
                config.seeding.choker,
                u32::try_from(layout_pieces).unwrap_or(u32::MAX),
            )),
            choker_mode: config.seeding.choker,
            handles: Mutex::new(HashMap::new()),
            shareable: Mutex::new(HashMap::new()),
        }
    }

    /// The same torrent, super-seeding (BEP 16) unless `mode` is off.
    pub fn super_seeding(mut self, mode: crate::config::SuperSeedMode, now: Instant) -> TorrentCtx {
        use crate::config::SuperSeedMode;
        let auto = match mode {
            SuperSeedMode::Off => return self,
            SuperSeedMode::On => false,
            SuperSeedMode::Auto => true,
        };
        let pieces = self.view.layout.num_pieces();
        let seed = u64::from(super::random_u32());
        self.superseed = Some(super::superseed::SuperSeeding::new(pieces, seed, auto, now));
        self
    }

    /// Whether a connection starting now is served super-seeding style.
    pub fn is_super_seeding(&self) -> bool {
        self.superseed.as_ref().is_some_and(|s| s.active())
    }

    fn apply(&self, changes: Vec<crate::choke::Change>) {
        if changes.is_empty() {
            return;
        }
        let handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        for (key, choke) in changes {
            if let Some(h) = handles.get(&key) {
                h.unchoked.store(!choke, Ordering::Relaxed);
                h.choke.set(if choke {
                    ChokeCmd::Choke
                } else {
                    ChokeCmd::Unchoke
                });
                h.wake.notify_one();
            }
        }
    }

    /// Marks the torrent removed and wakes its connections so they close.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for h in self
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            h.wake.notify_one();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// `len` bytes at `start` straight from the page cache, if they are all there now.
    pub fn resident(&self, start: u64, len: usize) -> Option<Bytes> {
        self.files.resident(&self.view.layout, start, len)
    }

    /// Whether `len` bytes at `start` lie in one open data file (could be sent from a mapping).
    pub fn mappable(&self, start: u64, len: usize) -> bool {
        self.files.mappable(&self.view.layout, start, len)
    }

    /// Registers a connection with the choker; returns its handle.
    pub fn join(&self, key: PeerKey, info: PeerInfo, now: Instant) -> Arc<PeerHandle> {
        let group = address_group(info.addr.ip());
        let h = Arc::new(PeerHandle::new(info));
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, h.clone());
        self.choker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add_in(key, group, now);
        h
    }

    /// The connections' handles, locked (super-seeding delivers its offers through them).
    pub(super) fn handles_locked(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<PeerKey, Arc<PeerHandle>>> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every connection's handle (for the API's peer list).
    pub fn peer_handles(&self) -> Vec<Arc<PeerHandle>> {
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
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
        if let Some(h) = self
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            h.interested.store(interested, Ordering::Relaxed);
        }
        let changes = self
            .choker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_interested(key, interested, now);
        self.apply(changes);
    }

    /// Regular upload slots (0 = unlimited), from the next choke tick.
    pub fn set_slots(&self, slots: usize) {
        self.choker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_slots(slots);
    }

    /// The choker's mode (fixed for the torrent's life).
    pub fn choker_mode(&self) -> ChokerMode {
        self.choker_mode
    }

    pub fn choke_tick(&self, now: Instant) {
        self.super_seed_saw(0, super::superseed::Seen::Tick, now);
        // Anti-leech ranks by progress: what the peer reported, or what we sent it if more.
        let progress: Vec<(PeerKey, u32)> = if self.choker_mode == ChokerMode::AntiLeech {
            let piece = self.view.layout.piece_length().max(1);
            self.handles
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, h)| {
                    let sent = h.uploaded.load(Ordering::Relaxed) / piece;
                    let told = h.pieces.load(Ordering::Relaxed);
                    (*k, told.max(u32::try_from(sent).unwrap_or(u32::MAX)))
                })
                .collect()
        } else {
            Vec::new()
        };
        // What each took this round (handles first, then the choker: never both locks).
        let activity: Vec<(PeerKey, u64, u64, bool)> = self
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, h)| {
                let done = h.sends_done.load(Ordering::Acquire);
                let started = h.sends_started.load(Ordering::Acquire);
                (*k, h.uploaded.load(Ordering::Relaxed), done, started > done)
            })
            .collect();
        let changes = {
            let mut choker = self.choker.lock().unwrap_or_else(|e| e.into_inner());
            for (k, pieces) in progress {
                choker.set_progress(k, pieces);
            }
            for (k, uploaded, done, sending) in activity {
                choker.set_activity(k, uploaded, done, sending);
            }
            choker.tick(now)
        };
        self.apply(changes);
    }

    /// Pauses payload (every peer choked) while a quota is used up with no rate left, or
    /// resumes it.
    pub fn set_paused(&self, paused: bool, now: Instant) {
        let changes = self
            .choker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_paused(paused, now);
        self.apply(changes);
    }

    pub fn unchoked(&self) -> usize {
        self.choker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unchoked_count()
    }

    /// A connected peer that may be shared by peer exchange (BEP 11): one we dialled, or one
    /// that connected and told us its listen port.
    pub fn share_peer(&self, key: PeerKey, peer: PexPeer) {
        self.shareable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, peer);
    }

    pub fn unshare_peer(&self, key: PeerKey) {
        self.shareable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }

    /// The shareable peers other than `key`.
    pub fn shareable_peers_except(&self, key: PeerKey) -> Vec<PexPeer> {
        self.shareable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(k, _)| **k != key)
            .map(|(_, p)| *p)
            .collect()
    }

    /// Records a connected peer's id; false if that peer is already connected.
    pub fn add_peer_id(&self, id: [u8; 20]) -> bool {
        self.peer_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id)
    }

    pub fn remove_peer_id(&self, id: &[u8; 20]) {
        self.peer_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Bytes of the torrent this seed cannot serve (the tracker's `left`).
    pub fn left(&self) -> u64 {
        let layout = &self.view.layout;
        (0..layout.num_pieces())
            .filter(|&p| !self.view.have.has(p))
            .filter_map(|p| layout.piece_size(p))
            .sum()
    }

    /// Stops advertising and serving the pieces holding `blocks` after their data could not be
    /// read (a file truncated, removed or failing under the server). Returns how many pieces
    /// were withdrawn now.
    pub fn withdraw(&self, blocks: &[Block]) -> usize {
        let mut n = 0;
        for b in blocks {
            if self.view.have.clear(b.index as usize) {
                n += 1;
                tracing::warn!(torrent = %self.name, piece = b.index, "piece withdrawn: its data cannot be read");
            }
        }
        n
    }
}

/// The choker's address group of a peer: its IPv4 address, or its IPv6 /64.
pub(crate) fn address_group(ip: std::net::IpAddr) -> u64 {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => u64::from(u32::from(v4)),
        std::net::IpAddr::V6(v6) => (u128::from(v6) >> 64) as u64 | 1 << 62,
    }
}
