//! The web page at `/` against the real `uringseed serve`: its headers and the token link
//! over plain HTTP, then the page itself in headless Chromium driven by selenium
//! (tests/tools/page_check.py, run by `target/api-venv/bin/python`, the venv made from
//! tests/tools/requirements-api.txt) while a real client (libtorrent, rate-capped) downloads:
//! login form, `/?token=`, the torrent row, the add form, an API error in the message area, the
//! uploaded figure rising, the peers view, the graph and Remove with its second-click confirm,
//! and the removal checked through the API. Under CI a missing browser, driver, venv or
//! libtorrent fails the test; elsewhere it is skipped with a message.
//!
//! The screenshot goes to target/page-test/page.png; with UPDATE_PAGE_SCREENSHOT=1 also to
//! docs/page.png (the README's).

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The content seeded from the command line (removable) and the one added by the page.
const SEEDED_LEN: usize = 24 << 20;
const ADDED_LEN: usize = 300_000;
/// The client's download cap: the seeded file takes ~24 s, long enough to watch.
const DOWNLOAD_RATE: u64 = 1 << 20;

struct Server {
    proc: Proc,
    /// `127.0.0.1:PORT` of the HTTP server (API and page).
    http: String,
    /// The BitTorrent listener.
    peer: String,
    token: String,
    ih: String,
    torrent: PathBuf,
    added_torrent: PathBuf,
    added_ih: String,
    data: PathBuf,
}

/// Makes the two contents and their torrents, writes the configuration ([api] listen,
/// data_roots, [server] state_dir) and starts `serve --torrent --data --config`.
fn start(dir: &Path) -> Server {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("seeded.bin"), pseudo_random(SEEDED_LEN, 7)).unwrap();
    std::fs::write(data.join("added.bin"), pseudo_random(ADDED_LEN, 8)).unwrap();
    let torrent = dir.join("seeded.torrent");
    let ih = make_torrent(&data.join("seeded.bin"), &torrent, &[]);
    let added_torrent = dir.join("added.torrent");
    let added_ih = make_torrent(&data.join("added.bin"), &added_torrent, &[]);
    let port = free_port();
    let state = dir.join("state");
    let config = dir.join("uringseed.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nstate_dir = {state:?}\n\n[api]\nlisten = \"127.0.0.1:{port}\"\n\
             data_roots = [{dir:?}]\n",
            state = state.display().to_string(),
            dir = dir.display().to_string(),
        ),
    )
    .unwrap();
    let mut proc = Proc::spawn(
        "uringseed",
        uringseed()
            .arg("serve")
            .arg("--torrent")
            .arg(&torrent)
            .arg("--data")
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .args(["--listen", "127.0.0.1:0", "--log-level", "debug"]),
        dir,
    );
    let peer = proc
        .wait_line("listening: ", Duration::from_secs(30))
        .trim()
        .to_string();
    proc.wait_line("ready: ", Duration::from_secs(60));
    let http = format!("127.0.0.1:{port}");
    let t = Instant::now();
    while http_get(&http, "/healthz", Duration::from_secs(2)).map(|r| r.0) != Ok(200) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no /healthz on {http}\n{}",
            proc.report()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let token = std::fs::read_to_string(state.join("api-token"))
        .unwrap_or_else(|e| panic!("state/api-token: {e}\n{}", proc.report()))
        .trim()
        .to_string();
    Server {
        proc,
        http,
        peer,
        token,
        ih,
        torrent,
        added_torrent,
        added_ih,
        data,
    }
}

/// One request with `headers`; returns the whole response (head and body) as text.
fn raw(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of header `name` (lower case) in a raw response.
fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    let head = resp.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim())
    })
}

