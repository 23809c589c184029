//! Metrics, health endpoints and runtime control, as an operator sees them: scraping during a
//! real download, promtool, the dashboard's metric names, SIGHUP reload, the watch directory and
//! JSON logs.

mod common;

use common::raw::RawPeer;
use common::*;
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use uringseed::wire::message::{self, Block, Message};

/// GET `path` from the metrics endpoint: (status code, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn peers(body: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with("uringseed_peers_connected{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// A running `uringseed serve` with its stdout lines on a channel.
struct Serve {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    stderr: std::path::PathBuf,
}

impl Serve {
    fn start(args: &[&str], dir: &Path) -> Serve {
        let stderr = dir.join(format!("serve-{}.log", std::process::id()));
        let mut child = uringseed()
            .arg("serve")
            .args(args)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--metrics",
                "127.0.0.1:0",
                "--log-level",
                "debug",
            ])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Serve {
            child: Some(child),
            lines,
            stderr,
        }
    }

    fn line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Ok(l) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if let Some(rest) = l.strip_prefix(prefix) {
                return rest.to_string();
            }
        }
        panic!(
            "no {prefix:?} line; stderr:\n{}",
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        );
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id();
        run(std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("kill -s {sig} {pid}")));
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn upload_counter_matches_what_a_real_client_received_and_peers_rise_and_fall() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = write_tree(dir.path(), "tree");
    std::fs::write(tree.join("big.bin"), pseudo_random(12_000_000, 3)).unwrap();
    let torrent = dir.path().join("t.torrent");
    make_torrent(&tree, &torrent, &["--piece-length", "262144"]);
    let s = Serve::start(
        &[
            "--torrent",
            torrent.to_str().unwrap(),
            "--data",
            dir.path().to_str().unwrap(),
        ],
        dir.path(),
    );
    let addr = s.line("listening: ");
    let metrics = s
        .line("metrics: ")
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    s.line("ready: ");
    let (code, before) = get(&metrics, "/metrics");
    assert_eq!(code, 200);
    assert_eq!(
        sample(&before, "uringseed_uploaded_bytes_total{type=\"payload\"}"),
        0.0
    );
    assert_eq!(peers(&before), 0.0);
    // Watch the peers gauge while libtorrent downloads.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let m2 = metrics.clone();
    let watcher = std::thread::spawn(move || {
        let mut max = 0.0f64;
        while stop_rx.try_recv().is_err() {
            max = max.max(peers(&get(&m2, "/metrics").1));
            std::thread::sleep(Duration::from_millis(20));
        }
        max
    });
    let save = dir.path().join("lt");
    // Capped at 3 MB/s so the connection lasts ~4 s: long enough for the watcher to see it on a
    // loaded CI machine (uncapped, 12 MB over loopback can come and go between two scrapes).
    let out = lt_tool_env(
        &[
            "download",
            torrent.to_str().unwrap(),
            save.to_str().unwrap(),
            &addr,
            "60",
        ],
        &[("LT_DOWNLOAD_RATE", "3000000")],
    );
    let _ = stop_tx.send(());
    let max_peers = watcher.join().unwrap();
    assert!(max_peers >= 1.0, "peers gauge never rose");
    let received: f64 = out
        .iter()
        .find(|(k, _)| k == "downloaded")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let total = uringseed::metainfo::load(&torrent).unwrap().total_length as f64;
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let (_, body) = get(&metrics, "/metrics");
        if peers(&body) == 0.0 || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        peers(&after),
        0.0,
        "peers gauge did not fall after the client left"
    );
    let payload = sample(&after, "uringseed_uploaded_bytes_total{type=\"payload\"}");
    assert_eq!(
        payload, received,
        "server payload counter vs bytes the client received"
    );
    assert_eq!(payload, total);
    assert!(sample(&after, "uringseed_requests_served_total") >= total / 16384.0);
    // The data was just checked, so (most of) it went out straight from the page cache.
    let zero_copy = sample(&after, "uringseed_zero_copy_bytes_total");
    assert!(
        zero_copy > 0.0 && zero_copy <= payload,
        "zero-copy bytes {zero_copy}"
    );
    assert!(sample(&after, "uringseed_resident_memory_bytes{kind=\"anon\"}") > 0.0);
    assert!(sample(&after, "uringseed_piece_read_seconds_count") >= 1.0);
    assert_eq!(sample(&after, "uringseed_torrents{state=\"seeding\"}"), 1.0);
    assert_eq!(get(&metrics, "/healthz").0, 200);
    assert_eq!(get(&metrics, "/readyz").0, 200);
    assert_eq!(get(&metrics, "/nope").0, 404);
}

