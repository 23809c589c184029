//! BEP 52 serving. libtorrent downloads v2-only and hybrid torrents from uringseed byte for
//! byte, from the .torrent (piece layers in hand) and from a magnet link holding only the v2
//! info-hash (`xt=urn:btmh:`: the info dictionary by BEP 9, then the piece layers by hash
//! requests, which the seed's metrics must show it answered). A raw peer sees the seed answer
//! with the info-hash it used (either of a hybrid's) and the v2 bit, gets `hashes` replies whose
//! proofs fold up to the file's root (piece layer, above it, and block hashes computed from the
//! data), and `hash reject`s for an absent root, an oversized range, a flood past its budget and
//! block hashes of data changed under the seed, while it stays connected; the metrics count
//! exactly what it received. A hybrid is announced to a real tracker (npm `bittorrent-tracker`)
//! in both of its swarms, and a libtorrent leecher holding only the `btmh` magnet with that
//! tracker finds the seed there and downloads. `serve PATH --format hybrid` prints a magnet
//! with both `xt`s, and its v2 half alone brings libtorrent the data.
//!
//! Tools: Debian python3-libtorrent (2.0.8) and node with tests/tools/node_modules; without them
//! (and CI unset) the tests that need them skip.

mod common;

use common::raw::RawPeer;
use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use uringseed::merkle;
use uringseed::metainfo::{self, InfoHash, Torrent};
use uringseed::wire::handshake::reserved;
use uringseed::wire::message::{self as msg, HashRange, Message};

const PIECE: &str = "32768";

/// Files of 31, 10 and 1 pieces (the last shorter than a piece) at 32 KiB.
fn write_data(parent: &Path) -> PathBuf {
    let root = parent.join("v2data");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("big.iso"), pseudo_random(1_000_000, 11)).unwrap();
    std::fs::write(root.join("sub/mid.bin"), pseudo_random(310_000, 12)).unwrap();
    std::fs::write(root.join("small.txt"), pseudo_random(5_000, 13)).unwrap();
    root
}

/// `uringseed make ROOT --v2|--hybrid EXTRA...`; the parsed torrent.
fn make_with(root: &Path, out: &Path, flag: &str, extra: &[&str]) -> Torrent {
    run(uringseed()
        .arg("make")
        .arg(root)
        .arg("-o")
        .arg(out)
        .args(["-q", "--piece-length", PIECE, flag])
        .args(extra));
    metainfo::parse(&std::fs::read(out).unwrap(), "test").unwrap()
}

fn make(root: &Path, out: &Path, flag: &str) -> Torrent {
    make_with(root, out, flag, &[])
}

fn btmh(t: &Torrent) -> String {
    let v2 = t.v2.as_ref().unwrap();
    format!("magnet:?xt=urn:btmh:1220{}", metainfo::hex(&v2.info_hash))
}

fn value(p: &Proc, key: &str) -> Option<String> {
    p.stdout_text().lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(' '))
            .map(str::to_string)
    })
}

fn finish(mut lt: Proc, root: &Path, got: &Path, seed: &Serve, what: &str) -> f64 {
    let status = lt.wait_exit(Duration::from_secs(180));
    assert!(
        status.is_some_and(|s| s.success()),
        "{what}: libtorrent did not finish\n{}\n{}",
        lt.report(),
        seed.proc.report()
    );
    let diffs = tree_differences(root, got, false);
    assert!(diffs.is_empty(), "{what}: {diffs:?}\n{}", lt.report());
    value(&lt, "downloaded").unwrap().parse().unwrap()
}

/// libtorrent given only `magnet` (and `peer` to dial, or "-" for its trackers) downloads into
/// DIR/`name`; the files must equal `root`'s.
fn magnet_download(magnet: &str, peer: &str, name: &str, root: &Path, seed: &Serve, dir: &Path) {
    let out = dir.join(name);
    let args = [
        "magnet-download",
        magnet,
        out.to_str().unwrap(),
        peer,
        "120",
    ];
    let lt = spawn_lt(&format!("libtorrent-{name}"), &args, &[], dir);
    finish(lt, root, &out.join("v2data"), seed, name);
}

