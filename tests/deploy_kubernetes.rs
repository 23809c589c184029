//! deploy/kubernetes: every manifest validated against the Kubernetes 1.31 OpenAPI schemas with
//! kubernetes-validate (PyPI, pinned in tests/tools/requirements-deploy.txt; .ci/run installs it
//! into target/ci-venv), the two custom resources (ServiceMonitor, SeccompProfile), which those
//! schemas do not have, checked field by field here; the ConfigMap's TOML run through
//! `uringseed check-config`; the pods' security settings, probes, ports and volumes against
//! that configuration; every kustomization's files present and parsing (PyYAML); and, where
//! `kubectl` is installed (it is not on CI: Debian 12 has no current kubectl), every
//! kustomization rendered and the output validated as well.

mod common;
mod deploy_util;

use deploy_util::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const K8S_VERSION: &str = "1.31.0";
const VALIDATE_VERSION: &str = "1.37.0";
/// Kinds that are not in Kubernetes' own schemas (checked by `custom_resources_*` instead).
const CRD_KINDS: [&str; 2] = ["ServiceMonitor", "SeccompProfile"];

fn k8s() -> PathBuf {
    repo().join("deploy/kubernetes")
}

/// kubernetes-validate from target/ci-venv (what .ci/run installs) or PATH. Missing: fails under
/// CI, skips with a message otherwise.
fn kubernetes_validate() -> Option<PathBuf> {
    let venv = repo().join("target/ci-venv/bin/kubernetes-validate");
    let found = if venv.is_file() {
        Some(venv)
    } else {
        Command::new("sh")
            .args(["-c", "command -v kubernetes-validate"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    };
    match &found {
        Some(bin) => {
            let ran = run_bounded(Command::new(bin).arg("--version"), Duration::from_secs(60));
            let version = ran.stdout.trim().to_string();
            if version != VALIDATE_VERSION {
                assert!(
                    !tools_required(),
                    "kubernetes-validate {version}, not the pinned {VALIDATE_VERSION}"
                );
                eprintln!("note: kubernetes-validate {version}, not the pinned {VALIDATE_VERSION}");
            }
        }
        None => {
            assert!(
                !tools_required(),
                "kubernetes-validate is required in CI but not installed (.ci/run puts it in \
                 target/ci-venv: pip install -r tests/tools/requirements-deploy.txt)"
            );
            eprintln!(
                "SKIPPED: kubernetes-validate not installed (python3 -m venv target/ci-venv && \
                 target/ci-venv/bin/pip install -r tests/tools/requirements-deploy.txt)"
            );
        }
    }
    found
}

fn have_yaml() -> bool {
    have_python_module("yaml", "python3-yaml")
}

/// Every *.yaml under deploy/kubernetes, sorted.
fn yaml_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&k8s(), &mut out);
    out.sort();
    out
}

fn is_kustomization(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n == "kustomization.yaml")
}

/// Files named by a kustomization's `patches[].path` (partial objects, not resources).
fn patch_files() -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for k in yaml_files().into_iter().filter(|p| is_kustomization(p)) {
        let doc = yaml_doc(&k);
        for p in doc["patches"].as_array().into_iter().flatten() {
            if let Some(path) = p["path"].as_str() {
                out.insert(k.parent().unwrap().join(path));
            }
        }
    }
    out
}

/// The manifests that are whole objects (not kustomizations, not patches).
fn resource_files() -> Vec<PathBuf> {
    let patches = patch_files();
    yaml_files()
        .into_iter()
        .filter(|p| !is_kustomization(p) && !patches.contains(p))
        .collect()
}

/// Every object of `files`, with the file it came from.
fn objects(files: &[PathBuf]) -> Vec<(PathBuf, Value)> {
    files
        .iter()
        .flat_map(|f| yaml_docs(f).into_iter().map(move |d| (f.clone(), d)))
        .collect()
}

