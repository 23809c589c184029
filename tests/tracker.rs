//! Tracker clients against fake trackers on loopback: every reply form, every malformed reply
//! (each a clear error, never a crash), UDP transaction handling, and the server announcing,
//! connecting out to returned peers and announcing `stopped` on shutdown.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;
use uringseed::metainfo::InfoHash;
use uringseed::tracker::udp::UdpTracker;
use uringseed::tracker::{http, AnnounceRequest, Event, TrackerError};

fn req(event: Event) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash(*b"\x00\x01 &?=%/abcdefghijkl"),
        peer_id: *b"-US0100-abcdefghijkl",
        port: 6881,
        uploaded: 1234,
        downloaded: 0,
        left: 0,
        event,
        numwant: 50,
        key: 0xdeadbeef,
        tracker_id: None,
    }
}

#[test]
fn http_reply_forms_parse() {
    let compact = b"d8:completei5e10:incompletei7e8:intervali1800e12:min intervali60e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x50e";
    let r = http::parse_reply(compact).unwrap();
    assert_eq!(r.interval, Duration::from_secs(1800));
    assert_eq!(r.min_interval, Some(Duration::from_secs(60)));
    assert_eq!((r.complete, r.incomplete), (Some(5), Some(7)));
    assert_eq!(
        r.peers,
        vec![
            "127.0.0.1:6881".parse().unwrap(),
            "10.0.0.2:80".parse::<SocketAddr>().unwrap()
        ]
    );
    let dict = b"d8:intervali60e5:peersld2:ip9:127.0.0.17:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti7000eed2:ip3:::14:porti7001eed2:ip11:example.com4:porti1eee10:tracker id3:xyz15:warning message4:slowe";
    let r = http::parse_reply(dict).unwrap();
    assert_eq!(
        r.peers,
        vec![
            "127.0.0.1:7000".parse().unwrap(),
            "[::1]:7001".parse::<SocketAddr>().unwrap()
        ]
    );
    assert_eq!(
        (r.tracker_id.as_deref(), r.warning.as_deref()),
        (Some("xyz"), Some("slow"))
    );
    let mut v6 = b"d8:intervali60e5:peers0:6:peers618:".to_vec();
    v6.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x1f, 0x90]);
    v6.push(b'e');
    assert_eq!(
        http::parse_reply(&v6).unwrap().peers,
        vec!["[::1]:8080".parse::<SocketAddr>().unwrap()]
    );
}

#[test]
fn http_bad_replies_are_clear_errors() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"d14:failure reason12:unregisterede",
            "tracker refused: unregistered",
        ),
        (b"d8:intervali60e5:peers", "bad tracker reply: not bencode"),
        (b"<html>502 Bad Gateway</html>", "not bencode"),
        (b"le", "not a dictionary"),
        (b"d5:peers0:e", "no `interval`"),
        (b"d8:intervali60e5:peers5:abcdee", "not a multiple of 6"),
        (b"d8:intervali60e5:peersi3ee", "neither a string nor a list"),
        (b"", "not bencode"),
    ];
    for (body, want) in cases {
        let e = http::parse_reply(body).unwrap_err();
        assert!(
            e.to_string().contains(want),
            "{:?}: {e}",
            String::from_utf8_lossy(body)
        );
    }
}

/// A one-shot HTTP server: answers one request with `body` (and `status`), sends the request
/// line back over the channel.
fn fake_http(status: &'static str, body: Vec<u8>) -> (String, mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/announce?passkey=abc", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        tx.send(line).unwrap();
        let mut w = s;
        let _ = write!(
            w,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = w.write_all(&body);
    });
    (url, rx)
}

