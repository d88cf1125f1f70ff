//! The command line: clap types and one thin function per command.

mod apply;
mod check;
mod emulator;
mod force_unlock;
mod frontend;
mod global;
mod manual;
mod output;
mod plan;
mod startup_script;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Shell;
pub(crate) use global::Global;

/// The version with the commit it was built from (`unknown` in a build without git).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("NATGW_GIT_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "natgw",
    version = VERSION,
    about = "A dedicated, allow-listed egress IP for GKE node pools",
    after_help = "Examples:\n  natgw plan\n  natgw apply\n  natgw output gitlab --json\n  natgw --emulator apply --auto-approve"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what apply would change.
    #[command(
        after_help = "Examples:\n  natgw plan\n  natgw plan --out plan.json --detailed-exitcode\n  natgw plan --destroy"
    )]
    Plan(plan::Args),
    /// Make the project match the config (or apply a saved plan).
    #[command(
        after_help = "Examples:\n  natgw apply\n  natgw apply --auto-approve\n  natgw apply plan.json"
    )]
    Apply(apply::ApplyArgs),
    /// Remove everything this stack created.
    #[command(after_help = "Examples:\n  natgw destroy\n  natgw destroy --auto-approve")]
    Destroy(apply::DestroyArgs),
    /// Remove the stack lock of a run that is known to be gone.
    #[command(
        after_help = "Examples:\n  natgw force-unlock 3f2a77c1-9b0e4d12\n  natgw force-unlock 3f2a77c1-9b0e4d12 --force   # without a terminal (CI)"
    )]
    ForceUnlock(force_unlock::Args),
    /// Check that the runners' path through each gateway works now; changes nothing.
    #[command(after_help = CHECK_HELP)]
    Check(check::Args),
    /// Print the gateways' egress and internal IPs as the project has them now; plans nothing.
    #[command(after_help = OUTPUT_HELP)]
    Output(output::Args),
    /// Check the config; contacts nothing.
    #[command(
        after_help = "Examples:\n  natgw validate\n  natgw validate -c prod/natgw.toml --json"
    )]
    Validate,
    /// Print the startup script of a gateway's VM; contacts nothing.
    #[command(
        after_help = "Examples:\n  natgw startup-script > startup.sh\n  natgw startup-script --gateway gitlab | shellcheck -"
    )]
    StartupScript(startup_script::Args),
    /// Run the local emulator of the Compute Engine and GKE APIs.
    #[command(
        after_help = "Examples:\n  natgw emulator --listen 127.0.0.1:8085\n  NATGW_ENDPOINT=http://127.0.0.1:8085 natgw --anonymous plan"
    )]
    Emulator(emulator::Args),
    /// Print the shell completion script for SHELL.
    #[command(
        after_help = "Examples:\n  natgw completions bash > ~/.local/share/bash-completion/completions/natgw\n  natgw completions zsh > \"${fpath[1]}/_natgw\"\n  natgw completions fish > ~/.config/fish/completions/natgw.fish"
    )]
    Completions(manual::CompletionsArgs),
    /// Print natgw's manual page (roff).
    #[command(
        after_help = "Examples:\n  natgw man | man -l -\n  natgw man > /usr/local/share/man/man1/natgw.1"
    )]
    Man,
}

const CHECK_HELP: &str =
    "Exit status: 0 when every check passes, 2 when a problem is found (or a read was \
refused), 1 on error.

Examples:
  natgw check
  natgw check --gateway gitlab
  natgw check --connectivity-test
  natgw check --json | jq '.gateways[].findings[] | select(.outcome != \"pass\")'";

const OUTPUT_HELP: &str = "Exit status: 0 when the outputs are printed, a gateway whose addresses do not exist yet \
shown as not created; 1 when NAME is not a gateway of the config, when NAME's egress address does not exist \
yet (run natgw apply), or on any error.

Examples:
  natgw output
  natgw output gitlab
  natgw output gitlab --json | jq -r .egress_ip";

pub(crate) fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                // Usage errors exit 1, not clap's 2: 2 means "the plan has changes".
                _ => ExitCode::FAILURE,
            };
            let _ = e.print();
            return code;
        }
    };
    let shell = Shell::new(cli.global.no_color, cli.global.json, cli.global.verbose);
    let result = match cli.command {
        Command::Emulator(args) => emulator::run(args, &shell),
        Command::StartupScript(args) => startup_script::run(&cli.global, &args, &shell),
        Command::Validate => validate::run(&cli.global, &shell),
        Command::Plan(args) => plan::run(&cli.global, &args, &shell),
        Command::Apply(args) => apply::run_apply(&cli.global, &args, &shell),
        Command::Destroy(args) => apply::run_destroy(&cli.global, &args, &shell),
        Command::ForceUnlock(args) => force_unlock::run(&cli.global, &args, &shell),
        Command::Output(args) => output::run(&cli.global, &args, &shell),
        Command::Check(args) => check::run(&cli.global, &args, &shell),
        Command::Completions(args) => manual::completions(&args, &shell),
        Command::Man => manual::man(&shell),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            shell.error(&chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its sources, each once.
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !msg.contains(&s_text) {
            msg.push_str(": ");
            msg.push_str(&s_text);
        }
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests;