fn find<'a>(objs: &'a [(PathBuf, Value)], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .map(|(_, o)| o)
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// kubernetes-validate -k 1.31.0 --strict FILES: asserts it passes and that every object was
/// checked against a schema, except the custom resources, which it must say it has none for.
fn validate_files(bin: &Path, files: &[PathBuf]) {
    let ran = run_bounded(
        Command::new(bin)
            .args(["-k", K8S_VERSION, "--strict"])
            .args(files),
        Duration::from_secs(120),
    );
    let text = ran.text();
    assert!(ran.ok(), "kubernetes-validate failed:\n{text}");
    for (file, obj) in objects(files) {
        let kind = obj["kind"].as_str().unwrap();
        let name = obj["metadata"]["name"].as_str().unwrap();
        let shown = file.display().to_string();
        let line = |needle: &str| {
            text.lines()
                .any(|l| l.contains(&shown) && l.contains(needle))
        };
        if CRD_KINDS.contains(&kind) {
            assert!(
                line(&format!("Couldn't find schema for kind {kind}")),
                "{shown}: {kind} {name}: expected kubernetes-validate to have no schema\n{text}"
            );
        } else {
            let resource = format!("passed for resource {}/{name}", kind.to_lowercase());
            assert!(
                line(&resource),
                "{shown}: {kind} {name} not validated\n{text}"
            );
        }
    }
}

#[test]
fn every_manifest_validates_against_the_kubernetes_schemas() {
    if !have_yaml() {
        return;
    }
    let Some(bin) = kubernetes_validate() else {
        return;
    };
    let files = resource_files();
    assert!(files.len() >= 7, "{files:?}");
    validate_files(&bin, &files);

    // It rejects what it should: a misspelt field (strict) and a wrong type.
    let tmp = tempfile::tempdir().unwrap();
    let sts = std::fs::read_to_string(k8s().join("base/statefulset.yaml")).unwrap();
    for (what, bad) in [
        (
            "unknown field",
            sts.replacen("readinessProbe:", "readinesProbe:", 1),
        ),
        (
            "wrong type",
            sts.replacen("replicas: 2", "replicas: two", 1),
        ),
    ] {
        assert_ne!(bad, sts, "{what}");
        let path = tmp.path().join("statefulset.yaml");
        std::fs::write(&path, bad).unwrap();
        let ran = run_bounded(
            Command::new(&bin)
                .args(["-k", K8S_VERSION, "--strict"])
                .arg(&path),
            Duration::from_secs(60),
        );
        assert!(
            !ran.ok(),
            "kubernetes-validate accepted a {what}: {}",
            ran.text()
        );
    }
}

#[test]
fn kustomizations_render_and_the_result_validates_where_kubectl_is_installed() {
    if !have_yaml() {
        return;
    }
    let has_kubectl = Command::new("sh")
        .args(["-c", "command -v kubectl"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_kubectl {
        // Not a CI failure: Debian 12 packages only kubectl 1.20 (kubernetes-client), whose
        // kustomize predates components. The structural test below covers the kustomizations.
        eprintln!("SKIPPED: kubectl not installed; the kustomizations are not rendered");
        return;
    }
    let Some(bin) = kubernetes_validate() else {
        return;
    };
    // The two entry points, and each with the Security Profiles Operator component added (an
    // overlay next to them, inside target/: kustomize takes relative paths only).
    let scratch = repo().join("target");
    std::fs::create_dir_all(&scratch).unwrap();
    let tmp = tempfile::tempdir_in(&scratch).unwrap();
    let up = "../../deploy/kubernetes";
    let mut roots = vec![
        ("statefulset".to_string(), k8s()),
        ("daemonset".to_string(), k8s().join("daemonset")),
    ];
    for (name, base) in [
        ("statefulset-spo", up.to_string()),
        ("daemonset-spo", format!("{up}/daemonset")),
    ] {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("kustomization.yaml"),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
                 resources:\n  - ../{base}\ncomponents:\n  - ../{up}/components/security-profiles-operator\n"
            ),
        )
        .unwrap();
        roots.push((name.to_string(), dir));
    }
    for (name, root) in roots {
        let ran = run_bounded(
            Command::new("kubectl").arg("kustomize").arg(&root),
            Duration::from_secs(120),
        );
        assert!(ran.ok(), "kubectl kustomize {name}: {}", ran.text());
        let out = tmp.path().join(format!("{name}.yaml"));
        std::fs::write(&out, &ran.stdout).unwrap();
        validate_files(&bin, std::slice::from_ref(&out));
        let objs = objects(std::slice::from_ref(&out));
        let kinds: BTreeSet<&str> = objs
            .iter()
            .map(|(_, o)| o["kind"].as_str().unwrap())
            .collect();
        let workload = if name.starts_with("daemonset") {
            assert!(!kinds.contains("StatefulSet"), "{name}: {kinds:?}");
            "DaemonSet"
        } else {
            assert!(!kinds.contains("DaemonSet"), "{name}: {kinds:?}");
            "StatefulSet"
        };
        let w = find(&objs, workload, "uringseed");
        let profile = &w["spec"]["template"]["spec"]["securityContext"]["seccompProfile"];
        if name.ends_with("-spo") {
            assert!(kinds.contains("SeccompProfile"), "{name}: {kinds:?}");
            assert_eq!(
                profile["localhostProfile"],
                "operator/uringseed-io-uring.json"
            );
        } else {
            assert!(!kinds.contains("SeccompProfile"), "{name}: {kinds:?}");
            assert_eq!(profile["localhostProfile"], "uringseed-io_uring.json");
        }
        let ns = find(&objs, "Namespace", "uringseed");
        let enforce = &ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"];
        let want = if workload == "DaemonSet" {
            "privileged"
        } else {
            "restricted"
        };
        assert_eq!(enforce, want, "{name}");
    }
}

