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
use super::upload::{Booked, Outgoing, Upload};
pub use super::upload::{COLD_STREAK_BYTES, MAX_RUN_BYTES};
use crate::metainfo::InfoHash;
use crate::peer_source::Candidate;
use crate::reasons::{ChokeCmd, DropReason, HandshakeKind, PeerSourceKind};
use crate::state::superseed::Seen;
use crate::state::{PeerHandle, Shared, TorrentCtx};
use crate::wire::mse::Rc4;
use crate::wire::pex::{self, PexPeer};
use crate::wire::{Event, Limits, Peer};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
/// The socket read buffer's range. A read that fills a small buffer takes what else is waiting
/// into the largest one at once (without waiting); after a read, a buffer that was filled
/// doubles (up to the most) and one used under a quarter halves (down to the least), so a
/// peer that only sends keep-alives and haves holds the least while its read waits, and one
/// streaming requests reads up to 4 KiB at a time (requests are 17 bytes; larger messages
/// accumulate in the state machine over several reads).
const READ_BUF_MIN: usize = 256;
const READ_BUF_MAX: usize = 4 << 10;

/// The next read buffer's size after a read of `n` bytes into one of `len`.
fn next_read_len(len: usize, n: usize) -> usize {
    if n >= len {
        (len * 2).min(READ_BUF_MAX)
    } else if n < len / 4 {
        (len / 2).max(READ_BUF_MIN)
    } else {
        len
    }
}

pub use super::stream::now;

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
    // Known to the evictor (a full cap may take this connection's place for a newcomer)
    // from now until it ends.
    let key = shared.next_peer_key();
    let slot = shared.evictor.register(key, now());
    let _registered = Registered(&shared, key);
    // Boxed: the handshake's state (MSE keys, buffers) is freed once it is over instead of
    // staying part of every connection's future.
    let opened = tokio::select! {
        r = Box::pin(super::handshake::open(&shared, &stream, dialed, key, addr.ip())) => r,
        _ = slot.evicted() => Err(DropReason::Evicted),
    };
    let end = match opened {
        Ok(opened) => {
            // The torrent's own key: a hybrid's v1 and v2 peers compete for its slots alike.
            shared
                .evictor
                .handshaken(key, opened.ctx.view.info_hash, now());
            let outgoing = dialed.is_some();
            connected(&shared, &stream, disk, opened, addr, outgoing, (key, &slot)).await
        }
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
    if matches!(end, End::Dropped(DropReason::WriteStall)) {
        // What it did not read is thrown away with the socket, not kept for minutes.
        stream.abort();
    } else {
        stream.shutdown();
    }
}

/// Unregisters a connection from the evictor when it ends.
struct Registered<'a>(&'a Shared, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.evictor.unregister(self.1);
    }
}

async fn connected<S: Stream, D: Disk>(
    shared: &Shared,
    stream: &S,
    disk: &D,
    opened: Opened,
    addr: SocketAddr,
    outgoing: bool,
    (key, slot): (u64, &crate::state::evict::Slot),
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
    let now = now();
    let encrypted = kind != HandshakeKind::Plaintext;
    let pex_flags = if encrypted { pex::FLAG_ENCRYPTION } else { 0 }
        | if stream.is_utp() { pex::FLAG_UTP } else { 0 };
    if outgoing && ctx.view.pex {
        // A peer we could dial may be shared (BEP 11: reachable).
        ctx.share_peer(
            key,
            PexPeer {
                addr,
                flags: pex_flags | pex::FLAG_REACHABLE,
            },
        );
    }
    let peer = RefCell::new(Peer::new(
        ctx.view.clone(),
        Limits {
            listen_port: shared.listen_port.load(Ordering::Relaxed),
            remote_ip: Some(addr.ip()),
            super_seed: ctx.is_super_seeding(),
            ..shared.limits.clone()
        },
        &hs,
        shared.peer_id,
        !outgoing,
        now,
    ));
    let info = crate::state::PeerInfo {
        addr,
        peer_id: hs.peer_id,
        encryption: kind,
        outgoing,
        utp: stream.is_utp(),
        connected_unix: crate::state::unix_now(),
    };
    let handle = ctx.join(key, info, now);
    ctx.peers.fetch_add(1, Ordering::Relaxed);
    if peer.borrow().is_restricted() {
        ctx.super_seed_saw(key, Seen::Joined, now);
    }
    let inbound = Inbound {
        shared,
        peer: &peer,
        ctx: &ctx,
        key,
        handle: &handle,
        addr,
        pex_flags,
    };
    // The writer first: when a send completes and the peer's close arrives together (a
    // leecher that got its last block and left), the send is counted before the reader ends
    // the connection.
    // Evicted (a full cap made room for a newcomer): ends here, cleaned up like any other end.
    let end = tokio::select! {
        biased;
        end = writer(shared, stream, disk, &peer, &ctx, key, &handle, tx) => end,
        end = reader(stream, inbound, rx, leftover) => end,
        _ = slot.evicted() => End::Dropped(DropReason::Evicted),
    };
    ctx.unshare_peer(key);
    ctx.super_seed_saw(key, Seen::Left, self::now());
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
    addr: SocketAddr,
    pex_flags: u8,
}

