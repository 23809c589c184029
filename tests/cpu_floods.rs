//! Floods that cost the server CPU without breaking a rule (issue 21, item 1), against the real
//! binary: each is run at the same connection (or packet) rate as a churn of cheap refusals from
//! the same load generator, back to back, so the attacker's own share of the machine is the same
//! in both; what differs is what the server spends. An honest leecher downloads beside each, and
//! honest handshakes are timed.

mod common;

use common::flood::*;
use common::raw::RawPeer;
use common::*;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uringseed::metainfo::InfoHash;
use uringseed::wire::handshake::Handshake;

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
