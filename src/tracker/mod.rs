//! Tracker announces and scrapes: request and reply types, the per-torrent announce schedule
//! (pure: time is passed in), the scrape schedule and reply parsing ([`scrape`]), and the
//! announcer service that runs both for every served torrent.
//!
//! Schedule (BEP 12 multi-tracker): every tier is announced to; within a tier the trackers are
//! shuffled once and tried in order until one answers, and the one that answered moves to the
//! front. `started` goes out when a torrent comes up, then regular announces every `interval`
//! (never sooner than `min interval`), with exponential backoff while a whole tier fails, and
//! `stopped` on shutdown to the trackers that heard `started`, within a bounded time. Tracker
//! URLs are shown (logs, errors) only through [`redact`]: they may carry a passkey.

pub mod http;
pub mod redact;
mod runner;
pub mod scrape;
pub mod tls;
pub mod udp;
pub mod udp_client;
pub mod udp_mux;

pub use redact::redact;
pub use runner::spawn;

use crate::metainfo::InfoHash;
use crate::reasons::AnnounceResult;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Shortest re-announce interval accepted from a tracker unless configured otherwise
/// (`tracker.min_announce_interval_secs`; libtorrent's `min_announce_interval` is 300 s too).
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(300);
/// First retry after a tier failed; doubles per failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(15);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    None,
    Started,
    Completed,
    Stopped,
}

impl Event {
    /// The HTTP `event` value (none for regular announces).
    pub fn as_str(&self) -> Option<&'static str> {
        match self {
            Event::None => None,
            Event::Started => Some("started"),
            Event::Completed => Some("completed"),
            Event::Stopped => Some("stopped"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Event,
    pub numwant: u32,
    pub key: u32,
    pub tracker_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    pub interval: Duration,
    pub min_interval: Option<Duration>,
    pub tracker_id: Option<String>,
    pub complete: Option<u32>,
    pub incomplete: Option<u32>,
    pub warning: Option<String>,
    pub peers: Vec<SocketAddr>,
}

/// Why an announce failed; every kind is retried later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerError {
    /// The tracker answered with a `failure reason` (or a UDP error packet).
    Failure(String),
    /// No usable answer: connection, timeout, HTTP status.
    Transport(String),
    /// An answer that is not a valid reply.
    Malformed(String),
}

impl TrackerError {
    /// How the announce is counted.
    pub fn kind(&self) -> AnnounceResult {
        match self {
            TrackerError::Failure(_) => AnnounceResult::Failure,
            TrackerError::Transport(_) => AnnounceResult::Unreachable,
            TrackerError::Malformed(_) => AnnounceResult::Malformed,
        }
    }
}

impl fmt::Display for TrackerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrackerError::Failure(m) => write!(f, "tracker refused: {m}"),
            TrackerError::Transport(m) => write!(f, "tracker unreachable: {m}"),
            TrackerError::Malformed(m) => write!(f, "bad tracker reply: {m}"),
        }
    }
}

/// One tier's announce state.
#[derive(Debug, Clone)]
pub struct Tier {
    /// Tracker URLs in the order they are tried.
    pub urls: Vec<String>,
    pub next: Instant,
    pub failures: u32,
    pub in_flight: bool,
    /// A tracker of this tier accepted `started` (so it should hear `stopped`).
    pub started: bool,
    pub tracker_id: Option<String>,
}

/// The announce schedule of one torrent.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub tiers: Vec<Tier>,
    /// Shortest wait after a successful announce, whatever the tracker's interval says.
    pub floor: Duration,
}

