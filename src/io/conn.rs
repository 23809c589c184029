//! One peer connection, driven over any backend's [`Stream`] and [`Disk`]: the handshake
//! (`super::handshake`) under its timeout, then a reader (bytes into the sans-IO state
//! machine, [`crate::wire::Peer`]) and a writer (control bytes, and runs of requested blocks
//! fetched from the page cache or read from disk, sent with one vectored write per run) side by
//! side, until the peer closes, breaks a rule, the torrent is removed or the server stops.
//!
//! Time comes from tokio's clock (`tokio::time::Instant`), so the in-process harness
//! (`super::mem`) can run connections under paused time. This module opens no sockets and no
//! files: the worker hands it a stream, the torrent its files.

use super::handshake::Opened;
use super::stream::{send_all, Disk, SendError, Stream};
use crate::metainfo::InfoHash;
use crate::reasons::{ChokeCmd, DropReason, RejectReason};
use crate::state::{PeerHandle, Shared, TorrentCtx};
use crate::wire::message::piece_header;
use crate::wire::mse::Rc4;
use crate::wire::{Event, Limits, Peer};
use bytes::Bytes;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest run of contiguous requested blocks read and sent in one go.
pub const MAX_RUN_BYTES: u64 = 1 << 20;
/// After a run had to be read from disk, the connection keeps reading (and so keeps the
/// kernel's readahead going) for this many bytes before it tries the page cache again.
pub const COLD_STREAK_BYTES: u64 = 16 << 20;
/// Bytes read from the socket per read.
const READ_BUF: usize = 4 << 10;

/// Now, on tokio's clock (paused in the harness, the real clock otherwise).
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// How a connection ended (a metrics label unless it is a plain close).
pub(super) enum End {
    Closed,
    Shutdown,
    Dropped(DropReason),
}

impl From<SendError> for End {
    fn from(e: SendError) -> End {
        match e {
            SendError::Closed => End::Closed,
            SendError::Stalled => End::Dropped(DropReason::WriteStall),
        }
    }
}

/// Serves one connection until it closes, misbehaves or the server shuts down. `dialed` is
/// the torrent of a connection we made (we send our handshake first), `None` for an incoming one.
pub async fn serve<S: Stream, D: Disk>(
    shared: Arc<Shared>,
    stream: S,
    disk: &D,
    addr: SocketAddr,
    dialed: Option<InfoHash>,
) {
    // Boxed: the handshake's state (MSE keys, buffers) is freed once it is over instead of
    // staying part of every connection's future.
    let end = match Box::pin(super::handshake::open(&shared, &stream, dialed)).await {
        Ok(opened) => connected(&shared, &stream, disk, opened, addr, dialed.is_some()).await,
        Err(reason) => End::Dropped(reason),
    };
    // Counted before the socket closes, so whoever sees the close also sees the count.
    match end {
        End::Dropped(reason) => {
            shared.stats.count_dropped(reason);
            tracing::debug!(%addr, %reason, "peer dropped");
        }
        End::Closed | End::Shutdown => tracing::trace!(%addr, "peer closed"),
    }
    stream.shutdown();
}

async fn connected<S: Stream, D: Disk>(
    shared: &Shared,
    stream: &S,
    disk: &D,
    opened: Opened,
    addr: SocketAddr,
    outgoing: bool,
) -> End {
    let Opened {
        hs,
        ctx,
        rx,
        tx,
        leftover,
        kind,
    } = opened;
    if !ctx.add_peer_id(hs.peer_id) {
        return End::Dropped(DropReason::DuplicatePeer);
    }
    let ipv6 = addr.ip().to_canonical().is_ipv6();
    shared.stats.peers.add(outgoing, ipv6);
    shared.stats.count_handshake(kind);
    tracing::debug!(%addr, handshake = %kind, outgoing, "peer connected");
    let key = shared.next_peer_key();
    let now = now();
    let peer = RefCell::new(Peer::new(
        ctx.view.clone(),
        Limits {
            listen_port: shared.listen_port.load(Ordering::Relaxed),
            ..shared.limits.clone()
        },
        &hs,
        shared.peer_id,
        !outgoing,
        now,
    ));
    let handle = ctx.join(key, now);
    ctx.peers.fetch_add(1, Ordering::Relaxed);
    let end = tokio::select! {
        end = reader(stream, Inbound { shared, peer: &peer, ctx: &ctx, key, handle: &handle }, rx, leftover) => end,
        end = writer(shared, stream, disk, &peer, &ctx, &handle, tx) => end,
    };
    ctx.peers.fetch_sub(1, Ordering::Relaxed);
    ctx.remove_peer_id(&hs.peer_id);
    shared.stats.peers.remove(outgoing, ipv6);
    ctx.leave(key, self::now());
    end
}