#[test]
fn kustomizations_name_files_that_exist_and_parse() {
    if !have_yaml() {
        return;
    }
    let kustomizations: Vec<PathBuf> = yaml_files()
        .into_iter()
        .filter(|p| is_kustomization(p))
        .collect();
    assert_eq!(kustomizations.len(), 5, "{kustomizations:?}");
    let base_objs = objects(&[
        k8s().join("base/namespace.yaml"),
        k8s().join("base/configmap.yaml"),
        k8s().join("base/service.yaml"),
        k8s().join("base/statefulset.yaml"),
        k8s().join("base/servicemonitor.yaml"),
    ]);
    for k in &kustomizations {
        let dir = k.parent().unwrap();
        let doc = yaml_doc(k);
        let kind = doc["kind"].as_str().unwrap();
        let is_component = dir.parent().unwrap().ends_with("components");
        assert_eq!(
            (doc["apiVersion"].as_str().unwrap(), kind),
            if is_component {
                ("kustomize.config.k8s.io/v1alpha1", "Component")
            } else {
                ("kustomize.config.k8s.io/v1beta1", "Kustomization")
            },
            "{}",
            k.display()
        );
        for r in doc["resources"].as_array().into_iter().flatten() {
            let p = dir.join(r.as_str().unwrap());
            if p.is_dir() {
                let sub = yaml_doc(&p.join("kustomization.yaml"));
                assert_eq!(sub["kind"], "Kustomization", "{}", p.display());
            } else {
                assert!(
                    p.is_file(),
                    "{}: resource {} missing",
                    k.display(),
                    p.display()
                );
                for d in yaml_docs(&p) {
                    for field in ["apiVersion", "kind"] {
                        assert!(d[field].is_string(), "{}: no {field}", p.display());
                    }
                    assert!(
                        d["metadata"]["name"].is_string(),
                        "{}: no name",
                        p.display()
                    );
                }
            }
        }
        for c in doc["components"].as_array().into_iter().flatten() {
            let p = dir.join(c.as_str().unwrap());
            let sub = yaml_doc(&p.join("kustomization.yaml"));
            assert_eq!(sub["kind"], "Component", "{}", p.display());
        }
        // Patches must hit an object of the base (or kustomize fails).
        for p in doc["patches"].as_array().into_iter().flatten() {
            if let Some(path) = p["path"].as_str() {
                let patch = yaml_doc(&dir.join(path));
                let (kind, name) = (
                    patch["kind"].as_str().unwrap(),
                    patch["metadata"]["name"].as_str().unwrap(),
                );
                find(&base_objs, kind, name);
            } else {
                let target = &p["target"];
                let name = target["name"].as_str().unwrap();
                assert!(
                    base_objs.iter().any(|(_, o)| o["metadata"]["name"] == name
                        && o["apiVersion"]
                            == format!(
                                "{}/{}",
                                target["group"].as_str().unwrap(),
                                target["version"].as_str().unwrap()
                            )),
                    "patch target {target} matches nothing"
                );
                // An inline JSON patch: every path it replaces exists in the StatefulSet.
                let ops = yaml_docs_from_str(p["patch"].as_str().unwrap()).remove(0);
                let sts = find(&base_objs, "StatefulSet", "uringseed");
                for op in ops.as_array().unwrap() {
                    let ptr = op["path"].as_str().unwrap();
                    assert!(
                        sts.pointer(ptr).is_some(),
                        "patch path {ptr} not in the StatefulSet"
                    );
                }
            }
        }
        // The image name that `images:` rewrites is the workloads' image.
        for i in doc["images"].as_array().into_iter().flatten() {
            assert_eq!(i["name"], "uringseed");
            let sts = find(&base_objs, "StatefulSet", "uringseed");
            let image = sts["spec"]["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap();
            assert_eq!(image.split(':').next(), Some("uringseed"));
        }
    }
}

/// PyYAML on a string (for inline patches).
fn yaml_docs_from_str(text: &str) -> Vec<Value> {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), text).unwrap();
    yaml_docs(tmp.path())
}

