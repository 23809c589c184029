//! The server's DHT node (BEP 5) against a private DHT of real libtorrent 2.0.8 nodes on
//! loopback (tests/tools/lt_dht.py through lt_tool.py: `dht-swarm`, `dht-leech`,
//! `dht-announce`).
//!
//! - A libtorrent leecher given only the magnet link (no tracker, no peer) finds uringseed
//!   through the DHT and downloads every file byte for byte.
//! - uringseed finds a leecher that announced itself to the DHT and connects out to it; the
//!   leecher, which never dials anyone, gets every file from it.
//! - A private torrent (BEP 27) is never announced nor looked up, while a public one served
//!   alongside is announced (so the check can fail).
//! - Restart: stopped with SIGTERM and started again with the same state dir and only an
//!   unreachable bootstrap node, the server rejoins the DHT from its saved routing table and a
//!   fresh magnet-only leecher finds it at its new peer port.
//! - BEP 52: a hybrid torrent is announced under its v1 and its truncated v2 info-hash, and a
//!   leecher holding only `xt=urn:btmh:` finds the server through the DHT and downloads.
//! - BEP 32: an IPv6 peer listener gets an IPv6 node on the same port number beside the IPv4
//!   one; each answers a ping in its family with the asker's address in `ip` (BEP 42).
//!
//! The server's side of the contract:
//!
//! ```toml
//! [server]
//! listen = ["127.0.0.1:PEER"]
//! state_dir = "DIR/state"          # the routing table is saved as state_dir/dht*.json
//! [dht]
//! enabled = true
//! listen = "127.0.0.1:UDP"
//! bootstrap = ["127.0.0.1:N1", ...] # the swarm's nodes: nothing ever leaves the machine
//! ```
//!
//! Its announce_peer must carry the *peer* port (PEER, with implied_port 0, since its UDP
//! port differs), so that the DHT lists it at 127.0.0.1:PEER. Every test here waits for that
//! listing in dht-swarm's output (`announced HASH 127.0.0.1:PEER`) before it goes on.
//!
//! The harness itself is checked with a libtorrent seed in uringseed's place (`lt_tool.py seed`
//! with LT_DHT_NODES, tests/tools/README.md), so a failure here can be told from one of the tools.
//! Each test has its own temp dir, swarm and ports; every process is stopped by PID at the end.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// libtorrent nodes in the swarm.
const NODES: usize = 4;
/// How soon the server must have announced a torrent once it is ready.
const ANNOUNCE_WITHIN: Duration = Duration::from_secs(60);
/// How long a client may take (its own timeout); the test waits 20 s more.
const CLIENT_TIMEOUT_S: u64 = 90;
/// How long, after the public torrent was announced, the private one must stay unannounced.
const PRIVATE_WATCH: Duration = Duration::from_secs(20);
/// The leechers' loopback address (uringseed is on 127.0.0.1).
const LEECHER_IP: &str = "127.0.0.2";

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A running `lt_tool.py dht-swarm NODES 900`: its nodes' addresses once every routing table
/// holds the others.
struct Swarm {
    proc: Proc,
    nodes: Vec<String>,
}

impl Swarm {
    fn start(dir: &Path) -> Swarm {
        let n = NODES.to_string();
        let mut proc = spawn_lt("dht-swarm", &["dht-swarm", &n, "900"], &[], dir);
        proc.wait_line("ready", Duration::from_secs(40));
        let nodes: Vec<String> = proc
            .stdout_text()
            .lines()
            .filter_map(|l| l.strip_prefix("node "))
            .map(|a| a.trim().to_string())
            .collect();
        assert_eq!(nodes.len(), NODES, "{}", proc.report());
        Swarm { proc, nodes }
    }

    /// The addresses announced for `hash` so far (each `announced HASH IP:PORT node=...`).
    fn announced(&self, hash: &str) -> Vec<String> {
        words_after(&self.proc.stdout_text(), "announced", hash)
    }

