//! Per-peer protocol state machine for a seed, without I/O or clocks.
//!
//! The I/O layer feeds it received bytes with [`Peer::handle_bytes`] and the current time, asks
//! for control bytes to send with [`Peer::poll_transmit`], for the next run of requested data
//! with [`Peer::next_run`], and calls [`Peer::handle_timeout`] at [`Peer::next_timeout`].
//! Every limit of the wire protocol is enforced here: message size cap, request size and range,
//! availability, queue length, bitfield shape, idle time and buffered control output.
//!
//! It may not do I/O or read the clock; what it decides, `io::conn` carries out.

use super::extension::{self, ExtEvent, Extensions};
use super::handshake::{reserved, Handshake};
use super::hashes::{HashServer, LeafJob, Trees};
use super::message::{self, Block, Decoded, Message, WireError};
use super::owned::{Owned, Shape};
use super::pex::PexPeer;
use crate::bitfield::{self, SharedBitfield};
use crate::metainfo::InfoHash;
pub use crate::reasons::DropReason;
use crate::reasons::{HashReply, RejectReason};
use crate::storage::Layout;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Interval between keep-alives when nothing else is sent.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(120);
/// Cap on BEP 10 extension messages from a peer.
pub const EXTENSION_MESSAGE_CAP: u32 = 64 << 10;
/// Absolute cap on any incoming message.
pub const MESSAGE_CAP_CEILING: u32 = 1 << 20;

/// What a torrent looks like to its peers: the layout and which pieces may be served.
#[derive(Debug)]
pub struct TorrentView {
    pub info_hash: InfoHash,
    /// The exact info dictionary, served to peers by BEP 9; None for a private torrent (never
    /// given to strangers, as libtorrent does).
    pub metadata: Option<bytes::Bytes>,
    /// Peer exchange (BEP 11) allowed: public torrents only (BEP 27).
    pub pex: bool,
    pub layout: Layout,
    /// Verified pieces; a piece whose data can no longer be read is cleared at runtime.
    pub have: SharedBitfield,
    /// The v2 merkle rows hash requests are answered from (v2 and hybrid torrents).
    pub v2: Option<Trees>,
}

impl TorrentView {
    pub fn has_piece(&self, index: usize) -> bool {
        self.have.has(index)
    }

    /// Largest incoming message accepted for this torrent (id + payload).
    pub fn message_cap(&self, max_request: u32) -> u32 {
        let bitfield = 1 + self.layout.num_pieces().div_ceil(8) as u32;
        (9 + max_request)
            .max(bitfield)
            .clamp(EXTENSION_MESSAGE_CAP, MESSAGE_CAP_CEILING)
    }
}

/// Per-peer limits, from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_request: u32,
    pub max_queued: usize,
    pub max_control_bytes: usize,
    pub idle_timeout: Duration,
    /// Our listen port, sent as `p` in the BEP 10 handshake so a peer we dialled can reach us
    /// again (0: not sent).
    pub listen_port: u16,
    /// The peer's address as we see it, sent back as `yourip` (per connection).
    pub remote_ip: Option<std::net::IpAddr>,
    /// Super-seeding (BEP 16): advertise nothing at the start (have_none for BEP 6 peers),
    /// serve only the pieces offered one by one ([`Peer::offer`]) until [`Peer::unrestrict`].
    pub super_seed: bool,
}

/// Something the rest of the server should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Interested,
    NotInterested,
    /// A request refused with BEP 6 reject.
    Rejected(RejectReason),
    /// The peer's extension handshake arrived, with its listen port if it gave one.
    ExtensionHandshake {
        port: Option<u16>,
    },
    /// Pieces the peer says it has (its bitfield, then each `have`): the swarm's availability
    /// for super-seeding, the peer's progress for the anti-leech choker.
    PeerBitfield(Vec<u8>),
    PeerHave(u32),
    /// Peers it told us about (BEP 11), for the peer-address intake.
    PexPeers(Vec<std::net::SocketAddr>),
    /// A metadata piece served, or a request for one refused (BEP 9).
    MetadataServed,
    MetadataRejected,
    /// A BEP 52 hash request answered (or refused, with why).
    HashRequest(HashReply),
}

