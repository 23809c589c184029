//! The built-in tracker's UDP side (BEP 15, server) sans I/O: the request decoder, the reply
//! encoders, and connection ids that need no per-client state.
//!
//! A connection id is the first 8 bytes of HMAC-SHA1(secret of a 2-minute window, client IP
//! and port). The secret of each window is derived from a seed the caller passes in, so the
//! ids of the current and the previous window are accepted and older ones are not, and an id
//! handed to one address is worthless from another. A request whose id does not check out is
//! dropped without a reply, so a spoofed source gets nothing sent to it: the only reply to an
//! unproven address is the 16-byte connect reply to a 16-byte connect.

use super::swarm::{Counts, Event, Family, PeerInfo, Reply};
use crate::metainfo::InfoHash;
use sha1::{Digest, Sha1};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The magic `protocol_id` of a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
/// How long one connection-id window lasts.
pub const WINDOW: Duration = Duration::from_secs(120);
/// The largest reply datagram.
pub const MAX_REPLY: usize = 1500;
/// Most info-hashes one scrape may carry (what fits one 1,500-byte datagram).
pub const MAX_SCRAPE_HASHES: usize = 74;
/// The longest error message sent.
pub const MAX_ERROR_MESSAGE: usize = 200;

pub const ACTION_CONNECT: u32 = 0;
pub const ACTION_ANNOUNCE: u32 = 1;
pub const ACTION_SCRAPE: u32 = 2;
pub const ACTION_ERROR: u32 = 3;

/// A decoded announce (action 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpAnnounce {
    pub connection_id: u64,
    pub transaction_id: u32,
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
    pub downloaded: u64,
    pub left: u64,
    pub uploaded: u64,
    pub event: Event,
    /// The `ip` field (0 means the source); ignored unless the caller trusts it.
    pub ip: u32,
    pub key: u32,
    /// `None` for -1 (the default) or any negative value.
    pub numwant: Option<usize>,
    pub port: u16,
}

/// A decoded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpRequest {
    Connect {
        transaction_id: u32,
    },
    Announce(UdpAnnounce),
    Scrape {
        connection_id: u64,
        transaction_id: u32,
        hashes: Vec<InfoHash>,
    },
}

/// Why a datagram did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpError {
    /// Shorter than its action needs (or than any request).
    Truncated,
    /// A connect without the magic protocol id.
    BadProtocolId,
    /// An action this side does not take.
    UnknownAction(u32),
    /// An event number past 3.
    BadEvent,
    /// A scrape with no hash, or more than [`MAX_SCRAPE_HASHES`].
    BadScrapeCount,
}

