//! Hashing throughput of `uringseed make` against baselines measured in the same run.
//!
//! Run: `cargo bench --bench hashing` (size via URINGSEED_BENCH_MB, default 1024; runs via
//! URINGSEED_BENCH_RUNS, default 3, median reported). The file is written once and read once so
//! it is in page cache; every figure is then hashing from page cache or memory:
//! - `sha1sum`: coreutils on the file (the baseline the issue asks for);
//! - `sha1 crate, 1 thread` and `ring, 1 thread`: one pass over the bytes in memory, to choose
//!   between the two SHA-1 implementations and to know the per-core ceiling;
//! - `make, 1 thread` / `make, N threads`: the full `make` path (layout, mmap, SHA-1);
//! - `verify, 1 thread` / `verify, N threads`: the server's startup check (pread, no resume);
//! - `libtorrent 2.0 recheck`: libtorrent checking the same torrent (Python bindings).
//!
//! Then the same for BitTorrent v2 (BEP 52: SHA-256 merkle trees over 16 KiB blocks), on a
//! `make --v2` torrent of the same file: `sha256sum` as the baseline, the `sha2` crate in memory
//! (it uses SHA-NI where the CPU has it), the server's check of the v2 torrent on 1 and N
//! threads, and libtorrent's recheck of that torrent.

use sha1::{Digest, Sha1};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use uringseed::make::{make, Format, MakeOptions};
use uringseed::metainfo::Torrent;

fn median_secs(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn write_file(path: &Path, bytes: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..bytes >> 20 {
        for chunk in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

fn main() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let mb = env("URINGSEED_BENCH_MB", 1024);
    let runs = env("URINGSEED_BENCH_RUNS", 3);
    let bytes = mb << 20;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.iso");
    write_file(&file, bytes);
    let data = std::fs::read(&file).unwrap(); // also warms the page cache
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "hashing benchmark: {mb} MiB file in page cache, {cores} cores, median of {runs} runs"
    );

    let mut rows: Vec<(String, f64)> = Vec::new();
    let have_sha1sum = Command::new("sha1sum").arg("--version").output().is_ok();
    if have_sha1sum {
        let t = median_secs(runs, || {
            let out = Command::new("sha1sum").arg(&file).output().unwrap();
            assert!(out.status.success());
        });
        rows.push(("sha1sum (coreutils)".into(), t));
    }
    rows.push((
        "sha1 crate, 1 thread, memory".into(),
        median_secs(runs, || {
            std::hint::black_box(Sha1::digest(&data));
        }),
    ));
    rows.push((
        "ring SHA-1, 1 thread, memory".into(),
        median_secs(runs, || {
            std::hint::black_box(ring::digest::digest(
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                &data,
            ));
        }),
    ));
    for threads in [1, cores] {
        let opts = MakeOptions {
            path: file.clone(),
            threads,
            quiet: true,
            ..Default::default()
        };
        let t = median_secs(runs, || {
            make(&opts).unwrap();
        });
        rows.push((format!("uringseed make, {threads} thread(s)"), t));
    }

    // Startup verification: the server's check (pread, safe against files changing under it).
    let opts = MakeOptions {
        path: file.clone(),
        quiet: true,
        ..Default::default()
    };
    let (torrent_bytes, torrent) = make(&opts).unwrap();
    rows.extend(check_rows(
        &torrent,
        &torrent_bytes,
        dir.path(),
        runs,
        cores,
    ));
    let gbps = |secs: f64| bytes as f64 / secs / 1e9;
    print_rows(&rows, bytes, if have_sha1sum { "sha1sum" } else { "first" });
    let one = rows
        .iter()
        .find(|r| r.0.starts_with("sha1 crate"))
        .unwrap()
        .1;
    for what in ["uringseed make", "uringseed verify"] {
        let all = rows
            .iter()
            .find(|r| r.0 == format!("{what}, {cores} thread(s)"))
            .unwrap()
            .1;
        println!(
            "{what} on {cores} threads reaches {:.0}% of {cores} x single-thread sha1 crate speed",
            100.0 * gbps(all) / (cores as f64 * gbps(one))
        );
    }

    v2(&file, &data, dir.path(), runs, cores);
}

/// The server's startup check (pread, safe against files changing under it) on 1 and `cores`
/// threads, then libtorrent's recheck of the same torrent where its Python bindings are.
fn check_rows(
    torrent: &Torrent,
    torrent_bytes: &[u8],
    dir: &Path,
    runs: usize,
    cores: usize,
) -> Vec<(String, f64)> {
    let mut rows = Vec::new();
    let layout = uringseed::storage::Layout::new(torrent);
    for threads in [1, cores] {
        let t = median_secs(runs, || {
            let progress = std::sync::atomic::AtomicU64::new(0);
            // As the server does: the files opened once, then checked through.
            let files = uringseed::storage::files::DataFiles::open(&layout, dir);
            let r = uringseed::storage::verify::check(
                torrent,
                &layout,
                &files,
                None,
                threads,
                &progress,
                &std::sync::atomic::AtomicBool::new(false),
            );
            assert!(r.bad_pieces.is_empty());
        });
        rows.push((format!("uringseed verify, {threads} thread(s)"), t));
    }
    let torrent_path = dir.join("bench.torrent");
    std::fs::write(&torrent_path, torrent_bytes).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/lt_tool.py");
    let lt = || -> Option<f64> {
        let out = Command::new("/usr/bin/python3")
            .args([script, "recheck"])
            .arg(&torrent_path)
            .arg(dir)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let have: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("num_pieces_have "))?
            .trim()
            .parse()
            .ok()?;
        assert_eq!(have, torrent.num_pieces(), "libtorrent found pieces bad");
        text.lines()
            .find_map(|l| l.strip_prefix("seconds "))
            .and_then(|v| v.trim().parse().ok())
    };
    if lt().is_some() {
        let mut times: Vec<f64> = (0..runs).filter_map(|_| lt()).collect();
        times.sort_by(f64::total_cmp);
        rows.push(("libtorrent 2.0 recheck".into(), times[times.len() / 2]));
    }
    rows
}