    /// True if any node was asked get_peers for `hash` (`get_peers HASH node=...`).
    fn looked_up(&self, hash: &str) -> bool {
        self.proc
            .stdout_text()
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["get_peers", hash]))
    }

    /// Waits (at most ANNOUNCE_WITHIN) until `addr` is announced for `hash`.
    fn expect_announce(&self, hash: &str, addr: &str, others: &[&Proc]) {
        let deadline = Instant::now() + ANNOUNCE_WITHIN;
        while !self.announced(hash).iter().any(|a| a == addr) {
            assert!(
                Instant::now() < deadline,
                "the swarm never saw `announced {hash} {addr}` within {ANNOUNCE_WITHIN:?} \
                 (announced for it: {:?}; looked up: {})\n{}{}",
                self.announced(hash),
                self.looked_up(hash),
                self.proc.report(),
                reports(others)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn toml_list(&self) -> String {
        let quoted: Vec<String> = self.nodes.iter().map(|n| format!("\"{n}\"")).collect();
        format!("[{}]", quoted.join(", "))
    }
}

/// The second word of every line `FIRST HASH WORD ...` in `text`.
fn words_after(text: &str, first: &str, hash: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == first && w.next()? == hash).then(|| w.next().map(String::from))?
        })
        .collect()
}

/// Every `peer IP:PORT source SRC` line of dht-leech / dht-announce: (address, sources);
/// the last line for an address counts (its sources only grow).
fn peers(p: &Proc) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for l in p.stdout_text().lines() {
        let mut w = l.split_whitespace();
        if w.next() != Some("peer") {
            continue;
        }
        let (Some(addr), Some("source"), Some(src)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        let src: Vec<String> = src.split(',').map(String::from).collect();
        match out.iter_mut().find(|(a, _)| a == addr) {
            Some(e) => e.1 = src,
            None => out.push((addr.to_string(), src)),
        }
    }
    out
}

/// A test's data: a multi-file tree and its torrent.
struct Data {
    root: PathBuf,
    tree: PathBuf,
    torrent: PathBuf,
    hash: String,
}

fn data(dir: &Path, name: &str, extra: &[&str]) -> Data {
    let root = dir.join(format!("data-{name}"));
    std::fs::create_dir_all(&root).unwrap();
    let tree = write_tree(&root, name);
    let torrent = dir.join(format!("{name}.torrent"));
    let hash = make_torrent(&tree, &torrent, extra);
    Data {
        root,
        tree,
        torrent,
        hash,
    }
}

