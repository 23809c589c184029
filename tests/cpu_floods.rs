//! Floods that cost the server CPU without breaking a rule (issue 21, item 1), against the real
//! binary: each is run at the same connection (or packet) rate as a churn of cheap refusals from
//! the same load generator, back to back, so the attacker's own share of the machine is the same
//! in both; what differs is what the server spends. An honest leecher downloads beside each, and
//! honest handshakes are timed.

mod common;

use common::flood::{connect_from, download, median};
use common::raw::RawPeer;
use common::*;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use uringseed::metainfo::InfoHash;
use uringseed::wire::handshake::Handshake;

const LEN: usize = 32 << 20;
const PIECE_LEN: u32 = 1 << 18;
/// Units (connections, datagrams, requests) per second of every flood (the issue measured
/// 1,500 connections/s).
const RATE: usize = 1000;
/// Source addresses (and threads) of a flood: 127.0.2.1 ..
const SOURCES: usize = 16;

/// What one connection (or datagram, or request) of a flood does, from its source's index and
/// a sequence number.
type Unit = Box<dyn FnMut(u64) + Send>;

struct Flood {
    stop: Arc<AtomicBool>,
    units: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl Flood {
    /// `RATE` units per second in all, paced, from `SOURCES` threads; `make(i)` makes thread
    /// i's unit.
    fn start(make: &dyn Fn(usize) -> Unit) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let units = Arc::new(AtomicUsize::new(0));
        let threads = (0..SOURCES)
            .map(|i| {
                let (stop, units) = (stop.clone(), units.clone());
                let mut unit = make(i);
                std::thread::spawn(move || {
                    let every = Duration::from_secs_f64(SOURCES as f64 / RATE as f64);
                    let mut next = Instant::now();
                    let mut n = i as u64 * 1_000_000;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        unit(n);
                        units.fetch_add(1, Ordering::Relaxed);
                        next += every;
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        } else if now - next > Duration::from_secs(1) {
                            next = now;
                        }
                    }
                })
            })
            .collect();
        Flood {
            stop,
            units,
            threads,
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// The source address of flood thread `i`.
fn source(i: usize) -> String {
    format!("127.0.2.{}", i + 1)
}

/// A TCP unit: connect from thread `i`'s address, send `payload(n)`, read until closed, 96
/// bytes or a second, close.
fn tcp_unit(i: usize, to: SocketAddr, payload: fn(u64) -> Vec<u8>) -> Unit {
    let from = source(i);
    Box::new(move |n| {
        if let Ok(mut c) = connect_from(&from, to) {
            c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            if c.write_all(&payload(n)).is_ok() {
                let (mut got, mut buf) = (0, [0u8; 700]);
                while got < 96 {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => got += k,
                    }
                }
            }
        }
    })
}

/// What one flood measured.
#[derive(Debug)]
struct Phase {
    label: &'static str,
    /// The leecher's MB/s per download.
    mbps: Vec<f64>,
    /// Server CPU microseconds per unit, and units per second.
    cpu_us_per_unit: f64,
    units_per_sec: f64,
    /// Plain handshakes from 127.0.0.1: the time to the server's handshake.
    handshakes: Vec<Duration>,
    /// The honest request the flood is aimed at (an encrypted handshake, a DHT query, ...).
    probe: Result<Duration, String>,
}

type Probe<'a> = &'a dyn Fn() -> Result<(), String>;

fn phase(s: &Serve, ih: InfoHash, label: &'static str, flood: Flood, probe: Probe) -> Phase {
    // The flood alone for 2 s (what the server spends on it: /proc counts CPU in 10 ms ticks),
    // then the leecher beside it.
    std::thread::sleep(Duration::from_millis(500));
    let (cpu0, n0, t0) = (
        cpu_secs(s.pid()),
        flood.units.load(Ordering::Relaxed),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_millis(2000));
    let (cpu1, n1, secs) = (
        cpu_secs(s.pid()),
        flood.units.load(Ordering::Relaxed),
        t0.elapsed().as_secs_f64(),
    );
    let mbps: Vec<f64> = (0..4)
        .map(|_| download(s.addr, ih, LEN, PIECE_LEN))
        .collect();
    let handshakes: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let _ = RawPeer::handshake(s.addr, ih, true);
            t.elapsed()
        })
        .collect();
    let t = Instant::now();
    let probe = probe().map(|_| t.elapsed());
    flood.stop();
    Phase {
        label,
        mbps,
        cpu_us_per_unit: (cpu1 - cpu0) * 1e6 / (n1 - n0).max(1) as f64,
        units_per_sec: (n1 - n0) as f64 / secs,
        handshakes,
        probe,
    }
}

