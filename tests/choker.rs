//! The seed's choker modes as peers see them: with `--choker anti_leech` and one upload slot, a
//! peer halfway through the torrent loses its slot to peers just starting within two choke
//! rounds, while with round robin (the default) it keeps the slot for its full 30 s. And peers
//! that hold slots without taking their data (issue 21, item 2) lose them within a round, so an
//! honest newcomer is served within 15 s.

mod common;

use common::raw::RawPeer;
use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use uringseed::wire::message::{Block, Message};

const CHOKE: u8 = 0;
const UNCHOKE: u8 = 1;
const PIECES: usize = 256;

/// Waits up to `wait` for `id`; the time it came, or None.
fn wait_for(p: &mut RawPeer, id: u8, wait: Duration) -> Option<Instant> {
    let end = Instant::now() + wait;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match p.recv_within(left.min(Duration::from_secs(1))) {
            Some((got, _)) if got == id => return Some(Instant::now()),
            _ => {}
        }
    }
    None
}

/// Like [`wait_for`], while taking data: once unchoked it keeps one request for the next of
/// `blocks` (round and round) outstanding, at most two a second, so it never starves its slot.
fn wait_taking(p: &mut RawPeer, id: u8, wait: Duration, blocks: &[Block]) -> Option<Instant> {
    let end = Instant::now() + wait;
    let mut next = 0;
    let mut asked: Option<Instant> = None;
    let mut outstanding = false;
    // It may be unchoked already (the caller saw the unchoke): ask at once.
    let mut unchoked = true;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if unchoked
            && !outstanding
            && asked.is_none_or(|t| t.elapsed() >= Duration::from_millis(500))
        {
            p.send(&[Message::Request(blocks[next % blocks.len()])]);
            next += 1;
            asked = Some(Instant::now());
            outstanding = true;
        }
        match p.recv_within(left.min(Duration::from_millis(100))) {
            Some((got, _)) if got == id => return Some(Instant::now()),
            Some((7, _)) | Some((16, _)) => outstanding = false,
            Some((UNCHOKE, _)) => {
                unchoked = true;
                outstanding = false;
            }
            Some((CHOKE, _)) => unchoked = false,
            _ => {}
        }
    }
    None
}

/// One slot; a halfway peer takes it, then two peers with nothing arrive. Returns when the
/// halfway peer was choked (None: not within `watch`) and whether both new peers got a slot.
fn halfway_peer_against_two_new_ones(mode: &[&str], watch: Duration) -> (Option<Duration>, bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("f.bin");
    std::fs::write(&file, pseudo_random(PIECES * 16384, 3)).unwrap();
    let torrent = dir.path().join("t.torrent");
    let ih = hex_hash(&make_torrent(&file, &torrent, &["--piece-length", "16384"]));
    let mut args = vec!["--upload-slots", "1"];
    args.extend_from_slice(mode);
    let mut s = serve("serve", &torrent, &data, &args, &[], dir.path());
    s.ready();

    // Half the pieces (a valid partial bitfield: a seed's full one would be refused).
    let (mut half, _) = RawPeer::handshake(s.addr, ih, true);
    let mut bits = vec![0xffu8; PIECES / 16];
    bits.resize(PIECES / 8, 0);
    half.send(&[Message::Bitfield(&bits), Message::Interested]);
    assert!(
        wait_for(&mut half, UNCHOKE, Duration::from_secs(5)).is_some(),
        "the free slot was not given"
    );
    let held_from = Instant::now();
    let mut new_peers: Vec<RawPeer> = (0..2)
        .map(|_| {
            let (mut p, _) = RawPeer::handshake(s.addr, ih, true);
            p.send(&[Message::HaveNone, Message::Interested]);
            p
        })
        .collect();
    // It downloads the half it lacks meanwhile (a holder that takes nothing would lose its
    // slot for that alone).
    let missing: Vec<Block> = (PIECES as u32 / 2..PIECES as u32)
        .map(|index| Block {
            index,
            begin: 0,
            length: 16384,
        })
        .collect();
    let choked = wait_taking(&mut half, CHOKE, watch, &missing).map(|t| t - held_from);
    // Each new peer holds a slot now (the regular one and the optimistic one), or gets one
    // within a round.
    let both = new_peers
        .iter_mut()
        .all(|p| wait_for(p, UNCHOKE, Duration::from_secs(12)).is_some());
    let status = s.proc.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|st| st.success()), "{status:?}");
    (choked, both)
}

