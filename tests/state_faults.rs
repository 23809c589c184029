//! The server's own state under faults (issue 21, item 7), against the real binary: its state
//! directory (resume records, the API's torrents and token, upload counters, quota counts, the
//! DHT table) on a tiny tmpfs that is full, on one mounted read-only, and kill -9 at varied
//! points in a loop of 100 restarts. Whatever happened, the server starts and serves, never
//! advertises a piece whose data does not match (the data has two bad pieces that no record may
//! claim), keeps the torrent the API added, and loses at most the last few seconds of counts.
//!
//! Mounting needs root (CI runs as root); elsewhere these tests say so and pass.

mod common;

use common::api::ApiServer;
use common::raw::RawPeer;
use common::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use uringseed::metainfo::InfoHash;
use uringseed::wire::message::Message;

const LEN: usize = 8 << 20;
const PIECE: usize = 256 << 10;
/// Pieces whose data is changed after the torrent was made.
const BAD: [usize; 2] = [3, 17];

/// A tmpfs mounted at a directory, unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }

    fn remount(&self, opts: &str) {
        let s = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(s.success(), "remount {opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Whether this test may mount; false (and said) where it cannot, which fails under CI.
fn can_mount(dir: &Path) -> bool {
    if Tmpfs::mount(&dir.join("probe"), "64k").is_some() {
        return true;
    }
    assert!(
        !tools_required(),
        "mounting a tmpfs failed (CI runs as root)"
    );
    eprintln!("skipped: cannot mount a tmpfs here (needs root)");
    false
}

struct Fixture {
    root: PathBuf,
    torrent: PathBuf,
    ih: InfoHash,
    /// A second torrent, added through the API.
    other: PathBuf,
    other_hex: String,
}

/// `root/a.bin` (LEN bytes, the BAD pieces changed after its torrent was made) and `root/b.bin`.
fn fixture(dir: &Path) -> Fixture {
    let root = dir.join("data");
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join("a.bin");
    let mut bytes = pseudo_random(LEN, 71);
    std::fs::write(&file, &bytes).unwrap();
    let torrent = dir.join("a.torrent");
    let piece = PIECE.to_string();
    let ih = hex_hash(&make_torrent(&file, &torrent, &["--piece-length", &piece]));
    for b in BAD {
        bytes[b * PIECE + 100] ^= 0xff;
    }
    std::fs::write(&file, &bytes).unwrap();
    let other_file = root.join("b.bin");
    std::fs::write(&other_file, pseudo_random(1 << 20, 72)).unwrap();
    let other = dir.join("b.torrent");
    let other_hex = make_torrent(&other_file, &other, &[]);
    Fixture {
        root,
        torrent,
        ih,
        other,
        other_hex,
    }
}

/// Writes `dir/config.toml`: the state directory `dir/state` (resume records in it too), an
/// upload quota (its count saved every 2 s), a DHT node that knows nobody, the API on a free
/// port, the torrent. Returns the path and the API's address.
fn config(dir: &Path, f: &Fixture) -> (PathBuf, String) {
    let state = dir.join("state");
    let http = format!("127.0.0.1:{}", free_port());
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"{s}\"\nupload_quota = \"1 GiB\"\n\
             [hashing]\nresume_dir = \"{s}/resume\"\n\
             [dht]\nenabled = true\nlisten = \"127.0.0.1:{dht}\"\nbootstrap = []\n\
             [api]\nlisten = \"{http}\"\ndata_roots = [\"{root}\"]\n\
             [[torrent]]\ntorrent = \"{t}\"\ndata = \"{root}\"\n",
            s = state.display(),
            dht = free_port(),
            root = f.root.display(),
            t = f.torrent.display(),
        ),
    )
    .unwrap();
    (path, http)
}

/// The pieces the server advertises to a new peer (a bitfield, or have-all / have-none).
fn advertised(peer: SocketAddr, ih: InfoHash) -> Vec<usize> {
    let (mut p, _) = RawPeer::handshake(peer, ih, true);
    let pieces = LEN / PIECE;
    loop {
        match p.recv() {
            Some((14, _)) => return (0..pieces).collect(),
            Some((15, _)) => return vec![],
            Some((5, bits)) => {
                return (0..pieces)
                    .filter(|i| bits[i / 8] & (0x80 >> (i % 8)) != 0)
                    .collect()
            }
            // The extension handshake comes first.
            Some((20, _)) => continue,
            other => panic!("no bitfield: {other:?}"),
        }
    }
}

