//! The peer port's UDP sockets: binding them, and moving datagrams in batches (recvmmsg(2) and
//! sendmmsg(2) on a non-blocking socket, so one system call carries up to [`BATCH`]
//! datagrams each way). Knows nothing of uTP or the DHT.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::RawFd;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Largest datagram taken; longer ones are cut (and then fail to decode).
pub const MAX_DATAGRAM: usize = 2048;
/// Socket buffers asked for (the kernel caps them at net.core.[rw]mem_max).
const SOCKET_BUFFER: usize = 4 << 20;

/// A non-blocking UDP socket on `addr` (IPv6 ones IPv6-only, to share the port with IPv4).
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Don't-fragment, whatever the kernel believes of the path: uTP's MTU search needs a probe
    // that is too large to be dropped, not fragmented.
    let (level, opt, val) = if addr.is_ipv6() {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        )
    };
    // SAFETY: setsockopt with a c_int value on a socket we own.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            level,
            opt,
            (&val as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Fails if UDP `addr` is taken (bound and let go at once).
pub fn probe(addr: SocketAddr) -> io::Result<()> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())
}

/// Receive buffers for one recvmmsg call.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    from: Vec<Option<SocketAddr>>,
}

impl Default for RecvBatch {
    fn default() -> RecvBatch {
        RecvBatch {
            bufs: (0..BATCH).map(|_| vec![0u8; MAX_DATAGRAM]).collect(),
            lens: vec![0; BATCH],
            from: vec![None; BATCH],
        }
    }
}

impl RecvBatch {
    /// Datagram `i` of the last [`RecvBatch::recv`] and its sender.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        Some((self.from[i]?, &self.bufs[i][..self.lens[i]]))
    }

    /// Takes up to [`BATCH`] waiting datagrams without blocking; `WouldBlock` when none.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.recv_flags(fd, libc::MSG_DONTWAIT)
    }

    /// Waits for one datagram on a blocking socket (at most its SO_RCVTIMEO: then
    /// `WouldBlock`), then takes it and up to [`BATCH`] - 1 more already waiting: one system
    /// call per batch (MSG_WAITFORONE).
    pub fn recv_wait(&mut self, fd: RawFd) -> io::Result<usize> {
        self.recv_flags(fd, libc::MSG_WAITFORONE)
    }

    fn recv_flags(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        // SAFETY: zeroed mmsghdr, iovec and sockaddr_storage are valid; every pointer set below
        // points into `self` (or the local arrays), which outlive the call.
        unsafe {
            let mut names: [libc::sockaddr_storage; BATCH] = std::mem::zeroed();
            let mut iovs: [libc::iovec; BATCH] = std::mem::zeroed();
            let mut hdrs: [libc::mmsghdr; BATCH] = std::mem::zeroed();
            for i in 0..BATCH {
                iovs[i].iov_base = self.bufs[i].as_mut_ptr().cast();
                iovs[i].iov_len = MAX_DATAGRAM;
                let h = &mut hdrs[i].msg_hdr;
                h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
                h.msg_iov = &mut iovs[i];
                h.msg_iovlen = 1;
            }
            let r = libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as u32,
                flags,
                std::ptr::null_mut(),
            );
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = r as usize;
            for i in 0..n {
                self.lens[i] = (hdrs[i].msg_len as usize).min(MAX_DATAGRAM);
                let addr = SockAddr::new(names[i], hdrs[i].msg_hdr.msg_namelen);
                self.from[i] = addr.as_socket();
            }
            Ok(n)
        }
    }
}

/// Sends `out` (address, datagram) in as few sendmmsg calls as it takes; returns how many the
/// kernel took. Stops at the first refusal (a full socket buffer: the rest are dropped, and
/// uTP resends what mattered).
pub fn send_batch(fd: RawFd, out: &[(SocketAddr, Vec<u8>)]) -> usize {
    let mut sent = 0;
    while sent < out.len() {
        let chunk = &out[sent..(sent + BATCH).min(out.len())];
        let names: Vec<SockAddr> = chunk.iter().map(|(a, _)| SockAddr::from(*a)).collect();
        // SAFETY: as in `recv`; the iovecs point at datagrams in `out` that sendmmsg only reads.
        let r = unsafe {
            let mut iovs: [libc::iovec; BATCH] = std::mem::zeroed();
            let mut hdrs: [libc::mmsghdr; BATCH] = std::mem::zeroed();
            for (i, (_, d)) in chunk.iter().enumerate() {
                iovs[i].iov_base = d.as_ptr() as *mut libc::c_void;
                iovs[i].iov_len = d.len();
                let h = &mut hdrs[i].msg_hdr;
                h.msg_name = names[i].as_ptr() as *mut libc::c_void;
                h.msg_namelen = names[i].len();
                h.msg_iov = &mut iovs[i];
                h.msg_iovlen = 1;
            }
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr(),
                chunk.len() as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if r <= 0 {
            let e = io::Error::last_os_error();
            if r < 0 && e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if r < 0 && e.kind() != io::ErrorKind::WouldBlock {
                // Unreachable destination and the like: skip that datagram, send the rest.
                sent += 1;
                continue;
            }
            break;
        }
        sent += r as usize;
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn batches_both_ways() {
        let a = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = b.local_addr().unwrap();
        let out: Vec<(SocketAddr, Vec<u8>)> =
            (0..40u8).map(|i| (to, vec![i; 10 + i as usize])).collect();
        assert_eq!(send_batch(a.as_raw_fd(), &out), 40);
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        for _ in 0..100 {
            match batch.recv(b.as_raw_fd()) {
                Ok(n) => (0..n).for_each(|i| got.push(batch.get(i).unwrap().1.to_vec())),
                Err(_) if got.len() == 40 => break,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        assert_eq!(got, out.into_iter().map(|(_, d)| d).collect::<Vec<_>>());
        assert_eq!(batch.get(0).unwrap().0, a.local_addr().unwrap());
    }

    #[test]
    fn recv_wait_blocks_for_the_first_within_the_timeout_and_takes_the_rest() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(std::time::Duration::from_millis(100)))
            .unwrap();
        let mut batch = RecvBatch::default();
        let t = std::time::Instant::now();
        let e = batch.recv_wait(b.as_raw_fd()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(t.elapsed() >= std::time::Duration::from_millis(90));
        let to = b.local_addr().unwrap();
        for i in 0..5u8 {
            a.send_to(&[i; 3], to).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(batch.recv_wait(b.as_raw_fd()).unwrap(), 5);
        assert_eq!(batch.get(4).unwrap().1, &[4, 4, 4]);
    }
}
