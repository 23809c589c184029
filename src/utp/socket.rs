//! Many uTP connections on one UDP port, sans I/O: datagrams routed by (address, connection
//! id) to their [`Conn`], incoming SYNs accepted within caps (half-open, total, per IP), RESET
//! for packets to unknown connections (rate-limited), events for the driver.

use super::conn::{Config, Conn, State};
use super::packet::{decode, Packet, Type};
use crate::dht::id::Rng;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handle(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
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
    pub syn_refused_half_open: u64,
    pub syn_refused_per_ip: u64,
    pub unknown_conn: u64,
    pub resets_sent: u64,
    pub resets_suppressed: u64,
}

#[derive(Debug)]
struct Entry {
    addr: SocketAddr,
    conn: Conn,
}

/// The demultiplexer.
#[derive(Debug)]
pub struct Socket {
    cfg: SocketConfig,
    rng: Rng,
    conns: HashMap<Handle, Entry>,
    by_key: HashMap<(SocketAddr, u16), Handle>,
    per_ip: HashMap<IpAddr, usize>,
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

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn insert(&mut self, addr: SocketAddr, conn: Conn) -> Handle {
        let h = Handle(self.next_handle);
        self.next_handle += 1;
        self.by_key.insert((addr, conn.recv_id()), h);
        *self.per_ip.entry(addr.ip()).or_default() += 1;
        self.conns.insert(h, Entry { addr, conn });
        h
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
        Some(self.insert(addr, conn))
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

    /// One datagram from `from`.
    pub fn handle_datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        self.stats.datagrams += 1;
        let Ok(p) = decode(bytes) else {
            self.stats.malformed += 1;
            return;
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
            return;
        }
        match p.ty {
            Type::Syn => self.syn(from, &p, now),
            Type::Reset => self.stats.unknown_conn += 1,
            _ => {
                self.stats.unknown_conn += 1;
                self.reset(from, &p, now);
            }
        }
    }

