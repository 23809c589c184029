//! Scrapes: asking a tracker for the swarm counts of several torrents at once (BEP 48 over
//! HTTP, action 2 of BEP 15 over UDP). This module holds the pure parts: the HTTP scrape URL
//! derived from an announce URL, the request URL with its batch of info-hashes, the bounded
//! parser of the bencoded reply, and the scrape schedule of every tracker (time is passed in).
//!
//! It does no I/O: the exchanges are `http.rs`'s and `udp.rs`'s (the UDP packet codec lives
//! there, next to the connect it shares), and the announcer (`runner.rs`) runs the schedule and
//! records the counts.

use super::TrackerError;
use crate::bencode::{self, Value};
use crate::metainfo::InfoHash;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Info-hashes per HTTP scrape request (the URL stays under about 4 KiB).
pub const MAX_HTTP_BATCH: usize = 50;
/// Info-hashes per UDP scrape packet (BEP 15: about 74 fit in a packet).
pub const MAX_UDP_BATCH: usize = 74;
/// Most entries a reply's `files` may hold; a reply with more is refused as malformed.
pub const MAX_REPLY_ENTRIES: usize = 1000;
/// How long after a tracker's first successful announce it is scraped, so that the torrents
/// announcing to it in the meantime go in the same request.
pub const BATCH_DELAY: Duration = Duration::from_secs(2);
/// Shortest time between two scrapes of one tracker brought forward by newly announced
/// torrents (never shorter than the tracker's `min_request_interval`, never longer than the
/// regular interval).
pub const MIN_GAP: Duration = Duration::from_secs(60);
/// Largest `min_request_interval` taken from a tracker.
const MAX_MIN_REQUEST_INTERVAL: Duration = Duration::from_secs(7 * 24 * 3600);

/// One torrent's swarm as a scrape counted it (a count the tracker left out or sent out of
/// range is `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeCounts {
    pub seeders: Option<u32>,
    pub leechers: Option<u32>,
    /// Downloads the tracker counted (`downloaded`; BEP 15 `completed`).
    pub completed: Option<u32>,
}

/// A scrape reply: the counts of the torrents asked about that the tracker listed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScrapeReply {
    pub files: Vec<(InfoHash, ScrapeCounts)>,
    /// The tracker's `flags.min_request_interval`: do not scrape it again sooner.
    pub min_request_interval: Option<Duration>,
    /// Entries ignored: keys that are not an info-hash, values that are not dictionaries,
    /// torrents not asked about.
    pub skipped: usize,
}

/// The HTTP(S) scrape URL of an announce URL (BEP 48): the last path component, if it starts
/// with `announce`, with that word replaced by `scrape`; the rest of the component and the
/// query are kept. `None` when there is no such component (no HTTP scrape for that tracker)
/// or the URL is not http(s).
pub fn scrape_url(announce: &str) -> Option<String> {
    let rest = announce
        .strip_prefix("http://")
        .or_else(|| announce.strip_prefix("https://"))?;
    let scheme_len = announce.len() - rest.len();
    // The path ends at the query or fragment; the last component starts after its last '/'.
    let path_end = scheme_len + rest.find(['?', '#']).unwrap_or(rest.len());
    let authority_end = scheme_len + rest.find('/').filter(|&i| scheme_len + i < path_end)?;
    let last = announce[authority_end..path_end].rfind('/')? + authority_end + 1;
    if !announce[last..path_end].starts_with("announce") {
        return None;
    }
    Some(format!(
        "{}scrape{}",
        &announce[..last],
        &announce[last + "announce".len()..]
    ))
}

/// How many info-hashes one scrape request to `url` may carry; `None` when the tracker cannot
/// be scraped (an http(s) URL without an `announce` component, or another scheme).
pub fn batch_size(url: &str) -> Option<usize> {
    if url.starts_with("udp://") {
        Some(MAX_UDP_BATCH)
    } else {
        scrape_url(url).map(|_| MAX_HTTP_BATCH)
    }
}