fn hash_replies(seed: &Serve, result: &str) -> f64 {
    seed.metric(&format!(
        "uringseed_peer_hash_requests_total{{result=\"{result}\"}}"
    ))
}

#[test]
fn libtorrent_downloads_v2_and_hybrid_torrents_from_the_file_and_from_a_btmh_magnet() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = write_data(dir.path());
    let data_len: u64 = list_files(&root).iter().map(|(_, l)| l).sum();
    for flag in ["--v2", "--hybrid"] {
        let torrent_path = dir.path().join(format!("t{flag}.torrent"));
        let t = make(&root, &torrent_path, flag);
        let mut seed = serve(
            &format!("uringseed{flag}"),
            &torrent_path,
            dir.path(),
            &[],
            &[],
            dir.path(),
        );
        seed.ready();
        let peer = seed.addr.to_string();

        let out = dir.path().join(format!("file{flag}"));
        let lt = spawn_lt_download(&torrent_path, &out, &peer, 120, 0, None, dir.path());
        let got = finish(lt, &root, &out.join("v2data"), &seed, flag);
        assert!(got >= data_len as f64, "{flag}: libtorrent got {got} B");

        let before = hash_replies(&seed, "served");
        magnet_download(
            &btmh(&t),
            &peer,
            &format!("btmh{flag}"),
            &root,
            &seed,
            dir.path(),
        );
        // The piece layers of big.iso and mid.bin came by hash request (small.txt has none).
        let served = hash_replies(&seed, "served") - before;
        assert!(served >= 2.0, "{flag}: {served} hash requests served");
        for result in ["unknown_root", "unavailable", "bad_range", "backlog"] {
            assert_eq!(hash_replies(&seed, result), 0.0, "{flag}: {result}");
        }
        eprintln!("{flag}: {served} hash requests served to the btmh leecher");
        seed.stop();
    }
}

fn range(root: [u8; 32], base: u32, index: u32, length: u32, proof: u32) -> HashRange {
    HashRange {
        root,
        base,
        index,
        length,
        proof_layers: proof,
    }
}

/// The next reply to a hash request: true for `hashes` (checked to fold up to `root`), false
/// for `hash reject`; other messages are skipped.
fn reply(p: &mut RawPeer, r: &HashRange, top_layer: u32) -> bool {
    loop {
        let (id, payload) = p.recv().expect("connection closed");
        let len = 1 + payload.len() as u32;
        let framed = [&len.to_be_bytes()[..], &[id], &payload].concat();
        let decoded = match msg::decode(&framed, 1 << 20).unwrap() {
            msg::Decoded::Message(m, _) => m,
            other => panic!("{other:?}"),
        };
        match decoded {
            Message::HashReject(got) => {
                assert_eq!(got, *r);
                return false;
            }
            Message::Hashes { range, hashes } => {
                assert_eq!(range, *r);
                let nodes: Vec<[u8; 32]> =
                    hashes.chunks(32).map(|c| c.try_into().unwrap()).collect();
                let mut row = nodes[..r.length as usize].to_vec();
                while row.len() > 1 {
                    row = row
                        .chunks(2)
                        .map(|c| merkle::parent(&c[0], &c[1]))
                        .collect();
                }
                let (mut node, mut at) = (row[0], r.index >> r.length.trailing_zeros());
                for uncle in &nodes[r.length as usize..] {
                    node = if at % 2 == 0 {
                        merkle::parent(&node, uncle)
                    } else {
                        merkle::parent(uncle, &node)
                    };
                    at /= 2;
                }
                assert_eq!(
                    r.base + r.proof_layers + 1,
                    top_layer,
                    "ask for a full proof"
                );
                assert_eq!(node, r.root, "the proof does not reach the root");
                return true;
            }
            _ => {}
        }
    }
}

