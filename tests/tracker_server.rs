//! The built-in tracker (`serve --tracker-listen`, issue 18) end to end: real clients
//! (libtorrent, aria2, WebTorrent) given only a torrent that names it find uringseed and each
//! other and complete byte-exact, and its scrape counts and metrics say what they did; raw
//! UDP (BEP 15) requests with good and bad connection ids, unknown torrents, `open = true`.

mod common;

use common::*;
use serde_bencode::value::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PROTOCOL_ID: u64 = 0x0417_2710_1980;

fn pct(b: &[u8]) -> String {
    b.iter().map(|b| format!("%{b:02X}")).collect()
}

/// GET `target` from `addr`, bounded: (status, body bytes).
fn get(addr: SocketAddr, target: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read reply");
    let at = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head end");
    let head = String::from_utf8_lossy(&all[..at]).to_string();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, all[at + 4..].to_vec())
}

fn dict(v: &Value) -> &HashMap<Vec<u8>, Value> {
    match v {
        Value::Dict(d) => d,
        other => panic!("not a dict: {other:?}"),
    }
}

fn int(v: &Value, key: &str) -> i64 {
    match dict(v).get(key.as_bytes()) {
        Some(Value::Int(n)) => *n,
        other => panic!("{key}: {other:?} in {v:?}"),
    }
}

fn bdecode(b: &[u8]) -> Value {
    serde_bencode::from_bytes(b).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(b)))
}

thread_local! {
    /// HTTP scrapes this test (thread) made.
    static SCRAPES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// HTTP scrape of `ih`: (complete, downloaded, incomplete).
fn scrape(tracker: SocketAddr, ih: &[u8; 20]) -> (i64, i64, i64) {
    SCRAPES.set(SCRAPES.get() + 1);
    let (code, body) = get(tracker, &format!("/scrape?info_hash={}", pct(ih)));
    assert_eq!(code, 200);
    let v = bdecode(&body);
    let files = dict(&v).get(&b"files"[..]).expect("files");
    match dict(files).get(&ih[..]) {
        Some(f) => (
            int(f, "complete"),
            int(f, "downloaded"),
            int(f, "incomplete"),
        ),
        None => (0, 0, 0),
    }
}

/// An HTTP announce with dictionary peers (`compact=0`); the decoded reply.
fn announce_http(
    tracker: SocketAddr,
    ih: &[u8; 20],
    peer_id: &[u8; 20],
    port: u16,
    event: &str,
    left: u64,
) -> Value {
    let target = format!(
        "/announce?info_hash={}&peer_id={}&port={port}&uploaded=0&downloaded=0&left={left}&compact=0&numwant=200{}",
        pct(ih),
        pct(peer_id),
        if event.is_empty() { String::new() } else { format!("&event={event}") }
    );
    let (code, body) = get(tracker, &target);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    bdecode(&body)
}

/// (port, peer id) of each dictionary peer in an announce reply.
fn dict_peers(reply: &Value) -> Vec<(u16, Vec<u8>)> {
    let Some(Value::List(peers)) = dict(reply).get(&b"peers"[..]) else {
        panic!("no peers list in {reply:?}");
    };
    peers
        .iter()
        .map(|p| {
            let id = match dict(p).get(&b"peer id"[..]) {
                Some(Value::Bytes(b)) => b.clone(),
                _ => Vec::new(),
            };
            (int(p, "port") as u16, id)
        })
        .collect()
}

/// The peers the tracker holds for `ih` (a probe that announces and then stops), with
/// their peer ids as text: for failure messages.
fn who(tracker: SocketAddr, ih: &[u8; 20]) -> Vec<(u16, String)> {
    let me = b"-TS0001-whoisthere!!";
    let r = announce_http(tracker, ih, me, 9, "started", 1);
    announce_http(tracker, ih, me, 9, "stopped", 1);
    dict_peers(&r)
        .into_iter()
        .map(|(port, id)| {
            (
                port,
                String::from_utf8_lossy(&id[..id.len().min(8)]).into_owned(),
            )
        })
        .collect()
}

/// aria2's log lines about trackers, for failure messages.
fn aria_log(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("aria2.log")).unwrap_or_default();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("announce") || l.contains("racker"))
        .collect();
    format!("---- aria2.log (tracker lines):\n{}\n", lines.join("\n"))
}

