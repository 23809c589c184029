//! The announcer thread: runs every served torrent's [`Schedule`], announcing on short-lived
//! threads (blocking HTTP/UDP clients with timeouts), hands peers from replies to the I/O
//! workers to connect out, records each tracker's state, and announces `stopped` on shutdown.

use super::{announce_once, AnnounceRequest, AnnounceResponse, Event, Schedule, TrackerError};
use crate::metainfo::InfoHash;
use crate::server::{Shared, TorrentCtx};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

/// Most announces in flight at once.
const MAX_IN_FLIGHT: usize = 32;

/// A fresh random number (from the standard library's randomly keyed hasher).
pub fn random_u32() -> u32 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}

fn shuffle(urls: &mut [String]) {
    for i in (1..urls.len()).rev() {
        urls.swap(i, random_u32() as usize % (i + 1));
    }
}

/// Last known state of one tracker of one torrent (for logs and metrics).
#[derive(Debug, Clone, Default)]
pub struct TrackerStatus {
    pub ok: bool,
    pub last_error: Option<String>,
    pub announces: u64,
    pub failures: u64,
    pub peers_returned: u64,
    pub seeders: Option<u32>,
    pub leechers: Option<u32>,
    pub next_announce: Option<Instant>,
    pub last_latency: Option<Duration>,
}

struct Done {
    info_hash: InfoHash,
    tier: usize,
    result: Result<(String, AnnounceResponse, Duration), Vec<(String, TrackerError)>>,
}

/// Starts the announcer thread.
pub fn spawn(shared: Arc<Shared>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("tracker".into())
        .spawn(move || run(&shared))
        .expect("spawn tracker thread")
}

fn request(
    shared: &Shared,
    ctx: &TorrentCtx,
    event: Event,
    tracker_id: Option<String>,
) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: ctx.view.info_hash,
        peer_id: shared.peer_id,
        port: shared.listen_port.load(Ordering::Relaxed),
        uploaded: ctx.uploaded.load(Ordering::Relaxed),
        downloaded: 0,
        left: ctx.left(),
        event,
        numwant: shared.config.tracker.numwant,
        key: shared.announce_key,
        tracker_id,
    }
}

fn run(shared: &Shared) {
    let cfg = &shared.config.tracker;
    let timeout = Duration::from_secs(cfg.timeout_secs);
    let mut schedules: HashMap<InfoHash, Known> = HashMap::new();
    let (tx, rx) = mpsc::channel::<Done>();
    let mut in_flight = 0usize;
    while !*shared.shutdown.borrow() {
        let now = Instant::now();
        let torrents = shared.torrents();
        // Torrents removed while running: tell their trackers, forget them.
        let gone: Vec<InfoHash> = schedules
            .keys()
            .filter(|ih| !torrents.iter().any(|t| t.view.info_hash == **ih))
            .copied()
            .collect();
        if !gone.is_empty() {
            let gone: HashMap<InfoHash, Known> = gone
                .iter()
                .filter_map(|ih| schedules.remove_entry(ih))
                .collect();
            stop_all(shared, &gone);
        }
        for ctx in torrents {
            let (s, _) = schedules.entry(ctx.view.info_hash).or_insert_with(|| {
                (
                    Schedule::new(&ctx.trackers, now, |u| shuffle(u)),
                    ctx.clone(),
                )
            });
            for tier in s.due(now) {
                if in_flight >= MAX_IN_FLIGHT {
                    break;
                }
                let (urls, event) = s.begin(tier);
                let req = request(shared, &ctx, event, s.tiers[tier].tracker_id.clone());
                let (tx, retries, ih) = (tx.clone(), cfg.udp_max_retries, ctx.view.info_hash);
                in_flight += 1;
                std::thread::spawn(move || {
                    let mut errors = Vec::new();
                    for url in urls {
                        let started = Instant::now();
                        match announce_once(&url, &req, timeout, retries) {
                            Ok(resp) => {
                                let _ = tx.send(Done {
                                    info_hash: ih,
                                    tier,
                                    result: Ok((url, resp, started.elapsed())),
                                });
                                return;
                            }
                            Err(e) => errors.push((url, e)),
                        }
                    }
                    let _ = tx.send(Done {
                        info_hash: ih,
                        tier,
                        result: Err(errors),
                    });
                });
            }
        }
        if let Ok(done) = rx.recv_timeout(Duration::from_millis(200)) {
            in_flight -= 1;
            handle(shared, &mut schedules, done);
            while let Ok(done) = rx.try_recv() {
                in_flight -= 1;
                handle(shared, &mut schedules, done);
            }
        }
    }
    stop_all(shared, &schedules);
}

