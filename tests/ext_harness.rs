//! The BEP 10 extension protocol, BEP 9 metadata exchange and BEP 11 peer exchange on the
//! in-process harness (the real connection code over in-memory streams, paused time): what our
//! extension handshake says for public and private torrents, a magnet client fetching the exact
//! info dictionary, rejects past the end and under a flood (bounded memory), extended messages
//! before the handshake or nested 1,000 deep dropped and counted, and PEX: each peer told of the
//! others within seconds, at most once a minute, never for a private torrent, and what peers
//! tell us handed to the peer-address intake as PEX.

mod common;

use common::harness::{run, HPeer, Harness};
use sha1::{Digest, Sha1};
use std::net::SocketAddr;
use std::time::Duration;
use uringseed::bencode::{self, Value};
use uringseed::reasons::{CandidateResult, DropReason, PeerSourceKind};
use uringseed::wire::message::{self, Message};
use uringseed::wire::{metadata, pex};

/// A torrent whose info dictionary is more than one metadata piece (1024 pieces of 16 KiB).
fn harness(private: bool) -> Harness {
    Harness::new_with(16 << 20, 16384, private, |c| {
        c.server.idle_timeout_secs = 3600
    })
}

fn ext(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    message::encode(&Message::Extended { id, payload }, &mut v);
    v
}

/// Handshaken with the extension bit, past have_all; returns the server's extension handshake.
async fn connect(h: &Harness, from: &str) -> (HPeer, Vec<u8>) {
    let mut p = h.connect_from(from.parse().unwrap(), 1 << 20);
    p.handshake(h.info_hash(), true).await;
    let hs = p.expect(message::EXTENDED).await;
    assert_eq!(hs[0], 0, "the extension handshake comes first");
    p.expect(message::HAVE_ALL).await;
    (p, hs[1..].to_vec())
}

fn m_of(hs: &[u8]) -> Vec<(String, i64)> {
    let node = bencode::decode(hs).unwrap();
    match &node.get("m").unwrap().value {
        Value::Dict(e) => e
            .iter()
            .map(|(k, v)| {
                let Value::Int(i) = v.value else { panic!() };
                (String::from_utf8_lossy(k).into_owned(), i)
            })
            .collect(),
        _ => panic!("m is not a dictionary"),
    }
}

#[test]
fn the_extension_handshake_says_what_we_serve_for_public_and_private_torrents() {
    let h = harness(false);
    run(async {
        let (_p, hs) = connect(&h, "10.0.0.7:40000").await;
        let node = bencode::decode(&hs).unwrap();
        assert!(bencode::is_canonical(&node));
        assert_eq!(
            m_of(&hs),
            vec![("ut_metadata".into(), 1), ("ut_pex".into(), 2)]
        );
        let size = h.torrent.info_bytes.len() as i64;
        assert!(size > 16384, "more than one metadata piece: {size}");
        assert_eq!(node.get("metadata_size").unwrap().value, Value::Int(size));
        assert_eq!(node.get("p").unwrap().value, Value::Int(6881));
        assert_eq!(
            node.get("yourip").unwrap().value,
            Value::Bytes(&[10, 0, 0, 7])
        );
    });
    let h = harness(true);
    run(async {
        let (_p, hs) = connect(&h, "10.0.0.7:40000").await;
        let node = bencode::decode(&hs).unwrap();
        assert!(
            m_of(&hs).is_empty(),
            "no ut_metadata or ut_pex for a private torrent"
        );
        assert!(node.get("metadata_size").is_none());
    });
}

