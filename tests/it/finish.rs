//! The finish of the CLI: `natgw output`, shell completions, the manual page, examples in every `--help`,
//! the commit in `--version`.

use std::process::Command;

use crate::golden::Golden;
use crate::harness::{Natgw, Project};
use crate::support::{request_kind, temp_dir};

/// The requests the emulator received after the first `since`.
fn kinds_since(p: &Project, since: usize) -> Vec<String> {
    p.emu.requests()[since..].iter().map(request_kind).collect()
}

#[test]
fn output_reads_the_addresses_with_one_call_and_says_what_is_missing() {
    let p = Project::new(&[]);
    let mut golden = Golden::new("output.txt");

    // Before apply: the listing says the gateway is not there; asking for it by name fails, as
    // `terraform output NAME` does for an output that does not exist.
    let before = p.emu.requests().len();
    let all = p.natgw(&["output"]);
    all.code(0).stdout_has("(not created yet: run natgw apply)");
    golden.add("output, before apply", &all.transcript());
    let one = p.natgw(&["output", "gitlab"]);
    one.code(1)
        .stderr_has("gateway gitlab has no egress address");
    golden.add("output gitlab, before apply", &one.transcript());
    assert_eq!(
        kinds_since(&p, before),
        ["GET /compute/v1/projects/*/aggregated/addresses"; 2],
        "one list call per run, and nothing that changes anything"
    );

    // A gateway the config does not have is refused before anything is contacted.
    let before = p.emu.requests().len();
    let unknown = p.natgw(&["output", "gitlub"]);
    unknown.code(1).stderr_has("no gateway \"gitlub\"");
    golden.add("output gitlub (not in the config)", &unknown.transcript());
    assert!(kinds_since(&p, before).is_empty());

    p.natgw(&["apply", "--auto-approve"]).ok();
    let mutations = p.mutations().len();
    let before = p.emu.requests().len();
    for args in [
        &["output"][..],
        &["output", "gitlab"],
        &["output", "--json"],
        &["output", "gitlab", "--json"],
    ] {
        let run = p.natgw(args);
        run.ok();
        golden.add(
            &format!("{}, after apply", args.join(" ")),
            &run.transcript(),
        );
    }
    assert_eq!(
        kinds_since(&p, before),
        ["GET /compute/v1/projects/*/aggregated/addresses"; 4]
    );
    assert_eq!(p.mutations().len(), mutations, "output changed something");

    // The JSON of one gateway is the object a script reads the egress IP from.
    let json = p.natgw(&["output", "gitlab", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let egress = v["egress_ip"].as_str().expect("an egress IP");
    assert!(egress.parse::<std::net::Ipv4Addr>().is_ok(), "{v}");
    golden.finish();
}

fn natgw(args: &[&str]) -> crate::harness::Run {
    Natgw::new(&temp_dir("finish")).args(args).run()
}

/// Loads the bash completion into bash and completes the words given, as bash does on TAB.
fn complete_in_bash(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let driver = r#"
set -eu
source "$1"; shift
spec="$(complete -p natgw)"
func="$(printf '%s\n' "$spec" | sed -n 's/.*-F \([^ ]*\) .*/\1/p')"
test -n "$func"
COMP_WORDS=("$@")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
"$func" natgw "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let out = Command::new("bash")
        .arg("-c")
        .arg(driver)
        .arg("bash")
        .arg(script)
        .args(words)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_commands_and_values() {
    let dir = temp_dir("completions");
    let run = natgw(&["completions", "bash"]);
    run.ok();
    let script = dir.join("natgw.bash");
    std::fs::write(&script, &run.stdout).expect("write the completion script");

    let commands = complete_in_bash(&script, &["natgw", "o"]);
    assert_eq!(commands, ["output"]);
    let commands = complete_in_bash(&script, &["natgw", ""]);
    for c in ["plan", "apply", "destroy", "output", "completions", "man"] {
        assert!(commands.iter().any(|w| w == c), "{c} in {commands:?}");
    }
    let shells = complete_in_bash(&script, &["natgw", "completions", ""]);
    for s in ["bash", "zsh", "fish", "powershell"] {
        assert!(shells.iter().any(|w| w == s), "{s} in {shells:?}");
    }
    let flags = complete_in_bash(&script, &["natgw", "plan", "--detailed-"]);
    assert_eq!(flags, ["--detailed-exitcode"]);

    for (shell, marker) in [
        ("zsh", "#compdef natgw"),
        ("fish", "complete -c natgw"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        natgw(&["completions", shell]).ok().stdout_has(marker);
    }
}

#[test]
fn the_manual_page_renders_without_warnings() {
    let dir = temp_dir("man");
    let run = natgw(&["man"]);
    run.ok().stdout_has(".TH natgw 1");
    let page = dir.join("natgw.1");
    std::fs::write(&page, &run.stdout).expect("write the page");
    // `man --warnings` passes groff's warnings on; CI installs man-db and groff (.ci/run).
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&page)
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .expect("man (man-db) is installed: .ci/run installs it");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "man -l failed: {stderr}");
    assert!(stderr.trim().is_empty(), "man -l warned:\n{stderr}");
    for expected in ["natgw", "SUBCOMMANDS", "natgw-output", "--config"] {
        assert!(text.contains(expected), "{expected} in:\n{text}");
    }
}

#[test]
fn every_help_has_an_example() {
    let top = natgw(&["--help"]);
    top.ok().stdout_has("Examples:");
    let commands: Vec<String> = top
        .stdout
        .split("Commands:")
        .nth(1)
        .and_then(|s| s.split("\n\n").next())
        .expect("a Commands section")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect();
    assert!(commands.len() >= 9, "{commands:?}");
    for c in &commands {
        natgw(&[c, "--help"]).ok().stdout_has("Examples:\n  natgw");
    }
}

#[test]
fn the_version_names_the_commit() {
    let run = natgw(&["--version"]);
    run.ok();
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    let prefix = format!("natgw {} (commit ", env!("CARGO_PKG_VERSION"));
    let commit = run
        .stdout
        .trim()
        .strip_prefix(&prefix)
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{prefix}...): {}", run.stdout));
    if git(&["rev-parse", "HEAD"]).is_none() {
        assert_eq!(commit, "unknown");
        return;
    }
    // The binary was built from HEAD or, when a commit landed since the build, from one of its ancestors.
    assert!(
        commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit()),
        "{commit}"
    );
    assert!(
        git(&["merge-base", "--is-ancestor", commit, "HEAD"]).is_some(),
        "{commit} is not HEAD or an ancestor of it"
    );
}
