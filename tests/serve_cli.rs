//! `uringseed serve` as an operator runs it: one command seeds a directory, clear errors for bad
//! input, and a graceful exit on SIGTERM.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use uringseed::metainfo;
use uringseed::wire::Handshake;

/// Kills the child (by PID) if the test ends early.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `uringseed ARGS` in `dir` and reads what it prints up to `ready: ` (key: value
/// lines); the guard kills it if the test ends early.
fn serve_printing(
    dir: &std::path::Path,
    args: &[&str],
) -> (Guard, std::collections::HashMap<String, String>) {
    let child = uringseed()
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Guard(Some(child));
    let stdout = guard.0.as_mut().unwrap().stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut got = std::collections::HashMap::new();
    while !got.contains_key("ready") {
        let line = lines.next().expect("serve printed too little").unwrap();
        let (k, v) = line.split_once(": ").unwrap();
        got.insert(k.to_string(), v.to_string());
    }
    (guard, got)
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn serve_path_makes_torrent_prints_magnet_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let tree = write_tree(dir.path(), "tree");
    let (mut guard, got) = serve_printing(
        dir.path(),
        &[
            "serve",
            "tree",
            "--listen",
            "127.0.0.1:0",
            "-t",
            "http://127.0.0.1:1/announce",
        ],
    );
    let child = guard.0.as_mut().unwrap();
    let torrent = metainfo::load(&dir.path().join(&got["torrent"])).unwrap();
    assert_eq!(got["torrent"], "tree.torrent");
    assert_eq!(got["info-hash"], torrent.info_hash.to_hex());
    assert_eq!(
        got["magnet"],
        format!(
            "magnet:?xt=urn:btih:{}&dn=tree&xl={}&tr=http%3A%2F%2F127.0.0.1%3A1%2Fannounce",
            torrent.info_hash, torrent.total_length
        )
    );
    // A peer gets the first block of the data it was made from.
    let mut s = TcpStream::connect(got["listening"].as_str()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&Handshake::ours(torrent.info_hash, [3; 20]).encode())
        .unwrap();
    let mut msgs = Vec::new();
    uringseed::wire::message::encode(&uringseed::wire::Message::Interested, &mut msgs);
    s.write_all(&msgs).unwrap();
    // Wait for the unchoke (a request sent before it would be rejected), then ask for a block.
    let mut received = Vec::new();
    let mut chunk = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !received.windows(5).any(|w| w == [0, 0, 0, 1, 1]) && Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("{e}"),
        }
    }
    let mut msgs = Vec::new();
    let req = uringseed::wire::Block {
        index: 0,
        begin: 0,
        length: 16384,
    };
    uringseed::wire::message::encode(&uringseed::wire::Message::Request(req), &mut msgs);
    s.write_all(&msgs).unwrap();
    let first = std::fs::read(tree.join("a.bin")).unwrap();
    while !received.windows(64).any(|w| w == &first[..64]) && Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        received.windows(64).any(|w| w == &first[..64]),
        "block data not received"
    );
    // SIGTERM: exits 0 within the shutdown bound, closing the peer.
    run(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let status =
        wait_exit(child, Duration::from_secs(10)).expect("serve did not exit after SIGTERM");
    assert!(status.success(), "{status:?}");
    guard.0 = None;
}

