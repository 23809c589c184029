//! HTTP(S) tracker announces and scrapes: the announce URL, the bounded bencoded announce
//! reply parser, and the blocking client (one shared ureq agent with a keep-alive pool, rustls, trusting the roots of
//! [`super::tls`]; connect and read timeouts; replies capped in size) for both. The scrape URL
//! and reply parser are [`super::scrape`]'s.
//!
//! It owns the HTTP exchange only; scheduling and what to do with peers are the announcer's.

use super::scrape::ScrapeReply;
use super::{AnnounceRequest, AnnounceResponse, TrackerError};
use crate::bencode::{self, Node, Value};
use crate::metainfo::InfoHash;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Largest reply body read from an HTTP tracker.
pub const MAX_REPLY_BYTES: u64 = 256 << 10;

/// Percent-encodes bytes for a query string (unreserved characters stay as they are).
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The announce URL for `req` on the tracker at `base`.
pub fn announce_url(base: &str, req: &AnnounceRequest) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut url = format!(
        "{base}{sep}info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1&numwant={}&key={:08x}",
        percent_encode(&req.info_hash.0),
        percent_encode(&req.peer_id),
        req.port,
        req.uploaded,
        req.downloaded,
        req.left,
        req.numwant,
        req.key,
    );
    if let Some(e) = req.event.as_str() {
        url.push_str("&event=");
        url.push_str(e);
    }
    if let Some(id) = &req.tracker_id {
        url.push_str("&trackerid=");
        url.push_str(&percent_encode(id.as_bytes()));
    }
    url
}

/// Parses a tracker's bencoded reply.
pub fn parse_reply(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let malformed = |why: String| TrackerError::Malformed(why);
    let root = bencode::decode(body).map_err(|e| malformed(format!("not bencode: {e}")))?;
    if !matches!(root.value, Value::Dict(_)) {
        return Err(malformed("reply is not a dictionary".into()));
    }
    let text = |key: &str| -> Option<String> {
        match root.get(key).map(|n| &n.value) {
            Some(Value::Bytes(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    };
    if let Some(reason) = text("failure reason") {
        return Err(TrackerError::Failure(reason));
    }
    let int = |key: &str| -> Option<i64> {
        match root.get(key).map(|n| &n.value) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    };
    let interval = int("interval").ok_or_else(|| malformed("no `interval`".into()))?;
    let secs = |v: i64| Duration::from_secs(v.clamp(0, 7 * 24 * 3600) as u64);
    let mut peers = Vec::new();
    if let Some(p) = root.get("peers") {
        parse_peers(p, &mut peers, false)?;
    }
    if let Some(p) = root.get("peers6") {
        parse_peers(p, &mut peers, true)?;
    }
    Ok(AnnounceResponse {
        interval: secs(interval),
        min_interval: int("min interval").map(secs),
        tracker_id: text("tracker id"),
        complete: int("complete").and_then(|v| u32::try_from(v).ok()),
        incomplete: int("incomplete").and_then(|v| u32::try_from(v).ok()),
        warning: text("warning message"),
        peers,
    })
}

fn parse_peers(node: &Node<'_>, out: &mut Vec<SocketAddr>, v6: bool) -> Result<(), TrackerError> {
    match &node.value {
        Value::Bytes(b) => {
            let size = if v6 { 18 } else { 6 };
            if b.len() % size != 0 {
                return Err(TrackerError::Malformed(format!(
                    "compact peers of {} bytes are not a multiple of {size}",
                    b.len()
                )));
            }
            out.extend(b.chunks_exact(size).map(compact_peer));
            Ok(())
        }
        Value::List(items) => {
            for item in items {
                let ip = match item.get("ip").map(|n| &n.value) {
                    Some(Value::Bytes(b)) => std::str::from_utf8(b)
                        .ok()
                        .and_then(|s| s.parse::<IpAddr>().ok()),
                    _ => None,
                };
                let port = match item.get("port").map(|n| &n.value) {
                    Some(Value::Int(p)) => u16::try_from(*p).ok(),
                    _ => None,
                };
                // Entries with host names or bad ports are skipped, not fatal.
                if let (Some(ip), Some(port)) = (ip, port) {
                    out.push(SocketAddr::new(ip, port));
                }
            }
            Ok(())
        }
        _ => Err(TrackerError::Malformed(
            "`peers` is neither a string nor a list".into(),
        )),
    }
}

/// A 6-byte (IPv4) or 18-byte (IPv6) compact peer.
pub fn compact_peer(c: &[u8]) -> SocketAddr {
    let (ip, port): (IpAddr, &[u8]) = if c.len() == 6 {
        (Ipv4Addr::new(c[0], c[1], c[2], c[3]).into(), &c[4..])
    } else {
        let octets: [u8; 16] = c[..16].try_into().expect("18-byte peer");
        (Ipv6Addr::from(octets).into(), &c[16..])
    };
    SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]]))
}