impl Inbound<'_> {
    /// The peer's reported progress, for the anti-leech choker (a duplicate `have` counts
    /// again: claiming more only moves a peer toward "almost done", which ranks no higher
    /// than "just started", which anyone may claim).
    fn count_pieces(&self, more: u32) {
        if self.ctx.choker_mode() == crate::choke::Mode::AntiLeech {
            let pieces = &self.handle.pieces;
            let now = pieces.load(Ordering::Relaxed).saturating_add(more);
            pieces.store(now, Ordering::Relaxed);
        }
    }

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
                Event::Interested => {
                    self.shared.evictor.set_interested(self.key, true, now);
                    self.ctx.set_interested(self.key, true, now)
                }
                Event::NotInterested => {
                    self.shared.evictor.set_interested(self.key, false, now);
                    self.ctx.set_interested(self.key, false, now)
                }
                Event::Rejected(reason) => self.shared.stats.count_rejected(reason),
                Event::HashRequest(result) => self.shared.stats.hash_requests.inc(result),
                Event::PeerBitfield(bits) => {
                    self.count_pieces(bits.iter().map(|b| b.count_ones()).sum());
                    self.ctx
                        .super_seed_saw(self.key, Seen::Bitfield(&bits), now)
                }
                Event::PeerHave(piece) => {
                    self.count_pieces(1);
                    self.ctx.super_seed_saw(self.key, Seen::Have(piece), now)
                }
                Event::ExtensionHandshake { port } => {
                    // An incoming peer that listens may be shared: its address, its port.
                    if let (Some(port), true) = (port, self.ctx.view.pex) {
                        let addr = SocketAddr::new(self.addr.ip(), port);
                        let flags = self.pex_flags;
                        self.ctx.share_peer(self.key, PexPeer { addr, flags });
                    }
                }
                Event::PexPeers(addrs) => {
                    let stats = &self.shared.stats;
                    stats.pex_received.fetch_add(1, Ordering::Relaxed);
                    for addr in addrs {
                        self.shared.offer_peer(Candidate {
                            info_hash: self.ctx.view.info_hash,
                            addr,
                            source: PeerSourceKind::Pex,
                        });
                    }
                }
                Event::MetadataServed => {
                    let stats = &self.shared.stats;
                    stats.metadata_served.fetch_add(1, Ordering::Relaxed);
                }
                Event::MetadataRejected => {
                    let stats = &self.shared.stats;
                    stats.metadata_rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.handle.wake.notify_one();
        if result == Err(DropReason::PeerIsSeed) {
            self.ctx.super_seed_saw_seed();
        }
        result.map_err(End::Dropped)
    }
}

