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

    // A BEP 6 peer: have_none, never a bitfield or have_all, then its offers (`have`): alone
    // in the swarm, up to 4 at once (nobody to pass pieces on to).
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
    let mut a_offers = vec![first.expect("no piece offered to the first peer")];
    while let (_, Some(p)) = until_have(&mut a, Duration::from_secs(1)) {
        a_offers.push(p);
    }
    assert!(a_offers.len() <= 4, "a lone leecher got {a_offers:?}");
    let pa = a_offers[0];

    // It may have an offered piece, and nothing else.
    a.send(&[Message::Interested]);
    a.expect(UNCHOKE);
    let other = (0..16).find(|p| !a_offers.contains(p)).unwrap();
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

    // With two leechers, one offer at a time: the second peer gets one piece, not one of the
    // first peer's, and no other until that piece has reached another peer.
    let (mut b, _) = RawPeer::handshake(s.addr, ih, true);
    let (_, second) = until_have(&mut b, Duration::from_secs(5));
    let pb = second.expect("no piece offered to the second peer");
    assert!(!a_offers.contains(&pb), "{pb} is out at the first peer too");
    let (_, more) = until_have(&mut b, Duration::from_secs(1));
    assert_eq!(
        more, None,
        "a second offer before the first reached the swarm"
    );
    // The second peer announcing its own piece is not enough (another leecher is there)...
    b.send(&[Message::Have(pb)]);
    let (_, more) = until_have(&mut b, Duration::from_secs(1));
    assert_eq!(more, None, "offered more after announcing its own piece");
    // ...the first peer announcing it is: the second peer is offered its next piece, one.
    a.send(&[Message::Have(pb)]);
    let (_, next) = until_have(&mut b, Duration::from_secs(5));
    let next = next.expect("no next offer after another peer announced the piece");
    assert!(next != pb, "offered {pb} again");
    let (_, more) = until_have(&mut b, Duration::from_secs(1));
    assert_eq!(more, None, "more than one new offer");
    // The metrics count exactly the offers the two peers received.
    let (_, m) = http_get(&s.metrics, "/metrics", Duration::from_secs(5)).unwrap();
    assert_eq!(
        sample(&m, "uringseed_superseed_offers_total"),
        (a_offers.len() + 2) as f64
    );
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
    // The best of three runs of each, alternating, so a busy machine's noise (the downloads
    // take about a second) does not decide.
    let (mut normal, mut sup) = (f64::MAX, f64::MAX);
    for round in 0..3 {
        let tag = format!("normal{round}");
        normal = normal.min(lt_download_secs(
            dir.path(),
            &torrent,
            &data,
            &tree,
            &[],
            &tag,
        ));
        let tag = format!("super{round}");
        let extra = ["--super-seed"];
        sup = sup.min(lt_download_secs(
            dir.path(),
            &torrent,
            &data,
            &tree,
            &extra,
            &tag,
        ));
    }
    eprintln!("libtorrent alone: {normal:.2} s normal, {sup:.2} s super-seeding");
    assert!(
        sup <= 2.0 * normal,
        "super-seeding took {sup:.2} s, normal {normal:.2} s"
    );
}

#[test]
fn aria2_and_webtorrent_complete_from_a_super_seed_through_the_built_in_tracker() {
    if !have("aria2c") || !have_node_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let file = share.join("release.iso");
    let data = pseudo_random(4 << 20, 21);
    std::fs::write(&file, &data).unwrap();
    let out = dir.path().join("release.torrent");
    let tracker = format!("127.0.0.1:{}", free_port());
    let mut s = serve_args(
        "uringseed",
        &[
            file.to_str().unwrap(),
            "--super-seed",
            "--tracker-listen",
            &tracker,
            "--torrent-out",
            out.to_str().unwrap(),
        ],
        &[],
        dir.path(),
    );
    s.ready();
    let aria_dir = dir.path().join("aria2");
    let mut aria = Proc::spawn(
        "aria2",
        std::process::Command::new("sh")
            .arg(tools_dir().join("aria2_get.sh"))
            .args([
                out.to_str().unwrap(),
                aria_dir.to_str().unwrap(),
                "-",
                "120",
            ])
            .arg(format!("--listen-port={}", free_port())),
        dir.path(),
    );
    let wt_dir = dir.path().join("webtorrent");
    let mut wt = Proc::spawn(
        "webtorrent",
        std::process::Command::new("node")
            .arg(tools_dir().join("webtorrent_get.js"))
            .args([out.to_str().unwrap(), wt_dir.to_str().unwrap(), "-", "120"]),
        dir.path(),
    );
    for (who, p, got) in [
        ("aria2", &mut aria, aria_dir.join("release.iso")),
        ("webtorrent", &mut wt, wt_dir.join("release.iso")),
    ] {
        let status = p.wait_exit(Duration::from_secs(130));
        assert!(
            status.is_some_and(|st| st.success()),
            "{who} did not complete from the super-seed: {status:?}\n{}\n{}",
            p.report(),
            s.proc.report()
        );
        assert!(std::fs::read(&got).unwrap() == data, "{who}: bytes differ");
    }
    // They were served super-seeding style: offers went out one at a time.
    let (_, m) = http_get(&s.metrics, "/metrics", Duration::from_secs(5)).unwrap();
    assert!(
        sample(&m, "uringseed_superseed_offers_total") >= 1.0,
        "no offers"
    );
    let _ = s.proc.terminate(Duration::from_secs(10));
}

