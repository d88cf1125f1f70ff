//! `natgw output [NAME]`: the gateways' egress and internal IPs as the project has them now.

use std::process::ExitCode;
use std::sync::Arc;

use super::Global;
use super::frontend::{ShowPlan, Terminal};
use crate::ops::{self, Frontend, OpsError, OutputOptions};
use crate::output::Shell;
use crate::render::output::{NOT_CREATED, json_all, json_one, not_created, rows};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// One gateway (a `[gateways.NAME]` table); all of them when left out.
    #[arg(value_name = "NAME")]
    gateway: Option<String>,
}

pub(crate) fn run(global: &Global, args: &Args, shell: &Shell) -> Result<ExitCode, OpsError> {
    let options = OutputOptions {
        config: global.config.clone(),
        connect: global.connect(),
        gateway: args.gateway.clone(),
    };
    let frontend: Arc<dyn Frontend> = Arc::new(Terminal {
        shell: shell.clone(),
        show_plan: ShowPlan::Result,
    });
    let found = ops::output(&options, &frontend)?;
    if let Some(name) = &args.gateway {
        // `terraform output NAME` fails on an output that does not exist; a script must not read an empty
        // allow-list entry as an IP.
        let Some(outputs) = found.gateways.get(name).filter(|o| {
            o.egress_ip.is_some() || o.egress_ips.as_ref().is_some_and(|ips| !ips.is_empty())
        }) else {
            return Err(OpsError::Message(not_created(name, &found.project)));
        };
        if shell.json {
            shell.out(&format!("{}\n", json_one(outputs)));
            return Ok(ExitCode::SUCCESS);
        }
    } else if shell.json {
        shell.out(&format!("{}\n", json_all(&found.gateways)));
        return Ok(ExitCode::SUCCESS);
    }
    shell.out(&rows(&found.gateways, NOT_CREATED));
    Ok(ExitCode::SUCCESS)
}
