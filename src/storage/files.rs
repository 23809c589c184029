//! The one owner of a torrent's data files: each file is opened once (read-only, never a FIFO
//! or device), checked against the torrent's sizes, hashed through by the startup check, read by
//! every worker, and mapped (once, on first use) for zero-copy sends. Dropping the
//! [`DataFiles`], when the last connection of a removed torrent ends, closes every descriptor
//! and unmaps every mapping, so a deleted file's space is freed.
//!
//! Workers that read through io_uring refer to these descriptors by number and never close them
//! (see `io::uring`); a read in flight keeps an `Arc` of this value, so a descriptor is never
//! closed under it. This module may not know about peers, sockets or the server.

use super::layout::{DataProblem, Layout};
use super::resident::FileMap;
use super::resume::FileStamp;
use bytes::Bytes;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// One torrent file as the server holds it.
enum Slot {
    /// A BEP 47 pad file: zeros, never on disk.
    Pad,
    /// Open, a regular file of the size the torrent says.
    Open {
        file: File,
        stamp: FileStamp,
        /// Mapping for zero-copy sends, made on first use (None: mapping failed).
        map: OnceLock<Option<Arc<FileMap>>>,
    },
    /// Missing, unreadable, not a regular file or of the wrong size: never served.
    Unusable { reason: String },
}

/// A torrent's data files, opened once.
pub struct DataFiles {
    slots: Vec<Slot>,
    paths: Vec<PathBuf>,
}

impl DataFiles {
    /// Opens every file of `layout` under `data_dir` (a client's save path). Files that cannot
    /// be used are recorded with the reason (see [`DataFiles::problems`]).
    pub fn open(layout: &Layout, data_dir: &Path) -> DataFiles {
        let paths: Vec<PathBuf> = (0..layout.files().len())
            .map(|i| layout.file_path(data_dir, i))
            .collect();
        let slots = layout
            .files()
            .iter()
            .zip(&paths)
            .map(|(f, path)| {
                if f.pad {
                    return Slot::Pad;
                }
                match open_regular(path, f.length) {
                    Ok((file, stamp)) => Slot::Open {
                        file,
                        stamp,
                        map: OnceLock::new(),
                    },
                    Err(reason) => Slot::Unusable { reason },
                }
            })
            .collect();
        DataFiles { slots, paths }
    }

    /// No file open (every non-pad file unusable): for state built in tests, whose reads go
    /// to a disk of their own.
    pub fn none(layout: &Layout) -> DataFiles {
        DataFiles {
            slots: layout
                .files()
                .iter()
                .map(|f| match f.pad {
                    true => Slot::Pad,
                    false => Slot::Unusable {
                        reason: "not opened".into(),
                    },
                })
                .collect(),
            paths: layout.files().iter().map(|f| f.rel_path.clone()).collect(),
        }
    }

    /// The open file `index`, if it is usable.
    pub fn file(&self, index: usize) -> Option<&File> {
        match self.slots.get(index)? {
            Slot::Open { file, .. } => Some(file),
            _ => None,
        }
    }

    /// The path file `index` was opened from.
    pub fn path(&self, index: usize) -> &Path {
        &self.paths[index]
    }

    /// The stamp of file `index` as opened (None for pad and unusable files).
    pub fn stamp(&self, index: usize) -> Option<FileStamp> {
        match self.slots.get(index)? {
            Slot::Open { stamp, .. } => Some(*stamp),
            _ => None,
        }
    }

    /// Why file `index` cannot be used (None: pad or usable).
    pub fn unusable(&self, index: usize) -> Option<&str> {
        match self.slots.get(index)? {
            Slot::Unusable { reason } => Some(reason),
            _ => None,
        }
    }

    /// Every file that cannot be used, with the reason.
    pub fn problems(&self) -> Vec<DataProblem> {
        (0..self.slots.len())
            .filter_map(|i| {
                self.unusable(i).map(|reason| DataProblem {
                    file: i,
                    path: self.paths[i].clone(),
                    reason: reason.to_string(),
                })
            })
            .collect()
    }

    /// `len` bytes of the torrent at `start` without a copy, if they lie in one data file and
    /// are all in the page cache right now (see [`super::resident`]); None: read them.
    pub fn resident(&self, layout: &Layout, start: u64, len: usize) -> Option<Bytes> {
        let mut spans = layout.spans(start, len as u64);
        let span = spans.next()?;
        if span.pad || spans.next().is_some() {
            return None;
        }
        let Slot::Open { file, map, .. } = self.slots.get(span.file)? else {
            return None;
        };
        map.get_or_init(|| FileMap::new(file))
            .as_ref()?
            .resident(file, span.file_offset, len)
    }

    /// Whether `len` bytes at `start` could ever go out from a mapping: they lie in one data
    /// file that is open (a run across files, or of a pad file, is always read).
    pub fn mappable(&self, layout: &Layout, start: u64, len: usize) -> bool {
        let mut spans = layout.spans(start, len as u64);
        match (spans.next(), spans.next()) {
            (Some(span), None) => {
                !span.pad && matches!(self.slots.get(span.file), Some(Slot::Open { .. }))
            }
            _ => false,
        }
    }

    /// Reads `buf.len()` torrent bytes at `start` with `pread` (pad files as zeros).
    pub fn read_at(&self, layout: &Layout, start: u64, buf: &mut [u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut at = 0usize;
        for span in layout.spans(start, buf.len() as u64) {
            let n = span.len as usize;
            let dst = &mut buf[at..at + n];
            match self.slots.get(span.file) {
                Some(Slot::Pad) => dst.fill(0),
                Some(Slot::Open { file, .. }) => file.read_exact_at(dst, span.file_offset)?,
                _ => return Err(not_open()),
            }
            at += n;
        }
        Ok(())
    }
}

/// The error for a read from a file that is not open.
pub fn not_open() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotFound, "data file is not open")
}

/// Opens `path` read-only if it is a regular file of `length` bytes. Opened non-blocking, so a
/// FIFO or device in its place never blocks the caller (it is refused after the open).
fn open_regular(path: &Path, length: u64) -> Result<(File, FileStamp), String> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("missing".into()),
        Err(e) => return Err(format!("cannot open: {e}")),
    };
    let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.len() != length {
        return Err(format!(
            "size is {} bytes, torrent says {length}",
            meta.len()
        ));
    }
    Ok((file, FileStamp::from_metadata(&meta)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_in_place_of_a_data_file_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = open_regular(&path, 10).unwrap_err();
        assert_eq!(err, "is not a regular file");
        assert_eq!(
            open_regular(&dir.path().join("nope"), 1).unwrap_err(),
            "missing"
        );
        std::fs::write(dir.path().join("g"), b"abc").unwrap();
        assert!(open_regular(&dir.path().join("g"), 4)
            .unwrap_err()
            .contains("size is 3 bytes"));
        assert!(open_regular(&dir.path().join("g"), 3).is_ok());
    }
}
