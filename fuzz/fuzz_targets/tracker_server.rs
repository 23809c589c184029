//! The built-in tracker's decoders and its `TrackerCore` never panic, and what it sends keeps
//! its bounds. The input goes in whole as an HTTP request target and as a UDP datagram, then
//! as a sequence of requests (`[sel, len_hi, len_lo, bytes...]`: `sel & 7` picks one of 8
//! client addresses, 4 IPv4 and 4 IPv6; `sel & 8` sends it over HTTP instead of UDP; `sel & 16`
//! overwrites a datagram's first 8 bytes with the connection id issued to that address; the
//! clock advances `sel >> 5` minutes). Every HTTP body is canonical bencode; a UDP reply is at
//! most 1,500 bytes, a connect reply exactly 16, and nothing but a connect reply goes to an
//! address whose connection id did not check out; the table stays within its caps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};
use uringseed::bencode;
use uringseed::metainfo::InfoHash;
use uringseed::tracker_server::swarm::SwarmConfig;
use uringseed::tracker_server::{http, udp, TrackerConfig, TrackerCore};

const MAX_PEERS: usize = 4;
const MAX_TORRENTS: usize = 4;

fn addr(sel: u8) -> SocketAddr {
    let i = sel & 3;
    if sel & 4 == 0 {
        SocketAddr::from((Ipv4Addr::new(10, 0, 0, i + 1), 6881))
    } else {
        SocketAddr::from((
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(i) + 1),
            6881,
        ))
    }
}

fn http_req(core: &mut TrackerCore, target: &[u8], from: SocketAddr, now: Instant) {
    let r = core.handle_http(target, from, now);
    assert!(r.status == 200 || r.status == 404, "status {}", r.status);
    let node = bencode::decode(&r.body).expect("our own body decodes");
    assert!(bencode::is_canonical(&node));
    // 200 peers of 18 bytes plus the counts: never near this.
    assert!(r.body.len() < 8 * 1024, "body of {} bytes", r.body.len());
}

fn udp_req(core: &mut TrackerCore, pkt: &[u8], from: SocketAddr, now: Instant) {
    let head = udp::header(pkt);
    let proven = head.is_some_and(|(conn, _, _)| core.conn_ids.check(conn, from, now));
    let reply = core.handle_udp(pkt, from, now);
    if let Some(r) = reply {
        assert!(r.len() <= udp::MAX_REPLY, "reply of {} bytes", r.len());
        let (_, action, _) = head.expect("a reply only to a full header");
        if action == udp::ACTION_CONNECT {
            assert_eq!(r.len(), 16, "connect reply");
        } else {
            assert!(proven, "a reply to an unproven source");
        }
    }
}

fn check_bounds(core: &TrackerCore) {
    let s = core.stats;
    // Unregistered torrents share `max_torrents`; the one registered torrent always gets in
    // (seeds/tracker_server/torrent_cap: the 2026-12-03 finding, fixed in 9523ee7).
    let cap = MAX_TORRENTS + 1;
    assert!(s.torrents <= cap, "{} torrents", s.torrents);
    assert!(
        s.peers <= MAX_PEERS * s.torrents,
        "{} peers in {}",
        s.peers,
        s.torrents
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(http::HttpRequest::Scrape(v)) = http::parse_target(data) {
        assert!(!v.is_empty() && v.len() <= http::MAX_SCRAPE_HASHES);
    }
    if let Ok(udp::UdpRequest::Scrape { hashes, .. }) = udp::decode(data) {
        assert!(!hashes.is_empty() && hashes.len() <= udp::MAX_SCRAPE_HASHES);
    }
    let t0 = Instant::now();
    let mut now = t0;
    let cfg = TrackerConfig {
        swarm: SwarmConfig {
            open: data.first().is_some_and(|b| b & 1 == 1),
            max_peers_per_torrent: MAX_PEERS,
            max_torrents: MAX_TORRENTS,
            ..SwarmConfig::default()
        },
        trust_ip_param: data.first().is_some_and(|b| b & 2 == 2),
    };
    let mut core = TrackerCore::new(cfg, [0x42; 32], t0);
    core.allow(InfoHash([0xab; 20]));
    http_req(&mut core, data, addr(0), now);
    udp_req(&mut core, data, addr(4), now);
    check_bounds(&core);
    let mut rest = data;
    while rest.len() >= 3 {
        let sel = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]) & 0x1fff);
        let end = (3 + len).min(rest.len());
        let mut pkt = rest[3..end].to_vec();
        rest = &rest[end..];
        let from = addr(sel);
        now += Duration::from_secs(60 * u64::from(sel >> 5));
        if sel & 8 != 0 {
            http_req(&mut core, &pkt, from, now);
        } else {
            if sel & 16 != 0 && pkt.len() >= 8 {
                let id = core.conn_ids.issue(from, now);
                pkt[..8].copy_from_slice(&id.to_be_bytes());
            }
            udp_req(&mut core, &pkt, from, now);
        }
        if sel >> 5 == 7 {
            core.tick(now);
        }
        check_bounds(&core);
    }
});
