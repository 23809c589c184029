//! The qBittorrent Web API v2 subset under `/api/v2/`, enough for tools written against
//! qBittorrent (the PyPI client `qbittorrent-api`, *arr-style scripts) to add, list, stop,
//! start and remove torrents. This module owns the routing, the login sessions (`SID`
//! cookies), the `app/*` and `transfer/info` routes and the parameter helpers; [`torrents`]
//! has the `torrents/*` routes and [`map`] the mapping to qBittorrent's names and units.
//!
//! Login: `auth/login` takes the user name `api.qbt_username` and, as the password, the API
//! token. It answers `Ok.` with `Set-Cookie: SID=…` or `Fails.` (200, as qBittorrent does).
//! Sessions last an hour from their last use; at most [`MAX_SESSIONS`] are kept (the oldest
//! goes first). Every other route needs a live `SID` cookie or the API's bearer token, else it
//! answers 403 `Forbidden`.
//!
//! Versions: `app/version` is `v5.0.0` and `app/webapiVersion` `2.11.2` (qBittorrent 5.0's), so
//! clients use the 5.0 names: `torrents/stop` and `torrents/start`, the `stopped`/`running`
//! filters and the `stoppedUP` state. The pre-5.0 `torrents/pause` and `torrents/resume` are
//! answered too, and the `paused`/`resumed` filters.

pub mod map;
pub mod torrents;

use super::{form, Api};
use crate::http::{Reply, Request};
use hyper::header::{HeaderValue, ALLOW, SET_COOKIE};
use hyper::{Method, StatusCode};
use std::time::{Duration, Instant};

/// The qBittorrent version this API answers like.
pub const APP_VERSION: &str = "v5.0.0";
/// The Web API version: 2.11 and later mean stop/start (not pause/resume) to clients.
pub const WEBAPI_VERSION: &str = "2.11.2";
/// Most login sessions kept at once.
pub const MAX_SESSIONS: usize = 1024;
/// A session ends this long after its last use.
pub const SESSION_IDLE: Duration = Duration::from_secs(3600);

const TEXT: &str = "text/plain; charset=UTF-8";

pub(crate) fn text(status: StatusCode, body: impl Into<bytes::Bytes>) -> Reply {
    Reply::new(status, TEXT, body.into())
}

pub(crate) fn json(value: &serde_json::Value) -> Reply {
    super::json_reply(StatusCode::OK, value)
}