/// A contiguous stretch of the torrent to read and send as piece messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Offset of the first byte in the torrent stream.
    pub start: u64,
    pub len: u64,
    pub blocks: Vec<Block>,
}

/// Capacity of an empty receive buffer that is kept for the next bytes; above it the buffer
/// is freed.
const INBUF_KEEP: usize = 1024;

pub struct Peer {
    torrent: std::sync::Arc<TorrentView>,
    limits: Limits,
    /// The peer set the extension bit (BEP 10).
    ext_bit: bool,
    ext: Extensions,
    cap: u32,
    fast: bool,
    interested: bool,
    choking: bool,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    queue: VecDeque<Block>,
    events: Vec<Event>,
    last_recv: Instant,
    last_send: Instant,
    /// Super-seeding: the pieces offered to this peer (the only ones it may request); None
    /// when every verified piece is advertised.
    offered: Option<Vec<u8>>,
    hashes: HashServer,
}

impl Peer {
    /// Starts a connection after the peer's handshake `theirs` was accepted. If `send_handshake`
    /// (incoming connections), our handshake is queued first; then our extension handshake (BEP
    /// 10, when the peer supports it) and have_all (BEP 6) or our bitfield.
    pub fn new(
        torrent: std::sync::Arc<TorrentView>,
        limits: Limits,
        theirs: &Handshake,
        our_id: [u8; 20],
        send_handshake: bool,
        now: Instant,
    ) -> Peer {
        // The info-hash the peer used (a hybrid's v1 or v2 one), and the v2 bit (BEP 52).
        let mut ours = Handshake::ours(theirs.info_hash, our_id);
        if torrent.v2.is_some() {
            ours.reserved[reserved::V2.0] |= reserved::V2.1;
        }
        let have = torrent.have.to_bytes();
        let mut out = Vec::with_capacity(256 + have.len());
        if send_handshake {
            out.extend_from_slice(&ours.encode());
        }
        let fast = theirs.has(reserved::FAST);
        let ext_bit = theirs.has(reserved::EXTENSION);
        let ext = Extensions::new(torrent.metadata.clone(), torrent.pex);
        if ext_bit {
            let ours = ext.ours(
                limits.listen_port,
                limits.max_queued,
                VERSION,
                limits.remote_ip,
            );
            message::encode(
                &Message::Extended {
                    id: 0,
                    payload: &extension::encode_handshake(&ours),
                },
                &mut out,
            );
        }
        if limits.super_seed {
            // BEP 16: nothing advertised; pieces are offered one at a time.
            if fast {
                message::encode(&Message::HaveNone, &mut out);
            }
        } else if fast && torrent.have.is_full() {
            message::encode(&Message::HaveAll, &mut out);
        } else if fast && have.iter().all(|&b| b == 0) {
            message::encode(&Message::HaveNone, &mut out);
        } else {
            message::encode(&Message::Bitfield(&have), &mut out);
        }
        let cap = torrent.message_cap(limits.max_request);
        let offered = limits
            .super_seed
            .then(|| vec![0u8; torrent.layout.num_pieces().div_ceil(8)]);
        Peer {
            offered,
            torrent,
            limits,
            ext_bit,
            ext,
            cap,
            fast,
            interested: false,
            choking: true,
            inbuf: Vec::new(),
            out,
            queue: VecDeque::new(),
            events: Vec::new(),
            last_recv: now,
            last_send: now,
            hashes: HashServer::default(),
        }
    }

    pub fn is_fast(&self) -> bool {
        self.fast
    }

    pub fn is_interested(&self) -> bool {
        self.interested
    }

