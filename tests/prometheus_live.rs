//! The dashboard and the alert rules against a real Prometheus (Debian's `prometheus`, as
//! .ci/run installs it): it scrapes a running uringseed every second while libtorrent downloads
//! from it (RC4, so pieces are read from disk and the read-latency histogram fills; rate-capped
//! so the download lasts ~10 s) and a tracker on loopback answers every 5 s; then every
//! expression of deploy/grafana/uringseed.json and deploy/prometheus/alerts.yml is evaluated
//! through Prometheus' HTTP API. Every dashboard query must return a number (not NaN), unless
//! it is on [`EMPTY_WITHOUT_A_FAULT`]; no alert may fire on this healthy server, and every
//! operand of each alert (the expression without its threshold) must return data, so a renamed
//! metric or label cannot leave an alert silently blind.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Dashboard queries (by panel title) that may come back empty (or NaN) here with nothing
/// wrong, and why. Empty: this test gives every panel something to show (RC4, so pieces are
/// read from disk and "Piece read latency" fills; a tracker answering every 5 s, so "Announce
/// latency p90" does). On a real server those two, and "Bytes per socket write" while idle, can
/// be empty without a fault: deploy/README.md lists them and why.
const EMPTY_WITHOUT_A_FAULT: &[(&str, &str)] = &[];

/// A tracker on loopback that answers every announce with no peers and a 5 s interval (the
/// floor the server is configured with here), so announces, and their latency histogram, keep coming during the test;
/// and scrapes with no torrents.
struct FastTracker {
    url: String,
    answered: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FastTracker {
    fn start() -> FastTracker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/announce", listener.local_addr().unwrap());
        let (answered, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (a, s) = (answered.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut head = Vec::new();
                let mut buf = [0u8; 2048];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                // Scrapes (BEP 48) get an empty `files`: the tracker knows no torrent.
                let body: &[u8] = if head.starts_with(b"GET /scrape") {
                    b"d5:filesdee"
                } else {
                    b"d8:intervali5e12:min intervali5e5:peers0:e"
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(body);
                a.fetch_add(1, Ordering::Relaxed);
            }
        });
        FastTracker {
            url,
            answered,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FastTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop.
        let _ = std::net::TcpStream::connect(
            self.url
                .trim_start_matches("http://")
                .trim_end_matches("/announce"),
        );
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// GET `path` from `addr` with `Connection: close` (Prometheus keeps connections open
/// otherwise), bounded by `limit`: (status code, body).
fn get(addr: &str, path: &str, limit: Duration) -> Result<(u16, String), String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(limit)).unwrap();
    s.set_write_timeout(Some(limit)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no end of headers")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((code, body))
}

/// The body of a chunked reply.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query: the JSON reply of /api/v1/query.
fn query(prom: &str, expr: &str) -> serde_json::Value {
    let path = format!("/api/v1/query?query={}", encode(expr));
    let (code, body) =
        get(prom, &path, Duration::from_secs(10)).unwrap_or_else(|e| panic!("query {expr}: {e}"));
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("query {expr}: {e}: {body}"));
    assert_eq!(code, 200, "query {expr}: {body}");
    assert_eq!(v["status"], "success", "query {expr}: {body}");
    v
}

/// The sample values of an instant query's result that are numbers (NaN left out).
fn values(v: &serde_json::Value) -> Vec<f64> {
    let data = &v["data"];
    let as_num = |s: &serde_json::Value| s[1].as_str().and_then(|x| x.parse::<f64>().ok());
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| as_num(&r["value"]))
            .filter(|x| !x.is_nan())
            .collect(),
        Some("scalar") => as_num(&data["result"])
            .into_iter()
            .filter(|x| !x.is_nan())
            .collect(),
        other => panic!("unexpected result type {other:?}: {v}"),
    }
}

