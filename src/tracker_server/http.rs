//! The built-in tracker's HTTP side sans I/O: parsing an `/announce` or `/scrape` request
//! target (path and query string, percent-decoded, bounded) and building the bencoded answers
//! (BEP 3 dictionary peers, BEP 23 compact `peers`, BEP 7 `peers6`, `failure reason`, the
//! scrape `files` dictionary).
//!
//! The client's address comes from the connection, not the query: an `ip` parameter is kept
//! only so the caller can honour it when configured to.

use super::swarm::{Counts, Event, PeerInfo, Reply};
use crate::metainfo::hex_digit as hex;
use crate::metainfo::InfoHash;
use std::net::{IpAddr, SocketAddr};

/// Longest query string accepted (after the `?`).
pub const MAX_QUERY: usize = 4096;
/// Longest path accepted (before the `?`).
pub const MAX_PATH: usize = 64;
/// Most `info_hash` parameters in one scrape.
pub const MAX_SCRAPE_HASHES: usize = 32;

/// A decoded announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpAnnounce {
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Event,
    /// Absent counts as compact (what every current client asks for).
    pub compact: bool,
    pub no_peer_id: bool,
    pub numwant: Option<usize>,
    /// The `ip` parameter; ignored unless the caller trusts it.
    pub ip: Option<IpAddr>,
}

/// A decoded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpRequest {
    Announce(HttpAnnounce),
    Scrape(Vec<InfoHash>),
}

/// Why a request target was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// Not `/announce` or `/scrape` (answered 404).
    NotFound,
    /// Path or query past its bound.
    TooLong,
    /// A `%` not followed by two hex digits, or a byte no request target holds.
    BadEscape,
    /// A required parameter is missing.
    Missing(&'static str),
    /// A parameter's value is malformed.
    Invalid(&'static str),
    /// More than [`MAX_SCRAPE_HASHES`] info-hashes in a scrape.
    TooManyHashes,
}

impl HttpError {
    /// The `failure reason` text.
    pub fn reason(self) -> String {
        match self {
            HttpError::NotFound => "not found".into(),
            HttpError::TooLong => "request too long".into(),
            HttpError::BadEscape => "bad percent escape".into(),
            HttpError::Missing(k) => format!("missing {k}"),
            HttpError::Invalid(k) => format!("invalid {k}"),
            HttpError::TooManyHashes => format!("at most {MAX_SCRAPE_HASHES} info_hash per scrape"),
        }
    }
}

/// Percent-decodes `s` into `out` (cleared first). `+` stays `+`: binary values may carry it
/// unescaped, and no tracker parameter holds a space.
fn unescape(s: &[u8], out: &mut Vec<u8>) -> Result<(), HttpError> {
    out.clear();
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'%' {
            let hi = s.get(i + 1).copied().and_then(hex);
            let lo = s.get(i + 2).copied().and_then(hex);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(HttpError::BadEscape),
            }
            i += 3;
        } else if b.is_ascii_graphic() {
            out.push(b);
            i += 1;
        } else {
            return Err(HttpError::BadEscape);
        }
    }
    Ok(())
}

fn bytes20(v: &[u8], name: &'static str) -> Result<[u8; 20], HttpError> {
    v.try_into().map_err(|_| HttpError::Invalid(name))
}

/// A decimal without sign, at most 20 digits, that fits a u64.
fn number(v: &[u8], name: &'static str) -> Result<u64, HttpError> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::Invalid(name));
    }
    v.iter()
        .try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(HttpError::Invalid(name))
}

/// Parses a request target such as `/announce?info_hash=%12...&port=6881`.
pub fn parse_target(target: &[u8]) -> Result<HttpRequest, HttpError> {
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(q) => (&target[..q], &target[q + 1..]),
        None => (target, &[][..]),
    };
    if path.len() > MAX_PATH || query.len() > MAX_QUERY {
        return Err(HttpError::TooLong);
    }
    let path = path.strip_suffix(b"/").unwrap_or(path);
    match path {
        b"/announce" => parse_announce(query).map(HttpRequest::Announce),
        b"/scrape" => parse_scrape(query).map(HttpRequest::Scrape),
        _ => Err(HttpError::NotFound),
    }
}

/// Splits the query into percent-decoded (key, value) pairs, calling `f` on each.
fn each_param(
    query: &[u8],
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), HttpError>,
) -> Result<(), HttpError> {
    let (mut k, mut v) = (Vec::new(), Vec::new());
    for part in query.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (rk, rv) = match part.iter().position(|&b| b == b'=') {
            Some(e) => (&part[..e], &part[e + 1..]),
            None => (part, &[][..]),
        };
        unescape(rk, &mut k)?;
        unescape(rv, &mut v)?;
        f(&k, &v)?;
    }
    Ok(())
}