#[test]
fn a_magnet_client_gets_the_exact_info_dictionary_and_rejects_past_the_end() {
    let h = harness(false);
    run(async {
        let (mut p, hs) = connect(&h, "10.0.0.7:40000").await;
        let Value::Int(size) = bencode::decode(&hs)
            .unwrap()
            .get("metadata_size")
            .unwrap()
            .value
        else {
            panic!()
        };
        p.send_raw(&ext(0, b"d1:md11:ut_metadatai3eee")).await;
        let n = metadata::pieces(size as usize) as u32;
        let mut got = Vec::new();
        for piece in 0..=n {
            p.send_raw(&ext(1, &metadata::encode_request(piece))).await;
            let reply = p.expect(message::EXTENDED).await;
            assert_eq!(reply[0], 3, "sent under the id the peer chose");
            match metadata::decode(&reply[1..]).unwrap() {
                metadata::MetadataMessage::Data {
                    piece: i,
                    total_size,
                    bytes,
                } => {
                    assert_eq!((i, total_size), (piece, size as u64));
                    got.extend_from_slice(bytes);
                }
                metadata::MetadataMessage::Reject(i) => {
                    assert_eq!((i, piece), (n, n), "past the end")
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, h.torrent.info_bytes);
        assert_eq!(
            Sha1::digest(&got)[..],
            h.info_hash().0[..],
            "hashes to the info-hash"
        );
        assert_eq!(
            uringseed::stats::Stats::get(&h.shared.stats.metadata_served),
            u64::from(n)
        );
        assert_eq!(
            uringseed::stats::Stats::get(&h.shared.stats.metadata_rejected),
            1
        );
    });
}

#[test]
fn a_flood_of_metadata_requests_is_rejected_not_buffered() {
    let h = harness(false);
    run(async {
        let (mut p, _) = connect(&h, "10.0.0.7:40000").await;
        p.send_raw(&ext(0, b"d1:md11:ut_metadatai3eee")).await;
        let one = ext(1, &metadata::encode_request(0));
        let flood: Vec<u8> = one
            .iter()
            .copied()
            .cycle()
            .take(one.len() * 10_000)
            .collect();
        let rss = common::rss_kib(None);
        p.send_raw(&flood).await;
        let (mut served, mut rejected) = (0, 0);
        while served + rejected < 10_000 {
            let reply = p.expect(message::EXTENDED).await;
            match metadata::decode(&reply[1..]).unwrap() {
                metadata::MetadataMessage::Data { .. } => served += 1,
                metadata::MetadataMessage::Reject(_) => rejected += 1,
                other => panic!("{other:?}"),
            }
        }
        eprintln!("10,000 metadata requests: {served} served, {rejected} rejected");
        assert!(rejected > 8_000, "{served} served, {rejected} rejected");
        assert!(common::rss_kib(None) < rss + 32 * 1024, "memory grew");
        assert_eq!(h.dropped_total(), 0, "still connected");
    });
}

#[test]
fn extended_messages_before_the_handshake_or_nested_1000_deep_drop_the_peer() {
    let h = harness(false);
    run(async {
        // A metadata request before any extension handshake.
        let (mut p, _) = connect(&h, "10.0.0.7:40000").await;
        p.send_raw(&ext(1, &metadata::encode_request(0))).await;
        p.expect_closed().await;
        assert_eq!(h.dropped(DropReason::ExtensionBeforeHandshake), 1);
        // A handshake nested 1,000 deep.
        let (mut p, _) = connect(&h, "10.0.0.7:40001").await;
        let deep = format!("d1:m{}{}e", "d1:a".repeat(1000), "e".repeat(1000));
        p.send_raw(&ext(0, deep.as_bytes())).await;
        p.expect_closed().await;
        assert_eq!(h.dropped(DropReason::MalformedExtension), 1);
        // An extended message from a peer that did not set the extension bit.
        let mut p = h.connect_from("10.0.0.7:40002".parse().unwrap(), 1 << 20);
        p.handshake(h.info_hash(), false).await;
        p.expect(message::BITFIELD).await;
        p.send_raw(&ext(0, b"d1:mdee")).await;
        p.expect_closed().await;
        assert_eq!(h.dropped(DropReason::ExtensionBeforeHandshake), 2);
        // Unknown ids after a handshake are ignored: the peer is still served.
        let (mut p, _) = connect(&h, "10.0.0.7:40003").await;
        p.send_raw(&ext(0, b"d1:md5:ut_xyi9eee")).await;
        p.send_raw(&ext(77, b"anything")).await;
        p.send(&[Message::Interested]).await;
        p.expect(message::UNCHOKE).await;
        assert_eq!(h.dropped_total(), 3);
    });
}

/// The addresses of the PEX messages among the next messages (until `until`).
async fn pex_messages(p: &mut HPeer, limit: Duration) -> Vec<Vec<SocketAddr>> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, async {
        while let Some((id, payload)) = p.recv().await {
            if id == message::EXTENDED && payload[0] == 9 {
                out.push(
                    pex::decode(&payload[1..])
                        .unwrap()
                        .iter()
                        .map(|x| x.addr)
                        .collect(),
                );
            }
        }
    })
    .await;
    out
}