pub fn route(api: &Api, req: &Request) -> Reply {
    let path = req.uri.path();
    let Some(rest) = path.strip_prefix("/api/v2/") else {
        return text(StatusCode::NOT_FOUND, "Not Found");
    };
    let params = match params(req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let post_only = matches!(
        rest,
        "auth/login"
            | "auth/logout"
            | "torrents/add"
            | "torrents/delete"
            | "torrents/stop"
            | "torrents/start"
            | "torrents/pause"
            | "torrents/resume"
    );
    if post_only && req.method != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
            .with_header(ALLOW, HeaderValue::from_static("POST"));
    }
    if !post_only && req.method != Method::GET && req.method != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
            .with_header(ALLOW, HeaderValue::from_static("GET, POST"));
    }
    if rest == "auth/login" {
        return login(api, &params);
    }
    let sid = super::auth::cookie_value(req.header("cookie"), "SID");
    if !(sid.is_some_and(|s| session_alive(api, s)) || api.authorized(req)) {
        return text(StatusCode::FORBIDDEN, "Forbidden");
    }
    match rest {
        "auth/logout" => {
            if let Some(s) = sid {
                sessions(api).remove(s);
            }
            text(StatusCode::OK, "")
        }
        "app/version" => text(StatusCode::OK, APP_VERSION),
        "app/webapiVersion" => text(StatusCode::OK, WEBAPI_VERSION),
        "app/defaultSavePath" => text(
            StatusCode::OK,
            api.roots
                .list()
                .first()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        "transfer/info" => transfer_info(api),
        "torrents/info" => torrents::info(api, &params),
        "torrents/properties" => torrents::properties(api, &params),
        "torrents/trackers" => torrents::trackers(api, &params),
        "torrents/add" => torrents::add(api, req, &params),
        "torrents/delete" => torrents::delete(api, &params),
        "torrents/stop" | "torrents/pause" => torrents::set_paused(api, &params, true),
        "torrents/start" | "torrents/resume" => torrents::set_paused(api, &params, false),
        _ => text(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// The query string's pairs, then an urlencoded body's (qBittorrent reads both).
fn params(req: &Request) -> Result<Vec<(String, String)>, Reply> {
    let bad = || text(StatusCode::BAD_REQUEST, "malformed parameters");
    let mut p = form::urlencoded(req.uri.query().unwrap_or("")).ok_or_else(bad)?;
    let ct = req.header("content-type").unwrap_or("");
    if ct.starts_with("application/x-www-form-urlencoded") {
        let body = std::str::from_utf8(&req.body).map_err(|_| bad())?;
        p.extend(form::urlencoded(body).ok_or_else(bad)?);
    }
    Ok(p)
}

fn sessions(api: &Api) -> std::sync::MutexGuard<'_, Sessions> {
    api.sessions.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `sid` is a live session; a use keeps it alive another [`SESSION_IDLE`].
fn session_alive(api: &Api, sid: &str) -> bool {
    touch(&mut sessions(api), sid, Instant::now())
}

/// Records a new session.
fn new_session(api: &Api) -> String {
    let mut bytes = [0u8; 16];
    super::auth::getrandom(&mut bytes);
    let sid: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    insert(&mut sessions(api), sid.clone(), Instant::now());
    sid
}

type Sessions = std::collections::HashMap<String, Instant>;

/// Whether `sid` was used less than [`SESSION_IDLE`] before `now` (then it is used now); an
/// ended one is forgotten.
fn touch(s: &mut Sessions, sid: &str, now: Instant) -> bool {
    match s.get_mut(sid) {
        Some(last) if now.saturating_duration_since(*last) < SESSION_IDLE => {
            *last = now;
            true
        }
        Some(_) => {
            s.remove(sid);
            false
        }
        None => false,
    }
}

/// Adds `sid`, first dropping ended sessions and, while [`MAX_SESSIONS`] are live, the one
/// used longest ago.
fn insert(s: &mut Sessions, sid: String, now: Instant) {
    s.retain(|_, last| now.saturating_duration_since(*last) < SESSION_IDLE);
    while s.len() >= MAX_SESSIONS {
        let Some(oldest) = s.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone()) else {
            break;
        };
        s.remove(&oldest);
    }
    s.insert(sid, now);
}

fn login(api: &Api, params: &[(String, String)]) -> Reply {
    let user = form::get(params, "username").unwrap_or("");
    let pass = form::get(params, "password").unwrap_or("");
    let want_user = &api.control.shared.config.api.qbt_username;
    // Both compared whatever the first gives, so the time says nothing about which was wrong.
    let user_ok = super::auth::Token::new(want_user.clone()).matches(user);
    let pass_ok = api.token.matches(pass);
    if !(user_ok && pass_ok) {
        static LINE: crate::lograte::LogEvery = crate::lograte::LogEvery::new();
        if let Some(more) = LINE.occur(crate::lograte::now_secs(), 60) {
            tracing::info!("api: qBittorrent login refused ({more} more since the last line)");
        }
        return text(StatusCode::OK, "Fails.");
    }
    let sid = new_session(api);
    let cookie = format!("SID={sid}; HttpOnly; SameSite=Strict; path=/");
    text(StatusCode::OK, "Ok.").with_header(
        SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("hex is header-safe"),
    )
}

fn transfer_info(api: &Api) -> Reply {
    let all = api.torrents();
    let shared = &api.control.shared;
    let up = shared.upload.configured();
    json(&serde_json::json!({
        "connection_status": if shared.listen_addrs().is_empty() { "disconnected" } else { "connected" },
        "dht_nodes": 0,
        "dl_info_data": 0,
        "dl_info_speed": 0,
        "dl_rate_limit": 0,
        "up_info_data": all.iter().map(|t| t.uploaded_session).sum::<u64>(),
        "up_info_speed": all.iter().map(|t| t.upload_rate).sum::<u64>(),
        "up_rate_limit": up,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_make_clients_use_stop_and_start() {
        // qbittorrent-api picks torrents/stop and the `stopped` filter from 2.11.0 on.
        let v: Vec<u32> = WEBAPI_VERSION
            .split('.')
            .map(|p| p.parse().unwrap())
            .collect();
        assert!(v >= vec![2, 11, 0], "{WEBAPI_VERSION}");
        assert!(APP_VERSION.starts_with("v5."));
    }

    #[test]
    fn sessions_end_after_an_idle_hour_and_are_bounded() {
        let t0 = Instant::now();
        let mut s = Sessions::new();
        insert(&mut s, "a".into(), t0);
        assert!(touch(&mut s, "a", t0 + Duration::from_secs(3000)));
        assert!(
            touch(&mut s, "a", t0 + Duration::from_secs(6000)),
            "a use keeps it alive"
        );
        assert!(!touch(
            &mut s,
            "a",
            t0 + Duration::from_secs(6000) + SESSION_IDLE
        ));
        assert!(s.is_empty(), "an ended session is forgotten");
        assert!(!touch(&mut s, "never", t0));
        for i in 0..MAX_SESSIONS + 10 {
            insert(
                &mut s,
                format!("s{i}"),
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(!s.contains_key("s0"), "the oldest went first");
        assert!(s.contains_key(&format!("s{}", MAX_SESSIONS + 9)));
        let later = t0 + SESSION_IDLE + Duration::from_secs(1);
        insert(&mut s, "new".into(), later + Duration::from_secs(3600));
        assert_eq!(s.len(), 1, "ended sessions are dropped when one is added");
    }
}
