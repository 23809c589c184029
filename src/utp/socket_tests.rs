//! Tests of the uTP socket: routing, RESETs, SYN caps and the half-open table, removal.
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
fn syn_caps_eviction_and_proof() {
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
    // A full half-open table makes room by dropping its oldest entries.
    for i in 2..6 {
        s.handle_datagram(addr(i, 1), &syn(10), t + Duration::from_millis(i as u64));
    }
    assert_eq!((s.len(), s.stats().half_open_evicted), (5, 2));
    assert!(s.addr(Handle(1)).is_none() && s.addr(Handle(2)).is_none());
    let resets = drain(&mut s, t)
        .iter()
        .filter(|(_, p)| p.ty == Type::Reset)
        .count();
    assert_eq!(resets, 1);
    // Nothing is announced until the initiator answers our STATE.
    assert_eq!((s.poll_event(), s.stats().accepted), (None, 0));
    let mut next = Packet::new(Type::State, 11);
    next.seq_nr = 1;
    let h = s.handle_datagram(addr(5, 1), &next.encode(), t).unwrap();
    assert_eq!(s.poll_event(), Some(Event::Accepted(h)));
    assert_eq!(s.stats().accepted, 1);
    // The unproven rest expire.
    s.handle_timeout(t + HALF_OPEN_TIMEOUT + Duration::from_secs(1));
    assert_eq!(s.len(), 1);
    assert_eq!(s.stats().half_open_evicted, 6);
    assert_eq!(s.poll_event(), None);
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
