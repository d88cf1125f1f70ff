//! `natgw completions SHELL` and `natgw man`: generated from the clap types, so they cannot drift from the
//! commands and flags natgw has.

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell as CompletionShell;

use super::Cli;
use crate::ops::OpsError;
use crate::output::Shell;

#[derive(Debug, clap::Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    shell: CompletionShell,
}

pub(crate) fn completions(args: &CompletionsArgs, shell: &Shell) -> Result<ExitCode, OpsError> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "natgw", &mut script);
    write(shell, &script, "the completion script")
}

pub(crate) fn man(shell: &Shell) -> Result<ExitCode, OpsError> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| OpsError::Message(format!("cannot render the manual page: {e}")))?;
    write(shell, &page, "the manual page")
}

fn write(shell: &Shell, bytes: &[u8], what: &str) -> Result<ExitCode, OpsError> {
    let text = String::from_utf8_lossy(bytes);
    shell
        .try_out(&text)
        .map_err(|e| OpsError::Message(format!("cannot write {what} to standard output: {e}")))?;
    Ok(ExitCode::SUCCESS)
}
