//! The configuration's smaller tables: `[hashing]`, `[tracker]`, `[metrics]`, `[watch]`,
//! `[log]` and `[[torrent]]`, each a serde struct with its built-in defaults (re-exported by
//! [`crate::config`], which owns the whole file's shape, loading and validation).
//!
//! Settings' shapes and defaults only: it reads no file and starts nothing.

use crate::units::{ByteRate, ByteSize};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HashingConfig {
    /// Threads hashing pieces (0 = one per core).
    pub threads: usize,
    /// Torrents checked at the same time at startup.
    pub parallel_torrents: usize,
    /// Keep fast-resume records so restarts skip hashing unchanged files.
    pub resume: bool,
    /// Directory of fast-resume records; empty = $STATE_DIRECTORY/resume (systemd), else
    /// $XDG_STATE_HOME/uringseed/resume, else ~/.local/state/uringseed/resume.
    pub resume_dir: PathBuf,
}

impl Default for HashingConfig {
    fn default() -> Self {
        HashingConfig {
            threads: 0,
            parallel_torrents: 2,
            resume: true,
            resume_dir: PathBuf::new(),
        }
    }
}

impl HashingConfig {
    /// Where resume records go, or `None` when resume is off or no directory can be found.
    pub fn resume_dir(&self) -> Option<PathBuf> {
        if !self.resume {
            return None;
        }
        if !self.resume_dir.as_os_str().is_empty() {
            return Some(self.resume_dir.clone());
        }
        default_state_dir().map(|d| d.join("resume"))
    }
}

/// $STATE_DIRECTORY (systemd; the first of several), else $XDG_STATE_HOME/uringseed, else
/// ~/.local/state/uringseed.
pub(super) fn default_state_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env("STATE_DIRECTORY") {
        let first = d
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        return Some(PathBuf::from(first));
    }
    if let Some(d) = env("XDG_STATE_HOME") {
        return Some(d.join("uringseed"));
    }
    env("HOME").map(|h| h.join(".local/state/uringseed"))
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Announce to the torrents' trackers.
    pub announce: bool,
    /// Peers asked for per announce.
    pub numwant: u32,
    /// Seconds an HTTP(S) exchange may take; for UDP the first round trip's wait (15 at most),
    /// each retransmission waiting twice as long.
    pub timeout_secs: u64,
    /// UDP retransmissions after the first try (BEP 15 allows 8; each waits twice as long).
    pub udp_max_retries: u32,
    /// Connect out to peers the trackers return.
    pub connect_out: bool,
    /// Seconds allowed at shutdown for announcing `stopped`.
    pub stop_timeout_secs: u64,
    /// Seconds between scrapes of a tracker (the swarm counts of all its torrents at once);
    /// a tracker's `min_request_interval` wins when longer. 0 = never scrape.
    pub scrape_interval_secs: u64,
    /// Shortest re-announce interval accepted from a tracker, whatever its `interval` says
    /// (libtorrent's `min_announce_interval` is 300 too).
    pub min_announce_interval_secs: u64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            announce: true,
            numwant: 50,
            timeout_secs: 20,
            udp_max_retries: 2,
            connect_out: true,
            stop_timeout_secs: 5,
            scrape_interval_secs: 1800,
            min_announce_interval_secs: 300,
        }
    }
}

/// Default address of the metrics endpoint.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9437";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve /metrics, /healthz and /readyz.
    pub enabled: bool,
    /// Address of the endpoint. When left at the default and that port is taken, the server
    /// warns and runs without metrics; an address set here must be free.
    pub listen: Option<SocketAddr>,
    /// Series per torrent (info-hash and name labels): off by default, for cardinality.
    pub per_torrent: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: None,
            per_torrent: false,
        }
    }
}

/// The routers a DHT node starts from when it has no saved table (BitTorrent's, Transmission's
/// and libtorrent's).
pub const DEFAULT_DHT_BOOTSTRAP: &[&str] = &[
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "dht.libtorrent.org:25401",
];

/// The mainline DHT node (BEP 5, 32, 42).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DhtConfig {
    /// Run a DHT node: announce public torrents, find their peers, answer other nodes.
    pub enabled: bool,
    /// UDP address of the node. Unset: the first peer listener's address and port (and, when an
    /// IPv6 address is listened on, that one too).
    pub listen: Option<SocketAddr>,
    /// `host:port` of nodes to start from when the saved table is empty or stale. Unset: the
    /// environment variable URINGSEED_DHT_BOOTSTRAP (comma-separated; empty = none) if set,
    /// else [`DEFAULT_DHT_BOOTSTRAP`].
    pub bootstrap: Option<Vec<String>>,
    /// Seconds between announces of each torrent (900..=1800).
    pub announce_interval_secs: u64,
    /// Queries answered per second per source address (more are dropped and counted).
    pub max_queries_per_ip_per_sec: u32,
    /// Queries answered per second from all sources together (more are dropped and
    /// counted); 0 = unlimited.
    pub max_queries_per_sec: u32,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            enabled: true,
            listen: None,
            bootstrap: None,
            announce_interval_secs: 1200,
            max_queries_per_ip_per_sec: 20,
            max_queries_per_sec: 2000,
        }
    }
}

