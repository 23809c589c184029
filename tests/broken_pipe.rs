//! A closed stdout (`uringseed ... | head -1`) ends the printing commands quietly (killed by
//! SIGPIPE, status 141 in a shell, like cat or grep) instead of a panic (status 101), and never
//! stops `serve`, which keeps serving with its status lines going nowhere.

mod common;

use common::*;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The write end of a pipe whose read end is already closed: every write fails with EPIPE.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors, which are then owned here.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

/// Runs `cmd` with stdout on a closed pipe; returns its status and stderr.
fn run_into_closed_pipe(cmd: &mut Command) -> (ExitStatus, String) {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Quiet: ended by SIGPIPE (or exit 0), nothing on stderr.
fn assert_quiet(what: &str, status: ExitStatus, stderr: &str) {
    assert!(
        status.signal() == Some(libc::SIGPIPE) || status.code() == Some(0),
        "{what}: {status:?} (want SIGPIPE or 0)\n{stderr}"
    );
    assert!(stderr.trim().is_empty(), "{what} wrote on stderr: {stderr}");
}

#[test]
fn make_verify_and_check_config_end_quietly_on_a_closed_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let tree = write_tree(dir.path(), "tree");
    let torrent = dir.path().join("t.torrent");
    let (status, err) = run_into_closed_pipe(
        uringseed()
            .arg("make")
            .arg(&tree)
            .arg("-o")
            .arg(&torrent)
            .arg("-q"),
    );
    assert_quiet("make", status, &err);
    let (status, err) = run_into_closed_pipe(
        uringseed()
            .args(["verify", "--json", "-q", "--torrent"])
            .arg(&torrent)
            .arg("--data")
            .arg(dir.path()),
    );
    assert_quiet("verify --json", status, &err);
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[server]\nworkers = 1\n").unwrap();
    let (status, err) = run_into_closed_pipe(uringseed().arg("check-config").arg(&config));
    assert_quiet("check-config", status, &err);
}

/// What a user types: `uringseed verify --json ... | head -1` on a report longer than a pipe
/// holds, so the command is still writing when head exits.
#[test]
fn verify_json_piped_into_head_exits_with_sigpipe_status() {
    if !have("bash") || !have("head") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A torrent of 20480 pieces (written here, nothing to hash) whose file is missing: every
    // piece is bad, so the JSON list of bad pieces is far longer than a 64 KiB pipe holds.
    let pieces = 20480usize;
    let mut bytes = format!(
        "d4:infod6:lengthi{}e4:name7:big.img12:piece lengthi16384e6:pieces{}:",
        pieces * 16384,
        pieces * 20
    )
    .into_bytes();
    bytes.extend(std::iter::repeat_n(7u8, pieces * 20));
    bytes.extend_from_slice(b"ee");
    let torrent = dir.path().join("big.torrent");
    std::fs::write(&torrent, bytes).unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let script = format!(
        "'{}' verify --json -q --torrent '{}' --data '{}' | head -1; echo \"status=${{PIPESTATUS[0]}}\"",
        env!("CARGO_BIN_EXE_uringseed"),
        torrent.display(),
        empty.display()
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(text.lines().next(), Some("{"), "{text}");
    assert!(
        text.contains("status=141"),
        "verify | head -1 should end by SIGPIPE (141): {text}\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn serve_path_keeps_serving_with_stdout_closed() {
    let dir = tempfile::tempdir().unwrap();
    let tree = write_tree(dir.path(), "tree");
    let (port, mport) = (free_port(), free_port());
    let log = dir.path().join("serve.stderr");
    let mut child = uringseed()
        .current_dir(dir.path())
        .arg("serve")
        .arg(&tree)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics", &format!("127.0.0.1:{mport}")])
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let metrics = format!("127.0.0.1:{mport}");
    // Ready (the `ready:` line was attempted) within 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        if let Ok((200, _)) = http_get(&metrics, "/readyz", Duration::from_secs(2)) {
            break true;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();
    if !ready {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "serve with a closed stdout never became ready:\n{}",
            stderr()
        );
    }
    // Still alive a moment after its last status line, and serving peers.
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "{}", stderr());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(dir.path().join("tree.torrent").is_file());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", stderr());
    assert!(!stderr().contains("panicked"), "{}", stderr());
}
