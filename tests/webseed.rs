//! The HTTP web seed (BEP 19, `serve --webseed`) from the outside: aria2 and libtorrent download
//! torrents whose only source is the url-list uringseed wrote into them, byte for byte; a raw
//! HTTP/1.1 client checks ranges (random, first and last byte, `a-`, `-n`), HEAD, If-Range,
//! 416 and keep-alive against the files on disk; a piece that failed its check is answered 503,
//! never with its bytes; an upload cap slows HTTP too; the web seed counters on /metrics move by
//! exactly the requests and body bytes the client saw. Hostile clients: tests/webseed_hostile.rs.
//!
//! Tools: aria2 and Debian python3-libtorrent (tests/tools/lt_webseed.py). Missing tools skip a
//! client on a developer machine and fail the test under CI. Every test has its own temp dir and
//! ports; every process it starts is stopped by PID when the test ends, even when it panics.

mod common;

use common::webseed::*;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a client may take to download (its own timeout); the harness waits a bit longer.
const CLIENT_TIMEOUT_S: u64 = 60;

/// The multi-file torrent's files (path inside the torrent, length): a space and UTF-8 in a
/// directory and a file name, files straddling pieces, an empty file.
const MULTI: &[(&str, usize)] = &[
    ("dir a/é x.bin", 700_001),
    ("plain.bin", 300_001),
    ("sub/deeper/c.dat", 65_536),
    ("zero", 0),
    ("z-last.bin", 40_000),
];

/// Writes the multi-file tree `dir/data/multi tree/...`; returns its root.
fn multi_tree(dir: &Path) -> PathBuf {
    let root = dir.join("data").join("multi tree");
    for (i, (rel, len)) in MULTI.iter().enumerate() {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, pseudo_random(*len, i as u64 + 11)).unwrap();
    }
    root
}

/// Writes one file `dir/data/NAME` of `len` pseudo-random bytes; returns its path.
fn single_file(dir: &Path, name: &str, len: usize) -> PathBuf {
    let path = dir.join("data").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, pseudo_random(len, 5)).unwrap();
    path
}

/// aria2c with the torrent alone: no tracker, DHT, LSD and PEX off (tests/tools/aria2_get.sh
/// with tracker `-`), so the url-list is its only source. Returns its exit status and log.
fn aria2(dir: &Path, torrent: &Path, out: &Path) -> (Option<std::process::ExitStatus>, String) {
    let log = dir.join("aria2.log");
    let mut proc = Proc::spawn(
        "aria2",
        Command::new("sh")
            .arg(tools_dir().join("aria2_get.sh"))
            .arg(torrent)
            .arg(out)
            .arg("-")
            .arg(CLIENT_TIMEOUT_S.to_string())
            .arg(format!("--log={}", log.display()))
            .arg("--log-level=info"),
        dir,
    );
    let status = proc.wait_exit(Duration::from_secs(CLIENT_TIMEOUT_S + 20));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let report = format!("{}\n---- aria2.log:\n{}", proc.report(), tail(&text, 8000));
    (status, report)
}

/// tests/tools/lt_webseed.py: libtorrent with no peers and no trackers, web seeds only.
fn libtorrent(
    dir: &Path,
    torrent: &Path,
    out: &Path,
) -> (Option<std::process::ExitStatus>, String) {
    let mut proc = Proc::spawn(
        "libtorrent",
        Command::new("/usr/bin/python3")
            .arg(tools_dir().join("lt_webseed.py"))
            .arg(torrent)
            .arg(out)
            .arg(CLIENT_TIMEOUT_S.to_string()),
        dir,
    );
    let status = proc.wait_exit(Duration::from_secs(CLIENT_TIMEOUT_S + 20));
    (status, proc.report())
}