fn print_rows(rows: &[(String, f64)], bytes: usize, base_name: &str) {
    let gbps = |secs: f64| bytes as f64 / secs / 1e9;
    let base = rows.first().map(|r| r.1).unwrap();
    println!(
        "{:<34} {:>8} {:>10}",
        "what",
        "GB/s",
        format!("x {base_name}")
    );
    for (name, secs) in rows {
        println!("{name:<34} {:>8.2} {:>10.2}", gbps(*secs), base / secs);
    }
}

/// The v2 half of the benchmark (see the module doc).
fn v2(file: &Path, data: &[u8], dir: &Path, runs: usize, cores: usize) {
    println!("v2 (BEP 52, SHA-256 merkle over 16 KiB blocks):");
    let mut rows: Vec<(String, f64)> = Vec::new();
    let have_sha256sum = Command::new("sha256sum").arg("--version").output().is_ok();
    if have_sha256sum {
        let t = median_secs(runs, || {
            let out = Command::new("sha256sum").arg(file).output().unwrap();
            assert!(out.status.success());
        });
        rows.push(("sha256sum (coreutils)".into(), t));
    }
    rows.push((
        "sha2 crate, 1 thread, memory".into(),
        median_secs(runs, || {
            std::hint::black_box(sha2::Sha256::digest(data));
        }),
    ));
    let opts = MakeOptions {
        path: file.to_path_buf(),
        quiet: true,
        format: Format::V2,
        ..Default::default()
    };
    let (torrent_bytes, torrent) = make(&opts).unwrap();
    rows.extend(check_rows(&torrent, &torrent_bytes, dir, runs, cores));
    print_rows(
        &rows,
        data.len(),
        if have_sha256sum { "sha256sum" } else { "first" },
    );
}