#[test]
fn serve_reports_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "[server]\nupload_slotz = 3\n").unwrap();
    let loud = dir.path().join("loud.toml");
    std::fs::write(&loud, "[log]\nlevel = \"loud\"\n").unwrap();
    let broken = dir.path().join("broken.torrent");
    std::fs::write(&broken, b"d4:infoi1ee").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--config".into(), bad_toml.display().to_string()],
            "bad.toml: key `server.upload_slotz`: line 2",
        ),
        (
            vec![
                "--torrent".into(),
                broken.display().to_string(),
                "--data".into(),
                ".".into(),
            ],
            "broken.torrent: field `info`",
        ),
        (vec![], "nothing to seed"),
        (
            vec!["--config".into(), loud.display().to_string()],
            "loud.toml: key `log.level`: \"loud\" is not one of error, warn, info, debug, trace",
        ),
        (
            vec!["--log-level".into(), "loud".into(), "x".into()],
            "invalid value 'loud' for '--log-level",
        ),
        (
            vec!["--log-format".into(), "xml".into(), "x".into()],
            "invalid value 'xml' for '--log-format",
        ),
        (
            vec![
                "--listen".into(),
                "127.0.0.1:0".into(),
                dir.path().join("nope").display().to_string(),
            ],
            "nope: cannot read",
        ),
    ];
    for (args, want) in cases {
        let out = uringseed()
            .arg("serve")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn serve_config_seeds_every_listed_torrent() {
    let dir = tempfile::tempdir().unwrap();
    let mut hashes = Vec::new();
    for name in ["one", "two"] {
        let data = dir.path().join(format!("data-{name}"));
        std::fs::create_dir(&data).unwrap();
        write_tree(&data, name);
        let out = stdout(&run(uringseed()
            .arg("make")
            .arg(data.join(name))
            .arg("-o")
            .arg(dir.path().join(format!("{name}.torrent")))
            .arg("-q")));
        hashes.push(out.trim().to_string());
    }
    let config = dir.path().join("seed.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n[[torrent]]\ntorrent = \"one.torrent\"\ndata = \"data-one\"\n\n[[torrent]]\ntorrent = \"two.torrent\"\ndata = \"data-two\"\n",
    )
    .unwrap();
    let child = uringseed()
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Guard(Some(child));
    let child = guard.0.as_mut().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    let addr = line.strip_prefix("listening: ").unwrap().to_string();
    let mut ready: Vec<String> = Vec::new();
    while ready.len() < 2 {
        let line = lines.next().expect("serve printed too little").unwrap();
        if line.starts_with("ready: ") {
            ready.push(line);
        }
    }
    ready.sort();
    let mut sorted = hashes.clone();
    sorted.sort();
    for (line, hex) in ready.iter().zip(&sorted) {
        assert!(line.starts_with(&format!("ready: {hex} ")), "{line}");
    }
    for hex in &hashes {
        let mut ih = [0u8; 20];
        for (i, b) in ih.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        let mut s = TcpStream::connect(addr.as_str()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&Handshake::ours(metainfo::InfoHash(ih), [4; 20]).encode())
            .unwrap();
        let mut theirs = [0u8; 68];
        s.read_exact(&mut theirs).unwrap();
        assert_eq!(
            Handshake::decode(&theirs)
                .unwrap()
                .unwrap()
                .info_hash
                .to_hex(),
            *hex
        );
    }
}

/// Under systemd (Type=notify) the service manager learns when the server is up, reloading and
/// stopping through the datagram socket named by NOTIFY_SOCKET.
#[test]
fn systemd_notifications_follow_start_reload_and_stop() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let tree = write_tree(&data, "tree");
    make_torrent(&tree, &dir.path().join("t.torrent"), &[]);
    let config = dir.path().join("seed.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n[[torrent]]\ntorrent = \"t.torrent\"\ndata = \"data\"\n",
    )
    .unwrap();
    let socket_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 1024];
        let n = sock.recv(&mut buf).expect("no notification within 20 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut p = Proc::spawn(
        "uringseed",
        uringseed()
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("NOTIFY_SOCKET", &socket_path),
        dir.path(),
    );
    let addr = p.wait_line("listening: ", Duration::from_secs(20));
    let first = next();
    assert_eq!(
        first,
        format!("READY=1\nSTATUS=listening on {addr}; checking data"),
        "{}",
        p.report()
    );
    p.wait_line("ready: ", Duration::from_secs(20));
    let status = next();
    assert!(
        status.starts_with("STATUS=seeding 1 torrent(s); last checked: tree ("),
        "{status}"
    );
    p.signal("HUP");
    let reloading = next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    let reloaded = next();
    assert_eq!(
        reloaded,
        "READY=1\nSTATUS=configuration reloaded; seeding 1 torrent(s)"
    );
    // A broken file is refused and said so in the status.
    std::fs::write(&config, "[server]\nlisten = 5\n").unwrap();
    p.signal("HUP");
    assert!(next().starts_with("RELOADING=1\n"));
    assert!(next().starts_with("READY=1\nSTATUS=reload rejected"));
    p.signal("TERM");
    assert!(next().starts_with("STOPPING=1\n"));
    let status = p.wait_exit(Duration::from_secs(20));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", p.report());
}

