//! The one HTTP server (the service `http`): the metrics routes when `[metrics]` is on, the
//! API, the qBittorrent routes and the page when `[api]` is on, on `api.listen` (or
//! `metrics.listen`, or 127.0.0.1:9437), with the limits of [`LIMITS`]. Also saves the
//! all-time upload totals every 30 s and at shutdown.

use super::Api;
use crate::control::Control;
use crate::lifecycle::{Services, StartError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// 256 connections at once; heads of 16 KiB within 2 s (as the metrics endpoint had); bodies of 16 MiB (a .torrent with a
/// large info dictionary); 30 s per exchange in all.
pub const LIMITS: crate::http::Limits = crate::http::Limits {
    max_connections: 256,
    max_per_ip: 32,
    per_ip_on_loopback: false,
    max_header_bytes: 16 << 10,
    deadline: Duration::from_secs(30),
    header_timeout: Duration::from_secs(2),
    max_body_bytes: 16 << 20,
};

/// What was started.
pub struct Started {
    pub addr: Option<SocketAddr>,
    pub api: Option<Arc<Api>>,
}

/// Binds and starts the server (nothing if both `[metrics]` and `[api]` are off). A default
/// address that is taken is a warning; a configured one an error.
pub fn spawn(
    control: &Arc<Control>,
    backend: &'static str,
    udp: crate::metrics::UdpStatus,
    services: &mut Services,
) -> Result<Started, StartError> {
    let shared = control.shared.clone();
    let config = &shared.config;
    let none = Started {
        addr: None,
        api: None,
    };
    if !config.metrics.enabled && !config.api.enabled {
        return Ok(none);
    }
    let (addr, configured) = config.http_listen();
    let listener = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) if !configured => {
            tracing::warn!("HTTP endpoint not started: {addr}: {e} (set api.listen)");
            return Ok(none);
        }
        Err(e) => {
            // Named by the key the operator set (`--metrics` sets both).
            let key = if config.metrics.listen == Some(addr) {
                "metrics.listen"
            } else {
                "api.listen"
            };
            return Err(StartError::bind(format!("{key} {addr}: {e}"), &e));
        }
    };
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let mut router = if config.metrics.enabled {
        crate::metrics::routes(shared.clone(), backend, udp.clone())
    } else {
        crate::http::Router::new()
    };
    // An address off loopback (metrics.listen = 0.0.0.0 in a container, say) carries the API
    // only when the operator chose its token.
    let exposed = !addr.ip().is_loopback() && config.api.token_file.as_os_str().is_empty();
    if config.api.enabled && exposed {
        tracing::warn!(
            "api: not served on {addr}, which is not loopback, without api.token_file (metrics are)"
        );
    }
    let api = if config.api.enabled && !exposed {
        match Api::start(control.clone(), udp.clone()) {
            Ok(api) => {
                let a = api.clone();
                router = router.prefix("/", move |req| a.handle(req));
                Some(api)
            }
            // A token the server makes lives in its state directory, which may be full or
            // read-only: serving (and metrics) go on without the API. A token file the
            // operator named is configuration: not reading it is an error at start.
            Err(e) if config.api.token_file.as_os_str().is_empty() => {
                tracing::error!(
                    "api: not started: {e}; serving and metrics go on (make room in the state \
                     directory and restart, or set api.token_file)"
                );
                None
            }
            Err(e) => return Err(StartError::new(e)),
        }
    } else {
        None
    };
    let saver = api.clone();
    let limit_loopback = config.server.limit_loopback;
    services.spawn_async("http", move |shutdown| async move {
        // Scrapes and API calls, however many, yield the CPU to serving (its pool's threads,
        // started from this one, inherit it).
        crate::lifecycle::lower_thread_priority(5);
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("HTTP endpoint not started: {e}");
                return;
            }
        };
        if let Some(api) = saver.clone() {
            let stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                        _ = stop.triggered() => break,
                    }
                    let a = api.clone();
                    let _ = tokio::task::spawn_blocking(move || a.save_totals()).await;
                }
            });
        }
        let limits = crate::http::Limits {
            per_ip_on_loopback: limit_loopback,
            ..LIMITS
        };
        crate::http::serve(listener, Arc::new(router), limits, shutdown, "http").await;
        if let Some(api) = saver {
            api.save_totals();
        }
    })?;
    Ok(Started {
        addr: Some(local),
        api,
    })
}
