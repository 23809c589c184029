//! The TOML configuration: serde structs, built-in defaults and validation.
//!
//! Every key has a default, so the server runs with no file at all. Unknown keys, values of the
//! wrong type and values out of range are errors that name the file, the key and (for TOML
//! errors) the line. `config/uringseed.example.toml` documents every key with its default; a test
//! checks that file parses to exactly [`Config::default`].
//!
//! This file holds the whole file's shape (`Config`), `[server]`, loading and validation; the
//! smaller tables (`[hashing]`, `[tracker]`, `[metrics]`, `[watch]`, `[log]`, `[[torrent]]`)
//! are in `config/sections.rs` and re-exported here. It owns the settings' shape and checks; it
//! starts nothing and reads only the file it is given.

mod distribution;
mod sections;

pub use distribution::{TrackerServerConfig, WebseedConfig};
pub use sections::{
    ApiConfig, ChokerMode, DhtConfig, HashingConfig, LogConfig, MetricsConfig, SeedingConfig,
    SuperSeedMode, TorrentConfig, TrackerConfig, UtpConfig, WatchConfig, DEFAULT_METRICS_LISTEN,
};

use crate::units::{ByteRate, ByteSize};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Hard ceiling for `server.max_request_bytes` (larger requests are never served).
pub const MAX_REQUEST_CEILING: u32 = 128 << 10;
/// Largest configuration file read (tens of thousands of `[[torrent]]` tables fit; a larger
/// file is refused before it is parsed, so parsing time and memory stay bounded).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Most addresses in `server.listen` (each is a socket per worker).
pub const MAX_LISTEN: usize = 64;
/// Shortest `tracker.scrape_interval_secs` accepted (other than 0, no scrapes).
pub const MIN_SCRAPE_INTERVAL_SECS: u64 = 10;
/// The standard block size; requests up to this size must always be served.
pub const BLOCK_SIZE: u32 = 16 << 10;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub hashing: HashingConfig,
    pub tracker: TrackerConfig,
    pub metrics: MetricsConfig,
    pub api: ApiConfig,
    pub dht: DhtConfig,
    pub utp: UtpConfig,
    pub webseed: WebseedConfig,
    pub tracker_server: TrackerServerConfig,
    pub seeding: SeedingConfig,
    pub watch: WatchConfig,
    pub log: LogConfig,
    /// Torrents to seed.
    #[serde(rename = "torrent", skip_serializing_if = "Vec::is_empty")]
    pub torrents: Vec<TorrentConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Addresses to listen on; empty means every IPv4 and IPv6 address on the first free port
    /// of 6881..=6889.
    pub listen: Vec<SocketAddr>,
    /// Worker threads, each with its own io_uring runtime and listener (0 = one per core).
    pub workers: usize,
    /// Largest block a peer may request, in bytes (16384..=131072).
    pub max_request_bytes: u32,
    /// Peers unchoked at once per torrent (0 = unlimited).
    pub upload_slots: usize,
    /// Connected peers across all torrents.
    pub max_connections: usize,
    /// Connected peers per torrent.
    pub max_connections_per_torrent: usize,
    /// Connections that have not completed their handshake, at most; one more evicts the
    /// oldest of them.
    pub max_half_open: usize,
    /// Requests a peer may have queued; more are rejected.
    pub max_queued_requests: usize,
    /// Bytes of unsent output a peer may hold before it is dropped.
    pub max_send_buffer_bytes: usize,
    /// Seconds a new connection has to complete the handshake.
    pub handshake_timeout_secs: u64,
    /// Seconds of silence after which a peer is dropped.
    pub idle_timeout_secs: u64,
    /// I/O backend: "auto" (io_uring when the kernel allows it), "io_uring" or "portable".
    pub io_backend: String,
    /// Data-file descriptors kept open across all torrents (each with its mapping), least
    /// recently used closed first; 0 = a quarter of the open-file limit, at most 1024.
    pub max_open_files: usize,
    /// Connections from (and to) one IP address.
    pub max_connections_per_ip: usize,
    /// Apply `max_connections_per_ip` to loopback addresses too (off: local tools are trusted).
    pub limit_loopback: bool,
    /// Seconds a write may make no progress before the peer (which is not reading) is dropped.
    pub write_stall_secs: u64,
    /// File of blocked IP ranges (CIDR, one per line, `#` comments); empty = none. Re-read on
    /// SIGHUP.
    pub blocklist: PathBuf,
    /// Message Stream Encryption (the obfuscated handshake clients call "encryption").
    pub encryption: Encryption,
    /// Encrypted handshakes answered per second, at most, across the server (bursts of one
    /// second's worth); more are closed before any key is made (`mse_budget`). 0 = unlimited.
    pub mse_handshakes_per_sec: u32,
    /// The same per address (an IPv4 address or an IPv6 /64; bursts of four seconds' worth;
    /// loopback only with `limit_loopback`). 0 = unlimited.
    pub mse_handshakes_per_ip_per_sec: u32,
    /// Outgoing connections started per second, at most (peers from trackers and, later,
    /// other sources); 0 = never connect out.
    pub max_dials_per_sec: u32,
    /// Connect out to peers on ports below 1024 too (off: such addresses, which a poisoned
    /// peer list uses to aim seeds at other services, are never dialled).
    pub dial_privileged_ports: bool,
    /// Upload cap for the whole server in bytes per second (0 = unlimited).
    pub upload_rate_limit: ByteRate,
    /// Bytes the server may upload per quota period (0 = no quota).
    pub upload_quota: ByteSize,
    /// The quota's period: "day", "week" or "month" (periods start at 00:00 UTC).
    pub upload_quota_period: QuotaPeriod,
    /// Day the period starts: day of the month (1-28) for "month", ISO weekday (1 = Monday)
    /// for "week"; ignored for "day".
    pub upload_quota_reset_day: u32,
    /// Upload rate once a quota is used up, until the period ends (0 = no payload at all: peers
    /// stay connected and choked).
    pub upload_quota_rate: ByteRate,
    /// Directory for the server's own state (quota counters); empty = $STATE_DIRECTORY
    /// (systemd), else $XDG_STATE_HOME/uringseed, else ~/.local/state/uringseed.
    pub state_dir: PathBuf,
}

