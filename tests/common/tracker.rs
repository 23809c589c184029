//! A real tracker (npm `bittorrent-tracker` via tests/tools/tracker.js) and the announces it
//! logs.

use super::proc::{run, stdout, Proc};
use super::tools_dir;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

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
    /// What the client said it uploaded (payload bytes since `started`).
    pub uploaded: Option<u64>,
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
        let uploaded = words
            .next()
            .and_then(|w| w.strip_prefix("uploaded="))
            .and_then(|v| v.parse().ok());
        Some(Announce {
            info_hash,
            ip: ip.trim_matches(|c| c == '[' || c == ']').to_string(),
            port: port.parse().ok()?,
            event,
            left,
            kind,
            uploaded,
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
