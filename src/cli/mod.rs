//! The command line: clap types and one thin function per command.

mod apply;
mod emulator;
mod force_unlock;
mod frontend;
mod manual;
mod output;
mod plan;
mod startup_script;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::ops::ConnectOptions;
use crate::output::Shell;

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

/// Options every command accepts.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Global {
    /// The config file.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        default_value = "natgw.toml",
        global = true
    )]
    pub(crate) config: PathBuf,
    /// Send every Google API call to this URL instead of Google (an emulator).
    #[arg(long, value_name = "URL", env = "NATGW_ENDPOINT", global = true, value_parser = parse_endpoint)]
    pub(crate) endpoint: Option<String>,
    /// Send no credentials (for emulators).
    #[arg(long, global = true)]
    pub(crate) anonymous: bool,
    /// Run against the embedded emulator, its world kept in FILE (default .natgw/emulator.json).
    #[arg(
        long,
        value_name = "FILE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = ".natgw/emulator.json",
        conflicts_with_all = ["endpoint", "anonymous"],
        global = true
    )]
    pub(crate) emulator: Option<PathBuf>,
    /// Print JSON on stdout.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Say more about what natgw does (never credentials).
    #[arg(short = 'v', long, global = true)]
    pub(crate) verbose: bool,
    /// No colours (also NO_COLOR).
    #[arg(long, global = true)]
    pub(crate) no_color: bool,
    /// Impersonate this service account.
    #[arg(long, value_name = "EMAIL", global = true)]
    pub(crate) impersonate_service_account: Option<String>,
    /// How long a new or restarted gateway VM may take to report ready, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 300,
        env = "NATGW_READY_TIMEOUT",
        global = true
    )]
    pub(crate) ready_timeout: u64,
    /// How long natgw keeps retrying one failing API call (429, 5xx, network), in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 120,
        env = "NATGW_RETRY_TIMEOUT",
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        global = true
    )]
    pub(crate) retry_timeout: u64,
    /// How long natgw waits for another GKE operation on a cluster (a node-pool upgrade) before it changes
    /// the cluster's node pool, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 3600,
        env = "NATGW_CLUSTER_BUSY_TIMEOUT",
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        global = true
    )]
    pub(crate) cluster_busy_timeout: u64,
    /// Changes in flight at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=64), global = true)]
    pub(crate) parallelism: u16,
}

impl Global {
    fn connect(&self) -> ConnectOptions {
        ConnectOptions {
            endpoint: self.endpoint.clone(),
            anonymous: self.anonymous,
            emulator: self.emulator.clone(),
            impersonate_service_account: self.impersonate_service_account.clone(),
            retry_timeout: Duration::from_secs(self.retry_timeout),
            cluster_busy_timeout: Duration::from_secs(self.cluster_busy_timeout),
        }
    }
}

/// An `http://` or `https://` URL with a host and an optional port, nothing else (natgw appends the API
/// paths).
fn parse_endpoint(s: &str) -> Result<String, String> {
    let example = "e.g. http://127.0.0.1:8085";
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("not an http:// or https:// URL ({example})"))?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let bad =
        || format!("expected a scheme and a host with an optional port, nothing else ({example})");
    if authority.contains(['/', '?', '#', '@']) || authority.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    let (host, port) = match authority.strip_prefix('[') {
        // An IPv6 literal: [::1]:8085
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            (
                host,
                after
                    .strip_prefix(':')
                    .or(Some(after).filter(|a| a.is_empty()))
                    .ok_or_else(bad)?,
            )
        }
        None => authority.split_once(':').unwrap_or((authority, "")),
    };
    if host.is_empty() {
        return Err(bad());
    }
    if !port.is_empty() && port.parse::<u16>().is_err() {
        return Err(format!(
            "the port {port:?} is not a number from 0 to 65535 ({example})"
        ));
    }
    Ok(s.trim_end_matches('/').to_string())
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
