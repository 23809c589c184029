//! Super-seeding's series (BEP 16): pieces offered, and torrents super-seeding now or done with
//! it, by why it ended.

use super::{counter_vec, gauge_vec, sample};
use crate::state::superseed::Ended;
use crate::state::TorrentCtx;
use crate::stats::Stats;
use crate::superseed::Stop;
use prometheus::Registry;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(super) fn render(reg: &Registry, s: &Stats, torrents: &[Arc<TorrentCtx>]) {
    counter_vec(
        reg,
        "uringseed_superseed_offers_total",
        "Pieces offered to leechers one at a time (a have) by super-seeding.",
        &[],
        vec![sample(&[], s.superseed_offers.load(Ordering::Relaxed))],
    );
    let (mut active, mut twice, mut alone, mut other) = (0i64, 0i64, 0i64, 0i64);
    for t in torrents {
        let Some(ss) = &t.superseed else { continue };
        match *ss.stopped.lock().unwrap_or_else(|e| e.into_inner()) {
            None => active += 1,
            Some(Ended::Core(Stop::EveryPieceOutTwice)) => twice += 1,
            Some(Ended::Core(Stop::SingleLeecher)) => alone += 1,
            Some(Ended::OtherSeed | Ended::TrackerSeeds(_)) => other += 1,
        }
    }
    gauge_vec(
        reg,
        "uringseed_superseed_torrents",
        "Torrents set to super-seed: still super-seeding (active), or seeding normally since every piece was out twice (every_piece_out_twice) a lone leecher stayed alone (single_leecher), or in \"auto\" mode another seed connected or a tracker counted one (other_seed).",
        &["state"],
        vec![
            sample(&["active"], active),
            sample(&["every_piece_out_twice"], twice),
            sample(&["single_leecher"], alone),
            sample(&["other_seed"], other),
        ],
    );
}