/// The request URL: the scrape URL with one `info_hash` parameter per torrent.
pub fn request_url(scrape: &str, hashes: &[InfoHash]) -> String {
    let mut url = scrape.to_string();
    for (i, ih) in hashes.iter().enumerate() {
        let sep = if i == 0 && !scrape.contains('?') {
            '?'
        } else {
            '&'
        };
        url.push(sep);
        url.push_str("info_hash=");
        url.push_str(&super::http::percent_encode(&ih.0));
    }
    url
}

/// A `files` key as an info-hash: 20 raw bytes, or the UTF-8 encoding of 20 characters up to
/// U+00FF (what npm bittorrent-tracker 11 sends: it encodes the raw bytes as Latin-1 text).
fn key_hash(key: &[u8]) -> Option<InfoHash> {
    if let Ok(raw) = <[u8; 20]>::try_from(key) {
        return Some(InfoHash(raw));
    }
    if key.len() > 40 {
        return None;
    }
    let text = std::str::from_utf8(key).ok()?;
    let bytes: Vec<u8> = text
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<_>>()?;
    <[u8; 20]>::try_from(bytes).ok().map(InfoHash)
}

/// Parses a bencoded scrape reply (the body, already bounded by the caller); only the torrents
/// in `asked` are kept.
pub fn parse_reply(body: &[u8], asked: &[InfoHash]) -> Result<ScrapeReply, TrackerError> {
    let malformed = |why: String| TrackerError::Malformed(why);
    let root = bencode::decode(body).map_err(|e| malformed(format!("not bencode: {e}")))?;
    if !matches!(root.value, Value::Dict(_)) {
        return Err(malformed("scrape reply is not a dictionary".into()));
    }
    if let Some(Value::Bytes(b)) = root.get("failure reason").map(|n| &n.value) {
        return Err(TrackerError::Failure(
            String::from_utf8_lossy(b).into_owned(),
        ));
    }
    let Some(Value::Dict(files)) = root.get("files").map(|n| &n.value) else {
        return Err(malformed("scrape reply has no `files` dictionary".into()));
    };
    if files.len() > MAX_REPLY_ENTRIES {
        return Err(malformed(format!(
            "scrape reply lists {} torrents, more than {MAX_REPLY_ENTRIES}",
            files.len()
        )));
    }
    let count = |entry: &bencode::Node<'_>, key: &str| match entry.get(key).map(|n| &n.value) {
        Some(Value::Int(v)) => u32::try_from(*v).ok(),
        _ => None,
    };
    let mut reply = ScrapeReply::default();
    let mut seen = BTreeSet::new();
    for (key, entry) in files {
        let counts = ScrapeCounts {
            seeders: count(entry, "complete"),
            leechers: count(entry, "incomplete"),
            completed: count(entry, "downloaded"),
        };
        match key_hash(key).filter(|ih| asked.contains(ih)) {
            // The first entry of a torrent counts (a second, e.g. under another key form, is
            // skipped); an entry without a single count is no entry.
            Some(ih) if counts != ScrapeCounts::default() && seen.insert(ih) => {
                reply.files.push((ih, counts))
            }
            _ => reply.skipped += 1,
        }
    }
    if let Some(flags) = root.get("flags") {
        if let Some(Value::Int(v)) = flags.get("min_request_interval").map(|n| &n.value) {
            let secs = Duration::from_secs((*v).max(0) as u64);
            reply.min_request_interval = Some(secs.min(MAX_MIN_REQUEST_INTERVAL));
        }
    }
    Ok(reply)
}

/// The scrape state of one tracker (by announce URL).
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// Torrents that announced to it successfully.
    pub torrents: BTreeSet<InfoHash>,
    /// When it is scraped next (None: nothing scheduled).
    pub next: Option<Instant>,
    /// When its last scrape began.
    pub last: Option<Instant>,
    pub failures: u32,
    pub in_flight: bool,
    /// A torrent joined since the last scrape began.
    pub unscraped: bool,
    pub min_request_interval: Duration,
}