fn parse_announce(query: &[u8]) -> Result<HttpAnnounce, HttpError> {
    let (mut ih, mut pid, mut port) = (None, None, None);
    let mut a = HttpAnnounce {
        info_hash: InfoHash([0; 20]),
        peer_id: [0; 20],
        port: 0,
        uploaded: 0,
        downloaded: 0,
        left: 0,
        event: Event::None,
        compact: true,
        no_peer_id: false,
        numwant: None,
        ip: None,
    };
    let mut left = None;
    each_param(query, |k, v| {
        match k {
            b"info_hash" => {
                if ih.is_some() {
                    return Err(HttpError::Invalid("info_hash"));
                }
                ih = Some(bytes20(v, "info_hash")?);
            }
            b"peer_id" => pid = Some(bytes20(v, "peer_id")?),
            b"port" => {
                let p = number(v, "port")?;
                port = Some(u16::try_from(p).map_err(|_| HttpError::Invalid("port"))?);
            }
            b"uploaded" => a.uploaded = number(v, "uploaded")?,
            b"downloaded" => a.downloaded = number(v, "downloaded")?,
            b"left" => left = Some(number(v, "left")?),
            b"event" => {
                a.event = match v {
                    b"started" => Event::Started,
                    b"stopped" => Event::Stopped,
                    b"completed" => Event::Completed,
                    // BEP 21's `paused` and an empty value are regular announces.
                    b"" | b"empty" | b"paused" => Event::None,
                    _ => return Err(HttpError::Invalid("event")),
                }
            }
            b"compact" => a.compact = v != b"0",
            b"no_peer_id" => a.no_peer_id = v != b"0",
            // Some clients send -1 for "the default": a negative value is left as None.
            b"numwant" if v.first() != Some(&b'-') => {
                let n = number(v, "numwant")?;
                a.numwant = Some(usize::try_from(n).unwrap_or(usize::MAX));
            }
            b"ip" => {
                a.ip = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
            }
            _ => {}
        }
        Ok(())
    })?;
    a.info_hash = InfoHash(ih.ok_or(HttpError::Missing("info_hash"))?);
    a.peer_id = pid.ok_or(HttpError::Missing("peer_id"))?;
    a.port = port.ok_or(HttpError::Missing("port"))?;
    if a.port == 0 {
        return Err(HttpError::Invalid("port"));
    }
    a.left = left.ok_or(HttpError::Missing("left"))?;
    Ok(a)
}

fn parse_scrape(query: &[u8]) -> Result<Vec<InfoHash>, HttpError> {
    let mut out = Vec::new();
    each_param(query, |k, v| {
        if k == b"info_hash" {
            if out.len() == MAX_SCRAPE_HASHES {
                return Err(HttpError::TooManyHashes);
            }
            out.push(InfoHash(bytes20(v, "info_hash")?));
        }
        Ok(())
    })?;
    // No whole-tracker scrape: it would be as large as the table.
    if out.is_empty() {
        return Err(HttpError::Missing("info_hash"));
    }
    Ok(out)
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(s);
}

fn put_int(out: &mut Vec<u8>, n: i64) {
    out.push(b'i');
    out.extend_from_slice(n.to_string().as_bytes());
    out.push(b'e');
}

/// Appends a peer's compact form: 4 or 16 address bytes, then the port, big-endian.
pub fn put_compact(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => out.extend_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => out.extend_from_slice(&a.ip().octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// The bencoded announce answer: compact `peers` and `peers6`, or (`compact` false) a list of
/// dictionaries with `ip`, `port` and, unless `no_peer_id`, `peer id`.
pub fn encode_announce(r: &Reply, compact: bool, no_peer_id: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 6 * r.peers4.len() + 18 * r.peers6.len());
    out.push(b'd');
    put_str(&mut out, b"complete");
    put_int(&mut out, i64::from(r.complete));
    put_str(&mut out, b"incomplete");
    put_int(&mut out, i64::from(r.incomplete));
    put_str(&mut out, b"interval");
    put_int(&mut out, i64::from(r.interval));
    put_str(&mut out, b"min interval");
    put_int(&mut out, i64::from(r.min_interval));
    put_str(&mut out, b"peers");
    if compact {
        let mut p = Vec::with_capacity(6 * r.peers4.len());
        r.peers4.iter().for_each(|x| put_compact(&mut p, x.addr));
        put_str(&mut out, &p);
        let mut p = Vec::with_capacity(18 * r.peers6.len());
        r.peers6.iter().for_each(|x| put_compact(&mut p, x.addr));
        put_str(&mut out, b"peers6");
        put_str(&mut out, &p);
    } else {
        out.push(b'l');
        for p in r.peers4.iter().chain(&r.peers6) {
            put_dict_peer(&mut out, p, no_peer_id);
        }
        out.push(b'e');
    }
    out.push(b'e');
    out
}

fn put_dict_peer(out: &mut Vec<u8>, p: &PeerInfo, no_peer_id: bool) {
    out.push(b'd');
    put_str(out, b"ip");
    put_str(out, p.addr.ip().to_string().as_bytes());
    if !no_peer_id {
        put_str(out, b"peer id");
        put_str(out, &p.peer_id);
    }
    put_str(out, b"port");
    put_int(out, i64::from(p.addr.port()));
    out.push(b'e');
}

/// The bencoded scrape answer: `files`, keyed by the raw info-hash (sorted, as bencode wants).
pub fn encode_scrape(entries: &[(InfoHash, Counts)]) -> Vec<u8> {
    let mut sorted: Vec<&(InfoHash, Counts)> = entries.iter().collect();
    sorted.sort_by_key(|(ih, _)| *ih);
    sorted.dedup_by_key(|(ih, _)| *ih);
    let mut out = Vec::with_capacity(16 + 80 * sorted.len());
    out.extend_from_slice(b"d5:filesd");
    for (ih, c) in sorted {
        put_str(&mut out, &ih.0);
        out.push(b'd');
        put_str(&mut out, b"complete");
        put_int(&mut out, i64::from(c.complete));
        put_str(&mut out, b"downloaded");
        put_int(&mut out, i64::from(c.downloaded));
        put_str(&mut out, b"incomplete");
        put_int(&mut out, i64::from(c.incomplete));
        out.push(b'e');
    }
    out.extend_from_slice(b"ee");
    out
}

/// The bencoded `{"failure reason": reason}`.
pub fn encode_failure(reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + reason.len());
    out.push(b'd');
    put_str(&mut out, b"failure reason");
    put_str(&mut out, reason.as_bytes());
    out.push(b'e');
    out
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
