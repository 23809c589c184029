//! Tests of the BEP 15 codec and connection ids: hand-written datagrams decode to their
//! fields, replies are laid out byte for byte and bounded, ids are tied to the address and
//! live for the current and previous window only.

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn connect_req(tid: u32) -> Vec<u8> {
    let mut v = vec![0x00, 0x00, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0];
    v.extend_from_slice(&tid.to_be_bytes());
    v
}

pub(crate) fn announce_req(conn: u64, tid: u32, event: u32, numwant: i32, port: u16) -> Vec<u8> {
    let mut v = conn.to_be_bytes().to_vec();
    v.extend_from_slice(&1u32.to_be_bytes());
    v.extend_from_slice(&tid.to_be_bytes());
    v.extend_from_slice(&[0xab; 20]); // info_hash
    v.extend_from_slice(b"-qB4650-123456789012"); // peer_id
    v.extend_from_slice(&5u64.to_be_bytes()); // downloaded
    v.extend_from_slice(&1000u64.to_be_bytes()); // left
    v.extend_from_slice(&7u64.to_be_bytes()); // uploaded
    v.extend_from_slice(&event.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]); // ip
    v.extend_from_slice(&0xdead_beefu32.to_be_bytes()); // key
    v.extend_from_slice(&numwant.to_be_bytes());
    v.extend_from_slice(&port.to_be_bytes());
    assert_eq!(v.len(), 98);
    v
}

#[test]
fn decodes_connect() {
    assert_eq!(
        decode(&connect_req(0x0102_0304)),
        Ok(UdpRequest::Connect {
            transaction_id: 0x0102_0304
        })
    );
    let mut bad = connect_req(1);
    bad[7] = 0x81;
    assert_eq!(decode(&bad), Err(UdpError::BadProtocolId));
    assert_eq!(decode(&connect_req(1)[..15]), Err(UdpError::Truncated));
    assert_eq!(decode(&[]), Err(UdpError::Truncated));
}

#[test]
fn decodes_announce_fields() {
    let pkt = announce_req(0x1122_3344_5566_7788, 9, 2, -1, 6881);
    let UdpRequest::Announce(a) = decode(&pkt).unwrap() else {
        panic!("not an announce")
    };
    assert_eq!(a.connection_id, 0x1122_3344_5566_7788);
    assert_eq!(a.transaction_id, 9);
    assert_eq!(a.info_hash, InfoHash([0xab; 20]));
    assert_eq!(&a.peer_id, b"-qB4650-123456789012");
    assert_eq!((a.downloaded, a.left, a.uploaded), (5, 1000, 7));
    assert_eq!((a.event, a.ip, a.key), (Event::Started, 0, 0xdead_beef));
    assert_eq!((a.numwant, a.port), (None, 6881));
    let with_opts = [pkt.clone(), vec![2, 5, b'/', b'a', b'n', b'n', b'o']].concat();
    assert!(decode(&with_opts).is_ok(), "BEP 41 options are ignored");
    for (n, ev) in [(0, Event::None), (1, Event::Completed), (3, Event::Stopped)] {
        let UdpRequest::Announce(a) = decode(&announce_req(1, 1, n, 30, 1)).unwrap() else {
            panic!()
        };
        assert_eq!((a.event, a.numwant), (ev, Some(30)));
    }
    assert_eq!(
        decode(&announce_req(1, 1, 4, 0, 1)),
        Err(UdpError::BadEvent)
    );
    for n in 16..98 {
        assert_eq!(decode(&pkt[..n]), Err(UdpError::Truncated), "{n} bytes");
    }
}

#[test]
fn decodes_scrape_within_bounds() {
    let mut pkt = 77u64.to_be_bytes().to_vec();
    pkt.extend_from_slice(&2u32.to_be_bytes());
    pkt.extend_from_slice(&5u32.to_be_bytes());
    assert_eq!(decode(&pkt), Err(UdpError::BadScrapeCount));
    for i in 0..MAX_SCRAPE_HASHES as u8 {
        pkt.extend_from_slice(&[i; 20]);
    }
    match decode(&pkt).unwrap() {
        UdpRequest::Scrape {
            connection_id,
            transaction_id,
            hashes,
        } => {
            assert_eq!((connection_id, transaction_id), (77, 5));
            assert_eq!(hashes.len(), 74);
            assert_eq!(hashes[73], InfoHash([73; 20]));
        }
        other => panic!("{other:?}"),
    }
    pkt.extend_from_slice(&[0xff; 20]);
    assert_eq!(decode(&pkt), Err(UdpError::BadScrapeCount));
    let mut unknown = connect_req(1);
    unknown[11] = 9;
    assert_eq!(decode(&unknown), Err(UdpError::UnknownAction(9)));
}