/// `check-config` prints the effective settings as TOML that reads back to the same
/// configuration, and refuses, with serve's own message and status, whatever serve refuses.
#[test]
fn check_config_prints_toml_and_fails_where_serve_fails() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let tree = write_tree(&data, "tree");
    make_torrent(&tree, &dir.path().join("t.torrent"), &[]);
    std::fs::write(dir.path().join("block.txt"), "10.0.0.0/8\n").unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\nblocklist = \"block.txt\"\n\
         upload_rate_limit = \"1MiB\"\n[log]\nlevel = \"debug\"\n\n\
         [[torrent]]\ntorrent = \"t.torrent\"\ndata = \"data\"\n",
    )
    .unwrap();
    let out = uringseed().arg("check-config").arg(&good).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("[server]") && text.contains("upload_rate_limit = 1048576"),
        "{text}"
    );
    assert!(!text.contains("ServerConfig {"), "a Debug dump: {text}");
    let printed = uringseed::config::Config::parse(&text, "printed").unwrap();
    assert_eq!(
        printed,
        uringseed::config::Config::load(&good).unwrap(),
        "{text}"
    );
    assert_eq!(
        printed.torrents[0].torrent,
        dir.path().join("t.torrent"),
        "paths are resolved"
    );

    // Each of these passes TOML validation, and serve refuses it; so must check-config.
    let bad_blocklist = dir.path().join("bad-block.txt");
    std::fs::write(&bad_blocklist, "10.0.0.0/8\nnot an address\n").unwrap();
    let a_file = dir.path().join("a-file");
    std::fs::write(&a_file, "").unwrap();
    let base = "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n";
    let cases = [
        (
            format!("{base}[[torrent]]\ntorrent = \"missing.torrent\"\ndata = \"data\"\n"),
            "missing.torrent: cannot read".to_string(),
        ),
        (
            format!(
                "{base}blocklist = \"bad-block.txt\"\n[[torrent]]\ntorrent = \"t.torrent\"\ndata = \"data\"\n"
            ),
            format!("server.blocklist: {}", bad_blocklist.display()),
        ),
        (
            format!("{base}[watch]\ndir = \"a-file\"\ndata = \"data\"\n"),
            format!("watch.dir {}: not a directory", a_file.display()),
        ),
        (
            format!(
                "{base}[[torrent]]\ntorrent = \"t.torrent\"\ndata = \"data\"\n\
                 [[torrent]]\ntorrent = \"t.torrent\"\ndata = \"data\"\n"
            ),
            "is configured twice".to_string(),
        ),
    ];
    for (i, (toml_text, want)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&file, toml_text).unwrap();
        let check = uringseed().arg("check-config").arg(&file).output().unwrap();
        let serve = uringseed()
            .args(["serve", "--config"])
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (check_err, serve_err) = (
            String::from_utf8_lossy(&check.stderr),
            String::from_utf8_lossy(&serve.stderr),
        );
        assert_eq!(
            check.status.code(),
            Some(2),
            "check-config {toml_text}: {check_err}"
        );
        assert_eq!(
            serve.status.code(),
            Some(2),
            "serve {toml_text}: {serve_err}"
        );
        assert!(
            check_err.contains(want.as_str()),
            "check-config: {check_err}\nwant {want}"
        );
        assert!(
            serve_err.contains(check_err.trim()),
            "serve and check-config differ:\n{serve_err}\n{check_err}"
        );
        assert!(check.stdout.is_empty(), "printed settings of a bad file");
    }
}

