//! One uTP connection's state machine, sans I/O: its states and limits, the handshake both
//! ways, the bounded send buffer cut into packets, what goes out and when (windows,
//! retransmissions, FIN, bare acks), and timeouts. Incoming acks (loss detection, RTT/RTO,
//! LEDBAT) are in `ack.rs`; incoming data (reorder buffer, selective acks) in `recv.rs`; what
//! goes out in `send.rs`; the path MTU search in `mtu.rs`.

mod ack;
mod mtu;
mod recv;
mod send;

pub use mtu::{MAX_PACKET_V4, MAX_PACKET_V6};

use super::packet::{Packet, Type, HEADER_LEN};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// First datagram size (safe below common path MTUs; probed upward to `Config::max_packet`).
pub const PACKET_SIZE: usize = 1400;
/// Payload of a packet at [`PACKET_SIZE`], the congestion controller's segment size (selective
/// acks ride only on payload-less STATE packets).
pub const MAX_PAYLOAD: usize = PACKET_SIZE - HEADER_LEN;
/// LEDBAT target queuing delay.
pub const TARGET_DELAY_US: u32 = 100_000;
/// Smallest RTO (200 ms, Linux TCP's floor: BEP 29's 500 ms made each tail loss on a fast path
/// cost half a second: 200 MB to libtorrent on loopback took 1.3-8 s, now 1.3-1.6 s), the
/// first RTO and the largest.
pub const MIN_RTO: Duration = Duration::from_millis(200);
pub const INITIAL_RTO: Duration = Duration::from_secs(1);
pub const MAX_RTO: Duration = Duration::from_secs(60);
/// Base delay: the minimum over this many buckets of [`BASE_BUCKET`] each.
pub const BASE_BUCKETS: usize = 2;
pub const BASE_BUCKET: Duration = Duration::from_secs(60);
/// Congestion window after a timeout, in packets.
pub const TIMEOUT_CWND_PACKETS: usize = 2;
/// Packets sacked after a missing one before it counts as lost (tolerates some reordering).
pub const SACK_LOSS_THRESHOLD: usize = 3;
/// Largest selective ack we send, in bytes (covers 512 packets past the ack).
pub const MAX_SACK_BYTES: usize = 64;
/// Most packets kept ahead of the in-order point in the reorder buffer.
pub const MAX_REORDER_DISTANCE: u16 = 2048;

/// Limits and starting values of one connection.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bytes written and not yet acknowledged (queued plus in flight) that
    /// [`Conn::write`] allows.
    pub send_buffer: usize,
    /// Our advertised window: received bytes not yet read plus out-of-order bytes held.
    pub recv_window: usize,
    /// Consecutive timeouts before the connection gives up.
    pub max_timeouts: u32,
    /// First sequence number we send (the initiator's SYN uses it; BEP 29 says 1 for an
    /// initiator and random for an acceptor: the caller's socket draws it).
    pub initial_seq: u16,
    /// Microsecond timestamps are counted from here (defaults to creation time).
    pub epoch: Option<Instant>,
    /// Largest datagram the MTU search may try ([`MAX_PACKET_V4`] or [`MAX_PACKET_V6`]).
    pub max_packet: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            send_buffer: 1 << 20,
            recv_window: 1 << 20,
            max_timeouts: 10,
            initial_seq: 1,
            epoch: None,
            max_packet: MAX_PACKET_V6,
        }
    }
}

/// Connection states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    SynSent,
    SynRecv,
    Connected,
    /// Our FIN is queued or sent and not yet acknowledged, or the peer's is not yet received.
    FinSent,
    /// Both FINs sent and acknowledged: a clean end.
    Closed,
    /// Ended abnormally: see [`Conn::error`].
    Reset,
}

/// Why a connection ended abnormally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnError {
    /// [`Config::max_timeouts`] timeouts in a row.
    TimedOut,
    /// The peer sent ST_RESET.
    ResetByPeer,
}

/// Why [`Conn::accept`] refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    NotSyn,
}

