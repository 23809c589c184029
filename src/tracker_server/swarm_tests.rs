//! Tests of the peer table: announces and counts, expiry after two intervals, caps and
//! eviction, the closed policy, numwant, family separation and rotation.

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const IH: InfoHash = InfoHash([0xaa; 20]);

fn v4(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, 0, last), port))
}

fn v6(last: u16, port: u16) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last), port))
}

fn ann(addr: SocketAddr, left: u64, event: Event) -> Announce {
    Announce {
        info_hash: IH,
        peer_id: [addr.port() as u8; 20],
        addr,
        left,
        event,
        numwant: None,
        family: Family::Both,
    }
}

fn open_swarm() -> Swarm {
    Swarm::new(
        SwarmConfig {
            open: true,
            ..SwarmConfig::default()
        },
        7,
    )
}

#[test]
fn counts_seeds_leechers_and_completions() {
    let mut s = open_swarm();
    let t = Instant::now();
    let r = s.announce(&ann(v4(1, 1), 100, Event::Started), t).unwrap();
    assert_eq!((r.complete, r.incomplete), (0, 1));
    assert!(r.peers4.is_empty(), "the asker is never in its own answer");
    assert_eq!((r.interval, r.min_interval), (1800, 300));
    let r = s.announce(&ann(v4(2, 2), 0, Event::Started), t).unwrap();
    assert_eq!((r.complete, r.incomplete), (1, 1));
    assert_eq!(r.peers4.len(), 1);
    assert_eq!(r.peers4[0].addr, v4(1, 1));
    assert_eq!(r.peers4[0].peer_id, [1; 20]);
    // The leecher completes: one more seed, one download; a repeated `completed` is not
    // counted again.
    let r = s.announce(&ann(v4(1, 1), 0, Event::Completed), t).unwrap();
    assert_eq!((r.complete, r.incomplete), (2, 0));
    s.announce(&ann(v4(1, 1), 0, Event::Completed), t).unwrap();
    assert_eq!(
        s.scrape(&[IH]),
        vec![Some(Counts {
            complete: 2,
            downloaded: 1,
            incomplete: 0
        })]
    );
    // Stopped removes.
    let r = s.announce(&ann(v4(2, 2), 0, Event::Stopped), t).unwrap();
    assert_eq!((r.complete, r.incomplete), (1, 0));
    assert!(r.peers4.is_empty());
    assert_eq!(s.peer_count(), 1);
    s.announce(&ann(v4(1, 1), 0, Event::Stopped), t).unwrap();
    assert_eq!((s.peer_count(), s.torrent_count()), (0, 0));
}

#[test]
fn seeds_get_no_seeds() {
    let mut s = open_swarm();
    let t = Instant::now();
    s.announce(&ann(v4(1, 1), 0, Event::Started), t).unwrap();
    s.announce(&ann(v4(2, 2), 5, Event::Started), t).unwrap();
    let r = s.announce(&ann(v4(3, 3), 0, Event::Started), t).unwrap();
    assert_eq!(
        r.peers4.iter().map(|p| p.addr).collect::<Vec<_>>(),
        [v4(2, 2)]
    );
}

#[test]
fn peers_expire_after_two_intervals() {
    let mut s = open_swarm();
    let t0 = Instant::now();
    s.announce(&ann(v4(1, 1), 5, Event::Started), t0).unwrap();
    let later = t0 + Duration::from_secs(1800 * 2 - 1);
    s.announce(&ann(v4(2, 2), 5, Event::Started), later)
        .unwrap();
    assert_eq!(s.expire(later), 0);
    assert_eq!(s.peer_count(), 2);
    let after = t0 + Duration::from_secs(1800 * 2 + 1);
    assert_eq!(s.expire(after), 1);
    assert_eq!(s.peer_count(), 1);
    let gone = later + Duration::from_secs(1800 * 2 + 1);
    assert_eq!(s.expire(gone), 1);
    assert_eq!((s.peer_count(), s.torrent_count()), (0, 0));
}

#[test]
fn expired_peers_are_not_handed_out_without_a_sweep() {
    let mut s = open_swarm();
    let t0 = Instant::now();
    s.announce(&ann(v4(1, 1), 5, Event::Started), t0).unwrap();
    // Keeps the torrent's periodic sweep from running at the next announce.
    let t1 = t0 + Duration::from_secs(3000);
    s.announce(&ann(v4(2, 2), 5, Event::Started), t1).unwrap();
    let t2 = t0 + Duration::from_secs(3601);
    let r = s.announce(&ann(v4(3, 3), 5, Event::Started), t2).unwrap();
    assert_eq!(
        r.peers4.iter().map(|p| p.addr).collect::<Vec<_>>(),
        [v4(2, 2)]
    );
    assert_eq!(s.peer_count(), 2, "the stale peer went when it was met");
}

