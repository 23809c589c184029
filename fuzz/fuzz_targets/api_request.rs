//! The HTTP server's own request handling never panics, never lets a request in without the
//! token, and answers within its bounds. hyper (fuzzed upstream) frames the requests; what this
//! drives is ours: the dispatch of `api::service` (the metrics router's exact GET routes, every
//! other path to `Api::handle`), and through it the native JSON API (`api::native`: JSON bodies,
//! byte/rate fields, the info-hash path segments, the raw/multipart/JSON add), the qBittorrent
//! routes (`api::qbt`: query and urlencoded-body parameters, multipart `torrents/add`, the SID
//! sessions), the page (`/?token=`), `api::form` (percent-decoding, multipart), `api::auth`
//! (bearer header, cookies) and `api::paths` (confinement to the data roots).
//!
//! Each input gets a fresh server state (`Shared`, `Control` with three torrents that are live
//! (one from the configuration, one from the API, one from the watch directory), `Api` with a
//! fixed token and one data root holding their data and that of a fourth torrent). Checks are
//! done synchronously after every request, and `POST /api/v1/torrents {"path"}` jobs are waited
//! for, so an input always does the same thing.
//!
//! Input: a sequence of requests `[flags, len_hi, len_lo, payload...]`. `flags & 7`: the method
//! (GET, HEAD, POST, PATCH, DELETE, PUT, OPTIONS, or an extension method); `(flags >> 3) & 3`:
//! credentials (none, `Authorization: Bearer TOKEN`, the token cookie, the `SID` cookie of the
//! last qBittorrent login); `flags >> 5`: a `Content-Type` (none, JSON, urlencoded, multipart
//! with boundary `B`, `application/x-bittorrent`, or none (headers of the payload only)). The
//! payload is the request target, then `Name: value` header lines, a blank line and the body;
//! in it `\x7fT` is replaced by the token, `\x7fS` by the last SID, `\x7fR` by the data root,
//! `\x7f0`..`\x7f3` by the four torrents' info-hashes and `\x7fN` by the fourth torrent's
//! metainfo (not yet added; its data is in the root).
//!
//! Checks beyond "never panics":
//! - a request without the token (no `\x7fT`, no token header or cookie, no SID of a login that
//!   had it) gets exactly what an outsider may: the native API's 401 (its `openapi.json` and
//!   `login` excepted, login only 400/401), the qBittorrent routes' 403 (400/405 for malformed
//!   parameters or methods, `Fails.` from `auth/login`), the page without a cookie; never a
//!   `Set-Cookie` unless the payload held the token;
//! - statuses in the set the routes use (no 500: there is no failing store here), JSON content
//!   types parse as JSON, native API errors are `{"error": {"code", "message"}}`, bodies at
//!   most 64 KiB (256 KiB for `/metrics`, whose routes answer 200, 405 or 503 and set no cookie);
//! - the control's catalog and the torrent table hold the same torrents, the two that cannot
//!   be removed through the API are still there, and at most one was added per request (per
//!   file part of a multipart body).
#![no_main]

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, SET_COOKIE};
use hyper::{HeaderMap, Method, Uri};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use uringseed::api::Api;
use uringseed::checker::Checker;
use uringseed::config::Config;
use uringseed::control::Control;
use uringseed::http::{Reply, Request, Router};
use uringseed::lifecycle::{Services, Shutdown};
use uringseed::metainfo::InfoHash;
use uringseed::state::{Origin, Shared, TorrentCtx, TorrentSpec, TorrentState};
use uringseed::storage::files::DataFiles;
use uringseed::storage::layout::Layout;

const TOKEN: &str = "f0a1b2c3d4e5f60718293a4b5c6d7e8ff0a1b2c3d4e5f60718293a4b5c6d7e8f";
/// The exact routes of the metrics router (everything else goes to the API).
const METRICS_ROUTES: [&str; 3] = ["/metrics", "/healthz", "/readyz"];

