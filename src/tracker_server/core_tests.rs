//! Tests of [`TrackerCore`] end to end: HTTP and UDP requests in, bytes out, counters kept;
//! unproven UDP sources get nothing, the closed policy holds on both protocols.

use super::udp::tests::announce_req;
use super::*;
use std::net::Ipv6Addr;
use std::time::Duration;

const IH: InfoHash = InfoHash([0xab; 20]);

fn core(open: bool) -> (TrackerCore, Instant) {
    let t = Instant::now();
    let cfg = TrackerConfig {
        swarm: SwarmConfig {
            open,
            ..SwarmConfig::default()
        },
        trust_ip_param: false,
    };
    (TrackerCore::new(cfg, [5; 32], t), t)
}

fn v4(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(192, 0, 2, last), port))
}

fn v6(last: u16, port: u16) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last), port))
}

fn connect(c: &mut TrackerCore, from: SocketAddr, t: Instant) -> u64 {
    let mut req = vec![
        0x00, 0x00, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 1, 2, 3, 4,
    ];
    let r = c.handle_udp(&req, from, t).expect("a connect is answered");
    assert_eq!(r.len(), 16, "no amplification: 16 bytes for 16");
    assert_eq!(&r[..8], &[0, 0, 0, 0, 1, 2, 3, 4]);
    // A longer connect still gets 16 bytes back.
    req.extend_from_slice(&[0; 100]);
    assert_eq!(c.handle_udp(&req, from, t).unwrap().len(), 16);
    u64::from_be_bytes(r[8..16].try_into().unwrap())
}

fn http_announce(port: u16, extra: &str) -> String {
    format!(
        "/announce?info_hash={}&peer_id=-TR4050-aaaaaaaaaaaa&port={port}&uploaded=0&downloaded=0\
         &left=10{extra}",
        "%ab".repeat(20)
    )
}

#[test]
fn udp_connect_announce_scrape() {
    let (mut c, t) = core(false);
    c.allow(IH);
    let a = v4(1, 40000);
    let id = connect(&mut c, a, t);
    let r = c
        .handle_udp(&announce_req(id, 77, 2, -1, 6881), a, t)
        .unwrap();
    assert_eq!(&r[..8], &[0, 0, 0, 1, 0, 0, 0, 77]);
    assert_eq!(u32::from_be_bytes(r[8..12].try_into().unwrap()), 1800);
    assert_eq!(&r[12..20], &[0, 0, 0, 1, 0, 0, 0, 0], "1 leecher, 0 seeds");
    assert_eq!(r.len(), 20, "no other peers yet");
    // A second peer gets the first one, at the port it announced.
    let b = v4(2, 40001);
    let id_b = connect(&mut c, b, t);
    let r = c
        .handle_udp(&announce_req(id_b, 78, 0, 10, 7000), b, t)
        .unwrap();
    assert_eq!(&r[20..], &[192, 0, 2, 1, 0x1a, 0xe1]);
    let mut scrape = id.to_be_bytes().to_vec();
    scrape.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 9]);
    scrape.extend_from_slice(&IH.0);
    scrape.extend_from_slice(&[0x01; 20]);
    let r = c.handle_udp(&scrape, a, t).unwrap();
    let want = [[0, 0, 0, 2, 0, 0, 0, 9], [0; 8]].concat();
    assert_eq!(&r[..16], &want[..]);
    assert_eq!(&r[16..20], &[0, 0, 0, 2], "two leechers");
    assert_eq!(&r[20..], &[0; 12], "an unknown hash scrapes as zeros");
    assert_eq!(c.stats.udp_connects, 4);
    assert_eq!(c.stats.udp.announces_ok, 2);
    assert_eq!(c.stats.udp.scrapes, 1);
    assert_eq!((c.stats.peers, c.stats.torrents), (2, 1));
}

