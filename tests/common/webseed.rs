//! The HTTP web seed (BEP 19) from the outside: `uringseed serve ... --webseed 127.0.0.1:W`
//! ([`WebSeed`]), a raw HTTP/1.1 client over a blocking socket ([`Conn`], keep-alive, any
//! bytes on the wire), URL paths for torrent files, and the web seed's counters on /metrics.

use super::proc::{free_port, http_get, serve, serve_args, Serve};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Every wait on the socket is bounded by this.
pub const IO_LIMIT: Duration = Duration::from_secs(20);

/// The statuses `uringseed_webseed_requests_total` is labelled with.
pub const STATUSES: &[&str] = &[
    "200", "206", "304", "400", "404", "405", "416", "431", "503", "505", "other",
];

/// A running `uringseed serve` with its web seed on `addr`.
pub struct WebSeed {
    pub serve: Serve,
    pub addr: SocketAddr,
    /// The torrent it serves (made by it, or given).
    pub torrent: PathBuf,
    /// What it printed as `web seed: ` (empty when it serves a given torrent).
    pub url: String,
}

/// Writes `config` (TOML; empty: none) to `dir/webseed.toml`; returns the `--config` arguments.
fn config_args(dir: &Path, config: &str) -> Vec<String> {
    if config.is_empty() {
        return Vec::new();
    }
    let path = dir.join("webseed.toml");
    std::fs::write(&path, config).unwrap();
    vec!["--config".into(), path.display().to_string()]
}

/// `uringseed serve PATH --webseed 127.0.0.1:W --torrent-out DIR/made.torrent [--config]
/// EXTRA...`; waits until it is ready and its web seed takes connections. Checks the lines it
/// prints (`torrent:`, `info-hash:`, `web seed: http://127.0.0.1:W/`, `magnet:`).
pub fn serve_path(dir: &Path, path: &Path, config: &str, extra: &[&str]) -> WebSeed {
    let port = free_port();
    let torrent = dir.join("made.torrent");
    let mut args = vec![
        path.display().to_string(),
        "--webseed".into(),
        format!("127.0.0.1:{port}"),
        "--torrent-out".into(),
        torrent.display().to_string(),
    ];
    args.extend(config_args(dir, config));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut serve = serve_args("uringseed", &args, &[], dir);
    serve.ready();
    let out = serve.proc.stdout_text();
    let line = |prefix: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line\n{}", serve.proc.report()))
            .trim()
            .to_string()
    };
    let url = line("web seed: ");
    assert_eq!(
        url,
        format!("http://127.0.0.1:{port}/"),
        "{}",
        serve.proc.report()
    );
    assert_eq!(line("torrent: "), torrent.display().to_string());
    assert_eq!(line("info-hash: ").len(), 40);
    assert!(line("magnet: ").starts_with("magnet:?xt=urn:btih:"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_accepting(addr, &serve);
    WebSeed {
        serve,
        addr,
        torrent,
        url,
    }
}

/// `uringseed serve --torrent T --data D --webseed 127.0.0.1:W [--config] EXTRA...`, ready.
pub fn serve_torrent(
    dir: &Path,
    torrent: &Path,
    data: &Path,
    config: &str,
    extra: &[&str],
) -> WebSeed {
    let port = free_port();
    let mut args = vec!["--webseed".to_string(), format!("127.0.0.1:{port}")];
    args.extend(config_args(dir, config));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut serve = serve("uringseed", torrent, data, &args, &[], dir);
    serve.ready();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_accepting(addr, &serve);
    WebSeed {
        serve,
        addr,
        torrent: torrent.to_path_buf(),
        url: String::new(),
    }
}

/// Waits (at most 10 s) until `addr` accepts a TCP connection (closed at once).
fn wait_accepting(addr: SocketAddr, serve: &Serve) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        assert!(
            Instant::now() < deadline,
            "web seed {addr} takes no connection 10 s after ready\n{}",
            serve.proc.report()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL path of `rel` (a torrent's name, then `/`-separated path inside it), each segment
/// percent-encoded: `/NAME` or `/NAME/dir/file`.
pub fn url_path(rel: &str) -> String {
    rel.split('/')
        .map(|s| format!("/{}", encode_segment(s)))
        .collect()
}

/// One HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Its status line and headers, for failure messages.
    pub fn head(&self) -> String {
        let mut s = format!("{} ", self.status);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}; "));
        }
        s
    }
}

