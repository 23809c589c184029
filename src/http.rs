//! The server's own HTTP endpoints (the metrics endpoint now; a control API may join it): an
//! HTTP/1.1 server on hyper, run inside an async service's tokio runtime, with the limits a
//! small endpoint on a possibly hostile network needs. At most [`Limits::max_connections`]
//! connections are answered at once (more are closed at once); request heads larger than
//! [`Limits::max_header_bytes`] get 431; each connection has [`Limits::deadline`] in all to send
//! its request and take the reply, so a client trickling bytes holds its slot no longer.
//! Routes are exact paths answered for GET and HEAD (HEAD: the GET reply's headers, no body);
//! other methods get 405 with `Allow`, unknown paths 404.
//!
//! It owns sockets, HTTP framing and the limits, nothing about what the routes answer.

use crate::lifecycle::Shutdown;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode, Uri};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// What one connection may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    /// Largest request head (request line and headers); at least 8192 (hyper's floor).
    pub max_header_bytes: usize,
    /// Time for the whole exchange: request in, reply out.
    pub deadline: Duration,
}

/// A route's answer to GET.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Reply {
    pub fn new(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into(),
        }
    }

    pub fn text(status: StatusCode, body: &'static str) -> Reply {
        Reply::new(status, "text/plain; charset=utf-8", body)
    }
}

type Handler = Box<dyn Fn(&Uri) -> Reply + Send + Sync>;

/// Exact paths and what answers them.
#[derive(Default)]
pub struct Router {
    routes: Vec<(&'static str, Handler)>,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
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
        r
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
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.triggered() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("{name} endpoint: accept failed: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    _ = shutdown.triggered() => break,
                }
            }
        };
        // Over the cap: closed at once.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let response = router.respond(req.method(), req.uri());
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            // Dropping the connection at the deadline closes it, whatever state it is in.
            let _ = tokio::time::timeout(limits.deadline, conn).await;
            drop(permit);
        });
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
