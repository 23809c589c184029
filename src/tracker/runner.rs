//! The announcer: an async service that runs every live torrent's [`Schedule`], announcing
//! through [`Clients`] (UDP: one multiplexed client, no threads; HTTP(S): the shared keep-alive
//! agent on at most [`HTTP_THREADS`] blocking threads), offers the peers of each
//! reply to the peer-address intake, records each tracker's state, and announces `stopped`
//! when a torrent is removed and at shutdown (within `tracker.stop_timeout_secs`). It also runs
//! the trackers' scrape schedule ([`Scrapes`]): every tracker a torrent announced to is scraped
//! for all its torrents in batches, and the counts are recorded per torrent and tracker.
//!
//! It wakes only for a reason: an announce or scrape finished, the torrent table changed, the
//! next announce or scrape is due, or shutdown. It holds a removed torrent only until it has
//! taken the figures its `stopped` announce needs.

use super::scrape::{self, ScrapeReply, Scrapes};
use super::udp_client::UdpClient;
use super::{
    http, redact, AnnounceRequest, AnnounceResponse, DueQueue, Event, Schedule, TrackerError,
};
use crate::lifecycle::{Services, Shutdown};
use crate::metainfo::InfoHash;
use crate::peer_source::Candidate;
use crate::reasons::{AnnounceResult, PeerSourceKind};
use crate::state::{random_u32, Shared, TorrentCtx};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};

/// Most announces and scrapes in flight at once (each a task; UDP ones share one socket).
const MAX_IN_FLIGHT: usize = 128;
/// The least time between two looks at the torrent table.
const TABLE_SPACING: Duration = Duration::from_millis(100);
/// Most blocking threads running HTTP(S) announces and scrapes at once.
pub const HTTP_THREADS: usize = 16;

/// How announces and scrapes reach trackers.
#[derive(Clone)]
struct Clients {
    udp: UdpClient,
    /// A UDP exchange's whole budget: every try of `tracker.udp_max_retries` waited out.
    udp_budget: Duration,
    /// An HTTP exchange's whole budget (`tracker.timeout_secs`).
    http_timeout: Duration,
    http_threads: Arc<Semaphore>,
}

impl Clients {
    /// `timeout`: a UDP round trip's wait (the first; each resend waits twice the last).
    fn new(timeout: Duration, udp_retries: u32) -> Clients {
        let base = Duration::from_secs(15).min(timeout);
        let tries = udp_retries.min(8) + 1;
        Clients {
            udp: UdpClient::start(base, udp_retries),
            udp_budget: base.saturating_mul((1u32 << tries) - 1),
            http_timeout: timeout,
            http_threads: Arc::new(Semaphore::new(HTTP_THREADS)),
        }
    }

    /// Runs a blocking HTTP exchange on one of the [`HTTP_THREADS`].
    async fn on_http_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, TrackerError> + Send + 'static,
    ) -> Result<T, TrackerError> {
        let _slot = self.http_threads.acquire().await.expect("never closed");
        tokio::task::spawn_blocking(f)
            .await
            .unwrap_or_else(|e| Err(TrackerError::Transport(format!("HTTP task: {e}"))))
    }

    /// Announces once to `url` (http, https or udp) within its budget, and `cap` at most.
    async fn announce(
        &self,
        url: &str,
        req: &AnnounceRequest,
        cap: Duration,
    ) -> Result<AnnounceResponse, TrackerError> {
        if url.starts_with("udp://") {
            self.udp.announce(url, req, cap.min(self.udp_budget)).await
        } else if url.starts_with("http://") || url.starts_with("https://") {
            let (url, req, timeout) = (url.to_string(), req.clone(), cap.min(self.http_timeout));
            self.on_http_thread(move || http::announce(&url, &req, timeout))
                .await
        } else {
            Err(TrackerError::Transport(format!(
                "unsupported tracker URL scheme: {}",
                redact(url)
            )))
        }
    }

    /// Scrapes `url` once for `hashes` (at most [`scrape::batch_size`] of them) within its
    /// budget.
    async fn scrape(&self, url: &str, hashes: &[InfoHash]) -> Result<ScrapeReply, TrackerError> {
        if url.starts_with("udp://") {
            self.udp.scrape(url, hashes, self.udp_budget).await
        } else if let Some(scrape_url) = scrape::scrape_url(url) {
            let (hashes, timeout) = (hashes.to_vec(), self.http_timeout);
            self.on_http_thread(move || http::scrape(&scrape_url, &hashes, timeout))
                .await
        } else {
            Err(TrackerError::Transport(format!(
                "no scrape URL for {}",
                redact(url)
            )))
        }
    }
}

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

