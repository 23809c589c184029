//! File data to a socket without passing through user space or being copied into socket
//! buffers: the response head with `send(MSG_MORE)`, then `sendfile` from the data file (page
//! references from the page cache). Used for the web seed's bodies on the io_uring backend,
//! whose sockets are in blocking mode for io_uring: the socket is made non-blocking for these
//! calls only (no io_uring operation is in flight on it meanwhile), and an `EAGAIN` waits for
//! it to become writable through tokio's reactor (which the io_uring runtime also runs). A
//! reader that takes no byte for the stall period ends the send, as in `stream::send_all`.
//!
//! It owns the non-blocking window and the wait; it decides nothing about what is sent.

use super::stream::{SendError, Stream};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// `fd` made non-blocking and corked (TCP_CORK: only full segments leave, as nginx's
/// `tcp_nopush` does) while this lives; blocking and uncorked (which sends the rest) after.
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
            cork(fd, 1);
            Ok(NonBlocking { fd, flags })
        }
    }
}

impl Drop for NonBlocking {
    fn drop(&mut self) {
        // SAFETY: as in `set`; restores the flags read there.
        cork(self.fd, 0);
        unsafe {
            libc::fcntl(self.fd, libc::F_SETFL, self.flags);
        }
    }
}

/// Sets TCP_CORK on `fd` (best effort: a socket that refuses it just sends as before).
fn cork(fd: RawFd, on: libc::c_int) {
    // SAFETY: setsockopt reads one c_int from a live local.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// A raw descriptor for tokio's reactor, never closed by it.
pub struct Borrowed(RawFd);

/// A connection's registration with tokio's reactor, made on its first `EAGAIN` and kept for
/// its next bodies; it must be dropped (deregistering the socket) before the socket closes.
pub type Reactor = Option<tokio::io::unix::AsyncFd<Borrowed>>;

impl AsRawFd for Borrowed {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// One system call's result: bytes taken, or an error (EINTR retried).
fn retry(mut f: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let n = f();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Sends `head`, then `len` bytes of `file` from `offset`, to socket `sock` (the stream's own
/// descriptor). On an error part of it may have gone: the caller closes the connection.
#[allow(clippy::too_many_arguments)]
pub async fn send_file<S: Stream>(
    stream: &S,
    reactor: &mut Reactor,
    sock: RawFd,
    head: &[u8],
    file: RawFd,
    offset: u64,
    len: u64,
    stall: Duration,
) -> Result<(), SendError> {
    let _nb = NonBlocking::set(sock).map_err(|_| SendError::Closed)?;
    let (mut sent_head, mut off, end) = (0usize, offset as libc::off_t, offset + len);
    loop {
        let step = if sent_head < head.len() {
            let rest = &head[sent_head..];
            // SAFETY: sends from a live slice; MSG_MORE holds it back for the data behind it.
            retry(|| unsafe {
                libc::send(
                    sock,
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_MORE | libc::MSG_NOSIGNAL,
                )
            })
            .map(|n| sent_head += n)
        } else if (off as u64) < end {
            let want = (end - off as u64).min(1 << 30) as usize;
            // SAFETY: plain descriptors; `off` is a live off_t the kernel advances.
            match retry(|| unsafe { libc::sendfile(sock, file, &mut off, want) }) {
                // The file is shorter than the torrent says: it changed under us.
                Ok(0) => return Err(SendError::Closed),
                r => r.map(drop),
            }
        } else {
            return Ok(());
        };
        match step {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if reactor.is_none() {
                    // SAFETY: `sock` stays open while the registration lives: the caller
                    // drops it before the stream that owns the socket.
                    let fd = unsafe {
                        tokio::io::unix::AsyncFd::register_with_interest(
                            Borrowed(sock),
                            tokio::io::Interest::WRITABLE,
                        )
                    }
                    .map_err(|_| SendError::Closed)?;
                    *reactor = Some(fd);
                }
                let fd = reactor.as_ref().expect("registered above");
                wait_writable(stream, fd, stall).await?;
            }
            Err(_) => return Err(SendError::Closed),
        }
    }
}

/// Waits for the socket to take bytes again; `stall` since the peer last acknowledged a byte
/// is [`SendError::Stalled`].
async fn wait_writable<S: Stream>(
    stream: &S,
    fd: &tokio::io::unix::AsyncFd<Borrowed>,
    stall: Duration,
) -> Result<(), SendError> {
    let mut watch = super::stream::StallWatch::new(stream, stall);
    loop {
        match tokio::time::timeout(watch.every(), fd.writable()).await {
            Ok(Ok(mut ready)) => {
                // The next call finds out whether there is room; readiness is re-armed.
                ready.clear_ready();
                return Ok(());
            }
            Ok(Err(_)) => return Err(SendError::Closed),
            Err(_) => {
                if watch.stalled(stream) {
                    return Err(SendError::Stalled);
                }
            }
        }
    }
}
