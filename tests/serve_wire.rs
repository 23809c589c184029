//! The wire rules over real sockets: an in-process server on 127.0.0.1:0 and raw test peers,
//! on both I/O backends.

mod common;

use common::inproc::single_file_server;
use common::raw::RawPeer;
use common::*;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;
use uringseed::config::Config;
use uringseed::metainfo::InfoHash;
use uringseed::reasons::{DropReason, HandshakeKind, RejectReason};
use uringseed::server::ServerHandle;

use uringseed::wire::handshake::{reserved, Handshake};
use uringseed::wire::message::{self, Block, Message};

const BACKENDS: [&str; 2] = ["io_uring", "portable"];

struct Fixture {
    _dir: tempfile::TempDir,
    server: Option<ServerHandle>,
    addr: SocketAddr,
    info_hash: InfoHash,
    /// The torrent's bytes end to end.
    stream: Vec<u8>,
    piece_length: u64,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

fn fixture(backend: &str, tweak: impl FnOnce(&mut Config)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let tree = write_tree(dir.path(), "tree");
    let opts = uringseed::make::MakeOptions {
        path: tree,
        piece_length: Some(32768),
        quiet: true,
        ..Default::default()
    };
    let (_, torrent) = uringseed::make::make(&opts).unwrap();
    let mut stream = Vec::new();
    for f in &torrent.files {
        stream.extend(std::fs::read(dir.path().join("tree").join(f.path.join("/"))).unwrap());
    }
    let mut config = Config::default();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.workers = 2;
    config.server.io_backend = backend.into();
    config.hashing.resume_dir = dir.path().join("resume");
    tweak(&mut config);
    let server = common::inproc::start_one(config, &torrent, dir.path());
    assert_eq!(server.backend, backend);
    Fixture {
        addr: server.local_addrs[0],
        server: Some(server),
        _dir: dir,
        info_hash: torrent.info_hash,
        stream,
        piece_length: torrent.piece_length,
    }
}

fn block_payload(index: u32, begin: u32, data: &[u8]) -> Vec<u8> {
    let mut v = index.to_be_bytes().to_vec();
    v.extend(begin.to_be_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn serves_correct_blocks_and_refuses_bad_requests_with_reject() {
    for backend in BACKENDS {
        let f = fixture(backend, |_| {});
        let (mut p, hs) = RawPeer::handshake(f.addr, f.info_hash, true);
        assert_eq!(hs.info_hash, f.info_hash);
        assert!(hs.has(reserved::FAST));
        p.expect(message::HAVE_ALL);
        p.send(&[Message::Interested]);
        p.expect(message::UNCHOKE);
        // Every block of piece 1 and the short last block of the torrent.
        let pl = f.piece_length as u32;
        let last_piece = ((f.stream.len() as u64 - 1) / f.piece_length) as u32;
        let last_len = f.stream.len() as u32 - last_piece * pl;
        let mut wanted: Vec<Block> = (0..2)
            .map(|i| Block {
                index: 1,
                begin: i * 16384,
                length: 16384,
            })
            .collect();
        wanted.push(Block {
            index: last_piece,
            begin: 0,
            length: last_len.min(16384),
        });
        p.send(
            &wanted
                .iter()
                .map(|b| Message::Request(*b))
                .collect::<Vec<_>>(),
        );
        for b in &wanted {
            let start = (u64::from(b.index) * f.piece_length + u64::from(b.begin)) as usize;
            let payload = p.expect(message::PIECE);
            assert_eq!(
                payload,
                block_payload(
                    b.index,
                    b.begin,
                    &f.stream[start..start + b.length as usize]
                ),
                "{backend}"
            );
        }
        // Refused with BEP 6 reject, counted; the connection stays up.
        let bad = [
            Block {
                index: 0,
                begin: 0,
                length: 16385,
            },
            Block {
                index: last_piece + 1,
                begin: 0,
                length: 16384,
            },
            Block {
                index: 0,
                begin: pl - 1,
                length: 2,
            },
        ];
        for b in bad {
            p.send(&[Message::Request(b)]);
            let payload = p.expect(message::REJECT);
            assert_eq!(
                payload,
                [
                    b.index.to_be_bytes(),
                    b.begin.to_be_bytes(),
                    b.length.to_be_bytes()
                ]
                .concat()
            );
        }
        // A request cancelled in the same packet is never served: reject instead of piece.
        let c = Block {
            index: 0,
            begin: 0,
            length: 16384,
        };
        p.send(&[
            Message::Request(c),
            Message::Cancel(c),
            Message::Request(Block {
                index: 0,
                begin: 16384,
                length: 16384,
            }),
        ]);
        let (id, _) = p.recv().unwrap();
        assert_eq!(
            id,
            message::REJECT,
            "{backend}: cancelled request must not be served"
        );
        assert_eq!(p.expect(message::PIECE)[4..8], 16384u32.to_be_bytes());
        let stats = f.server.as_ref().unwrap().stats();
        assert_eq!(stats.rejected(RejectReason::Oversized), 1);
        assert_eq!(stats.rejected(RejectReason::OutOfRange), 2);
    }
}

#[test]
fn misbehaving_peers_are_dropped_without_harming_others() {
    for backend in BACKENDS {
        let f = fixture(backend, |c| c.server.handshake_timeout_secs = 1);
        let (mut good, _) = RawPeer::handshake(f.addr, f.info_hash, true);
        good.send(&[Message::Interested]);
        good.expect(message::UNCHOKE);
        // Oversized request from a peer without the fast extension: disconnected.
        let (mut plain, _) = RawPeer::handshake(f.addr, f.info_hash, false);
        plain.expect(message::BITFIELD);
        plain.send(&[Message::Interested]);
        plain.expect(message::UNCHOKE);
        plain.send(&[Message::Request(Block {
            index: 0,
            begin: 0,
            length: 1 << 17,
        })]);
        plain.expect_closed();
        // A 4 GiB length prefix.
        let (mut huge, _) = RawPeer::handshake(f.addr, f.info_hash, true);
        huge.s.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
        huge.expect_closed();
        // Garbage instead of a handshake (not a plain handshake, so taken for an encrypted one:
        // no synchronisation within the padding bound); unknown info-hash; silence past the
        // handshake timeout.
        let mut garbage = RawPeer::connect(f.addr);
        let junk = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(1000));
        garbage.s.write_all(junk.as_bytes()).unwrap();
        garbage.expect_closed();
        let mut unknown = RawPeer::connect(f.addr);
        unknown
            .s
            .write_all(&Handshake::ours(InfoHash([0xee; 20]), [1; 20]).encode())
            .unwrap();
        unknown.expect_closed();
        let mut silent = RawPeer::connect(f.addr);
        silent.expect_closed();
        // The honest peer is still served.
        good.send(&[Message::Request(Block {
            index: 0,
            begin: 0,
            length: 16384,
        })]);
        assert_eq!(good.expect(message::PIECE)[8..], f.stream[..16384]);
        let stats = f.server.as_ref().unwrap().stats();
        for reason in [
            DropReason::OversizedRequest,
            DropReason::MessageTooLong,
            DropReason::MseNoSync,
            DropReason::UnknownInfoHash,
            DropReason::HandshakeTimeout,
        ] {
            assert_eq!(stats.dropped(reason), 1, "{backend}: {reason}");
        }
    }
}

#[test]
fn connection_cap_refuses_extra_peers() {
    // Both held peers interested: neither may be evicted for the third (tests/eviction.rs has
    // the idle ones that are).
    let f = fixture("io_uring", |c| c.server.max_connections = 2);
    let (mut a, _) = RawPeer::handshake(f.addr, f.info_hash, true);
    let (mut b, _) = RawPeer::handshake(f.addr, f.info_hash, true);
    a.send(&[Message::Interested]);
    b.send(&[Message::Interested]);
    std::thread::sleep(Duration::from_millis(200));
    let mut c = RawPeer::connect(f.addr);
    c.expect_closed();
    assert_eq!(
        f.server
            .as_ref()
            .unwrap()
            .stats()
            .dropped(DropReason::ConnectionCap),
        1
    );
}

#[test]
fn choker_limits_upload_slots() {
    let f = fixture("io_uring", |c| c.server.upload_slots = 1);
    let (mut a, _) = RawPeer::handshake(f.addr, f.info_hash, true);
    a.send(&[Message::Interested]);
    a.expect(message::UNCHOKE);
    let (mut b, _) = RawPeer::handshake(f.addr, f.info_hash, true);
    b.send(&[Message::Interested]);
    // b waits; when a loses interest its slot passes to b at once.
    b.s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut chunk = [0u8; 1024];
    let mut early = Vec::new();
    while let Ok(n) = b.s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        early.extend_from_slice(&chunk[..n]);
    }
    b.buf = early;
    b.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    a.send(&[Message::NotInterested]);
    a.expect(message::CHOKE);
    b.expect(message::UNCHOKE);
}

#[test]
fn listens_on_ipv4_and_ipv6_loopback() {
    let f = fixture("io_uring", |c| {
        c.server.listen = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    });
    let addrs = f.server.as_ref().unwrap().local_addrs.clone();
    assert!(addrs[0].is_ipv4() && addrs[1].is_ipv6(), "{addrs:?}");
    for addr in addrs {
        let (mut p, hs) = RawPeer::handshake(addr, f.info_hash, true);
        assert_eq!(hs.info_hash, f.info_hash);
        p.expect(message::HAVE_ALL);
    }
}

/// Interested, unchoke, the first block: the peer is served byte-exact.
fn first_block_served(p: &mut RawPeer, f: &Fixture) {
    p.send(&[Message::Interested]);
    p.expect(message::UNCHOKE);
    p.send(&[Message::Request(Block {
        index: 0,
        begin: 0,
        length: 16384,
    })]);
    assert_eq!(p.expect(message::PIECE)[8..], f.stream[..16384]);
}

#[test]
fn encryption_policies_over_real_sockets() {
    use uringseed::config::Encryption;
    use uringseed::wire::mse::{CRYPTO_PLAINTEXT, CRYPTO_RC4};
    let both = CRYPTO_RC4 | CRYPTO_PLAINTEXT;
    for backend in BACKENDS {
        // Enabled (the default): RC4 for a peer that offers only RC4, plaintext payload for one
        // that offers both, and plain handshakes as before.
        let f = fixture(backend, |_| {});
        let (mut p, method, hs) = RawPeer::mse_handshake(f.addr, f.info_hash, CRYPTO_RC4).unwrap();
        assert_eq!((method, hs.info_hash), (CRYPTO_RC4, f.info_hash));
        first_block_served(&mut p, &f);
        let (mut q, method, _) = RawPeer::mse_handshake(f.addr, f.info_hash, both).unwrap();
        assert_eq!(method, CRYPTO_PLAINTEXT);
        first_block_served(&mut q, &f);
        let (mut plain, _) = RawPeer::handshake(f.addr, f.info_hash, true);
        first_block_served(&mut plain, &f);
        // An encrypted handshake for a torrent not served here is refused.
        assert!(RawPeer::mse_handshake(f.addr, InfoHash([0xee; 20]), both).is_err());
        let stats = f.server.as_ref().unwrap().stats();
        for (kind, n) in [
            (HandshakeKind::MseRc4, 1),
            (HandshakeKind::MsePlaintext, 1),
            (HandshakeKind::Plaintext, 1),
        ] {
            assert_eq!(stats.handshakes(kind), n, "{backend}: {kind}");
        }
        assert_eq!(stats.dropped(DropReason::UnknownInfoHash), 1, "{backend}");
        drop(f);

        // Required: plain handshakes and plaintext-only offers are refused; RC4 is chosen
        // even when plaintext is offered too.
        let f = fixture(backend, |c| c.server.encryption = Encryption::Required);
        let mut plain = RawPeer::connect(f.addr);
        plain
            .s
            .write_all(&Handshake::ours(f.info_hash, [9; 20]).encode())
            .unwrap();
        plain.expect_closed();
        assert!(
            plain.buf.is_empty(),
            "{backend}: answered a plain handshake"
        );
        assert!(RawPeer::mse_handshake(f.addr, f.info_hash, CRYPTO_PLAINTEXT).is_err());
        let (mut p, method, _) = RawPeer::mse_handshake(f.addr, f.info_hash, both).unwrap();
        assert_eq!(method, CRYPTO_RC4);
        first_block_served(&mut p, &f);
        let stats = f.server.as_ref().unwrap().stats();
        assert_eq!(
            stats.dropped(DropReason::EncryptionRequired),
            1,
            "{backend}"
        );
        assert_eq!(stats.dropped(DropReason::MseNoCommonMethod), 1, "{backend}");
        drop(f);

        // Disabled: an encrypted handshake is just a bad one.
        let f = fixture(backend, |c| c.server.encryption = Encryption::Disabled);
        assert!(RawPeer::mse_handshake(f.addr, f.info_hash, both).is_err());
        let (mut plain, _) = RawPeer::handshake(f.addr, f.info_hash, true);
        first_block_served(&mut plain, &f);
        let stats = f.server.as_ref().unwrap().stats();
        assert_eq!(stats.dropped(DropReason::BadHandshake), 1, "{backend}");
    }
}

/// Drops `path`'s pages from the page cache (those the server has mapped stay). False, with a
/// message, where the file system keeps them (tmpfs: the page cache is the storage), so the
/// byte at `probe` can still be read without waiting.
fn drop_from_cache(path: &std::path::Path, probe: u64) -> bool {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: advice on an open descriptor; no memory is passed.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0);
    let mut byte = 0u8;
    let iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    // SAFETY: one iovec describing one writable byte on the stack.
    let cached = unsafe {
        libc::preadv2(
            f.as_raw_fd(),
            &iov,
            1,
            probe as libc::off_t,
            libc::RWF_NOWAIT,
        )
    } == 1;
    if cached {
        eprintln!(
            "{}: the file system keeps the file cached; the cold-read checks cannot run here",
            path.display()
        );
    }
    !cached
}

