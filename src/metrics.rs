//! Prometheus exposition and the endpoint serving it (/metrics, /healthz, /readyz).
//!
//! Counters live as atomics in [`crate::stats::Stats`] (cheap on hot paths); each scrape copies
//! them into a fresh `prometheus` registry together with the shared histograms and the process
//! collector, and encodes the text format. Labelled counters are exported for every value of
//! their [`crate::reasons`] enum. The endpoint is the async service `metrics` on
//! [`crate::http`] (one task per connection, one deadline for each, a cap on connections
//! answered at once), so a hanging scraper cannot block the others or the server. It reads the
//! shared state only.

mod dht;
mod limits;
mod superseed;
mod swarm;
mod tracker_server;
mod utp;
mod webseed;

use crate::reasons::{CandidateResult, Label, LabelCounters, PeerSourceKind};
use crate::state::Shared;
use prometheus::core::Collector;
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Label values and a value.
type Sample<T> = (Vec<String>, T);

fn sample<T>(labels: &[&str], v: T) -> Sample<T> {
    (labels.iter().map(|l| l.to_string()).collect(), v)
}

fn counter_vec(reg: &Registry, name: &str, help: &str, labels: &[&str], values: Vec<Sample<u64>>) {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    for (l, n) in values {
        v.with_label_values(&l.iter().map(String::as_str).collect::<Vec<_>>())
            .inc_by(n);
    }
    reg.register(Box::new(v)).expect("unique metric");
}

fn gauge_vec(reg: &Registry, name: &str, help: &str, labels: &[&str], values: Vec<Sample<i64>>) {
    let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    for (l, n) in values {
        v.with_label_values(&l.iter().map(String::as_str).collect::<Vec<_>>())
            .set(n);
    }
    reg.register(Box::new(v)).expect("unique metric");
}

fn register<C: Collector + 'static>(reg: &Registry, c: C) {
    reg.register(Box::new(c)).expect("unique metric");
}

/// A counter with one label, with every value of `L` present (0 if it never occurred).
fn labelled<L: Label>(reg: &Registry, name: &str, help: &str, counts: &LabelCounters<L>) {
    let values = counts
        .all()
        .into_iter()
        .map(|(l, n)| sample(&[l.label()], n))
        .collect();
    counter_vec(reg, name, help, &[L::NAME], values);
}

/// The metrics in Prometheus text format.
pub fn render(shared: &Shared, backend: &str) -> String {
    render_with(shared, backend, &UdpStatus::default())
}

/// The status of what runs on the peer port's UDP sockets (the DHT node and uTP) and of the
/// built-in tracker, when on.
#[derive(Debug, Clone, Default)]
pub struct UdpStatus {
    pub dht: Option<Arc<crate::dht::service::DhtStatus>>,
    pub utp: Option<Arc<crate::utp::UtpStatus>>,
    /// The built-in tracker (`tracker_server.listen`), when it runs.
    pub tracker_server: Option<Arc<crate::tracker_server::service::TrackerServerStatus>>,
    /// The web seed's counters (when it serves).
    pub webseed: Option<Arc<crate::webseed::WebStats>>,
    /// Where the web seed listens (ports resolved).
    pub webseed_addrs: Vec<std::net::SocketAddr>,
}