struct Fixture {
    config: Config,
    root: PathBuf,
    state: PathBuf,
    /// Metainfo and info-hash of `a` (config), `d` (API), `e` (watch) and `b` (not added).
    torrents: Vec<(Vec<u8>, InfoHash)>,
    parsed: Vec<uringseed::metainfo::Torrent>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // On tmpfs where there is one: the API's store syncs what it writes.
        let shm = std::path::Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        let dir = base.join(format!("uringseed-fuzz-api-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("root");
        let state = dir.join("state");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        let fill = |p: PathBuf, n: usize| {
            std::fs::write(p, (0..n).map(|i| (i * 7 + 3) as u8).collect::<Vec<u8>>()).unwrap()
        };
        fill(root.join("a"), 40_000);
        fill(root.join("d/x"), 100);
        fill(root.join("d/y"), 17_000);
        fill(root.join("e"), 1);
        fill(root.join("b"), 3_000);
        let token = dir.join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let torrents: Vec<(Vec<u8>, InfoHash)> = ["a", "d", "e", "b"]
            .iter()
            .map(|name| {
                let opts = uringseed::make::MakeOptions {
                    path: root.join(name),
                    piece_length: Some(16 << 10),
                    quiet: true,
                    threads: 1,
                    ..Default::default()
                };
                let (bytes, t) = uringseed::make::make(&opts).expect("fixture torrent");
                (bytes, t.info_hash)
            })
            .collect();
        let parsed = torrents
            .iter()
            .map(|(b, _)| uringseed::metainfo::parse(b, "fixture").unwrap())
            .collect();
        let mut config = Config::default();
        config.server.state_dir = state.clone();
        config.hashing.resume = false;
        config.hashing.threads = 1;
        config.hashing.parallel_torrents = 1;
        config.api.token_file = token;
        config.api.data_roots = vec![root.clone()];
        config.metrics.enabled = true;
        Fixture {
            config,
            root,
            state,
            torrents,
            parsed,
        }
    })
}

struct World {
    shared: Arc<Shared>,
    control: Arc<Control>,
    api: Arc<Api>,
    router: Router,
    _services: Services,
}

fn world(f: &Fixture) -> World {
    // Torrents the API saved for the last input are not restored into this one.
    let saved = f.state.join("api-torrents");
    if saved.exists() {
        let _ = std::fs::remove_dir_all(saved);
    }
    let shared = Arc::new(Shared::new(f.config.clone(), Shutdown::new()).expect("shared"));
    // The checker's threads end at once: checks are done by `settle`, synchronously.
    let stopped = Shutdown::new();
    stopped.trigger();
    let mut services = Services::new(stopped);
    let checker = Checker::start(shared.clone(), &mut services, false).expect("checker");
    let control = Arc::new(Control::new(shared.clone(), checker));
    for (i, origin) in [Origin::Config, Origin::Api, Origin::Watch].into_iter().enumerate() {
        let spec = TorrentSpec {
            torrent: f.parsed[i].clone(),
            data_dir: f.root.clone(),
            just_hashed: false,
            limits: Default::default(),
            origin,
            force_check: false,
        };
        control.add(spec).expect("fixture added");
    }
    let api = Api::start(control.clone(), Default::default()).expect("api");
    let router = uringseed::metrics::routes(shared.clone(), "fuzz", Default::default());
    let w = World {
        shared,
        control,
        api,
        router,
        _services: services,
    };
    settle(&w);
    w
}

/// Waits for make jobs, then does every pending check (all pieces good when the files are all
/// there, none otherwise).
fn settle(w: &World) {
    let t0 = Instant::now();
    while w
        .api
        .making
        .lock()
        .unwrap()
        .iter()
        .any(|j| j.state == "hashing")
    {
        assert!(t0.elapsed() < Duration::from_secs(20), "a make job hangs");
        std::thread::sleep(Duration::from_micros(20));
    }
    for (ih, state) in w.shared.torrents.snapshot() {
        let TorrentState::Checking(c) = state else {
            continue;
        };
        let Some(e) = w.control.entry(&ih) else {
            continue;
        };
        let spec = e.spec;
        let layout = Layout::new(&spec.torrent);
        let files = Arc::new(DataFiles::open(&layout, &spec.data_dir));
        let n = spec.torrent.num_pieces();
        let mut have = vec![0u8; n.div_ceil(8)];
        if files.problems().is_empty() {
            for i in 0..n {
                uringseed::bitfield::set(&mut have, i);
            }
        }
        let upload = w.shared.torrent_upload(&ih, &spec.limits);
        let ctx = TorrentCtx::new(
            &w.shared.config,
            &spec.torrent,
            spec.data_dir.clone(),
            files,
            &have,
            upload,
        );
        ctx.set_slots(w.shared.upload_slots());
        w.shared.torrents.finish_check(&ih, &c, Ok(ctx));
    }
}

