//! How uringseed's torrents look through the qBittorrent Web API: the state strings
//! (`uploading`, `stalledUP`, `stoppedUP`, `checkingUP`, `error`), the `filter` values of
//! `torrents/info`, and the JSON objects of `torrents/info`, `torrents/properties` and
//! `torrents/trackers` with qBittorrent's field names and units (bytes, bytes per second,
//! seconds since the Unix epoch, -1 for "unknown" or "no limit"). uringseed only seeds, so
//! every download figure is 0 and `eta` is qBittorrent's "infinity", 8640000.

use crate::api::view;
use crate::control::Entry;
use serde_json::{json, Value};

/// qBittorrent's `eta` for "never" (100 days).
pub const ETA_INFINITY: i64 = 8_640_000;

/// The qBittorrent state of a torrent in uringseed's state `state` uploading at `upload_rate`.
/// Stopped is `stoppedUP` (the Web API 2.11 name; before 2.11 it was `pausedUP`).
pub fn state(state: &str, upload_rate: u64) -> &'static str {
    match state {
        "checking" => "checkingUP",
        "seeding" if upload_rate > 0 => "uploading",
        "seeding" => "stalledUP",
        "paused" => "stoppedUP",
        _ => "error",
    }
}

/// Whether a torrent in qBittorrent state `state` with `progress` (0..=1) passes `filter`, as
/// qBittorrent filters `torrents/info`. Nothing here downloads or moves, so `downloading`,
/// `stalled_downloading` and `moving` match nothing; an unknown filter matches everything
/// (qBittorrent falls back to `all` too).
pub fn passes(filter: &str, state: &str, progress: f64) -> bool {
    let stopped = matches!(state, "stoppedUP" | "pausedUP");
    match filter {
        "downloading" | "stalled_downloading" | "moving" => false,
        "seeding" => matches!(state, "uploading" | "stalledUP" | "checkingUP"),
        "completed" => matches!(state, "uploading" | "stalledUP") || (stopped && progress >= 1.0),
        "paused" | "stopped" => stopped,
        "resumed" | "running" => !stopped,
        "active" => state == "uploading",
        "inactive" => state != "uploading",
        "stalled" | "stalled_uploading" => state == "stalledUP",
        "errored" => matches!(state, "error" | "missingFiles"),
        "checking" => state == "checkingUP",
        _ => true,
    }
}

/// Bytes of the torrent's pieces known good (the whole torrent while it is checked: uringseed
/// only checks data it is to seed).
fn completed_bytes(t: &view::Torrent, piece_length: u64) -> u64 {
    match t.state {
        "checking" => t.size,
        _ => (t.pieces_good as u64)
            .saturating_mul(piece_length)
            .min(t.size),
    }
}

/// `limit` bytes per second, or -1 for none.
fn limit(v: u64) -> i64 {
    if v == 0 {
        -1
    } else {
        v as i64
    }
}

fn ratio(uploaded: u64, size: u64) -> f64 {
    // qBittorrent divides by what was downloaded, or by the size for a torrent added complete.
    if size == 0 {
        0.0
    } else {
        uploaded as f64 / size as f64
    }
}

/// The working tracker's URL, or "" (qBittorrent's `tracker` field).
fn current_tracker(t: &view::Torrent) -> String {
    t.trackers
        .iter()
        .find(|tr| tr.status == "working")
        .map(|tr| tr.url.clone())
        .unwrap_or_default()
}

/// Largest swarm figure the trackers reported (-1 if none did).
fn swarm(t: &view::Torrent, f: impl Fn(&view::Tracker) -> Option<u32>) -> i64 {
    t.trackers.iter().filter_map(f).max().map_or(-1, i64::from)
}

