//! The quota keeper (the service `quota`): loads this period's quota counts from
//! `state_dir/quota.json` at start, saves them (atomically) every [`SAVE_EVERY`] while they
//! change and at shutdown, starts the next period when this one ends (counts back to zero,
//! full rates again), and applies a used-up quota's pause to the chokers (every peer choked
//! while `server.upload_quota_rate` is 0) — woken at once when a quota runs out or the limits
//! change on SIGHUP.
//!
//! A kill -9 loses at most the last [`SAVE_EVERY`] of counting; a count is never taken twice,
//! since a record only ever holds totals of its own period. It reads and writes only its
//! record; the counting itself happens in the upload pipeline (`state::limits::account`).

use crate::lifecycle::{Services, Shutdown};
use crate::metainfo::InfoHash;
use crate::quota::{period_bounds, QuotaRecord};
use crate::state::{unix_now, Shared};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often changed counts are written.
pub const SAVE_EVERY: Duration = Duration::from_secs(2);
/// The record's file name in the state directory.
pub const RECORD: &str = "quota.json";

/// Loads the record (before anything is served) and starts the keeper.
pub fn start(shared: &Arc<Shared>, services: &mut Services) -> std::io::Result<()> {
    let path = shared.config.server.state_dir().map(|d| d.join(RECORD));
    if let Some(path) = &path {
        load(shared, path);
    } else if shared.upload.quota.limit() > 0 {
        tracing::warn!(
            "no state directory (set server.state_dir): the quota count starts at zero on \
             every restart"
        );
    }
    let shared = shared.clone();
    services.spawn_async("quota", move |shutdown| run(shared, path, shutdown))
}

fn parse_hex(hex: &str) -> Option<InfoHash> {
    if hex.len() != 40 {
        return None;
    }
    let mut ih = [0u8; 20];
    for (i, b) in ih.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(InfoHash(ih))
}

fn load(shared: &Shared, path: &Path) {
    let (start, _) = shared.upload.period.get();
    let bytes = match crate::fsread::read_regular(path, 1 << 20) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!("{}: cannot read the quota record: {e}", path.display());
            return;
        }
    };
    match QuotaRecord::decode(&bytes, start) {
        Ok(Some(r)) => {
            shared.upload.quota.add(r.used);
            shared.upload.refresh();
            let carried: HashMap<InfoHash, u64> = r
                .torrents
                .iter()
                .filter_map(|(hex, n)| Some((parse_hex(hex)?, *n)))
                .collect();
            shared.set_carried(carried);
            tracing::info!(
                used = r.used,
                "quota: this period's count taken from {}",
                path.display()
            );
        }
        Ok(None) => tracing::info!("quota: a new period has begun since the last record"),
        Err(e) => tracing::warn!("{}: ignoring the quota record: {e}", path.display()),
    }
}

/// The record of the counts as they are now.
fn record(shared: &Shared) -> QuotaRecord {
    let mut torrents: BTreeMap<String, u64> = shared
        .carried_all()
        .into_iter()
        .map(|(ih, n)| (ih.to_hex(), n))
        .collect();
    for t in shared.live_torrents() {
        let used = t.upload.quota.used();
        if used > 0 {
            torrents.insert(t.view.info_hash.to_hex(), used);
        }
    }
    QuotaRecord {
        version: QuotaRecord::VERSION,
        period_start: shared.upload.period.get().0,
        used: shared.upload.quota.used(),
        torrents,
    }
}

/// Writes the record; false if that failed (it is tried again next time).
fn save(path: &Path, r: &QuotaRecord, failing: &mut bool) -> bool {
    let result = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| crate::storage::atomic::write_atomic(path, &r.encode()))
        .and_then(|()| match path.parent() {
            Some(dir) => std::fs::File::open(dir)?.sync_all(),
            None => Ok(()),
        });
    let ok = result.is_ok();
    match result {
        Ok(()) if *failing => {
            tracing::info!("quota record saved again: {}", path.display());
            *failing = false;
        }
        Ok(()) => {}
        // Said once until it works again, not every few seconds.
        Err(e) if !*failing => {
            tracing::warn!("cannot save the quota record {}: {e}", path.display());
            *failing = true;
        }
        Err(_) => {}
    }
    ok
}