#[test]
fn custom_resources_have_the_fields_their_operators_require() {
    // No schema for these in kubernetes-validate: checked here against what the CRDs require
    // (prometheus-operator's monitoring.coreos.com/v1 ServiceMonitor; the Security Profiles
    // Operator's security-profiles-operator.x-k8s.io/v1 SeccompProfile, cluster-scoped, as in its
    // v1.0.0 CRD).
    if !have_yaml() {
        return;
    }
    let objs = objects(&resource_files());
    let sm = find(&objs, "ServiceMonitor", "uringseed");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["namespace"], "uringseed");
    let svc = find(&objs, "Service", "uringseed-metrics");
    let sel = sm["spec"]["selector"]["matchLabels"].as_object().unwrap();
    assert!(!sel.is_empty());
    for (k, v) in sel {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "ServiceMonitor selector {k}"
        );
    }
    // The job label alerts.yml expects.
    let job_label = sm["spec"]["jobLabel"].as_str().unwrap();
    assert_eq!(svc["metadata"]["labels"][job_label], "uringseed");
    let endpoints = sm["spec"]["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    let port = endpoints[0]["port"].as_str().unwrap();
    let svc_port = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == port)
        .unwrap_or_else(|| panic!("ServiceMonitor port {port} not on the Service"));
    assert_eq!(svc_port["port"], 9437);
    assert_eq!(endpoints[0]["path"], "/metrics");
    let allowed_sm: BTreeSet<&str> =
        ["jobLabel", "selector", "namespaceSelector", "endpoints"].into();
    for k in sm["spec"].as_object().unwrap().keys() {
        assert!(allowed_sm.contains(k.as_str()), "ServiceMonitor spec.{k}");
    }

    let sp = find(&objs, "SeccompProfile", "uringseed-io-uring");
    assert_eq!(sp["apiVersion"], "security-profiles-operator.x-k8s.io/v1");
    assert!(
        sp["metadata"].get("namespace").is_none(),
        "v1 SeccompProfile is cluster-scoped"
    );
    let spec = sp["spec"].as_object().unwrap();
    let actions = [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    ];
    let ops = [
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ];
    let spec_keys: BTreeSet<&str> = [
        "architectures",
        "baseProfileName",
        "defaultAction",
        "flags",
        "listenerMetadata",
        "listenerPath",
        "state",
        "syscalls",
    ]
    .into();
    for k in spec.keys() {
        assert!(
            spec_keys.contains(k.as_str()),
            "SeccompProfile spec.{k} is not in the CRD"
        );
    }
    assert!(actions.contains(&spec["defaultAction"].as_str().unwrap()));
    for s in spec["syscalls"].as_array().unwrap() {
        for k in s.as_object().unwrap().keys() {
            assert!(
                ["action", "args", "errnoRet", "names"].contains(&k.as_str()),
                "syscalls[].{k}"
            );
        }
        assert!(actions.contains(&s["action"].as_str().unwrap()), "{s}");
        assert!(!s["names"].as_array().unwrap().is_empty());
        if let Some(e) = s.get("errnoRet") {
            assert!(e.is_u64(), "errnoRet is an integer: {s}");
        }
        for a in s["args"].as_array().into_iter().flatten() {
            for k in a.as_object().unwrap().keys() {
                assert!(
                    ["index", "op", "value", "valueTwo"].contains(&k.as_str()),
                    "args[].{k}"
                );
            }
            assert!(a["index"].as_u64().is_some_and(|i| i < 6));
            assert!(ops.contains(&a["op"].as_str().unwrap()));
            assert!(a.get("value").is_none_or(|v| v.is_u64()));
        }
    }
}

