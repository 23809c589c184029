//! Command line entry point: `uringseed serve`, `make`, `verify`, `magnet`, `check-config` and
//! `ctl` (the control API's client, in `ctl/`).
//!
//! It parses the command line and calls the library; it holds no logic of its own beyond printing.

mod ctl;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use uringseed::config::Config;
use uringseed::daemon;
use uringseed::make::{self, MakeOptions};
use uringseed::server::{StartError, TorrentSpec};
use uringseed::storage::files::DataFiles;
use uringseed::storage::verify::check;
use uringseed::storage::Layout;

#[derive(Parser)]
#[command(
    name = "uringseed",
    version,
    about = "A BitTorrent seeding server on io_uring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a .torrent from a file or directory; prints the info-hash.
    Make {
        /// File or directory to make a torrent of.
        path: PathBuf,
        /// Where to write the .torrent (replaced if it exists); default: NAME.torrent in the
        /// current directory, never overwritten without --force.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Overwrite NAME.torrent if it exists (without -o).
        #[arg(short, long)]
        force: bool,
        /// The torrent's name instead of PATH's file name.
        #[arg(long)]
        name: Option<String>,
        /// Web seed URL (BEP 19 url-list; http or https); repeatable.
        #[arg(short = 'w', long = "web-seed", value_name = "URL")]
        web_seeds: Vec<String>,
        /// Tracker URL; repeat for more tiers; commas inside one value make one tier.
        #[arg(short = 't', long = "tracker")]
        trackers: Vec<String>,
        /// Piece length in bytes (power of two, at least 16384); chosen from the size if absent.
        #[arg(long)]
        piece_length: Option<u64>,
        /// Mark the torrent private (BEP 27): peers only from its trackers.
        #[arg(long)]
        private: bool,
        #[arg(long)]
        comment: Option<String>,
        /// `source` key in the info dictionary (private trackers use it to make hashes unique).
        #[arg(long)]
        source: Option<String>,
        /// Record the current time as `creation date` (off by default: output is deterministic).
        #[arg(long)]
        date: bool,
        /// Hashing threads (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// No progress display.
        #[arg(short, long)]
        quiet: bool,
        /// A BitTorrent v2 torrent (BEP 52: SHA-256 merkle trees), for v2 clients only.
        #[arg(long, conflicts_with = "hybrid")]
        v2: bool,
        /// A hybrid torrent: v1 and v2 hashes of the same files, one swarm for both kinds of
        /// client (what libtorrent 2 makes by default).
        #[arg(long)]
        hybrid: bool,
    },
    /// Seed: a file or directory (a torrent is made for it), one --torrent with --data, or the
    /// torrents of a --config file.
    Serve(Box<ServeArgs>),
    /// Check a torrent's data: prints a summary (or JSON); exit status 1 if any piece is bad or
    /// any file missing or of the wrong size.
    Verify {
        /// The .torrent file.
        #[arg(long)]
        torrent: PathBuf,
        /// Directory holding the torrent's content (as for serve).
        #[arg(long)]
        data: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Hashing threads (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// No progress display.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print a torrent's magnet link (info-hash, name, total length and every tracker).
    Magnet {
        /// The .torrent file.
        torrent: PathBuf,
    },
    /// Check a configuration file and print the effective settings.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
    /// Control a running server through its API: list, show, add, rm, pause, resume, limit...
    Ctl(ctl::Args),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// File or directory to seed; its .torrent is written to the current directory (or
    /// --torrent-out) and its path, info-hash and magnet link are printed.
    path: Option<PathBuf>,
    /// A .torrent file to seed (with --data).
    #[arg(long, requires = "data", conflicts_with = "path")]
    torrent: Option<PathBuf>,
    /// Directory holding the torrent's content (single-file: DIR/NAME; multi-file: DIR/NAME/...).
    #[arg(long, requires = "torrent")]
    data: Option<PathBuf>,
    /// TOML configuration file (settings, and torrents in [[torrent]] tables).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (repeatable); default: all addresses, first free port of 6881-6889.
    #[arg(long)]
    listen: Vec<std::net::SocketAddr>,
    /// Worker threads (0 = one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Peers unchoked at once per torrent (0 = unlimited).
    #[arg(long)]
    upload_slots: Option<usize>,
    /// Upload cap for the whole server, bytes per second: a number, or with a unit (k, M, G =
    /// 1000^n; KiB, MiB, GiB = 1024^n), e.g. 10MiB; 0 = unlimited (default: server.upload_rate_limit).
    #[arg(long, value_name = "RATE")]
    upload_limit: Option<String>,
    /// Message Stream Encryption: enabled, required or disabled (default: server.encryption,
    /// "enabled").
    #[arg(long, value_parser = ["enabled", "required", "disabled"])]
    encryption: Option<String>,
    /// Super-seeding (BEP 16) for every torrent (seeding.super_seed): one rare piece offered
    /// to each leecher at a time, for a new swarm with one seed.
    #[arg(long)]
    super_seed: bool,
    /// How upload slots are handed out (seeding.choker): round_robin, or anti_leech (peers
    /// just starting and almost done first).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
        uringseed::config::ChokerMode::NAMES.map(|(n, _)| n)))]
    choker: Option<String>,
    /// With PATH: where to write the .torrent.
    #[arg(long)]
    torrent_out: Option<PathBuf>,
    /// With PATH: the torrent's hashes: v1 (default), v2 or hybrid (BEP 52, as `make --v2`).
    #[arg(long, value_parser = ["v1", "v2", "hybrid"], requires = "path")]
    format: Option<String>,
    /// With PATH: tracker URLs for the made torrent (repeatable).
    #[arg(short = 't', long = "tracker")]
    trackers: Vec<String>,
    /// Serve the torrents' data over HTTP (BEP 19 web seed) on this address (repeatable;
    /// default: webseed.listen). With PATH, the made torrent's url-list names it.
    #[arg(long, value_name = "ADDR:PORT")]
    webseed: Vec<std::net::SocketAddr>,
    /// Run the built-in tracker (HTTP and UDP) on this address (repeatable; default:
    /// tracker_server.listen). With PATH, the made torrent announces to it.
    #[arg(long, value_name = "ADDR:PORT")]
    tracker_listen: Vec<std::net::SocketAddr>,
    /// With PATH: the URL clients reach this host at (http[s]://HOST[:PORT][/PREFIX]), for the
    /// made torrent's url-list and tracker (needed when --webseed or --tracker-listen is a
    /// wildcard address).
    #[arg(long, value_name = "URL", requires = "path")]
    public_url: Option<String>,
    /// Serve Prometheus metrics on this address (default 127.0.0.1:9437, or metrics.listen).
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
    /// Log level: error, warn, info, debug or trace (default: log.level, "info").
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(uringseed::config::LOG_LEVELS))]
    log_level: Option<String>,
    /// Log format: text or json (default: log.format, "text").
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(uringseed::config::LOG_FORMATS))]
    log_format: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // Commands that only print: a closed stdout (`| head -1`) ends them quietly, as it
        // ends cat or grep, instead of a panic in println!. The server keeps SIGPIPE ignored
        // (a peer that hangs up must never kill it) and ignores failed stdout writes instead.
        restore_default_sigpipe();
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("uringseed: error: {e}");
            let temporary = e.downcast_ref::<StartError>().is_some_and(|s| s.temporary);
            ExitCode::from(if temporary {
                EXIT_TEMPORARY
            } else {
                EXIT_CONFIG
            })
        }
    }
}

