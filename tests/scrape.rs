//! Scrapes (BEP 48 over HTTP, BEP 15 over UDP) on loopback: the clients against fake trackers
//! (batches, request order, foreign transactions, errors, size bounds); the server scraping
//! fake trackers that answer well (counts in the per-torrent metrics, one request for both
//! torrents, no scrape where the announce URL has no `announce` component) and badly (logged
//! with the redacted URL, counted, ignored; serving and announcing go on); and the server
//! against the real npm bittorrent-tracker over HTTP and UDP, whose counts change as peers
//! join.
//!
//! Every process a test starts is stopped by PID when it ends; every wait is bounded.

mod common;

use common::raw::RawPeer;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::Command;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use uringseed::metainfo::InfoHash;
use uringseed::tracker::scrape::ScrapeCounts;
use uringseed::tracker::udp::UdpTracker;
use uringseed::tracker::{http, scrape_once, TrackerError};

/// The announce reply of every fake tracker here: 7 seeders, 3 leechers, no peers, 30 min.
const ANNOUNCE_REPLY: &[u8] = b"d8:completei7e10:incompletei3e8:intervali1800e5:peers0:e";

type Handler = dyn Fn(&str) -> (&'static str, Vec<u8>) + Send + Sync;

/// A fake HTTP tracker on loopback: `handler(request line)` gives each reply's status and
/// body; every request line is sent over the channel. Returns `http://127.0.0.1:PORT`.
fn fake_http(handler: Arc<Handler>) -> (String, mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (tx, handler) = (tx.clone(), handler.clone());
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    return;
                }
                let mut header = String::new();
                while r.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let (status, body) = handler(line.trim_end());
                let _ = tx.send(line.trim_end().to_string());
                let mut w = s;
                let _ = write!(
                    w,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = w.write_all(&body);
            });
        }
    });
    (base, rx)
}

/// Announces get [`ANNOUNCE_REPLY`], scrapes `scrape(request line)`.
fn tracker_handler(scrape: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> Arc<Handler> {
    Arc::new(move |line: &str| {
        if line.contains("/scrape") {
            ("200 OK", scrape(line))
        } else {
            ("200 OK", ANNOUNCE_REPLY.to_vec())
        }
    })
}

/// The info-hashes of a request line's `info_hash` parameters, in order.
fn info_hashes(line: &str) -> Vec<InfoHash> {
    let query = line.split_whitespace().nth(1).unwrap_or("");
    let query = query.split_once('?').map_or("", |q| q.1);
    query
        .split('&')
        .filter_map(|p| p.strip_prefix("info_hash="))
        .map(|v| {
            let mut out = Vec::new();
            let b = v.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            InfoHash(out.try_into().unwrap())
        })
        .collect()
}

/// A bencoded scrape reply with these (info-hash, seeders, leechers, downloads) entries.
fn scrape_reply(entries: &[(InfoHash, u32, u32, u32)], extra: &str) -> Vec<u8> {
    let mut v = b"d5:filesd".to_vec();
    for (ih, s, l, d) in entries {
        v.extend(b"20:");
        v.extend(ih.0);
        v.extend(
            format!("d8:completei{s}e10:downloadedi{d}e10:incompletei{l}e4:name1:xe").as_bytes(),
        );
    }
    v.push(b'e');
    v.extend(extra.as_bytes());
    v.push(b'e');
    v
}

/// A fake UDP tracker: connect and announce (7 seeders, 3 leechers) answered, scrapes with
/// `scrape(packet)` (each returned packet sent in turn); every packet received is sent over
/// the channel. Returns `udp://127.0.0.1:PORT`.
fn fake_udp(
    scrape: impl Fn(&[u8]) -> Vec<Vec<u8>> + Send + 'static,
) -> (String, mpsc::Receiver<Vec<u8>>) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("udp://{}", s.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let p = buf[..n].to_vec();
            let _ = tx.send(p.clone());
            if p.len() < 16 {
                continue;
            }
            let head = |action: u32| {
                let mut r = action.to_be_bytes().to_vec();
                r.extend(&p[12..16]);
                r
            };
            let replies = match u32::from_be_bytes(p[8..12].try_into().unwrap()) {
                0 => vec![[head(0), 0x1122_3344_5566_7788u64.to_be_bytes().to_vec()].concat()],
                1 => vec![[head(1), [1800u32, 3, 7].map(u32::to_be_bytes).concat()].concat()],
                2 => scrape(&p),
                _ => vec![],
            };
            for r in replies {
                let _ = s.send_to(&r, from);
            }
        }
    });
    (url, rx)
}

