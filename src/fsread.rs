//! Reading the files an operator or an earlier run left for us (.torrent files, the
//! configuration, the blocklist, the API token, state records) so that no such file can hang
//! or swamp the reader: only regular files are opened (a FIFO, device or socket of the same
//! name is refused before it is opened, and again after, should it have been swapped in
//! between), the open never blocks, and no more than a stated number of bytes is read.
//!
//! It owns nothing but these checks; callers turn its errors into their own messages.

use std::fs::File;
use std::io::{Error, ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The error for a path that is not a regular file (`kind` is the kind found).
fn not_regular(kind: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("is not a regular file (it is {kind})"),
    )
}

fn kind_of(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a plain file"
    }
}

/// Whether `path` (symbolic links followed) is a regular file: Ok(false) for anything else,
/// an error where it cannot be looked at (missing, a symbolic-link loop, no permission).
pub fn is_regular(path: &Path) -> std::io::Result<bool> {
    Ok(std::fs::metadata(path)?.file_type().is_file())
}

/// Opens `path` for reading if it is a regular file of at most `max` bytes.
pub fn open_regular(path: &Path, max: u64) -> std::io::Result<File> {
    let before = std::fs::metadata(path)?;
    if !before.file_type().is_file() {
        return Err(not_regular(kind_of(before.file_type())));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(not_regular(kind_of(meta.file_type())));
    }
    if meta.len() > max {
        return Err(too_large(max));
    }
    Ok(file)
}

fn too_large(max: u64) -> Error {
    Error::new(
        ErrorKind::InvalidData,
        format!("is larger than the {max} bytes accepted"),
    )
}

/// The whole of `path` if it is a regular file of at most `max` bytes (a file that grows
/// past `max` while it is read is refused too).
pub fn read_regular(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let file = open_regular(path, max)?;
    let mut out = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(too_large(max));
    }
    Ok(out)
}

/// [`read_regular`] as UTF-8 text.
pub fn read_regular_string(path: &Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read_regular(path, max)?)
        .map_err(|_| Error::new(ErrorKind::InvalidData, "is not valid UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_within_the_limit_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.torrent");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_regular(&p, 5).unwrap(), b"12345");
        let e = read_regular(&p, 4).unwrap_err();
        assert!(e.to_string().contains("larger than the 4 bytes"), "{e}");
        let e = read_regular(dir.path(), 100).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        let e = read_regular(&dir.path().join("missing"), 100).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(is_regular(&p).unwrap());
        assert!(!is_regular(dir.path()).unwrap());
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.torrent");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path inside our temporary directory.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Without a writer, an open for reading would block forever; this must return at once.
        let e = read_regular(&p, 100).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        assert!(!is_regular(&p).unwrap());
    }

    #[test]
    fn symlink_loops_are_errors_and_links_to_files_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.torrent"), dir.path().join("b.torrent"));
        std::os::unix::fs::symlink(&a, &b).unwrap();
        std::os::unix::fs::symlink(&b, &a).unwrap();
        assert!(read_regular(&a, 100).is_err());
        assert!(is_regular(&a).is_err());
        let real = dir.path().join("real");
        std::fs::write(&real, b"x").unwrap();
        let link = dir.path().join("link.torrent");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(read_regular(&link, 1).unwrap(), b"x");
    }
}
