//! The in-process connection harness: uringseed's own connection code
//! (`uringseed::io::conn::serve`, handshake, requests, piece writes, timeouts) over in-memory
//! streams and an in-memory disk (`uringseed::io::mem`), on a current-thread tokio runtime with
//! paused time, so protocol and timing cases run in milliseconds without sockets. The state is
//! real (`uringseed::state::Shared` with a live torrent in its table); nothing else runs (no
//! workers, no choker thread: a test ticks the choker itself).

use super::data::pseudo_random;
use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use uringseed::config::Config;
use uringseed::io::mem::{self, MemDisk, MemPeer};
use uringseed::lifecycle::Shutdown;
use uringseed::metainfo::{InfoHash, Torrent};
use uringseed::state::{Shared, TorrentCtx};
use uringseed::storage::files::DataFiles;
use uringseed::storage::Layout;
use uringseed::wire::handshake::{reserved, Handshake};
use uringseed::wire::message::{self, Block, Message};

/// Runs `f` on a current-thread runtime with paused time (it advances by itself whenever every
/// task waits), inside a `LocalSet`.
pub fn run<F: Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f)
}

/// A served torrent of pseudo-random bytes, its state and its in-memory disk.
pub struct Harness {
    pub shared: Arc<Shared>,
    pub ctx: Arc<TorrentCtx>,
    pub disk: Rc<MemDisk>,
    /// The torrent's bytes end to end.
    pub stream: Vec<u8>,
    pub torrent: Torrent,
    _dir: tempfile::TempDir,
}

/// A torrent of `len` bytes in pieces of `piece_length` (the bytes are written to a temporary
/// file only to make the torrent).
fn make(len: usize, piece_length: u64, private: bool, dir: &std::path::Path) -> (Torrent, Vec<u8>) {
    let data = pseudo_random(len, len as u64 ^ piece_length);
    let path = dir.join("data.bin");
    std::fs::write(&path, &data).unwrap();
    let opts = uringseed::make::MakeOptions {
        path,
        piece_length: Some(piece_length),
        private,
        quiet: true,
        ..Default::default()
    };
    (uringseed::make::make(&opts).unwrap().1, data)
}

impl Harness {
    /// Serves a torrent of `len` bytes (pieces of `piece_length`) with the default
    /// configuration changed by `tweak`, every piece verified.
    pub fn new(len: usize, piece_length: u64, tweak: impl FnOnce(&mut Config)) -> Harness {
        Harness::new_with(len, piece_length, false, tweak)
    }

    /// [`Harness::new`] for a private torrent (BEP 27) when `private`.
    pub fn new_with(
        len: usize,
        piece_length: u64,
        private: bool,
        tweak: impl FnOnce(&mut Config),
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let (torrent, stream) = make(len, piece_length, private, dir.path());
        let mut config = Config::default();
        config.tracker.announce = false;
        config.metrics.enabled = false;
        tweak(&mut config);
        let shared = Arc::new(Shared::new(config, Shutdown::new()).unwrap());
        shared.set_listen_addrs(&["127.0.0.1:6881".parse().unwrap()]);
        let files = Arc::new(DataFiles::none(&Layout::new(&torrent)));
        let have = uringseed::bitfield::full(torrent.num_pieces());
        let checking = shared.torrents.begin_check(&torrent).unwrap();
        let upload = shared.torrent_upload(&torrent.info_hash, &Default::default());
        let ctx = TorrentCtx::new(
            &shared.config,
            &torrent,
            dir.path().into(),
            files,
            &have,
            upload,
        );
        assert!(shared
            .torrents
            .finish_check(&torrent.info_hash, &checking, Ok(ctx)));
        let ctx = shared.torrent(&torrent.info_hash).unwrap();
        Harness {
            disk: Rc::new(MemDisk::new(stream.clone())),
            shared,
            ctx,
            stream,
            torrent,
            _dir: dir,
        }
    }

    pub fn info_hash(&self) -> InfoHash {
        self.torrent.info_hash
    }

    pub fn pieces(&self) -> u32 {
        self.torrent.num_pieces() as u32
    }

    pub fn piece_length(&self) -> u64 {
        self.torrent.piece_length
    }

    /// The bytes of block `b`.
    pub fn block_data(&self, b: Block) -> &[u8] {
        let at = (u64::from(b.index) * self.piece_length() + u64::from(b.begin)) as usize;
        &self.stream[at..at + b.length as usize]
    }

    /// The torrent's blocks (16 KiB, the last one of each piece possibly shorter).
    pub fn blocks(&self) -> Vec<Block> {
        let pl = self.piece_length();
        let mut v = Vec::new();
        for index in 0..self.pieces() {
            let size = (self.stream.len() as u64 - u64::from(index) * pl).min(pl) as u32;
            let mut begin = 0;
            while begin < size {
                let length = (size - begin).min(16384);
                v.push(Block {
                    index,
                    begin,
                    length,
                });
                begin += length;
            }
        }
        v
    }

    /// An incoming connection served by the real connection code; the server's writes block
    /// once `capacity` bytes wait unread (like a socket's buffers).
    pub fn connect_with(&self, capacity: usize) -> HPeer {
        self.connect_from("10.0.0.1:50000".parse().unwrap(), capacity)
    }

