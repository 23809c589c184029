//! Shared helpers for integration tests, by concern: [`announce_scale`] (the announcer-at-scale scenario), [`proc`] (running the binary and other
//! child processes), [`clients`] (real BitTorrent clients and tree checks), [`swarm`] (clients
//! by magnet link and peer exchange, and a seed that may be the libtorrent reference seed),
//! [`tracker`] (the npm tracker and its announce log), [`data`] (test data and metric parsing),
//! [`raw`] (a raw peer over a socket), [`api`] (a server with its control API), [`harness`] (the in-process connection harness), [`inproc`] (an in-process server of one file), [`flood`] (floods beside an honest leecher) and [`webseed`] (the HTTP web seed and a raw HTTP client). Each
//! test file uses what it needs; the rest is dead code there.
#![allow(dead_code, unused_imports)]

pub mod announce_scale;
pub mod api;
pub mod clients;
pub mod data;
pub mod flood;
pub mod harness;
pub mod inproc;
pub mod proc;
pub mod raw;
pub mod swarm;
pub mod tracker;
pub mod webseed;

pub use clients::*;
pub use data::*;
pub use proc::*;
pub use swarm::*;
pub use tracker::*;

use std::path::{Path, PathBuf};
use std::process::Command;

/// True if `tool` is on PATH. When it is missing, CI (CI or URINGSEED_REQUIRE_TOOLS set) fails the
/// test; a developer machine skips it with a message.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let required = std::env::var_os("CI").is_some()
            || std::env::var_os("URINGSEED_REQUIRE_TOOLS").is_some();
        assert!(
            !required,
            "{tool} is required in CI but not installed (see .ci/run)"
        );
        eprintln!("SKIPPED: {tool} not installed");
    }
    found
}

/// True if Debian's libtorrent Python bindings import under /usr/bin/python3.
pub fn have_libtorrent() -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import libtorrent"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        have("libtorrent-python-bindings-missing");
    }
    ok
}

/// True when missing test tools must fail the test instead of skipping it (see `have`).
pub fn tools_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("URINGSEED_REQUIRE_TOOLS").is_some()
}

/// tests/tools (tracker.js, webtorrent_get.js, announce.py, aria2_get.sh, lt_tool.py).
pub fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools")
}

/// True if `node` is on PATH and tests/tools/node_modules is installed. Like `have`: missing
/// under CI fails the test, on a developer machine it skips with a message.
pub fn have_node_tools() -> bool {
    if !have("node") {
        return false;
    }
    let modules = tools_dir().join("node_modules");
    if modules.join("webtorrent").is_dir() && modules.join("bittorrent-tracker").is_dir() {
        return true;
    }
    assert!(
        !tools_required(),
        "{} is missing or incomplete: run .ci/run (it runs `npm ci --ignore-scripts --no-audit \
         --no-fund` in tests/tools)",
        modules.display()
    );
    eprintln!(
        "SKIPPED: {} not installed (cd tests/tools && npm ci --ignore-scripts --no-audit --no-fund)",
        modules.display()
    );
    false
}
