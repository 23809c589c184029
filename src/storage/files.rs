//! The one owner of a torrent's data files: each file is opened (read-only, never a FIFO or
//! device) and checked against the torrent's sizes when the torrent is loaded, its stamp kept
//! for the fast-resume record; after that its descriptor lives in the process's bounded cache
//! ([`super::pool`]), reopened on demand when it was evicted, and refused if the path now
//! names another file than the one checked. The startup check hashes through it, every worker
//! reads through it, and zero-copy sends use the mapping kept with the descriptor. Dropping
//! the [`DataFiles`], when the last connection of a removed torrent ends, drops its cache
//! entries, so a deleted file's space is freed once the reads in flight are done.
//!
//! A reader holds the `Arc<OpenFile>` it was given until its read is complete (workers that
//! read through io_uring keep it in the read's buffer), so a descriptor is never closed under
//! a read. This module may not know about peers, sockets or the server.

use super::layout::{DataProblem, Layout};
use super::pool::{self, OpenFile};
use super::resume::FileStamp;
use bytes::Bytes;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One torrent file as the server holds it.
enum Slot {
    /// A BEP 47 pad file: zeros, never on disk.
    Pad,
    /// A regular file of the size the torrent says, as it was when checked.
    Usable { stamp: FileStamp, length: u64 },
    /// Missing, unreadable, not a regular file or of the wrong size: never served.
    Unusable { reason: String },
}

/// A torrent's data files.
pub struct DataFiles {
    /// Its key in the process's descriptor cache.
    id: u64,
    slots: Vec<Slot>,
    paths: Vec<PathBuf>,
}

impl Drop for DataFiles {
    fn drop(&mut self) {
        pool::pool().forget(self.id, self.slots.len());
    }
}

impl DataFiles {
    /// Opens and checks every file of `layout` under `data_dir` (a client's save path),
    /// leaving the descriptors in the process's cache. Files that cannot be used are recorded
    /// with the reason (see [`DataFiles::problems`]).
    pub fn open(layout: &Layout, data_dir: &Path) -> DataFiles {
        let id = pool::next_id();
        let paths: Vec<PathBuf> = (0..layout.files().len())
            .map(|i| layout.file_path(data_dir, i))
            .collect();
        let slots = layout
            .files()
            .iter()
            .zip(&paths)
            .enumerate()
            .map(|(i, (f, path))| {
                if f.pad {
                    return Slot::Pad;
                }
                match open_regular(path, f.length) {
                    Ok((file, stamp)) => {
                        pool::pool().put((id, i), Arc::new(OpenFile::new(file)));
                        Slot::Usable {
                            stamp,
                            length: f.length,
                        }
                    }
                    Err(reason) => Slot::Unusable { reason },
                }
            })
            .collect();
        DataFiles { id, slots, paths }
    }

    /// No file open (every non-pad file unusable): for state built in tests, whose reads go
    /// to a disk of their own.
    pub fn none(layout: &Layout) -> DataFiles {
        DataFiles {
            id: pool::next_id(),
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

    /// File `index`, open (from the cache, or opened again and checked to be the file that
    /// was checked), if it is usable; else why not.
    pub fn file(&self, index: usize) -> Result<Arc<OpenFile>, String> {
        let (stamp, length) = match self.slots.get(index) {
            Some(Slot::Usable { stamp, length }) => (stamp, *length),
            Some(Slot::Unusable { reason }) => return Err(reason.clone()),
            Some(Slot::Pad) => return Err("a pad file".into()),
            None => return Err("no such file".into()),
        };
        let p = pool::pool();
        if let Some(open) = p.get((self.id, index)) {
            return Ok(open);
        }
        let (file, now) = open_regular(&self.paths[index], length)?;
        if (now.dev, now.ino) != (stamp.dev, stamp.ino) {
            return Err("replaced by another file since it was checked".into());
        }
        let open = Arc::new(OpenFile::new(file));
        p.put((self.id, index), open.clone());
        Ok(open)
    }

    /// Whether file `index` was usable when checked (without opening it).
    pub fn usable(&self, index: usize) -> bool {
        matches!(self.slots.get(index), Some(Slot::Usable { .. }))
    }

    /// The path file `index` was opened from.
    pub fn path(&self, index: usize) -> &Path {
        &self.paths[index]
    }

    /// The stamp of file `index` as checked (None for pad and unusable files).
    pub fn stamp(&self, index: usize) -> Option<FileStamp> {
        match self.slots.get(index)? {
            Slot::Usable { stamp, .. } => Some(*stamp),
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
        if span.pad || spans.next().is_some() || !self.usable(span.file) {
            return None;
        }
        let open = self.file(span.file).ok()?;
        let probe = !open.reads_quiet();
        open.map()?
            .resident(open.file(), span.file_offset, len, probe)
    }

    /// Whether `len` bytes at `start` could ever go out from a mapping: they lie in one data
    /// file that is usable (a run across files, or of a pad file, is always read).
    pub fn mappable(&self, layout: &Layout, start: u64, len: usize) -> bool {
        let mut spans = layout.spans(start, len as u64);
        match (spans.next(), spans.next()) {
            (Some(span), None) => !span.pad && self.usable(span.file),
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
            if span.pad {
                dst.fill(0);
            } else {
                let open = self.file(span.file).map_err(|_| not_open())?;
                open.note_disk_read();
                open.file().read_exact_at(dst, span.file_offset)?;
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
