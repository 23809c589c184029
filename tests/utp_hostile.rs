//! uTP under attack, against a real `uringseed serve` on loopback: garbage datagrams, uTP
//! headers that do not decode, and SYN floods from 200 loopback addresses (127.0.0.2..) that
//! never answer our STATE, then an honest uTP client (the crate's own sans-IO
//! `uringseed::utp::Socket` over a UDP socket) that handshakes and downloads a block.
//!
//! What must hold: the flood becomes no connection (uTP accepts only once the initiator proves
//! its address, so `uringseed_utp_connections_total{direction="in"}` counts the honest client
//! alone), the half-open table evicts instead of refusing (the honest SYN, sent last, is still
//! taken), every bad datagram is counted by kind, and the honest client gets byte-exact data.
//! The same honest exchange over IPv6 loopback (a second listen address, `[::1]`).

mod common;

use common::harness::handshake_bytes;
use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use uringseed::utp::{self, Event, Handle, Packet, Socket, SocketConfig, Type};

/// A uTP client socket driven in real time.
struct Client {
    udp: UdpSocket,
    core: Socket,
    h: Handle,
    server: SocketAddr,
}

impl Client {
    fn connect(server: SocketAddr) -> Client {
        let local = if server.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let udp = UdpSocket::bind(local).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let mut core = Socket::new(SocketConfig::default(), 7);
        let h = core.connect(server, Instant::now()).unwrap();
        let mut c = Client {
            udp,
            core,
            h,
            server,
        };
        c.turn();
        c
    }

    /// One round: send what is due, take what arrived, run the timers.
    fn turn(&mut self) {
        let now = Instant::now();
        while let Some((to, d)) = self.core.poll_transmit(now) {
            self.udp.send_to(&d, to).unwrap();
        }
        let mut buf = [0u8; 2048];
        if let Ok((n, from)) = self.udp.recv_from(&mut buf) {
            assert_eq!(from, self.server);
            self.core.handle_datagram(from, &buf[..n], Instant::now());
        }
        self.core.handle_timeout(Instant::now());
        while let Some(e) = self.core.poll_event() {
            assert!(!matches!(e, Event::Closed(..)), "closed: {e:?}");
        }
    }

    fn write(&mut self, mut data: &[u8]) {
        let until = Instant::now() + Duration::from_secs(10);
        while !data.is_empty() {
            assert!(Instant::now() < until, "write stalled");
            let n = self.core.conn_mut(self.h).expect("open").write(data);
            data = &data[n..];
            self.turn();
        }
    }

    /// Reads exactly `n` bytes (within `limit`).
    fn read_exact(&mut self, n: usize, limit: Duration) -> Vec<u8> {
        let until = Instant::now() + limit;
        let mut out = vec![0u8; n];
        let mut got = 0;
        while got < n {
            assert!(
                Instant::now() < until,
                "read {got} of {n} bytes in {limit:?}"
            );
            got += self
                .core
                .conn_mut(self.h)
                .expect("open")
                .read(&mut out[got..]);
            if got < n {
                self.turn();
            }
        }
        out
    }

    /// The next BitTorrent message: (id, payload); keep-alives skipped.
    fn message(&mut self) -> (u8, Vec<u8>) {
        loop {
            let len = self.read_exact(4, Duration::from_secs(10));
            let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
            assert!(len <= 1 << 20, "message of {len} bytes");
            if len == 0 {
                continue;
            }
            let m = self.read_exact(len, Duration::from_secs(10));
            return (m[0], m[1..].to_vec());
        }
    }
}

fn msg(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    v.push(id);
    v.extend_from_slice(payload);
    v
}

fn syn(conn_id: u16) -> Vec<u8> {
    let mut p = Packet::new(Type::Syn, conn_id);
    p.seq_nr = 1;
    p.wnd_size = 1 << 20;
    p.encode()
}

/// As an honest peer over uTP: handshake, interested, unchoked, block 1 of piece 1, byte for
/// byte.
fn fetch_block(server: SocketAddr, ih: uringseed::metainfo::InfoHash, data: &[u8], s: &Serve) {
    let mut c = Client::connect(server);
    c.write(&handshake_bytes(ih, true));
    let hs = c.read_exact(68, Duration::from_secs(10));
    assert_eq!(&hs[28..48], &ih.0, "the handshake names the torrent");
    c.write(&msg(2, &[]));
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Instant::now() < until,
            "never unchoked\n{}",
            s.proc.report()
        );
        if c.message().0 == 1 {
            break;
        }
    }
    let mut req = Vec::new();
    for v in [1u32, 16384, 16384] {
        req.extend_from_slice(&v.to_be_bytes());
    }
    c.write(&msg(6, &req));
    let block = loop {
        let (id, p) = c.message();
        assert_ne!(id, 16, "request rejected\n{}", s.proc.report());
        if id == 7 {
            break p;
        }
    };
    assert_eq!(&block[..8], &[0, 0, 0, 1, 0, 0, 0x40, 0]);
    assert_eq!(&block[8..], &data[262_144 + 16_384..262_144 + 32_768]);
}

