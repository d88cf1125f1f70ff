//! `natgw validate`: checks the config and renders every startup script; contacts nothing.

use std::process::ExitCode;

use super::Global;
use crate::ops::{self, OpsError};
use crate::output::Shell;
use crate::render::validate::{valid_json, valid_text};

pub(crate) fn run(global: &Global, shell: &Shell) -> Result<ExitCode, OpsError> {
    let v = ops::validate(&global.config)?;
    if shell.json {
        shell.out(&format!(
            "{}\n",
            valid_json(&v.project, &v.stack, v.gateways)
        ));
    } else {
        shell.line(&valid_text(
            &v.path,
            &v.project,
            &v.stack,
            v.gateways,
            shell.style,
        ));
    }
    Ok(ExitCode::SUCCESS)
}