/// The peer's side of one connection: what the peer sends goes through the state machine.
struct Inbound<'a> {
    shared: &'a Shared,
    peer: &'a RefCell<Peer>,
    ctx: &'a TorrentCtx,
    key: u64,
    handle: &'a PeerHandle,
}

impl Inbound<'_> {
    /// Feeds received (decrypted) bytes to the state machine; Err ends the connection.
    fn deliver(&self, bytes: &[u8]) -> Result<(), End> {
        let now = now();
        let (result, events) = {
            let mut p = self.peer.borrow_mut();
            let r = p.handle_bytes(now, bytes);
            (r, p.take_events())
        };
        for ev in events {
            match ev {
                Event::Interested => self.ctx.set_interested(self.key, true, now),
                Event::NotInterested => self.ctx.set_interested(self.key, false, now),
                Event::Rejected(reason) => self.shared.stats.count_rejected(reason),
            }
        }
        self.handle.wake.notify_one();
        result.map_err(End::Dropped)
    }
}

/// Reads until the peer closes or misbehaves; `leftover` (payload that came with the
/// handshake) goes first, `rx` decrypts an RC4 stream.
async fn reader<S: Stream>(
    stream: &S,
    inbound: Inbound<'_>,
    mut rx: Option<Box<Rc4>>,
    leftover: Vec<u8>,
) -> End {
    if let Err(end) = inbound.deliver(&leftover) {
        return end;
    }
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let (res, b) = stream.read(buf).await;
        buf = b;
        let n = match res {
            Ok(0) | Err(_) => return End::Closed,
            Ok(n) => n,
        };
        if let Some(rx) = &mut rx {
            rx.apply(&mut buf[..n]);
        }
        if let Err(end) = inbound.deliver(&buf[..n]) {
            return end;
        }
    }
}

