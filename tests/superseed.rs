//! Super-seeding (BEP 16) as a peer sees it: no bitfield and no have_all, one `have` at a
//! time, the next only once the offered piece shows up at another peer; requests for pieces
//! not offered are refused; and a real client (libtorrent) still completes.

mod common;

use common::raw::RawPeer;
use common::*;
use std::time::Duration;
use uringseed::wire::message::Message;
use uringseed::wire::Block;

const HAVE: u8 = 4;
const BITFIELD: u8 = 5;
const HAVE_ALL: u8 = 0x0e;
const HAVE_NONE: u8 = 0x0f;
const REJECT: u8 = 0x10;
const UNCHOKE: u8 = 1;
const PIECE: u8 = 7;

/// Messages up to the first `have` (or none within `wait`): what the peer was told first.
fn until_have(p: &mut RawPeer, wait: Duration) -> (Vec<u8>, Option<u32>) {
    let mut ids = Vec::new();
    while let Some((id, payload)) = p.recv_within(wait) {
        if id == HAVE {
            return (
                ids,
                Some(u32::from_be_bytes(payload[..4].try_into().unwrap())),
            );
        }
        ids.push(id);
    }
    (ids, None)
}

#[test]
fn a_raw_peer_is_offered_one_piece_at_a_time_and_the_next_when_another_peer_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("f.bin");
    std::fs::write(&file, pseudo_random(16 * 16384, 7)).unwrap();
    let torrent = dir.path().join("t.torrent");
    let ih = hex_hash(&make_torrent(&file, &torrent, &["--piece-length", "16384"]));
    let mut s = serve("serve", &torrent, &data, &["--super-seed"], &[], dir.path());
    s.ready();

    // A BEP 6 peer: have_none, never a bitfield or have_all, then exactly one have.
    let (mut a, _) = RawPeer::handshake(s.addr, ih, true);
    let (ids, first) = until_have(&mut a, Duration::from_secs(5));
    assert!(
        ids.contains(&HAVE_NONE),
        "no have_none before the offer: {ids:?}"
    );
    assert!(
        !ids.contains(&BITFIELD) && !ids.contains(&HAVE_ALL),
        "{ids:?}"
    );
    let pa = first.expect("no piece offered to the first peer");
    let (ids, more) = until_have(&mut a, Duration::from_secs(1));
    assert_eq!(
        more, None,
        "a second offer before the first reached the swarm ({ids:?})"
    );

    // It may have the offered piece, and nothing else.
    a.send(&[Message::Interested]);
    a.expect(UNCHOKE);
    let other = (pa + 1) % 16;
    a.send(&[Message::Request(Block {
        index: other,
        begin: 0,
        length: 16384,
    })]);
    let rejected = a.expect(REJECT);
    assert_eq!(u32::from_be_bytes(rejected[..4].try_into().unwrap()), other);
    a.send(&[Message::Request(Block {
        index: pa,
        begin: 0,
        length: 16384,
    })]);
    let piece = a.expect(PIECE);
    let want = &std::fs::read(&file).unwrap()[pa as usize * 16384..][..16384];
    assert_eq!(&piece[8..], want, "piece {pa} bytes");

    // A second peer is offered another piece (not the one out at the first peer).
    let (mut b, _) = RawPeer::handshake(s.addr, ih, true);
    let (_, second) = until_have(&mut b, Duration::from_secs(5));
    let pb = second.expect("no piece offered to the second peer");
    assert_ne!(pb, pa, "both peers were offered the same piece");
    // The first peer's piece reaches the swarm (the second peer has it): the first peer is
    // offered its next piece, one.
    b.send(&[Message::Have(pa)]);
    let (_, next) = until_have(&mut a, Duration::from_secs(5));
    let next = next.expect("no next offer after another peer announced the piece");
    assert!(next != pa, "offered {pa} again");
    let (_, more) = until_have(&mut a, Duration::from_secs(1));
    assert_eq!(more, None, "more than one new offer");
    // The metrics count exactly the offers the two peers received (pa, pb, next).
    let (_, m) = http_get(&s.metrics, "/metrics", Duration::from_secs(5)).unwrap();
    assert_eq!(sample(&m, "uringseed_superseed_offers_total"), 3.0);
    assert_eq!(
        sample(&m, "uringseed_superseed_torrents{state=\"active\"}"),
        1.0
    );
    let status = s.proc.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|st| st.success()), "{status:?}");
}

/// How long libtorrent takes to download `torrent` from a server started with `extra`.
fn lt_download_secs(
    dir: &std::path::Path,
    torrent: &std::path::Path,
    data: &std::path::Path,
    tree: &std::path::Path,
    extra: &[&str],
    tag: &str,
) -> f64 {
    let log = dir.join(tag);
    std::fs::create_dir_all(&log).unwrap();
    let mut s = serve("serve", torrent, data, extra, &[], &log);
    s.ready();
    let save = log.join("lt");
    let started = std::time::Instant::now();
    let mut lt = spawn_lt_download(torrent, &save, &s.addr.to_string(), 120, 0, None, &log);
    let status = lt.wait_exit(Duration::from_secs(130));
    let took = started.elapsed().as_secs_f64();
    assert!(
        status.is_some_and(|st| st.success()),
        "{tag}: libtorrent did not complete: {status:?}\n{}\n{}",
        lt.report(),
        s.proc.report()
    );
    let diffs = tree_differences(tree, &save.join(tree.file_name().unwrap()), false);
    assert!(diffs.is_empty(), "{tag}: download differs: {diffs:?}");
    let _ = s.proc.terminate(Duration::from_secs(10));
    took
}

#[test]
fn a_lone_libtorrent_leecher_completes_in_super_seed_mode_within_twice_the_normal_time() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tree = data.join("rel");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("image.iso"), pseudo_random(8 << 20, 11)).unwrap();
    std::fs::write(tree.join("SHA256SUMS"), pseudo_random(300, 12)).unwrap();
    let torrent = dir.path().join("t.torrent");
    make_torrent(&tree, &torrent, &["--piece-length", "262144"]);
    let normal = lt_download_secs(dir.path(), &torrent, &data, &tree, &[], "normal");
    let sup = lt_download_secs(
        dir.path(),
        &torrent,
        &data,
        &tree,
        &["--super-seed"],
        "super",
    );
    eprintln!("libtorrent alone: {normal:.2} s normal, {sup:.2} s super-seeding");
    assert!(
        sup <= 2.0 * normal,
        "super-seeding took {sup:.2} s, normal {normal:.2} s"
    );
}
