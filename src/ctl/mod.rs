//! `uringseed ctl`: the command line on the control API (`/api/v1`). It owns the subcommands,
//! where the API and its token are found (--url, --token-file, URINGSEED_TOKEN, --config), the
//! mapping of HTTP answers to exit codes and the make-and-seed wait; [`http`] is its client and
//! [`show`] prints what the API answers for people.

mod http;
mod show;

use clap::Subcommand;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use uringseed::config::Config;

const EXIT_HELP: &str = "\
ctl talks plain HTTP (no TLS) to the API, on loopback by default.

Exit status:
  0  done
  1  the API refused the request (its message is printed)
  2  bad arguments
  3  the server cannot be reached, the token file is missing, the server failed (5xx),
     or a made torrent did not appear within --wait
  4  unauthorized: wrong token (401)";

/// The command line on the control API.
#[derive(clap::Args)]
#[command(after_help = EXIT_HELP)]
pub struct Args {
    /// The API's address (default: --config's api.listen, else its metrics.listen, else
    /// http://127.0.0.1:9437).
    #[arg(long, global = true)]
    url: Option<String>,
    /// The server's configuration file, for the address and the token file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// File holding the token (without it: URINGSEED_TOKEN if set, else --config's api.token_file,
    /// else <state_dir>/api-token).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// Print the API's JSON as it is (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The server: version, torrents, peers, upload rate, listen addresses.
    Status,
    /// Every torrent: info-hash, state, progress, size, peers, upload rate, uploaded, name.
    List,
    /// One torrent, its trackers and its peers.
    Show { info_hash: String },
    /// Seed a .torrent (with --data DIR), or make a torrent of a file or directory and seed it.
    Add {
        /// A .torrent file (with --data), or a file or directory to make a torrent of.
        path: PathBuf,
        /// Directory holding the torrent's content (under the server's api.data_roots).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Making: seconds to wait for the torrent to appear (0: do not wait).
        #[arg(long, default_value_t = 600)]
        wait: u64,
    },
    /// Stop seeding a torrent added through the API or the command line.
    Rm { info_hash: String },
    /// Pause a torrent (its peers are dropped); kept across restarts.
    Pause { info_hash: String },
    /// Resume a paused torrent.
    Resume { info_hash: String },
    /// Check a torrent's data again.
    Recheck { info_hash: String },
    /// Announce to the torrent's trackers now.
    Reannounce { info_hash: String },
    /// Set a torrent's upload limit (`limit IH 1M`), or the server's (`limit --global 10MiB`,
    /// `limit --slots 8`). Rates: a number of bytes per second or with a unit (k, M, G; KiB,
    /// MiB, GiB); 0 = none.
    Limit {
        /// The torrent's info-hash (none with --global or --slots).
        info_hash: Option<String>,
        /// Upload rate limit.
        rate: Option<String>,
        /// Change the server's settings instead of a torrent's.
        #[arg(long)]
        global: bool,
        /// Upload quota per period (bytes, with a unit).
        #[arg(long)]
        quota: Option<String>,
        /// Peers unchoked at once per torrent (0 = unlimited; server-wide).
        #[arg(long)]
        slots: Option<u64>,
    },
    /// The server's settings: upload limit, quota, slots, data roots.
    Settings,
}

/// A failure: the exit status and what to print.
struct Fail {
    code: u8,
    msg: String,
}

fn bad(msg: impl Into<String>) -> Fail {
    Fail {
        code: 2,
        msg: msg.into(),
    }
}

fn env_fail(msg: impl Into<String>) -> Fail {
    Fail {
        code: 3,
        msg: msg.into(),
    }
}