impl Schedule {
    /// All tiers due now; `shuffle` permutes each tier's URLs (BEP 12), e.g. with a random source.
    pub fn new(
        tiers: &[Vec<String>],
        now: Instant,
        mut shuffle: impl FnMut(&mut Vec<String>),
    ) -> Schedule {
        let tiers = tiers
            .iter()
            .filter(|t| !t.is_empty())
            .map(|urls| {
                let mut urls = urls.clone();
                shuffle(&mut urls);
                Tier {
                    urls,
                    next: now,
                    failures: 0,
                    in_flight: false,
                    started: false,
                    tracker_id: None,
                }
            })
            .collect();
        Schedule {
            tiers,
            floor: DEFAULT_MIN_INTERVAL,
        }
    }

    /// The same schedule with another shortest re-announce interval.
    pub fn with_floor(mut self, floor: Duration) -> Schedule {
        self.floor = floor;
        self
    }

    /// Tiers due for an announce that are not already announcing.
    /// Makes every tier not in flight due now (an operator's reannounce).
    pub fn announce_now(&mut self, now: Instant) {
        for t in self.tiers.iter_mut().filter(|t| !t.in_flight) {
            t.next = now;
        }
    }

    pub fn due(&self, now: Instant) -> Vec<usize> {
        (0..self.tiers.len())
            .filter(|&i| !self.tiers[i].in_flight && self.tiers[i].next <= now)
            .collect()
    }

    /// Marks tier `i` as announcing; returns the URLs to try in order and the event to send.
    pub fn begin(&mut self, i: usize) -> (Vec<String>, Event) {
        let t = &mut self.tiers[i];
        t.in_flight = true;
        (
            t.urls.clone(),
            if t.started {
                Event::None
            } else {
                Event::Started
            },
        )
    }

    /// Tracker `url` of tier `i` answered. The next announce is due after the tracker's
    /// interval plus `spread / u32::MAX` of a tenth of it (pass a random number). Returns the
    /// wait until then, floor and spread included (what the log must report).
    pub fn succeeded(
        &mut self,
        i: usize,
        url: &str,
        resp: &AnnounceResponse,
        spread: u32,
        now: Instant,
    ) -> Duration {
        let t = &mut self.tiers[i];
        t.in_flight = false;
        t.started = true;
        t.failures = 0;
        if let Some(pos) = t.urls.iter().position(|u| u == url) {
            let u = t.urls.remove(pos);
            t.urls.insert(0, u);
        }
        if resp.tracker_id.is_some() {
            t.tracker_id = resp.tracker_id.clone();
        }
        let wait = resp
            .interval
            .max(resp.min_interval.unwrap_or_default())
            .max(self.floor);
        // Spread: up to a tenth of the interval later, so torrents started together do not
        // announce together for ever.
        let extra = wait.as_nanos() * u128::from(spread) / u128::from(u32::MAX) / 10;
        let wait = wait + Duration::from_nanos(extra as u64);
        t.next = now + wait;
        wait
    }

    /// Every tracker of tier `i` failed: back off.
    pub fn failed(&mut self, i: usize, now: Instant) {
        let t = &mut self.tiers[i];
        t.in_flight = false;
        t.failures += 1;
        t.next = now + backoff(t.failures);
    }

    /// When the next tier not already announcing is due (`None` while all are in flight).
    pub fn next_due(&self) -> Option<Instant> {
        self.tiers
            .iter()
            .filter(|t| !t.in_flight)
            .map(|t| t.next)
            .min()
    }

    /// The trackers to tell `stopped`: the first (last working) URL of every tier that heard
    /// `started`, or may have (an announce still in flight).
    pub fn stop_targets(&self) -> Vec<(String, Option<String>)> {
        self.tiers
            .iter()
            .filter(|t| t.started || t.in_flight)
            .map(|t| (t.urls[0].clone(), t.tracker_id.clone()))
            .collect()
    }
}

/// Which torrent's schedule is due next, so the announcer touches only those that are due
/// instead of scanning every torrent on every wake-up: one entry per torrent, at its
/// [`Schedule::next_due`]; [`DueQueue::set`] after every change to a schedule.
#[derive(Debug, Default)]
pub struct DueQueue {
    by_time: std::collections::BTreeSet<(Instant, InfoHash)>,
    at: std::collections::HashMap<InfoHash, Instant>,
}