/// Counters and the current congestion state.
#[derive(Debug, Clone, Default)]
pub struct ConnStats {
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Payload bytes sent, retransmissions included, and those of retransmissions.
    pub bytes_sent: u64,
    pub bytes_resent: u64,
    /// Payload bytes the peer acknowledged.
    pub bytes_acked: u64,
    /// In-order payload bytes delivered to the receive buffer.
    pub bytes_received: u64,
    pub retransmits: u64,
    pub fast_retransmits: u64,
    pub timeouts: u64,
    pub duplicate_packets: u64,
    /// Packets dropped for lying outside our window (or past the peer's FIN).
    pub out_of_window: u64,
    pub wrong_conn_id: u64,
    pub srtt: Option<Duration>,
    pub rto: Duration,
    pub cwnd: usize,
    pub peer_wnd: u32,
    /// Latest one-way delay above base, microseconds.
    pub queuing_delay_us: u32,
    /// Times cwnd was halved on loss.
    pub loss_cuts: u64,
    /// Largest datagram proven to get through (the MTU search's floor).
    pub packet_size: usize,
}

#[derive(Debug)]
struct Sent {
    seq: u16,
    ty: Type,
    payload: Vec<u8>,
    sent_at: Instant,
    /// Order of the latest transmission among all of this connection's transmissions.
    order: u64,
    transmissions: u32,
    need_resend: bool,
    acked: bool,
    /// Padding of its first transmission (an MTU probe), else 0.
    padding: u8,
}

/// One uTP connection. Feed it packets ([`Conn::handle_packet`]) and timeouts
/// ([`Conn::handle_timeout`] at [`Conn::poll_timeout`]); take datagrams from
/// [`Conn::poll_transmit`].
#[derive(Debug)]
pub struct Conn {
    cfg: Config,
    state: State,
    error: Option<ConnError>,
    recv_id: u16,
    send_id: u16,
    epoch: Instant,
    /// Next sequence number to send.
    seq_nr: u16,
    /// Last sequence number received in order.
    ack_nr: u16,
    /// Echoed to the peer: our receive time minus its timestamp, of its latest packet.
    reply_micro: u32,
    // Sending.
    send_buf: VecDeque<u8>,
    in_flight: VecDeque<Sent>,
    /// Payload bytes of `in_flight` (kept, not summed: asked on every write).
    in_flight_payload: usize,
    /// Some packet may be marked for resending (set whenever one is; cleared by a scan that
    /// finds none), so the common case skips the scan.
    resend_hint: bool,
    /// Payload-ish bytes in flight (not acked, not awaiting resend); SYN/FIN count as 1.
    flight_bytes: usize,
    cwnd: f64,
    peer_wnd: u32,
    last_ack: u16,
    dup_acks: u32,
    last_cut: Option<Instant>,
    close_requested: bool,
    fin_queued: bool,
    // Receiving.
    reorder: BTreeMap<u16, (Type, Vec<u8>)>,
    reorder_bytes: usize,
    recv_buf: VecDeque<u8>,
    peer_fin: Option<u16>,
    peer_fin_done: bool,
    ack_pending: bool,
    sends: u64,
    // Timers.
    srtt_us: Option<f64>,
    rttvar_us: f64,
    rto: Duration,
    rto_deadline: Option<Instant>,
    consecutive_timeouts: u32,
    // LEDBAT.
    base_delays: VecDeque<u32>,
    bucket_start: Instant,
    stats: ConnStats,
    mtu: mtu::Mtu,
}

/// `a` is before `b` in 16-bit sequence space.
fn seq_lt(a: u16, b: u16) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000
}