pub fn run(args: Args) -> ExitCode {
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("uringseed ctl: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}

/// The API, its token and how to print.
struct Client {
    ep: http::Endpoint,
    token: String,
    json: bool,
}

fn run_inner(args: Args) -> Result<(), Fail> {
    let config = match &args.config {
        Some(p) => Some(Config::load(p).map_err(|e| bad(e.to_string()))?),
        None => None,
    };
    let url = match &args.url {
        Some(u) => u.clone(),
        None => {
            let (mut addr, _) = config.clone().unwrap_or_default().http_listen();
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            format!("http://{addr}")
        }
    };
    let ep = http::Endpoint::parse(&url).map_err(bad)?;
    // Arguments are checked before the token is read: a typo is exit 2 wherever it runs.
    check_args(&args.cmd)?;
    let token = token(args.token_file.as_deref(), config.as_ref())?;
    let c = Client {
        ep,
        token,
        json: args.json,
    };
    match args.cmd {
        Cmd::Status => {
            let v = c.call("GET", "/status", None)?;
            c.out(&v, show::status);
        }
        Cmd::List => {
            let v = c.call("GET", "/torrents", None)?;
            c.out(&v, show::list);
        }
        Cmd::Show { info_hash } => {
            let v = c.call("GET", &format!("/torrents/{}", ih(&info_hash)?), None)?;
            c.out(&v, show::torrent);
        }
        Cmd::Add { path, data, wait } => add(&c, &path, data.as_deref(), wait)?,
        Cmd::Rm { info_hash } => {
            let ih = ih(&info_hash)?;
            let v = c.call("DELETE", &format!("/torrents/{ih}"), None)?;
            c.out(&v, |_| println!("removed {ih}"));
        }
        Cmd::Pause { info_hash } => c.action(&info_hash, "pause")?,
        Cmd::Resume { info_hash } => c.action(&info_hash, "resume")?,
        Cmd::Recheck { info_hash } => c.action(&info_hash, "recheck")?,
        Cmd::Reannounce { info_hash } => c.action(&info_hash, "reannounce")?,
        Cmd::Limit {
            info_hash,
            rate,
            global,
            quota,
            slots,
        } => limit(&c, info_hash, rate, global, quota, slots)?,
        Cmd::Settings => {
            let v = c.call("GET", "/settings", None)?;
            c.out(&v, show::settings);
        }
    }
    Ok(())
}

/// What can be known wrong without the server.
fn check_args(cmd: &Cmd) -> Result<(), Fail> {
    match cmd {
        Cmd::Show { info_hash }
        | Cmd::Rm { info_hash }
        | Cmd::Pause { info_hash }
        | Cmd::Resume { info_hash }
        | Cmd::Recheck { info_hash }
        | Cmd::Reannounce { info_hash } => ih(info_hash).map(drop),
        Cmd::Limit {
            info_hash,
            rate,
            global,
            quota,
            slots,
        } => limit_body(info_hash, rate, *global, quota, *slots).map(drop),
        Cmd::Add { data, path, .. } => {
            if data.is_none() && path.extension().is_some_and(|e| e == "torrent") && path.is_file()
            {
                return Err(bad(format!(
                    "{}: a .torrent needs --data DIR (the directory holding its content)",
                    path.display()
                )));
            }
            Ok(())
        }
        Cmd::Status | Cmd::List | Cmd::Settings => Ok(()),
    }
}

/// An info-hash as the API wants it: 40 hex digits, lower case.
fn ih(s: &str) -> Result<String, Fail> {
    if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(bad(format!("{s:?}: not an info-hash (40 hex digits)")))
    }
}

/// The token: --token-file, URINGSEED_TOKEN, the config's api.token_file, the state directory's
/// api-token; a missing file is exit 3 (the server may not have made it yet).
fn token(flag: Option<&Path>, config: Option<&Config>) -> Result<String, Fail> {
    let path = match flag {
        Some(p) => p.to_path_buf(),
        None => {
            if let Ok(t) = std::env::var("URINGSEED_TOKEN") {
                if !t.trim().is_empty() {
                    return Ok(t.trim().to_string());
                }
            }
            let default = Config::default();
            let config = config.unwrap_or(&default);
            if !config.api.token_file.as_os_str().is_empty() {
                config.api.token_file.clone()
            } else {
                config
                    .server
                    .state_dir()
                    .ok_or_else(|| {
                        env_fail("no state directory for the token: give --token-file or --config")
                    })?
                    .join("api-token")
            }
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        env_fail(format!(
            "token file {}: {e} (the server makes it at its first start; or give --token-file, \
             or URINGSEED_TOKEN)",
            path.display()
        ))
    })?;
    let t = text.trim();
    if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(format!(
            "token file {}: not one line holding the token",
            path.display()
        )));
    }
    Ok(t.to_string())
}

