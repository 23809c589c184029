//! Faults and crash safety of the `uringseed` binary: data files deleted, truncated or made
//! unreadable while serving and at restart, trackers that refuse or hang, metrics scrapers that
//! hang, running out of file descriptors, and kill -9 at any point of the startup check with
//! the fast-resume records it leaves (or does not leave) behind.
//!
//! Each test starts `uringseed serve --torrent T --data D --listen 127.0.0.1:0 --metrics
//! 127.0.0.1:0` (its own data, so its own info-hash and resume record) and stops it by PID.

mod common;

use common::raw::RawPeer;
use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uringseed::metainfo::InfoHash;
use uringseed::wire::message::{self, Block, Message};

// ---------------------------------------------------------------------------------------------
// Helpers.

/// The resume directory `common::uringseed()` gives the binary.
fn resume_dir() -> PathBuf {
    let cmd = uringseed();
    let state = cmd
        .get_envs()
        .find(|(k, _)| *k == "XDG_STATE_HOME")
        .and_then(|(_, v)| v)
        .expect("XDG_STATE_HOME set by common::uringseed()");
    PathBuf::from(state).join("uringseed/resume")
}

/// A fast peer, interested and unchoked. `bitfield`: the server's bitfield, None for have_all.
fn fast_peer(addr: SocketAddr, ih: InfoHash) -> (RawPeer, Option<Vec<u8>>) {
    let (mut p, _) = RawPeer::handshake(addr, ih, true);
    let have = loop {
        let (id, payload) = p.recv().expect("closed after the handshake");
        match id {
            message::HAVE_ALL => break None,
            message::BITFIELD => break Some(payload),
            message::HAVE_NONE => break Some(Vec::new()),
            _ => {}
        }
    };
    p.send(&[Message::Interested]);
    p.expect(message::UNCHOKE);
    (p, have)
}

/// A peer without the fast extension, interested and unchoked; returns its bitfield too.
fn plain_peer(addr: SocketAddr, ih: InfoHash) -> (RawPeer, Vec<u8>) {
    let (mut p, _) = RawPeer::handshake(addr, ih, false);
    let bits = p.expect(message::BITFIELD);
    p.send(&[Message::Interested]);
    p.expect(message::UNCHOKE);
    (p, bits)
}

fn has_bit(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
}

/// Requests `len` bytes at the start of piece `index`: Ok(data) or Err(()) for a reject.
fn request(p: &mut RawPeer, index: u32, len: u32) -> Result<Vec<u8>, ()> {
    let b = Block {
        index,
        begin: 0,
        length: len,
    };
    p.send(&[Message::Request(b)]);
    loop {
        let (id, payload) = p
            .recv()
            .expect("closed while waiting for a piece or reject");
        match id {
            message::PIECE => {
                assert_eq!(payload[..4], index.to_be_bytes());
                return Ok(payload[8..].to_vec());
            }
            message::REJECT => {
                assert_eq!(payload[..4], index.to_be_bytes());
                return Err(());
            }
            _ => {}
        }
    }
}

/// Waits (at most `limit`) for `f` to hold.
fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    t.elapsed()
}

/// True if a BitTorrent handshake to `addr` is answered within 1 s (never panics).
fn answers_handshake(addr: SocketAddr, ih: InfoHash) -> bool {
    let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let mut id = *b"-FD0001-recovery0000";
    id[12..].copy_from_slice(format!("{:08}", NEXT.fetch_add(1, Ordering::Relaxed)).as_bytes());
    let hs = uringseed::wire::Handshake::ours(ih, id);
    let mut theirs = [0u8; 68];
    c.write_all(&hs.encode()).is_ok() && c.read_exact(&mut theirs).is_ok()
}

// ---------------------------------------------------------------------------------------------
// Data files failing under the server, and at restart.

const PL: u32 = 16384;