    /// An incoming connection as if from `addr`.
    pub fn connect_from(&self, addr: SocketAddr, capacity: usize) -> HPeer {
        let (stream, peer) = mem::pair(capacity);
        let ended = Rc::new(Cell::new(false));
        let (shared, disk, done) = (self.shared.clone(), self.disk.clone(), ended.clone());
        tokio::task::spawn_local(async move {
            uringseed::io::conn::serve(shared, stream, &*disk, addr, None).await;
            done.set(true);
        });
        HPeer {
            mem: peer,
            buf: Vec::new(),
            ended,
        }
    }

    /// [`Harness::connect_with`] with 256 KiB of buffer.
    pub fn connect(&self) -> HPeer {
        self.connect_with(256 << 10)
    }

    /// Connected, handshaken (with the fast and extension bits when `fast`), past the
    /// server's have_all or bitfield, interested and unchoked.
    pub async fn unchoked(&self, fast: bool) -> HPeer {
        let mut p = self.connect();
        p.handshake(self.info_hash(), fast).await;
        p.expect(if fast {
            message::HAVE_ALL
        } else {
            message::BITFIELD
        })
        .await;
        p.send(&[Message::Interested]).await;
        p.expect(message::UNCHOKE).await;
        p
    }

    pub fn dropped(&self, r: uringseed::reasons::DropReason) -> u64 {
        self.shared.stats.dropped(r)
    }

    /// Drops of every reason so far.
    pub fn dropped_total(&self) -> u64 {
        self.shared.stats.dropped.all().iter().map(|(_, n)| n).sum()
    }

    pub fn rejected(&self, r: uringseed::reasons::RejectReason) -> u64 {
        self.shared.stats.rejected(r)
    }
}

/// The test's side of one in-memory connection.
pub struct HPeer {
    pub mem: MemPeer,
    buf: Vec<u8>,
    ended: Rc<Cell<bool>>,
}

/// A handshake with a fresh peer id; `fast` sets the BEP 6 and BEP 10 bits.
pub fn handshake_bytes(info_hash: InfoHash, fast: bool) -> [u8; 68] {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut id = *b"-HH0001-harnesspeer0";
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    id[12..].copy_from_slice(format!("{n:08}").as_bytes());
    let mut hs = Handshake::ours(info_hash, id);
    if !fast {
        hs.reserved = [0; 8];
    } else {
        assert!(hs.has(reserved::FAST));
    }
    hs.encode()
}

pub fn encode(msgs: &[Message<'_>]) -> Vec<u8> {
    let mut v = Vec::new();
    for m in msgs {
        message::encode(m, &mut v);
    }
    v
}

impl HPeer {
    /// True once the server's side of the connection has finished (counted and closed).
    pub fn ended(&self) -> bool {
        self.ended.get()
    }

    pub async fn send_raw(&self, bytes: &[u8]) {
        // The server may have closed already; the test then sees the close.
        let _ = self.mem.write(bytes).await;
    }

    pub async fn send(&self, msgs: &[Message<'_>]) {
        self.send_raw(&encode(msgs)).await;
    }

    /// Sends our handshake and reads the server's.
    pub async fn handshake(&mut self, info_hash: InfoHash, fast: bool) -> Handshake {
        self.send_raw(&handshake_bytes(info_hash, fast)).await;
        while self.buf.len() < 68 {
            assert!(self.read_more().await, "closed during the handshake");
        }
        let theirs: Vec<u8> = self.buf.drain(..68).collect();
        Handshake::decode(&theirs).unwrap().unwrap()
    }

    /// Reads once more; false once the server closed and everything was read.
    async fn read_more(&mut self) -> bool {
        let got = self.mem.read(1 << 20).await;
        self.buf.extend_from_slice(&got);
        !got.is_empty()
    }

    /// Next message as (id, payload), keep-alives skipped; None once the server closed.
    pub async fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                if self.buf.len() >= 4 + len {
                    let msg: Vec<u8> = self.buf.drain(..4 + len).collect();
                    if len == 0 {
                        continue;
                    }
                    return Some((msg[4], msg[5..].to_vec()));
                }
            }
            if !self.read_more().await {
                return None;
            }
        }
    }

    /// Skips messages until one with `id` arrives.
    pub async fn expect(&mut self, id: u8) -> Vec<u8> {
        loop {
            match self.recv().await {
                Some((got, payload)) if got == id => return payload,
                Some(_) => {}
                None => panic!("closed while waiting for message {id}"),
            }
        }
    }

    /// Reads until the server closes (at most `limit` of tokio time, which is paused: a long
    /// limit costs nothing); panics if it does not.
    pub async fn expect_closed_within(&mut self, limit: Duration) {
        let closed = tokio::time::timeout(limit, async { while self.recv().await.is_some() {} });
        assert!(
            closed.await.is_ok(),
            "server did not close within {limit:?}"
        );
        // The count is taken before the close; the task ends right after.
        tokio::task::yield_now().await;
    }

    /// [`HPeer::expect_closed_within`] 5 minutes.
    pub async fn expect_closed(&mut self) {
        self.expect_closed_within(Duration::from_secs(300)).await;
    }

    /// Bytes waiting unread in `buf` (parsed or not).
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.mem.unread()
    }
}
