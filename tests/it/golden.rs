//! Golden files of natgw's messages, one per message family: `tests/golden/NAME` holds one section per
//! case (`=== title`, then the text). A changed message is a failing test until the file is refreshed with
//! `NATGW_BLESS=1 cargo test`, so every change of wording shows up as a reviewed diff.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

const HEADER: &str = "# natgw's messages, one section per case (tests/it/golden.rs).\n\
                      # Refresh with `NATGW_BLESS=1 cargo test` and review the diff.\n";

/// Serialises the rewrites of a file whose sections come from tests running in parallel.
static WRITING: Mutex<()> = Mutex::new(());

fn path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file)
}

fn blessing() -> bool {
    std::env::var_os("NATGW_BLESS").is_some()
}

fn parse(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("=== ") {
            if let Some((t, body)) = current.take() {
                out.insert(t, body.trim_end().to_string());
            }
            current = Some((title.to_string(), String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((t, body)) = current {
        out.insert(t, body.trim_end().to_string());
    }
    out
}

fn render(sections: &BTreeMap<String, String>) -> String {
    let mut out = HEADER.to_string();
    for (title, body) in sections {
        out.push_str(&format!("\n=== {title}\n{body}\n"));
    }
    out
}

fn read(file: &str) -> BTreeMap<String, String> {
    parse(&std::fs::read_to_string(path(file)).unwrap_or_default())
}

fn write(file: &str, sections: &BTreeMap<String, String>) {
    let p = path(file);
    std::fs::create_dir_all(p.parent().expect("tests/golden")).expect("create tests/golden");
    std::fs::write(&p, render(sections)).expect("write a golden file");
}

fn mismatch(file: &str, title: &str, expected: Option<&String>, actual: &str) -> String {
    match expected {
        None => format!("{file}: no section `=== {title}`; got:\n{actual}"),
        Some(e) => format!("{file}, `=== {title}`:\n--- expected\n{e}\n--- actual\n{actual}"),
    }
}

/// Compares one section of `file` with `actual` (or, when blessing, stores it). Sections of one file may
/// come from different tests.
pub(crate) fn check_section(file: &str, title: &str, actual: &str) {
    let actual = actual.trim_end();
    if blessing() {
        let _lock = WRITING.lock().unwrap_or_else(|e| e.into_inner());
        let mut sections = read(file);
        sections.insert(title.to_string(), actual.to_string());
        write(file, &sections);
        return;
    }
    let sections = read(file);
    let expected = sections.get(title);
    assert!(
        expected.is_some_and(|e| e == actual),
        "{}\nIf the change is intended, run NATGW_BLESS=1 cargo test and review the diff.",
        mismatch(file, title, expected, actual)
    );
}

/// The sections of a whole golden file, collected by one test; `finish` compares them all, so a section
/// the test no longer makes fails too.
pub(crate) struct Golden {
    file: &'static str,
    sections: BTreeMap<String, String>,
}

impl Golden {
    pub(crate) fn new(file: &'static str) -> Golden {
        Golden {
            file,
            sections: BTreeMap::new(),
        }
    }

    pub(crate) fn add(&mut self, title: &str, text: &str) {
        let old = self
            .sections
            .insert(title.to_string(), text.trim_end().to_string());
        assert!(old.is_none(), "{}: two sections `{title}`", self.file);
    }

    pub(crate) fn finish(self) {
        if blessing() {
            write(self.file, &self.sections);
            return;
        }
        let expected = read(self.file);
        let mut wrong: Vec<String> = self
            .sections
            .iter()
            .filter(|(t, a)| expected.get(*t) != Some(*a))
            .map(|(t, a)| mismatch(self.file, t, expected.get(t), a))
            .collect();
        wrong.extend(
            expected
                .keys()
                .filter(|t| !self.sections.contains_key(*t))
                .map(|t| format!("{}: `=== {t}` is no longer produced", self.file)),
        );
        assert!(
            wrong.is_empty(),
            "{} of {} sections differ:\n\n{}\n\nIf the change is intended, run NATGW_BLESS=1 cargo test \
             and review the diff.",
            wrong.len(),
            self.sections.len(),
            wrong.join("\n\n")
        );
    }
}
