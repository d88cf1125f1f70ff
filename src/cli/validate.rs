//! `natgw validate`: checks the config and renders every startup script; contacts nothing.

use std::process::ExitCode;

use super::{CliError, Global, context};
use crate::output::Shell;

pub(crate) fn run(global: &Global, shell: &Shell) -> Result<ExitCode, CliError> {
    let loaded = context::load(global)?;
    let n = loaded.desired.len();
    if shell.json {
        shell.out(&format!(
            "{}\n",
            serde_json::json!({"valid": true, "project": loaded.project, "stack": loaded.config.stack, "gateways": n})
        ));
    } else {
        shell.line(&format!(
            "{} {} is valid: {n} gateway{} in project {}, stack {}.",
            shell.style.green("Success!"),
            global.config.display(),
            if n == 1 { "" } else { "s" },
            loaded.project,
            loaded.config.stack
        ));
    }
    Ok(ExitCode::SUCCESS)
}
