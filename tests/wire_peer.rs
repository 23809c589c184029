//! The sans-IO peer state machine, driven with bytes and times only (no sockets, no clock).

use std::sync::Arc;
use std::time::{Duration, Instant};
use uringseed::bitfield::{full as full_bitfield, valid as valid_bitfield, SharedBitfield};
use uringseed::metainfo::{FileEntry, InfoHash, Torrent};
use uringseed::reasons::RejectReason;
use uringseed::storage::Layout;
use uringseed::wire::handshake::{reserved, Handshake};
use uringseed::wire::message::{self, Block, Decoded, Message};
use uringseed::wire::peer::KEEPALIVE_INTERVAL;
use uringseed::wire::{DropReason, Event, Limits, Peer, TorrentView};

const PL: u64 = 65536;
const TOTAL: u64 = 5 * PL + 1000; // 6 pieces, the last one short

fn view(have_all: bool) -> Arc<TorrentView> {
    let t = Torrent {
        info_hash: InfoHash([1; 20]),
        name: "t".into(),
        piece_length: PL,
        piece_hashes: vec![[0; 20]; 6],
        files: vec![FileEntry {
            path: vec!["t".into()],
            length: TOTAL,
            pad: false,
        }],
        single_file: true,
        total_length: TOTAL,
        private: false,
        source: None,
        announce: None,
        trackers: vec![],
        comment: None,
        created_by: None,
        creation_date: None,
        info_bytes: Vec::new(),
        v2: None,
    };
    let mut have = full_bitfield(6);
    if !have_all {
        have[0] &= !0x20; // piece 2 missing
    }
    Arc::new(TorrentView {
        info_hash: t.info_hash,
        metadata: None,
        pex: false,
        layout: Layout::new(&t),
        have: SharedBitfield::from_bytes(&have, 6),
        v2: None,
    })
}

fn limits() -> Limits {
    Limits {
        max_request: 16384,
        max_queued: 4,
        max_control_bytes: 1 << 16,
        idle_timeout: Duration::from_secs(300),
        listen_port: 6881,
        remote_ip: None,
        super_seed: false,
    }
}

fn theirs(fast: bool) -> Handshake {
    let mut hs = Handshake::ours(InfoHash([1; 20]), [9; 20]);
    if !fast {
        hs.reserved = [0; 8];
    }
    hs
}

