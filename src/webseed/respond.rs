//! The web seed's answer to one parsed request: the file a target names in a torrent's
//! [`WebIndex`], the conditional checks (`If-None-Match`, `If-Modified-Since`, `If-Range`), one
//! byte range (RFC 9110 14), whether the bytes may be served, and the head bytes of the answer
//! with what body follows it.

use super::date;
use super::request::{Method, Request};
use super::target::Target;
use std::collections::HashMap;
use std::fmt::Write;

/// One file of a torrent as the web seed serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebFile {
    /// Components inside the torrent (empty for a single-file torrent).
    pub path: Vec<String>,
    /// Offset of the file's first byte in the torrent's byte stream.
    pub start: u64,
    pub length: u64,
    /// Modification time, unix seconds.
    pub mtime: u64,
    /// False: missing, or a symlink leading out of the data directory (answered 404).
    pub reachable: bool,
}

/// A torrent as the web seed serves it; built once per torrent by the driver.
#[derive(Debug, Clone)]
pub struct WebIndex {
    hex: String,
    name: String,
    multi_file: bool,
    files: Vec<WebFile>,
    by_path: HashMap<Vec<String>, usize>,
}

impl WebIndex {
    /// Pad files are not passed. A path given twice keeps its first file; a file whose end
    /// would overflow the stream offset is unreachable.
    pub fn new(
        info_hash: [u8; 20],
        name: String,
        multi_file: bool,
        files: Vec<WebFile>,
    ) -> WebIndex {
        let mut hex = String::with_capacity(40);
        for b in info_hash {
            let _ = write!(hex, "{b:02x}");
        }
        let mut files = files;
        let mut by_path = HashMap::with_capacity(files.len());
        for (i, f) in files.iter_mut().enumerate() {
            if f.start.checked_add(f.length).is_none() {
                f.reachable = false;
            }
            by_path.entry(f.path.clone()).or_insert(i);
        }
        WebIndex {
            hex,
            name,
            multi_file,
            files,
            by_path,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn multi_file(&self) -> bool {
        self.multi_file
    }

    pub fn files(&self) -> &[WebFile] {
        &self.files
    }

    /// The index of the file at `path` inside the torrent: a multi-file torrent's bare name
    /// is a directory (none), a single-file torrent has no path.
    pub fn lookup(&self, path: &[String]) -> Option<usize> {
        if self.multi_file == path.is_empty() {
            return None;
        }
        self.by_path.get(path).copied()
    }

    /// The strong entity tag of file `i`: `"<info-hash hex>-<i>"`.
    pub fn etag(&self, i: usize) -> String {
        format!("\"{}-{i}\"", self.hex)
    }
}

/// Whether a range of the torrent's stream may be served now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Servable {
    Yes,
    /// Some piece in it is not verified yet: 503, retry in a minute.
    NotVerified,
    /// The file is gone or unreadable: 503, retry in five minutes.
    Gone,
}

/// What follows the head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Empty,
    /// A short error text, counted in the head's Content-Length.
    Text(Vec<u8>),
    /// This range of the torrent's stream.
    Data {
        start: u64,
        len: u64,
    },
}

/// An answer: the head to send, then the body; keep the connection open or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Status line, headers and the blank line.
    pub head: Vec<u8>,
    pub body: Body,
    pub keep_alive: bool,
}

fn phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

fn text(status: u16) -> &'static str {
    match status {
        400 => "bad request\n",
        404 => "not found\n",
        405 => "method not allowed\n",
        413 => "content too large\n",
        416 => "range not satisfiable\n",
        431 => "request header fields too large\n",
        503 => "not available now\n",
        505 => "http version not supported\n",
        _ => "error\n",
    }
}

/// Statuses after which the connection is closed: what follows the head cannot be trusted.
fn closes(status: u16) -> bool {
    matches!(status, 400 | 413 | 431 | 500 | 505)
}

