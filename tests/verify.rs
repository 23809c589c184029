//! Data checking: bad pieces withheld while good ones are served, fast resume (counted hashing,
//! not timed), torn resume records, data changing under the server, and `uringseed verify`.

mod common;

use common::raw::RawPeer;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use uringseed::config::Config;
use uringseed::metainfo::Torrent;
use uringseed::reasons::RejectReason;
use uringseed::server::ServerHandle;
use uringseed::storage::resume::record_path;
use uringseed::storage::Layout;
use uringseed::wire::message::{self, Block, Message};

const PL: u64 = 32768;

struct Setup {
    dir: tempfile::TempDir,
    torrent: Torrent,
    torrent_path: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let tree = write_tree(dir.path(), "tree");
        let torrent_path = dir.path().join("tree.torrent");
        let opts = uringseed::make::MakeOptions {
            path: tree,
            piece_length: Some(PL),
            quiet: true,
            ..Default::default()
        };
        let (bytes, torrent) = uringseed::make::make(&opts).unwrap();
        std::fs::write(&torrent_path, bytes).unwrap();
        Setup {
            dir,
            torrent,
            torrent_path,
        }
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.dir.path().join("tree").join(rel)
    }

    fn resume_dir(&self) -> PathBuf {
        self.dir.path().join("resume")
    }

    fn start(&self) -> ServerHandle {
        let mut config = Config::default();
        config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
        config.server.workers = 1;
        config.hashing.resume_dir = self.resume_dir();
        common::inproc::start_one(config, &self.torrent, self.dir.path())
    }

    /// Starts, waits for the check and returns (pieces hashed, pieces advertised), then stops.
    fn check_counts(&self) -> (u64, usize) {
        let s = self.start();
        let hashed = s
            .stats()
            .hash_pieces
            .load(std::sync::atomic::Ordering::Relaxed);
        let have = s
            .shared
            .torrent(&self.torrent.info_hash)
            .unwrap()
            .view
            .have
            .count();
        s.shutdown();
        (hashed, have)
    }

    fn index_of(&self, rel: &str) -> usize {
        self.torrent
            .files
            .iter()
            .position(|f| f.path.join("/") == rel)
            .unwrap()
    }
}

fn corrupt_byte(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0xff], at).unwrap();
}

#[test]
fn restart_skips_hashing_and_touching_a_file_rehashes_only_its_pieces() {
    let s = Setup::new();
    let n = s.torrent.num_pieces();
    assert_eq!(
        s.check_counts(),
        (n as u64, n),
        "first start hashes everything"
    );
    let record = record_path(&s.resume_dir(), &s.torrent.info_hash);
    let ino = || {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&record).unwrap().ino()
    };
    let written = ino();
    assert_eq!(s.check_counts(), (0, n), "unchanged tree: no hashing");
    // Nor a rewrite of the record (each is a new file renamed into place, two fsyncs).
    assert_eq!(ino(), written, "an unchanged record is not rewritten");
    // Touch one file: only the pieces holding its bytes are hashed again.
    let i = s.index_of("sub/deeper/c.dat");
    let f = std::fs::File::options()
        .write(true)
        .open(s.file("sub/deeper/c.dat"))
        .unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    drop(f);
    let want = Layout::new(&s.torrent).file_pieces(i).len() as u64;
    assert!(want > 0 && (want as usize) < n);
    assert_eq!(s.check_counts(), (want, n));
    assert_ne!(ino(), written, "the new stamp is recorded");
    assert_eq!(s.check_counts(), (0, n));
}

