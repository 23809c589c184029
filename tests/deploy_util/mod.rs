//! Helpers shared by the tests of deploy/ (tests/deploy_*.rs): bounded external commands, Python
//! modules, YAML read through PyYAML.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// True when a missing tool must fail the test (CI), false when it may skip (see common::have).
pub fn tools_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("URINGSEED_REQUIRE_TOOLS").is_some()
}

/// What a bounded command did.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.status.success()
    }
    /// stdout and stderr, for failure messages.
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` (stdin null, output to temporary files) for at most `limit`; kills it by its PID
/// and panics if it is still running then.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {limit:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    Ran {
        status,
        stdout: read(&out),
        stderr: read(&err),
    }
}

/// True if `/usr/bin/python3 -c "import MODULE"` works. Missing: fails under CI, skips with a
/// message naming the Debian package otherwise.
pub fn have_python_module(module: &str, package: &str) -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !tools_required(),
            "Python module {module} ({package}) is required in CI but not installed (see .ci/run)"
        );
        eprintln!("SKIPPED: Python module {module} not installed (apt-get install {package})");
    }
    ok
}

/// Every YAML document of `path`, read with PyYAML's safe loader (python3-yaml) and handed over
/// as JSON. Panics if the file does not parse.
pub fn yaml_docs(path: &Path) -> Vec<Value> {
    let ran = run_bounded(
        Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(
                "import json, sys, yaml\n\
                 with open(sys.argv[1]) as f:\n    docs = list(yaml.safe_load_all(f))\n\
                 json.dump(docs, sys.stdout, default=str)",
            )
            .arg(path),
        Duration::from_secs(30),
    );
    assert!(
        ran.ok(),
        "{} is not valid YAML: {}",
        path.display(),
        ran.text()
    );
    match serde_json::from_str(&ran.stdout).unwrap() {
        Value::Array(docs) => docs.into_iter().filter(|d| !d.is_null()).collect(),
        other => panic!("{other}"),
    }
}

/// The single YAML document of `path`.
pub fn yaml_doc(path: &Path) -> Value {
    let mut docs = yaml_docs(path);
    assert_eq!(docs.len(), 1, "{}: one document", path.display());
    docs.remove(0)
}