impl UdpError {
    pub fn reason(self) -> &'static str {
        match self {
            UdpError::Truncated => "truncated request",
            UdpError::BadProtocolId => "bad protocol id",
            UdpError::UnknownAction(_) => "unknown action",
            UdpError::BadEvent => "bad event",
            UdpError::BadScrapeCount => "bad number of info-hashes",
        }
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn b20(b: &[u8], at: usize) -> [u8; 20] {
    b[at..at + 20].try_into().expect("20 bytes")
}

/// The action and transaction id of a datagram at least 16 bytes long.
pub fn header(pkt: &[u8]) -> Option<(u64, u32, u32)> {
    (pkt.len() >= 16).then(|| (be64(pkt, 0), be32(pkt, 8), be32(pkt, 12)))
}

/// Decodes one request datagram. Bytes past an announce's 98 (BEP 41 options) are ignored.
pub fn decode(pkt: &[u8]) -> Result<UdpRequest, UdpError> {
    let (conn, action, tid) = header(pkt).ok_or(UdpError::Truncated)?;
    match action {
        ACTION_CONNECT => {
            if conn != PROTOCOL_ID {
                return Err(UdpError::BadProtocolId);
            }
            Ok(UdpRequest::Connect {
                transaction_id: tid,
            })
        }
        ACTION_ANNOUNCE => {
            if pkt.len() < 98 {
                return Err(UdpError::Truncated);
            }
            let event = match be32(pkt, 80) {
                0 => Event::None,
                1 => Event::Completed,
                2 => Event::Started,
                3 => Event::Stopped,
                _ => return Err(UdpError::BadEvent),
            };
            let numwant = i32::from_be_bytes(pkt[92..96].try_into().expect("4 bytes"));
            Ok(UdpRequest::Announce(UdpAnnounce {
                connection_id: conn,
                transaction_id: tid,
                info_hash: InfoHash(b20(pkt, 16)),
                peer_id: b20(pkt, 36),
                downloaded: be64(pkt, 56),
                left: be64(pkt, 64),
                uploaded: be64(pkt, 72),
                event,
                ip: be32(pkt, 84),
                key: be32(pkt, 88),
                numwant: usize::try_from(numwant).ok(),
                port: u16::from_be_bytes([pkt[96], pkt[97]]),
            }))
        }
        ACTION_SCRAPE => {
            let n = (pkt.len() - 16) / 20;
            if n == 0 || n > MAX_SCRAPE_HASHES {
                return Err(UdpError::BadScrapeCount);
            }
            let hashes = (0..n).map(|i| InfoHash(b20(pkt, 16 + 20 * i))).collect();
            Ok(UdpRequest::Scrape {
                connection_id: conn,
                transaction_id: tid,
                hashes,
            })
        }
        other => Err(UdpError::UnknownAction(other)),
    }
}

/// The 16-byte connect reply.
pub fn encode_connect(tid: u32, connection_id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
    out.extend_from_slice(&tid.to_be_bytes());
    out.extend_from_slice(&connection_id.to_be_bytes());
    out
}

/// How many peers of one family fit a reply: 6-byte entries for IPv4, 18 for IPv6.
pub fn max_peers(v6: bool) -> usize {
    (MAX_REPLY - 20) / if v6 { 18 } else { 6 }
}

/// The announce reply: the peers of the asker's family only (`v6`), cut to fit
/// [`MAX_REPLY`].
pub fn encode_announce(tid: u32, r: &Reply, v6: bool) -> Vec<u8> {
    let peers: &[PeerInfo] = if v6 { &r.peers6 } else { &r.peers4 };
    let peers = &peers[..peers.len().min(max_peers(v6))];
    let mut out = Vec::with_capacity(20 + 18 * peers.len());
    out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    out.extend_from_slice(&tid.to_be_bytes());
    out.extend_from_slice(&r.interval.to_be_bytes());
    out.extend_from_slice(&r.incomplete.to_be_bytes());
    out.extend_from_slice(&r.complete.to_be_bytes());
    for p in peers {
        super::http::put_compact(&mut out, p.addr);
    }
    out
}

/// The scrape reply: seeders, completed, leechers for each hash, in the request's order.
pub fn encode_scrape(tid: u32, counts: &[Counts]) -> Vec<u8> {
    let counts = &counts[..counts.len().min(MAX_SCRAPE_HASHES)];
    let mut out = Vec::with_capacity(8 + 12 * counts.len());
    out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
    out.extend_from_slice(&tid.to_be_bytes());
    for c in counts {
        out.extend_from_slice(&c.complete.to_be_bytes());
        out.extend_from_slice(&c.downloaded.to_be_bytes());
        out.extend_from_slice(&c.incomplete.to_be_bytes());
    }
    out
}

/// The error reply (action 3) with its message, cut to [`MAX_ERROR_MESSAGE`] bytes.
pub fn encode_error(tid: u32, message: &str) -> Vec<u8> {
    let m = &message.as_bytes()[..message.len().min(MAX_ERROR_MESSAGE)];
    let mut out = Vec::with_capacity(8 + m.len());
    out.extend_from_slice(&ACTION_ERROR.to_be_bytes());
    out.extend_from_slice(&tid.to_be_bytes());
    out.extend_from_slice(m);
    out
}

/// HMAC-SHA1 under one key, with the key's two padded blocks hashed once (a MAC then costs two
/// compressions, not four).
#[derive(Clone)]
struct Keyed {
    inner: Sha1,
    outer: Sha1,
}

/// Secrets stay out of debug output.
impl std::fmt::Debug for Keyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyed(..)")
    }
}