/// The attack and the cheap churn, twice each, alternating; what they cost and what the
/// leecher and the probes got.
struct Compared {
    phases: Vec<Phase>,
    /// Server CPU per attack unit over that per cheap unit.
    cpu_ratio: f64,
    /// The leecher's median MB/s beside the attack over that beside the churn.
    leecher_ratio: f64,
}

fn compare_once(
    s: &Serve,
    ih: InfoHash,
    cheap: (&'static str, &dyn Fn(usize) -> Unit),
    attack: (&'static str, &dyn Fn(usize) -> Unit),
    probe: Probe,
) -> Compared {
    download(s.addr, ih, LEN, PIECE_LEN);
    let phases: Vec<Phase> = [cheap, attack, cheap, attack]
        .into_iter()
        .map(|(label, make)| phase(s, ih, label, Flood::start(make), probe))
        .collect();
    for p in &phases {
        eprintln!(
            "{}: {:.0}/s, {:.1} us server CPU each; leecher {:.0?} MB/s; plain handshakes \
             {:?}; probe {:?}",
            p.label, p.units_per_sec, p.cpu_us_per_unit, p.mbps, p.handshakes, p.probe
        );
    }
    let of = |label: &str| -> (Vec<f64>, f64) {
        let ps: Vec<&Phase> = phases.iter().filter(|p| p.label == label).collect();
        (
            ps.iter().flat_map(|p| p.mbps.iter().copied()).collect(),
            ps.iter().map(|p| p.cpu_us_per_unit).sum::<f64>() / ps.len() as f64,
        )
    };
    let (cheap_mbps, cheap_cpu) = of(cheap.0);
    let (attack_mbps, attack_cpu) = of(attack.0);
    let c = Compared {
        cpu_ratio: attack_cpu / cheap_cpu,
        leecher_ratio: median(&attack_mbps) / median(&cheap_mbps),
        phases,
    };
    eprintln!(
        "{} against {}: {:.2}x the server CPU per unit, leecher {:.2}x",
        attack.0, cheap.0, c.cpu_ratio, c.leecher_ratio
    );
    c
}

/// [`compare_once`], and once more if the leecher kept less than 80%: on two cores the
/// scheduler alone swings one comparison by about 15% (seen: 0.84 to 1.10 with no attack
/// that costs anything), while a flood that really takes the leecher's share fails both.
fn compare(
    s: &Serve,
    ih: InfoHash,
    cheap: (&'static str, &dyn Fn(usize) -> Unit),
    attack: (&'static str, &dyn Fn(usize) -> Unit),
    probe: Probe,
) -> Compared {
    let c = compare_once(s, ih, cheap, attack, probe);
    if c.leecher_ratio >= 0.8 {
        return c;
    }
    eprintln!("the leecher kept {:.2}: once more", c.leecher_ratio);
    compare_once(s, ih, cheap, attack, probe)
}

impl Compared {
    /// The leecher kept at least 80%, plain handshakes stayed prompt and every probe was
    /// answered within `probe_limit`.
    fn check(&self, probe_limit: Duration) {
        assert!(
            self.leecher_ratio >= 0.8,
            "the leecher kept {:.2}",
            self.leecher_ratio
        );
        for p in &self.phases {
            let slowest = p.handshakes.iter().max().unwrap();
            assert!(
                *slowest < Duration::from_millis(500),
                "{}: a plain handshake took {slowest:?}",
                p.label
            );
            let t = p
                .probe
                .as_ref()
                .unwrap_or_else(|e| panic!("{}: {e}", p.label));
            assert!(*t < probe_limit, "{}: probe took {t:?}", p.label);
        }
    }
}

/// A server seeding LEN bytes with `config` (TOML, its [server] with upload_slots 0 added),
/// and `extra` arguments.
fn seed(dir: &std::path::Path, config: &str, extra: &[&str]) -> (Serve, InfoHash) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("f.bin");
    std::fs::write(&file, pseudo_random(LEN, 5)).unwrap();
    let torrent = dir.join("t.torrent");
    let piece = PIECE_LEN.to_string();
    let ih = hex_hash(&make_torrent(&file, &torrent, &["--piece-length", &piece]));
    let path = dir.join("c.toml");
    std::fs::write(&path, config).unwrap();
    let mut args = vec!["--upload-slots", "0", "--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut s = serve("serve", &torrent, &data, &args, &[], dir);
    s.ready();
    (s, ih)
}

/// The measurements share the machine: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn unknown_torrent(n: u64) -> Vec<u8> {
    let mut ih = [0u8; 20];
    ih[..8].copy_from_slice(&n.to_be_bytes());
    ih[19] = 0xee;
    Handshake::ours(InfoHash(ih), [7; 20]).encode().to_vec()
}

fn mse_key(n: u64) -> Vec<u8> {
    pseudo_random(96, n)
}

#[test]
fn an_encrypted_handshake_flood_costs_about_what_cheap_refusals_do() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    // Budgets apply to loopback here (as to any address); the per-address connection cap is
    // out of the way, so the encryption budget is what is measured.
    let (s, ih) = seed(
        dir.path(),
        "[server]\nlimit_loopback = true\nmax_connections_per_ip = 10000\n",
        &[],
    );
    // 127.0.0.1 completes an encrypted handshake before the floods: a returning peer, whose
    // next one the probe times.
    let mse = || RawPeer::mse_handshake(s.addr, ih, uringseed::wire::mse::CRYPTO_RC4).map(|_| ());
    mse().unwrap();
    let to = s.addr;
    let c = compare(
        &s,
        ih,
        ("unknown torrent", &|i| tcp_unit(i, to, unknown_torrent)),
        ("encrypted handshake", &|i| tcp_unit(i, to, mse_key)),
        &mse,
    );
    let refused = s.metric("uringseed_peers_dropped_total{reason=\"mse_budget\"}");
    eprintln!("{refused} refused for the budget");
    assert!(refused > 0.0, "the budget refused nothing");
    assert!(
        c.cpu_ratio < 1.6,
        "an encrypted attempt costs {:.2}x a cheap refusal",
        c.cpu_ratio
    );
    c.check(Duration::from_millis(500));
    s.stop();
}

/// A DHT `get_peers` for a random torrent from a random node id.
fn get_peers(n: u64) -> Vec<u8> {
    let id = pseudo_random(20, n);
    let ih = pseudo_random(20, !n);
    [
        &b"d1:ad2:id20:"[..],
        &id,
        b"9:info_hash20:",
        &ih,
        b"e1:q9:get_peers1:t2:",
        &n.to_be_bytes()[6..],
        b"1:y1:qe",
    ]
    .concat()
}

fn garbage(n: u64) -> Vec<u8> {
    pseudo_random(16, n)
}

/// A UDP unit that rotates over 16 addresses of its own (127.0.3+i.1 ..): 256 in all, so
/// per-address limits do not stand in for what is measured.
fn udp_unit(i: usize, to: SocketAddr, payload: fn(u64) -> Vec<u8>) -> Unit {
    let socks: Vec<std::net::UdpSocket> = (1..=16)
        .map(|k| std::net::UdpSocket::bind(format!("127.0.{}.{k}:0", 3 + i)).unwrap())
        .collect();
    Box::new(move |n| {
        let _ = socks[n as usize % socks.len()].send_to(&payload(n), to);
    })
}

/// One query from 127.0.0.1 to `to`, answered within a second.
fn udp_probe(to: SocketAddr, query: &[u8]) -> Result<(), String> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    sock.send_to(query, to).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    sock.recv_from(&mut buf)
        .map(|_| ())
        .map_err(|e| format!("no answer: {e}"))
}

#[test]
fn a_dht_query_flood_from_many_addresses_leaves_serving_alone() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let udp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (s, ih) = seed(
        dir.path(),
        &format!("[dht]\nenabled = true\nlisten = \"{udp}\"\nbootstrap = []\n"),
        &[],
    );
    let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:xy1:y1:qe";
    let c = compare(
        &s,
        ih,
        ("garbage datagram", &|i| udp_unit(i, udp, garbage)),
        ("get_peers", &|i| udp_unit(i, udp, get_peers)),
        &|| udp_probe(udp, ping),
    );
    let answered =
        s.metric("uringseed_dht_query_results_total{family=\"ipv4\",result=\"answered\"}");
    eprintln!("get_peers answered: {answered}");
    assert!(answered > 1000.0, "the flood was not answered: {answered}");
    c.check(Duration::from_secs(1));
    s.stop();
}

