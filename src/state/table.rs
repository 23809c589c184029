//! The torrent table: every torrent the server knows, in one map, each in exactly one
//! [`TorrentState`]. See `STATE.md` beside this file for the states, the transitions, the
//! invariants and the lock order.

use super::torrent::TorrentCtx;
use crate::metainfo::{InfoHash, Torrent};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A torrent whose data is being checked (or waits for a checker).
#[derive(Debug)]
pub struct Checking {
    pub name: String,
    pub total_bytes: u64,
    /// Bytes dealt with so far (hashed, or vouched for by the resume record).
    pub done_bytes: Arc<AtomicU64>,
    /// Set when the torrent is removed during its check: the check stops early.
    pub cancel: AtomicBool,
    /// Tells this check from a later one of the same info-hash (removed and added again).
    id: u64,
}

/// A torrent that could not be started.
#[derive(Debug)]
pub struct Failed {
    pub name: String,
    pub reason: String,
}

/// A torrent an operator paused: not served, not announced, its data not held open.
#[derive(Debug)]
pub struct Paused {
    pub name: String,
    pub total_bytes: u64,
    pub pieces: usize,
    /// Pieces that were good when it was paused.
    pub pieces_good: usize,
}

/// Where one torrent is in its life.
#[derive(Clone)]
pub enum TorrentState {
    /// Added; its data is being checked. Not served.
    Checking(Arc<Checking>),
    /// Checked and served (its verified pieces; possibly none).
    Live(Arc<TorrentCtx>),
    /// Its check failed outright; kept so that it is visible, not served.
    Error(Arc<Failed>),
    /// Paused by an operator; resuming checks it again (the resume record makes that quick).
    Paused(Arc<Paused>),
}

impl TorrentState {
    pub fn name(&self) -> &str {
        match self {
            TorrentState::Checking(c) => &c.name,
            TorrentState::Live(t) => &t.name,
            TorrentState::Error(f) => &f.name,
            TorrentState::Paused(p) => &p.name,
        }
    }
}

/// Torrents by state, for metrics and readiness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub checking: usize,
    /// Live with at least one piece to serve.
    pub seeding: usize,
    /// Live with nothing to serve (data missing or all bad), or failed.
    pub error: usize,
    /// Paused by an operator.
    pub paused: usize,
}

/// Every torrent, by info-hash. Removing a torrent takes it out of the map (a removed torrent
/// has no state); see `STATE.md`.
pub struct TorrentTable {
    map: RwLock<HashMap<InfoHash, TorrentState>>,
    /// A hybrid's second info-hash (the truncated v2 one) to its key in `map`. Taken after
    /// `map` when both are held (add and remove), alone otherwise.
    aliases: RwLock<HashMap<InfoHash, InfoHash>>,
    next_id: AtomicU64,
    /// Torrents in `Live`, kept beside the map (changed only under its write lock).
    live: std::sync::atomic::AtomicUsize,
    /// Bumped on every change, for parts that follow the table (the announcer).
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for TorrentTable {
    fn default() -> Self {
        TorrentTable {
            map: RwLock::new(HashMap::new()),
            aliases: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            live: Default::default(),
            changed: tokio::sync::watch::channel(0).0,
        }
    }
}

impl TorrentTable {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<InfoHash, TorrentState>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<InfoHash, TorrentState>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Follows changes: the value changes whenever a torrent is added, goes live or is removed.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Adds a torrent in `Checking`; None if its info-hash is already in the table.
    /// A hybrid is also found by its truncated v2 info-hash; a torrent either of whose hashes
    /// is already known is refused.
    pub fn begin_check(&self, torrent: &Torrent) -> Option<Arc<Checking>> {
        let mut map = self.write();
        let mut aliases = self.aliases.write().unwrap_or_else(|e| e.into_inner());
        let alias = torrent
            .v2
            .as_ref()
            .map(|v2| v2.truncated())
            .filter(|a| *a != torrent.info_hash);
        let known = |ih: &InfoHash| map.contains_key(ih) || aliases.contains_key(ih);
        if known(&torrent.info_hash) || alias.as_ref().is_some_and(known) {
            return None;
        }
        if let Some(alias) = alias {
            aliases.insert(alias, torrent.info_hash);
        }
        drop(aliases);
        let c = Arc::new(Checking {
            name: torrent.name.clone(),
            total_bytes: torrent.total_length,
            done_bytes: Arc::new(AtomicU64::new(0)),
            cancel: AtomicBool::new(false),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        });
        map.insert(torrent.info_hash, TorrentState::Checking(c.clone()));
        drop(map);
        self.bump();
        Some(c)
    }

