//! Fast-resume records: what a completed check found, and the file stamps it was found for.
//!
//! One file per torrent, `<info-hash>.resume` in the resume directory: a bencoded dictionary
//! followed by the SHA-1 of those bytes, so a torn or corrupted record fails its checksum and is
//! ignored. Records are written atomically (temporary file, fsync, rename, fsync of the
//! directory) and only after a check has finished, so no record ever claims a piece that was not
//! verified. A piece is trusted from a record only if every file it touches still has the same
//! size, modification time, change time, inode and device as when it was verified.
//!
//! It owns the record format and its file; it decides nothing about trusting pieces beyond matching
//! stamps.

use crate::metainfo::{HashKind, InfoHash};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const VERSION: i64 = 1;
/// Largest record read back (a torrent of a million files needs some tens of MiB).
const MAX_RECORD_BYTES: u64 = 256 << 20;

/// What identifies one version of a file's contents, cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub size: u64,
    pub mtime: i64,
    pub mtime_ns: i64,
    pub ctime: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
}

impl FileStamp {
    /// Stamp of a regular file; `None` if it is missing or not a regular file.
    pub fn of(path: &Path) -> Option<FileStamp> {
        let m = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
        Some(FileStamp::from_metadata(&m))
    }

    /// Stamp from a file's metadata (e.g. `fstat` of an open file).
    pub fn from_metadata(m: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            size: m.len(),
            mtime: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_ns: m.ctime_nsec(),
            ino: m.ino(),
            dev: m.dev(),
        }
    }
}

/// A completed check of one torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeRecord {
    pub info_hash: InfoHash,
    /// Per torrent file: its stamp when checked (`None` for pad files and unusable files).
    pub files: Vec<Option<FileStamp>>,
    /// Pieces that passed, BEP 3 layout.
    pub have: Vec<u8>,
    /// The hashes they passed (a record of a hybrid's SHA-1 check, written before v2 was
    /// checked, does not vouch for its merkle trees).
    pub hash: HashKind,
}

#[derive(Serialize, Deserialize)]
struct Encoded {
    version: i64,
    #[serde(rename = "info hash", with = "serde_bytes")]
    info_hash: Vec<u8>,
    /// Empty dictionaries stand for files without a stamp.
    files: Vec<OptStamp>,
    #[serde(with = "serde_bytes")]
    have: Vec<u8>,
    /// `v1`, `v2` or `hybrid`; records written before v2 support have none and mean `v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hash: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
struct OptStamp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mtime: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mtime_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ctime: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ctime_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ino: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dev: Option<u64>,
}

impl OptStamp {
    fn from(s: &Option<FileStamp>) -> OptStamp {
        match s {
            None => OptStamp::default(),
            Some(s) => OptStamp {
                size: Some(s.size),
                mtime: Some(s.mtime),
                mtime_ns: Some(s.mtime_ns),
                ctime: Some(s.ctime),
                ctime_ns: Some(s.ctime_ns),
                ino: Some(s.ino),
                dev: Some(s.dev),
            },
        }
    }

    fn into_stamp(self) -> Option<FileStamp> {
        Some(FileStamp {
            size: self.size?,
            mtime: self.mtime?,
            mtime_ns: self.mtime_ns?,
            ctime: self.ctime?,
            ctime_ns: self.ctime_ns?,
            ino: self.ino?,
            dev: self.dev?,
        })
    }
}

/// Where the record of `info_hash` lives in `dir`.
pub fn record_path(dir: &Path, info_hash: &InfoHash) -> PathBuf {
    dir.join(format!("{}.resume", info_hash.to_hex()))
}

impl ResumeRecord {
    /// The record's bytes: bencoded body then its SHA-1.
    pub fn encode(&self) -> Vec<u8> {
        let e = Encoded {
            version: VERSION,
            info_hash: self.info_hash.0.to_vec(),
            files: self.files.iter().map(OptStamp::from).collect(),
            have: self.have.clone(),
            hash: Some(self.hash.as_str().to_string()),
        };
        let mut bytes = serde_bencode::to_bytes(&e).expect("bencode of plain data");
        let sum: [u8; 20] = Sha1::digest(&bytes).into();
        bytes.extend_from_slice(&sum);
        bytes
    }

    /// Parses record bytes; the error says why they cannot be trusted.
    pub fn decode(bytes: &[u8]) -> Result<ResumeRecord, String> {
        if bytes.len() < 20 {
            return Err("too short".into());
        }
        let (body, sum) = bytes.split_at(bytes.len() - 20);
        if Sha1::digest(body).as_slice() != sum {
            return Err("checksum mismatch (torn or corrupted write)".into());
        }
        let e: Encoded = serde_bencode::from_bytes(body).map_err(|e| format!("malformed: {e}"))?;
        if e.version != VERSION {
            return Err(format!("unsupported version {}", e.version));
        }
        let info_hash: [u8; 20] = e
            .info_hash
            .try_into()
            .map_err(|_| "bad info hash".to_string())?;
        let hash = match e.hash.as_deref() {
            None | Some("v1") => HashKind::V1,
            Some("v2") => HashKind::V2,
            Some("hybrid") => HashKind::Hybrid,
            Some(other) => return Err(format!("unknown hash kind {other:?}")),
        };
        Ok(ResumeRecord {
            info_hash: InfoHash(info_hash),
            files: e.files.into_iter().map(OptStamp::into_stamp).collect(),
            have: e.have,
            hash,
        })
    }

