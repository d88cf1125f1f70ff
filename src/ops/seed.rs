//! The world the embedded emulator starts with: what the config names and natgw does not create.

use crate::config;
use crate::emulator::{Seed, SeedCluster, SeedNetwork, SeedNodePool, SeedSubnetwork};
use crate::net::Ipv4Net;

/// The config's networks and subnetworks (with a range that holds the internal IP and the runners), and
/// its clusters and node pools.
pub(super) fn seed(project: &str, config: &config::Config) -> Seed {
    let mut networks: Vec<SeedNetwork> = Vec::new();
    let mut clusters: Vec<SeedCluster> = Vec::new();
    for gw in config.gateways.values() {
        let subnet = SeedSubnetwork {
            name: gw.subnetwork.clone(),
            region: gw.region.clone(),
            ip_cidr_range: subnet_range(gw),
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
        project: project.to_string(),
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
