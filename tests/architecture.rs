//! The shape of the source tree, checked from the source text: no import circles between the
//! top-level modules (state, io, metrics, tracker, ... must form a hierarchy) or between the
//! modules inside `io`; only `src/io/` names tokio_uring; every module starts with its own
//! `//!` doc; no module grows past 600 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/io/conn.rs` -> ["io", "conn"]; `src/state/mod.rs` -> ["state"]; `src/lib.rs` -> [].
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        parts.pop();
    }
    parts
}

/// Every module path a file refers to (`crate::a::b::...` and `super::...`), resolved to the
/// longest prefix that is a module of the crate.
fn references(text: &str, me: &[String], modules: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    // Unit tests (at the end of a file, by convention here) and comments are not references.
    let text = text.split("#[cfg(test)]").next().unwrap_or(text);
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    for (at, _) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        if at > 0 && code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let path: String = code[at..].chars().take_while(|&c| ident(c)).collect();
        let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        let mut base: Vec<String> = match segs.first() {
            Some(&"crate") => Vec::new(),
            Some(&"super") => me.to_vec(),
            _ => continue,
        };
        if segs[0] == "crate" {
            segs.remove(0);
        }
        while segs.first() == Some(&"super") {
            segs.remove(0);
            base.pop();
        }
        let mut best = base.clone();
        let mut cur = base;
        for s in segs {
            cur.push(s.to_string());
            if modules.contains(&cur) {
                best = cur.clone();
            } else {
                break;
            }
        }
        out.insert(best);
    }
    out
}

/// A cycle in `graph`, if there is one (as the list of nodes around it).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == m).unwrap();
                    let mut c = stack[from..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

struct Tree {
    files: Vec<(PathBuf, Vec<String>, String)>,
    modules: BTreeSet<Vec<String>>,
}

fn tree() -> Tree {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    paths.sort();
    let files: Vec<_> = paths
        .into_iter()
        .filter(|p| !p.ends_with("main.rs"))
        .map(|p| {
            let m = module_of(&src, &p);
            let text = std::fs::read_to_string(&p).unwrap();
            (p, m, text)
        })
        .collect();
    let modules = files.iter().map(|(_, m, _)| m.clone()).collect();
    Tree { files, modules }
}

/// Edges between modules at `depth` path segments below `under` (e.g. top level: under = []
/// and depth 1; inside io: under = ["io"], depth 2).
fn graph(t: &Tree, under: &[&str], depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    let key = |m: &[String]| -> Option<String> {
        let inside = m.len() >= under.len() && m.iter().zip(under).all(|(a, b)| a == b);
        (inside && m.len() >= depth.max(1)).then(|| m[..depth].join("::"))
    };
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, me, text) in &t.files {
        // The parent (io/mod.rs) declaring its children is not a use of them.
        let Some(from) = key(me).or_else(|| (me.len() + 1 == depth).then(|| me.join("::"))) else {
            continue;
        };
        for r in references(text, me, &t.modules) {
            let to =
                key(&r).or_else(|| (r.len() + 1 == depth && !r.is_empty()).then(|| r.join("::")));
            if let Some(to) = to.filter(|to| *to != from) {
                g.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    g
}

#[test]
fn top_level_modules_form_a_hierarchy() {
    let t = tree();
    let g = graph(&t, &[], 1);
    for required in ["state", "io", "metrics", "tracker", "server"] {
        assert!(g.contains_key(required), "no module {required}: {g:?}");
    }
    assert!(
        !g["state"].iter().any(
            |m| ["io", "metrics", "tracker", "server", "checker", "daemon"].contains(&m.as_str())
        ),
        "state depends on a part that uses it: {:?}",
        g["state"]
    );
    if let Some(c) = find_cycle(&g) {
        panic!(
            "import circle between top-level modules: {}",
            c.join(" -> ")
        );
    }
}

#[test]
fn modules_inside_io_form_a_hierarchy() {
    let t = tree();
    let g = graph(&t, &["io"], 2);
    assert!(g.contains_key("io::conn"), "{g:?}");
    if let Some(c) = find_cycle(&g) {
        panic!("import circle inside io: {}", c.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert!(find_cycle(&g).is_none());
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    let modules: BTreeSet<Vec<String>> = [vec![], vec!["io".into()], vec!["io".into(), "x".into()]]
        .into_iter()
        .collect();
    let refs = references(
        "use super::x::Y; use crate::io::Z; // crate::nothing",
        &["io".to_string(), "y".to_string()],
        &modules,
    );
    assert!(
        refs.contains(&vec!["io".to_string(), "x".to_string()]),
        "{refs:?}"
    );
    assert!(refs.contains(&vec!["io".to_string()]), "{refs:?}");
    assert_eq!(refs.len(), 2, "{refs:?}");
}

#[test]
fn only_io_names_tokio_uring_every_module_has_its_doc_and_none_is_too_long() {
    let t = tree();
    for (path, m, text) in &t.files {
        let shown = path.display();
        if m.first().is_none_or(|f| f != "io") {
            assert!(!text.contains("tokio_uring"), "{shown} names tokio_uring");
        }
        let first = text.lines().next().unwrap_or("");
        assert!(
            first.starts_with("//!") || first.starts_with("#![doc = include_str!"),
            "{shown} does not start with its module doc"
        );
        let lines = text.lines().count();
        assert!(
            lines <= 600,
            "{shown} has {lines} lines (keep modules under ~600)"
        );
    }
}
