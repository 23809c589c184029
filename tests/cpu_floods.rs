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
/// Connections per second of every churn (the issue measured 1,500/s).
const RATE: usize = 1000;
/// Source addresses of the churn (127.0.2.1 ..).
const SOURCES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Churn {
    /// A plain handshake for a torrent the server does not have: refused on reading it.
    UnknownTorrent,
    /// 96 random bytes, as the first message of an encrypted handshake; the flood computes
    /// nothing and closes once answered (or refused).
    MseKey,
}

struct Flood {
    stop: Arc<AtomicBool>,
    conns: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl Flood {
    /// `RATE` connections per second of `churn` to `to`, paced, from `SOURCES` addresses.
    fn start(churn: Churn, to: SocketAddr) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(AtomicUsize::new(0));
        let threads = (0..SOURCES)
            .map(|i| {
                let (stop, conns) = (stop.clone(), conns.clone());
                let from = format!("127.0.2.{}", i + 1);
                std::thread::spawn(move || {
                    let every = Duration::from_secs_f64(SOURCES as f64 / RATE as f64);
                    let mut next = Instant::now();
                    let mut n = i as u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let payload = match churn {
                            Churn::UnknownTorrent => {
                                let mut ih = [0u8; 20];
                                ih[..8].copy_from_slice(&n.to_be_bytes());
                                ih[19] = 0xee;
                                Handshake::ours(InfoHash(ih), [7; 20]).encode().to_vec()
                            }
                            Churn::MseKey => pseudo_random(96, n),
                        };
                        if let Ok(mut c) = connect_from(&from, to) {
                            c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                            if c.write_all(&payload).is_ok() {
                                let mut got = 0;
                                let mut buf = [0u8; 700];
                                while got < 96 {
                                    match c.read(&mut buf) {
                                        Ok(0) | Err(_) => break,
                                        Ok(k) => got += k,
                                    }
                                }
                            }
                            conns.fetch_add(1, Ordering::Relaxed);
                        }
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
            conns,
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

/// What one churn measured.
#[derive(Debug)]
struct Phase {
    churn: Churn,
    /// The leecher's MB/s per download.
    mbps: Vec<f64>,
    /// Server CPU microseconds per churn connection, and churn connections per second.
    cpu_us_per_conn: f64,
    conns_per_sec: f64,
    /// Plain handshakes from 127.0.0.1: the time to the server's handshake.
    handshakes: Vec<Duration>,
    /// An encrypted handshake from 127.0.0.1 (which completed one before): Ok and its time.
    mse: Result<Duration, String>,
}

fn phase(s: &Serve, ih: InfoHash, churn: Churn) -> Phase {
    let flood = Flood::start(churn, s.addr);
    std::thread::sleep(Duration::from_millis(500));
    let (cpu0, n0, t0) = (
        cpu_secs(s.pid()),
        flood.conns.load(Ordering::Relaxed),
        Instant::now(),
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
    let mse =
        RawPeer::mse_handshake(s.addr, ih, uringseed::wire::mse::CRYPTO_RC4).map(|_| t.elapsed());
    std::thread::sleep(Duration::from_millis(500));
    let (cpu1, n1, secs) = (
        cpu_secs(s.pid()),
        flood.conns.load(Ordering::Relaxed),
        t0.elapsed().as_secs_f64(),
    );
    flood.stop();
    Phase {
        churn,
        mbps,
        cpu_us_per_conn: (cpu1 - cpu0) * 1e6 / (n1 - n0).max(1) as f64,
        conns_per_sec: (n1 - n0) as f64 / secs,
        handshakes,
        mse,
    }
}

#[test]
fn an_encrypted_handshake_flood_costs_about_what_cheap_refusals_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("f.bin");
    std::fs::write(&file, pseudo_random(LEN, 5)).unwrap();
    let torrent = dir.path().join("t.torrent");
    let piece = PIECE_LEN.to_string();
    let ih = hex_hash(&make_torrent(&file, &torrent, &["--piece-length", &piece]));
    // Budgets apply to loopback here (as to any address); the per-address connection cap is
    // out of the way, so the encryption budget is what is measured.
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "[server]\nlimit_loopback = true\nmax_connections_per_ip = 10000\n",
    )
    .unwrap();
    let mut s = serve(
        "serve",
        &torrent,
        &data,
        &["--upload-slots", "0", "--config", config.to_str().unwrap()],
        &[],
        dir.path(),
    );
    s.ready();
    download(s.addr, ih, LEN, PIECE_LEN);
    // 127.0.0.1 completes an encrypted handshake before the floods: a returning peer.
    RawPeer::mse_handshake(s.addr, ih, uringseed::wire::mse::CRYPTO_RC4).unwrap();

    let phases: Vec<Phase> = [
        Churn::UnknownTorrent,
        Churn::MseKey,
        Churn::UnknownTorrent,
        Churn::MseKey,
    ]
    .into_iter()
    .map(|c| phase(&s, ih, c))
    .collect();
    for p in &phases {
        eprintln!(
            "{:?}: {:.0} conns/s, {:.1} us server CPU each; leecher {:.0?} MB/s; plain \
             handshakes {:?}; encrypted {:?}",
            p.churn, p.conns_per_sec, p.cpu_us_per_conn, p.mbps, p.handshakes, p.mse
        );
    }
    let of = |c: Churn| -> (Vec<f64>, f64) {
        let ps: Vec<&Phase> = phases.iter().filter(|p| p.churn == c).collect();
        (
            ps.iter().flat_map(|p| p.mbps.iter().copied()).collect(),
            ps.iter().map(|p| p.cpu_us_per_conn).sum::<f64>() / ps.len() as f64,
        )
    };
    let (cheap_mbps, cheap_cpu) = of(Churn::UnknownTorrent);
    let (mse_mbps, mse_cpu) = of(Churn::MseKey);
    let refused = s.metric("uringseed_peers_dropped_total{reason=\"mse_budget\"}");
    let throughput = median(&mse_mbps) / median(&cheap_mbps);
    eprintln!(
        "encrypted flood: {:.2}x the CPU per connection of cheap refusals, leecher {throughput:.2}x; \
         {refused} refused for the budget",
        mse_cpu / cheap_cpu
    );
    assert!(refused > 0.0, "the budget refused nothing");
    assert!(
        mse_cpu < 1.6 * cheap_cpu,
        "an encrypted attempt costs {mse_cpu:.0} us, a cheap refusal {cheap_cpu:.0} us"
    );
    for p in &phases {
        let slowest = p.handshakes.iter().max().unwrap();
        assert!(
            *slowest < Duration::from_millis(500),
            "{:?}: a plain handshake took {slowest:?}",
            p.churn
        );
        let mse = p
            .mse
            .as_ref()
            .unwrap_or_else(|e| panic!("{:?}: {e}", p.churn));
        assert!(*mse < Duration::from_millis(500), "{:?}: {mse:?}", p.churn);
    }
    s.stop();
}

/// The budget's refusal is what clients that encrypt by choice recover from: libtorrent with
/// its default settings dials with an encrypted handshake first, and when that is closed on it
/// tries again in plaintext. Here its address has spent its share (another connection from it
/// keeps spending it), so the encrypted attempt is refused and the plain one must serve it.
#[test]
fn libtorrent_refused_for_the_budget_gets_in_with_a_plain_handshake() {
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
