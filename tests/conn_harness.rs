//! Protocol and timing cases of the connection code, on the in-process harness
//! (tests/common/harness.rs): the real `io::conn` over in-memory streams and disk under paused
//! tokio time. Each case checks what the peer sees and what is counted, then that an honest
//! peer is still served. (These were cases of tests/hostile.rs over sockets; the real-client
//! runs stay there.) Timeouts are measured on tokio's paused clock, so they are exact.

mod common;

use common::block_of;
use common::harness::{encode, handshake_bytes, run, HPeer, Harness};
use std::time::Duration;
use tokio::time::Instant;
use uringseed::metainfo::InfoHash;
use uringseed::reasons::{DropReason, RejectReason};
use uringseed::wire::message::{self, Block, Message};

const PL: u64 = 32768;
const BLOCK: u32 = 16384;

/// A multi-piece torrent whose last piece is short and whose piece count leaves spare bits.
fn harness(tweak: impl FnOnce(&mut uringseed::config::Config)) -> Harness {
    Harness::new(21 * PL as usize + 5000, PL, |c| {
        c.server.handshake_timeout_secs = 2;
        c.server.write_stall_secs = 3;
        c.server.idle_timeout_secs = 30;
        c.server.upload_slots = 0;
        tweak(c);
    })
}

/// A fresh honest peer still handshakes and gets the right bytes.
async fn probe(h: &Harness) {
    let mut p = h.unchoked(true).await;
    let b = Block {
        index: h.pieces() - 1,
        begin: 0,
        length: 100,
    };
    p.send(&[Message::Request(b)]).await;
    assert_eq!(p.expect(message::PIECE).await[8..], *h.block_data(b));
}

#[test]
fn garbage_and_wrong_protocol_strings_are_dropped_and_timed_out() {
    let h = harness(|_| {});
    run(async {
        // Longer than an MSE key plus the padding bound: no sync, dropped when read.
        let mut long = h.connect();
        let junk = format!("GET /announce HTTP/1.1\r\nX: {}\r\n\r\n", "y".repeat(900));
        long.send_raw(junk.as_bytes()).await;
        long.expect_closed_within(Duration::from_secs(1)).await;
        assert_eq!(h.dropped(DropReason::MseNoSync), 1);
        // Short garbage and wrong protocol strings: no answer, dropped at the handshake
        // timeout (2 s), not before.
        let t0 = Instant::now();
        let mut short = vec![h.connect()];
        short[0]
            .send_raw(b"GET /announce HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        for bad in [
            {
                let mut hs = handshake_bytes(h.info_hash(), true);
                hs[0] = 18;
                hs
            },
            {
                let mut hs = handshake_bytes(h.info_hash(), true);
                hs[1..20].copy_from_slice(b"BitTorrent protocoX");
                hs
            },
        ] {
            let p = h.connect();
            p.send_raw(&bad).await;
            short.push(p);
        }
        for p in &mut short {
            p.expect_closed_within(Duration::from_secs(3)).await;
            assert_eq!(p.buffered(), 0, "answered a short bad handshake");
        }
        assert_eq!(
            t0.elapsed(),
            Duration::from_secs(2),
            "the handshake timeout"
        );
        assert_eq!(h.dropped(DropReason::HandshakeTimeout), 3);
        // Silence: the same.
        let mut silent = h.connect();
        silent.expect_closed().await;
        assert_eq!(h.dropped(DropReason::HandshakeTimeout), 4);
        // An unknown info-hash: closed without our handshake.
        let mut p = h.connect();
        p.send_raw(&handshake_bytes(InfoHash([0xee; 20]), true))
            .await;
        p.expect_closed().await;
        assert_eq!(p.buffered(), 0);
        assert_eq!(h.dropped(DropReason::UnknownInfoHash), 1);
        probe(&h).await;
    });
}

