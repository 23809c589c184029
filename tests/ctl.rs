//! `uringseed ctl` against a real `uringseed serve` with the API on a free loopback port: what
//! it lists and shows, adding (a .torrent with --data, and a path to make a torrent of), pause
//! (a peer's handshake is refused) and resume, limits, removal, the exit codes of refusals,
//! a wrong token and no server, and API torrents (paused ones paused) after a kill -9.

mod common;

use common::{free_port, hex_hash, make_torrent, uringseed, write_tree, Proc};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};
use uringseed::wire::Handshake;

/// A temp directory with a config, the state directory, a data root and a config torrent.
struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
    config: PathBuf,
    api: String,
    /// The config torrent's info-hash.
    fixed: String,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        let root = dir.join("root");
        std::fs::create_dir_all(&root).unwrap();
        write_tree(&root, "fixed");
        let fixed = make_torrent(&root.join("fixed"), &dir.join("fixed.torrent"), &[]);
        let api = format!("127.0.0.1:{}", free_port());
        let config = dir.join("uringseed.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"{d}/state\"\n\n\
                 [api]\nlisten = \"{api}\"\ndata_roots = [\"{r}\"]\n\n\
                 [[torrent]]\ntorrent = \"{d}/fixed.torrent\"\ndata = \"{r}\"\n",
                d = dir.display(),
                r = root.display()
            ),
        )
        .unwrap();
        Setup {
            _tmp: tmp,
            dir,
            root,
            config,
            api,
            fixed,
        }
    }

    /// Starts the server; returns it and its peer address once the config torrent is ready.
    fn serve(&self, name: &str) -> (Proc, SocketAddr) {
        let mut p = Proc::spawn(
            name,
            uringseed()
                .arg("serve")
                .arg("--config")
                .arg(&self.config)
                .args(["--log-level", "debug"]),
            &self.dir,
        );
        let addr: SocketAddr = p
            .wait_line("listening: ", Duration::from_secs(30))
            .trim()
            .parse()
            .unwrap();
        p.wait_line("ready: ", Duration::from_secs(30));
        (p, addr)
    }

    /// `uringseed ctl --config CONFIG ARGS...` (its address and token from the config).
    fn ctl(&self, args: &[&str]) -> Output {
        ctl_in(
            &self.dir,
            &["--config", self.config.to_str().unwrap()],
            args,
        )
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("state/api-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// `ctl --json ARGS` that must succeed, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ctl(&all);
        ok(&out);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("ctl {args:?}: not JSON ({e}): {}", text(&out)))
    }

    /// Waits (at most 30 s) for `ctl --json show IH` to say `state`.
    fn wait_state(&self, ih: &str, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let t = self.json(&["show", ih]);
            if t["state"] == state {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "{ih} not {state} within 30 s: {t}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn ctl_in(cwd: &Path, pre: &[&str], args: &[&str]) -> Output {
    let mut cmd = uringseed();
    cmd.current_dir(cwd)
        .env_remove("URINGSEED_TOKEN")
        .arg("ctl")
        .args(pre)
        .args(args);
    // Every ctl call is bounded by its own timeouts; a hang would show as a stuck test, so
    // make one a failure instead.
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ctl {args:?} still running after 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "ctl failed: {}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(o: &Output, code: i32, needle: &str) {
    assert_eq!(o.status.code(), Some(code), "{}", text(o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(needle), "stderr lacks {needle:?}: {}", text(o));
}

/// GET `path` with the bearer token, straight over a socket: the API's own answer.
fn api_get(api: &str, token: &str, path: &str) -> Value {
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{raw}");
    serde_json::from_str(body).unwrap()
}

/// `uringseed_torrents{state="STATE"}` from /metrics on the same HTTP server.
fn torrents_gauge(api: &str, state: &str) -> f64 {
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    common::sample(&raw, &format!("uringseed_torrents{{state=\"{state}\"}}"))
}

/// Whether the server answers a BitTorrent handshake for `ih` on `addr` (within 5 s).
fn handshake_answered(addr: SocketAddr, ih: &str) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let hs = Handshake::ours(hex_hash(ih), *b"-TT0001-ctltest00001");
    if s.write_all(&hs.encode()).is_err() {
        return false;
    }
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs).is_ok()
}

fn torrents(v: &Value) -> Vec<Value> {
    v["torrents"].as_array().cloned().unwrap_or_default()
}

