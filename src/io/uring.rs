//! The io_uring backend (tokio-uring): one runtime per worker thread, piece reads and socket
//! reads/writes as io_uring operations, data files opened once per thread.

use super::conn::{Disk, Stream};
use super::worker;
use super::Worker;
use crate::metainfo::InfoHash;
use crate::server::TorrentCtx;
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use tokio_uring::buf::BoundedBuf;

/// True if this kernel and seccomp profile let us create an io_uring.
pub fn available() -> Result<(), io::Error> {
    tokio_uring::Runtime::new(&tokio_uring::builder()).map(drop)
}

struct UringStream(tokio_uring::net::TcpStream);

impl Stream for UringStream {
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        self.0.read(buf).await
    }

    async fn writev(&self, bufs: Vec<Bytes>) -> (io::Result<usize>, Vec<Bytes>) {
        self.0.writev(bufs).await
    }

    fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }

    fn shutdown(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// Per-thread table of data files opened for io_uring reads.
#[derive(Default)]
struct UringDisk {
    files: RefCell<HashMap<(InfoHash, usize), Rc<tokio_uring::fs::File>>>,
}

impl UringDisk {
    fn file(&self, ctx: &TorrentCtx, index: usize) -> io::Result<Rc<tokio_uring::fs::File>> {
        let key = (ctx.view.info_hash, index);
        if let Some(f) = self.files.borrow().get(&key) {
            return Ok(f.clone());
        }
        let std_file = ctx.files[index]
            .as_ref()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "data file is not open"))?
            .try_clone()?;
        let f = Rc::new(tokio_uring::fs::File::from_std(std_file));
        self.files.borrow_mut().insert(key, f.clone());
        Ok(f)
    }
}

impl Disk for UringDisk {
    async fn read_run(&self, ctx: &TorrentCtx, start: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf: Vec<u8> = Vec::with_capacity(len);
        for span in ctx.view.layout.spans(start, len as u64) {
            let at = buf.len();
            let n = span.len as usize;
            if span.pad {
                buf.resize(at + n, 0);
                continue;
            }
            let file = self.file(ctx, span.file)?;
            let (res, slice) = file
                .read_exact_at(buf.slice(at..at + n), span.file_offset)
                .await;
            buf = slice.into_inner();
            res?;
        }
        Ok(buf)
    }
}

/// The io_uring backend's sockets.
struct Uring;

impl worker::Net for Uring {
    type Listener = tokio_uring::net::TcpListener;
    type Conn = UringStream;

    fn listen(l: std::net::TcpListener) -> io::Result<Self::Listener> {
        Ok(tokio_uring::net::TcpListener::from_std(l))
    }

    async fn accept(l: &Self::Listener) -> io::Result<(UringStream, std::net::SocketAddr)> {
        let (s, addr) = l.accept().await?;
        let _ = s.set_nodelay(true);
        Ok((UringStream(s), addr))
    }

    async fn connect(addr: std::net::SocketAddr) -> io::Result<UringStream> {
        let s = tokio_uring::net::TcpStream::connect(addr).await?;
        let _ = s.set_nodelay(true);
        Ok(UringStream(s))
    }
}

/// Runs one worker thread until shutdown.
pub fn run(w: Worker) -> io::Result<()> {
    let rt = tokio_uring::Runtime::new(tokio_uring::builder().entries(1024))?;
    rt.block_on(worker::run::<Uring, _>(w, Rc::new(UringDisk::default())))
}
