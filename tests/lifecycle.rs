//! The server's lifecycle as an operator sees it, on the `uringseed` binary: SIGTERM on an idle
//! server ends it at once, a torrent removed by SIGHUP lets go of its files (no descriptor or
//! mapping of a deleted file is left, so its space is freed), a file replaced and seeded again
//! under a new torrent is served with its new bytes, and adding and removing 100 torrents
//! leaves the descriptor count where it was.

mod common;

use common::raw::RawPeer;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uringseed::wire::message::{self, Block, Message};

/// Descriptors of process `pid` and what they point to (readlink of /proc/PID/fd/N).
fn fds(pid: u32) -> Vec<String> {
    let dir = format!("/proc/{pid}/fd");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect()
}

/// Lines of /proc/PID/maps that map `path`.
fn maps_of(pid: u32, path: &Path) -> Vec<String> {
    let want = path.display().to_string();
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(&want))
        .map(str::to_string)
        .collect()
}

/// Waits (at most `limit`) for `f` to hold; panics with `what` otherwise.
fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `[[torrent]]` table.
fn table(torrent: &Path, data: &Path) -> String {
    format!(
        "[[torrent]]\ntorrent = {:?}\ndata = {:?}\n",
        torrent.display().to_string(),
        data.display().to_string()
    )
}

fn write_config(path: &Path, tables: &[String]) {
    let text = format!("[hashing]\nresume = false\n\n{}", tables.concat());
    std::fs::write(path, text).unwrap();
}

#[test]
fn sigterm_on_an_idle_server_exits_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let root = write_tree(dir.path(), "idle");
    let torrent = dir.path().join("idle.torrent");
    make_torrent(&root, &torrent, &[]);
    let mut s = serve("idle", &torrent, dir.path(), &[], &[], dir.path());
    s.ready();
    // Let every part settle into its wait.
    std::thread::sleep(Duration::from_millis(500));
    let took = s.stop();
    eprintln!("SIGTERM on an idle server: exit 0 in {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

/// Drops `path` from the page cache so that the next read of it goes to the disk (false on a
/// file system that keeps it, such as tmpfs).
fn drop_cache(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: advice on an open descriptor; no memory is passed.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) == 0 }
}

#[test]
fn a_removed_torrent_releases_its_files_and_a_replaced_file_is_served_anew() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let file = data.join("release.iso");
    let old = pseudo_random(3 << 20, 4242);
    std::fs::write(&file, &old).unwrap();
    let t1 = dir.path().join("old.torrent");
    let ih1 = hex_hash(&make_torrent(&file, &t1, &["--piece-length", "262144"]));
    let config = dir.path().join("seed.toml");
    write_config(&config, &[table(&t1, &data)]);
    let mut s = serve_args(
        "release",
        &["--config", config.to_str().unwrap()],
        &[],
        dir.path(),
    );
    s.ready();
    let pid = s.pid();
    // Cold reads (the page cache dropped first: read through io_uring) and cached ones (sent
    // from the mapping).
    let (mut p, _) = RawPeer::handshake(s.addr, ih1, true);
    p.expect(message::HAVE_ALL);
    p.send(&[Message::Interested]);
    p.expect(message::UNCHOKE);
    let cold = drop_cache(&file);
    for index in [0u32, 5, 11] {
        let b = Block {
            index,
            begin: 0,
            length: 16384,
        };
        p.send(&[Message::Request(b)]);
        let got = p.expect(message::PIECE);
        let at = index as usize * 262_144;
        assert_eq!(got[8..], old[at..at + 16384], "piece {index}");
    }
    assert!(
        fds(pid).iter().any(|l| l == &file.display().to_string()),
        "the data file is open while served"
    );
    eprintln!(
        "served (cache dropped first: {cold}); zero-copy bytes {}",
        s.metric("uringseed_zero_copy_bytes_total")
    );

    // Removed by SIGHUP, then deleted: nothing of the server may refer to it.
    write_config(&config, &[]);
    s.proc.signal("HUP");
    p.expect_closed();
    std::fs::remove_file(&file).unwrap();
    let deleted = format!("{} (deleted)", file.display());
    wait_for(
        Duration::from_secs(5),
        "the deleted file to be let go",
        || !fds(pid).iter().any(|l| l == &deleted) && maps_of(pid, &file).is_empty(),
    );

    // A new file of the same name, a new torrent for it: a real client gets the new bytes.
    let new = pseudo_random(3 << 20, 777);
    std::fs::write(&file, &new).unwrap();
    let t2 = dir.path().join("new.torrent");
    let ih2 = make_torrent(&file, &t2, &["--piece-length", "262144"]);
    write_config(&config, &[table(&t2, &data)]);
    s.proc.signal("HUP");
    let line = s.ready();
    assert!(line.starts_with(&ih2), "{line}");
    if !have_libtorrent() {
        return;
    }
    let out = dir.path().join("out");
    let got = lt_tool(&[
        "download",
        t2.to_str().unwrap(),
        out.to_str().unwrap(),
        &s.addr.to_string(),
        "60",
    ]);
    eprintln!("libtorrent: {got:?}");
    assert!(
        std::fs::read(out.join("release.iso")).unwrap() == new,
        "the client did not get the new bytes"
    );
    s.stop();
}