fn enc(msgs: &[Message<'_>]) -> Vec<u8> {
    let mut v = Vec::new();
    for m in msgs {
        message::encode(m, &mut v);
    }
    v
}

/// Decodes everything the peer wants to send (handshake stripped if present).
fn sent(p: &mut Peer) -> Vec<String> {
    let mut bytes = p.poll_transmit().unwrap_or_default();
    if bytes.first() == Some(&19) {
        bytes.drain(..68);
    }
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(Decoded::Message(m, used)) = message::decode(&bytes[at..], 1 << 20) {
        out.push(format!("{m:?}"));
        at += used;
    }
    assert_eq!(at, bytes.len());
    out
}

fn req(index: u32, begin: u32, length: u32) -> Block {
    Block {
        index,
        begin,
        length,
    }
}

fn unchoked(fast: bool, have_all: bool, t0: Instant) -> Peer {
    let mut p = Peer::new(view(have_all), limits(), &theirs(fast), [2; 20], true, t0);
    p.handle_bytes(t0, &enc(&[Message::Interested])).unwrap();
    assert_eq!(p.take_events(), vec![Event::Interested]);
    p.set_choking(false);
    p.poll_transmit();
    p
}

#[test]
fn greets_with_handshake_extension_handshake_and_have_all_or_bitfield() {
    let t0 = Instant::now();
    let mut p = Peer::new(view(true), limits(), &theirs(true), [2; 20], true, t0);
    let bytes = p.poll_transmit().unwrap();
    let hs = Handshake::decode(&bytes).unwrap().unwrap();
    assert!(hs.has(reserved::FAST) && hs.has(reserved::EXTENSION));
    assert_eq!(hs.info_hash, InfoHash([1; 20]));
    let mut p = Peer::new(view(true), limits(), &theirs(true), [2; 20], true, t0);
    let msgs = sent(&mut p);
    assert!(msgs[0].starts_with("Extended { id: 0"), "{msgs:?}");
    // Its payload is canonical bencode with our listen port (`p`) and queue depth (`reqq`).
    let mut p = Peer::new(view(true), limits(), &theirs(true), [2; 20], true, t0);
    let bytes = p.poll_transmit().unwrap();
    let (ext, _) = match message::decode(&bytes[68..], 1 << 20).unwrap() {
        message::Decoded::Message(Message::Extended { id: 0, payload }, used) => {
            (payload.to_vec(), used)
        }
        other => panic!("{other:?}"),
    };
    let text = String::from_utf8_lossy(&ext);
    assert!(
        text.starts_with("d1:mde1:pi6881e4:reqqi4e1:v"),
        "extension handshake {text}"
    );
    let node = uringseed::bencode::decode(&ext).expect("extension handshake decodes");
    assert!(uringseed::bencode::is_canonical(&node), "{text}");
    assert_eq!(msgs[1], "HaveAll");
    // A peer without the fast extension gets a full bitfield with zero spare bits; a partial
    // seed sends a bitfield even to fast peers.
    let mut p = Peer::new(view(true), limits(), &theirs(false), [2; 20], true, t0);
    assert_eq!(
        sent(&mut p),
        vec![format!("{:?}", Message::Bitfield(&[0xff - 0x03]))]
    );
    let mut p = Peer::new(view(false), limits(), &theirs(true), [2; 20], true, t0);
    assert_eq!(
        sent(&mut p).last().unwrap(),
        &format!("{:?}", Message::Bitfield(&[0xdc]))
    );
}

#[test]
fn serves_valid_requests_coalesced_in_order() {
    let t0 = Instant::now();
    let mut p = unchoked(true, true, t0);
    let reqs: Vec<Message> = (0..4)
        .map(|i| Message::Request(req(0, i * 16384, 16384)))
        .collect();
    p.handle_bytes(t0, &enc(&reqs)).unwrap();
    let run = p.next_run(1 << 20).unwrap();
    assert_eq!((run.start, run.len, run.blocks.len()), (0, PL, 4));
    // Runs stop at a gap and at the byte budget; the last piece is short.
    let reqs = [
        req(1, 0, 16384),
        req(1, 32768, 16384),
        req(5, 0, 1000),
        req(4, 49152, 16384),
    ];
    p.handle_bytes(t0, &enc(&reqs.map(Message::Request)))
        .unwrap();
    assert_eq!(p.next_run(1 << 20).unwrap().blocks, vec![reqs[0]]);
    assert_eq!(p.next_run(1 << 20).unwrap().blocks, vec![reqs[1]]);
    let run = p.next_run(1 << 20).unwrap();
    assert_eq!(run.blocks, vec![reqs[2]]);
    assert_eq!(run.start, 5 * PL);
    assert_eq!(p.next_run(1).unwrap().blocks, vec![reqs[3]]);
    assert!(p.next_run(1 << 20).is_none());
}

#[test]
fn fast_peers_get_rejects_with_reasons() {
    let t0 = Instant::now();
    let mut p = unchoked(true, false, t0);
    let bad = [
        (req(0, 0, 16385), RejectReason::Oversized),
        (req(6, 0, 16384), RejectReason::OutOfRange),
        (req(5, 0, 1001), RejectReason::OutOfRange),
        (req(0, 65535, 2), RejectReason::OutOfRange),
        (req(0, 0, 0), RejectReason::OutOfRange),
        (req(2, 0, 16384), RejectReason::Unavailable),
    ];
    for (b, reason) in bad {
        p.handle_bytes(t0, &enc(&[Message::Request(b)])).unwrap();
        assert_eq!(p.take_events(), vec![Event::Rejected(reason)], "{b:?}");
        assert_eq!(sent(&mut p), vec![format!("{:?}", Message::Reject(b))]);
    }
    assert_eq!(p.queued_requests(), 0);
    // Queue cap (4): the fifth is rejected.
    let five: Vec<Message> = (0..5)
        .map(|i| Message::Request(req(1, i * 1024, 1024)))
        .collect();
    p.handle_bytes(t0, &enc(&five)).unwrap();
    assert_eq!(p.queued_requests(), 4);
    assert_eq!(
        p.take_events(),
        vec![Event::Rejected(RejectReason::QueueFull)]
    );
}

#[test]
fn peers_without_fast_extension_are_dropped_for_bad_requests() {
    let t0 = Instant::now();
    for (b, want) in [
        (req(0, 0, 32768), DropReason::OversizedRequest),
        (req(9, 0, 16384), DropReason::RequestOutOfRange),
        (req(2, 0, 16384), DropReason::UnavailablePiece),
    ] {
        let mut p = unchoked(false, false, t0);
        assert_eq!(p.handle_bytes(t0, &enc(&[Message::Request(b)])), Err(want));
    }
    // A request while choked is silently ignored (BEP 3), not served.
    let mut p = Peer::new(view(true), limits(), &theirs(false), [2; 20], true, t0);
    p.handle_bytes(t0, &enc(&[Message::Request(req(0, 0, 16384))]))
        .unwrap();
    assert!(p.next_run(1 << 20).is_none());
}

#[test]
fn cancel_removes_a_queued_request_and_choke_clears_the_queue() {
    let t0 = Instant::now();
    let mut p = unchoked(true, true, t0);
    let (a, b) = (req(0, 0, 16384), req(0, 16384, 16384));
    p.handle_bytes(
        t0,
        &enc(&[Message::Request(a), Message::Request(b), Message::Cancel(a)]),
    )
    .unwrap();
    assert_eq!(sent(&mut p), vec![format!("{:?}", Message::Reject(a))]);
    assert_eq!(p.next_run(1 << 20).unwrap().blocks, vec![b]);
    p.handle_bytes(t0, &enc(&[Message::Request(a)])).unwrap();
    p.set_choking(true);
    assert_eq!(
        sent(&mut p),
        vec!["Choke".to_string(), format!("{:?}", Message::Reject(a))]
    );
    assert!(p.next_run(1 << 20).is_none());
}

#[test]
fn malformed_input_drops_the_peer() {
    let t0 = Instant::now();
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (vec![0xff, 0xff, 0xff, 0xff], DropReason::MessageTooLong),
        (
            vec![0, 0, 0, 2, message::INTERESTED, 0],
            DropReason::MalformedMessage,
        ),
        (
            enc(&[Message::Bitfield(&[0xff, 0xff])]),
            DropReason::BadBitfield,
        ),
        (enc(&[Message::Bitfield(&[0xff])]), DropReason::BadBitfield), // spare bits set
        (enc(&[Message::Have(6)]), DropReason::BadHave),
        // Seeds have nothing to gain from a seed.
        (enc(&[Message::Bitfield(&[0xfc])]), DropReason::PeerIsSeed),
        (enc(&[Message::HaveAll]), DropReason::PeerIsSeed),
    ];
    for (bytes, want) in cases {
        let mut p = Peer::new(view(true), limits(), &theirs(true), [2; 20], true, t0);
        assert_eq!(p.handle_bytes(t0, &bytes), Err(want), "{bytes:?}");
    }
    let mut p = Peer::new(view(true), limits(), &theirs(true), [2; 20], true, t0);
    p.handle_bytes(
        t0,
        &enc(&[
            Message::Bitfield(&[0xf8]),
            Message::Have(5),
            Message::HaveNone,
        ]),
    )
    .unwrap();
    assert!(valid_bitfield(&[0xfc], 6) && !valid_bitfield(&[0xfe], 6) && !valid_bitfield(&[], 6));
}

