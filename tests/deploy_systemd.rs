//! deploy/systemd/uringseed.service, checked offline with systemd-analyze (Debian's systemd
//! package; no systemd as PID 1 needed): `verify` must be silent (it exits 0 even for unknown or
//! unparsable directives, so any output is a failure) and `security --offline=yes` must not rate
//! the sandbox worse than measured when it was written. A systemd older than 253 checks it with
//! Type=notify in place of Type=notify-reload, which it does not know (said on stderr). systemd-analyze missing: these tests skip
//! with a message, under CI too (not every CI image can carry systemd).

mod deploy_util;

use deploy_util::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Exposure `systemd-analyze security --offline=yes` gave the unit (systemd 252) when this test
/// was written was 1.5; the test allows 0.5 more before it calls the sandbox weakened.
const MAX_EXPOSURE: f64 = 2.0;

fn have_systemd_analyze() -> bool {
    let found = Command::new("sh")
        .args(["-c", "command -v systemd-analyze"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "SKIPPED: systemd-analyze is not installed (Debian package systemd); \
             deploy/systemd/uringseed.service is not checked"
        );
    }
    found
}

fn unit_text() -> String {
    std::fs::read_to_string(repo().join("deploy/systemd/uringseed.service")).unwrap()
}

/// The version of the systemd that systemd-analyze belongs to ("systemd 252 (252.39-1)" ->
/// 252).
fn systemd_version() -> u32 {
    let ran = run_bounded(
        Command::new("systemd-analyze").arg("--version"),
        Duration::from_secs(30),
    );
    ran.stdout
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no version in: {}", ran.text()))
}

/// First systemd release that knows Type=notify-reload.
const NOTIFY_RELOAD_SINCE: u32 = 253;

/// The unit as this systemd can check it: an older one does not know Type=notify-reload
/// (verify says "Failed to parse service type"), so there Type=notify stands in for that one
/// line, and the test says so.
fn checkable(text: &str) -> String {
    let version = systemd_version();
    if version >= NOTIFY_RELOAD_SINCE {
        return text.to_string();
    }
    eprintln!(
        "NOTE: systemd {version} predates Type=notify-reload ({NOTIFY_RELOAD_SINCE}); the unit is \
         checked with Type=notify in its place (every other line as shipped)"
    );
    let replaced = text.replace("\nType=notify-reload\n", "\nType=notify\n");
    assert_ne!(replaced, text, "the unit has no Type=notify-reload line");
    replaced
}

/// Writes `text` as DIR/uringseed.service with ExecStart pointing at the binary of this build
/// (verify wants the executable to exist); returns its path.
fn install_unit(dir: &Path, text: &str) -> PathBuf {
    let exe = env!("CARGO_BIN_EXE_uringseed");
    let patched = text.replace(
        "ExecStart=/usr/local/bin/uringseed ",
        &format!("ExecStart={exe} "),
    );
    assert_ne!(
        patched, text,
        "the unit's ExecStart is not /usr/local/bin/uringseed"
    );
    let path = dir.join("uringseed.service");
    std::fs::write(&path, patched).unwrap();
    path
}

fn analyze(args: &[&str], unit: &Path) -> Ran {
    run_bounded(
        Command::new("systemd-analyze")
            .args(args)
            .arg(unit)
            .env("SYSTEMD_COLORS", "0")
            .env("SYSTEMD_PAGER", "cat"),
        Duration::from_secs(60),
    )
}

fn verify(unit: &Path) -> Ran {
    analyze(&["verify", "--man=no"], unit)
}

/// The "Overall exposure level for uringseed.service: X.Y ..." of `security --offline=yes`.
fn exposure(unit: &Path) -> f64 {
    let ran = analyze(&["security", "--offline=yes", "--man=no"], unit);
    let text = ran.text();
    text.lines()
        .find_map(|l| l.split_once("Overall exposure level for uringseed.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"))
}

