//! The command line: clap types and one thin function per command.

mod emulator;
mod startup_script;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "natgw",
    version,
    about = "A dedicated, allow-listed egress IP for GKE node pools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the local emulator of the Compute Engine and GKE APIs.
    Emulator(emulator::Args),
    /// Print the startup script of a gateway's VM.
    StartupScript(startup_script::Args),
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Emulator(args) => emulator::run(args),
        Command::StartupScript(args) => startup_script::run(args),
    }
}
