//! The layer test: dependencies between the crate's top-level modules run one way, in the order
//! ARCHITECTURE.md declares. It reads every `crate::` path in the code under `src/` (comments
//! and doc links left out) and fails on an import from a higher layer, or a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level modules, lowest layer first: a module may use only the modules before it.
const LAYERS: [&str; 33] = [
    "error",
    "advisories",
    "sql",
    "secret",
    "refusal",
    "config",
    "provision",
    "roles",
    "migrations",
    "database",
    "scratch",
    "target",
    "system",
    "workload",
    "faults",
    "history",
    "executor",
    "subject",
    "catalog",
    "policy_expression",
    "probe",
    "truth",
    "invariants",
    "project",
    "report",
    "evidence",
    "campaign",
    "check",
    "setup",
    "pgbench",
    "bench",
    "doctor",
    "architecture",
];

/// The top-level module a file under `src/` belongs to (`None` for `lib.rs` and `main.rs`).
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The top-level modules `source` names through `crate::` paths, comments left out.
fn uses(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in source.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            // `rlsgate::crate::` cannot occur; `$crate::` is a macro's own crate.
            let preceded = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            if matches!(preceded, Some(c) if c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split(['}', ','])
                    .map(|s| s.trim().split("::").next().unwrap_or(""))
                    .collect(),
                None => vec![
                    rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or(""),
                ],
            };
            out.extend(
                names
                    .into_iter()
                    .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_alphanumeric() || c == '_'))
                    .map(str::to_string),
            );
        }
    }
    out
}

/// Every top-level module's uses of the others, read from the files under `root`.
fn graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, BTreeSet<String>>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).expect("under src/");
                let Some(module) = module_of(relative) else {
                    continue;
                };
                let source = std::fs::read_to_string(&path).expect("a readable source file");
                let used: Vec<String> =
                    uses(&source).into_iter().filter(|u| *u != module).collect();
                out.entry(module).or_default().extend(used);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The problems of `graph` against `layers`: modules missing from the declared order, uses of
/// a higher layer, and cycles.
fn problems(graph: &BTreeMap<String, BTreeSet<String>>, layers: &[&str]) -> Vec<String> {
    let rank = |m: &str| layers.iter().position(|l| *l == m);
    let mut out = Vec::new();
    for (module, used) in graph {
        let Some(own) = rank(module) else {
            out.push(format!("module {module} is not in the declared layers"));
            continue;
        };
        for u in used {
            match rank(u) {
                Some(r) if r < own => {}
                Some(_) => out.push(format!("{module} uses {u}, a higher layer")),
                None => out.push(format!("{module} uses {u}, which is not a declared layer")),
            }
        }
    }
    out.extend(cycles(graph));
    out
}

/// One line per import cycle found by a depth-first walk.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn visit<'g>(
        node: &'g str,
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
        out: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|p| *p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node);
            out.push(format!("import cycle: {}", cycle.join(" → ")));
            return;
        }
        if !done.insert(node) {
            return;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done, out);
        }
        path.pop();
    }
    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, graph, &mut Vec::new(), &mut done, &mut out);
    }
    out
}

#[test]
fn dependencies_run_one_way_in_the_declared_order() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&root);
    assert!(graph.contains_key("campaign") && graph.contains_key("provision"));
    let problems = problems(&graph, &LAYERS);
    assert!(
        problems.is_empty(),
        "the layers of ARCHITECTURE.md are broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn an_upward_import_and_a_cycle_are_caught() {
    let mut graph = BTreeMap::new();
    graph.insert(
        "provision".to_string(),
        BTreeSet::from(["database".to_string()]),
    );
    graph.insert(
        "database".to_string(),
        BTreeSet::from(["provision".to_string()]),
    );
    let found = problems(&graph, &LAYERS);
    assert!(
        found.contains(&"provision uses database, a higher layer".to_string()),
        "{found:?}"
    );
    assert!(
        found.iter().any(|p| p.starts_with("import cycle: ")),
        "{found:?}"
    );
}

#[test]
fn paths_are_read_from_code_not_comments() {
    let source = "use crate::error::{Error, Result};\n\
                  use crate::{config, roles::Role};\n\
                  // crate::campaign in a comment\n\
                  /// [`Report`](crate::report::Report)\n\
                  let x = crate::sql::quote_ident(\"a\"); $crate::ignored";
    let found: Vec<String> = uses(source).into_iter().collect();
    assert_eq!(found, ["config", "error", "roles", "sql"]);
}