fn replace_all(data: &[u8], f: &Fixture, sid: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == 0x7f && i + 1 < data.len() {
            let hex = |k: usize| f.torrents[k].1.to_string().into_bytes();
            let rep: Option<Vec<u8>> = match data[i + 1] {
                b'T' => Some(TOKEN.as_bytes().to_vec()),
                b'S' => Some(sid.unwrap_or("0123456789abcdef0123456789abcdef").into()),
                b'R' => Some(f.root.display().to_string().into_bytes()),
                b'0'..=b'3' => Some(hex(usize::from(data[i + 1] - b'0'))),
                b'N' => Some(f.torrents[3].0.clone()),
                _ => None,
            };
            if let Some(r) = rep {
                out.extend_from_slice(&r);
                i += 2;
                continue;
            }
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The request a record describes; None where hyper would not produce one (a bad target).
fn request(flags: u8, payload: &[u8], f: &Fixture, sid: Option<&str>) -> Option<Request> {
    let method = match flags & 7 {
        0 => Method::GET,
        1 => Method::HEAD,
        2 => Method::POST,
        3 => Method::PATCH,
        4 => Method::DELETE,
        5 => Method::PUT,
        6 => Method::OPTIONS,
        _ => Method::from_bytes(b"PROPFIND").unwrap(),
    };
    let payload = replace_all(payload, f, sid);
    let (target, rest) = match payload.iter().position(|&b| b == b'\n') {
        Some(i) => (&payload[..i], &payload[i + 1..]),
        None => (&payload[..], &[][..]),
    };
    let uri = Uri::try_from(target).ok()?;
    let mut headers = HeaderMap::new();
    match (flags >> 3) & 3 {
        1 => {
            headers.insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap(),
            );
        }
        2 => {
            headers.insert(
                "cookie",
                HeaderValue::from_str(&format!("a=b; uringseed_token={TOKEN}")).unwrap(),
            );
        }
        3 => {
            let sid = sid.unwrap_or("0123456789abcdef0123456789abcdef");
            headers.insert(
                "cookie",
                HeaderValue::from_str(&format!("SID={sid}")).unwrap(),
            );
        }
        _ => {}
    }
    let ct = match flags >> 5 {
        1 => Some("application/json"),
        2 => Some("application/x-www-form-urlencoded"),
        3 => Some("multipart/form-data; boundary=B"),
        4 => Some("application/x-bittorrent"),
        _ => None,
    };
    if let Some(ct) = ct {
        headers.insert("content-type", HeaderValue::from_static(ct));
    }
    // Header lines up to a blank line; the rest is the body.
    let mut pos = 0;
    let mut body_at = rest.len();
    while pos < rest.len() {
        let end = rest[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| pos + i);
        let line = &rest[pos..end];
        if line.is_empty() {
            body_at = (end + 1).min(rest.len());
            break;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let value = line[colon + 1..].trim_ascii();
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(&line[..colon]),
                HeaderValue::from_bytes(value),
            ) {
                headers.append(n, v);
            }
        }
        pos = end + 1;
        body_at = rest.len();
    }
    Some(Request {
        method,
        uri,
        headers,
        body: Bytes::copy_from_slice(&rest[body_at.min(rest.len())..]),
        peer: "127.0.0.1:40000".parse().unwrap(),
    })
}

/// What the one HTTP server answers (`api::service`: the router's exact routes first, then the
/// API's prefix route "/"); None for the metrics router's routes, checked here.
fn answer(w: &World, req: &Request) -> Option<Reply> {
    let path = req.uri.path();
    if !METRICS_ROUTES.contains(&path) {
        return Some(w.api.handle(req));
    }
    let r = w.router.respond(&req.method, &req.uri);
    let s = r.status().as_u16();
    assert!([200, 405, 503].contains(&s), "{path}: {s}");
    assert!(r.headers().get(SET_COOKIE).is_none(), "{path}: Set-Cookie");
    let len = hyper::body::Body::size_hint(r.body()).exact().expect("a whole body");
    assert!(len <= 256 << 10, "{path}: {len} bytes");
    if let Some(cl) = r.headers().get("content-length") {
        let cl: u64 = cl.to_str().unwrap().parse().unwrap();
        match req.method {
            Method::HEAD => assert_eq!(len, 0, "{path}: a body to HEAD"),
            _ => assert_eq!(cl, len, "{path}: Content-Length"),
        }
    }
    trace(req, s, &[]);
    None
}

/// `FUZZ_TRACE=1`: every request and the start of its answer, on stderr.
fn trace(req: &Request, status: u16, body: &[u8]) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some()) {
        let body = String::from_utf8_lossy(&body[..body.len().min(100)]);
        eprintln!("{} {} -> {status} {body:?}", req.method, req.uri);
    }
}

fn is_json_error(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    v["error"]["code"].is_string() && v["error"]["message"].is_string()
}

