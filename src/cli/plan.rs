//! `natgw plan`: what apply would change, and a saved plan for `natgw apply PLANFILE`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use super::Global;
use super::frontend::{ShowPlan, Terminal};
use crate::ops::{self, Frontend, OpsError, PlanOptions};
use crate::output::Shell;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Save the plan to FILE, for `natgw apply FILE`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Exit 2 when the plan has changes (0: none, 1: error).
    #[arg(long)]
    detailed_exitcode: bool,
    /// Plan the destruction of everything the stack owns.
    #[arg(long)]
    destroy: bool,
    /// Write GitLab's Terraform report (`{"create": N, "update": N, "delete": N}`) to FILE.
    #[arg(long, value_name = "FILE")]
    gitlab_report: Option<PathBuf>,
}

pub(crate) fn run(global: &Global, args: &Args, shell: &Shell) -> Result<ExitCode, OpsError> {
    let options = PlanOptions {
        config: global.config.clone(),
        connect: global.connect(),
        destroy: args.destroy,
        out: args.out.clone(),
        gitlab_report: args.gitlab_report.clone(),
    };
    let frontend: Arc<dyn Frontend> = Arc::new(Terminal {
        shell: shell.clone(),
        show_plan: ShowPlan::Result,
    });
    let planned = ops::plan(&options, &frontend)?;
    Ok(if args.detailed_exitcode && planned.has_changes {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