/// How long an upload quota lasts before it starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaPeriod {
    Day,
    Week,
    #[default]
    Month,
}

/// Whether peers may (or must) use Message Stream Encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// Plain BitTorrent handshakes only; anything else is dropped as a bad handshake.
    Disabled,
    /// Incoming peers may use either; an MSE peer that offers a plaintext payload gets it
    /// (cheapest), otherwise RC4. Outgoing connections are plain.
    #[default]
    Enabled,
    /// Every connection, incoming and outgoing, uses MSE with an RC4-encrypted payload; plain
    /// handshakes are dropped.
    Required,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: Vec::new(),
            workers: 0,
            max_request_bytes: BLOCK_SIZE,
            upload_slots: 8,
            max_connections: 4096,
            max_connections_per_torrent: 1024,
            max_half_open: 512,
            max_queued_requests: 500,
            max_send_buffer_bytes: 4 << 20,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 300,
            io_backend: "auto".into(),
            max_open_files: 0,
            max_connections_per_ip: 8,
            limit_loopback: false,
            write_stall_secs: 60,
            blocklist: PathBuf::new(),
            encryption: Encryption::Enabled,
            mse_handshakes_per_sec: 200,
            mse_handshakes_per_ip_per_sec: 2,
            max_dials_per_sec: 30,
            dial_privileged_ports: false,
            upload_rate_limit: ByteRate(0),
            upload_quota: ByteSize(0),
            upload_quota_period: QuotaPeriod::Month,
            upload_quota_reset_day: 1,
            upload_quota_rate: ByteRate(0),
            state_dir: PathBuf::new(),
        }
    }
}

impl ServerConfig {
    /// `max_open_files`, with 0 resolved against the process's open-file limit (`nofile`).
    pub fn open_files(&self) -> usize {
        if self.max_open_files > 0 {
            return self.max_open_files;
        }
        crate::storage::pool::auto_capacity()
    }

