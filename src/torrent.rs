//! One torrent being seeded: its checked data, open files, choker and connected peers; and how a
//! torrent gets there (check against the data with fast resume, then open the files).

use crate::choke::{self, Choker, PeerKey};
use crate::config::Config;
use crate::metainfo::{self, Torrent};
use crate::progress::Progress;
use crate::stats::Stats;
use crate::storage::resident::FileMap;
use crate::storage::resume::ResumeRecord;
use crate::storage::{verify, Layout};
use crate::wire::peer::TorrentView;
use crate::wire::Block;
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A peer from a tracker reply is not dialled again within this time.
pub const REDIAL_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

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
    pub fn load(torrent: &Path, data_dir: PathBuf) -> Result<TorrentSpec, metainfo::MetainfoError> {
        Ok(TorrentSpec {
            torrent: metainfo::load(torrent)?,
            data_dir,
            just_hashed: false,
        })
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
    /// Read-only mappings of the data files, made on first use, for zero-copy sends.
    maps: Vec<std::sync::OnceLock<Option<Arc<FileMap>>>>,
    pub peers: AtomicUsize,
    /// Set when the torrent is removed: its connections end.
    pub closed: std::sync::atomic::AtomicBool,
    /// Tracker tiers (BEP 12).
    pub trackers: Vec<Vec<String>>,
    /// Payload bytes sent to peers of this torrent in this session.
    pub uploaded: AtomicU64,
    /// Peer ids of connected peers (a second connection from the same peer is refused).
    peer_ids: Mutex<std::collections::HashSet<[u8; 20]>>,
    /// Outgoing connection attempts by address, to skip peers tried recently.
    dialed: Mutex<HashMap<SocketAddr, Instant>>,
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

    /// `len` bytes of the torrent at `start` without a copy, if they lie in one data file and
    /// are all in the page cache (see [`crate::storage::resident`]); None: read them.
    pub fn mapped(&self, start: u64, len: usize) -> Option<Bytes> {
        let mut spans = self.view.layout.spans(start, len as u64);
        let span = spans.next()?;
        if span.pad || spans.next().is_some() {
            return None;
        }
        let file = self.files.get(span.file)?.as_ref()?;
        self.maps[span.file]
            .get_or_init(|| FileMap::new(file))
            .as_ref()?
            .resident(file, span.file_offset, len)
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

    pub fn choke_tick(&self, now: Instant) {
        let changes = self
            .choker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tick(now);
        self.apply(changes);
    }

    pub fn unchoked(&self) -> usize {
        self.choker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unchoked_count()
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

    /// Whether to connect out to `addr` from a tracker reply: not ourselves (our port on a
    /// loopback or unspecified address), not tried within [`REDIAL_AFTER`].
    pub fn should_dial(&self, addr: SocketAddr, our_port: u16, now: Instant) -> bool {
        if addr.port() == 0
            || (addr.port() == our_port && (addr.ip().is_loopback() || addr.ip().is_unspecified()))
        {
            return false;
        }
        let mut dialed = self.dialed.lock().unwrap_or_else(|e| e.into_inner());
        if dialed
            .get(&addr)
            .is_some_and(|t| now.saturating_duration_since(*t) < REDIAL_AFTER)
        {
            return false;
        }
        dialed.insert(addr, now);
        if dialed.len() > 10_000 {
            dialed.retain(|_, t| now.saturating_duration_since(*t) < REDIAL_AFTER);
        }
        true
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

/// Checks a torrent's data (trusting its resume record where the files are unchanged), saves
/// the new record, opens the data files and builds the torrent's serving state.
pub fn check_and_open(
    config: &Config,
    spec: TorrentSpec,
    stats: &Stats,
    show_progress: bool,
) -> TorrentCtx {
    let t = &spec.torrent;
    let layout = Layout::new(t);
    let have = if spec.just_hashed {
        crate::bitfield::full(t.num_pieces())
    } else {
        check(config, t, &layout, &spec.data_dir, stats, show_progress)
    };
    let files: Vec<Option<std::fs::File>> = (0..layout.files().len())
        .map(|i| {
            if layout.files()[i].pad {
                return None;
            }
            std::fs::File::open(layout.file_path(&spec.data_dir, i)).ok()
        })
        .collect();
    let have = crate::bitfield::SharedBitfield::from_bytes(&have, t.num_pieces());
    // A file that cannot be opened now (permissions, removed since the check or since the
    // resume record was written) cannot be served, whatever the check or record said.
    for (i, f) in files.iter().enumerate() {
        let slot = &layout.files()[i];
        if f.is_none() && !slot.pad && slot.length > 0 {
            tracing::warn!(torrent = %t.name, "{}: cannot be opened; its pieces are not served", layout.file_path(&spec.data_dir, i).display());
            for p in layout.file_pieces(i) {
                have.clear(p);
            }
        }
    }
    TorrentCtx {
        view: Arc::new(TorrentView {
            info_hash: t.info_hash,
            layout,
            have,
        }),
        name: t.name.clone(),
        data_dir: spec.data_dir,
        maps: files.iter().map(|_| std::sync::OnceLock::new()).collect(),
        files,
        peers: AtomicUsize::new(0),
        closed: std::sync::atomic::AtomicBool::new(false),
        trackers: if config.tracker.announce {
            t.trackers.clone()
        } else {
            Vec::new()
        },
        uploaded: AtomicU64::new(0),
        dialed: Mutex::new(HashMap::new()),
        peer_ids: Mutex::new(std::collections::HashSet::new()),
        choker: Mutex::new(Choker::new(config.server.upload_slots)),
        handles: Mutex::new(HashMap::new()),
    }
}

fn check(
    config: &Config,
    t: &Torrent,
    layout: &Layout,
    data_dir: &Path,
    stats: &Stats,
    show_progress: bool,
) -> Vec<u8> {
    let resume_dir = config.hashing.resume_dir();
    let previous = resume_dir.as_deref().and_then(|dir| {
        match ResumeRecord::load(dir, &t.info_hash, layout.files().len(), t.num_pieces()) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(torrent = %t.name, "ignoring resume record: {e}");
                None
            }
        }
    });
    let started = Instant::now();
    let progress = Progress::start(
        &format!("checking {}", t.name),
        t.total_length,
        !show_progress,
    );
    let report = verify::check(
        t,
        layout,
        data_dir,
        previous.as_ref(),
        config.hashing.threads,
        &progress.done,
    );
    progress.finish();
    stats
        .hash_bytes
        .fetch_add(report.hashed_bytes, Ordering::Relaxed);
    stats
        .hash_pieces
        .fetch_add(report.hashed_pieces as u64, Ordering::Relaxed);
    stats
        .hash_failed_pieces
        .fetch_add(report.bad_pieces.len() as u64, Ordering::Relaxed);
    for problem in &report.problems {
        tracing::warn!(torrent = %t.name, "data: {problem}; its pieces will not be served");
    }
    for (file, bad) in report.bad_files(layout) {
        let path = layout.file_path(data_dir, file);
        tracing::warn!(torrent = %t.name, "{}: {bad} bad piece(s), not served", path.display());
    }
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        torrent = %t.name, info_hash = %t.info_hash, pieces = t.num_pieces(),
        hashed = report.hashed_pieces, bad = report.bad_pieces.len(),
        "checked data in {secs:.2} s"
    );
    if let Some(dir) = resume_dir {
        if let Err(e) = report.record.save(&dir) {
            tracing::warn!(torrent = %t.name, "cannot save resume record in {}: {e}", dir.display());
        }
    }
    report.have
}
