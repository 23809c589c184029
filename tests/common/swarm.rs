//! Clients that join by magnet link or learn peers by peer exchange (tests/tools/lt_magnet.py
//! through lt_tool.py), what they print, and a seed that is uringseed or, with
//! `URINGSEED_TEST_SEED=libtorrent`, the libtorrent reference seed (`lt_tool.py seed`), so a
//! test's harness can be checked against a client that already speaks the protocol. Also: what
//! a pex-leech heard of a peer, stopping leechers, and raising the open-files limit for a seed
//! of many files.

use super::proc::{run, serve_args, stdout, uringseed, Proc, Seed, Serve};
use super::tools_dir;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// True when URINGSEED_TEST_SEED=libtorrent: the libtorrent reference seed stands in for
/// uringseed (to check the harness itself).
pub fn reference_seed() -> bool {
    std::env::var("URINGSEED_TEST_SEED").as_deref() == Ok("libtorrent")
}

/// `uringseed magnet TORRENT`: the link it prints.
pub fn magnet_of(torrent: &Path) -> String {
    let out = run(uringseed().arg("magnet").arg(torrent));
    stdout(&out).trim().to_string()
}

/// The value of the first `key value` line of a tool's output.
pub fn value_of(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .map(|v| v.trim().to_string())
}

/// `lt_tool.py ARGS...` as a child process named `name` (stderr in `log_dir/NAME.stderr`), with
/// extra environment.
pub fn spawn_lt(name: &str, args: &[&str], env: &[(&str, &str)], log_dir: &Path) -> Proc {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(tools_dir().join("lt_tool.py")).args(args);
    for var in [
        "LT_BIND_IP",
        "LT_DOWNLOAD_RATE",
        "LT_ENCRYPTION",
        "LT_PEX_ON_PRIVATE",
        "LT_DHT_NODES",
        "LT_DHT_ANNOUNCE_INTERVAL",
        "LT_TRANSPORT",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc::spawn(name, &mut cmd, log_dir)
}

/// One `peer IP:PORT source=S down=N at=T` line of `lt_tool.py pex-leech`.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerLine {
    pub ip: String,
    pub port: u16,
    /// Where libtorrent learned of the peer: tracker, pex, incoming, ... (`none` for one it
    /// was told to dial).
    pub sources: Vec<String>,
    /// Payload bytes downloaded from it so far.
    pub down: u64,
    /// Seconds since the leecher started, when the line was printed.
    pub at: f64,
}

impl PeerLine {
    fn parse(line: &str) -> Option<PeerLine> {
        let mut words = line.strip_prefix("peer ")?.split_whitespace();
        let (ip, port) = words.next()?.rsplit_once(':')?;
        let mut p = PeerLine {
            ip: ip.to_string(),
            port: port.parse().ok()?,
            sources: Vec::new(),
            down: 0,
            at: 0.0,
        };
        for w in words {
            if let Some(s) = w.strip_prefix("source=") {
                p.sources = s.split(',').map(String::from).collect();
            } else if let Some(d) = w.strip_prefix("down=") {
                p.down = d.parse().ok()?;
            } else if let Some(t) = w.strip_prefix("at=") {
                p.at = t.parse().ok()?;
            }
        }
        Some(p)
    }

    pub fn via_pex(&self) -> bool {
        self.sources.iter().any(|s| s == "pex")
    }
}

/// The latest `peer` line for every address a pex-leech printed (each line is a running
/// total, so the last one counts).
pub fn peer_lines(text: &str) -> BTreeMap<String, PeerLine> {
    let mut out = BTreeMap::new();
    for p in text.lines().filter_map(PeerLine::parse) {
        out.insert(format!("{}:{}", p.ip, p.port), p);
    }
    out
}

/// The seed under test: `uringseed serve`, or the libtorrent reference seed.
pub struct TestSeed {
    pub proc: Proc,
    pub port: u16,
}

