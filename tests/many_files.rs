//! Bounded descriptors (issue 20, a size that fits CI): a torrent of 2,000 files served, checked
//! and verified under `ulimit -n 256`. The data-file cache then holds at most 64 descriptors
//! (a quarter of the limit), so serving every piece closes and reopens files all along; a peer
//! must still get every byte right, the server's descriptor count (sampled from /proc/PID/fd)
//! must stay under the limit, and the metrics must report the cache as it is.

mod common;

use common::raw::RawPeer;
use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uringseed::wire::message::{self, Block, Message};

const FILES: usize = 2000;
const NOFILE: usize = 256;
const PIECE: u64 = 16384;

fn limited() -> Vec<String> {
    vec![
        "prlimit".into(),
        format!("--nofile={NOFILE}:{NOFILE}"),
        "--".into(),
    ]
}

#[test]
fn two_thousand_files_serve_byte_exact_under_ulimit_256() {
    if !have("prlimit") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("many");
    let mut all = Vec::new();
    for i in 0..FILES {
        // 1..=40,000 bytes: many pieces span several files (read), others lie in one (sent
        // from its mapping).
        let len = 1 + (i * 7919) % 40_000;
        let bytes = pseudo_random(len, i as u64 + 1);
        let path = root
            .join(format!("d{}", i % 37))
            .join(format!("f{i:04}.bin"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
    }
    let torrent = dir.path().join("many.torrent");
    let hex = make_torrent(&root, &torrent, &["--piece-length", &PIECE.to_string()]);
    let t = uringseed::metainfo::load(&torrent).unwrap();
    let layout = uringseed::storage::Layout::new(&t);
    assert_eq!(t.files.len(), FILES);
    // The torrent's bytes in order, as a peer must receive them.
    for f in &t.files {
        let rel: std::path::PathBuf = f.path.iter().collect();
        all.extend(std::fs::read(root.join(rel)).unwrap());
    }
    assert_eq!(all.len() as u64, t.total_length);

    // `verify` (a tool: its cache follows the same limit).
    let wrapper = limited();
    let out = run(std::process::Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .arg(uringseed().get_program())
        .arg("verify")
        .arg("--torrent")
        .arg(&torrent)
        .arg("--data")
        .arg(dir.path()));
    assert!(
        out.status.success(),
        "verify under ulimit -n {NOFILE}: {}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );

    let w: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let mut s = serve("many-files", &torrent, dir.path(), &[], &w, dir.path());
    let ready = s.ready();
    let pieces = t.num_pieces();
    assert!(
        ready.contains(&format!("({pieces} of {pieces} pieces good)")),
        "{ready}"
    );
    let pid = s.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let (max_fds, max_maps) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let sampler = {
        let (stop, fds, maps) = (stop.clone(), max_fds.clone(), max_maps.clone());
        let data = root.display().to_string();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(120) {
                let n = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
                fds.fetch_max(n, Ordering::Relaxed);
                // Mappings of data files (zero-copy sends map the file they send from).
                let m = std::fs::read_to_string(format!("/proc/{pid}/maps"))
                    .map_or(0, |m| m.lines().filter(|l| l.contains(&data)).count());
                maps.fetch_max(m, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let ih = hex_hash(&hex);
    let (mut p, _) = RawPeer::handshake(s.addr, ih, true);
    loop {
        let (id, _) = p.recv().expect("closed after the handshake");
        if id == message::HAVE_ALL {
            break;
        }
        assert_ne!(id, message::HAVE_NONE, "the server has every piece");
    }
    p.send(&[Message::Interested]);
    p.expect(message::UNCHOKE);
    // Pieces in an order that jumps between files: every 7th, round and round.
    let order: Vec<usize> = (0..7).flat_map(|k| (k..pieces).step_by(7)).collect();
    let mut got = vec![0u8; all.len()];
    for chunk in order.chunks(16) {
        let blocks: Vec<Message<'_>> = chunk
            .iter()
            .map(|&i| {
                let r = layout.piece_range(i).unwrap();
                Message::Request(Block {
                    index: i as u32,
                    begin: 0,
                    length: (r.end - r.start) as u32,
                })
            })
            .collect();
        p.send(&blocks);
        for _ in chunk {
            let payload = loop {
                let (id, payload) = p.recv().expect("closed while pieces were due");
                assert_ne!(id, message::REJECT, "a request was rejected");
                if id == message::PIECE {
                    break payload;
                }
            };
            let index = u32::from_be_bytes(payload[..4].try_into().unwrap()) as u64;
            let at = (index * PIECE) as usize;
            got[at..at + payload.len() - 8].copy_from_slice(&payload[8..]);
        }
    }
    assert!(
        got == all,
        "the peer received other bytes than the files hold"
    );

    let open = s.metric(r#"uringseed_data_files_open{kind="open"}"#);
    let limit = s.metric(r#"uringseed_data_files_open{kind="limit"}"#);
    let opened = s.metric(r#"uringseed_data_file_opens_total{event="opened"}"#);
    let evicted = s.metric(r#"uringseed_data_file_opens_total{event="evicted"}"#);
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let (fds, maps) = (
        max_fds.load(Ordering::Relaxed),
        max_maps.load(Ordering::Relaxed),
    );
    eprintln!(
        "{FILES} files under ulimit -n {NOFILE}: max {fds} descriptors, {maps} data-file \
         mappings; cache {open} of {limit}; {opened} opens, {evicted} evictions"
    );
    assert_eq!(limit, (NOFILE / 4) as f64, "the default follows ulimit -n");
    assert!(open <= limit, "{open} files open over the limit {limit}");
    // Loading opened each file once; serving out of order reopened many of them.
    assert!(opened > FILES as f64 && evicted > 0.0, "{opened} {evicted}");
    assert!(fds > 0 && fds < NOFILE, "{fds} descriptors");
    // Each mapping lives with its cached descriptor (or a send in flight from it).
    assert!(
        maps > 0 && maps <= (NOFILE / 4) + 8,
        "{maps} data files mapped at once (zero-copy sends happened: {})",
        maps > 0
    );
    s.stop();
}
