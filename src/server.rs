//! Server assembly: builds the shared state ([`crate::state`]), starts every part as a service
//! ([`crate::lifecycle`]) — listeners and workers first, then the choker, the dialer, the
//! announcer, the metrics endpoint and the checkers, which bring each torrent live as its check
//! ends — and hands back a [`ServerHandle`] to add and remove torrents and to stop it all.
//!
//! Tests call [`start`] with listen addresses on 127.0.0.1:0 and talk to the returned handle;
//! `uringseed serve` does the same and waits for a signal. Nothing here serves a peer itself.

use crate::checker::Checker;
pub use crate::checker::Ready;
use crate::choke;
use crate::config::Config;
pub use crate::lifecycle::StartError;
use crate::lifecycle::{Services, Shutdown};
use crate::metainfo::InfoHash;
pub use crate::state::{Shared, TorrentCtx, TorrentSpec};
use crate::stats::Stats;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A running server.
pub struct ServerHandle {
    pub shared: Arc<Shared>,
    /// The addresses actually listened on (ports resolved).
    pub local_addrs: Vec<SocketAddr>,
    /// Which I/O backend the workers use ("io_uring" or "portable").
    pub backend: &'static str,
    /// Where the web seed serves HTTP (ports resolved); empty when it is off.
    pub webseed_addrs: Vec<SocketAddr>,
    /// Where the built-in tracker serves (HTTP and UDP, ports resolved); empty when it is off.
    pub tracker_addrs: Vec<SocketAddr>,
    /// Where the HTTP server (/metrics, the API, the page) is, if it runs.
    pub metrics_addr: Option<SocketAddr>,
    /// The control API, if it runs.
    pub api: Option<Arc<crate::api::Api>>,
    checker: Arc<Checker>,
    /// Adds, removes, pauses and resumes torrents (the API and the daemon both use it).
    pub control: Arc<crate::control::Control>,
    expected: usize,
    heartbeats: Arc<crate::watchdog::Heartbeats>,
    services: Services,
}

impl ServerHandle {
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Waits until `count` torrents have finished their check (bounded by `limit`); returns
    /// those that have.
    pub fn wait_ready_n(&self, count: usize, limit: Duration) -> Vec<Ready> {
        self.checker.log.wait_n(count, limit)
    }

    /// Waits (bounded) until every torrent given to [`start`] is served.
    pub fn wait_ready(&self, limit: Duration) -> bool {
        self.wait_ready_n(self.expected, limit).len() >= self.expected
    }

    /// Every torrent that finished its check, those before this call first.
    pub fn subscribe_ready(&self) -> tokio::sync::mpsc::UnboundedReceiver<Ready> {
        self.checker.log.subscribe()
    }

    /// Starts checking and then serving another torrent; false if it is already in the table.
    pub fn add_torrent(&self, spec: TorrentSpec) -> bool {
        self.control.add(spec).is_ok()
    }

    /// Re-reads `server.blocklist` (on SIGHUP); on error the old list stays.
    pub fn reload_blocklist(&self) -> Result<usize, crate::blocklist::BlocklistError> {
        self.shared.reload_blocklist()
    }

    /// Stops serving a torrent (its check is cancelled, or its peers are disconnected and its
    /// trackers told `stopped`).
    pub fn remove_torrent(&self, info_hash: &InfoHash) -> bool {
        self.control.remove(info_hash).is_some()
    }

    /// Applies new upload limits (SIGHUP): the server's, and those of the live torrents in
    /// `torrents`; running connections keep going at the new rates.
    pub fn set_limits(
        &self,
        server: &crate::config::ServerConfig,
        torrents: &[(InfoHash, crate::state::TorrentLimits)],
    ) {
        let u = &self.shared.upload;
        u.set(
            server.upload_rate_limit.0,
            server.upload_quota.0,
            server.upload_quota_rate.0,
        );
        for (ih, l) in torrents {
            if let Some(t) = self.shared.torrent(ih) {
                t.upload.set(l.upload_rate, l.upload_quota, u.quota_rate());
            }
        }
        u.wake_keeper.notify_one();
    }

    /// Starts the systemd watchdog service: WATCHDOG=1 to `notify` every `interval` while
    /// every worker makes progress.
    pub fn start_watchdog(
        &mut self,
        notify: crate::notify::Notifier,
        interval: Duration,
    ) -> std::io::Result<()> {
        crate::watchdog::spawn(
            &mut self.services,
            self.heartbeats.clone(),
            notify,
            interval,
        )
    }

    /// Names of the running services, in start order.
    pub fn services(&self) -> Vec<&str> {
        self.services.names()
    }