/// A BEP 15 connect request.
fn udp_connect(n: u64) -> Vec<u8> {
    [
        &0x41727101980u64.to_be_bytes()[..],
        &0u32.to_be_bytes(),
        &(n as u32).to_be_bytes(),
    ]
    .concat()
}

#[test]
fn a_udp_tracker_flood_from_many_addresses_leaves_serving_alone() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let tracker: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let tl = tracker.to_string();
    let (s, ih) = seed(dir.path(), "", &["--tracker-listen", &tl]);
    let c = compare(
        &s,
        ih,
        ("garbage datagram", &|i| udp_unit(i, tracker, garbage)),
        ("connect request", &|i| udp_unit(i, tracker, udp_connect)),
        &|| udp_probe(tracker, &udp_connect(7)),
    );
    let connects = s.metric("uringseed_tracker_server_udp_connects_total");
    eprintln!("connects answered: {connects}");
    assert!(connects > 1000.0, "the flood was not answered: {connects}");
    c.check(Duration::from_secs(1));
    s.stop();
}

fn http_healthz(_: u64) -> Vec<u8> {
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec()
}

/// What anyone who can reach the endpoint may send without the token: the page, the API (401),
/// a qBittorrent login with a wrong password, a page with a wrong token.
fn http_unauthenticated(n: u64) -> Vec<u8> {
    match n % 4 {
        0 => b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        1 => b"GET /api/v1/torrents HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        2 => b"POST /api/v2/auth/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
               Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 31\r\n\r\n\
               username=admin&password=wrong00"
            .to_vec(),
        _ => b"GET /?token=wrong HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    }
}

#[test]
fn unauthenticated_http_requests_cost_about_what_health_checks_do_and_log_little() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (s, ih) = seed(dir.path(), "", &[]);
    let http: SocketAddr = s.metrics.parse().unwrap();
    let c = compare(
        &s,
        ih,
        ("/healthz", &|i| tcp_unit(i, http, http_healthz)),
        ("unauthenticated", &|i| {
            tcp_unit(i, http, http_unauthenticated)
        }),
        &|| http_get(&s.metrics, "/healthz", Duration::from_secs(1)).map(|_| ()),
    );
    assert!(
        c.cpu_ratio < 3.0,
        "an unauthenticated request costs {:.2}x a health check",
        c.cpu_ratio
    );
    c.check(Duration::from_millis(500));
    let log = s.proc.stderr_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("login refused") || l.contains("wrong token"))
        .count();
    assert!(lines <= 4, "{lines} log lines for refused requests");
    s.stop();
}