/// Runs each installed client against `seed` (the torrent's only source) and checks that it
/// wrote `want` (the seeded file or tree) into `out_CLIENT/`, byte for byte.
fn clients_download(dir: &Path, seed: &WebSeed, want: &Path) {
    let name = want.file_name().unwrap();
    let mut ran = 0;
    type Client = fn(&Path, &Path, &Path) -> (Option<std::process::ExitStatus>, String);
    let clients: [(&str, bool, Client); 2] = [
        ("aria2", have("aria2c"), aria2),
        ("libtorrent", have_libtorrent(), libtorrent),
    ];
    for (client, installed, run) in clients {
        if !installed {
            continue;
        }
        ran += 1;
        let out = dir.join(format!("out_{client}"));
        let (status, report) = run(dir, &seed.torrent, &out);
        let got = out.join(name);
        let diffs = if want.is_dir() {
            // aria2 creates empty files; libtorrent 2.0 does not.
            tree_differences(want, &got, client == "aria2")
        } else {
            match (std::fs::read(want), std::fs::read(&got)) {
                (Ok(a), Ok(b)) if a == b => Vec::new(),
                (Ok(a), Ok(b)) => vec![format!(
                    "{} bytes, want {} (or content differs)",
                    b.len(),
                    a.len()
                )],
                (_, Err(e)) => vec![format!("{}: {e}", got.display())],
                (Err(e), _) => panic!("{e}"),
            }
        };
        assert!(
            status.is_some_and(|s| s.success()) && diffs.is_empty(),
            "{client} from the web seed only: exit {status:?}, differences {diffs:?}\n{report}\n{}",
            seed.serve.proc.report()
        );
    }
    if ran > 0 {
        let m = webseed_metrics(&seed.serve);
        let served = m.get(&requests_series("200")).unwrap_or(&0.0)
            + m.get(&requests_series("206")).unwrap_or(&0.0);
        assert!(
            served > 0.0,
            "the clients finished but no web seed request was served: {m:#?}"
        );
    }
}

#[test]
fn single_file_downloads_from_the_web_seed_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = single_file(dir.path(), "single é file.bin", 3_000_017);
    let seed = serve_path(dir.path(), &file, "", &[]);
    clients_download(dir.path(), &seed, &file);
    seed.serve.stop();
}

#[test]
fn multi_file_downloads_from_the_web_seed_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = multi_tree(dir.path());
    let seed = serve_path(dir.path(), &root, "", &[]);
    clients_download(dir.path(), &seed, &root);
    seed.serve.stop();
}

/// Sends `GET path` with `range` on `conn` and checks a 206 with exactly `want[a..=b]`,
/// `Content-Range: bytes a-b/LEN` and a matching Content-Length. Returns the body length.
fn check_range(conn: &mut Conn, path: &str, range: &str, want: &[u8], a: usize, b: usize) -> usize {
    let r = conn.get(path, Some(range));
    let what = format!("GET {path} Range: {range} (file of {} bytes)", want.len());
    assert_eq!(r.status, 206, "{what}: {}", r.head());
    let cr = format!("bytes {a}-{b}/{}", want.len());
    assert_eq!(
        r.header("content-range"),
        Some(cr.as_str()),
        "{what}: {}",
        r.head()
    );
    assert_eq!(
        r.header("content-length"),
        Some((b + 1 - a).to_string().as_str()),
        "{what}"
    );
    assert!(
        r.body == want[a..=b],
        "{what}: {} body bytes differ from the file's {a}-{b}",
        r.body.len()
    );
    r.body.len()
}