#[test]
fn encodes_replies_byte_for_byte() {
    assert_eq!(
        encode_connect(0x0a0b_0c0d, 0x0102_0304_0506_0708),
        [0, 0, 0, 0, 0x0a, 0x0b, 0x0c, 0x0d, 1, 2, 3, 4, 5, 6, 7, 8]
    );
    let p4 = PeerInfo {
        addr: SocketAddr::from((Ipv4Addr::new(10, 10, 10, 5), 128)),
        peer_id: [0; 20],
    };
    let p6 = PeerInfo {
        addr: SocketAddr::from((Ipv6Addr::LOCALHOST, 0x1ae1)),
        peer_id: [0; 20],
    };
    let r = Reply {
        interval: 1800,
        min_interval: 300,
        complete: 3,
        incomplete: 4,
        peers4: vec![p4],
        peers6: vec![p6],
    };
    let got = encode_announce(7, &r, false);
    let want = [
        0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0x07, 0x08, 0, 0, 0, 4, 0, 0, 0, 3, 10, 10, 10, 5, 0, 128,
    ];
    assert_eq!(got, want);
    let got6 = encode_announce(7, &r, true);
    assert_eq!(got6.len(), 20 + 18);
    assert_eq!(
        &got6[20..],
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x1a, 0xe1]
    );
    let c = Counts {
        complete: 1,
        downloaded: 2,
        incomplete: 3,
    };
    assert_eq!(
        encode_scrape(0x10, &[c]),
        [0, 0, 0, 2, 0, 0, 0, 0x10, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]
    );
    assert_eq!(encode_error(5, "no"), [0, 0, 0, 3, 0, 0, 0, 5, b'n', b'o']);
    assert_eq!(
        encode_error(5, &"x".repeat(5000)).len(),
        8 + MAX_ERROR_MESSAGE
    );
}

#[test]
fn replies_never_pass_1500_bytes() {
    let many = |v6: bool| -> Vec<PeerInfo> {
        (0..500u16)
            .map(|i| PeerInfo {
                addr: if v6 {
                    SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i), i))
                } else {
                    SocketAddr::from((Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8), i))
                },
                peer_id: [0; 20],
            })
            .collect()
    };
    let r = Reply {
        interval: 1,
        min_interval: 1,
        complete: 0,
        incomplete: 0,
        peers4: many(false),
        peers6: many(true),
    };
    let v4 = encode_announce(1, &r, false);
    let v6 = encode_announce(1, &r, true);
    assert_eq!(v4.len(), 20 + 6 * 246);
    assert_eq!(v6.len(), 20 + 18 * 82);
    assert!(v4.len() <= MAX_REPLY && v6.len() <= MAX_REPLY);
    assert_eq!(
        encode_scrape(1, &[Counts::default(); 100]).len(),
        8 + 12 * 74
    );
}

#[test]
fn connection_ids_are_tied_to_the_address() {
    let t = Instant::now();
    let mut ids = ConnectionIds::new([3; 32], t);
    let a = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 6881));
    let b = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 2), 6881));
    let a_port = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 6882));
    let id = ids.issue(a, t);
    assert!(ids.check(id, a, t));
    assert!(!ids.check(id, b, t));
    assert!(!ids.check(id, a_port, t));
    assert!(!ids.check(id ^ 1, a, t));
    let other_seed = ConnectionIds::new([4; 32], t).issue(a, t);
    assert_ne!(id, other_seed, "the secret matters");
    // A v4-mapped IPv6 address gets the id of the IPv4 address it is; a real v6 one does not.
    let mapped = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped(), 6881));
    assert!(ids.check(id, mapped, t));
    let v6 = SocketAddr::from((Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0xc000, 0x0201), 6881));
    assert!(!ids.check(id, v6, t));
}

#[test]
fn previous_window_ids_are_accepted_and_older_ones_are_not() {
    let t = Instant::now();
    let mut ids = ConnectionIds::new([9; 32], t);
    let a = SocketAddr::from((Ipv4Addr::new(198, 51, 100, 7), 51413));
    let id0 = ids.issue(a, t + Duration::from_secs(119));
    let t1 = t + Duration::from_secs(121);
    let id1 = ids.issue(a, t1);
    assert_ne!(id0, id1, "a new window, a new id");
    assert!(ids.check(id0, a, t1), "the previous window's id");
    assert!(ids.check(id1, a, t1));
    let t2 = t + Duration::from_secs(241);
    assert!(!ids.check(id0, a, t2), "two windows old");
    assert!(ids.check(id1, a, t2));
    // A jump over many windows keeps only the one before the current.
    let far = t + Duration::from_secs(120 * 50 + 1);
    let id49 = ConnectionIds::new([9; 32], t).issue(a, t + Duration::from_secs(120 * 49));
    assert!(!ids.check(id1, a, far));
    assert!(ids.check(id49, a, far));
}

#[test]
fn hmac_matches_rfc_2202() {
    // RFC 2202 test case 1 for HMAC-SHA1: key 0x0b * 20, data "Hi There".
    let mac = hmac_sha1(&[0x0b; 20], b"Hi There");
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "b617318655057264e28bc0b6fb378c8ef146be00");
}