struct Head(String);

impl Head {
    fn new(status: u16, now_unix: u64) -> Head {
        let mut h = Head(format!("HTTP/1.1 {status} {}\r\n", phrase(status)));
        h.add("Date", &date::format(now_unix));
        h
    }

    fn add(&mut self, name: &str, value: &str) {
        let _ = write!(self.0, "{name}: {value}\r\n");
    }

    fn finish(mut self, keep_alive: bool) -> Vec<u8> {
        self.add(
            "Connection",
            if keep_alive { "keep-alive" } else { "close" },
        );
        self.0.push_str("\r\n");
        self.0.into_bytes()
    }
}

fn error(status: u16, extra: &[(&str, &str)], head_only: bool, ka: bool, now: u64) -> Answer {
    let status = if (400..=599).contains(&status) {
        status
    } else {
        500
    };
    let keep_alive = ka && !closes(status);
    let body = text(status).as_bytes();
    let mut h = Head::new(status, now);
    h.add("Content-Type", "text/plain; charset=utf-8");
    h.add("Content-Length", &body.len().to_string());
    for (name, value) in extra {
        h.add(name, value);
    }
    Answer {
        status,
        head: h.finish(keep_alive),
        body: if head_only {
            Body::Empty
        } else {
            Body::Text(body.to_vec())
        },
        keep_alive,
    }
}

/// An error answer before a request is known (a head that did not parse): text body,
/// closing after 400, 413, 431, 500 and 505. A status outside 400-599 is sent as 500.
pub fn error_answer(status: u16, keep_alive: bool, now_unix: u64) -> Answer {
    error(status, &[], false, keep_alive, now_unix)
}

/// An error answer to a parsed request (e.g. 404 for a refused target or an unknown torrent):
/// no body for HEAD, the request's keep-alive.
pub fn error_for(req: &Request, status: u16, now_unix: u64) -> Answer {
    let head_only = req.method == Method::Head;
    error(status, &[], head_only, req.keep_alive, now_unix)
}