#[test]
fn message_size_cap_is_exact() {
    let h = harness(|_| {});
    run(async {
        // A 4 GiB length prefix.
        let mut p = h.connect();
        p.handshake(h.info_hash(), true).await;
        p.send_raw(&[0xff; 4]).await;
        p.expect_closed().await;
        assert_eq!(h.dropped(DropReason::MessageTooLong), 1);
        // Exactly the cap (an unknown message id) is taken; one more byte is not.
        let cap = h.ctx.view.message_cap(h.shared.limits.max_request);
        assert_eq!(cap, 65536, "max(9 + 16384, 1 + ceil(pieces/8), 65536)");
        let mut p = h.unchoked(true).await;
        let mut at_cap = cap.to_be_bytes().to_vec();
        at_cap.push(0xc8);
        at_cap.resize(4 + cap as usize, 0x55);
        p.send_raw(&at_cap).await;
        let blk = Block {
            index: 0,
            begin: 0,
            length: BLOCK,
        };
        p.send(&[Message::Request(blk)]).await;
        assert_eq!(p.expect(message::PIECE).await[8..], *h.block_data(blk));
        p.send_raw(&(cap + 1).to_be_bytes()).await;
        p.expect_closed().await;
        assert_eq!(h.dropped(DropReason::MessageTooLong), 2);
        probe(&h).await;
    });
}

#[test]
fn bad_requests_are_rejected_for_fast_peers_and_dropped_otherwise() {
    let h = harness(|_| {});
    let (pieces, last) = (h.pieces(), h.pieces() - 1);
    let last_len = (h.stream.len() as u64 - u64::from(last) * PL) as u32;
    let b = |index, begin, length| Block {
        index,
        begin,
        length,
    };
    let out_of_range = [
        b(0, PL as u32 - 1, 2),
        b(1, PL as u32, BLOCK),
        b(0, u32::MAX, BLOCK),
        b(last, last_len, 1),
        b(pieces, 0, BLOCK),
        b(u32::MAX, 0, BLOCK),
        b(0, 0, 0),
        b(last, last_len, 0),
    ];
    let oversized = [b(0, 0, BLOCK + 1), b(0, 0, u32::MAX)];
    run(async {
        let mut p = h.unchoked(true).await;
        for bad in out_of_range.iter().chain(&oversized) {
            p.send(&[Message::Request(*bad)]).await;
            assert_eq!(block_of(&p.expect(message::REJECT).await), *bad);
        }
        let good = b(0, 0, BLOCK);
        p.send(&[Message::Request(good)]).await;
        assert_eq!(p.expect(message::PIECE).await[8..], *h.block_data(good));
        assert_eq!(h.rejected(RejectReason::OutOfRange), 8);
        assert_eq!(h.rejected(RejectReason::Oversized), 2);
        assert_eq!(h.dropped(DropReason::RequestOutOfRange), 0);
        // Without the fast extension: disconnected, one each.
        for (bad, reason, n) in [
            (out_of_range[0], DropReason::RequestOutOfRange, 1),
            (out_of_range[4], DropReason::RequestOutOfRange, 2),
            (out_of_range[6], DropReason::RequestOutOfRange, 3),
            (oversized[0], DropReason::OversizedRequest, 1),
        ] {
            let mut q = h.unchoked(false).await;
            q.send(&[Message::Request(bad)]).await;
            q.expect_closed().await;
            assert_eq!(h.dropped(reason), n, "{bad:?}");
        }
        probe(&h).await;
    });
}

