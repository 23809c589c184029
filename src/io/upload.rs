//! One connection's upload pipeline, in the order every write goes through it:
//!
//! 1. **plan** ([`Upload::plan`]): take the next run of contiguous requested blocks from the
//!    state machine, no larger than the limits' chunk, unless payload is paused (a used-up
//!    quota with no rate left);
//! 2. **reserve** ([`Upload::reserve`]): book it with the torrent's bucket, then the server's
//!    (`crate::ratelimit`), and learn when it may go; the writer sends control bytes meanwhile;
//! 3. **fetch** ([`Upload::fetch`]): from the page-cache mapping without a copy, or one disk
//!    read (the cold-read streak lives here);
//! 4. **frame** ([`Upload::frame`]): piece headers and data slices, encrypted in send order for
//!    an RC4 peer;
//! 5. send (the writer, `super::stream::send_all`), then **account** ([`Upload::account`]):
//!    the one place where what went out is counted, globally, per torrent (the tracker's
//!    `uploaded`, the quota, the 10 s rate) and per peer.
//!
//! It owns the per-connection upload state; it does not decide protocol rules (`wire`) or the
//! limits themselves (`state::limits`).

use super::stream::Disk;
use crate::reasons::{RejectReason, ThrottleScope};
use crate::state::{limits, PeerHandle, Shared, TorrentCtx};
use crate::wire::message::piece_header;
use crate::wire::mse::Rc4;
use crate::wire::{Peer, Run};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Largest run of contiguous requested blocks read and sent in one go.
pub const MAX_RUN_BYTES: u64 = 1 << 20;
/// After a run had to be read from disk, the connection keeps reading (and so keeps the
/// kernel's readahead going) for this many bytes before it tries the page cache again.
pub const COLD_STREAK_BYTES: u64 = 16 << 20;
/// Bytes of one block plus its header: the smallest chunk a limit hands out.
const BLOCK_CHUNK: u64 = 16384 + 13;

/// A run taken from the queue and booked, waiting for its time to go.
pub struct Booked {
    pub run: Run,
    /// When it may be sent (or, before the server's bucket is booked, be booked there).
    pub at: Instant,
    /// Whether the server's bucket is booked too (the torrent's always is).
    server_booked: bool,
}

/// What one write carries.
#[derive(Default)]
pub struct Outgoing {
    pub bufs: Vec<Bytes>,
    pub payload: u64,
    pub protocol: u64,
    pub blocks: u64,
}

impl Outgoing {
    pub fn len(&self) -> usize {
        self.bufs.iter().map(Bytes::len).sum()
    }
}

/// A read failed and the peer cannot be told (no BEP 6): drop it.
pub struct Unservable;

pub struct Upload<'a> {
    shared: &'a Shared,
    ctx: &'a TorrentCtx,
    handle: &'a PeerHandle,
    /// Encrypts what we send (RC4 peers); every byte once, in send order.
    tx: Option<Box<Rc4>>,
    /// Bytes this connection reads from disk before trying the page cache again.
    cold_bytes: u64,
}

