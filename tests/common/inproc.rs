//! In-process servers for tests that need the real server without the binary.

use crate::common::data::pseudo_random;
use std::time::Duration;
use uringseed::config::Config;
use uringseed::server::{self, ServerHandle, TorrentSpec};

/// A server (1 worker, `backend`) seeding one file of `len` pseudo-random bytes in pieces of
/// `piece_length`, written back to disk first (so its pages can be dropped from the cache).
/// Returns the server, the torrent, the file's path and bytes; keep `dir` alive.
pub fn single_file_server(
    dir: &std::path::Path,
    backend: &str,
    len: usize,
    piece_length: u64,
) -> (
    ServerHandle,
    uringseed::metainfo::Torrent,
    std::path::PathBuf,
    Vec<u8>,
) {
    let path = dir.join("one.bin");
    let data = pseudo_random(len, 77);
    std::fs::write(&path, &data).unwrap();
    std::fs::File::open(&path).unwrap().sync_all().unwrap();
    let opts = uringseed::make::MakeOptions {
        path: path.clone(),
        piece_length: Some(piece_length),
        quiet: true,
        ..Default::default()
    };
    let (_, torrent) = uringseed::make::make(&opts).unwrap();
    let mut config = Config::default();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.workers = 1;
    config.server.io_backend = backend.into();
    config.hashing.resume = false;
    let server = start_one(config, &torrent, dir);
    (server, torrent, path, data)
}

/// Starts `config` seeding `torrent` from `data_dir` and waits for its check. The DHT is off:
/// it is not under test here (and would bootstrap off the machine).
pub fn start_one(
    mut config: Config,
    torrent: &uringseed::metainfo::Torrent,
    data_dir: &std::path::Path,
) -> ServerHandle {
    let spec = TorrentSpec {
        torrent: torrent.clone(),
        data_dir: data_dir.to_path_buf(),
        just_hashed: false,
        limits: Default::default(),
        origin: Default::default(),
        force_check: false,
    };
    config.dht.enabled = false;
    let server = server::start(config, vec![spec]).unwrap();
    assert!(server.wait_ready(Duration::from_secs(30)));
    server
}
