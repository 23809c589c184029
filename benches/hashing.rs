//! Hashing throughput of `uringseed make` against baselines measured in the same run.
//!
//! Run: `cargo bench --bench hashing` (size via URINGSEED_BENCH_MB, default 1024; runs via
//! URINGSEED_BENCH_RUNS, default 3, median reported). The file is written once and read once so
//! it is in page cache; every figure is then hashing from page cache or memory:
//! - `sha1sum`: coreutils on the file (the baseline the issue asks for);
//! - `sha1 crate, 1 thread` and `ring, 1 thread`: one pass over the bytes in memory, to choose
//!   between the two SHA-1 implementations and to know the per-core ceiling;
//! - `make, 1 thread` / `make, N threads`: the full `make` path (layout, pread batches, SHA-1).

use sha1::{Digest, Sha1};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use uringseed::make::{make, MakeOptions};

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

    let gbps = |secs: f64| bytes as f64 / secs / 1e9;
    let base = rows.first().map(|r| r.1).unwrap();
    println!(
        "{:<34} {:>8} {:>10}",
        "what",
        "GB/s",
        format!("x {}", if have_sha1sum { "sha1sum" } else { "first" })
    );
    for (name, secs) in &rows {
        println!("{name:<34} {:>8.2} {:>10.2}", gbps(*secs), base / secs);
    }
    let one = rows
        .iter()
        .find(|r| r.0.starts_with("sha1 crate"))
        .unwrap()
        .1;
    let all = rows.last().unwrap().1;
    println!(
        "make on {cores} threads reaches {:.0}% of {cores} x single-thread sha1 crate speed",
        100.0 * gbps(all) / (cores as f64 * gbps(one))
    );
}
