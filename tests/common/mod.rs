//! Shared helpers for integration tests: external tools, test data trees, running the binary.
#![allow(dead_code)]

pub mod raw;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// True if `tool` is on PATH. When it is missing, CI (CI or URINGSEED_REQUIRE_TOOLS set) fails the
/// test; a developer machine skips it with a message.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let required = std::env::var_os("CI").is_some()
            || std::env::var_os("URINGSEED_REQUIRE_TOOLS").is_some();
        assert!(
            !required,
            "{tool} is required in CI but not installed (see .ci/run)"
        );
        eprintln!("SKIPPED: {tool} not installed");
    }
    found
}

/// True if Debian's libtorrent Python bindings import under /usr/bin/python3.
pub fn have_libtorrent() -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import libtorrent"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        have("libtorrent-python-bindings-missing");
    }
    ok
}

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The uringseed binary built for this test run, keeping its fast-resume records in a
/// directory of this test process (never the user's own state directory).
pub fn uringseed() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uringseed"));
    let state = std::env::temp_dir().join(format!("uringseed-test-state-{}", std::process::id()));
    cmd.env("XDG_STATE_HOME", state)
        .env_remove("STATE_DIRECTORY");
    cmd
}

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

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Writes a multi-file tree under `parent/name`: nested dirs, an empty file, odd sizes.
pub fn write_tree(parent: &Path, name: &str) -> PathBuf {
    let root = parent.join(name);
    let files: &[(&str, usize)] = &[
        ("a.bin", 300_001),
        ("sub/b.txt", 17),
        ("sub/deeper/c.dat", 65_536),
        ("zero", 0),
        ("z-last.bin", 40_000),
    ];
    for (i, (rel, len)) in files.iter().enumerate() {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, pseudo_random(*len, i as u64 + 1)).unwrap();
    }
    root
}

// ---- Real clients on loopback (tests/real_clients.rs): child processes, tools, tree checks ----

use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// True when missing test tools must fail the test instead of skipping it (see `have`).
pub fn tools_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("URINGSEED_REQUIRE_TOOLS").is_some()
}

/// tests/tools (tracker.js, webtorrent_get.js, announce.py, aria2_get.sh, lt_tool.py).
pub fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools")
}

/// True if `node` is on PATH and tests/tools/node_modules is installed. Like `have`: missing
/// under CI fails the test, on a developer machine it skips with a message.
pub fn have_node_tools() -> bool {
    if !have("node") {
        return false;
    }
    let modules = tools_dir().join("node_modules");
    if modules.join("webtorrent").is_dir() && modules.join("bittorrent-tracker").is_dir() {
        return true;
    }
    assert!(
        !tools_required(),
        "{} is missing or incomplete: run .ci/run (it runs `npm ci --ignore-scripts --no-audit \
         --no-fund` in tests/tools)",
        modules.display()
    );
    eprintln!(
        "SKIPPED: {} not installed (cd tests/tools && npm ci --ignore-scripts --no-audit --no-fund)",
        modules.display()
    );
    false
}

/// The last `max` bytes of `s` (on a char boundary), for failure messages.
pub fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut at = s.len() - max;
    while !s.is_char_boundary(at) {
        at += 1;
    }
    &s[at..]
}