/// Polls `cond` every 200 ms for at most `limit`; true once it holds.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    cond()
}

fn info_hash_of(torrent: &Path) -> [u8; 20] {
    uringseed::metainfo::load(torrent).unwrap().info_hash.0
}

/// Three real clients, each given only the .torrent that `serve PATH --tracker-listen` made,
/// rate-limited so that they are in the swarm together; they stay as seeds for a while once done.
#[test]
fn three_real_clients_find_uringseed_and_each_other_through_the_built_in_tracker() {
    if !have_libtorrent() || !have("aria2c") || !have_node_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir_all(&share).unwrap();
    let file = share.join("tracked.bin");
    let data = pseudo_random(4 << 20, 18);
    std::fs::write(&file, &data).unwrap();
    let out = dir.path().join("tracked.torrent");
    let tport = free_port();
    let tracker = SocketAddr::from(([127, 0, 0, 1], tport));
    let tl = tracker.to_string();
    let mut serve = serve_args(
        "uringseed",
        &[
            file.to_str().unwrap(),
            "--tracker-listen",
            &tl,
            "--torrent-out",
            out.to_str().unwrap(),
        ],
        &[],
        dir.path(),
    );
    serve.ready();
    let printed = serve.proc.stdout_text();
    let magnet = value_of(&printed, "magnet:").expect("magnet line");
    let http_url = format!("http://{tl}/announce");
    let udp_url = format!("udp://{tl}/announce");
    let enc = |u: &str| u.replace(':', "%3A").replace('/', "%2F");
    assert!(
        magnet.contains(&format!("tr={}", enc(&http_url)))
            || magnet.contains(&format!("tr={http_url}")),
        "{magnet}"
    );
    let t = uringseed::metainfo::load(&out).unwrap();
    assert_eq!(t.trackers, vec![vec![http_url.clone(), udp_url.clone()]]);
    let ih = t.info_hash.0;
    let own_port = serve.addr.port();
    // uringseed announces itself to its own tracker (a seed).
    assert!(
        wait_for(Duration::from_secs(30), || scrape(tracker, &ih)
            == (1, 0, 0)),
        "uringseed never announced to its own tracker: scrape {:?}\n{}",
        scrape(tracker, &ih),
        serve.proc.report()
    );

    let rate = (256 << 10).to_string();
    let lt_dir = dir.path().join("lt");
    let mut lt = spawn_lt(
        "libtorrent",
        &[
            "tracker_download",
            out.to_str().unwrap(),
            lt_dir.to_str().unwrap(),
            "120",
        ],
        &[("LT_DOWNLOAD_RATE", &rate), ("LT_LINGER_SECS", "90")],
        dir.path(),
    );
    let lt_port: u16 = lt
        .wait_line("port ", Duration::from_secs(30))
        .trim()
        .parse()
        .unwrap();
    let aria_dir = dir.path().join("aria2");
    let aria_port = free_port();
    let mut aria = Proc::spawn(
        "aria2",
        Command::new("sh")
            .arg(tools_dir().join("aria2_get.sh"))
            .args([
                out.to_str().unwrap(),
                aria_dir.to_str().unwrap(),
                "-",
                "150",
                &format!("--listen-port={aria_port}"),
                "--max-download-limit=256K",
                // Seeds 45 s once done, then leaves by itself (SIGTERM would skip `stopped`).
                "--seed-time=0.75",
                "--seed-ratio=0.0",
                &format!("--log={}", dir.path().join("aria2.log").display()),
                "--log-level=info",
            ]),
        dir.path(),
    );
    let wt_dir = dir.path().join("webtorrent");
    let mut wt = Proc::spawn(
        "webtorrent",
        Command::new("node")
            .arg(tools_dir().join("webtorrent_get.js"))
            .args([out.to_str().unwrap(), wt_dir.to_str().unwrap(), "-", "120"])
            .env("WT_DOWNLOAD_RATE", &rate)
            .env("WT_LINGER_SECS", "90"),
        dir.path(),
    );
    let reports = |lt: &Proc, aria: &Proc, wt: &Proc, serve: &Serve| {
        format!(
            "{}{}{}{}",
            lt.report(),
            aria.report(),
            wt.report(),
            serve.proc.report()
        )
    };
    // All three leeching at once (a download takes about 16 s at 256 KiB/s).
    let together = wait_for(Duration::from_secs(30), || {
        scrape(tracker, &ih) == (1, 0, 3)
    });
    assert!(
        together,
        "scrape {:?}\n{}",
        scrape(tracker, &ih),
        reports(&lt, &aria, &wt, &serve)
    );
    // What the tracker hands out now: uringseed and all three clients.
    let probe_port = free_port();
    let me = *b"-TS0001-trackerprobe";
    let reply = announce_http(tracker, &ih, &me, probe_port, "started", 1);
    assert_eq!(int(&reply, "interval"), 1800);
    assert_eq!(int(&reply, "min interval"), 300);
    let peers = dict_peers(&reply);
    announce_http(tracker, &ih, &me, probe_port, "stopped", 1);
    let ports: Vec<u16> = peers.iter().map(|p| p.0).collect();
    for (who, port) in [
        ("uringseed", own_port),
        ("libtorrent", lt_port),
        ("aria2", aria_port),
    ] {
        assert!(
            ports.contains(&port),
            "{who} ({port}) not among the peers {peers:?}"
        );
    }
    assert!(
        peers.iter().any(|p| p.1.starts_with(b"-WW")),
        "no WebTorrent peer id among {peers:?}"
    );
    assert_eq!(peers.len(), 4, "{peers:?}");

    // All three done, seeding, and each announced `completed`.
    let done = wait_for(Duration::from_secs(90), || {
        scrape(tracker, &ih) == (4, 3, 0)
    });
    assert!(
        done,
        "scrape {:?}\n{}",
        scrape(tracker, &ih),
        reports(&lt, &aria, &wt, &serve)
    );
    let m = |s: &str| serve.metric(s);
    assert_eq!(m("uringseed_tracker_server_peers"), 4.0);
    assert_eq!(m("uringseed_tracker_server_torrents"), 1.0);
    let ok = m("uringseed_tracker_server_announces_total{proto=\"http\",result=\"ok\"}")
        + m("uringseed_tracker_server_announces_total{proto=\"udp\",result=\"ok\"}");
    // Each client at least started and completed, uringseed started, the probe twice.
    assert!(ok >= 9.0, "announces ok {ok}");
    assert_eq!(
        m("uringseed_tracker_server_announces_total{proto=\"http\",result=\"refused\"}"),
        0.0
    );
    assert!(m("uringseed_tracker_server_scrapes_total{proto=\"http\"}") >= SCRAPES.get() as f64);
    // aria2 only speaks HTTP to trackers with its DHT off; the others may use either.
    assert!(m("uringseed_tracker_server_announces_total{proto=\"http\",result=\"ok\"}") >= 4.0);

    // They leave: each announces `stopped`, and only uringseed is left. libtorrent and
    // WebTorrent on SIGTERM; aria2 when its seed time is over (it announces no `stopped` when
    // it is signalled).
    for p in [&mut lt, &mut wt] {
        p.signal("TERM");
    }
    assert!(
        aria.wait_exit(Duration::from_secs(70)).is_some(),
        "aria2 did not leave after its seed time\n{}",
        aria.report()
    );
    let gone = wait_for(Duration::from_secs(30), || {
        scrape(tracker, &ih) == (1, 3, 0)
    });
    assert!(
        gone,
        "scrape {:?}, peers {:?}\n{}",
        scrape(tracker, &ih),
        who(tracker, &ih),
        reports(&lt, &aria, &wt, &serve) + &aria_log(dir.path())
    );
    assert_eq!(m("uringseed_tracker_server_peers"), 1.0);
    for p in [&mut lt, &mut aria, &mut wt] {
        let st = p.wait_exit(Duration::from_secs(20));
        assert!(st.is_some(), "{} did not exit\n{}", p.name, p.report());
    }
    for got in [
        lt_dir.join("tracked.bin"),
        aria_dir.join("tracked.bin"),
        wt_dir.join("tracked.bin"),
    ] {
        let bytes = std::fs::read(&got).unwrap_or_else(|e| panic!("{}: {e}", got.display()));
        assert!(
            bytes == data,
            "{} differs from the seeded file",
            got.display()
        );
    }
    serve.stop();
}