impl DueQueue {
    /// Torrent `ih` is next due at `when` (`None`: not at all, or forgotten).
    pub fn set(&mut self, ih: InfoHash, when: Option<Instant>) {
        if let Some(old) = self.at.remove(&ih) {
            self.by_time.remove(&(old, ih));
        }
        if let Some(w) = when {
            self.at.insert(ih, w);
            self.by_time.insert((w, ih));
        }
    }

    /// The earliest time any torrent is due.
    pub fn first(&self) -> Option<Instant> {
        self.by_time.first().map(|(t, _)| *t)
    }

    /// Takes the earliest torrent due at or before `now` out of the queue.
    pub fn pop_due(&mut self, now: Instant) -> Option<InfoHash> {
        let &(t, ih) = self.by_time.first()?;
        if t > now {
            return None;
        }
        self.by_time.remove(&(t, ih));
        self.at.remove(&ih);
        Some(ih)
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// The wait after `failures` failures in a row (1 or more): [`FIRST_BACKOFF`] doubling up to
/// [`MAX_BACKOFF`].
pub fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

/// Announces once to `url` (http, https or udp).
pub fn announce_once(
    url: &str,
    req: &AnnounceRequest,
    timeout: Duration,
    udp_retries: u32,
) -> Result<AnnounceResponse, TrackerError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        http::announce(url, req, timeout)
    } else if url.starts_with("udp://") {
        let base = Duration::from_secs(15).min(timeout);
        let mut t = udp::UdpTracker::new(url, udp_retries, base)?;
        let mut tid = crate::state::random_u32;
        t.announce(req, &mut tid)
    } else {
        Err(TrackerError::Transport(format!(
            "unsupported tracker URL scheme: {}",
            redact(url)
        )))
    }
}

