//! deploy/prometheus: the scrape config and the alert rules, checked with promtool (Debian's
//! prometheus package): `check config`, `check rules` and `test rules` with the unit tests of
//! alerts_test.yml, plus checks that those unit tests cover every alert both ways and would catch
//! a changed rule.

mod common;
mod deploy_util;

use common::have;
use deploy_util::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn prom_dir() -> PathBuf {
    repo().join("deploy/prometheus")
}

fn promtool(args: &[&str], dir: &Path) -> Ran {
    run_bounded(
        Command::new("promtool").args(args).current_dir(dir),
        Duration::from_secs(60),
    )
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    if !have("promtool") {
        return;
    }
    let dir = prom_dir();
    let check = promtool(&["check", "rules", "alerts.yml"], &dir);
    assert!(check.ok(), "promtool check rules: {}", check.text());
    assert!(
        check.text().contains("SUCCESS: 7 rules found"),
        "{}",
        check.text()
    );
    let test = promtool(&["test", "rules", "alerts_test.yml"], &dir);
    assert!(test.ok(), "promtool test rules: {}", test.text());
    assert!(test.text().contains("SUCCESS"), "{}", test.text());
}

#[test]
fn prometheus_config_is_valid_and_loads_the_alert_rules() {
    if !have("promtool") {
        return;
    }
    let ran = promtool(&["check", "config", "prometheus.yml"], &prom_dir());
    assert!(ran.ok(), "promtool check config: {}", ran.text());
    // check config also checks the rule files it names.
    assert!(
        ran.text().contains("SUCCESS: 1 rule files found"),
        "{}",
        ran.text()
    );
    assert!(ran.text().contains("alerts.yml"), "{}", ran.text());
}

#[test]
fn promtool_rejects_broken_rules_and_the_unit_tests_catch_a_changed_threshold() {
    // The two checks above can fail: a rule with a PromQL syntax error, and alerts.yml with one
    // threshold changed (0.8 -> 0.95 of the file descriptors), run against the same unit tests.
    if !have("promtool") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(prom_dir().join("alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(prom_dir().join("alerts_test.yml")).unwrap();
    std::fs::write(tmp.path().join("alerts_test.yml"), &tests).unwrap();

    let broken = rules.replace(
        "expr: up{job=\"uringseed\"} == 0",
        "expr: up{job=\"uringseed\" == 0",
    );
    assert_ne!(broken, rules);
    std::fs::write(tmp.path().join("alerts.yml"), &broken).unwrap();
    let ran = promtool(&["check", "rules", "alerts.yml"], tmp.path());
    assert!(
        !ran.ok(),
        "promtool accepted a broken expression: {}",
        ran.text()
    );

    let changed = rules.replace(
        "process_max_fds{job=\"uringseed\"} > 0.8",
        "process_max_fds{job=\"uringseed\"} > 0.95",
    );
    assert_ne!(changed, rules);
    std::fs::write(tmp.path().join("alerts.yml"), &changed).unwrap();
    let ran = promtool(&["check", "rules", "alerts.yml"], tmp.path());
    assert!(ran.ok(), "{}", ran.text());
    let ran = promtool(&["test", "rules", "alerts_test.yml"], tmp.path());
    assert!(
        !ran.ok(),
        "the unit tests did not notice the threshold change"
    );
    assert!(
        ran.text().contains("UringseedFileDescriptorsNearLimit"),
        "{}",
        ran.text()
    );
}

#[test]
fn every_alert_has_severity_annotations_and_a_firing_and_a_quiet_unit_test() {
    if !have_python_module("yaml", "python3-yaml") {
        return;
    }
    let rules = yaml_doc(&prom_dir().join("alerts.yml"));
    let tests = yaml_doc(&prom_dir().join("alerts_test.yml"));
    let mut names = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"]
                .as_str()
                .expect("only alerting rules")
                .to_string();
            let sev = rule["labels"]["severity"].as_str().unwrap_or("");
            assert!(
                ["critical", "warning", "info"].contains(&sev),
                "{name}: severity {sev:?}"
            );
            for a in ["summary", "description"] {
                assert!(
                    rule["annotations"][a]
                        .as_str()
                        .is_some_and(|s| !s.is_empty()),
                    "{name}: no {a}"
                );
            }
            assert!(
                rule["expr"].as_str().unwrap().contains("job=\"uringseed\""),
                "{name}: not scoped to job=\"uringseed\""
            );
            names.push(name);
        }
    }
    assert_eq!(names.len(), 7, "{names:?}");
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .collect();
    for name in &names {
        let mine = || cases.iter().filter(|c| c["alertname"] == name.as_str());
        assert!(
            mine().any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty())),
            "{name}: no unit test where it fires"
        );
        assert!(
            mine().any(|c| c["exp_alerts"].as_array().is_none_or(|a| a.is_empty())),
            "{name}: no unit test where it stays quiet"
        );
    }
    // prometheus.yml loads them; compose mounts the file where prometheus.yml looks.
    let config = yaml_doc(&prom_dir().join("prometheus.yml"));
    assert_eq!(config["rule_files"], serde_json::json!(["alerts.yml"]));
    let compose = std::fs::read_to_string(repo().join("deploy/docker/compose.yml")).unwrap();
    assert!(compose.contains("../prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro"));
}
