//! Layers point one way: a test that reads the sources and fails when a module's code (tests aside: they may
//! borrow fixtures across layers) imports from a layer it must not know, or when two modules import from
//! each other (directly or around a loop).
//!
//! The rules, from the bottom up (README "Development" has the map):
//! - `output` is a leaf; `config`, `model`, `plan` and `render` are pure (no I/O layer, no tokio);
//! - `gcp` knows Google and the model, not planning, applying or the commands;
//! - `emulator` (and `routing`, Google's route selection) is Google's side: it knows nothing of natgw but small
//!   helpers (`hex`, `net`);
//! - `walk` is a generic dependency walk that knows nothing of natgw's resources;
//! - `apply` walks plans through `gcp`; `ops` orchestrates everything; `cli` talks only to `ops`,
//!   `render` and `output`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layers below everything that does I/O or runs tasks.
const IO: &[&str] = &["gcp", "apply", "ops", "cli", "emulator", "tokio"];

/// (module, what its code must not name: other top-level modules of the crate, or `tokio`).
fn rules() -> Vec<(&'static str, Vec<&'static str>)> {
    let pure = |extra: &[&'static str]| [IO, extra].concat();
    vec![
        ("output", MODULES.iter().copied().chain(["tokio"]).collect()),
        ("config", pure(&["model", "plan", "render", "output"])),
        ("model", pure(&["plan", "render", "output"])),
        ("plan", pure(&["render", "output"])),
        ("render", pure(&[])),
        ("startup_script", pure(&["model", "plan", "render"])),
        ("gcp", vec!["plan", "apply", "ops", "cli", "render"]),
        (
            "emulator",
            vec![
                "config",
                "model",
                "plan",
                "render",
                "gcp",
                "apply",
                "ops",
                "cli",
                "output",
                "startup_script",
            ],
        ),
        // The generic walker knows steps and dependencies, nothing of Google or of plans.
        (
            "walk",
            vec![
                "config", "model", "plan", "render", "gcp", "apply", "ops", "cli", "emulator",
                "output",
            ],
        ),
        // Google's route selection, used by the emulator: pure, and knows nothing of natgw.
        (
            "routing",
            pure(&[
                "config",
                "model",
                "plan",
                "render",
                "output",
                "startup_script",
            ]),
        ),
        ("apply", vec!["ops", "cli", "render"]),
        ("ops", vec!["cli"]),
        ("cli", vec!["gcp", "apply"]),
    ]
}

/// Every top-level module the rules speak of.
const MODULES: &[&str] = &[
    "apply",
    "cli",
    "config",
    "emulator",
    "gcp",
    "hex",
    "model",
    "net",
    "ops",
    "output",
    "plan",
    "render",
    "routing",
    "startup_script",
    "walk",
];

/// The crate's top-level modules (and `tokio`) that `source` names, outside comments.
fn names(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let path = regex::Regex::new(r"\bcrate::(\w+)").expect("regex");
    found.extend(path.captures_iter(&code).map(|c| c[1].to_string()));
    // `use crate::{a::B, c}`: the first name of each top-level item of the group.
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::{") {
        rest = &rest[at + "crate::{".len()..];
        let (mut depth, mut item_start, mut end) = (1, true, rest.len());
        for (i, ch) in rest.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' if depth == 1 => {
                    end = i;
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 1 => item_start = true,
                c if item_start && (c.is_alphanumeric() || c == '_') => {
                    let name: String = rest[i..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    found.insert(name);
                    item_start = false;
                }
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    if regex::Regex::new(r"\btokio::|\buse tokio\b")
        .expect("regex")
        .is_match(&code)
    {
        found.insert("tokio".into());
    }
    found
}

/// The part of a file that is not its test module.
fn without_tests(path: &Path, source: &str) -> String {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name == "tests.rs" || name == "proptests.rs" {
        return String::new();
    }
    match source.find("#[cfg(test)]\nmod tests") {
        Some(at) => source[..at].to_string(),
        None => source.to_string(),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("read src");
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module -> (file, names its non-test code uses).
fn scan() -> BTreeMap<String, Vec<(String, BTreeSet<String>)>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut by_module: BTreeMap<String, Vec<(String, BTreeSet<String>)>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "main" || module == "layers" {
            continue;
        }
        let source = std::fs::read_to_string(&file).expect("read source");
        let source = without_tests(&file, &source);
        let mut used = names(&source);
        used.remove(&module);
        by_module
            .entry(module)
            .or_default()
            .push((rel.display().to_string(), used));
    }
    by_module
}

/// Where `graph` loops, as a path `a -> b -> a`.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn layers_import_only_downwards() {
    // Test code may borrow fixtures across layers (plan's example config in model's tests).
    let scanned = scan();
    let mut broken = Vec::new();
    for (module, forbidden) in rules() {
        let Some(files) = scanned.get(module) else {
            continue;
        };
        for (file, used) in files {
            for name in forbidden.iter().filter(|f| used.contains(**f)) {
                broken.push(format!("src/{file} uses {name} ({module} must not)"));
            }
        }
    }
    for module in scanned.keys() {
        assert!(
            MODULES.contains(&module.as_str()),
            "src/{module} is a new top-level module: add it to the layering rules in src/layers.rs and to README \"Development\""
        );
    }
    assert!(broken.is_empty(), "layers broken:\n{}", broken.join("\n"));
}

#[test]
fn no_module_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = scan()
        .into_iter()
        .map(|(module, files)| {
            let uses = files
                .into_iter()
                .flat_map(|(_, used)| used)
                .filter(|u| MODULES.contains(&u.as_str()))
                .collect();
            (module, uses)
        })
        .collect();
    assert_eq!(cycle(&graph), None, "modules import from each other");
}

#[test]
fn the_scanner_sees_every_way_of_naming_a_module() {
    let source = "use crate::gcp::Cloud;\nuse crate::{\n    model::{Kind, Resource},\n    plan,\n};\n// crate::cli in a comment\nfn f() { crate::ops::plan(); tokio::spawn(x); }\n";
    let found: Vec<String> = names(source).into_iter().collect();
    assert_eq!(found, ["gcp", "model", "ops", "plan", "tokio"]);
    let loop_graph = BTreeMap::from([
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]);
    assert_eq!(
        cycle(&loop_graph).map(|c| c.join(" -> ")),
        Some("a -> b -> c -> a".into())
    );
}
