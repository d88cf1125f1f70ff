//! What plan, apply and destroy share: the config, the project, the desired gateways, and a connection to
//! Google (or to an emulator).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{CliError, Global};
use crate::config::{self, Config};
use crate::emulator::{
    Emulator, Options as EmulatorOptions, Seed, SeedCluster, SeedNetwork, SeedNodePool,
    SeedSubnetwork,
};
use crate::gcp::{Cloud, Connection, auth};
use crate::model::NodePoolId;
use crate::model::desired::{self, DesiredGateway};
use crate::net::Ipv4Net;
use crate::output::Shell;
use crate::startup_script::{self, ScriptInput};

/// A loaded config and everything derived from it without contacting anything.
pub(crate) struct Loaded {
    pub(crate) config: Config,
    pub(crate) project: String,
    pub(crate) digest: String,
    pub(crate) desired: Vec<DesiredGateway>,
}

impl Loaded {
    pub(crate) fn node_pools(&self) -> Vec<NodePoolId> {
        let set: BTreeSet<NodePoolId> = self.desired.iter().map(|g| g.node_pool.clone()).collect();
        set.into_iter().collect()
    }
}

/// Reads and validates the config, resolves the project, renders every startup script.
pub(crate) fn load(global: &Global) -> Result<Loaded, CliError> {
    let path = &global.config;
    // One read: the digest a saved plan records is of the very text that was parsed.
    let text = config::read(path)?;
    let config = config::parse(path, &text)?;
    let digest = crate::hex::encode(&Sha256::digest(text.as_bytes()));
    let project = resolve_project(&config)?;
    let mut desired = Vec::new();
    for gw in config.gateways.values() {
        let script = startup_script::render(&ScriptInput::from_gateway(gw))?;
        desired.push(desired::gateway(&config.stack, gw, script));
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
fn resolve_project(config: &Config) -> Result<String, CliError> {
    if let Some(p) = &config.project {
        return Ok(p.clone());
    }
    for var in ["GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"] {
        if let Ok(v) = std::env::var(var) {
            let v = v.trim().to_string();
            if v.is_empty() {
                continue;
            }
            config::validate_project_id(&v)
                .map_err(|m| CliError::Message(format!("environment variable {var}: {m}")))?;
            return Ok(v);
        }
    }
    if let Some((p, from)) = auth::credentials_project() {
        config::validate_project_id(&p).map_err(|m| {
            CliError::Message(format!("the credentials' project (from {from}): {m}"))
        })?;
        return Ok(p);
    }
    Err(CliError::Message(format!(
        "no project: set `project` in {}, or the environment variable GOOGLE_CLOUD_PROJECT (natgw also looks at CLOUDSDK_CORE_PROJECT and at the credentials' quota project, and found neither)",
        config.path.display()
    )))
}

/// A connection, and the embedded emulator behind it when `--emulator` is used (kept alive until `finish`).
pub(crate) struct Session {
    pub(crate) cloud: Cloud,
    emulator: Option<Emulator>,
}

impl Session {
    pub(crate) async fn open(
        global: &Global,
        loaded: &Loaded,
        shell: &Shell,
    ) -> Result<Session, CliError> {
        let (endpoint, credentials, emulator) = if let Some(state) = &global.emulator {
            let emulator = start_emulator(state, loaded).await?;
            shell.debug(&format!(
                "embedded emulator at {} (world in {})",
                emulator.url(),
                state.display()
            ));
            (Some(emulator.url()), auth::anonymous(), Some(emulator))
        } else if global.anonymous {
            (global.endpoint.clone(), auth::anonymous(), None)
        } else {
            let resolved = auth::resolve(global.impersonate_service_account.as_deref())
                .await
                .map_err(crate::gcp::GcpError::from)?;
            shell.debug(&format!("credentials: {}", resolved.from));
            (global.endpoint.clone(), resolved.credentials, None)
        };
        if let Some(url) = &endpoint {
            shell.debug(&format!("API endpoint: {url}"));
        }
        let mut conn = Connection::new(endpoint, credentials);
        conn.retry.max_elapsed = Duration::from_secs(global.retry_timeout);
        conn.retry.cluster_busy_timeout = Duration::from_secs(global.cluster_busy_timeout);
        let notices_to = *shell;
        conn.notices = crate::gcp::Notices::new(move |n| notices_to.line(&n.to_string()));
        let cloud = Cloud::connect(&loaded.project, &conn).await?;
        Ok(Session { cloud, emulator })
    }

    /// Stops the embedded emulator (saving its world).
    pub(crate) async fn finish(self) -> Result<(), CliError> {
        if let Some(e) = self.emulator {
            e.shutdown()
                .await
                .map_err(|e| CliError::Message(format!("embedded emulator: {e}")))?;
        }
        Ok(())
    }
}

async fn start_emulator(state: &Path, loaded: &Loaded) -> Result<Emulator, CliError> {
    if let Some(dir) = state.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Message(format!("cannot create {}: {e}", dir.display())))?;
    }
    let options = EmulatorOptions {
        state: Some(PathBuf::from(state)),
        ..EmulatorOptions::default()
    };
    let listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let emulator = Emulator::start(listen, options)
        .await
        .map_err(|e| CliError::Message(format!("cannot start the embedded emulator: {e}")))?;
    emulator
        .seed(&seed(loaded))
        .map_err(|e| CliError::Message(format!("cannot seed the embedded emulator: {e}")))?;
    Ok(emulator)
}