#[test]
fn anti_leech_hands_a_halfway_peers_slot_to_new_peers_within_two_rounds() {
    let (choked, both) =
        halfway_peer_against_two_new_ones(&["--choker", "anti_leech"], Duration::from_secs(25));
    let choked = choked.expect("the halfway peer kept its slot for 25 s with anti_leech");
    assert!(choked < Duration::from_secs(22), "choked after {choked:?}");
    assert!(both, "a new peer never got a slot");
}

#[test]
fn round_robin_lets_the_halfway_peer_keep_its_slot_for_its_turn() {
    // The control: the same swarm under the default choker; the halfway peer is not choked
    // before its 30 s turn is up (the new peers share the optimistic slot meanwhile).
    let (choked, _) = halfway_peer_against_two_new_ones(&[], Duration::from_secs(25));
    assert_eq!(
        choked, None,
        "round robin choked the holder before its turn"
    );
}

/// The last four digits of the local port, to tell peer ids apart.
fn s_port_of(s: &std::net::TcpStream) -> u16 {
    s.local_addr().unwrap().port() % 10000
}

/// A peer from `ip` (a loopback address) with a 4 KiB receive buffer that handshakes, says
/// interested, reads until it is unchoked, then asks for `blocks` and never reads again.
fn squatter(
    addr: std::net::SocketAddr,
    ip: &str,
    ih: uringseed::metainfo::InfoHash,
    blocks: &[Block],
) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.bind(
        &format!("{ip}:0")
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    sock.connect(&addr.into()).unwrap();
    let s: std::net::TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut p = RawPeer::from_stream(s);
    let mut id = *b"-SQ0001-squatter0000";
    id[16..].copy_from_slice(
        format!("{:04}", s_port_of(&p.s))
            .as_bytes()
            .get(..4)
            .unwrap(),
    );
    let hs = uringseed::wire::Handshake::ours(ih, id);
    p.s.write_all(&hs.encode()).unwrap();
    let mut theirs = [0u8; 68];
    p.s.read_exact(&mut theirs).unwrap();
    p.send(&[Message::HaveNone, Message::Interested]);
    assert!(
        wait_for(&mut p, UNCHOKE, Duration::from_secs(40)).is_some(),
        "squatter never unchoked"
    );
    let reqs: Vec<Message> = blocks.iter().map(|b| Message::Request(*b)).collect();
    p.send(&reqs);
    p.s
}

#[test]
fn peers_holding_slots_without_reading_lose_them_and_a_newcomer_is_served_within_15_s() {
    // 32 MiB, two upload slots. Four peers from two addresses take the slots as they come
    // (two regular, then the optimistic one, the fourth waiting), each asking for 6.4 MB and
    // reading none of it. Before, the slots rotated among them every 30 s, longest-waiting
    // first, and a newcomer waited a minute or more for its first byte.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("f.bin");
    std::fs::write(&file, pseudo_random(32 << 20, 9)).unwrap();
    let torrent = dir.path().join("t.torrent");
    let ih = hex_hash(&make_torrent(
        &file,
        &torrent,
        &["--piece-length", "262144"],
    ));
    let mut s = serve(
        "serve",
        &torrent,
        &data,
        &["--upload-slots", "2"],
        &[],
        dir.path(),
    );
    s.ready();
    let blocks: Vec<Block> = (0..400u32)
        .map(|i| Block {
            index: i / 16,
            begin: (i % 16) * 16384,
            length: 16384,
        })
        .collect();
    let started = Instant::now();
    let squatters: Vec<std::thread::JoinHandle<std::net::TcpStream>> =
        ["127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"]
            .iter()
            .map(|ip| {
                let (addr, ip, blocks) = (s.addr, ip.to_string(), blocks.clone());
                let t = std::thread::spawn(move || squatter(addr, &ip, ih, &blocks));
                // One after the other, so the first ones are the holders.
                std::thread::sleep(Duration::from_millis(300));
                t
            })
            .collect();
    // Every slot held by a squatter for at least a choke round.
    std::thread::sleep(Duration::from_secs(12).saturating_sub(started.elapsed()));
    let (mut honest, _) = RawPeer::handshake(s.addr, ih, true);
    honest.send(&[Message::HaveNone, Message::Interested]);
    let arrived = Instant::now();
    let first = wait_taking(&mut honest, 7, Duration::from_secs(30), &blocks[..16]);
    let waited = first.map(|t| t - arrived);
    eprintln!("newcomer's first block after {waited:?} (squatters holding every slot)");
    let waited = waited.unwrap_or_else(|| panic!("no data for 30 s\n{}", s.proc.report()));
    assert!(
        waited <= Duration::from_secs(15),
        "first block after {waited:?}"
    );
    // The squatters were choked, not dropped (their writes have not stalled for 60 s).
    drop(squatters);
    let status = s.proc.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|st| st.success()), "{status:?}");
}
