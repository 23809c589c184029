//! The files an operator hands the server, at their worst (issue 21, item 6): a watch directory
//! holding a FIFO, a device, a directory and a symbolic-link loop named `*.torrent` beside
//! thousands of garbage files; a torrent of a million files; configurations of 50 MB. Each must
//! load or be refused in bounded time, memory and log lines, and never stop the server from
//! serving, reloading or exiting. Run as an operator would: the real binary (debug build).

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one short run of the binary did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// Peak resident memory of the process (its VmHWM, sampled every 2 ms until it exits:
    /// wait4's ru_maxrss would count the test process's pages shared before the exec).
    max_rss_kib: i64,
    secs: f64,
}

/// Runs `cmd` to its end (killed by PID after `limit`), with its peak RSS.
fn run_measured(cmd: &mut Command, dir: &Path, limit: Duration) -> Run {
    let (out, err) = (dir.join("run.stdout"), dir.join("run.stderr"));
    let started = Instant::now();
    // Reaped below with wait4 (it gives the exit status without std's wait).
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut hwm = 0;
    let exe = std::fs::canonicalize(cmd.get_program()).ok();
    loop {
        // Only once it runs the program (before its exec the child shares the test's memory).
        if std::fs::read_link(format!("/proc/{pid}/exe")).ok() == exe {
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                if let Some(kib) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                {
                    hwm = kib;
                }
            }
        }
        // SAFETY: waits for our own child without blocking; fills status and usage.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        assert!(r == 0, "wait4 failed");
        if started.elapsed() > limit {
            // SAFETY: signals our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: reaps it.
            unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            panic!(
                "{cmd:?} still running after {limit:?}; stderr:\n{}",
                tail(&std::fs::read_to_string(&err).unwrap_or_default(), 4000)
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Run {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
        max_rss_kib: hwm,
        secs: started.elapsed().as_secs_f64(),
    }
}

/// A multi-file torrent of `n` one-byte files named f0000000.. (16 KiB pieces), none on disk.
fn many_files_torrent(path: &Path, name: &str, n: usize) {
    use sha1::{Digest, Sha1};
    let pl = 16384usize;
    let mut info = b"d5:filesl".to_vec();
    for i in 0..n {
        let f = format!("f{i:07}");
        info.extend(format!("d6:lengthi1e4:pathl{}:{f}ee", f.len()).as_bytes());
    }
    let mut pieces = Vec::new();
    for start in (0..n).step_by(pl) {
        pieces.extend(Sha1::digest(vec![0u8; pl.min(n - start)]));
    }
    info.extend(
        format!(
            "e4:name{}:{name}12:piece lengthi{pl}e6:pieces{}:",
            name.len(),
            pieces.len()
        )
        .as_bytes(),
    );
    info.extend(&pieces);
    info.push(b'e');
    let mut t = b"d4:info".to_vec();
    t.extend(info);
    t.push(b'e');
    std::fs::write(path, t).unwrap();
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path in the test's own directory.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

#[test]
fn a_watch_directory_of_fifos_loops_and_garbage_never_blocks_serving_reload_or_exit() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let root = data.join("iso");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("image.bin"), pseudo_random(6 << 20, 7)).unwrap();
    let torrent = dir.path().join("iso.torrent");
    let hash = make_torrent(&root, &torrent, &[]);

    let watch = dir.path().join("watch");
    std::fs::create_dir_all(watch.join("d.torrent")).unwrap();
    mkfifo(&watch.join("x.torrent"));
    std::os::unix::fs::symlink(watch.join("b.torrent"), watch.join("a.torrent")).unwrap();
    std::os::unix::fs::symlink(watch.join("a.torrent"), watch.join("b.torrent")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", watch.join("dev.torrent")).unwrap();
    const GARBAGE: usize = 5000;
    for i in 0..GARBAGE {
        std::fs::write(watch.join(format!("junk{i}.torrent")), b"d4:junk").unwrap();
        std::fs::write(watch.join(format!("junk{i}.part")), b"x").unwrap();
    }
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[hashing]\nresume = false\n\n[watch]\ndir = \"watch\"\ndata = \"data\"\n",
    )
    .unwrap();
    let mut s = serve_args(
        "watch-junk",
        &["--config", config.to_str().unwrap()],
        &[],
        dir.path(),
    );
    // The FIFO, the device and the loop are reported, once each, and the scan goes on: a real
    // torrent dropped in beside them is picked up and served.
    std::fs::copy(&torrent, watch.join("iso.torrent")).unwrap();
    let ready = s.proc.wait_line("ready: ", Duration::from_secs(60));
    assert!(ready.starts_with(&hash), "{ready}");
    let save = dir.path().join("got");
    let mut lt = spawn_lt_download(
        &torrent,
        &save,
        &s.addr.to_string(),
        60,
        0,
        None,
        dir.path(),
    );
    assert!(
        lt.wait_exit(Duration::from_secs(60))
            .is_some_and(|st| st.success()),
        "{}\n{}",
        lt.report(),
        s.proc.report()
    );
    assert!(tree_differences(&root, &save.join("iso"), true).is_empty());

    // Idle with 10,004 entries in the directory: scans every 2 s cost little (before: a
    // nested search made each scan quadratic, 6.4 CPU-s per 10 s with 10,000 files).
    let cpu0 = cpu_secs(s.pid());
    std::thread::sleep(Duration::from_secs(6));
    let idle_cpu = cpu_secs(s.pid()) - cpu0;
    eprintln!(
        "watch directory of {} entries: {idle_cpu:.2} CPU-s in 6 s idle",
        2 * GARBAGE + 5
    );
    assert!(idle_cpu < 0.6, "{idle_cpu:.2} CPU-s in 6 s idle");

    // SIGHUP is still handled, and so is SIGTERM.
    s.proc.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.proc.stderr_text().contains("configuration reloaded") {
        assert!(
            Instant::now() < deadline,
            "SIGHUP not handled\n{}",
            s.proc.report()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = s.proc.stderr_text();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    for name in ["x.torrent", "d.torrent", "dev.torrent"] {
        assert_eq!(
            count(&format!("{name}: not a regular file, ignored")),
            1,
            "{name}\n{log}"
        );
    }
    assert_eq!(
        count("a.torrent: Too many levels of symbolic links"),
        1,
        "{log}"
    );
    // Each garbage file is reported once, not once per scan.
    assert_eq!(count("junk17.torrent"), 1, "{}", tail(&log, 4000));
    let took = s.stop();
    eprintln!("SIGTERM: exit 0 in {took:?}");
}

fn watch_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[hashing]\nresume = false\n\n[watch]\ndir = \"watch\"\ndata = \"data\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("watch")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    config
}

#[test]
fn a_watch_scan_loads_new_torrents_in_bounded_slices_and_sigterm_is_answered_meanwhile() {
    // 30 new torrents of 40,000 files each take a debug build several seconds to parse. Every
    // scan loads what fits its 250 ms budget and leaves the rest to the next, so a SIGTERM in
    // the middle is answered at once (a scan that loaded them all before looking at signals
    // again kept it waiting for the whole directory).
    let dir = tempfile::tempdir().unwrap();
    let config = watch_config(dir.path());
    for i in 0..30 {
        many_files_torrent(
            &dir.path().join(format!("watch/m{i}.torrent")),
            &format!("m{i}"),
            40_000,
        );
    }
    let mut s = serve_args(
        "watch-big",
        &["--config", config.to_str().unwrap()],
        &[],
        dir.path(),
    );
    // The first scan starts at once; the ready lines are printed by the same loop, so they
    // cannot mark its progress.
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    s.proc.signal("TERM");
    let status = s.proc.wait_exit(Duration::from_secs(60));
    let took = t.elapsed();
    let came_up = s.proc.stdout_text().matches("ready: ").count();
    eprintln!("SIGTERM 0.5 s into a watch directory of 30 torrents of 40,000 files: exit {status:?} in {took:?}, {came_up} were up");
    assert!(status.is_some_and(|st| st.success()), "{}", s.proc.report());
    assert!(
        came_up < 30,
        "all came up before the SIGTERM: the test proves nothing"
    );
    assert!(
        took < Duration::from_millis(1500),
        "SIGTERM answered after {took:?}"
    );

    // Left alone, the slices add up: 2,000 small new torrents all come up.
    const N: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let config = watch_config(dir.path());
    for i in 0..N {
        let root = dir.path().join(format!("data/t{i}"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("f"), pseudo_random(100, i as u64)).unwrap();
        let t = uringseed::make::MakeOptions {
            path: root,
            quiet: true,
            ..Default::default()
        };
        let (bytes, _) = uringseed::make::make(&t).unwrap();
        std::fs::write(dir.path().join(format!("watch/t{i}.torrent")), bytes).unwrap();
    }
    let mut s = serve_args(
        "watch-many",
        &["--config", config.to_str().unwrap()],
        &[],
        dir.path(),
    );
    for _ in 0..N {
        s.proc.wait_line("ready: ", Duration::from_secs(120));
    }
    s.stop();
}

#[test]
fn a_torrent_of_a_million_files_is_refused_at_once_and_one_of_200000_logs_a_dozen_lines() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.torrent");
    many_files_torrent(&huge, "huge", 1_000_000);
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for sub in ["verify", "serve"] {
        let mut cmd = uringseed();
        cmd.arg(sub)
            .arg("--torrent")
            .arg(&huge)
            .arg("--data")
            .arg(&data);
        if sub == "serve" {
            cmd.args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
        }
        let r = run_measured(&mut cmd, dir.path(), Duration::from_secs(60));
        eprintln!(
            "{sub} of a 1,000,000-file torrent: exit {:?} in {:.2} s, peak RSS {} MiB",
            r.code,
            r.secs,
            r.max_rss_kib / 1024
        );
        assert!(r.code.is_some_and(|c| c != 0), "{sub}: {:?}", r.code);
        assert!(
            r.stderr.contains("huge.torrent") && r.stderr.contains("more than 3000000 values"),
            "{sub}: {}",
            tail(&r.stderr, 2000)
        );
        assert!(r.stderr.lines().count() <= 5, "{}", tail(&r.stderr, 2000));
        assert!(
            r.max_rss_kib < 400 << 10,
            "{sub}: peak RSS {} KiB",
            r.max_rss_kib
        );
    }

    // 200,000 files, none of them on disk: served (nothing good), a dozen warning lines.
    let big = dir.path().join("big.torrent");
    many_files_torrent(&big, "big", 200_000);
    let mut s = serve("big", &big, &data, &[], &[], dir.path());
    let ready = s.ready();
    assert!(ready.contains("(0 of 13 pieces good)"), "{ready}");
    std::thread::sleep(Duration::from_millis(300));
    let log = s.proc.stderr_text();
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    assert!(
        warnings <= 12,
        "{warnings} warning lines:\n{}",
        tail(&log, 3000)
    );
    assert!(
        log.contains("and 199990 more files missing or of the wrong size"),
        "{}",
        tail(&log, 3000)
    );
    s.stop();

    // verify lists every file, and its time grows linearly: 200,000 files against 20,000.
    let small = dir.path().join("small.torrent");
    many_files_torrent(&small, "small", 20_000);
    let time = |t: &Path| {
        let mut cmd = uringseed();
        cmd.args(["verify", "-q", "--torrent"])
            .arg(t)
            .arg("--data")
            .arg(&data);
        let r = run_measured(&mut cmd, dir.path(), Duration::from_secs(120));
        assert_eq!(r.code, Some(1), "{}", tail(&r.stderr, 2000));
        (r.secs, r.stdout.lines().count())
    };
    let ((small_s, small_lines), (big_s, big_lines)) = (time(&small), time(&big));
    eprintln!("verify: 20,000 files {small_s:.2} s, 200,000 files {big_s:.2} s");
    assert_eq!(small_lines, 20_000 + 4);
    assert_eq!(big_lines, 200_000 + 4);
    assert!(
        big_s < 30.0 * small_s.max(0.1),
        "{big_s:.2} s against {small_s:.2} s"
    );
}

#[test]
fn configurations_of_50_mb_fifos_and_huge_arrays_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let check = |path: &Path| {
        let mut cmd = uringseed();
        cmd.arg("check-config").arg(path);
        run_measured(&mut cmd, dir.path(), Duration::from_secs(30))
    };
    // 50 MB of comments: refused before it is parsed.
    let big = dir.path().join("big.toml");
    let mut text = String::from("[server]\n");
    while text.len() < 50_000_000 {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&big, &text).unwrap();
    let r = check(&big);
    eprintln!(
        "50 MB config: exit {:?} in {:.2} s, peak RSS {} MiB",
        r.code,
        r.secs,
        r.max_rss_kib / 1024
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("big.toml") && r.stderr.contains("larger than the 16777216 bytes"),
        "{}",
        r.stderr
    );
    assert!(r.max_rss_kib < 64 << 10, "peak RSS {} KiB", r.max_rss_kib);

    // A 10 MB `listen` array (800,000 addresses): refused naming the key.
    let wide = dir.path().join("wide.toml");
    let mut text = String::from("[server]\nlisten = [");
    for i in 0..800_000u32 {
        text.push_str(&format!("\"127.0.{}.{}:1\",", (i >> 8) & 255, i & 255));
    }
    text.push_str("]\n");
    std::fs::write(&wide, &text).unwrap();
    let r = check(&wide);
    eprintln!(
        "{} MB listen array: exit {:?} in {:.2} s, peak RSS {} MiB",
        text.len() >> 20,
        r.code,
        r.secs,
        r.max_rss_kib / 1024
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("server.listen") && r.stderr.contains("more than the 64"),
        "{}",
        r.stderr
    );

    // A FIFO where the configuration or a torrent should be: refused at once, not waited on.
    let fifo = dir.path().join("fifo.toml");
    mkfifo(&fifo);
    let r = check(&fifo);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("is not a regular file (it is a FIFO)"),
        "{}",
        r.stderr
    );
    let fifo_torrent = dir.path().join("x.torrent");
    mkfifo(&fifo_torrent);
    let mut cmd = uringseed();
    cmd.args(["verify", "--torrent"])
        .arg(&fifo_torrent)
        .args(["--data", "."]);
    let r = run_measured(&mut cmd, dir.path(), Duration::from_secs(10));
    assert!(r.code.is_some_and(|c| c != 0));
    assert!(
        r.stderr.contains("is not a regular file (it is a FIFO)"),
        "{}",
        r.stderr
    );
}
