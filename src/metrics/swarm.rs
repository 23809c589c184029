//! The swarms as the trackers count them, in the exposition: scrape requests by result, and
//! per torrent (when `metrics.per_torrent` is on) the seeders, leechers and completed downloads
//! the trackers last reported (per tracker the newer of its last announce reply and its last
//! scrape; over trackers the largest). Reads `state` only.

use super::{gauge_vec, labelled};
use crate::metainfo::InfoHash;
use crate::state::{Shared, TorrentCtx, TrackerStatus};
use prometheus::Registry;
use std::sync::Arc;

/// The server-wide series.
pub(super) fn server(reg: &Registry, shared: &Shared) {
    labelled(
        reg,
        "uringseed_tracker_scrapes_total",
        "Tracker scrape requests (each for a batch of torrents), by result.",
        &shared.stats.scrapes,
    );
}

/// The per-torrent series; `labels(t, extra)` gives a torrent's labels followed by `extra`.
pub(super) fn per_torrent(
    reg: &Registry,
    torrents: &[Arc<TorrentCtx>],
    trackers: &[(InfoHash, String, TrackerStatus)],
    labels: impl Fn(&TorrentCtx, &[&str]) -> Vec<String>,
) {
    let (mut peers, mut completed) = (Vec::new(), Vec::new());
    for t in torrents {
        let of_torrent = || trackers.iter().filter(|s| s.0 == t.view.info_hash);
        let seeders = of_torrent().filter_map(|s| s.2.seeders).max();
        let leechers = of_torrent().filter_map(|s| s.2.leechers).max();
        for (role, n) in [("seeders", seeders), ("leechers", leechers)] {
            if let Some(n) = n {
                peers.push((labels(t, &[role]), i64::from(n)));
            }
        }
        if let Some(n) = of_torrent().filter_map(|s| s.2.completed).max() {
            completed.push((labels(t, &[]), i64::from(n)));
        }
    }
    gauge_vec(
        reg,
        "uringseed_torrent_swarm_peers",
        "Seeders and leechers in the swarm, as the trackers last counted them (announce replies \
         and scrapes, the newer per tracker; the largest count over trackers).",
        &["info_hash", "name", "role"],
        peers,
    );
    gauge_vec(
        reg,
        "uringseed_torrent_swarm_completed",
        "Completed downloads of the torrent the trackers counted (from scrapes; the largest \
         count over trackers).",
        &["info_hash", "name"],
        completed,
    );
}
