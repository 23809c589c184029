//! The uTP decoder and connection never panic, and what they produce keeps its bounds: a
//! decoded packet re-encodes to bytes that decode to the same packet; the input, as one packet
//! and then as a sequence of packets (`[op, len, bytes...]`), goes into an acceptor (made from
//! a SYN) and an initiator (its SYN answered). `op` bit 0 picks the connection, bit 1 rewrites
//! the connection id to the one it expects, bits 2-7 advance the clock (in 100 ms steps, with a
//! timeout handled) and, when all set, write 64 KiB. Everything a connection sends decodes with
//! our decoder and is at most 1,452 bytes (the MTU search's IPv6 ceiling); received-but-unread bytes stay within the window.
//! Every packet also goes, as a datagram from one of 8 addresses (`op` bits 0-1 and 7), into a
//! `Socket` with small caps, which must stay within them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use uringseed::utp::conn::{Config, MAX_PACKET_V6};
use uringseed::utp::{decode, Conn, Packet, Socket, SocketConfig, Type};

const WINDOW: usize = 64 << 10;

fn drain(c: &mut Conn, now: Instant) {
    while let Some(d) = c.poll_transmit(now) {
        assert!(d.len() <= MAX_PACKET_V6, "{} bytes", d.len());
        decode(&d).expect("our own output decodes");
    }
    assert!(c.readable() <= WINDOW, "{} unread", c.readable());
    assert!(c.unacked() <= WINDOW, "{} unacked", c.unacked());
    let mut buf = [0u8; 4096];
    while c.read(&mut buf) > 0 {}
}

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = decode(data) {
        assert_eq!(decode(&p.encode()).as_ref(), Ok(&p));
    }
    let t0 = Instant::now();
    let mut now = t0;
    let cfg = Config {
        recv_window: WINDOW,
        send_buffer: WINDOW,
        max_timeouts: 4,
        ..Config::default()
    };
    let mut syn = Packet::new(Type::Syn, 77);
    syn.seq_nr = 1;
    syn.wnd_size = 1 << 20;
    let mut acc = Conn::accept_with(&syn, cfg.clone(), now).expect("a SYN");
    let mut ini = Conn::connect_with(200, cfg, now);
    drain(&mut acc, now);
    drain(&mut ini, now);
    let mut ack = Packet::new(Type::State, 200);
    ack.seq_nr = 1000;
    ack.ack_nr = 1;
    ack.wnd_size = 1 << 20;
    ini.handle_packet(&ack, now);
    if let Ok(p) = decode(data) {
        acc.handle_packet(&p, now);
        ini.handle_packet(&p, now);
    }
    let scfg = SocketConfig {
        max_half_open: 2,
        max_conns: 3,
        max_per_ip: 2,
        resets_per_sec: 5,
        ..SocketConfig::default()
    };
    let mut sock = Socket::new(scfg, 9);
    let mut rest = data;
    while rest.len() >= 2 {
        let (op, len) = (rest[0], usize::from(rest[1]) * 8);
        let end = (2 + len).min(rest.len());
        let mut pkt = rest[2..end].to_vec();
        rest = &rest[end..];
        let c = if op & 1 == 0 { &mut acc } else { &mut ini };
        if op & 2 != 0 && pkt.len() >= 4 {
            pkt[2..4].copy_from_slice(&c.recv_id().to_be_bytes());
        }
        if op >> 2 == 0x3f {
            c.write(&[0x55; 64 << 10]);
        } else if op >> 2 != 0 {
            now += Duration::from_millis(u64::from(op >> 2) * 100);
            c.handle_timeout(now);
        }
        if let Ok(p) = decode(&pkt) {
            c.handle_packet(&p, now);
        }
        drain(c, now);
        let from = SocketAddr::from(([10, 0, 0, op & 3], 6881 + u16::from(op >> 7)));
        sock.handle_datagram(from, &pkt, now);
        sock.handle_timeout(now);
        let mut resets = 0;
        while let Some((_, d)) = sock.poll_transmit(now) {
            let p = decode(&d).expect("our own output decodes");
            resets += usize::from(p.ty == Type::Reset);
        }
        while let Some(e) = sock.poll_event() {
            if let uringseed::utp::Event::Readable(h) = e {
                let mut buf = [0u8; 4096];
                while sock.conn_mut(h).is_some_and(|c| c.read(&mut buf) > 0) {}
            }
        }
        assert!(
            sock.len() <= 3 && resets <= 5,
            "{} conns, {resets} resets",
            sock.len()
        );
    }
});
