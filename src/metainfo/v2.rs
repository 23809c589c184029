//! BitTorrent v2 (BEP 52) metainfo: `meta version`, `file tree`, `piece layers`, and hybrids.
//!
//! A v2 torrent names each file's merkle root (`pieces root`) in a nested `file tree` and
//! carries, outside the info dictionary, the piece layer of every file longer than one piece.
//! Every layer is checked against its root here, so a torrent whose layers and roots disagree is
//! refused at load, not discovered piece by piece. Files of a v2 torrent start on piece
//! boundaries: a v2-only torrent is given the BEP 47 pad entries (named `.pad/<bytes>`, as
//! libtorrent names them) that place them there, so the rest of the server sees one byte stream
//! as with v1. For a hybrid the v1 half's file list is authoritative and must describe the same
//! files, in the same order, each on a piece boundary; otherwise the halves disagree and the
//! torrent is refused.
//!
//! It owns the v2 parts of parsing and the per-piece lookup of v2 hashes; it reads nothing.

use super::{Ctx, FileEntry, InfoHash, MetainfoError, MAX_TORRENT_FILES};
use crate::bencode::{Node, Value};
use crate::merkle::{self, Hash};
use std::collections::HashMap;

/// Which hashes a torrent's pieces are checked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    /// SHA-1 per piece (`pieces`).
    V1,
    /// SHA-256 merkle trees per file only.
    V2,
    /// Both halves; every piece is checked against both (a piece that passed only one would
    /// be refused by the peers of the other).
    Hybrid,
}

impl HashKind {
    /// The name used in logs, metrics, the API and resume records.
    pub fn as_str(self) -> &'static str {
        match self {
            HashKind::V1 => "v1",
            HashKind::V2 => "v2",
            HashKind::Hybrid => "hybrid",
        }
    }

    pub fn sha1(self) -> bool {
        self != HashKind::V2
    }

    pub fn sha256(self) -> bool {
        self != HashKind::V1
    }
}

/// The merkle hashes of one non-empty file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHashes {
    pub root: Hash,
    /// One node per piece; empty for a file of at most one piece (its root is its only node).
    pub layer: Vec<Hash>,
    pub length: u64,
}

/// The v2 half of a torrent.
#[derive(Debug, Clone)]
pub struct V2Info {
    /// SHA-256 of the info dictionary's bytes.
    pub info_hash: [u8; 32],
    /// Per entry of [`super::Torrent::files`]: the hashes of a non-empty, non-pad file.
    pub files: Vec<Option<FileHashes>>,
    /// (first piece, index into `files`) of each file with hashes, ascending.
    first_pieces: Vec<(usize, usize)>,
}

impl V2Info {
    /// The 20-byte truncation used in handshakes, trackers and the DHT.
    pub fn truncated(&self) -> InfoHash {
        InfoHash(self.info_hash[..20].try_into().expect("32 > 20"))
    }

    /// The file piece `p` holds and the piece's index within that file.
    pub fn piece_file(&self, p: usize) -> Option<(usize, usize)> {
        let at = self.first_pieces.partition_point(|&(first, _)| first <= p);
        let &(first, file) = self.first_pieces.get(at.checked_sub(1)?)?;
        let h = self.files[file].as_ref()?;
        let k = p - first;
        let pieces = if h.layer.is_empty() { 1 } else { h.layer.len() };
        (k < pieces).then_some((file, k))
    }

    /// Every file with hashes and its first piece, in stream order.
    pub fn files_at(&self) -> impl Iterator<Item = (usize, &FileHashes)> {
        self.first_pieces
            .iter()
            .filter_map(|&(first, i)| Some((first, self.files[i].as_ref()?)))
    }

    /// What the merkle node of piece `p`'s data must equal (see [`merkle::piece_width`]).
    pub fn expected(&self, p: usize) -> Option<Hash> {
        let (file, k) = self.piece_file(p)?;
        let h = self.files[file].as_ref()?;
        Some(if h.layer.is_empty() {
            h.root
        } else {
            h.layer[k]
        })
    }
}

/// One file as the `file tree` lists it.
#[derive(Debug, Clone)]
pub(super) struct TreeFile {
    pub path: Vec<String>,
    pub length: u64,
    pub root: Option<Hash>,
}