#[test]
fn a_request_flood_past_the_queue_cap_is_rejected_or_dropped() {
    let h = Harness::new(60 * PL as usize + 5000, PL, |c| {
        c.server.max_queued_requests = 50;
        c.server.upload_slots = 0;
    });
    // Every block once, none contiguous with the one before (odd blocks backwards, then even
    // ones backwards): each is a run of its own.
    let all = h.blocks();
    let flood: Vec<Block> = (all.iter().skip(1).step_by(2).rev())
        .chain(all.iter().step_by(2).rev())
        .copied()
        .collect();
    // More than the queue holds, in less than one 4 KiB socket read.
    assert!(
        flood.len() > 100 && flood.len() * 17 < 4096,
        "{}",
        flood.len()
    );
    let msgs: Vec<Message> = flood.iter().map(|x| Message::Request(*x)).collect();
    run(async {
        // Sent in one go: the server takes the whole flood in one read.
        let mut p = h.unchoked(true).await;
        p.send(&msgs).await;
        let (mut served, mut rejected) = (0u64, 0u64);
        while served + rejected < flood.len() as u64 {
            let (id, payload) = p.recv().await.expect("closed during the flood");
            match id {
                message::PIECE => {
                    let got = block_of(&payload);
                    let want = flood
                        .iter()
                        .find(|x| x.index == got.index && x.begin == got.begin)
                        .expect("a piece that was not requested");
                    assert_eq!(payload[8..], *h.block_data(*want));
                    served += 1;
                }
                message::REJECT => rejected += 1,
                _ => {}
            }
        }
        assert_eq!(
            (served, rejected),
            (50, flood.len() as u64 - 50),
            "the queue holds 50"
        );
        assert_eq!(h.rejected(RejectReason::QueueFull), rejected);
        let mut q = h.unchoked(false).await;
        q.send(&msgs).await;
        q.expect_closed().await;
        assert_eq!(h.dropped(DropReason::QueueFull), 1);
        probe(&h).await;
    });
}

#[test]
fn endless_cancels_of_unrequested_blocks_cost_nothing() {
    let h = harness(|_| {});
    let all = h.blocks();
    let cancels = encode(
        &all.iter()
            .cycle()
            .take(5000)
            .map(|x| Message::Cancel(*x))
            .collect::<Vec<_>>(),
    );
    run(async {
        let mut p = h.unchoked(true).await;
        let rss_before = common::rss_kib(None);
        for _ in 0..40 {
            p.send_raw(&cancels).await; // 200,000 cancels, 3.4 MB
        }
        let blk = all[0];
        p.send(&[Message::Request(blk)]).await;
        let (id, payload) = p.recv().await.expect("closed during the cancels");
        assert_eq!(
            id,
            message::PIECE,
            "a cancel of nothing must not be answered"
        );
        assert_eq!(payload[8..], *h.block_data(blk));
        let rss_after = common::rss_kib(None);
        assert!(rss_after < rss_before + 32 * 1024, "memory grew by cancels");
        assert_eq!(
            h.shared
                .stats
                .dropped
                .all()
                .iter()
                .map(|d| d.1)
                .sum::<u64>(),
            0
        );
    });
}

#[test]
fn bad_bitfields_and_haves_are_dropped() {
    let h = harness(|_| {});
    let pieces = h.pieces();
    let nbytes = (pieces as usize).div_ceil(8);
    assert!(pieces % 8 != 0, "the torrent must have spare bits");
    let mut with_spare = vec![0u8; nbytes];
    *with_spare.last_mut().unwrap() = 1;
    run(async {
        for (bits, fast) in [
            (vec![0u8; nbytes + 1], true),
            (vec![0u8; nbytes - 1], false),
            (vec![], true),
            (with_spare, true),
        ] {
            let mut p = h.connect();
            p.handshake(h.info_hash(), fast).await;
            p.send(&[Message::Bitfield(&bits)]).await;
            p.expect_closed().await;
        }
        assert_eq!(h.dropped(DropReason::BadBitfield), 4);
        // A seed (full bitfield, or have_all) has nothing to get from us.
        let mut p = h.connect();
        p.handshake(h.info_hash(), true).await;
        p.send(&[Message::HaveAll]).await;
        p.expect_closed().await;
        assert_eq!(h.dropped(DropReason::PeerIsSeed), 1);
        for (index, fast) in [(pieces, true), (u32::MAX, false)] {
            let mut p = h.unchoked(fast).await;
            p.send(&[Message::Have(index)]).await;
            p.expect_closed().await;
        }
        assert_eq!(h.dropped(DropReason::BadHave), 2);
        probe(&h).await;
    });
}

