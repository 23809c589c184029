//! The native JSON API under `/api/v1/` (every route is in `openapi.json`, served at
//! `/api/v1/openapi.json`; a test holds the two together). Everything but `openapi.json` and
//! `login` needs the token. Errors are `{"error": {"code", "message"}}`.

use super::{form, json_reply, parse_info_hash, Api, ApiError};
use crate::http::{Reply, Request};
use crate::metainfo::InfoHash;
use crate::state::TorrentLimits;
use hyper::header::{HeaderValue, SET_COOKIE};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

/// The OpenAPI description of these routes.
pub const OPENAPI: &str = include_str!("openapi.json");

pub fn route(api: &Api, req: &Request) -> Reply {
    match answer(api, req) {
        Ok(r) => r,
        Err(e) => e.reply(),
    }
}

fn answer(api: &Api, req: &Request) -> Result<Reply, ApiError> {
    let path = req.uri.path();
    let rest = path
        .strip_prefix("/api/v1")
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route"))?;
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let m = &req.method;
    match (m, segs.as_slice()) {
        (&Method::GET, ["openapi.json"]) => {
            return Ok(Reply::new(StatusCode::OK, "application/json", OPENAPI));
        }
        (&Method::POST, ["login"]) => return login(api, req),
        _ => {}
    }
    if !api.authorized(req) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong token (Authorization: Bearer TOKEN; see the log for the token file)",
        ));
    }
    match (m, segs.as_slice()) {
        (&Method::GET, ["status"]) => Ok(json_reply(StatusCode::OK, &status(api))),
        (&Method::GET, ["torrents"]) => Ok(json_reply(
            StatusCode::OK,
            &json!({
                "torrents": api.torrents(),
                "making": *api.making.lock().unwrap_or_else(|e| e.into_inner()),
            }),
        )),
        (&Method::POST, ["torrents"]) => add(api, req),
        (&Method::GET, ["torrents", ih]) => {
            let ih = parse_info_hash(ih)?;
            let mut t = serde_json::to_value(torrent(api, &ih)?).unwrap_or(Value::Null);
            t["peer_list"] =
                serde_json::to_value(super::view::peers(&api.control, &ih)).unwrap_or(Value::Null);
            Ok(json_reply(StatusCode::OK, &t))
        }
        (&Method::DELETE, ["torrents", ih]) => {
            let ih = parse_info_hash(ih)?;
            api.remove(&ih)?;
            Ok(json_reply(
                StatusCode::OK,
                &json!({"removed": ih.to_string()}),
            ))
        }
        (&Method::PATCH, ["torrents", ih]) => {
            let ih = parse_info_hash(ih)?;
            let body = json_body(req)?;
            let old = api
                .control
                .entry(&ih)
                .ok_or(crate::control::ControlError::NotFound)?;
            let limits = TorrentLimits {
                upload_rate: field(&body, "upload_rate_limit", true)?
                    .unwrap_or(old.spec.limits.upload_rate),
                upload_quota: field(&body, "upload_quota", false)?
                    .unwrap_or(old.spec.limits.upload_quota),
                super_seed: old.spec.limits.super_seed,
            };
            api.control.set_limits(&ih, limits)?;
            api.update_record(&ih, |r| {
                r.upload_rate_limit = limits.upload_rate;
                r.upload_quota = limits.upload_quota;
            });
            Ok(json_reply(StatusCode::OK, &torrent(api, &ih)?))
        }
        (&Method::POST, ["torrents", ih, action]) => {
            let ih = parse_info_hash(ih)?;
            match *action {
                "pause" => api.set_paused(&ih, true)?,
                "resume" => api.set_paused(&ih, false)?,
                "recheck" => api.control.recheck(&ih)?,
                "reannounce" => api.control.reannounce(&ih)?,
                other => {
                    return Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        format!("{other}: not an action (pause, resume, recheck, reannounce)"),
                    ))
                }
            }
            Ok(json_reply(StatusCode::OK, &torrent(api, &ih)?))
        }
        (&Method::GET, ["settings"]) => Ok(json_reply(StatusCode::OK, &settings(api))),
        (&Method::PATCH, ["settings"]) => {
            let body = json_body(req)?;
            let shared = &api.control.shared;
            let u = &shared.upload;
            let rate = field(&body, "upload_rate_limit", true)?.unwrap_or(u.configured());
            let quota = field(&body, "upload_quota", false)?.unwrap_or(u.quota.limit());
            let slots = match body.get("upload_slots") {
                None => None,
                Some(v) => Some(v.as_u64().filter(|n| *n <= 10_000).ok_or_else(|| {
                    ApiError::bad(
                        "bad_value",
                        "upload_slots: a number from 0 (unlimited) to 10000",
                    )
                })? as usize),
            };
            u.set(rate, quota, u.quota_rate());
            u.wake_keeper.notify_one();
            if let Some(n) = slots {
                shared.set_upload_slots(n);
            }
            tracing::info!(rate, quota, slots = ?slots, "api: settings changed");
            Ok(json_reply(StatusCode::OK, &settings(api)))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{m} {path}: no such route (see /api/v1/openapi.json)"),
        )),
    }
}