/// A second server on a port the first listens on is refused (SO_REUSEPORT would have let it
/// take half of the first one's connections), with exit status 3 (may pass: restart later) and
/// the address named; so is one whose metrics port is taken. The first keeps serving.
#[test]
fn a_second_server_on_a_taken_port_exits_3_and_the_first_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tree = write_tree(&data, "tree");
    let torrent = dir.path().join("t.torrent");
    let ih = hex_hash(&make_torrent(&tree, &torrent, &[]));
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let serve_on = |name: &str, listen: &str, metrics: &str| {
        Proc::spawn(
            name,
            uringseed()
                .arg("serve")
                .arg("--torrent")
                .arg(&torrent)
                .arg("--data")
                .arg(&data)
                .args(["--listen", listen, "--metrics", metrics]),
            dir.path(),
        )
    };
    let mut first = serve_on("first", &listen, "127.0.0.1:0");
    assert_eq!(
        first.wait_line("listening: ", Duration::from_secs(20)),
        listen
    );
    let metrics = first
        .wait_line("metrics: ", Duration::from_secs(20))
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    first.wait_line("ready: ", Duration::from_secs(20));
    let refused = |name: &str, listen: &str, metrics: &str, want: &str| {
        let mut p = serve_on(name, listen, metrics);
        let status = p.wait_exit(Duration::from_secs(10));
        assert_eq!(status.and_then(|s| s.code()), Some(3), "{}", p.report());
        let err = p.stderr_text();
        assert!(err.contains(want), "{name}: want {want:?} in\n{err}");
        assert!(p.stdout_text().is_empty(), "{}", p.report());
    };
    refused(
        "second",
        &listen,
        "127.0.0.1:0",
        &format!("listen on {listen}: "),
    );
    refused(
        "second-metrics",
        "127.0.0.1:0",
        &metrics,
        &format!("metrics.listen {metrics}: "),
    );
    // Every connection still reaches the first server.
    for i in 0..8u8 {
        let mut s = TcpStream::connect(&listen).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&Handshake::ours(ih, [i; 20]).encode()).unwrap();
        let mut theirs = [0u8; 68];
        s.read_exact(&mut theirs).unwrap();
        assert_eq!(Handshake::decode(&theirs).unwrap().unwrap().info_hash, ih);
    }
    assert!(first.try_status().is_none(), "{}", first.report());
    let status = first.terminate(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", first.report());
}

/// `serve PATH` binds before it hashes: with the port taken it fails at once (exit 3) and
/// writes no .torrent, instead of hashing 2 GiB first.
#[test]
fn serve_path_with_its_port_taken_fails_before_hashing() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.img");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = blocker.local_addr().unwrap();
    let started = Instant::now();
    let mut p = Proc::spawn(
        "uringseed",
        uringseed().current_dir(dir.path()).args([
            "serve",
            "big.img",
            "--listen",
            &taken.to_string(),
        ]),
        dir.path(),
    );
    let status = p.wait_exit(Duration::from_secs(60));
    let took = started.elapsed();
    assert_eq!(status.and_then(|s| s.code()), Some(3), "{}", p.report());
    assert!(
        p.stderr_text().contains(&format!("listen on {taken}: ")),
        "{}",
        p.report()
    );
    assert!(
        !dir.path().join("big.img.torrent").exists(),
        "a .torrent was written"
    );
    // Hashing 2 GiB takes seconds even in a release build on two cores.
    assert!(took < Duration::from_secs(1), "failed only after {took:?}");
    drop(blocker);
}