/// A UDP tracker client over a std socket.
struct Udp {
    sock: UdpSocket,
    to: SocketAddr,
}

impl Udp {
    fn new(to: SocketAddr) -> Udp {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        Udp { sock, to }
    }

    /// Sends `pkt`; the reply within 1 s, if any.
    fn ask(&self, pkt: &[u8]) -> Option<Vec<u8>> {
        self.sock.send_to(pkt, self.to).unwrap();
        let mut buf = [0u8; 2048];
        match self.sock.recv_from(&mut buf) {
            Ok((n, _)) => Some(buf[..n].to_vec()),
            Err(_) => None,
        }
    }

    fn connect(&self) -> u64 {
        let mut p = PROTOCOL_ID.to_be_bytes().to_vec();
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&77u32.to_be_bytes());
        let r = self.ask(&p).expect("connect reply");
        assert_eq!(r.len(), 16);
        assert_eq!(&r[..8], &[0, 0, 0, 0, 0, 0, 0, 77]);
        u64::from_be_bytes(r[8..16].try_into().unwrap())
    }

    /// Announce (event 0 none, 1 completed, 2 started, 3 stopped); the reply, if any.
    fn announce(
        &self,
        conn: u64,
        ih: &[u8; 20],
        port: u16,
        left: u64,
        event: u32,
    ) -> Option<Vec<u8>> {
        let mut p = conn.to_be_bytes().to_vec();
        p.extend_from_slice(&1u32.to_be_bytes());
        p.extend_from_slice(&99u32.to_be_bytes());
        p.extend_from_slice(ih);
        p.extend_from_slice(b"-UT0001-udptestpeer!");
        p.extend_from_slice(&0u64.to_be_bytes());
        p.extend_from_slice(&left.to_be_bytes());
        p.extend_from_slice(&0u64.to_be_bytes());
        p.extend_from_slice(&event.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes()); // ip
        p.extend_from_slice(&1u32.to_be_bytes()); // key
        p.extend_from_slice(&(-1i32).to_be_bytes());
        p.extend_from_slice(&port.to_be_bytes());
        self.ask(&p)
    }

    /// Scrape of one info-hash: (seeders, completed, leechers).
    fn scrape(&self, conn: u64, ih: &[u8; 20]) -> (u32, u32, u32) {
        let mut p = conn.to_be_bytes().to_vec();
        p.extend_from_slice(&2u32.to_be_bytes());
        p.extend_from_slice(&5u32.to_be_bytes());
        p.extend_from_slice(ih);
        let r = self.ask(&p).expect("scrape reply");
        assert_eq!(r.len(), 20, "{r:?}");
        let w = |i: usize| u32::from_be_bytes(r[i..i + 4].try_into().unwrap());
        assert_eq!((w(0), w(4)), (2, 5));
        (w(8), w(12), w(16))
    }
}