    /// Ends the check `checking` of `info_hash`: the torrent goes `Live` (Ok) or `Error`.
    /// False, and nothing changes, if that check is no longer the torrent's state (it was
    /// removed, and possibly added again, meanwhile).
    pub fn finish_check(
        &self,
        info_hash: &InfoHash,
        checking: &Checking,
        result: Result<TorrentCtx, String>,
    ) -> bool {
        let mut map = self.write();
        match map.get(info_hash) {
            Some(TorrentState::Checking(c)) if c.id == checking.id => {}
            _ => return false,
        }
        let state = match result {
            Ok(ctx) => TorrentState::Live(Arc::new(ctx)),
            Err(reason) => TorrentState::Error(Arc::new(Failed {
                name: checking.name.clone(),
                reason,
            })),
        };
        if matches!(state, TorrentState::Live(_)) {
            self.live.fetch_add(1, Ordering::Relaxed);
        }
        map.insert(*info_hash, state);
        drop(map);
        self.bump();
        true
    }

    /// Removes a torrent in any state: a check is cancelled, a live torrent's connections are
    /// told to close. Returns the state it was in.
    pub fn remove(&self, info_hash: &InfoHash) -> Option<TorrentState> {
        let removed = {
            let mut map = self.write();
            let removed = map.remove(info_hash);
            if removed.is_some() {
                let mut aliases = self.aliases.write().unwrap_or_else(|e| e.into_inner());
                aliases.retain(|_, key| key != info_hash);
            }
            if matches!(removed, Some(TorrentState::Live(_))) {
                self.live.fetch_sub(1, Ordering::Relaxed);
            }
            removed
        };
        match &removed {
            Some(TorrentState::Checking(c)) => c.cancel.store(true, Ordering::Release),
            Some(TorrentState::Live(t)) => t.close(),
            Some(TorrentState::Error(_) | TorrentState::Paused(_)) | None => {}
        }
        if removed.is_some() {
            self.bump();
        }
        removed
    }