/// The world the config names: its network and subnetwork (with a range that holds the internal IP and the
/// runners), and its cluster and node pool.
fn seed(loaded: &Loaded) -> Seed {
    let mut networks: Vec<SeedNetwork> = Vec::new();
    let mut clusters: Vec<SeedCluster> = Vec::new();
    for gw in loaded.config.gateways.values() {
        let range = subnet_range(gw);
        let subnet = SeedSubnetwork {
            name: gw.subnetwork.clone(),
            region: gw.region.clone(),
            ip_cidr_range: range,
        };
        match networks.iter_mut().find(|n| n.name == gw.network) {
            Some(n) => {
                if !n
                    .subnetworks
                    .iter()
                    .any(|s| s.name == subnet.name && s.region == subnet.region)
                {
                    n.subnetworks.push(subnet);
                }
            }
            None => networks.push(SeedNetwork {
                name: gw.network.clone(),
                subnetworks: vec![subnet],
            }),
        }
        let pool = SeedNodePool {
            name: gw.node_pool.name.clone(),
            tags: Vec::new(),
        };
        match clusters
            .iter_mut()
            .find(|c| c.name == gw.node_pool.cluster && c.location == gw.node_pool.location)
        {
            Some(c) => {
                if !c.node_pools.iter().any(|p| p.name == pool.name) {
                    c.node_pools.push(pool);
                }
            }
            None => clusters.push(SeedCluster {
                location: gw.node_pool.location.clone(),
                name: gw.node_pool.cluster.clone(),
                network: gw.network.clone(),
                node_pools: vec![pool],
            }),
        }
    }
    Seed {
        project: loaded.project.clone(),
        networks,
        clusters,
    }
}

fn subnet_range(gw: &config::Gateway) -> String {
    if let Some(ip) = gw.internal_ip {
        if let Some(r) = gw
            .source_ranges
            .iter()
            .find(|r| r.contains(ip) && r.prefix() >= 8)
        {
            return r.to_string();
        }
        let base = std::net::Ipv4Addr::from(u32::from(ip) & !0xfff);
        return Ipv4Net::new(base, 20)
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "10.0.0.0/20".into());
    }
    gw.source_ranges
        .first()
        .filter(|r| r.prefix() >= 8)
        .map_or_else(|| "10.0.0.0/20".into(), ToString::to_string)
}
