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
}

#[derive(Debug, clap::Args)]
pub(crate) struct DestroyArgs {
    /// Do not ask for confirmation.
    #[arg(long)]
    auto_approve: bool,
}

fn options(global: &Global, auto_approve: bool, shell: &Shell) -> ApplyOptions {
    ApplyOptions {
        config: global.config.clone(),
        connect: global.connect(),
        planfile: None,
        auto_approve,
        can_ask: shell.can_ask(),
        parallelism: usize::from(global.parallelism),
        ready_timeout: Duration::from_secs(global.ready_timeout),
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
        ..options(global, args.auto_approve, shell)
    };
    let applied = ops::apply(&options, &terminal(shell))?;
    Ok(exit(frontend::report(&applied, shell)))
}

pub(crate) fn run_destroy(
    global: &Global,
    args: &DestroyArgs,
    shell: &Shell,
) -> Result<ExitCode, OpsError> {
    let applied = ops::destroy(&options(global, args.auto_approve, shell), &terminal(shell))?;
    Ok(exit(frontend::report(&applied, shell)))
}
