//! In-memory [`Stream`] and [`Disk`] for the in-process connection harness: the real
//! connection code ([`super::conn::serve`]) runs over a pair of bounded pipes and a disk held in
//! memory, on a current-thread tokio runtime, under paused time if the test wants, so protocol
//! and timing cases (handshake and idle timeouts, write stalls, choke rotation) run in
//! milliseconds without sockets. Single-threaded (`Rc`): use inside a `LocalSet`.

use super::stream::{Disk, Stream};
use crate::state::TorrentCtx;
use bytes::{Bytes, BytesMut};
use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::time::Duration;

struct PipeState {
    buf: BytesMut,
    /// Bytes the pipe holds at most (a socket's buffers).
    capacity: usize,
    closed: bool,
    /// Bytes taken out by the reading side so far.
    taken: u64,
}

/// One direction of a connection.
struct Pipe {
    state: RefCell<PipeState>,
    readable: tokio::sync::Notify,
    writable: tokio::sync::Notify,
}

impl Pipe {
    fn new(capacity: usize) -> Rc<Pipe> {
        Rc::new(Pipe {
            state: RefCell::new(PipeState {
                buf: BytesMut::new(),
                capacity,
                closed: false,
                taken: 0,
            }),
            readable: tokio::sync::Notify::new(),
            writable: tokio::sync::Notify::new(),
        })
    }

    /// Reads what is waiting, up to `buf`'s length, without waiting.
    fn try_read(&self, buf: &mut [u8]) -> usize {
        let mut st = self.state.borrow_mut();
        let n = st.buf.len().min(buf.len());
        if n > 0 {
            buf[..n].copy_from_slice(&st.buf.split_to(n));
            st.taken += n as u64;
            self.writable.notify_one();
        }
        n
    }

    /// Reads up to `max` bytes; empty once the pipe is closed and drained.
    async fn read(&self, max: usize) -> Vec<u8> {
        loop {
            {
                let mut st = self.state.borrow_mut();
                if !st.buf.is_empty() {
                    let n = st.buf.len().min(max);
                    let out = st.buf.split_to(n).to_vec();
                    st.taken += n as u64;
                    self.writable.notify_one();
                    return out;
                }
                if st.closed {
                    return Vec::new();
                }
            }
            self.readable.notified().await;
        }
    }

    /// Writes what fits of `bufs` (waiting while the pipe is full); Err once it is closed.
    async fn write(&self, bufs: &[&[u8]]) -> io::Result<usize> {
        loop {
            {
                let mut st = self.state.borrow_mut();
                if st.closed {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                let room = st.capacity.saturating_sub(st.buf.len());
                if room > 0 {
                    let mut n = 0;
                    for b in bufs {
                        let take = b.len().min(room - n);
                        st.buf.extend_from_slice(&b[..take]);
                        n += take;
                        if n == room {
                            break;
                        }
                    }
                    self.readable.notify_one();
                    return Ok(n);
                }
            }
            self.writable.notified().await;
        }
    }

    fn close(&self) {
        self.state.borrow_mut().closed = true;
        self.readable.notify_one();
        self.writable.notify_one();
    }
}

/// The server's end of an in-memory connection.
pub struct MemStream {
    /// Peer to server.
    rx: Rc<Pipe>,
    /// Server to peer.
    tx: Rc<Pipe>,
}

/// The test's end of an in-memory connection: a peer.
pub struct MemPeer {
    /// Server to peer.
    rx: Rc<Pipe>,
    /// Peer to server.
    tx: Rc<Pipe>,
}

/// A connected pair. The server's writes block once `capacity` bytes wait unread by the peer
/// (like a socket's buffers); the peer's writes never block.
pub fn pair(capacity: usize) -> (MemStream, MemPeer) {
    let up = Pipe::new(usize::MAX);
    let down = Pipe::new(capacity.max(1));
    (
        MemStream {
            rx: up.clone(),
            tx: down.clone(),
        },
        MemPeer { rx: down, tx: up },
    )
}

impl Stream for MemStream {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let got = self.rx.read(buf.len()).await;
        buf[..got.len()].copy_from_slice(&got);
        (Ok(got.len()), buf)
    }

    fn try_read(&self, buf: &mut [u8]) -> Option<usize> {
        Some(self.rx.try_read(buf)).filter(|&n| n > 0)
    }

    async fn writev(&self, bufs: Vec<Bytes>) -> (io::Result<usize>, Vec<Bytes>) {
        let slices: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
        let r = self.tx.write(&slices).await;
        (r, bufs)
    }

    fn shutdown(&self) {
        self.rx.close();
        self.tx.close();
    }

    fn bytes_acked(&self) -> Option<u64> {
        Some(self.tx.state.borrow().taken)
    }
}

impl MemPeer {
    /// Reads what the server sent, up to `max` bytes (waiting for at least one); empty once the
    /// server has closed the connection and everything was read.
    pub async fn read(&self, max: usize) -> Vec<u8> {
        self.rx.read(max).await
    }

    /// Sends bytes to the server; Err once the connection is closed.
    pub async fn write(&self, bytes: &[u8]) -> io::Result<()> {
        self.tx.write(&[bytes]).await.map(drop)
    }

    /// Bytes the server has written that the peer has not read yet.
    pub fn unread(&self) -> usize {
        self.rx.state.borrow().buf.len()
    }

    /// True once the server shut the connection down.
    pub fn closed_by_server(&self) -> bool {
        self.tx.state.borrow().closed
    }

    /// Closes both directions (the peer hangs up).
    pub fn close(&self) {
        self.rx.close();
        self.tx.close();
    }
}

/// A torrent's byte stream held in memory, with faults to inject.
pub struct MemDisk {
    data: Vec<u8>,
    /// Every read fails while set.
    pub fail: Cell<bool>,
    /// Each read takes this long (tokio time).
    pub delay: Cell<Duration>,
    /// Reads served so far.
    pub reads: Cell<u64>,
}

impl MemDisk {
    pub fn new(data: Vec<u8>) -> MemDisk {
        MemDisk {
            data,
            fail: Cell::new(false),
            delay: Cell::new(Duration::ZERO),
            reads: Cell::new(0),
        }
    }
}

impl Disk for MemDisk {
    async fn read_run(&self, _ctx: &TorrentCtx, start: u64, len: usize) -> io::Result<Vec<u8>> {
        if !self.delay.get().is_zero() {
            tokio::time::sleep(self.delay.get()).await;
        }
        if self.fail.get() {
            return Err(io::Error::other("injected read failure"));
        }
        self.reads.set(self.reads.get() + 1);
        let start = start as usize;
        self.data
            .get(start..start + len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
    }
}
