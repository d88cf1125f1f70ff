//! The local emulator of the Compute Engine v1 and GKE v1 APIs.
//! PLACEHOLDER with the agreed API; the emulator branch replaces this file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Default, Clone)]
pub(crate) struct Options {
    pub(crate) api_latency: Duration,
    pub(crate) op_latency: Duration,
    pub(crate) boot: Duration,
    pub(crate) boot_fail: bool,
    pub(crate) fault_rate: f64,
    pub(crate) seed: u64,
    pub(crate) request_log: Option<PathBuf>,
    pub(crate) state: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("the emulator is not built yet")]
pub(crate) struct EmulatorError;

pub(crate) struct Emulator;

impl Emulator {
    pub(crate) async fn start(
        _listen: SocketAddr,
        _options: Options,
    ) -> Result<Emulator, EmulatorError> {
        Err(EmulatorError)
    }
    pub(crate) fn url(&self) -> String {
        String::new()
    }
    pub(crate) fn seed(&self, _seed: &Seed) -> Result<(), EmulatorError> {
        Err(EmulatorError)
    }
    pub(crate) async fn shutdown(self) -> Result<(), EmulatorError> {
        Ok(())
    }
}

pub(crate) struct Seed {
    pub(crate) project: String,
    pub(crate) networks: Vec<SeedNetwork>,
    pub(crate) clusters: Vec<SeedCluster>,
}
pub(crate) struct SeedNetwork {
    pub(crate) name: String,
    pub(crate) subnetworks: Vec<SeedSubnetwork>,
}
pub(crate) struct SeedSubnetwork {
    pub(crate) name: String,
    pub(crate) region: String,
    pub(crate) ip_cidr_range: String,
}
pub(crate) struct SeedCluster {
    pub(crate) location: String,
    pub(crate) name: String,
    pub(crate) network: String,
    pub(crate) node_pools: Vec<SeedNodePool>,
}
pub(crate) struct SeedNodePool {
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
}