/// One element of `torrents/info`.
pub fn info(t: &view::Torrent, e: &Entry) -> Value {
    let st = state(t.state, t.upload_rate);
    let completed = completed_bytes(t, e.spec.torrent.piece_length);
    let save_path = t.data_dir.clone();
    let content_path = e.spec.data_dir.join(&t.name).display().to_string();
    let mut v = json!({
        "added_on": t.added,
        "amount_left": t.size - completed,
        "auto_tmm": false,
        "availability": -1,
        "category": "",
        "comment": e.spec.torrent.comment.clone().unwrap_or_default(),
        "completed": completed,
        "completion_on": if completed == t.size { t.added } else { -1 },
        "content_path": content_path,
        "dl_limit": -1,
        "dlspeed": 0,
        "download_path": "",
        "downloaded": 0,
        "downloaded_session": 0,
        "eta": ETA_INFINITY,
        "f_l_piece_prio": false,
        "force_start": false,
        "has_metadata": true,
    });
    merge(
        &mut v,
        json!({
            "hash": t.info_hash,
            "infohash_v1": if t.hash_kind == "v2" { "" } else { &t.info_hash },
            "infohash_v2": t.info_hash_v2.as_deref().unwrap_or(""),
            "last_activity": t.added,
            "magnet_uri": t.magnet,
            "max_ratio": -1,
            "max_seeding_time": -1,
            "name": t.name,
            "num_complete": swarm(t, |tr| tr.seeders).max(0),
            "num_incomplete": swarm(t, |tr| tr.leechers).max(0),
            "num_leechs": t.peers,
            "num_seeds": 0,
            "priority": 0,
            "private": t.private,
            "progress": t.progress,
            "ratio": ratio(t.uploaded_total, t.size),
            "ratio_limit": -2,
            "save_path": save_path,
            "seeding_time": (crate::state::unix_now() - t.added).max(0),
            "seeding_time_limit": -2,
            "seen_complete": t.added,
            "seq_dl": false,
            "size": t.size,
            "state": st,
            "super_seeding": false,
            "tags": "",
            "time_active": (crate::state::unix_now() - t.added).max(0),
            "total_size": t.size,
            "tracker": current_tracker(t),
            "trackers_count": t.trackers.len(),
            "up_limit": limit(t.limits.upload_rate_limit),
            "uploaded": t.uploaded_total,
            "uploaded_session": t.uploaded_session,
            "upspeed": t.upload_rate,
        }),
    );
    v
}

/// `a` with `b`'s fields added (one `json!` of 50 fields is past the macro recursion limit).
fn merge(a: &mut Value, b: Value) {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
}

/// `torrents/properties` of one torrent.
pub fn properties(t: &view::Torrent, e: &Entry) -> Value {
    let tor = &e.spec.torrent;
    let elapsed = (crate::state::unix_now() - t.added).max(0);
    let mut v = json!({
        "addition_date": t.added,
        "comment": tor.comment.clone().unwrap_or_default(),
        "completion_date": if completed_bytes(t, tor.piece_length) == t.size { t.added } else { -1 },
        "created_by": tor.created_by.clone().unwrap_or_default(),
        "creation_date": tor.creation_date.unwrap_or(-1),
        "dl_limit": -1,
        "dl_speed": 0,
        "dl_speed_avg": 0,
        "download_path": "",
        "eta": ETA_INFINITY,
        "hash": t.info_hash,
        "infohash_v1": if t.hash_kind == "v2" { "" } else { &t.info_hash },
        "infohash_v2": t.info_hash_v2.as_deref().unwrap_or(""),
        "is_private": t.private,
        "isPrivate": t.private,
        "last_seen": t.added,
    });
    merge(
        &mut v,
        json!({
            "name": t.name,
            "nb_connections": t.peers,
            "nb_connections_limit": -1,
            "peers": t.peers,
            "peers_total": swarm(t, |tr| tr.leechers),
            "piece_size": tor.piece_length,
            "pieces_have": t.pieces_good,
            "pieces_num": t.pieces,
            "reannounce": t.trackers.iter().filter_map(|tr| tr.next_announce_in_secs).min().unwrap_or(0),
            "save_path": t.data_dir,
            "seeding_time": elapsed,
            "seeds": 0,
            "seeds_total": swarm(t, |tr| tr.seeders),
            "share_ratio": ratio(t.uploaded_total, t.size),
            "time_elapsed": elapsed,
            "total_downloaded": 0,
            "total_downloaded_session": 0,
            "total_size": t.size,
            "total_uploaded": t.uploaded_total,
            "total_uploaded_session": t.uploaded_session,
            "total_wasted": 0,
            "up_limit": limit(t.limits.upload_rate_limit),
            "up_speed": t.upload_rate,
            "up_speed_avg": if elapsed > 0 { t.uploaded_session / elapsed as u64 } else { 0 },
        }),
    );
    v
}

/// qBittorrent's tracker status number: 0 disabled, 1 not contacted, 2 working, 4 not working.
pub fn tracker_status(status: &str) -> u8 {
    match status {
        "working" => 2,
        "error" => 4,
        _ => 1,
    }
}

/// `torrents/trackers`: the DHT, PeX and LSD rows qBittorrent always lists (disabled: uringseed
/// finds peers through trackers and incoming connections), then each tracker with its tier.
pub fn trackers(t: &view::Torrent, e: &Entry) -> Value {
    let mut rows: Vec<Value> = ["** [DHT] **", "** [PeX] **", "** [LSD] **"]
        .iter()
        .map(|u| {
            json!({"url": u, "status": 0, "tier": -1, "num_peers": 0, "num_seeds": 0,
                   "num_leeches": 0, "num_downloaded": 0,
                   "msg": if t.private { "This torrent is private" } else { "" }})
        })
        .collect();
    let tiers = &e.spec.torrent.trackers;
    for tr in &t.trackers {
        let tier = tiers
            .iter()
            .position(|tier| {
                tier.iter()
                    .any(|u| crate::tracker::redact::redact(u) == tr.url)
            })
            .map_or(-1, |i| i as i64);
        let n = |v: Option<u32>| v.map_or(-1, i64::from);
        rows.push(json!({
            "url": tr.url,
            "status": tracker_status(tr.status),
            "tier": tier,
            "num_peers": -1,
            "num_seeds": n(tr.seeders),
            "num_leeches": n(tr.leechers),
            "num_downloaded": n(tr.completed),
            "msg": tr.last_error.clone().unwrap_or_default(),
        }));
    }
    Value::Array(rows)
}

