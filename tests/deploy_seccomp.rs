//! deploy/docker/seccomp-io_uring.json: Docker's (moby's) default seccomp profile plus the three
//! io_uring calls. Checked structurally against a byte-exact copy of the upstream profile
//! (tests/data/moby-seccomp-default.json), and at run time without Docker: tests/tools/
//! seccomp_exec.py loads a profile with libseccomp (Debian's python3-seccomp) the way a container
//! runtime would for a container with no capabilities on this architecture, then execs uringseed.

mod common;

use common::*;
use serde_json::Value;
use sha1::{Digest, Sha1};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the upstream copy comes from: github.com/moby/profiles, tag seccomp/v0.2.3
/// (commit 836ae4d37ef2ec995c77c99fc55f5b5f3af3a897), file seccomp/default.json.
const UPSTREAM_BLOB: &str = "ea5a494afb8d64898fa0f4f47ae0c4f5ba9cbbc9";
const IO_URING: [&str; 3] = ["io_uring_enter", "io_uring_register", "io_uring_setup"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_path() -> PathBuf {
    repo().join("deploy/docker/seccomp-io_uring.json")
}

fn upstream_path() -> PathBuf {
    repo().join("tests/data/moby-seccomp-default.json")
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rules(profile: &Value) -> &Vec<Value> {
    profile["syscalls"]
        .as_array()
        .expect("syscalls is an array")
}

/// Names allowed with no condition at all (no args, includes or excludes).
fn allowed_unconditionally(profile: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for r in rules(profile) {
        let plain = r
            .get("args")
            .is_none_or(|a| a.as_array().is_none_or(|a| a.is_empty()))
            && r.get("includes")
                .is_none_or(|i| i.as_object().is_none_or(|o| o.is_empty()))
            && r.get("excludes")
                .is_none_or(|e| e.as_object().is_none_or(|o| o.is_empty()));
        if plain && r["action"] == "SCMP_ACT_ALLOW" {
            for n in r["names"].as_array().unwrap() {
                out.push(n.as_str().unwrap().to_string());
            }
        }
    }
    out
}

fn all_names(profile: &Value) -> Vec<String> {
    rules(profile)
        .iter()
        .flat_map(|r| r["names"].as_array().unwrap().iter())
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn shipped_profile_is_mobys_default_plus_the_three_io_uring_calls() {
    // The upstream copy is the file as moby ships it (its git blob id), not a hand-edited one.
    let bytes = std::fs::read(upstream_path()).unwrap();
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(&bytes);
    let blob: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        blob,
        UPSTREAM_BLOB,
        "{} is not moby/profiles seccomp/v0.2.3 seccomp/default.json",
        upstream_path().display()
    );

    let upstream = load(&upstream_path());
    let shipped = load(&shipped_path());
    // Everything but the rules is the same: default action and errno, architectures.
    for key in ["defaultAction", "defaultErrnoRet", "archMap"] {
        assert_eq!(shipped[key], upstream[key], "{key} differs from moby's");
    }
    let keys: Vec<&String> = shipped.as_object().unwrap().keys().collect();
    assert_eq!(
        keys.len(),
        upstream.as_object().unwrap().len(),
        "top-level keys {keys:?}"
    );
    // Every upstream rule is there unchanged (names, action, args, includes, excludes)...
    let mut extra: Vec<Value> = rules(&shipped).clone();
    for r in rules(&upstream) {
        let at = extra
            .iter()
            .position(|s| s == r)
            .unwrap_or_else(|| panic!("moby's rule {r} is missing or changed"));
        extra.remove(at);
    }
    // ...and the one rule added allows exactly the io_uring calls, unconditionally.
    assert_eq!(
        extra,
        vec![serde_json::json!({"names": IO_URING, "action": "SCMP_ACT_ALLOW"})],
        "rules added to moby's default"
    );
    // Moby's default does not allow io_uring anywhere (so the negative control below is one).
    let up_names = all_names(&upstream);
    for n in IO_URING {
        assert!(!up_names.iter().any(|u| u == n), "moby's default names {n}");
    }
    // What the old 223-name list lacked and runc needs to switch to the container's user, and
    // what uringseed needs: allowed with no condition.
    let plain = allowed_unconditionally(&shipped);
    for n in ["setuid", "setgid", "setgroups", "capset", "execve"]
        .into_iter()
        .chain(IO_URING)
    {
        assert!(plain.iter().any(|p| p == n), "{n} is not allowed outright");
    }
    // The file is what `jq` or Docker reads: plain JSON, no comment fields of ours.
    assert!(extra.iter().all(|r| r.get("comment").is_none()));
}

/// True if libseccomp's Python bindings import under /usr/bin/python3. Missing: fails under CI,
/// skips with a message otherwise.
fn have_python_seccomp() -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import seccomp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !tools_required(),
            "python3-seccomp (libseccomp's Python bindings for /usr/bin/python3) is required in \
             CI but not installed (see .ci/run)"
        );
        eprintln!("SKIPPED: python3-seccomp not installed (apt-get install python3-seccomp)");
    }
    ok
}