impl Client {
    /// A request to `/api/v1{path}` with a JSON body; the answer's JSON on 2xx, else the exit
    /// status of its class with the API's message.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Fail> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let ct = if body.is_some() {
            "application/json"
        } else {
            "text/plain"
        };
        self.send(method, path, ct, &bytes)
    }

    fn send(&self, method: &str, path: &str, ct: &str, body: &[u8]) -> Result<Value, Fail> {
        let auth = format!("Bearer {}", self.token);
        let r = http::request(
            &self.ep,
            method,
            &format!("/api/v1{path}"),
            &[
                ("Authorization", &auth),
                ("Content-Type", ct),
                ("Accept", "application/json"),
            ],
            body,
        )
        .map_err(env_fail)?;
        let v: Option<Value> = serde_json::from_slice(&r.body).ok();
        if (200..300).contains(&r.status) {
            return v.ok_or_else(|| {
                env_fail(format!(
                    "{method} {path}: HTTP {} with a body that is not JSON",
                    r.status
                ))
            });
        }
        if self.json && v.is_some() {
            println!("{}", String::from_utf8_lossy(&r.body));
        }
        let msg = v
            .as_ref()
            .and_then(|v| v["error"]["message"].as_str())
            .map(String::from)
            .unwrap_or_else(|| String::from_utf8_lossy(&r.body).trim().to_string());
        let code = match r.status {
            401 => 4,
            400..=499 => 1,
            _ => 3,
        };
        Err(Fail {
            code,
            msg: format!("HTTP {}: {msg}", r.status),
        })
    }

    /// Prints the API's JSON as it is (--json), or for people.
    fn out(&self, v: &Value, human: impl FnOnce(&Value)) {
        if self.json {
            println!("{v}");
        } else {
            human(v);
        }
    }

    fn action(&self, info_hash: &str, action: &str) -> Result<(), Fail> {
        let ih = ih(info_hash)?;
        let v = self.call("POST", &format!("/torrents/{ih}/{action}"), None)?;
        self.out(&v, |v| {
            println!("{ih}: {}", v["state"].as_str().unwrap_or("?"));
        });
        Ok(())
    }
}

/// The PATCH of `limit`: the route (a torrent's or the settings) and its body.
fn limit_body(
    info_hash: &Option<String>,
    rate: &Option<String>,
    global: bool,
    quota: &Option<String>,
    slots: Option<u64>,
) -> Result<(String, Value), Fail> {
    let global = global || slots.is_some() && info_hash.is_none();
    let (target, rate) = if global {
        if rate.is_some() {
            return Err(bad("limit --global takes one RATE, no info-hash"));
        }
        (None, info_hash.clone())
    } else {
        let Some(ih) = info_hash else {
            return Err(bad("limit: give IH RATE, or --global RATE, or --slots N"));
        };
        if slots.is_some() {
            return Err(bad(
                "--slots is server-wide: limit --slots N, without an info-hash",
            ));
        }
        (Some(self::ih(ih)?), rate.clone())
    };
    let mut body = json!({});
    if let Some(r) = rate {
        let n = uringseed::units::parse_rate(&r).map_err(|e| bad(format!("RATE: {e}")))?;
        body["upload_rate_limit"] = n.into();
    }
    if let Some(q) = quota {
        let n = uringseed::units::parse_bytes(q).map_err(|e| bad(format!("--quota: {e}")))?;
        body["upload_quota"] = n.into();
    }
    if let Some(s) = slots {
        body["upload_slots"] = s.into();
    }
    if body.as_object().is_some_and(|o| o.is_empty()) {
        return Err(bad(
            "limit: nothing to change (give RATE, --quota or --slots)",
        ));
    }
    let route = match target {
        Some(ih) => format!("/torrents/{ih}"),
        None => "/settings".to_string(),
    };
    Ok((route, body))
}

