//! Connection slots under exhaustion (issue 21, item 3), against the real binary: a full
//! `server.max_connections` of idle handshaken peers, a full `max_connections_per_torrent`, and
//! connections that never handshake and reconnect the moment they are closed. In each, an
//! honest peer arriving later still gets in and downloads a block byte for byte, by evicting the
//! peer uninterested the longest or the oldest half-open connection; interested peers are never
//! evicted; every eviction is counted. A hybrid torrent's slots are one pool: a peer joining by
//! its v2 info-hash evicts an idle one that joined by the v1 hash.

mod common;

use common::raw::RawPeer;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uringseed::metainfo::InfoHash;
use uringseed::wire::message::{Block, Message};

const PIECE: u8 = 7;

struct Setup {
    _dir: tempfile::TempDir,
    s: Serve,
    ih: InfoHash,
    data: Vec<u8>,
}

fn start(config: &str) -> Setup {
    start_made(config, &[])
}

/// [`start`] with extra `make` flags (`--hybrid`).
fn start_made(config: &str, make_flags: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let data = pseudo_random(1 << 20, 5);
    let file = data_dir.join("f.bin");
    std::fs::write(&file, &data).unwrap();
    let torrent = dir.path().join("t.torrent");
    let mut flags = vec!["--piece-length", "65536"];
    flags.extend_from_slice(make_flags);
    let ih = hex_hash(&make_torrent(&file, &torrent, &flags));
    let c = dir.path().join("c.toml");
    std::fs::write(&c, format!("[hashing]\nresume = false\n[server]\n{config}")).unwrap();
    let mut s = serve(
        "serve",
        &torrent,
        &data_dir,
        &["--config", c.to_str().unwrap()],
        &[],
        dir.path(),
    );
    s.ready();
    Setup {
        _dir: dir,
        s,
        ih,
        data,
    }
}

/// A handshaken peer that says nothing more (not interested): holds a slot and idles.
fn idle_peer(addr: SocketAddr, ih: InfoHash) -> RawPeer {
    let (p, _) = RawPeer::handshake(addr, ih, true);
    p
}