#[test]
fn udp_wrong_connection_id_gets_no_reply() {
    let (mut c, t) = core(true);
    let a = v4(1, 40000);
    let id = connect(&mut c, a, t);
    assert_eq!(
        c.handle_udp(&announce_req(id ^ 0x55, 1, 2, -1, 1), a, t),
        None
    );
    // The id works only from the address it was given to.
    assert_eq!(
        c.handle_udp(&announce_req(id, 1, 2, -1, 1), v4(9, 40000), t),
        None
    );
    assert_eq!(
        c.handle_udp(&announce_req(id, 1, 2, -1, 1), v4(1, 40001), t),
        None
    );
    // Malformed but with an unproven id: still nothing.
    let mut junk = id.to_be_bytes().to_vec();
    junk.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0xff]);
    assert_eq!(c.handle_udp(&junk, v4(9, 1), t), None);
    assert_eq!(c.stats.udp_bad_connection_id, 4);
    assert_eq!(c.stats.udp.announces_ok, 0);
    assert_eq!(c.stats.peers, 0);
    // Expired: two windows later.
    let late = t + Duration::from_secs(241);
    assert_eq!(c.handle_udp(&announce_req(id, 1, 2, -1, 1), a, late), None);
    assert_eq!(c.stats.udp_bad_connection_id, 5);
    // Within the next window it still works.
    let r = c.handle_udp(
        &announce_req(id, 1, 2, -1, 1),
        a,
        t + Duration::from_secs(200),
    );
    assert!(r.is_some());
}

#[test]
fn udp_errors_go_only_to_proven_sources() {
    let (mut c, t) = core(false);
    let a = v4(1, 40000);
    // Too short, or a connect with a bad magic: dropped.
    assert_eq!(c.handle_udp(&[0; 15], a, t), None);
    assert_eq!(c.handle_udp(&[0; 16], a, t), None);
    assert_eq!(c.stats.udp.malformed, 2);
    let id = connect(&mut c, a, t);
    let r = c
        .handle_udp(&announce_req(id, 5, 2, -1, 6881), a, t)
        .unwrap();
    assert_eq!(r, udp::encode_error(5, "unknown torrent"));
    assert_eq!(c.stats.udp.announces_refused, 1);
    let r = c
        .handle_udp(&announce_req(id, 6, 2, -1, 6881)[..50], a, t)
        .unwrap();
    assert_eq!(r, udp::encode_error(6, "truncated request"));
    let r = c.handle_udp(&announce_req(id, 7, 2, -1, 0), a, t).unwrap();
    assert_eq!(r, udp::encode_error(7, "invalid port"));
    assert_eq!(c.stats.udp.malformed, 4);
}

#[test]
fn udp_answers_carry_only_the_askers_family() {
    let (mut c, t) = core(true);
    let (a4, b4, a6, b6) = (v4(1, 1000), v4(2, 1001), v6(1, 1002), v6(2, 1003));
    for (i, from) in [a4, b4, a6, b6].into_iter().enumerate() {
        let id = connect(&mut c, from, t);
        c.handle_udp(&announce_req(id, 1, 2, -1, 2000 + i as u16), from, t)
            .unwrap();
    }
    let id = connect(&mut c, a4, t);
    let r = c
        .handle_udp(&announce_req(id, 1, 0, -1, 2000), a4, t)
        .unwrap();
    assert_eq!(&r[20..], &[192, 0, 2, 2, 0x07, 0xd1], "b4 only, 6 bytes");
    let id = connect(&mut c, a6, t);
    let r = c
        .handle_udp(&announce_req(id, 1, 0, -1, 2002), a6, t)
        .unwrap();
    assert_eq!(r.len(), 20 + 18);
    let mut want = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)
        .octets()
        .to_vec();
    want.extend_from_slice(&2003u16.to_be_bytes());
    assert_eq!(&r[20..], &want[..]);
    // A v4-mapped source on a dual-stack socket is an IPv4 client.
    let mapped = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 3).to_ipv6_mapped(), 1004));
    let id = connect(&mut c, mapped, t);
    let r = c
        .handle_udp(&announce_req(id, 1, 0, -1, 2004), mapped, t)
        .unwrap();
    assert_eq!(r.len(), 20 + 2 * 6);
}

