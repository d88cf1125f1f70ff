//! natgw: a dedicated, allow-listed egress IP for GKE node pools.

mod apply;
mod cli;
mod config;
mod emulator;
mod gcp;
mod hex;
#[cfg(test)]
mod layers;
mod model;
mod net;
mod ops;
mod output;
mod plan;
mod render;
mod routing;
mod startup_script;
mod walk;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