impl Conn {
    fn new(cfg: Config, recv_id: u16, send_id: u16, state: State, now: Instant) -> Conn {
        let epoch = cfg.epoch.unwrap_or(now);
        let seq_nr = cfg.initial_seq;
        Conn {
            state,
            error: None,
            recv_id,
            send_id,
            epoch,
            seq_nr,
            ack_nr: 0,
            reply_micro: 0,
            send_buf: VecDeque::new(),
            in_flight: VecDeque::new(),
            in_flight_payload: 0,
            resend_hint: false,
            flight_bytes: 0,
            cwnd: (2 * MAX_PAYLOAD) as f64,
            peer_wnd: MAX_PAYLOAD as u32,
            last_ack: seq_nr.wrapping_sub(1),
            dup_acks: 0,
            last_cut: None,
            close_requested: false,
            fin_queued: false,
            reorder: BTreeMap::new(),
            reorder_bytes: 0,
            recv_buf: VecDeque::new(),
            peer_fin: None,
            peer_fin_done: false,
            ack_pending: false,
            sends: 0,
            srtt_us: None,
            rttvar_us: 0.0,
            rto: INITIAL_RTO,
            rto_deadline: None,
            consecutive_timeouts: 0,
            base_delays: VecDeque::new(),
            bucket_start: now,
            stats: ConnStats {
                packet_size: mtu::Mtu::new(cfg.max_packet).packet_size(),
                ..ConnStats::default()
            },
            mtu: mtu::Mtu::new(cfg.max_packet),
            cfg,
        }
    }

    /// Starts a connection to a peer: `conn_id` is our receive id (the caller draws it at
    /// random); a SYN is queued.
    pub fn connect(conn_id: u16, now: Instant) -> Conn {
        Conn::connect_with(conn_id, Config::default(), now)
    }

    pub fn connect_with(conn_id: u16, cfg: Config, now: Instant) -> Conn {
        let mut c = Conn::new(cfg, conn_id, conn_id.wrapping_add(1), State::SynSent, now);
        c.push_sent(Type::Syn, Vec::new());
        c
    }

    /// Accepts a received SYN: our send id is its connection id, our receive id one more; a
    /// STATE is queued.
    pub fn accept(syn: &Packet, now: Instant) -> Result<Conn, AcceptError> {
        let cfg = Config {
            // No randomness here: derived from the SYN; a socket passes a random one.
            initial_seq: syn.timestamp_us as u16 ^ syn.conn_id.rotate_left(7),
            ..Config::default()
        };
        Conn::accept_with(syn, cfg, now)
    }

    pub fn accept_with(syn: &Packet, cfg: Config, now: Instant) -> Result<Conn, AcceptError> {
        if syn.ty != Type::Syn {
            return Err(AcceptError::NotSyn);
        }
        let mut c = Conn::new(
            cfg,
            syn.conn_id.wrapping_add(1),
            syn.conn_id,
            State::SynRecv,
            now,
        );
        c.ack_nr = syn.seq_nr;
        c.peer_wnd = syn.wnd_size;
        c.reply_micro = c.micros(now).wrapping_sub(syn.timestamp_us);
        c.ack_pending = true;
        c.stats.packets_received = 1;
        Ok(c)
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn error(&self) -> Option<ConnError> {
        self.error
    }

    pub fn stats(&self) -> &ConnStats {
        &self.stats
    }

    pub fn recv_id(&self) -> u16 {
        self.recv_id
    }

    pub fn send_id(&self) -> u16 {
        self.send_id
    }

    /// The peer sent FIN and every byte before it has been read.
    pub fn is_eof(&self) -> bool {
        self.peer_fin_done && self.recv_buf.is_empty()
    }

    /// Bytes [`Conn::write`] would accept now.
    pub fn send_capacity(&self) -> usize {
        if self.close_requested || self.is_done() {
            return 0;
        }
        self.cfg.send_buffer.saturating_sub(self.unacked())
    }

    /// In-order received bytes waiting for [`Conn::read`].
    pub fn readable(&self) -> usize {
        self.recv_buf.len()
    }

    /// Bytes queued or in flight, not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.send_buf.len() + self.in_flight_payload
    }

    fn is_done(&self) -> bool {
        matches!(self.state, State::Closed | State::Reset)
    }

    fn micros(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_micros() as u32
    }

