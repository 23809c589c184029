//! Child processes: the uringseed binary (`uringseed()`, [`Seed`]), any process with its output
//! kept ([`Proc`], stopped by PID when dropped), and memory figures of processes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

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
    uringseed_at(Path::new(env!("CARGO_BIN_EXE_uringseed")))
}

/// [`uringseed`] with another build of the binary (a benchmark's baseline).
pub fn uringseed_at(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    let state = std::env::temp_dir().join(format!("uringseed-test-state-{}", std::process::id()));
    // No DHT bootstrap off the machine: this replaces the public routers as the default;
    // tests that use the DHT name loopback nodes in their configuration.
    cmd.env("XDG_STATE_HOME", state)
        .env_remove("STATE_DIRECTORY")
        .env("URINGSEED_DHT_BOOTSTRAP", "");
    cmd
}

/// A loopback port that was free a moment ago (bound to port 0, then released), for tests that
/// must name a port before the server starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
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

/// A running `uringseed serve` (possibly started through a wrapper such as `sh -c 'ulimit ...'`
/// or `setpriv`, which exec it: same PID).
pub struct Serve {
    pub proc: Proc,
    pub addr: SocketAddr,
    /// The metrics endpoint, `IP:PORT`.
    pub metrics: String,
}

/// `uringseed serve --torrent T --data D --listen 127.0.0.1:0 --metrics 127.0.0.1:0
/// --log-level debug EXTRA...`, run through `wrapper` (a program and its arguments, followed by
/// the binary) if given. Waits for `listening:` and `metrics:` (not for `ready:`).
pub fn serve(
    name: &str,
    torrent: &Path,
    data: &Path,
    extra: &[&str],
    wrapper: &[&str],
    log_dir: &Path,
) -> Serve {
    let mut args = vec![
        "--torrent".to_string(),
        torrent.display().to_string(),
        "--data".to_string(),
        data.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    serve_args(name, &args, wrapper, log_dir)
}

/// `uringseed serve ARGS... --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --log-level debug` (no
/// `--log-level` added when ARGS has one), as [`serve`] does.
pub fn serve_args(name: &str, args: &[&str], wrapper: &[&str], log_dir: &Path) -> Serve {
    let base = uringseed();
    let mut cmd = match wrapper.split_first() {
        None => uringseed(),
        Some((prog, args)) => {
            let mut c = Command::new(prog);
            c.args(args).arg(base.get_program());
            for (k, v) in base.get_envs() {
                match v {
                    Some(v) => c.env(k, v),
                    None => c.env_remove(k),
                };
            }
            c
        }
    };
    cmd.arg("serve")
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    // Debug unless the caller chose a level (a long run would log a line per dropped peer).
    if !args.contains(&"--log-level") {
        cmd.args(["--log-level", "debug"]);
    }
    let mut proc = Proc::spawn(name, &mut cmd, log_dir);
    let addr = proc
        .wait_line("listening: ", Duration::from_secs(30))
        .trim()
        .parse()
        .unwrap();
    let metrics = proc
        .wait_line("metrics: ", Duration::from_secs(30))
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    Serve {
        proc,
        addr,
        metrics,
    }
}

impl Serve {
    /// Waits for `ready:`; returns the rest of the line (`HASH NAME (G of N pieces good)`).
    pub fn ready(&mut self) -> String {
        self.proc.wait_line("ready: ", Duration::from_secs(60))
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The value of one series on /metrics, e.g. `uringseed_piece_read_errors_total`.
    pub fn metric(&self, series: &str) -> f64 {
        let (code, body) = http_get(&self.metrics, "/metrics", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("scrape failed: {e}\n{}", self.proc.report()));
        assert_eq!(code, 200);
        super::data::sample(&body, series)
    }

    pub fn alive(&mut self) -> bool {
        self.proc.try_status().is_none()
    }

    /// SIGTERM; must exit 0 within 10 s. Returns how long it took.
    pub fn stop(mut self) -> Duration {
        let t = Instant::now();
        let status = self.proc.terminate(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "uringseed did not exit 0 within 10 s of SIGTERM: {status:?}\n{}",
            self.proc.report()
        );
        t.elapsed()
    }

    /// SIGKILL, and reaped.
    pub fn kill9(mut self) {
        self.proc.signal("KILL");
        assert!(self.proc.wait_exit(Duration::from_secs(5)).is_some());
    }
}

/// GET `path` from `addr` with every step bounded by `limit`: (status code, body).
pub fn http_get(addr: &str, path: &str, limit: Duration) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(limit)).unwrap();
    s.set_write_timeout(Some(limit)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("read: {e} (after {} bytes)", text.len()))?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {:?}", tail(&text, 200)))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// utime + stime of process `pid` so far, in seconds (/proc/PID/stat).
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / hz
}
