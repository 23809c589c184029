//! The `torrents/*` routes of the qBittorrent subset: `info` (with `hashes`, `filter`, `sort`,
//! `reverse`, `limit`, `offset`; `category` and `tag` match only the empty ones uringseed
//! has), `properties`, `trackers`, `add`, `delete`, and `stop`/`start` (also under their
//! pre-5.0 names `pause`/`resume`).
//!
//! Choices where uringseed differs from qBittorrent:
//! - `add` takes `.torrent` files only (any part with a file name: qBittorrent's page sends
//!   `torrents`, qbittorrent-api `torrent__N`); `urls` (links and magnets) is refused with 400,
//!   since a seeder has nothing to fetch. The data must already be in `savepath` (default: the
//!   first of `api.data_roots`), inside the data roots. `stopped`/`paused` = true adds it
//!   stopped. A file that is not a torrent is 415 `Torrent file is not valid`; a torrent
//!   already seeded is 409; missing data or a path outside the roots is 400, with the reason.
//!   Several files: each is added on its own; the first failure is the answer.
//! - `delete` never deletes data: `deleteFiles=true` is refused with 400 and nothing is
//!   removed. Torrents from the configuration file or the watch directory cannot be removed
//!   here (409, named); `hashes=all` removes those that can be and leaves the others.
//! - `stop`/`start` of a torrent already stopped/started is a no-op, as in qBittorrent;
//!   unknown hashes are ignored, as qBittorrent ignores them.

use super::{json, map, text};
use crate::api::{form, Api, ApiError};
use crate::http::{Reply, Request};
use crate::metainfo::InfoHash;
use hyper::StatusCode;
use serde_json::Value;

/// What `hashes` names: every torrent for `all`, else the `|`-separated hashes that are valid
/// info-hashes (others are ignored, as qBittorrent ignores them).
fn selected(api: &Api, params: &[(String, String)], key: &str) -> Option<Vec<InfoHash>> {
    let h = form::get(params, key)?;
    if h.eq_ignore_ascii_case("all") {
        return Some(
            api.control
                .entries()
                .iter()
                .map(|e| e.spec.torrent.info_hash)
                .collect(),
        );
    }
    Some(
        h.split('|')
            .filter_map(|s| InfoHash::from_hex(s.trim()))
            .collect(),
    )
}