fn good_pieces() -> Vec<usize> {
    (0..LEN / PIECE).filter(|i| !BAD.contains(i)).collect()
}

/// Downloads `n` good pieces from the server; the bytes received.
fn leech(peer: SocketAddr, ih: InfoHash, n: usize) -> u64 {
    use uringseed::wire::message::Block;
    let (mut p, _) = RawPeer::handshake(peer, ih, true);
    p.send(&[Message::Interested]);
    let mut got = 0u64;
    let mut unchoked = false;
    let blocks: Vec<Block> = good_pieces()
        .into_iter()
        .take(n)
        .flat_map(|i| {
            (0..PIECE / 16384).map(move |k| Block {
                index: i as u32,
                begin: (k * 16384) as u32,
                length: 16384,
            })
        })
        .collect();
    while !unchoked {
        match p.recv() {
            Some((1, _)) => unchoked = true,
            Some(_) => {}
            None => return 0,
        }
    }
    for b in &blocks {
        p.send(&[Message::Request(*b)]);
    }
    let mut left = blocks.len();
    while left > 0 {
        match p.recv() {
            Some((7, payload)) => {
                got += (payload.len() - 8) as u64;
                left -= 1;
            }
            Some(_) => {}
            None => break,
        }
    }
    got
}

fn metric(http: &str, series: &str) -> f64 {
    let (code, body) = http_get(http, "/metrics", Duration::from_secs(5)).unwrap();
    assert_eq!(code, 200);
    sample(&body, series)
}

/// Waits until the torrent `ih` is served (the API's may be ready first).
fn ready(s: &mut ApiServer, ih: InfoHash) {
    s.proc
        .wait_line(&format!("ready: {ih}"), Duration::from_secs(60));
}

/// Files left behind by writes that did not finish (`*.tmp*`), anywhere under `dir`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap().to_string_lossy().contains(".tmp") {
                out.push(p);
            }
        }
    }
    out
}

/// Adds the second torrent through the API; its info-hash as the API shows it.
fn api_add(s: &ApiServer, f: &Fixture) -> u16 {
    let body = std::fs::read(&f.other).unwrap();
    let path = format!("/api/v1/torrents?data={}", f.root.display());
    s.call("POST", &path, "application/x-bittorrent", &body)
        .status
}

fn api_has(s: &ApiServer, hex: &str) -> bool {
    s.get("/api/v1/torrents")["torrents"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["info_hash"] == hex)
}

const QUOTA_USED: &str = "uringseed_upload_quota_used_bytes";

/// Starts the server and waits until it serves; checks what it advertises and that it serves.
fn start_serving(name: &str, cfg: &Path, http: &str, dir: &Path, f: &Fixture) -> ApiServer {
    let mut s = ApiServer::start(name, cfg, http, &[], dir);
    ready(&mut s, f.ih);
    let peer: SocketAddr = s.peer().parse().unwrap();
    assert_eq!(
        advertised(peer, f.ih),
        good_pieces(),
        "{name}: advertised pieces\n{}",
        s.proc.report()
    );
    assert_eq!(leech(peer, f.ih, 2), 2 * PIECE as u64, "{name}: served");
    s
}

fn stop(mut s: ApiServer, name: &str) {
    let status = s.proc.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|st| st.success()),
        "{name}: exit {status:?}\n{}",
        s.proc.report()
    );
}

