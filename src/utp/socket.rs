//! Many uTP connections on one UDP port, sans I/O: datagrams routed by (address, connection
//! id) to their [`Conn`], incoming SYNs accepted within caps (total, per IP) into a bounded
//! half-open table (oldest evicted when full, expired after [`HALF_OPEN_TIMEOUT`]) and announced
//! ([`Event::Accepted`]) only once the initiator's next packet proves its address, RESET for
//! packets to unknown connections (rate-limited), events and running totals for the driver.

use super::conn::{Config, Conn, ConnStats, State};
use super::packet::{decode, Packet, Type};
use crate::dht::id::Rng;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How long an accepted SYN may wait for the initiator's next packet.
pub const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits of one [`Socket`].
#[derive(Debug, Clone)]
pub struct SocketConfig {
    /// Accepted connections whose initiator has not yet sent anything after its SYN.
    pub max_half_open: usize,
    pub max_conns: usize,
    /// Connections from one IP address.
    pub max_per_ip: usize,
    /// RESETs sent per second (a token bucket of this size, refilled each second).
    pub resets_per_sec: u32,
    /// Each connection's limits (its `initial_seq` is drawn at random per connection).
    pub conn: Config,
}

impl Default for SocketConfig {
    fn default() -> SocketConfig {
        SocketConfig {
            max_half_open: 256,
            max_conns: 4096,
            max_per_ip: 8,
            resets_per_sec: 100,
            conn: Config::default(),
        }
    }
}

/// A connection of this socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An incoming connection whose initiator answered our STATE (its address is proven).
    Accepted(Handle),
    /// In-order bytes are waiting for [`Conn::read`].
    Readable(Handle),
    /// The connection ended (cleanly or not: see its last state) and was removed.
    Closed(Handle, State),
}

/// Counters of one socket.
#[derive(Debug, Clone, Default)]
pub struct SocketStats {
    pub datagrams: u64,
    pub malformed: u64,
    pub accepted: u64,
    pub syn_refused_total: u64,
    pub syn_refused_per_ip: u64,
    /// Half-open connections dropped to make room for a new SYN, or expired.
    pub half_open_evicted: u64,
    pub unknown_conn: u64,
    pub resets_sent: u64,
    pub resets_suppressed: u64,
}

#[derive(Debug)]
struct Entry {
    addr: SocketAddr,
    conn: Conn,
    /// When it was created, and whether it is an incoming one not yet announced.
    born: Instant,
    half_open: bool,
}

/// Running totals over every connection this socket has had (live ones included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Payload bytes sent for the first time.
    pub bytes_sent: u64,
    pub bytes_acked: u64,
    pub bytes_received: u64,
    pub retransmits: u64,
    pub timeouts: u64,
}

impl Totals {
    fn add(&mut self, s: &ConnStats) {
        self.packets_sent += s.packets_sent;
        self.packets_received += s.packets_received;
        self.bytes_sent += s.bytes_sent - s.bytes_resent;
        self.bytes_acked += s.bytes_acked;
        self.bytes_received += s.bytes_received;
        self.retransmits += s.retransmits;
        self.timeouts += s.timeouts;
    }
}

/// The demultiplexer.
#[derive(Debug)]
pub struct Socket {
    cfg: SocketConfig,
    rng: Rng,
    conns: HashMap<Handle, Entry>,
    by_key: HashMap<(SocketAddr, u16), Handle>,
    per_ip: HashMap<IpAddr, usize>,
    /// Incoming connections not yet announced, oldest first.
    half_open: BTreeSet<(Instant, Handle)>,
    /// Totals of removed connections.
    retired: Totals,
    next_handle: u64,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    reset_tokens: u32,
    refill_at: Option<Instant>,
    stats: SocketStats,
}

impl Socket {
    pub fn new(cfg: SocketConfig, seed: u64) -> Socket {
        Socket {
            reset_tokens: cfg.resets_per_sec,
            cfg,
            rng: Rng::new(seed),
            conns: HashMap::new(),
            by_key: HashMap::new(),
            per_ip: HashMap::new(),
            half_open: BTreeSet::new(),
            retired: Totals::default(),
            next_handle: 1,
            out: VecDeque::new(),
            events: VecDeque::new(),
            refill_at: None,
            stats: SocketStats::default(),
        }
    }