/// Exit status for bad configuration, torrents, paths or usage: starting again cannot help
/// (the systemd unit's RestartPreventExitStatus=2).
const EXIT_CONFIG: u8 = 2;
/// Exit status for a start-up failure that may pass by itself (an address in use or not
/// there yet, the metrics port taken): a restart may help.
const EXIT_TEMPORARY: u8 = 3;

fn run(command: Command) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match command {
        Command::Make {
            path,
            output,
            force,
            name,
            web_seeds,
            trackers,
            piece_length,
            private,
            comment,
            source,
            date,
            threads,
            quiet,
            v2,
            hybrid,
        } => {
            let tiers = tiers(&trackers);
            let creation_date = date.then(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64)
            });
            let opts = MakeOptions {
                path,
                trackers: tiers,
                piece_length,
                private,
                comment,
                source,
                creation_date,
                threads,
                quiet,
                name,
                web_seeds,
                format: match (v2, hybrid) {
                    (true, _) => make::Format::V2,
                    (_, true) => make::Format::Hybrid,
                    _ => make::Format::V1,
                },
            };
            // Like mktorrent: the default output never replaces a file, and that is known
            // before any hashing.
            let (output, replace) = match output {
                Some(o) => (o, true),
                None => (
                    PathBuf::from(format!("{}.torrent", make::torrent_name(&opts)?)),
                    force,
                ),
            };
            let exists = |out: &Path| {
                format!(
                    "{}: already exists (--force to overwrite it, or -o FILE)",
                    out.display()
                )
            };
            if !replace && output.exists() {
                return Err(exists(&output).into());
            }
            let (bytes, torrent) = make::make(&opts)?;
            let written = if replace {
                uringseed::storage::atomic::write_atomic(&output, &bytes)
            } else {
                uringseed::storage::atomic::write_new(&output, &bytes)
            };
            written.map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => exists(&output),
                _ => format!("{}: cannot write: {e}", output.display()),
            })?;
            println!("{}", torrent.info_hash);
            if let (Some(v2), false) = (&torrent.v2, quiet) {
                eprintln!("v2 info-hash: {}", uringseed::metainfo::hex(&v2.info_hash));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => serve(*args),
        Command::Verify {
            torrent,
            data,
            json,
            threads,
            quiet,
        } => verify(&torrent, &data, json, threads, quiet),
        Command::Magnet { torrent } => {
            println!("{}", uringseed::metainfo::load(&torrent)?.magnet());
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { file } => check_config(&file),
        Command::Ctl(args) => Ok(ctl::run(args)),
    }
}