/// A child process with its stdout read line by line (kept, and offered to `wait_line`) and its
/// stderr written to `<log_dir>/<name>.stderr`. Dropping it (also while a test panics) stops the
/// process by its PID: SIGTERM, then SIGKILL if it has not exited within 3 s (SIGTERM first so
/// that wrappers such as `timeout` pass it on to their child).
pub struct Proc {
    pub name: String,
    child: Child,
    stderr_path: PathBuf,
    lines: mpsc::Receiver<String>,
    stdout: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` (stdin null, stdout piped, stderr to a file in `log_dir`).
    pub fn spawn(name: &str, cmd: &mut Command, log_dir: &Path) -> Proc {
        let stderr_path = log_dir.join(format!("{name}.stderr"));
        let stderr = std::fs::File::create(&stderr_path)
            .unwrap_or_else(|e| panic!("{}: {e}", stderr_path.display()));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = Arc::new(Mutex::new(String::new()));
        let kept = Arc::clone(&stdout);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let mut all = kept.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
                drop(all);
                let _ = tx.send(line);
            }
        });
        Proc {
            name: name.to_string(),
            child,
            stderr_path,
            lines,
            stdout,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it printed on stdout so far.
    pub fn stdout_text(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Everything it wrote on stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Its stdout and the tail of its stderr, for failure messages.
    pub fn report(&self) -> String {
        format!(
            "---- {} (pid {}) stdout:\n{}\n---- {} stderr ({}), last 12000 bytes:\n{}\n",
            self.name,
            self.pid(),
            tail(&self.stdout_text(), 4000),
            self.name,
            self.stderr_path.display(),
            tail(&self.stderr_text(), 12000)
        )
    }

    /// Waits (at most `timeout`) for a stdout line starting with `prefix`; returns the rest of
    /// that line. Panics, with its output, if it exits or the time runs out first.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_string();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{}: no line starting with {prefix:?} within {timeout:?}\n{}",
                    self.name,
                    self.report()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit(Duration::from_secs(5));
                    panic!(
                        "{}: stdout closed ({status:?}) before a line starting with {prefix:?}\n{}",
                        self.name,
                        self.report()
                    )
                }
            }
        }
    }

    /// Its exit status if it has exited (reaps it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits at most `timeout` for it to exit; None if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (a kill(1) name such as "TERM") to its PID unless it has already exited.
    pub fn signal(&mut self, signal: &str) {
        // Not yet reaped, so the PID is still this process's (at worst a zombie).
        if self.try_status().is_none() {
            // The shell's built-in kill: no PATH lookup, no libc crate needed.
            let _ = Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("kill -s {signal} {}", self.pid()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// SIGTERM, then waits at most `timeout` for it to exit; None if it is still running.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal("TERM");
        self.wait_exit(timeout)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_status().is_some() {
            return;
        }
        if self.terminate(Duration::from_secs(3)).is_none() {
            let _ = self.child.kill(); // SIGKILL to this PID
            let _ = self.child.wait();
        }
    }
}

/// `uringseed make ROOT -o OUT -q EXTRA...`; returns the info-hash it prints.
pub fn make_torrent(root: &Path, out: &Path, extra: &[&str]) -> String {
    let made = run(uringseed()
        .arg("make")
        .arg(root)
        .arg("-o")
        .arg(out)
        .arg("-q")
        .args(extra));
    let hash = stdout(&made).trim().to_string();
    assert_eq!(hash.len(), 40, "make printed {hash:?}");
    hash
}

/// A running `uringseed serve --torrent T --data DIR --listen 127.0.0.1:0 --log-level debug`.
pub struct Seed {
    pub proc: Proc,
    pub port: u16,
    pub ip: String,
}

impl Seed {
    /// Starts it and waits (at most `startup`, which includes verifying the data) for its
    /// `listening: 127.0.0.1:PORT` line and then its `ready:` line (data checked, torrent served).
    pub fn start(torrent: &Path, data: &Path, log_dir: &Path, startup: Duration) -> Seed {
        Seed::start_with(torrent, data, log_dir, startup, "127.0.0.1", &[])
    }

    /// `start` listening on `ip` (a loopback address), with `extra` serve options.
    pub fn start_with(
        torrent: &Path,
        data: &Path,
        log_dir: &Path,
        startup: Duration,
        ip: &str,
        extra: &[&str],
    ) -> Seed {
        let mut proc = Proc::spawn(
            "uringseed",
            uringseed()
                .arg("serve")
                .arg("--torrent")
                .arg(torrent)
                .arg("--data")
                .arg(data)
                .args(["--listen", &format!("{ip}:0"), "--log-level", "debug"])
                .args(extra),
            log_dir,
        );
        let addr = proc.wait_line("listening: ", startup);
        let port = addr
            .strip_prefix(&format!("{ip}:"))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("uringseed printed listening: {addr:?}"));
        proc.wait_line("ready: ", startup);
        Seed {
            proc,
            port,
            ip: ip.to_string(),
        }
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// SIGTERM; it must exit with status 0 within 10 s.
    pub fn stop(mut self) {
        let status = self.proc.terminate(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "uringseed did not exit 0 on SIGTERM within 10 s: {status:?}\n{}",
            self.proc.report()
        );
    }
}

/// A running `node tests/tools/tracker.js 0`.
pub struct Tracker {
    pub proc: Proc,
    pub http_port: u16,
}

impl Tracker {
    pub fn start(log_dir: &Path) -> Tracker {
        let mut proc = Proc::spawn(
            "tracker",
            Command::new("node")
                .arg(tools_dir().join("tracker.js"))
                .arg("0"),
            log_dir,
        );
        let line = proc.wait_line("listening ", Duration::from_secs(30));
        let http_port = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("tracker.js printed listening {line:?}"));
        Tracker { proc, http_port }
    }

    pub fn announce_url(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.http_port)
    }

    /// Announces a seed at 127.0.0.1:`port` for `info_hash` with tests/tools/announce.py.
    pub fn announce_seed(&self, info_hash: &str, port: u16) {
        let out = run(Command::new("/usr/bin/python3")
            .arg(tools_dir().join("announce.py"))
            .arg(self.announce_url())
            .arg(info_hash)
            .arg(port.to_string()));
        let text = stdout(&out);
        let me = format!("peer 127.0.0.1:{port}");
        assert!(
            text.lines().any(|l| l.trim() == me),
            "tracker does not list the seed after announce.py:\n{text}"
        );
    }
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

// ---- Tracker announces as tracker.js logs them (tests/trackers_e2e.rs) ----

/// One announce from tracker.js's stderr log:
/// `announce INFOHASH IP:PORT EVENT left=N type=http|udp`. The address is the request's source
/// IP (UDP: the announced IP if non-zero) with the *announced* port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce {
    pub info_hash: String,
    pub ip: String,
    pub port: u16,
    /// started, stopped, completed, update (no event: a regular re-announce) or paused.
    pub event: String,
    pub left: String,
    /// http or udp.
    pub kind: String,
}

impl Announce {
    fn parse(line: &str) -> Option<Announce> {
        let mut words = line.split_whitespace();
        if words.next()? != "announce" {
            return None;
        }
        let info_hash = words.next()?.to_string();
        let (ip, port) = words.next()?.rsplit_once(':')?;
        let event = words.next()?.to_string();
        let left = words.next()?.strip_prefix("left=")?.to_string();
        let kind = words.next()?.strip_prefix("type=")?.to_string();
        Some(Announce {
            info_hash,
            ip: ip.trim_matches(|c| c == '[' || c == ']').to_string(),
            port: port.parse().ok()?,
            event,
            left,
            kind,
        })
    }
}

impl Tracker {
    /// The UDP port from tracker.js's `listening http=H udp=U` line (with PORT 0 it differs from
    /// the HTTP port).
    pub fn udp_port(&self) -> u16 {
        let text = self.proc.stdout_text();
        text.lines()
            .filter_map(|l| l.strip_prefix("listening "))
            .flat_map(|l| l.split_whitespace())
            .find_map(|w| w.strip_prefix("udp="))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no udp= port in tracker.js output {text:?}"))
    }

    /// `udp://127.0.0.1:UDP` (BEP 15).
    pub fn udp_url(&self) -> String {
        format!("udp://127.0.0.1:{}", self.udp_port())
    }