#[test]
fn a_full_torrent_evicts_the_peer_seen_longest_ago() {
    let mut s = Swarm::new(
        SwarmConfig {
            open: true,
            max_peers_per_torrent: 3,
            ..SwarmConfig::default()
        },
        1,
    );
    let t = Instant::now();
    for i in 1..=3u8 {
        let at = t + Duration::from_secs(u64::from(i));
        s.announce(&ann(v4(i, u16::from(i)), 5, Event::None), at)
            .unwrap();
    }
    // Peer 1 announces again, so peer 2 is now the oldest.
    s.announce(&ann(v4(1, 1), 5, Event::None), t + Duration::from_secs(4))
        .unwrap();
    let r = s
        .announce(&ann(v4(4, 4), 5, Event::None), t + Duration::from_secs(5))
        .unwrap();
    assert_eq!(s.peer_count(), 3);
    assert_eq!(r.incomplete, 3);
    let mut got: Vec<_> = r.peers4.iter().map(|p| p.addr).collect();
    got.sort();
    assert_eq!(got, [v4(1, 1), v4(3, 3)]);
}

#[test]
fn open_mode_caps_torrents_but_lets_registered_ones_in() {
    let mut s = Swarm::new(
        SwarmConfig {
            open: true,
            max_torrents: 2,
            ..SwarmConfig::default()
        },
        1,
    );
    let t = Instant::now();
    for b in 1..=2u8 {
        let mut a = ann(v4(1, 1), 5, Event::Started);
        a.info_hash = InfoHash([b; 20]);
        s.announce(&a, t).unwrap();
    }
    let mut a = ann(v4(1, 1), 5, Event::Started);
    a.info_hash = InfoHash([3; 20]);
    assert_eq!(s.announce(&a, t), Err(SwarmError::TooManyTorrents));
    assert_eq!(SwarmError::TooManyTorrents.reason(), "tracker full");
    s.allow(InfoHash([3; 20]));
    assert!(s.announce(&a, t).is_ok());
    assert_eq!(s.torrent_count(), 3);
}

#[test]
fn unregistered_torrents_never_take_the_room_of_registered_ones() {
    let mut s = Swarm::new(
        SwarmConfig {
            open: true,
            max_torrents: 2,
            ..SwarmConfig::default()
        },
        1,
    );
    let t = Instant::now();
    // Registered, not announced yet: its room is its own (the fuzz target's finding).
    s.allow(InfoHash([9; 20]));
    let announce = |s: &mut Swarm, b: u8| {
        let mut a = ann(v4(1, 1), 5, Event::Started);
        a.info_hash = InfoHash([b; 20]);
        s.announce(&a, t)
    };
    assert!(announce(&mut s, 1).is_ok());
    assert!(announce(&mut s, 2).is_ok());
    assert_eq!(announce(&mut s, 3), Err(SwarmError::TooManyTorrents));
    // Registering one already tracked frees a share for the others; unregistering takes it.
    s.allow(InfoHash([2; 20]));
    assert!(announce(&mut s, 3).is_ok());
    assert_eq!(announce(&mut s, 4), Err(SwarmError::TooManyTorrents));
    s.disallow(InfoHash([2; 20]));
    s.allow(InfoHash([5; 20]));
    assert_eq!(announce(&mut s, 4), Err(SwarmError::TooManyTorrents));
    assert!(announce(&mut s, 9).is_ok());
    assert!(announce(&mut s, 5).is_ok());
    assert_eq!(s.torrent_count(), 5);
}

#[test]
fn closed_mode_refuses_unknown_torrents() {
    let mut s = Swarm::new(SwarmConfig::default(), 1);
    let t = Instant::now();
    let a = ann(v4(1, 1), 5, Event::Started);
    assert_eq!(s.announce(&a, t), Err(SwarmError::UnknownTorrent));
    assert_eq!(SwarmError::UnknownTorrent.reason(), "unknown torrent");
    assert_eq!(s.scrape(&[IH]), vec![None]);
    s.allow(IH);
    assert_eq!(s.scrape(&[IH]), vec![Some(Counts::default())]);
    assert_eq!(s.announce(&a, t).unwrap().incomplete, 1);
    // A registered torrent keeps its entry when its last peer leaves.
    s.announce(&ann(v4(1, 1), 5, Event::Stopped), t).unwrap();
    assert_eq!(s.torrent_count(), 1);
    s.announce(&a, t).unwrap();
    s.disallow(IH);
    assert_eq!((s.peer_count(), s.torrent_count()), (0, 0));
    assert_eq!(s.announce(&a, t), Err(SwarmError::UnknownTorrent));
}