/// Ports of the compact IPv4 peers in a UDP announce reply.
fn udp_peer_ports(r: &[u8]) -> Vec<u16> {
    r[20..]
        .chunks_exact(6)
        .map(|c| u16::from_be_bytes([c[4], c[5]]))
        .collect()
}

fn seed_with_tracker(dir: &Path, extra: &[&str]) -> (Serve, SocketAddr, [u8; 20]) {
    let root = write_tree(dir, "udpdata");
    let tracker = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let torrent = dir.join("udp.torrent");
    make_torrent(
        &root,
        &torrent,
        &["-t", &format!("udp://{tracker}/announce")],
    );
    let tl = tracker.to_string();
    let mut args = vec!["--tracker-listen", &tl];
    args.extend_from_slice(extra);
    let mut s = serve("uringseed", &torrent, dir, &args, &[], dir);
    s.ready();
    (s, tracker, info_hash_of(&torrent))
}

#[test]
fn udp_ids_are_checked_unknown_torrents_refused_and_scrape_counts_follow_announces() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, tracker, ih) = seed_with_tracker(dir.path(), &[]);
    let own = serve.addr.port();
    let udp = Udp::new(tracker);
    let conn = udp.connect();
    // uringseed announced itself over UDP; our announce gets it back with the interval.
    let mut reply = Vec::new();
    assert!(
        wait_for(Duration::from_secs(30), || {
            reply = udp
                .announce(conn, &ih, 40001, 1000, 2)
                .expect("announce reply");
            udp_peer_ports(&reply).contains(&own)
        }),
        "uringseed ({own}) not among {:?}\n{}",
        udp_peer_ports(&reply),
        serve.proc.report()
    );
    assert_eq!(&reply[..4], &1u32.to_be_bytes());
    assert_eq!(u32::from_be_bytes(reply[8..12].try_into().unwrap()), 1800);
    assert_eq!(udp.scrape(conn, &ih), (1, 0, 1));
    assert!(udp.announce(conn, &ih, 40001, 0, 1).is_some());
    assert_eq!(udp.scrape(conn, &ih), (2, 1, 0));

    // A wrong connection id: no reply at all, and counted.
    let bad = "uringseed_tracker_server_udp_bad_connection_id_total";
    let before = serve.metric(bad);
    assert!(udp.announce(conn ^ 0x5555, &ih, 40002, 1000, 2).is_none());
    assert_eq!(serve.metric(bad), before + 1.0);
    // The same id from another address (port) is wrong too.
    let other = Udp::new(tracker);
    assert!(other.announce(conn, &ih, 40003, 1000, 2).is_none());
    assert_eq!(serve.metric(bad), before + 2.0);

    // An unknown torrent: a BEP 15 error, and refused in the metrics.
    let unknown = [0xabu8; 20];
    let e = udp
        .announce(conn, &unknown, 40004, 1000, 2)
        .expect("error reply");
    assert_eq!(&e[..8], &[0, 0, 0, 3, 0, 0, 0, 99], "{e:?}");
    assert!(e.len() > 8);
    let refused = "uringseed_tracker_server_announces_total{proto=\"udp\",result=\"refused\"}";
    assert_eq!(serve.metric(refused), 1.0);
    // HTTP: `failure reason`.
    let r = announce_http(
        tracker,
        &unknown,
        b"-UT0001-httptestpeer",
        40005,
        "started",
        1,
    );
    assert!(dict(&r).contains_key(&b"failure reason"[..]), "{r:?}");
    assert_eq!(
        serve.metric("uringseed_tracker_server_announces_total{proto=\"http\",result=\"refused\"}"),
        1.0
    );
    // Stopped: gone from the table.
    udp.announce(conn, &ih, 40001, 0, 3);
    assert_eq!(udp.scrape(conn, &ih), (1, 1, 0));
    assert_eq!(serve.metric("uringseed_tracker_server_peers"), 1.0);
    assert!(serve.metric("uringseed_tracker_server_udp_connects_total") >= 2.0);
    let (code, _) = get(tracker, "/nothing");
    assert_eq!(code, 404);
    assert_eq!(
        serve.metric("uringseed_tracker_server_http_not_found_total"),
        1.0
    );
    serve.stop();
}