    pub fn is_choking(&self) -> bool {
        self.choking
    }

    pub fn queued_requests(&self) -> usize {
        self.queue.len()
    }

    /// Consumes bytes received from the peer.
    pub fn handle_bytes(&mut self, now: Instant, data: &[u8]) -> Result<(), DropReason> {
        self.last_recv = now;
        self.inbuf.extend_from_slice(data);
        let mut at = 0;
        let result = loop {
            match message::decode(&self.inbuf[at..], self.cap) {
                Ok(Decoded::NeedMore(_)) => break Ok(()),
                Ok(Decoded::Message(msg, used)) => {
                    // Messages borrow from inbuf; handle a copy of the small fields only.
                    let msg = Owned::from(&msg, self.torrent.layout.num_pieces());
                    at += used;
                    if let Err(e) = self.handle_message(now, msg) {
                        break Err(e);
                    }
                }
                Err(WireError::TooLong { .. }) => break Err(DropReason::MessageTooLong),
                Err(WireError::BadLength { .. }) => break Err(DropReason::MalformedMessage),
            }
        };
        self.inbuf.drain(..at);
        // An idle peer keeps no buffer grown by an earlier large message.
        if self.inbuf.is_empty() && self.inbuf.capacity() > INBUF_KEEP {
            self.inbuf = Vec::new();
        }
        result?;
        if self.out.len() > self.limits.max_control_bytes {
            return Err(DropReason::OutputBacklog);
        }
        Ok(())
    }

    fn handle_message(&mut self, now: Instant, msg: Owned) -> Result<(), DropReason> {
        let pieces = self.torrent.layout.num_pieces();
        match msg {
            Owned::Extended(_, _) if !self.ext_bit => {
                return Err(DropReason::ExtensionBeforeHandshake)
            }
            Owned::Extended(id, payload) => self.extended(now, id, &payload)?,
            Owned::Interested if !self.interested => {
                self.interested = true;
                self.events.push(Event::Interested);
            }
            Owned::NotInterested if self.interested => {
                self.interested = false;
                self.events.push(Event::NotInterested);
            }
            Owned::Have(i) if i as usize >= pieces => return Err(DropReason::BadHave),
            Owned::Bitfield(Shape::Invalid) => return Err(DropReason::BadBitfield),
            Owned::Bitfield(Shape::Full) | Owned::HaveAll => return Err(DropReason::PeerIsSeed),
            Owned::Request(b) => self.request(b)?,
            Owned::Cancel(b) => {
                if let Some(pos) = self.queue.iter().position(|q| *q == b) {
                    self.queue.remove(pos);
                    if self.fast {
                        message::encode(&Message::Reject(b), &mut self.out);
                    }
                }
            }
            Owned::HashRequest(r) => {
                let room = self.limits.max_control_bytes.saturating_sub(self.out.len());
                let v2 = self.torrent.v2.as_ref();
                if let Some(result) = self.hashes.handle(v2, now, &r, room, &mut self.out) {
                    self.events.push(Event::HashRequest(result));
                }
            }
            Owned::Have(i) => self.events.push(Event::PeerHave(i)),
            Owned::Bitfield(Shape::Partial(bits)) => self.events.push(Event::PeerBitfield(bits)),
            Owned::Other | Owned::Interested | Owned::NotInterested => {}
        }
        Ok(())
    }

    /// An extended message (BEP 10), dispatched by [`Extensions`]; its replies go out as
    /// control bytes.
    fn extended(&mut self, now: Instant, id: u8, payload: &[u8]) -> Result<(), DropReason> {
        let (mut replies, mut events) = (Vec::new(), Vec::new());
        let unsent = self.out.len();
        self.ext
            .handle(now, id, payload, unsent, &mut replies, &mut events)?;
        for (id, payload) in replies {
            message::encode(
                &Message::Extended {
                    id,
                    payload: &payload,
                },
                &mut self.out,
            );
        }
        for ev in events {
            self.events.push(match ev {
                ExtEvent::Handshake { port } => Event::ExtensionHandshake { port },
                ExtEvent::Peers(p) => Event::PexPeers(p),
                ExtEvent::MetadataServed => Event::MetadataServed,
                ExtEvent::MetadataRejected => Event::MetadataRejected,
            });
        }
        Ok(())
    }