#[test]
fn any_split_of_the_input_gives_the_same_result() {
    let t0 = Instant::now();
    let stream = enc(&[
        Message::Extended {
            id: 0,
            payload: b"d1:md6:ut_pexi1eee",
        },
        Message::HaveNone,
        Message::Interested,
        Message::KeepAlive,
        Message::Request(req(0, 0, 16384)),
        Message::Request(req(0, 16384, 16384)),
        Message::Cancel(req(0, 0, 16384)),
        Message::Request(req(3, 0, 16384)),
    ]);
    for split in 0..=stream.len() {
        let mut p = Peer::new(view(true), limits(), &theirs(true), [2; 20], true, t0);
        p.set_choking(false);
        p.poll_transmit();
        p.handle_bytes(t0, &stream[..split]).unwrap();
        p.handle_bytes(t0, &stream[split..]).unwrap();
        assert_eq!(
            p.next_run(1 << 20).unwrap().blocks,
            vec![req(0, 16384, 16384)],
            "split {split}"
        );
        assert_eq!(
            p.next_run(1 << 20).unwrap().blocks,
            vec![req(3, 0, 16384)],
            "split {split}"
        );
        assert!(p.is_interested());
    }
}

#[test]
fn keepalive_and_idle_timeout_follow_the_given_time() {
    let t0 = Instant::now();
    let mut p = Peer::new(view(true), limits(), &theirs(true), [2; 20], true, t0);
    p.poll_transmit();
    p.on_sent(t0);
    assert_eq!(p.next_timeout(), t0 + KEEPALIVE_INTERVAL);
    p.handle_timeout(t0 + KEEPALIVE_INTERVAL - Duration::from_secs(1))
        .unwrap();
    assert!(p.poll_transmit().is_none());
    let t1 = t0 + KEEPALIVE_INTERVAL;
    p.handle_timeout(t1).unwrap();
    assert_eq!(p.poll_transmit().unwrap(), vec![0, 0, 0, 0]);
    p.on_sent(t1);
    assert_eq!(
        p.handle_timeout(t0 + Duration::from_secs(300)),
        Err(DropReason::IdleTimeout)
    );
    // Receiving anything resets the idle timer.
    let mut p = Peer::new(view(true), limits(), &theirs(true), [2; 20], true, t0);
    p.handle_bytes(t0 + Duration::from_secs(200), &[0, 0, 0, 0])
        .unwrap();
    assert!(p.handle_timeout(t0 + Duration::from_secs(300)).is_ok());
}