#[test]
fn seccomp_profiles_are_the_docker_profile_resolved_for_kubernetes() {
    // deploy/kubernetes/seccomp/uringseed-io_uring.json (OCI runtime-spec format, what containerd
    // reads for a Localhost profile: it ignores Docker's includes/excludes/archMap) and the
    // SeccompProfile are what seccomp_exec.py derives from deploy/docker/seccomp-io_uring.json.
    if !have_yaml() {
        return;
    }
    let tool = tools_dir_path().join("seccomp_exec.py");
    let docker = repo().join("deploy/docker/seccomp-io_uring.json");
    let ran = run_bounded(
        Command::new("/usr/bin/python3")
            .arg(&tool)
            .arg("--oci")
            .arg(&docker)
            .arg("amd64"),
        Duration::from_secs(60),
    );
    assert!(ran.ok(), "{}", ran.text());
    let want: Value = serde_json::from_str(&ran.stdout).unwrap();
    let shipped_path = k8s().join("seccomp/uringseed-io_uring.json");
    let shipped: Value =
        serde_json::from_str(&std::fs::read_to_string(&shipped_path).unwrap()).unwrap();
    assert_eq!(
        shipped,
        want,
        "{} is stale: python3 tests/tools/seccomp_exec.py --oci {} amd64 > it",
        shipped_path.display(),
        docker.display()
    );
    // The OCI profile has no Docker-only fields and allows io_uring.
    for k in ["archMap", "includes", "excludes"] {
        assert!(!ran.stdout.contains(k), "{k} in the OCI profile");
    }
    let names: Vec<&str> = shipped["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "SCMP_ACT_ALLOW" && s.get("args").is_none())
        .flat_map(|s| {
            s["names"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap())
        })
        .collect();
    for n in [
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "setuid",
        "capset",
    ] {
        assert!(names.contains(&n), "{n}");
    }
    for n in ["mount", "unshare", "setns", "bpf", "reboot"] {
        assert!(
            !names.contains(&n),
            "{n} needs a capability the pod does not have"
        );
    }

    let ran = run_bounded(
        Command::new("/usr/bin/python3")
            .arg(&tool)
            .arg("--spo")
            .arg(&docker)
            .arg("uringseed-io-uring")
            .arg("amd64"),
        Duration::from_secs(60),
    );
    assert!(ran.ok(), "{}", ran.text());
    let spo_path = k8s().join("components/security-profiles-operator/seccompprofile.yaml");
    let committed = yaml_doc(&spo_path);
    assert_eq!(
        committed,
        yaml_docs_from_str(&ran.stdout).remove(0),
        "{} is stale: python3 tests/tools/seccomp_exec.py --spo {} uringseed-io-uring amd64 > it",
        spo_path.display(),
        docker.display()
    );
    // Same rules as the OCI profile (SeccompProfile has no defaultErrnoRet; valueTwo 0 omitted).
    let spec = &committed["spec"];
    assert_eq!(spec["defaultAction"], shipped["defaultAction"]);
    assert_eq!(spec["architectures"], shipped["architectures"]);
    let norm = |rules: &Value| -> Vec<Value> {
        rules
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut r = r.clone();
                for a in r
                    .get_mut("args")
                    .and_then(|a| a.as_array_mut())
                    .into_iter()
                    .flatten()
                {
                    if a["valueTwo"] == 0 {
                        a.as_object_mut().unwrap().remove("valueTwo");
                    }
                }
                r
            })
            .collect()
    };
    assert_eq!(norm(&spec["syscalls"]), norm(&shipped["syscalls"]));
}

