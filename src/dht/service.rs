//! The DHT service (`dht-v4`, `dht-v6`): one thread per address family drives one sans-IO
//! [`Node`] over a UDP socket. It announces every public live torrent when it comes up and
//! every `dht.announce_interval_secs`, looks up their peers at the same time and hands those to
//! the one peer-source entry point ([`Shared::offer_peer`], labelled DHT); private torrents
//! never reach it. The routing table (and our node id) is saved to `<state_dir>/dht.json`
//! every 5 minutes and at shutdown, atomically, and loaded at start, so a restart needs no
//! router. The thread runs at a lower priority than the serving threads and sleeps until a
//! packet, its node's next timer, or shutdown (which wakes it with an empty datagram).
//!
//! With uTP on, the node shares the peer port's UDP socket with it ([`UdpShare`]):
//! the uTP driver receives every datagram and queues the DHT's here; replies go out through
//! the same socket. Otherwise the node binds its own socket.
//!
//! The rest of the server sees the DHT through [`DhtStatus`] (metrics, API) only.

use super::id::NodeId;
use super::node::{Event, Family, Node, NodeConfig, NodeStats};
use crate::lifecycle::{Services, Shutdown, StartError};
use crate::metainfo::InfoHash;
use crate::peer_source::Candidate;
use crate::reasons::PeerSourceKind;
use crate::state::Shared;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A datagram: its sender and bytes.
pub type Datagram = (SocketAddr, Vec<u8>);

/// One of the peer port's UDP sockets as the DHT sees it: datagrams that are not uTP arrive
/// on `inbox` (bounded; the uTP driver drops and counts what does not fit); replies go out
/// through `socket` (the same socket, non-blocking). `wake` puts an empty datagram on the
/// inbox (shutdown).
pub struct UdpShare {
    pub local: SocketAddr,
    pub socket: std::net::UdpSocket,
    pub inbox: std::sync::mpsc::Receiver<Datagram>,
    pub wake: std::sync::mpsc::SyncSender<Datagram>,
}

/// How often the routing table is saved.
const SAVE_EVERY: Duration = Duration::from_secs(300);
/// How often the torrent list is looked at for new and removed torrents.
const TORRENTS_EVERY: Duration = Duration::from_secs(1);
/// Largest datagram read.
const MAX_DATAGRAM: usize = 2048;

/// What the metrics and the API show of one family's node.
#[derive(Debug, Default)]
pub struct FamilyStatus {
    pub addr: Mutex<Option<SocketAddr>>,
    pub nodes: AtomicUsize,
    pub stats: Mutex<NodeStats>,
    /// Torrents announced (lookups that ended with announces sent).
    pub announces: AtomicU64,
    /// Peer addresses found by lookups and offered for dialling.
    pub peers_found: AtomicU64,
}

/// Both families.
#[derive(Debug, Default)]
pub struct DhtStatus {
    pub v4: FamilyStatus,
    pub v6: FamilyStatus,
}

impl DhtStatus {
    pub fn families(&self) -> [(&'static str, &FamilyStatus); 2] {
        [("ipv4", &self.v4), ("ipv6", &self.v6)]
    }
}

/// The saved state of one family: our id and the nodes we knew.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    id: String,
    nodes: Vec<(String, SocketAddr)>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct SavedFile {
    #[serde(default)]
    v4: Option<Saved>,
    #[serde(default)]
    v6: Option<Saved>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex20(s: &str) -> Option<[u8; 20]> {
    InfoHash::from_hex(s).map(|h| h.0)
}

/// The UDP addresses the node binds: `dht.listen`, else one per family of the peer listeners
/// (same port as the first).
fn addresses(shared: &Shared) -> Vec<SocketAddr> {
    if let Some(a) = shared.config.dht.listen {
        return vec![a];
    }
    let listen = shared.listen_addrs();
    let Some(first) = listen.first() else {
        return Vec::new();
    };
    let port = first.port();
    let mut out: Vec<SocketAddr> = Vec::new();
    for fam_v6 in [false, true] {
        if let Some(a) = listen.iter().find(|a| a.is_ipv6() == fam_v6) {
            out.push(SocketAddr::new(a.ip(), port));
        }
    }
    out
}

/// A UDP socket on `addr`; an IPv6 one is IPv6-only so that it can share the port with the
/// IPv4 one.
fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    if addr.is_ipv4() {
        return UdpSocket::bind(addr);
    }
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2)/setsockopt(2) calls on a descriptor we own; it is handed to
    // UdpSocket (which closes it) before any early return after creation.
    let sock = unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let sock = UdpSocket::from_raw_fd(fd);
        let one: libc::c_int = 1;
        if libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        sock
    };
    // Bind through a std socket2-free route: connect-less bind with libc.
    let SocketAddr::V6(v6) = addr else {
        unreachable!("ipv6 checked above")
    };
    let sa = libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: v6.port().to_be(),
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr {
            s6_addr: v6.ip().octets(),
        },
        sin6_scope_id: v6.scope_id(),
    };
    use std::os::fd::AsRawFd;
    // SAFETY: `sa` is a valid sockaddr_in6 for the length given.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&sa as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sock)
}