#[test]
fn adding_and_removing_100_torrents_returns_the_descriptor_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let base_file = data.join("base.bin");
    std::fs::write(&base_file, pseudo_random(100_000, 1)).unwrap();
    let base_t = dir.path().join("base.torrent");
    make_torrent(&base_file, &base_t, &[]);
    let base = table(&base_t, &data);
    let mut many: Vec<String> = Vec::new();
    let torrents: Vec<PathBuf> = (0..100)
        .map(|i| {
            let f = data.join(format!("f{i:03}.bin"));
            std::fs::write(&f, pseudo_random(20_000 + i, 100 + i as u64)).unwrap();
            let t = dir.path().join(format!("f{i:03}.torrent"));
            make_torrent(&f, &t, &[]);
            many.push(table(&t, &data));
            t
        })
        .collect();
    assert_eq!(torrents.len(), 100);
    let config = dir.path().join("seed.toml");
    write_config(&config, std::slice::from_ref(&base));
    let mut s = serve_args(
        "many",
        &["--config", config.to_str().unwrap()],
        &[],
        dir.path(),
    );
    s.ready();
    let pid = s.pid();
    let seeding = "uringseed_torrents{state=\"seeding\"}";
    let count_data = || {
        fds(pid)
            .iter()
            .filter(|l| l.starts_with(&data.display().to_string()))
            .count()
    };
    // Settled: the same descriptors over 300 ms.
    let mut before_list = fds(pid);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let again = fds(pid);
        if again == before_list {
            break;
        }
        before_list = again;
    }
    let before = before_list.len();
    assert_eq!(count_data(), 1, "the base torrent's file");
    let mut all = vec![base.clone()];
    all.extend(many);
    write_config(&config, &all);
    s.proc.signal("HUP");
    wait_for(Duration::from_secs(60), "101 torrents seeding", || {
        s.metric(seeding) == 101.0
    });
    let during = fds(pid).len();
    assert_eq!(count_data(), 101, "one descriptor per data file");
    write_config(&config, &[base]);
    s.proc.signal("HUP");
    wait_for(Duration::from_secs(20), "100 torrents removed", || {
        s.metric(seeding) == 1.0
    });
    let settled = Instant::now() + Duration::from_secs(10);
    while fds(pid).len() != before && Instant::now() < settled {
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = fds(pid);
    assert_eq!(
        after.len(),
        before,
        "descriptors left over: {:?}",
        after
            .iter()
            .filter(|l| !before_list.contains(l))
            .collect::<Vec<_>>()
    );
    eprintln!(
        "descriptors: {before} with 1 torrent, {during} with 101, {} after removing 100",
        fds(pid).len()
    );
    s.stop();
}