fn torrent(api: &Api, ih: &InfoHash) -> Result<super::view::Torrent, ApiError> {
    api.torrent(ih)
        .ok_or_else(|| crate::control::ControlError::NotFound.into())
}

fn status(api: &Api) -> Value {
    let shared = &api.control.shared;
    let secs = shared.clock_ns(crate::io::conn::now()) / 1_000_000_000;
    let torrents = shared.live_torrents();
    let rate: u64 = torrents.iter().map(|t| t.meter.rate(secs)).sum();
    let peers: usize = torrents
        .iter()
        .map(|t| t.peers.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    let session: u64 = api
        .control
        .entries()
        .iter()
        .map(|e| api.control.uploaded_session(&e.spec.torrent.info_hash))
        .sum();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "torrents": api.control.entries().len(),
        "peers": peers,
        "upload_rate": rate,
        "uploaded_session": session,
        "listen": shared.listen_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "dht": dht_status(api),
        "utp": utp_status(api),
        "webseed": webseed_status(api),
    })
}

/// The web seed's listen addresses, connections, requests by status and body bytes; null when
/// it is off.
fn webseed_status(api: &Api) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let Some((addrs, w)) = &api.webseed else {
        return Value::Null;
    };
    let requests: serde_json::Map<String, Value> = crate::webseed::Status::ALL
        .iter()
        .map(|s| (s.label().to_string(), json!(w.requests(*s))))
        .collect();
    json!({
        "listen": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "connections": w.connections_active.load(Relaxed),
        "connections_total": w.connections_total.load(Relaxed),
        "connections_refused": w.connections_refused.load(Relaxed),
        "timeouts": w.timeouts.load(Relaxed),
        "refused_paths": w.refused_paths.load(Relaxed),
        "requests": requests,
        "payload_bytes": w.payload_bytes.load(Relaxed),
    })
}

/// uTP's listen addresses, connections, bytes, retransmissions, timeouts, mean RTT and windows;
/// null when uTP is off.
fn utp_status(api: &Api) -> Value {
    let Some(u) = &api.utp else {
        return Value::Null;
    };
    let rtt_ms = match u.rtt_conns.get() {
        0 => Value::Null,
        n => json!((u.rtt_sum_us.get() / n) as f64 / 1000.0),
    };
    let addrs = u.addrs.lock().unwrap_or_else(|e| e.into_inner()).clone();
    json!({
        "listen": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "connections": u.connections.get(),
        "accepted": u.accepted.get(),
        "dialed": u.dialed.get(),
        "dial_failed": u.dial_failed.get(),
        "bytes_sent": u.bytes_sent.get(),
        "bytes_received": u.bytes_received.get(),
        "retransmits": u.retransmits.get(),
        "timeouts": u.timeouts.get(),
        "rtt_ms": rtt_ms,
        "cwnd_bytes": u.cwnd_bytes.get(),
        "packet_bytes": u.packet_bytes_sum.get() / u.connections.get().max(1),
        "peer_window_bytes": u.peer_window_bytes.get(),
    })
}