async fn writer<S: Stream, D: Disk>(
    shared: &Shared,
    stream: &S,
    disk: &D,
    peer: &RefCell<Peer>,
    ctx: &TorrentCtx,
    handle: &PeerHandle,
    mut tx: Option<Box<Rc4>>,
) -> End {
    let mut shutdown = shared.shutdown.watch();
    // Plaintext runs may go out straight from the page cache; RC4 needs a buffer to encrypt.
    let zero_copy = tx.is_none();
    // Bytes this connection reads from disk before trying the page cache again.
    let mut cold_bytes = 0u64;
    // RC4 is a stream: every byte is encrypted once, in the order it is sent.
    let mut encrypt = |b: &mut [u8]| {
        if let Some(tx) = &mut tx {
            tx.apply(b);
        }
    };
    loop {
        if ctx.is_closed() {
            return End::Dropped(DropReason::TorrentRemoved);
        }
        match handle.choke.take() {
            Some(ChokeCmd::Choke) => peer.borrow_mut().set_choking(true),
            Some(ChokeCmd::Unchoke) => peer.borrow_mut().set_choking(false),
            None => {}
        }
        let (control, run) = {
            let mut p = peer.borrow_mut();
            (p.poll_transmit(), p.next_run(MAX_RUN_BYTES))
        };
        if control.is_none() && run.is_none() {
            if shutdown.is_triggered() {
                return End::Shutdown;
            }
            let deadline = peer.borrow().next_timeout();
            tokio::select! {
                _ = handle.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = shutdown.fired() => {}
            }
            if let Err(reason) = peer.borrow_mut().handle_timeout(now()) {
                return End::Dropped(reason);
            }
            continue;
        }
        let mut bufs = Vec::with_capacity(2 + 2 * run.as_ref().map_or(0, |r| r.blocks.len()));
        let mut protocol = 0u64;
        if let Some(mut c) = control {
            protocol += c.len() as u64;
            encrypt(&mut c);
            bufs.push(Bytes::from(c));
        }
        let mut payload = 0u64;
        if let Some(run) = run {
            let len = run.len as usize;
            let mut headers = Vec::with_capacity(13 * run.blocks.len());
            for b in &run.blocks {
                headers.extend_from_slice(&piece_header(b.index, b.begin, b.length));
            }
            let try_map = zero_copy && cold_bytes == 0;
            cold_bytes = cold_bytes.saturating_sub(run.len);
            let mapped = try_map.then(|| ctx.resident(run.start, len)).flatten();
            let data = match mapped {
                Some(data) => {
                    let stats = &shared.stats;
                    stats.zero_copy_bytes.fetch_add(run.len, Ordering::Relaxed);
                    Ok(data)
                }
                None => {
                    if try_map {
                        cold_bytes = COLD_STREAK_BYTES;
                    }
                    let read_started = now();
                    let read = disk.read_run(ctx, run.start, len).await;
                    let elapsed = now().saturating_duration_since(read_started).as_secs_f64();
                    shared.stats.hist.piece_read_seconds.observe(elapsed);
                    read.map(|mut data| {
                        let mut at = 0usize;
                        for (i, b) in run.blocks.iter().enumerate() {
                            encrypt(&mut headers[i * 13..(i + 1) * 13]);
                            encrypt(&mut data[at..at + b.length as usize]);
                            at += b.length as usize;
                        }
                        Bytes::from(data)
                    })
                }
            };
            match data {
                Ok(data) => {
                    let headers = Bytes::from(headers);
                    let mut at = 0usize;
                    for (i, b) in run.blocks.iter().enumerate() {
                        bufs.push(headers.slice(i * 13..(i + 1) * 13));
                        bufs.push(data.slice(at..at + b.length as usize));
                        at += b.length as usize;
                    }
                    payload = run.len;
                    protocol += 13 * run.blocks.len() as u64;
                    shared
                        .stats
                        .requests_served
                        .fetch_add(run.blocks.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    // The data changed under the server: withdraw the pieces, refuse the
                    // blocks (or drop a peer that cannot be told), keep serving the rest.
                    let stats = &shared.stats;
                    stats.piece_read_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(torrent = %ctx.name, start = run.start, len = run.len, "piece read failed: {e}");
                    let withdrawn = ctx.withdraw(&run.blocks);
                    stats
                        .pieces_withdrawn
                        .fetch_add(withdrawn as u64, Ordering::Relaxed);
                    if !peer.borrow_mut().reject_all(&run.blocks) {
                        return End::Dropped(DropReason::PieceReadError);
                    }
                    for _ in &run.blocks {
                        stats.count_rejected(RejectReason::ReadError);
                    }
                    let rejects = peer.borrow_mut().poll_transmit();
                    if let Some(mut c) = rejects {
                        protocol += c.len() as u64;
                        encrypt(&mut c);
                        bufs.push(Bytes::from(c));
                    }
                }
            }
        }
        let write_len: usize = bufs.iter().map(Bytes::len).sum();
        shared.stats.hist.write_bytes.observe(write_len as f64);
        let stall = Duration::from_secs(shared.config.server.write_stall_secs);
        if let Err(e) = send_all(stream, bufs, stall).await {
            return e.into();
        }
        peer.borrow_mut().on_sent(now());
        shared
            .stats
            .uploaded_payload_bytes
            .fetch_add(payload, Ordering::Relaxed);
        shared
            .stats
            .uploaded_protocol_bytes
            .fetch_add(protocol, Ordering::Relaxed);
    }
}
