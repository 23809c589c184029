//! The announcer's UDP tracker client: one task on the announcer's runtime that drives a
//! [`Mux`] over one socket per address family (IPv6 opened on first use), so every UDP
//! announce and scrape of every torrent shares two sockets and no threads. Callers submit a
//! job and await its answer; the job ends at its deadline whatever happens.
//!
//! It owns the sockets and the job table; the packets and the protocol are the mux's.

use super::scrape::ScrapeReply;
use super::udp_mux::{Answer, JobId, Mux, Query};
use super::{AnnounceRequest, AnnounceResponse, TrackerError};
use crate::metainfo::InfoHash;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

type Reply = Result<Answer, TrackerError>;

struct Submit {
    addr: SocketAddr,
    query: Query,
    deadline: Instant,
    reply: oneshot::Sender<Reply>,
}

/// A handle to the client task; the task ends when the last handle is dropped and its jobs
/// are done.
#[derive(Clone)]
pub struct UdpClient {
    tx: mpsc::UnboundedSender<Submit>,
    ignored: Arc<AtomicU64>,
}

impl UdpClient {
    /// Starts the client task on the current tokio runtime. `base`: first resend timeout;
    /// `retries`: resends after the first send.
    pub fn start(base: Duration, retries: u32) -> UdpClient {
        let (tx, rx) = mpsc::unbounded_channel();
        let ignored = Arc::new(AtomicU64::new(0));
        tokio::spawn(drive(rx, Mux::new(base, retries, seed()), ignored.clone()));
        UdpClient { tx, ignored }
    }

    /// Datagrams received that belonged to no job in flight.
    pub fn ignored(&self) -> u64 {
        self.ignored.load(Ordering::Relaxed)
    }

    async fn submit(&self, url: &str, query: Query, timeout: Duration) -> Reply {
        let deadline = Instant::now() + timeout;
        let host_port = super::udp::host_port(url)?;
        let resolve = tokio::net::lookup_host(host_port.as_str());
        let addr = tokio::time::timeout(timeout, resolve)
            .await
            .map_err(|_| TrackerError::Transport(format!("resolving {host_port}: timed out")))?
            .map_err(|e| TrackerError::Transport(format!("resolving {host_port}: {e}")))?
            .next()
            .ok_or_else(|| TrackerError::Transport(format!("{host_port} has no address")))?;
        let (reply, rx) = oneshot::channel();
        let job = Submit {
            addr,
            query,
            deadline,
            reply,
        };
        let gone = || TrackerError::Transport("UDP client stopped".into());
        self.tx.send(job).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    pub async fn announce(
        &self,
        url: &str,
        req: &AnnounceRequest,
        timeout: Duration,
    ) -> Result<AnnounceResponse, TrackerError> {
        match self
            .submit(url, Query::Announce(req.clone()), timeout)
            .await?
        {
            Answer::Announce(a) => Ok(a),
            Answer::Scrape(_) => unreachable!("a scrape answer to an announce"),
        }
    }

    /// Scrapes at most [`super::scrape::MAX_UDP_BATCH`] torrents (any more are left out).
    pub async fn scrape(
        &self,
        url: &str,
        hashes: &[InfoHash],
        timeout: Duration,
    ) -> Result<ScrapeReply, TrackerError> {
        match self
            .submit(url, Query::Scrape(hashes.to_vec()), timeout)
            .await?
        {
            Answer::Scrape(s) => Ok(s),
            Answer::Announce(_) => unreachable!("an announce answer to a scrape"),
        }
    }
}

fn seed() -> u64 {
    u64::from(crate::state::random_u32()) << 32 | u64::from(crate::state::random_u32())
}

/// Receive buffer asked for on the tracker sockets.
const RECV_BUFFER: usize = 4 << 20;

async fn bind(v6: bool) -> Option<UdpSocket> {
    let any: SocketAddr = if v6 { "[::]:0" } else { "0.0.0.0:0" }
        .parse()
        .expect("address");
    let open = || -> std::io::Result<UdpSocket> {
        let domain = if v6 {
            socket2::Domain::IPV6
        } else {
            socket2::Domain::IPV4
        };
        let s = socket2::Socket::new(domain, socket2::Type::DGRAM, None)?;
        // Replies to a burst of announces arrive together; a larger buffer (the kernel caps
        // it at net.core.rmem_max) keeps them from being dropped before they are read.
        let _ = s.set_recv_buffer_size(RECV_BUFFER);
        s.set_nonblocking(true)?;
        s.bind(&any.into())?;
        UdpSocket::from_std(s.into())
    };
    match open() {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("UDP tracker socket ({any}): {e}");
            None
        }
    }
}

async fn recv(sock: &Option<UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn drive(mut rx: mpsc::UnboundedReceiver<Submit>, mut mux: Mux, ignored: Arc<AtomicU64>) {
    let v4 = bind(false).await;
    let mut v6: Option<UdpSocket> = None;
    let mut waiting: HashMap<JobId, oneshot::Sender<Reply>> = HashMap::new();
    let (mut next_id, mut closed) = (0u64, false);
    let (mut buf4, mut buf6) = (vec![0u8; 65536], vec![0u8; 65536]);
    loop {
        loop {
            while let Some((addr, packet)) = mux.poll_transmit() {
                if addr.is_ipv6() && v6.is_none() {
                    v6 = bind(true).await;
                }
                let sock = if addr.is_ipv6() { &v6 } else { &v4 };
                let sent = match sock {
                    Some(s) => s.send_to(&packet, addr).await.map_err(|e| e.to_string()),
                    None => Err("no socket for the address family".into()),
                };
                if let Err(e) = sent {
                    mux.handle_send_error(addr, &e);
                }
            }
            let mut any = false;
            while let Some((id, result)) = mux.poll_done() {
                any = true;
                if let Some(tx) = waiting.remove(&id) {
                    let _ = tx.send(result);
                }
            }
            if !any {
                break;
            }
        }
        ignored.store(mux.ignored, Ordering::Relaxed);
        if closed && waiting.is_empty() {
            return;
        }
        let timeout = mux.poll_timeout();
        let sleep = async {
            match timeout {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            job = rx.recv(), if !closed => match job {
                Some(job) => {
                    next_id += 1;
                    waiting.insert(next_id, job.reply);
                    mux.handle_submit(next_id, job.addr, job.query, job.deadline, Instant::now());
                }
                None => closed = true,
            },
            got = recv(&v4, &mut buf4) => {
                if let Ok((n, from)) = got {
                    mux.handle_datagram(from, &buf4[..n], Instant::now());
                }
            }
            got = recv(&v6, &mut buf6) => {
                if let Ok((n, from)) = got {
                    mux.handle_datagram(from, &buf6[..n], Instant::now());
                }
            }
            _ = sleep => mux.handle_timeout(Instant::now()),
        }
    }
}
