//! Super-seeding's series (BEP 16): pieces offered, and torrents super-seeding now or done with
//! it, by why it ended.

use super::{counter_vec, gauge_vec, sample};
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
    let (mut active, mut twice, mut alone) = (0i64, 0i64, 0i64);
    for t in torrents {
        let Some(ss) = &t.superseed else { continue };
        match *ss.stopped.lock().unwrap_or_else(|e| e.into_inner()) {
            None => active += 1,
            Some(Stop::EveryPieceOutTwice) => twice += 1,
            Some(Stop::SingleLeecher) => alone += 1,
        }
    }
    gauge_vec(
        reg,
        "uringseed_superseed_torrents",
        "Torrents set to super-seed: still super-seeding (active), or seeding normally since every piece was out twice (every_piece_out_twice) or a lone leecher stayed alone (single_leecher).",
        &["state"],
        vec![
            sample(&["active"], active),
            sample(&["every_piece_out_twice"], twice),
            sample(&["single_leecher"], alone),
        ],
    );
}