#[test]
fn hash_requests_are_answered_with_proofs_refused_with_reasons_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_data(dir.path());
    let torrent_path = dir.path().join("h.torrent");
    let t = make(&root, &torrent_path, "--hybrid");
    let v2 = t.v2.as_ref().unwrap();
    let big = v2
        .files
        .iter()
        .flatten()
        .find(|f| f.layer.len() == 31)
        .unwrap();
    let small = v2
        .files
        .iter()
        .flatten()
        .find(|f| f.layer.is_empty())
        .unwrap();
    let mut seed = serve("uringseed", &torrent_path, dir.path(), &[], &[], dir.path());
    seed.ready();

    // Either info-hash gets in; the seed answers with the one used, and the v2 bit.
    let (_v1_peer, hs) = RawPeer::handshake(seed.addr, t.info_hash, true);
    assert_eq!(hs.info_hash, t.info_hash);
    assert!(hs.has(reserved::V2));
    let truncated: InfoHash = v2.truncated();
    let (mut p, hs) = RawPeer::handshake(seed.addr, truncated, true);
    assert_eq!(hs.info_hash, truncated);
    assert!(hs.has(reserved::V2));

    // big.iso: 62 blocks, 64 leaves, root at layer 6; pieces (layer 1) 31 of 32.
    let top = 6;
    let good = range(big.root, 1, 0, 32, 4);
    p.send(&[Message::HashRequest(good)]);
    assert!(reply(&mut p, &good, top), "a valid request was refused");
    let upper = range(big.root, 3, 4, 4, 2);
    p.send(&[Message::HashRequest(upper)]);
    assert!(
        reply(&mut p, &upper, top),
        "a request above the piece layer was refused"
    );
    // Block hashes (layer 0) are computed from the data; the last piece is short.
    let blocks = range(big.root, 0, 60, 4, 5);
    p.send(&[Message::HashRequest(blocks)]);
    assert!(reply(&mut p, &blocks, top), "block hashes were refused");
    for (r, why) in [
        (range([7; 32], 1, 0, 2, 0), "unknown_root"),
        (range(small.root, 1, 0, 2, 0), "no_piece_layer"),
        (range(big.root, 1, 0, 1 << 20, 0), "bad_range"),
        (range(big.root, 1, 32, 2, 0), "bad_range"),
        (range(big.root, 1, 0, 2, 5), "bad_range"),
    ] {
        p.send(&[Message::HashRequest(r)]);
        assert!(!reply(&mut p, &r, top), "{why}: answered");
    }
    // A flood: every request gets exactly one reply; past the burst they are rejects.
    let flood = range(big.root, 1, 2, 2, 4);
    let n = 200;
    p.send(&vec![Message::HashRequest(flood); n]);
    let served = (0..n).filter(|_| reply(&mut p, &flood, top)).count();
    assert!(
        (40..150).contains(&served),
        "{served} of {n} flood requests served"
    );
    // Still connected and served.
    p.send(&[Message::Interested]);
    assert_eq!(p.expect(msg::UNCHOKE), Vec::<u8>::new());
    // Data changed under the seed: its block hashes no longer match the piece layer, so they
    // are refused rather than sent (after the budget for reads has refilled).
    let path = root.join("big.iso");
    let byte = std::fs::read(&path).unwrap()[10] ^ 0xff;
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[byte], 10).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let changed = range(big.root, 0, 0, 2, 5);
    p.send(&[Message::HashRequest(changed)]);
    assert!(
        !reply(&mut p, &changed, top),
        "hashes of changed data were sent"
    );

    // The metrics count what the peer received.
    let count = |result: &str| hash_replies(&seed, result);
    assert_eq!(count("served"), (3 + served) as f64);
    assert_eq!(count("rate"), (n - served) as f64);
    assert_eq!(count("unknown_root"), 1.0);
    assert_eq!(count("no_piece_layer"), 1.0);
    assert_eq!(count("unavailable"), 1.0);
    assert_eq!(count("bad_range"), 3.0);
    assert_eq!(count("backlog"), 0.0);

    // The API and the metrics name the hash kind and both info-hashes.
    let out = seed.proc.stdout_text();
    let token_file = out
        .lines()
        .find_map(|l| l.split("(token in ").nth(1))
        .and_then(|r| r.strip_suffix(')'))
        .expect("serve printed where its API token is");
    let token = std::fs::read_to_string(token_file).unwrap();
    let auth = format!("Authorization: Bearer {}\r\n", token.trim());
    let path = format!("/api/v1/torrents/{}", t.info_hash);
    let a = common::api::request(&seed.metrics, "GET", &path, &auth, b"").unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let view = a.json();
    assert_eq!(view["hash_kind"], "hybrid");
    assert_eq!(view["info_hash_v2"], metainfo::hex(&v2.info_hash));
    let kind = |k: &str| {
        seed.metric(&format!(
            "uringseed_live_torrents_by_hash_kind{{kind=\"{k}\"}}"
        ))
    };
    assert_eq!((kind("v1"), kind("v2"), kind("hybrid")), (0.0, 0.0, 1.0));
    seed.stop();
}

