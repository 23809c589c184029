//! The announcer: an async service that runs every live torrent's [`Schedule`], announcing on
//! tokio's blocking pool (blocking HTTP/UDP clients with timeouts), offers the peers of each
//! reply to the peer-address intake, records each tracker's state, and announces `stopped`
//! when a torrent is removed and at shutdown (within `tracker.stop_timeout_secs`). It also runs
//! the trackers' scrape schedule ([`Scrapes`]): every tracker a torrent announced to is scraped
//! for all its torrents in batches, and the counts are recorded per torrent and tracker.
//!
//! It wakes only for a reason: an announce or scrape finished, the torrent table changed, the
//! next announce or scrape is due, or shutdown. It holds a removed torrent only until it has
//! taken the figures its `stopped` announce needs.

use super::scrape::{self, ScrapeReply, Scrapes};
use super::{
    announce_once, redact, scrape_once, AnnounceRequest, AnnounceResponse, Event, Schedule,
    TrackerError,
};
use crate::lifecycle::{Services, Shutdown};
use crate::metainfo::InfoHash;
use crate::peer_source::Candidate;
use crate::reasons::{AnnounceResult, PeerSourceKind};
use crate::state::{random_u32, Shared, TorrentCtx};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Most announces and scrapes in flight at once.
const MAX_IN_FLIGHT: usize = 32;

fn shuffle(urls: &mut [String]) {
    for i in (1..urls.len()).rev() {
        urls.swap(i, random_u32() as usize % (i + 1));
    }
}

/// A finished announce of one tier, or scrape of one tracker.
enum Done {
    Announce(Announced),
    Scrape(Scraped),
}

struct Announced {
    info_hash: InfoHash,
    tier: usize,
    result: Result<(String, AnnounceResponse, Duration), Vec<(String, TrackerError)>>,
}

/// The replies of one tracker's scrape, one per batch, up to the first that failed.
struct Scraped {
    url: String,
    replies: Vec<Result<ScrapeReply, TrackerError>>,
}

/// A torrent's schedule and the torrent itself (while it is live).
type Known = (Schedule, Arc<TorrentCtx>);