/// Carries out what the torrent's super-seeder decided for this connection: `have`s for the
/// pieces it offers, or (super-seeding over) everything advertised.
fn super_seed_orders(shared: &Shared, peer: &mut Peer, handle: &PeerHandle) {
    if handle.unrestrict.swap(false, Ordering::AcqRel) {
        peer.unrestrict();
        return;
    }
    let offers = std::mem::take(&mut *handle.offers.lock().unwrap_or_else(|e| e.into_inner()));
    for piece in offers {
        if peer.offer(piece) {
            let offered = &shared.stats.superseed_offers;
            offered.fetch_add(1, Ordering::Relaxed);
        }
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
    let mut buf = vec![0u8; READ_BUF_MIN];
    loop {
        let (res, b) = stream.read(buf).await;
        buf = b;
        let mut n = match res {
            Ok(0) | Err(_) => return End::Closed,
            Ok(n) => n,
        };
        if n == buf.len() && n < READ_BUF_MAX {
            // A burst into a small buffer: what else is already waiting joins it, so a batch
            // of requests reaches the state machine (and the writer's next run) together.
            let mut big = vec![0u8; READ_BUF_MAX];
            big[..n].copy_from_slice(&buf[..n]);
            n += stream.try_read(&mut big[n..]).unwrap_or(0);
            buf = big;
        }
        if let Some(rx) = &mut rx {
            rx.apply(&mut buf[..n]);
        }
        if let Err(end) = inbound.deliver(&buf[..n]) {
            return end;
        }
        let next = next_read_len(buf.len(), n);
        if next != buf.len() {
            buf = vec![0u8; next];
        }
    }
}

/// Sends control bytes as they come and runs of requested blocks through the upload pipeline
/// (`super::upload`: plan, reserve, fetch, frame, send, account), until the connection ends.
#[allow(clippy::too_many_arguments)]
async fn writer<S: Stream, D: Disk>(
    shared: &Shared,
    stream: &S,
    disk: &D,
    peer: &RefCell<Peer>,
    ctx: &TorrentCtx,
    key: u64,
    handle: &PeerHandle,
    tx: Option<Box<Rc4>>,
) -> End {
    let mut shutdown = shared.shutdown.watch();
    let stall = Duration::from_secs(shared.config.server.write_stall_secs);
    let mut up = Upload::new(shared, ctx, handle, tx);
    // A run taken from the queue and booked with the limits, waiting for its time.
    let mut booked: Option<Booked> = None;
    loop {
        if ctx.is_closed() {
            return End::Dropped(DropReason::TorrentRemoved);
        }
        match handle.choke.take() {
            Some(ChokeCmd::Choke) => {
                let mut p = peer.borrow_mut();
                p.set_choking(true);
                if let Some(b) = booked.take() {
                    up.cancel(&mut p, b);
                }
            }
            Some(ChokeCmd::Unchoke) => peer.borrow_mut().set_choking(false),
            None => {}
        }
        if peer.borrow().is_restricted() {
            super_seed_orders(shared, &mut peer.borrow_mut(), handle);
        }
        let now = now();
        if booked.is_none() {
            booked = up
                .plan(&mut peer.borrow_mut())
                .map(|run| up.reserve(run, now));
        }
        let ready = booked.as_mut().is_some_and(|b| up.ready(b, now));
        if peer.borrow().pex_next().is_some_and(|at| at <= now) {
            let current = ctx.shareable_peers_except(key);
            if peer.borrow_mut().queue_pex(now, &current) {
                shared.stats.pex_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        let job = peer.borrow_mut().take_leaf_job();
        if let Some(job) = job {
            // A hash request below the piece layer: its pieces are read, then hashed.
            let data = disk.read_run(ctx, job.start, job.len).await;
            let result = peer
                .borrow_mut()
                .answer_leaf_job(&job, data.as_deref().ok());
            shared.stats.hash_requests.inc(result);
        }
        let control = peer.borrow_mut().poll_transmit();
        if control.is_none() && !ready {
            if shutdown.is_triggered() {
                return End::Shutdown;
            }
            let mut deadline = peer.borrow().next_timeout();
            if let Some(b) = &booked {
                deadline = deadline.min(b.at);
            }
            tokio::select! {
                _ = handle.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = shutdown.fired() => {}
            }
            if let Err(reason) = peer.borrow_mut().handle_timeout(self::now()) {
                return End::Dropped(reason);
            }
            continue;
        }
        let mut out = Outgoing::default();
        if let Some(c) = control {
            up.frame_control(&mut out, c);
        }
        if let Some(b) = booked.take_if(|_| ready) {
            match up.fetch(disk, &b.run).await {
                Ok(data) => up.frame(&mut out, &b.run, data),
                Err(e) => {
                    if up
                        .read_failed(&mut peer.borrow_mut(), &b.run, e, &mut out)
                        .is_err()
                    {
                        return End::Dropped(DropReason::PieceReadError);
                    }
                }
            }
        }
        shared.stats.hist.write_bytes.observe(out.len() as f64);
        handle.sends_started.fetch_add(1, Ordering::AcqRel);
        let sent = send_all(stream, std::mem::take(&mut out.bufs), stall).await;
        handle.sends_done.fetch_add(1, Ordering::AcqRel);
        if let Err(e) = sent {
            return e.into();
        }
        let sent = self::now();
        peer.borrow_mut().on_sent(sent);
        up.account(&out, sent);
    }
}

#[cfg(test)]
mod tests {
    use super::{next_read_len, READ_BUF_MAX, READ_BUF_MIN};

    #[test]
    fn read_buffer_grows_when_full_and_shrinks_when_mostly_empty() {
        assert_eq!(next_read_len(READ_BUF_MIN, READ_BUF_MIN), 2 * READ_BUF_MIN);
        assert_eq!(next_read_len(READ_BUF_MAX, READ_BUF_MAX), READ_BUF_MAX);
        assert_eq!(next_read_len(1024, 17), 512);
        assert_eq!(next_read_len(READ_BUF_MIN, 4), READ_BUF_MIN);
        assert_eq!(next_read_len(1024, 600), 1024);
        // A streaming peer reaches the largest buffer in a few reads, an idle one the least.
        let mut len = READ_BUF_MIN;
        for _ in 0..8 {
            len = next_read_len(len, len);
        }
        assert_eq!(len, READ_BUF_MAX);
        for _ in 0..8 {
            len = next_read_len(len, 4);
        }
        assert_eq!(len, READ_BUF_MIN);
    }
}
