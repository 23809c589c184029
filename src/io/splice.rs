//! File data to a socket without passing through user space or being copied into socket
//! buffers: `splice` from a data file into a pipe (page references from the page cache) and
//! from the pipe into the socket. Used for the web seed's bodies on the io_uring backend, whose
//! sockets are in blocking mode for io_uring: the socket is switched to non-blocking for the
//! splice only (no io_uring operation is in flight on it meanwhile), and an `EAGAIN` waits for
//! it to become writable through tokio's reactor (which the io_uring runtime also runs). A
//! reader that takes no byte for the stall period ends the send, as in `stream::send_all`.
//!
//! It owns the pipe and the non-blocking window; it decides nothing about what is sent.

use super::stream::{SendError, Stream};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Bytes the pipe is asked to hold (Linux's default cap for unprivileged users, 1 MiB).
const PIPE_BYTES: usize = 1 << 20;

/// A connection's pipe (made on its first spliced body); empty between sends.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
}

impl Pipe {
    pub fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors are new and owned here alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETPIPE_SZ on our own pipe; on failure the default size (64 KiB) stays.
        let set = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES as i32) };
        let size = if set > 0 { set as usize } else { 64 << 10 };
        Ok(Pipe { read, write, size })
    }
}

/// `fd` made non-blocking while this lives; blocking again after.
struct NonBlocking {
    fd: RawFd,
    flags: i32,
}

impl NonBlocking {
    fn set(fd: RawFd) -> io::Result<NonBlocking> {
        // SAFETY: F_GETFL/F_SETFL on a descriptor the caller keeps open.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(NonBlocking { fd, flags })
        }
    }
}

impl Drop for NonBlocking {
    fn drop(&mut self) {
        // SAFETY: as in `set`; restores the flags read there.
        unsafe {
            libc::fcntl(self.fd, libc::F_SETFL, self.flags);
        }
    }
}

/// A raw descriptor for tokio's reactor, never closed by it.
struct Borrowed(RawFd);

impl AsRawFd for Borrowed {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

fn splice(
    from: RawFd,
    off: Option<&mut i64>,
    to: RawFd,
    len: usize,
    more: bool,
) -> io::Result<usize> {
    let flags =
        libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK | if more { libc::SPLICE_F_MORE } else { 0 };
    let off = off.map_or(std::ptr::null_mut(), |o| o as *mut i64);
    loop {
        // SAFETY: plain descriptors; `off` is null or points at a live i64.
        let n = unsafe { libc::splice(from, off, to, std::ptr::null_mut(), len, flags) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Sends `len` bytes of `file` from `offset` to socket `sock` (the stream's own descriptor).
/// Bytes a failed send left in the pipe make it unusable: the caller closes the connection.
pub async fn send_file<S: Stream>(
    stream: &S,
    sock: RawFd,
    pipe: &mut Pipe,
    file: RawFd,
    offset: u64,
    len: u64,
    stall: Duration,
) -> Result<(), SendError> {
    let _nb = NonBlocking::set(sock).map_err(|_| SendError::Closed)?;
    let mut reactor: Option<tokio::io::unix::AsyncFd<Borrowed>> = None;
    let mut off = offset as i64;
    let (mut left, mut held) = (len, 0usize);
    while left > 0 || held > 0 {
        if held == 0 {
            let want = (left as usize).min(pipe.size);
            match splice(file, Some(&mut off), pipe.write.as_raw_fd(), want, false) {
                Ok(0) | Err(_) => return Err(SendError::Closed),
                Ok(n) => {
                    held = n;
                    left -= n as u64;
                }
            }
        }
        match splice(pipe.read.as_raw_fd(), None, sock, held, left > 0) {
            Ok(0) => return Err(SendError::Closed),
            Ok(n) => held -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if reactor.is_none() {
                    // SAFETY: `sock` stays open for this call (the caller's stream owns it)
                    // and the registration is dropped, deregistering it, before we return.
                    let fd = unsafe {
                        tokio::io::unix::AsyncFd::register_with_interest(
                            Borrowed(sock),
                            tokio::io::Interest::WRITABLE,
                        )
                    }
                    .map_err(|_| SendError::Closed)?;
                    reactor = Some(fd);
                }
                let fd = reactor.as_ref().expect("registered above");
                wait_writable(stream, fd, stall).await?;
            }
            Err(_) => return Err(SendError::Closed),
        }
    }
    Ok(())
}

/// Waits for the socket to take bytes again; a whole `stall` without any byte acknowledged
/// by the peer is [`SendError::Stalled`].
async fn wait_writable<S: Stream>(
    stream: &S,
    fd: &tokio::io::unix::AsyncFd<Borrowed>,
    stall: Duration,
) -> Result<(), SendError> {
    let mut acked = stream.bytes_acked();
    loop {
        match tokio::time::timeout(stall, fd.writable()).await {
            Ok(Ok(mut ready)) => {
                // The next splice finds out whether there is room; readiness is re-armed.
                ready.clear_ready();
                return Ok(());
            }
            Ok(Err(_)) => return Err(SendError::Closed),
            Err(_) => {
                let now = stream.bytes_acked();
                if now.is_none() || now == acked {
                    return Err(SendError::Stalled);
                }
                acked = now;
            }
        }
    }
}
