//! `uringseed serve` as a long-running service: logging setup, the torrents to start with,
//! status lines on stdout, and runtime control — SIGINT/SIGTERM stop, SIGHUP reloads the
//! configuration file (adding and removing torrents without touching the others; a bad file is
//! rejected and the running set kept), an optional watch directory of .torrent files, and
//! systemd notifications ([`crate::notify`]).
//!
//! It drives the server only through [`crate::server::ServerHandle`] and never touches connections
//! or the torrent table directly.

use crate::config::Config;
use crate::metainfo::InfoHash;
use crate::notify::Notifier;
use crate::server::{self, ServerHandle, TorrentSpec};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// How often the watch directory is scanned.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// Longest one scan spends loading new .torrent files, so signals are never kept waiting
/// behind a directory of thousands of new files; the files it did not reach are loaded by the
/// scans after it.
pub const SCAN_BUDGET: Duration = Duration::from_millis(250);

/// Sets up `tracing` on stderr: text (colours on a terminal) or one JSON object per line.
pub fn init_logging(level: tracing::Level, json: bool) {
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// One status line on stdout; a closed stdout (`| head -1`) is ignored, never fatal.
pub fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Loads the `[[torrent]]` tables of a configuration.
pub fn config_specs(config: &Config) -> Result<Vec<TorrentSpec>, Box<dyn std::error::Error>> {
    let mut specs = Vec::new();
    for t in &config.torrents {
        let mut spec = TorrentSpec::load(&t.torrent, t.data.clone())?;
        spec.origin = crate::state::Origin::Config;
        spec.limits = crate::state::TorrentLimits {
            upload_rate: t.upload_rate_limit.0,
            upload_quota: t.upload_quota.0,
            super_seed: t.super_seed,
        };
        specs.push(spec);
    }
    Ok(specs)
}

/// Everything about a configuration that `serve` would refuse, short of binding sockets: its
/// torrents load (and none twice), its blocklist parses, its watch directory is a directory.
/// `serve` and `check-config` both run it, so they fail alike; it returns the torrents.
pub fn preflight(config: &Config) -> Result<Vec<TorrentSpec>, Box<dyn std::error::Error>> {
    let specs = config_specs(config)?;
    let mut seen = std::collections::HashSet::new();
    for s in &specs {
        if !seen.insert(s.torrent.info_hash) {
            return Err(format!(
                "torrent {} ({}) is configured twice",
                s.torrent.name, s.torrent.info_hash
            )
            .into());
        }
    }
    let blocklist = &config.server.blocklist;
    if !blocklist.as_os_str().is_empty() {
        crate::blocklist::Blocklist::load(blocklist)
            .map_err(|e| format!("server.blocklist: {e}"))?;
    }
    let dir = &config.watch.dir;
    // A directory that does not exist yet is watched for (and warned about); anything else
    // that is not a directory cannot ever be one.
    if !dir.as_os_str().is_empty() && dir.exists() && !dir.is_dir() {
        return Err(format!("watch.dir {}: not a directory", dir.display()).into());
    }
    Ok(specs)
}

/// A torrent made once the listeners are up (`serve PATH` hashes PATH): a port that is taken
/// fails the start before any hashing.
/// It is given the addresses the server bound (ports resolved), which the torrent may name.
pub type Late = Box<dyn FnOnce(&Bound) -> Result<TorrentSpec, Box<dyn std::error::Error>>>;

/// The addresses a started server listens on, as a torrent made for it may name them.
#[derive(Debug, Clone, Default)]
pub struct Bound {
    pub webseed: Vec<std::net::SocketAddr>,
    pub tracker: Vec<std::net::SocketAddr>,
}

/// Serves until SIGINT/SIGTERM. `config_path` is re-read on SIGHUP; `pinned` are torrents from
/// the command line, kept across reloads, and so is `late`, made after the listeners are bound
/// (if it fails, the server stops and that error is returned).
pub fn run(
    config: Config,
    config_path: Option<PathBuf>,
    pinned: Vec<TorrentSpec>,
    late: Option<Late>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut specs = preflight(&config)?;
    let from_config: Vec<InfoHash> = specs.iter().map(|s| s.torrent.info_hash).collect();
    specs.extend(pinned);
    let watch = config.watch.clone();
    let mut handle = server::start(config, specs)?;
    if let Some(interval) = crate::notify::watchdog_interval() {
        handle
            .start_watchdog(Notifier::from_env(), interval)
            .map_err(server::StartError::from)?;
    }
    for addr in &handle.local_addrs {
        say(format_args!("listening: {addr}"));
    }
    if let Some(m) = handle.metrics_addr {
        say(format_args!("metrics: http://{m}/metrics"));
        if let Some(api) = &handle.api {
            say(format_args!(
                "api: http://{m}/ (page), http://{m}/api/v1/ (token in {})",
                api.token_path.display()
            ));
        }
    }
    for addr in &handle.webseed_addrs {
        say(format_args!("webseed listening: {addr}"));
    }
    for addr in &handle.tracker_addrs {
        say(format_args!("tracker listening: {addr} (http and udp)"));
    }
    if let Some(make) = late {
        let bound = Bound {
            webseed: handle.webseed_addrs.clone(),
            tracker: handle.tracker_addrs.clone(),
        };
        match make(&bound) {
            Ok(spec) => {
                handle.add_torrent(spec);
            }
            Err(e) => {
                handle.shutdown();
                return Err(e);
            }
        }
    }
    // READY=1 as soon as peers can connect: checking terabytes may take longer than any start
    // timeout, and /readyz says when every torrent has been checked.
    let notify = Notifier::from_env();
    notify.ready(&format!(
        "listening on {}; checking data",
        handle
            .local_addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut ready = handle.subscribe_ready();
    let mut control = Control {
        handle: &handle,
        notify: &notify,
        config_path,
        from_config,
        watched: HashMap::new(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => control.reload(),
                Some(r) = ready.recv() => control.announce_ready(&r),
                _ = tick.tick() => {
                    if !watch.dir.as_os_str().is_empty() {
                        control.scan(&watch.dir, &watch.data);
                    }
                }
            }
        }
        Ok::<(), std::io::Error>(())
    })?;
    tracing::info!("shutting down");
    notify.stopping();
    handle.shutdown();
    Ok(())
}

struct Control<'a> {
    handle: &'a ServerHandle,
    notify: &'a Notifier,
    config_path: Option<PathBuf>,
    /// Torrents that came from the configuration file (a reload may remove them).
    from_config: Vec<InfoHash>,
    /// Watch directory entries: path → (modification time, info-hash once loaded).
    watched: HashMap<PathBuf, (SystemTime, Option<InfoHash>)>,
}