impl TestSeed {
    /// `uringseed serve --torrent T --data DIR --listen 127.0.0.1:0 EXTRA...` (common::Seed),
    /// or `lt_tool.py seed T DIR - 600` with `lt_env` when URINGSEED_TEST_SEED=libtorrent;
    /// waits for both to listen and to have checked the data.
    pub fn start(
        torrent: &Path,
        data: &Path,
        dir: &Path,
        extra: &[&str],
        lt_env: &[(&str, &str)],
    ) -> TestSeed {
        if !reference_seed() {
            let Seed { proc, port, .. } = Seed::start_with(
                torrent,
                data,
                dir,
                Duration::from_secs(120),
                "127.0.0.1",
                extra,
            );
            return TestSeed { proc, port };
        }
        let (t, d) = (torrent.to_str().unwrap(), data.to_str().unwrap());
        let mut proc = spawn_lt("libtorrent-seed", &["seed", t, d, "-", "600"], lt_env, dir);
        let port = proc
            .wait_line("listening ", Duration::from_secs(30))
            .trim()
            .parse()
            .unwrap();
        proc.wait_line("ready ", Duration::from_secs(120));
        TestSeed { proc, port }
    }

    /// `uringseed serve PATH -t TRACKER --torrent-out OUT` (a torrent is made of PATH and
    /// seeded; its data directory is PATH's parent); returns it and the magnet link it printed.
    /// With URINGSEED_TEST_SEED=libtorrent: `uringseed make PATH -t TRACKER -o OUT`, the link
    /// from `uringseed magnet OUT`, and the reference seed.
    pub fn serve_path(path: &Path, tracker: &str, out: &Path, dir: &Path) -> (TestSeed, String) {
        if reference_seed() {
            super::proc::make_torrent(path, out, &["-t", tracker]);
            let seed = TestSeed::start(out, path.parent().unwrap(), dir, &[], &[]);
            return (seed, magnet_of(out));
        }
        let (p, o) = (path.to_str().unwrap(), out.to_str().unwrap());
        let mut serve = serve_args(
            "uringseed",
            &[p, "-t", tracker, "--torrent-out", o],
            &[],
            dir,
        );
        serve.ready();
        // serve_args has read past the `magnet:` line; it is in the kept output.
        let magnet = value_of(&serve.proc.stdout_text(), "magnet:")
            .unwrap_or_else(|| panic!("no magnet: line\n{}", serve.proc.report()));
        let Serve { proc, addr, .. } = serve;
        (
            TestSeed {
                proc,
                port: addr.port(),
            },
            magnet,
        )
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGTERM; it must exit 0 within 10 s (the process stays here for later reports).
    pub fn stop(&mut self) {
        let status = self.proc.terminate(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "{} did not exit 0 on SIGTERM within 10 s: {status:?}\n{}",
            self.proc.name,
            self.proc.report()
        );
    }
}

/// A `key value` number a client printed.
pub fn number(p: &Proc, key: &str) -> f64 {
    value_of(&p.stdout_text(), key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{}: no {key} line\n{}", p.name, p.report()))
}

/// What leecher `from` printed about peers at `ip` (every connection): (any with source pex,
/// payload bytes downloaded from them).
pub fn heard_of(from: &Proc, ip: &str) -> (bool, u64) {
    let lines = peer_lines(&from.stdout_text());
    let at_ip = lines.values().filter(|p| p.ip == ip);
    at_ip.fold((false, 0), |(pex, down), p| {
        (pex || p.via_pex(), down + p.down)
    })
}

/// SIGTERM to each leecher: each must print its final peer lines and exit 0 within 15 s.
/// Returns what went wrong, if anything.
pub fn stop_leechers(leechers: &mut [Proc]) -> Option<String> {
    let mut problems = Vec::new();
    for l in leechers.iter_mut() {
        let status = l.terminate(Duration::from_secs(15));
        if !status.is_some_and(|s| s.success()) {
            problems.push(format!("{} did not exit 0 on SIGTERM: {status:?}", l.name));
        }
    }
    (!problems.is_empty()).then(|| problems.join("\n"))
}

/// Every given process's output, for failure messages.
pub fn reports(procs: &[&Proc]) -> String {
    procs.iter().map(|p| p.report()).collect()
}

/// Raises this process's soft limit on open files (inherited by the seed it starts) to at
/// least `need`; false if the hard limit is lower.
pub fn raise_open_files(need: u64) -> bool {
    // SAFETY: plain getrlimit/setrlimit on this process.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 || r.rlim_max < need {
            return false;
        }
        if r.rlim_cur < need {
            r.rlim_cur = need;
            return libc::setrlimit(libc::RLIMIT_NOFILE, &r) == 0;
        }
    }
    true
}
