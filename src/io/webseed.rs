//! The HTTP seeding server's I/O (BEP 19 web seed, `webseed.listen`): admission of HTTP
//! connections (a global and a per-address cap of their own), one connection's keep-alive loop
//! (read a head within `header_timeout_secs`, answer it through the sans-IO [`crate::webseed`]
//! core), and the body send: in chunks booked with the same rate buckets as peer uploads,
//! fetched from the page-cache mapping without a copy or with one read through the backend's
//! [`Disk`], written by [`send_all`] (a reader that takes no byte for `write_stall_secs` is
//! dropped) and counted against the same quotas.
//!
//! Which torrent a name means, and each torrent's [`WebIndex`] (its files, their mtimes, and
//! whether each is reachable: a symlink out of the data directory is not), are kept per worker
//! ([`Catalog`]) and rebuilt when the torrent table changes. It decides no HTTP rule (that is
//! `crate::webseed`) and owns no torrent state.

use super::admit::Active;
use super::sendfile::{send_file, Reactor};
use super::stream::{self, send_all, Disk, SendError, Stream};
use crate::config::WebseedConfig;
use crate::metainfo::InfoHash;
use crate::state::{limits, Shared, TorrentCtx};
use crate::storage::pool::OpenFile;
use crate::webseed::{
    error_answer, error_for, parse_head, respond, split_target, Answer, Body, Method, Parsed,
    Request, Servable, WebFile, WebIndex, WebStats,
};
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest piece of a body fetched and written in one go (without a rate limit).
const MAX_CHUNK: u64 = 1 << 20;
/// Largest piece of a body sent from the page cache by sendfile in one go (one residency
/// check).
const MAX_SPLICE: u64 = 8 << 20;
/// Smallest chunk a rate limit hands out.
const MIN_CHUNK: u64 = 16 << 10;
/// Bytes read from the socket at a time while a head arrives.
const READ_BYTES: usize = 16 << 10;

/// What every worker's web seed shares: the settings, the counters, the connection caps.
pub struct WebShared {
    pub config: WebseedConfig,
    pub stats: Arc<WebStats>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl WebShared {
    pub fn new(config: WebseedConfig) -> WebShared {
        WebShared {
            config,
            stats: Arc::new(WebStats::default()),
            per_ip: Mutex::new(HashMap::new()),
        }
    }
}

/// The web seed listeners of one worker.
pub struct WebParts {
    pub listeners: Vec<std::net::TcpListener>,
    pub shared: Arc<WebShared>,
}

/// Keeps an HTTP connection counted (global, per address, and in the worker's drain).
pub(super) struct WebGuard {
    web: Arc<WebShared>,
    active: Rc<Active>,
    ip: Option<IpAddr>,
}

impl Drop for WebGuard {
    fn drop(&mut self) {
        self.web
            .stats
            .connections_active
            .fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.ip {
            let mut map = self.web.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
        let n = self.active.count.get() - 1;
        self.active.count.set(n);
        if n == 0 {
            self.active.idle.notify_one();
        }
    }
}

/// Counts an HTTP connection in, or refuses it (None, counted): a blocked address, above
/// `webseed.max_connections`, or above `webseed.max_connections_per_ip` (loopback only with
/// `server.limit_loopback`).
pub(super) fn admit(
    shared: &Shared,
    web: &Arc<WebShared>,
    active: &Rc<Active>,
    addr: SocketAddr,
) -> Option<WebGuard> {
    let stats = &web.stats;
    let ip = addr.ip().to_canonical();
    let refuse = || {
        stats.connections_refused.fetch_add(1, Ordering::Relaxed);
        None
    };
    if shared.blocked(ip) {
        return refuse();
    }
    let before = stats.connections_active.fetch_add(1, Ordering::AcqRel);
    if before >= web.config.max_connections as i64 {
        stats.connections_active.fetch_sub(1, Ordering::AcqRel);
        return refuse();
    }
    let per_ip = (!ip.is_loopback() || shared.config.server.limit_loopback).then_some(ip);
    if let Some(ip) = per_ip {
        let mut map = web.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= web.config.max_connections_per_ip {
            drop(map);
            stats.connections_active.fetch_sub(1, Ordering::AcqRel);
            return refuse();
        }
        *n += 1;
    }
    stats.connections_total.fetch_add(1, Ordering::Relaxed);
    active.count.set(active.count.get() + 1);
    Some(WebGuard {
        web: web.clone(),
        active: active.clone(),
        ip: per_ip,
    })
}

/// One worker's view of the torrents by name, rebuilt when the torrent table changes.
pub(super) struct Catalog {
    changes: RefCell<tokio::sync::watch::Receiver<u64>>,
    by_name: RefCell<HashMap<String, InfoHash>>,
    indexes: RefCell<HashMap<InfoHash, Rc<WebIndex>>>,
}

impl Catalog {
    pub(super) fn new(shared: &Shared) -> Catalog {
        let mut changes = shared.torrents.subscribe();
        changes.mark_changed();
        Catalog {
            changes: RefCell::new(changes),
            by_name: RefCell::new(HashMap::new()),
            indexes: RefCell::new(HashMap::new()),
        }
    }