    fn syn(&mut self, from: SocketAddr, p: &Packet, now: Instant) {
        let half_open = self
            .conns
            .values()
            .filter(|e| e.conn.state() == State::SynRecv)
            .count();
        let refused = if self.conns.len() >= self.cfg.max_conns {
            &mut self.stats.syn_refused_total
        } else if half_open >= self.cfg.max_half_open {
            &mut self.stats.syn_refused_half_open
        } else if self.per_ip.get(&from.ip()).copied().unwrap_or(0) >= self.cfg.max_per_ip {
            &mut self.stats.syn_refused_per_ip
        } else {
            let cfg = Config {
                initial_seq: self.rng.next_u64() as u16,
                ..self.cfg.conn.clone()
            };
            let conn = Conn::accept_with(p, cfg, now).expect("a SYN");
            let h = self.insert(from, conn);
            self.stats.accepted += 1;
            self.events.push_back(Event::Accepted(h));
            self.after(h, now, true);
            return;
        };
        *refused += 1;
        self.reset(from, p, now);
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
        if received && e.conn.readable() > 0 {
            self.events.push_back(Event::Readable(h));
        }
        let state = e.conn.state();
        if matches!(state, State::Closed | State::Reset) {
            let e = self.conns.remove(&h).expect("present");
            self.by_key.remove(&(e.addr, e.conn.recv_id()));
            if let Some(n) = self.per_ip.get_mut(&e.addr.ip()) {
                *n -= 1;
                if *n == 0 {
                    self.per_ip.remove(&e.addr.ip());
                }
            }
            self.events.push_back(Event::Closed(h, state));
        }
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

    /// The earliest timeout of any connection.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter_map(|e| e.conn.poll_timeout())
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
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
mod tests {
    use super::*;

    fn addr(i: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], port))
    }

    fn syn(id: u16) -> Vec<u8> {
        let mut p = Packet::new(Type::Syn, id);
        p.seq_nr = 1;
        p.wnd_size = 1 << 20;
        p.encode()
    }

    fn drain(s: &mut Socket, now: Instant) -> Vec<(SocketAddr, Packet)> {
        std::iter::from_fn(|| s.poll_transmit(now))
            .map(|(a, d)| (a, decode(&d).unwrap()))
            .collect()
    }

    #[test]
    fn two_sockets_talk() {
        let t = Instant::now();
        let (mut a, mut b) = (
            Socket::new(SocketConfig::default(), 1),
            Socket::new(SocketConfig::default(), 2),
        );
        let (aa, ba) = (addr(1, 1000), addr(2, 2000));
        let h = a.connect(ba, t).unwrap();
        a.conn_mut(h).unwrap().write(b"hello over utp");
        let mut got = Vec::new();
        let mut accepted = None;
        for _ in 0..20 {
            while let Some((to, d)) = a.poll_transmit(t) {
                assert_eq!(to, ba);
                b.handle_datagram(aa, &d, t);
            }
            while let Some((to, d)) = b.poll_transmit(t) {
                assert_eq!(to, aa);
                a.handle_datagram(ba, &d, t);
            }
            while let Some(e) = b.poll_event() {
                match e {
                    Event::Accepted(h) => accepted = Some(h),
                    Event::Readable(h) => {
                        let mut buf = [0u8; 64];
                        let n = b.conn_mut(h).unwrap().read(&mut buf);
                        got.extend_from_slice(&buf[..n]);
                    }
                    Event::Closed(..) => {}
                }
            }
        }
        assert!(accepted.is_some());
        assert_eq!(got, b"hello over utp");
        assert_eq!(b.stats().accepted, 1);
    }

    #[test]
    fn unknown_connections_get_rate_limited_resets() {
        let t = Instant::now();
        let cfg = SocketConfig {
            resets_per_sec: 3,
            ..SocketConfig::default()
        };
        let mut s = Socket::new(cfg, 1);
        let mut p = Packet::new(Type::Data, 55);
        p.seq_nr = 9;
        for _ in 0..5 {
            s.handle_datagram(addr(1, 1), &p.encode(), t);
        }
        let out = drain(&mut s, t);
        assert_eq!(out.len(), 3);
        assert_eq!(
            (out[0].1.ty, out[0].1.conn_id, out[0].1.ack_nr),
            (Type::Reset, 55, 9)
        );
        assert_eq!((s.stats().resets_sent, s.stats().resets_suppressed), (3, 2));
        // A RESET to an unknown connection is not answered; garbage is counted.
        s.handle_datagram(
            addr(1, 1),
            &Packet::new(Type::Reset, 1).encode(),
            t + Duration::from_secs(2),
        );
        s.handle_datagram(addr(1, 1), b"d1:y1:qe", t);
        assert_eq!(s.stats().resets_sent, 3);
        assert_eq!(s.stats().malformed, 1);
        // Refilled a second later.
        s.handle_datagram(addr(1, 1), &p.encode(), t + Duration::from_secs(2));
        assert_eq!(s.stats().resets_sent, 4);
    }

    #[test]
    fn syn_caps() {
        let t = Instant::now();
        let cfg = SocketConfig {
            max_half_open: 5,
            max_per_ip: 3,
            max_conns: 7,
            ..SocketConfig::default()
        };
        let mut s = Socket::new(cfg, 1);
        for i in 0..4 {
            s.handle_datagram(addr(1, 100 + i), &syn(10), t);
        }
        assert_eq!((s.len(), s.stats().syn_refused_per_ip), (3, 1));
        // A repeated SYN goes to its connection, not a new one.
        s.handle_datagram(addr(1, 100), &syn(10), t);
        assert_eq!(s.len(), 3);
        for i in 2..6 {
            s.handle_datagram(addr(i, 1), &syn(10), t);
        }
        assert_eq!((s.len(), s.stats().syn_refused_half_open), (5, 2));
        assert_eq!(s.stats().accepted, 5);
        let resets = drain(&mut s, t)
            .iter()
            .filter(|(_, p)| p.ty == Type::Reset)
            .count();
        assert_eq!(resets, 3);
        assert_eq!(s.poll_event(), Some(Event::Accepted(Handle(1))));
    }

    #[test]
    fn a_restarted_peer_resets_the_connection() {
        let t = Instant::now();
        let (aa, ba) = (addr(1, 1000), addr(2, 2000));
        let mut a = Socket::new(SocketConfig::default(), 1);
        let mut b = Socket::new(SocketConfig::default(), 2);
        let h = a.connect(ba, t).unwrap();
        for _ in 0..3 {
            while let Some((_, d)) = a.poll_transmit(t) {
                b.handle_datagram(aa, &d, t);
            }
            while let Some((_, d)) = b.poll_transmit(t) {
                a.handle_datagram(ba, &d, t);
            }
        }
        assert_eq!(a.conn_mut(h).unwrap().state(), State::Connected);
        // B forgets everything; A's next data packet is answered with a RESET.
        let mut b = Socket::new(SocketConfig::default(), 3);
        a.conn_mut(h).unwrap().write(b"anyone?");
        while let Some((_, d)) = a.poll_transmit(t) {
            b.handle_datagram(aa, &d, t);
        }
        while let Some((_, d)) = b.poll_transmit(t) {
            a.handle_datagram(ba, &d, t);
        }
        assert_eq!(b.stats().resets_sent, 1);
        assert!(a.is_empty());
        let events: Vec<Event> = std::iter::from_fn(|| a.poll_event()).collect();
        assert_eq!(events, vec![Event::Closed(h, State::Reset)]);
    }

    #[test]
    fn dead_connections_are_removed() {
        let t = Instant::now();
        let cfg = SocketConfig {
            conn: Config {
                max_timeouts: 2,
                ..Config::default()
            },
            ..SocketConfig::default()
        };
        let mut s = Socket::new(cfg, 1);
        let h = s.connect(addr(9, 9), t).unwrap();
        drain(&mut s, t);
        while let Some(next) = s.poll_timeout() {
            s.handle_timeout(next);
            drain(&mut s, next);
        }
        assert!(s.is_empty());
        assert_eq!(s.poll_event(), Some(Event::Closed(h, State::Reset)));
    }
}
