//! Tests of the HTTP tracker codec: request targets as clients send them (BEP 3 percent
//! escapes), every bound and malformed value refused, and the bencoded answers byte for byte
//! (BEP 23 compact peers, BEP 7 `peers6`, dictionary peers, scrape, failure).

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

/// 12 34 56 78 9a bc de f1 23 45 67 89 ab cd ef 12 34 56 78 9a, escaped as clients do.
const IH_Q: &str = "%124Vx%9a%bc%de%f1%23Eg%89%ab%cd%ef%124Vx%9a";
const IH: [u8; 20] = [
    0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf1, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x12,
    0x34, 0x56, 0x78, 0x9a,
];

fn announce_target(extra: &str) -> String {
    format!(
        "/announce?info_hash={IH_Q}&peer_id=-UT3530-%00%01%02abcdefghi&port=6881&uploaded=0\
         &downloaded=10&left=1234567890123&{extra}"
    )
}

fn parse_announce(extra: &str) -> Result<HttpAnnounce, HttpError> {
    match parse_target(announce_target(extra).as_bytes())? {
        HttpRequest::Announce(a) => Ok(a),
        other => panic!("not an announce: {other:?}"),
    }
}

#[test]
fn parses_a_client_announce() {
    let a = parse_announce("event=started&compact=1&numwant=80&key=x&ip=1.2.3.4").unwrap();
    assert_eq!(a.info_hash, InfoHash(IH));
    assert_eq!(&a.peer_id, b"-UT3530-\x00\x01\x02abcdefghi");
    assert_eq!((a.port, a.uploaded, a.downloaded), (6881, 0, 10));
    assert_eq!(a.left, 1_234_567_890_123);
    assert_eq!(a.event, Event::Started);
    assert!(a.compact && !a.no_peer_id);
    assert_eq!(a.numwant, Some(80));
    assert_eq!(a.ip, Some(IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4))));
    let a = parse_announce("compact=0&no_peer_id=1&event=stopped&numwant=-1").unwrap();
    assert!(!a.compact && a.no_peer_id);
    assert_eq!((a.event, a.numwant, a.ip), (Event::Stopped, None, None));
    assert_eq!(
        parse_announce("event=completed").unwrap().event,
        Event::Completed
    );
    assert_eq!(parse_announce("event=").unwrap().event, Event::None);
    assert_eq!(parse_announce("event=paused").unwrap().event, Event::None);
}

#[test]
fn refuses_missing_and_malformed_values() {
    let full = announce_target("");
    for (k, name) in [
        ("info_hash", "info_hash"),
        ("peer_id", "peer_id"),
        ("port", "port"),
        ("left", "left"),
    ] {
        let start = full.find(&format!("{k}=")).unwrap();
        let end = full[start..]
            .find('&')
            .map_or(full.len(), |e| start + e + 1);
        let cut = format!("{}{}", &full[..start], &full[end..]);
        assert_eq!(
            parse_target(cut.as_bytes()),
            Err(HttpError::Missing(name)),
            "{cut}"
        );
    }
    let bad = |extra: &str| parse_announce(extra).unwrap_err();
    assert_eq!(bad("port=0"), HttpError::Invalid("port"));
    assert_eq!(bad("port=65536"), HttpError::Invalid("port"));
    assert_eq!(bad("port=+1"), HttpError::Invalid("port"));
    assert_eq!(bad("left=18446744073709551616"), HttpError::Invalid("left"));
    assert_eq!(bad("left=-1"), HttpError::Invalid("left"));
    assert_eq!(bad("event=bogus"), HttpError::Invalid("event"));
    assert_eq!(bad("numwant=1x"), HttpError::Invalid("numwant"));
    assert_eq!(
        bad(&format!("info_hash={IH_Q}")),
        HttpError::Invalid("info_hash")
    );
    // 19 and 21 bytes.
    let short =
        "/announce?info_hash=1234567890123456789&peer_id=12345678901234567890&port=1&left=0";
    assert_eq!(
        parse_target(short.as_bytes()),
        Err(HttpError::Invalid("info_hash"))
    );
    let long =
        "/announce?info_hash=%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00";
    assert_eq!(
        parse_target(long.as_bytes()),
        Err(HttpError::Invalid("info_hash"))
    );
    let pid = "/announce?info_hash=12345678901234567890&peer_id=short&port=1&left=0";
    assert_eq!(
        parse_target(pid.as_bytes()),
        Err(HttpError::Invalid("peer_id"))
    );
    // The largest left fits.
    assert_eq!(
        parse_announce("left=18446744073709551615").unwrap().left,
        u64::MAX
    );
}

#[test]
fn refuses_bad_escapes_and_raw_bytes() {
    for bad in ["x=%", "x=%4", "x=%zz", "x=%4g", "x=a b", "x=\x01", "%=1"] {
        assert_eq!(
            parse_target(format!("/scrape?{bad}").as_bytes()),
            Err(HttpError::BadEscape),
            "{bad:?}"
        );
    }
    assert_eq!(
        parse_target(b"/scrape?info_hash=\xff\xff"),
        Err(HttpError::BadEscape)
    );
    // `+` is the byte 0x2b, not a space.
    let t = "/scrape?info_hash=++++++++++++++++++++";
    assert_eq!(
        parse_target(t.as_bytes()),
        Ok(HttpRequest::Scrape(vec![InfoHash([b'+'; 20])]))
    );
}

