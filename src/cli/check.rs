//! `natgw check [--gateway NAME] [--connectivity-test]`: whether the runners' path through each gateway works now, and if not, why.

use std::process::ExitCode;
use std::sync::Arc;

use super::Global;
use super::frontend::{ShowPlan, Terminal};
use crate::ops::{self, CheckOptions, Frontend, OpsError};
use crate::output::Shell;
use crate::render::check::{json, text};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Check one gateway (a `[gateways.NAME]` table); all of them when left out.
    #[arg(long, value_name = "NAME")]
    gateway: Option<String>,
    /// Also ask Google's Network Management API for a Connectivity Test from a node of the pool to each
    /// destination (created, read and deleted; needs networkmanagement.connectivitytests.*).
    #[arg(long)]
    connectivity_test: bool,
}

pub(crate) fn run(global: &Global, args: &Args, shell: &Shell) -> Result<ExitCode, OpsError> {
    let options = CheckOptions {
        config: global.config.clone(),
        connect: global.connect(),
        gateway: args.gateway.clone(),
        connectivity_test: args.connectivity_test,
    };
    let frontend: Arc<dyn Frontend> = Arc::new(Terminal {
        shell: shell.clone(),
        show_plan: ShowPlan::Result,
    });
    let report = ops::check(&options, &frontend)?;
    if shell.json {
        shell.out(&format!("{}\n", json(&report)));
    } else {
        shell.out(&text(&report, shell.style));
    }
    Ok(if report.problems() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