/// `/usr/bin/python3 tests/tools/seccomp_exec.py PROFILE -- PROGRAM`.
fn under(profile: &Path, program: &str) -> Command {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(tools_dir().join("seccomp_exec.py"))
        .arg(profile)
        .arg("--")
        .arg(program);
    cmd
}

/// GET `path` from the metrics endpoint: (status code, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// GET `path` from `addr` as bytes: (status code, body).
fn get_bytes(addr: &str, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(reply.len(), |i| i + 4);
    let code = String::from_utf8_lossy(&reply[..split.min(reply.len())])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, reply[split..].to_vec())
}

/// The seccomp mode and filter count of a process, from /proc/PID/status ("2", "1": filtering).
fn seccomp_status(pid: u32) -> (String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    (field("Seccomp:"), field("Seccomp_filters:"))
}

/// uringseed serving `torrent` from `data` under `profile`, with its web seed on: (process,
/// peer address, metrics address, web seed address), once its data is checked.
fn serve_under(
    profile: &Path,
    torrent: &Path,
    data: &Path,
    dir: &Path,
) -> (Proc, String, String, String) {
    let mut cmd = under(profile, env!("CARGO_BIN_EXE_uringseed"));
    // No DHT bootstrap off the machine (the default routers are replaced by none).
    cmd.env("URINGSEED_DHT_BOOTSTRAP", "");
    cmd.arg("serve")
        .arg("--torrent")
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .args(["--webseed", "127.0.0.1:0"])
        .args(["--log-level", "debug"])
        .env("XDG_STATE_HOME", dir.join("state"))
        .env_remove("STATE_DIRECTORY");
    let mut proc = Proc::spawn("uringseed", &mut cmd, dir);
    let peer = proc.wait_line("listening: ", Duration::from_secs(30));
    let metrics = proc
        .wait_line("metrics: ", Duration::from_secs(30))
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    let web = proc.wait_line("webseed listening: ", Duration::from_secs(30));
    proc.wait_line("ready: ", Duration::from_secs(30));
    (proc, peer, metrics, web)
}

/// The `serving backend=...` log line.
fn serving_line(proc: &Proc) -> String {
    proc.stderr_text()
        .lines()
        .find(|l| l.contains(" serving backend="))
        .unwrap_or_else(|| panic!("no `serving backend=` log line\n{}", proc.report()))
        .to_string()
}

#[test]
fn under_the_shipped_profile_uringseed_uses_io_uring_and_serves_libtorrent() {
    if !have_python_seccomp() || !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tree = write_tree(&data, "tree");
    std::fs::write(tree.join("big.bin"), pseudo_random(6_000_000, 13)).unwrap();
    let torrent = dir.path().join("t.torrent");
    make_torrent(&tree, &torrent, &["--piece-length", "262144"]);

    let (mut server, peer, metrics, web) =
        serve_under(&shipped_path(), &torrent, &data, dir.path());
    // The filter is on the server process itself (seccomp_exec.py exec'd it: same PID).
    assert_eq!(
        seccomp_status(server.pid()),
        ("2".to_string(), "1".to_string()),
        "uringseed is not running under a seccomp filter\n{}",
        server.report()
    );
    assert!(
        server.stderr_text().contains("seccomp_exec: ")
            && server.stderr_text().contains(" rules loaded"),
        "the launcher did not report loading the filter\n{}",
        server.report()
    );
    let line = serving_line(&server);
    assert!(
        line.contains("backend=\"io_uring\"") || line.contains("backend=io_uring"),
        "not serving on io_uring: {line}\n{}",
        server.report()
    );
    let (code, body) = get(&metrics, "/metrics");
    assert_eq!(code, 200);
    assert_eq!(
        sample(&body, "uringseed_io_backend{backend=\"io_uring\"}"),
        1.0
    );

    // A real client downloads everything, byte for byte.
    let save = dir.path().join("lt");
    let mut lt = spawn_lt_download(&torrent, &save, &peer, 60, 0, None, dir.path());
    let status = lt.wait_exit(Duration::from_secs(75));
    assert!(
        status.is_some_and(|s| s.success()),
        "libtorrent download failed: {status:?}\n{}\n{}",
        lt.report(),
        server.report()
    );
    let diffs = tree_differences(&tree, &save.join("tree"), false);
    assert!(diffs.is_empty(), "download differs: {diffs:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let total = uringseed::metainfo::load(&torrent).unwrap().total_length as f64;
    loop {
        let (_, body) = get(&metrics, "/metrics");
        let sent = sample(&body, "uringseed_uploaded_bytes_total{type=\"payload\"}");
        if sent >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "payload counter {sent} < {total} bytes of the torrent"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The web seed's bodies (sendfile from the page cache, the socket briefly non-blocking and
    // corked, a wait in tokio's reactor) pass the filter too: the whole file, byte for byte.
    let (code, body) = get_bytes(&web, "/tree/big.bin");
    assert_eq!(
        code,
        200,
        "web seed GET under the profile\n{}",
        server.report()
    );
    assert!(
        body == std::fs::read(tree.join("big.bin")).unwrap(),
        "web seed body differs under the profile ({} bytes)\n{}",
        body.len(),
        server.report()
    );
    let (_, m) = get(&metrics, "/metrics");
    assert!(sample(&m, "uringseed_webseed_payload_bytes_total") >= 6_000_000.0);
    // Shutting down (signal handling, tracker-less stop, writes drained) works under it too.
    let status = server.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "uringseed did not exit 0 on SIGTERM under the profile: {status:?}\n{}",
        server.report()
    );
}

#[test]
fn under_mobys_default_profile_uringseed_falls_back_to_portable() {
    // Negative control: the same launcher with the upstream profile (no io_uring) must block
    // io_uring_setup, or the test above proves nothing about the profile.
    if !have_python_seccomp() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("one.bin"), pseudo_random(300_000, 5)).unwrap();
    let torrent = dir.path().join("one.torrent");
    make_torrent(&data.join("one.bin"), &torrent, &[]);

    let (mut server, _peer, metrics, _web) =
        serve_under(&upstream_path(), &torrent, &data, dir.path());
    assert_eq!(seccomp_status(server.pid()).0, "2");
    let line = serving_line(&server);
    assert!(
        line.contains("backend=\"portable\"") || line.contains("backend=portable"),
        "io_uring was not blocked by moby's default profile: {line}"
    );
    assert!(
        server
            .stderr_text()
            .contains("io_uring is not available (Operation not permitted"),
        "no EPERM warning\n{}",
        server.report()
    );
    let (_, body) = get(&metrics, "/metrics");
    assert_eq!(
        sample(&body, "uringseed_io_backend{backend=\"portable\"}"),
        1.0
    );
    assert!(!body.contains("uringseed_io_backend{backend=\"io_uring\"}"));
    let status = server.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{}", server.report());
}