fn tools_dir_path() -> PathBuf {
    common::tools_dir()
}

#[test]
fn configmap_toml_is_valid_and_matches_the_pods() {
    if !have_yaml() {
        return;
    }
    let objs = objects(&resource_files());
    let cm = find(&objs, "ConfigMap", "uringseed-config");
    let toml_text = cm["data"]["uringseed.toml"].as_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("uringseed.toml");
    std::fs::write(&path, toml_text).unwrap();
    let ran = run_bounded(
        common::uringseed().arg("check-config").arg(&path),
        Duration::from_secs(60),
    );
    assert!(
        ran.ok(),
        "uringseed check-config on the ConfigMap's TOML: {}",
        ran.text()
    );
    // ...and the check bites: an unknown key is refused.
    std::fs::write(&path, format!("{toml_text}\n[metrics]\nlisten_port = 1\n")).unwrap();
    let bad = run_bounded(
        common::uringseed().arg("check-config").arg(&path),
        Duration::from_secs(60),
    );
    assert!(!bad.ok());

    let cfg: toml::Value = toml::from_str(toml_text).unwrap();
    assert_eq!(cfg["metrics"]["listen"].as_str(), Some("0.0.0.0:9437"));
    assert_eq!(cfg["metrics"]["enabled"].as_bool(), Some(true));
    let listen: Vec<&str> = cfg["server"]["listen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(listen.iter().all(|l| l.ends_with(":6881")), "{listen:?}");

    for (kind, file) in [
        ("StatefulSet", "base/statefulset.yaml"),
        ("DaemonSet", "components/daemonset/daemonset.yaml"),
    ] {
        let w = yaml_doc(&k8s().join(file));
        assert_eq!(w["kind"], kind);
        let pod = &w["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let mount = |name: &str| -> &Value {
            c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == name)
                .unwrap_or_else(|| panic!("{kind}: no mount {name}"))
        };
        // --config names the ConfigMap's file at its mount.
        let args: Vec<&str> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let config_path = format!(
            "{}/uringseed.toml",
            mount("config")["mountPath"].as_str().unwrap()
        );
        assert_eq!(args, ["serve", "--config", config_path.as_str()], "{kind}");
        // The resume records go to the writable state volume; the data and torrents are read-only.
        let state = mount("state");
        assert!(
            state["readOnly"].as_bool() != Some(true),
            "{kind}: state volume read-only"
        );
        let resume = cfg["hashing"]["resume_dir"].as_str().unwrap();
        assert!(
            resume.starts_with(&format!("{}/", state["mountPath"].as_str().unwrap())),
            "{kind}: resume_dir {resume} not on the state volume"
        );
        assert_eq!(mount("data")["readOnly"], true, "{kind}");
        assert_eq!(
            mount("data")["mountPath"].as_str(),
            cfg["watch"]["data"].as_str()
        );
        assert_eq!(mount("torrents")["readOnly"], true, "{kind}");
        assert_eq!(
            mount("torrents")["mountPath"].as_str(),
            cfg["watch"]["dir"].as_str()
        );
        assert_eq!(mount("config")["readOnly"], true, "{kind}");
        let vol = |name: &str| -> &Value {
            pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("{kind}: no volume {name}"))
        };
        assert_eq!(vol("config")["configMap"]["name"], "uringseed-config");
        assert_eq!(vol("torrents")["configMap"]["optional"], true);
        if kind == "StatefulSet" {
            assert_eq!(vol("data")["persistentVolumeClaim"]["readOnly"], true);
            let claims = w["spec"]["volumeClaimTemplates"].as_array().unwrap();
            assert!(claims.iter().any(|t| t["metadata"]["name"] == "state"));
        } else {
            assert_eq!(vol("data")["hostPath"]["type"], "Directory");
            assert_eq!(vol("state")["hostPath"]["path"], "/var/lib/uringseed");
        }
    }
}

