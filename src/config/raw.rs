//! TEMPORARY minimal parser (no locations, little validation); replaced by the full parser.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{
    Allow, Config, ConfigError, Conntrack, DEFAULT_IMAGE, DEFAULT_MACHINE_TYPE,
    DEFAULT_ROUTE_PRIORITY, Gateway, NodePoolRef, Problem, Protocol,
};
use crate::net::Ipv4Net;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    project: Option<String>,
    stack: String,
    #[serde(default)]
    gateways: BTreeMap<String, RawGateway>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    region: String,
    zone: String,
    network: String,
    subnetwork: String,
    internal_ip: Option<std::net::Ipv4Addr>,
    destinations: Vec<Ipv4Net>,
    source_ranges: Vec<Ipv4Net>,
    allow: Option<Vec<String>>,
    node_tag: String,
    route_priority: Option<u32>,
    machine_type: Option<String>,
    image: Option<String>,
    node_pool: RawPool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    cluster: String,
    location: String,
    name: String,
}

fn problem(path: &Path, message: String) -> ConfigError {
    ConfigError {
        problems: vec![Problem {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message,
        }],
    }
}

fn parse_allow(s: &str) -> Option<Allow> {
    let (proto, ports) = match s.split_once(':') {
        Some((p, r)) => (p, Some(r)),
        None => (s, None),
    };
    let protocol = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "icmp" => Protocol::Icmp,
        _ => return None,
    };
    let ports = match ports {
        None => None,
        Some(r) => match r.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => {
                let p = r.parse().ok()?;
                Some((p, p))
            }
        },
    };
    Some(Allow { protocol, ports })
}

pub(super) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| problem(path, e.to_string()))?;
    let mut gateways = BTreeMap::new();
    for (name, g) in raw.gateways {
        let allow = match g.allow {
            None => vec![
                Allow {
                    protocol: Protocol::Tcp,
                    ports: Some((443, 443)),
                },
                Allow {
                    protocol: Protocol::Tcp,
                    ports: Some((22, 22)),
                },
            ],
            Some(list) => list
                .iter()
                .map(|s| {
                    parse_allow(s).ok_or_else(|| problem(path, format!("bad allow entry \"{s}\"")))
                })
                .collect::<Result<_, _>>()?,
        };
        let mut destinations = g.destinations;
        destinations.sort();
        gateways.insert(
            name.clone(),
            Gateway {
                name,
                region: g.region,
                zone: g.zone,
                network: g.network,
                subnetwork: g.subnetwork,
                internal_ip: g.internal_ip,
                destinations,
                source_ranges: g.source_ranges,
                allow,
                node_tag: g.node_tag,
                route_priority: g.route_priority.unwrap_or(DEFAULT_ROUTE_PRIORITY),
                machine_type: g
                    .machine_type
                    .unwrap_or_else(|| DEFAULT_MACHINE_TYPE.to_string()),
                image: g.image.unwrap_or_else(|| DEFAULT_IMAGE.to_string()),
                node_pool: NodePoolRef {
                    cluster: g.node_pool.cluster,
                    location: g.node_pool.location,
                    name: g.node_pool.name,
                },
                conntrack: Conntrack::default(),
            },
        );
    }
    Ok(Config {
        path: path.to_path_buf(),
        project: raw.project,
        stack: raw.stack,
        gateways,
    })
}