/// A transport failure without the request URL (which holds our peer id and key, and perhaps
/// a passkey): its kind, message and causes, any URL in them redacted.
fn transport_error(t: &ureq::Transport) -> String {
    let mut text = t.kind().to_string();
    if let Some(m) = t.message() {
        text.push_str(": ");
        text.push_str(m);
    }
    let mut cause = std::error::Error::source(t);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    super::redact::redact_in(&text)
}

/// Announces over HTTP(S), bounded by `timeout` and [`MAX_REPLY_BYTES`].
pub fn announce(
    base: &str,
    req: &AnnounceRequest,
    timeout: Duration,
) -> Result<AnnounceResponse, TrackerError> {
    parse_reply(&get(&announce_url(base, req), timeout)?)
}

/// Scrapes `hashes` (at most [`super::scrape::MAX_HTTP_BATCH`]) at the scrape URL `scrape`
/// (BEP 48), bounded by `timeout` and [`MAX_REPLY_BYTES`].
pub fn scrape(
    scrape: &str,
    hashes: &[InfoHash],
    timeout: Duration,
) -> Result<ScrapeReply, TrackerError> {
    let body = get(&super::scrape::request_url(scrape, hashes), timeout)?;
    super::scrape::parse_reply(&body, hashes)
}

/// Idle keep-alive connections kept per tracker host (one per announce thread, so that every
/// thread can hand its connection back), and in all.
pub const IDLE_PER_HOST: usize = 16;
pub const IDLE_TOTAL: usize = 256;

/// The one HTTP agent of the process: its pool keeps connections to each tracker host alive
/// between announces (bounded by [`IDLE_PER_HOST`] and [`IDLE_TOTAL`]).
fn agent() -> &'static ureq::Agent {
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::AgentBuilder::new()
            .max_idle_connections(IDLE_TOTAL)
            .max_idle_connections_per_host(IDLE_PER_HOST)
            .redirects(3)
            .tls_config(super::tls::client_config())
            .user_agent(concat!("uringseed/", env!("CARGO_PKG_VERSION")))
            .build()
    })
}

/// GETs `url`: the body of a 200 reply, at most [`MAX_REPLY_BYTES`] of it, all within
/// `timeout`.
fn get(url: &str, timeout: Duration) -> Result<Vec<u8>, TrackerError> {
    let resp = agent()
        .get(url)
        .timeout(timeout)
        .call()
        .map_err(|e| match e {
            ureq::Error::Status(code, _) => TrackerError::Transport(format!("HTTP status {code}")),
            ureq::Error::Transport(t) => TrackerError::Transport(transport_error(&t)),
        })?;
    let mut body = Vec::new();
    resp.into_reader()
        .take(MAX_REPLY_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| TrackerError::Transport(format!("reading reply: {e}")))?;
    if body.len() as u64 > MAX_REPLY_BYTES {
        return Err(TrackerError::Malformed(format!(
            "reply longer than {MAX_REPLY_BYTES} bytes"
        )));
    }
    Ok(body)
}