impl DhtConfig {
    /// The bootstrap nodes in force: `bootstrap` if set, else URINGSEED_DHT_BOOTSTRAP if set,
    /// else the public routers.
    pub fn bootstrap_nodes(&self) -> Vec<String> {
        if let Some(b) = &self.bootstrap {
            return b.clone();
        }
        match std::env::var("URINGSEED_DHT_BOOTSTRAP") {
            Ok(v) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            Err(_) => DEFAULT_DHT_BOOTSTRAP
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// uTP (BEP 29): BitTorrent over UDP, on the peer port (shared with the DHT).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UtpConfig {
    /// Accept uTP connections on every peer listen address (UDP, same port), and retry peers
    /// over uTP when a TCP dial fails.
    pub enabled: bool,
    /// Incoming SYNs held before their sender proves its address (the oldest is dropped when
    /// full).
    pub max_half_open: usize,
    /// Live uTP connections per listen address (beyond `server.max_connections`, which counts
    /// them with TCP ones).
    pub max_connections: usize,
}

impl Default for UtpConfig {
    fn default() -> Self {
        UtpConfig {
            enabled: true,
            max_half_open: 256,
            max_connections: 4096,
        }
    }
}

/// The control API, the web page and the qBittorrent-compatible API (on the metrics
/// endpoint's HTTP server).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve `/api/`, the page at `/` (metrics, health and readiness follow `[metrics]`).
    pub enabled: bool,
    /// Address of the one HTTP server (metrics too). Unset: `metrics.listen`, else
    /// 127.0.0.1:9437. An address that is not loopback needs `token_file`.
    pub listen: Option<SocketAddr>,
    /// File holding the bearer token (one line). Empty: `<state_dir>/api-token`, made at the
    /// first start (mode 0600).
    pub token_file: PathBuf,
    /// Directories the API may seed from (torrents' data directories and paths to make
    /// torrents of). Empty: the working directory at start (never `/`).
    pub data_roots: Vec<PathBuf>,
    /// The user name the qBittorrent-compatible login takes (the password is the token).
    pub qbt_username: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            listen: None,
            token_file: PathBuf::new(),
            data_roots: Vec::new(),
            qbt_username: "admin".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    /// Directory watched for new .torrent files to seed (empty = off).
    pub dir: PathBuf,
    /// Data directory (save path) of torrents found in the watch directory.
    pub data: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// "text" or "json" (one JSON object per line, for log shippers).
    pub format: String,
    /// error, warn, info, debug or trace.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TorrentConfig {
    /// Path of the .torrent file (relative paths are relative to the config file).
    pub torrent: PathBuf,
    /// Directory holding the torrent's content, as a client's save path.
    pub data: PathBuf,
    /// Upload cap for this torrent in bytes per second (0 = only the server's cap).
    #[serde(default)]
    pub upload_rate_limit: ByteRate,
    /// Bytes this torrent may upload per quota period (`server.upload_quota_period`; 0 = none).
    #[serde(default)]
    pub upload_quota: ByteSize,
    /// Super-seeding (BEP 16) for this torrent; absent: `seeding.super_seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub super_seed: Option<bool>,
}

/// How torrents offer their pieces.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SeedingConfig {
    /// Super-seeding (BEP 16) for every torrent without a `super_seed` of its own: no bitfield
    /// or have_all to leechers; each is offered one rare piece at a time, the next once that
    /// one has reached another peer (or after 30 s), until every piece is out twice or a lone
    /// leecher has been alone for a minute; then normal seeding. `"auto"`: the same, but it
    /// also ends as soon as another seed connects (this server is no longer the only seed).
    pub super_seed: SuperSeedMode,
    /// How upload slots are handed out: `"round_robin"` (each interested peer in turn) or
    /// `"anti_leech"` (peers just starting or almost done first, so peers in the middle trade
    /// with each other; for a new swarm). Measured in `benches/swarm.py`.
    pub choker: ChokerMode,
}

pub use crate::choke::Mode as ChokerMode;

impl Serialize for ChokerMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ChokerMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        ChokerMode::from_name(&name).ok_or_else(|| {
            let names: Vec<&str> = ChokerMode::NAMES.iter().map(|(n, _)| *n).collect();
            serde::de::Error::custom(format!("{name:?} is not one of {}", names.join(", ")))
        })
    }
}

/// `seeding.super_seed`: `false`, `true` or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SuperSeedMode {
    #[default]
    Off,
    On,
    /// Super-seed only while this server is the only seed.
    Auto,
}

impl Serialize for SuperSeedMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SuperSeedMode::Off => s.serialize_bool(false),
            SuperSeedMode::On => s.serialize_bool(true),
            SuperSeedMode::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for SuperSeedMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(false) => Ok(SuperSeedMode::Off),
            Raw::Bool(true) => Ok(SuperSeedMode::On),
            Raw::Text(t) if t == "auto" => Ok(SuperSeedMode::Auto),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "{t:?} is not true, false or \"auto\""
            ))),
        }
    }
}
