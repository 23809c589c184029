//! Tests of the node: several `Node`s wired together in memory (a loop moving `Transmit`s
//! between them by address, time advanced by hand), and single nodes fed hand-made packets.

use super::*;
use crate::dht::krpc::{decode, encode};
use crate::dht::store;

fn loopback(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i as u8 + 1], 6881))
}

struct Net {
    nodes: Vec<(SocketAddr, Node)>,
    now: Instant,
    /// Every packet moved: (from, to, bytes).
    log: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    events: Vec<Vec<Event>>,
}

impl Net {
    fn new(n: usize) -> Net {
        let now = Instant::now();
        let nodes = (0..n)
            .map(|i| {
                let id = Rng::new(1000 + i as u64).id();
                (
                    loopback(i),
                    Node::new(id, NodeConfig::default(), i as u64, now),
                )
            })
            .collect();
        Net {
            nodes,
            now,
            log: Vec::new(),
            events: vec![Vec::new(); n],
        }
    }

    fn step(&mut self) {
        let mut moving = Vec::new();
        for (addr, node) in &mut self.nodes {
            while let Some(t) = node.poll_transmit() {
                moving.push((*addr, t));
            }
        }
        for (from, t) in moving {
            self.log.push((from, t.to, t.bytes.clone()));
            if let Some((_, n)) = self.nodes.iter_mut().find(|(a, _)| *a == t.to) {
                n.handle_packet(self.now, from, &t.bytes);
            }
        }
        self.now += Duration::from_millis(10);
        for (i, (_, node)) in self.nodes.iter_mut().enumerate() {
            if node.poll_timeout().is_some_and(|t| t <= self.now) {
                node.handle_timeout(self.now);
            }
            while let Some(e) = node.poll_event() {
                self.events[i].push(e);
            }
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    fn bootstrap_all(&mut self) {
        let first = self.nodes[0].0;
        let now = self.now;
        for i in 1..self.nodes.len() {
            self.nodes[i].1.bootstrap(&[first], now);
            self.run(Duration::from_millis(200));
        }
        self.run(Duration::from_secs(10));
    }

    fn announces_sent(&self) -> usize {
        self.log
            .iter()
            .filter(|(_, _, b)| {
                matches!(
                    decode(b),
                    Ok(Message {
                        body: Body::Query {
                            query: Query::AnnouncePeer { .. },
                            ..
                        },
                        ..
                    })
                )
            })
            .count()
    }
}

#[test]
fn nodes_bootstrap_from_one_another_and_find_each_other() {
    let mut net = Net::new(6);
    assert_eq!(net.nodes[1].1.table_len(), 0);
    net.bootstrap_all();
    for (addr, node) in &net.nodes {
        assert_eq!(node.table_len(), 5, "{addr} knows {:?}", node.nodes());
        assert!(!node.nodes().iter().any(|(id, _)| *id == node.id()));
    }
    // The last node knows the first (its router) only because the first pinged it back.
    assert!(net.nodes[5]
        .1
        .nodes()
        .iter()
        .any(|(_, a)| *a == loopback(0)));
    // Saved nodes load into a fresh node, which pings them and gets them good.
    let saved = net.nodes[2].1.nodes();
    let fresh_addr = loopback(9);
    let mut fresh = Node::new(Rng::new(77).id(), NodeConfig::default(), 9, net.now);
    for (id, a) in &saved {
        fresh.add_node(*id, *a, net.now);
    }
    assert_eq!(fresh.table_len(), saved.len());
    net.nodes.push((fresh_addr, fresh));
    net.events.push(Vec::new());
    net.run(Duration::from_secs(5));
    assert_eq!(net.nodes[6].1.stats().timeouts, 0);
    assert!(net.nodes[6].1.stats().responses_in >= saved.len() as u64);
}

#[test]
fn get_peers_finds_a_peer_announced_by_a_third_node_and_no_one_announces_unasked() {
    let mut net = Net::new(8);
    net.bootstrap_all();
    let ih = [0x42; 20];
    let now = net.now;
    for i in 0..8 {
        net.nodes[i].1.get_peers([i as u8; 20], None, now);
    }
    net.run(Duration::from_secs(10));
    assert_eq!(net.announces_sent(), 0, "no announce unless asked");
    for ev in &net.events {
        assert!(ev
            .iter()
            .any(|e| matches!(e, Event::LookupDone { announced: 0, .. })));
    }
    // Node 2 announces port 7000.
    net.nodes[2].1.get_peers(ih, Some(7000), net.now);
    net.run(Duration::from_secs(10));
    let done = net.events[2].iter().find_map(|e| match e {
        Event::LookupDone {
            info_hash,
            answered,
            announced,
        } if *info_hash == ih => Some((*answered, *announced)),
        _ => None,
    });
    let (answered, announced) = done.expect("lookup done");
    assert!(answered >= 7 && announced >= 7, "{answered} {announced}");
    assert_eq!(net.announces_sent(), announced);
    // Node 5 looks it up and finds 127.0.0.3:7000.
    net.nodes[5].1.get_peers(ih, None, net.now);
    net.run(Duration::from_secs(10));
    let peers: Vec<_> = net.events[5]
        .iter()
        .filter_map(|e| match e {
            Event::Peers { info_hash, peers } if *info_hash == ih => Some(peers.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(
        peers.contains(&SocketAddr::from(([127, 0, 0, 3], 7000))),
        "{peers:?}"
    );
    assert!(net.nodes[5].1.stats().peers_found >= 1);
    assert_eq!(
        net.announces_sent(),
        announced,
        "a lookup without a port announces nothing"
    );
    // Votes: every node saw several distinct responders report its loopback address.
    assert!(net.events[0].contains(&Event::ExternalIp(loopback(0).ip())));
}

fn query(tid: &[u8], id: NodeId, q: Query) -> Vec<u8> {
    encode(&Message {
        tid: tid.to_vec(),
        ip: None,
        body: Body::Query {
            id,
            ro: false,
            query: q,
        },
    })
}

fn replies(node: &mut Node) -> Vec<Transmit> {
    std::iter::from_fn(|| node.poll_transmit()).collect()
}

fn response_of(bytes: &[u8]) -> Option<Response> {
    match decode(bytes).ok()?.body {
        Body::Response(r) => Some(r),
        _ => None,
    }
}

#[test]
fn tokens_from_a_rotated_out_secret_are_refused() {
    let t0 = Instant::now();
    let mut n = Node::new(NodeId([1; 20]), NodeConfig::default(), 1, t0);
    let from: SocketAddr = "8.8.8.8:1234".parse().unwrap();
    let me = NodeId([9; 20]);
    n.handle_packet(
        t0,
        from,
        &query(
            b"g",
            me,
            Query::GetPeers {
                info_hash: NodeId([5; 20]),
                want: Want::default(),
            },
        ),
    );
    let r = replies(&mut n)
        .iter()
        .find(|t| t.to == from)
        .and_then(|t| response_of(&t.bytes))
        .unwrap();
    let token = r.token.unwrap();
    let announce = |tid: &[u8], token: &[u8]| {
        query(
            tid,
            me,
            Query::AnnouncePeer {
                info_hash: NodeId([5; 20]),
                port: 9999,
                token: token.to_vec(),
                implied_port: false,
            },
        )
    };
    // One rotation later: still accepted.
    let t1 = t0 + store::ROTATE_EVERY + MAINTENANCE_EVERY;
    n.handle_timeout(t1);
    n.handle_packet(t1, from, &announce(b"a1", &token));
    assert!(replies(&mut n)
        .iter()
        .any(|t| t.to == from && response_of(&t.bytes).is_some()));
    assert_eq!(n.stats().stored_peers, 1);
    // Two rotations later: refused with 203.
    let t2 = t1 + store::ROTATE_EVERY + MAINTENANCE_EVERY;
    n.handle_timeout(t2);
    n.handle_packet(t2, from, &announce(b"a2", &token));
    let out = replies(&mut n);
    let err = out
        .iter()
        .find_map(|t| match decode(&t.bytes).unwrap().body {
            Body::Error { code, .. } => Some(code),
            _ => None,
        });
    assert_eq!(err, Some(203));
    assert_eq!(n.stats().announces_bad_token, 1);
    // A token for another IP is refused too.
    let other: SocketAddr = "8.8.4.4:1".parse().unwrap();
    n.handle_packet(t2, other, &announce(b"a3", &token));
    assert_eq!(n.stats().announces_bad_token, 2);
}

#[test]
fn a_query_flood_from_one_ip_is_limited_while_another_ip_is_answered() {
    let t0 = Instant::now();
    let mut n = Node::new(NodeId([1; 20]), NodeConfig::default(), 1, t0);
    let flood: SocketAddr = "1.2.3.4:1".parse().unwrap();
    for i in 0..200u32 {
        n.handle_packet(
            t0,
            flood,
            &query(&i.to_be_bytes(), NodeId([7; 20]), Query::Ping),
        );
    }
    let answered = |n: &mut Node, to: SocketAddr| {
        replies(n)
            .iter()
            .filter(|t| t.to == to && response_of(&t.bytes).is_some())
            .count()
    };
    assert_eq!(answered(&mut n, flood), 20);
    assert_eq!(n.stats().queries_refused_rate_limit, 180);
    let other: SocketAddr = "5.6.7.8:1".parse().unwrap();
    n.handle_packet(t0, other, &query(b"o", NodeId([8; 20]), Query::Ping));
    assert_eq!(answered(&mut n, other), 1);
    // A second later the flooder gets its budget back.
    let t1 = t0 + Duration::from_secs(1);
    for i in 0..50u32 {
        n.handle_packet(
            t1,
            flood,
            &query(&i.to_be_bytes(), NodeId([7; 20]), Query::Ping),
        );
    }
    assert_eq!(answered(&mut n, flood), 20);
    // The per-IP map stays bounded: the oldest IPs go first (the flooder among them).
    assert!(n.limiter.map.contains_key(&flood.ip()));
    for i in 0..(MAX_LIMITER_IPS as u32 + 500) {
        let a = SocketAddr::from(((0x0b00_0000 + i).to_be_bytes(), 1));
        n.handle_packet(t1, a, &query(b"p", NodeId([7; 20]), Query::Ping));
        if i % 256 == 0 {
            let _ = replies(&mut n);
        }
    }
    assert_eq!(n.limiter.map.len(), MAX_LIMITER_IPS);
    assert!(!n.limiter.map.contains_key(&flood.ip()));
    assert_eq!(n.limiter.map.len(), n.limiter.order.len());
}

#[test]
fn queries_from_many_addresses_are_bounded_by_the_global_rate() {
    let t0 = Instant::now();
    let cfg = NodeConfig {
        max_queries_per_sec: 100,
        ..NodeConfig::default()
    };
    let mut n = Node::new(NodeId([1; 20]), cfg, 1, t0);
    let from = |i: u32| SocketAddr::from(((0x0d00_0000 + i).to_be_bytes(), 1));
    let mut answered = 0;
    for i in 0..1000u32 {
        n.handle_packet(t0, from(i), &query(b"g", NodeId([7; 20]), Query::Ping));
        answered += replies(&mut n)
            .iter()
            .filter(|t| response_of(&t.bytes).is_some())
            .count();
    }
    assert_eq!(answered, 100);
    assert_eq!(n.stats().queries_refused_rate_limit, 900);
    // Half a second later, half a second's worth more.
    let t1 = t0 + Duration::from_millis(500);
    for i in 1000..1100u32 {
        n.handle_packet(t1, from(i), &query(b"g", NodeId([7; 20]), Query::Ping));
        answered += replies(&mut n)
            .iter()
            .filter(|t| response_of(&t.bytes).is_some())
            .count();
    }
    assert_eq!(answered, 150);
}

#[test]
fn replies_stay_within_the_documented_bound() {
    for family in [Family::V4, Family::V6] {
        let t0 = Instant::now();
        let cfg = NodeConfig {
            family,
            max_queries_per_ip_per_sec: 1000,
            max_queries_per_sec: 0,
            read_only: false,
        };
        let mut n = Node::new(NodeId([1; 20]), cfg, 1, t0);
        let ip = |i: u32| -> IpAddr {
            match family {
                Family::V4 => IpAddr::from((0x0c00_0000 + i).to_be_bytes()),
                Family::V6 => IpAddr::from([0x2001, 0xdb8, i as u16, 0, 0, 0, 0, 1]),
            }
        };
        let ih = NodeId([5; 20]);
        // 150 peers announce (each from its own IP, with its own token).
        for i in 0..150u32 {
            let from = SocketAddr::new(ip(i), 1000);
            n.handle_packet(
                t0,
                from,
                &query(
                    b"gp",
                    NodeId([9; 20]),
                    Query::GetPeers {
                        info_hash: ih,
                        want: Want::default(),
                    },
                ),
            );
            let token = replies(&mut n)
                .iter()
                .find(|t| t.to == from)
                .and_then(|t| response_of(&t.bytes))
                .unwrap()
                .token
                .unwrap();
            n.handle_packet(
                t0,
                from,
                &query(
                    b"an",
                    NodeId([9; 20]),
                    Query::AnnouncePeer {
                        info_hash: ih,
                        port: 2000,
                        token,
                        implied_port: false,
                    },
                ),
            );
        }
        assert_eq!(n.stats().stored_peers, 100);
        // Fill the table so find_node answers carry 8 nodes.
        for i in 0..20u32 {
            let id = NodeId([1; 20]).random_in_bucket(i as usize, &mut Rng::new(u64::from(i)));
            n.add_node(id, SocketAddr::new(ip(500 + i), 1), t0);
        }
        let _ = replies(&mut n);
        let from = SocketAddr::new(ip(999), 1);
        let long_tid = [0xaa; krpc::MAX_TID];
        let queries = [
            query(&long_tid, NodeId([9; 20]), Query::Ping),
            query(
                &long_tid,
                NodeId([9; 20]),
                Query::FindNode {
                    target: NodeId([3; 20]),
                    want: Want { n4: true, n6: true },
                },
            ),
            query(
                &long_tid,
                NodeId([9; 20]),
                Query::GetPeers {
                    info_hash: ih,
                    want: Want::default(),
                },
            ),
            query(
                &long_tid,
                NodeId([9; 20]),
                Query::GetPeers {
                    info_hash: NodeId([6; 20]),
                    want: Want::default(),
                },
            ),
            query(b"x", NodeId([9; 20]), Query::Unknown(b"vote".to_vec())),
        ];
        for (k, q) in queries.iter().enumerate() {
            n.handle_packet(t0, from, q);
            let out = replies(&mut n);
            let reply = out
                .iter()
                .find(|t| {
                    t.to == from
                        && decode(&t.bytes).is_ok_and(|m| !matches!(m.body, Body::Query { .. }))
                })
                .unwrap();
            assert!(
                reply.bytes.len() <= MAX_REPLY,
                "{family:?} {k}: {}",
                reply.bytes.len()
            );
            assert!(reply.bytes.len() <= 2 * q.len() + REPLY_BODY_MAX);
            let msg = decode(&reply.bytes).unwrap();
            assert_eq!(msg.ip, Some(from), "BEP 42 ip field");
            if let Body::Response(r) = msg.body {
                match k {
                    0 => assert!(
                        reply.bytes.len() <= 2 * q.len(),
                        "a ping reply is no bigger than twice the ping"
                    ),
                    1 | 3 => assert_eq!(r.nodes.len() + r.nodes6.len(), K),
                    2 => assert_eq!(r.values.len(), max_values(family)),
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn only_matching_responses_count_and_junk_is_dropped_and_counted() {
    let t0 = Instant::now();
    let mut n = Node::new(NodeId([1; 20]), NodeConfig::default(), 1, t0);
    let peer: SocketAddr = "9.9.9.9:1".parse().unwrap();
    n.add_node(NodeId([2; 20]), peer, t0);
    let ping = n.poll_transmit().unwrap();
    assert_eq!(ping.to, peer);
    let tid = decode(&ping.bytes).unwrap().tid;
    let resp = |tid: &[u8], id: NodeId| {
        encode(&Message {
            tid: tid.to_vec(),
            ip: None,
            body: Body::Response(Response {
                id,
                ..Response::default()
            }),
        })
    };
    n.handle_packet(
        t0,
        "9.9.9.8:1".parse().unwrap(),
        &resp(&tid, NodeId([2; 20])),
    );
    n.handle_packet(t0, peer, &resp(b"zz", NodeId([2; 20])));
    assert_eq!(n.stats().dropped_unmatched, 2);
    n.handle_packet(t0, peer, &resp(&tid, NodeId([2; 20])));
    assert_eq!(n.stats().responses_in, 1);
    n.handle_packet(t0, peer, &resp(&tid, NodeId([2; 20])));
    assert_eq!(
        n.stats().dropped_unmatched,
        3,
        "a transaction is answered once"
    );
    n.handle_packet(t0, peer, &vec![b'x'; 1501]);
    assert_eq!(n.stats().dropped_too_large, 1);
    n.handle_packet(t0, peer, b"d1:t");
    assert_eq!(n.stats().malformed, 1);
    n.handle_packet(
        t0,
        "[2001:db8::1]:1".parse().unwrap(),
        &resp(&tid, NodeId([2; 20])),
    );
    assert_eq!(n.stats().dropped_wrong_family, 1);
    // Our own id querying us is dropped.
    n.handle_packet(t0, peer, &query(b"q", NodeId([1; 20]), Query::Ping));
    assert_eq!(n.stats().dropped_own_id, 1);
    // A timed-out ping counts.
    n.add_node(NodeId([3; 20]), "9.9.9.7:1".parse().unwrap(), t0);
    n.handle_timeout(t0 + lookup::QUERY_TIMEOUT);
    assert_eq!(n.stats().timeouts, 1);
}

#[test]
fn read_only_nodes_are_not_added_and_a_read_only_node_answers_nothing() {
    let t0 = Instant::now();
    let mut n = Node::new(NodeId([1; 20]), NodeConfig::default(), 1, t0);
    let from: SocketAddr = "9.9.9.9:1".parse().unwrap();
    let q = |ro| {
        encode(&Message {
            tid: b"t".to_vec(),
            ip: None,
            body: Body::Query {
                id: NodeId([2; 20]),
                ro,
                query: Query::Ping,
            },
        })
    };
    n.handle_packet(t0, from, &q(true));
    let out = replies(&mut n);
    assert_eq!(out.len(), 1, "answered, but not pinged back: {out:?}");
    n.handle_packet(t0, from, &q(false));
    let out = replies(&mut n);
    assert_eq!(out.len(), 2, "answered and pinged back");
    let cfg = NodeConfig {
        read_only: true,
        ..NodeConfig::default()
    };
    let mut ro = Node::new(NodeId([3; 20]), cfg, 1, t0);
    ro.handle_packet(t0, from, &q(false));
    assert!(ro.poll_transmit().is_none());
    assert_eq!(ro.stats().dropped_read_only, 1);
    ro.bootstrap(&[from], t0);
    let sent = decode(&ro.poll_transmit().unwrap().bytes).unwrap();
    assert!(matches!(sent.body, Body::Query { ro: true, .. }));
}

#[test]
fn an_external_ip_gives_a_valid_id_and_keeps_the_table() {
    let mut net = Net::new(4);
    net.bootstrap_all();
    let before = net.nodes[1].1.table_len();
    let old = net.nodes[1].1.id();
    let ip: IpAddr = "124.31.75.21".parse().unwrap();
    let now = net.now;
    net.nodes[1].1.set_external_ip(ip, now);
    let new = net.nodes[1].1.id();
    assert_ne!(old, new);
    assert!(id::is_valid_for(&new, ip));
    assert_eq!(net.nodes[1].1.table_len(), before);
    net.nodes[1].1.set_external_ip(ip, now);
    assert_eq!(net.nodes[1].1.id(), new, "already valid: kept");
}

#[test]
fn a_lonely_node_bootstraps_again_and_buckets_are_refreshed() {
    let t0 = Instant::now();
    let mut n = Node::new(NodeId([1; 20]), NodeConfig::default(), 1, t0);
    let router: SocketAddr = "10.0.0.1:6881".parse().unwrap();
    n.bootstrap(&[router], t0);
    assert_eq!(replies(&mut n).len(), 1);
    // Nothing answers: the bootstrap fails, and maintenance tries again.
    let mut t = t0;
    for _ in 0..20 {
        t += Duration::from_secs(1);
        n.handle_timeout(t);
    }
    assert!(n.stats().queries_out_find_node >= 2, "{:?}", n.stats());
    // A node in the table, then 15 minutes of quiet: a refresh find_node goes out.
    n.add_node(NodeId([0x81; 20]), "10.0.0.2:1".parse().unwrap(), t);
    let before = n.stats().queries_out_find_node;
    t += REFRESH_AFTER + MAINTENANCE_EVERY;
    n.handle_timeout(t);
    assert!(n.stats().queries_out_find_node > before);
}