#[test]
fn bounds_paths_queries_and_scrapes() {
    assert_eq!(parse_target(b"/"), Err(HttpError::NotFound));
    assert_eq!(parse_target(b"/announce.php?x"), Err(HttpError::NotFound));
    assert_eq!(parse_target(b""), Err(HttpError::NotFound));
    let long_path = format!("/{}", "a".repeat(MAX_PATH));
    assert_eq!(parse_target(long_path.as_bytes()), Err(HttpError::TooLong));
    let pad = "&k=v".repeat(MAX_QUERY / 4);
    let target = format!("{}{pad}", announce_target(""));
    assert_eq!(parse_target(target.as_bytes()), Err(HttpError::TooLong));
    let one = format!("info_hash={IH_Q}&");
    let ok = format!("/scrape?{}", one.repeat(MAX_SCRAPE_HASHES));
    match parse_target(ok.as_bytes()).unwrap() {
        HttpRequest::Scrape(v) => assert_eq!(v, vec![InfoHash(IH); MAX_SCRAPE_HASHES]),
        other => panic!("{other:?}"),
    }
    let over = format!("/scrape?{}", one.repeat(MAX_SCRAPE_HASHES + 1));
    assert_eq!(parse_target(over.as_bytes()), Err(HttpError::TooManyHashes));
    assert_eq!(
        parse_target(b"/scrape"),
        Err(HttpError::Missing("info_hash"))
    );
    assert_eq!(
        parse_target(b"/scrape/?info_hash=12345678901234567890"),
        Ok(HttpRequest::Scrape(vec![InfoHash(
            *b"12345678901234567890"
        )]))
    );
}

#[test]
fn truncations_of_a_good_target_never_panic() {
    let t = announce_target("event=started&numwant=5");
    for n in 0..=t.len() {
        let _ = parse_target(&t.as_bytes()[..n]);
    }
    // Every single-byte change, too.
    for i in 0..t.len() {
        for b in [0u8, b'%', b'&', b'=', b'?', 0xff] {
            let mut v = t.clone().into_bytes();
            v[i] = b;
            let _ = parse_target(&v);
        }
    }
}

fn reply() -> Reply {
    Reply {
        interval: 1800,
        min_interval: 300,
        complete: 2,
        incomplete: 1,
        peers4: vec![PeerInfo {
            addr: SocketAddr::from((Ipv4Addr::new(10, 10, 10, 5), 128)),
            peer_id: *b"ABCDEFGHIJKLMNOPQRST",
        }],
        peers6: vec![PeerInfo {
            addr: SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 0x1ae1)),
            peer_id: [b'z'; 20],
        }],
    }
}

#[test]
fn encodes_compact_peers_and_peers6() {
    let got = encode_announce(&reply(), true, false);
    let mut want =
        b"d8:completei2e10:incompletei1e8:intervali1800e12:min intervali300e5:peers6:".to_vec();
    want.extend_from_slice(&[10, 10, 10, 5, 0, 128]);
    want.extend_from_slice(b"6:peers618:");
    want.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    want.extend_from_slice(&[0x1a, 0xe1, b'e']);
    assert_eq!(got, want);
    let node = crate::bencode::decode(&got).unwrap();
    assert!(crate::bencode::is_canonical(&node));
    let empty = Reply {
        peers4: vec![],
        peers6: vec![],
        ..reply()
    };
    assert!(encode_announce(&empty, true, false).ends_with(b"5:peers0:6:peers60:e"));
}

#[test]
fn encodes_dictionary_peers() {
    let got = encode_announce(&reply(), false, false);
    let want: &[u8] = b"d8:completei2e10:incompletei1e8:intervali1800e12:min intervali300e5:peers\
        ld2:ip10:10.10.10.57:peer id20:ABCDEFGHIJKLMNOPQRST4:porti128ee\
        d2:ip11:2001:db8::17:peer id20:zzzzzzzzzzzzzzzzzzzz4:porti6881eeee";
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    let no_id = encode_announce(&reply(), false, true);
    assert!(!no_id.windows(7).any(|w| w == b"peer id"));
    assert!(crate::bencode::is_canonical(
        &crate::bencode::decode(&no_id).unwrap()
    ));
}

#[test]
fn encodes_scrape_sorted_and_failures() {
    let c = |n| Counts {
        complete: n,
        downloaded: n + 10,
        incomplete: n + 20,
    };
    let got = encode_scrape(&[(InfoHash([b'b'; 20]), c(2)), (InfoHash([b'a'; 20]), c(1))]);
    let want = format!(
        "d5:filesd20:{}d8:completei1e10:downloadedi11e10:incompletei21ee\
         20:{}d8:completei2e10:downloadedi12e10:incompletei22eeee",
        "a".repeat(20),
        "b".repeat(20)
    );
    assert_eq!(String::from_utf8(got).unwrap(), want);
    assert_eq!(encode_scrape(&[]), b"d5:filesdee");
    assert_eq!(
        encode_failure("unknown torrent"),
        b"d14:failure reason15:unknown torrente"
    );
    assert_eq!(HttpError::Missing("port").reason(), "missing port");
}