/// [`render`] with the DHT node's, uTP's and the built-in tracker's series, when they run.
pub fn render_with(shared: &Shared, backend: &str, udp: &UdpStatus) -> String {
    let s = &shared.stats;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let reg = Registry::new();
    counter_vec(
        &reg,
        "uringseed_uploaded_bytes_total",
        "Bytes sent to peers: piece data (payload) and everything else (protocol).",
        &["type"],
        vec![
            sample(&["payload"], get(&s.uploaded_payload_bytes)),
            sample(&["protocol"], get(&s.uploaded_protocol_bytes)),
        ],
    );
    let mut peers = Vec::new();
    for (dir, out) in [("incoming", false), ("outgoing", true)] {
        for (fam, v6) in [("ipv4", false), ("ipv6", true)] {
            peers.push(sample(&[dir, fam], s.peers.get(out, v6) as i64));
        }
    }
    gauge_vec(
        &reg,
        "uringseed_peers_connected",
        "Peers past the handshake.",
        &["direction", "family"],
        peers,
    );
    let torrents = shared.live_torrents();
    let unchoked: usize = torrents.iter().map(|t| t.unchoked()).sum();
    gauge_vec(
        &reg,
        "uringseed_peers_unchoked",
        "Peers allowed to request data.",
        &[],
        vec![sample(&[], unchoked as i64)],
    );
    for (name, help, v) in [
        (
            "uringseed_connections_accepted_total",
            "Incoming connections accepted.",
            get(&s.connections_accepted),
        ),
        (
            "uringseed_connections_dialed_total",
            "Outgoing connections attempted.",
            get(&s.connections_dialed),
        ),
        (
            "uringseed_connections_dial_failed_total",
            "Outgoing connections that could not be made.",
            get(&s.connections_dial_failed),
        ),
        (
            "uringseed_requests_served_total",
            "Block requests served.",
            get(&s.requests_served),
        ),
        (
            "uringseed_zero_copy_bytes_total",
            "Payload bytes sent straight from the page cache (the rest is read from disk first).",
            get(&s.zero_copy_bytes),
        ),
        (
            "uringseed_piece_read_errors_total",
            "Reads of piece data that failed.",
            get(&s.piece_read_errors),
        ),
        (
            "uringseed_pieces_withdrawn_total",
            "Pieces withdrawn while serving because their data could not be read.",
            get(&s.pieces_withdrawn),
        ),
        (
            "uringseed_hash_verified_bytes_total",
            "Bytes hashed by data checks.",
            get(&s.hash_bytes),
        ),
        (
            "uringseed_hash_verified_pieces_total",
            "Pieces hashed by data checks.",
            get(&s.hash_pieces),
        ),
        (
            "uringseed_hash_failed_pieces_total",
            "Pieces found bad (hash mismatch, missing or wrong-sized file) by data checks.",
            get(&s.hash_failed_pieces),
        ),
    ] {
        counter_vec(&reg, name, help, &[], vec![sample(&[], v)]);
    }
    labelled(
        &reg,
        "uringseed_requests_rejected_total",
        "Block requests refused, by reason.",
        &s.rejected,
    );
    labelled(
        &reg,
        "uringseed_peer_hash_requests_total",
        "BEP 52 hash requests from peers, by result: served, or why a hash reject was sent.",
        &s.hash_requests,
    );
    labelled(
        &reg,
        "uringseed_peers_dropped_total",
        "Connections closed by the server, by reason.",
        &s.dropped,
    );
    labelled(
        &reg,
        "uringseed_peer_handshakes_total",
        "Peers that completed the handshake, by kind (plain, or encrypted handshake with a \
         plaintext or RC4 payload).",
        &s.handshakes,
    );
    labelled(
        &reg,
        "uringseed_tracker_announces_total",
        "Tracker announces, by result.",
        &s.announces,
    );
    let mut candidates = Vec::new();
    for &source in PeerSourceKind::ALL {
        for &result in CandidateResult::ALL {
            let n = s.candidates(source, result);
            candidates.push(sample(&[source.label(), result.label()], n));
        }
    }
    counter_vec(
        &reg,
        "uringseed_peer_candidates_total",
        "Peer addresses offered for dialling, by source and by what became of them.",
        &[PeerSourceKind::NAME, CandidateResult::NAME],
        candidates,
    );
    counter_vec(
        &reg,
        "uringseed_metadata_pieces_total",
        "BEP 9 metadata pieces (16 KiB of an info dictionary) sent to peers, and requests for \
         them rejected (past the end, or over the per-read budget of a flood).",
        &["result"],
        vec![
            sample(&["served"], get(&s.metadata_served)),
            sample(&["rejected"], get(&s.metadata_rejected)),
        ],
    );
    counter_vec(
        &reg,
        "uringseed_pex_messages_total",
        "BEP 11 peer-exchange messages sent to peers and received from them (acted on).",
        &["direction"],
        vec![
            sample(&["sent"], get(&s.pex_sent)),
            sample(&["received"], get(&s.pex_received)),
        ],
    );
    let counts = shared.torrents.counts();
    gauge_vec(
        &reg,
        "uringseed_torrents",
        "Torrents by state (error: nothing to serve, data missing or all bad, or the check failed; paused: by an operator).",
        &["state"],
        vec![
            sample(&["checking"], counts.checking as i64),
            sample(&["seeding"], counts.seeding as i64),
            sample(&["error"], counts.error as i64),
            sample(&["paused"], counts.paused as i64),
        ],
    );
    let mut kinds = [0i64; 3];
    for t in shared.live_torrents() {
        kinds[match &t.view.v2 {
            None => 0,
            Some(v2) if v2.info_hash == t.view.info_hash => 1,
            Some(_) => 2,
        }] += 1;
    }
    gauge_vec(
        &reg,
        "uringseed_live_torrents_by_hash_kind",
        "Torrents being served, by the hashes they carry (BEP 52): v1, v2 or hybrid (both).",
        &["kind"],
        ["v1", "v2", "hybrid"]
            .iter()
            .zip(kinds)
            .map(|(k, n)| sample(&[k], n))
            .collect(),
    );
    let trackers = shared.tracker_status();
    let working = trackers.iter().filter(|t| t.2.ok).count() as i64;
    gauge_vec(
        &reg,
        "uringseed_trackers",
        "Trackers by the result of their last announce.",
        &["state"],
        vec![
            sample(&["working"], working),
            sample(&["failing"], trackers.len() as i64 - working),
        ],
    );
    gauge_vec(
        &reg,
        "uringseed_io_backend",
        "The I/O backend in use (1).",
        &["backend"],
        vec![sample(&[backend], 1)],
    );
    gauge_vec(
        &reg,
        "uringseed_resident_memory_bytes",
        "Resident memory by kind: anon is the server's own, file is page cache of the data files \
         mapped for zero-copy sends (reclaimable by the kernel).",
        &["kind"],
        resident_memory()
            .into_iter()
            .map(|(kind, bytes)| sample(&[kind], bytes))
            .collect(),
    );
    gauge_vec(
        &reg,
        "uringseed_build_info",
        "Build information (1).",
        &["version"],
        vec![sample(&[env!("CARGO_PKG_VERSION")], 1)],
    );
    register(&reg, s.hist.piece_read_seconds.clone());
    register(&reg, s.hist.write_bytes.clone());
    register(&reg, s.hist.announce_seconds.clone());
    let files = crate::storage::pool::pool();
    let (open, limit) = files.len();
    gauge_vec(
        &reg,
        "uringseed_data_files_open",
        "Data-file descriptors the server keeps open (at most server.max_open_files, plus \
         reads in flight on files closed meanwhile), and the limit.",
        &["kind"],
        vec![
            sample(&["open"], open as i64),
            sample(&["limit"], limit as i64),
        ],
    );
    counter_vec(
        &reg,
        "uringseed_data_file_opens_total",
        "Data-file opens (at load, and again after the least recently used was closed), and \
         closes to stay within server.max_open_files.",
        &["event"],
        vec![
            sample(&["opened"], files.opened.load(Ordering::Relaxed)),
            sample(&["evicted"], files.evicted.load(Ordering::Relaxed)),
        ],
    );
    limits::server(&reg, shared);
    swarm::server(&reg, shared);
    register(&reg, crate::process::ProcessMetrics::for_self());
    if shared.config.metrics.per_torrent {
        limits::per_torrent(&reg, shared, &torrents, |t| {
            vec![t.view.info_hash.to_hex(), t.name.clone()]
        });
        let (mut up, mut peer_counts, mut pieces) = (Vec::new(), Vec::new(), Vec::new());
        for t in &torrents {
            let ih = t.view.info_hash.to_hex();
            let have = t.view.have.count() as i64;
            let l = |extra: &[&str]| -> Vec<String> {
                let mut v = vec![ih.clone(), t.name.clone()];
                v.extend(extra.iter().map(|e| e.to_string()));
                v
            };
            up.push((l(&[]), t.uploaded.load(Ordering::Relaxed)));
            peer_counts.push((l(&[]), t.peers.load(Ordering::Relaxed) as i64));
            pieces.push((l(&["verified"]), have));
            pieces.push((l(&["missing"]), t.view.layout.num_pieces() as i64 - have));
        }
        counter_vec(
            &reg,
            "uringseed_torrent_uploaded_bytes_total",
            "Payload bytes sent, per torrent.",
            &["info_hash", "name"],
            up,
        );
        gauge_vec(
            &reg,
            "uringseed_torrent_peers",
            "Connected peers, per torrent.",
            &["info_hash", "name"],
            peer_counts,
        );
        gauge_vec(
            &reg,
            "uringseed_torrent_pieces",
            "Pieces per torrent, verified or missing.",
            &["info_hash", "name", "state"],
            pieces,
        );
        swarm::per_torrent(&reg, &torrents, &trackers, |t, extra| {
            let mut v = vec![t.view.info_hash.to_hex(), t.name.clone()];
            v.extend(extra.iter().map(|e| e.to_string()));
            v
        });
    }
    superseed::render(&reg, s, &torrents);
    if let Some(d) = &udp.dht {
        dht::render(&reg, d);
    }
    if let Some(u) = &udp.utp {
        utp::render(&reg, u);
    }
    if let Some(t) = &udp.tracker_server {
        tracker_server::render(&reg, &t.stats());
    }
    if let Some(w) = &udp.webseed {
        webseed::render(&reg, w);
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&reg.gather(), &mut out)
        .expect("text encoding");
    String::from_utf8(out).expect("text format is UTF-8")
}