/// A connection from `from` past the BitTorrent and extension handshakes, ready to ask for
/// metadata (our ut_metadata id is 3).
fn metadata_peer(from: &str, to: SocketAddr, ih: InfoHash, seed: u64) -> Option<RawPeer> {
    use uringseed::wire::message::Message;
    let mut p = RawPeer::from_stream(connect_from(from, to).ok()?);
    p.s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let ours = Handshake::ours(ih, pseudo_random(20, seed).try_into().unwrap());
    p.s.write_all(&ours.encode()).ok()?;
    let mut theirs = [0u8; 68];
    p.s.read_exact(&mut theirs).ok()?;
    p.send(&[Message::Extended {
        id: 0,
        payload: b"d1:md11:ut_metadatai3eee",
    }]);
    Some(p)
}

/// Asks for metadata piece `piece`; the answer's payload (a data or reject message), None if
/// the connection closed.
fn ask_metadata(p: &mut RawPeer, piece: u32) -> Option<Vec<u8>> {
    use uringseed::wire::message::Message;
    let ask = uringseed::wire::metadata::encode_request(piece);
    p.send(&[Message::Extended {
        id: 1,
        payload: &ask,
    }]);
    loop {
        match p.recv()? {
            // An answer under our ut_metadata id; the server's handshake comes as id 0.
            (20, m) if m.first() == Some(&3) => return Some(m[1..].to_vec()),
            _ => continue,
        }
    }
}