#[test]
fn data_files_deleted_truncated_or_unreadable_while_serving_and_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root = data.join("faulty");
    std::fs::create_dir_all(&root).unwrap();
    // Whole pieces per file: a = pieces 0..12, b = 12..32, c = 32..44, d = 44..56.
    let files = [
        ("a-deleted.bin", 12u32),
        ("b-truncated.bin", 20),
        ("c-unreadable.bin", 12),
        ("d-intact.bin", 12),
    ];
    let mut content = Vec::new();
    for (i, (name, pieces)) in files.iter().enumerate() {
        let bytes = pseudo_random((*pieces * PL) as usize, 7000 + i as u64);
        std::fs::write(root.join(name), &bytes).unwrap();
        content.extend(bytes);
    }
    let piece = |i: u32| &content[(i * PL) as usize..((i + 1) * PL) as usize];
    let torrent = dir.path().join("faulty.torrent");
    let ih = hex_hash(&make_torrent(&root, &torrent, &["--piece-length", "16384"]));

    let mut s = serve("serve", &torrent, &data, &[], &[], dir.path());
    assert!(s.ready().contains("(56 of 56 pieces good)"));
    let (mut p, have) = fast_peer(s.addr, ih);
    assert_eq!(have, None, "have_all");
    for i in [5, 20, 35, 50] {
        assert_eq!(
            request(&mut p, i, PL).unwrap(),
            piece(i),
            "piece {i} before the faults"
        );
    }

    // The faults: a deleted, b truncated to 5 of its 20 pieces, c chmod 000.
    std::fs::remove_file(root.join("a-deleted.bin")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("b-truncated.bin"))
        .unwrap()
        .set_len(5 * u64::from(PL))
        .unwrap();
    let c = root.join("c-unreadable.bin");
    std::fs::set_permissions(&c, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();

    // The server reads through the descriptors it opened after its check: a deleted file
    // (still open, so its inode lives on) and a chmod 000 file are still served, with the
    // verified bytes.
    assert_eq!(
        request(&mut p, 6, PL).unwrap(),
        piece(6),
        "deleted file, open fd"
    );
    assert_eq!(
        request(&mut p, 36, PL).unwrap(),
        piece(36),
        "chmod 000, open fd"
    );
    assert_eq!(request(&mut p, 51, PL).unwrap(), piece(51), "intact file");
    // b: what is left of it is served; past the new end, a reject (read_error) and the piece
    // is withdrawn, then a reject (unavailable).
    assert_eq!(
        request(&mut p, 14, PL).unwrap(),
        piece(14),
        "truncated file, kept part"
    );
    assert_eq!(request(&mut p, 20, PL), Err(()), "read error: reject");
    assert_eq!(request(&mut p, 20, PL), Err(()), "withdrawn: reject");
    // A peer without the fast extension: sees piece 20 withdrawn; asking for 21 (still
    // advertised, unreadable) drops it, and so does asking for a withdrawn piece.
    let (mut q, bits) = plain_peer(s.addr, ih);
    let missing: Vec<usize> = (0..56).filter(|&i| !has_bit(&bits, i)).collect();
    assert_eq!(missing, [20], "bitfield after the first read error");
    q.send(&[Message::Request(Block {
        index: 21,
        begin: 0,
        length: PL,
    })]);
    q.expect_closed();
    let (mut r, bits) = plain_peer(s.addr, ih);
    let missing: Vec<usize> = (0..56).filter(|&i| !has_bit(&bits, i)).collect();
    assert_eq!(missing, [20, 21]);
    r.send(&[Message::Request(Block {
        index: 20,
        begin: 0,
        length: PL,
    })]);
    r.expect_closed();
    // The fast peer is still connected and served; everything is counted.
    assert_eq!(request(&mut p, 44, PL).unwrap(), piece(44));
    for (series, want) in [
        ("uringseed_piece_read_errors_total", 2.0),
        ("uringseed_pieces_withdrawn_total", 2.0),
        (
            "uringseed_requests_rejected_total{reason=\"read_error\"}",
            1.0,
        ),
        (
            "uringseed_requests_rejected_total{reason=\"unavailable\"}",
            1.0,
        ),
        (
            "uringseed_peers_dropped_total{reason=\"piece_read_error\"}",
            1.0,
        ),
        (
            "uringseed_peers_dropped_total{reason=\"unavailable_piece\"}",
            1.0,
        ),
    ] {
        assert_eq!(s.metric(series), want, "{series}");
    }
    assert_eq!(
        http_get(&s.metrics, "/healthz", Duration::from_secs(5))
            .unwrap()
            .0,
        200
    );
    assert!(s.alive());
    let log = s.proc.stderr_text();
    assert!(log.contains("piece read failed"), "read error not logged");
    assert!(log.contains("piece withdrawn"), "withdrawal not logged");
    drop((p, q, r));
    let took = s.stop();
    eprintln!("faults while serving: handled; SIGTERM exit in {took:?}");

    // Restart with a missing, b short and c chmod 000: their pieces are not advertised.
    // As root, chmod 000 does not stop reading (CAP_DAC_OVERRIDE): c is still served.
    let root_user = unsafe { libc::geteuid() } == 0;
    let mut s = serve("restart", &torrent, &data, &[], &[], dir.path());
    let line = s.ready();
    let plain_good = if root_user { 24 } else { 12 };
    assert!(
        line.contains(&format!("({plain_good} of 56 pieces good)")),
        "root: {root_user}: {line}"
    );
    eprintln!("restart (root: {root_user}): ready: {line}");
    let log = s.proc.stderr_text();
    assert!(
        log.contains("a-deleted.bin"),
        "missing file not named in the log"
    );
    assert!(
        log.contains("b-truncated.bin"),
        "short file not named in the log"
    );
    s.stop();
    // Without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (setpriv, when we are root), chmod 000
    // makes c unreadable: only d's 12 pieces may be advertised.
    let wrapper: &[&str] = if root_user {
        if !common::have("setpriv") {
            return;
        }
        &[
            "setpriv",
            "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search",
            "--",
        ]
    } else {
        &[]
    };
    // (1) The resume record of the restart above vouches for c's pieces (c has not changed
    // since: same size, mtime, ctime, inode), but c cannot be opened now.
    let mut s = serve(
        "unreadable-with-record",
        &torrent,
        &data,
        &[],
        wrapper,
        dir.path(),
    );
    let line_with_record = s.ready();
    let (mut p, have) = fast_peer(s.addr, ih);
    let advertised_with_record: Vec<u32> = match &have {
        None => (0..56).collect(),
        Some(bits) => (0..56).filter(|&i| has_bit(bits, i as usize)).collect(),
    };
    let c_request = request(&mut p, 33, PL);
    let read_errors = s.metric("uringseed_piece_read_errors_total");
    drop(p);
    s.stop();
    eprintln!(
        "restart, c unreadable, resume record vouching for c: ready: {line_with_record}; \
         pieces advertised: {}; request for c's piece 33: {c_request:?}; piece read errors: \
         {read_errors}",
        advertised_with_record.len()
    );
    // (2) Without a resume record.
    std::fs::remove_file(uringseed::storage::resume::record_path(&resume_dir(), &ih)).unwrap();
    let mut s = serve("unreadable", &torrent, &data, &[], wrapper, dir.path());
    let line = s.ready();
    eprintln!("restart, c unreadable, no resume record: ready: {line}");
    assert!(line.contains("(12 of 56 pieces good)"), "{line}");
    assert!(
        s.proc.stderr_text().contains("c-unreadable.bin"),
        "unreadable file not named in the log:\n{}",
        s.proc.report()
    );
    let (mut p, have) = fast_peer(s.addr, ih);
    let have = have.expect("a bitfield, not have_all");
    let advertised: Vec<u32> = (0..56).filter(|&i| has_bit(&have, i as usize)).collect();
    assert_eq!(advertised, (44..56).collect::<Vec<_>>());
    assert_eq!(request(&mut p, 33, PL), Err(()), "unreadable: reject");
    assert_eq!(request(&mut p, 3, PL), Err(()), "missing: reject");
    assert_eq!(request(&mut p, 45, PL).unwrap(), piece(45));
    assert_eq!(
        s.metric("uringseed_requests_rejected_total{reason=\"unavailable\"}"),
        2.0
    );
    assert_eq!(s.metric("uringseed_piece_read_errors_total"), 0.0);
    drop(p);
    s.stop();
    // Back to (1): the pieces of a file that cannot be opened must not be advertised, whatever
    // the resume record says.
    assert!(
        line_with_record.contains("(12 of 56 pieces good)")
            && advertised_with_record == (44..56).collect::<Vec<_>>(),
        "with c-unreadable.bin unreadable (open fails with EACCES) but unchanged since the \
         resume record, the restarted server reports `{line_with_record}` and advertises \
         {} pieces (c's 32..44 included); a request for piece 33 then fails to read \
         ({c_request:?}, {read_errors} piece read error(s)) and only then is the piece \
         withdrawn. src/torrent.rs check_and_open: pieces trusted from the record keep their \
         have bit although File::open of their file failed (files[i] = None)",
        advertised_with_record.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Trackers that refuse connections or never answer.

/// A TCP listener that accepts connections and never answers them (until dropped).
struct HangingServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl HangingServer {
    fn start() -> HangingServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, st) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        held.push(c);
                        a.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => break,
                }
            }
        });
        HangingServer {
            addr,
            accepted,
            stop,
        }
    }
}