#[test]
fn http_announce_sends_every_parameter() {
    let (url, rx) = fake_http("200 OK", b"d8:intervali900e5:peers0:e".to_vec());
    let mut r = req(Event::Started);
    r.tracker_id = Some("t 1".into());
    let resp = http::announce(&url, &r, Duration::from_secs(5)).unwrap();
    assert_eq!(resp.interval, Duration::from_secs(900));
    let line = rx.recv().unwrap();
    for part in [
        "GET /announce?passkey=abc&info_hash=%00%01%20%26%3F%3D%25%2Fabcdefghijkl&",
        "peer_id=-US0100-abcdefghijkl",
        "port=6881",
        "uploaded=1234",
        "downloaded=0",
        "left=0",
        "compact=1",
        "numwant=50",
        "key=deadbeef",
        "event=started",
        "trackerid=t%201",
    ] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
}

#[test]
fn http_transport_failures_are_clear() {
    let (url, _rx) = fake_http("404 Not Found", b"nope".to_vec());
    let e = http::announce(&url, &req(Event::None), Duration::from_secs(5)).unwrap_err();
    assert_eq!(e, TrackerError::Transport("HTTP status 404".into()));
    let (url, _rx) = fake_http("200 OK", vec![b'x'; (http::MAX_REPLY_BYTES + 10) as usize]);
    let e = http::announce(&url, &req(Event::None), Duration::from_secs(5)).unwrap_err();
    assert!(e.to_string().contains("longer than"), "{e}");
    // Nothing listening; and a tracker that accepts but never answers (bounded by the timeout).
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let e = http::announce(
        &format!("http://{addr}/a"),
        &req(Event::None),
        Duration::from_secs(5),
    )
    .unwrap_err();
    assert!(matches!(e, TrackerError::Transport(_)), "{e}");
    let hang = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/a", hang.local_addr().unwrap());
    let t = std::time::Instant::now();
    let e = http::announce(&url, &req(Event::None), Duration::from_secs(1)).unwrap_err();
    assert!(
        matches!(e, TrackerError::Transport(_)) && t.elapsed() < Duration::from_secs(5),
        "{e}"
    );
    drop(hang);
}

/// A fake UDP tracker answering with `respond(packet) -> replies`.
fn fake_udp(
    respond: impl Fn(&[u8]) -> Vec<Vec<u8>> + Send + 'static,
) -> (String, mpsc::Receiver<Vec<u8>>) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("udp://{}/announce", s.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = tx.send(buf[..n].to_vec());
            for reply in respond(&buf[..n]) {
                let _ = s.send_to(&reply, from);
            }
        }
    });
    (url, rx)
}

fn tid(p: &[u8]) -> [u8; 4] {
    [p[12], p[13], p[14], p[15]]
}

fn connect_reply(p: &[u8]) -> Vec<u8> {
    let mut r = vec![0, 0, 0, 0];
    r.extend(tid(p));
    r.extend(0x1122_3344_5566_7788u64.to_be_bytes());
    r
}