impl Ctx<'_> {
    /// `meta version`: 1 when absent; only 1 and 2 are known.
    pub(super) fn meta_version(&self, info: &Node<'_>) -> Result<i64, MetainfoError> {
        let field = "info.meta version";
        let v = match info.get("meta version") {
            None => 1,
            Some(n) => self.int(n, field)?,
        };
        if !(1..=2).contains(&v) {
            return Err(self.err(field, format!("version {v} is not supported (1 and 2 are)")));
        }
        if v == 1 && info.get("file tree").is_some() {
            return Err(self.err("info.file tree", "present but `meta version` is not 2"));
        }
        if v == 2 && info.get("file tree").is_none() {
            return Err(self.err("info.file tree", "missing required key (meta version 2)"));
        }
        Ok(v)
    }

    /// The files of `file tree`, depth first in the order written.
    pub(super) fn file_tree(&self, info: &Node<'_>) -> Result<Vec<TreeFile>, MetainfoError> {
        let tree = info.get("file tree").expect("checked by meta_version");
        let mut out = Vec::new();
        let mut path = Vec::new();
        self.tree_dir(tree, &mut path, &mut out)?;
        if out.is_empty() {
            return Err(self.err("info.file tree", "holds no files"));
        }
        Ok(out)
    }

    fn tree_dir(
        &self,
        dir: &Node<'_>,
        path: &mut Vec<String>,
        out: &mut Vec<TreeFile>,
    ) -> Result<(), MetainfoError> {
        let here = tree_field(path);
        let Value::Dict(entries) = &dir.value else {
            return Err(self.err(
                &here,
                format!("expected a dictionary, found {}", dir.kind()),
            ));
        };
        for (key, node) in entries {
            let name = String::from_utf8(key.to_vec())
                .map_err(|_| self.err(&here, "a name is not valid UTF-8"))?;
            if name.is_empty() {
                return Err(self.err(&here, "a file entry (\"\") beside other names"));
            }
            self.check_component(&name, &here)?;
            path.push(name);
            let is_file = match &node.value {
                Value::Dict(e) => e.iter().any(|(k, _)| k.is_empty()),
                _ => false,
            };
            if is_file {
                out.push(self.tree_file(node, path)?);
                if out.len() > MAX_TORRENT_FILES {
                    return Err(self.err(
                        "info.file tree",
                        format!("more than the {MAX_TORRENT_FILES} files supported"),
                    ));
                }
            } else {
                self.tree_dir(node, path, out)?;
            }
            path.pop();
        }
        Ok(())
    }

    fn tree_file(&self, node: &Node<'_>, path: &[String]) -> Result<TreeFile, MetainfoError> {
        let field = tree_field(path);
        let Value::Dict(e) = &node.value else {
            unreachable!("checked by the caller")
        };
        if e.len() != 1 {
            return Err(self.err(&field, "a file entry (\"\") beside other names"));
        }
        let leaf = &e[0].1;
        if !matches!(leaf.value, Value::Dict(_)) {
            return Err(self.err(
                &field,
                format!("expected a dictionary, found {}", leaf.kind()),
            ));
        }
        let length = self.uint(
            self.required(leaf, "length", &format!("{field}.length"))?,
            &format!("{field}.length"),
        )?;
        let root_field = format!("{field}.pieces root");
        let root = match leaf.get("pieces root") {
            None if length > 0 => return Err(self.err(&root_field, "missing required key")),
            None => None,
            Some(n) => {
                let b = self.bytes(n, &root_field)?;
                let h: Hash = b
                    .try_into()
                    .map_err(|_| self.err(&root_field, format!("{} bytes, not 32", b.len())))?;
                (length > 0).then_some(h)
            }
        };
        Ok(TreeFile {
            path: path.to_vec(),
            length,
            root,
        })
    }

    /// The top-level `piece layers`: each file longer than one piece needs its layer, and the
    /// layer must hash up to the file's root.
    pub(super) fn piece_layers(
        &self,
        root: &Node<'_>,
        tree: &[TreeFile],
        piece_length: u64,
    ) -> Result<Vec<Vec<Hash>>, MetainfoError> {
        let field = "piece layers";
        let mut layers: HashMap<&[u8], &[u8]> = HashMap::new();
        match root.get(field) {
            None => {}
            Some(Node {
                value: Value::Dict(entries),
                ..
            }) => {
                for (k, v) in entries {
                    layers.insert(k, self.bytes(v, field)?);
                }
            }
            Some(n) => {
                return Err(self.err(field, format!("expected a dictionary, found {}", n.kind())))
            }
        }
        let mut out = Vec::with_capacity(tree.len());
        for f in tree {
            let (Some(r), true) = (f.root, f.length > piece_length) else {
                out.push(Vec::new());
                continue;
            };
            let name = f.path.join("/");
            let bytes = layers.get(&r[..]).ok_or_else(|| {
                self.err(
                    field,
                    format!("no layer for {name:?} (root {})", super::hex(&r)),
                )
            })?;
            let want = f.length.div_ceil(piece_length) * 32;
            if bytes.len() as u64 != want {
                return Err(self.err(
                    field,
                    format!(
                        "layer of {name:?} is {} bytes, {want} expected",
                        bytes.len()
                    ),
                ));
            }
            let layer: Vec<Hash> = bytes
                .chunks_exact(32)
                .map(|c| c.try_into().expect("chunk of 32"))
                .collect();
            if merkle::root_from_layer(&layer, piece_length) != r {
                return Err(self.err(
                    field,
                    format!("layer of {name:?} does not hash to its `pieces root`"),
                ));
            }
            out.push(layer);
        }
        Ok(out)
    }

    /// Checks a hybrid's v1 file list against its file tree: the same non-empty files in the
    /// same order (pad and empty files aside), each starting on a piece boundary.
    pub(super) fn match_halves(
        &self,
        v1: &[FileEntry],
        tree: &[TreeFile],
        single_file: bool,
        piece_length: u64,
    ) -> Result<(), MetainfoError> {
        let disagree =
            |why: String| self.err("info", format!("the v1 and v2 halves disagree: {why}"));
        let mut offset = 0u64;
        let mut want = tree.iter().filter(|f| f.length > 0);
        for f in v1 {
            let at = offset;
            offset += f.length;
            if f.pad || f.length == 0 {
                continue;
            }
            let Some(t) = want.next() else {
                return Err(disagree(format!(
                    "{:?} is not in the file tree",
                    f.path.join("/")
                )));
            };
            let same_path = t.path == f.path || (single_file && t.path.len() == 1);
            if !same_path || t.length != f.length {
                return Err(disagree(format!(
                    "{:?} ({} bytes) in `files`, {:?} ({} bytes) in `file tree`",
                    f.path.join("/"),
                    f.length,
                    t.path.join("/"),
                    t.length
                )));
            }
            if at % piece_length != 0 {
                return Err(disagree(format!(
                    "{:?} starts at byte {at}, not on a piece boundary (pad files missing)",
                    f.path.join("/")
                )));
            }
        }
        if let Some(t) = want.next() {
            return Err(disagree(format!(
                "{:?} is not in `files`",
                t.path.join("/")
            )));
        }
        Ok(())
    }
}