#[test]
fn numwant_defaults_to_50_and_is_capped_at_200() {
    let mut s = open_swarm();
    let t = Instant::now();
    for i in 0..300u16 {
        let addr = SocketAddr::from((Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8), 1000 + i));
        s.announce(&ann(addr, 5, Event::None), t).unwrap();
    }
    let asker = v4(250, 9);
    let r = s.announce(&ann(asker, 5, Event::None), t).unwrap();
    assert_eq!(r.peers4.len(), 50);
    let mut a = ann(asker, 5, Event::None);
    a.numwant = Some(10_000);
    assert_eq!(s.announce(&a, t).unwrap().peers4.len(), 200);
    a.numwant = Some(7);
    assert_eq!(s.announce(&a, t).unwrap().peers4.len(), 7);
    a.numwant = Some(0);
    assert!(s.announce(&a, t).unwrap().peers4.is_empty());
    assert_eq!(r.incomplete, 301);
}

#[test]
fn families_are_kept_apart() {
    let mut s = open_swarm();
    let t = Instant::now();
    s.announce(&ann(v4(1, 1), 5, Event::None), t).unwrap();
    s.announce(&ann(v6(1, 2), 5, Event::None), t).unwrap();
    s.announce(&ann(v6(2, 3), 5, Event::None), t).unwrap();
    let r = s.announce(&ann(v4(9, 9), 5, Event::None), t).unwrap();
    assert_eq!(
        r.peers4.iter().map(|p| p.addr).collect::<Vec<_>>(),
        [v4(1, 1)]
    );
    let mut got6: Vec<_> = r.peers6.iter().map(|p| p.addr).collect();
    got6.sort();
    assert_eq!(got6, [v6(1, 2), v6(2, 3)]);
    let mut a = ann(v4(9, 9), 5, Event::None);
    a.family = Family::V4;
    let r = s.announce(&a, t).unwrap();
    assert_eq!((r.peers4.len(), r.peers6.len()), (1, 0));
    a.family = Family::V6;
    let r = s.announce(&a, t).unwrap();
    assert_eq!((r.peers4.len(), r.peers6.len()), (0, 2));
}

#[test]
fn answers_rotate_through_the_swarm() {
    let mut s = open_swarm();
    let t = Instant::now();
    for i in 1..=100u8 {
        s.announce(&ann(v4(i, u16::from(i)), 5, Event::None), t)
            .unwrap();
    }
    let mut seen = HashSet::new();
    let mut a = ann(v4(200, 200), 5, Event::None);
    a.numwant = Some(5);
    for _ in 0..40 {
        for p in s.announce(&a, t).unwrap().peers4 {
            seen.insert(p.addr);
        }
    }
    assert!(
        seen.len() > 50,
        "only {} distinct peers handed out",
        seen.len()
    );
}

#[test]
fn a_peer_changing_address_is_two_entries_and_the_old_one_expires() {
    let mut s = open_swarm();
    let t = Instant::now();
    s.announce(&ann(v4(1, 1), 5, Event::None), t).unwrap();
    let r = s
        .announce(
            &ann(v4(1, 2), 0, Event::None),
            t + Duration::from_secs(3000),
        )
        .unwrap();
    assert_eq!((r.complete, r.incomplete), (1, 1));
    s.expire(t + Duration::from_secs(3601));
    assert_eq!(
        s.scrape(&[IH])[0].map(|c| (c.complete, c.incomplete)),
        Some((1, 0))
    );
}

#[test]
fn the_whole_table_is_capped_too() {
    let mut s = Swarm::new(
        SwarmConfig {
            open: true,
            max_peers_total: 3,
            ..SwarmConfig::default()
        },
        1,
    );
    let t = Instant::now();
    for i in 1..=3u8 {
        let at = t + Duration::from_secs(u64::from(i));
        s.announce(&ann(v4(i, u16::from(i)), 5, Event::None), at)
            .unwrap();
    }
    // Full: a new peer of the same torrent evicts its oldest (peer 1)...
    let r = s
        .announce(&ann(v4(4, 4), 5, Event::None), t + Duration::from_secs(5))
        .unwrap();
    assert_eq!((s.peer_count(), r.incomplete), (3, 3));
    assert!(r.peers4.iter().all(|p| p.addr != v4(1, 1)));
    // ...and the first peer of another torrent is refused, leaving no entry behind.
    let mut other = ann(v4(5, 5), 5, Event::None);
    other.info_hash = InfoHash([1; 20]);
    assert_eq!(s.announce(&other, t), Err(SwarmError::TooManyPeers));
    assert_eq!((s.peer_count(), s.torrent_count()), (3, 1));
}