#[test]
fn udp_announce_reuses_connection_id_and_ignores_foreign_transactions() {
    let (url, rx) = fake_udp(|p| {
        if p.len() == 16 {
            return vec![connect_reply(p)];
        }
        // Announce: first a reply for another transaction (ignored), then the real one.
        let mut wrong = vec![0, 0, 0, 1, 9, 9, 9, 9];
        wrong.extend([0u8; 12]);
        let mut r = vec![0, 0, 0, 1];
        r.extend(tid(p));
        r.extend(1800u32.to_be_bytes());
        r.extend(3u32.to_be_bytes());
        r.extend(4u32.to_be_bytes());
        r.extend([127, 0, 0, 1, 0x1a, 0xe1]);
        vec![wrong, r]
    });
    let mut t = UdpTracker::new(&url, 0, Duration::from_secs(2)).unwrap();
    let mut n = 0u32;
    let mut next_tid = || {
        n += 1;
        n
    };
    let r = t.announce(&req(Event::Started), &mut next_tid).unwrap();
    assert_eq!(
        r.peers,
        vec!["127.0.0.1:6881".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(
        (r.incomplete, r.complete, r.interval),
        (Some(3), Some(4), Duration::from_secs(1800))
    );
    let connect = rx.recv().unwrap();
    assert_eq!(&connect[..8], &0x0417_2710_1980u64.to_be_bytes());
    let announce = rx.recv().unwrap();
    assert_eq!(announce.len(), 98);
    assert_eq!(&announce[..8], &0x1122_3344_5566_7788u64.to_be_bytes());
    assert_eq!(&announce[80..84], &2u32.to_be_bytes(), "event started");
    assert_eq!(&announce[96..98], &6881u16.to_be_bytes());
    // Within a minute the connection id is reused: the next packet is an announce.
    t.announce(&req(Event::None), &mut next_tid).unwrap();
    assert_eq!(rx.recv().unwrap().len(), 98);
}

#[test]
fn udp_errors_are_clear_and_bounded() {
    // Error action from the tracker.
    let (url, _rx) = fake_udp(|p| {
        if p.len() == 16 {
            return vec![connect_reply(p)];
        }
        let mut r = vec![0, 0, 0, 3];
        r.extend(tid(p));
        r.extend(b"torrent not registered");
        vec![r]
    });
    let mut t = UdpTracker::new(&url, 0, Duration::from_secs(2)).unwrap();
    let e = t.announce(&req(Event::None), &mut || 7).unwrap_err();
    assert_eq!(e, TrackerError::Failure("torrent not registered".into()));
    // Truncated and misaligned replies.
    for bad in [
        vec![0u8, 0, 0, 1],
        vec![
            0u8, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 2, 3,
        ],
    ] {
        let bad2 = bad.clone();
        let (url, _rx) = fake_udp(move |p| {
            if p.len() == 16 {
                return vec![connect_reply(p)];
            }
            let mut b = bad2.clone();
            if b.len() >= 8 {
                b[4..8].copy_from_slice(&tid(p));
            }
            vec![b]
        });
        let mut t = UdpTracker::new(&url, 0, Duration::from_secs(2)).unwrap();
        let e = t.announce(&req(Event::None), &mut || 7).unwrap_err();
        assert!(matches!(e, TrackerError::Malformed(_)), "{bad:?}: {e}");
    }
    // Only wrong transaction ids: times out after the retries, quickly with a short base.
    let (url, rx) = fake_udp(|p| {
        let mut r = connect_reply(p);
        r[4] ^= 0xff;
        vec![r]
    });
    let mut t = UdpTracker::new(&url, 1, Duration::from_millis(200)).unwrap();
    let e = t.announce(&req(Event::None), &mut || 7).unwrap_err();
    assert!(e.to_string().contains("after 2 tries"), "{e}");
    assert_eq!(rx.try_iter().count(), 2, "one retransmission");
    assert!(UdpTracker::new("udp://nohostport", 0, Duration::from_secs(1)).is_err());
}

/// A fake HTTP tracker for the whole server: answers every announce with `peers` (compact) and
/// a swarm of 7 seeders and 3 leechers, reports each request line.
fn fake_tracker(peers: Vec<SocketAddr>) -> (String, mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/announce", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let _ = tx.send(line);
            let mut body = b"d8:completei7e10:incompletei3e8:intervali1800e5:peers".to_vec();
            let mut compact = Vec::new();
            for p in &peers {
                if let SocketAddr::V4(v4) = p {
                    compact.extend(v4.ip().octets());
                    compact.extend(v4.port().to_be_bytes());
                }
            }
            body.extend(format!("{}:", compact.len()).as_bytes());
            body.extend(compact);
            body.push(b'e');
            let mut w = s;
            let _ = write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = w.write_all(&body);
        }
    });
    (url, rx)
}