/// Starts the DHT (if `dht.enabled`): binds its sockets now (a taken port fails the start) and
/// runs one thread per family. Returns the status the metrics and API read.
pub fn spawn(
    shared: &Arc<Shared>,
    services: &mut Services,
    mut shares: Vec<UdpShare>,
) -> Result<Option<Arc<DhtStatus>>, StartError> {
    if !shared.config.dht.enabled {
        return Ok(None);
    }
    let status = Arc::new(DhtStatus::default());
    let saved: SavedFile = state_path(shared)
        .and_then(|p| crate::fsread::read_regular(&p, 16 << 20).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let saved = Arc::new(Mutex::new(saved));
    for addr in addresses(shared) {
        let (sock, inbox) = match shares.iter().position(|s| s.local == addr) {
            Some(i) => {
                let s = shares.swap_remove(i);
                let wake = s.wake;
                services.shutdown().on_trigger(move || {
                    let _ = wake.try_send((addr, Vec::new()));
                });
                (s.socket, Some(s.inbox))
            }
            None => {
                let sock = bind(addr)
                    .map_err(|e| StartError::bind(format!("dht.listen {addr}: {e}"), &e))?;
                (sock, None)
            }
        };
        let local = sock.local_addr()?;
        let family = if local.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        };
        let fam = match family {
            Family::V4 => &status.v4,
            Family::V6 => &status.v6,
        };
        *fam.addr.lock().unwrap_or_else(|e| e.into_inner()) = Some(local);
        tracing::info!(
            shared_with_utp = inbox.is_some(),
            "dht: listening on udp {local}"
        );
        let waker = sock.try_clone()?;
        let wake_to = match local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), local.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), local.port())
            }
            _ => local,
        };
        services.shutdown().on_trigger(move || {
            let _ = waker.send_to(&[], wake_to);
        });
        let (shared, status, saved) = (shared.clone(), status.clone(), saved.clone());
        let name = match family {
            Family::V4 => "dht-v4",
            Family::V6 => "dht-v6",
        };
        services.spawn(name, move |shutdown| {
            lower_priority();
            let io = match inbox {
                Some(inbox) => Io::Shared(sock, inbox),
                None => Io::Own(sock),
            };
            run(&shared, io, family, &status, &saved, &shutdown)
        })?;
    }
    Ok(Some(status))
}

fn state_path(shared: &Shared) -> Option<std::path::PathBuf> {
    shared.config.server.state_dir().map(|d| d.join("dht.json"))
}

fn lower_priority() {
    crate::lifecycle::lower_thread_priority(5);
}

/// Bytes from the kernel (getrandom(2)).
fn fill_random(out: &mut [u8]) {
    let mut filled = 0;
    while filled < out.len() {
        // SAFETY: getrandom writes at most len - filled bytes at the given position.
        let r =
            unsafe { libc::getrandom(out[filled..].as_mut_ptr().cast(), out.len() - filled, 0) };
        if r > 0 {
            filled += r as usize;
        }
    }
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    fill_random(&mut b);
    u64::from_le_bytes(b)
}

/// Where the node's datagrams come from: its own socket, or the uTP driver's queue.
enum Io {
    Own(UdpSocket),
    Shared(UdpSocket, std::sync::mpsc::Receiver<Datagram>),
}

impl Io {
    fn send(&self, bytes: &[u8], to: SocketAddr) {
        let (Io::Own(s) | Io::Shared(s, _)) = self;
        let _ = s.send_to(bytes, to);
    }