#[test]
fn unit_verifies_without_a_single_warning() {
    if !have_systemd_analyze() {
        return;
    }
    let text = unit_text();
    // The data directory may be missing (`-`): the unit must still start.
    assert!(
        text.lines().any(|l| l == "ReadOnlyPaths=-/srv/seed"),
        "ReadOnlyPaths=-/srv/seed"
    );
    // notify-reload: systemd sends SIGHUP itself and waits for RELOADING=1 ... READY=1; an
    // ExecReload= as well would signal twice. The server pings the watchdog.
    assert!(
        text.lines().any(|l| l == "Type=notify-reload"),
        "Type=notify-reload"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("ExecReload=")),
        "ExecReload= next to Type=notify-reload"
    );
    assert!(
        text.lines().any(|l| l.starts_with("WatchdogSec=")),
        "WatchdogSec="
    );
    assert!(text.lines().any(|l| l == "RestartPreventExitStatus=2"));
    let dir = tempfile::tempdir().unwrap();
    let ran = verify(&install_unit(dir.path(), &checkable(&text)));
    assert!(
        ran.ok() && ran.stdout.trim().is_empty() && ran.stderr.trim().is_empty(),
        "systemd-analyze verify: {:?}\n{}",
        ran.status,
        ran.text()
    );
}

#[test]
fn verify_catches_a_typo_a_bad_value_and_a_missing_binary() {
    if !have_systemd_analyze() {
        return;
    }
    let text = unit_text();
    let dir = tempfile::tempdir().unwrap();
    let typo = text.replace("\nProtectSystem=strict\n", "\nProtectSystm=strict\n");
    assert_ne!(typo, text);
    let ran = verify(&install_unit(dir.path(), &typo));
    assert!(
        ran.text().contains("Unknown key"),
        "typo not reported: {}",
        ran.text()
    );

    let bad = text.replace("\nRestart=on-failure\n", "\nRestart=sometimes\n");
    assert_ne!(bad, text);
    let ran = verify(&install_unit(dir.path(), &bad));
    assert!(
        ran.text().contains("restart specifier"),
        "bad value not reported: {}",
        ran.text()
    );

    // The unit as shipped, with /usr/local/bin/uringseed absent here: an error, not a warning.
    if !Path::new("/usr/local/bin/uringseed").exists() {
        let path = dir.path().join("uringseed.service");
        std::fs::write(&path, &text).unwrap();
        let ran = verify(&path);
        assert!(!ran.ok(), "missing ExecStart binary passed: {}", ran.text());
        assert!(
            ran.text().contains("/usr/local/bin/uringseed"),
            "{}",
            ran.text()
        );
    }
}

#[test]
fn sandbox_exposure_stays_at_or_below_the_measured_level() {
    if !have_systemd_analyze() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = install_unit(dir.path(), &checkable(&unit_text()));
    let level = exposure(&unit);
    assert!(
        level <= MAX_EXPOSURE,
        "exposure {level} > {MAX_EXPOSURE}: the unit's sandbox got weaker"
    );
    // systemd-analyze's own gate says the same (--threshold is in tenths).
    let threshold = format!("--threshold={}", (MAX_EXPOSURE * 10.0) as u32);
    let ran = analyze(
        &["security", "--offline=yes", "--man=no", &threshold],
        &unit,
    );
    assert!(ran.ok(), "{threshold}: {}", ran.text());

    // The check can fail: the same unit without its main hardening rates worse, past the gate.
    let weakened: String = checkable(&unit_text())
        .lines()
        .filter(|l| {
            ![
                "NoNewPrivileges=",
                "ProtectSystem=",
                "ProtectHome=",
                "PrivateDevices=",
                "CapabilityBoundingSet=",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let weak_dir = tempfile::tempdir().unwrap();
    let weak = install_unit(weak_dir.path(), &weakened);
    let weak_level = exposure(&weak);
    assert!(
        weak_level > MAX_EXPOSURE,
        "weakened unit rated {weak_level}"
    );
    let ran = analyze(
        &["security", "--offline=yes", "--man=no", &threshold],
        &weak,
    );
    assert!(!ran.ok(), "{threshold} passed a weakened unit");
}
