//! `uringseed make`: build a v1 .torrent from a file or directory.
//!
//! Files are collected in sorted path order and hashed in parallel by
//! [`crate::storage::hasher`]; the output is canonical bencode (serde_bencode sorts keys) with no
//! timestamp unless one is asked for, so the same input always gives the same bytes.
//!
//! It writes only the .torrent it is asked for (through [`crate::storage::atomic`]) and knows
//! nothing of serving.

use crate::metainfo::{self, FileEntry, Torrent};
use crate::progress::Progress;
use crate::storage::{hasher, Layout};
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Smallest and largest piece length chosen automatically; explicit ones must be powers of two
/// within [`MIN_PIECE_LENGTH`, `metainfo::MAX_PIECE_LENGTH`].
pub const MIN_PIECE_LENGTH: u64 = 16 << 10;
pub const MAX_AUTO_PIECE_LENGTH: u64 = 16 << 20;
/// Automatic piece length aims for at most this many pieces.
pub const TARGET_PIECES: u64 = 2000;

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct MakeOptions {
    pub path: PathBuf,
    /// Tiers of tracker URLs (BEP 12); the first URL becomes `announce`.
    pub trackers: Vec<Vec<String>>,
    pub piece_length: Option<u64>,
    pub private: bool,
    pub comment: Option<String>,
    pub source: Option<String>,
    /// Unix time for `creation date`; omitted when `None` to keep output deterministic.
    pub creation_date: Option<i64>,
    /// Hashing threads (0 = one per core).
    pub threads: usize,
    /// Suppress the progress display.
    pub quiet: bool,
    /// The torrent's name (`info.name`) instead of PATH's file name.
    pub name: Option<String>,
    /// Web seed URLs (BEP 19 `url-list`, outside the info dictionary: the info-hash is the same
    /// with or without them).
    pub web_seeds: Vec<String>,
}

/// A failure to build a torrent, naming the path involved.
#[derive(Debug)]
pub struct MakeError(pub String);

impl fmt::Display for MakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MakeError {}

/// The name the torrent of `opts` gets: `--name`, else PATH's own file name (before any
/// hashing, so that callers can check the output path first).
pub fn torrent_name(opts: &MakeOptions) -> Result<String, MakeError> {
    if let Some(name) = &opts.name {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(MakeError(format!(
                "--name {name:?}: must be a file name (not empty, no '/', not . or ..)"
            )));
        }
        return Ok(name.clone());
    }
    let path = &opts.path;
    let root = path
        .canonicalize()
        .map_err(|e| MakeError(format!("{}: cannot read: {e}", path.display())))?;
    root.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| MakeError(format!("{}: has no usable UTF-8 file name", path.display())))
}