/// A persistent connection from thread `i`'s address that asks for metadata piece `piece`
/// once per unit and reads the answer (data, or a reject for a piece that does not exist).
fn metadata_unit(i: usize, to: SocketAddr, ih: InfoHash, piece: u32) -> Unit {
    let from = source(i);
    let mut peer: Option<RawPeer> = None;
    Box::new(move |_| {
        if peer.is_none() {
            peer = metadata_peer(&from, to, ih, i as u64);
        }
        if let Some(p) = peer.as_mut() {
            if ask_metadata(p, piece).is_none() {
                peer = None;
            }
        }
    })
}

#[test]
fn a_metadata_request_flood_costs_about_what_rejected_requests_do() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (s, ih) = seed(dir.path(), "", &[]);
    let to = s.addr;
    let c = compare(
        &s,
        ih,
        ("rejected request", &|i| metadata_unit(i, to, ih, 1000)),
        ("metadata request", &|i| metadata_unit(i, to, ih, 0)),
        // A newcomer from a magnet link gets the info dictionary.
        &|| {
            let mut p = metadata_peer("127.0.0.1", to, ih, 99).ok_or("no handshake")?;
            let answer = ask_metadata(&mut p, 0).ok_or("closed")?;
            match uringseed::wire::metadata::decode(&answer) {
                Ok(uringseed::wire::metadata::MetadataMessage::Data { .. }) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );
    assert!(
        c.cpu_ratio < 2.0,
        "a metadata answer costs {:.2}x a reject",
        c.cpu_ratio
    );
    c.check(Duration::from_millis(500));
    s.stop();
}

/// The budget's refusal is what clients that encrypt by choice recover from: libtorrent with
/// its default settings dials with an encrypted handshake first, and when that is closed on it
/// tries again in plaintext. Here its address has spent its share (another connection from it
/// keeps spending it), so the encrypted attempt is refused and the plain one must serve it.
#[test]
fn libtorrent_refused_for_the_budget_gets_in_with_a_plain_handshake() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if !have_libtorrent() {
        assert!(
            !tools_required(),
            "libtorrent's Python bindings are required"
        );
        eprintln!("skipped: no libtorrent");
        return;
    }
    const SMALL: usize = 4 << 20;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("f.bin");
    std::fs::write(&file, pseudo_random(SMALL, 6)).unwrap();
    let torrent = dir.path().join("t.torrent");
    make_torrent(&file, &torrent, &[]);
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[server]\nlimit_loopback = true\nmse_handshakes_per_ip_per_sec = 1\n",
    )
    .unwrap();
    let mut s = serve(
        "serve",
        &torrent,
        &data,
        &["--config", config.to_str().unwrap()],
        &[],
        dir.path(),
    );
    s.ready();
    let to = s.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let spender = {
        let (stop, refused) = (stop.clone(), refused.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if let Ok(mut c) = connect_from("127.0.0.3", to) {
                    c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                    let _ = c.write_all(&pseudo_random(96, n));
                    let mut buf = [0u8; 700];
                    if matches!(c.read(&mut buf), Ok(0) | Err(_)) {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let out = dir.path().join("out");
    let got = lt_tool_env(
        &[
            "download",
            torrent.to_str().unwrap(),
            out.to_str().unwrap(),
            &to.to_string(),
            "60",
        ],
        &[("LT_BIND_IP", "127.0.0.3")],
    );
    stop.store(true, Ordering::Relaxed);
    spender.join().unwrap();
    let total = s.metric("uringseed_peers_dropped_total{reason=\"mse_budget\"}") as usize;
    let ours = refused.load(Ordering::Relaxed);
    let plain = s.metric("uringseed_peer_handshakes_total{kind=\"plaintext\"}");
    let encrypted = s.metric("uringseed_peer_handshakes_total{kind=\"mse_rc4\"}")
        + s.metric("uringseed_peer_handshakes_total{kind=\"mse_plaintext\"}");
    let got: Vec<_> = got.iter().filter(|(k, _)| k != "have").collect();
    eprintln!(
        "libtorrent: {got:?}; refused for the budget {total} ({ours} of them the spender's); \
         handshakes plain {plain}, encrypted {encrypted}"
    );
    assert!(
        tree_differences(&data, &out, true).is_empty(),
        "libtorrent's copy differs"
    );
    assert!(
        total > ours,
        "libtorrent's encrypted attempt was not refused"
    );
    assert!(plain >= 1.0);
    s.stop();
}