#[test]
fn a_hybrid_is_announced_in_both_swarms_and_a_btmh_leecher_finds_it_through_the_tracker() {
    if !have_libtorrent() || !have_node_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = write_data(dir.path());
    let tracker = Tracker::start(dir.path());
    let url = tracker.announce_url();
    let torrent_path = dir.path().join("tracked.torrent");
    let t = make_with(&root, &torrent_path, "--hybrid", &["-t", &url]);
    let v1 = metainfo::hex(&t.info_hash.0);
    let v2 = metainfo::hex(&t.v2.as_ref().unwrap().truncated().0);
    let mut seed = serve("uringseed", &torrent_path, dir.path(), &[], &[], dir.path());
    seed.ready();
    for hash in [&v1, &v2] {
        let found = tracker.wait_announce(0, Duration::from_secs(30), |a| {
            a.info_hash == *hash && a.port == seed.addr.port() && a.event == "started"
        });
        assert!(
            found.is_some(),
            "no `started` for {hash}; announces: {:?}\n{}",
            tracker.announces(),
            seed.proc.report()
        );
    }
    let magnet = format!("{}&tr={url}", btmh(&t));
    magnet_download(&magnet, "-", "by_tracker", &root, &seed, dir.path());
    assert!(hash_replies(&seed, "served") >= 2.0);
    seed.stop();
}

#[test]
fn serve_path_makes_a_hybrid_whose_v2_half_alone_brings_the_data() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = write_data(dir.path());
    let out = dir.path().join("made.torrent");
    let args = [
        root.to_str().unwrap(),
        "--format",
        "hybrid",
        "--torrent-out",
        out.to_str().unwrap(),
    ];
    let mut seed = serve_args("uringseed", &args, &[], dir.path());
    seed.ready();
    let printed = seed.proc.stdout_text();
    let t = metainfo::load(&out).unwrap();
    assert_eq!(t.hash_kind(), metainfo::HashKind::Hybrid);
    let v2 = metainfo::hex(&t.v2.as_ref().unwrap().info_hash);
    assert!(
        printed.contains(&format!("xt=urn:btih:{}", t.info_hash))
            && printed.contains(&format!("xt=urn:btmh:1220{v2}")),
        "{printed}"
    );
    let peer = seed.addr.to_string();
    magnet_download(&btmh(&t), &peer, "made", &root, &seed, dir.path());
    assert!(hash_replies(&seed, "served") >= 2.0);
    seed.stop();
}