fn status_of(resp: &str) -> u16 {
    resp.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// GET /api/v1/torrents with the bearer token: the info-hashes listed.
fn api_hashes(s: &Server) -> Vec<String> {
    let auth = format!("Bearer {}", s.token);
    let resp = raw(
        &s.http,
        "GET",
        "/api/v1/torrents",
        &[("Authorization", &auth)],
    );
    assert_eq!(status_of(&resp), 200, "{resp}");
    let body = resp.split_once("\r\n\r\n").unwrap().1;
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["torrents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["info_hash"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn page_assets_headers_and_token_link() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    for (path, ctype) in [
        ("/", "text/html"),
        ("/index.html", "text/html"),
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let resp = raw(&s.http, "GET", path, &[]);
        assert_eq!(status_of(&resp), 200, "{path}: {resp}");
        assert!(
            header(&resp, "content-type").is_some_and(|c| c.starts_with(ctype)),
            "{path}: {resp}"
        );
        let csp = header(&resp, "content-security-policy").unwrap_or("");
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(header(&resp, "x-content-type-options"), Some("nosniff"));
    }
    assert_eq!(status_of(&raw(&s.http, "GET", "/favicon.ico", &[])), 204);
    assert_eq!(status_of(&raw(&s.http, "GET", "/nothing", &[])), 404);
    assert_eq!(status_of(&raw(&s.http, "POST", "/", &[])), 405);

    // The token link: the cookie, and the token out of the address bar.
    let resp = raw(&s.http, "GET", &format!("/?token={}", s.token), &[]);
    assert_eq!(status_of(&resp), 303, "{resp}");
    assert_eq!(header(&resp, "location"), Some("/"));
    let cookie = header(&resp, "set-cookie").expect("a cookie");
    assert!(cookie.starts_with(&format!("uringseed_token={};", s.token)));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    // The cookie opens the API.
    let jar = format!("uringseed_token={}", s.token);
    let resp = raw(&s.http, "GET", "/api/v1/status", &[("Cookie", &jar)]);
    assert_eq!(status_of(&resp), 200, "{resp}");
    // A wrong token: redirected, no cookie.
    let resp = raw(&s.http, "GET", "/?token=wrong", &[]);
    assert_eq!(status_of(&resp), 303);
    assert_eq!(header(&resp, "set-cookie"), None);
    drop(s);
}

/// The venv's python if it can import selenium; None (skipped) or a panic (CI) otherwise.
fn venv_python() -> Option<PathBuf> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/api-venv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import selenium"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !tools_required(),
            "{} cannot import selenium: make it with `python3 -m venv target/api-venv && \
             target/api-venv/bin/pip install -r tests/tools/requirements-api.txt`",
            py.display()
        );
        eprintln!(
            "SKIPPED: {} missing or without selenium (see tests/tools/requirements-api.txt)",
            py.display()
        );
        return None;
    }
    Some(py)
}

