//! The upload limits and quotas in the exposition: the rates configured and in force, time
//! spent waiting for them, the quota's count and period, the pause; and per torrent (when
//! `metrics.per_torrent` is on) its 10 s rate, limit and quota. Reads `state` only.

use super::{gauge_vec, sample};
use crate::reasons::{Label, ThrottleScope};
use crate::state::{Shared, TorrentCtx};
use prometheus::{CounterVec, Opts, Registry};
use std::sync::Arc;

fn fcounter_vec(reg: &Registry, name: &str, help: &str, label: &str, values: Vec<(&str, f64)>) {
    let v = CounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    for (l, n) in values {
        v.with_label_values(&[l]).inc_by(n);
    }
    reg.register(Box::new(v)).expect("unique metric");
}

fn gauge(reg: &Registry, name: &str, help: &str, v: i64) {
    gauge_vec(reg, name, help, &[], vec![sample(&[], v)]);
}

/// The server-wide series.
pub(super) fn server(reg: &Registry, shared: &Shared) {
    let u = &shared.upload;
    gauge(
        reg,
        "uringseed_upload_rate_limit_bytes",
        "server.upload_rate_limit in bytes per second (0 = unlimited).",
        u.configured() as i64,
    );
    gauge(
        reg,
        "uringseed_upload_rate_in_force_bytes",
        "The server's upload limit in force, bytes per second: the configured one, or \
         server.upload_quota_rate while the quota is used up (0 = unlimited).",
        u.bucket.rate() as i64,
    );
    gauge(
        reg,
        "uringseed_upload_paused",
        "1 while payload is paused: the upload quota is used up and upload_quota_rate is 0.",
        i64::from(u.paused()),
    );
    fcounter_vec(
        reg,
        "uringseed_upload_throttled_seconds_total",
        "Seconds connections waited for an upload limit (summed over connections), by the \
         limit that held them: the server's or their torrent's.",
        ThrottleScope::NAME,
        ThrottleScope::ALL
            .iter()
            .map(|&s| (s.label(), shared.stats.throttled_ns.get(s) as f64 / 1e9))
            .collect(),
    );
    let (_, end) = u.period.get();
    for (name, help, v) in [
        (
            "uringseed_upload_quota_bytes",
            "server.upload_quota: bytes allowed per period (0 = no quota).",
            u.quota.limit(),
        ),
        (
            "uringseed_upload_quota_used_bytes",
            "Payload bytes uploaded in the current quota period (counted with or without a quota).",
            u.quota.used(),
        ),
        (
            "uringseed_upload_quota_remaining_bytes",
            "Bytes left of the quota in this period (0 when used up or when there is no quota).",
            u.quota.limit().saturating_sub(u.quota.used()),
        ),
    ] {
        gauge(reg, name, help, v as i64);
    }
    gauge(
        reg,
        "uringseed_upload_quota_period_end_timestamp_seconds",
        "When the current quota period ends (Unix time).",
        end,
    );
}

/// The per-torrent series (`metrics.per_torrent`); `labels(t, extra)` gives a torrent's labels.
pub(super) fn per_torrent(
    reg: &Registry,
    shared: &Shared,
    torrents: &[Arc<TorrentCtx>],
    labels: impl Fn(&TorrentCtx) -> Vec<String>,
) {
    let secs = shared.clock_ns(crate::io::conn::now()) / 1_000_000_000;
    let mut series: [Vec<(Vec<String>, i64)>; 4] = Default::default();
    for t in torrents {
        let l = labels(t);
        let q = &t.upload.quota;
        series[0].push((l.clone(), t.meter.rate(secs) as i64));
        series[1].push((l.clone(), t.upload.configured() as i64));
        series[2].push((l.clone(), q.used() as i64));
        series[3].push((l, q.limit().saturating_sub(q.used()) as i64));
    }
    let names = [
        (
            "uringseed_torrent_upload_rate_bytes",
            "Payload bytes per second sent for the torrent, over the last 10 s.",
        ),
        (
            "uringseed_torrent_upload_rate_limit_bytes",
            "The torrent's upload_rate_limit in bytes per second (0 = none of its own).",
        ),
        (
            "uringseed_torrent_upload_quota_used_bytes",
            "The torrent's payload bytes in the current quota period.",
        ),
        (
            "uringseed_torrent_upload_quota_remaining_bytes",
            "Bytes left of the torrent's own quota (0 when used up or when it has none).",
        ),
    ];
    for ((name, help), values) in names.into_iter().zip(series) {
        gauge_vec(reg, name, help, &["info_hash", "name"], values);
    }
}