fn limit(
    c: &Client,
    info_hash: Option<String>,
    rate: Option<String>,
    global: bool,
    quota: Option<String>,
    slots: Option<u64>,
) -> Result<(), Fail> {
    let (route, body) = limit_body(&info_hash, &rate, global, &quota, slots)?;
    let v = c.call("PATCH", &route, Some(&body))?;
    if route == "/settings" {
        c.out(&v, show::settings);
    } else {
        c.out(&v, show::limits);
    }
    Ok(())
}

fn absolute(p: &Path) -> Result<PathBuf, Fail> {
    std::path::absolute(p).map_err(|e| bad(format!("{}: {e}", p.display())))
}

fn add(c: &Client, path: &Path, data: Option<&Path>, wait: u64) -> Result<(), Fail> {
    if let Some(data) = data {
        let bytes = std::fs::read(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let dir = absolute(data)?;
        let dir = dir
            .to_str()
            .ok_or_else(|| bad(format!("{}: not UTF-8", dir.display())))?;
        let route = format!("/torrents?data={}", http::encode(dir));
        let v = c.send("POST", &route, "application/x-bittorrent", &bytes)?;
        c.out(&v, |v| {
            println!("{}", v["info_hash"].as_str().unwrap_or("?"))
        });
        return Ok(());
    }
    let abs = absolute(path)?;
    let p = abs
        .to_str()
        .ok_or_else(|| bad(format!("{}: not UTF-8", abs.display())))?;
    let v = c.call("POST", "/torrents", Some(&json!({"path": p})))?;
    let making = PathBuf::from(v["making"].as_str().unwrap_or(p));
    if wait == 0 {
        c.out(&v, |_| {
            eprintln!("making a torrent of {}", making.display())
        });
        return Ok(());
    }
    let start = Instant::now();
    let mut said = Duration::ZERO;
    eprintln!("making a torrent of {} ...", making.display());
    loop {
        let list = c.call("GET", "/torrents", None)?;
        let found = list["torrents"].as_array().and_then(|ts| {
            ts.iter().find(|t| {
                let dir = t["data_dir"].as_str().unwrap_or("");
                let name = t["name"].as_str().unwrap_or("");
                !name.is_empty() && Path::new(dir).join(name) == making
            })
        });
        if let Some(t) = found {
            c.out(t, |t| {
                println!("{}", t["info_hash"].as_str().unwrap_or("?"))
            });
            return Ok(());
        }
        // The server lists a job that failed, with why.
        let failed = list["making"].as_array().and_then(|jobs| {
            jobs.iter().find(|j| {
                j["state"] == "failed" && Path::new(j["path"].as_str().unwrap_or("")) == making
            })
        });
        if let Some(j) = failed {
            // The server's reason names the path.
            let why = j["error"]
                .as_str()
                .unwrap_or("the server could not make it");
            return Err(env_fail(why.to_string()));
        }
        let waited = start.elapsed();
        if waited >= Duration::from_secs(wait) {
            return Err(env_fail(format!(
                "{} not seeded within {wait} s (still hashing, or it failed: see the server's log)",
                making.display()
            )));
        }
        if waited >= said + Duration::from_secs(5) {
            said = waited;
            eprintln!("still making ({} s)", waited.as_secs());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