fn truthy(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn error_text(e: &ApiError) -> Reply {
    text(e.status, e.message.clone())
}

pub fn info(api: &Api, params: &[(String, String)]) -> Reply {
    let filter = form::get(params, "filter").unwrap_or("all");
    let wanted = selected(api, params, "hashes");
    // uringseed has no categories or tags: only the empty (or no) one matches.
    let named = |k| form::get(params, k).is_some_and(|v| !v.is_empty());
    if named("category") || named("tag") {
        return json(&Value::Array(Vec::new()));
    }
    let mut list: Vec<Value> = api
        .torrents()
        .into_iter()
        .filter(|t| {
            wanted
                .as_ref()
                .is_none_or(|w| w.iter().any(|h| h.to_string() == t.info_hash))
        })
        .filter(|t| map::passes(filter, map::state(t.state, t.upload_rate), t.progress))
        .filter_map(|t| {
            let ih = InfoHash::from_hex(&t.info_hash)?;
            let e = api.control.entry(&ih)?;
            Some(map::info(&t, &e))
        })
        .collect();
    let num = |k| form::get(params, k).and_then(|v| v.parse::<i64>().ok());
    map::sort_page(
        &mut list,
        form::get(params, "sort"),
        truthy(form::get(params, "reverse")),
        num("limit").unwrap_or(0),
        num("offset").unwrap_or(0),
    );
    json(&Value::Array(list))
}

/// The torrent named by `hash`: 400 without one, 404 if there is no such torrent (qBittorrent's
/// answers).
fn one(
    api: &Api,
    params: &[(String, String)],
) -> Result<(crate::api::view::Torrent, crate::control::Entry), Reply> {
    let h =
        form::get(params, "hash").ok_or_else(|| text(StatusCode::BAD_REQUEST, "Missing hash"))?;
    let not_found = || text(StatusCode::NOT_FOUND, "Torrent hash was not found");
    let ih = InfoHash::from_hex(h.trim()).ok_or_else(not_found)?;
    let t = api.torrent(&ih).ok_or_else(not_found)?;
    let e = api.control.entry(&ih).ok_or_else(not_found)?;
    Ok((t, e))
}

pub fn properties(api: &Api, params: &[(String, String)]) -> Reply {
    match one(api, params) {
        Ok((t, e)) => json(&map::properties(&t, &e)),
        Err(r) => r,
    }
}

pub fn trackers(api: &Api, params: &[(String, String)]) -> Reply {
    match one(api, params) {
        Ok((t, e)) => json(&map::trackers(&t, &e)),
        Err(r) => r,
    }
}

pub fn add(api: &Api, req: &Request, params: &[(String, String)]) -> Reply {
    let ct = req.header("content-type").unwrap_or("");
    let Some(boundary) = form::boundary(ct) else {
        if form::get(params, "urls").is_some_and(|u| !u.trim().is_empty()) {
            return refuse_urls();
        }
        return text(
            StatusCode::BAD_REQUEST,
            "send multipart/form-data with the .torrent files",
        );
    };
    let parts = match form::multipart(&req.body, &boundary) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let field = |name: &str| {
        parts
            .iter()
            .find(|p| p.name == name && p.filename.is_none())
            .map(|p| String::from_utf8_lossy(&p.data).trim().to_string())
    };
    if field("urls").is_some_and(|u| !u.is_empty()) {
        return refuse_urls();
    }
    let files: Vec<&form::Part> = parts.iter().filter(|p| p.filename.is_some()).collect();
    if files.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "no .torrent file in the form (a part with a file name, e.g. `torrents`)",
        );
    }
    let save_path = field("savepath")
        .filter(|s| !s.is_empty())
        .or_else(|| api.roots.list().first().map(|p| p.display().to_string()))
        .unwrap_or_default();
    let stopped = truthy(field("stopped").as_deref()) || truthy(field("paused").as_deref());
    let mut first_error = None;
    for f in files {
        if crate::metainfo::parse(&f.data, "the uploaded torrent").is_err() {
            first_error.get_or_insert(text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Torrent file is not valid",
            ));
            continue;
        }
        match api.add_bytes(&f.data, &save_path) {
            Ok(ih) => {
                if stopped {
                    if let Err(e) = api.set_paused(&ih, true) {
                        tracing::warn!(info_hash = %ih, "api: added but not stopped: {}", e.message);
                    }
                }
            }
            Err(e) => {
                let status = match e.code {
                    "duplicate" => StatusCode::CONFLICT,
                    "store_failed" => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::BAD_REQUEST,
                };
                first_error.get_or_insert(text(status, e.message));
            }
        }
    }
    first_error.unwrap_or_else(|| text(StatusCode::OK, "Ok."))
}

fn refuse_urls() -> Reply {
    text(
        StatusCode::BAD_REQUEST,
        "urls: uringseed only seeds data already on disk; upload the .torrent file instead",
    )
}

pub fn delete(api: &Api, params: &[(String, String)]) -> Reply {
    if truthy(form::get(params, "deleteFiles")) {
        return text(
            StatusCode::BAD_REQUEST,
            "deleteFiles=true: uringseed never deletes data; remove with deleteFiles=false",
        );
    }
    let all = form::get(params, "hashes").is_some_and(|h| h.eq_ignore_ascii_case("all"));
    let Some(hashes) = selected(api, params, "hashes") else {
        return text(StatusCode::BAD_REQUEST, "Missing hashes");
    };
    let mut first_error = None;
    for ih in hashes {
        match api.remove(&ih) {
            Ok(()) => {}
            Err(e) if e.code == "not_found" => {}
            Err(_) if all => {}
            Err(e) => {
                first_error.get_or_insert(error_text(&e));
            }
        }
    }
    first_error.unwrap_or_else(|| text(StatusCode::OK, ""))
}

pub fn set_paused(api: &Api, params: &[(String, String)], paused: bool) -> Reply {
    let Some(hashes) = selected(api, params, "hashes") else {
        return text(StatusCode::BAD_REQUEST, "Missing hashes");
    };
    for ih in hashes {
        match api.set_paused(&ih, paused) {
            Ok(()) => {}
            // Unknown, or already stopped/started: nothing to do, as in qBittorrent.
            Err(e) if e.code == "not_found" || e.code == "wrong_state" => {}
            Err(e) => return error_text(&e),
        }
    }
    text(StatusCode::OK, "")
}