#[test]
fn super_seeding_advertises_nothing_serves_only_offers_and_unrestricts_to_have_all() {
    let t0 = Instant::now();
    let l = Limits {
        super_seed: true,
        ..limits()
    };
    let mut p = Peer::new(view(true), l, &theirs(true), [2; 20], true, t0);
    let first = sent(&mut p);
    assert!(
        first.contains(&format!("{:?}", Message::HaveNone)),
        "{first:?}"
    );
    assert!(
        !first
            .iter()
            .any(|m| m.starts_with("Bitfield") || m == "HaveAll"),
        "{first:?}"
    );
    assert!(p.is_restricted());
    p.handle_bytes(t0, &enc(&[Message::Interested])).unwrap();
    p.take_events();
    p.set_choking(false);
    p.poll_transmit();
    // Not offered: refused (BEP 6 reject), counted as not_offered.
    p.handle_bytes(t0, &enc(&[Message::Request(req(1, 0, 16384))]))
        .unwrap();
    assert_eq!(
        p.take_events(),
        vec![Event::Rejected(RejectReason::NotOffered)]
    );
    assert_eq!(
        sent(&mut p),
        vec![format!("{:?}", Message::Reject(req(1, 0, 16384)))]
    );
    // Offered (once; an offer out of range or repeated is ignored): a have, then it is served.
    assert!(p.offer(1));
    assert!(!p.offer(1) && !p.offer(99));
    assert_eq!(sent(&mut p), vec![format!("{:?}", Message::Have(1))]);
    p.handle_bytes(t0, &enc(&[Message::Request(req(1, 0, 16384))]))
        .unwrap();
    assert_eq!(p.queued_requests(), 1);
    // The peer's own pieces are reported while super-seeding (the swarm's availability).
    p.handle_bytes(t0, &enc(&[Message::Have(3)])).unwrap();
    assert_eq!(p.take_events(), vec![Event::PeerHave(3)]);
    // Super-seeding over: have_all, and any verified piece may be requested.
    p.unrestrict();
    assert_eq!(sent(&mut p), vec![format!("{:?}", Message::HaveAll)]);
    assert!(!p.is_restricted() && !p.offer(2));
    p.handle_bytes(t0, &enc(&[Message::Request(req(2, 0, 16384))]))
        .unwrap();
    assert_eq!(p.queued_requests(), 2);
}
