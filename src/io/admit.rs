//! Admission of a connection (incoming or outgoing, TCP or uTP): blocklist and connection caps
//! (an incoming connection at a full server cap, or beyond the half-open budget, evicts another
//! as `state::evict` chooses, instead of being refused), and the guard that keeps it counted (and wakes a worker's
//! shutdown drain when the last one goes).

use crate::peer_source::Candidate;
use crate::reasons::DropReason;
use crate::state::Shared;
use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// This worker's live connections: a count, and a wake-up for the drain when it reaches zero.
#[derive(Default)]
pub(super) struct Active {
    pub(super) count: Cell<usize>,
    pub(super) idle: tokio::sync::Notify,
}

/// Keeps a connection counted while it lives.
pub(super) struct ConnGuard {
    shared: Arc<Shared>,
    active: Rc<Active>,
    /// The address counted against the per-IP cap, if it is.
    ip: Option<IpAddr>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shared
            .stats
            .peers_connected
            .fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.ip {
            self.shared.ip_leave(ip);
        }
        let n = self.active.count.get() - 1;
        self.active.count.set(n);
        if n == 0 {
            self.active.idle.notify_one();
        }
    }
}

/// Counts a connection in; refuses it (None, counted) for a blocked address, above
/// `server.max_connections` when nobody may be evicted for it (outgoing ones never evict),
/// above the per-IP cap, and (for outgoing ones) above the torrent's cap. Non-blocking: it runs
/// on the accept path of the serving threads (an eviction scans the connections' records).
pub(super) fn admit(
    shared: &Arc<Shared>,
    active: &Rc<Active>,
    addr: SocketAddr,
    dialing: Option<&Candidate>,
) -> Option<ConnGuard> {
    let stats = &shared.stats;
    let ip = addr.ip().to_canonical();
    if shared.blocked(ip) {
        stats.count_dropped(DropReason::Blocked);
        return None;
    }
    match dialing {
        None => stats.connections_accepted.fetch_add(1, Ordering::Relaxed),
        Some(c) => {
            let full = shared.torrent(&c.info_hash).is_none_or(|t| {
                t.peers.load(Ordering::Relaxed) >= shared.config.server.max_connections_per_torrent
            });
            if full {
                return None;
            }
            stats.connections_dialed.fetch_add(1, Ordering::Relaxed)
        }
    };
    let now = super::stream::now();
    if stats.peers_connected.fetch_add(1, Ordering::AcqRel) >= shared.config.server.max_connections
        && (dialing.is_some() || !shared.evictor.evict_for(None, now))
    {
        stats.peers_connected.fetch_sub(1, Ordering::AcqRel);
        stats.count_dropped(DropReason::ConnectionCap);
        return None;
    }
    if shared.evictor.half_open() >= shared.config.server.max_half_open {
        shared.evictor.evict_half_open();
    }
    let per_ip = (!ip.is_loopback() || shared.config.server.limit_loopback).then_some(ip);
    if let Some(ip) = per_ip {
        if !shared.ip_enter(ip) {
            stats.peers_connected.fetch_sub(1, Ordering::AcqRel);
            stats.count_dropped(DropReason::IpConnectionCap);
            return None;
        }
    }
    active.count.set(active.count.get() + 1);
    Some(ConnGuard {
        shared: shared.clone(),
        active: active.clone(),
        ip: per_ip,
    })
}
