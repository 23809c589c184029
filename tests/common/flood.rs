//! Pieces of the flood tests (tests/metrics_flood.rs, tests/cpu_floods.rs): connections from a
//! chosen loopback address, and an honest leecher that downloads a whole torrent.

use super::raw::RawPeer;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use uringseed::metainfo::InfoHash;
use uringseed::wire::message::{Block, Message};

/// A TCP connection to `to` from the loopback address `ip` (any port).
pub fn connect_from(ip: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    sock.bind(&format!("{ip}:0").parse::<SocketAddr>().unwrap().into())?;
    sock.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(sock.into())
}

/// Downloads the whole torrent (`len` bytes, pieces of `piece_len`) with 64 requests in
/// flight over a plain connection; MB/s from the first request to the last block.
pub fn download(addr: SocketAddr, ih: InfoHash, len: usize, piece_len: u32) -> f64 {
    let (mut p, _) = RawPeer::handshake(addr, ih, true);
    p.send(&[Message::HaveNone, Message::Interested]);
    while p.recv().map(|(id, _)| id) != Some(1) {}
    let blocks: Vec<Block> = (0..(len / 16384) as u32)
        .map(|i| Block {
            index: i * 16384 / piece_len,
            begin: i * 16384 % piece_len,
            length: 16384,
        })
        .collect();
    let t = Instant::now();
    let (mut sent, mut got) = (0, 0);
    while got < blocks.len() {
        while sent < blocks.len() && sent - got < 64 {
            p.send(&[Message::Request(blocks[sent])]);
            sent += 1;
        }
        if let Some((7, _)) = p.recv() {
            got += 1;
        }
    }
    len as f64 / t.elapsed().as_secs_f64() / 1e6
}

/// The median of some figures.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
