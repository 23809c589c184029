//! What `uringseed ctl` prints for people: aligned tables and `key: value` lines in human units,
//! from the API's JSON (fields as `src/api/view.rs` names them; a missing field prints as "-").

use serde_json::Value;
use uringseed::units::format_bytes;

fn bytes(v: &Value) -> String {
    v.as_u64().map_or("-".into(), format_bytes)
}

fn rate(v: &Value) -> String {
    v.as_u64()
        .map_or("-".into(), |n| format!("{}/s", format_bytes(n)))
}

/// A limit: 0 is "none".
fn limit(v: &Value, per_second: bool) -> String {
    match v.as_u64() {
        Some(0) => "none".into(),
        Some(n) if per_second => format!("{} ({n} B/s)", rate(v)),
        Some(_) => bytes(v),
        None => "-".into(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn percent(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |p| {
        if p >= 1.0 {
            "100%".into()
        } else {
            format!("{:.1}%", (p * 100.0).min(99.9))
        }
    })
}

/// Prints rows under a header, columns padded to their widest cell; `right` marks the
/// columns aligned right (numbers); the last column is never padded.
fn table(header: &[&str], right: &[bool], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        let mut out = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            let pad = width[i].saturating_sub(c.chars().count());
            if i + 1 == n {
                if right[i] {
                    out.push_str(&" ".repeat(pad));
                }
                out.push_str(&c);
            } else if right[i] {
                out.push_str(&" ".repeat(pad));
                out.push_str(&c);
                out.push_str("  ");
            } else {
                out.push_str(&c);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

pub fn list(v: &Value) {
    let empty = Vec::new();
    let ts = v["torrents"].as_array().unwrap_or(&empty);
    if ts.is_empty() {
        println!("no torrents");
        return;
    }
    let rows: Vec<Vec<String>> = ts
        .iter()
        .map(|t| {
            vec![
                text(&t["info_hash"]),
                text(&t["state"]),
                percent(&t["progress"]),
                bytes(&t["size"]),
                text(&t["peers"]),
                rate(&t["upload_rate"]),
                bytes(&t["uploaded_total"]),
                text(&t["name"]),
            ]
        })
        .collect();
    table(
        &[
            "INFO-HASH",
            "STATE",
            "PROGRESS",
            "SIZE",
            "PEERS",
            "UP RATE",
            "UPLOADED",
            "NAME",
        ],
        &[false, false, true, true, true, true, true, false],
        &rows,
    );
}

fn kv(pairs: &[(&str, String)]) {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in pairs {
        println!("{k:<w$}  {v}", w = w + 1, k = format!("{k}:"));
    }
}

pub fn torrent(t: &Value) {
    let mut pairs = vec![
        ("name", text(&t["name"])),
        ("info-hash", text(&t["info_hash"])),
        ("state", text(&t["state"])),
    ];
    if !t["error"].is_null() {
        pairs.push(("error", text(&t["error"])));
    }
    pairs.extend([
        (
            "progress",
            format!(
                "{} ({} of {} pieces good)",
                percent(&t["progress"]),
                text(&t["pieces_good"]),
                text(&t["pieces"])
            ),
        ),
        ("size", bytes(&t["size"])),
        (
            "peers",
            format!("{} ({} unchoked)", text(&t["peers"]), text(&t["unchoked"])),
        ),
        ("upload rate", rate(&t["upload_rate"])),
        (
            "uploaded",
            format!(
                "{} this run, {} in all",
                bytes(&t["uploaded_session"]),
                bytes(&t["uploaded_total"])
            ),
        ),
        ("rate limit", limit(&t["limits"]["upload_rate_limit"], true)),
        ("quota", limit(&t["limits"]["upload_quota"], false)),
        ("source", text(&t["source"])),
        ("data", text(&t["data_dir"])),
        ("private", text(&t["private"])),
        ("magnet", text(&t["magnet"])),
    ]);
    kv(&pairs);
    if let Some(trs) = t["trackers"].as_array().filter(|a| !a.is_empty()) {
        println!();
        let rows: Vec<Vec<String>> = trs
            .iter()
            .map(|r| {
                let err = r["last_error"].as_str().unwrap_or("");
                vec![
                    text(&r["status"]),
                    format!("{}/{}", text(&r["seeders"]), text(&r["leechers"])),
                    text(&r["next_announce_in_secs"]),
                    format!(
                        "{}{}",
                        text(&r["url"]),
                        if err.is_empty() {
                            String::new()
                        } else {
                            format!(" ({err})")
                        }
                    ),
                ]
            })
            .collect();
        table(
            &["TRACKER", "SEEDS/LEECH", "NEXT (S)", "URL"],
            &[false, true, true, false],
            &rows,
        );
    }
    if let Some(ps) = t["peer_list"].as_array().filter(|a| !a.is_empty()) {
        println!();
        let rows: Vec<Vec<String>> = ps
            .iter()
            .map(|p| {
                vec![
                    text(&p["address"]),
                    text(&p["flags"]),
                    rate(&p["upload_rate"]),
                    bytes(&p["uploaded"]),
                    text(&p["encryption"]),
                    text(&p["client"]),
                ]
            })
            .collect();
        table(
            &[
                "PEER",
                "FLAGS",
                "UP RATE",
                "UPLOADED",
                "ENCRYPTION",
                "CLIENT",
            ],
            &[false, false, true, true, false, false],
            &rows,
        );
    }
}

pub fn limits(t: &Value) {
    println!(
        "{}: rate limit {}, quota {}",
        text(&t["info_hash"]),
        limit(&t["limits"]["upload_rate_limit"], true),
        limit(&t["limits"]["upload_quota"], false)
    );
}

pub fn settings(v: &Value) {
    let roots: Vec<String> = v["data_roots"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    kv(&[
        ("upload rate limit", limit(&v["upload_rate_limit"], true)),
        ("upload quota", limit(&v["upload_quota"], false)),
        ("quota used", bytes(&v["upload_quota_used"])),
        ("upload slots", text(&v["upload_slots"])),
        ("data roots", roots.join(", ")),
    ]);
}

pub fn status(v: &Value) {
    let listen: Vec<String> = v["listen"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    kv(&[
        ("version", text(&v["version"])),
        ("torrents", text(&v["torrents"])),
        ("peers", text(&v["peers"])),
        ("upload rate", rate(&v["upload_rate"])),
        ("uploaded", bytes(&v["uploaded_session"])),
        ("listening", listen.join(", ")),
    ]);
}