/// What a request without credentials may get.
fn check_outsider(req: &Request, reply: &Reply) {
    let path = req.uri.path();
    let s = reply.status.as_u16();
    if let Some(rest) = path.strip_prefix("/api/v2/") {
        let login_refused = rest == "auth/login" && s == 200 && reply.body == "Fails.";
        assert!(
            login_refused || [400, 403, 405].contains(&s),
            "qBittorrent route {path} answered {s} without credentials"
        );
    } else if path.starts_with("/api/") {
        let expected: &[u16] = match path.strip_prefix("/api/v1") {
            None => &[404],
            Some(rest) => {
                let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
                match (&req.method, segs.as_slice()) {
                    (&Method::GET, ["openapi.json"]) => &[200],
                    (&Method::POST, ["login"]) => &[400, 401],
                    _ => &[401],
                }
            }
        };
        assert!(
            expected.contains(&s),
            "{} {path} answered {s} without credentials",
            req.method
        );
    }
}

fn check_reply(req: &Request, reply: &Reply, creds: bool, had_token: bool) {
    let path = req.uri.path();
    let s = reply.status.as_u16();
    let allowed = [200, 201, 202, 204, 303, 400, 401, 403, 404, 405, 409, 415];
    assert!(
        allowed.contains(&s),
        "{} {} answered {s}: {:?}",
        req.method,
        req.uri,
        String::from_utf8_lossy(&reply.body)
    );
    assert!(reply.body.len() <= 64 << 10, "{path}: {} bytes", reply.body.len());
    if reply.content_type.starts_with("application/json") {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&reply.body) {
            panic!("{path}: JSON reply does not parse: {e}");
        }
    }
    if path.starts_with("/api/") && !path.starts_with("/api/v2/") {
        assert!(reply.content_type.starts_with("application/json"), "{path}");
        if s >= 400 {
            assert!(is_json_error(&reply.body), "{path}: error {s} not an error object");
        }
    }
    let cookie = reply.headers.iter().any(|(n, _)| *n == SET_COOKIE);
    assert!(
        !cookie || had_token,
        "{} {}: Set-Cookie without the token in the request",
        req.method,
        req.uri
    );
    if !creds {
        check_outsider(req, reply);
    }
}

fn check_state(w: &World, f: &Fixture, adds: usize) {
    let mut catalog: Vec<InfoHash> = w
        .control
        .entries()
        .iter()
        .map(|e| e.spec.torrent.info_hash)
        .collect();
    let mut table: Vec<InfoHash> = w
        .shared
        .torrents
        .snapshot()
        .iter()
        .map(|(ih, _)| *ih)
        .collect();
    catalog.sort();
    table.sort();
    assert_eq!(catalog, table, "the catalog and the table disagree");
    for i in [0, 2] {
        assert!(
            w.control.entry(&f.torrents[i].1).is_some(),
            "fixture {i} (not removable through the API) is gone"
        );
    }
    // The three fixtures and at most one torrent added per request and file part.
    assert!(catalog.len() <= 3 + adds, "{} torrents", catalog.len());
}

fn sid_of(reply: &Reply) -> Option<String> {
    reply.headers.iter().find_map(|(n, v)| {
        let v = v.to_str().ok()?;
        (*n == SET_COOKIE)
            .then(|| v.strip_prefix("SID=")?.split(';').next().map(str::to_string))
            .flatten()
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let w = world(f);
    let mut sid: Option<String> = None;
    let mut pos = 0;
    let mut n = 0;
    let mut adds = 0;
    while pos + 3 <= data.len() && n < 32 {
        let flags = data[pos];
        let len = usize::from(u16::from_be_bytes([data[pos + 1], data[pos + 2]]));
        let payload = &data[pos + 3..(pos + 3 + len).min(data.len())];
        pos += 3 + payload.len();
        n += 1;
        let Some(req) = request(flags, payload, f, sid.as_deref()) else {
            continue;
        };
        adds += 1 + req.body.windows(9).filter(|w| w == b"filename=").count();
        // The literal token cannot be guessed by the fuzzer; counted in case it is.
        let had_token = contains(payload, b"\x7fT") || contains(payload, TOKEN.as_bytes());
        let auth = (flags >> 3) & 3;
        let sid_used = sid.is_some() && (auth == 3 || contains(payload, b"\x7fS"));
        let creds = had_token || auth == 1 || auth == 2 || sid_used;
        let Some(reply) = answer(&w, &req) else {
            continue;
        };
        trace(&req, reply.status.as_u16(), &reply.body);
        check_reply(&req, &reply, creds, had_token);
        if let Some(s) = sid_of(&reply) {
            sid = Some(s);
        }
        settle(&w);
        check_state(&w, f, adds);
    }
});
