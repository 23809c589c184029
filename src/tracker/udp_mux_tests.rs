//! Tests of the UDP multiplexer: a fake tracker answers the packets [`Mux`] emits.

use super::*;
use crate::tracker::udp::{ACTION_ANNOUNCE, ACTION_CONNECT, ACTION_ERROR, ACTION_SCRAPE};
use crate::tracker::Event;

fn tracker(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn req(n: u8) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash([n; 20]),
        peer_id: [7; 20],
        port: 6881,
        uploaded: 1,
        downloaded: 0,
        left: 0,
        event: Event::Started,
        numwant: 50,
        key: 9,
        tracker_id: None,
    }
}

fn be32(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(p[at..at + 4].try_into().unwrap())
}

/// What a tracker would answer to `p`: connect gives id 0xabc, announce an interval of 1800 s
/// and one peer, scrape (seeders, completed, leechers) = (n, 0, 1) per hash.
fn answer(p: &[u8]) -> Vec<u8> {
    let (action, tid) = (be32(p, 8), be32(p, 12));
    let mut r = Vec::new();
    r.extend_from_slice(&action.to_be_bytes());
    r.extend_from_slice(&tid.to_be_bytes());
    match action {
        ACTION_CONNECT => r.extend_from_slice(&0xabcu64.to_be_bytes()),
        ACTION_ANNOUNCE => {
            assert_eq!(u64::from_be_bytes(p[..8].try_into().unwrap()), 0xabc);
            for v in [1800u32, 2, 3] {
                r.extend_from_slice(&v.to_be_bytes());
            }
            r.extend_from_slice(&[10, 0, 0, 1, 0x1a, 0xe1]);
        }
        ACTION_SCRAPE => {
            for h in p[16..].chunks(20) {
                for v in [u32::from(h[0]), 0, 1] {
                    r.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        a => panic!("action {a}"),
    }
    r
}

fn drain(m: &mut Mux) -> Vec<(SocketAddr, Vec<u8>)> {
    std::iter::from_fn(|| m.poll_transmit()).collect()
}

#[test]
fn one_connect_serves_every_job_of_a_tracker_and_is_reused() {
    let t0 = Instant::now();
    let mut m = Mux::new(Duration::from_secs(15), 2, 42);
    let deadline = t0 + Duration::from_secs(60);
    for id in 0..100 {
        m.handle_submit(id, tracker(1), Query::Announce(req(id as u8)), deadline, t0);
    }
    let sent = drain(&mut m);
    assert_eq!(sent.len(), 1, "one connect for 100 jobs");
    m.handle_datagram(tracker(1), &answer(&sent[0].1), t0);
    let sent = drain(&mut m);
    assert_eq!(sent.len(), 100, "then one announce per job");
    let tids: std::collections::HashSet<u32> = sent.iter().map(|(_, p)| be32(p, 12)).collect();
    assert_eq!(tids.len(), 100, "distinct transaction ids");
    for (a, p) in &sent {
        m.handle_datagram(*a, &answer(p), t0);
    }
    let done: Vec<_> = std::iter::from_fn(|| m.poll_done()).collect();
    assert_eq!(done.len(), 100);
    for (_, r) in &done {
        let Ok(Answer::Announce(a)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(a.interval, Duration::from_secs(1800));
        assert_eq!(
            (a.incomplete, a.complete, a.peers.len()),
            (Some(2), Some(3), 1)
        );
    }
    // Within a minute, the cached connection id is used straight away.
    m.handle_submit(
        500,
        tracker(1),
        Query::Scrape(vec![InfoHash([4; 20]), InfoHash([5; 20])]),
        deadline,
        t0 + Duration::from_secs(30),
    );
    let sent = drain(&mut m);
    assert_eq!(sent.len(), 1);
    assert_eq!(be32(&sent[0].1, 8), ACTION_SCRAPE);
    m.handle_datagram(tracker(1), &answer(&sent[0].1), t0);
    let (id, r) = m.poll_done().unwrap();
    assert_eq!(id, 500);
    let Ok(Answer::Scrape(s)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(s.files[1].0, InfoHash([5; 20]));
    assert_eq!(s.files[1].1.seeders, Some(5));
    assert_eq!(m.in_flight(), 0);
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn resends_keep_the_transaction_id_and_back_off_then_fail() {
    let t0 = Instant::now();
    let base = Duration::from_secs(1);
    let mut m = Mux::new(base, 2, 7);
    m.handle_submit(
        1,
        tracker(2),
        Query::Announce(req(1)),
        t0 + Duration::from_secs(100),
        t0,
    );
    let first = drain(&mut m);
    assert_eq!(m.poll_timeout(), Some(t0 + base));
    m.handle_timeout(t0 + base);
    let second = drain(&mut m);
    assert_eq!(first, second, "the same connect packet again");
    assert_eq!(m.poll_timeout(), Some(t0 + base * 3), "then 2 s later");
    m.handle_timeout(t0 + base * 3);
    assert_eq!(drain(&mut m).len(), 1);
    m.handle_timeout(t0 + base * 7);
    assert!(drain(&mut m).is_empty());
    let (id, r) = m.poll_done().unwrap();
    assert_eq!(id, 1);
    assert!(matches!(r, Err(TrackerError::Transport(_))), "{r:?}");
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn a_job_fails_at_its_deadline_even_mid_retry() {
    let t0 = Instant::now();
    let mut m = Mux::new(Duration::from_secs(15), 8, 7);
    m.handle_submit(
        1,
        tracker(3),
        Query::Announce(req(1)),
        t0 + Duration::from_secs(2),
        t0,
    );
    assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    m.handle_timeout(t0 + Duration::from_secs(2));
    assert!(matches!(m.poll_done(), Some((1, Err(_)))));
    assert_eq!(m.in_flight(), 0);
}

#[test]
fn foreign_and_short_datagrams_are_ignored_and_counted() {
    let t0 = Instant::now();
    let mut m = Mux::new(Duration::from_secs(15), 2, 9);
    m.handle_submit(
        1,
        tracker(4),
        Query::Announce(req(1)),
        t0 + Duration::from_secs(60),
        t0,
    );
    let sent = drain(&mut m);
    let reply = answer(&sent[0].1);
    m.handle_datagram(tracker(5), &reply, t0); // right tid, wrong address
    m.handle_datagram(tracker(4), &reply[..5], t0); // too short
    let mut other = reply.clone();
    other[4] ^= 0xff; // unknown transaction
    m.handle_datagram(tracker(4), &other, t0);
    assert_eq!(m.ignored, 3);
    assert!(drain(&mut m).is_empty() && m.poll_done().is_none());
    m.handle_datagram(tracker(4), &reply, t0);
    assert_eq!(
        drain(&mut m).len(),
        1,
        "the real reply goes on to the announce"
    );
}

#[test]
fn a_tracker_error_fails_the_job_and_forgets_the_connection_id() {
    let t0 = Instant::now();
    let mut m = Mux::new(Duration::from_secs(15), 2, 11);
    let deadline = t0 + Duration::from_secs(60);
    m.handle_submit(1, tracker(6), Query::Announce(req(1)), deadline, t0);
    let c = drain(&mut m);
    m.handle_datagram(tracker(6), &answer(&c[0].1), t0);
    let a = drain(&mut m);
    let mut err = ACTION_ERROR.to_be_bytes().to_vec();
    err.extend_from_slice(&a[0].1[12..16]);
    err.extend_from_slice(b"torrent not registered");
    m.handle_datagram(tracker(6), &err, t0);
    let (_, r) = m.poll_done().unwrap();
    assert_eq!(
        r,
        Err(TrackerError::Failure("torrent not registered".into()))
    );
    // The next job connects afresh.
    m.handle_submit(2, tracker(6), Query::Announce(req(2)), deadline, t0);
    let c = drain(&mut m);
    assert_eq!(be32(&c[0].1, 8), ACTION_CONNECT);
}

#[test]
fn a_malformed_reply_fails_only_its_job() {
    let t0 = Instant::now();
    let mut m = Mux::new(Duration::from_secs(15), 2, 13);
    let deadline = t0 + Duration::from_secs(60);
    for id in 0..2 {
        m.handle_submit(id, tracker(7), Query::Announce(req(id as u8)), deadline, t0);
    }
    let c = drain(&mut m);
    m.handle_datagram(tracker(7), &answer(&c[0].1), t0);
    let a = drain(&mut m);
    let mut bad = answer(&a[0].1);
    bad.push(1); // peer list no longer a multiple of 6
    m.handle_datagram(a[0].0, &bad, t0);
    m.handle_datagram(a[1].0, &answer(&a[1].1), t0);
    let done: Vec<_> = std::iter::from_fn(|| m.poll_done()).collect();
    assert_eq!(done.len(), 2);
    assert!(done
        .iter()
        .any(|(_, r)| matches!(r, Err(TrackerError::Malformed(_)))));
    assert!(done.iter().any(|(_, r)| r.is_ok()));
}
