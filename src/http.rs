//! The server's own HTTP endpoints (metrics, health, the control API and its page): an HTTP/1.1
//! server on hyper, run inside an async service's tokio runtime, with the limits an endpoint on
//! a possibly hostile network needs. At most [`Limits::max_connections`] connections are
//! answered at once, and at most [`Limits::max_per_ip`] from one address (more are closed at
//! once, so slow clients from one address cannot hold every slot); request heads larger than
//! [`Limits::max_header_bytes`] get 431, and a head not complete within
//! [`Limits::header_timeout`] closes the connection; bodies larger than
//! [`Limits::max_body_bytes`] get 413 (at once when `Content-Length` says so, else when the
//! body passes it); each connection has [`Limits::deadline`] in all, so a client trickling
//! bytes holds its slot no longer. Exact-path routes answer GET and HEAD (HEAD: the GET reply's
//! headers, no body; other methods get 405 with `Allow`); prefix routes get every method and
//! the whole request, and run on the blocking pool. Unknown paths get 404.
//!
//! It owns sockets, HTTP framing and the limits, nothing about what the routes answer.

use crate::lifecycle::Shutdown;
use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Response, StatusCode, Uri};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// What one connection may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    /// Connections answered at once from one IP address (loopback ones only with
    /// `per_ip_on_loopback`: local tools are trusted, as `server.limit_loopback` says for peers).
    pub max_per_ip: usize,
    pub per_ip_on_loopback: bool,
    /// Largest request head (request line and headers); at least 8192 (hyper's floor).
    pub max_header_bytes: usize,
    /// Time for the whole exchange: request in, reply out.
    pub deadline: Duration,
    /// Time for the request head to arrive.
    pub header_timeout: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
}

/// A whole request, as a prefix route sees it.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: std::net::SocketAddr,
}

impl Request {
    /// The value of header `name`, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A route's answer to GET.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
    /// More headers (`Set-Cookie`, `Location`, `Allow`, `WWW-Authenticate`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reply {
    pub fn new(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// The same reply with one more header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Reply {
        self.headers.push((name, value));
        self
    }

    pub fn text(status: StatusCode, body: &'static str) -> Reply {
        Reply::new(status, "text/plain; charset=utf-8", body)
    }
}