/// Per family: the node's address, nodes in its table, queries answered and sent, announces and
/// peers found; null when the DHT is off.
fn dht_status(api: &Api) -> Value {
    let Some(d) = &api.dht else {
        return Value::Null;
    };
    let mut out = serde_json::Map::new();
    for (family, f) in d.families() {
        let Some(addr) = *f.addr.lock().unwrap_or_else(|e| e.into_inner()) else {
            continue;
        };
        let s = f.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        out.insert(
            family.into(),
            json!({
                "listen": addr.to_string(),
                "nodes": f.nodes.load(std::sync::atomic::Ordering::Relaxed),
                "queries_answered": s.queries_answered,
                "queries_refused": s.queries_refused_rate_limit,
                "announces": s.announces_sent,
                "peers_found": f.peers_found.load(std::sync::atomic::Ordering::Relaxed),
            }),
        );
    }
    Value::Object(out)
}

fn settings(api: &Api) -> Value {
    let shared = &api.control.shared;
    let u = &shared.upload;
    json!({
        "upload_rate_limit": u.configured(),
        "upload_quota": u.quota.limit(),
        "upload_quota_used": u.quota.used(),
        "upload_slots": shared.upload_slots(),
        "data_roots": api.roots.list().iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    })
}

fn login(api: &Api, req: &Request) -> Result<Reply, ApiError> {
    let body = json_body(req)?;
    let token = body.get("token").and_then(Value::as_str).unwrap_or("");
    if !api.token.matches(token) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong token",
        ));
    }
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict",
        super::auth::COOKIE,
        api.token.expose()
    );
    Ok(
        json_reply(StatusCode::OK, &json!({"ok": true})).with_header(
            SET_COOKIE,
            HeaderValue::from_str(&cookie).expect("token is a header-safe string"),
        ),
    )
}

fn json_body(req: &Request) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad("bad_json", format!("the body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad("bad_json", "the body must be a JSON object"));
    }
    Ok(v)
}

/// A byte count or rate field: a number, or a string like "10MiB" / "80M" (`rate`: per second).
fn field(body: &Value, key: &str, rate: bool) -> Result<Option<u64>, ApiError> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::bad("bad_value", format!("{key}: a whole number of bytes"))),
        Some(Value::String(s)) => {
            let parsed = if rate {
                crate::units::parse_rate(s)
            } else {
                crate::units::parse_bytes(s)
            };
            parsed
                .map(Some)
                .map_err(|e| ApiError::bad("bad_value", format!("{key}: {e}")))
        }
        Some(_) => Err(ApiError::bad(
            "bad_value",
            format!("{key}: a number or a string like \"10M\""),
        )),
    }
}

/// POST /torrents: a raw .torrent (`?data=DIR`), a multipart form (`torrent` file, `data`), or
/// JSON `{"path": P}` to make a torrent of P and seed it (in the background: 202).
fn add(api: &Api, req: &Request) -> Result<Reply, ApiError> {
    let ct = req.header("content-type").unwrap_or("");
    let query = form::urlencoded(req.uri.query().unwrap_or(""))
        .ok_or_else(|| ApiError::bad("bad_query", "malformed query string"))?;
    if ct.starts_with("application/json") {
        let body = json_body(req)?;
        let path = body
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad("bad_json", "give {\"path\": \"/a/file/or/dir\"}"))?;
        return make_and_add(api, path);
    }
    let (bytes, data) = if let Some(b) = form::boundary(ct) {
        let parts = form::multipart(&req.body, &b).map_err(|e| ApiError::bad("bad_form", e))?;
        let file = parts
            .iter()
            .find(|p| p.name == "torrent")
            .ok_or_else(|| ApiError::bad("bad_form", "no `torrent` file part"))?;
        let data = parts
            .iter()
            .find(|p| p.name == "data")
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
            .or_else(|| form::get(&query, "data").map(String::from))
            .unwrap_or_default();
        (file.data.clone(), data)
    } else {
        (
            req.body.to_vec(),
            form::get(&query, "data").unwrap_or_default().to_string(),
        )
    };
    let ih = api.add_bytes(&bytes, &data)?;
    Ok(json_reply(StatusCode::CREATED, &torrent(api, &ih)?))
}

