//! `natgw apply [PLANFILE]` and `natgw destroy`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::Global;
use super::frontend::{self, ShowPlan, Terminal};
use crate::ops::{self, ApplyOptions, Frontend, OpsError};
use crate::output::Shell;

#[derive(Debug, clap::Args)]
pub(crate) struct ApplyArgs {
    /// A plan saved by `natgw plan --out FILE`: applied exactly, without asking, if the project still
    /// matches what the plan saw.
    #[arg(value_name = "PLANFILE")]
    planfile: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    auto_approve: bool,
    #[command(flatten)]
    lock: LockArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DestroyArgs {
    /// Do not ask for confirmation.
    #[arg(long)]
    auto_approve: bool,
    #[command(flatten)]
    lock: LockArgs,
}

/// Terraform's `-lock` and `-lock-timeout`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LockArgs {
    /// Hold the stack lock while running (--lock=false: don't; another run may then interleave its changes).
    #[arg(
        long,
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    lock: bool,
    /// How long to wait for a stack lock that another run holds, e.g. 90s or 5m (default: fail at once).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    lock_timeout: Duration,
}

impl LockArgs {
    fn options(&self) -> ops::lock::Options {
        ops::lock::Options {
            enabled: self.lock,
            timeout: self.lock_timeout,
        }
    }
}

/// A duration as Terraform's `-lock-timeout` writes it: a whole number and a unit, `s`, `m` or `h`.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("{s:?} is not a duration: write a whole number and a unit, like 90s, 5m or 1h");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => None,
    }
    .ok_or_else(bad)?;
    if secs > 86_400 {
        return Err(format!(
            "{s:?} is longer than a day (24h), the longest natgw waits for a lock"
        ));
    }
    Ok(Duration::from_secs(secs))
}

fn options(global: &Global, auto_approve: bool, lock: &LockArgs, shell: &Shell) -> ApplyOptions {
    ApplyOptions {
        config: global.config.clone(),
        connect: global.connect(),
        planfile: None,
        auto_approve,
        can_ask: shell.can_ask(),
        parallelism: usize::from(global.parallelism),
        ready_timeout: Duration::from_secs(global.ready_timeout),
        lock: lock.options(),
    }
}

fn terminal(shell: &Shell) -> Arc<dyn Frontend> {
    Arc::new(Terminal {
        shell: shell.clone(),
        show_plan: ShowPlan::BeforeApproval,
    })
}

fn exit(succeeded: bool) -> ExitCode {
    if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub(crate) fn run_apply(
    global: &Global,
    args: &ApplyArgs,
    shell: &Shell,
) -> Result<ExitCode, OpsError> {
    let options = ApplyOptions {
        planfile: args.planfile.clone(),
        ..options(global, args.auto_approve, &args.lock, shell)
    };
    let applied = ops::apply(&options, &terminal(shell))?;
    Ok(exit(frontend::report(&applied, shell)))
}

pub(crate) fn run_destroy(
    global: &Global,
    args: &DestroyArgs,
    shell: &Shell,
) -> Result<ExitCode, OpsError> {
    let applied = ops::destroy(
        &options(global, args.auto_approve, &args.lock, shell),
        &terminal(shell),
    )?;
    Ok(exit(frontend::report(&applied, shell)))
}
