//! `uringseed make`: build a v1, v2 (BEP 52) or hybrid .torrent from a file or directory.
//!
//! Files are collected in sorted path order (the order of a v2 `file tree`) and hashed in
//! parallel by [`crate::storage::hasher`]; the output is canonical bencode (serde_bencode sorts
//! keys) with no timestamp unless one is asked for, so the same input always gives the same
//! bytes. v2 and hybrid torrents are laid out as libtorrent 2.0's `create_torrent` lays them out,
//! so both give the same info-hashes: every non-empty file starts on a piece boundary, and a
//! multi-file hybrid's v1 list has a BEP 47 pad file (`.pad/<bytes>`, attr `p`) after each file
//! whose end is not on one, the last file included.
//!
//! It writes only the .torrent it is asked for (through [`crate::storage::atomic`]) and knows
//! nothing of serving.

use crate::merkle;
use crate::metainfo::{self, FileEntry, Torrent};
use crate::progress::Progress;
use crate::storage::{hasher, Layout};
use serde::Serialize;
use std::collections::BTreeMap;
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
    /// Which hashes the torrent carries.
    pub format: Format,
}

/// The kind of torrent `make` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// SHA-1 `pieces` only (every client reads it).
    #[default]
    V1,
    /// BEP 52 merkle trees only (libtorrent 2 only).
    V2,
    /// Both, describing the same files: v1 clients and v2 clients join the same swarm.
    Hybrid,
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
    let entries: Vec<FileEntry> = if single {
        vec![FileEntry {
            path: vec![name.clone()],
            length: total,
            pad: false,
        }]
    } else {
        let aligned = opts.format != Format::V1;
        padded(&files, aligned.then_some(piece_length))
    };
    let total: u64 = entries.iter().map(|e| e.length).sum();
    let num_pieces = total.div_ceil(piece_length) as usize;
    let draft = Torrent {
        info_hash: metainfo::InfoHash([0; 20]),
        name: name.clone(),
        piece_length,
        piece_hashes: vec![[0; 20]; num_pieces],
        files: entries.clone(),
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
        v2: None,
    };
    let layout = Layout::new(&draft);
    // Hash under PATH's real name from the directory that holds it.
    let data_dir = root.parent().unwrap_or(Path::new("/"));

    let progress = Progress::start("hashing", total, opts.quiet);
    let want = hasher::Want {
        sha1: opts.format != Format::V2,
        v2: opts.format != Format::V1,
    };
    let all: Vec<usize> = (0..num_pieces).collect();
    let digests = hasher::hash_kinds(
        &layout,
        &crate::storage::files::DataFiles::open(&layout, data_dir),
        hasher::Access::Mmap,
        opts.threads,
        &progress.done,
        &all,
        &std::sync::atomic::AtomicBool::new(false),
        want,
    );
    progress.finish();
    let digests = digests
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| MakeError(format!("hashing failed: {e}")))?;
    let pieces: Vec<u8> = digests.iter().filter_map(|d| d.sha1).flatten().collect();
    let (file_tree, piece_layers) = match want.v2 {
        false => (None, BTreeMap::new()),
        true => {
            let key = single.then(|| vec![info_name.clone()]);
            let (tree, layers) = v2_tree(&layout, &digests, key);
            (Some(tree), layers)
        }
    };

    let v1 = opts.format != Format::V2;
    let info = InfoOut {
        file_tree,
        files: (v1 && !single).then(|| entries.iter().map(FileOut::of).collect()),
        length: (v1 && single).then_some(total),
        meta_version: want.v2.then_some(2),
        // Hashed above under the name on disk; the torrent may call it otherwise (--name).
        name: info_name,
        piece_length,
        pieces: v1.then(|| serde_bytes::ByteBuf::from(pieces)),
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
        piece_layers,
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
    #[serde(rename = "piece layers", skip_serializing_if = "BTreeMap::is_empty")]
    piece_layers: BTreeMap<serde_bytes::ByteBuf, serde_bytes::ByteBuf>,
    #[serde(rename = "url-list", skip_serializing_if = "Vec::is_empty")]
    url_list: Vec<String>,
}