#[test]
fn auto_mode_ends_super_seeding_when_another_seed_connects() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("f.bin");
    std::fs::write(&file, pseudo_random(8 * 16384, 9)).unwrap();
    let torrent = dir.path().join("t.torrent");
    let ih = hex_hash(&make_torrent(&file, &torrent, &["--piece-length", "16384"]));
    let config = dir.path().join("auto.toml");
    // tracker.js asks for 10 s; the default floor (300 s) would put the next announce off.
    std::fs::write(
        &config,
        "[seeding]\nsuper_seed = \"auto\"\n[tracker]\nmin_announce_interval_secs = 10\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let mut s = serve("serve", &torrent, &data, &["--config", c], &[], dir.path());
    s.ready();
    // The only seed: a leecher is super-seeded.
    let (mut a, _) = RawPeer::handshake(s.addr, ih, true);
    let (ids, first) = until_have(&mut a, Duration::from_secs(5));
    assert!(
        ids.contains(&HAVE_NONE) && first.is_some(),
        "{ids:?} {first:?}"
    );
    // Another seed connects (have_all): it is let go, and super-seeding ends for everyone.
    let (mut seed, _) = RawPeer::handshake(s.addr, ih, true);
    seed.send(&[Message::HaveAll]);
    seed.expect_closed();
    let mut saw_all = false;
    while let Some((id, _)) = a.recv_within(Duration::from_secs(5)) {
        if id == HAVE_ALL {
            saw_all = true;
            break;
        }
    }
    assert!(saw_all, "the super-seeded leecher never got have_all");
    let (mut b, _) = RawPeer::handshake(s.addr, ih, true);
    let (ids, _) = until_have(&mut b, Duration::from_secs(2));
    assert!(
        ids.contains(&HAVE_ALL),
        "a new leecher after the switch: {ids:?}"
    );
    let (_, m) = http_get(&s.metrics, "/metrics", Duration::from_secs(5)).unwrap();
    assert_eq!(
        sample(&m, "uringseed_superseed_torrents{state=\"other_seed\"}"),
        1.0
    );
    assert_eq!(
        sample(&m, "uringseed_superseed_torrents{state=\"active\"}"),
        0.0
    );
    assert!(
        s.proc.stderr_text().contains("super-seeding ends"),
        "no log line"
    );
    let _ = s.proc.terminate(Duration::from_secs(10));
}

#[test]
fn auto_mode_ends_super_seeding_when_the_tracker_counts_another_seed() {
    if !have_node_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tracker = common::tracker::Tracker::start(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("f.bin");
    std::fs::write(&file, pseudo_random(8 * 16384, 10)).unwrap();
    let torrent = dir.path().join("t.torrent");
    let url = tracker.announce_url();
    let hex = make_torrent(&file, &torrent, &["--piece-length", "16384", "-t", &url]);
    let ih = hex_hash(&hex);
    let config = dir.path().join("auto.toml");
    // tracker.js asks for 10 s; the default floor (300 s) would put the next announce off.
    std::fs::write(
        &config,
        "[seeding]\nsuper_seed = \"auto\"\n[tracker]\nmin_announce_interval_secs = 10\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let mut s = serve("serve", &torrent, &data, &["--config", c], &[], dir.path());
    s.ready();
    let port = s.addr.port();
    let metric = |state: &str| {
        let (_, m) = http_get(&s.metrics, "/metrics", Duration::from_secs(5)).unwrap();
        sample(
            &m,
            &format!("uringseed_superseed_torrents{{state=\"{state}\"}}"),
        )
    };
    // Its first announce: the tracker counts one seed, this server; it keeps super-seeding.
    let (first, _) = tracker
        .wait_announce(0, Duration::from_secs(15), |a| a.port == port)
        .expect("no announce from the seed");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(metric("active"), 1.0, "ended with only itself counted");
    // Another seed announces; at this server's next announce (tracker.js: every 10 s) the
    // tracker counts two, and super-seeding ends.
    tracker.announce_seed(&hex, 1);
    tracker
        .wait_announce(first + 1, Duration::from_secs(25), |a| a.port == port)
        .expect("no second announce from the seed");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while metric("other_seed") != 1.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric("other_seed"), 1.0);
    assert_eq!(metric("active"), 0.0);
    let (mut b, _) = RawPeer::handshake(s.addr, ih, true);
    let (ids, _) = until_have(&mut b, Duration::from_secs(2));
    assert!(
        ids.contains(&HAVE_ALL),
        "a leecher after the switch: {ids:?}"
    );
    assert!(
        s.proc.stderr_text().contains("TrackerSeeds(2)"),
        "no log line naming the tracker's count"
    );
    let _ = s.proc.terminate(Duration::from_secs(10));
}