/// A client connection with bytes read ahead kept for the next response.
pub struct Conn {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect_timeout(&addr, IO_LIMIT)
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Conn::from_stream(s)
    }

    /// A connection from the loopback address `ip` (e.g. 127.0.0.2) to `addr`.
    pub fn connect_from(ip: [u8; 4], addr: SocketAddr) -> Conn {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        sock.bind(&SocketAddr::from((ip, 0)).into())
            .unwrap_or_else(|e| panic!("bind {ip:?}: {e}"));
        sock.connect_timeout(&addr.into(), IO_LIMIT)
            .unwrap_or_else(|e| panic!("connect {addr} from {ip:?}: {e}"));
        Conn::from_stream(sock.into())
    }

    pub fn from_stream(s: TcpStream) -> Conn {
        s.set_read_timeout(Some(IO_LIMIT)).unwrap();
        s.set_write_timeout(Some(IO_LIMIT)).unwrap();
        s.set_nodelay(true).unwrap();
        Conn { s, buf: Vec::new() }
    }

    /// Sends `METHOD PATH HTTP/1.1` with Host and `headers`; reads the response (no body for
    /// HEAD).
    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.send(req.as_bytes());
        self.response(method == "HEAD")
            .unwrap_or_else(|e| panic!("{method} {path} {headers:?}: {e}"))
    }

    pub fn get(&mut self, path: &str, range: Option<&str>) -> Response {
        match range {
            Some(r) => self.request("GET", path, &[("Range", r)]),
            None => self.request("GET", path, &[]),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write: {e}"));
    }

    fn fill(&mut self) -> Result<usize, String> {
        let mut chunk = [0u8; 65536];
        let n = self.s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response: head, then Content-Length bytes of body (none when `head_only`; to
    /// the end of the stream when there is no Content-Length).
    pub fn response(&mut self, head_only: bool) -> Result<Response, String> {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            if self.fill()? == 0 {
                return Err(format!(
                    "connection closed before a full response head ({} bytes: {:?})",
                    self.buf.len(),
                    String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| {
                v.parse::<usize>()
                    .map_err(|e| format!("Content-Length {v:?}: {e}"))
            })
            .transpose()?;
        let body = if head_only {
            Vec::new()
        } else if let Some(len) = len {
            while self.buf.len() < len {
                if self.fill()? == 0 {
                    return Err(format!(
                        "{status}: closed after {} of {len} body bytes",
                        self.buf.len()
                    ));
                }
            }
            self.buf.drain(..len).collect()
        } else {
            while self.fill()? > 0 {}
            std::mem::take(&mut self.buf)
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// True if the server has closed the connection (EOF or reset) within `limit`, with
    /// nothing more to read.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        self.s.set_read_timeout(Some(limit)).unwrap();
        let deadline = Instant::now() + limit;
        let mut chunk = [0u8; 4096];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) if Instant::now() < deadline => continue,
                Ok(_) => return false,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Every `uringseed_webseed_*` sample on /metrics (name with labels → value).
pub fn webseed_metrics(serve: &Serve) -> BTreeMap<String, f64> {
    let (code, body) = http_get(&serve.metrics, "/metrics", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("scrape failed: {e}\n{}", serve.proc.report()));
    assert_eq!(code, 200);
    body.lines()
        .filter(|l| l.starts_with("uringseed_webseed_"))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// The `uringseed_webseed_requests_total` series of `status`.
pub fn requests_series(status: &str) -> String {
    format!("uringseed_webseed_requests_total{{status=\"{status}\"}}")
}

/// What a test expects the counters to have moved by: requests per status (every status not
/// named must not move) and other series by name.
#[derive(Default)]
pub struct Expect {
    pub requests: BTreeMap<String, f64>,
    pub other: BTreeMap<String, f64>,
}

impl Expect {
    pub fn request(&mut self, status: u16) {
        *self.requests.entry(status.to_string()).or_default() += 1.0;
    }

    pub fn add(&mut self, series: &str, v: f64) {
        *self.other.entry(series.to_string()).or_default() += v;
    }

    /// The (series, want) pairs to check.
    fn pairs(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = STATUSES
            .iter()
            .map(|s| {
                let want = self.requests.get(*s).copied().unwrap_or(0.0);
                (requests_series(s), want)
            })
            .collect();
        for s in self.requests.keys() {
            assert!(STATUSES.contains(&s.as_str()), "status {s} has no series");
        }
        out.extend(self.other.iter().map(|(k, v)| (k.clone(), *v)));
        out
    }
}

/// Waits (at most 5 s: counters may move just after the client has its bytes) until every
/// counter in `expect` moved by exactly what it says since `before`; panics listing each
/// series that did not.
pub fn assert_deltas(serve: &Serve, before: &BTreeMap<String, f64>, expect: &Expect) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = webseed_metrics(serve);
        let wrong: Vec<String> = expect
            .pairs()
            .into_iter()
            .filter_map(|(k, want)| {
                let got =
                    now.get(&k).copied().unwrap_or(0.0) - before.get(&k).copied().unwrap_or(0.0);
                (got != want).then(|| format!("{k}: moved by {got}, want {want}"))
            })
            .collect();
        if wrong.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "webseed counters after 5 s:\n  {}\nall webseed samples now: {now:#?}",
                wrong.join("\n  ")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A deterministic generator for offsets and lengths (xorshift64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