/// Sorts `list` by the field `key` (numbers, strings or booleans; qBittorrent's `sort`),
/// reverses it if asked, then keeps `limit` elements from `offset` (a negative offset counts
/// from the end, as in qBittorrent; a limit of 0 or less keeps all).
pub fn sort_page(list: &mut Vec<Value>, key: Option<&str>, reverse: bool, limit: i64, offset: i64) {
    if let Some(k) = key {
        list.sort_by(|a, b| {
            let (x, y) = (&a[k], &b[k]);
            match (x.as_f64(), y.as_f64()) {
                (Some(p), Some(q)) => p.total_cmp(&q),
                _ => match (x.as_str(), y.as_str()) {
                    (Some(p), Some(q)) => p.cmp(q),
                    _ => x.as_bool().cmp(&y.as_bool()),
                },
            }
        });
    }
    if reverse {
        list.reverse();
    }
    let len = list.len() as i64;
    let start = if offset < 0 {
        (len + offset).max(0)
    } else {
        offset.min(len)
    } as usize;
    list.drain(..start);
    if limit > 0 {
        list.truncate(limit as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_qbittorrent_names() {
        assert_eq!(state("checking", 0), "checkingUP");
        assert_eq!(state("seeding", 0), "stalledUP");
        assert_eq!(state("seeding", 1), "uploading");
        assert_eq!(state("paused", 0), "stoppedUP");
        assert_eq!(state("error", 0), "error");
        assert_eq!(state("anything else", 5), "error");
    }

    #[test]
    fn filters_select_as_qbittorrent_does() {
        let all = [
            ("uploading", 1.0),
            ("stalledUP", 1.0),
            ("stoppedUP", 1.0),
            ("stoppedUP", 0.5),
            ("checkingUP", 0.3),
            ("error", 0.0),
        ];
        let pick = |f: &str| -> Vec<usize> {
            all.iter()
                .enumerate()
                .filter(|(_, (s, p))| passes(f, s, *p))
                .map(|(i, _)| i)
                .collect()
        };
        assert_eq!(pick("all"), [0, 1, 2, 3, 4, 5]);
        assert_eq!(pick("nonsense"), [0, 1, 2, 3, 4, 5]);
        assert_eq!(pick("seeding"), [0, 1, 4]);
        assert_eq!(pick("uploading"), [0, 1, 2, 3, 4, 5], "not a filter: all");
        assert_eq!(pick("completed"), [0, 1, 2]);
        assert_eq!(pick("paused"), [2, 3]);
        assert_eq!(pick("stopped"), [2, 3]);
        assert_eq!(pick("running"), [0, 1, 4, 5]);
        assert_eq!(pick("resumed"), [0, 1, 4, 5]);
        assert_eq!(pick("active"), [0]);
        assert_eq!(pick("inactive"), [1, 2, 3, 4, 5]);
        assert_eq!(pick("stalled"), [1]);
        assert_eq!(pick("stalled_uploading"), [1]);
        assert_eq!(pick("errored"), [5]);
        assert_eq!(pick("checking"), [4]);
        assert!(pick("downloading").is_empty());
        assert!(pick("stalled_downloading").is_empty());
        assert!(pick("moving").is_empty());
    }

    #[test]
    fn tracker_status_numbers() {
        assert_eq!(tracker_status("working"), 2);
        assert_eq!(tracker_status("error"), 4);
        assert_eq!(tracker_status("not contacted"), 1);
    }

    #[test]
    fn sort_reverse_limit_offset() {
        let mut l: Vec<Value> = [3, 1, 2, 5, 4]
            .iter()
            .map(|n| json!({"size": n, "name": format!("t{n}")}))
            .collect();
        sort_page(&mut l, Some("size"), false, 0, 0);
        let sizes = |l: &[Value]| {
            l.iter()
                .map(|v| v["size"].as_i64().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(&l), [1, 2, 3, 4, 5]);
        sort_page(&mut l, Some("name"), true, 2, 1);
        assert_eq!(sizes(&l), [4, 3]);
        let mut l: Vec<Value> = (0..5).map(|n| json!({"size": n})).collect();
        sort_page(&mut l, None, false, 10, -2);
        assert_eq!(sizes(&l), [3, 4]);
        sort_page(&mut l, None, false, 0, 99);
        assert!(l.is_empty());
    }
}
