//! uTP (BEP 29) on the peer port's UDP sockets, driven on one worker's runtime (the first):
//! per socket a [`Hub`] owns the sans-IO [`utp::Socket`], and one driver task moves datagrams
//! in batches (`super::udp`), hands datagrams that are not uTP to the DHT's queue, runs the
//! timers, and starts `super::conn::serve` for each accepted connection over a [`UtpStream`]:
//! the same connection code as TCP (handshake, MSE, extensions, limits, accounting).
//!
//! Writes and reads happen on the connection tasks, which send what their connection has to
//! send at once; the driver sends what acks, timers and arrivals release. Everything here runs
//! on one thread (`Rc`, `RefCell`), so the core is borrowed only inside a poll, never across an
//! await. A connection the server closed lingers (FIN sent, resends answered) for at most
//! [`LINGER`] (3 s when the peer had already sent its FIN), then is removed.

use super::admit::{admit, Active};
use super::conn;
use super::stream::{now, Disk, Stream};
use super::udp::{self, RecvBatch};
use crate::peer_source::Candidate;
use crate::state::Shared;
use crate::utp::{self, Event, Handle, SocketConfig, State, UtpStatus};
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// How long a connection we closed may wait for its peer's FIN.
pub const LINGER: Duration = Duration::from_secs(30);
/// The same when the peer had finished first.
pub const LINGER_AFTER_PEER_FIN: Duration = Duration::from_secs(3);
/// How often the status counters are refreshed.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Receive batches taken before the driver lets other tasks run.
const BATCHES_PER_TURN: usize = 8;

pub use crate::dht::service::Datagram;
pub use first::UtpFirst;

mod first;

/// One UDP socket of the peer port, with where its DHT datagrams go.
pub struct Endpoint {
    pub socket: UdpSocket,
    pub dht: SyncSender<Datagram>,
}

/// What the first worker needs to serve uTP.
pub struct UtpParts {
    pub endpoints: Vec<Endpoint>,
    /// Peers to dial over uTP (a TCP dial to them failed, or failed before).
    pub dials: tokio::sync::mpsc::UnboundedReceiver<Candidate>,
    pub first: Arc<UtpFirst>,
    pub status: Arc<UtpStatus>,
}

/// How every worker hands a peer to the uTP dialler.
#[derive(Clone)]
pub struct Fallback {
    pub tx: tokio::sync::mpsc::UnboundedSender<Candidate>,
    pub first: Arc<UtpFirst>,
    pub status: Arc<UtpStatus>,
}

#[derive(Default)]
struct Slot {
    read: Option<Waker>,
    write: Option<Waker>,
}

/// One socket's connections.
pub struct Hub {
    fd: tokio::net::UdpSocket,
    raw: RawFd,
    core: RefCell<utp::Socket>,
    slots: RefCell<HashMap<Handle, Slot>>,
    /// Wakes the driver when a connection's timer may now come before its sleep's end.
    kick: tokio::sync::Notify,
    wake_at: Cell<Option<Instant>>,
    lingering: RefCell<BTreeSet<(Instant, Handle)>>,
    dht: SyncSender<Datagram>,
    status: Arc<UtpStatus>,
}