/// What runc does in the container before exec'ing the entrypoint when no-new-privileges is off:
/// set the user and group ids and the capabilities, with the filter already loaded.
const SWITCH_IDS: &str = r#"
import ctypes, os
os.setgid(os.getgid())
os.setuid(os.getuid())
if os.geteuid() == 0:
    os.setgroups(os.getgroups())
libc = ctypes.CDLL(None, use_errno=True)
class Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
class Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]
hdr = Header(0x20080522, 0)
data = (Data * 2)()
if libc.capget(ctypes.byref(hdr), data) != 0:
    raise OSError(ctypes.get_errno(), "capget")
if libc.capset(ctypes.byref(hdr), data) != 0:
    raise OSError(ctypes.get_errno(), "capset")
print("switched")
"#;

#[test]
fn the_shipped_profile_lets_a_runtime_switch_user_and_capabilities() {
    if !have_python_seccomp() {
        return;
    }
    let ok = run(under(&shipped_path(), "/usr/bin/python3").args(["-c", SWITCH_IDS]));
    assert_eq!(stdout(&ok).trim(), "switched");
    // The same check fails when one of those calls is taken out of the profile.
    let dir = tempfile::tempdir().unwrap();
    let mut narrowed = load(&shipped_path());
    for r in narrowed["syscalls"].as_array_mut().unwrap() {
        r["names"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n != "setuid" && n != "capset");
    }
    let path = dir.path().join("narrowed.json");
    std::fs::write(&path, serde_json::to_string(&narrowed).unwrap()).unwrap();
    let out = under(&path, "/usr/bin/python3")
        .args(["-c", SWITCH_IDS])
        .output()
        .unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("PermissionError"),
        "setuid succeeded without it in the profile: {out:?}"
    );
}

#[test]
fn under_the_kubernetes_localhost_profile_uringseed_uses_io_uring_too() {
    // deploy/kubernetes/seccomp/uringseed-io_uring.json: the same rules resolved into the OCI
    // format containerd reads (tests/deploy_kubernetes.rs checks that it is in sync).
    if !have_python_seccomp() {
        return;
    }
    let profile = repo().join("deploy/kubernetes/seccomp/uringseed-io_uring.json");
    let ok = run(under(&profile, "/usr/bin/python3").args(["-c", SWITCH_IDS]));
    assert_eq!(stdout(&ok).trim(), "switched");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("one.bin"), pseudo_random(300_000, 7)).unwrap();
    let torrent = dir.path().join("one.torrent");
    make_torrent(&data.join("one.bin"), &torrent, &[]);
    let (mut server, _peer, metrics, _web) = serve_under(&profile, &torrent, &data, dir.path());
    assert_eq!(seccomp_status(server.pid()).0, "2");
    let line = serving_line(&server);
    assert!(
        line.contains("backend=\"io_uring\"") || line.contains("backend=io_uring"),
        "not serving on io_uring under the Kubernetes profile: {line}"
    );
    let (_, body) = get(&metrics, "/metrics");
    assert_eq!(
        sample(&body, "uringseed_io_backend{backend=\"io_uring\"}"),
        1.0
    );
    let status = server.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{}", server.report());
}