impl Drop for HangingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn unreachable_and_hanging_trackers_do_not_stop_serving_or_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root = write_tree(&data, "tr");
    std::fs::write(root.join("unique.bin"), pseudo_random(50_000, 8101)).unwrap();
    // A closed port: bound, then closed.
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hang_b = HangingServer::start();
    let hang_c = HangingServer::start();
    let url = |port: u16| format!("http://127.0.0.1:{port}/announce");
    // One torrent per server (--source makes the info-hashes differ).
    let mk = |label: &str, tracker: String| {
        let t = dir.path().join(format!("{label}.torrent"));
        let ih = make_torrent(&root, &t, &["-t", &tracker, "--source", label]);
        (t, hex_hash(&ih))
    };
    let (ta, iha) = mk("closed", url(closed_port));
    let (tb, ihb) = mk("hanging", url(hang_b.addr.port()));
    let (tc, _) = mk("hanging-long", url(hang_c.addr.port()));
    let quick = dir.path().join("quick-tracker-timeout.toml");
    std::fs::write(&quick, "[tracker]\ntimeout_secs = 2\n").unwrap();
    let q = quick.to_str().unwrap();
    let t0 = Instant::now();
    let mut a = serve("closed", &ta, &data, &["--config", q], &[], dir.path());
    let mut b = serve("hanging", &tb, &data, &["--config", q], &[], dir.path());
    // c: the default 20 s announce timeout, stopped while its first announce hangs.
    let mut c = serve("hanging-long", &tc, &data, &[], &[], dir.path());
    a.ready();
    b.ready();
    c.ready();
    wait_for(
        Duration::from_secs(10),
        "c's announce to reach the tracker",
        || hang_c.accepted.load(Ordering::SeqCst) >= 1,
    );
    let took = c.stop();
    eprintln!("SIGTERM during a hanging announce: exit 0 in {took:?}");

    // Both serve a raw peer normally while their trackers fail.
    let stream: Vec<u8> = std::fs::read(root.join("a.bin")).unwrap();
    for (s, ih) in [(&a, iha), (&b, ihb)] {
        let (mut p, have) = fast_peer(s.addr, ih);
        assert_eq!(have, None);
        let got = request(&mut p, 0, 16384).unwrap();
        assert_eq!(got, stream[..16384]);
    }
    let unreachable = "uringseed_tracker_announces_total{result=\"unreachable\"}";
    let first_a = wait_for(Duration::from_secs(10), "closed port: unreachable", || {
        a.metric(unreachable) >= 1.0
    });
    let first_b = wait_for(Duration::from_secs(10), "hanging: unreachable", || {
        b.metric(unreachable) >= 1.0
    });
    assert!(hang_b.accepted.load(Ordering::SeqCst) >= 1);
    // The next attempt comes after the first backoff (15 s).
    wait_for(
        Duration::from_secs(30),
        "closed port: unreachable again",
        || a.metric(unreachable) >= 2.0,
    );
    wait_for(
        Duration::from_secs(30),
        "hanging: unreachable again",
        || b.metric(unreachable) >= 2.0,
    );
    let grown = t0.elapsed();
    for s in [&a, &b] {
        assert_eq!(s.metric("uringseed_trackers{state=\"failing\"}"), 1.0);
        assert_eq!(
            http_get(&s.metrics, "/healthz", Duration::from_secs(5))
                .unwrap()
                .0,
            200
        );
    }
    assert!(a.alive() && b.alive());
    let (stop_a, stop_b) = (a.stop(), b.stop());
    eprintln!(
        "trackers: first unreachable after {first_a:?} (closed port) / {first_b:?} (hanging, \
         2 s timeout); both at 2 after {grown:?}; SIGTERM exits in {stop_a:?} / {stop_b:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics scrapers that connect and never send a request.

#[test]
fn hanging_metrics_scrapers_do_not_block_a_normal_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root = write_tree(&data, "ms");
    std::fs::write(root.join("unique.bin"), pseudo_random(50_000, 8201)).unwrap();
    let torrent = dir.path().join("ms.torrent");
    let ih = hex_hash(&make_torrent(&root, &torrent, &[]));
    let mut s = serve("serve", &torrent, &data, &[], &[], dir.path());
    s.ready();
    assert!(http_get(&s.metrics, "/metrics", Duration::from_secs(2)).is_ok());
    // 20 connections that never send a request line.
    let hanging: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&s.metrics).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let scrape = http_get(&s.metrics, "/metrics", Duration::from_secs(2));
    let scrape_took = t.elapsed();
    // Peers are served meanwhile.
    let (mut p, _) = fast_peer(s.addr, ih);
    let a = std::fs::read(root.join("a.bin")).unwrap();
    assert_eq!(request(&mut p, 0, 16384).unwrap(), a[..16384]);
    // Once the hanging connections time out (the endpoint's 5 s I/O timeout), scrapes work.
    let t = Instant::now();
    let recovered = loop {
        if let Ok((200, _)) = http_get(&s.metrics, "/metrics", Duration::from_secs(2)) {
            break Some(t.elapsed());
        }
        if t.elapsed() > Duration::from_secs(10) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(hanging);
    assert!(s.alive());
    s.stop();
    eprintln!(
        "with 20 hanging scrapers: scrape -> {:?} after {scrape_took:?}; scrapes answered again \
         {recovered:?} later",
        scrape.as_ref().map(|(c, b)| (c, b.len()))
    );
    assert!(recovered.is_some(), "the metrics endpoint never recovered");
    assert!(
        matches!(scrape, Ok((200, _))) && scrape_took < Duration::from_secs(2),
        "with 20 scrapers connected and silent, a normal scrape got {scrape:?} after \
         {scrape_took:?} (want 200 within 2 s): src/metrics.rs serves at most MAX_CONCURRENT = \
         16 connections at once and closes every further one at once, and each silent one holds \
         its slot for IO_TIMEOUT = 5 s per read; scrapes were refused for {recovered:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Out of file descriptors.

#[test]
fn out_of_file_descriptors_does_not_spin_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let root = write_tree(&data, "fd");
    std::fs::write(root.join("unique.bin"), pseudo_random(50_000, 8301)).unwrap();
    let torrent = dir.path().join("fd.torrent");
    let ih = hex_hash(&make_torrent(&root, &torrent, &[]));
    let wrapper = ["/bin/sh", "-c", "ulimit -n 64; exec \"$0\" \"$@\""];
    let mut s = serve("serve", &torrent, &data, &[], &wrapper, dir.path());
    s.ready();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.pid())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 64 ")),
        "{limits}"
    );
    // Handshake until one is not answered: the server cannot accept any more (EMFILE); the
    // connection waits in the listen backlog.
    let mut held = Vec::new();
    let mut answered = 0;
    for n in 0..200 {
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut id = *b"-FD0001-000000000000";
        id[12..].copy_from_slice(format!("{n:08}").as_bytes());
        c.write_all(&uringseed::wire::Handshake::ours(ih, id).encode())
            .unwrap();
        let mut hs = [0u8; 68];
        let ok = c.read_exact(&mut hs).is_ok();
        held.push(c);
        if !ok {
            break;
        }
        answered += 1;
    }
    assert!(
        answered < 200,
        "200 connections accepted under ulimit -n 64"
    );
    // A few more wait in the backlog too.
    for _ in 0..5 {
        held.push(TcpStream::connect(s.addr).unwrap());
    }
    wait_for(Duration::from_secs(5), "the EMFILE warning", || {
        s.proc.stderr_text().contains("Too many open files")
    });
    let cpu0 = cpu_secs(s.pid());
    std::thread::sleep(Duration::from_secs(2));
    let cpu = cpu_secs(s.pid()) - cpu0;
    let warnings = s.proc.stderr_text().matches("accept failed").count();
    eprintln!(
        "out of fds: {answered} connections accepted, then EMFILE; server CPU over 2 s held: \
         {cpu:.2} s; {warnings} 'accept failed' warnings logged"
    );
    assert!(
        cpu < 0.5,
        "the server spins while out of fds: {cpu:.2} s of CPU in 2 s"
    );
    assert!(s.alive());
    drop(held);
    // Recovery: a new peer handshakes (retried: the backlog drains first) and is served.
    let t = Instant::now();
    wait_for(
        Duration::from_secs(10),
        "a handshake after the fds were freed",
        || answers_handshake(s.addr, ih),
    );
    let recovered = t.elapsed();
    let (mut p, _) = fast_peer(s.addr, ih);
    let a = std::fs::read(root.join("a.bin")).unwrap();
    assert_eq!(request(&mut p, 0, 16384).unwrap(), a[..16384]);
    drop(p);
    assert_eq!(
        http_get(&s.metrics, "/healthz", Duration::from_secs(5))
            .unwrap()
            .0,
        200
    );
    eprintln!("out of fds: a new peer was served {recovered:?} after the connections closed");
    s.stop();
}