impl Hub {
    fn new(e: Endpoint, cfg: &crate::config::UtpConfig, status: Arc<UtpStatus>) -> io::Result<Hub> {
        let raw = e.socket.as_raw_fd();
        let mut seed = [0u8; 8];
        // SAFETY: getrandom writes at most 8 bytes into `seed`.
        unsafe { libc::getrandom(seed.as_mut_ptr().cast(), 8, 0) };
        let seed = u64::from_le_bytes(seed) ^ raw as u64;
        let max_packet = match e.socket.local_addr()? {
            SocketAddr::V4(_) => utp::conn::MAX_PACKET_V4,
            SocketAddr::V6(_) => utp::conn::MAX_PACKET_V6,
        };
        let sc = SocketConfig {
            conn: utp::Config {
                max_packet,
                ..utp::Config::default()
            },
            max_half_open: cfg.max_half_open,
            max_conns: cfg.max_connections,
            // The server's own per-IP cap applies at admission; this one bounds what a single
            // address can hold before that.
            max_per_ip: 64,
            ..SocketConfig::default()
        };
        Ok(Hub {
            fd: tokio::net::UdpSocket::from_std(e.socket)?,
            raw,
            core: RefCell::new(utp::Socket::new(sc, seed)),
            slots: RefCell::new(HashMap::new()),
            kick: tokio::sync::Notify::new(),
            wake_at: Cell::new(None),
            lingering: RefCell::new(BTreeSet::new()),
            dht: e.dht,
            status,
        })
    }

    /// Sends everything queued in the core.
    fn send_out(&self) {
        let out: Vec<Datagram> = {
            let mut core = self.core.borrow_mut();
            std::iter::from_fn(|| core.pop_transmit()).collect()
        };
        if out.is_empty() {
            return;
        }
        let sent = udp::send_batch(self.raw, &out);
        self.status.send_dropped.add((out.len() - sent) as u64);
    }

    /// After a connection task touched `h`: its datagrams out, the driver told of a nearer timer.
    fn flush(&self, h: Handle) {
        self.core.borrow_mut().transmit_from(h, now());
        self.send_out();
        let next = self.core.borrow().conn(h).and_then(|c| c.poll_timeout());
        if let (Some(t), Some(w)) = (next, self.wake_at.get()) {
            if t < w {
                self.kick.notify_one();
            }
        }
    }

    fn wake(&self, h: Handle) {
        if let Some(s) = self.slots.borrow_mut().get_mut(&h) {
            if let Some(w) = s.read.take() {
                w.wake();
            }
            if let Some(w) = s.write.take() {
                w.wake();
            }
        }
    }

    /// A connection the server is done with: FIN, then linger.
    fn release(&self, h: Handle) {
        if self.slots.borrow_mut().remove(&h).is_none() {
            return;
        }
        let mut linger = LINGER;
        if let Some(c) = self.core.borrow_mut().conn_mut(h) {
            // A peer that already sent its FIN has usually closed its socket: our FIN may
            // never be acked, and resending it for long helps nobody.
            if c.is_eof() {
                linger = LINGER_AFTER_PEER_FIN;
            }
            c.close(now());
        }
        self.lingering.borrow_mut().insert((now() + linger, h));
        self.flush(h);
    }

    fn register(&self, h: Handle, waker: &Waker, write: bool) {
        let mut slots = self.slots.borrow_mut();
        let s = slots.entry(h).or_default();
        let w = if write { &mut s.write } else { &mut s.read };
        *w = Some(waker.clone());
    }
}

/// A uTP connection as the connection code sees it.
pub struct UtpStream {
    hub: Rc<Hub>,
    h: Handle,
}