    /// Waits up to `wait` for a datagram, then takes what else has arrived (at most 256 more),
    /// handing each to `f`.
    fn receive(&self, buf: &mut [u8], wait: Duration, mut f: impl FnMut(SocketAddr, &[u8])) {
        match self {
            Io::Own(sock) => {
                let _ = sock.set_read_timeout(Some(wait));
                if let Ok((n, from)) = sock.recv_from(buf) {
                    f(from, &buf[..n]);
                }
                let _ = sock.set_nonblocking(true);
                for _ in 0..256 {
                    match sock.recv_from(buf) {
                        Ok((n, from)) => f(from, &buf[..n]),
                        Err(_) => break,
                    }
                }
                let _ = sock.set_nonblocking(false);
            }
            Io::Shared(_, inbox) => {
                if let Ok((from, d)) = inbox.recv_timeout(wait) {
                    f(from, &d);
                }
                for (from, d) in inbox.try_iter().take(256) {
                    f(from, &d);
                }
            }
        }
    }
}

/// One family's loop.
fn run(
    shared: &Shared,
    io: Io,
    family: Family,
    status: &DhtStatus,
    saved: &Mutex<SavedFile>,
    shutdown: &Shutdown,
) {
    let fam = match family {
        Family::V4 => &status.v4,
        Family::V6 => &status.v6,
    };
    let now = Instant::now();
    let mine = {
        let s = saved.lock().unwrap_or_else(|e| e.into_inner());
        match family {
            Family::V4 => s.v4.as_ref().map(|x| (x.id.clone(), x.nodes.clone())),
            Family::V6 => s.v6.as_ref().map(|x| (x.id.clone(), x.nodes.clone())),
        }
    };
    let id = mine
        .as_ref()
        .and_then(|(id, _)| unhex20(id))
        .map(NodeId)
        .unwrap_or_else(|| {
            let mut b = [0u8; 20];
            fill_random(&mut b);
            NodeId(b)
        });
    let config = NodeConfig {
        family,
        max_queries_per_ip_per_sec: shared.config.dht.max_queries_per_ip_per_sec,
        max_queries_per_sec: shared.config.dht.max_queries_per_sec,
        read_only: false,
    };
    let mut node = Node::new(id, config, random_seed(), now);
    let mut known = 0;
    if let Some((_, nodes)) = &mine {
        for (id, addr) in nodes {
            if let Some(id) = unhex20(id) {
                node.add_node(NodeId(id), *addr, now);
                known += 1;
            }
        }
    }
    let routers: Vec<SocketAddr> = shared
        .config
        .dht
        .bootstrap_nodes()
        .iter()
        .filter_map(|h| h.to_socket_addrs().ok())
        .flatten()
        .filter(|a| a.is_ipv4() == (family == Family::V4))
        .collect();
    tracing::info!(
        "dht: {} saved nodes, {} bootstrap addresses",
        known,
        routers.len()
    );
    node.bootstrap(&routers, now);
    let interval = Duration::from_secs(shared.config.dht.announce_interval_secs);
    let mut due: HashMap<InfoHash, Instant> = HashMap::new();
    let mut next_torrents = now;
    let mut next_save = now + SAVE_EVERY;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !shutdown.is_triggered() {
        let now = Instant::now();
        if now >= next_torrents {
            next_torrents = now + TORRENTS_EVERY;
            schedule(shared, &mut node, &mut due, interval, now);
        }
        if now >= next_save {
            next_save = now + SAVE_EVERY;
            save(shared, family, &node, saved);
        }
        node.handle_timeout(now);
        while let Some(t) = node.poll_transmit() {
            io.send(&t.bytes, t.to);
        }
        while let Some(ev) = node.poll_event() {
            match ev {
                Event::Peers { info_hash, peers } => {
                    fam.peers_found
                        .fetch_add(peers.len() as u64, Ordering::Relaxed);
                    for addr in peers {
                        shared.offer_peer(Candidate {
                            info_hash: InfoHash(info_hash),
                            addr,
                            source: PeerSourceKind::Dht,
                        });
                    }
                }
                Event::LookupDone { announced, .. } if announced > 0 => {
                    fam.announces.fetch_add(1, Ordering::Relaxed);
                }
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        fam.nodes.store(node.table_len(), Ordering::Relaxed);
        *fam.stats.lock().unwrap_or_else(|e| e.into_inner()) = node.stats().clone();
        let wake = [node.poll_timeout(), Some(next_torrents), Some(next_save)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(next_torrents);
        let wait = wake
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        io.receive(&mut buf, wait, |from, d| {
            if !d.is_empty() {
                node.handle_packet(Instant::now(), from, d);
            }
        });
    }
    save(shared, family, &node, saved);
}

/// Starts lookups (with announces) for public live torrents that are new or due, and forgets
/// torrents no longer live.
fn schedule(
    shared: &Shared,
    node: &mut Node,
    due: &mut HashMap<InfoHash, Instant>,
    interval: Duration,
    now: Instant,
) {
    let live: Vec<InfoHash> = shared
        .live_torrents()
        .iter()
        // Private torrents (BEP 27) never touch the DHT.
        .filter(|t| t.view.pex)
        .flat_map(|t| t.swarms())
        .collect();
    let port = shared.listen_port.load(Ordering::Relaxed);
    start_due(node, due, &live, port, interval, now);
}

/// Lookups kept free for the node's own (bootstrap, table refresh) when torrents are started.
const LOOKUPS_RESERVED: usize = 8;

/// Forgets torrents not in `live`, then starts lookups (announcing `port`) for those of `live`
/// that are new or due, as long as the node has room, so that thousands of torrents start a
/// few dozen at a time, each tick, instead of at once; one refused or not reached stays due
/// (it is not put off for a whole `interval` without having been looked up).
fn start_due(
    node: &mut Node,
    due: &mut HashMap<InfoHash, Instant>,
    live: &[InfoHash],
    port: u16,
    interval: Duration,
    now: Instant,
) {
    let wanted: std::collections::HashSet<InfoHash> = live.iter().copied().collect();
    due.retain(|ih, _| wanted.contains(ih));
    for &ih in live {
        let at = due.entry(ih).or_insert(now);
        if *at > now {
            continue;
        }
        if node.lookups_free() <= LOOKUPS_RESERVED || !node.get_peers(ih.0, Some(port), now) {
            continue;
        }
        *at = now + interval;
    }
}

/// Saves this family's id and nodes (the file holds both families).
fn save(shared: &Shared, family: Family, node: &Node, saved: &Mutex<SavedFile>) {
    let Some(path) = state_path(shared) else {
        return;
    };
    let mut s = saved.lock().unwrap_or_else(|e| e.into_inner());
    let mine = Saved {
        id: hex(&node.id().0),
        nodes: node
            .nodes()
            .into_iter()
            .map(|(id, a)| (hex(&id.0), a))
            .collect(),
    };
    match family {
        Family::V4 => s.v4 = Some(mine),
        Family::V6 => s.v6 = Some(mine),
    }
    let Ok(json) = serde_json::to_vec(&*s) else {
        return;
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = crate::storage::atomic::write_atomic(&path, &json) {
        static LINE: crate::lograte::LogEvery = crate::lograte::LogEvery::new();
        if let Some(more) = LINE.occur(crate::lograte::now_secs(), 3600) {
            tracing::warn!(
                "dht: cannot save {}: {e} ({more} more failures since the last line)",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dht::node::MAX_LOOKUPS;

    #[test]
    fn thousands_of_torrents_start_a_few_dozen_at_a_time_and_none_is_put_off_unlooked_up() {
        let t0 = Instant::now();
        let mut node = Node::new(NodeId([7; 20]), NodeConfig::default(), 1, t0);
        node.bootstrap(&["127.0.0.1:6881".parse().unwrap()], t0);
        let live: Vec<InfoHash> = (0..1000u32)
            .map(|i| {
                let mut h = [0u8; 20];
                h[..4].copy_from_slice(&i.to_be_bytes());
                InfoHash(h)
            })
            .collect();
        let interval = Duration::from_secs(1800);
        let mut due = HashMap::new();
        let mut now = t0;
        let started = |due: &HashMap<InfoHash, Instant>| due.values().filter(|&&a| a > t0).count();
        for round in 0..200 {
            let before = started(&due);
            start_due(&mut node, &mut due, &live, 6881, interval, now);
            let this_round = started(&due) - before;
            assert!(
                this_round <= MAX_LOOKUPS - LOOKUPS_RESERVED,
                "round {round}: {this_round}"
            );
            if round == 0 {
                assert!(this_round > 0);
                assert!(this_round < live.len(), "not all at once");
            }
            if started(&due) == live.len() {
                break;
            }
            // No answers on loopback here: the lookups time out and make room.
            now += Duration::from_secs(30);
            node.handle_timeout(now);
            while node.poll_transmit().is_some() {}
        }
        assert_eq!(started(&due), live.len(), "every torrent got its lookup");
        assert_eq!(
            node.stats().lookups_refused,
            0,
            "none was refused and put off"
        );
        // Forgotten when no longer live.
        start_due(&mut node, &mut due, &live[..10], 6881, interval, now);
        assert_eq!(due.len(), 10);
    }
}