fn tree_field(path: &[String]) -> String {
    let mut f = String::from("info.file tree");
    for p in path {
        f.push('.');
        f.push_str(p);
    }
    f
}

/// The byte stream of a v2-only torrent: the tree's files in order, a pad entry before each
/// non-empty file that would not start on a piece boundary, and one after the last if it ends
/// inside a piece. libtorrent 2.0 pads the end too (a single file of 1,000,000 bytes in 32 KiB
/// pieces is 1,015,808 bytes to it) and asks for the last piece whole, pad bytes included.
/// None if the total would overflow.
pub(super) fn layout_files(tree: &[TreeFile], piece_length: u64) -> Option<Vec<FileEntry>> {
    let mut out = Vec::with_capacity(tree.len() + 1);
    let mut offset = 0u64;
    let pad = |out: &mut Vec<FileEntry>, offset: &mut u64| -> Option<()> {
        let gap = offset.checked_next_multiple_of(piece_length)? - *offset;
        if gap > 0 {
            out.push(FileEntry {
                path: vec![".pad".into(), gap.to_string()],
                length: gap,
                pad: true,
            });
            *offset += gap;
        }
        Some(())
    };
    for f in tree {
        if f.length > 0 {
            pad(&mut out, &mut offset)?;
        }
        out.push(FileEntry {
            path: f.path.clone(),
            length: f.length,
            pad: false,
        });
        offset = offset.checked_add(f.length)?;
    }
    pad(&mut out, &mut offset)?;
    Some(out)
}

/// Builds the v2 half once the byte stream (`entries`) is known: the tree's hashes attached to
/// the entries that hold the same files.
pub(super) fn v2_info(
    info_hash: [u8; 32],
    entries: &[FileEntry],
    tree: Vec<TreeFile>,
    layers: Vec<Vec<Hash>>,
    piece_length: u64,
) -> V2Info {
    let mut hashes = tree.into_iter().zip(layers).filter_map(|(t, layer)| {
        Some(FileHashes {
            root: t.root?,
            layer,
            length: t.length,
        })
    });
    let mut files = Vec::with_capacity(entries.len());
    let mut first_pieces = Vec::new();
    let mut offset = 0u64;
    for (i, e) in entries.iter().enumerate() {
        if e.pad || e.length == 0 {
            files.push(None);
        } else {
            // match_halves / layout_files put every non-empty file on a piece boundary, in
            // the tree's order.
            first_pieces.push(((offset / piece_length) as usize, i));
            files.push(hashes.next());
        }
        offset += e.length;
    }
    V2Info {
        info_hash,
        files,
        first_pieces,
    }
}
