//! deploy/docker/Dockerfile, checked without Docker (no daemon on CI): its stages and
//! instructions are parsed, and its HEALTHCHECK command is run against a real uringseed, a server
//! that answers 503 and a closed port.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One Dockerfile instruction: keyword (upper case) and its arguments, continuation lines joined
/// and comment lines dropped, as BuildKit reads them.
#[derive(Debug)]
struct Instr {
    keyword: String,
    args: String,
}

/// The stages of the Dockerfile: (the FROM line's arguments, its instructions).
fn stages() -> Vec<(String, Vec<Instr>)> {
    let text = std::fs::read_to_string(repo().join("deploy/docker/Dockerfile")).unwrap();
    let mut instrs = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('#') || (current.is_empty() && t.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                let (kw, args) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                instrs.push(Instr {
                    keyword: kw.to_ascii_uppercase(),
                    args: args.trim().to_string(),
                });
                current.clear();
            }
        }
    }
    assert!(
        current.is_empty(),
        "Dockerfile ends inside a continued line"
    );
    let mut out: Vec<(String, Vec<Instr>)> = Vec::new();
    for i in instrs {
        if i.keyword == "FROM" {
            out.push((i.args, Vec::new()));
        } else if let Some(last) = out.last_mut() {
            last.1.push(i);
        } else {
            assert!(i.keyword == "ARG", "{i:?} before the first FROM");
        }
    }
    out
}

/// The metrics port of the configuration the image ships (deploy/docker/uringseed.toml).
fn image_metrics_port() -> u16 {
    let text = std::fs::read_to_string(repo().join("deploy/docker/uringseed.toml")).unwrap();
    let cfg: toml::Value = toml::from_str(&text).unwrap();
    let listen = cfg["metrics"]["listen"].as_str().unwrap();
    assert!(
        listen.starts_with("0.0.0.0:"),
        "metrics.listen {listen:?}: must be 0.0.0.0 inside the container for Prometheus"
    );
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

/// The HEALTHCHECK's exec-form command of the runtime stage.
fn healthcheck() -> Vec<String> {
    let all = stages();
    let (_, runtime) = all.last().unwrap();
    let hc: Vec<&Instr> = runtime
        .iter()
        .filter(|i| i.keyword == "HEALTHCHECK")
        .collect();
    assert_eq!(hc.len(), 1, "one HEALTHCHECK in the runtime stage");
    let args = &hc[0].args;
    let json = &args[args.find("CMD").expect("HEALTHCHECK ... CMD") + 3..];
    for opt in ["--interval=", "--timeout=", "--retries="] {
        assert!(args.contains(opt), "HEALTHCHECK without {opt}: {args}");
    }
    serde_json::from_str(json.trim())
        .unwrap_or_else(|e| panic!("HEALTHCHECK CMD is not exec form (JSON): {e}: {json}"))
}

#[test]
fn image_is_two_stages_with_a_stripped_binary_run_as_uid_10001() {
    let all = stages();
    assert_eq!(all.len(), 2, "build and runtime stages: {all:?}");
    let (build_from, build) = &all[0];
    let (run_from, runtime) = &all[1];
    assert!(build_from.starts_with("rust:") && build_from.ends_with(" AS builder"));
    assert_eq!(run_from, "debian:bookworm-slim");

    // The build stage makes /out/uringseed with debug info off and symbols stripped, and checks it.
    let producing: Vec<&Instr> = build
        .iter()
        .filter(|i| i.keyword == "RUN" && i.args.contains("/out/uringseed"))
        .collect();
    assert_eq!(producing.len(), 1, "one RUN writes /out/uringseed");
    let build_run = &producing[0].args;
    for needed in [
        "cargo build --release --locked",
        "--config profile.release.debug=0",
        "--config profile.release.strip=true",
        "install -D -m 0755 target/release/uringseed /out/uringseed",
        "readelf -S /out/uringseed",
    ] {
        assert!(
            build_run.contains(needed),
            "build RUN lacks {needed:?}: {build_run}"
        );
    }
    assert!(
        build_run.find("cargo build").unwrap() < build_run.find("install -D").unwrap()
            && build_run.find("install -D").unwrap() < build_run.find("readelf").unwrap(),
        "build, then copy out, then check: {build_run}"
    );
    // Cargo.toml itself keeps debug info for benchmarks: the image overrides, it does not edit.
    let cargo: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo().join("Cargo.toml")).unwrap()).unwrap();
    assert_eq!(cargo["profile"]["release"]["debug"].as_integer(), Some(1));

    // The runtime stage takes that binary (and nothing else) from the build stage.
    let copies: Vec<&str> = runtime
        .iter()
        .filter(|i| i.keyword == "COPY" && i.args.contains("--from="))
        .map(|i| i.args.as_str())
        .collect();
    assert_eq!(
        copies,
        ["--from=builder /out/uringseed /usr/local/bin/uringseed"]
    );
    // Non-root, numeric (Kubernetes' runAsNonRoot can check it), after every RUN.
    let users: Vec<usize> = (0..runtime.len())
        .filter(|&k| runtime[k].keyword == "USER")
        .collect();
    assert_eq!(users.len(), 1);
    assert_eq!(runtime[users[0]].args, "10001:10001");
    assert!(runtime[users[0]..].iter().all(|i| i.keyword != "RUN"));
    let config_copy = runtime.iter().any(|i| {
        i.keyword == "COPY"
            && i.args == "deploy/docker/uringseed.toml /etc/uringseed/uringseed.toml"
    });
    assert!(config_copy, "the image ships deploy/docker/uringseed.toml");
    let cmd = runtime.iter().find(|i| i.keyword == "CMD").unwrap();
    assert_eq!(
        cmd.args,
        r#"["serve", "--config", "/etc/uringseed/uringseed.toml"]"#
    );
    // That configuration is valid.
    run(uringseed()
        .arg("check-config")
        .arg(repo().join("deploy/docker/uringseed.toml")));
    let expose = runtime.iter().find(|i| i.keyword == "EXPOSE").unwrap();
    assert!(expose
        .args
        .contains(&format!("{}/tcp", image_metrics_port())));
}