/// Scrapes `url` once for `hashes` (at most [`scrape::batch_size`] of them): BEP 48 over
/// http(s), BEP 15 over udp.
pub fn scrape_once(
    url: &str,
    hashes: &[InfoHash],
    timeout: Duration,
    udp_retries: u32,
) -> Result<scrape::ScrapeReply, TrackerError> {
    if url.starts_with("udp://") {
        let base = Duration::from_secs(15).min(timeout);
        let mut t = udp::UdpTracker::new(url, udp_retries, base)?;
        let mut tid = crate::state::random_u32;
        t.scrape(hashes, &mut tid)
    } else if let Some(scrape_url) = scrape::scrape_url(url) {
        http::scrape(&scrape_url, hashes, timeout)
    } else {
        Err(TrackerError::Transport(format!(
            "no scrape URL for {}",
            redact(url)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(interval: u64, min: Option<u64>) -> AnnounceResponse {
        AnnounceResponse {
            interval: Duration::from_secs(interval),
            min_interval: min.map(Duration::from_secs),
            tracker_id: Some("tid".into()),
            complete: None,
            incomplete: None,
            warning: None,
            peers: vec![],
        }
    }

    #[test]
    fn tiers_announce_started_then_regularly_and_back_off_on_failure() {
        let t0 = Instant::now();
        let tiers = vec![
            vec!["a".to_string(), "b".into()],
            vec!["c".to_string()],
            vec![],
        ];
        let mut s = Schedule::new(&tiers, t0, |_| {}).with_floor(Duration::from_secs(5));
        assert_eq!(s.due(t0), vec![0, 1]);
        let (urls, ev) = s.begin(0);
        assert_eq!(
            (urls, ev),
            (vec!["a".to_string(), "b".into()], Event::Started)
        );
        assert_eq!(s.due(t0), vec![1], "in flight tiers are not due");
        // "b" answered: it moves to the front; next announce after max(interval, min interval).
        s.succeeded(0, "b", &reply(60, Some(120)), 0, t0);
        assert_eq!(s.tiers[0].urls, vec!["b".to_string(), "a".into()]);
        assert_eq!(s.tiers[0].next, t0 + Duration::from_secs(120));
        assert_eq!(s.begin(0).1, Event::None);
        s.succeeded(0, "b", &reply(1, None), 0, t0);
        assert_eq!(s.tiers[0].next, t0 + Duration::from_secs(5));
        // At the default floor, `interval 1` waits libtorrent's 300 s.
        let mut d = Schedule::new(&tiers, t0, |_| {});
        d.begin(0);
        let wait = d.succeeded(0, "b", &reply(1, None), 0, t0);
        assert_eq!(d.tiers[0].next, t0 + DEFAULT_MIN_INTERVAL);
        assert_eq!(
            wait, DEFAULT_MIN_INTERVAL,
            "the wait reported is the floored one"
        );
        s.begin(0);
        let wait = s.succeeded(0, "b", &reply(1000, None), u32::MAX, t0);
        assert_eq!(
            wait,
            Duration::from_secs(1100),
            "the wait reported includes the spread"
        );
        assert_eq!(
            s.tiers[0].next,
            t0 + Duration::from_secs(1100),
            "spread: at most +10%"
        );
        s.begin(0);
        s.succeeded(0, "b", &reply(1000, None), u32::MAX / 2, t0);
        let next = s.tiers[0].next - t0;
        assert!(
            next > Duration::from_secs(1049) && next < Duration::from_secs(1051),
            "{next:?}"
        );
        // Tier 1 fails twice: 15 s then 30 s, and keeps sending `started` until it works.
        s.begin(1);
        s.failed(1, t0);
        assert_eq!(s.tiers[1].next, t0 + FIRST_BACKOFF);
        assert_eq!(s.begin(1).1, Event::Started);
        s.failed(1, t0);
        assert_eq!(s.tiers[1].next, t0 + FIRST_BACKOFF * 2);
        for _ in 0..40 {
            s.begin(1);
            s.failed(1, t0);
        }
        assert_eq!(s.tiers[1].next, t0 + MAX_BACKOFF);
        assert_eq!(
            s.stop_targets(),
            vec![("b".to_string(), Some("tid".to_string()))]
        );
        // A tier whose first `started` is still in flight may have been heard: it is told too.
        s.begin(1);
        assert_eq!(s.stop_targets().len(), 2);
    }

    #[test]
    fn due_queue_holds_one_entry_per_torrent_in_time_order() {
        let t0 = Instant::now();
        let (a, b, c) = (InfoHash([1; 20]), InfoHash([2; 20]), InfoHash([3; 20]));
        let mut q = DueQueue::default();
        q.set(a, Some(t0 + Duration::from_secs(30)));
        q.set(b, Some(t0 + Duration::from_secs(10)));
        q.set(c, Some(t0 + Duration::from_secs(20)));
        // Moving a torrent replaces its entry; None removes it.
        q.set(a, Some(t0 + Duration::from_secs(5)));
        q.set(c, None);
        assert_eq!(q.len(), 2);
        assert_eq!(q.first(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(q.pop_due(t0), None, "nothing is due yet");
        let later = t0 + Duration::from_secs(60);
        assert_eq!(q.pop_due(later), Some(a));
        assert_eq!(q.pop_due(later), Some(b));
        assert_eq!(q.pop_due(later), None);
        assert!(q.is_empty());

        // A schedule's next due ignores tiers in flight.
        let mut s = Schedule::new(&[vec!["u".into()], vec!["v".into()]], t0, |_| {});
        assert_eq!(s.next_due(), Some(t0));
        s.begin(0);
        s.begin(1);
        assert_eq!(s.next_due(), None);
        s.failed(1, t0);
        assert_eq!(s.next_due(), Some(t0 + FIRST_BACKOFF));
    }
}