    /// The server's state directory, or `None` when none is configured or can be found.
    pub fn state_dir(&self) -> Option<PathBuf> {
        if !self.state_dir.as_os_str().is_empty() {
            return Some(self.state_dir.clone());
        }
        sections::default_state_dir()
    }
}

/// A configuration problem: the file, the key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}: key `{}`: {}", self.file, self.key, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The address of the one HTTP server: `api.listen`, else `metrics.listen`, else the
    /// default; and whether it was set (a set address must be free).
    pub fn http_listen(&self) -> (SocketAddr, bool) {
        match self.api.listen.or(self.metrics.listen) {
            Some(a) => (a, true),
            None => (
                DEFAULT_METRICS_LISTEN.parse().expect("valid default"),
                false,
            ),
        }
    }

    /// Reads, parses and validates a config file; relative torrent paths are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = crate::fsread::read_regular_string(path, MAX_CONFIG_BYTES).map_err(|e| {
            ConfigError {
                file: file.clone(),
                key: String::new(),
                reason: format!("cannot read: {e}"),
            }
        })?;
        let mut config = Config::parse(&text, &file)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for t in &mut config.torrents {
            t.torrent = base.join(&t.torrent);
            t.data = base.join(&t.data);
        }
        for p in [&mut config.watch.dir, &mut config.watch.data] {
            if !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        }
        if !config.server.blocklist.as_os_str().is_empty() {
            config.server.blocklist = base.join(&config.server.blocklist);
        }
        if !config.hashing.resume_dir.as_os_str().is_empty() {
            config.hashing.resume_dir = base.join(&config.hashing.resume_dir);
        }
        if !config.server.state_dir.as_os_str().is_empty() {
            config.server.state_dir = base.join(&config.server.state_dir);
        }
        if !config.api.token_file.as_os_str().is_empty() {
            config.api.token_file = base.join(&config.api.token_file);
        }
        for r in &mut config.api.data_roots {
            *r = base.join(&*r);
        }
        Ok(config)
    }

    /// Parses and validates TOML text; `file` names the source in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| toml_error(&e, text, file))?;
        config.validate(file)?;
        Ok(config)
    }

    /// Checks ranges and combinations that the types alone cannot express.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let err = |key: &str, reason: String| ConfigError {
            file: file.to_string(),
            key: key.to_string(),
            reason,
        };
        let s = &self.server;
        if s.listen.len() > MAX_LISTEN {
            return Err(err(
                "server.listen",
                format!(
                    "{} addresses, more than the {MAX_LISTEN} accepted",
                    s.listen.len()
                ),
            ));
        }
        if let (Some(a), Some(m)) = (self.api.listen, self.metrics.listen) {
            if a != m {
                return Err(err(
                    "api.listen",
                    format!("{a} differs from metrics.listen {m}: one HTTP server serves both; set one of them"),
                ));
            }
        }
        if let Some(a) = self.api.listen {
            if !a.ip().is_loopback() && self.api.token_file.as_os_str().is_empty() {
                return Err(err(
                    "api.listen",
                    format!("{a} is not a loopback address: set api.token_file to the token that guards it"),
                ));
            }
        }
        distribution::check(&self.webseed, &self.tracker_server).map_err(|(k, r)| err(&k, r))?;
        if self.utp.max_half_open == 0 || self.utp.max_connections == 0 {
            return Err(err(
                "utp.max_half_open",
                "utp.max_half_open and utp.max_connections must be at least 1".to_string(),
            ));
        }
        if !(900..=1800).contains(&self.dht.announce_interval_secs) {
            return Err(err(
                "dht.announce_interval_secs",
                format!("{} is outside 900..=1800", self.dht.announce_interval_secs),
            ));
        }
        for b in self.dht.bootstrap.iter().flatten() {
            if b.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(err("dht.bootstrap", format!("{b:?} is not host:port")));
            }
        }
        if !(BLOCK_SIZE..=MAX_REQUEST_CEILING).contains(&s.max_request_bytes) {
            return Err(err(
                "server.max_request_bytes",
                format!(
                    "{} is outside {BLOCK_SIZE}..={MAX_REQUEST_CEILING}",
                    s.max_request_bytes
                ),
            ));
        }
        let positive = [
            ("server.max_connections", s.max_connections as u64),
            ("server.max_half_open", s.max_half_open as u64),
            (
                "server.max_connections_per_torrent",
                s.max_connections_per_torrent as u64,
            ),
            ("server.max_queued_requests", s.max_queued_requests as u64),
            ("server.handshake_timeout_secs", s.handshake_timeout_secs),
            ("server.idle_timeout_secs", s.idle_timeout_secs),
            (
                "server.max_connections_per_ip",
                s.max_connections_per_ip as u64,
            ),
            ("server.write_stall_secs", s.write_stall_secs),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(err(key, "must be greater than zero".into()));
            }
        }
        if s.max_send_buffer_bytes < 2 * s.max_request_bytes as usize {
            return Err(err(
                "server.max_send_buffer_bytes",
                format!(
                    "{} is less than twice server.max_request_bytes",
                    s.max_send_buffer_bytes
                ),
            ));
        }
        for (key, v) in [
            ("server.workers", s.workers),
            ("hashing.threads", self.hashing.threads),
        ] {
            if v > 1024 {
                return Err(err(key, format!("{v} is more than 1024")));
            }
        }
        let mut rates = vec![
            ("server.upload_rate_limit".to_string(), s.upload_rate_limit),
            ("server.upload_quota_rate".to_string(), s.upload_quota_rate),
        ];
        for (i, t) in self.torrents.iter().enumerate() {
            rates.push((
                format!("torrent[{i}].upload_rate_limit"),
                t.upload_rate_limit,
            ));
        }
        for (key, rate) in rates {
            check_rate(&key, rate).map_err(|reason| err(&key, reason))?;
        }
        let days = match s.upload_quota_period {
            QuotaPeriod::Month => 1..=28,
            QuotaPeriod::Week => 1..=7,
            QuotaPeriod::Day => 0..=u32::MAX,
        };
        if !days.contains(&s.upload_quota_reset_day) {
            return Err(err(
                "server.upload_quota_reset_day",
                format!(
                    "{} is outside {}..={} for a {:?} period",
                    s.upload_quota_reset_day,
                    days.start(),
                    days.end(),
                    s.upload_quota_period
                ),
            ));
        }
        let scrape = self.tracker.scrape_interval_secs;
        if scrape != 0 && scrape < MIN_SCRAPE_INTERVAL_SECS {
            return Err(err(
                "tracker.scrape_interval_secs",
                format!("{scrape} is less than {MIN_SCRAPE_INTERVAL_SECS}; use 0 for no scrapes"),
            ));
        }
        if self.tracker.min_announce_interval_secs == 0 {
            return Err(err(
                "tracker.min_announce_interval_secs",
                "must be at least 1".to_string(),
            ));
        }
        for (key, value, allowed) in [
            ("log.level", &self.log.level, LOG_LEVELS),
            ("log.format", &self.log.format, LOG_FORMATS),
            ("server.io_backend", &s.io_backend, IO_BACKENDS),
        ] {
            if !allowed.contains(&value.to_ascii_lowercase().as_str()) {
                let reason = format!("{value:?} is not one of {}", allowed.join(", "));
                return Err(err(key, reason));
            }
        }
        Ok(())
    }
}