#[test]
fn ranges_head_and_keep_alive_are_exact_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let root = multi_tree(dir.path());
    let seed = serve_path(dir.path(), &root, "", &[]);
    let before = webseed_metrics(&seed.serve);
    let mut expect = Expect::default();
    let mut payload = 0usize;
    // Every request of this test goes over this one connection (keep-alive).
    let mut conn = Conn::connect(seed.addr);
    let files: Vec<(String, Vec<u8>)> = MULTI
        .iter()
        .map(|(rel, _)| {
            (
                url_path(&format!("multi tree/{rel}")),
                std::fs::read(root.join(rel)).unwrap(),
            )
        })
        .collect();
    assert_eq!(files[0].0, "/multi%20tree/dir%20a/%C3%A9%20x.bin");

    // HEAD: the headers of a whole-file 200, no body (the next response parses cleanly).
    for (path, data) in &files {
        let r = conn.request("HEAD", path, &[]);
        assert_eq!(r.status, 200, "HEAD {path}: {}", r.head());
        assert_eq!(
            r.header("content-length"),
            Some(data.len().to_string().as_str()),
            "HEAD {path}"
        );
        assert_eq!(
            r.header("accept-ranges"),
            Some("bytes"),
            "HEAD {path}: {}",
            r.head()
        );
        assert!(
            r.header("etag").is_some() && r.header("last-modified").is_some(),
            "HEAD {path}: {}",
            r.head()
        );
        expect.request(200);
    }
    // Whole files, the empty one too.
    for (path, data) in &files {
        let r = conn.get(path, None);
        assert_eq!(r.status, 200, "GET {path}: {}", r.head());
        assert!(
            r.body == *data,
            "GET {path}: {} bytes, not the file's {}",
            r.body.len(),
            data.len()
        );
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        payload += r.body.len();
        expect.request(200);
    }
    // The edges of each non-empty file: first byte, last byte, `a-`, `-n`, an end past the
    // file's (clamped), the whole file as a range.
    for (path, data) in files.iter().filter(|(_, d)| !d.is_empty()) {
        let n = data.len();
        let forms = [
            ("bytes=0-0".to_string(), 0, 0),
            (format!("bytes={}-{}", n - 1, n - 1), n - 1, n - 1),
            (format!("bytes={}-", n - 7), n - 7, n - 1),
            ("bytes=-1".to_string(), n - 1, n - 1),
            ("bytes=-100".to_string(), n - 100, n - 1),
            (format!("bytes={}-", 0), 0, n - 1),
            (format!("bytes={}-{}", n - 5, n + 1000), n - 5, n - 1),
            (format!("bytes=-{}", n + 10), 0, n - 1),
        ];
        for (range, a, b) in forms {
            payload += check_range(&mut conn, path, &range, data, a, b);
            expect.request(206);
        }
    }
    // 200 random ranges across the files.
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let nonempty: Vec<&(String, Vec<u8>)> = files.iter().filter(|(_, d)| !d.is_empty()).collect();
    for _ in 0..200 {
        let (path, data) = nonempty[rng.below(nonempty.len() as u64) as usize];
        let n = data.len() as u64;
        let (range, a, b) = match rng.below(4) {
            0 | 1 => {
                let a = rng.below(n);
                let b = (a + rng.below(200_000)).min(n - 1);
                (format!("bytes={a}-{b}"), a, b)
            }
            2 => {
                let a = n - 1 - rng.below(n.min(100_000));
                (format!("bytes={a}-"), a, n - 1)
            }
            _ => {
                let k = 1 + rng.below(n.min(100_000));
                (format!("bytes=-{k}"), n - k, n - 1)
            }
        };
        payload += check_range(&mut conn, path, &range, data, a as usize, b as usize);
        expect.request(206);
    }
    // If-Range: the file's own ETag keeps the range; another validator gets the whole file.
    let (path, data) = &files[1];
    let etag = conn
        .request("HEAD", path, &[])
        .header("etag")
        .unwrap()
        .to_string();
    expect.request(200);
    let r = conn.request(
        "GET",
        path,
        &[("Range", "bytes=10-19"), ("If-Range", &etag)],
    );
    assert_eq!(
        (r.status, &r.body[..]),
        (206, &data[10..20]),
        "If-Range {etag}: {}",
        r.head()
    );
    payload += r.body.len();
    expect.request(206);
    let r = conn.request(
        "GET",
        path,
        &[("Range", "bytes=10-19"), ("If-Range", "\"not-the-etag\"")],
    );
    assert_eq!(r.status, 200, "If-Range mismatch: {}", r.head());
    assert!(
        r.body == *data,
        "If-Range mismatch: {} bytes, want the whole {}",
        r.body.len(),
        data.len()
    );
    payload += r.body.len();
    expect.request(200);
    // Unsatisfiable: a start at or past the end, any range of the empty file.
    let n = data.len();
    for range in [format!("bytes={n}-"), format!("bytes={}-{}", n + 5, n + 10)] {
        let r = conn.get(path, Some(&range));
        assert_eq!(r.status, 416, "Range {range}: {}", r.head());
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{n}").as_str()),
            "{range}"
        );
        expect.request(416);
    }
    let r = conn.get(&files[3].0, Some("bytes=0-0"));
    assert_eq!(
        (r.status, r.header("content-range")),
        (416, Some("bytes */0")),
        "empty file range"
    );
    expect.request(416);
    // Still the same connection: it was kept alive throughout.
    let r = conn.get(path, Some("bytes=0-3"));
    assert_eq!((r.status, &r.body[..]), (206, &data[..4]));
    payload += 4;
    expect.request(206);

    // Percent-encoding in lower-case hex names the same file.
    let lower = "/multi%20tree/dir%20a/%c3%a9%20x.bin";
    let r = conn.get(lower, Some("bytes=0-99"));
    assert_eq!(
        (r.status, &r.body[..]),
        (206, &files[0].1[..100]),
        "GET {lower}: {}",
        r.head()
    );
    payload += 100;
    expect.request(206);
    // Loopback is not under the per-address cap (16) unless server.limit_loopback: 24 more
    // connections from 127.0.0.1 at once are all served.
    let mut more: Vec<Conn> = (0..24).map(|_| Conn::connect(seed.addr)).collect();
    for (i, c) in more.iter_mut().enumerate() {
        let r = c.get(path, Some(&format!("bytes={i}-{i}")));
        assert_eq!(
            (r.status, &r.body[..]),
            (206, &data[i..=i]),
            "loopback connection {i}: {}",
            r.head()
        );
        payload += 1;
        expect.request(206);
    }
    drop(more);

    expect.add("uringseed_webseed_payload_bytes_total", payload as f64);
    expect.add("uringseed_webseed_connections_total", 25.0);
    expect.add("uringseed_webseed_connections_refused_total", 0.0);
    expect.add("uringseed_webseed_refused_paths_total", 0.0);
    assert_deltas(&seed.serve, &before, &expect);
    let active = webseed_metrics(&seed.serve)["uringseed_webseed_connections_active"];
    assert!(
        active >= 1.0,
        "connections_active {active} while a connection is open"
    );
    drop(conn);
    seed.serve.stop();
}