#[test]
fn floods_make_no_connections_and_an_honest_utp_peer_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(1 << 20, 29);
    let file = dir.path().join("flood.bin");
    std::fs::write(&file, &data).unwrap();
    let torrent = dir.path().join("flood.torrent");
    let ih = hex_hash(&make_torrent(
        &file,
        &torrent,
        &["--piece-length", "262144"],
    ));
    let mut s = serve("uringseed", &torrent, dir.path(), &[], &[], dir.path());
    let ready = s.ready();
    assert!(ready.contains("(4 of 4 pieces good)"), "{ready}");
    let server = s.addr;

    // 1. Garbage: neither uTP nor KRPC, and uTP headers with a broken extension chain.
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..500u32 {
        junk.send_to(&[0xee, i as u8, 3, 4, 5, 6, 7, 8], server)
            .unwrap();
        let mut bad = Packet::new(Type::State, i as u16).encode();
        bad[1] = 1; // a selective ack that runs past the end
        junk.send_to(&bad, server).unwrap();
    }
    // 2. SYN floods: 5 SYNs from each of 200 addresses, never followed up.
    for a in 2..202u32 {
        let ip = format!("127.0.{}.{}", a / 250, 2 + a % 250);
        let Ok(sock) = UdpSocket::bind(format!("{ip}:0")) else {
            continue;
        };
        for id in 0..5u16 {
            sock.send_to(&syn(1000 + id * 7), server).unwrap();
        }
    }
    // And 100 from one address (past the per-address cap, which holds unproven SYNs too: the
    // honest peer below comes from another address).
    let one = UdpSocket::bind("127.0.3.1:0").unwrap();
    for id in 0..100u16 {
        one.send_to(&syn(20_000 + id * 3), server).unwrap();
    }

    // 3. An honest peer over uTP: handshake, interested, a block, byte for byte.
    let t = Instant::now();
    fetch_block(server, ih, &data, &s);
    println!(
        "honest uTP peer served in {:?} after the floods",
        t.elapsed()
    );

    // 4. What the operator sees.
    std::thread::sleep(Duration::from_millis(1500)); // counters are sampled each second
    let m = |series: &str| s.metric(series);
    assert_eq!(m("uringseed_utp_connections_total{direction=\"in\"}"), 1.0);
    assert_eq!(m("uringseed_utp_connections"), 1.0);
    assert!(m("uringseed_utp_datagrams_total{result=\"malformed\"}") >= 1000.0);
    let evicted = m("uringseed_utp_refused_total{reason=\"half_open_evicted\"}");
    let per_ip = m("uringseed_utp_refused_total{reason=\"per_ip\"}");
    println!("half-open evicted {evicted}, refused per address {per_ip}");
    assert!(evicted >= 1000.0 - 256.0, "evicted {evicted}");
    assert!(per_ip >= 36.0, "per-address refusals {per_ip}");
    // The honest peer's bytes are in the upload counters.
    assert!(m("uringseed_utp_bytes_sent_total") >= 16384.0);
    assert!(m("uringseed_uploaded_bytes_total{type=\"payload\"}") >= 16384.0);
    assert!(utp::looks_like_utp(&syn(1)));
    s.stop();
}

#[test]
fn a_utp_peer_over_ipv6_is_served() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = pseudo_random(1 << 20, 31);
    let file = dir.path().join("six.bin");
    std::fs::write(&file, &data).unwrap();
    let torrent = dir.path().join("six.torrent");
    let ih = hex_hash(&make_torrent(
        &file,
        &torrent,
        &["--piece-length", "262144"],
    ));
    let v6: SocketAddr = format!("[::1]:{}", free_port()).parse().unwrap();
    let v6s = v6.to_string();
    let mut s = serve(
        "uringseed",
        &torrent,
        dir.path(),
        &["--listen", &v6s],
        &[],
        dir.path(),
    );
    assert!(s.ready().contains("(4 of 4 pieces good)"));
    fetch_block(v6, ih, &data, &s);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        s.metric("uringseed_utp_connections_total{direction=\"in\"}"),
        1.0
    );
    s.stop();
}
