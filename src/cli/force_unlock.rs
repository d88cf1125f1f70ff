//! `natgw force-unlock LOCK_ID [--force]`.

use std::process::ExitCode;
use std::sync::Arc;

use super::Global;
use super::frontend::{ShowPlan, Terminal};
use crate::ops::{self, ForceUnlockOptions, Frontend, OpsError, Unlocked};
use crate::output::Shell;
use crate::render;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The lock's ID, as the message of the run it stopped says.
    #[arg(value_name = "LOCK_ID")]
    id: String,
    /// Do not ask for confirmation (needed without a terminal).
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(global: &Global, args: &Args, shell: &Shell) -> Result<ExitCode, OpsError> {
    let options = ForceUnlockOptions {
        config: global.config.clone(),
        connect: global.connect(),
        id: args.id.clone(),
        force: args.force,
        can_ask: shell.can_ask(),
    };
    let frontend: Arc<dyn Frontend> = Arc::new(Terminal {
        shell: shell.clone(),
        show_plan: ShowPlan::Result,
    });
    let confirm = |holder: &crate::model::lock::Holder| {
        let answer = shell
            .ask(&render::lock::question(&holder.who(), &holder.id))
            .map_err(|e| OpsError::Message(format!("cannot read the answer: {e}")))?;
        Ok(render::apply::approves(&answer))
    };
    match ops::force_unlock_stack(&options, &frontend, &confirm)? {
        Unlocked::Done(holder) => {
            shell.line(&render::lock::unlocked(&holder.who(), &holder.id));
            Ok(ExitCode::SUCCESS)
        }
        Unlocked::Cancelled => {
            shell.line(render::lock::NOT_UNLOCKED);
            Ok(ExitCode::FAILURE)
        }
    }
}
