//! The seams between the connection code and a backend: [`Stream`] (a connected socket, or the
//! test harness's in-memory pipe) and [`Disk`] (piece reads), and the send loop every write goes
//! through ([`send_all`]: bounded vectored writes, and the write-stall rule). This module knows
//! no connection state and no backend.

use crate::state::TorrentCtx;
use bytes::Bytes;
use std::io;
use std::time::Duration;

/// Now, on tokio's clock (paused in the connection harness, the real clock otherwise): the one
/// clock of the connection code.
pub fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Most buffers handed to one vectored write (IOV_MAX is 1024).
pub const MAX_IOVECS: usize = 512;

/// Bytes handed to one vectored write (an io_uring send on a stream socket completes only when
/// all of it is sent).
pub const WRITE_CHUNK: usize = 256 << 10;

/// A connected stream as the connection code needs it.
#[allow(async_fn_in_trait)]
pub trait Stream {
    /// Reads into `buf` (from index 0, up to its length); returns the count and the buffer.
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// Bytes already waiting, read into `buf` without waiting; None when there are none (or
    /// the stream is closed: the next [`Stream::read`] tells).
    fn try_read(&self, buf: &mut [u8]) -> Option<usize>;
    /// One vectored write of (a prefix of) `bufs`; returns the bytes written and the buffers.
    async fn writev(&self, bufs: Vec<Bytes>) -> (io::Result<usize>, Vec<Bytes>);
    /// Shuts the stream down both ways (ends any read or write in flight).
    fn shutdown(&self);
    /// Shuts it down and has the close discard whatever is still unsent (a TCP reset:
    /// `SO_LINGER` 0), for a peer dropped because it stopped reading: otherwise the kernel
    /// keeps its megabytes and retries them for minutes.
    fn abort(&self) {
        self.shutdown();
    }
    /// Bytes of ours the other side has taken so far (TCP_INFO `tcpi_bytes_acked` for a
    /// socket), if known: tells a peer that reads slowly from one that stopped reading.
    fn bytes_acked(&self) -> Option<u64>;
    /// The descriptor of a TCP socket in blocking mode that nothing else polls (the io_uring
    /// backend's), which `super::sendfile` may briefly make non-blocking to send file data
    /// without a copy; None for other streams.
    fn sendfile_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    /// A uTP connection rather than TCP (shown in the peers list and PEX flags).
    fn is_utp(&self) -> bool {
        false
    }
}

/// Reading torrent bytes from the data files.
#[allow(async_fn_in_trait)]
pub trait Disk {
    /// Reads `len` bytes of `ctx`'s torrent stream starting at `start` (pad files as zeros).
    async fn read_run(&self, ctx: &TorrentCtx, start: u64, len: usize) -> io::Result<Vec<u8>>;
}

/// Why a send did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The stream closed or failed.
    Closed,
    /// No byte was taken by the other side for a whole stall period.
    Stalled,
}

/// Writes all of `bufs` with vectored writes of at most [`WRITE_CHUNK`] bytes and
/// [`MAX_IOVECS`] buffers. A write during which the other side takes no byte for `stall` means
/// it is not reading: [`SendError::Stalled`]. (A slow reader that keeps taking bytes is fine.)
pub async fn send_all<S: Stream>(
    stream: &S,
    mut bufs: Vec<Bytes>,
    stall: Duration,
) -> Result<(), SendError> {
    while !bufs.is_empty() {
        let (mut take, mut bytes) = (0, 0);
        while take < bufs.len() && take < MAX_IOVECS && bytes < WRITE_CHUNK {
            bytes += bufs[take].len();
            take += 1;
        }
        let mut rest = bufs.split_off(take);
        if bytes > WRITE_CHUNK {
            // Split the last buffer at the chunk boundary (no copy: both halves share it).
            let last = bufs.last_mut().expect("took at least one buffer");
            let keep = last.len() - (bytes - WRITE_CHUNK);
            rest.insert(0, last.split_off(keep));
        }
        // Waiting longer than `stall` is fine while the peer acknowledges data (a slow reader);
        // `stall` since the last byte it acknowledged is a peer that stopped reading.
        let mut op = std::pin::pin!(stream.writev(bufs));
        let mut watch = StallWatch::new(stream, stall);
        let (res, mut head) = loop {
            tokio::select! {
                r = &mut op => break r,
                _ = tokio::time::sleep(watch.every()) => {
                    if watch.stalled(stream) {
                        return Err(SendError::Stalled);
                    }
                }
            }
        };
        match res {
            Ok(0) | Err(_) => return Err(SendError::Closed),
            Ok(n) => advance(&mut head, n),
        }
        head.extend(rest);
        bufs = head;
    }
    Ok(())
}

/// The write-stall rule for one blocked write: stalled once `stall` has passed since the peer
/// last acknowledged a byte (or since the write began, if it never did meanwhile). Checked every
/// tenth of `stall`, so the drop comes within 10% of it, not after a whole extra period.
pub struct StallWatch {
    acked: Option<u64>,
    since: std::time::Instant,
    stall: Duration,
}

impl StallWatch {
    pub fn new<S: Stream>(stream: &S, stall: Duration) -> StallWatch {
        StallWatch {
            acked: stream.bytes_acked(),
            since: now(),
            stall,
        }
    }

    /// How long to wait between checks.
    pub fn every(&self) -> Duration {
        (self.stall / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// Whether the peer has taken nothing for `stall`.
    pub fn stalled<S: Stream>(&mut self, stream: &S) -> bool {
        let acked = stream.bytes_acked();
        if acked.is_some() && acked != self.acked {
            self.acked = acked;
            self.since = now();
            return false;
        }
        now().saturating_duration_since(self.since) >= self.stall
    }
}

/// Makes the close of TCP socket `fd` a reset that discards unsent data (`SO_LINGER` 0).
pub fn discard_unsent(fd: std::os::fd::RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads a live linger struct of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Bytes of ours the peer has acknowledged on TCP socket `fd` (TCP_INFO), if the kernel says.
pub fn tcp_bytes_acked(fd: std::os::fd::RawFd) -> Option<u64> {
    // SAFETY: getsockopt writes at most `len` bytes into a zeroed tcp_info.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        (r == 0).then_some(info.tcpi_bytes_acked)
    }
}

/// Drops the first `n` bytes of a list of buffers (after a partial vectored write).
pub fn advance(bufs: &mut Vec<Bytes>, mut n: usize) {
    let mut done = 0;
    for b in bufs.iter_mut() {
        if n >= b.len() {
            n -= b.len();
            done += 1;
        } else {
            bytes::Buf::advance(b, n);
            break;
        }
    }
    bufs.drain(..done);
}
