//! `natgw startup-script`: prints the gateway VM's startup script, as natgw would install it.

use std::process::ExitCode;

use super::Global;
use crate::ops::{self, OpsError};
use crate::output::Shell;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The gateway (a `[gateways.NAME]` table); may be left out when there is only one.
    #[arg(long, value_name = "NAME")]
    gateway: Option<String>,
}

pub(crate) fn run(global: &Global, args: &Args, shell: &Shell) -> Result<ExitCode, OpsError> {
    let script = ops::startup_script(&global.config, args.gateway.as_deref())?;
    shell.try_out(&script).map_err(|e| {
        OpsError::Message(format!("cannot write the script to standard output: {e}"))
    })?;
    Ok(ExitCode::SUCCESS)
}
