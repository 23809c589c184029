//! The control API on the one HTTP server ([`crate::http`]): the native JSON API under
//! `/api/v1/` ([`native`], described by `openapi.json`), the qBittorrent Web API v2 subset under
//! `/api/v2/` ([`qbt`]) and the web page at `/` ([`page`]), beside `/metrics`, `/healthz` and
//! `/readyz`. It owns authentication ([`auth`]), the confinement of paths to `api.data_roots`
//! ([`paths`]), the torrents added through it and kept across restarts ([`store`]), and the
//! all-time upload totals; it changes torrents only through [`crate::control::Control`].

pub mod auth;
pub mod form;
pub mod native;
pub mod page;
pub mod paths;
pub mod qbt;
pub mod service;
pub mod store;
pub mod view;

use crate::control::{Control, ControlError};
use crate::http::{Reply, Request};
use crate::metainfo::InfoHash;
use crate::state::{Origin, TorrentSpec};
use hyper::StatusCode;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// An API failure: an HTTP status, a stable code and a message for people.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn reply(&self) -> Reply {
        json_reply(
            self.status,
            &serde_json::json!({"error": {"code": self.code, "message": self.message}}),
        )
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        let (status, code) = match e {
            ControlError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ControlError::Duplicate => (StatusCode::CONFLICT, "duplicate"),
            ControlError::WrongState(_) => (StatusCode::CONFLICT, "wrong_state"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

pub fn json_reply(status: StatusCode, value: &impl serde::Serialize) -> Reply {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    Reply::new(status, "application/json", body)
}

/// Everything the API routes share.
pub struct Api {
    pub control: Arc<Control>,
    pub token: auth::Token,
    /// Where the token is.
    pub token_path: PathBuf,
    pub roots: paths::Roots,
    pub store: Option<store::Store>,
    /// What earlier runs uploaded, by torrent (`<state_dir>/uploaded.json`).
    totals_before: Mutex<HashMap<String, u64>>,
    totals_path: Option<PathBuf>,
    /// qBittorrent-compatible sessions (SID cookie values).
    pub sessions: Mutex<HashMap<String, std::time::Instant>>,
    me: std::sync::OnceLock<std::sync::Weak<Api>>,
    /// The DHT node's status, when it runs.
    pub dht: Option<Arc<crate::dht::service::DhtStatus>>,
    /// uTP's counters, when on.
    pub utp: Option<Arc<crate::utp::UtpStatus>>,
    /// The web seed's counters and addresses, when on.
    pub webseed: Option<(Vec<std::net::SocketAddr>, Arc<crate::webseed::WebStats>)>,
    /// Torrents being made from a path (`POST /torrents {"path"}`), and the last failures.
    pub making: Mutex<Vec<Making>>,
}

/// A make-and-seed job, as `GET /torrents` lists it until it is seeded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Making {
    pub path: String,
    /// "hashing" or "failed".
    pub state: &'static str,
    pub error: Option<String>,
    pub started: i64,
}

/// Failed jobs kept for clients to see.
const MAX_FAILED_JOBS: usize = 16;

impl Api {
    /// Builds the API: the token (made if needed), the roots, the store; then adds the torrents
    /// the store holds.
    pub fn start(
        control: Arc<Control>,
        udp: crate::metrics::UdpStatus,
    ) -> Result<Arc<Api>, String> {
        let config = &control.shared.config;
        let state_dir = config.server.state_dir();
        let (token, token_path) =
            auth::Token::load_or_create(&config.api.token_file, state_dir.as_deref())?;
        tracing::info!("api: token in {}", token_path.display());
        let roots = paths::Roots::new(&config.api.data_roots);
        let totals_path = state_dir.as_ref().map(|d| d.join("uploaded.json"));
        let totals_before = totals_path
            .as_ref()
            .and_then(|p| crate::fsread::read_regular(p, 64 << 20).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let api = Arc::new(Api {
            store: state_dir.as_deref().map(store::Store::new),
            control,
            token,
            token_path,
            roots,
            totals_before: Mutex::new(totals_before),
            totals_path,
            sessions: Mutex::new(HashMap::new()),
            me: std::sync::OnceLock::new(),
            making: Mutex::new(Vec::new()),
            dht: udp.dht,
            utp: udp.utp,
            webseed: udp.webseed.map(|w| (udp.webseed_addrs, w)),
        });
        let _ = api.me.set(Arc::downgrade(&api));
        api.restore();
        Ok(api)
    }

    /// Adds the torrents saved by earlier runs (paused ones paused).
    fn restore(&self) {
        let Some(store) = &self.store else { return };
        for (path, rec) in store.load_all() {
            match TorrentSpec::load(&path, rec.data_dir.clone()) {
                Ok(mut spec) => {
                    spec.origin = Origin::Api;
                    spec.limits = rec.limits();
                    let ih = spec.torrent.info_hash;
                    if self.control.add_at(spec, rec.added_unix).is_ok() && rec.paused {
                        let _ = self.control.pause(&ih);
                    }
                }
                Err(e) => tracing::warn!("api: saved torrent {}: {e}; not added", path.display()),
            }
        }
    }

    /// This API, for work that outlives a request.
    pub fn self_arc(&self) -> Arc<Api> {
        self.me
            .get()
            .and_then(std::sync::Weak::upgrade)
            .expect("the API is alive while it answers")
    }

    /// Records the end of the job for `path`: gone when it worked, kept (bounded) if it failed.
    pub fn job_done(&self, path: &str, error: Option<String>) {
        let mut jobs = self.making.lock().unwrap_or_else(|e| e.into_inner());
        jobs.retain(|j| !(j.path == path && j.state == "hashing"));
        if let Some(error) = error {
            jobs.retain(|j| j.path != path);
            jobs.push(Making {
                path: path.to_string(),
                state: "failed",
                error: Some(error),
                started: crate::state::unix_now(),
            });
            let failed = jobs.iter().filter(|j| j.state == "failed").count();
            if failed > MAX_FAILED_JOBS {
                if let Some(i) = jobs.iter().position(|j| j.state == "failed") {
                    jobs.remove(i);
                }
            }
        }
    }

    /// Uploaded by earlier runs.
    pub fn uploaded_before(&self, ih: &InfoHash) -> u64 {
        let t = self.totals_before.lock().unwrap_or_else(|e| e.into_inner());
        t.get(&ih.to_string()).copied().unwrap_or(0)
    }

    /// Saves the all-time totals (earlier runs plus this one); called periodically and at
    /// shutdown.
    pub fn save_totals(&self) {
        let Some(path) = &self.totals_path else {
            return;
        };
        let mut all = self
            .totals_before
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for e in self.control.entries() {
            let ih = e.spec.torrent.info_hash;
            *all.entry(ih.to_string()).or_default() += self.control.uploaded_session(&ih);
        }
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(json) = serde_json::to_vec(&all) {
            if let Err(e) = crate::storage::atomic::write_atomic(path, &json) {
                // Every 30 s on a full or read-only disk: said once an hour.
                static LINE: crate::lograte::LogEvery = crate::lograte::LogEvery::new();
                if let Some(more) = LINE.occur(crate::lograte::now_secs(), 3600) {
                    tracing::warn!(
                        "api: cannot save {}: {e} ({more} more failures since the last line)",
                        path.display()
                    );
                }
            }
        }
    }

    /// Whether a request carries the token.
    pub fn authorized(&self, req: &Request) -> bool {
        self.token
            .admits(req.header("authorization"), req.header("cookie"))
    }

    /// The view of one torrent.
    pub fn torrent(&self, ih: &InfoHash) -> Option<view::Torrent> {
        let e = self.control.entry(ih)?;
        Some(view::torrent(&self.control, &e, self.uploaded_before(ih)))
    }

    /// Every torrent's view, by name.
    pub fn torrents(&self) -> Vec<view::Torrent> {
        let mut all: Vec<view::Torrent> = self
            .control
            .entries()
            .iter()
            .map(|e| {
                let before = self.uploaded_before(&e.spec.torrent.info_hash);
                view::torrent(&self.control, e, before)
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name).then(a.info_hash.cmp(&b.info_hash)));
        all
    }

    /// Adds a torrent from its metainfo bytes, seeded from `data` (confined to the roots).
    /// Nothing changes on an error.
    pub fn add_bytes(&self, bytes: &[u8], data: &str) -> Result<InfoHash, ApiError> {
        if data.is_empty() {
            return Err(ApiError::bad(
                "data_missing",
                "give the data directory (data)",
            ));
        }
        let data_dir = self
            .roots
            .confine(Path::new(data))
            .map_err(|m| ApiError::new(StatusCode::FORBIDDEN, "outside_data_roots", m))?;
        let torrent = crate::metainfo::parse(bytes, "the uploaded torrent")
            .map_err(|e| ApiError::bad("bad_torrent", e.to_string()))?;
        let top = data_dir.join(&torrent.name);
        if !top.exists() {
            return Err(ApiError::bad(
                "data_missing",
                format!(
                    "{} does not exist: the data must be in place before it is seeded",
                    top.display()
                ),
            ));
        }
        // The top entry must not lead outside the roots either (a symlinked file).
        self.roots
            .confine(&top)
            .map_err(|m| ApiError::new(StatusCode::FORBIDDEN, "outside_data_roots", m))?;
        let ih = torrent.info_hash;
        if self.control.entry(&ih).is_some() {
            return Err(ControlError::Duplicate.into());
        }
        let spec = TorrentSpec {
            torrent,
            data_dir: data_dir.clone(),
            just_hashed: false,
            limits: Default::default(),
            origin: Origin::Api,
            force_check: false,
        };
        let added_unix = crate::state::unix_now();
        if let Some(store) = &self.store {
            let rec = store::Record {
                data_dir,
                paused: false,
                upload_rate_limit: 0,
                upload_quota: 0,
                added_unix,
            };
            store.add(&ih, bytes, &rec).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_failed",
                    format!("cannot save the torrent: {e}"),
                )
            })?;
        }
        if let Err(e) = self.control.add_at(spec, added_unix) {
            if let Some(store) = &self.store {
                let _ = store.remove(&ih);
            }
            return Err(e.into());
        }
        tracing::info!(info_hash = %ih, "api: torrent added");
        Ok(ih)
    }

    /// Removes a torrent the API or the command line added.
    pub fn remove(&self, ih: &InfoHash) -> Result<(), ApiError> {
        let e = self.control.entry(ih).ok_or(ControlError::NotFound)?;
        match e.spec.origin {
            Origin::Config => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "not_removable",
                    "this torrent comes from the configuration file: remove its [[torrent]] table and reload (SIGHUP)",
                ))
            }
            Origin::Watch => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "not_removable",
                    "this torrent comes from the watch directory: remove its .torrent file there",
                ))
            }
            Origin::Api | Origin::Cli => {}
        }
        if let Some(store) = &self.store {
            store.remove(ih).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_failed",
                    format!("cannot forget the torrent: {e}"),
                )
            })?;
        }
        self.control.remove(ih);
        tracing::info!(info_hash = %ih, "api: torrent removed");
        Ok(())
    }

    /// Pauses or resumes a torrent, and remembers it for an API torrent.
    pub fn set_paused(&self, ih: &InfoHash, paused: bool) -> Result<(), ApiError> {
        if paused {
            self.control.pause(ih)?;
        } else {
            self.control.resume(ih)?;
        }
        self.update_record(ih, |r| r.paused = paused);
        Ok(())
    }

    /// Rewrites the saved record of an API torrent.
    pub fn update_record(&self, ih: &InfoHash, f: impl FnOnce(&mut store::Record)) {
        let Some(store) = &self.store else { return };
        if let Some(mut rec) = store.record(ih) {
            f(&mut rec);
            if let Err(e) = store.update(ih, &rec) {
                tracing::warn!(info_hash = %ih, "api: cannot save the torrent's record: {e}");
            }
        }
    }

    /// Answers everything except the metrics routes.
    pub fn handle(&self, req: &Request) -> Reply {
        let path = req.uri.path();
        if path.starts_with("/api/v2/") {
            return qbt::route(self, req);
        }
        if path.starts_with("/api/") {
            return native::route(self, req);
        }
        page::route(self, req)
    }
}

/// Parses a 40-hex-digit info-hash.
pub fn parse_info_hash(s: &str) -> Result<InfoHash, ApiError> {
    InfoHash::from_hex(s).ok_or_else(|| {
        ApiError::bad(
            "bad_info_hash",
            format!("{s}: not an info-hash (40 hex digits)"),
        )
    })
}
