//! The io_uring backend (tokio-uring): one runtime per worker thread, piece reads and socket
//! reads/writes as io_uring operations.
//!
//! Piece reads use the descriptors of the process's bounded cache (`crate::storage::pool`,
//! through the torrent's [`crate::storage::files::DataFiles`]): each worker wraps a descriptor
//! number in a tokio-uring file that never closes it, and every read's buffer holds an `Arc` of
//! each file it reads until the kernel completes it, so a descriptor is never closed (and its
//! number never reused) under a read in flight, even when the read's future is dropped or the
//! cache evicts the file meanwhile.

use super::stream::{tcp_bytes_acked, Disk, Stream};
use super::worker::{self, Worker};
use crate::state::TorrentCtx;
use crate::storage::files::not_open;
use crate::storage::pool::OpenFile;
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use tokio_uring::buf::{BoundedBuf, IoBuf, IoBufMut};

/// True if this kernel and seccomp profile let us create an io_uring. Probed on a thread of
/// its own: a ring's teardown queues task work to the thread that made it, which interrupts
/// that thread's next blocking socket call that has a timeout (EINTR), so the caller's thread
/// must never own one.
pub fn available() -> Result<(), io::Error> {
    std::thread::spawn(|| tokio_uring::Runtime::new(&tokio_uring::builder()).map(drop))
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("io_uring probe panicked")))
}

struct UringStream(tokio_uring::net::TcpStream);

impl Stream for UringStream {
    async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        self.0.read(buf).await
    }

    async fn writev(&self, bufs: Vec<Bytes>) -> (io::Result<usize>, Vec<Bytes>) {
        self.0.writev(bufs).await
    }

    fn try_read(&self, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: recv into `buf`'s own memory, at most its length; MSG_DONTWAIT makes this one
        // call non-blocking on the (blocking-mode) socket, and no io_uring read is in flight
        // on it (the connection's one reader calls this between its reads).
        let n = unsafe {
            libc::recv(
                self.0.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        (n > 0).then_some(n as usize)
    }

    fn bytes_acked(&self) -> Option<u64> {
        tcp_bytes_acked(self.0.as_raw_fd())
    }

    fn shutdown(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }

    fn abort(&self) {
        super::stream::discard_unsent(self.0.as_raw_fd());
        self.shutdown();
    }

    fn sendfile_fd(&self) -> Option<RawFd> {
        Some(self.0.as_raw_fd())
    }
}

/// A read buffer that keeps the files read from (and so their descriptors) open until
/// tokio-uring gives the buffer back, which is after the kernel has completed the read.
struct ReadBuf {
    data: Vec<u8>,
    _open: Vec<Arc<OpenFile>>,
}

// SAFETY: every method forwards to the Vec, whose heap pointer is stable while it is owned here.
unsafe impl IoBuf for ReadBuf {
    fn stable_ptr(&self) -> *const u8 {
        IoBuf::stable_ptr(&self.data)
    }

    fn bytes_init(&self) -> usize {
        IoBuf::bytes_init(&self.data)
    }

    fn bytes_total(&self) -> usize {
        IoBuf::bytes_total(&self.data)
    }
}

// SAFETY: as above.
unsafe impl IoBufMut for ReadBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        IoBufMut::stable_mut_ptr(&mut self.data)
    }

    unsafe fn set_init(&mut self, pos: usize) {
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { IoBufMut::set_init(&mut self.data, pos) }
    }
}

/// Per-thread tokio-uring handles for data-file descriptors, by descriptor number. They never
/// close the descriptor (the cache's [`OpenFile`] owns it, and the read holds that); a number
/// reused for another data file is the same handle for the new file, so entries never go stale.
#[derive(Default)]
struct UringDisk {
    handles: RefCell<HashMap<RawFd, Rc<ManuallyDrop<tokio_uring::fs::File>>>>,
}

impl UringDisk {
    fn handle(&self, fd: RawFd) -> Rc<ManuallyDrop<tokio_uring::fs::File>> {
        self.handles
            .borrow_mut()
            .entry(fd)
            // SAFETY: `fd` is open (the caller holds the OpenFile owning it); ManuallyDrop keeps
            // tokio-uring from ever closing it.
            .or_insert_with(|| {
                Rc::new(ManuallyDrop::new(unsafe {
                    tokio_uring::fs::File::from_raw_fd(fd)
                }))
            })
            .clone()
    }
}

impl Disk for UringDisk {
    async fn read_run(&self, ctx: &TorrentCtx, start: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = ReadBuf {
            data: Vec::with_capacity(len),
            _open: Vec::new(),
        };
        for span in ctx.view.layout.spans(start, len as u64) {
            let at = buf.data.len();
            let n = span.len as usize;
            if span.pad {
                buf.data.resize(at + n, 0);
                continue;
            }
            let open = ctx.files.file(span.file).map_err(|_| not_open())?;
            open.note_disk_read();
            let file = self.handle(open.file().as_raw_fd());
            buf._open.push(open);
            let (res, slice) = file
                .read_exact_at(buf.slice(at..at + n), span.file_offset)
                .await;
            buf = slice.into_inner();
            res?;
        }
        Ok(buf.data)
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