/// An honest peer: handshake, interested, one block; the time it took and the peer (still
/// connected), or what went wrong.
fn honest_block(
    addr: SocketAddr,
    ih: InfoHash,
    data: &[u8],
) -> Result<(Duration, RawPeer), String> {
    let t = Instant::now();
    let s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut p = RawPeer::from_stream(s);
    let mut id = *b"-HN0001-honestpeer00";
    let port = p.s.local_addr().unwrap().port();
    id[15..].copy_from_slice(format!("{port:05}").as_bytes());
    let hs = uringseed::wire::Handshake::ours(ih, id);
    p.s.write_all(&hs.encode())
        .map_err(|e| format!("handshake: {e}"))?;
    let mut theirs = [0u8; 68];
    p.s.read_exact(&mut theirs)
        .map_err(|e| format!("no handshake back: {e}"))?;
    p.send(&[Message::HaveNone, Message::Interested]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut asked = false;
    while Instant::now() < deadline {
        match p.recv_within(Duration::from_millis(500)) {
            Some((1, _)) if !asked => {
                p.send(&[Message::Request(Block {
                    index: 3,
                    begin: 16384,
                    length: 16384,
                })]);
                asked = true;
            }
            Some((PIECE, payload)) => {
                let want = &data[3 * 65536 + 16384..3 * 65536 + 32768];
                return if &payload[8..] == want {
                    Ok((t.elapsed(), p))
                } else {
                    Err("wrong bytes".into())
                };
            }
            None if p.s.peek(&mut [0u8]).is_ok_and(|n| n == 0) => {
                return Err("closed by the server".into())
            }
            _ => {}
        }
    }
    Err(format!("no block within 15 s (asked: {asked})"))
}

fn dropped(s: &Serve, reason: &str) -> f64 {
    s.metric(&format!(
        "uringseed_peers_dropped_total{{reason=\"{reason}\"}}"
    ))
}

#[test]
fn a_full_server_of_idle_peers_makes_room_for_an_honest_one_but_never_evicts_the_interested() {
    let st = start("max_connections = 40\nupload_slots = 0\n");
    let (addr, ih) = (st.s.addr, st.ih);
    // 10 interested peers (they wait for a slot or download), then 30 idle ones: full.
    let interested: Vec<RawPeer> = (0..10)
        .map(|_| {
            let mut p = idle_peer(addr, ih);
            p.send(&[Message::HaveNone, Message::Interested]);
            p
        })
        .collect();
    let idle: Vec<RawPeer> = (0..30).map(|_| idle_peer(addr, ih)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let connected: f64 = ["ipv4", "ipv6"]
        .iter()
        .map(|f| {
            st.s.metric(&format!(
                "uringseed_peers_connected{{direction=\"incoming\",family=\"{f}\"}}"
            ))
        })
        .sum();
    assert_eq!(connected, 40.0);
    // Ten honest newcomers, one after another, each staying: each gets in and gets its block.
    let mut honest = Vec::new();
    for i in 0..10 {
        let (took, p) = honest_block(addr, ih, &st.data)
            .unwrap_or_else(|e| panic!("honest peer {i}: {e}\n{}", st.s.proc.report()));
        eprintln!("honest peer {i} at a full server: block after {took:?}");
        honest.push(p);
    }
    assert_eq!(dropped(&st.s, "evicted"), 10.0);
    assert_eq!(dropped(&st.s, "connection_cap"), 0.0);
    // The evicted were the oldest idle ones; every interested peer is still connected.
    for (i, p) in interested.iter().chain(&honest).enumerate() {
        assert!(
            !closed(&p.s, Duration::ZERO),
            "interested peer {i} was closed"
        );
    }
    for (i, p) in idle.iter().enumerate() {
        let wait = Duration::from_millis(if i < 10 { 2000 } else { 0 });
        assert_eq!(
            closed(&p.s, wait),
            i < 10,
            "idle peer {i} (the first 10 go)"
        );
    }
    // One more, when only interested peers and younger idle ones are left: still room.
    assert!(honest_block(addr, ih, &st.data).is_ok());
    st.s.stop();
}

/// True once the server has closed `s` (EOF or reset), waiting at most `wait` for it.
fn closed(s: &TcpStream, wait: Duration) -> bool {
    s.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    let result = loop {
        match (&*s).read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => break true,
        }
    };
    s.set_nonblocking(false).unwrap();
    result
}

#[test]
fn a_full_torrent_makes_room_too() {
    let st = start("max_connections_per_torrent = 20\nupload_slots = 0\n");
    let (addr, ih) = (st.s.addr, st.ih);
    let idle: Vec<RawPeer> = (0..20).map(|_| idle_peer(addr, ih)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (took, _honest) =
        honest_block(addr, ih, &st.data).unwrap_or_else(|e| panic!("{e}\n{}", st.s.proc.report()));
    eprintln!("honest peer at a full torrent: block after {took:?}");
    assert_eq!(dropped(&st.s, "evicted"), 1.0);
    assert_eq!(dropped(&st.s, "torrent_connection_cap"), 0.0);
    assert!(
        closed(&idle[0].s, Duration::from_secs(2)),
        "the oldest idle peer was not the one evicted"
    );
    assert!(!closed(&idle[1].s, Duration::ZERO));
    st.s.stop();
}

#[test]
fn a_full_hybrid_makes_room_for_a_peer_joining_by_its_v2_info_hash() {
    let st = start_made(
        "max_connections_per_torrent = 20\nupload_slots = 0\n",
        &["--hybrid"],
    );
    let (addr, v1) = (st.s.addr, st.ih);
    let torrent = uringseed::metainfo::load(&st._dir.path().join("t.torrent")).unwrap();
    let v2 = torrent.v2.as_ref().expect("a hybrid").truncated();
    let idle: Vec<RawPeer> = (0..20).map(|_| idle_peer(addr, v1)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (took, _honest) =
        honest_block(addr, v2, &st.data).unwrap_or_else(|e| panic!("{e}\n{}", st.s.proc.report()));
    eprintln!("v2 peer at a hybrid full of v1 peers: block after {took:?}");
    assert_eq!(dropped(&st.s, "evicted"), 1.0);
    assert_eq!(dropped(&st.s, "torrent_connection_cap"), 0.0);
    assert!(closed(&idle[0].s, Duration::from_secs(2)));
    st.s.stop();
}

#[test]
fn connections_that_never_handshake_and_reconnect_cannot_lock_honest_peers_out() {
    // Server cap 40, half-open budget 10: 40 attackers connect, send nothing, and reconnect as
    // soon as they are closed, for as long as the test runs.
    let st = start(
        "max_connections = 40\nmax_half_open = 10\nhandshake_timeout_secs = 30\nupload_slots = 0\n",
    );
    let (addr, ih) = (st.s.addr, st.ih);
    let stop = Arc::new(AtomicBool::new(false));
    let reconnects = Arc::new(AtomicUsize::new(0));
    let attackers: Vec<_> = (0..40)
        .map(|_| {
            let (stop, reconnects) = (stop.clone(), reconnects.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(s) = TcpStream::connect(addr) else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    reconnects.fetch_add(1, Ordering::Relaxed);
                    s.set_read_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    let mut b = [0u8; 1];
                    // Until the server closes it (or the test ends).
                    while !stop.load(Ordering::Relaxed) {
                        match (&s).read(&mut b) {
                            Ok(0) => break,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                            _ => break,
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..5 {
        let (took, _p) = honest_block(addr, ih, &st.data)
            .unwrap_or_else(|e| panic!("honest peer {i}: {e}\n{}", st.s.proc.report()));
        eprintln!("honest peer {i} among reconnecting half-open floods: block after {took:?}");
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    let evicted = dropped(&st.s, "evicted");
    eprintln!(
        "{} attacker connections, {evicted} evicted",
        reconnects.load(Ordering::Relaxed)
    );
    assert!(evicted >= 30.0, "{evicted} evicted");
    st.s.stop();
}
