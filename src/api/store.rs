//! Torrents added through the API, kept across restarts: `<state_dir>/api-torrents/` holds
//! `HEX.torrent` (the metainfo as received or made) and `HEX.json` (data directory, limits,
//! paused, when it was added), each written atomically (temporary file, fsync, rename). The
//! record is written after the torrent file, so a record always has its torrent; a torrent
//! without a record (a crash between the two) is ignored and removed at the next start.

use crate::metainfo::InfoHash;
use crate::state::TorrentLimits;
use crate::storage::atomic::write_atomic;
use serde::{Deserialize, Serialize};

/// Largest saved record read back (records are a few hundred bytes).
const MAX_RECORD_BYTES: u64 = 1 << 20;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub data_dir: PathBuf,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub upload_rate_limit: u64,
    #[serde(default)]
    pub upload_quota: u64,
    #[serde(default)]
    pub added_unix: i64,
}

impl Record {
    pub fn limits(&self) -> TorrentLimits {
        TorrentLimits {
            upload_rate: self.upload_rate_limit,
            upload_quota: self.upload_quota,
            super_seed: None,
        }
    }
}

pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.join("api-torrents"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn paths(&self, ih: &InfoHash) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{ih}.torrent")),
            self.dir.join(format!("{ih}.json")),
        )
    }

    /// Saves a new torrent and its record.
    pub fn add(&self, ih: &InfoHash, torrent: &[u8], record: &Record) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let (t, _) = self.paths(ih);
        write_atomic(&t, torrent)?;
        self.update(ih, record)
    }

    /// Rewrites a record (limits, paused).
    pub fn update(&self, ih: &InfoHash, record: &Record) -> std::io::Result<()> {
        let (_, r) = self.paths(ih);
        let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        write_atomic(&r, &json)
    }

    pub fn remove(&self, ih: &InfoHash) -> std::io::Result<()> {
        let (t, r) = self.paths(ih);
        // The record first: a torrent file without one is ignored.
        for p in [r, t] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub fn record(&self, ih: &InfoHash) -> Option<Record> {
        let (_, r) = self.paths(ih);
        serde_json::from_slice(&crate::fsread::read_regular(&r, MAX_RECORD_BYTES).ok()?).ok()
    }

    /// Every saved torrent: (torrent file, record). Unreadable records are logged and skipped.
    pub fn load_all(&self) -> Vec<(PathBuf, Record)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "json") {
                let torrent = path.with_extension("torrent");
                match crate::fsread::read_regular(&path, MAX_RECORD_BYTES)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()))
                {
                    Ok(r) if torrent.exists() => out.push((torrent, r)),
                    Ok(_) => tracing::warn!("api: {} has no torrent file; ignored", path.display()),
                    Err(e) => tracing::warn!("api: {}: {e}; ignored", path.display()),
                }
            } else if path.extension().is_some_and(|x| x == "torrent")
                && !path.with_extension("json").exists()
            {
                // Saved just before a crash, never recorded: it was never added.
                let _ = std::fs::remove_file(&path);
            }
        }
        out.sort_by_key(|a| a.1.added_unix);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_and_orphans_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let ih = InfoHash([7; 20]);
        let rec = Record {
            data_dir: "/data".into(),
            paused: false,
            upload_rate_limit: 5,
            upload_quota: 0,
            added_unix: 1,
        };
        store.add(&ih, b"d4:infod1:xi1eee", &rec).unwrap();
        let orphan = store.dir().join(format!("{}.torrent", InfoHash([8; 20])));
        std::fs::write(&orphan, b"x").unwrap();
        let all = store.load_all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1, rec);
        assert!(!orphan.exists());
        store
            .update(
                &ih,
                &Record {
                    paused: true,
                    ..rec.clone()
                },
            )
            .unwrap();
        assert!(store.record(&ih).unwrap().paused);
        store.remove(&ih).unwrap();
        assert!(store.load_all().is_empty());
    }
}