/// Writes DIR/NAME.toml: peer listener 127.0.0.1:PEER, the state dir DIR/state, the DHT on
/// 127.0.0.1:UDP with `bootstrap` (a TOML list), and every torrent of `torrents`.
fn write_config(
    dir: &Path,
    name: &str,
    peer: u16,
    udp: u16,
    bootstrap: &str,
    torrents: &[&Data],
) -> PathBuf {
    let mut text = format!(
        "[server]\nlisten = [\"127.0.0.1:{peer}\"]\nstate_dir = \"{}/state\"\n\n\
         [dht]\nenabled = true\nlisten = \"127.0.0.1:{udp}\"\nbootstrap = {bootstrap}\n",
        dir.display()
    );
    for d in torrents {
        text.push_str(&format!(
            "\n[[torrent]]\ntorrent = \"{}\"\ndata = \"{}\"\n",
            d.torrent.display(),
            d.root.display()
        ));
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `uringseed serve --config CONFIG --log-level debug`; waits for `listening:` and one
/// `ready:` per torrent.
fn serve(name: &str, config: &Path, torrents: usize, dir: &Path) -> Proc {
    let mut p = Proc::spawn(
        name,
        uringseed()
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--log-level", "debug"]),
        dir,
    );
    p.wait_line("listening: ", Duration::from_secs(30));
    for _ in 0..torrents {
        p.wait_line("ready: ", Duration::from_secs(60));
    }
    p
}

/// `lt_tool.py dht-leech MAGNET SAVE TIMEOUT NODES...` from LEECHER_IP.
fn dht_leech(name: &str, magnet: &str, save: &Path, swarm: &Swarm, dir: &Path) -> Proc {
    std::fs::create_dir_all(save).unwrap();
    let t = CLIENT_TIMEOUT_S.to_string();
    let mut args = vec!["dht-leech", magnet, path_str(save), &t];
    args.extend(swarm.nodes.iter().map(String::as_str));
    spawn_lt(name, &args, &[("LT_BIND_IP", LEECHER_IP)], dir)
}

/// Waits for a client to exit 0 with `tree`'s files under `got`; panics with every report.
fn expect_complete(client: &mut Proc, tree: &Path, got: &Path, others: &[&Proc]) {
    let status = client.wait_exit(Duration::from_secs(CLIENT_TIMEOUT_S + 20));
    let verdict = match status {
        None => Some(format!("still running after {CLIENT_TIMEOUT_S} s + 20 s")),
        Some(s) if !s.success() => Some(format!("exited with {s}")),
        Some(_) => {
            let diffs = tree_differences(tree, got, false);
            (!diffs.is_empty()).then(|| format!("wrong files:\n    {}", diffs.join("\n    ")))
        }
    };
    if let Some(v) = verdict {
        panic!(
            "{}: {v}\n{}{}",
            client.name,
            client.report(),
            reports(others)
        );
    }
}

/// dht-leech found `addr` through a lookup and connected to it (it dials nothing else).
fn expect_found(leech: &Proc, addr: &str, others: &[&Proc]) {
    let text = leech.stdout_text();
    let found = text.lines().any(|l| l == format!("found {addr}"));
    let connected = peers(leech).iter().any(|(a, _)| a == addr);
    assert!(
        found && connected,
        "{}: {addr} found through the DHT: {found}, connected: {connected}\n{}{}",
        leech.name,
        leech.report(),
        reports(others)
    );
}

fn setup() -> Option<(tempfile::TempDir, PathBuf)> {
    if !have_libtorrent() {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    Some((tmp, dir))
}

#[test]
fn magnet_only_leecher_finds_the_server_through_the_dht() {
    let Some((_tmp, dir)) = setup() else { return };
    let swarm = Swarm::start(&dir);
    let d = data(&dir, "pub", &[]);
    let peer = free_port();
    let config = write_config(&dir, "seed", peer, free_port(), &swarm.toml_list(), &[&d]);
    let server = serve("uringseed", &config, 1, &dir);
    let addr = format!("127.0.0.1:{peer}");
    swarm.expect_announce(&d.hash, &addr, &[&server]);

    // Only the info-hash: no tracker, no peer address (dht-leech drops any tr anyway).
    let magnet = format!("magnet:?xt=urn:btih:{}", d.hash);
    let got = dir.join("got");
    let mut leech = dht_leech("dht-leech", &magnet, &got, &swarm, &dir);
    expect_complete(
        &mut leech,
        &d.tree,
        &got.join("pub"),
        &[&server, &swarm.proc],
    );
    expect_found(&leech, &addr, &[&server, &swarm.proc]);
}

#[test]
fn a_hybrid_is_announced_under_both_info_hashes_and_a_btmh_leecher_finds_it() {
    let Some((_tmp, dir)) = setup() else { return };
    let swarm = Swarm::start(&dir);
    let d = data(&dir, "hyb", &["--hybrid", "--piece-length", "32768"]);
    let t = uringseed::metainfo::load(&d.torrent).unwrap();
    let v2 = t.v2.as_ref().expect("a hybrid");
    let peer = free_port();
    let config = write_config(&dir, "seed", peer, free_port(), &swarm.toml_list(), &[&d]);
    let server = serve("uringseed", &config, 1, &dir);
    let addr = format!("127.0.0.1:{peer}");
    swarm.expect_announce(&d.hash, &addr, &[&server]);
    swarm.expect_announce(&v2.truncated().to_string(), &addr, &[&server]);

    let magnet = format!(
        "magnet:?xt=urn:btmh:1220{}",
        uringseed::metainfo::hex(&v2.info_hash)
    );
    let got = dir.join("got");
    let mut leech = dht_leech("dht-leech-btmh", &magnet, &got, &swarm, &dir);
    expect_complete(
        &mut leech,
        &d.tree,
        &got.join("hyb"),
        &[&server, &swarm.proc],
    );
    expect_found(&leech, &addr, &[&server, &swarm.proc]);
}

#[test]
fn server_finds_an_announced_leecher_and_connects_out() {
    let Some((_tmp, dir)) = setup() else { return };
    let swarm = Swarm::start(&dir);
    let d = data(&dir, "pub", &[]);
    // The leecher announces itself first (its one lookup finds nobody; it re-announces only
    // after 3600 s), so it never dials uringseed: any peer it has connected to it.
    let got = dir.join("got");
    std::fs::create_dir_all(&got).unwrap();
    let t = CLIENT_TIMEOUT_S.to_string();
    let mut args = vec!["dht-announce", path_str(&d.torrent), path_str(&got), &t];
    args.extend(swarm.nodes.iter().map(String::as_str));
    let mut leech = spawn_lt("dht-announce", &args, &[("LT_BIND_IP", LEECHER_IP)], &dir);
    let listening = leech.wait_line("listening ", Duration::from_secs(30));
    leech.wait_line("announced", Duration::from_secs(30));
    swarm.expect_announce(&d.hash, listening.trim(), &[&leech]);

    let config = write_config(
        &dir,
        "seed",
        free_port(),
        free_port(),
        &swarm.toml_list(),
        &[&d],
    );
    let server = serve("uringseed", &config, 1, &dir);
    expect_complete(
        &mut leech,
        &d.tree,
        &got.join("pub"),
        &[&server, &swarm.proc],
    );
    // Nothing else here opens TCP connections (the swarm's nodes speak only UDP).
    let seen = peers(&leech);
    assert!(
        seen.iter().any(|(_, s)| s.iter().any(|s| s == "incoming")),
        "the leecher got the data, but not over a connection uringseed opened: {seen:?}\n{}{}",
        leech.report(),
        server.report()
    );
    assert!(
        swarm.looked_up(&d.hash),
        "no get_peers for the torrent reached the swarm\n{}",
        swarm.proc.report()
    );
}

#[test]
fn private_torrent_is_never_announced() {
    let Some((_tmp, dir)) = setup() else { return };
    let swarm = Swarm::start(&dir);
    let public = data(&dir, "pub", &[]);
    let private = data(&dir, "priv", &["--private"]);
    let peer = free_port();
    let config = write_config(
        &dir,
        "seed",
        peer,
        free_port(),
        &swarm.toml_list(),
        &[&private, &public],
    );
    let server = serve("uringseed", &config, 2, &dir);
    // The public one is announced: the server's DHT works, so the check below can fail.
    swarm.expect_announce(&public.hash, &format!("127.0.0.1:{peer}"), &[&server]);
    let until = Instant::now() + PRIVATE_WATCH;
    while Instant::now() < until {
        let announced = swarm.announced(&private.hash);
        assert!(
            announced.is_empty() && !swarm.looked_up(&private.hash),
            "private torrent {} went to the DHT (announced as {announced:?}, looked up: {})\n{}{}",
            private.hash,
            swarm.looked_up(&private.hash),
            swarm.proc.report(),
            server.report()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn restart_rejoins_from_the_saved_routing_table() {
    let Some((_tmp, dir)) = setup() else { return };
    let swarm = Swarm::start(&dir);
    let d = data(&dir, "pub", &[]);
    let udp = free_port();
    let first = free_port();
    let config = write_config(&dir, "first", first, udp, &swarm.toml_list(), &[&d]);
    let mut server = serve("uringseed-1", &config, 1, &dir);
    swarm.expect_announce(&d.hash, &format!("127.0.0.1:{first}"), &[&server]);
    let status = server.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "uringseed did not exit 0 within 10 s of SIGTERM: {status:?}\n{}",
        server.report()
    );
    let state = dir.join("state");
    let saved: Vec<String> = std::fs::read_dir(&state)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("dht"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !saved.is_empty(),
        "no saved routing table (state_dir/dht*) in {}\n{}",
        state.display(),
        server.report()
    );

    // Again, with a new peer port (the swarm still lists the old one) and no reachable
    // bootstrap node: an unused loopback port rather than `[]`, so that no reading of an
    // empty list as "the defaults" could send a packet off the machine.
    let dead = free_port();
    let second = loop {
        let p = free_port();
        if p != first {
            break p;
        }
    };
    let bootstrap = format!("[\"127.0.0.1:{dead}\"]");
    let config = write_config(&dir, "second", second, udp, &bootstrap, &[&d]);
    let server = serve("uringseed-2", &config, 1, &dir);
    let addr = format!("127.0.0.1:{second}");
    swarm.expect_announce(&d.hash, &addr, &[&server]);

    let magnet = format!("magnet:?xt=urn:btih:{}", d.hash);
    let got = dir.join("got");
    let mut leech = dht_leech("dht-leech", &magnet, &got, &swarm, &dir);
    expect_complete(
        &mut leech,
        &d.tree,
        &got.join("pub"),
        &[&server, &swarm.proc],
    );
    expect_found(&leech, &addr, &[&server, &swarm.proc]);
}

/// The harness itself, with no server: libtorrent's reference seed (`lt_tool.py seed` with
/// LT_DHT_NODES) in uringseed's place is announced into the swarm and found by a magnet-only
/// dht-leech, which downloads every file. It keeps the tools working.
#[test]
fn harness_finds_a_libtorrent_seed_through_the_dht() {
    let Some((_tmp, dir)) = setup() else { return };
    let started = Instant::now();
    let swarm = Swarm::start(&dir);
    eprintln!("swarm of {NODES} nodes ready in {:?}", started.elapsed());
    let d = data(&dir, "pub", &[]);
    let nodes = swarm.nodes.join(",");
    let (t, r) = (path_str(&d.torrent), path_str(&d.root));
    let mut seed = spawn_lt(
        "libtorrent-seed",
        &["seed", t, r, "-", "300"],
        &[("LT_DHT_NODES", nodes.as_str())],
        &dir,
    );
    let port = seed.wait_line("listening ", Duration::from_secs(30));
    seed.wait_line("ready ", Duration::from_secs(60));
    let addr = format!("127.0.0.1:{}", port.trim());
    swarm.expect_announce(&d.hash, &addr, &[&seed]);
    eprintln!("seed announced {:?} after start", started.elapsed());

    let magnet = format!("magnet:?xt=urn:btih:{}", d.hash);
    let got = dir.join("got");
    let mut leech = dht_leech("dht-leech", &magnet, &got, &swarm, &dir);
    expect_complete(&mut leech, &d.tree, &got.join("pub"), &[&seed, &swarm.proc]);
    expect_found(&leech, &addr, &[&seed, &swarm.proc]);
    eprintln!(
        "downloaded through the DHT {:?} after start",
        started.elapsed()
    );
}

/// BEP 32: with an IPv6 peer listener the server runs an IPv6 node beside the IPv4 one, on the
/// same port number; each answers a ping in its own family, and tells the asker its address
/// (BEP 42's `ip`: 6 bytes for IPv4, 18 for IPv6).
#[test]
fn an_ipv6_listener_gets_an_ipv6_node_on_the_same_port() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        assert!(!tools_required(), "IPv6 loopback is required in CI");
        eprintln!("SKIPPED: no IPv6 loopback");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = data(dir, "six", &[]);
    let (p4, p6) = (free_port(), free_port());
    let config = dir.join("six.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{p4}\", \"[::1]:{p6}\"]\nstate_dir = \"{}/state\"\n\
             [dht]\nbootstrap = []\n[metrics]\nenabled = false\n[api]\nenabled = false\n\
             [[torrent]]\ntorrent = \"{}\"\ndata = \"{}\"\n",
            dir.display(),
            d.torrent.display(),
            d.root.display()
        ),
    )
    .unwrap();
    let mut server = serve("uringseed", &config, 1, dir);
    for (bind, to) in [
        ("127.0.0.1:0", format!("127.0.0.1:{p4}")),
        ("[::1]:0", format!("[::1]:{p4}")),
    ] {
        let sock = std::net::UdpSocket::bind(bind).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:xy1:y1:qe";
        sock.send_to(ping, &to).unwrap();
        let mut buf = [0u8; 1500];
        let (n, from) = sock
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no answer from {to}: {e}\n{}", server.report()));
        let reply = &buf[..n];
        assert_eq!(from.to_string(), to, "answered from the node's own address");
        let has = |needle: &[u8]| reply.windows(needle.len()).any(|w| w == needle);
        assert!(
            has(b"1:y1:r") && has(b"1:t2:xy") && has(b"2:id20:"),
            "{:?}",
            String::from_utf8_lossy(reply)
        );
        let me = sock.local_addr().unwrap();
        let mut ip = match me.ip() {
            std::net::IpAddr::V4(a) => [b"2:ip6:".to_vec(), a.octets().to_vec()].concat(),
            std::net::IpAddr::V6(a) => [b"2:ip18:".to_vec(), a.octets().to_vec()].concat(),
        };
        ip.extend_from_slice(&me.port().to_be_bytes());
        assert!(
            has(&ip),
            "the asker's address in `ip`: {:?}",
            String::from_utf8_lossy(reply)
        );
    }
    assert!(server
        .terminate(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
}
