//! UDP tracker protocol (BEP 15): packet encoding and checked decoding, and the blocking
//! exchange (connect, then announce or scrape; connection id reused for a minute,
//! retransmission after 15·2^n seconds up to a bound, replies from other addresses or with
//! other transaction ids ignored).
//!
//! It owns the UDP exchange only; scheduling and what to do with peers are the announcer's.

use super::scrape::{ScrapeCounts, ScrapeReply, MAX_UDP_BATCH};
use super::{AnnounceRequest, AnnounceResponse, Event, TrackerError};
use crate::metainfo::InfoHash;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
pub const ACTION_CONNECT: u32 = 0;
pub const ACTION_ANNOUNCE: u32 = 1;
pub const ACTION_SCRAPE: u32 = 2;
pub const ACTION_ERROR: u32 = 3;
/// How long a connection id may be used (BEP 15: one minute).
pub const CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(60);

pub fn connect_request(tid: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&PROTOCOL_ID.to_be_bytes());
    b[8..12].copy_from_slice(&ACTION_CONNECT.to_be_bytes());
    b[12..].copy_from_slice(&tid.to_be_bytes());
    b
}

pub fn announce_request(conn: u64, tid: u32, req: &AnnounceRequest) -> [u8; 98] {
    let mut b = [0u8; 98];
    b[..8].copy_from_slice(&conn.to_be_bytes());
    b[8..12].copy_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    b[12..16].copy_from_slice(&tid.to_be_bytes());
    b[16..36].copy_from_slice(&req.info_hash.0);
    b[36..56].copy_from_slice(&req.peer_id);
    b[56..64].copy_from_slice(&req.downloaded.to_be_bytes());
    b[64..72].copy_from_slice(&req.left.to_be_bytes());
    b[72..80].copy_from_slice(&req.uploaded.to_be_bytes());
    let event: u32 = match req.event {
        Event::None => 0,
        Event::Completed => 1,
        Event::Started => 2,
        Event::Stopped => 3,
    };
    b[80..84].copy_from_slice(&event.to_be_bytes());
    // 84..88: IP address 0 (the tracker uses the sender's).
    b[88..92].copy_from_slice(&req.key.to_be_bytes());
    b[92..96].copy_from_slice(&(req.numwant as i32).to_be_bytes());
    b[96..98].copy_from_slice(&req.port.to_be_bytes());
    b
}