/// An announce of `ctx` in the swarm of `info_hash` (one of [`TorrentCtx::swarms`]).
fn request(
    shared: &Shared,
    info_hash: InfoHash,
    ctx: &TorrentCtx,
    event: Event,
    tracker_id: Option<String>,
) -> AnnounceRequest {
    AnnounceRequest {
        info_hash,
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
fn stop_requests(
    shared: &Shared,
    ih: InfoHash,
    (s, ctx): &Known,
) -> Vec<(String, AnnounceRequest)> {
    s.stop_targets()
        .into_iter()
        .map(|(url, tid)| (url, request(shared, ih, ctx, Event::Stopped, tid)))
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
    let clients = Clients::new(timeout, cfg.udp_max_retries);
    // Which torrents are due when: only those are touched on a wake-up (see [`DueQueue`]).
    let mut due = DueQueue::default();
    let (mut table_changed, mut tracked_at) = (true, None::<Instant>);
    loop {
        let now = Instant::now();
        // Each look at the table costs O(torrents); while thousands go live one by one at
        // startup, one look per TABLE_SPACING covers them all.
        let table_due = tracked_at
            .map(|t| t + TABLE_SPACING)
            .filter(|_| table_changed);
        if table_changed && table_due.is_none_or(|at| at <= now) {
            table_changed = false;
            tracked_at = Some(now);
            track_table(
                &shared,
                &clients,
                &mut schedules,
                &mut due,
                &mut scrapes,
                now,
            );
        }
        for ih in shared.take_reannounces() {
            if let Some((s, _)) = schedules.get_mut(&ih) {
                s.announce_now(now);
                due.set(ih, s.next_due());
            }
        }
        while in_flight < MAX_IN_FLIGHT {
            let Some(ih) = due.pop_due(now) else { break };
            let Some((s, ctx)) = schedules.get_mut(&ih) else {
                continue;
            };
            for tier in s.due(now) {
                if in_flight >= MAX_IN_FLIGHT {
                    break;
                }
                let (urls, event) = s.begin(tier);
                let tid = s.tiers[tier].tracker_id.clone();
                let req = request(&shared, ih, ctx, event, tid);
                let (tx, clients) = (tx.clone(), clients.clone());
                in_flight += 1;
                tokio::spawn(async move {
                    let done = announce_tier(&clients, ih, tier, urls, &req).await;
                    let _ = tx.send(Done::Announce(done));
                });
            }
            due.set(ih, s.next_due());
        }
        for url in scrapes.due(now) {
            if in_flight >= MAX_IN_FLIGHT {
                break;
            }
            let hashes = scrapes.begin(&url, now);
            let (tx, clients) = (tx.clone(), clients.clone());
            in_flight += 1;
            tokio::spawn(async move {
                let done = scrape_tracker(&clients, url, &hashes).await;
                let _ = tx.send(Done::Scrape(done));
            });
        }
        let table_due = tracked_at
            .map(|t| t + TABLE_SPACING)
            .filter(|_| table_changed);
        let next_due = [due.first(), scrapes.next_due(), table_due]
            .into_iter()
            .flatten()
            .min();
        let wake = async {
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
                let mut done = Some(done);
                while let Some(d) = done.take().or_else(|| rx.try_recv().ok()) {
                    in_flight -= 1;
                    if let Some(ih) = handle(&shared, &mut schedules, &mut scrapes, d) {
                        due.set(ih, schedules.get(&ih).and_then(|(s, _)| s.next_due()));
                    }
                }
            }
            _ = table.changed() => table_changed = true,
            _ = wake => {}
            _ = shutdown.triggered() => break,
        }
    }
    let stops: Vec<(String, AnnounceRequest)> = schedules
        .iter()
        .flat_map(|(ih, k)| stop_requests(&shared, *ih, k))
        .collect();
    drop(schedules);
    announce_stopped(shared, clients, stops).await;
}

/// Brings the schedules in line with the torrent table: removed torrents' trackers are told
/// `stopped` (in the background, bounded) and forgotten; new torrents are due now.
fn track_table(
    shared: &Arc<Shared>,
    clients: &Clients,
    schedules: &mut HashMap<InfoHash, Known>,
    due: &mut DueQueue,
    scrapes: &mut Scrapes,
    now: Instant,
) {
    let torrents = shared.live_torrents();
    // A hybrid is announced in both of its swarms (v1, and v2 by its truncated info-hash).
    let live: HashSet<InfoHash> = torrents.iter().flat_map(|t| t.swarms()).collect();
    let gone: Vec<InfoHash> = schedules
        .keys()
        .filter(|ih| !live.contains(ih))
        .copied()
        .collect();
    for ih in gone {
        if let Some(known) = schedules.remove(&ih) {
            let stops = stop_requests(shared, ih, &known);
            drop(known);
            due.set(ih, None);
            shared.forget_trackers_of(&ih);
            shared.forget_peers_of(&ih);
            scrapes.forget(&ih);
            tokio::spawn(announce_stopped(shared.clone(), clients.clone(), stops));
        }
    }
    for ctx in torrents {
        for ih in ctx.swarms() {
            if let Entry::Vacant(slot) = schedules.entry(ih) {
                let s = Schedule::new(&ctx.trackers, now, |u| shuffle(u)).with_floor(
                    Duration::from_secs(shared.config.tracker.min_announce_interval_secs),
                );
                due.set(ih, s.next_due());
                slot.insert((s, ctx.clone()));
            }
        }
    }
}

/// Tries a tier's URLs in order until one answers.
async fn announce_tier(
    clients: &Clients,
    info_hash: InfoHash,
    tier: usize,
    urls: Vec<String>,
    req: &AnnounceRequest,
) -> Announced {
    let mut errors = Vec::new();
    for url in urls {
        let started = Instant::now();
        match clients.announce(&url, req, Duration::MAX).await {
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

/// Scrapes one tracker for `hashes`, a batch per request, until a request fails.
async fn scrape_tracker(clients: &Clients, url: String, hashes: &[InfoHash]) -> Scraped {
    let size = scrape::batch_size(&url).unwrap_or(1);
    let mut replies = Vec::new();
    for batch in hashes.chunks(size) {
        let reply = clients.scrape(&url, batch).await;
        let failed = reply.is_err();
        replies.push(reply);
        if failed {
            break;
        }
    }
    Scraped { url, replies }
}

/// Records a finished announce or scrape; returns the torrent whose schedule changed.
fn handle(
    shared: &Shared,
    schedules: &mut HashMap<InfoHash, Known>,
    scrapes: &mut Scrapes,
    done: Done,
) -> Option<InfoHash> {
    match done {
        Done::Announce(done) => {
            let ih = done.info_hash;
            handle_announce(shared, schedules, scrapes, done);
            Some(ih)
        }
        Done::Scrape(done) => {
            handle_scrape(shared, schedules, scrapes, done);
            None
        }
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
            let wait = s.succeeded(done.tier, &url, &resp, random_u32(), now);
            scrapes.announced(&url, done.info_hash, now);
            stats.count_announce(AnnounceResult::Ok, latency);
            if let Some(w) = &resp.warning {
                tracing::warn!(torrent = %ctx.name, tracker = %redact(&url), "tracker warning: {w}");
            }
            tracing::info!(
                torrent = %ctx.name, tracker = %redact(&url), peers = resp.peers.len(),
                seeders = ?resp.complete, leechers = ?resp.incomplete,
                "announced; next in {} s", wait.as_secs()
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

/// Most `stopped` announces in flight at once (so a burst of thousands does not overflow the
/// trackers' or our socket buffers).
const STOPS_IN_FLIGHT: usize = 128;

/// Tells trackers that we stop, [`STOPS_IN_FLIGHT`] at a time, all within one
/// `tracker.stop_timeout_secs` from now; logs how many were acknowledged, failed, or not sent
/// in time.
async fn announce_stopped(
    shared: Arc<Shared>,
    clients: Clients,
    stops: Vec<(String, AnnounceRequest)>,
) {
    if stops.is_empty() {
        return;
    }
    let limit = Duration::from_secs(shared.config.tracker.stop_timeout_secs);
    let deadline = tokio::time::Instant::now() + limit;
    let total = stops.len();
    let slots = Arc::new(Semaphore::new(STOPS_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for (url, req) in stops {
        let (clients, slots) = (clients.clone(), slots.clone());
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("never closed");
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            let result = clients.announce(&url, &req, left).await;
            if let Err(e) = &result {
                tracing::debug!(tracker = %redact(&url), "announcing stopped failed: {e}");
            }
            Some(result.is_ok())
        });
    }
    let (mut ok, mut failed) = (0usize, 0usize);
    let _ = tokio::time::timeout_at(deadline, async {
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Some(true)) => ok += 1,
                Ok(Some(false)) => failed += 1,
                _ => {}
            }
        }
    })
    .await;
    tasks.abort_all();
    let unsent = total - ok - failed;
    if failed + unsent == 0 {
        tracing::info!("announced stopped to {ok} tracker(s)");
    } else {
        tracing::warn!(
            "announced stopped: {ok} acknowledged, {failed} failed, {unsent} not answered within \
             tracker.stop_timeout_secs ({} s)",
            limit.as_secs()
        );
    }
}