/// Under a unit with WatchdogSec= (systemd sets WATCHDOG_USEC), WATCHDOG=1 keeps arriving at
/// half that interval while the workers run; WATCHDOG_PID naming another process turns it off.
/// (That a stalled worker stops the pings is tested on the service itself, src/watchdog.rs.)
#[test]
fn watchdog_pings_arrive_at_half_of_watchdog_usec() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tree = write_tree(&data, "tree");
    let torrent = dir.path().join("t.torrent");
    make_torrent(&tree, &torrent, &[]);
    for (pid, want_pings) in [(None, true), (Some("1"), false)] {
        let socket_path = dir.path().join(format!("notify-{want_pings}.sock"));
        let sock = UnixDatagram::bind(&socket_path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut cmd = uringseed();
        cmd.arg("serve")
            .arg("--torrent")
            .arg(&torrent)
            .arg("--data")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0", "--workers", "2"])
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "2000000");
        if let Some(pid) = pid {
            cmd.env("WATCHDOG_PID", pid);
        }
        let mut p = Proc::spawn("uringseed", &mut cmd, dir.path());
        p.wait_line("listening: ", Duration::from_secs(20));
        // Collect what arrives over 3.5 s: a ping every second, so at least 3.
        let mut pings = Vec::new();
        let start = Instant::now();
        let listen_for = Duration::from_millis(if want_pings { 3500 } else { 1500 });
        while start.elapsed() < listen_for {
            let mut buf = [0u8; 1024];
            if let Ok(n) = sock.recv(&mut buf) {
                if &buf[..n] == b"WATCHDOG=1" {
                    pings.push(start.elapsed());
                }
            }
        }
        assert!(p.try_status().is_none(), "{}", p.report());
        p.signal("TERM");
        assert_eq!(
            p.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
            Some(0),
            "{}",
            p.report()
        );
        if want_pings {
            assert!(pings.len() >= 3, "pings at {pings:?}\n{}", p.report());
            let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
            assert!(
                gaps.iter().all(|g| *g < Duration::from_millis(1500)),
                "gaps {gaps:?} (want one ping a second)"
            );
        } else {
            assert!(
                pings.is_empty(),
                "pings for another WATCHDOG_PID: {pings:?}"
            );
        }
    }
}

/// The `url-list` of a .torrent file (BEP 19), read with a generic bencode decoder.
fn url_list(torrent: &std::path::Path) -> Vec<String> {
    let v: serde_bencode::value::Value =
        serde_bencode::from_bytes(&std::fs::read(torrent).unwrap()).unwrap();
    let serde_bencode::value::Value::Dict(d) = v else {
        panic!("not a dictionary")
    };
    match d.get(&b"url-list"[..]) {
        Some(serde_bencode::value::Value::List(l)) => l
            .iter()
            .map(|u| match u {
                serde_bencode::value::Value::Bytes(b) => String::from_utf8(b.clone()).unwrap(),
                other => panic!("url-list entry {other:?}"),
            })
            .collect(),
        None => Vec::new(),
        other => panic!("url-list {other:?}"),
    }
}

#[test]
fn serve_path_with_webseed_and_public_url_names_the_bound_port_in_url_list() {
    let dir = tempfile::tempdir().unwrap();
    let tree = write_tree(dir.path(), "tree");
    let (mut guard, got) = serve_printing(
        dir.path(),
        &[
            "serve",
            "tree",
            "--listen",
            "127.0.0.1:0",
            "--webseed",
            "0.0.0.0:0",
            "--public-url",
            "http://seed.example.org",
        ],
    );
    let child = guard.0.as_mut().unwrap();
    let bound: std::net::SocketAddr = got["webseed listening"].parse().unwrap();
    assert_ne!(bound.port(), 0);
    let base = format!("http://seed.example.org:{}/", bound.port());
    assert_eq!(got["web seed"], base);
    assert_eq!(url_list(&dir.path().join(&got["torrent"])), [base]);
    // And it serves there: the first file of the tree, whole, from the port it names.
    let mut s = TcpStream::connect(("127.0.0.1", bound.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /tree/a.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let want = std::fs::read(tree.join("a.bin")).unwrap();
    assert!(
        reply.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{:?}",
        &reply[..40]
    );
    assert!(reply.ends_with(&want), "body differs from tree/a.bin");
    run(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let status = wait_exit(child, Duration::from_secs(10)).expect("no exit after SIGTERM");
    assert!(status.success(), "{status:?}");
    guard.0 = None;
}

#[test]
fn serve_path_with_a_wildcard_webseed_and_no_public_url_fails_before_hashing() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), "tree");
    let out = uringseed()
        .current_dir(dir.path())
        .args(["serve", "tree", "--listen", "127.0.0.1:0"])
        .args(["--webseed", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--webseed") && err.contains("--public-url"),
        "{err}"
    );
    assert!(!dir.path().join("tree.torrent").exists(), "hashed anyway");
}
