//! The web page at `/`: one HTML page, its script and its style sheet, embedded in the binary
//! (nothing is fetched from anywhere else: a seedbox may have no route out), served with a
//! Content-Security-Policy that allows only this origin and no inline script. The page talks
//! to the native API (`/api/v1/`) with the token cookie; `/?token=T` sets that cookie when T
//! is the token and redirects to `/`, so an operator can open the page from a link in the log.
//! Without the cookie the API answers 401 and the page shows its login form.

use super::Api;
use crate::http::{Reply, Request};
use hyper::header::{HeaderName, HeaderValue, CACHE_CONTROL, LOCATION, SET_COOKIE};
use hyper::{Method, StatusCode};

const INDEX: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");
const ICON: &str = include_str!("page/favicon.svg");

/// Only this origin, no inline script or style, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn route(api: &Api, req: &Request) -> Reply {
    if req.method != Method::GET && req.method != Method::HEAD {
        return Reply::text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n")
            .with_header(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    let reply = match req.uri.path() {
        "/" | "/index.html" => match token_param(req.uri.query()) {
            Some(t) => return login_redirect(api, &t),
            None => Reply::new(StatusCode::OK, "text/html; charset=utf-8", INDEX),
        },
        "/app.js" => Reply::new(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS),
        "/style.css" => Reply::new(StatusCode::OK, "text/css; charset=utf-8", STYLE),
        "/favicon.svg" => Reply::new(StatusCode::OK, "image/svg+xml", ICON),
        "/favicon.ico" => Reply::new(StatusCode::NO_CONTENT, "image/x-icon", ""),
        _ => Reply::text(StatusCode::NOT_FOUND, "not found\n"),
    };
    secured(reply)
}

/// The headers every page reply carries.
fn secured(reply: Reply) -> Reply {
    reply
        .with_header(
            HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static(CSP),
        )
        .with_header(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        )
        .with_header(
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("no-referrer"),
        )
        .with_header(CACHE_CONTROL, HeaderValue::from_static("no-cache"))
}

/// The `token` query parameter, if any.
fn token_param(query: Option<&str>) -> Option<String> {
    let pairs = super::form::urlencoded(query?)?;
    super::form::get(&pairs, "token").map(str::to_string)
}

/// `/?token=T`: 303 to `/`, with the cookie when T is the token (without it otherwise: the
/// page then shows its login form). Either way the token leaves the address bar.
fn login_redirect(api: &Api, token: &str) -> Reply {
    let mut reply = secured(Reply::new(StatusCode::SEE_OTHER, "text/plain", ""))
        .with_header(LOCATION, HeaderValue::from_static("/"));
    if api.token.matches(token) {
        let cookie = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            super::auth::COOKIE,
            api.token.expose()
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            reply = reply.with_header(SET_COOKIE, v);
        }
    } else {
        static LINE: crate::lograte::LogEvery = crate::lograte::LogEvery::new();
        if let Some(more) = LINE.occur(crate::lograte::now_secs(), 60) {
            tracing::info!("api: page opened with a wrong token ({more} more since the last line)");
        }
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_param_is_read_from_the_query() {
        assert_eq!(token_param(Some("token=ab%20c")).as_deref(), Some("ab c"));
        assert_eq!(token_param(Some("x=1")), None);
        assert_eq!(token_param(None), None);
    }

    #[test]
    fn the_page_loads_its_script_and_style_from_this_origin_only() {
        assert!(INDEX.contains("src=\"/app.js\""));
        assert!(INDEX.contains("href=\"/style.css\""));
        for text in [INDEX, APP_JS, STYLE] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        // No inline script: the CSP would refuse it.
        assert_eq!(INDEX.matches("<script").count(), 1);
        assert!(!INDEX.contains(" style=\"") && !INDEX.contains(" onclick="));
    }
}