/// A run that is in the page cache goes out from the data file's mapping; one that is not is
/// read first (and then served the same bytes), and its connection keeps reading for a while;
/// on both backends.
#[test]
fn cached_runs_are_sent_without_a_copy_and_cold_ones_are_read() {
    use std::sync::atomic::Ordering;
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let (server, torrent, path, data) = single_file_server(dir.path(), backend, 1 << 20, 65536);
        let stats = server.stats();
        let peer = || {
            let (mut p, _) = RawPeer::handshake(server.local_addrs[0], torrent.info_hash, true);
            p.send(&[Message::Interested]);
            p.expect(message::UNCHOKE);
            p
        };
        let fetch = |p: &mut RawPeer, index: u32| {
            p.send(&[Message::Request(Block {
                index,
                begin: 0,
                length: 16384,
            })]);
            let got = p.expect(message::PIECE);
            let at = index as usize * 65536;
            assert_eq!(got[8..], data[at..at + 16384], "{backend}: piece {index}");
        };
        let zero_copy = || stats.zero_copy_bytes.load(Ordering::Relaxed);
        let reads = || stats.hist.piece_read_seconds.get_sample_count();
        // Drop the file from the page cache (the check read it all): the first request is
        // read from disk.
        let reads0 = reads();
        if !drop_from_cache(&path, 8 * 65536) {
            return;
        }
        let mut p = peer();
        fetch(&mut p, 8);
        assert_eq!((zero_copy(), reads()), (0, reads0 + 1), "{backend}");
        // That connection is now streaming from disk and keeps reading for a while (so the
        // kernel's readahead keeps going), although the block is cached now...
        fetch(&mut p, 8);
        assert_eq!((zero_copy(), reads()), (0, reads0 + 2), "{backend}");
        // ...while another connection gets it straight from the page cache.
        let mut q = peer();
        fetch(&mut q, 8);
        assert_eq!((zero_copy(), reads()), (16384, reads0 + 2), "{backend}");
        server.shutdown();
    }
}