    pub fn stats(&self) -> &SocketStats {
        &self.stats
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    pub fn conn_mut(&mut self, h: Handle) -> Option<&mut Conn> {
        self.conns.get_mut(&h).map(|e| &mut e.conn)
    }

    pub fn conn(&self, h: Handle) -> Option<&Conn> {
        self.conns.get(&h).map(|e| &e.conn)
    }

    /// The remote address of a connection.
    pub fn addr(&self, h: Handle) -> Option<SocketAddr> {
        self.conns.get(&h).map(|e| e.addr)
    }

    /// Totals over all connections, removed and live.
    pub fn totals(&self) -> Totals {
        let mut t = self.retired;
        for e in self.conns.values() {
            t.add(e.conn.stats());
        }
        t
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn insert(&mut self, addr: SocketAddr, conn: Conn, now: Instant, half_open: bool) -> Handle {
        let h = Handle(self.next_handle);
        self.next_handle += 1;
        self.by_key.insert((addr, conn.recv_id()), h);
        *self.per_ip.entry(addr.ip()).or_default() += 1;
        if half_open {
            self.half_open.insert((now, h));
        }
        let e = Entry {
            addr,
            conn,
            born: now,
            half_open,
        };
        self.conns.insert(h, e);
        h
    }

    /// Removes a connection at once, without FIN or RESET (a closed connection whose peer
    /// never finished, or an evicted half-open one); no event.
    pub fn abort(&mut self, h: Handle) {
        let Some(e) = self.conns.remove(&h) else {
            return;
        };
        self.by_key.remove(&(e.addr, e.conn.recv_id()));
        if e.half_open {
            self.half_open.remove(&(e.born, h));
        }
        self.retired.add(e.conn.stats());
        if let Some(n) = self.per_ip.get_mut(&e.addr.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&e.addr.ip());
            }
        }
    }

    /// Drops half-open connections older than [`HALF_OPEN_TIMEOUT`].
    fn expire_half_open(&mut self, now: Instant) {
        while let Some(&(born, h)) = self.half_open.first() {
            if born + HALF_OPEN_TIMEOUT > now {
                break;
            }
            self.stats.half_open_evicted += 1;
            self.abort(h);
        }
    }

    /// Opens a connection to `addr` with an unused random receive id; `None` at the total
    /// cap (or the per-IP cap).
    pub fn connect(&mut self, addr: SocketAddr, now: Instant) -> Option<Handle> {
        if self.conns.len() >= self.cfg.max_conns
            || self.per_ip.get(&addr.ip()).copied().unwrap_or(0) >= self.cfg.max_per_ip
        {
            return None;
        }
        let id = loop {
            let id = self.rng.next_u64() as u16;
            let taken = |i: u16| self.by_key.contains_key(&(addr, i));
            if !taken(id) && !taken(id.wrapping_add(1)) {
                break id;
            }
        };
        let conn = Conn::connect_with(id, self.cfg.conn.clone(), now);
        Some(self.insert(addr, conn, now, false))
    }

    fn reset(&mut self, to: SocketAddr, p: &Packet, now: Instant) {
        if self.refill_at.is_none_or(|t| now >= t) {
            self.reset_tokens = self.cfg.resets_per_sec;
            self.refill_at = Some(now + Duration::from_secs(1));
        }
        if self.reset_tokens == 0 {
            self.stats.resets_suppressed += 1;
            return;
        }
        self.reset_tokens -= 1;
        self.stats.resets_sent += 1;
        // The id the packet came on; our Conn (like libutp) takes a RESET on either id.
        let mut r = Packet::new(Type::Reset, p.conn_id);
        r.ack_nr = p.seq_nr;
        self.out.push_back((to, r.encode()));
    }