#[test]
fn list_and_json_agree_with_the_api_and_refusals_have_their_exit_codes() {
    let s = Setup::new();
    let (_server, _) = s.serve("serve-list");
    let out = ok(&s.ctl(&["list"]));
    let head = out.lines().next().unwrap();
    assert!(
        head.starts_with("INFO-HASH") && head.ends_with("NAME"),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.starts_with(&s.fixed))
        .unwrap_or_else(|| panic!("{} not listed:\n{out}", s.fixed));
    assert!(
        row.contains("seeding") && row.contains("100%") && row.ends_with("fixed"),
        "{row}"
    );
    // The columns line up: NAME starts where the header says.
    assert_eq!(head.find("NAME"), row.find("fixed"), "{out}");

    let mine = s.json(&["list"]);
    let theirs = api_get(&s.api, &s.token(), "/api/v1/torrents");
    let key = |v: &Value| -> Vec<(String, String, String, u64)> {
        torrents(v)
            .iter()
            .map(|t| {
                (
                    t["info_hash"].as_str().unwrap().to_string(),
                    t["name"].as_str().unwrap().to_string(),
                    t["state"].as_str().unwrap().to_string(),
                    t["size"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(key(&mine), key(&theirs));
    assert_eq!(key(&mine).len(), 1);

    let show = ok(&s.ctl(&["show", &s.fixed]));
    assert!(
        show.contains("state:") && show.contains("seeding"),
        "{show}"
    );
    assert!(
        show.contains("source:") && show.contains("config"),
        "{show}"
    );

    // Refusals: the API's message, exit 1.
    fails(&s.ctl(&["rm", &s.fixed]), 1, "configuration file");
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    fails(&s.ctl(&["show", unknown]), 1, "HTTP 404");
    let outside = s.dir.join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("f"), b"x").unwrap();
    fails(
        &s.ctl(&["add", outside.to_str().unwrap()]),
        1,
        "outside api.data_roots",
    );
    fails(
        &s.ctl(&[
            "add",
            s.dir.join("fixed.torrent").to_str().unwrap(),
            "--data",
            outside.to_str().unwrap(),
        ]),
        1,
        "outside api.data_roots",
    );
    // Accepted, but nothing can be made of an empty directory: the server lists the failed
    // job with its reason, and ctl exits 3 with it instead of waiting out --wait.
    let empty = s.root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let t0 = Instant::now();
    fails(
        &s.ctl(&["add", empty.to_str().unwrap(), "--wait", "30"]),
        3,
        "directory holds no files",
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    // Bad arguments: exit 2, before any request.
    fails(&s.ctl(&["show", "nothex"]), 2, "not an info-hash");
    fails(&s.ctl(&["pause", &s.fixed[..39]]), 2, "not an info-hash");
    fails(&s.ctl(&["limit", &s.fixed, "fast"]), 2, "RATE");
    fails(&s.ctl(&["limit"]), 2, "limit");
    // A wrong token: exit 4, from the flag and from the environment.
    let wrong = s.dir.join("wrong-token");
    std::fs::write(&wrong, "0000000000000000000000000000000000\n").unwrap();
    fails(
        &s.ctl(&["--token-file", wrong.to_str().unwrap(), "list"]),
        4,
        "HTTP 401",
    );
    let out = uringseed()
        .env("URINGSEED_TOKEN", "00000000000000000000")
        .args(["ctl", "--url", &format!("http://{}", s.api), "list"])
        .output()
        .unwrap();
    fails(&out, 4, "401");
    // The right token from the environment, --url without a config.
    let out = uringseed()
        .env("URINGSEED_TOKEN", s.token())
        .args(["ctl", "--url", &s.api, "--json", "status"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    assert_eq!(v["torrents"], 1, "{v}");
}

#[test]
fn no_server_or_no_token_file_is_exit_3() {
    let s = Setup::new();
    // The token file does not exist before the first start.
    fails(&s.ctl(&["list"]), 3, "api-token");
    let tok = s.dir.join("tok");
    std::fs::write(&tok, "0123456789abcdef0123\n").unwrap();
    fails(
        &s.ctl(&["--token-file", tok.to_str().unwrap(), "list"]),
        3,
        "cannot reach",
    );
    fails(
        &s.ctl(&["--url", "https://127.0.0.1:1", "list"]),
        2,
        "plain HTTP",
    );
}

#[test]
fn add_show_pause_resume_limit_and_rm() {
    let s = Setup::new();
    let (_server, peer) = s.serve("serve-add");
    write_tree(&s.root, "added");
    let t = s.dir.join("added.torrent");
    let ih = make_torrent(&s.root.join("added"), &t, &[]);
    // A relative --data is made absolute.
    let out = ctl_in(
        &s.dir,
        &["--config", s.config.to_str().unwrap()],
        &["add", "added.torrent", "--data", "root"],
    );
    assert_eq!(ok(&out).trim(), ih);
    fails(
        &s.ctl(&[
            "add",
            t.to_str().unwrap(),
            "--data",
            s.root.to_str().unwrap(),
        ]),
        1,
        "HTTP 409",
    );
    let v = s.wait_state(&ih, "seeding");
    assert_eq!(v["source"], "api", "{v}");
    assert!(handshake_answered(peer, &ih), "no handshake while seeding");
    let show = ok(&s.ctl(&["show", &ih]));
    assert!(show.contains("seeding") && show.contains("added"), "{show}");
    assert!(
        show.lines()
            .any(|l| l.starts_with("peers:") && l.contains(" unchoked)") && !l.contains('[')),
        "{show}"
    );

    assert_eq!(torrents_gauge(&s.api, "seeding"), 2.0);
    let out = ok(&s.ctl(&["pause", &ih]));
    assert_eq!(out.trim(), format!("{ih}: paused"));
    s.wait_state(&ih, "paused");
    assert!(
        !handshake_answered(peer, &ih),
        "a paused torrent answered a handshake"
    );
    assert!(
        handshake_answered(peer, &s.fixed),
        "the other torrent stopped answering"
    );
    // The gauge has no "paused" state (yet): the paused torrent leaves "seeding".
    assert_eq!(torrents_gauge(&s.api, "seeding"), 1.0);
    ok(&s.ctl(&["resume", &ih]));
    s.wait_state(&ih, "seeding");
    assert!(handshake_answered(peer, &ih), "no handshake after resume");
    assert_eq!(torrents_gauge(&s.api, "seeding"), 2.0);

    let out = ok(&s.ctl(&["limit", &ih, "1M"]));
    assert!(
        out.contains("rate limit 976.6 KiB/s (1000000 B/s)"),
        "{out}"
    );
    let v = s.json(&["show", &ih]);
    assert_eq!(v["limits"]["upload_rate_limit"], 1_000_000, "{v}");
    let v = s.json(&["limit", &ih, "0", "--quota", "5GiB"]);
    assert_eq!(v["limits"]["upload_rate_limit"], 0, "{v}");
    assert_eq!(v["limits"]["upload_quota"], 5u64 << 30, "{v}");
    let v = s.json(&["limit", "--global", "2MiB", "--slots", "3"]);
    assert_eq!(v["upload_rate_limit"], 2u64 << 20, "{v}");
    assert_eq!(v["upload_slots"], 3, "{v}");
    let out = ok(&s.ctl(&["settings"]));
    assert!(
        out.contains("2.0 MiB/s") && out.contains("upload slots:"),
        "{out}"
    );
    ok(&s.ctl(&["recheck", &ih]));
    s.wait_state(&ih, "seeding");
    ok(&s.ctl(&["reannounce", &ih]));

    assert_eq!(ok(&s.ctl(&["rm", &ih])).trim(), format!("removed {ih}"));
    fails(&s.ctl(&["show", &ih]), 1, "HTTP 404");
    let all = s.json(&["list"]);
    assert!(
        torrents(&all).iter().all(|t| t["info_hash"] != ih.as_str()),
        "{all}"
    );
}

#[test]
fn add_path_makes_the_torrent_and_prints_its_info_hash() {
    let s = Setup::new();
    let (_server, peer) = s.serve("serve-make");
    write_tree(&s.root, "made");
    // What `uringseed make` makes of the same directory.
    let expected = make_torrent(&s.root.join("made"), &s.dir.join("made.torrent"), &[]);
    // A relative path, made absolute.
    let out = ctl_in(
        &s.root,
        &["--config", s.config.to_str().unwrap()],
        &["add", "made", "--wait", "60"],
    );
    assert_eq!(ok(&out).trim(), expected, "{}", text(&out));
    let v = s.wait_state(&expected, "seeding");
    assert_eq!(v["data_dir"], s.root.to_str().unwrap(), "{v}");
    assert!(handshake_answered(peer, &expected));
}

#[test]
fn api_torrents_come_back_after_kill_9_and_paused_stays_paused() {
    let s = Setup::new();
    let (mut server, _) = s.serve("serve-before");
    write_tree(&s.root, "kept");
    write_tree(&s.root, "held");
    let kept = make_torrent(&s.root.join("kept"), &s.dir.join("kept.torrent"), &[]);
    let held = make_torrent(&s.root.join("held"), &s.dir.join("held.torrent"), &[]);
    for name in ["kept", "held"] {
        let t = s.dir.join(format!("{name}.torrent"));
        ok(&s.ctl(&[
            "add",
            t.to_str().unwrap(),
            "--data",
            s.root.to_str().unwrap(),
        ]));
    }
    s.wait_state(&kept, "seeding");
    s.wait_state(&held, "seeding");
    ok(&s.ctl(&["pause", &held]));
    ok(&s.ctl(&["limit", &kept, "3M"]));
    server.signal("KILL");
    assert!(server.wait_exit(Duration::from_secs(10)).is_some());

    let (_again, peer) = s.serve("serve-after");
    let v = s.wait_state(&kept, "seeding");
    assert_eq!(v["source"], "api", "{v}");
    assert_eq!(v["limits"]["upload_rate_limit"], 3_000_000, "{v}");
    let v = s.wait_state(&held, "paused");
    assert_eq!(v["source"], "api", "{v}");
    assert!(!handshake_answered(peer, &held));
    assert_eq!(torrents(&s.json(&["list"])).len(), 3);
}
