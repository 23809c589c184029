//! Hostile HTTP clients against the web seed (`serve --webseed`), all against one server:
//! every path traversal form (`..`, `%2e%2e` in any case, `//etc/passwd`, `%00`, backslashes,
//! a symlink in the torrent's directory that leads out of the data directory) is a 404 and
//! counted as a refused path; other methods are 405; ranges past the end 416; a 1 MiB head 431
//! and closed; 2,000 slow connections from 127.0.0.1 (half a request line, held) are mostly
//! refused by the per-address cap (`limit_loopback = true`) and the rest closed after the head
//! timeout, while a GET from 127.0.0.2 still gets its file; a client that stops reading a 16 MiB
//! body is dropped after the write stall; the server serves on after it all.

mod common;

use common::webseed::*;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Head timeout (`webseed.header_timeout_secs`) in this test's configuration.
const HEADER_TIMEOUT_S: u64 = 2;
const PER_IP: usize = 16;
const CONFIG: &str = "[server]\nlimit_loopback = true\n\n[webseed]\nmax_connections_per_ip = 16\nheader_timeout_secs = 2\nwrite_stall_secs = 2\n";
/// `big.bin`: more than the socket buffers of a client that stops reading hold.
const BIG: usize = 16 << 20;
/// Slow connections opened at once from 127.0.0.1.
const SLOW: usize = 2000;