    /// One datagram from `from`; returns the connection it went to, if any.
    pub fn handle_datagram(
        &mut self,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
    ) -> Option<Handle> {
        self.stats.datagrams += 1;
        let Ok(p) = decode(bytes) else {
            self.stats.malformed += 1;
            return None;
        };
        let recv_id = if p.ty == Type::Syn {
            p.conn_id.wrapping_add(1)
        } else {
            p.conn_id
        };
        let mut found = self.by_key.get(&(from, recv_id)).copied();
        if found.is_none() && p.ty == Type::Reset {
            // A RESET from a peer that lost our connection carries our send id.
            found = [p.conn_id.wrapping_sub(1), p.conn_id.wrapping_add(1)]
                .into_iter()
                .filter_map(|id| self.by_key.get(&(from, id)).copied())
                .find(|h| self.conns[h].conn.send_id() == p.conn_id);
        }
        if let Some(h) = found {
            let e = self.conns.get_mut(&h).expect("keyed");
            e.conn.handle_packet(&p, now);
            self.after(h, now, true);
            return Some(h);
        }
        match p.ty {
            Type::Syn => return self.syn(from, &p, now),
            Type::Reset => self.stats.unknown_conn += 1,
            _ => {
                self.stats.unknown_conn += 1;
                self.reset(from, &p, now);
            }
        }
        None
    }

    fn syn(&mut self, from: SocketAddr, p: &Packet, now: Instant) -> Option<Handle> {
        self.expire_half_open(now);
        if self.half_open.len() >= self.cfg.max_half_open.max(1) {
            // Full: the oldest unproven SYN makes room (a flood only displaces itself).
            if let Some(&(_, oldest)) = self.half_open.first() {
                self.stats.half_open_evicted += 1;
                self.abort(oldest);
            }
        }
        let refused = if self.conns.len() >= self.cfg.max_conns {
            &mut self.stats.syn_refused_total
        } else if self.per_ip.get(&from.ip()).copied().unwrap_or(0) >= self.cfg.max_per_ip {
            &mut self.stats.syn_refused_per_ip
        } else {
            let cfg = Config {
                initial_seq: self.rng.next_u64() as u16,
                ..self.cfg.conn.clone()
            };
            let conn = Conn::accept_with(p, cfg, now).expect("a SYN");
            let h = self.insert(from, conn, now, true);
            self.after(h, now, true);
            return Some(h);
        };
        *refused += 1;
        self.reset(from, p, now);
        None
    }

    /// After a connection handled something: its datagrams out, its events (`Readable` only
    /// when `received`), its removal.
    fn after(&mut self, h: Handle, now: Instant, received: bool) {
        let Some(e) = self.conns.get_mut(&h) else {
            return;
        };
        while let Some(d) = e.conn.poll_transmit(now) {
            self.out.push_back((e.addr, d));
        }
        let state = e.conn.state();
        if e.half_open && matches!(state, State::Connected | State::FinSent) {
            e.half_open = false;
            self.half_open.remove(&(e.born, h));
            self.stats.accepted += 1;
            self.events.push_back(Event::Accepted(h));
        }
        let e = self.conns.get_mut(&h).expect("present");
        let announced = !e.half_open;
        if received && announced && e.conn.readable() > 0 {
            self.events.push_back(Event::Readable(h));
        }
        if matches!(state, State::Closed | State::Reset) {
            self.abort(h);
            if announced {
                self.events.push_back(Event::Closed(h, state));
            }
        }
    }

    /// Queues what connection `h` has to send now (after a write, a read or a close), for
    /// [`Socket::pop_transmit`]; cheaper than [`Socket::poll_transmit`]'s sweep.
    pub fn transmit_from(&mut self, h: Handle, now: Instant) {
        self.after(h, now, false);
    }

    /// The next queued datagram, without sweeping the connections.
    pub fn pop_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop_front()
    }

    /// The next datagram to send; collects from every connection when the queue is empty
    /// (after writes, closes and timeouts).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        if self.out.is_empty() {
            let handles: Vec<Handle> = self.conns.keys().copied().collect();
            for h in handles {
                self.after(h, now, false);
            }
        }
        self.out.pop_front()
    }

    /// The earliest timeout of any connection (or half-open expiry).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.half_open.first().map(|(t, _)| *t + HALF_OPEN_TIMEOUT);
        self.conns
            .values()
            .filter_map(|e| e.conn.poll_timeout())
            .chain(expiry)
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_half_open(now);
        let due: Vec<Handle> = self
            .conns
            .iter()
            .filter(|(_, e)| e.conn.poll_timeout().is_some_and(|t| t <= now))
            .map(|(h, _)| *h)
            .collect();
        for h in due {
            if let Some(e) = self.conns.get_mut(&h) {
                e.conn.handle_timeout(now);
            }
            self.after(h, now, false);
        }
    }
}

#[cfg(test)]
#[path = "socket_tests.rs"]
mod tests;
