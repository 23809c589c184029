//! Shared helpers for integration tests: external tools, test data trees, running the binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The uringseed binary built for this test run.
pub fn uringseed() -> Command {
    Command::new(env!("CARGO_BIN_EXE_uringseed"))
}

/// Runs tests/tools/lt_tool.py with `args`; returns its "key value" lines.
pub fn lt_tool(args: &[&str]) -> Vec<(String, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/lt_tool.py");
    let out = run(Command::new("/usr/bin/python3").arg(script).args(args));
    stdout(&out)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Writes a multi-file tree under `parent/name`: nested dirs, an empty file, odd sizes.
pub fn write_tree(parent: &Path, name: &str) -> PathBuf {
    let root = parent.join(name);
    let files: &[(&str, usize)] = &[
        ("a.bin", 300_001),
        ("sub/b.txt", 17),
        ("sub/deeper/c.dat", 65_536),
        ("zero", 0),
        ("z-last.bin", 40_000),
    ];
    for (i, (rel, len)) in files.iter().enumerate() {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, pseudo_random(*len, i as u64 + 1)).unwrap();
    }
    root
}