/// `check-config FILE`: fails as `serve --config FILE` would (bad keys or values, torrents that
/// do not load, a blocklist that does not parse, a watch directory that is a file), else prints
/// the effective settings as TOML (defaults filled in, relative paths resolved).
fn check_config(file: &Path) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let config = Config::load(file)?;
    let specs = daemon::preflight(&config)?;
    let text = toml::to_string(&config).map_err(|e| format!("{}: {e}", file.display()))?;
    println!(
        "# Effective configuration of {} (defaults filled in, relative paths resolved).",
        file.display()
    );
    println!("# {} torrent(s) load.", specs.len());
    if config.metrics.listen.is_none() && config.metrics.enabled {
        println!(
            "# metrics.listen is not set: {} if that port is free.",
            uringseed::config::DEFAULT_METRICS_LISTEN
        );
    }
    let dir = &config.watch.dir;
    if !dir.as_os_str().is_empty() && !dir.exists() {
        eprintln!(
            "uringseed: warning: watch.dir {} does not exist (yet); serve watches for it",
            dir.display()
        );
    }
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn restore_default_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn tiers(trackers: &[String]) -> Vec<Vec<String>> {
    trackers
        .iter()
        .map(|t| {
            t.split(',')
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect()
        })
        .filter(|tier: &Vec<String>| !tier.is_empty())
        .collect()
}

fn serve(args: ServeArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if !args.listen.is_empty() {
        config.server.listen = args.listen.clone();
    }
    if let Some(w) = args.workers {
        config.server.workers = w;
    }
    if let Some(u) = args.upload_slots {
        config.server.upload_slots = u;
    }
    if let Some(r) = &args.upload_limit {
        let rate = uringseed::units::parse_rate(r).map_err(|e| format!("--upload-limit: {e}"))?;
        config.server.upload_rate_limit = uringseed::units::ByteRate(rate);
    }
    if let Some(e) = &args.encryption {
        use uringseed::config::Encryption;
        config.server.encryption = match e.as_str() {
            "required" => Encryption::Required,
            "disabled" => Encryption::Disabled,
            _ => Encryption::Enabled,
        };
    }
    if let Some(mode) = args
        .choker
        .as_deref()
        .and_then(uringseed::config::ChokerMode::from_name)
    {
        config.seeding.choker = mode;
    }
    if args.super_seed {
        config.seeding.super_seed = uringseed::config::SuperSeedMode::On;
    }
    if !args.webseed.is_empty() {
        config.webseed.listen = args.webseed.clone();
    }
    if !args.tracker_listen.is_empty() {
        config.tracker_server.listen = args.tracker_listen.clone();
    }
    if let Some(m) = args.metrics {
        config.metrics.enabled = true;
        config.metrics.listen = Some(m);
        // One HTTP server: the API moves with it.
        config.api.listen = Some(m);
    }
    if let Some(l) = &args.log_level {
        config.log.level = l.clone();
    }
    if let Some(f) = &args.log_format {
        config.log.format = f.clone();
    }
    config.validate("command line")?;
    let level = config.log.level.parse().unwrap_or(tracing::Level::INFO);
    daemon::init_logging(level, config.log.format == "json");
    let mut pinned = Vec::new();
    if let (Some(torrent), Some(data)) = (&args.torrent, &args.data) {
        pinned.push(TorrentSpec::load(torrent, data.clone())?);
    }
    let mut late: Option<daemon::Late> = None;
    if let Some(path) = args.path.clone() {
        // A public URL that cannot be used fails now, before anything is bound.
        uringseed::publish::urls(
            args.public_url.as_deref(),
            config.webseed.listen.first().copied(),
            config.tracker_server.listen.first().copied(),
        )?;
        let mut opts = MakeOptions {
            path: path.clone(),
            trackers: tiers(&args.trackers),
            threads: config.hashing.threads,
            format: match args.format.as_deref() {
                Some("v2") => make::Format::V2,
                Some("hybrid") => make::Format::Hybrid,
                _ => make::Format::V1,
            },
            ..Default::default()
        };
        // A path that cannot be read fails now; the hashing waits until the listeners are up.
        make::torrent_name(&opts)?;
        let torrent_out = args.torrent_out.clone();
        let public_url = args.public_url.clone();
        late = Some(Box::new(move |bound: &daemon::Bound| {
            // The made torrent names this server's own web seed and tracker (when on), at the
            // ports they were bound to.
            let published = uringseed::publish::urls(
                public_url.as_deref(),
                bound.webseed.first().copied(),
                bound.tracker.first().copied(),
            )?;
            if !published.tracker_tier.is_empty() {
                opts.trackers.insert(0, published.tracker_tier);
            }
            opts.web_seeds = published.web_seeds;
            let (bytes, torrent) = make::make(&opts)?;
            let out =
                torrent_out.unwrap_or_else(|| PathBuf::from(format!("{}.torrent", torrent.name)));
            uringseed::storage::atomic::write_atomic(&out, &bytes)
                .map_err(|e| format!("{}: cannot write: {e}", out.display()))?;
            let data_dir = path
                .canonicalize()?
                .parent()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/"));
            daemon::say(format_args!("torrent: {}", out.display()));
            daemon::say(format_args!("info-hash: {}", torrent.info_hash));
            for url in &opts.web_seeds {
                daemon::say(format_args!("web seed: {url}"));
            }
            daemon::say(format_args!("magnet: {}", torrent.magnet()));
            Ok(TorrentSpec {
                torrent,
                data_dir,
                just_hashed: true,
                limits: Default::default(),
                origin: Default::default(),
                force_check: false,
            })
        }));
    }
    if pinned.is_empty()
        && late.is_none()
        && config.torrents.is_empty()
        && config.watch.dir.as_os_str().is_empty()
        // A configuration file with the API on may start empty: torrents come through it.
        && !(args.config.is_some() && config.api.enabled)
    {
        return Err("nothing to seed: give PATH, --torrent with --data, or --config with [[torrent]] tables, a watch directory or the API".into());
    }
    daemon::run(config, args.config.clone(), pinned, late)?;
    Ok(ExitCode::SUCCESS)
}