/// A scrape request for `hashes` (at most [`MAX_UDP_BATCH`]; any more are left out).
pub fn scrape_request(conn: u64, tid: u32, hashes: &[InfoHash]) -> Vec<u8> {
    let hashes = &hashes[..hashes.len().min(MAX_UDP_BATCH)];
    let mut b = Vec::with_capacity(16 + 20 * hashes.len());
    b.extend_from_slice(&conn.to_be_bytes());
    b.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
    b.extend_from_slice(&tid.to_be_bytes());
    for ih in hashes {
        b.extend_from_slice(&ih.0);
    }
    b
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Checks a reply's action and transaction id. `Ok(None)`: not ours (another transaction);
/// `Err`: the tracker reported an error or the packet is malformed.
fn header(p: &[u8], action: u32, tid: u32) -> Result<Option<()>, TrackerError> {
    if p.len() < 8 {
        return Err(TrackerError::Malformed(format!(
            "UDP reply of {} bytes",
            p.len()
        )));
    }
    if be32(&p[4..8]) != tid {
        return Ok(None);
    }
    match be32(&p[..4]) {
        ACTION_ERROR => Err(TrackerError::Failure(
            String::from_utf8_lossy(&p[8..]).into_owned(),
        )),
        a if a == action => Ok(Some(())),
        a => Err(TrackerError::Malformed(format!(
            "UDP reply with action {a}, expected {action}"
        ))),
    }
}

/// Decodes a connect reply into the connection id; `Ok(None)` for another transaction's packet.
pub fn parse_connect(p: &[u8], tid: u32) -> Result<Option<u64>, TrackerError> {
    if header(p, ACTION_CONNECT, tid)?.is_none() {
        return Ok(None);
    }
    if p.len() < 16 {
        return Err(TrackerError::Malformed(
            "truncated UDP connect reply".into(),
        ));
    }
    Ok(Some(u64::from_be_bytes(
        p[8..16].try_into().expect("8 bytes"),
    )))
}

/// Decodes an announce reply; peers are 6 bytes (IPv4) or 18 (IPv6, when `v6`).
pub fn parse_announce(
    p: &[u8],
    tid: u32,
    v6: bool,
) -> Result<Option<AnnounceResponse>, TrackerError> {
    if header(p, ACTION_ANNOUNCE, tid)?.is_none() {
        return Ok(None);
    }
    if p.len() < 20 {
        return Err(TrackerError::Malformed(
            "truncated UDP announce reply".into(),
        ));
    }
    let size = if v6 { 18 } else { 6 };
    let peers = &p[20..];
    if peers.len() % size != 0 {
        return Err(TrackerError::Malformed(format!(
            "UDP peer list of {} bytes is not a multiple of {size}",
            peers.len()
        )));
    }
    Ok(Some(AnnounceResponse {
        interval: Duration::from_secs(u64::from(be32(&p[8..12]))),
        min_interval: None,
        tracker_id: None,
        incomplete: Some(be32(&p[12..16])),
        complete: Some(be32(&p[16..20])),
        warning: None,
        peers: peers
            .chunks_exact(size)
            .map(super::http::compact_peer)
            .collect(),
    }))
}

/// Decodes a scrape reply to a request for `asked` torrents: (seeders, completed, leechers)
/// per torrent in request order. A tracker may list fewer (the rest are unknown); entries
/// beyond `asked` are ignored; a partial entry makes the reply malformed. `Ok(None)` for
/// another transaction's packet.
pub fn parse_scrape(
    p: &[u8],
    tid: u32,
    asked: usize,
) -> Result<Option<Vec<ScrapeCounts>>, TrackerError> {
    if header(p, ACTION_SCRAPE, tid)?.is_none() {
        return Ok(None);
    }
    let body = &p[8..];
    if body.len() % 12 != 0 {
        return Err(TrackerError::Malformed(format!(
            "UDP scrape reply body of {} bytes is not a multiple of 12",
            body.len()
        )));
    }
    Ok(Some(
        body.chunks_exact(12)
            .take(asked)
            .map(|e| ScrapeCounts {
                seeders: Some(be32(&e[..4])),
                completed: Some(be32(&e[4..8])),
                leechers: Some(be32(&e[8..])),
            })
            .collect(),
    ))
}

/// The `host:port` of a `udp://host:port[/path]` URL.
pub fn host_port(url: &str) -> Result<String, TrackerError> {
    let rest = url
        .strip_prefix("udp://")
        .ok_or_else(|| TrackerError::Transport(format!("not a udp URL: {}", super::redact(url))))?;
    let host_port = rest.split('/').next().unwrap_or_default().to_string();
    if !host_port.contains(':') {
        return Err(TrackerError::Transport(format!(
            "no port in {}",
            super::redact(url)
        )));
    }
    Ok(host_port)
}

/// A blocking UDP tracker client and its cached connection id (for tools and tests; the
/// server's announcer multiplexes through [`super::udp_client`]).
pub struct UdpTracker {
    pub host_port: String,
    connection: Option<(u64, Instant)>,
    /// Retransmissions after the first send (BEP 15 allows up to 8).
    pub max_retries: u32,
    /// Base of the retransmission timeout (BEP 15: 15 s).
    pub base_timeout: Duration,
}

impl UdpTracker {
    /// From a `udp://host:port[/path]` URL.
    pub fn new(
        url: &str,
        max_retries: u32,
        base_timeout: Duration,
    ) -> Result<UdpTracker, TrackerError> {
        Ok(UdpTracker {
            host_port: host_port(url)?,
            connection: None,
            max_retries,
            base_timeout,
        })
    }

    /// The tracker's address and a socket to talk to it from.
    fn open(&self) -> Result<(UdpSocket, SocketAddr), TrackerError> {
        let addr = self
            .host_port
            .to_socket_addrs()
            .map_err(|e| TrackerError::Transport(format!("resolving {}: {e}", self.host_port)))?
            .next()
            .ok_or_else(|| TrackerError::Transport(format!("{} has no address", self.host_port)))?;
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0".parse().expect("addr")
        } else {
            "0.0.0.0:0".parse().expect("addr")
        };
        let sock = UdpSocket::bind(bind)
            .map_err(|e| TrackerError::Transport(format!("UDP socket: {e}")))?;
        Ok((sock, addr))
    }

    /// The cached connection id while it is fresh, else a new one from a connect exchange.
    fn connection_id(
        &mut self,
        sock: &UdpSocket,
        addr: SocketAddr,
        tid_source: &mut impl FnMut() -> u32,
    ) -> Result<u64, TrackerError> {
        if let Some((id, at)) = self.connection {
            if at.elapsed() < CONNECTION_ID_LIFETIME {
                return Ok(id);
            }
        }
        let tid = tid_source();
        let id = self.exchange(sock, addr, &connect_request(tid), |p| parse_connect(p, tid))?;
        self.connection = Some((id, Instant::now()));
        Ok(id)
    }

    pub fn announce(
        &mut self,
        req: &AnnounceRequest,
        tid_source: &mut impl FnMut() -> u32,
    ) -> Result<AnnounceResponse, TrackerError> {
        let (sock, addr) = self.open()?;
        let conn = self.connection_id(&sock, addr, tid_source)?;
        let tid = tid_source();
        let packet = announce_request(conn, tid, req);
        self.exchange(&sock, addr, &packet, |p| {
            parse_announce(p, tid, addr.is_ipv6())
        })
        .inspect_err(|_| {
            // A stale or refused connection id must not be reused.
            self.connection = None;
        })
    }

    /// Scrapes `hashes` (at most [`MAX_UDP_BATCH`]; any more are left out).
    pub fn scrape(
        &mut self,
        hashes: &[InfoHash],
        tid_source: &mut impl FnMut() -> u32,
    ) -> Result<ScrapeReply, TrackerError> {
        let hashes = &hashes[..hashes.len().min(MAX_UDP_BATCH)];
        let (sock, addr) = self.open()?;
        let conn = self.connection_id(&sock, addr, tid_source)?;
        let tid = tid_source();
        let packet = scrape_request(conn, tid, hashes);
        let counts = self
            .exchange(&sock, addr, &packet, |p| parse_scrape(p, tid, hashes.len()))
            .inspect_err(|_| self.connection = None)?;
        Ok(ScrapeReply {
            files: hashes.iter().copied().zip(counts).collect(),
            min_request_interval: None,
            skipped: 0,
        })
    }

    /// Sends `packet` and waits for a matching reply, retransmitting after 15·2^n seconds.
    fn exchange<T>(
        &self,
        sock: &UdpSocket,
        addr: SocketAddr,
        packet: &[u8],
        parse: impl Fn(&[u8]) -> Result<Option<T>, TrackerError>,
    ) -> Result<T, TrackerError> {
        let mut buf = vec![0u8; 65536];
        for n in 0..=self.max_retries {
            sock.send_to(packet, addr)
                .map_err(|e| TrackerError::Transport(format!("UDP send: {e}")))?;
            let deadline = Instant::now() + self.base_timeout * 2u32.pow(n);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                sock.set_read_timeout(Some(left))
                    .map_err(|e| TrackerError::Transport(e.to_string()))?;
                match sock.recv_from(&mut buf) {
                    Ok((len, from)) if from == addr => {
                        if let Some(v) = parse(&buf[..len])? {
                            return Ok(v);
                        }
                    }
                    Ok(_) => {} // someone else's packet
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(TrackerError::Transport(format!("UDP receive: {e}"))),
                }
            }
        }
        Err(TrackerError::Transport(format!(
            "no reply from {} after {} tries",
            self.host_port,
            self.max_retries + 1
        )))
    }
}