/// Starts the next period if this one is over: counts to zero, rates and chokers restored.
fn roll_over(shared: &Shared, now: i64) {
    let (_, end) = shared.upload.period.get();
    if now < end {
        return;
    }
    let s = &shared.config.server;
    shared.upload.period.set(period_bounds(
        now,
        s.upload_quota_period,
        s.upload_quota_reset_day,
    ));
    shared.upload.quota.reset();
    shared.upload.refresh();
    shared.set_carried(HashMap::new());
    for t in shared.live_torrents() {
        t.upload.quota.reset();
        t.upload.refresh(shared.upload.quota_rate());
    }
    tracing::info!("quota: a new period begins; counts start at zero");
}

/// Pauses or resumes every live torrent's choker as the quotas say.
fn apply_pauses(shared: &Shared) {
    let now = Instant::now();
    let server = shared.upload.paused();
    for t in shared.live_torrents() {
        t.set_paused(server || t.upload.paused(), now);
    }
}

async fn run(shared: Arc<Shared>, path: Option<PathBuf>, shutdown: Shutdown) {
    let mut saved: Option<QuotaRecord> = None;
    let mut failing = false;
    let mut was_paused = false;
    loop {
        let (_, end) = shared.upload.period.get();
        let to_end = Duration::from_secs(end.saturating_sub(unix_now()).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep(SAVE_EVERY.min(to_end)) => {}
            _ = shared.upload.wake_keeper.notified() => {}
            _ = shutdown.triggered() => break,
        }
        roll_over(&shared, unix_now());
        let paused = shared.upload.paused();
        if paused != was_paused {
            if paused {
                tracing::warn!(
                    "upload quota used up: payload paused until the period ends (peers stay \
                     connected, choked)"
                );
            }
            was_paused = paused;
        }
        apply_pauses(&shared);
        if let Some(path) = &path {
            let r = record(&shared);
            if saved.as_ref() != Some(&r) && save(path, &r, &mut failing) {
                saved = Some(r);
            }
        }
    }
    if let Some(path) = &path {
        save(path, &record(&shared), &mut failing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_that_ended_rolls_over_to_zero_and_full_rates() {
        let mut config = crate::config::Config::default();
        config.server.upload_quota = crate::units::ByteSize(1000);
        config.server.upload_quota_rate = crate::units::ByteRate(50_000);
        let shared = Shared::new(config, Shutdown::new()).unwrap();
        shared.upload.quota.add(5000);
        shared.upload.refresh();
        assert_eq!(shared.upload.bucket.rate(), 50_000, "the quota rate");
        shared.carry(InfoHash([1; 20]), 77);
        // Still inside the period: nothing changes.
        roll_over(&shared, unix_now());
        assert_eq!(shared.upload.quota.used(), 5000);
        // The period is over.
        shared.upload.period.set((0, 1));
        let now = unix_now();
        roll_over(&shared, now);
        assert_eq!(shared.upload.quota.used(), 0);
        assert_eq!(shared.upload.bucket.rate(), 0, "unlimited again");
        assert_eq!(shared.carried(&InfoHash([1; 20])), 0);
        let (start, end) = shared.upload.period.get();
        assert!(start <= now && now < end, "{start}..{end} holds {now}");
        let r = record(&shared);
        assert_eq!((r.period_start, r.used), (start, 0));
    }

    #[test]
    fn info_hashes_parse_from_the_record() {
        let ih = InfoHash([0xab; 20]);
        assert_eq!(parse_hex(&ih.to_hex()), Some(ih));
        assert_eq!(parse_hex("abc"), None);
        assert_eq!(parse_hex(&"zz".repeat(20)), None);
    }
}
