//! A raw BitTorrent test peer over a blocking socket, for wire-level integration tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use uringseed::metainfo::InfoHash;
use uringseed::wire::message::{self, Message};
use uringseed::wire::Handshake;

pub struct RawPeer {
    pub s: TcpStream,
    pub buf: Vec<u8>,
}

impl RawPeer {
    pub fn connect(addr: SocketAddr) -> RawPeer {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        RawPeer { s, buf: Vec::new() }
    }

    /// Handshakes; returns the server's handshake.
    pub fn handshake(addr: SocketAddr, info_hash: InfoHash, fast: bool) -> (RawPeer, Handshake) {
        let mut p = RawPeer::connect(addr);
        // A distinct peer id per connection: the server refuses a second connection of a peer.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut id = *b"-TT0001-testpeer0000";
        id[12..].copy_from_slice(format!("{n:08}").as_bytes());
        let mut hs = Handshake::ours(info_hash, id);
        if !fast {
            hs.reserved = [0; 8];
        }
        p.s.write_all(&hs.encode()).unwrap();
        let mut theirs = [0u8; 68];
        p.s.read_exact(&mut theirs).unwrap();
        (p, Handshake::decode(&theirs).unwrap().unwrap())
    }

    pub fn send(&mut self, msgs: &[Message<'_>]) {
        let mut v = Vec::new();
        for m in msgs {
            message::encode(m, &mut v);
        }
        self.s.write_all(&v).unwrap();
    }

    /// Next message as (id, payload); None when the server closed the connection.
    pub fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                if self.buf.len() >= 4 + len {
                    let msg: Vec<u8> = self.buf.drain(..4 + len).collect();
                    if len == 0 {
                        continue; // keep-alive
                    }
                    return Some((msg[4], msg[5..].to_vec()));
                }
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Skips messages until one with `id` arrives.
    pub fn expect(&mut self, id: u8) -> Vec<u8> {
        loop {
            let (got, payload) = self
                .recv()
                .unwrap_or_else(|| panic!("closed while waiting for message {id}"));
            if got == id {
                return payload;
            }
        }
    }

    pub fn expect_closed(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.recv().is_none() {
                return;
            }
        }
        panic!("server did not close the connection");
    }
}