#[test]
fn exposition_passes_promtool_and_has_every_dashboard_metric() {
    let dir = tempfile::tempdir().unwrap();
    let tree = write_tree(dir.path(), "tree");
    let torrent = dir.path().join("t.torrent");
    make_torrent(&tree, &torrent, &["-t", "http://127.0.0.1:1/announce"]);
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        // The web seed and the built-in tracker on too (any free ports), so their series are
        // checked as well.
        "[metrics]\nper_torrent = true\n[tracker]\ntimeout_secs = 1\n[webseed]\nlisten = [\"127.0.0.1:0\"]\n\
         [tracker_server]\nlisten = [\"127.0.0.1:0\"]\n",
    )
    .unwrap();
    let s = Serve::start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--torrent",
            torrent.to_str().unwrap(),
            "--data",
            dir.path().to_str().unwrap(),
        ],
        dir.path(),
    );
    let addr: SocketAddr = s.line("listening: ").parse().unwrap();
    let metrics = s
        .line("metrics: ")
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    let ih = s.line("ready: ")[..40].to_string();
    // Some traffic so that labelled series exist: a rejected request and a failed announce.
    let (mut p, _) = RawPeer::handshake(addr, hex_hash(&ih), true);
    p.send(&[Message::Interested]);
    p.expect(message::UNCHOKE);
    p.send(&[Message::Request(Block {
        index: 0,
        begin: 0,
        length: 1 << 17,
    })]);
    p.expect(message::REJECT);
    std::thread::sleep(Duration::from_millis(1500));
    let (_, body) = get(&metrics, "/metrics");
    assert!(
        body.contains(&format!(
            "uringseed_torrent_pieces{{info_hash=\"{ih}\",name=\"tree\",state=\"verified\"}}"
        )),
        "{body}"
    );
    assert!(
        body.contains("uringseed_io_backend{backend=\"io_uring\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("uringseed_requests_rejected_total{reason=\"oversized\"} 1"),
        "{body}"
    );
    assert!(body.contains("process_resident_memory_bytes"), "{body}");
    // CPU time to the microsecond (the prometheus crate's own counter is whole seconds, so a
    // server that has done this little would show 0), exported once.
    let cpu = sample(&body, "process_cpu_seconds_total");
    assert!(
        cpu > 0.0 && cpu.fract() != 0.0,
        "process_cpu_seconds_total {cpu}"
    );
    assert_eq!(body.matches("\nprocess_cpu_seconds_total ").count(), 1);

    if have("promtool") {
        let mut child = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Every metric the dashboard queries is exported.
    let exported: BTreeSet<String> = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    let dashboard = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/uringseed.json"),
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&json, &mut exprs);
    assert!(
        exprs.len() >= 10,
        "dashboard has too few queries: {}",
        exprs.len()
    );
    let mut used = BTreeSet::new();
    for e in &exprs {
        for (i, _) in e
            .match_indices("uringseed_")
            .chain(e.match_indices("process_"))
        {
            let name: String = e[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            used.insert(name);
        }
    }
    for name in &used {
        assert!(
            exported.contains(name),
            "dashboard uses {name}, which the server does not export"
        );
    }
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn sighup_adds_and_removes_torrents_without_dropping_others_and_rejects_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut hashes = HashMap::new();
    for name in ["one", "two"] {
        let data = dir.path().join(format!("data-{name}"));
        std::fs::create_dir(&data).unwrap();
        write_tree(&data, name);
        let hex = make_torrent(
            &data.join(name),
            &dir.path().join(format!("{name}.torrent")),
            &[],
        );
        hashes.insert(name, hex.trim().to_string());
    }
    let config = dir.path().join("seed.toml");
    let torrent =
        |n: &str| format!("[[torrent]]\ntorrent = \"{n}.torrent\"\ndata = \"data-{n}\"\n");
    std::fs::write(&config, torrent("one")).unwrap();
    let s = Serve::start(&["--config", config.to_str().unwrap()], dir.path());
    let addr: SocketAddr = s.line("listening: ").parse().unwrap();
    assert!(s.line("ready: ").starts_with(&hashes["one"]));
    // A peer of torrent one, mid-download.
    let (mut p, _) = RawPeer::handshake(addr, hex_hash(&hashes["one"]), true);
    p.send(&[Message::Interested]);
    p.expect(message::UNCHOKE);
    p.send(&[Message::Request(Block {
        index: 0,
        begin: 0,
        length: 16384,
    })]);
    p.expect(message::PIECE);

    // A bad file is rejected; everything keeps running.
    std::fs::write(&config, format!("{}bogus = 1\n", torrent("one"))).unwrap();
    s.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log().contains("reload rejected") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(s.log().contains("reload rejected"), "{}", s.log());
    assert!(
        s.log().contains("bogus"),
        "the error names the key: {}",
        s.log()
    );

    // Adding torrent two: it starts seeding; the peer of torrent one is still served.
    std::fs::write(&config, format!("{}{}", torrent("one"), torrent("two"))).unwrap();
    s.signal("HUP");
    assert!(s.line("ready: ").starts_with(&hashes["two"]));
    p.send(&[Message::Request(Block {
        index: 1,
        begin: 0,
        length: 16384,
    })]);
    if p.recv().map(|m| m.0) != Some(message::PIECE) {
        panic!("peer of torrent one not served after reload:\n{}", s.log());
    }
    let (mut q, hs) = RawPeer::handshake(addr, hex_hash(&hashes["two"]), true);
    assert_eq!(hs.info_hash.to_hex(), hashes["two"]);
    q.expect(message::HAVE_ALL);

    // Removing torrent one closes its peers; torrent two's peer stays.
    std::fs::write(&config, torrent("two")).unwrap();
    s.signal("HUP");
    p.expect_closed();
    q.send(&[Message::Interested]);
    q.expect(message::UNCHOKE);
}

#[test]
fn watch_directory_seeds_dropped_torrents_and_json_logs_parse() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let watch = dir.path().join("watch");
    std::fs::create_dir_all(&watch).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    write_tree(&data, "tree");
    let config = dir.path().join("w.toml");
    std::fs::write(&config, "[watch]\ndir = \"watch\"\ndata = \"data\"\n").unwrap();
    let s = Serve::start(
        &["--config", config.to_str().unwrap(), "--log-format", "json"],
        dir.path(),
    );
    let addr: SocketAddr = s.line("listening: ").parse().unwrap();
    let staged = dir.path().join("staged.torrent");
    let hex = make_torrent(&data.join("tree"), &staged, &[])
        .trim()
        .to_string();
    std::fs::rename(&staged, watch.join("tree.torrent")).unwrap();
    assert!(s.line("ready: ").starts_with(&hex));
    let (mut p, _) = RawPeer::handshake(addr, hex_hash(&hex), true);
    p.expect(message::HAVE_ALL);
    std::fs::remove_file(watch.join("tree.torrent")).unwrap();
    p.expect_closed();
    for line in s.log().lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(s.log().contains("watch: seeding"));
}