/// Values of `log.level` (any case), `log.format` and `server.io_backend`.
pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];
pub const LOG_FORMATS: &[&str] = &["text", "json"];
pub const IO_BACKENDS: &[&str] = &["auto", "io_uring", "portable"];

/// Refuses a limit below one block per second (it could never send a block); 0 is unlimited.
pub fn check_rate(key: &str, rate: ByteRate) -> Result<(), String> {
    if rate.0 != 0 && rate.0 < u64::from(BLOCK_SIZE) {
        return Err(format!(
            "{key} = {} bytes/s is less than one block ({BLOCK_SIZE} bytes) per second; use 0 \
             for unlimited",
            rate.0
        ));
    }
    Ok(())
}

/// Turns a TOML error into one naming the file, the line and the offending key.
fn toml_error(e: &toml::de::Error, text: &str, file: &str) -> ConfigError {
    let (key, place) = match e.span() {
        Some(span) => {
            // Counted on bytes: a position inside a multi-byte character cannot panic.
            let line_no = text.as_bytes()[..span.start.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
            let key = line.split('=').next().unwrap_or("").trim();
            // The table the key is in: the nearest header above it (`[seeding]`, `[[torrent]]`).
            let table = text
                .lines()
                .take(line_no - 1)
                .map(str::trim)
                .filter(|l| l.starts_with('['))
                .last()
                .map(|h| h.trim_matches(|c| c == '[' || c == ']').trim());
            let key = match table {
                Some(t) if !key.is_empty() && !key.starts_with('[') => format!("{t}.{key}"),
                _ => key.to_string(),
            };
            (key, format!("line {line_no}: "))
        }
        None => (String::new(), String::new()),
    };
    let key = if key.starts_with('[') {
        String::new()
    } else {
        key
    };
    ConfigError {
        file: file.to_string(),
        key,
        reason: format!("{place}{}", e.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(Config::parse("", "t.toml").unwrap(), Config::default());
    }

    #[test]
    fn example_file_documents_the_defaults() {
        let text = include_str!("../config/uringseed.example.toml");
        let parsed = Config::parse(text, "example").unwrap();
        assert_eq!(parsed.server, ServerConfig::default());
        assert_eq!(parsed.hashing, HashingConfig::default());
        assert_eq!(parsed.tracker, TrackerConfig::default());
        assert_eq!(parsed.watch, WatchConfig::default());
        assert_eq!(parsed.log, LogConfig::default());
        assert_eq!(
            parsed.metrics.listen,
            Some(DEFAULT_METRICS_LISTEN.parse().unwrap())
        );
        // Every key of the example must appear (commented or not) in the file.
        for key in [
            "listen",
            "workers",
            "max_request_bytes",
            "upload_slots",
            "max_connections",
            "max_connections_per_torrent",
            "max_queued_requests",
            "max_send_buffer_bytes",
            "handshake_timeout_secs",
            "idle_timeout_secs",
            "threads",
            "torrent",
            "data",
        ] {
            assert!(text.contains(&format!("{key} =")), "example lacks {key}");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::parse("[server]\nworkers = 2\nbogus_key = 1\n", "c.toml").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("c.toml") && msg.contains("bogus_key") && msg.contains("line 3"),
            "{msg}"
        );
    }

    #[test]
    fn bad_type_names_key_and_line() {
        let e = Config::parse("[server]\nworkers = \"many\"\n", "c.toml").unwrap_err();
        assert_eq!(e.key, "server.workers");
        assert!(e.reason.contains("line 2"), "{e}");
    }

    #[test]
    fn out_of_range_values_are_named() {
        let e = Config::parse("[server]\nmax_request_bytes = 200000\n", "c.toml").unwrap_err();
        assert_eq!(e.key, "server.max_request_bytes");
        let e = Config::parse("[server]\nidle_timeout_secs = 0\n", "c.toml").unwrap_err();
        assert_eq!(e.key, "server.idle_timeout_secs");
        let e = Config::parse("[tracker]\nscrape_interval_secs = 9\n", "c.toml").unwrap_err();
        assert_eq!(e.key, "tracker.scrape_interval_secs", "{e}");
        let e = Config::parse("[server]\nlisten = [\"nowhere\"]\n", "c.toml").unwrap_err();
        assert_eq!(e.key, "server.listen", "{e}");
    }

    #[test]
    fn torrents_resolve_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.toml");
        std::fs::write(
            &path,
            "[[torrent]]\ntorrent = \"a.torrent\"\ndata = \"d\"\n",
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.torrents[0].torrent, dir.path().join("a.torrent"));
        assert_eq!(c.torrents[0].data, dir.path().join("d"));
    }
}