#[test]
fn open_mode_tracks_any_info_hash() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("open.toml");
    std::fs::write(&config, "[tracker_server]\nopen = true\n").unwrap();
    let (serve, tracker, _) =
        seed_with_tracker(dir.path(), &["--config", config.to_str().unwrap()]);
    let udp = Udp::new(tracker);
    let conn = udp.connect();
    let any = [0x5au8; 20];
    let r = udp.announce(conn, &any, 40010, 1000, 2).expect("reply");
    assert_eq!(&r[..4], &1u32.to_be_bytes(), "{r:?}");
    assert_eq!(udp.scrape(conn, &any), (0, 0, 1));
    assert_eq!(scrape(tracker, &any), (0, 0, 1));
    assert_eq!(
        serve.metric("uringseed_tracker_server_announces_total{proto=\"udp\",result=\"refused\"}"),
        0.0
    );
    serve.stop();
}

#[test]
fn a_taken_tracker_address_fails_the_start_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_tree(dir.path(), "busy");
    let torrent = dir.path().join("busy.torrent");
    make_torrent(&root, &torrent, &[]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut p = Proc::spawn(
        "uringseed",
        uringseed().args([
            "serve",
            "--torrent",
            torrent.to_str().unwrap(),
            "--data",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--tracker-listen",
            &addr,
        ]),
        dir.path(),
    );
    let status = p.wait_exit(Duration::from_secs(20));
    // An address in use may pass by itself: the temporary failure's status.
    assert_eq!(status.and_then(|s| s.code()), Some(3), "{}", p.report());
    assert!(
        p.stderr_text()
            .contains(&format!("tracker_server.listen {addr}:")),
        "{}",
        p.report()
    );
    drop(taken);
}
