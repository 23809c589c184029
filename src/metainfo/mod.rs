//! BitTorrent metainfo (.torrent) parsing and validation: v1, and with [`v2`] BEP 52's v2-only
//! and hybrid torrents.
//!
//! The info-hash is the SHA-1 (v1) or SHA-256 (v2) of the `info` value's bytes exactly as they
//! appear in the file (found by [`crate::bencode`]'s spans), never of a re-encoding, so unknown
//! keys, odd key order or `private=0` keep the hash other clients compute. Everything that would make the torrent
//! unsafe to serve (path traversal, inconsistent piece counts, absurd sizes) is rejected with an
//! error naming the file, the field and the reason.
//!
//! It owns parsing and validation; the only I/O is reading the .torrent file in [`load`].

mod hash;
mod v2;

pub use hash::{hex, hex_digit, InfoHash};
pub use v2::{FileHashes, HashKind, V2Info};

use crate::bencode::{self, Node, Value};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use std::fmt;
use std::path::Path;

/// Largest .torrent file read from disk.
pub const MAX_TORRENT_FILE_BYTES: u64 = 64 << 20;
/// Largest piece length accepted (the verifier holds whole pieces in memory).
pub const MAX_PIECE_LENGTH: u64 = 256 << 20;
/// Most files in one torrent. Each costs about 1 KiB while served (paths, descriptors' slots,
/// stamps); libtorrent's default decode limits refuse torrents of this size too.
pub const MAX_TORRENT_FILES: usize = 500_000;

/// One file of a torrent, in torrent order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components below the torrent's root (for a single-file torrent: just the name).
    pub path: Vec<String>,
    pub length: u64,
    /// BEP 47 pad file (attr contains 'p'): served as zeros, never read from disk.
    pub pad: bool,
}

/// A parsed and validated torrent.
#[derive(Debug, Clone)]
pub struct Torrent {
    /// The v1 info-hash, or for a v2-only torrent the truncated v2 one: the key it is served,
    /// announced and stored under.
    pub info_hash: InfoHash,
    pub name: String,
    pub piece_length: u64,
    /// SHA-1 per piece; empty for a v2-only torrent.
    pub piece_hashes: Vec<[u8; 20]>,
    /// The byte stream's files, pad files included (for a v2-only torrent, the pads that put
    /// each file on a piece boundary).
    pub files: Vec<FileEntry>,
    /// True for a single-file torrent (`length` in info), whose data lives at DIR/NAME.
    pub single_file: bool,
    pub total_length: u64,
    pub private: bool,
    pub source: Option<String>,
    pub announce: Option<String>,
    /// BEP 12 tiers; when absent in the file, a single tier holding `announce` (if any).
    pub trackers: Vec<Vec<String>>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
    /// The `info` dictionary exactly as written (its SHA-1 is the info-hash): what BEP 9 serves.
    pub info_bytes: Vec<u8>,
    /// The v2 half (v2-only and hybrid torrents).
    pub v2: Option<V2Info>,
}

impl Torrent {
    pub fn num_pieces(&self) -> usize {
        if self.piece_hashes.is_empty() {
            self.total_length.div_ceil(self.piece_length) as usize
        } else {
            self.piece_hashes.len()
        }
    }

    /// Which hashes its pieces are checked with.
    pub fn hash_kind(&self) -> HashKind {
        match (&self.v2, self.piece_hashes.is_empty()) {
            (None, _) => HashKind::V1,
            (Some(_), true) => HashKind::V2,
            (Some(_), false) => HashKind::Hybrid,
        }
    }

    /// Whether piece `p` hashed to these digests: the SHA-1 against `pieces` when the torrent
    /// has a v1 half, the merkle node against the v2 half when it has one (both for a hybrid).
    pub fn piece_matches(&self, p: usize, sha1: Option<&[u8; 20]>, v2: Option<&[u8; 32]>) -> bool {
        let v1_ok = self.piece_hashes.is_empty() || sha1 == self.piece_hashes.get(p);
        let v2_ok = match &self.v2 {
            None => true,
            Some(info) => v2.is_some() && info.expected(p).as_ref() == v2,
        };
        v1_ok && v2_ok
    }

