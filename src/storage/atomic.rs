//! Writing a file so that a crash leaves either the old version or the new one whole, never a
//! torn mix: a temporary file beside it, written and fsynced, then renamed over it. Used for
//! .torrent files, fast-resume records and every other state file the server keeps. Knows
//! nothing of what it writes. [`write_new`] does the same but never replaces an existing file.

use std::path::Path;

/// The temporary file beside `out` that this process writes before putting it in place:
/// `NAME.TAG<pid>` in `out`'s directory.
fn beside(out: &Path, tag: &str) -> std::path::PathBuf {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{tag}{}", std::process::id()));
    dir.join(name)
}

/// Writes `bytes` to a temporary file beside `out` (fsynced if `sync`) and renames it over
/// `out`; the temporary file is removed if anything fails.
fn replace(out: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = beside(out, "tmp");
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, out)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Writes `bytes` to `out` atomically (temporary file, fsync, rename). The caller fsyncs the
/// directory where the rename must survive a power loss.
pub fn write_atomic(out: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(out, bytes, true)
}

/// Writes `bytes` to `out` through a temporary file renamed over it, without fsyncs: readers
/// never see a torn mix, but after a power loss `out` may hold the old version, nothing, or
/// (on file systems that do not order the data before the rename) a torn file. Only for files
/// whose loss or damage is detected and costs nothing but work (fast-resume records).
pub fn replace_unsynced(out: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(out, bytes, false)
}

/// Writes `bytes` to `out`, which must not exist yet: the whole file appears at once (a
/// temporary file, fsynced, then hard-linked into place, which fails if `out` exists), or not
/// at all. An existing `out` is an `AlreadyExists` error and is left alone.
pub fn write_new(out: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = beside(out, "new");
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, out)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        // A file system without hard links: create it exclusively instead.
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists && !out.exists() => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(out)?;
            f.write_all(bytes)?;
            f.sync_all()
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_new_never_replaces_and_write_atomic_does() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.torrent");
        write_new(&p, b"one").unwrap();
        let e = write_new(&p, b"two").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        write_atomic(&p, b"three").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"three");
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