/// Sends `raw` to the metrics endpoint; returns everything it answered before closing.
fn exchange(addr: &str, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// (status code, lower-cased header lines, body) of a raw reply.
fn parse_reply(text: &str) -> (u16, Vec<String>, String) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = head
        .lines()
        .skip(1)
        .map(|l| l.to_ascii_lowercase())
        .collect();
    (code, headers, body.to_string())
}

/// The endpoint as HTTP clients see it: GET and HEAD (same headers, no body), 405 with Allow
/// for other methods, 404 for other paths, 431 for an oversized header, and a client that
/// trickles its request is cut off at the deadline while normal scrapes go on.
#[test]
fn metrics_endpoint_speaks_http_get_head_405_and_refuses_oversized_or_slow_requests() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root = write_tree(&data, "h");
    let torrent = dir.path().join("h.torrent");
    make_torrent(&root, &torrent, &[]);
    let mut s = serve("serve", &torrent, &data, &[], &[], dir.path());
    s.ready();
    let m = s.metrics.clone();
    for (path, body) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
        let (code, headers, got) = parse_reply(&exchange(
            &m,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        ));
        assert_eq!((code, got.as_str()), (200, body), "{path}");
        assert!(
            headers.contains(&format!("content-length: {}", body.len())),
            "{headers:?}"
        );
        let (code, head_headers, got) = parse_reply(&exchange(
            &m,
            format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        ));
        assert_eq!((code, got.as_str()), (200, ""), "HEAD {path} has a body");
        assert_eq!(
            head_headers
                .iter()
                .filter(|h| !h.starts_with("date:"))
                .collect::<Vec<_>>(),
            headers
                .iter()
                .filter(|h| !h.starts_with("date:"))
                .collect::<Vec<_>>(),
            "HEAD {path}: not the GET headers"
        );
    }
    let (code, headers, body) =
        parse_reply(&exchange(&m, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_eq!((code, body.as_str()), (200, ""));
    let len: usize = headers
        .iter()
        .find_map(|h| h.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("HEAD /metrics has a Content-Length");
    assert!(len > 1000, "{len}");
    for method in ["POST", "DELETE", "PUT"] {
        let (code, headers, _) = parse_reply(&exchange(
            &m,
            format!("{method} /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        ));
        assert_eq!(code, 405, "{method}");
        assert!(
            headers.iter().any(|h| h == "allow: get, head"),
            "{method}: {headers:?}"
        );
    }
    assert_eq!(
        parse_reply(&exchange(&m, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")).0,
        404
    );
    // A 20 KB header: refused (431), never answered with the metrics.
    let mut big = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 20_000));
    big.extend_from_slice(b"\r\n\r\n");
    let mut c = TcpStream::connect(&m).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = c.write_all(&big);
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let code = parse_reply(&String::from_utf8_lossy(&out)).0;
    assert!(code == 431 || out.is_empty(), "oversized header got {code}");
    // A client trickling its request line, a byte every 200 ms: closed at the 2 s deadline;
    // scrapes meanwhile are answered at once.
    let mut slow = TcpStream::connect(&m).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    let mut cut_off = None;
    for b in b"GET /metrics HTTP/1.1\r\nHost: slowloris-slowloris\r\n"
        .iter()
        .cycle()
        .take(100)
    {
        if slow.write_all(&[*b]).is_err() {
            cut_off = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 64];
        match slow.read(&mut buf) {
            Ok(0) => {
                cut_off = Some(started.elapsed());
                break;
            }
            Ok(_) => panic!("the trickling client got an answer"),
            Err(_) => {}
        }
        let t = Instant::now();
        let (code, _) = http_get(&m, "/healthz", Duration::from_secs(2)).unwrap();
        assert!(code == 200 && t.elapsed() < Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(100));
    }
    let cut_off = cut_off.expect("a trickling client was never closed");
    assert!(
        cut_off >= Duration::from_millis(1500) && cut_off < Duration::from_secs(4),
        "trickling client closed after {cut_off:?} (deadline 2 s)"
    );
    s.stop();
}
