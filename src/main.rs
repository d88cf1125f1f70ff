//! natgw: a dedicated, allow-listed egress IP for GKE node pools.

mod apply;
mod cli;
mod config;
mod emulator;
mod gcp;
mod hex;
mod model;
mod net;
mod ops;
mod output;
mod plan;
mod render;
mod startup_script;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