impl Stream for UtpStream {
    async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let n = std::future::poll_fn(|cx| {
            let mut core = self.hub.core.borrow_mut();
            let Some(c) = core.conn_mut(self.h) else {
                return Poll::Ready(0);
            };
            let n = c.read(&mut buf);
            if n > 0 || c.is_eof() || matches!(c.state(), State::Closed | State::Reset) {
                return Poll::Ready(n);
            }
            drop(core);
            self.hub.register(self.h, cx.waker(), false);
            Poll::Pending
        })
        .await;
        if n > 0 {
            // The window opened: an update may be due.
            self.hub.flush(self.h);
        }
        (Ok(n), buf)
    }

    fn try_read(&self, buf: &mut [u8]) -> Option<usize> {
        let n = self.hub.core.borrow_mut().conn_mut(self.h)?.read(buf);
        if n > 0 {
            self.hub.flush(self.h);
        }
        (n > 0).then_some(n)
    }

    async fn writev(&self, bufs: Vec<Bytes>) -> (io::Result<usize>, Vec<Bytes>) {
        let r = std::future::poll_fn(|cx| {
            let mut core = self.hub.core.borrow_mut();
            let Some(c) = core.conn_mut(self.h) else {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            };
            if matches!(c.state(), State::Closed | State::Reset) {
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            if c.send_capacity() == 0 {
                drop(core);
                self.hub.register(self.h, cx.waker(), true);
                return Poll::Pending;
            }
            let mut n = 0;
            for b in &bufs {
                let took = c.write(b);
                n += took;
                if took < b.len() {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        })
        .await;
        self.hub.flush(self.h);
        (r, bufs)
    }

    fn shutdown(&self) {
        self.hub.release(self.h);
    }

    fn bytes_acked(&self) -> Option<u64> {
        let core = self.hub.core.borrow();
        Some(core.conn(self.h).map_or(0, |c| c.stats().bytes_acked))
    }

    fn is_utp(&self) -> bool {
        true
    }
}

impl Drop for UtpStream {
    fn drop(&mut self) {
        self.hub.release(self.h);
    }
}

/// Dials `addr` over uTP from `hub`; resolves once the peer answered our SYN.
async fn connect(hub: &Rc<Hub>, addr: SocketAddr) -> io::Result<UtpStream> {
    let h = hub
        .core
        .borrow_mut()
        .connect(addr, now())
        .ok_or_else(|| io::Error::other("uTP connection cap"))?;
    hub.slots.borrow_mut().insert(h, Slot::default());
    // Released (closed, lingering) if the wait below is dropped or fails.
    let stream = UtpStream {
        hub: hub.clone(),
        h,
    };
    hub.flush(h);
    std::future::poll_fn(|cx| {
        let state = hub.core.borrow().conn(h).map(|c| c.state());
        match state {
            Some(State::SynSent) => {
                hub.register(h, cx.waker(), true);
                Poll::<io::Result<()>>::Pending
            }
            Some(State::Connected) => Poll::Ready(Ok(())),
            _ => Poll::Ready(Err(io::ErrorKind::ConnectionRefused.into())),
        }
    })
    .await?;
    Ok(stream)
}

/// Starts a driver per endpoint and the dialler; returns at once (the tasks end at shutdown).
pub(super) fn start<D: Disk + 'static>(
    parts: UtpParts,
    shared: &Arc<Shared>,
    disk: &Rc<D>,
    active: &Rc<Active>,
) -> io::Result<()> {
    let mut hubs = Vec::new();
    for e in parts.endpoints {
        let hub = Rc::new(Hub::new(e, &shared.config.utp, parts.status.clone())?);
        hubs.push(hub.clone());
        let (shared, disk, active) = (shared.clone(), disk.clone(), active.clone());
        tokio::task::spawn_local(async move { drive(hub, shared, disk, active).await });
    }
    let (shared, disk, active) = (shared.clone(), disk.clone(), active.clone());
    let mut dials = parts.dials;
    let first = parts.first;
    tokio::task::spawn_local(async move {
        loop {
            let c = tokio::select! {
                c = dials.recv() => match c { Some(c) => c, None => break },
                _ = shared.shutdown.triggered() => break,
            };
            let family = c.addr.is_ipv6();
            let Some(hub) = hubs
                .iter()
                .find(|h| h.fd.local_addr().is_ok_and(|a| a.is_ipv6() == family))
                .cloned()
            else {
                continue;
            };
            let Some(guard) = admit(&shared, &active, c.addr, Some(&c)) else {
                continue;
            };
            let (shared, disk, first) = (shared.clone(), disk.clone(), first.clone());
            tokio::task::spawn_local(async move {
                hub.status.dialed.add(1);
                match tokio::time::timeout(super::CONNECT_TIMEOUT, connect(&hub, c.addr)).await {
                    Ok(Ok(stream)) => {
                        first.insert(c.addr);
                        tracing::debug!(addr = %c.addr, source = %c.source, "connected out over uTP");
                        conn::serve(shared, stream, &*disk, c.addr, Some(c.info_hash)).await;
                    }
                    _ => {
                        first.remove(c.addr);
                        hub.status.dial_failed.add(1);
                        tracing::debug!(addr = %c.addr, "connecting out over uTP failed");
                    }
                }
                drop(guard);
            });
        }
    });
    Ok(())
}

/// One endpoint's loop: receive, time out, accept, wake, send; refresh the status.
async fn drive<D: Disk + 'static>(
    hub: Rc<Hub>,
    shared: Arc<Shared>,
    disk: Rc<D>,
    active: Rc<Active>,
) {
    let mut batch = RecvBatch::default();
    let mut touched: Vec<Handle> = Vec::new();
    let mut sampler = Sampler::default();
    let mut next_sample = now();
    // At shutdown the driver keeps going (the connections' last writes and FINs need their
    // acks) until no connection task is left, for at most the shutdown grace.
    let mut stop_by: Option<Instant> = None;
    let mut recv_failed = false;
    loop {
        if stop_by.is_some_and(|t| now() >= t || hub.slots.borrow().is_empty()) {
            break;
        }
        let deadline = [
            hub.core.borrow().poll_timeout(),
            hub.lingering.borrow().first().map(|(t, _)| *t),
            Some(next_sample),
            stop_by,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(next_sample);
        hub.wake_at.set(Some(deadline));
        tokio::select! {
            _ = shared.shutdown.triggered(), if stop_by.is_none() => {
                stop_by = Some(now() + super::SHUTDOWN_GRACE);
            }
            r = hub.fd.readable() => {
                if r.is_err() {
                    break;
                }
                for _ in 0..BATCHES_PER_TURN {
                    // try_io clears the readiness on WouldBlock.
                    match hub.fd.try_io(tokio::io::Interest::READABLE, || batch.recv(hub.raw)) {
                        Ok(n) => on_datagrams(&hub, &batch, n, &mut touched),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // Interrupted, or an ICMP error surfacing (taken by this call).
                        Err(e) if transient(&e) => {}
                        Err(e) => {
                            // Persistent (a seccomp filter, say): back off instead of spinning.
                            if !recv_failed {
                                tracing::error!("uTP: receiving on udp failed: {e}");
                                recv_failed = true;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            break;
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
            _ = hub.kick.notified() => {}
        }
        let t = now();
        hub.core.borrow_mut().handle_timeout(t);
        expire_lingering(&hub, t);
        loop {
            let ev = hub.core.borrow_mut().poll_event();
            match ev {
                None => break,
                Some(Event::Accepted(h)) => accept(&hub, h, &shared, &disk, &active),
                Some(Event::Closed(h, _)) | Some(Event::Readable(h)) => touched.push(h),
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for h in touched.drain(..) {
            hub.wake(h);
        }
        hub.send_out();
        if t >= next_sample {
            next_sample = t + SAMPLE_EVERY;
            sampler.sample(&hub);
        }
    }
}

/// Errors a UDP receive reports once (ICMP errors for an earlier send, a signal).
fn transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        Interrupted | ConnectionRefused | ConnectionReset | HostUnreachable | NetworkUnreachable
    ) || e.raw_os_error() == Some(libc::EHOSTUNREACH)
        || e.raw_os_error() == Some(libc::ENETUNREACH)
}

fn on_datagrams(hub: &Hub, batch: &RecvBatch, n: usize, touched: &mut Vec<Handle>) {
    let t = now();
    let mut core = hub.core.borrow_mut();
    for i in 0..n {
        let Some((from, bytes)) = batch.get(i) else {
            continue;
        };
        if utp::looks_like_utp(bytes) {
            hub.status.datagrams_utp.add(1);
            if let Some(h) = core.handle_datagram(from, bytes, t) {
                touched.push(h);
            }
        } else if bytes.first() == Some(&b'd') {
            hub.status.datagrams_dht.add(1);
            if hub.dht.try_send((from, bytes.to_vec())).is_err() {
                hub.status.datagrams_dht_dropped.add(1);
            }
        } else {
            hub.status.datagrams_malformed.add(1);
        }
    }
}

fn accept<D: Disk + 'static>(
    hub: &Rc<Hub>,
    h: Handle,
    shared: &Arc<Shared>,
    disk: &Rc<D>,
    active: &Rc<Active>,
) {
    let Some(addr) = hub.core.borrow().addr(h) else {
        return;
    };
    hub.slots.borrow_mut().insert(h, Slot::default());
    let stream = UtpStream {
        hub: hub.clone(),
        h,
    };
    let Some(guard) = admit(shared, active, addr, None) else {
        // Refused (blocklist, caps): closed at once (dropping the stream sends FIN).
        return;
    };
    hub.status.accepted.add(1);
    let (shared, disk) = (shared.clone(), disk.clone());
    tokio::task::spawn_local(async move {
        conn::serve(shared, stream, &*disk, addr, None).await;
        drop(guard);
    });
}

/// Removes closed connections whose peer did not finish within [`LINGER`].
fn expire_lingering(hub: &Hub, t: Instant) {
    let mut l = hub.lingering.borrow_mut();
    while l.first().is_some_and(|(at, _)| *at <= t) {
        let (_, h) = l.pop_first().expect("first");
        let mut core = hub.core.borrow_mut();
        if core.conn(h).is_some() {
            core.abort(h);
            hub.status.linger_expired.add(1);
        }
    }
}

/// Turns one hub's totals into the shared status: counters by their change since the last
/// sample (several hubs add to the same status), gauges likewise.
#[derive(Default)]
struct Sampler {
    last: [u64; 19],
}

impl Sampler {
    fn sample(&mut self, hub: &Hub) {
        let core = hub.core.borrow();
        let t = core.totals();
        let s = core.stats();
        let (mut rtt_sum, mut rtt_n, mut cwnd, mut peer_wnd) = (0u64, 0u64, 0u64, 0u64);
        let mut packet_sum = 0u64;
        // Served connections only: lingering closed ones are not the operator's peers.
        let slots = hub.slots.borrow();
        for c in slots.keys().filter_map(|h| core.conn(*h)) {
            let st = c.stats();
            if let Some(r) = st.srtt {
                rtt_sum += r.as_micros() as u64;
                rtt_n += 1;
            }
            cwnd += st.cwnd as u64;
            packet_sum += st.packet_size as u64;
            peer_wnd += u64::from(st.peer_wnd);
        }
        let st = &hub.status;
        let now_vals: [(u64, &utp::status::Counter); 19] = [
            (slots.len() as u64, &st.connections),
            (t.bytes_sent, &st.bytes_sent),
            (t.bytes_acked, &st.bytes_acked),
            (t.bytes_received, &st.bytes_received),
            (t.packets_sent, &st.packets_sent),
            (t.packets_received, &st.packets_received),
            (t.retransmits, &st.retransmits),
            (t.timeouts, &st.timeouts),
            (s.syn_refused_total, &st.syn_refused_total),
            (s.syn_refused_per_ip, &st.syn_refused_per_ip),
            (s.half_open_evicted, &st.half_open_evicted),
            (s.resets_sent, &st.resets_sent),
            (s.unknown_conn, &st.unknown_conn),
            (s.malformed, &st.datagrams_malformed),
            (rtt_sum, &st.rtt_sum_us),
            (rtt_n, &st.rtt_conns),
            (cwnd, &st.cwnd_bytes),
            (peer_wnd, &st.peer_window_bytes),
            (packet_sum, &st.packet_bytes_sum),
        ];
        for (i, (v, c)) in now_vals.iter().enumerate() {
            c.add(v.wrapping_sub(self.last[i]));
            self.last[i] = *v;
        }
    }
}
