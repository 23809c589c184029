//! One peer connection, driven over any backend's stream and disk: handshake with a timeout,
//! then a reader (bytes into the state machine) and a writer (control bytes, coalesced piece data
//! read from disk and sent with one vectored write per run) running side by side.

use super::handshake::Opened;
use crate::metainfo::InfoHash;
use crate::server::{PeerHandle, Shared, TorrentCtx};
use crate::wire::message::piece_header;
use crate::wire::mse::Rc4;
use crate::wire::{Event, Limits, Peer};
use bytes::Bytes;
use std::cell::RefCell;
use std::io;
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

/// A connected socket as the connection driver needs it.
#[allow(async_fn_in_trait)]
pub trait Stream {
    /// Reads into `buf` (from index 0, up to its length); returns the count and the buffer.
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// One vectored write of (a prefix of) `bufs`; returns the bytes written and the buffers.
    async fn writev(&self, bufs: Vec<Bytes>) -> (io::Result<usize>, Vec<Bytes>);
    /// Shuts the socket down both ways (ends any read or write in flight).
    fn shutdown(&self);
    /// The socket's descriptor (for TCP_INFO).
    fn fd(&self) -> std::os::fd::RawFd;
}

/// Reading torrent bytes from the data files.
#[allow(async_fn_in_trait)]
pub trait Disk {
    /// Reads `len` bytes of `ctx`'s torrent stream starting at `start` (pad files as zeros).
    async fn read_run(&self, ctx: &TorrentCtx, start: u64, len: usize) -> io::Result<Vec<u8>>;
}

/// How a connection ended (a metrics label unless it is a plain close).
pub(super) enum End {
    Closed,
    Shutdown,
    Dropped(&'static str),
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
            tracing::debug!(%addr, reason, "peer dropped");
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
        return End::Dropped("duplicate_peer");
    }
    let ipv6 = addr.ip().to_canonical().is_ipv6();
    shared.stats.peers.add(outgoing, ipv6);
    shared.stats.count_handshake(kind);
    tracing::debug!(%addr, handshake = kind, outgoing, "peer connected");
    let key = shared.next_key.fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
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
    ctx.leave(key, Instant::now());
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
        let now = Instant::now();
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
        result.map_err(|reason| End::Dropped(reason.as_str()))
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
    let mut shutdown = shared.shutdown.clone();
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
        if ctx.closed.load(Ordering::Acquire) {
            return End::Dropped("torrent_removed");
        }
        match handle.choke_cmd.swap(0, Ordering::AcqRel) {
            1 => peer.borrow_mut().set_choking(true),
            2 => peer.borrow_mut().set_choking(false),
            _ => {}
        }
        let (control, run) = {
            let mut p = peer.borrow_mut();
            (p.poll_transmit(), p.next_run(MAX_RUN_BYTES))
        };
        if control.is_none() && run.is_none() {
            if *shutdown.borrow() {
                return End::Shutdown;
            }
            let deadline = peer.borrow().next_timeout();
            tokio::select! {
                _ = handle.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = shutdown.changed() => {}
            }
            if let Err(reason) = peer.borrow_mut().handle_timeout(Instant::now()) {
                return End::Dropped(reason.as_str());
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
            let mapped = try_map.then(|| ctx.mapped(run.start, len)).flatten();
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
                    let read_started = Instant::now();
                    let read = disk.read_run(ctx, run.start, len).await;
                    let elapsed = read_started.elapsed().as_secs_f64();
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
                        return End::Dropped("piece_read_error");
                    }
                    for _ in &run.blocks {
                        stats.count_rejected("read_error");
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
        if let Err(end) = send_all(stream, bufs, stall).await {
            return end;
        }
        peer.borrow_mut().on_sent(Instant::now());
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

/// Bytes handed to one vectored write (an io_uring send on a stream socket completes only when
/// all of it is sent).
pub const WRITE_CHUNK: usize = 256 << 10;

/// Writes all of `bufs` with vectored writes of at most [`WRITE_CHUNK`] bytes and
/// [`super::MAX_IOVECS`] buffers. A write that makes no progress for `stall` means the peer is
/// not reading: it is dropped. (A slow reader that keeps taking bytes is not.)
pub(super) async fn send_all<S: Stream>(
    stream: &S,
    mut bufs: Vec<Bytes>,
    stall: Duration,
) -> Result<(), End> {
    while !bufs.is_empty() {
        let (mut take, mut bytes) = (0, 0);
        while take < bufs.len() && take < super::MAX_IOVECS && bytes < WRITE_CHUNK {
            bytes += bufs[take].len();
            take += 1;
        }
        let mut rest = bufs.split_off(take);
        if bytes > WRITE_CHUNK {
            // Split the last buffer at the chunk boundary (no copy: both halves share it).
            let last = bufs.last_mut().expect("took at least one buffer");
            let keep = last.len() - (bytes - WRITE_CHUNK);
            rest.insert(0, last.split_off(keep));
        }
        // Waiting longer than `stall` is fine while the peer acknowledges data (a slow reader);
        // a whole `stall` without any byte acknowledged is a peer that stopped reading.
        let mut op = std::pin::pin!(stream.writev(bufs));
        let mut acked = bytes_acked(stream.fd());
        let (res, mut head) = loop {
            tokio::select! {
                r = &mut op => break r,
                _ = tokio::time::sleep(stall) => {
                    let now = bytes_acked(stream.fd());
                    if now.is_none() || now == acked {
                        return Err(End::Dropped("write_stall"));
                    }
                    acked = now;
                }
            }
        };
        match res {
            Ok(0) | Err(_) => return Err(End::Closed),
            Ok(n) => advance(&mut head, n),
        }
        head.extend(rest);
        bufs = head;
    }
    Ok(())
}

/// Bytes of ours the peer has acknowledged (TCP_INFO `tcpi_bytes_acked`), if the kernel says.
fn bytes_acked(fd: std::os::fd::RawFd) -> Option<u64> {
    // SAFETY: getsockopt writes at most `len` bytes into a zeroed tcp_info.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        (r == 0).then_some(info.tcpi_bytes_acked)
    }
}

/// Drops the first `n` bytes of a list of buffers (after a partial vectored write).
pub fn advance(bufs: &mut Vec<Bytes>, mut n: usize) {
    let mut done = 0;
    for b in bufs.iter_mut() {
        if n >= b.len() {
            n -= b.len();
            done += 1;
        } else {
            bytes::Buf::advance(b, n);
            break;
        }
    }
    bufs.drain(..done);
}