/// A seed with one torrent (a small tree) whose only tracker is a fake one naming a listening
/// "leecher" socket; `tweak` adjusts the configuration. Returns the server, the torrent, the
/// leecher's listener, the tracker's request lines and the temp dir (keep it alive).
fn seed_with_fake_tracker(
    tweak: impl FnOnce(&mut uringseed::config::Config),
) -> (
    uringseed::server::ServerHandle,
    uringseed::metainfo::Torrent,
    TcpListener,
    mpsc::Receiver<String>,
    tempfile::TempDir,
) {
    let leecher = TcpListener::bind("127.0.0.1:0").unwrap();
    let (url, requests) = fake_tracker(vec![leecher.local_addr().unwrap()]);
    let dir = tempfile::tempdir().unwrap();
    let tree = write_tree(dir.path(), "tree");
    let opts = uringseed::make::MakeOptions {
        path: tree,
        trackers: vec![vec![url]],
        quiet: true,
        ..Default::default()
    };
    let (_, torrent) = uringseed::make::make(&opts).unwrap();
    let mut config = uringseed::config::Config::default();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.workers = 1;
    config.hashing.resume = false;
    tweak(&mut config);
    let spec = uringseed::server::TorrentSpec {
        torrent: torrent.clone(),
        data_dir: dir.path().to_path_buf(),
        just_hashed: true,
        limits: Default::default(),
        origin: Default::default(),
        force_check: false,
    };
    // The DHT is not under test here (and would bootstrap off the machine).
    config.dht.enabled = false;
    let server = uringseed::server::start(config, vec![spec]).unwrap();
    (server, torrent, leecher, requests, dir)
}

#[test]
fn server_announces_connects_out_to_returned_peers_and_stops() {
    // A leecher that only listens: uringseed must dial it after the tracker names it.
    let (server, torrent, leecher, requests, _dir) =
        seed_with_fake_tracker(|c| c.metrics.per_torrent = true);
    let port = server.local_addrs[0].port();
    let first = requests.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        first.contains("event=started") && first.contains(&format!("port={port}&")),
        "{first}"
    );
    assert!(first.contains("left=0"), "{first}");
    // The reply's swarm counts reach the per-torrent metrics once the reply is processed.
    let series = |role: &str| {
        format!(
            "uringseed_torrent_swarm_peers{{info_hash=\"{}\",name=\"tree\",role=\"{role}\"}}",
            torrent.info_hash.to_hex()
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let body = uringseed::metrics::render(&server.shared, "test");
        if body.contains(&series("seeders")) || std::time::Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        body.contains(&format!("{} 7\n", series("seeders"))),
        "{body}"
    );
    assert!(
        body.contains(&format!("{} 3\n", series("leechers"))),
        "{body}"
    );

    leecher.set_nonblocking(false).unwrap();
    let (mut s, _) = leecher.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs).unwrap();
    let hs = uringseed::wire::Handshake::decode(&theirs)
        .unwrap()
        .unwrap();
    assert_eq!(
        hs.info_hash, torrent.info_hash,
        "uringseed dialled with its handshake first"
    );
    s.write_all(&uringseed::wire::Handshake::ours(torrent.info_hash, [7; 20]).encode())
        .unwrap();
    let mut next = [0u8; 5];
    s.read_exact(&mut next).unwrap();
    assert_ne!(next[4], 19, "no second handshake after ours");

    server.shutdown();
    let stopped = requests.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(stopped.contains("event=stopped"), "{stopped}");
}