#[test]
fn peers_are_told_of_each_other_once_a_minute_and_what_they_tell_goes_to_the_intake() {
    let h = harness(false);
    run(async {
        let mut peers = Vec::new();
        for (i, port) in [7001u16, 7002, 7003].iter().enumerate() {
            let (p, _) = connect(&h, &format!("10.0.1.{}:40000", i + 1)).await;
            p.send_raw(&ext(0, format!("d1:md6:ut_pexi9ee1:pi{port}ee").as_bytes()))
                .await;
            peers.push(p);
        }
        let t0 = tokio::time::Instant::now();
        // Within a few seconds each hears of the other two at their listen ports; then
        // nothing more for a minute (nothing changed).
        for (i, p) in peers.iter_mut().enumerate() {
            let msgs = pex_messages(p, Duration::from_secs(70) - t0.elapsed()).await;
            assert_eq!(msgs.len(), 1, "peer {i}: {msgs:?}");
            let mut got = msgs[0].clone();
            got.sort();
            let want: Vec<SocketAddr> = (0..3)
                .filter(|&j| j != i)
                .map(|j| format!("10.0.1.{}:{}", j + 1, 7001 + j).parse().unwrap())
                .collect();
            assert_eq!(got, want, "peer {i}");
        }
        assert_eq!(uringseed::stats::Stats::get(&h.shared.stats.pex_sent), 3);
        // Peers one tells us about go to the intake, labelled PEX.
        let told = [
            pex::PexPeer {
                addr: "10.9.0.1:6881".parse().unwrap(),
                flags: 0,
            },
            pex::PexPeer {
                addr: "10.9.0.2:6881".parse().unwrap(),
                flags: 0,
            },
        ];
        peers[0].send_raw(&ext(2, &pex::encode(&told, &[]))).await;
        peers[0].send(&[Message::Interested]).await;
        peers[0].expect(message::UNCHOKE).await;
        h.shared
            .run_dials(uringseed::io::conn::now() + Duration::from_secs(1));
        let dialed = h
            .shared
            .stats
            .candidates(PeerSourceKind::Pex, CandidateResult::Dialed);
        assert_eq!(dialed, 2);
    });
}

#[test]
fn a_private_torrent_never_exchanges_peers() {
    let h = harness(true);
    run(async {
        let mut peers = Vec::new();
        for (i, port) in [7001u16, 7002].iter().enumerate() {
            let (p, _) = connect(&h, &format!("10.0.1.{}:40000", i + 1)).await;
            p.send_raw(&ext(0, format!("d1:md6:ut_pexi9ee1:pi{port}ee").as_bytes()))
                .await;
            peers.push(p);
        }
        let told = [pex::PexPeer {
            addr: "10.9.0.1:6881".parse().unwrap(),
            flags: 0,
        }];
        peers[0].send_raw(&ext(2, &pex::encode(&told, &[]))).await;
        for p in peers.iter_mut() {
            assert!(pex_messages(p, Duration::from_secs(180)).await.is_empty());
        }
        assert_eq!(uringseed::stats::Stats::get(&h.shared.stats.pex_sent), 0);
        assert_eq!(
            uringseed::stats::Stats::get(&h.shared.stats.pex_received),
            0
        );
    });
}