/// A torrent's schedule and the torrent itself (kept to announce `stopped` after removal).
type Known = (Schedule, Arc<TorrentCtx>);

fn handle(shared: &Shared, schedules: &mut HashMap<InfoHash, Known>, done: Done) {
    let now = Instant::now();
    let Some((s, ctx)) = schedules.get_mut(&done.info_hash) else {
        return;
    };
    let ctx = ctx.clone();
    let stats = &shared.stats;
    match done.result {
        Ok((url, resp, latency)) => {
            s.succeeded(done.tier, &url, &resp, now);
            stats.count_announce("ok", latency);
            if let Some(w) = &resp.warning {
                tracing::warn!(torrent = %ctx.name, tracker = %url, "tracker warning: {w}");
            }
            tracing::info!(
                torrent = %ctx.name, tracker = %url, peers = resp.peers.len(),
                seeders = ?resp.complete, leechers = ?resp.incomplete,
                "announced; next in {} s", resp.interval.max(resp.min_interval.unwrap_or_default()).as_secs()
            );
            shared.update_tracker(done.info_hash, &url, |st| {
                st.ok = true;
                st.last_error = None;
                st.announces += 1;
                st.peers_returned += resp.peers.len() as u64;
                st.seeders = resp.complete;
                st.leechers = resp.incomplete;
                st.next_announce = Some(s.tiers[done.tier].next);
                st.last_latency = Some(latency);
            });
            if shared.config.tracker.connect_out {
                for addr in resp.peers {
                    if !shared.blocked(addr.ip().to_canonical())
                        && ctx.should_dial(addr, shared.listen_port.load(Ordering::Relaxed), now)
                    {
                        shared.connect_out(done.info_hash, addr);
                    }
                }
            }
        }
        Err(errors) => {
            s.failed(done.tier, now);
            for (url, e) in errors {
                stats.count_announce(e.kind(), Duration::ZERO);
                tracing::warn!(torrent = %ctx.name, tracker = %url, "announce failed: {e}; retrying later");
                shared.update_tracker(done.info_hash, &url, |st| {
                    st.ok = false;
                    st.last_error = Some(e.to_string());
                    st.failures += 1;
                    st.next_announce = Some(s.tiers[done.tier].next);
                });
            }
        }
    }
}

/// Tells every tracker that heard `started` that we stop, in parallel, within the configured
/// bound.
fn stop_all(shared: &Shared, schedules: &HashMap<InfoHash, Known>) {
    let limit = Duration::from_secs(shared.config.tracker.stop_timeout_secs);
    let (tx, rx) = mpsc::channel::<()>();
    let mut sent = 0;
    for (s, ctx) in schedules.values() {
        for (url, tracker_id) in s.stop_targets() {
            let req = request(shared, ctx, Event::Stopped, tracker_id);
            let tx = tx.clone();
            sent += 1;
            std::thread::spawn(move || {
                match announce_once(&url, &req, limit, 0) {
                    Ok(_) => tracing::info!(tracker = %url, "announced stopped"),
                    Err(e) => tracing::warn!(tracker = %url, "announcing stopped failed: {e}"),
                }
                let _ = tx.send(());
            });
        }
    }
    let deadline = Instant::now() + limit;
    for _ in 0..sent {
        if rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_err()
        {
            break;
        }
    }
}