/// The torrent `hostile/` of `dir/data`: `plain.bin`, `dir/inner.bin`, `big.bin`, and `link.bin`, a
/// regular file when the torrent is made, then replaced by a symlink to a file outside the data
/// directory holding the same bytes (so that the check at start passes).
fn hostile_torrent(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let root = dir.join("data/hostile");
    std::fs::create_dir_all(root.join("dir")).unwrap();
    let plain = pseudo_random(100_003, 1);
    std::fs::write(root.join("plain.bin"), &plain).unwrap();
    std::fs::write(root.join("dir/inner.bin"), pseudo_random(70_000, 2)).unwrap();
    std::fs::write(root.join("big.bin"), pseudo_random(BIG, 4)).unwrap();
    let secret = pseudo_random(50_000, 3);
    std::fs::write(root.join("link.bin"), &secret).unwrap();
    let torrent = dir.join("hostile.torrent");
    make_torrent(&root, &torrent, &["--piece-length", "16384"]);
    let outside = dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.bin"), &secret).unwrap();
    std::fs::remove_file(root.join("link.bin")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.bin"), root.join("link.bin")).unwrap();
    (torrent, plain)
}

/// Raises this process's open-file soft limit (inherited by the server it starts) to at least
/// `want` where the hard limit allows; returns the soft limit now.
fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

/// `target` sent raw in a GET request line: one of `statuses`, and a 404 counted once in
/// refused_paths when `counted`. Returns what
/// was wrong (None: as expected).
fn traversal(
    seed: &WebSeed,
    target: &[u8],
    statuses: &[u16],
    counted: bool,
) -> (u16, Option<String>) {
    let show = String::from_utf8_lossy(target).escape_debug().to_string();
    let before = webseed_metrics(&seed.serve);
    let mut conn = Conn::connect(seed.addr);
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    conn.send(&req);
    let r = match conn.response(false) {
        Ok(r) => r,
        Err(e) => return (0, Some(format!("GET {show}: {e}"))),
    };
    if r.body.len() >= 4096 || r.body.windows(5).any(|w| w == b"root:") {
        return (
            r.status,
            Some(format!(
                "GET {show}: {} with {} body bytes",
                r.head(),
                r.body.len()
            )),
        );
    }
    if !statuses.contains(&r.status) {
        return (
            r.status,
            Some(format!("GET {show}: {}, want {statuses:?}", r.head())),
        );
    }
    if r.status != 404 || !counted {
        return (r.status, None);
    }
    let key = "uringseed_webseed_refused_paths_total";
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let d = webseed_metrics(&seed.serve)
            .get(key)
            .copied()
            .unwrap_or(0.0)
            - before.get(key).copied().unwrap_or(0.0);
        if d == 1.0 {
            return (r.status, None);
        }
        if Instant::now() >= deadline {
            return (
                r.status,
                Some(format!("GET {show}: 404, but {key} moved by {d}, want 1")),
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hostile_clients_are_refused_and_serving_goes_on() {
    let nofile = raise_nofile(SLOW as u64 + 2048);
    let slow = if nofile >= SLOW as u64 + 1024 {
        SLOW
    } else {
        eprintln!(
            "open-file limit {nofile}: {} slow connections instead of {SLOW}",
            nofile / 2
        );
        (nofile / 2) as usize
    };
    let dir = tempfile::tempdir().unwrap();
    let (torrent, plain) = hostile_torrent(dir.path());
    let seed = serve_torrent(dir.path(), &torrent, &dir.path().join("data"), CONFIG, &[]);
    let before = webseed_metrics(&seed.serve);
    let mut expect = Expect::default();

    // Path traversal, each form on its own connection.
    let forms: &[&[u8]] = &[
        b"/hostile/../hostile/plain.bin",
        b"/hostile/dir/../../../../etc/passwd",
        b"/../../../etc/passwd",
        b"/hostile/%2e%2e/%2e%2e/etc/passwd",
        b"/hostile/%2E%2E/hostile/plain.bin",
        b"/hostile/dir/%2e%2E/plain.bin",
        b"/hostile/dir/%2E%2e%2f%2e%2e%2fhostile%2fplain.bin",
        b"/hostile/dir/.%2e/plain.bin",
        b"//etc/passwd",
        b"/hostile/plain.bin%00",
        b"/hostile/plain.bin%00.txt",
        b"/hostile/dir%5c..%5cplain.bin",
        b"/hostile/dir\\..\\plain.bin",
    ];
    let mut wrong = Vec::new();
    for form in forms {
        let (status, w) = traversal(&seed, form, &[404], true);
        wrong.extend(w);
        if status != 0 {
            expect.request(status);
        }
    }
    expect.add("uringseed_webseed_refused_paths_total", forms.len() as f64);
    // The symlink out of the data directory: 404. Not asserted to count as a refused path: the
    // server leaves it out of the torrent's web index (an unreachable file, a plain 404).
    let (status, w) = traversal(&seed, b"/hostile/link.bin", &[404], false);
    wrong.extend(w);
    expect.request(status);
    // A raw NUL is not valid in a request line: 400, or 404 (then counted as refused).
    let (status, w) = traversal(&seed, b"/hostile/plain.bin\0", &[400, 404], true);
    wrong.extend(w);
    if status == 404 {
        expect.add("uringseed_webseed_refused_paths_total", 1.0);
    }
    if status != 0 {
        expect.request(status);
    }
    // HEAD of the symlink gives nothing away either.
    let mut conn = Conn::connect(seed.addr);
    let r = conn.request("HEAD", "/hostile/link.bin", &[]);
    if r.status != 404 {
        wrong.push(format!(
            "HEAD /hostile/link.bin (symlink out of the data dir): {}",
            r.head()
        ));
    }
    expect.request(r.status);
    assert!(
        wrong.is_empty(),
        "traversal:\n  {}\n{}",
        wrong.join("\n  "),
        seed.serve.proc.report()
    );

    // Other methods: 405. Ranges past the end: 416 with the length.
    for method in ["POST", "PUT", "DELETE"] {
        let r = conn.request(method, "/hostile/plain.bin", &[("Content-Length", "0")]);
        assert_eq!(r.status, 405, "{method}: {}", r.head());
        expect.request(405);
        conn = Conn::connect(seed.addr);
    }
    let n = plain.len();
    for range in [
        format!("bytes={n}-"),
        format!("bytes={}-{}", n + 1, n + 100),
        "bytes=99999999-".into(),
    ] {
        let r = conn.get("/hostile/plain.bin", Some(&range));
        assert_eq!(r.status, 416, "Range {range}: {}", r.head());
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{n}").as_str()),
            "{range}"
        );
        expect.request(416);
    }
    drop(conn);

    // A 1 MiB head: 431, then closed.
    let mut conn = Conn::connect(seed.addr);
    let mut big = b"GET /hostile/plain.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ".to_vec();
    big.resize(big.len() + (1 << 20), b'a');
    big.extend_from_slice(b"\r\n\r\n");
    let mut writer = conn.s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&big); // the server may close before taking it all
    });
    let r = conn
        .response(false)
        .unwrap_or_else(|e| panic!("1 MiB head: {e}"));
    assert_eq!(r.status, 431, "1 MiB head: {}", r.head());
    assert!(
        conn.closed_within(Duration::from_secs(5)),
        "still open 5 s after the 431"
    );
    sender.join().unwrap();
    expect.request(431);
    drop(conn);
    assert_deltas(&seed.serve, &before, &expect);

    // 2,000 slow connections from 127.0.0.1: half a request line each, then nothing.
    std::thread::sleep(Duration::from_millis(300));
    let before = webseed_metrics(&seed.serve);
    let mut held: Vec<TcpStream> = Vec::with_capacity(slow);
    let mut connect_errors = 0;
    let started = Instant::now();
    for _ in 0..slow {
        match TcpStream::connect_timeout(&seed.addr, Duration::from_secs(5)) {
            Ok(mut s) => {
                let _ = s.write_all(b"GET /hostile/plain.bin HT");
                held.push(s);
            }
            Err(_) => connect_errors += 1,
        }
    }
    let opened = Instant::now();
    eprintln!(
        "{} slow connections opened in {:.2} s ({connect_errors} connects failed)",
        held.len(),
        (opened - started).as_secs_f64()
    );
    // A client on another loopback address is not behind that address's cap.
    let mut other = Conn::connect_from([127, 0, 0, 2], seed.addr);
    let r = other.request("GET", "/hostile/plain.bin", &[("Connection", "close")]);
    assert_eq!(
        r.status,
        200,
        "GET from 127.0.0.2 beside {slow} slow connections: {}",
        r.head()
    );
    assert!(
        r.body == plain,
        "GET from 127.0.0.2: {} bytes differ from the file",
        r.body.len()
    );
    drop(other);
    // Every slow connection is closed: refused at once, or after the head timeout.
    let slack = Duration::from_secs(HEADER_TIMEOUT_S + 5);
    let mut open = 0;
    for s in &mut held {
        let left = (opened + slack).saturating_duration_since(Instant::now());
        let mut c = Conn::from_stream(s.try_clone().unwrap());
        if !c.closed_within(left.max(Duration::from_millis(10))) {
            open += 1;
        }
    }
    assert_eq!(
        open, 0,
        "slow connections still open {slack:?} after the last was opened"
    );
    let after = webseed_metrics(&seed.serve);
    let delta =
        |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    let refused = delta("uringseed_webseed_connections_refused_total");
    let timeouts = delta("uringseed_webseed_timeouts_total");
    eprintln!("slow connections: {refused} refused, {timeouts} timed out");
    assert!(
        refused >= held.len() as f64 / 2.0,
        "{refused} of {} refused (cap {PER_IP} per address)",
        held.len()
    );
    assert_eq!(
        refused + timeouts,
        held.len() as f64,
        "refused {refused} + timed out {timeouts}"
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let active = webseed_metrics(&seed.serve)["uringseed_webseed_connections_active"];
        if active == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections_active {active} 5 s after all closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A client that asks for 16 MiB and stops reading: dropped once no byte has gone out for
    // write_stall_secs (2 s), counted as a timeout.
    let before = webseed_metrics(&seed.serve);
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(64 << 10).unwrap();
    sock.connect_timeout(&seed.addr.into(), IO_LIMIT).unwrap();
    let mut stalled = Conn::from_stream(sock.into());
    stalled.send(b"GET /hostile/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let asked = Instant::now();
    let key = "uringseed_webseed_timeouts_total";
    loop {
        let d = webseed_metrics(&seed.serve)[key] - before.get(key).copied().unwrap_or(0.0);
        if d == 1.0 {
            break;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(12),
            "a client that stopped reading still not dropped after 12 s (write_stall_secs = 2; {key} moved by {d})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let dropped_after = asked.elapsed().as_secs_f64();
    assert!(
        dropped_after >= 1.5,
        "dropped {dropped_after:.2} s after asking, before the 2 s stall"
    );
    let mut got = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match std::io::Read::read(&mut stalled.s, &mut chunk) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading what the stalled connection got: {e} after {got} bytes"),
        }
    }
    assert!(
        got < BIG,
        "the dropped connection delivered all {got} bytes"
    );
    eprintln!("stalled reader dropped after {dropped_after:.2} s, having been sent {got} bytes");
    drop(stalled);

    // It serves on: an exact range and a whole file.
    let mut conn = Conn::connect(seed.addr);
    let r = conn.get("/hostile/plain.bin", Some("bytes=5-99"));
    assert_eq!(
        (r.status, &r.body[..]),
        (206, &plain[5..100]),
        "{}",
        r.head()
    );
    let r = conn.get("/hostile/dir/inner.bin", None);
    assert_eq!(
        (r.status, r.body == pseudo_random(70_000, 2)),
        (200, true),
        "{}",
        r.head()
    );
    drop(conn);
    seed.serve.stop();
}