fn verify(
    torrent: &Path,
    data: &Path,
    json: bool,
    threads: usize,
    quiet: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let t = uringseed::metainfo::load(torrent)?;
    let layout = Layout::new(&t);
    let progress = uringseed::progress::Progress::start("verifying", t.total_length, quiet || json);
    let files = DataFiles::open(&layout, data);
    let never = std::sync::atomic::AtomicBool::new(false);
    let report = check(&t, &layout, &files, None, threads, &progress.done, &never);
    progress.finish();
    let bad_by_file: std::collections::HashMap<usize, usize> =
        report.bad_files(&layout).into_iter().collect();
    let problem_of: std::collections::HashMap<usize, &str> = report
        .problems
        .iter()
        .map(|p| (p.file, p.reason.as_str()))
        .collect();
    let files: Vec<serde_json::Value> = layout
        .files()
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.pad)
        .map(|(i, f)| {
            let problem = problem_of.get(&i).copied();
            serde_json::json!({
                "path": f.rel_path.display().to_string(),
                "length": f.length,
                "problem": problem,
                "bad_pieces": bad_by_file.get(&i).copied().unwrap_or(0),
            })
        })
        .collect();
    let ok = report.bad_pieces.is_empty() && report.problems.is_empty();
    let n = t.num_pieces();
    if json {
        let out = serde_json::json!({
            "torrent": torrent.display().to_string(),
            "info_hash": t.info_hash.to_hex(),
            "name": t.name,
            "pieces": n,
            "good_pieces": n - report.bad_pieces.len(),
            "bad_pieces": report.bad_pieces,
            "files": files,
            "ok": ok,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("torrent: {} ({})", t.name, t.info_hash);
        println!(
            "pieces: {n} total, {} good, {} bad",
            n - report.bad_pieces.len(),
            report.bad_pieces.len()
        );
        if !report.bad_pieces.is_empty() {
            let list: Vec<String> = report
                .bad_pieces
                .iter()
                .take(50)
                .map(ToString::to_string)
                .collect();
            let more = if report.bad_pieces.len() > 50 {
                " ..."
            } else {
                ""
            };
            println!("bad pieces: {}{more}", list.join(" "));
        }
        for p in &report.problems {
            println!(
                "file {}: {}",
                layout.files()[p.file].rel_path.display(),
                p.reason
            );
        }
        // A missing or wrong-sized file's pieces are all bad: it was named above.
        for (i, bad) in report
            .bad_files(&layout)
            .into_iter()
            .filter(|(i, _)| !problem_of.contains_key(i))
        {
            println!(
                "file {}: {bad} bad piece(s)",
                layout.files()[i].rel_path.display()
            );
        }
        println!("result: {}", if ok { "OK" } else { "BAD" });
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