    /// Length of piece `index` (the last one may be short; 0 past the end).
    pub fn piece_size(&self, index: usize) -> u64 {
        let start = (index as u64).saturating_mul(self.piece_length);
        self.piece_length
            .min(self.total_length.saturating_sub(start))
    }

    /// The torrent's magnet link (BEP 9), the one place that builds it: `xt=urn:btih:` with
    /// the info-hash in hex, `dn` (the name), `xl` (the total length in bytes) and a `tr` for
    /// every tracker of every tier, in tier order, each URL once (a magnet link has no tiers).
    /// Values are percent-encoded as RFC 3986 says for a query component: every byte but the
    /// unreserved characters (`A-Z a-z 0-9 - . _ ~`), UTF-8 included, becomes `%XX`.
    /// A v2 torrent's carries `xt=urn:btmh:` with the multihash (`1220`, SHA-256 of 32 bytes)
    /// of its v2 info-hash instead, and a hybrid's both `xt`s, v1 first.
    pub fn magnet(&self) -> String {
        let mut m = String::from("magnet:?");
        if self.hash_kind().sha1() {
            m.push_str(&format!("xt=urn:btih:{}&", self.info_hash));
        }
        if let Some(v2) = &self.v2 {
            m.push_str(&format!("xt=urn:btmh:1220{}&", hex(&v2.info_hash)));
        }
        m.push_str(&format!("dn={}&xl={}", pct(&self.name), self.total_length));
        let mut seen = std::collections::HashSet::new();
        for url in self.trackers.iter().flatten() {
            if seen.insert(url.as_str()) {
                m.push_str("&tr=");
                m.push_str(&pct(url));
            }
        }
        m
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn pct(s: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(DIGITS[usize::from(b >> 4)] as char);
            out.push(DIGITS[usize::from(b & 15)] as char);
        }
    }
    out
}

/// A rejected torrent: which file, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetainfoError {
    pub file: String,
    pub field: String,
    pub reason: String,
}

impl fmt::Display for MetainfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}: field `{}`: {}", self.file, self.field, self.reason)
        }
    }
}

impl std::error::Error for MetainfoError {}

/// Reads and parses a .torrent file from disk.
pub fn load(path: &Path) -> Result<Torrent, MetainfoError> {
    let file = path.display().to_string();
    let io_err = |e: std::io::Error| MetainfoError {
        file: file.clone(),
        field: String::new(),
        reason: format!("cannot read: {e}"),
    };
    let bytes = crate::fsread::read_regular(path, MAX_TORRENT_FILE_BYTES).map_err(io_err)?;
    parse(&bytes, &file)
}

/// Parses torrent bytes; `file` names the source in errors.
pub fn parse(bytes: &[u8], file: &str) -> Result<Torrent, MetainfoError> {
    Ctx { file }.torrent(bytes)
}

struct Ctx<'f> {
    file: &'f str,
}