/// A connection that had to read keeps reading for `COLD_STREAK_BYTES`, then tries the page
/// cache again (and is served from it while the data is cached).
#[test]
fn the_read_streak_after_a_cold_run_ends() {
    use std::sync::atomic::Ordering;
    use uringseed::io::conn::COLD_STREAK_BYTES;
    const PIECE: usize = 1 << 20;
    let streak_pieces = (COLD_STREAK_BYTES as usize).div_ceil(PIECE);
    let dir = tempfile::tempdir().unwrap();
    let (server, torrent, path, data) = single_file_server(
        dir.path(),
        "io_uring",
        (streak_pieces + 2) * PIECE,
        PIECE as u64,
    );
    let stats = server.stats();
    let zero_copy = || stats.zero_copy_bytes.load(Ordering::Relaxed);
    let (mut p, _) = RawPeer::handshake(server.local_addrs[0], torrent.info_hash, true);
    p.send(&[Message::Interested]);
    p.expect(message::UNCHOKE);
    // A whole piece: 64 requests at once, so the server sends it as one 1 MiB run.
    let mut fetch_piece = |index: u32| {
        let blocks: Vec<Message> = (0..PIECE as u32 / 16384)
            .map(|i| {
                Message::Request(Block {
                    index,
                    begin: i * 16384,
                    length: 16384,
                })
            })
            .collect();
        p.send(&blocks);
        for i in 0..PIECE / 16384 {
            let got = p.expect(message::PIECE);
            let at = index as usize * PIECE + i * 16384;
            assert_eq!(got[8..], data[at..at + 16384], "piece {index} block {i}");
        }
    };
    if !drop_from_cache(&path, 0) {
        return;
    }
    // Cold: piece 0 is read, and the streak starts; it covers the next COLD_STREAK_BYTES even
    // though what those reads bring in is cached by then.
    for index in 0..=streak_pieces as u32 {
        fetch_piece(index);
    }
    assert_eq!(zero_copy(), 0);
    // Over: piece 1, cached now, goes out from the mapping.
    fetch_piece(1);
    assert!(
        zero_copy() > 0 && zero_copy() <= PIECE as u64,
        "zero-copy bytes {}",
        zero_copy()
    );
    server.shutdown();
}