// ---------------------------------------------------------------------------------------------
// Crash safety: kill -9 during and after the startup check; stale and torn resume records.

#[test]
fn kill_9_during_and_after_the_check_and_damaged_resume_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // 300 MiB: 1 MiB of pseudo-random bytes, each copy stamped with its index.
    let file = data.join("crash.bin");
    {
        let chunk = pseudo_random(1 << 20, 8401);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        for i in 0u64..300 {
            f.write_all(&i.to_le_bytes()).unwrap();
            f.write_all(&chunk[8..]).unwrap();
        }
    }
    let torrent = dir.path().join("crash.torrent");
    let hex = make_torrent(&file, &torrent, &[]);
    let ih = hex_hash(&hex);
    let pieces = uringseed::metainfo::load(&torrent).unwrap().num_pieces() as f64;
    let record = uringseed::storage::resume::record_path(&resume_dir(), &ih);
    let tmp = record.with_file_name(format!("{hex}.resume.tmp12345"));
    let stale_tmps = || -> Vec<String> {
        std::fs::read_dir(resume_dir())
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&hex) && n.contains(".tmp"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let hashed = "uringseed_hash_verified_pieces_total";
    let first_piece = {
        let mut f = std::fs::File::open(&file).unwrap();
        let mut b = vec![0u8; 16384];
        f.read_exact(&mut b).unwrap();
        b
    };
    let serves = |s: &Serve| {
        let (mut p, have) = fast_peer(s.addr, ih);
        assert_eq!(have, None, "every piece advertised");
        assert_eq!(request(&mut p, 0, 16384).unwrap(), first_piece);
    };

    // 1. kill -9 right after `listening:`, while the data is being checked: no record.
    let s = serve("killed-in-check", &torrent, &data, &[], &[], dir.path());
    let killed_at = Instant::now();
    s.kill9();
    assert!(
        !record.exists(),
        "a resume record exists although the check was killed ({:?} after listening)",
        killed_at.elapsed()
    );
    assert!(
        stale_tmps().is_empty(),
        "temporary files left: {:?}",
        stale_tmps()
    );
    // 2. Restart: checks everything again, then serves.
    let mut s = serve("after-kill-in-check", &torrent, &data, &[], &[], dir.path());
    let t = Instant::now();
    s.ready();
    let full_check = t.elapsed();
    assert_eq!(
        s.metric(hashed),
        pieces,
        "all pieces hashed after a killed check"
    );
    assert_eq!(s.metric("uringseed_hash_failed_pieces_total"), 0.0);
    serves(&s);
    assert!(record.exists(), "no resume record after a clean check");
    // 3. kill -9 after a clean check; restart: nothing hashed.
    s.kill9();
    let mut s = serve("after-clean-check", &torrent, &data, &[], &[], dir.path());
    s.ready();
    assert_eq!(s.metric(hashed), 0.0, "a clean record must be trusted");
    serves(&s);
    s.kill9();
    // 4. A stale temporary record (garbage) next to a good record: ignored, record trusted.
    std::fs::write(&tmp, b"d7:versioni1e4:tornstuff").unwrap();
    let mut s = serve("stale-tmp", &torrent, &data, &[], &[], dir.path());
    s.ready();
    assert_eq!(
        s.metric(hashed),
        0.0,
        "a stale temporary file must not matter"
    );
    serves(&s);
    s.kill9();
    // 5. The record truncated (torn), and the stale temporary file holding a complete good
    // record: neither is trusted, everything is hashed, serving resumes, a good record is
    // written again.
    let good = std::fs::read(&record).unwrap();
    std::fs::write(&tmp, &good).unwrap();
    std::fs::write(&record, &good[..good.len() / 2]).unwrap();
    let mut s = serve("torn-record", &torrent, &data, &[], &[], dir.path());
    s.ready();
    assert_eq!(s.metric(hashed), pieces, "a torn record must be ignored");
    serves(&s);
    assert!(
        s.proc.stderr_text().contains("ignoring resume record"),
        "the torn record was not reported:\n{}",
        s.proc.report()
    );
    assert_eq!(std::fs::read(&record).unwrap().len(), good.len());
    let left = stale_tmps();
    s.stop();
    eprintln!(
        "crash safety: {pieces} pieces; full check {full_check:?}; stale temporary files after \
         restarts: {left:?}"
    );
    let _ = std::fs::remove_file(&tmp);
}