impl Ctx<'_> {
    fn err(&self, field: &str, reason: impl Into<String>) -> MetainfoError {
        MetainfoError {
            file: self.file.to_string(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    fn torrent(&self, bytes: &[u8]) -> Result<Torrent, MetainfoError> {
        let root = bencode::decode(bytes).map_err(|e| self.err("", e.to_string()))?;
        if !matches!(root.value, Value::Dict(_)) {
            return Err(self.err("", "top level is not a dictionary"));
        }
        let info = self.required(&root, "info", "info")?;
        if !matches!(info.value, Value::Dict(_)) {
            return Err(self.err(
                "info",
                format!("expected a dictionary, found {}", info.kind()),
            ));
        }
        let info_bytes = bytes[info.span.clone()].to_vec();
        let version = self.meta_version(info)?;

        let name = self.string(self.required(info, "name", "info.name")?, "info.name")?;
        self.check_component(&name, "info.name")?;
        let piece_length = self.uint(
            self.required(info, "piece length", "info.piece length")?,
            "info.piece length",
        )?;
        if piece_length == 0 {
            return Err(self.err("info.piece length", "must be greater than zero"));
        }
        if piece_length > MAX_PIECE_LENGTH {
            return Err(self.err(
                "info.piece length",
                format!("{piece_length} is larger than the supported {MAX_PIECE_LENGTH}"),
            ));
        }
        if version == 2 && (piece_length < crate::merkle::BLOCK || !piece_length.is_power_of_two())
        {
            return Err(self.err(
                "info.piece length",
                format!("{piece_length} is not a power of two of at least 16 KiB (meta version 2)"),
            ));
        }
        let tree = match version {
            2 => Some(self.file_tree(info)?),
            _ => None,
        };
        let has_v1 = version == 1 || info.get("pieces").is_some();
        if !has_v1 {
            return self.v2_only(
                &root,
                info,
                info_bytes,
                name,
                piece_length,
                tree.expect("v2"),
            );
        }
        let pieces = self.bytes(self.required(info, "pieces", "info.pieces")?, "info.pieces")?;
        if pieces.len() % 20 != 0 {
            return Err(self.err(
                "info.pieces",
                format!("length {} is not a multiple of 20", pieces.len()),
            ));
        }
        let piece_hashes: Vec<[u8; 20]> = pieces
            .chunks_exact(20)
            .map(|c| c.try_into().expect("chunk of 20"))
            .collect();

        let (files, single_file) = match (info.get("length"), info.get("files")) {
            (Some(_), Some(_)) => {
                return Err(self.err("info", "has both `length` and `files`"));
            }
            (None, None) => return Err(self.err("info", "has neither `length` nor `files`")),
            (Some(len), None) => {
                let length = self.uint(len, "info.length")?;
                let pad = self.attr_pad(info, "info.attr")?;
                let entry = FileEntry {
                    path: vec![name.clone()],
                    length,
                    pad,
                };
                (vec![entry], true)
            }
            (None, Some(list)) => (self.files(list)?, false),
        };

        let total_length = self.total(&files)?;
        let v2 = match tree {
            None => None,
            Some(tree) => {
                self.match_halves(&files, &tree, single_file, piece_length)?;
                let layers = self.piece_layers(&root, &tree, piece_length)?;
                let h = Sha256::digest(&info_bytes).into();
                Some(v2::v2_info(h, &files, tree, layers, piece_length))
            }
        };
        let expected = total_length.div_ceil(piece_length);
        if expected != piece_hashes.len() as u64 {
            return Err(self.err(
                "info.pieces",
                format!(
                    "holds {} piece hashes but {total_length} bytes in pieces of {piece_length} need {expected}",
                    piece_hashes.len()
                ),
            ));
        }

        let info_hash = InfoHash(Sha1::digest(&info_bytes).into());
        self.finish(
            &root,
            info,
            info_bytes,
            info_hash,
            name,
            piece_length,
            piece_hashes,
            files,
            single_file,
            total_length,
            v2,
        )
    }

    fn total(&self, files: &[FileEntry]) -> Result<u64, MetainfoError> {
        let mut total_length: u64 = 0;
        for f in files {
            total_length = total_length
                .checked_add(f.length)
                .ok_or_else(|| self.err("info.files", "total length overflows"))?;
        }
        if total_length == 0 {
            return Err(self.err("info", "torrent holds no data (total length is zero)"));
        }
        Ok(total_length)
    }

    /// A torrent with only the v2 half: its byte stream is the file tree's files, each on a
    /// piece boundary.
    fn v2_only(
        &self,
        root: &Node<'_>,
        info: &Node<'_>,
        info_bytes: Vec<u8>,
        name: String,
        piece_length: u64,
        tree: Vec<v2::TreeFile>,
    ) -> Result<Torrent, MetainfoError> {
        for key in ["length", "files"] {
            if info.get(key).is_some() {
                return Err(self.err(&format!("info.{key}"), "v1 file list without `pieces`"));
            }
        }
        let single_file = tree.len() == 1 && tree[0].path.len() == 1;
        if single_file && tree[0].path[0] != name {
            return Err(self.err(
                "info.file tree",
                format!(
                    "single file {:?} is not named as `name` {name:?}",
                    tree[0].path[0]
                ),
            ));
        }
        let files = v2::layout_files(&tree, piece_length)
            .ok_or_else(|| self.err("info.file tree", "total length overflows"))?;
        let total_length = self.total(&files)?;
        let layers = self.piece_layers(root, &tree, piece_length)?;
        let v2 = v2::v2_info(
            Sha256::digest(&info_bytes).into(),
            &files,
            tree,
            layers,
            piece_length,
        );
        let info_hash = v2.truncated();
        self.finish(
            root,
            info,
            info_bytes,
            info_hash,
            name,
            piece_length,
            Vec::new(),
            files,
            single_file,
            total_length,
            Some(v2),
        )
    }

    /// The fields both versions share, and the torrent.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        root: &Node<'_>,
        info: &Node<'_>,
        info_bytes: Vec<u8>,
        info_hash: InfoHash,
        name: String,
        piece_length: u64,
        piece_hashes: Vec<[u8; 20]>,
        files: Vec<FileEntry>,
        single_file: bool,
        total_length: u64,
        v2: Option<V2Info>,
    ) -> Result<Torrent, MetainfoError> {
        let private = match info.get("private") {
            None => false,
            Some(n) => self.int(n, "info.private")? == 1,
        };
        let source = self.opt_string(info, "source", "info.source")?;
        let announce = self.opt_string(root, "announce", "announce")?;
        let mut trackers = match root.get("announce-list") {
            Some(list) => self.tiers(list)?,
            None => Vec::new(),
        };
        if trackers.is_empty() {
            if let Some(url) = &announce {
                trackers.push(vec![url.clone()]);
            }
        }
        Ok(Torrent {
            info_hash,
            name,
            piece_length,
            piece_hashes,
            files,
            single_file,
            total_length,
            private,
            source,
            announce,
            trackers,
            comment: self.opt_string(root, "comment", "comment")?,
            created_by: self.opt_string(root, "created by", "created by")?,
            creation_date: match root.get("creation date") {
                Some(n) => Some(self.int(n, "creation date")?),
                None => None,
            },
            info_bytes,
            v2,
        })
    }

    fn files(&self, list: &Node<'_>) -> Result<Vec<FileEntry>, MetainfoError> {
        let Value::List(items) = &list.value else {
            return Err(self.err(
                "info.files",
                format!("expected a list, found {}", list.kind()),
            ));
        };
        if items.is_empty() {
            return Err(self.err("info.files", "list is empty"));
        }
        if items.len() > MAX_TORRENT_FILES {
            return Err(self.err(
                "info.files",
                format!(
                    "{} files, more than the {MAX_TORRENT_FILES} supported",
                    items.len()
                ),
            ));
        }
        let mut files = Vec::with_capacity(items.len());
        let mut seen = std::collections::HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let field = format!("info.files[{i}]");
            if !matches!(item.value, Value::Dict(_)) {
                return Err(self.err(
                    &field,
                    format!("expected a dictionary, found {}", item.kind()),
                ));
            }
            let length = self.uint(
                self.required(item, "length", &format!("{field}.length"))?,
                &format!("{field}.length"),
            )?;
            let path_field = format!("{field}.path");
            let path_node = self.required(item, "path", &path_field)?;
            let Value::List(parts) = &path_node.value else {
                return Err(self.err(&path_field, "expected a list of strings"));
            };
            if parts.is_empty() {
                return Err(self.err(&path_field, "path is empty"));
            }
            let mut path = Vec::with_capacity(parts.len());
            for part in parts {
                let part = self.string(part, &path_field)?;
                self.check_component(&part, &path_field)?;
                path.push(part);
            }
            let pad = self.attr_pad(item, &format!("{field}.attr"))?;
            if !pad && !seen.insert(path.clone()) {
                return Err(self.err(&path_field, format!("duplicate path {:?}", path.join("/"))));
            }
            files.push(FileEntry { path, length, pad });
        }
        Ok(files)
    }

    fn tiers(&self, list: &Node<'_>) -> Result<Vec<Vec<String>>, MetainfoError> {
        let field = "announce-list";
        let Value::List(tiers) = &list.value else {
            return Err(self.err(field, "expected a list of lists"));
        };
        let mut out = Vec::new();
        for tier in tiers {
            let Value::List(urls) = &tier.value else {
                return Err(self.err(field, "expected a list of lists"));
            };
            let urls = urls
                .iter()
                .map(|u| self.string(u, field))
                .collect::<Result<Vec<_>, _>>()?;
            if !urls.is_empty() {
                out.push(urls);
            }
        }
        Ok(out)
    }

    /// Rejects names that could escape the data directory or are not portable file names.
    fn check_component(&self, part: &str, field: &str) -> Result<(), MetainfoError> {
        let bad = if part.is_empty() {
            Some("empty path component")
        } else if part == "." || part == ".." {
            Some("path component is `.` or `..` (path traversal)")
        } else if part.contains('/') || part.contains('\\') {
            Some("path separator inside a path component (path traversal)")
        } else if part.contains('\0') {
            Some("NUL byte inside a path component")
        } else {
            None
        };
        match bad {
            Some(reason) => Err(self.err(field, format!("{reason}: {part:?}"))),
            None => Ok(()),
        }
    }

    fn attr_pad(&self, dict: &Node<'_>, field: &str) -> Result<bool, MetainfoError> {
        match dict.get("attr") {
            None => Ok(false),
            Some(n) => Ok(self.bytes(n, field)?.contains(&b'p')),
        }
    }

    fn required<'n, 'a>(
        &self,
        dict: &'n Node<'a>,
        key: &str,
        field: &str,
    ) -> Result<&'n Node<'a>, MetainfoError> {
        dict.get(key)
            .ok_or_else(|| self.err(field, "missing required key"))
    }

    fn bytes<'a>(&self, node: &Node<'a>, field: &str) -> Result<&'a [u8], MetainfoError> {
        match node.value {
            Value::Bytes(b) => Ok(b),
            _ => Err(self.err(field, format!("expected a string, found {}", node.kind()))),
        }
    }

    fn string(&self, node: &Node<'_>, field: &str) -> Result<String, MetainfoError> {
        let b = self.bytes(node, field)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err(field, "is not valid UTF-8"))
    }

    fn opt_string(
        &self,
        dict: &Node<'_>,
        key: &str,
        field: &str,
    ) -> Result<Option<String>, MetainfoError> {
        dict.get(key).map(|n| self.string(n, field)).transpose()
    }

    fn int(&self, node: &Node<'_>, field: &str) -> Result<i64, MetainfoError> {
        match node.value {
            Value::Int(n) => Ok(n),
            _ => Err(self.err(field, format!("expected an integer, found {}", node.kind()))),
        }
    }

    fn uint(&self, node: &Node<'_>, field: &str) -> Result<u64, MetainfoError> {
        let n = self.int(node, field)?;
        u64::try_from(n).map_err(|_| self.err(field, format!("must not be negative (got {n})")))
    }
}

#[cfg(test)]
mod tests;