impl Keyed {
    fn new(key: &[u8; 20]) -> Keyed {
        let mut k = [0u8; 64];
        k[..20].copy_from_slice(key);
        let (mut ipad, mut opad) = ([0x36u8; 64], [0x5cu8; 64]);
        for i in 0..64 {
            ipad[i] ^= k[i];
            opad[i] ^= k[i];
        }
        Keyed {
            inner: Sha1::new().chain_update(ipad),
            outer: Sha1::new().chain_update(opad),
        }
    }

    fn mac(&self, msg: &[u8]) -> [u8; 20] {
        let inner = self.inner.clone().chain_update(msg).finalize();
        self.outer.clone().chain_update(inner).finalize().into()
    }
}

#[cfg(test)]
fn hmac_sha1(key: &[u8; 20], msg: &[u8]) -> [u8; 20] {
    Keyed::new(key).mac(msg)
}

/// Connection ids from rotating secrets; see the module doc.
#[derive(Clone, Debug)]
pub struct ConnectionIds {
    seed: [u8; 32],
    epoch: Instant,
    window: u64,
    current: Keyed,
    previous: Keyed,
}

impl ConnectionIds {
    /// `seed` must be secret and random in production (the OS's randomness, read by the
    /// caller); `now` starts window 0.
    pub fn new(seed: [u8; 32], now: Instant) -> ConnectionIds {
        let mut c = ConnectionIds {
            seed,
            epoch: now,
            window: 0,
            current: Keyed::new(&[0; 20]),
            previous: Keyed::new(&[0; 20]),
        };
        c.current = c.secret(0);
        c.previous = c.secret(u64::MAX);
        c
    }

    fn secret(&self, window: u64) -> Keyed {
        let key: [u8; 20] = Sha1::new()
            .chain_update(b"uringseed udp tracker secret")
            .chain_update(self.seed)
            .chain_update(window.to_be_bytes())
            .finalize()
            .into();
        Keyed::new(&key)
    }

    /// Moves to the window `now` falls in (a no-op within the same one); called by
    /// [`ConnectionIds::issue`] and [`ConnectionIds::check`] too.
    pub fn rotate(&mut self, now: Instant) {
        let w = now.saturating_duration_since(self.epoch).as_secs() / WINDOW.as_secs();
        if w == self.window {
            return;
        }
        self.previous = if w == self.window + 1 {
            self.current.clone()
        } else {
            self.secret(w - 1)
        };
        self.current = self.secret(w);
        self.window = w;
    }

    fn id(secret: &Keyed, addr: SocketAddr) -> u64 {
        let mut msg = [0u8; 18];
        match addr {
            SocketAddr::V4(a) => msg[..16].copy_from_slice(&a.ip().to_ipv6_mapped().octets()),
            SocketAddr::V6(a) => msg[..16].copy_from_slice(&a.ip().octets()),
        }
        msg[16..].copy_from_slice(&addr.port().to_be_bytes());
        let mac = secret.mac(&msg);
        u64::from_be_bytes(mac[..8].try_into().expect("8 bytes"))
    }

    /// The id to hand `addr` now.
    pub fn issue(&mut self, addr: SocketAddr, now: Instant) -> u64 {
        self.rotate(now);
        Self::id(&self.current, addr)
    }

    /// Whether `id` was issued to `addr` in this window or the previous one.
    pub fn check(&mut self, id: u64, addr: SocketAddr, now: Instant) -> bool {
        self.rotate(now);
        id == Self::id(&self.current, addr) || id == Self::id(&self.previous, addr)
    }
}

/// The reply family for a (canonical) client address.
pub fn family_of(addr: SocketAddr) -> Family {
    match addr {
        SocketAddr::V4(_) => Family::V4,
        SocketAddr::V6(_) => Family::V6,
    }
}

#[cfg(test)]
#[path = "udp_tests.rs"]
pub(super) mod tests;
