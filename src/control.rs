//! Control: the one place torrents are added, removed, paused, resumed, rechecked and
//! reannounced, whoever asks (the command line, the configuration file on SIGHUP, the watch
//! directory, the control API). It keeps the catalog — what each torrent in the table was added
//! from (its [`TorrentSpec`], origin and time) — so that a paused torrent can be resumed and a
//! torrent rechecked without the caller holding on to its metainfo.
//!
//! Invariant: the catalog's keys are the table's keys. Both change only here, under the
//! catalog lock (taken before the table's; never the other way round).

use crate::checker::Checker;
use crate::metainfo::InfoHash;
use crate::state::{Origin, Shared, TorrentLimits, TorrentSpec, TorrentState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// What a torrent was added from.
#[derive(Debug, Clone)]
pub struct Entry {
    pub spec: TorrentSpec,
    /// Seconds since the Unix epoch.
    pub added_unix: i64,
}

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    NotFound,
    /// Already in the table.
    Duplicate,
    /// Not paused (resume) or already paused (pause).
    WrongState(&'static str),
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::NotFound => f.write_str("no such torrent"),
            ControlError::Duplicate => f.write_str("the torrent is already being seeded"),
            ControlError::WrongState(s) => f.write_str(s),
        }
    }
}

pub struct Control {
    pub shared: Arc<Shared>,
    checker: Arc<Checker>,
    catalog: Mutex<HashMap<InfoHash, Entry>>,
    /// Payload sent this session by torrents' earlier live spells (before a pause, recheck or
    /// removal), by info-hash.
    uploaded_before: Mutex<HashMap<InfoHash, u64>>,
}

impl Control {
    pub fn new(shared: Arc<Shared>, checker: Arc<Checker>) -> Control {
        Control {
            shared,
            checker,
            catalog: Mutex::new(HashMap::new()),
            uploaded_before: Mutex::new(HashMap::new()),
        }
    }

    /// A live spell ended: its quota count and its uploaded bytes carry over.
    fn ended(&self, info_hash: &InfoHash, left: Option<TorrentState>) {
        if let Some(TorrentState::Live(t)) = left {
            self.shared.carry(*info_hash, t.upload.quota.used());
            let sent = t.uploaded.load(std::sync::atomic::Ordering::Relaxed);
            *self
                .uploaded_before
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(*info_hash)
                .or_default() += sent;
        }
    }

    /// Payload bytes this torrent sent since the process started.
    pub fn uploaded_session(&self, info_hash: &InfoHash) -> u64 {
        let before = self
            .uploaded_before
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(info_hash)
            .copied()
            .unwrap_or(0);
        let now = self
            .shared
            .torrent(info_hash)
            .map_or(0, |t| t.uploaded.load(std::sync::atomic::Ordering::Relaxed));
        before + now
    }

    fn catalog(&self) -> MutexGuard<'_, HashMap<InfoHash, Entry>> {
        self.catalog.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks and then serves a torrent; Duplicate if its info-hash is in the table.
    pub fn add(&self, spec: TorrentSpec) -> Result<(), ControlError> {
        self.add_at(spec, crate::state::unix_now())
    }

    /// [`Control::add`] for a torrent first added at `added_unix` (restored from the store).
    pub fn add_at(&self, spec: TorrentSpec, added_unix: i64) -> Result<(), ControlError> {
        let mut catalog = self.catalog();
        let ih = spec.torrent.info_hash;
        if catalog.contains_key(&ih) || !self.checker.add(spec.clone()) {
            return Err(ControlError::Duplicate);
        }
        catalog.insert(ih, Entry { spec, added_unix });
        Ok(())
    }

    /// Stops a torrent in any state and forgets it (its check is cancelled, or its peers are
    /// disconnected and its trackers told `stopped`). Returns what it was added from.
    pub fn remove(&self, info_hash: &InfoHash) -> Option<Entry> {
        let mut catalog = self.catalog();
        // Its quota count lasts the period, should it come back.
        let left = self.shared.torrents.remove(info_hash);
        self.ended(info_hash, left);
        catalog.remove(info_hash)
    }

    /// What a torrent was added from.
    pub fn entry(&self, info_hash: &InfoHash) -> Option<Entry> {
        self.catalog().get(info_hash).cloned()
    }

    /// Every torrent's entry.
    pub fn entries(&self) -> Vec<Entry> {
        self.catalog().values().cloned().collect()
    }

    /// Stops serving and announcing a torrent but keeps it, paused.
    pub fn pause(&self, info_hash: &InfoHash) -> Result<(), ControlError> {
        let catalog = self.catalog();
        let entry = catalog.get(info_hash).ok_or(ControlError::NotFound)?;
        if matches!(
            self.shared.torrents.get(info_hash),
            Some(TorrentState::Paused(_))
        ) {
            return Err(ControlError::WrongState("the torrent is already paused"));
        }
        let pieces = entry.spec.torrent.num_pieces();
        let left = self.shared.torrents.pause(info_hash, pieces);
        self.ended(info_hash, left);
        Ok(())
    }

    /// Checks a paused torrent again (quick with a resume record) and serves it.
    pub fn resume(&self, info_hash: &InfoHash) -> Result<(), ControlError> {
        let catalog = self.catalog();
        let entry = catalog.get(info_hash).ok_or(ControlError::NotFound)?;
        if !self.shared.torrents.unpause(info_hash) {
            return Err(ControlError::WrongState("the torrent is not paused"));
        }
        let mut spec = entry.spec.clone();
        spec.force_check = false;
        spec.just_hashed = false;
        self.checker.add(spec);
        Ok(())
    }

    /// Hashes every piece of a torrent again, ignoring its resume record; it is not served
    /// meanwhile. A paused torrent stays paused until the check is done, then serves.
    pub fn recheck(&self, info_hash: &InfoHash) -> Result<(), ControlError> {
        let catalog = self.catalog();
        let entry = catalog.get(info_hash).ok_or(ControlError::NotFound)?;
        let left = self.shared.torrents.remove(info_hash);
        self.ended(info_hash, left);
        let mut spec = entry.spec.clone();
        spec.force_check = true;
        self.checker.add(spec);
        Ok(())
    }

    /// Announces a torrent to every tracker tier now.
    pub fn reannounce(&self, info_hash: &InfoHash) -> Result<(), ControlError> {
        match self.shared.torrents.get(info_hash) {
            None => Err(ControlError::NotFound),
            Some(TorrentState::Live(_)) => {
                self.shared.request_reannounce(*info_hash);
                Ok(())
            }
            Some(_) => Err(ControlError::WrongState(
                "only a seeding torrent announces (this one is checking, paused or failed)",
            )),
        }
    }

    /// Sets a torrent's own upload limits (live at once; kept for a resume or recheck).
    pub fn set_limits(
        &self,
        info_hash: &InfoHash,
        limits: TorrentLimits,
    ) -> Result<(), ControlError> {
        let mut catalog = self.catalog();
        let entry = catalog.get_mut(info_hash).ok_or(ControlError::NotFound)?;
        entry.spec.limits = limits;
        if let Some(t) = self.shared.torrent(info_hash) {
            let u = &self.shared.upload;
            t.upload
                .set(limits.upload_rate, limits.upload_quota, u.quota_rate());
            u.wake_keeper.notify_one();
        }
        Ok(())
    }

    /// Torrents of one origin.
    pub fn of_origin(&self, origin: Origin) -> Vec<InfoHash> {
        self.catalog()
            .iter()
            .filter(|(_, e)| e.spec.origin == origin)
            .map(|(ih, _)| *ih)
            .collect()
    }
}
