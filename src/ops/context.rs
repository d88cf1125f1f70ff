//! The config and everything derived from it without contacting anything: the project, the config's digest,
//! the desired gateways with their startup scripts.

use std::collections::BTreeSet;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::OpsError;
use crate::config::{self, Config};
use crate::gcp::HostScope;
use crate::gcp::auth;
use crate::model::NodePoolId;
use crate::model::desired::{self, DesiredGateway};
use crate::startup_script::{self, ScriptInput};

/// A loaded config and everything derived from it without contacting anything.
pub(super) struct Loaded {
    pub(super) config: Config,
    pub(super) project: String,
    pub(super) digest: String,
    pub(super) desired: Vec<DesiredGateway>,
}

impl Loaded {
    pub(super) fn node_pools(&self) -> Vec<NodePoolId> {
        let set: BTreeSet<NodePoolId> = self.desired.iter().map(|g| g.node_pool.clone()).collect();
        set.into_iter().collect()
    }

    /// The gateway named by `--gateway`, or every gateway when none is.
    pub(super) fn selected<'a>(
        &'a self,
        gateway: Option<&'a String>,
    ) -> impl Iterator<Item = &'a DesiredGateway> + 'a {
        self.desired
            .iter()
            .filter(move |g| gateway.is_none_or(|n| *n == g.owner.gateway))
    }

    /// The Shared VPC host projects the config names, with this stack's tag there.
    pub(super) fn hosts(&self) -> Vec<HostScope> {
        let set: BTreeSet<HostScope> = self
            .config
            .gateways
            .values()
            .filter_map(|gw| desired::host_project(&self.project, gw))
            .map(|h| HostScope {
                project: h.to_string(),
                tag: config::names::host_tag(&self.project, &self.config.stack),
            })
            .collect();
        set.into_iter().collect()
    }

    /// Every name the config's gateways give, derived or adopted, for observation to see in its one round.
    pub(super) fn names(&self) -> crate::gcp::observe::Names {
        let mut n = crate::gcp::observe::Names {
            stack: self.config.stack.clone(),
            ..Default::default()
        };
        for g in &self.desired {
            n.addresses.insert(g.external_address.name.clone());
            n.addresses.insert(g.internal_address.name.clone());
            n.instances.insert(g.instance.name.clone());
            n.firewalls.insert(g.firewall.name.clone());
            n.firewalls
                .extend(g.ssh_firewall.iter().map(|f| f.name.clone()));
            n.routes.extend(g.routes.iter().map(|r| r.name.clone()));
            n.routes.extend(g.adopt.routes.iter().cloned());
            if let Some(ha) = &g.ha {
                n.ha = true;
                n.firewalls.insert(ha.health_firewall.name.clone());
                for z in &ha.zones {
                    n.addresses.insert(z.external_address.name.clone());
                    n.addresses.insert(z.internal_address.name.clone());
                }
                n.addresses
                    .extend(ha.lb.iter().map(|lb| lb.address.name.clone()));
            }
        }
        n
    }

    /// What a plan aims at: the config's gateways, or nothing for a destroy.
    pub(super) fn desired(&self, destroy: bool) -> &[DesiredGateway] {
        if destroy { &[] } else { &self.desired }
    }
}

/// Reads and validates the config, resolves the project, renders every startup script.
pub(super) fn load(path: &Path) -> Result<Loaded, OpsError> {
    // One read: the digest a saved plan records is of the very text that was parsed.
    let text = config::read(path)?;
    let config = config::parse(path, &text)?;
    let digest = crate::hex::encode(&Sha256::digest(text.as_bytes()));
    let project = resolve_project(&config)?;
    let mut desired = Vec::new();
    for gw in config.gateways.values() {
        let script = startup_script::render(&ScriptInput::from_gateway(gw))?;
        desired.push(desired::gateway(&project, &config.stack, gw, script));
    }
    Ok(Loaded {
        config,
        project,
        digest,
        desired,
    })
}

/// The config's `project`, else `GOOGLE_CLOUD_PROJECT`, else `CLOUDSDK_CORE_PROJECT`, else the credentials'
/// quota project (read from their file; nothing is contacted).
fn resolve_project(config: &Config) -> Result<String, OpsError> {
    if let Some(p) = &config.project {
        return Ok(p.clone());
    }
    for var in ["GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"] {
        // The context edge: the environment is read here and in the credentials' lookup, nowhere else.
        #[allow(clippy::disallowed_methods)]
        let value = std::env::var(var);
        if let Ok(v) = value {
            let v = v.trim().to_string();
            if v.is_empty() {
                continue;
            }
            config::validate_project_id(&v)
                .map_err(|m| OpsError::Message(format!("environment variable {var}: {m}")))?;
            return Ok(v);
        }
    }
    if let Some((p, from)) = auth::credentials_project() {
        config::validate_project_id(&p).map_err(|m| {
            OpsError::Message(format!("the credentials' project (from {from}): {m}"))
        })?;
        return Ok(p);
    }
    Err(OpsError::Message(format!(
        "no project: set `project` in {}, or the environment variable GOOGLE_CLOUD_PROJECT (natgw also looks at CLOUDSDK_CORE_PROJECT and at the credentials' quota project, and found neither)",
        config.path.display()
    )))
}

/// Who this run is, for the stack lock's holder record: the user (`USER`, else `LOGNAME`, else `USERNAME`),
/// the host (the kernel's hostname, else `HOSTNAME`) and the command.
pub(super) fn identity(command: &str) -> super::lock::Identity {
    // The context edge: the environment is read here.
    #[allow(clippy::disallowed_methods)]
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let user = ["USER", "LOGNAME", "USERNAME"]
        .into_iter()
        .find_map(var)
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| var("HOSTNAME"))
        .unwrap_or_else(|| "unknown".into());
    super::lock::Identity {
        user,
        host,
        command: command.to_string(),
    }
}