/// One byte range as sent, before the file length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `a-b` or `a-` (last byte inclusive).
    From(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// Digits, saturating at `u64::MAX` (a position past any file).
fn number(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t');
    let end = v.iter().rposition(|&b| b != b' ' && b != b'\t');
    match (start, end) {
        (Some(s), Some(e)) => &v[s..=e],
        _ => &[],
    }
}

/// Reads a `Range` value with exactly one byte range; `None` for anything else (ignored:
/// other units, several ranges, bad syntax, `b < a`).
pub fn parse_range(v: &[u8]) -> Option<RangeSpec> {
    let v = trim(v);
    let unit = v.get(..6)?;
    if !unit.eq_ignore_ascii_case(b"bytes=") {
        return None;
    }
    let spec = trim(v.get(6..)?);
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (a, b) = (&spec[..dash], &spec[dash + 1..]);
    if a.is_empty() {
        return number(b).map(RangeSpec::Suffix);
    }
    let a = number(a)?;
    if b.is_empty() {
        return Some(RangeSpec::From(a, None));
    }
    let b = number(b)?;
    (b >= a).then_some(RangeSpec::From(a, Some(b)))
}

/// The (first byte, length) a range selects of a file of `len` bytes; `None`: unsatisfiable.
pub fn resolve(spec: RangeSpec, len: u64) -> Option<(u64, u64)> {
    let last = len.checked_sub(1)?;
    match spec {
        RangeSpec::From(a, b) => {
            if a > last {
                return None;
            }
            let end = b.map_or(last, |b| b.min(last));
            Some((a, end - a + 1))
        }
        RangeSpec::Suffix(0) => None,
        RangeSpec::Suffix(n) => {
            let n = n.min(len);
            Some((len - n, n))
        }
    }
}

/// `If-None-Match` against our strong tag, by weak comparison; `*` matches any file.
fn none_match_hits(v: &[u8], etag: &str) -> bool {
    v.split(|&b| b == b',')
        .map(trim)
        .any(|t| t == b"*" || t.strip_prefix(b"W/").unwrap_or(t) == etag.as_bytes())
}

/// `If-Range`: a strong tag equal to ours, or a date equal to the modification time.
fn if_range_holds(v: &[u8], etag: &str, mtime: u64) -> bool {
    let v = trim(v);
    if v.starts_with(b"\"") {
        return v == etag.as_bytes();
    }
    !v.starts_with(b"W/") && date::parse(v) == Some(mtime)
}

/// Answers a GET or HEAD for `target` in `index` (whose name the driver has matched).
pub fn respond(
    req: &Request,
    target: &Target,
    index: &WebIndex,
    servable: impl Fn(u64, u64) -> Servable,
    now_unix: u64,
) -> Answer {
    let head_only = req.method == Method::Head;
    let ka = req.keep_alive;
    if req.method == Method::Other {
        return error(405, &[("Allow", "GET, HEAD")], false, ka, now_unix);
    }
    let found = (target.name == index.name)
        .then(|| index.lookup(&target.path))
        .flatten();
    let Some((i, f)) = found.and_then(|i| Some((i, index.files.get(i)?))) else {
        return error(404, &[], head_only, ka, now_unix);
    };
    if !f.reachable {
        return error(404, &[], head_only, ka, now_unix);
    }
    let etag = index.etag(i);
    let modified = date::format(f.mtime);
    let not_modified = match (&req.if_none_match, &req.if_modified_since) {
        (Some(inm), _) => none_match_hits(inm, &etag),
        (None, Some(ims)) => date::parse(ims).is_some_and(|t| f.mtime <= t),
        (None, None) => false,
    };
    if not_modified {
        let mut h = Head::new(304, now_unix);
        h.add("ETag", &etag);
        h.add("Last-Modified", &modified);
        return Answer {
            status: 304,
            head: h.finish(ka),
            body: Body::Empty,
            keep_alive: ka,
        };
    }
    // RFC 9110 14.2: only GET has range handling; HEAD answers as a GET without Range would.
    let range = req
        .range
        .as_deref()
        .filter(|_| req.method == Method::Get)
        .filter(|_| {
            req.if_range
                .as_deref()
                .is_none_or(|v| if_range_holds(v, &etag, f.mtime))
        })
        .and_then(parse_range);
    let (status, first, len) = match range {
        None => (200, 0, f.length),
        Some(spec) => match resolve(spec, f.length) {
            Some((a, n)) => (206, a, n),
            None => {
                let cr = format!("bytes */{}", f.length);
                return error(416, &[("Content-Range", &cr)], head_only, ka, now_unix);
            }
        },
    };
    if len > 0 {
        let retry = match servable(f.start.saturating_add(first), len) {
            Servable::Yes => None,
            Servable::NotVerified => Some("60"),
            Servable::Gone => Some("300"),
        };
        if let Some(after) = retry {
            return error(503, &[("Retry-After", after)], head_only, ka, now_unix);
        }
    }
    let mut h = Head::new(status, now_unix);
    h.add("Content-Type", "application/octet-stream");
    h.add("Content-Length", &len.to_string());
    if status == 206 {
        let last = first + (len - 1);
        h.add(
            "Content-Range",
            &format!("bytes {first}-{last}/{}", f.length),
        );
    }
    h.add("Accept-Ranges", "bytes");
    h.add("Last-Modified", &modified);
    h.add("ETag", &etag);
    let body = if head_only || len == 0 {
        Body::Empty
    } else {
        Body::Data {
            start: f.start.saturating_add(first),
            len,
        }
    };
    Answer {
        status,
        head: h.finish(ka),
        body,
        keep_alive: ka,
    }
}

#[cfg(test)]
#[path = "respond_tests.rs"]
mod tests;
