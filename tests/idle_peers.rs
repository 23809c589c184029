//! Idle peers' memory (issue 20, item 4, at a size that fits CI): the `uringseed` binary holds
//! 1,000 handshaken peers that then say nothing; its RSS grows by less than 5 KiB per peer
//! (`benches/connections.rs` measures 3.7 KiB in a release build at 19,800 peers; a 4 KiB
//! read buffer per connection alone made it 7.5), its metrics count every one of them, and
//! an active peer beside them still gets its blocks byte-exact.

mod common;

use common::raw::RawPeer;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use uringseed::wire::message::{self, Block, Message};

/// Peers held (fewer where the descriptor limit is lower).
const PEERS: usize = 1000;
/// KiB of RSS one idle peer may cost (debug build: larger futures than release).
const MAX_KIB_PER_PEER: f64 = 5.0;

fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// The soft descriptor limit raised to the hard one (inherited by the server), so 1,000
/// sockets on each side fit where the soft limit is 1,024; returns that limit.
fn raise_nofile() -> usize {
    // SAFETY: plain getrlimit/setrlimit on this process.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            return r.rlim_cur as usize;
        }
    }
    1024
}

#[test]
fn a_thousand_idle_peers_cost_under_5_kib_each_and_are_all_counted() {
    // Where even the hard limit is small, fewer peers (in hundreds), but never under 300.
    let peers = (PEERS.min(raise_nofile().saturating_sub(256) / 2) / 100 * 100).max(300);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    std::fs::create_dir_all(&root).unwrap();
    let data = pseudo_random(1 << 20, 9);
    std::fs::write(root.join("idle.bin"), &data).unwrap();
    let torrent = dir.path().join("idle.torrent");
    let hex = make_torrent(
        &root.join("idle.bin"),
        &torrent,
        &["--piece-length", "65536"],
    );
    let ih = hex_hash(&hex);
    let mut s = serve("idle-peers", &torrent, &root, &[], &[], dir.path());
    s.ready();
    let pid = s.pid();
    // One peer through a whole exchange first, so what every connection shares (buffers,
    // the mapping, the runtime's first allocations) is in the baseline.
    let fetch = |p: &mut RawPeer, index: u32| {
        p.send(&[Message::Request(Block {
            index,
            begin: 0,
            length: 16384,
        })]);
        let got = p.expect(message::PIECE);
        let at = index as usize * 65536;
        assert_eq!(got[8..], data[at..at + 16384]);
    };
    let (mut active, _) = RawPeer::handshake(s.addr, ih, true);
    active.send(&[Message::Interested]);
    active.expect(message::UNCHOKE);
    fetch(&mut active, 0);
    std::thread::sleep(Duration::from_millis(300));
    let before = status_kib(pid, "VmRSS:");

    let mut idle = Vec::with_capacity(peers);
    for chunk in 0..peers / 100 {
        let start = idle.len();
        for i in 0..100 {
            let mut c = TcpStream::connect(s.addr).unwrap();
            let mut hs = vec![19u8];
            hs.extend_from_slice(b"BitTorrent protocol");
            hs.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 4]);
            hs.extend_from_slice(&ih.0);
            hs.extend_from_slice(format!("-ID0001-{:012}", chunk * 100 + i).as_bytes());
            c.write_all(&hs).unwrap();
            idle.push(c);
        }
        for c in &mut idle[start..] {
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut reply = [0u8; 68];
            c.read_exact(&mut reply).expect("handshake answered");
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = status_kib(pid, "VmRSS:");
    let per_peer = (after as f64 - before as f64) / peers as f64;
    let connected = s.metric("uringseed_peers_connected{direction=\"incoming\",family=\"ipv4\"}");
    assert_eq!(
        connected as usize,
        peers + 1,
        "the server counts every peer it holds"
    );
    assert!(
        per_peer < MAX_KIB_PER_PEER,
        "{peers} idle peers took the server from {before} KiB to {after} KiB: {per_peer:.2} KiB each"
    );
    // The active peer is still served, byte-exact, beside them.
    for index in 1..16 {
        fetch(&mut active, index);
    }
    eprintln!("{peers} idle peers: {before} KiB -> {after} KiB RSS, {per_peer:.2} KiB each");
    drop(idle);
    s.stop();
}