impl Control<'_> {
    /// A torrent finished its check: the `ready:` line and the service status.
    fn announce_ready(&self, r: &crate::server::Ready) {
        let good = r.pieces - r.bad_pieces;
        say(format_args!(
            "ready: {} {} ({good} of {} pieces good)",
            r.info_hash, r.name, r.pieces
        ));
        self.notify.status(&format!(
            "seeding {} torrent(s); last checked: {} ({good} of {} pieces good)",
            self.handle.shared.torrents.live_count(),
            r.name,
            r.pieces
        ));
    }

    /// Re-reads the configuration file; applies its torrent list, or keeps everything as it is
    /// if the file is bad.
    fn reload(&mut self) {
        self.notify.reloading();
        let outcome = self.apply_reload();
        self.notify.ready(&format!(
            "{outcome}; seeding {} torrent(s)",
            self.handle.shared.torrents.live_count()
        ));
    }

    /// The reload itself; returns a short outcome for the service status.
    fn apply_reload(&mut self) -> &'static str {
        match self.handle.reload_blocklist() {
            Ok(0) => {}
            Ok(n) => tracing::info!("blocklist reloaded: {n} ranges"),
            Err(e) => tracing::error!("blocklist reload rejected, keeping the old list: {e}"),
        }
        let Some(path) = &self.config_path else {
            tracing::info!("SIGHUP: no configuration file to reload");
            return "no configuration file to reload";
        };
        let (new_server, new) = match Config::load(path).map_err(|e| e.to_string()).and_then(|c| {
            Ok((
                c.server.clone(),
                config_specs(&c).map_err(|e| e.to_string())?,
            ))
        }) {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!("reload rejected, keeping the running configuration: {e}");
                return "reload rejected (see the log), running configuration kept";
            }
        };
        self.handle.set_limits(
            &new_server,
            &new.iter()
                .map(|s| (s.torrent.info_hash, s.limits))
                .collect::<Vec<_>>(),
        );
        let wanted: Vec<InfoHash> = new.iter().map(|s| s.torrent.info_hash).collect();
        let (wanted_set, had): (HashSet<&InfoHash>, HashSet<InfoHash>) = (
            wanted.iter().collect(),
            self.from_config.iter().copied().collect(),
        );
        for ih in self
            .from_config
            .iter()
            .filter(|ih| !wanted_set.contains(ih))
        {
            if self.handle.remove_torrent(ih) {
                tracing::info!(info_hash = %ih, "reload: torrent removed");
            }
        }
        for spec in new {
            if !had.contains(&spec.torrent.info_hash) && self.handle.add_torrent(spec.clone()) {
                tracing::info!(torrent = %spec.torrent.name, "reload: torrent added");
            }
        }
        self.from_config = wanted;
        tracing::info!(
            "configuration reloaded (torrents and upload limits; other settings apply at restart)"
        );
        "configuration reloaded"
    }

    /// Seeds new .torrent files in the watch directory and stops those whose file went away.
    /// Linear in the directory's entries; only regular files (or links to them) are opened, and
    /// anything else named `*.torrent` is reported once and left alone.
    fn scan(&mut self, dir: &Path, data: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            tracing::warn!("watch directory {} cannot be read", dir.display());
            return;
        };
        let started = Instant::now();
        let mut present = HashSet::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "torrent") {
                continue;
            }
            // The entry's own time (a link's, not its target's): a symbolic-link loop has one.
            let Ok(mtime) = e.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            present.insert(path.clone());
            if self.watched.get(&path).is_some_and(|(t, _)| *t == mtime) {
                continue;
            }
            match crate::fsread::is_regular(&path) {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!("watch: {}: not a regular file, ignored", path.display());
                    self.watched.insert(path, (mtime, None));
                    continue;
                }
                Err(e) => {
                    tracing::warn!("watch: {}: {e}, ignored", path.display());
                    self.watched.insert(path, (mtime, None));
                    continue;
                }
            }
            if started.elapsed() > SCAN_BUDGET {
                // Left for the next scan, still counted as present.
                continue;
            }
            // New or rewritten: (re)load it; a half-copied file fails now and is retried
            // when its modification time changes.
            let previous = self.watched.get(&path).and_then(|(_, ih)| *ih);
            let loaded = match TorrentSpec::load(&path, data.to_path_buf()) {
                Ok(mut spec) => {
                    spec.origin = crate::state::Origin::Watch;
                    let ih = spec.torrent.info_hash;
                    if previous != Some(ih) {
                        if let Some(old) = previous {
                            self.handle.remove_torrent(&old);
                        }
                        if self.handle.add_torrent(spec) {
                            tracing::info!(file = %path.display(), "watch: seeding");
                        }
                    }
                    Some(ih)
                }
                Err(e) => {
                    tracing::warn!("watch: {e}");
                    previous
                }
            };
            self.watched.insert(path, (mtime, loaded));
        }
        let gone: Vec<PathBuf> = self
            .watched
            .keys()
            .filter(|p| !present.contains(*p))
            .cloned()
            .collect();
        for path in gone {
            if let Some((_, Some(ih))) = self.watched.remove(&path) {
                if self.handle.remove_torrent(&ih) {
                    tracing::info!(file = %path.display(), "watch: file removed, torrent stopped");
                }
            }
        }
    }
}