    /// When a peer-exchange message to this peer may next be due (None: no PEX with it).
    pub fn pex_next(&self) -> Option<Instant> {
        self.ext.pex_next()
    }

    /// Queues a peer-exchange message if one is due: `current` is the torrent's shareable
    /// peers other than this one. True if one was queued.
    pub fn queue_pex(&mut self, now: Instant, current: &[PexPeer]) -> bool {
        match self.ext.poll_pex(now, current) {
            Some((id, payload)) => {
                message::encode(
                    &Message::Extended {
                        id,
                        payload: &payload,
                    },
                    &mut self.out,
                );
                true
            }
            None => false,
        }
    }

    fn request(&mut self, b: Block) -> Result<(), DropReason> {
        if self.choking {
            // BEP 3: requests while choked are dropped; BEP 6 peers get an explicit reject.
            return self.refuse(b, RejectReason::Choked, None);
        }
        if b.length > self.limits.max_request {
            return self.refuse(
                b,
                RejectReason::Oversized,
                Some(DropReason::OversizedRequest),
            );
        }
        let layout = &self.torrent.layout;
        if layout
            .block_spans(b.index as usize, b.begin.into(), b.length.into())
            .is_err()
        {
            return self.refuse(
                b,
                RejectReason::OutOfRange,
                Some(DropReason::RequestOutOfRange),
            );
        }
        if !self.torrent.has_piece(b.index as usize) {
            return self.refuse(
                b,
                RejectReason::Unavailable,
                Some(DropReason::UnavailablePiece),
            );
        }
        if let Some(offered) = &self.offered {
            if !bitfield::get(offered, b.index as usize) {
                // Super-seeding: only what was offered (a request for more is refused, and a
                // peer without BEP 6 is ignored rather than dropped).
                return self.refuse(b, RejectReason::NotOffered, None);
            }
        }
        if self.queue.len() >= self.limits.max_queued {
            return self.refuse(b, RejectReason::QueueFull, Some(DropReason::QueueFull));
        }
        if !self.queue.contains(&b) {
            self.queue.push_back(b);
        }
        Ok(())
    }

