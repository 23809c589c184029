//! A real `uringseed serve` with its control API on a loopback port (a config file naming the
//! API address, the data roots and a state directory), and a small bounded HTTP client for it.

use super::proc::{free_port, uringseed, Proc};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct ApiServer {
    pub proc: Proc,
    /// `127.0.0.1:PORT` of the HTTP server.
    pub http: String,
    pub state: PathBuf,
    pub config: PathBuf,
}

/// One HTTP exchange's result.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Writes `dir/config.toml` for a server whose state is `dir/state`, whose API listens on a
/// free port and may seed from `root`, plus `extra` TOML; returns its path and the address.
pub fn write_config(dir: &Path, root: &Path, extra: &str) -> (PathBuf, String) {
    let http = format!("127.0.0.1:{}", free_port());
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"{}\"\n[api]\nlisten = \"{http}\"\ndata_roots = [\"{}\"]\n{extra}",
            dir.join("state").display(),
            root.display()
        ),
    )
    .unwrap();
    (config, http)
}

impl ApiServer {
    /// Starts `serve --config CONFIG ARGS...`; waits for `listening:`.
    pub fn start(
        name: &str,
        config: &Path,
        http: &str,
        args: &[&str],
        log_dir: &Path,
    ) -> ApiServer {
        let mut cmd = uringseed();
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .args(args)
            .args(["--log-level", "debug"]);
        let mut proc = Proc::spawn(name, &mut cmd, log_dir);
        proc.wait_line("listening: ", Duration::from_secs(30));
        let state = config.parent().unwrap().join("state");
        ApiServer {
            proc,
            http: http.to_string(),
            state,
            config: config.to_path_buf(),
        }
    }

    /// The peer listener's address, as `serve` printed it.
    pub fn peer(&self) -> String {
        let out = self.proc.stdout_text();
        let line = out.lines().find_map(|l| l.strip_prefix("listening: "));
        line.expect("serve printed its address").trim().to_string()
    }

    pub fn token(&self) -> String {
        let p = self.state.join("api-token");
        for _ in 0..100 {
            if let Ok(t) = std::fs::read_to_string(&p) {
                if !t.trim().is_empty() {
                    return t.trim().to_string();
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no token in {}\n{}", p.display(), self.proc.report());
    }

    /// A request with the bearer token.
    pub fn call(&self, method: &str, path: &str, ctype: &str, body: &[u8]) -> Answer {
        let auth = format!("Authorization: Bearer {}\r\n", self.token());
        let ct = if ctype.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {ctype}\r\n")
        };
        request(&self.http, method, path, &format!("{auth}{ct}"), body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.proc.report()))
    }

    pub fn get(&self, path: &str) -> serde_json::Value {
        let a = self.call("GET", path, "", b"");
        assert_eq!(
            a.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&a.body)
        );
        a.json()
    }

    /// Waits (bounded) until the torrent `ih` is in `state`; returns its view.
    pub fn wait_state(&self, ih: &str, state: &str, limit: Duration) -> serde_json::Value {
        let until = std::time::Instant::now() + limit;
        loop {
            let a = self.call("GET", &format!("/api/v1/torrents/{ih}"), "", b"");
            if a.status == 200 && a.json()["state"] == state {
                return a.json();
            }
            assert!(
                std::time::Instant::now() < until,
                "{ih} not {state} within {limit:?}: {} {}\n{}",
                a.status,
                String::from_utf8_lossy(&a.body),
                self.proc.report()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One HTTP/1.1 request (`headers`: complete lines, each ending in CRLF), every step bounded.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> Result<Answer, String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    s.write_all(body).map_err(|e| format!("write body: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP head in {:?}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok(Answer {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    })
}