#[test]
fn required_encryption_dials_out_with_an_mse_handshake() {
    use uringseed::wire::mse::{self, Policy, Responder};
    let (server, torrent, leecher, requests, _dir) =
        seed_with_fake_tracker(|c| c.server.encryption = uringseed::config::Encryption::Required);
    requests.recv_timeout(Duration::from_secs(10)).unwrap();
    // The seed dials the leecher the tracker named and opens with an MSE key exchange.
    let (mut s, _) = leecher.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ih = torrent.info_hash;
    let mut b = Responder::new(
        [0x42; 20],
        vec![1; 100],
        Policy {
            allow_plaintext: true,
            prefer_rc4: false,
        },
    );
    let find = |h: &[u8; 20]| (*h == mse::req2_hash(&ih)).then_some(ih);
    let mut done = None;
    while done.is_none() {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "the seed closed during the MSE handshake");
        done = b.feed(&chunk[..n], find).unwrap();
        s.write_all(&b.take_output()).unwrap();
    }
    let mut done = done.unwrap();
    // Required means an RC4 payload only, and the seed's BitTorrent handshake is the IA.
    assert_eq!(done.method, mse::CRYPTO_RC4);
    assert_eq!(done.info_hash, ih);
    let hs = uringseed::wire::Handshake::decode(&done.initial[..68])
        .unwrap()
        .unwrap();
    assert_eq!(hs.info_hash, ih);
    // Our handshake back, encrypted; the seed's first message decrypts to a well-formed one
    // (its BEP 10 extension handshake, or have_all/bitfield).
    let mut ours = uringseed::wire::Handshake::ours(ih, [7; 20])
        .encode()
        .to_vec();
    done.tx.as_mut().unwrap().apply(&mut ours);
    s.write_all(&ours).unwrap();
    let mut next = [0u8; 5];
    s.read_exact(&mut next).unwrap();
    done.rx.as_mut().unwrap().apply(&mut next);
    let len = u32::from_be_bytes(next[..4].try_into().unwrap());
    use uringseed::wire::message::{BITFIELD, EXTENDED, HAVE_ALL};
    assert!(
        [EXTENDED, HAVE_ALL, BITFIELD].contains(&next[4]) && (1..1024).contains(&len),
        "first message after the handshake: {next:?}"
    );
    server.shutdown();
}

/// A private tracker's passkey (in the path and the query) never reaches the log or /metrics
/// when announces fail; the redacted URL does, and so does our own peer id in no form.
#[test]
fn failed_announces_log_tracker_urls_without_their_passkeys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root = write_tree(&data, "private");
    let closed = free_port();
    let path_key = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
    let query_key = "fedcba9876543210fedc";
    let http_url = format!("http://127.0.0.1:{closed}/{path_key}/announce?passkey={query_key}");
    let udp_url = format!("udp://127.0.0.1:{closed}/{path_key}/announce");
    let torrent = dir.path().join("p.torrent");
    make_torrent(
        &root,
        &torrent,
        &["--private", "-t", &http_url, "-t", &udp_url],
    );
    let config = dir.path().join("fast.toml");
    std::fs::write(
        &config,
        "[tracker]\ntimeout_secs = 1\nudp_max_retries = 0\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let mut s = serve("serve", &torrent, &data, &["--config", c], &[], dir.path());
    s.ready();
    // Both tiers fail (nothing listens there): wait, bounded, for the two failures.
    let unreachable = "uringseed_tracker_announces_total{result=\"unreachable\"}";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while s.metric(unreachable) < 2.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(s.metric(unreachable) >= 2.0, "{}", s.proc.report());
    let (code, metrics) = http_get(&s.metrics, "/metrics", Duration::from_secs(5)).unwrap();
    assert_eq!(code, 200);
    let status = s.proc.terminate(Duration::from_secs(10));
    assert_eq!(
        status.and_then(|st| st.code()),
        Some(0),
        "{}",
        s.proc.report()
    );
    let log = s.proc.stderr_text();
    for secret in [path_key, query_key] {
        assert!(!log.contains(secret), "passkey {secret} in the log:\n{log}");
        assert!(!metrics.contains(secret), "passkey {secret} in /metrics");
    }
    assert!(!log.contains("peer_id="), "{log}");
    for shown in [
        format!("http://127.0.0.1:{closed}/<redacted>/announce?passkey=<redacted>"),
        format!("udp://127.0.0.1:{closed}/<redacted>/announce"),
    ] {
        assert!(log.contains(&shown), "{shown} not in the log:\n{log}");
    }
    assert!(log.contains("announce failed"), "{log}");
}

