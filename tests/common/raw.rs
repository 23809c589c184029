//! A raw BitTorrent test peer over a blocking socket, for wire-level integration tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use uringseed::metainfo::InfoHash;
use uringseed::wire::message::{self, Message};
use uringseed::wire::mse::{self, Rc4};
use uringseed::wire::Handshake;

pub struct RawPeer {
    pub s: TcpStream,
    /// Received bytes not parsed yet (decrypted).
    pub buf: Vec<u8>,
    /// RC4 streams after an MSE handshake that selected RC4 (receive, send).
    rx: Option<Rc4>,
    tx: Option<Rc4>,
}

/// A distinct peer id per connection: the server refuses a second connection of a peer.
fn next_peer_id() -> [u8; 20] {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut id = *b"-TT0001-testpeer0000";
    id[12..].copy_from_slice(format!("{n:08}").as_bytes());
    id
}

impl RawPeer {
    pub fn from_stream(s: TcpStream) -> RawPeer {
        RawPeer {
            s,
            buf: Vec::new(),
            rx: None,
            tx: None,
        }
    }

    pub fn connect(addr: SocketAddr) -> RawPeer {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        RawPeer::from_stream(s)
    }

    /// An encrypted (MSE) handshake offering the payload methods `provide`, our BitTorrent
    /// handshake as its initial payload; returns the peer (RC4 on if selected), the method the
    /// server selected and its BitTorrent handshake. Err if the server closes instead.
    pub fn mse_handshake(
        addr: SocketAddr,
        info_hash: InfoHash,
        provide: u32,
    ) -> Result<(RawPeer, u32, Handshake), String> {
        let mut p = RawPeer::connect(addr);
        let ours = Handshake::ours(info_hash, next_peer_id()).encode().to_vec();
        let mut a = mse::Initiator::new([0x5c; 20], vec![7; 13], info_hash, provide, ours);
        let done = loop {
            p.s.write_all(&a.take_output()).map_err(|e| e.to_string())?;
            let mut chunk = [0u8; 4096];
            let n = p.s.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed during the MSE handshake".into());
            }
            if let Some(done) = a.feed(&chunk[..n]).map_err(|e| format!("{e:?}"))? {
                break done;
            }
        };
        (p.rx, p.tx, p.buf) = (done.rx, done.tx, done.initial);
        while p.buf.len() < 68 {
            p.read_more()
                .ok_or("closed before the BitTorrent handshake")?;
        }
        let theirs: Vec<u8> = p.buf.drain(..68).collect();
        let hs = Handshake::decode(&theirs)
            .map_err(|e| format!("{e:?}"))?
            .ok_or("short handshake")?;
        Ok((p, done.method, hs))
    }

    /// Reads once more into `buf` (decrypting); None when the server closed the connection.
    fn read_more(&mut self) -> Option<()> {
        match self.read_chunk() {
            Ok(0) => None,
            Ok(_) => Some(()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// One read into `buf` (decrypted), EINTR retried: the bytes read (0: closed).
    fn read_chunk(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 65536];
        loop {
            match self.s.read(&mut chunk) {
                Ok(n) => {
                    if let Some(rx) = &mut self.rx {
                        rx.apply(&mut chunk[..n]);
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The next whole message in `buf` as (id, payload), keep-alives skipped; None if no
    /// whole message is there yet.
    fn take_message(&mut self) -> Option<(u8, Vec<u8>)> {
        while self.buf.len() >= 4 {
            let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
            if self.buf.len() < 4 + len {
                return None;
            }
            let msg: Vec<u8> = self.buf.drain(..4 + len).collect();
            if len > 0 {
                return Some((msg[4], msg[5..].to_vec()));
            }
        }
        None
    }

    /// Handshakes; returns the server's handshake.
    pub fn handshake(addr: SocketAddr, info_hash: InfoHash, fast: bool) -> (RawPeer, Handshake) {
        let mut p = RawPeer::connect(addr);
        let mut hs = Handshake::ours(info_hash, next_peer_id());
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
        if let Some(tx) = &mut self.tx {
            tx.apply(&mut v);
        }
        self.s.write_all(&v).unwrap();
    }

    /// Next message as (id, payload); None when the server closed the connection.
    pub fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some(m) = self.take_message() {
                return Some(m);
            }
            self.read_more()?;
        }
    }

    /// Next message within `wait` (keep-alives skipped), or None if none came (the socket's
    /// read timeout is put back to 5 s after).
    pub fn recv_within(&mut self, wait: Duration) -> Option<(u8, Vec<u8>)> {
        self.s.set_read_timeout(Some(wait)).unwrap();
        let deadline = Instant::now() + wait;
        let got = loop {
            if let Some(m) = self.take_message() {
                break Some(m);
            }
            if Instant::now() >= deadline || !matches!(self.read_chunk(), Ok(n) if n > 0) {
                break None;
            }
        };
        self.s
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        got
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