#[test]
fn a_full_or_read_only_state_directory_neither_stops_serving_nor_loses_what_was_saved() {
    let dir = tempfile::tempdir().unwrap();
    if !can_mount(dir.path()) {
        return;
    }
    let f = fixture(dir.path());
    let state = dir.path().join("state");
    let fs = Tmpfs::mount(&state, "512k").expect("mount");
    let (cfg, http) = config(dir.path(), &f);

    // 1. Full: nothing can be written. The server starts, checks, serves, stops cleanly.
    let filler = state.join("filler");
    {
        use std::io::Write;
        let mut w = std::fs::File::create(&filler).unwrap();
        while w.write_all(&[0u8; 4096]).is_ok() {}
    }
    let s = start_serving("full", &cfg, &http, dir.path(), &f);
    let log = s.proc.stderr_text();
    stop(s, "full");
    assert!(temp_files(&state).is_empty(), "{:?}", temp_files(&state));
    eprintln!(
        "full: warnings {:?}",
        log.lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect::<Vec<_>>()
    );

    // 2. Room again: state is written (a record, the API's torrent, counts).
    std::fs::remove_file(&filler).unwrap();
    let s = start_serving("room", &cfg, &http, dir.path(), &f);
    assert_eq!(api_add(&s, &f), 201, "{}", s.proc.report());
    assert!(api_has(&s, &f.other_hex));
    std::thread::sleep(Duration::from_secs(3));
    let used = metric(&s.http, QUOTA_USED);
    assert!(used >= 2.0 * PIECE as f64, "quota used {used}");
    stop(s, "room");

    // 3. Read-only: what was saved is loaded (no check, the API's torrent, the counts) and
    // served; nothing new can be saved, and that stops nothing.
    fs.remount("ro");
    let s = start_serving("read-only", &cfg, &http, dir.path(), &f);
    assert_eq!(
        metric(&s.http, "uringseed_hash_verified_pieces_total"),
        0.0,
        "the record was not trusted"
    );
    assert!(api_has(&s, &f.other_hex), "the API's torrent is gone");
    let restored = metric(&s.http, QUOTA_USED);
    assert!(restored >= used, "quota count {restored} < {used} saved");
    stop(s, "read-only");
    fs.remount("rw");
    assert!(temp_files(&state).is_empty(), "{:?}", temp_files(&state));
}

/// 100 restarts, each killed (-9) at a varied point: while starting, while checking, while
/// serving a leecher, while saving. Every tenth runs until it serves and is checked: what it
/// advertises, the API's torrent, and the quota count (at least what was counted 3 s before
/// the last checked kill: counts are saved every 2 s).
#[test]
fn a_hundred_kill_9_restarts_never_lose_state_or_trust_a_bad_record() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture(dir.path());
    let state = dir.path().join("state");
    let (cfg, http) = config(dir.path(), &f);
    let s = start_serving("first", &cfg, &http, dir.path(), &f);
    assert_eq!(api_add(&s, &f), 201, "{}", s.proc.report());
    stop(s, "first");

    let mut floor = 0.0;
    let mut kills = Vec::new();
    let t0 = std::time::Instant::now();
    for i in 0..100u64 {
        let name = format!("restart-{i}");
        if i % 10 == 9 {
            let mut s = start_serving(&name, &cfg, &http, dir.path(), &f);
            let restored = metric(&s.http, QUOTA_USED);
            assert!(
                restored >= floor,
                "{name}: quota count {restored} < {floor} counted before the last kill"
            );
            assert!(
                api_has(&s, &f.other_hex),
                "{name}: the API's torrent is gone"
            );
            std::thread::sleep(Duration::from_secs(3));
            floor = metric(&s.http, QUOTA_USED);
            s.proc.signal("KILL");
            assert!(s.proc.wait_exit(Duration::from_secs(5)).is_some());
            continue;
        }
        // Killed 0-1.2 s after it started (some before `listening:`, some while a leecher
        // is served); every fifth with its resume record gone, so killed while checking or
        // writing a new record.
        if i % 5 == 2 {
            let _ = std::fs::remove_dir_all(state.join("resume"));
        }
        let mut s = ApiServer::start(&name, &cfg, &http, &[], dir.path());
        let wait = Duration::from_millis((i * 37 % 100) * 12);
        if i % 3 == 0 {
            if let Ok(peer) = s.peer().parse::<SocketAddr>() {
                let ih = f.ih;
                std::thread::spawn(move || {
                    let _ = std::panic::catch_unwind(|| leech(peer, ih, 4));
                });
            }
        }
        std::thread::sleep(wait);
        s.proc.signal("KILL");
        assert!(s.proc.wait_exit(Duration::from_secs(5)).is_some());
        kills.push(wait);
    }
    let s = start_serving("last", &cfg, &http, dir.path(), &f);
    assert!(api_has(&s, &f.other_hex), "last: the API's torrent is gone");
    assert!(metric(&s.http, QUOTA_USED) >= floor);
    let left = temp_files(&state);
    stop(s, "last");
    eprintln!(
        "100 restarts in {:?}; temporary files left after them: {left:?}",
        t0.elapsed()
    );
    assert!(left.len() <= 2, "temporary files pile up: {left:?}");
}