/// A run across two files is always read (no single mapping holds it), but that says nothing
/// about the page cache: the next run inside one cached file still goes out without a copy.
#[test]
fn a_run_across_files_does_not_start_a_streak_of_reads() {
    use std::sync::atomic::Ordering;
    for backend in BACKENDS {
        let f = fixture(backend, |_| {});
        let (mut p, _) = RawPeer::handshake(f.addr, f.info_hash, true);
        p.expect(message::HAVE_ALL);
        p.send(&[Message::Interested]);
        p.expect(message::UNCHOKE);
        let stats = f.server.as_ref().unwrap().stats();
        // Piece 9 starts at 294,912; a.bin ends at 300,001: its first block spans two files.
        let across = Block {
            index: 9,
            begin: 0,
            length: 16384,
        };
        p.send(&[Message::Request(across)]);
        let at = 9 * f.piece_length as usize;
        assert_eq!(p.expect(message::PIECE)[8..], f.stream[at..at + 16384]);
        assert_eq!(
            stats.zero_copy_bytes.load(Ordering::Relaxed),
            0,
            "{backend}"
        );
        let inside = Block {
            index: 2,
            begin: 0,
            length: 16384,
        };
        p.send(&[Message::Request(inside)]);
        let at = 2 * f.piece_length as usize;
        assert_eq!(p.expect(message::PIECE)[8..], f.stream[at..at + 16384]);
        assert_eq!(
            stats.zero_copy_bytes.load(Ordering::Relaxed),
            16384,
            "{backend}: a cached run in one file went out through a read"
        );
    }
}