fn dashboard_exprs() -> Vec<(String, String)> {
    fn walk(v: &serde_json::Value, title: &str, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                let title = m.get("title").and_then(|t| t.as_str()).unwrap_or(title);
                if let Some(e) = m.get("expr").and_then(|e| e.as_str()) {
                    out.push((title.to_string(), e.to_string()));
                }
                for x in m.values() {
                    walk(x, title, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, title, out)),
            _ => {}
        }
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/uringseed.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    walk(&json, "", &mut out);
    out.into_iter()
        .map(|(t, e)| {
            let e = e
                .replace("$__rate_interval", "15s")
                .replace("$__range", "5m")
                .replace("$job", ".*")
                .replace("$instance", ".*");
            assert!(!e.contains('$'), "{t}: a dashboard variable is left in {e}");
            (t, e)
        })
        .collect()
}

/// (alert name, expression) of every rule in alerts.yml (`expr:` inline or as a `>-` block).
fn alert_exprs() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut name = String::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if let Some(n) = t.strip_prefix("- alert:") {
            name = n.trim().to_string();
        } else if let Some(rest) = t.strip_prefix("expr:") {
            let rest = rest.trim();
            let expr = if rest.starts_with(">-") || rest.starts_with('|') {
                let indent = line.len() - t.len();
                lines[i + 1..]
                    .iter()
                    .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                    .map(|l| l.trim())
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                rest.to_string()
            };
            out.push((name.clone(), expr.trim().to_string()));
        }
    }
    let rules = text.matches("- alert:").count();
    assert!(
        rules > 0 && out.len() == rules,
        "{rules} alerts, {} expressions",
        out.len()
    );
    out
}

/// The parts of an alert condition that must have data on a healthy server: each side of an
/// `and on (...)`, without its trailing threshold (`== 0`, `> 0.8`), `absent(X)` as `X`.
fn operands(expr: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find(" and on (") {
        parts.push(rest[..at].to_string());
        let close = rest[at..].find(')').map_or(rest.len(), |c| at + c + 1);
        rest = &rest[close..];
    }
    parts.push(rest.to_string());
    parts
        .into_iter()
        .map(|p| {
            let mut p = p.trim().to_string();
            for op in [" == ", " != ", " >= ", " <= ", " > ", " < "] {
                if let Some(at) = p.rfind(op) {
                    let tail = p[at + op.len()..].trim();
                    if tail.parse::<f64>().is_ok() {
                        p.truncate(at);
                    }
                }
            }
            if let Some(inner) = p.strip_prefix("absent(").and_then(|x| x.strip_suffix(')')) {
                p = inner.to_string();
            }
            p.trim().to_string()
        })
        .collect()
}

#[test]
fn alert_operands_are_found() {
    assert_eq!(
        operands("a{x=\"1\"} > 0 and on (job, instance) rate(b[10m]) == 0"),
        ["a{x=\"1\"}", "rate(b[10m])"]
    );
    assert_eq!(operands("absent(up{job=\"u\"})"), ["up{job=\"u\"}"]);
    assert_eq!(operands("x / y > 0.8"), ["x / y"]);
}