    /// The live torrent called `name` and its index (built on first use).
    fn find(&self, shared: &Shared, name: &str) -> Option<(Arc<TorrentCtx>, Rc<WebIndex>)> {
        if self.changes.borrow().has_changed().unwrap_or(false) {
            self.changes.borrow_mut().borrow_and_update();
            self.rebuild(shared);
        }
        let ih = *self.by_name.borrow().get(name)?;
        let ctx = shared.torrents.live(&ih)?;
        if let Some(index) = self.indexes.borrow().get(&ih) {
            return Some((ctx, index.clone()));
        }
        let index = Rc::new(build_index(&ctx));
        self.indexes.borrow_mut().insert(ih, index.clone());
        Some((ctx, index))
    }

    fn rebuild(&self, shared: &Shared) {
        let mut live = shared.torrents.all_live();
        // Two torrents of one name: the one with the lowest info-hash answers (stable).
        live.sort_by_key(|t| t.view.info_hash);
        let mut by_name = HashMap::new();
        for t in &live {
            by_name.entry(t.name.clone()).or_insert(t.view.info_hash);
        }
        self.indexes
            .borrow_mut()
            .retain(|ih, _| live.iter().any(|t| t.view.info_hash == *ih));
        *self.by_name.borrow_mut() = by_name;
    }
}

/// The web view of a torrent: its non-pad files by path, their mtimes, and whether each may be
/// served (present, and not a symlink leading out of the data directory).
fn build_index(ctx: &TorrentCtx) -> WebIndex {
    let layout = &ctx.view.layout;
    let root = ctx.data_dir.canonicalize().ok();
    let single = layout.files().len() == 1 && layout.files()[0].rel_path == Path::new(&ctx.name);
    let files = layout
        .files()
        .iter()
        .filter(|f| !f.pad)
        .map(|f| {
            let full = ctx.data_dir.join(&f.rel_path);
            let inside = match (&root, full.canonicalize()) {
                (Some(root), Ok(real)) => real.starts_with(root),
                _ => false,
            };
            let mtime = std::fs::metadata(&full)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            WebFile {
                path: f
                    .rel_path
                    .components()
                    .skip(1)
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect(),
                start: f.offset,
                length: f.length,
                mtime,
                reachable: inside,
            }
        })
        .collect();
    WebIndex::new(ctx.view.info_hash.0, ctx.name.clone(), !single, files)
}

/// Whether `len` bytes at `start` may go out: every piece they touch verified, the torrent
/// still live, and each file they lie in still there.
fn servable(ctx: &TorrentCtx, start: u64, len: u64) -> Servable {
    let layout = &ctx.view.layout;
    if ctx.is_closed() {
        return Servable::Gone;
    }
    let piece = layout.piece_length().max(1);
    let (first, last) = (start / piece, (start + len.max(1) - 1) / piece);
    if !(first..=last).all(|i| ctx.view.have.has(i as usize)) {
        return Servable::NotVerified;
    }
    for span in layout.spans(start, len) {
        if span.pad {
            continue;
        }
        let path = layout.file_path(&ctx.data_dir, span.file);
        if !ctx.files.usable(span.file) || !path.exists() {
            return Servable::Gone;
        }
    }
    Servable::Yes
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Serves one HTTP connection until it closes, a head does not arrive in time, or shutdown.
pub(super) async fn serve<S: Stream, D: Disk>(
    shared: Arc<Shared>,
    web: Arc<WebShared>,
    catalog: Rc<Catalog>,
    stream: S,
    disk: &D,
) {
    let mut buf: Vec<u8> = Vec::new();
    // The socket's registration for sendfile's waits; a local, so it goes before `stream`.
    let mut reactor: Reactor = None;
    loop {
        let req = match read_head(&shared, &web, &stream, &mut buf).await {
            Head::Request(r) => r,
            Head::Answer(a) => {
                web.stats.count(a.status);
                let _ = send_answer(
                    &shared,
                    &web,
                    &stream,
                    &mut reactor,
                    disk,
                    Planned {
                        answer: a,
                        ctx: None,
                    },
                )
                .await;
                break;
            }
            Head::Closed => break,
        };
        let answer = answer(&shared, &web, &catalog, &req);
        web.stats.count(answer.answer.status);
        let keep = answer.answer.keep_alive;
        if send_answer(&shared, &web, &stream, &mut reactor, disk, answer)
            .await
            .is_err()
            || !keep
        {
            break;
        }
    }
    stream.shutdown();
}

fn stall(cfg: &WebseedConfig) -> Duration {
    Duration::from_secs(cfg.write_stall_secs)
}

enum Head {
    Request(Request),
    /// A head that cannot be answered normally (malformed, too large): answer, then close.
    Answer(Answer),
    Closed,
}

/// Reads until `buf` holds a whole request head (bytes after it stay in `buf` for the next
/// one), within `header_timeout_secs` from the first wait.
async fn read_head<S: Stream>(
    shared: &Shared,
    web: &WebShared,
    stream: &S,
    buf: &mut Vec<u8>,
) -> Head {
    let cfg = &web.config;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(cfg.header_timeout_secs);
    let mut space = vec![0u8; READ_BYTES];
    loop {
        match parse_head(buf, cfg.max_header_bytes) {
            Parsed::Done { req, consumed } => {
                buf.drain(..consumed);
                return Head::Request(req);
            }
            Parsed::Error(e) => return Head::Answer(error_answer(e.status(), false, unix_now())),
            Parsed::Incomplete => {}
        }
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, stream.read(space)) => r,
            _ = shared.shutdown.triggered() => return Head::Closed,
        };
        let (res, back) = match read {
            Ok(r) => r,
            Err(_) => {
                // Idle between requests is a normal end; a head begun and not finished is not.
                if !buf.is_empty() {
                    web.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                }
                return Head::Closed;
            }
        };
        match res {
            Ok(0) | Err(_) => return Head::Closed,
            Ok(n) => buf.extend_from_slice(&back[..n]),
        }
        space = back;
    }
}

/// An answer and, for a body of torrent data, the torrent it comes from.
struct Planned {
    answer: Answer,
    ctx: Option<Arc<TorrentCtx>>,
}

fn answer(shared: &Shared, web: &WebShared, catalog: &Catalog, req: &Request) -> Planned {
    let now = unix_now();
    let plain = |status| Planned {
        answer: error_for(req, status, now),
        ctx: None,
    };
    if matches!(req.method, Method::Other) {
        return plain(405);
    }
    let target = match split_target(&req.target) {
        Ok(t) => t,
        Err(_) => {
            web.stats.refused_paths.fetch_add(1, Ordering::Relaxed);
            return plain(404);
        }
    };
    let Some((ctx, index)) = catalog.find(shared, &target.name) else {
        return plain(404);
    };
    let answer = respond(req, &target, &index, |s, l| servable(&ctx, s, l), now);
    Planned {
        answer,
        ctx: Some(ctx),
    }
}

/// Sends the head and the body; Err when the connection cannot go on.
async fn send_answer<S: Stream, D: Disk>(
    shared: &Shared,
    web: &WebShared,
    stream: &S,
    reactor: &mut Reactor,
    disk: &D,
    planned: Planned,
) -> Result<(), SendError> {
    let stall = stall(&web.config);
    let Answer { head, body, .. } = planned.answer;
    let mut bufs = vec![Bytes::from(head)];
    let (start, len) = match body {
        Body::Empty => return send_all(stream, bufs, stall).await,
        Body::Text(t) => {
            bufs.push(Bytes::from(t));
            return send_all(stream, bufs, stall).await;
        }
        Body::Data { start, len } => (start, len),
    };
    let Some(ctx) = planned.ctx else {
        return Err(SendError::Closed);
    };
    let end = start + len;
    let mut at = start;
    while at < end {
        if shared.upload.paused() || ctx.upload.paused() || ctx.is_closed() {
            // A used-up quota with no rate left, or the torrent went: the client retries.
            return Err(SendError::Closed);
        }
        let rate = [ctx.upload.bucket.rate(), shared.upload.bucket.rate()]
            .into_iter()
            .filter(|&r| r > 0)
            .min()
            .unwrap_or(0);
        let mut n = crate::ratelimit::chunk(rate, MIN_CHUNK, MAX_SPLICE).min(end - at);
        let source = sendfile_source(stream, &ctx, at, n);
        if source.is_none() {
            n = n.min(MAX_CHUNK);
        }
        book(shared, &ctx, n).await;
        if let Some((sock, open, offset)) = source {
            // The head (if not sent yet) and then the page-cache bytes, by sendfile (`open`
            // keeps the descriptor open until it is done).
            let head: Vec<u8> = std::mem::take(&mut bufs).concat();
            let file = std::os::fd::AsRawFd::as_raw_fd(open.file());
            let sent = send_file(stream, reactor, sock, &head, file, offset, n, stall).await;
            drop(open);
            if sent == Err(SendError::Stalled) {
                web.stats.timeouts.fetch_add(1, Ordering::Relaxed);
            }
            sent?;
            shared.stats.zero_copy_bytes.fetch_add(n, Ordering::Relaxed);
            account(shared, web, &ctx, n);
            at += n;
            continue;
        }
        let data = match ctx.resident(at, n as usize) {
            Some(d) => {
                shared.stats.zero_copy_bytes.fetch_add(n, Ordering::Relaxed);
                d
            }
            None => match disk.read_run(&ctx, at, n as usize).await {
                Ok(v) => Bytes::from(v),
                Err(e) => {
                    tracing::warn!(torrent = %ctx.name, start = at, len = n, "web seed read failed: {e}");
                    shared
                        .stats
                        .piece_read_errors
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(SendError::Closed);
                }
            },
        };
        bufs.push(data);
        let sent = send_all(stream, std::mem::take(&mut bufs), stall).await;
        if sent == Err(SendError::Stalled) {
            web.stats.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        sent?;
        account(shared, web, &ctx, n);
        at += n;
    }
    Ok(())
}

/// Where `n` bytes at `at` can be sent by sendfile from: the stream's socket (a backend that offers
/// it), and a data file (held open) and offset, when they lie in one open file and are all in
/// the page cache now (a sendfile from disk would block the worker).
fn sendfile_source<S: Stream>(
    stream: &S,
    ctx: &TorrentCtx,
    at: u64,
    n: u64,
) -> Option<(std::os::fd::RawFd, Arc<OpenFile>, u64)> {
    let sock = stream.sendfile_fd()?;
    let mut spans = ctx.view.layout.spans(at, n);
    let span = spans.next().filter(|s| !s.pad)?;
    if spans.next().is_some() || ctx.resident(at, n as usize).is_none() {
        return None;
    }
    let open = ctx.files.file(span.file).ok()?;
    Some((sock, open, span.file_offset))
}

/// Waits until the torrent's bucket, then the server's, let `n` bytes go.
async fn book(shared: &Shared, ctx: &TorrentCtx, n: u64) {
    for bucket in [&ctx.upload.bucket, &shared.upload.bucket] {
        let now: Instant = stream::now();
        let wait = bucket.reserve(shared.clock_ns(now), n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Counts `n` body bytes sent: the web seed's counter and the quotas (not the trackers'
/// `uploaded`, which is what peers took).
fn account(shared: &Shared, web: &WebShared, ctx: &TorrentCtx, n: u64) {
    web.stats.payload_bytes.fetch_add(n, Ordering::Relaxed);
    if limits::account(&shared.upload, &ctx.upload, n) {
        shared.upload.wake_keeper.notify_one();
    }
}