#[test]
fn idle_peers_get_keep_alives_and_are_dropped_at_the_idle_timeout() {
    let h = harness(|c| c.server.idle_timeout_secs = 300);
    run(async {
        let mut p = h.connect();
        p.handshake(h.info_hash(), true).await;
        p.expect(message::HAVE_ALL).await;
        let t0 = Instant::now();
        // Nothing more from either side until the keep-alive at 120 s (4 zero bytes).
        let got = p.mem.read(64).await;
        assert_eq!(
            (got, t0.elapsed()),
            (vec![0u8; 4], Duration::from_secs(120))
        );
        p.expect_closed().await;
        assert_eq!(t0.elapsed(), Duration::from_secs(300), "the idle timeout");
        assert_eq!(h.dropped(DropReason::IdleTimeout), 1);
    });
}

#[test]
fn peers_that_never_read_are_dropped_after_the_write_stall_time() {
    let h = harness(|_| {});
    let reqs: Vec<Message> = h.blocks().iter().map(|x| Message::Request(*x)).collect();
    run(async {
        // Ask for the whole torrent, take nothing: writes stop making progress once the
        // 4 KiB buffer is full, and the peer goes write_stall_secs (3 s) later.
        let mut peers = Vec::new();
        for _ in 0..10 {
            let mut p = h.connect_with(4096);
            p.handshake(h.info_hash(), true).await;
            p.expect(message::HAVE_ALL).await;
            p.send(&[Message::Interested]).await;
            p.expect(message::UNCHOKE).await;
            p.send(&reqs).await;
            peers.push(p);
        }
        let t0 = Instant::now();
        while h.dropped(DropReason::WriteStall) < 10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert!(t0.elapsed() < Duration::from_secs(30), "not dropped");
        }
        let took = t0.elapsed();
        assert!(
            (Duration::from_millis(2500)..Duration::from_secs(10)).contains(&took),
            "dropped after {took:?}; write_stall_secs is 3"
        );
        for p in &peers {
            assert!(p.ended() && p.mem.closed_by_server());
        }
        probe(&h).await;
    });
}