#[derive(Serialize)]
struct InfoOut {
    #[serde(rename = "file tree", skip_serializing_if = "Option::is_none")]
    file_tree: Option<TreeOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<Vec<FileOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    #[serde(rename = "meta version", skip_serializing_if = "Option::is_none")]
    meta_version: Option<u8>,
    name: String,
    #[serde(rename = "piece length")]
    piece_length: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pieces: Option<serde_bytes::ByteBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    private: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
}

#[derive(Serialize)]
struct FileOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    attr: Option<&'static str>,
    length: u64,
    path: Vec<String>,
}

impl FileOut {
    fn of(e: &FileEntry) -> FileOut {
        FileOut {
            attr: e.pad.then_some("p"),
            length: e.length,
            path: e.path.clone(),
        }
    }
}

/// A `file tree` node: a directory of names, or a file (its one key is the empty string).
#[derive(Serialize)]
#[serde(untagged)]
enum TreeOut {
    Dir(BTreeMap<String, TreeOut>),
    File(BTreeMap<&'static str, LeafOut>),
}

#[derive(Serialize)]
struct LeafOut {
    length: u64,
    #[serde(rename = "pieces root", skip_serializing_if = "Option::is_none")]
    pieces_root: Option<serde_bytes::ByteBuf>,
}

/// The files of a multi-file torrent in order; with `align`, a pad entry after each non-empty
/// file whose end is not on a multiple of it.
fn padded(files: &[(Vec<String>, u64)], align: Option<u64>) -> Vec<FileEntry> {
    let mut out = Vec::with_capacity(files.len());
    for (path, len) in files {
        out.push(FileEntry {
            path: path.clone(),
            length: *len,
            pad: false,
        });
        let gap = align.map_or(0, |a| len.next_multiple_of(a) - len);
        if *len > 0 && gap > 0 {
            out.push(FileEntry {
                path: vec![".pad".into(), gap.to_string()],
                length: gap,
                pad: true,
            });
        }
    }
    out
}

/// The `file tree` and `piece layers` of the hashed pieces: each non-pad file's root from the
/// merkle nodes of its pieces (its layer, when it has more than one piece). `single` is the
/// tree's one name for a single-file torrent.
fn v2_tree(
    layout: &Layout,
    digests: &[hasher::Digests],
    single: Option<Vec<String>>,
) -> (
    TreeOut,
    BTreeMap<serde_bytes::ByteBuf, serde_bytes::ByteBuf>,
) {
    let mut root = BTreeMap::new();
    let mut layers = BTreeMap::new();
    for (i, f) in layout.files().iter().enumerate() {
        if f.pad {
            continue;
        }
        let nodes: Vec<merkle::Hash> = layout
            .file_pieces(i)
            .map(|p| digests[p].v2.expect("asked for"))
            .collect();
        let pieces_root = match nodes.len() {
            0 => None,
            1 => Some(nodes[0]),
            _ => {
                let r = merkle::root_from_layer(&nodes, layout.piece_length());
                layers.insert(
                    serde_bytes::ByteBuf::from(r.to_vec()),
                    serde_bytes::ByteBuf::from(nodes.concat()),
                );
                Some(r)
            }
        };
        let leaf = LeafOut {
            length: f.length,
            pieces_root: pieces_root.map(|r| serde_bytes::ByteBuf::from(r.to_vec())),
        };
        // Path below the torrent's directory (rel_path starts with the torrent's name).
        let path: Vec<String> = match &single {
            Some(name) => name.clone(),
            None => f
                .rel_path
                .iter()
                .skip(1)
                .map(|c| c.to_string_lossy().into_owned())
                .collect(),
        };
        insert(&mut root, &path, leaf);
    }
    (TreeOut::Dir(root), layers)
}

fn insert(dir: &mut BTreeMap<String, TreeOut>, path: &[String], leaf: LeafOut) {
    let (first, rest) = path.split_first().expect("a file has a name");
    if rest.is_empty() {
        dir.insert(first.clone(), TreeOut::File(BTreeMap::from([("", leaf)])));
        return;
    }
    let sub = dir
        .entry(first.clone())
        .or_insert_with(|| TreeOut::Dir(BTreeMap::new()));
    if let TreeOut::Dir(sub) = sub {
        insert(sub, rest, leaf);
    }
}