fn ih(n: u8) -> InfoHash {
    InfoHash([n; 20])
}

#[test]
fn clients_scrape_in_batches_and_read_replies_within_bounds() {
    let t0 = Instant::now();
    // HTTP: one request for both torrents, at the scrape URL (the passkey kept).
    let (base, lines) = fake_http(tracker_handler(|_| {
        scrape_reply(
            &[(ih(1), 5, 3, 50), (ih(2), 0, 1, 7)],
            "5:flagsd20:min_request_intervali600ee",
        )
    }));
    let url = format!("{base}/announce?passkey=abc");
    let r = scrape_once(&url, &[ih(1), ih(2)], Duration::from_secs(5), 0).unwrap();
    let line = lines.recv().unwrap();
    assert!(
        line.starts_with("GET /scrape?passkey=abc&info_hash="),
        "{line}"
    );
    assert_eq!(info_hashes(&line), [ih(1), ih(2)]);
    let c = |s, l, d| ScrapeCounts {
        seeders: Some(s),
        leechers: Some(l),
        completed: Some(d),
    };
    assert_eq!(r.files, [(ih(1), c(5, 3, 50)), (ih(2), c(0, 1, 7))]);
    assert_eq!(r.min_request_interval, Some(Duration::from_secs(600)));
    // Replies over 256 KiB are refused unread; HTTP errors are transport failures.
    let (base, _) = fake_http(tracker_handler(|_| {
        let mut b = b"d5:filesd".to_vec();
        b.resize(http::MAX_REPLY_BYTES as usize + 1000, b'x');
        b
    }));
    let e = http::scrape(&format!("{base}/scrape"), &[ih(1)], Duration::from_secs(5));
    assert!(
        matches!(&e, Err(TrackerError::Malformed(m)) if m.contains("longer than")),
        "{e:?}"
    );
    let (base, _) = fake_http(Arc::new(|_: &str| ("404 Not Found", b"no".to_vec())));
    let e = scrape_once(
        &format!("{base}/announce"),
        &[ih(1)],
        Duration::from_secs(5),
        0,
    );
    assert_eq!(e, Err(TrackerError::Transport("HTTP status 404".into())));
    // No `announce` component: no HTTP scrape at all.
    let e = scrape_once(
        &format!("{base}/tracker"),
        &[ih(1)],
        Duration::from_secs(5),
        0,
    );
    assert!(
        matches!(&e, Err(TrackerError::Transport(m)) if m.contains("no scrape URL")),
        "{e:?}"
    );

    // UDP: connect, then one scrape packet of 74 hashes at most; another transaction's reply
    // is ignored; the counts come in request order.
    let (url, packets) = fake_udp(|p| {
        let mut wrong = [2u32.to_be_bytes(), [9, 9, 9, 9]].concat();
        wrong.extend([0u8; 12]);
        let mut r = [&2u32.to_be_bytes()[..], &p[12..16]].concat();
        for i in 0..(p.len() as u32 - 16) / 20 {
            r.extend([i, 100 + i, 200 + i].map(u32::to_be_bytes).concat());
        }
        vec![wrong, r]
    });
    let hashes: Vec<InfoHash> = (0..80).map(ih).collect();
    let mut t = UdpTracker::new(&url, 0, Duration::from_secs(2)).unwrap();
    let mut n = 0;
    let r = t
        .scrape(&hashes, &mut || {
            n += 1;
            n
        })
        .unwrap();
    assert_eq!(r.files.len(), 74);
    assert_eq!(r.files[3], (ih(3), c(3, 203, 103)));
    assert_eq!(packets.recv().unwrap().len(), 16, "connect first");
    let p = packets.recv().unwrap();
    assert_eq!(p.len(), 16 + 74 * 20);
    assert_eq!(&p[..8], &0x1122_3344_5566_7788u64.to_be_bytes());
    assert_eq!(&p[16..36], &ih(0).0);
    // The tracker's error, a short reply (fewer entries: the rest unknown) and a partial one.
    for (reply, want) in [
        (
            &b"\x00\x00\x00\x03TIDnot scraping"[..],
            "tracker refused: not scraping",
        ),
        (&b"\x00\x00\x00\x02TID"[..], ""),
        (
            &b"\x00\x00\x00\x02TID\x00\x00\x00\x01\x00"[..],
            "not a multiple of 12",
        ),
    ] {
        let (url, _) = fake_udp(move |p| vec![[&reply[..4], &p[12..16], &reply[7..]].concat()]);
        let mut t = UdpTracker::new(&url, 0, Duration::from_secs(2)).unwrap();
        match t.scrape(&hashes[..2], &mut || 7) {
            Ok(r) => assert!(want.is_empty() && r.files.is_empty(), "{r:?}"),
            Err(e) => assert!(!want.is_empty() && e.to_string().contains(want), "{e}"),
        }
    }
    eprintln!("scrape clients checked in {:?}", t0.elapsed());
}

