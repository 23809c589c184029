//! The portable backend (tokio on epoll, `pread` for piece data), used when io_uring is not
//! available, for example under Docker's default seccomp profile.
//!
//! Like `super::uring`, it only adapts sockets and reads to the seams in `super::stream` and
//! `super::worker`.

use super::stream::{tcp_bytes_acked, Disk, Stream};
use super::worker::{self, Worker};
use crate::state::TorrentCtx;
use bytes::Bytes;
use std::io::{self, IoSlice};
use std::rc::Rc;

struct TokioStream(tokio::net::TcpStream);

impl Stream for TokioStream {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        loop {
            if let Err(e) = self.0.readable().await {
                return (Err(e), buf);
            }
            match self.0.try_read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return (r, buf),
            }
        }
    }

    fn try_read(&self, buf: &mut [u8]) -> Option<usize> {
        self.0.try_read(buf).ok().filter(|&n| n > 0)
    }

    async fn writev(&self, bufs: Vec<Bytes>) -> (io::Result<usize>, Vec<Bytes>) {
        loop {
            if let Err(e) = self.0.writable().await {
                return (Err(e), bufs);
            }
            let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
            match self.0.try_write_vectored(&slices) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return (r, bufs),
            }
        }
    }

    fn bytes_acked(&self) -> Option<u64> {
        use std::os::fd::AsRawFd;
        tcp_bytes_acked(self.0.as_raw_fd())
    }

    fn shutdown(&self) {
        let _ = socket2::SockRef::from(&self.0).shutdown(std::net::Shutdown::Both);
    }

    fn abort(&self) {
        use std::os::fd::AsRawFd;
        super::stream::discard_unsent(self.0.as_raw_fd());
        self.shutdown();
    }
}

/// Reads with `pread` on the torrent's own descriptors (blocking the worker while it lasts).
struct PreadDisk;

impl Disk for PreadDisk {
    async fn read_run(&self, ctx: &TorrentCtx, start: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        ctx.files.read_at(&ctx.view.layout, start, &mut buf)?;
        Ok(buf)
    }
}

/// The portable backend's sockets.
struct Tokio;

impl worker::Net for Tokio {
    type Listener = tokio::net::TcpListener;
    type Conn = TokioStream;

    fn listen(l: std::net::TcpListener) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::from_std(l)
    }

    async fn accept(l: &Self::Listener) -> io::Result<(TokioStream, std::net::SocketAddr)> {
        let (s, addr) = l.accept().await?;
        let _ = s.set_nodelay(true);
        Ok((TokioStream(s), addr))
    }

    async fn connect(addr: std::net::SocketAddr) -> io::Result<TokioStream> {
        let s = tokio::net::TcpStream::connect(addr).await?;
        let _ = s.set_nodelay(true);
        Ok(TokioStream(s))
    }
}

/// Runs one worker thread until shutdown.
pub fn run(w: Worker) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio::task::LocalSet::new().block_on(&rt, worker::run::<Tokio, _>(w, Rc::new(PreadDisk)))
}
