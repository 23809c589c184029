//! The seed's choker modes as peers see them: with `--choker anti_leech` and one upload slot, a
//! peer halfway through the torrent loses its slot to peers just starting within two choke
//! rounds, while with round robin (the default) it keeps the slot for its full 30 s.

mod common;

use common::raw::RawPeer;
use common::*;
use std::time::{Duration, Instant};
use uringseed::wire::message::Message;

const CHOKE: u8 = 0;
const UNCHOKE: u8 = 1;
const PIECES: usize = 16;

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
    half.send(&[Message::Bitfield(&[0xff, 0x00]), Message::Interested]);
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
    let choked = wait_for(&mut half, CHOKE, watch).map(|t| t - held_from);
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
