//! `startup-script`: a gateway VM's startup script, as natgw would install it; nothing is contacted.

use std::path::Path;

use super::OpsError;
use crate::config::{self, Config, Gateway};
use crate::startup_script::{self as script, ScriptInput};

/// The script of the gateway `name` (which may be left out when the config has only one).
pub(crate) fn startup_script(config: &Path, name: Option<&str>) -> Result<String, OpsError> {
    let config = config::load(config)?;
    let gateway = select(&config, name).map_err(OpsError::Message)?;
    script::render(&ScriptInput::from_gateway(gateway))
        .map_err(|e| OpsError::Message(e.to_string()))
}

fn select<'a>(config: &'a Config, name: Option<&str>) -> Result<&'a Gateway, String> {
    let path = config.path.display();
    let known = || {
        config
            .gateways
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(name) => config.gateways.get(name).ok_or_else(|| {
            format!(
                "{path} has no gateway \"{name}\"; its gateways: {}",
                known()
            )
        }),
        None => {
            let mut all = config.gateways.values();
            match (all.next(), all.next()) {
                (Some(only), None) => Ok(only),
                (None, _) => Err(format!(
                    "{path} defines no gateway; add a [gateways.NAME] table"
                )),
                (Some(_), Some(_)) => Err(format!(
                    "{path} defines several gateways ({}); choose one with --gateway NAME",
                    known()
                )),
            }
        }
    }
}