/// RssAnon and RssFile of this process, in bytes (from /proc/self/status).
fn resident_memory() -> Vec<(&'static str, i64)> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| -> i64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok())
            .unwrap_or(0)
    };
    vec![
        ("anon", kib("RssAnon:") * 1024),
        ("file", kib("RssFile:") * 1024),
    ]
}

/// HTTP connections open at once above which /metrics answers with a recent page.
const BUSY: usize = 8;
/// How old a page /metrics may answer with while busy.
const REUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// The metrics routes: /metrics, /healthz, /readyz (GET and HEAD), served by
/// [`crate::api::service`].
pub fn routes(shared: Arc<Shared>, backend: &'static str, udp: UdpStatus) -> crate::http::Router {
    use crate::http::Reply;
    use hyper::StatusCode;
    let (health, ready) = (shared.clone(), shared.clone());
    let router = crate::http::Router::new();
    let open = router.open_connections();
    let page: std::sync::Mutex<Option<(std::time::Instant, bytes::Bytes)>> = Default::default();
    router
        .get("/metrics", move |_| {
            // Many scrapers at once (more than BUSY connections open): the page rendered less
            // than REUSE ago serves them all; one at a time, every scrape is rendered fresh.
            let busy = open.load(std::sync::atomic::Ordering::Relaxed) > BUSY;
            let mut last = page.lock().unwrap_or_else(|e| e.into_inner());
            let body = match &*last {
                Some((at, body)) if busy && at.elapsed() < REUSE => body.clone(),
                _ => {
                    let body = bytes::Bytes::from(render_with(&shared, backend, &udp));
                    *last = Some((std::time::Instant::now(), body.clone()));
                    body
                }
            };
            Reply::new(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            )
        })
        .get("/healthz", move |_| match health.shutdown.is_triggered() {
            false => Reply::text(StatusCode::OK, "ok\n"),
            true => Reply::text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
        })
        .get("/readyz", move |_| match ready.torrents.counts().checking {
            0 => Reply::text(StatusCode::OK, "ready\n"),
            _ => Reply::text(StatusCode::SERVICE_UNAVAILABLE, "checking data\n"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::Shutdown;
    use crate::reasons::{
        AnnounceResult, DropReason, HandshakeKind, HashReply, RejectReason, ThrottleScope,
    };

    fn every_value<L: Label>(body: &str, metric: &str) {
        for l in L::ALL {
            let series = format!("{metric}{{{}=\"{}\"}}", L::NAME, l.label());
            assert!(body.contains(&series), "{series} missing from /metrics");
        }
    }

    /// The dashboard's queries of a labelled counter group by its label, so every value shows.
    fn grouped_on_dashboard(metric: &str, label: &str) {
        let dash = include_str!("../deploy/grafana/uringseed.json");
        let mut seen = 0;
        for line in dash
            .lines()
            .filter(|l| l.contains("\"expr\"") && l.contains(metric))
        {
            seen += 1;
            assert!(
                line.contains(&format!("by ({label}")),
                "a dashboard query of {metric} does not group by {label}: {line}"
            );
        }
        assert!(seen > 0, "{metric} is not on the dashboard");
    }

    #[test]
    fn every_label_value_is_exported_and_grouped_on_the_dashboard() {
        let shared = Shared::new(crate::config::Config::default(), Shutdown::new()).unwrap();
        let body = render(&shared, "io_uring");
        every_value::<DropReason>(&body, "uringseed_peers_dropped_total");
        every_value::<RejectReason>(&body, "uringseed_requests_rejected_total");
        every_value::<HashReply>(&body, "uringseed_peer_hash_requests_total");
        every_value::<HandshakeKind>(&body, "uringseed_peer_handshakes_total");
        every_value::<AnnounceResult>(&body, "uringseed_tracker_announces_total");
        every_value::<AnnounceResult>(&body, "uringseed_tracker_scrapes_total");
        for s in PeerSourceKind::ALL {
            for r in CandidateResult::ALL {
                let series = format!(
                    "uringseed_peer_candidates_total{{result=\"{}\",source=\"{}\"}}",
                    r.label(),
                    s.label()
                );
                assert!(body.contains(&series), "{series} missing");
            }
        }
        for s in ThrottleScope::ALL {
            let series = format!(
                "uringseed_upload_throttled_seconds_total{{scope=\"{}\"}}",
                s.label()
            );
            assert!(body.contains(&series), "{series} missing");
        }
        for (metric, label) in [
            ("uringseed_upload_throttled_seconds_total", "scope"),
            ("uringseed_peers_dropped_total", "reason"),
            ("uringseed_requests_rejected_total", "reason"),
            ("uringseed_peer_hash_requests_total", "result"),
            ("uringseed_live_torrents_by_hash_kind", "kind"),
            ("uringseed_peer_handshakes_total", "kind"),
            ("uringseed_tracker_announces_total", "result"),
            ("uringseed_tracker_scrapes_total", "result"),
            ("uringseed_peer_candidates_total", "source, result"),
        ] {
            grouped_on_dashboard(metric, label);
        }
    }
}