/// A seed (in process) with torrents `alpha` and `beta`, tiers `trackers`, per-torrent metrics.
fn seed_two(
    trackers: Vec<Vec<String>>,
) -> (
    uringseed::server::ServerHandle,
    [InfoHash; 2],
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut specs = Vec::new();
    for name in ["alpha", "beta"] {
        let opts = uringseed::make::MakeOptions {
            path: write_tree(dir.path(), name),
            trackers: trackers.clone(),
            quiet: true,
            ..Default::default()
        };
        let (_, torrent) = uringseed::make::make(&opts).unwrap();
        specs.push(uringseed::server::TorrentSpec {
            torrent,
            data_dir: dir.path().to_path_buf(),
            just_hashed: true,
            limits: Default::default(),
            origin: Default::default(),
            force_check: false,
        });
    }
    let hashes = [specs[0].torrent.info_hash, specs[1].torrent.info_hash];
    let mut config = uringseed::config::Config::default();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.workers = 1;
    config.hashing.resume = false;
    config.metrics.per_torrent = true;
    config.tracker.connect_out = false;
    // The DHT is not under test here (and would bootstrap off the machine).
    config.dht.enabled = false;
    let server = uringseed::server::start(config, specs).unwrap();
    (server, hashes, dir)
}

#[test]
fn scrapes_batch_the_torrents_of_a_tracker_and_their_counts_reach_the_metrics() {
    let t0 = Instant::now();
    let (scrapeable, requests) = fake_http(tracker_handler(|line| {
        // Alpha 11 seeders, 4 leechers, 99 downloads; beta 12, 5, 100; as asked.
        let entries: Vec<_> = info_hashes(line)
            .into_iter()
            .enumerate()
            .map(|(i, h)| (h, 11 + i as u32, 4 + i as u32, 99 + i as u32))
            .collect();
        scrape_reply(&entries, "")
    }));
    let (plain, plain_requests) = fake_http(tracker_handler(|_| b"never asked".to_vec()));
    let url = format!("{scrapeable}/announce");
    let (server, [a, b], _dir) = seed_two(vec![
        vec![url.clone()],
        vec![format!("{plain}/tracker.php")],
    ]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let scraped = |h: InfoHash| {
        server
            .shared
            .tracker_status()
            .into_iter()
            .any(|(ih, u, st)| ih == h && u == url && st.last_scrape.is_some())
    };
    while !(scraped(a) && scraped(b)) {
        assert!(Instant::now() < deadline, "no scrape within 15 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = uringseed::metrics::render(&server.shared, "test");
    let stats = &server.shared.stats;
    use uringseed::reasons::AnnounceResult;
    let series = |name: &str, h: InfoHash, extra: &str| {
        let torrent = if h == a { "alpha" } else { "beta" };
        sample(
            &body,
            &format!(
                "{name}{{info_hash=\"{}\",name=\"{torrent}\"{extra}}}",
                h.to_hex()
            ),
        )
    };
    let seeders = ",role=\"seeders\"";
    let leechers = ",role=\"leechers\"";
    // The scrape is newer than the announces (7 and 3) and larger: the metrics show it.
    assert_eq!(
        series("uringseed_torrent_swarm_peers", a, seeders),
        11.0,
        "{body}"
    );
    assert_eq!(series("uringseed_torrent_swarm_peers", a, leechers), 4.0);
    assert_eq!(series("uringseed_torrent_swarm_completed", a, ""), 99.0);
    assert_eq!(series("uringseed_torrent_swarm_peers", b, seeders), 12.0);
    assert_eq!(series("uringseed_torrent_swarm_peers", b, leechers), 5.0);
    assert_eq!(series("uringseed_torrent_swarm_completed", b, ""), 100.0);
    assert_eq!(
        sample(&body, "uringseed_tracker_scrapes_total{result=\"ok\"}"),
        1.0
    );
    assert_eq!(stats.scrapes(AnnounceResult::Ok), 1);
    // Per tracker: the scraped one took the scrape's figures, the other kept its announce's.
    for (h, u, st) in server.shared.tracker_status() {
        let want = if u == url {
            let i = u32::from(h == b);
            (Some(11 + i), Some(4 + i), Some(99 + i))
        } else {
            (Some(7), Some(3), None)
        };
        assert_eq!((st.seeders, st.leechers, st.completed), want, "{u}");
    }
    // One scrape request held both torrents; the tracker without `announce` in its URL heard
    // announces only.
    let lines: Vec<String> = requests.try_iter().collect();
    let scrapes: Vec<&String> = lines.iter().filter(|l| l.contains("/scrape")).collect();
    assert_eq!(scrapes.len(), 1, "{lines:#?}");
    let mut asked = info_hashes(scrapes[0]);
    asked.sort();
    let mut both = vec![a, b];
    both.sort();
    assert_eq!(asked, both, "{}", scrapes[0]);
    let plain_lines: Vec<String> = plain_requests.try_iter().collect();
    assert!(
        plain_lines.len() == 2
            && plain_lines
                .iter()
                .all(|l| l.starts_with("GET /tracker.php?info_hash=")),
        "{plain_lines:#?}"
    );
    server.shutdown();
    eprintln!("scraped two torrents in one request in {:?}", t0.elapsed());
}

#[test]
fn bad_scrape_replies_are_logged_and_ignored_while_serving_and_announcing_go_on() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (path_key, query_key) = ("a1b2c3d4e5f60718293a4b5c6d7e8f90", "fedcba9876543210fedc");
    // Three trackers, a tier each: `files` not a dictionary; a reply over 256 KiB; a UDP reply
    // with a partial entry.
    let (bad, bad_requests) = fake_http(tracker_handler(|_| b"d5:filesi3ee".to_vec()));
    let (big, big_requests) = fake_http(tracker_handler(|_| {
        let mut b = b"d5:filesd".to_vec();
        b.resize(300 << 10, b'9');
        b
    }));
    let (udp, _) =
        fake_udp(|p| vec![[&2u32.to_be_bytes()[..], &p[12..16], &[0u8; 13][..]].concat()]);
    let bad_url = format!("{bad}/{path_key}/announce?passkey={query_key}");
    let udp_url = format!("{udp}/{path_key}/announce");
    let data = dir.path().join("data");
    let root = write_tree(&data, "tree");
    let torrent = dir.path().join("tree.torrent");
    let info_hash = make_torrent(
        &root,
        &torrent,
        &[
            "-t",
            &bad_url,
            "-t",
            &format!("{big}/announce"),
            "-t",
            &udp_url,
        ],
    );
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[metrics]\nper_torrent = true\n[tracker]\nconnect_out = false\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let mut s = serve("serve", &torrent, &data, &["--config", c], &[], dir.path());
    s.ready();
    let malformed = "uringseed_tracker_scrapes_total{result=\"malformed\"}";
    let deadline = Instant::now() + Duration::from_secs(12);
    while s.metric(malformed) < 3.0 {
        assert!(
            Instant::now() < deadline,
            "not 3 malformed scrapes\n{}",
            s.proc.report()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Announcing and serving are unaffected: every announce worked, the swarm shows the
    // announces' counts (no scrape figure was taken), and a peer gets blocks.
    let ok = |what: &str| s.metric(&format!("uringseed_tracker_{what}_total{{result=\"ok\"}}"));
    assert_eq!((ok("announces"), ok("scrapes")), (3.0, 0.0));
    let swarm = |role: &str| {
        s.metric(&format!(
            "uringseed_torrent_swarm_peers{{info_hash=\"{info_hash}\",name=\"tree\",role=\"{role}\"}}"
        ))
    };
    assert_eq!((swarm("seeders"), swarm("leechers")), (7.0, 3.0));
    let (_, metrics) = http_get(&s.metrics, "/metrics", Duration::from_secs(5)).unwrap();
    assert!(
        !metrics.contains("uringseed_torrent_swarm_completed{"),
        "{metrics}"
    );
    let (mut p, _) = RawPeer::handshake(s.addr, hex_hash(&info_hash), true);
    p.expect(uringseed::wire::message::HAVE_ALL);
    p.send(&[uringseed::wire::message::Message::Interested]);
    p.expect(uringseed::wire::message::UNCHOKE);
    let block = uringseed::wire::message::Block {
        index: 0,
        begin: 0,
        length: 16384,
    };
    p.send(&[uringseed::wire::message::Message::Request(block)]);
    assert_eq!(p.expect(uringseed::wire::message::PIECE).len(), 8 + 16384);
    let log = s.proc.stderr_text();
    s.stop();
    for shown in [
        format!("{bad}/<redacted>/announce?passkey=<redacted>"),
        format!("{big}/announce"),
        format!("{udp}/<redacted>/announce"),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("scrape failed: bad tracker reply")
                    && l.contains("retrying in 15 s")
                    && l.contains(&format!("tracker={shown}"))),
            "no scrape failure logged for {shown}:\n{log}"
        );
    }
    for secret in [path_key, query_key] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    // `stopped` still reached the HTTP trackers at shutdown.
    for (name, rx) in [("bad", bad_requests), ("big", big_requests)] {
        let lines: Vec<String> = rx.try_iter().collect();
        assert!(
            lines.iter().any(|l| l.contains("event=stopped")),
            "{name}: {lines:#?}"
        );
    }
    eprintln!("bad scrape replies checked in {:?}", t0.elapsed());
}

/// The uringseed log lines saying a tracker was scraped for `torrents` torrents.
fn scraped_lines(log: &str, tracker: &str, torrents: usize) -> usize {
    log.lines()
        .filter(|l| {
            l.contains("scraped; next in")
                && l.contains(&format!("tracker={tracker} "))
                && l.contains(&format!("torrents={torrents}"))
        })
        .count()
}

#[test]
fn real_tracker_scrapes_over_http_and_udp_show_swarm_counts_as_peers_join() {
    if !have_node_tools() || !have("/usr/bin/python3") {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let tracker = Tracker::start(dir.path());
    let (http_url, udp_url) = (tracker.announce_url(), tracker.udp_url());
    let data = dir.path().join("data");
    let mut config = String::from(
        "[tracker]\nscrape_interval_secs = 10\nconnect_out = false\n[metrics]\nper_torrent = true\n",
    );
    let mut hashes = Vec::new();
    for name in ["alpha", "beta"] {
        let root = write_tree(&data, name);
        let torrent = dir.path().join(format!("{name}.torrent"));
        hashes.push(make_torrent(
            &root,
            &torrent,
            &["-t", &http_url, "-t", &udp_url],
        ));
        config.push_str(&format!(
            "[[torrent]]\ntorrent = \"{}\"\ndata = \"{}\"\n",
            torrent.display(),
            data.display()
        ));
    }
    let cfg = dir.path().join("seed.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut s = serve_args(
        "seed",
        &["--config", cfg.to_str().unwrap()],
        &[],
        dir.path(),
    );
    s.ready();
    s.ready();
    let counts = |s: &Serve, ih: &str, name: &str| -> (f64, f64, f64) {
        let (_, body) = http_get(&s.metrics, "/metrics", Duration::from_secs(5)).unwrap();
        let get = |metric: &str, extra: &str| {
            let series = format!("{metric}{{info_hash=\"{ih}\",name=\"{name}\"{extra}}} ");
            body.lines()
                .find_map(|l| l.strip_prefix(&series))
                .map_or(-1.0, |v| v.trim().parse().unwrap())
        };
        (
            get("uringseed_torrent_swarm_peers", ",role=\"seeders\""),
            get("uringseed_torrent_swarm_peers", ",role=\"leechers\""),
            get("uringseed_torrent_swarm_completed", ""),
        )
    };
    // Until both torrents show `want` and each tracker was scraped for both `scrapes` times.
    let wait_for = |s: &Serve, want: [(f64, f64, f64); 2], scrapes: usize, what: &str| {
        let within = Duration::from_secs(20);
        let deadline = Instant::now() + within;
        loop {
            let got = [
                counts(s, &hashes[0], "alpha"),
                counts(s, &hashes[1], "beta"),
            ];
            let log = s.proc.stderr_text();
            let both = [&http_url, &udp_url]
                .iter()
                .all(|u| scraped_lines(&log, &uringseed::tracker::redact(u), 2) >= scrapes);
            if got == want && both {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "{what}: (seeders, leechers, completed) of alpha and beta {got:?}, want \
                 {want:?}; both trackers scraped {scrapes} times for both torrents: {both}\n{}{}",
                s.proc.report(),
                tracker.proc.report()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // The seed alone: one seeder, which bittorrent-tracker also counts as a download (its
    // `downloaded` is the number of seeds it knows, a lower bound).
    let first = wait_for(&s, [(1.0, 0.0, 1.0), (1.0, 0.0, 1.0)], 1, "first scrape");
    let t_first = first.duration_since(t0);
    // Another seed and a leecher join alpha: the next scrape (the tracker's 10 s
    // min_request_interval) counts them; beta stays as it was.
    for left in ["0", "123456"] {
        run(Command::new("/usr/bin/python3")
            .arg(tools_dir().join("announce.py"))
            .arg(&http_url)
            .arg(&hashes[0])
            .arg(free_port().to_string())
            .args(["--left", left]));
    }
    let second = wait_for(
        &s,
        [(2.0, 1.0, 2.0), (1.0, 0.0, 1.0)],
        2,
        "after a seed and a leecher joined alpha",
    );
    let result = |r: &str| {
        s.metric(&format!(
            "uringseed_tracker_scrapes_total{{result=\"{r}\"}}"
        ))
    };
    assert!(result("ok") >= 4.0, "{}", s.proc.report());
    for r in ["failure", "unreachable", "malformed"] {
        assert_eq!(result(r), 0.0, "{r}\n{}", s.proc.report());
    }
    s.stop();
    eprintln!(
        "real tracker: first counts {t_first:?} after start, the joined peers {:?} later",
        second.duration_since(first)
    );
}