/// A peer that reads steadily, just slower than one run per write_stall_secs, makes progress
/// all the time and must not be dropped as stalled.
#[test]
fn a_slow_reader_that_keeps_reading_is_not_dropped_for_write_stall() {
    let h = Harness::new(5_400_000, PL, |c| {
        c.server.write_stall_secs = 3;
        c.server.upload_slots = 0;
    });
    let blocks = h.blocks();
    run(async {
        let mut p = h.connect_with(64 << 10);
        p.handshake(h.info_hash(), true).await;
        p.expect(message::HAVE_ALL).await;
        p.send(&[Message::Interested]).await;
        p.expect(message::UNCHOKE).await;
        // 5 MiB requested ahead of what was read, 20 KB read every 100 ms (200 KB/s, about
        // 5 s per 1 MiB run), for 20 s.
        let (mut requested, mut next, mut got) = (0usize, 0usize, 0usize);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            let mut reqs = Vec::new();
            while requested < got + (5 << 20) {
                let blk = blocks[next % blocks.len()];
                next += 1;
                requested += blk.length as usize + 13;
                reqs.push(Message::Request(blk));
            }
            p.send(&reqs).await;
            let mut want = 20_000;
            while want > 0 {
                let chunk = p.mem.read(want).await;
                assert!(!chunk.is_empty(), "closed after {:?}", t0.elapsed());
                got += chunk.len();
                want -= chunk.len();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(got >= 20 * 190_000, "read {got} bytes");
        assert_eq!(h.dropped(DropReason::WriteStall), 0);
        assert!(!p.ended());
    });
}

#[test]
fn read_errors_reject_and_withdraw_or_drop_and_the_rest_is_served() {
    let h = harness(|_| {});
    run(async {
        let mut p = h.unchoked(true).await;
        let blk = |index| Block {
            index,
            begin: 0,
            length: BLOCK,
        };
        p.send(&[Message::Request(blk(3))]).await;
        assert_eq!(p.expect(message::PIECE).await[8..], *h.block_data(blk(3)));
        // The disk fails: a reject (read_error), the piece withdrawn; then unavailable.
        h.disk.fail.set(true);
        p.send(&[Message::Request(blk(4))]).await;
        assert_eq!(block_of(&p.expect(message::REJECT).await), blk(4));
        assert!(!h.ctx.view.have.has(4), "withdrawn");
        h.disk.fail.set(false);
        p.send(&[Message::Request(blk(4))]).await;
        assert_eq!(block_of(&p.expect(message::REJECT).await), blk(4));
        assert_eq!(h.rejected(RejectReason::ReadError), 1);
        assert_eq!(h.rejected(RejectReason::Unavailable), 1);
        let stats = &h.shared.stats;
        assert_eq!(uringseed::stats::Stats::get(&stats.piece_read_errors), 1);
        assert_eq!(uringseed::stats::Stats::get(&stats.pieces_withdrawn), 1);
        // A peer without BEP 6 sees it missing, and is dropped when a read fails for it.
        let mut q = h.connect();
        q.handshake(h.info_hash(), false).await;
        let bits = q.expect(message::BITFIELD).await;
        assert_eq!(bits[0], 0b1111_0111, "piece 4 withdrawn");
        q.send(&[Message::Interested]).await;
        q.expect(message::UNCHOKE).await;
        h.disk.fail.set(true);
        q.send(&[Message::Request(blk(5))]).await;
        q.expect_closed().await;
        assert_eq!(h.dropped(DropReason::PieceReadError), 1);
        h.disk.fail.set(false);
        p.send(&[Message::Request(blk(6))]).await;
        assert_eq!(p.expect(message::PIECE).await[8..], *h.block_data(blk(6)));
    });
}

#[test]
fn the_choker_rotates_slots_and_unchoked_peers_get_data() {
    let h = harness(|c| {
        c.server.upload_slots = 1;
        c.server.idle_timeout_secs = 300;
    });
    run(async {
        let mut peers: Vec<HPeer> = Vec::new();
        for _ in 0..3 {
            let mut p = h.connect();
            p.handshake(h.info_hash(), true).await;
            p.expect(message::HAVE_ALL).await;
            p.send(&[Message::Interested]).await;
            peers.push(p);
        }
        // The first gets the one slot at once.
        peers[0].expect(message::UNCHOKE).await;
        let t0 = Instant::now();
        let now = || uringseed::io::conn::now();
        // First tick (10 s): the optimistic slot goes to the longest waiting.
        tokio::time::sleep(Duration::from_secs(10)).await;
        h.ctx.choke_tick(now());
        peers[1].expect(message::UNCHOKE).await;
        assert_eq!(h.ctx.unchoked(), 2);
        // At 30 s the regular slot rotates from the first to the third.
        tokio::time::sleep_until(t0 + Duration::from_secs(30)).await;
        h.ctx.choke_tick(now());
        peers[0].expect(message::CHOKE).await;
        peers[2].expect(message::UNCHOKE).await;
        let b = Block {
            index: 2,
            begin: 0,
            length: BLOCK,
        };
        peers[2].send(&[Message::Request(b)]).await;
        assert_eq!(peers[2].expect(message::PIECE).await[8..], *h.block_data(b));
        // A choked fast peer's request is rejected (choked).
        peers[0].send(&[Message::Request(b)]).await;
        assert_eq!(block_of(&peers[0].expect(message::REJECT).await), b);
        assert_eq!(h.rejected(RejectReason::Choked), 1);
    });
}

#[test]
fn a_removed_torrent_closes_its_connections() {
    let h = harness(|_| {});
    run(async {
        let mut p = h.unchoked(true).await;
        assert!(h.shared.torrents.remove(&h.info_hash()).is_some());
        p.expect_closed().await;
        assert_eq!(h.dropped(DropReason::TorrentRemoved), 1);
        // And the next one is refused as unknown.
        let mut q = h.connect();
        q.send_raw(&handshake_bytes(h.info_hash(), true)).await;
        q.expect_closed().await;
        assert_eq!(h.dropped(DropReason::UnknownInfoHash), 1);
    });
}