#[test]
fn a_piece_that_failed_its_check_is_503_never_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let piece = 32_768usize;
    let name = "corrupt one.bin";
    let file = single_file(dir.path(), name, 10 * piece + 123);
    let torrent = dir.path().join("c.torrent");
    make_torrent(&file, &torrent, &["--piece-length", "32768"]);
    // Piece 3 no longer matches its hash when the server checks the data at start.
    let good = std::fs::read(&file).unwrap();
    let mut bad = good.clone();
    bad[3 * piece + 5] ^= 0xff;
    std::fs::write(&file, &bad).unwrap();
    let seed = serve_torrent(dir.path(), &torrent, &dir.path().join("data"), "", &[]);
    let path = url_path(name);
    let before = webseed_metrics(&seed.serve);
    let mut expect = Expect::default();
    let mut payload = 0usize;
    let p = |i: usize| i * piece;
    // Touching piece 3 at all: inside it, its first and last byte, spanning it, the whole file.
    let refused: Vec<Option<String>> = vec![
        Some(format!("bytes={}-{}", p(3) + 100, p(3) + 200)),
        Some(format!("bytes={}-{}", p(3), p(3))),
        Some(format!("bytes={}-{}", p(4) - 1, p(4) - 1)),
        Some(format!("bytes={}-{}", p(2) + 10, p(4) + 10)),
        Some(format!("bytes={}-", p(1))),
        Some(format!("bytes=-{}", bad.len() - p(3) - 1)),
        None,
    ];
    for range in &refused {
        // Each on a connection of its own: after a 503 the server may close.
        let mut conn = Conn::connect(seed.addr);
        let r = conn.get(&path, range.as_deref());
        assert_eq!(
            r.status,
            503,
            "Range {range:?} touches bad piece 3: {}",
            r.head()
        );
        assert!(
            r.header("retry-after").is_some(),
            "503 without Retry-After: {}",
            r.head()
        );
        assert!(r.body.len() < 4096, "a 503 of {} body bytes", r.body.len());
        assert!(
            !r.body
                .windows(64)
                .any(|w| bad[p(3)..p(4)].windows(64).any(|x| x == w)),
            "the 503 body holds bytes of the bad piece"
        );
        expect.request(503);
    }
    // The rest of the same file is served, exact.
    let mut conn = Conn::connect(seed.addr);
    for (a, b) in [
        (0, 0),
        (0, p(3) - 1),
        (p(2) + 7, p(3) - 1),
        (p(4), p(4)),
        (p(4), bad.len() - 1),
        (p(9) + 3, p(10) + 50),
    ] {
        payload += check_range(&mut conn, &path, &format!("bytes={a}-{b}"), &good, a, b);
        expect.request(206);
    }
    payload += check_range(
        &mut conn,
        &path,
        "bytes=-123",
        &good,
        bad.len() - 123,
        bad.len() - 1,
    );
    expect.request(206);
    drop(conn);
    expect.add("uringseed_webseed_payload_bytes_total", payload as f64);
    assert_deltas(&seed.serve, &before, &expect);
    seed.serve.stop();
}

#[test]
fn an_upload_cap_slows_http_downloads_too() {
    let dir = tempfile::tempdir().unwrap();
    let len = 16 << 20;
    let file = single_file(dir.path(), "capped.bin", len);
    let seed = serve_path(dir.path(), &file, "", &["--upload-limit", "2MiB"]);
    let want = std::fs::read(&file).unwrap();
    let mut conn = Conn::connect(seed.addr);
    let t = Instant::now();
    let r = conn.get("/capped.bin", None);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(r.status, 200, "{}", r.head());
    assert!(
        r.body == want,
        "{} bytes, not the file's {len}",
        r.body.len()
    );
    // 16 MiB at 2 MiB/s is 8 s; a burst of a few MiB at the start is allowed.
    assert!(
        secs >= 6.0,
        "16 MiB over HTTP in {secs:.2} s under a 2 MiB/s upload cap"
    );
    assert!(secs < 40.0, "16 MiB took {secs:.2} s at 2 MiB/s");
    seed.serve.stop();
}