/// A CA and a certificate for 127.0.0.1 signed by it (openssl CLI), in `dir`: (ca.pem,
/// server.pem, server.key).
fn make_ca_and_server_cert(dir: &std::path::Path) -> (String, String, String) {
    let p = |n: &str| dir.join(n).display().to_string();
    let (ca_key, ca, key, csr, cert, ext) = (
        p("ca.key"),
        p("ca.pem"),
        p("server.key"),
        p("server.csr"),
        p("server.pem"),
        p("server.ext"),
    );
    let openssl = |args: &[&str]| {
        run(std::process::Command::new("openssl")
            .args(args)
            .stdin(std::process::Stdio::null()));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-days",
        "2",
        "-subj",
        "/CN=uringseed test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &cert,
        "-days",
        "2",
        "-extfile",
        &ext,
    ]);
    (ca, cert, key)
}

/// An HTTPS tracker whose certificate comes from the operator's own CA: trusted once the
/// system store holds that CA (SSL_CERT_FILE here, so no root install is needed), refused with
/// a certificate error (counted unreachable) when it does not.
#[test]
fn https_trackers_are_checked_against_the_system_trust_store() {
    if !have("openssl") || !have("/usr/bin/python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_ca_and_server_cert(dir.path());
    let mut tracker = Proc::spawn(
        "https-tracker",
        std::process::Command::new("/usr/bin/python3")
            .arg(tools_dir().join("https_tracker.py"))
            .args([&cert, &key]),
        dir.path(),
    );
    let port = tracker.wait_line("listening ", Duration::from_secs(20));
    let url = format!("https://127.0.0.1:{}/announce", port.trim());
    let data = dir.path().join("data");
    let root = write_tree(&data, "tls");
    let torrent = dir.path().join("tls.torrent");
    let ih = make_torrent(&root, &torrent, &["-t", &url]);
    let count = |s: &Serve, result: &str| {
        s.metric(&format!(
            "uringseed_tracker_announces_total{{result=\"{result}\"}}"
        ))
    };
    let wait_for = |s: &Serve, result: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while count(s, result) < 1.0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            count(s, result) >= 1.0,
            "no {result} announce\n{}",
            s.proc.report()
        );
    };
    // The CA is not in the system store: a certificate error, nothing reaches the tracker.
    let untrusting = ["env", "-u", "SSL_CERT_FILE", "-u", "SSL_CERT_DIR"];
    let mut s = serve("untrusting", &torrent, &data, &[], &untrusting, dir.path());
    s.ready();
    wait_for(&s, "unreachable");
    assert_eq!(count(&s, "ok"), 0.0);
    let log = s.proc.stderr_text();
    assert!(
        log.contains("announce failed") && log.contains("certificate"),
        "no certificate error in the log:\n{log}"
    );
    eprintln!(
        "untrusted: {}",
        log.lines()
            .find(|l| l.contains("announce failed"))
            .unwrap_or("")
    );
    s.stop();
    assert!(
        !tracker.stdout_text().contains("request GET /announce"),
        "{}",
        tracker.report()
    );
    // SSL_CERT_FILE names the CA: the announce goes through.
    let env = format!("SSL_CERT_FILE={ca}");
    let mut s = serve("trusting", &torrent, &data, &[], &["env", &env], dir.path());
    s.ready();
    wait_for(&s, "ok");
    tracker.wait_line("request GET /announce?", Duration::from_secs(10));
    assert!(
        tracker.stdout_text().contains(&format!(
            "info_hash={}&",
            http::percent_encode(&hex_hash(&ih).0)
        )),
        "the tracker did not see this torrent's announce:\n{}",
        tracker.stdout_text()
    );
    s.stop();
}
