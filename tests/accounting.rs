//! What the server says it uploaded against what peers received, when peers leave the moment
//! they have their last block (as a leecher that completes does): every byte that arrived is
//! counted, on both I/O backends. (A connection whose close and last send completed together
//! once ended before the send was counted: trackers and metrics were told less than was sent.)

mod common;

use common::inproc::single_file_server;
use common::raw::RawPeer;
use std::time::{Duration, Instant};
use uringseed::stats::Stats;
use uringseed::wire::message::{self, Block, Message};

const PIECE: u64 = 64 << 10;
const BLOCKS: u32 = 4;

fn leave_after_last_block(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (server, torrent, _, data) =
        single_file_server(dir.path(), backend, 16 * PIECE as usize, PIECE);
    let addr = server.local_addrs[0];
    let mut received = 0u64;
    let peers = 150u32;
    for n in 0..peers {
        let (mut p, _) = RawPeer::handshake(addr, torrent.info_hash, true);
        p.send(&[Message::Interested]);
        p.expect(message::UNCHOKE);
        let index = n % 16;
        let blocks: Vec<Message> = (0..BLOCKS)
            .map(|b| {
                Message::Request(Block {
                    index,
                    begin: b * 16384,
                    length: 16384,
                })
            })
            .collect();
        p.send(&blocks);
        for b in 0..BLOCKS as usize {
            let got = p.expect(message::PIECE);
            let at = index as usize * PIECE as usize + b * 16384;
            assert_eq!(got[8..], data[at..at + 16384]);
            received += 16384;
        }
        // Gone the moment the last block is in.
        drop(p);
    }
    let stats = server.stats();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.peers.get(false, false) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stats.peers.get(false, false), 0, "every peer left");
    assert_eq!(
        Stats::get(&stats.uploaded_payload_bytes),
        received,
        "{backend}: payload the server counted against what {peers} peers received"
    );
}

#[test]
fn every_byte_received_is_counted_when_peers_leave_at_once_io_uring() {
    leave_after_last_block("io_uring");
}

#[test]
fn every_byte_received_is_counted_when_peers_leave_at_once_portable() {
    leave_after_last_block("portable");
}