type Handler = Box<dyn Fn(&Uri) -> Reply + Send + Sync>;
type PrefixHandler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// Exact paths and path prefixes, and what answers them.
#[derive(Default)]
pub struct Router {
    routes: Vec<(&'static str, Handler)>,
    prefixes: Vec<(&'static str, PrefixHandler)>,
    /// Connections being answered now (kept by [`serve`]).
    open: Arc<std::sync::atomic::AtomicUsize>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// How many connections [`serve`] is answering at the moment (routes may shed work when
    /// many are).
    pub fn open_connections(&self) -> Arc<std::sync::atomic::AtomicUsize> {
        self.open.clone()
    }

    /// Answers GET and HEAD on `path` (the query is the handler's to read) with `handler`.
    pub fn get(
        mut self,
        path: &'static str,
        handler: impl Fn(&Uri) -> Reply + Send + Sync + 'static,
    ) -> Router {
        self.routes.push((path, Box::new(handler)));
        self
    }

    /// Answers every method on paths that are `prefix` or start with `prefix/` (or, for a
    /// prefix of "/", every path no exact route takes), with the whole request.
    pub fn prefix(
        mut self,
        prefix: &'static str,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Router {
        self.prefixes.push((prefix, Arc::new(handler)));
        self
    }

    /// The prefix route for `path`, if no exact route takes it.
    fn prefix_for(&self, path: &str) -> Option<PrefixHandler> {
        if self.routes.iter().any(|(p, _)| *p == path) {
            return None;
        }
        self.prefixes
            .iter()
            .filter(|(p, _)| {
                *p == "/"
                    || path == *p
                    || path
                        .strip_prefix(*p)
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .max_by_key(|(p, _)| p.len())
            .map(|(_, h)| h.clone())
    }

    /// The response to `method` on `uri`.
    pub fn respond(&self, method: &Method, uri: &Uri) -> Response<Full<Bytes>> {
        let route = self.routes.iter().find(|(p, _)| *p == uri.path());
        if *method != Method::GET && *method != Method::HEAD {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let reply = match route {
            Some((_, handler)) => handler(uri),
            None => Reply::text(StatusCode::NOT_FOUND, "not found\n"),
        };
        to_response(method, reply)
    }
}

fn to_response(method: &Method, reply: Reply) -> Response<Full<Bytes>> {
    let len = reply.body.len();
    let body = if *method == Method::HEAD {
        Bytes::new()
    } else {
        reply.body
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = reply.status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    // HEAD: the length the GET body has.
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    for (name, value) in reply.headers {
        h.append(name, value);
    }
    r
}

/// Reads the body (bounded) and runs the prefix route on the blocking pool.
async fn handle(
    router: Arc<Router>,
    req: hyper::Request<Incoming>,
    peer: std::net::SocketAddr,
    limits: Limits,
) -> Response<Full<Bytes>> {
    let Some(handler) = router.prefix_for(req.uri().path()) else {
        return router.respond(req.method(), req.uri());
    };
    let too_large = || plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let body = match http_body_util::Limited::new(body, limits.max_body_bytes)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(_) => return plain(StatusCode::BAD_REQUEST, "request body unreadable\n"),
    };
    let method = parts.method.clone();
    let request = Request {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        body,
        peer,
    };
    match tokio::task::spawn_blocking(move || handler(&request)).await {
        Ok(reply) => to_response(&method, reply),
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Serves `router` on `listener` until `shutdown` fires (then stops accepting; connections in
/// progress end within their deadline). Runs inside a tokio runtime with timers and sockets.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Arc<Router>,
    limits: Limits,
    shutdown: Shutdown,
    name: &'static str,
) {
    use std::sync::atomic::Ordering;
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let per_ip: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>> =
        Arc::default();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.triggered() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("{name} endpoint: accept failed: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    _ = shutdown.triggered() => break,
                }
            }
        };
        // Over the cap, or over the address's share of it: closed at once.
        let ip = peer.ip().to_canonical();
        let leave = if ip.is_loopback() && !limits.per_ip_on_loopback {
            None
        } else {
            let mut m = per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = m.entry(ip).or_default();
            if *n >= limits.max_per_ip {
                continue;
            }
            *n += 1;
            Some(IpLeave(per_ip.clone(), ip))
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let router = router.clone();
        let open = router.open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let router = router.clone();
                async move { Ok::<_, Infallible>(handle(router, req, peer, limits).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            // Dropping the connection at the deadline closes it, whatever state it is in.
            let _ = tokio::time::timeout(limits.deadline, conn).await;
            open.fetch_sub(1, Ordering::Relaxed);
            drop((permit, leave));
        });
    }
}

/// Takes a connection off its address's count when it ends.
struct IpLeave(
    Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    std::net::IpAddr,
);

impl Drop for IpLeave {
    fn drop(&mut self) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new().get("/x", |uri| {
            Reply::new(
                StatusCode::OK,
                "text/plain",
                format!("q={:?}\n", uri.query()),
            )
        })
    }

    #[test]
    fn get_head_other_methods_and_unknown_paths() {
        let r = router();
        let get = r.respond(&Method::GET, &"/x?a=1".parse().unwrap());
        assert_eq!(get.status(), StatusCode::OK);
        assert_eq!(get.headers()[CONTENT_LENGTH], "14");
        let head = r.respond(&Method::HEAD, &"/x?a=1".parse().unwrap());
        assert_eq!(head.headers()[CONTENT_LENGTH], "14");
        assert_eq!(head.headers()[CONTENT_TYPE], "text/plain");
        for m in [Method::POST, Method::DELETE, Method::PUT, Method::OPTIONS] {
            let r = r.respond(&m, &"/x".parse().unwrap());
            assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{m}");
            assert_eq!(r.headers()[ALLOW], "GET, HEAD");
        }
        let none = r.respond(&Method::GET, &"/y".parse().unwrap());
        assert_eq!(none.status(), StatusCode::NOT_FOUND);
    }
}