#[test]
fn every_dashboard_query_and_alert_has_data_in_a_real_prometheus() {
    if !have("prometheus") || !have_libtorrent() {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let tracker = FastTracker::start();
    let data = dir.path().join("data");
    let root = write_tree(&data, "dash");
    std::fs::write(root.join("big.bin"), pseudo_random(20_000_000, 77)).unwrap();
    let torrent = dir.path().join("dash.torrent");
    make_torrent(
        &root,
        &torrent,
        &["-t", &tracker.url, "--piece-length", "262144"],
    );
    // An upload limit and a quota far above what the test sends, so that the panels showing
    // them have something to show; the built-in tracker (its panel).
    let limits = dir.path().join("limits.toml");
    std::fs::write(
        &limits,
        format!(
            "[server]\nupload_rate_limit = \"100MiB\"\nupload_quota = \"100GiB\"\nstate_dir = \"{}\"\n\
             [webseed]\nlisten = [\"127.0.0.1:0\"]\n[tracker_server]\nlisten = [\"127.0.0.1:0\"]\n\
             [tracker]\nmin_announce_interval_secs = 5\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let l = limits.to_str().unwrap();
    let mut s = serve("serve", &torrent, &data, &["--config", l], &[], dir.path());
    s.ready();

    let prom_port = free_port();
    let prom = format!("127.0.0.1:{prom_port}");
    let alerts = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: uringseed\n    static_configs:\n      - targets: [\"{}\"]\n",
            alerts.display(),
            s.metrics
        ),
    )
    .unwrap();
    let mut prometheus = Proc::spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .arg("--log.level=warn"),
        dir.path(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(get(&prom, "/-/ready", Duration::from_secs(2)), Ok((200, _))) {
        assert!(
            Instant::now() < deadline,
            "prometheus not ready\n{}",
            prometheus.report()
        );
        assert!(prometheus.try_status().is_none(), "{}", prometheus.report());
        std::thread::sleep(Duration::from_millis(100));
    }

    // Prometheus applies new targets every 5 s: the download starts once it has scraped.
    let deadline = Instant::now() + Duration::from_secs(20);
    while values(&query(&prom, "up{job=\"uringseed\"}")) != [1.0] {
        assert!(
            Instant::now() < deadline,
            "no scrape\n{}",
            prometheus.report()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // libtorrent downloads over RC4 at 2 MB/s (~10 s).
    let save = dir.path().join("lt");
    let mut lt = Proc::spawn(
        "libtorrent",
        Command::new("/usr/bin/python3")
            .arg(tools_dir().join("lt_tool.py"))
            .arg("download")
            .arg(&torrent)
            .arg(&save)
            .arg(s.addr.to_string())
            .arg("60")
            .env("LT_DOWNLOAD_RATE", "2000000")
            .env("LT_ENCRYPTION", "rc4"),
        dir.path(),
    );
    // Until Prometheus has seen a good part of the download (five scrapes in the last 15 s, the
    // rate window), reads from disk and announces.
    let total = 20_000_000.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = |e: &str| values(&query(&prom, e)).first().copied().unwrap_or(0.0);
        let payload = seen("uringseed_uploaded_bytes_total{type=\"payload\"}");
        let reads = seen("uringseed_piece_read_seconds_count");
        // An announce between two scrapes: what the latency panel's increase over the hour
        // needs.
        let announced = seen("increase(uringseed_tracker_announce_seconds_count[1h])");
        let scrapes = seen("count_over_time(up[15s])");
        if payload > 0.3 * total && reads > 0.0 && announced > 0.0 && scrapes >= 5.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "payload {payload}, reads {reads}, announces {announced} (tracker answered {})\n{}{}",
            tracker.answered.load(Ordering::Relaxed),
            s.proc.report(),
            lt.report()
        );
        assert!(
            lt.try_status().is_none(),
            "libtorrent ended early\n{}",
            lt.report()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    let mut empty = Vec::new();
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 30, "only {} dashboard queries", exprs.len());
    for (title, e) in &exprs {
        if values(&query(&prom, e)).is_empty() {
            empty.push(format!("{title}: {e}"));
        }
    }
    let allowed = |line: &String| {
        EMPTY_WITHOUT_A_FAULT
            .iter()
            .any(|(t, _)| line.starts_with(t))
    };
    let unexpected: Vec<&String> = empty.iter().filter(|l| !allowed(l)).collect();
    assert!(
        unexpected.is_empty(),
        "dashboard queries without data:\n{unexpected:#?}"
    );

    let mut silent = Vec::new();
    for (name, e) in alert_exprs() {
        let firing = query(&prom, &e);
        assert!(
            values(&firing).is_empty(),
            "{name} fires on a healthy server: {firing}"
        );
        for operand in operands(&e) {
            if values(&query(&prom, &operand)).is_empty() {
                silent.push(format!("{name}: {operand}"));
            }
        }
    }
    assert!(
        silent.is_empty(),
        "alert operands without data:\n{silent:#?}"
    );
    // Prometheus itself loaded every rule.
    let (_, rules) = get(&prom, "/api/v1/rules", Duration::from_secs(5)).unwrap();
    let rules: serde_json::Value = serde_json::from_str(&rules).unwrap();
    let loaded: Vec<&serde_json::Value> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert_eq!(loaded.len(), alert_exprs().len());
    assert!(loaded.iter().all(|r| r["health"] != "err"), "{rules}");
    drop(lt);
    prometheus.terminate(Duration::from_secs(10));
    s.stop();
    eprintln!(
        "{} dashboard queries and {} alerts checked in {:?}; empty but allowed: {empty:?}",
        exprs.len(),
        alert_exprs().len(),
        started.elapsed()
    );
}