#[test]
fn torn_or_foreign_resume_records_are_ignored() {
    let s = Setup::new();
    let n = s.torrent.num_pieces();
    s.check_counts();
    let record = record_path(&s.resume_dir(), &s.torrent.info_hash);
    let bytes = std::fs::read(&record).unwrap();
    // A half-written record (as a crash during a non-atomic write would leave).
    std::fs::write(&record, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(s.check_counts(), (n as u64, n));
    // The check rewrote a good record.
    assert_eq!(s.check_counts(), (0, n));
    // A record claiming everything for data that was corrupted in place with its mtime
    // restored is still only as good as the stamps: ctime changed, so the file is hashed again.
    let path = s.file("a.bin");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    corrupt_byte(&path, 100);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let (hashed, have) = s.check_counts();
    assert!(hashed > 0);
    assert_eq!(have, n - 1);
}

#[test]
fn bad_pieces_are_withheld_and_refused_while_good_ones_are_served() {
    let s = Setup::new();
    // Piece 3 lies inside a.bin (300001 bytes, pieces of 32 KiB).
    corrupt_byte(&s.file("a.bin"), 3 * PL + 5);
    let server = s.start();
    let addr = server.local_addrs[0];
    let (mut p, _) = RawPeer::handshake(addr, s.torrent.info_hash, true);
    let bits = p.expect(message::BITFIELD);
    assert_eq!(bits[0], 0xff ^ 0x10, "piece 3 must not be advertised");
    p.send(&[Message::Interested]);
    p.expect(message::UNCHOKE);
    p.send(&[Message::Request(Block {
        index: 3,
        begin: 0,
        length: 16384,
    })]);
    p.expect(message::REJECT);
    assert_eq!(server.stats().rejected(RejectReason::Unavailable), 1);
    p.send(&[Message::Request(Block {
        index: 4,
        begin: 0,
        length: 16384,
    })]);
    assert_eq!(p.expect(message::PIECE)[..4], 4u32.to_be_bytes());

    // A real client gets every other piece, byte for byte.
    if have_libtorrent() {
        let save = s.dir.path().join("lt");
        let n = s.torrent.num_pieces();
        let out = lt_tool(&[
            "download",
            s.torrent_path.to_str().unwrap(),
            save.to_str().unwrap(),
            &addr.to_string(),
            "60",
            &(n - 1).to_string(),
        ]);
        let have = &out.iter().find(|(k, _)| k == "have").unwrap().1;
        let have: Vec<usize> = have.split(',').map(|x| x.parse().unwrap()).collect();
        assert_eq!(have, (0..n).filter(|&i| i != 3).collect::<Vec<_>>());
        let stream = |root: &Path| -> Vec<u8> {
            s.torrent
                .files
                .iter()
                .flat_map(|f| {
                    std::fs::read(root.join("tree").join(f.path.join("/"))).unwrap_or_default()
                })
                .collect()
        };
        let (want, got) = (stream(s.dir.path()), stream(&save));
        for piece in have {
            let r = Layout::new(&s.torrent).piece_range(piece).unwrap();
            assert!(
                got[r.start as usize..r.end as usize] == want[r.start as usize..r.end as usize],
                "piece {piece}"
            );
        }
    }
    server.shutdown();
}

#[test]
fn truncating_a_file_while_serving_withdraws_its_pieces_and_keeps_serving() {
    let s = Setup::new();
    let server = s.start();
    let addr = server.local_addrs[0];
    let (mut p, _) = RawPeer::handshake(addr, s.torrent.info_hash, true);
    p.send(&[Message::Interested]);
    p.expect(message::UNCHOKE);
    p.send(&[Message::Request(Block {
        index: 5,
        begin: 0,
        length: 16384,
    })]);
    p.expect(message::PIECE);
    // a.bin loses its tail under the server; pieces 0..=2 stay readable.
    std::fs::File::options()
        .write(true)
        .open(s.file("a.bin"))
        .unwrap()
        .set_len(3 * PL)
        .unwrap();
    p.send(&[Message::Request(Block {
        index: 5,
        begin: 16384,
        length: 16384,
    })]);
    p.expect(message::REJECT);
    // Now withdrawn: refused up front, and new peers are not told the piece is there.
    p.send(&[Message::Request(Block {
        index: 5,
        begin: 0,
        length: 16384,
    })]);
    p.expect(message::REJECT);
    p.send(&[Message::Request(Block {
        index: 1,
        begin: 0,
        length: 16384,
    })]);
    assert_eq!(p.expect(message::PIECE)[..4], 1u32.to_be_bytes());
    let (mut q, _) = RawPeer::handshake(addr, s.torrent.info_hash, true);
    let bits = q.expect(message::BITFIELD);
    assert_eq!(bits[0] & 0x04, 0, "withdrawn piece 5 still advertised");
    let stats = server.stats();
    assert!(
        stats
            .piece_read_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    assert_eq!(stats.rejected(RejectReason::ReadError), 1);
    assert_eq!(stats.rejected(RejectReason::Unavailable), 1);
    server.shutdown();
}

#[test]
fn verify_command_reports_bad_pieces_and_missing_files() {
    let s = Setup::new();
    let args = |json: bool| {
        let mut c = uringseed();
        c.arg("verify")
            .arg("--torrent")
            .arg(&s.torrent_path)
            .arg("--data")
            .arg(s.dir.path())
            .arg("-q");
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let ok = args(false);
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("result: OK"));
    corrupt_byte(&s.file("a.bin"), 7);
    std::fs::remove_file(s.file("z-last.bin")).unwrap();
    let bad = args(true);
    assert_eq!(bad.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["info_hash"], s.torrent.info_hash.to_hex());
    let last = Layout::new(&s.torrent).file_pieces(s.index_of("z-last.bin"));
    let mut want: Vec<usize> = vec![0];
    want.extend(last);
    assert_eq!(v["bad_pieces"], serde_json::json!(want));
    let files = v["files"].as_array().unwrap();
    let find = |name: &str| {
        files
            .iter()
            .find(|f| f["path"].as_str().unwrap().ends_with(name))
            .unwrap()
            .clone()
    };
    assert_eq!(find("a.bin")["bad_pieces"], 1);
    assert_eq!(find("z-last.bin")["problem"], "missing");
    let text = stdout(&args(false));
    assert!(
        text.contains("file tree/z-last.bin: missing") && text.contains("result: BAD"),
        "{text}"
    );
}