    /// Every announce logged so far, oldest first.
    pub fn announces(&self) -> Vec<Announce> {
        self.proc
            .stderr_text()
            .lines()
            .filter_map(Announce::parse)
            .collect()
    }

    /// Polls the log (every 50 ms, at most `timeout`) for the first announce after the first
    /// `skip` logged ones that matches `want`; returns it and its index in `announces()`.
    pub fn wait_announce(
        &self,
        skip: usize,
        timeout: Duration,
        want: impl Fn(&Announce) -> bool,
    ) -> Option<(usize, Announce)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self
                .announces()
                .into_iter()
                .enumerate()
                .skip(skip)
                .find(|(_, a)| want(a))
            {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---- Hostile peers and faults (tests/hostile.rs, tests/faults.rs) ----

/// VmRSS of a process (None: this one) in KiB, from /proc/PID/status; 0 if it cannot be read.
pub fn rss_kib(pid: Option<u32>) -> u64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Samples a process's VmRSS every 10 ms on a thread of its own until `stop`; keeps the peak.
pub struct RssSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl RssSampler {
    pub fn start(pid: Option<u32>) -> RssSampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = rss_kib(pid);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak.max(rss_kib(pid))
        });
        RssSampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling; returns the highest VmRSS seen, in KiB.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
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

/// The value of one Prometheus sample, e.g. `uringseed_uploaded_bytes_total{type="payload"}`.
pub fn sample(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

/// An info-hash from its 40 hex characters.
pub fn hex_hash(hex: &str) -> uringseed::metainfo::InfoHash {
    let mut ih = [0u8; 20];
    for (i, b) in ih.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    uringseed::metainfo::InfoHash(ih)
}