/// Starts the announcer as the service `tracker`.
pub fn spawn(shared: Arc<Shared>, services: &mut Services) -> std::io::Result<()> {
    services.spawn_async("tracker", move |shutdown| run(shared, shutdown))
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

/// The `stopped` announces for one torrent: (URL, request) for each tier that heard `started`.
fn stop_requests(shared: &Shared, (s, ctx): &Known) -> Vec<(String, AnnounceRequest)> {
    s.stop_targets()
        .into_iter()
        .map(|(url, tid)| (url, request(shared, ctx, Event::Stopped, tid)))
        .collect()
}

async fn run(shared: Arc<Shared>, shutdown: Shutdown) {
    let cfg = &shared.config.tracker;
    let timeout = Duration::from_secs(cfg.timeout_secs);
    let mut schedules: HashMap<InfoHash, Known> = HashMap::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<Done>();
    let mut table = shared.torrents.subscribe();
    let mut in_flight = 0usize;
    let mut scrapes = Scrapes::new(Duration::from_secs(cfg.scrape_interval_secs));
    loop {
        let now = Instant::now();
        let torrents = shared.live_torrents();
        // Torrents removed while running: tell their trackers (in the background, bounded),
        // forget them.
        let gone: Vec<InfoHash> = schedules
            .keys()
            .filter(|ih| !torrents.iter().any(|t| t.view.info_hash == **ih))
            .copied()
            .collect();
        for ih in gone {
            if let Some(known) = schedules.remove(&ih) {
                let stops = stop_requests(&shared, &known);
                drop(known);
                shared.forget_trackers_of(&ih);
                shared.forget_peers_of(&ih);
                scrapes.forget(&ih);
                tokio::spawn(announce_stopped(shared.clone(), stops));
            }
        }
        let mut next_due: Option<Instant> = None;
        let reannounce = shared.take_reannounces();
        for ih in &reannounce {
            if let Some((s, _)) = schedules.get_mut(ih) {
                s.announce_now(now);
            }
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
                let req = request(&shared, &ctx, event, s.tiers[tier].tracker_id.clone());
                let (tx, retries, ih) = (tx.clone(), cfg.udp_max_retries, ctx.view.info_hash);
                in_flight += 1;
                tokio::task::spawn_blocking(move || {
                    let done = announce_tier(ih, tier, urls, &req, timeout, retries);
                    let _ = tx.send(Done::Announce(done));
                });
            }
            for t in s.tiers.iter().filter(|t| !t.in_flight) {
                next_due = Some(next_due.map_or(t.next, |n| n.min(t.next)));
            }
        }
        for url in scrapes.due(now) {
            if in_flight >= MAX_IN_FLIGHT {
                break;
            }
            let hashes = scrapes.begin(&url, now);
            let (tx, retries) = (tx.clone(), cfg.udp_max_retries);
            in_flight += 1;
            tokio::task::spawn_blocking(move || {
                let _ = tx.send(Done::Scrape(scrape_tracker(url, &hashes, timeout, retries)));
            });
        }
        if let Some(at) = scrapes.next_due() {
            next_due = Some(next_due.map_or(at, |n| n.min(at)));
        }
        let due = async {
            match next_due {
                // While announces are capped, the next one can start when one finishes.
                Some(at) if in_flight < MAX_IN_FLIGHT => {
                    tokio::time::sleep_until(at.max(Instant::now()).into()).await
                }
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(done) = rx.recv() => {
                in_flight -= 1;
                handle(&shared, &mut schedules, &mut scrapes, done);
                while let Ok(done) = rx.try_recv() {
                    in_flight -= 1;
                    handle(&shared, &mut schedules, &mut scrapes, done);
                }
            }
            _ = table.changed() => {}
            _ = due => {}
            _ = shutdown.triggered() => break,
        }
    }
    let stops: Vec<(String, AnnounceRequest)> = schedules
        .values()
        .flat_map(|k| stop_requests(&shared, k))
        .collect();
    drop(schedules);
    announce_stopped(shared, stops).await;
}

/// Tries a tier's URLs in order until one answers (runs on the blocking pool).
fn announce_tier(
    info_hash: InfoHash,
    tier: usize,
    urls: Vec<String>,
    req: &AnnounceRequest,
    timeout: Duration,
    retries: u32,
) -> Announced {
    let mut errors = Vec::new();
    for url in urls {
        let started = Instant::now();
        match announce_once(&url, req, timeout, retries) {
            Ok(resp) => {
                return Announced {
                    info_hash,
                    tier,
                    result: Ok((url, resp, started.elapsed())),
                }
            }
            Err(e) => errors.push((url, e)),
        }
    }
    Announced {
        info_hash,
        tier,
        result: Err(errors),
    }
}

/// Scrapes one tracker for `hashes`, a batch per request, until a request fails (runs on the
/// blocking pool).
fn scrape_tracker(url: String, hashes: &[InfoHash], timeout: Duration, retries: u32) -> Scraped {
    let size = scrape::batch_size(&url).unwrap_or(1);
    let mut replies = Vec::new();
    for batch in hashes.chunks(size) {
        let reply = scrape_once(&url, batch, timeout, retries);
        let failed = reply.is_err();
        replies.push(reply);
        if failed {
            break;
        }
    }
    Scraped { url, replies }
}

fn handle(
    shared: &Shared,
    schedules: &mut HashMap<InfoHash, Known>,
    scrapes: &mut Scrapes,
    done: Done,
) {
    match done {
        Done::Announce(done) => handle_announce(shared, schedules, scrapes, done),
        Done::Scrape(done) => handle_scrape(shared, schedules, scrapes, done),
    }
}

fn handle_announce(
    shared: &Shared,
    schedules: &mut HashMap<InfoHash, Known>,
    scrapes: &mut Scrapes,
    done: Announced,
) {
    let now = Instant::now();
    let Some((s, ctx)) = schedules.get_mut(&done.info_hash) else {
        return;
    };
    let ctx = ctx.clone();
    let stats = &shared.stats;
    match done.result {
        Ok((url, resp, latency)) => {
            s.succeeded(done.tier, &url, &resp, now);
            scrapes.announced(&url, done.info_hash, now);
            stats.count_announce(AnnounceResult::Ok, latency);
            if let Some(w) = &resp.warning {
                tracing::warn!(torrent = %ctx.name, tracker = %redact(&url), "tracker warning: {w}");
            }
            tracing::info!(
                torrent = %ctx.name, tracker = %redact(&url), peers = resp.peers.len(),
                seeders = ?resp.complete, leechers = ?resp.incomplete,
                "announced; next in {} s", resp.interval.max(resp.min_interval.unwrap_or_default()).as_secs()
            );
            ctx.super_seed_tracker_seeds(resp.complete);
            shared.update_tracker(done.info_hash, &url, |st| {
                st.ok = true;
                st.last_error = None;
                st.announces += 1;
                st.peers_returned += resp.peers.len() as u64;
                st.seeders = resp.complete;
                st.leechers = resp.incomplete;
                st.next_announce = Some(s.tiers[done.tier].next);
                st.last_latency = Some(latency);
                st.last_announce_unix = Some(crate::state::unix_now());
            });
            if shared.config.tracker.connect_out {
                for addr in resp.peers {
                    shared.offer_peer(Candidate {
                        info_hash: done.info_hash,
                        addr,
                        source: PeerSourceKind::Tracker,
                    });
                }
            }
        }
        Err(errors) => {
            s.failed(done.tier, now);
            for (url, e) in errors {
                stats.count_announce(e.kind(), Duration::ZERO);
                tracing::warn!(torrent = %ctx.name, tracker = %redact(&url), "announce failed: {e}; retrying later");
                shared.update_tracker(done.info_hash, &url, |st| {
                    st.ok = false;
                    st.last_error = Some(e.to_string());
                    st.failures += 1;
                    st.next_announce = Some(s.tiers[done.tier].next);
                    st.last_announce_unix = Some(crate::state::unix_now());
                });
            }
        }
    }
}

/// Records a tracker's scrape: the counts of each torrent still served (the newest figures, so
/// they replace the last announce's), the result of each request, and the next scrape.
fn handle_scrape(
    shared: &Shared,
    schedules: &HashMap<InfoHash, Known>,
    scrapes: &mut Scrapes,
    done: Scraped,
) {
    let now = Instant::now();
    let url = done.url;
    let (mut updated, mut min_request_interval, mut error) = (0usize, None, None);
    for reply in done.replies {
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                shared.stats.count_scrape(e.kind());
                error = Some(e);
                continue;
            }
        };
        shared.stats.count_scrape(AnnounceResult::Ok);
        min_request_interval = min_request_interval.max(reply.min_request_interval);
        if reply.skipped > 0 {
            tracing::warn!(
                tracker = %redact(&url), skipped = reply.skipped,
                "scrape reply: ignored entries that are not a dictionary of counts under the \
                 info-hash of a torrent asked about"
            );
        }
        for (ih, counts) in reply.files {
            // A torrent removed meanwhile has no tracker state any more.
            let Some((_, ctx)) = schedules.get(&ih) else {
                continue;
            };
            ctx.super_seed_tracker_seeds(counts.seeders);
            updated += 1;
            shared.update_tracker(ih, &url, |st| {
                st.seeders = counts.seeders.or(st.seeders);
                st.leechers = counts.leechers.or(st.leechers);
                st.completed = counts.completed.or(st.completed);
                st.last_scrape = Some(now);
            });
        }
    }
    // (A tracker left without torrents meanwhile has no schedule any more.)
    match error {
        Some(e) => {
            if let Some(wait) = scrapes.failed(&url, now) {
                tracing::warn!(
                    tracker = %redact(&url),
                    "scrape failed: {e}; retrying in {} s", wait.as_secs()
                );
            }
        }
        None => {
            if let Some(wait) = scrapes.succeeded(&url, min_request_interval, now) {
                tracing::info!(
                    tracker = %redact(&url), torrents = updated,
                    "scraped; next in {} s", wait.as_secs()
                );
            }
        }
    }
}

/// Tells trackers that we stop, in parallel, within `tracker.stop_timeout_secs`.
async fn announce_stopped(shared: Arc<Shared>, stops: Vec<(String, AnnounceRequest)>) {
    let limit = Duration::from_secs(shared.config.tracker.stop_timeout_secs);
    let all = stops.into_iter().map(|(url, req)| {
        tokio::task::spawn_blocking(move || match announce_once(&url, &req, limit, 0) {
            Ok(_) => tracing::info!(tracker = %redact(&url), "announced stopped"),
            Err(e) => tracing::warn!(tracker = %redact(&url), "announcing stopped failed: {e}"),
        })
    });
    let joined: Vec<_> = all.collect();
    let _ = tokio::time::timeout(limit, async {
        for j in joined {
            let _ = j.await;
        }
    })
    .await;
}
