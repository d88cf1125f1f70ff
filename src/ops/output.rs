//! `output`: the gateways' addresses as the project has them now, without planning (`terraform output`). One
//! list call, whatever the number of gateways: nothing else is read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::context::{self, Loaded};
use super::session::Session;
use super::{ConnectOptions, Frontend, OpsError, runtime};
use crate::model::Address;
use crate::model::observed::Observed;
use crate::model::progress::Outputs;

#[derive(Clone, Debug, Default)]
pub(crate) struct OutputOptions {
    pub(crate) config: PathBuf,
    pub(crate) connect: ConnectOptions,
    /// One gateway of the config; all of them when `None`.
    pub(crate) gateway: Option<String>,
}

/// The outputs of each gateway asked for, by name. A gateway whose address does not exist in the project
/// (or is not this stack's) has `None` there.
#[derive(Debug)]
pub(crate) struct GatewayOutputs {
    pub(crate) project: String,
    pub(crate) gateways: BTreeMap<String, Outputs>,
}

pub(crate) fn output(
    options: &OutputOptions,
    frontend: &Arc<dyn Frontend>,
) -> Result<GatewayOutputs, OpsError> {
    let loaded = context::load(&options.config)?;
    if let Some(name) = &options.gateway {
        check_gateway(&loaded, name)?;
    }
    let observed = runtime(Some(2))?.block_on(async {
        let session = Session::open(&options.connect, &loaded, frontend).await?;
        // The same filter as a plan's: every address with natgw's labels, and those the config names
        // (an adopted address keeps its own name).
        let filter = crate::gcp::observe::labelled_filter(&loaded.names().addresses);
        let result = session.cloud.list_addresses(&filter).await;
        session.finish().await?;
        Ok::<_, OpsError>(result?)
    })?;
    let gateways = loaded
        .selected(options.gateway.as_ref())
        .map(|g| {
            let ip = |want: &Address| {
                observed
                    .iter()
                    .find(|o| {
                        o.resource.name == want.name
                            && o.resource.region == want.region
                            && o.owned_by(&loaded.config.stack)
                    })
                    .and_then(|o: &Observed<Address>| o.resource.address)
            };
            let outputs = match &g.ha {
                None => Outputs {
                    egress_ip: ip(&g.external_address),
                    internal_ip: ip(&g.internal_address),
                    egress_ips: None,
                },
                Some(ha) => {
                    let egress: Vec<Option<std::net::Ipv4Addr>> =
                        ha.zones.iter().map(|z| ip(&z.external_address)).collect();
                    let next_hop = match (&ha.lb, ha.zones.as_slice()) {
                        (Some(lb), _) => ip(&lb.address),
                        (None, [zone]) => ip(&zone.internal_address),
                        (None, _) => None,
                    };
                    Outputs::zones(&egress, next_hop)
                }
            };
            (g.owner.gateway.clone(), outputs)
        })
        .collect();
    Ok(GatewayOutputs {
        project: loaded.project,
        gateways,
    })
}

/// A gateway named on the command line must be one of the config's: refused before contacting anything.
pub(super) fn check_gateway(loaded: &Loaded, name: &str) -> Result<(), OpsError> {
    if loaded.config.gateways.contains_key(name) {
        return Ok(());
    }
    let known: Vec<&str> = loaded.config.gateways.keys().map(String::as_str).collect();
    Err(OpsError::Message(format!(
        "{}: no gateway {name:?} (its gateways: {})",
        loaded.config.path.display(),
        known.join(", ")
    )))
}