    /// Loads the record for `info_hash` checked with `hash`, with `num_files` files and
    /// `num_pieces` pieces. `Ok(None)`: there is none. `Err`: there is one but it cannot be
    /// trusted (say why).
    pub fn load(
        dir: &Path,
        info_hash: &InfoHash,
        hash: HashKind,
        num_files: usize,
        num_pieces: usize,
    ) -> Result<Option<ResumeRecord>, String> {
        let path = record_path(dir, info_hash);
        let bytes = match crate::fsread::read_regular(&path, MAX_RECORD_BYTES) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
            Ok(b) => b,
        };
        let r = ResumeRecord::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        if r.info_hash != *info_hash
            || r.files.len() != num_files
            || !crate::bitfield::valid(&r.have, num_pieces)
        {
            return Err(format!("{}: belongs to another torrent", path.display()));
        }
        if r.hash != hash {
            return Err(format!(
                "{}: checked with {} hashes, the torrent has {}",
                path.display(),
                r.hash.as_str(),
                hash.as_str()
            ));
        }
        Ok(Some(r))
    }

    /// Writes the record through a rename, without fsyncs: a record a power loss leaves torn
    /// fails its checksum and one it leaves stale fails the files' stamps, so either costs a
    /// recheck, never a piece served unverified (two fsyncs per record made the first start of
    /// 10,000 torrents 2.5x slower).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = record_path(dir, &self.info_hash);
        super::atomic::replace_unsynced(&path, &self.encode())
    }
}

/// Removes the temporary files that a crash during an earlier process's record write left in
/// `dir` (they are never read); returns how many. Run once per process before its first save
/// (a scan per save would make saving N records cost N² directory entries).
pub fn remove_stale_temps(dir: &Path) -> usize {
    let ours = format!(".resume.tmp{}", std::process::id());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.contains(".resume.tmp")
            && !name.ends_with(&ours)
            && std::fs::remove_file(e.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ResumeRecord {
        let stamp = FileStamp {
            size: 5,
            mtime: 1,
            mtime_ns: 2,
            ctime: 3,
            ctime_ns: 4,
            ino: 6,
            dev: 7,
        };
        ResumeRecord {
            info_hash: InfoHash([9; 20]),
            files: vec![Some(stamp), None],
            have: vec![0xa0],
            hash: HashKind::V1,
        }
    }

    #[test]
    fn a_record_vouches_only_for_the_hashes_it_was_checked_with() {
        let dir = tempfile::tempdir().unwrap();
        let r = record();
        r.save(dir.path()).unwrap();
        // A hybrid served as v1 before v2 support: its SHA-1 record says nothing of the trees.
        let e = ResumeRecord::load(dir.path(), &r.info_hash, HashKind::Hybrid, 2, 3).unwrap_err();
        assert!(
            e.contains("checked with v1 hashes, the torrent has hybrid"),
            "{e}"
        );
        let v2 = ResumeRecord {
            hash: HashKind::V2,
            ..r.clone()
        };
        v2.save(dir.path()).unwrap();
        assert_eq!(
            ResumeRecord::load(dir.path(), &r.info_hash, HashKind::V2, 2, 3),
            Ok(Some(v2))
        );
        // A record from before the field existed reads as v1.
        let old = Encoded {
            version: VERSION,
            info_hash: r.info_hash.0.to_vec(),
            files: r.files.iter().map(OptStamp::from).collect(),
            have: r.have.clone(),
            hash: None,
        };
        let mut bytes = serde_bencode::to_bytes(&old).unwrap();
        let sum: [u8; 20] = Sha1::digest(&bytes).into();
        bytes.extend_from_slice(&sum);
        assert_eq!(ResumeRecord::decode(&bytes), Ok(r));
    }

    #[test]
    fn round_trips_and_rejects_every_truncation_and_bit_flip() {
        let bytes = record().encode();
        assert_eq!(ResumeRecord::decode(&bytes).unwrap(), record());
        for cut in 0..bytes.len() {
            assert!(ResumeRecord::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(ResumeRecord::decode(&b).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn load_distinguishes_absent_foreign_and_good_records() {
        let dir = tempfile::tempdir().unwrap();
        let r = record();
        assert_eq!(
            ResumeRecord::load(dir.path(), &r.info_hash, HashKind::V1, 2, 3),
            Ok(None)
        );
        let stale = dir
            .path()
            .join(format!("{}.resume.tmp12345", r.info_hash.to_hex()));
        std::fs::write(&stale, b"torn").unwrap();
        r.save(dir.path()).unwrap();
        assert_eq!(remove_stale_temps(dir.path()), 1);
        assert!(!stale.exists(), "a crash's temporary file is cleaned up");
        assert!(record_path(dir.path(), &r.info_hash).exists());
        assert_eq!(
            ResumeRecord::load(dir.path(), &r.info_hash, HashKind::V1, 2, 3),
            Ok(Some(r.clone()))
        );
        assert!(
            ResumeRecord::load(dir.path(), &r.info_hash, HashKind::V1, 3, 3)
                .unwrap_err()
                .contains("another torrent")
        );
        // A foreign record copied under this torrent's name.
        let other = ResumeRecord {
            info_hash: InfoHash([1; 20]),
            ..r.clone()
        };
        std::fs::write(record_path(dir.path(), &r.info_hash), other.encode()).unwrap();
        assert!(ResumeRecord::load(dir.path(), &r.info_hash, HashKind::V1, 2, 3).is_err());
    }
}
