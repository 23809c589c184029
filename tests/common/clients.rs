//! Real BitTorrent clients on loopback (libtorrent through tests/tools/lt_tool.py) and
//! comparing what they downloaded with what was seeded.

use super::proc::{run, stdout, Proc};
use super::tools_dir;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs tests/tools/lt_tool.py with `args`; returns its "key value" lines.
pub fn lt_tool(args: &[&str]) -> Vec<(String, String)> {
    lt_tool_env(args, &[])
}

/// `lt_tool` with extra environment (e.g. `LT_DOWNLOAD_RATE` so a download lasts a while).
pub fn lt_tool_env(args: &[&str], env: &[(&str, &str)]) -> Vec<(String, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/lt_tool.py");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(script).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    stdout(&out)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Starts `lt_tool.py download TORRENT SAVE_DIR PEER TIMEOUT_S` as a child process (stderr in
/// `log_dir/libtorrent.stderr`), its download capped at `rate` bytes/s (LT_DOWNLOAD_RATE; 0 =
/// unlimited), dialling from `bind_ip` (LT_BIND_IP; None = 127.0.0.1).
pub fn spawn_lt_download(
    torrent: &Path,
    save_dir: &Path,
    peer: &str,
    timeout_s: u64,
    rate: u64,
    bind_ip: Option<&str>,
    log_dir: &Path,
) -> Proc {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(tools_dir().join("lt_tool.py"))
        .arg("download")
        .arg(torrent)
        .arg(save_dir)
        .arg(peer)
        .arg(timeout_s.to_string())
        .env("LT_DOWNLOAD_RATE", rate.to_string());
    match bind_ip {
        Some(ip) => cmd.env("LT_BIND_IP", ip),
        None => cmd.env_remove("LT_BIND_IP"),
    };
    Proc::spawn("libtorrent", &mut cmd, log_dir)
}

/// Every regular file under `root` (recursively) as (path relative to root, length), sorted.
pub fn list_files(root: &Path) -> Vec<(PathBuf, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = std::fs::metadata(&path).unwrap();
            if meta.is_dir() {
                walk(root, &path, out);
            } else {
                out.push((path.strip_prefix(root).unwrap().to_path_buf(), meta.len()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Checks that `got` holds `want`'s files: every non-empty file byte for byte; zero-length files
/// must exist when `empty_files_required` (some clients never create them), and any that exist
/// must be empty. Returns a description of every difference (empty: identical).
pub fn tree_differences(want: &Path, got: &Path, empty_files_required: bool) -> Vec<String> {
    let mut diffs = Vec::new();
    for (rel, len) in list_files(want) {
        let g = got.join(&rel);
        let meta = match std::fs::metadata(&g) {
            Ok(m) => m,
            Err(_) if len == 0 && !empty_files_required => continue,
            Err(e) => {
                diffs.push(format!("{}: missing ({e})", rel.display()));
                continue;
            }
        };
        if meta.len() != len {
            diffs.push(format!(
                "{}: {} bytes, want {len}",
                rel.display(),
                meta.len()
            ));
            continue;
        }
        if len == 0 {
            continue;
        }
        let a = std::fs::read(want.join(&rel)).unwrap();
        let b = std::fs::read(&g).unwrap();
        if a != b {
            let at = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(0);
            let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
            diffs.push(format!(
                "{}: content differs from byte {at} on ({differing} bytes differ)",
                rel.display()
            ));
        }
    }
    diffs
}