#[test]
fn page_in_a_real_browser() {
    if !have("chromium") || !have("chromedriver") || !have_libtorrent() {
        return;
    }
    let Some(python) = venv_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    assert_eq!(api_hashes(&s), vec![s.ih.clone()]);
    let shot_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/page-test");
    std::fs::create_dir_all(&shot_dir).unwrap();
    let shot = shot_dir.join("page.png");
    let _ = std::fs::remove_file(&shot);
    let save = dir.path().join("download");
    let cfg = serde_json::json!({
        "base": format!("http://{}", s.http),
        "token": s.token,
        "ih": s.ih,
        "add_torrent": s.added_torrent,
        "add_data": s.data,
        "add_ih": s.added_ih,
        "download_cmd": ["/usr/bin/python3", tools_dir().join("lt_tool.py"), "download",
                         s.torrent, save, s.peer, "120"],
        "download_env": {"LT_DOWNLOAD_RATE": DOWNLOAD_RATE.to_string()},
        "download_log": dir.path().join("libtorrent.log"),
        "added_download_cmd": ["/usr/bin/python3", tools_dir().join("lt_tool.py"), "download",
                               s.added_torrent, dir.path().join("added-download"), s.peer, "60"],
        "added_len": ADDED_LEN,
        "screenshot": shot,
    });
    let cfg_path = dir.path().join("page_check.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let t = Instant::now();
    let out = Command::new("timeout")
        .args(["-k", "5", "240"])
        .arg(&python)
        .arg(tools_dir().join("page_check.py"))
        .arg(&cfg_path)
        .env("SE_OFFLINE", "true")
        .env("SE_AVOID_STATS", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = || {
        format!(
            "page_check.py: {}\nstdout:\n{stdout}\nstderr:\n{}\nlibtorrent:\n{}\n{}",
            out.status,
            tail(&stderr, 4000),
            tail(
                &std::fs::read_to_string(dir.path().join("libtorrent.log")).unwrap_or_default(),
                3000
            ),
            s.proc.report()
        )
    };
    let r: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON result\n{}", context()));
    eprintln!(
        "page_check.py: {:.1} s, timings {}",
        t.elapsed().as_secs_f64(),
        r["timings"]
    );
    let c = &r["checks"];
    let fail = |what: &str| -> ! { panic!("{what}\nresult: {r:#}\n{}", context()) };
    if r["errors"].as_array().is_some_and(|e| !e.is_empty()) {
        fail("the script reported errors");
    }
    if r["console"].as_array().is_some_and(|e| !e.is_empty()) {
        fail("SEVERE browser console entries");
    }
    for flag in [
        "login_form_without_token",
        "login_form_logs_in",
        "row_seen",
        "login_hidden",
        "added_row_seen",
        "peers_visible",
        "still_there_after_first_click",
        "row_gone",
        "peers_closed",
        "message_dismissed",
        "screenshot",
    ] {
        if c[flag] != Value::Bool(true) {
            fail(&format!("{flag} is not true"));
        }
    }
    if c["url_after_token"] != Value::String(format!("http://{}/", s.http)) {
        fail("/?token= did not redirect to /");
    }
    if c["row_state"] != "seeding" || c["row_name"] != "seeded.bin" {
        fail("the row's state or name");
    }
    if c["add_message"]["kind"] != "info" {
        fail("no message after adding");
    }
    if !c["duplicate_error"]
        .as_str()
        .is_some_and(|m| m.contains("duplicate"))
    {
        fail("the duplicate's API error is not shown");
    }
    if !c["wrong_token_error"].is_string() {
        fail("no error for a wrong token");
    }
    let (a, b) = (
        c["uploaded_first"].as_u64().unwrap_or(0),
        c["uploaded_second"].as_u64().unwrap_or(0),
    );
    if a == 0 || b <= a || b > SEEDED_LEN as u64 * 2 {
        fail("the uploaded figure did not rise");
    }
    if !c["peer"]["address"]
        .as_str()
        .is_some_and(|p| p.starts_with("127.0.0.1:"))
        || c["peer"]["client"].as_str().unwrap_or("").is_empty()
    {
        fail("the peers view shows no libtorrent peer");
    }
    if c["confirm_text"] != "Confirm?" {
        fail("Remove did not ask to confirm");
    }
    if c["graph_samples"].as_u64().unwrap_or(0) < 5 {
        fail("the graph has too few samples");
    }
    // The page's uploaded figure of the added torrent is what libtorrent received of it
    // (the download is checked byte for byte).
    assert_eq!(c["added_download_status"], 0, "{}", context());
    assert_eq!(
        c["added_uploaded"].as_u64(),
        Some(ADDED_LEN as u64),
        "{}",
        context()
    );
    assert!(
        std::fs::read(s.data.join("added.bin")).unwrap()
            == std::fs::read(dir.path().join("added-download/added.bin")).unwrap_or_default(),
        "the added torrent downloaded byte for byte"
    );
    // Through the API: the removed torrent is gone, the added one is there.
    assert_eq!(api_hashes(&s), vec![s.added_ih.clone()], "{}", context());
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    if std::env::var_os("UPDATE_PAGE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/page.png");
        std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
        std::fs::write(&docs, &png).unwrap();
        eprintln!("wrote {}", docs.display());
    }
    drop(s);
}