/// Checks a web seed URL: http or https with a host (BEP 19).
pub fn check_web_seed(url: &str) -> Result<(), MakeError> {
    let bad = |why: &str| MakeError(format!("--web-seed {url:?}: {why}"));
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("must be an http:// or https:// URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    Ok(())
}

/// The piece length chosen for `total` bytes when none is given.
pub fn auto_piece_length(total: u64) -> u64 {
    let mut len = MIN_PIECE_LENGTH;
    while total.div_ceil(len) > TARGET_PIECES && len < MAX_AUTO_PIECE_LENGTH {
        len *= 2;
    }
    len
}

/// Builds the torrent: returns its bencoded bytes and the parsed result.
pub fn make(opts: &MakeOptions) -> Result<(Vec<u8>, Torrent), MakeError> {
    if let Some(len) = opts.piece_length {
        if !len.is_power_of_two() || !(MIN_PIECE_LENGTH..=metainfo::MAX_PIECE_LENGTH).contains(&len)
        {
            return Err(MakeError(format!(
                "--piece-length {len}: must be a power of two from {MIN_PIECE_LENGTH} to {}",
                metainfo::MAX_PIECE_LENGTH
            )));
        }
    }
    for url in &opts.web_seeds {
        check_web_seed(url)?;
    }
    let info_name = torrent_name(opts)?;
    let path = &opts.path;
    let meta = std::fs::metadata(path)
        .map_err(|e| MakeError(format!("{}: cannot read: {e}", path.display())))?;
    let root = path
        .canonicalize()
        .map_err(|e| MakeError(format!("{}: {e}", path.display())))?;
    let name = root
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| MakeError(format!("{}: has no usable UTF-8 file name", path.display())))?;
    let (files, single) = if meta.is_file() {
        (vec![(Vec::new(), meta.len())], true)
    } else if meta.is_dir() {
        let mut files = Vec::new();
        collect(path, &mut Vec::new(), &mut files)?;
        files.sort();
        if files.is_empty() {
            return Err(MakeError(format!(
                "{}: directory holds no files",
                path.display()
            )));
        }
        (files, false)
    } else {
        return Err(MakeError(format!(
            "{}: is neither a file nor a directory",
            path.display()
        )));
    };
    let total: u64 = files.iter().map(|(_, len)| len).sum();
    if total == 0 {
        return Err(MakeError(format!(
            "{}: holds no data (all files are empty)",
            path.display()
        )));
    }
    let piece_length = opts
        .piece_length
        .unwrap_or_else(|| auto_piece_length(total));

    // Lay the files out as a torrent with placeholder hashes, then hash from disk.
    let num_pieces = total.div_ceil(piece_length) as usize;
    let entries: Vec<FileEntry> = if single {
        vec![FileEntry {
            path: vec![name.clone()],
            length: total,
            pad: false,
        }]
    } else {
        files
            .iter()
            .map(|(p, len)| FileEntry {
                path: p.clone(),
                length: *len,
                pad: false,
            })
            .collect()
    };
    let draft = Torrent {
        info_hash: metainfo::InfoHash([0; 20]),
        name: name.clone(),
        piece_length,
        piece_hashes: vec![[0; 20]; num_pieces],
        files: entries,
        single_file: single,
        total_length: total,
        private: opts.private,
        source: None,
        announce: None,
        trackers: Vec::new(),
        comment: None,
        created_by: None,
        creation_date: None,
        info_bytes: Vec::new(),
    };
    let layout = Layout::new(&draft);
    // Hash under PATH's real name from the directory that holds it.
    let data_dir = root.parent().unwrap_or(Path::new("/"));

    let progress = Progress::start("hashing", total, opts.quiet);
    let digests = hasher::hash_pieces(
        &layout,
        data_dir,
        hasher::Access::Mmap,
        opts.threads,
        &progress.done,
    );
    progress.finish();
    let mut pieces = Vec::with_capacity(num_pieces * 20);
    for d in digests {
        pieces.extend_from_slice(&d.map_err(|e| MakeError(format!("hashing failed: {e}")))?);
    }

    let info = InfoOut {
        files: (!single).then(|| {
            files
                .iter()
                .map(|(p, len)| FileOut {
                    length: *len,
                    path: p.clone(),
                })
                .collect()
        }),
        length: single.then_some(total),
        // Hashed above under the name on disk; the torrent may call it otherwise (--name).
        name: info_name,
        piece_length,
        pieces: serde_bytes::ByteBuf::from(pieces),
        private: opts.private.then_some(1),
        source: opts.source.clone(),
    };
    let urls: Vec<&String> = opts.trackers.iter().flatten().collect();
    let out = TorrentOut {
        announce: urls.first().map(|u| u.to_string()),
        announce_list: (urls.len() > 1).then(|| opts.trackers.clone()),
        comment: opts.comment.clone(),
        created_by: format!("uringseed/{}", env!("CARGO_PKG_VERSION")),
        creation_date: opts.creation_date,
        info,
        url_list: opts.web_seeds.clone(),
    };
    let bytes = serde_bencode::to_bytes(&out).map_err(|e| MakeError(format!("encoding: {e}")))?;
    let torrent = metainfo::parse(&bytes, "generated torrent")
        .map_err(|e| MakeError(format!("internal error, generated torrent is invalid: {e}")))?;
    Ok((bytes, torrent))
}

fn collect(
    dir: &Path,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, u64)>,
) -> Result<(), MakeError> {
    let read = std::fs::read_dir(dir)
        .map_err(|e| MakeError(format!("{}: cannot list: {e}", dir.display())))?;
    for entry in read {
        let entry = entry.map_err(|e| MakeError(format!("{}: {e}", dir.display())))?;
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| MakeError(format!("{}: file name is not UTF-8", path.display())))?;
        // Follows symlinks to files; a symlinked directory is followed too, but a loop would be
        // caught by the path length limit of the OS rather than here, so skip them.
        let lmeta = entry
            .file_type()
            .map_err(|e| MakeError(format!("{}: {e}", path.display())))?;
        let meta = std::fs::metadata(&path)
            .map_err(|e| MakeError(format!("{}: cannot stat: {e}", path.display())))?;
        prefix.push(name);
        if meta.is_file() {
            out.push((prefix.clone(), meta.len()));
        } else if meta.is_dir() && !lmeta.is_symlink() {
            collect(&path, prefix, out)?;
        }
        prefix.pop();
    }
    Ok(())
}

#[derive(Serialize)]
struct TorrentOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    announce: Option<String>,
    #[serde(rename = "announce-list", skip_serializing_if = "Option::is_none")]
    announce_list: Option<Vec<Vec<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
    #[serde(rename = "created by")]
    created_by: String,
    #[serde(rename = "creation date", skip_serializing_if = "Option::is_none")]
    creation_date: Option<i64>,
    info: InfoOut,
    #[serde(rename = "url-list", skip_serializing_if = "Vec::is_empty")]
    url_list: Vec<String>,
}

#[derive(Serialize)]
struct InfoOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<Vec<FileOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    name: String,
    #[serde(rename = "piece length")]
    piece_length: u64,
    pieces: serde_bytes::ByteBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    private: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
}

#[derive(Serialize)]
struct FileOut {
    length: u64,
    path: Vec<String>,
}