#[test]
fn pods_are_locked_down_probed_and_expose_the_peer_and_metrics_ports() {
    if !have_yaml() {
        return;
    }
    let objs = objects(&resource_files());
    let peers = find(&objs, "Service", "uringseed-peers");
    let metrics = find(&objs, "Service", "uringseed-metrics");
    assert_eq!(
        peers["spec"]["clusterIP"], "None",
        "peer Service is headless: one address per pod"
    );
    let svc_ports = |svc: &Value| -> Vec<(u64, String, String)> {
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["port"].as_u64().unwrap(),
                    p["protocol"].as_str().unwrap_or("TCP").to_string(),
                    p["targetPort"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        svc_ports(peers),
        [
            (6881, "TCP".into(), "peer-tcp".into()),
            (6881, "UDP".into(), "peer-udp".into())
        ]
    );
    assert_eq!(svc_ports(metrics), [(9437, "TCP".into(), "metrics".into())]);

    for (kind, file) in [
        ("StatefulSet", "base/statefulset.yaml"),
        ("DaemonSet", "components/daemonset/daemonset.yaml"),
    ] {
        let w = yaml_doc(&k8s().join(file));
        let template = &w["spec"]["template"];
        for svc in [peers, metrics] {
            for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
                assert_eq!(
                    &template["metadata"]["labels"][k], v,
                    "{kind}: Service selector {k}"
                );
            }
        }
        if kind == "StatefulSet" {
            assert_eq!(w["spec"]["serviceName"], "uringseed-peers");
        }
        let pod = &template["spec"];
        let psc = &pod["securityContext"];
        assert_eq!(psc["runAsNonRoot"], true, "{kind}");
        assert_eq!(psc["runAsUser"], 10001, "{kind}: the Dockerfile's uid");
        assert_eq!(psc["runAsGroup"], 10001, "{kind}");
        assert_eq!(psc["seccompProfile"]["type"], "Localhost", "{kind}");
        // The file that deploy/README.md tells operators to copy to each node.
        let profile = psc["seccompProfile"]["localhostProfile"].as_str().unwrap();
        assert!(
            k8s().join("seccomp").join(profile).is_file(),
            "{kind}: {profile}"
        );
        assert_eq!(pod["automountServiceAccountToken"], false, "{kind}");
        assert!(pod.get("hostNetwork").is_none_or(|h| h == false), "{kind}");
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        let c = &containers[0];
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{kind}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{kind}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{kind}"
        );
        assert!(sc["capabilities"].get("add").is_none(), "{kind}");
        assert!(sc.get("privileged").is_none_or(|p| p == false), "{kind}");
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            let g = &c[probe]["httpGet"];
            assert_eq!(g["path"], path, "{kind} {probe}");
            assert_eq!(g["port"], "metrics", "{kind} {probe}");
        }
        for r in ["requests", "limits"] {
            for k in ["cpu", "memory"] {
                assert!(
                    c["resources"][r][k].is_string(),
                    "{kind}: resources.{r}.{k}"
                );
            }
        }
        let ports: Vec<(String, u64, String, Option<u64>)> = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["containerPort"].as_u64().unwrap(),
                    p["protocol"].as_str().unwrap().to_string(),
                    p["hostPort"].as_u64(),
                )
            })
            .collect();
        let host = if kind == "DaemonSet" {
            Some(6881)
        } else {
            None
        };
        assert_eq!(
            ports,
            [
                ("peer-tcp".into(), 6881, "TCP".into(), host),
                ("peer-udp".into(), 6881, "UDP".into(), host),
                ("metrics".into(), 9437, "TCP".into(), None),
            ],
            "{kind}"
        );
    }
}
