//! The resources a gateway is made of, in natgw's own terms (pure).
//!
//! The same structs describe what the config wants (`desired`) and what the project holds (`observed`, mapped
//! from the wire by `gcp`), so that `plan` can compare them field by field.

pub(crate) mod desired;
pub(crate) mod lock;
pub(crate) mod observed;
pub(crate) mod ownership;
pub(crate) mod progress;

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::net::Ipv4Net;

/// The kinds of resource natgw manages, in the order a gateway is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    ExternalAddress,
    InternalAddress,
    Firewall,
    Instance,
    Route,
    NodePool,
}

impl Kind {
    /// The resource type as shown in plans, Terraform style.
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            Kind::ExternalAddress | Kind::InternalAddress => "compute_address",
            Kind::Firewall => "compute_firewall",
            Kind::Instance => "compute_instance",
            Kind::Route => "compute_route",
            Kind::NodePool => "container_node_pool",
        }
    }

    /// The role inside a gateway, as in `gitlab.external_address`.
    pub(crate) fn role(self) -> &'static str {
        match self {
            Kind::ExternalAddress => "external_address",
            Kind::InternalAddress => "internal_address",
            Kind::Firewall => "firewall",
            Kind::Instance => "instance",
            Kind::Route => "route",
            Kind::NodePool => "node_pool_tags",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum AddressType {
    External,
    Internal,
}

/// A reserved static address (`compute.addresses`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Address {
    pub(crate) name: String,
    pub(crate) region: String,
    pub(crate) address_type: AddressType,
    /// Internal addresses only.
    pub(crate) subnetwork: Option<String>,
    /// `None` in a desired address: Google picks one.
    pub(crate) address: Option<Ipv4Addr>,
    pub(crate) description: String,
    pub(crate) labels: BTreeMap<String, String>,
}

/// An ingress firewall rule (`compute.firewalls`). Its description carries the ownership marker and the
/// node-pool tag record (see `ownership`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Firewall {
    pub(crate) name: String,
    pub(crate) network: String,
    pub(crate) priority: u32,
    pub(crate) source_ranges: Vec<Ipv4Net>,
    /// `tcp:443`, `udp:53-54`, `icmp`: sorted.
    pub(crate) allowed: Vec<String>,
    pub(crate) target_tags: Vec<String>,
    pub(crate) description: String,
}

/// The gateway VM (`compute.instances`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Instance {
    pub(crate) name: String,
    pub(crate) zone: String,
    pub(crate) machine_type: String,
    /// The boot image, recorded in the description since the instance does not echo it.
    pub(crate) image: String,
    pub(crate) network: String,
    pub(crate) subnetwork: String,
    /// The internal address; `None` in a desired instance: known after apply.
    pub(crate) network_ip: Option<Ipv4Addr>,
    /// The external address; `None` in a desired instance: known after apply.
    pub(crate) nat_ip: Option<Ipv4Addr>,
    pub(crate) can_ip_forward: bool,
    pub(crate) shielded_vm: bool,
    pub(crate) service_account: bool,
    pub(crate) tags: Vec<String>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) startup_script: String,
    /// The token the startup script writes to the guest attribute `natgw/ready` once forwarding works.
    pub(crate) ready_token: String,
    pub(crate) description: String,
    /// `RUNNING` is desired; anything else (stopped out of band) is repaired with `start`.
    pub(crate) status: String,
}

/// A static route (`compute.routes`) to one destination range through the gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Route {
    pub(crate) name: String,
    pub(crate) network: String,
    pub(crate) dest_range: Ipv4Net,
    /// `None` in a desired route: the internal address, known after apply.
    pub(crate) next_hop_ip: Option<Ipv4Addr>,
    pub(crate) priority: u32,
    pub(crate) tags: Vec<String>,
    pub(crate) description: String,
}

/// The network tags of a GKE node pool (`container.projects.locations.clusters.nodePools`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct NodePoolId {
    pub(crate) location: String,
    pub(crate) cluster: String,
    pub(crate) name: String,
}

impl NodePoolId {
    pub(crate) fn resource_name(&self, project: &str) -> String {
        format!(
            "projects/{project}/locations/{}/clusters/{}/nodePools/{}",
            self.location, self.cluster, self.name
        )
    }
}

impl fmt::Display for NodePoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.location, self.cluster, self.name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NodePool {
    pub(crate) id: NodePoolId,
    /// In the node pool's own order.
    pub(crate) tags: Vec<String>,
}

/// Any resource natgw manages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Resource {
    Address(Address),
    Firewall(Firewall),
    Instance(Instance),
    Route(Route),
    NodePool(NodePool),
}

impl Resource {
    /// The resource's fields by name, as JSON values: what plans compare and show.
    pub(crate) fn fields(&self) -> BTreeMap<String, serde_json::Value> {
        let v = match self {
            Resource::Address(a) => serde_json::to_value(a),
            Resource::Firewall(f) => serde_json::to_value(f),
            Resource::Instance(i) => serde_json::to_value(i),
            Resource::Route(r) => serde_json::to_value(r),
            Resource::NodePool(p) => serde_json::to_value(p),
        };
        match v {
            Ok(serde_json::Value::Object(m)) => m.into_iter().collect(),
            _ => BTreeMap::new(),
        }
    }

    pub(crate) fn name(&self) -> String {
        match self {
            Resource::Address(a) => a.name.clone(),
            Resource::Firewall(f) => f.name.clone(),
            Resource::Instance(i) => i.name.clone(),
            Resource::Route(r) => r.name.clone(),
            Resource::NodePool(p) => p.id.to_string(),
        }
    }
}
