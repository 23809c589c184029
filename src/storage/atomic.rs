//! Writing a file so that a crash leaves either the old version or the new one whole, never a
//! torn mix: a temporary file beside it, written and fsynced, then renamed over it. Used for
//! .torrent files, fast-resume records and every other state file the server keeps. Knows
//! nothing of what it writes.

use std::path::Path;

/// Writes `bytes` to `out` atomically (temporary file, fsync, rename). The caller fsyncs the
/// directory where the rename must survive a power loss.
pub fn write_atomic(out: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp_name = out.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, out).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