    /// Queues as much of `data` as the send buffer holds; returns how much.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.send_capacity());
        self.send_buf.extend(&data[..n]);
        n
    }

    /// Copies in-order received bytes into `out`.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.recv_buf.len());
        for (o, b) in out.iter_mut().zip(self.recv_buf.drain(..n)) {
            *o = b;
        }
        n
    }

    /// Sends FIN once everything written so far is sent.
    pub fn close(&mut self, _now: Instant) {
        if !self.is_done() {
            self.close_requested = true;
        }
    }

    fn window(&self) -> u32 {
        let used = self.recv_buf.len() + self.reorder_bytes;
        self.cfg.recv_window.saturating_sub(used) as u32
    }

    /// When [`Conn::handle_timeout`] wants to be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_done() {
            return None;
        }
        self.rto_deadline
    }

    /// Retransmission timeout: every packet in flight is resent (window permitting), the
    /// congestion window falls to [`TIMEOUT_CWND_PACKETS`], the RTO doubles; after
    /// [`Config::max_timeouts`] in a row the connection resets.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.rto_deadline else {
            return;
        };
        if now < deadline || self.is_done() {
            return;
        }
        if self.in_flight.is_empty() {
            self.rto_deadline = None;
            return;
        }
        self.stats.timeouts += 1;
        self.consecutive_timeouts += 1;
        if self.consecutive_timeouts >= self.cfg.max_timeouts {
            self.fail(ConnError::TimedOut);
            return;
        }
        self.rto = (self.rto * 2).min(MAX_RTO);
        self.stats.rto = self.rto;
        for s in self.in_flight.iter_mut().filter(|s| !s.acked) {
            s.need_resend = true;
        }
        self.resend_hint = true;
        self.settle_probe();
        self.flight_bytes = 0;
        // Two packets, not one: a lost lone retransmission would cost another (doubled)
        // timeout, while an answer to either proves the peer alive.
        self.cwnd = (TIMEOUT_CWND_PACKETS * self.mtu.payload()) as f64;
        self.stats.cwnd = self.cwnd as usize;
        self.rto_deadline = Some(now + self.rto);
    }

    fn fail(&mut self, e: ConnError) {
        self.state = State::Reset;
        self.error = Some(e);
        self.rto_deadline = None;
    }

    /// One received packet addressed to this connection.
    pub fn handle_packet(&mut self, p: &Packet, now: Instant) {
        if self.state == State::Closed && matches!(p.ty, Type::Data | Type::Fin) {
            // A repeated FIN (our last ack was lost): ack it again.
            self.ack_pending = true;
        }
        if self.is_done() {
            return;
        }
        let expected = if p.ty == Type::Syn {
            self.send_id
        } else {
            self.recv_id
        };
        // A RESET may carry either id (a socket answering an unknown packet cannot know ours).
        let reset_ok = p.ty == Type::Reset && p.conn_id == self.send_id;
        if p.conn_id != expected && !reset_ok {
            self.stats.wrong_conn_id += 1;
            return;
        }
        self.stats.packets_received += 1;
        self.reply_micro = self.micros(now).wrapping_sub(p.timestamp_us);
        match p.ty {
            Type::Reset => return self.fail(ConnError::ResetByPeer),
            Type::Syn => {
                // A repeated SYN (our STATE was lost): ack it again.
                if self.state == State::SynRecv || p.seq_nr == self.ack_nr {
                    self.ack_pending = true;
                }
                return;
            }
            _ => {}
        }
        if self.state == State::SynSent {
            // Only a STATE acking our SYN (the one packet we have sent) connects us.
            if p.ty != Type::State || p.ack_nr != self.seq_nr.wrapping_sub(1) {
                return;
            }
            self.state = State::Connected;
            self.ack_nr = p.seq_nr.wrapping_sub(1);
        } else if self.state == State::SynRecv {
            // The initiator's first packet after its SYN: it has our STATE.
            self.state = State::Connected;
        }
        self.peer_wnd = p.wnd_size;
        self.stats.peer_wnd = p.wnd_size;
        self.handle_ack(p, now);
        if p.ty == Type::Data || p.ty == Type::Fin {
            self.handle_data(p);
        }
        self.maybe_closed();
    }

    fn maybe_closed(&mut self) {
        let ours_done = self.fin_queued && self.in_flight.is_empty();
        if ours_done && self.peer_fin_done {
            self.state = State::Closed;
            self.rto_deadline = None;
        }
    }
}