    /// Rejects a request (BEP 6 peers) or, for others, drops the peer with `drop` (or silently
    /// ignores the request when `drop` is `None`).
    fn refuse(
        &mut self,
        b: Block,
        label: RejectReason,
        drop: Option<DropReason>,
    ) -> Result<(), DropReason> {
        if self.fast {
            message::encode(&Message::Reject(b), &mut self.out);
            self.events.push(Event::Rejected(label));
            return Ok(());
        }
        match drop {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// Refuses blocks that were taken for sending but cannot be served after all (their data
    /// could not be read). False if the peer does not speak BEP 6 and must be dropped instead.
    pub fn reject_all(&mut self, blocks: &[Block]) -> bool {
        if !self.fast {
            return false;
        }
        for b in blocks {
            message::encode(&Message::Reject(*b), &mut self.out);
        }
        true
    }

    /// Super-seeding: offers `piece` with a `have` (ignored for a piece not verified, out of
    /// range, or already offered; and once unrestricted). True if a `have` was queued.
    pub fn offer(&mut self, piece: u32) -> bool {
        let i = piece as usize;
        let Some(offered) = &mut self.offered else {
            return false;
        };
        if i >= self.torrent.layout.num_pieces()
            || !self.torrent.has_piece(i)
            || bitfield::get(offered, i)
        {
            return false;
        }
        bitfield::set(offered, i);
        message::encode(&Message::Have(piece), &mut self.out);
        true
    }

    /// Ends super-seeding for this peer: every verified piece is advertised (have_all or our
    /// bitfield) and may be requested.
    pub fn unrestrict(&mut self) {
        if self.offered.take().is_none() {
            return;
        }
        if self.fast && self.torrent.have.is_full() {
            message::encode(&Message::HaveAll, &mut self.out);
        } else {
            let have = self.torrent.have.to_bytes();
            message::encode(&Message::Bitfield(&have), &mut self.out);
        }
    }

    /// Whether this peer is served super-seeding style (pieces offered one by one).
    pub fn is_restricted(&self) -> bool {
        self.offered.is_some()
    }

    /// Chokes or unchokes the peer (decided by the choker).
    pub fn set_choking(&mut self, choke: bool) {
        if choke == self.choking {
            return;
        }
        self.choking = choke;
        if choke {
            message::encode(&Message::Choke, &mut self.out);
            for b in std::mem::take(&mut self.queue) {
                if self.fast {
                    message::encode(&Message::Reject(b), &mut self.out);
                }
            }
        } else {
            message::encode(&Message::Unchoke, &mut self.out);
        }
    }

    /// Checks timers; queues a keep-alive when due.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), DropReason> {
        if now.saturating_duration_since(self.last_recv) >= self.limits.idle_timeout {
            return Err(DropReason::IdleTimeout);
        }
        if self.out.is_empty()
            && now.saturating_duration_since(self.last_send) >= KEEPALIVE_INTERVAL
        {
            message::encode(&Message::KeepAlive, &mut self.out);
        }
        Ok(())
    }

    /// When [`Peer::handle_timeout`] (or [`Peer::queue_pex`]) should next be called.
    pub fn next_timeout(&self) -> Instant {
        let t =
            (self.last_recv + self.limits.idle_timeout).min(self.last_send + KEEPALIVE_INTERVAL);
        self.pex_next().map_or(t, |p| t.min(p))
    }

    /// Takes the control bytes waiting to be sent (handshake, chokes, rejects, keep-alives).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// Records that bytes went out (for the keep-alive timer).
    pub fn on_sent(&mut self, now: Instant) {
        self.last_send = now;
    }

    /// Takes the longest run of queued requests that are contiguous in the torrent stream,
    /// starting with the oldest, up to `max_bytes` (at least one request).
    pub fn next_run(&mut self, max_bytes: u64) -> Option<Run> {
        let pl = self.torrent.layout.piece_length();
        let offset = |b: &Block| u64::from(b.index) * pl + u64::from(b.begin);
        let first = self.queue.pop_front()?;
        let start = offset(&first);
        let mut run = Run {
            start,
            len: first.length.into(),
            blocks: vec![first],
        };
        while let Some(next) = self.queue.front() {
            let len = u64::from(next.length);
            if offset(next) != start + run.len || run.len + len > max_bytes {
                break;
            }
            run.len += len;
            run.blocks.push(*next);
            self.queue.pop_front();
        }
        Some(run)
    }

    /// A hash request below the piece layer that waits for the torrent's bytes `job.start..`
    /// (`job.len` of them); answer it with [`Peer::answer_leaf_job`].
    pub fn take_leaf_job(&mut self) -> Option<LeafJob> {
        self.hashes.take_job()
    }

    /// Answers a taken job from its bytes (None: the read failed); returns what became of it.
    pub fn answer_leaf_job(&mut self, job: &LeafJob, data: Option<&[u8]>) -> HashReply {
        let room = self.limits.max_control_bytes.saturating_sub(self.out.len());
        HashServer::finish(self.torrent.v2.as_ref(), job, data, room, &mut self.out)
    }

    /// Takes the events raised since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
}

/// Version string sent in the extension handshake.
pub const VERSION: &str = concat!("uringseed ", env!("CARGO_PKG_VERSION"));
