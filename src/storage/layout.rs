//! Pure mapping from torrent byte ranges to spans of the torrent's files.
//!
//! A torrent is one byte stream cut into pieces; the files are laid end to end along it. This
//! module answers "which files, at which offsets, hold bytes X..Y" for pieces that straddle files,
//! the short last piece, zero-length files and BEP 47 pad files (which are zeros, never on disk).
//! No I/O happens here ([`super::files`] opens and checks the files).

use crate::metainfo::Torrent;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One file placed on the torrent's byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSlot {
    /// Offset of the file's first byte in the torrent.
    pub offset: u64,
    pub length: u64,
    pub pad: bool,
    /// Path relative to the data directory (single-file: NAME; multi-file: NAME/a/b).
    pub rel_path: PathBuf,
}

/// A contiguous run of bytes inside one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub file: usize,
    pub file_offset: u64,
    pub len: u64,
    /// True if the bytes come from a pad file and are all zeros.
    pub pad: bool,
}

/// Why a requested range cannot be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    PieceOutOfRange,
    ZeroLength,
    BeyondPiece,
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RangeError::PieceOutOfRange => "piece index out of range",
            RangeError::ZeroLength => "zero-length range",
            RangeError::BeyondPiece => "range extends beyond the piece",
        })
    }
}

/// A file in the data directory that does not match the torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataProblem {
    pub file: usize,
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for DataProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// Files of a torrent placed on its byte stream.
#[derive(Debug, Clone)]
pub struct Layout {
    piece_length: u64,
    total: u64,
    num_pieces: usize,
    files: Vec<FileSlot>,
}

impl Layout {
    pub fn new(torrent: &Torrent) -> Layout {
        let mut offset = 0;
        let files = torrent
            .files
            .iter()
            .map(|f| {
                let rel_path = if torrent.single_file {
                    PathBuf::from(&torrent.name)
                } else {
                    let mut p = PathBuf::from(&torrent.name);
                    p.extend(&f.path);
                    p
                };
                let slot = FileSlot {
                    offset,
                    length: f.length,
                    pad: f.pad,
                    rel_path,
                };
                offset += f.length;
                slot
            })
            .collect();
        Layout {
            piece_length: torrent.piece_length,
            total: torrent.total_length,
            num_pieces: torrent.num_pieces(),
            files,
        }
    }

    pub fn files(&self) -> &[FileSlot] {
        &self.files
    }

    pub fn piece_length(&self) -> u64 {
        self.piece_length
    }

    pub fn total_length(&self) -> u64 {
        self.total
    }

    pub fn num_pieces(&self) -> usize {
        self.num_pieces
    }

    /// Size of piece `index`, or `None` if there is no such piece.
    pub fn piece_size(&self, index: usize) -> Option<u64> {
        if index >= self.num_pieces {
            return None;
        }
        let start = index as u64 * self.piece_length;
        Some(self.piece_length.min(self.total - start))
    }

    /// Byte range of piece `index` in the torrent stream.
    pub fn piece_range(&self, index: usize) -> Option<Range<u64>> {
        let start = index as u64 * self.piece_length;
        self.piece_size(index).map(|len| start..start + len)
    }

    /// Validates a (piece, begin, length) request and maps it to file spans.
    pub fn block_spans(&self, piece: usize, begin: u64, len: u64) -> Result<Spans<'_>, RangeError> {
        let size = self.piece_size(piece).ok_or(RangeError::PieceOutOfRange)?;
        if len == 0 {
            return Err(RangeError::ZeroLength);
        }
        if begin.checked_add(len).is_none_or(|end| end > size) {
            return Err(RangeError::BeyondPiece);
        }
        Ok(self.spans(piece as u64 * self.piece_length + begin, len))
    }

    /// Maps an absolute range of the torrent stream (which must lie inside it) to file spans.
    pub fn spans(&self, start: u64, len: u64) -> Spans<'_> {
        debug_assert!(start + len <= self.total);
        let file = self.files.partition_point(|f| f.offset + f.length <= start);
        Spans {
            layout: self,
            file,
            pos: start,
            end: start + len,
        }
    }

    /// Pieces that hold at least one byte of file `index` (empty for zero-length files).
    pub fn file_pieces(&self, index: usize) -> Range<usize> {
        let f = &self.files[index];
        if f.length == 0 {
            return 0..0;
        }
        let first = f.offset / self.piece_length;
        let last = (f.offset + f.length - 1) / self.piece_length;
        first as usize..last as usize + 1
    }

    /// Absolute path of file `index` under the data directory.
    pub fn file_path(&self, data_dir: &Path, index: usize) -> PathBuf {
        data_dir.join(&self.files[index].rel_path)
    }
}

/// Iterator over the file spans of a range; skips zero-length files.
pub struct Spans<'a> {
    layout: &'a Layout,
    file: usize,
    pos: u64,
    end: u64,
}

impl Iterator for Spans<'_> {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        while self.pos < self.end {
            let f = self.layout.files.get(self.file)?;
            let file_end = f.offset + f.length;
            if file_end <= self.pos {
                self.file += 1;
                continue;
            }
            let len = self.end.min(file_end) - self.pos;
            let span = Span {
                file: self.file,
                file_offset: self.pos - f.offset,
                len,
                pad: f.pad,
            };
            self.pos += len;
            self.file += 1;
            return Some(span);
        }
        None
    }
}