/// Every tracker's scrape schedule: each is scraped [`BATCH_DELAY`] after its first successful
/// announce, then every `interval` (or its `min_request_interval`, if longer); a torrent that
/// starts announcing to it later brings the next scrape forward, but not to less than
/// [`MIN_GAP`] after the last one. A failed scrape backs off like a failing announce tier.
#[derive(Debug, Clone)]
pub struct Scrapes {
    interval: Duration,
    pub targets: BTreeMap<String, Target>,
}

impl Scrapes {
    /// `interval` zero: never scrape.
    pub fn new(interval: Duration) -> Scrapes {
        Scrapes {
            interval,
            targets: BTreeMap::new(),
        }
    }

    /// `info_hash` announced to `url` successfully.
    pub fn announced(&mut self, url: &str, info_hash: InfoHash, now: Instant) {
        if self.interval.is_zero() || batch_size(url).is_none() {
            return;
        }
        let t = self.targets.entry(url.to_string()).or_default();
        if !t.torrents.insert(info_hash) {
            return;
        }
        t.unscraped = true;
        // While it is being scraped or backs off, the next scrape (after the result, or the
        // retry) includes the new torrent.
        if t.in_flight || t.failures > 0 {
            return;
        }
        let gap = MIN_GAP
            .max(t.min_request_interval)
            .min(self.interval.max(t.min_request_interval));
        let at = match t.last {
            None => now + BATCH_DELAY,
            Some(last) => (now + BATCH_DELAY).max(last + gap),
        };
        t.next = Some(t.next.map_or(at, |n| n.min(at)));
    }

    /// Forgets a torrent that is no longer served; a tracker left without torrents is dropped.
    pub fn forget(&mut self, info_hash: &InfoHash) {
        for t in self.targets.values_mut() {
            t.torrents.remove(info_hash);
        }
        self.targets.retain(|_, t| !t.torrents.is_empty());
    }

    /// Trackers due for a scrape that are not being scraped.
    pub fn due(&self, now: Instant) -> Vec<String> {
        self.targets
            .iter()
            .filter(|(_, t)| !t.in_flight && t.next.is_some_and(|n| n <= now))
            .map(|(url, _)| url.clone())
            .collect()
    }

    /// When the next scrape is due (of those not in flight).
    pub fn next_due(&self) -> Option<Instant> {
        self.targets
            .values()
            .filter(|t| !t.in_flight)
            .filter_map(|t| t.next)
            .min()
    }

    /// Marks `url` as being scraped; returns its torrents.
    pub fn begin(&mut self, url: &str, now: Instant) -> Vec<InfoHash> {
        let Some(t) = self.targets.get_mut(url) else {
            return Vec::new();
        };
        t.in_flight = true;
        t.next = None;
        t.last = Some(now);
        t.unscraped = false;
        t.torrents.iter().copied().collect()
    }

    /// The scrape of `url` worked; `min_request_interval` as the tracker asked. Returns the
    /// wait until the next one.
    pub fn succeeded(
        &mut self,
        url: &str,
        min_request_interval: Option<Duration>,
        now: Instant,
    ) -> Option<Duration> {
        let interval = self.interval;
        let t = self.targets.get_mut(url)?;
        t.in_flight = false;
        t.failures = 0;
        if let Some(m) = min_request_interval {
            t.min_request_interval = m;
        }
        let regular = interval.max(t.min_request_interval);
        let gap = MIN_GAP.max(t.min_request_interval).min(regular);
        let wait = if t.unscraped { gap } else { regular };
        t.next = Some(now + wait);
        Some(wait)
    }

    /// The scrape of `url` failed: retried after the announce backoff for as many failures
    /// (returned).
    pub fn failed(&mut self, url: &str, now: Instant) -> Option<Duration> {
        let t = self.targets.get_mut(url)?;
        t.in_flight = false;
        t.failures += 1;
        let wait = super::backoff(t.failures);
        t.next = Some(now + wait);
        Some(wait)
    }
}

#[cfg(test)]
#[path = "scrape_tests.rs"]
mod tests;