fn make_and_add(api: &Api, path: &str) -> Result<Reply, ApiError> {
    let real = api
        .roots
        .confine(std::path::Path::new(path))
        .map_err(|m| ApiError::new(StatusCode::FORBIDDEN, "outside_data_roots", m))?;
    let data_dir = real
        .parent()
        .ok_or_else(|| ApiError::bad("bad_path", "cannot seed /"))?
        .to_path_buf();
    let data = data_dir.display().to_string();
    let shared = api.control.shared.clone();
    let opts = crate::make::MakeOptions {
        path: real.clone(),
        quiet: true,
        threads: shared.config.hashing.threads,
        ..Default::default()
    };
    // Hashing may take minutes: the reply goes now, the torrent appears when it is made.
    let api_ptr = api.self_arc();
    let job = real.display().to_string();
    {
        let mut jobs = api.making.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.iter().any(|j| j.path == job && j.state == "hashing") {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "duplicate",
                format!("{job} is being made already"),
            ));
        }
        jobs.retain(|j| j.path != job);
        jobs.push(super::Making {
            path: job.clone(),
            state: "hashing",
            error: None,
            started: crate::state::unix_now(),
        });
    }
    std::thread::Builder::new()
        .name("api-make".into())
        .spawn(move || {
            let shown = opts.path.display().to_string();
            let error = match crate::make::make(&opts) {
                Ok((bytes, _)) => match api_ptr.add_bytes(&bytes, &data) {
                    Ok(ih) => {
                        tracing::info!(info_hash = %ih, "api: made and seeding {shown}");
                        None
                    }
                    Err(e) => {
                        tracing::warn!("api: made {shown} but cannot seed it: {}", e.message);
                        Some(e.message)
                    }
                },
                Err(e) => {
                    tracing::warn!("api: cannot make a torrent of {shown}: {e}");
                    Some(e.to_string())
                }
            };
            api_ptr.job_done(&job, error);
        })
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(json_reply(
        StatusCode::ACCEPTED,
        &json!({"making": real.display().to_string(), "data": data_dir.display().to_string()}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (method, path) this file routes, read from its own match arms.
    fn routed() -> Vec<(String, String)> {
        let src = include_str!("native.rs");
        let mut out = Vec::new();
        for line in src.lines() {
            let l = line.trim();
            let Some(rest) = l.strip_prefix("(&Method::") else {
                continue;
            };
            let Some((method, rest)) = rest.split_once(", [") else {
                continue;
            };
            let Some((segs, _)) = rest.split_once("])") else {
                continue;
            };
            let path: Vec<String> = segs
                .split(',')
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(
                    |s| match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                        Some(lit) => lit.to_string(),
                        None => format!("{{{s}}}"),
                    },
                )
                .collect();
            out.push((method.to_lowercase(), format!("/api/v1/{}", path.join("/"))));
        }
        out
    }

    #[test]
    fn every_route_is_in_the_openapi_file_and_nothing_else() {
        let spec: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let paths = spec["paths"].as_object().expect("paths");
        let mut described = Vec::new();
        for (p, ops) in paths {
            for m in ops.as_object().unwrap().keys() {
                // `{action}` stands for the four actions, each described on its own.
                described.push((m.clone(), p.clone()));
            }
        }
        let mut routed = routed();
        assert!(routed.len() >= 11, "routes found: {routed:?}");
        // The action route is one match arm for four paths.
        routed.retain(|(m, p)| !(m == "post" && p == "/api/v1/torrents/{ih}/{action}"));
        for a in ["pause", "resume", "recheck", "reannounce"] {
            routed.push(("post".into(), format!("/api/v1/torrents/{{ih}}/{a}")));
        }
        routed.sort();
        described.sort();
        assert_eq!(routed, described);
    }
}