#[test]
fn http_announce_uses_the_connection_address() {
    let (mut c, t) = core(false);
    c.allow(IH);
    let r = c.handle_http(
        http_announce(6881, "&ip=9.9.9.9").as_bytes(),
        v4(1, 5555),
        t,
    );
    assert_eq!(r.status, 200);
    let r = c.handle_http(http_announce(6882, "").as_bytes(), v6(1, 5556), t);
    let mut peers = b"5:peers6:".to_vec();
    peers.extend_from_slice(&[192, 0, 2, 1, 0x1a, 0xe1]);
    peers.extend_from_slice(b"6:peers60:e");
    assert!(
        r.body.ends_with(&peers),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(r.body.starts_with(b"d8:completei0e10:incompletei2e"));
    assert_eq!(c.stats.http.announces_ok, 2);
    // Trusted, the `ip` parameter wins.
    let mut cfg = TrackerConfig::default();
    cfg.swarm.open = true;
    cfg.trust_ip_param = true;
    let mut trusting = TrackerCore::new(cfg, [1; 32], t);
    trusting.handle_http(http_announce(1, "&ip=9.9.9.9").as_bytes(), v4(1, 1), t);
    let r = trusting.handle_http(http_announce(2, "&compact=0").as_bytes(), v4(2, 2), t);
    assert!(r.body.windows(11).any(|w| w == b"2:ip7:9.9.9"));
}

#[test]
fn http_refusals_and_scrape() {
    let (mut c, t) = core(false);
    let r = c.handle_http(http_announce(6881, "").as_bytes(), v4(1, 1), t);
    assert_eq!(
        (r.status, r.body),
        (200, b"d14:failure reason15:unknown torrente".to_vec())
    );
    assert_eq!(c.stats.http.announces_refused, 1);
    assert_eq!(c.stats.torrents, 0);
    let r = c.handle_http(b"/announce?info_hash=%zz", v4(1, 1), t);
    assert_eq!(r.body, b"d14:failure reason18:bad percent escapee");
    assert_eq!(c.stats.http.malformed, 1);
    assert_eq!(c.handle_http(b"/../etc/passwd", v4(1, 1), t).status, 404);
    assert_eq!(c.stats.http_not_found, 1);
    c.allow(IH);
    c.handle_http(
        http_announce(6881, "&event=completed&left=0").as_bytes(),
        v4(1, 1),
        t,
    );
    let q = format!(
        "/scrape?info_hash={}&info_hash={}",
        "%ab".repeat(20),
        "%01".repeat(20)
    );
    let r = c.handle_http(q.as_bytes(), v4(1, 1), t);
    let want = [
        &b"d5:filesd20:"[..],
        &[0xab; 20],
        b"d8:completei1e10:downloadedi1e10:incompletei0eeee",
    ]
    .concat();
    assert_eq!(r.body, want, "the unknown hash is left out");
    assert_eq!(c.stats.http.scrapes, 1);
}

#[test]
fn tick_expires_and_counts() {
    let (mut c, t) = core(true);
    c.handle_http(http_announce(6881, "").as_bytes(), v4(1, 1), t);
    assert_eq!((c.stats.peers, c.stats.torrents), (1, 1));
    c.tick(t + Duration::from_secs(3599));
    assert_eq!(c.stats.peers, 1);
    c.tick(t + Duration::from_secs(3601));
    assert_eq!((c.stats.peers, c.stats.torrents), (0, 0));
}

#[test]
fn hostile_datagrams_never_panic() {
    let (mut c, t) = core(true);
    let a = v4(1, 1);
    let id = connect(&mut c, a, t);
    let good = announce_req(id, 1, 2, -1, 6881);
    for n in 0..good.len() {
        let _ = c.handle_udp(&good[..n], a, t);
    }
    let mut x: u32 = 12345;
    for _ in 0..2000 {
        let mut pkt = good.clone();
        for _ in 0..4 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let i = (x >> 8) as usize % pkt.len();
            pkt[i] = (x >> 20) as u8;
        }
        if let Some(r) = c.handle_udp(&pkt, a, t) {
            assert!(r.len() <= udp::MAX_REPLY);
        }
    }
}
