//! `natgw startup-script`: prints the gateway VM's startup script, as natgw would install it.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use super::{CliError, Global};
use crate::config::{self, Config, ConfigError, Gateway};
use crate::startup_script::{self, ScriptError, ScriptInput};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The gateway (a `[gateways.NAME]` table); may be left out when there is only one.
    #[arg(long, value_name = "NAME")]
    gateway: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path} has no gateway \"{name}\"; its gateways: {known}")]
    UnknownGateway {
        path: String,
        name: String,
        known: String,
    },
    #[error("{path} defines no gateway; add a [gateways.NAME] table")]
    NoGateway { path: String },
    #[error("{path} defines several gateways ({known}); choose one with --gateway NAME")]
    Ambiguous { path: String, known: String },
    #[error(transparent)]
    Script(#[from] ScriptError),
    #[error("cannot write the script to standard output")]
    Stdout(#[source] std::io::Error),
}

pub(crate) fn run(global: &Global, args: &Args) -> Result<ExitCode, CliError> {
    match script(&global.config, args) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(Error::Config(e)) => Err(CliError::Config(e)),
        Err(e) => Err(CliError::Message(e.to_string())),
    }
}

fn script(path: &Path, args: &Args) -> Result<(), Error> {
    let config = config::load(path)?;
    let gateway = select(&config, args.gateway.as_deref())?;
    let text = startup_script::render(&ScriptInput::from_gateway(gateway))?;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // `natgw startup-script | head` is fine.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(Error::Stdout),
    }
}

fn select<'a>(config: &'a Config, name: Option<&str>) -> Result<&'a Gateway, Error> {
    let path = config.path.display().to_string();
    let known = || {
        config
            .gateways
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(name) => config
            .gateways
            .get(name)
            .ok_or_else(|| Error::UnknownGateway {
                path,
                name: name.to_string(),
                known: known(),
            }),
        None => {
            let mut all = config.gateways.values();
            match (all.next(), all.next()) {
                (Some(only), None) => Ok(only),
                (None, _) => Err(Error::NoGateway { path }),
                (Some(_), Some(_)) => Err(Error::Ambiguous {
                    path,
                    known: known(),
                }),
            }
        }
    }
}