    /// Puts a torrent in `Paused` whatever its state (a check is cancelled, a live torrent's
    /// connections close). Returns the state it left; None if it is not in the table.
    pub fn pause(&self, info_hash: &InfoHash, pieces: usize) -> Option<TorrentState> {
        let mut map = self.write();
        let old = map.get(info_hash)?.clone();
        let (total_bytes, pieces_good) = match &old {
            TorrentState::Paused(_) => return Some(old),
            TorrentState::Checking(c) => {
                c.cancel.store(true, Ordering::Release);
                (c.total_bytes, 0)
            }
            TorrentState::Live(t) => (t.view.layout.total_length(), t.view.have.count()),
            TorrentState::Error(_) => (0, 0),
        };
        let paused = Paused {
            name: old.name().to_string(),
            total_bytes,
            pieces,
            pieces_good,
        };
        if matches!(old, TorrentState::Live(_)) {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
        map.insert(*info_hash, TorrentState::Paused(Arc::new(paused)));
        drop(map);
        // Closed after the lock is released (closing takes the torrent's own locks).
        if let TorrentState::Live(t) = &old {
            t.close();
        }
        self.bump();
        Some(old)
    }

    /// Takes a paused torrent out of the table so that it can be added (checked) again; false
    /// if it is not paused.
    pub fn unpause(&self, info_hash: &InfoHash) -> bool {
        let mut map = self.write();
        if !matches!(map.get(info_hash), Some(TorrentState::Paused(_))) {
            return false;
        }
        map.remove(info_hash);
        let mut aliases = self.aliases.write().unwrap_or_else(|e| e.into_inner());
        aliases.retain(|_, key| key != info_hash);
        true
    }

    /// Wakes whoever follows the table (the announcer) without a change, e.g. to reannounce.
    pub fn poke(&self) {
        self.bump();
    }

    /// Cancels every check in progress (at shutdown), leaving the table as it is.
    pub fn cancel_checks(&self) {
        for s in self.read().values() {
            if let TorrentState::Checking(c) = s {
                c.cancel.store(true, Ordering::Release);
            }
        }
    }

    pub fn contains(&self, info_hash: &InfoHash) -> bool {
        self.read().contains_key(info_hash)
    }

    pub fn get(&self, info_hash: &InfoHash) -> Option<TorrentState> {
        self.read().get(info_hash).cloned()
    }

    /// The torrent with this info-hash (either of a hybrid's), if it is live.
    pub fn live(&self, info_hash: &InfoHash) -> Option<Arc<TorrentCtx>> {
        let found = self.read().get(info_hash).cloned();
        let state = match found {
            Some(s) => s,
            None => {
                let aliases = self.aliases.read().unwrap_or_else(|e| e.into_inner());
                let key = *aliases.get(info_hash)?;
                drop(aliases);
                self.read().get(&key)?.clone()
            }
        };
        match state {
            TorrentState::Live(t) => Some(t),
            _ => None,
        }
    }

    /// How many torrents are live (a counter: O(1)).
    pub fn live_count(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Every live torrent.
    pub fn all_live(&self) -> Vec<Arc<TorrentCtx>> {
        self.read()
            .values()
            .filter_map(|s| match s {
                TorrentState::Live(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every torrent with its state.
    pub fn snapshot(&self) -> Vec<(InfoHash, TorrentState)> {
        self.read().iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    pub fn counts(&self) -> StateCounts {
        let mut c = StateCounts::default();
        for s in self.read().values() {
            match s {
                TorrentState::Checking(_) => c.checking += 1,
                TorrentState::Live(t) if t.view.have.count() > 0 => c.seeding += 1,
                TorrentState::Live(_) | TorrentState::Error(_) => c.error += 1,
                TorrentState::Paused(_) => c.paused += 1,
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::storage::files::DataFiles;
    use crate::storage::Layout;

    fn torrent() -> Torrent {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![1u8; 40_000]).unwrap();
        let opts = crate::make::MakeOptions {
            path: dir.path().join("f"),
            quiet: true,
            ..Default::default()
        };
        crate::make::make(&opts).unwrap().1
    }

    fn ctx(t: &Torrent) -> TorrentCtx {
        let files = Arc::new(DataFiles::none(&Layout::new(t)));
        let have = crate::bitfield::full(t.num_pieces());
        TorrentCtx::new(
            &Config::default(),
            t,
            "/nonexistent".into(),
            files,
            &have,
            Default::default(),
        )
    }

    #[test]
    fn a_torrent_is_in_one_state_and_a_stale_check_cannot_revive_it() {
        let t = torrent();
        let ih = t.info_hash;
        let table = TorrentTable::default();
        let mut rx = table.subscribe();
        let first = table.begin_check(&t).unwrap();
        assert!(table.begin_check(&t).is_none(), "added twice");
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        assert_eq!(table.counts().checking, 1);
        assert!(table.live(&ih).is_none(), "not served while checking");
        // Removed during its check: cancelled, and its late result is thrown away.
        assert!(matches!(table.remove(&ih), Some(TorrentState::Checking(_))));
        assert!(first.cancel.load(Ordering::Acquire));
        let second = table.begin_check(&t).unwrap();
        assert!(!table.finish_check(&ih, &first, Ok(ctx(&t))));
        assert!(matches!(table.get(&ih), Some(TorrentState::Checking(_))));
        assert_eq!(table.live_count(), 0, "a stale check is not counted");
        assert!(table.finish_check(&ih, &second, Ok(ctx(&t))));
        let live = table.live(&ih).expect("live");
        assert_eq!(table.live_count(), 1);
        assert_eq!(
            table.counts(),
            StateCounts {
                checking: 0,
                seeding: 1,
                error: 0,
                paused: 0,
            }
        );
        assert!(rx.has_changed().unwrap());
        // Removing a live torrent closes it for its connections.
        assert!(matches!(table.remove(&ih), Some(TorrentState::Live(_))));
        assert!(live.is_closed());
        assert!(table.is_empty());
        assert_eq!(table.live_count(), 0);
        // A failed check is visible as an error.
        let c = table.begin_check(&t).unwrap();
        assert!(table.finish_check(&ih, &c, Err("boom".into())));
        assert_eq!(table.counts().error, 1);
        assert!(table.live(&ih).is_none());
        assert_eq!(table.live_count(), 0, "an error is not live");
    }

    #[test]
    fn pausing_closes_a_live_torrent_and_only_a_paused_one_unpauses() {
        let t = torrent();
        let ih = t.info_hash;
        let table = TorrentTable::default();
        assert!(table.pause(&ih, 1).is_none(), "not in the table");
        let c = table.begin_check(&t).unwrap();
        assert!(!table.unpause(&ih), "checking, not paused");
        assert!(table.finish_check(&ih, &c, Ok(ctx(&t))));
        let live = table.live(&ih).unwrap();
        assert!(matches!(
            table.pause(&ih, t.num_pieces()),
            Some(TorrentState::Live(_))
        ));
        assert!(live.is_closed(), "its connections end");
        assert!(table.live(&ih).is_none(), "not served while paused");
        assert_eq!(table.live_count(), 0);
        assert_eq!(table.counts().paused, 1);
        match table.get(&ih) {
            Some(TorrentState::Paused(p)) => assert_eq!(p.pieces_good, t.num_pieces()),
            _ => panic!("not paused"),
        }
        assert!(
            table.begin_check(&t).is_none(),
            "a paused torrent is still in the table"
        );
        assert!(table.unpause(&ih));
        assert!(table.is_empty());
        // Paused during its check: the check is cancelled and its late result dropped.
        let c = table.begin_check(&t).unwrap();
        table.pause(&ih, 1);
        assert!(c.cancel.load(Ordering::Acquire));
        assert!(!table.finish_check(&ih, &c, Ok(ctx(&t))));
        assert!(matches!(table.get(&ih), Some(TorrentState::Paused(_))));
        assert_eq!(table.live_count(), 0);
    }
}