    /// Stops accepting, lets in-flight writes finish (bounded), tells trackers `stopped`
    /// (bounded), and joins every service.
    pub fn shutdown(self) {
        self.services.stop();
    }
}

/// Binds the listeners and starts the workers, then checks each torrent's data in the
/// background (several at once) and serves each as soon as its check is done.
pub fn start(config: Config, specs: Vec<TorrentSpec>) -> Result<ServerHandle, StartError> {
    let mut seen = std::collections::HashSet::new();
    for s in &specs {
        if !seen.insert(s.torrent.info_hash) {
            return Err(StartError::new(format!(
                "torrent {} ({}) is configured twice",
                s.torrent.name, s.torrent.info_hash
            )));
        }
    }
    let shutdown = Shutdown::new();
    crate::storage::pool::set_capacity(config.server.open_files());
    let shared = Arc::new(Shared::new(config, shutdown.clone())?);
    // Dropped on an error below: stops and joins whatever was started.
    let mut services = Services::new(shutdown);
    crate::keeper::start(&shared, &mut services)?;
    let crate::io::Workers {
        addrs: local_addrs,
        backend,
        heartbeats,
        udp,
        utp,
        webseed,
    } = crate::io::spawn_workers(&shared, &mut services)?;
    shared.set_listen_addrs(&local_addrs);
    spawn_choker(shared.clone(), &mut services)?;
    spawn_dialer(shared.clone(), &mut services)?;
    crate::tracker::spawn(shared.clone(), &mut services)?;
    let checker = Checker::start(shared.clone(), &mut services, specs.len() == 1)?;
    let control = Arc::new(crate::control::Control::new(
        shared.clone(),
        checker.clone(),
    ));
    let expected = specs.len();
    for spec in specs {
        let _ = control.add(spec);
    }
    // After the given torrents: the API adds those it saved, which may not displace them.
    let dht = crate::dht::service::spawn(&shared, &mut services, udp)?;
    let (webseed_addrs, webseed) = match webseed {
        Some((addrs, stats)) => (addrs, Some(stats)),
        None => (Vec::new(), None),
    };
    // After the given torrents are in the table: their first announces to it are accepted.
    let tracker_server = crate::tracker_server::service::spawn(&shared, &mut services)?;
    let tracker_addrs = tracker_server
        .as_ref()
        .map_or_else(Vec::new, |t| t.addrs.clone());
    let udp = crate::metrics::UdpStatus {
        dht,
        utp,
        tracker_server,
        webseed,
        webseed_addrs: webseed_addrs.clone(),
    };
    let http = crate::api::service::spawn(&control, backend, udp, &mut services)?;
    let metrics_addr = http.addr;
    let services_at: Vec<SocketAddr> = webseed_addrs
        .iter()
        .chain(&tracker_addrs)
        .chain(&metrics_addr)
        .copied()
        .collect();
    shared.set_service_addrs(&services_at, local_ips());
    Ok(ServerHandle {
        shared,
        local_addrs,
        webseed_addrs,
        tracker_addrs,
        backend,
        metrics_addr,
        api: http.api,
        checker,
        control,
        expected,
        heartbeats,
        services,
    })
}

/// Runs every live torrent's choker every [`choke::TICK`] until shutdown (the service `choker`).
fn spawn_choker(shared: Arc<Shared>, services: &mut Services) -> std::io::Result<()> {
    services.spawn("choker", move |shutdown| {
        let mut next = Instant::now() + choke::TICK;
        while !shutdown.wait_until(next) {
            let now = Instant::now();
            next = now + choke::TICK;
            for t in shared.live_torrents() {
                t.choke_tick(now);
            }
        }
    })
}

/// Hands queued peer addresses to the workers at the intake's pace (the service `dialer`):
/// wakes when addresses are offered or the next one may go.
fn spawn_dialer(shared: Arc<Shared>, services: &mut Services) -> std::io::Result<()> {
    services.spawn_async("dialer", move |shutdown| async move {
        loop {
            let next = shared.run_dials(Instant::now());
            let wait = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shared.dial_wake().notified() => {}
                _ = wait => {}
                _ = shutdown.triggered() => break,
            }
        }
    })
}

/// This machine's interface addresses (getifaddrs); empty if they cannot be listed.
fn local_ips() -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below; every node and its
    // address are read only while the list is alive, with the family checked before the cast.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut at = list;
        while !at.is_null() {
            let a = (*at).ifa_addr;
            if !a.is_null() {
                match i32::from((*a).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(a as *const libc::sockaddr_in);
                        out.push(std::net::IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(a as *const libc::sockaddr_in6);
                        out.push(std::net::IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            at = (*at).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}
