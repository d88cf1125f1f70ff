//! Puts the git commit into `natgw --version`. A build from a tarball (no `.git`, or no git) still builds:
//! the version then says the commit is unknown. Nothing here can fail the build.

#![allow(
    clippy::print_stdout,
    reason = "cargo reads a build script's instructions from its stdout"
)]
use std::process::Command;

/// `git ARGS`, trimmed, when git runs and succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_string()).filter(|s| out.status.success() && !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=NATGW_GIT_COMMIT");
    // A build without .git (the container image's, a tarball) may be told the commit.
    #[allow(
        clippy::disallowed_methods,
        reason = "a build script reads its inputs from the environment"
    )]
    let given = std::env::var("NATGW_GIT_COMMIT").ok();
    let hex = |s: &String| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit());
    let commit = given
        .filter(hex)
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]).filter(hex));
    println!(
        "cargo:rustc-env=NATGW_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    // Rebuild when HEAD moves: a checkout changes HEAD, a commit changes the branch's ref. Asking git for
    // the paths covers worktrees, where `.git` is a file.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for name in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
        if let Some(path) = git(&["rev-parse", "--git-path", name])
            && std::path::Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