#[test]
fn healthcheck_asks_healthz_on_the_configured_metrics_port() {
    let cmd = healthcheck();
    assert_eq!(cmd[..2], ["bash", "-c"], "{cmd:?}");
    let script = &cmd[2];
    let port = image_metrics_port();
    assert!(
        script.contains(&format!("/dev/tcp/127.0.0.1/{port}")),
        "not port {port}: {script}"
    );
    assert!(script.contains("GET /healthz HTTP/1.1"), "{script}");
    // Nothing the slim image lacks.
    for tool in ["curl", "wget", "nc "] {
        assert!(
            !script.contains(tool),
            "{tool} is not in debian:bookworm-slim"
        );
    }
}

/// Runs the HEALTHCHECK script with its port replaced by `port`; true if it exits 0 (healthy).
fn healthy_on(port: u16) -> bool {
    let script = healthcheck()[2].replace(
        &format!("/dev/tcp/127.0.0.1/{}", image_metrics_port()),
        &format!("/dev/tcp/127.0.0.1/{port}"),
    );
    let mut child = Command::new("bash").arg("-c").arg(&script).spawn().unwrap();
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the healthcheck did not finish within 5 s (Docker's --timeout=5s)");
}

#[test]
fn healthcheck_passes_against_uringseed_and_fails_otherwise() {
    if !have("bash") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.bin"), pseudo_random(50_000, 9)).unwrap();
    let torrent = dir.path().join("f.torrent");
    make_torrent(&dir.path().join("f.bin"), &torrent, &[]);
    let mut server = Proc::spawn(
        "uringseed",
        uringseed()
            .arg("serve")
            .arg("--torrent")
            .arg(&torrent)
            .arg("--data")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]),
        dir.path(),
    );
    let metrics = server.wait_line("metrics: ", Duration::from_secs(30));
    let port: u16 = metrics
        .trim_end_matches("/metrics")
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("metrics: {metrics}"));
    server.wait_line("ready: ", Duration::from_secs(30));
    assert!(
        healthy_on(port),
        "unhealthy against uringseed\n{}",
        server.report()
    );
    server.terminate(Duration::from_secs(10));

    // A server that answers 503 is unhealthy.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap_or(0);
        let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    assert!(!healthy_on(port), "healthy against a 503");
    let request = t.join().unwrap();
    assert!(
        request.starts_with("GET /healthz HTTP/1.1\r\n"),
        "{request:?}"
    );
    // Nothing listening: unhealthy (the listener above is closed now).
    assert!(!healthy_on(port), "healthy with nothing listening");
}

#[test]
fn docker_run_examples_name_files_that_exist() {
    // Every seccomp=PATH in the docs and the Dockerfile names the shipped profile.
    for (file, base) in [
        ("README.md", ""),
        ("deploy/README.md", ""),
        ("deploy/docker/Dockerfile", ""),
        ("deploy/docker/compose.yml", "deploy/docker"),
    ] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let mut found = 0;
        for (at, _) in text.match_indices("seccomp=") {
            let path: String = text[at + 8..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '`' && *c != '"')
                .collect();
            if path.ends_with(".json") {
                found += 1;
                assert!(
                    repo().join(base).join(&path).is_file(),
                    "{file}: seccomp={path} does not exist"
                );
            }
        }
        assert!(found > 0, "{file} shows no seccomp=PROFILE.json");
    }
}