impl<'a> Upload<'a> {
    pub fn new(
        shared: &'a Shared,
        ctx: &'a TorrentCtx,
        handle: &'a PeerHandle,
        tx: Option<Box<Rc4>>,
    ) -> Upload<'a> {
        Upload {
            shared,
            ctx,
            handle,
            tx,
            cold_bytes: 0,
        }
    }

    fn paused(&self) -> bool {
        self.shared.upload.paused() || self.ctx.upload.paused()
    }

    /// Step 1: the next run to send, within the limits' chunk; None when nothing is queued or
    /// payload is paused.
    pub fn plan(&self, peer: &mut Peer) -> Option<Run> {
        if self.paused() {
            return None;
        }
        let rates = [
            self.ctx.upload.bucket.rate(),
            self.shared.upload.bucket.rate(),
        ];
        let rate = rates.into_iter().filter(|&r| r > 0).min().unwrap_or(0);
        let chunk = crate::ratelimit::chunk(rate, BLOCK_CHUNK, MAX_RUN_BYTES);
        peer.next_run(chunk)
    }

    /// Step 2: books `run` with the torrent's bucket; [`Upload::ready`] books the server's.
    pub fn reserve(&self, run: Run, now: Instant) -> Booked {
        let wait = self
            .ctx
            .upload
            .bucket
            .reserve(self.shared.clock_ns(now), run.len);
        self.throttled(ThrottleScope::Torrent, wait);
        Booked {
            run,
            at: now + wait,
            server_booked: false,
        }
    }

    /// True when `booked` may go now; books the server's bucket once the torrent's wait is
    /// over (and moves `at` if that one says wait).
    pub fn ready(&self, booked: &mut Booked, now: Instant) -> bool {
        if now < booked.at {
            return false;
        }
        if !booked.server_booked {
            booked.server_booked = true;
            let wait = self
                .shared
                .upload
                .bucket
                .reserve(self.shared.clock_ns(now), booked.run.len);
            self.throttled(ThrottleScope::Server, wait);
            booked.at = now + wait;
            return wait.is_zero();
        }
        true
    }

    fn throttled(&self, scope: ThrottleScope, wait: Duration) {
        if !wait.is_zero() {
            self.shared
                .stats
                .throttled_ns
                .add(scope, wait.as_nanos() as u64);
        }
    }

    /// Control bytes (handshake, chokes, rejects, keep-alives) into `out`, encrypted.
    pub fn frame_control(&mut self, out: &mut Outgoing, mut c: Vec<u8>) {
        out.protocol += c.len() as u64;
        if let Some(tx) = &mut self.tx {
            tx.apply(&mut c);
        }
        out.bufs.push(Bytes::from(c));
    }

    /// Step 3: the run's bytes: straight from the page cache when it is all there (plaintext
    /// peers, not in a cold streak), else one read.
    pub async fn fetch<D: Disk>(&mut self, disk: &D, run: &Run) -> std::io::Result<Bytes> {
        let stats = &self.shared.stats;
        let try_map = self.tx.is_none() && self.cold_bytes == 0;
        self.cold_bytes = self.cold_bytes.saturating_sub(run.len);
        if let Some(data) = try_map
            .then(|| self.ctx.resident(run.start, run.len as usize))
            .flatten()
        {
            stats.zero_copy_bytes.fetch_add(run.len, Ordering::Relaxed);
            return Ok(data);
        }
        // Only data that is not in the page cache starts a streak of reads (a run across
        // files is read whatever the cache holds).
        if try_map && self.ctx.mappable(run.start, run.len as usize) {
            self.cold_bytes = COLD_STREAK_BYTES;
        }
        let started = super::stream::now();
        let read = disk.read_run(self.ctx, run.start, run.len as usize).await;
        let elapsed = super::stream::now().saturating_duration_since(started);
        stats.hist.piece_read_seconds.observe(elapsed.as_secs_f64());
        read.map(Bytes::from)
    }

    /// Step 4: piece messages for `run` into `out`: a 13-byte header per block and its slice
    /// of `data`, encrypted in send order for an RC4 peer (a read buffer, never a mapping).
    pub fn frame(&mut self, out: &mut Outgoing, run: &Run, data: Bytes) {
        let mut headers = Vec::with_capacity(13 * run.blocks.len());
        for b in &run.blocks {
            headers.extend_from_slice(&piece_header(b.index, b.begin, b.length));
        }
        let data = match &mut self.tx {
            None => data,
            Some(tx) => {
                let mut owned = data.to_vec();
                let mut at = 0usize;
                for (i, b) in run.blocks.iter().enumerate() {
                    tx.apply(&mut headers[i * 13..(i + 1) * 13]);
                    tx.apply(&mut owned[at..at + b.length as usize]);
                    at += b.length as usize;
                }
                Bytes::from(owned)
            }
        };
        let headers = Bytes::from(headers);
        let mut at = 0usize;
        for (i, b) in run.blocks.iter().enumerate() {
            out.bufs.push(headers.slice(i * 13..(i + 1) * 13));
            out.bufs.push(data.slice(at..at + b.length as usize));
            at += b.length as usize;
        }
        out.payload += run.len;
        out.protocol += 13 * run.blocks.len() as u64;
        out.blocks += run.blocks.len() as u64;
    }

    /// The data of `run` could not be read (a file changed under the server): its pieces are
    /// withdrawn and its blocks rejected, or the peer must be dropped (no BEP 6).
    pub fn read_failed(
        &mut self,
        peer: &mut Peer,
        run: &Run,
        e: std::io::Error,
        out: &mut Outgoing,
    ) -> Result<(), Unservable> {
        let stats = &self.shared.stats;
        stats.piece_read_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(torrent = %self.ctx.name, start = run.start, len = run.len, "piece read failed: {e}");
        let withdrawn = self.ctx.withdraw(&run.blocks);
        stats
            .pieces_withdrawn
            .fetch_add(withdrawn as u64, Ordering::Relaxed);
        if !peer.reject_all(&run.blocks) {
            return Err(Unservable);
        }
        for _ in &run.blocks {
            stats.count_rejected(RejectReason::ReadError);
        }
        if let Some(c) = peer.poll_transmit() {
            self.frame_control(out, c);
        }
        Ok(())
    }

    /// A booked run that will not be sent after all (the peer was choked meanwhile): its
    /// blocks are rejected for a BEP 6 peer (a choke discards them for the others).
    pub fn cancel(&self, peer: &mut Peer, booked: Booked) {
        if peer.is_fast() {
            peer.reject_all(&booked.run.blocks);
        }
    }

    /// Step 5: counts what one write carried, once it was sent.
    pub fn account(&self, out: &Outgoing, now: Instant) {
        let stats = &self.shared.stats;
        stats
            .uploaded_payload_bytes
            .fetch_add(out.payload, Ordering::Relaxed);
        stats
            .uploaded_protocol_bytes
            .fetch_add(out.protocol, Ordering::Relaxed);
        if out.payload == 0 {
            return;
        }
        stats
            .requests_served
            .fetch_add(out.blocks, Ordering::Relaxed);
        self.ctx.uploaded.fetch_add(out.payload, Ordering::Relaxed);
        self.handle
            .uploaded
            .fetch_add(out.payload, Ordering::Relaxed);
        let secs = self.shared.clock_ns(now) / 1_000_000_000;
        self.ctx.meter.add(secs, out.payload);
        self.handle.meter.add(secs, out.payload);
        if limits::account(&self.shared.upload, &self.ctx.upload, out.payload) {
            self.shared.upload.wake_keeper.notify_one();
        }
    }
}
