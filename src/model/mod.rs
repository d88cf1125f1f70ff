//! The resources a gateway is made of, in natgw's own terms (pure).
//!
//! The same structs describe what the config wants (`desired`) and what the project holds (`observed`, mapped
//! from the wire by `gcp`), so that `plan` can compare them field by field.

pub(crate) mod desired;
pub(crate) mod fields;
pub(crate) mod fields_ha;
pub(crate) mod ha;
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
    /// The rule that opens sshd to IAP (`ssh = "iap"`).
    SshFirewall,
    Instance,
    Route,
    NodePool,
    /// A gateway in several zones (`model::ha`): each zone's reserved addresses,
    ZoneExternalAddress,
    ZoneInternalAddress,
    /// the load balancer's address,
    IlbAddress,
    /// the rule that lets Google's health-check probers in,
    HealthFirewall,
    HealthCheck,
    AutohealCheck,
    InstanceTemplate,
    /// each zone's managed instance group,
    InstanceGroup,
    BackendService,
    ForwardingRule,
}

impl Kind {
    /// Every kind; `sample` in the fields' tests matches on all of them, which reminds whoever adds one.
    #[cfg(test)]
    pub(crate) const ALL: &'static [Kind] = &[
        Kind::ExternalAddress,
        Kind::InternalAddress,
        Kind::Firewall,
        Kind::SshFirewall,
        Kind::Instance,
        Kind::Route,
        Kind::NodePool,
        Kind::ZoneExternalAddress,
        Kind::ZoneInternalAddress,
        Kind::IlbAddress,
        Kind::HealthFirewall,
        Kind::HealthCheck,
        Kind::AutohealCheck,
        Kind::InstanceTemplate,
        Kind::InstanceGroup,
        Kind::BackendService,
        Kind::ForwardingRule,
    ];

    /// The resource type as shown in plans, Terraform style.
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            Kind::ExternalAddress
            | Kind::InternalAddress
            | Kind::ZoneExternalAddress
            | Kind::ZoneInternalAddress
            | Kind::IlbAddress => "compute_address",
            Kind::Firewall | Kind::SshFirewall | Kind::HealthFirewall => "compute_firewall",
            Kind::HealthCheck | Kind::AutohealCheck => "compute_region_health_check",
            Kind::InstanceTemplate => "compute_instance_template",
            Kind::InstanceGroup => "compute_instance_group_manager",
            Kind::BackendService => "compute_region_backend_service",
            Kind::ForwardingRule => "compute_forwarding_rule",
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
            Kind::SshFirewall => "ssh_firewall",
            Kind::Instance => "instance",
            Kind::Route => "route",
            Kind::NodePool => "node_pool_tags",
            Kind::ZoneExternalAddress => "zone_external_address",
            Kind::ZoneInternalAddress => "zone_internal_address",
            Kind::IlbAddress => "ilb_address",
            Kind::HealthFirewall => "health_firewall",
            Kind::HealthCheck => "health_check",
            Kind::AutohealCheck => "autoheal_check",
            Kind::InstanceTemplate => "instance_template",
            Kind::InstanceGroup => "instance_group",
            Kind::BackendService => "backend_service",
            Kind::ForwardingRule => "forwarding_rule",
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

impl Address {
    /// By its type, or the `natgw-role` label of a gateway in several zones.
    pub(crate) fn kind(&self) -> Kind {
        match (
            self.labels.get(ownership::LABEL_ROLE).map(String::as_str),
            self.address_type,
        ) {
            (Some(ha::ROLE_ZONE_EXT), _) => Kind::ZoneExternalAddress,
            (Some(ha::ROLE_ZONE_INT), _) => Kind::ZoneInternalAddress,
            (Some(ha::ROLE_ILB), _) => Kind::IlbAddress,
            (_, AddressType::External) => Kind::ExternalAddress,
            (_, AddressType::Internal) => Kind::InternalAddress,
        }
    }
}

impl Kind {
    /// A kind a gateway may have several of at once (one per zone; an old and a new template): plans show
    /// each one's name in its address.
    pub(crate) fn by_name(self) -> bool {
        matches!(
            self,
            Kind::ZoneExternalAddress
                | Kind::ZoneInternalAddress
                | Kind::InstanceGroup
                | Kind::InstanceTemplate
        )
    }

    pub(crate) fn is_address(self) -> bool {
        matches!(
            self,
            Kind::ExternalAddress
                | Kind::InternalAddress
                | Kind::ZoneExternalAddress
                | Kind::ZoneInternalAddress
                | Kind::IlbAddress
        )
    }
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
    /// `RUNNING` is desired; what brings a VM in another status back is `plan::vm::VmAction`.
    pub(crate) status: String,
    /// An apply set a new startup script and meant to restart the VM, and has not seen it report ready with
    /// the new token yet (it was interrupted): observed from the metadata item `natgw-restart-pending`,
    /// written in the same `setMetadata` call as the script. Never desired.
    #[serde(default)]
    pub(crate) restart_pending: bool,
}

/// The project of a network or subnetwork as the model names it (`projects/HOST/global/networks/N`), or
/// `None` for one of the stack's own project (its bare name). Firewall rules and routes live in their network's
/// project: "the firewall rules ... and routes ... are defined in the host project"
/// (<https://cloud.google.com/vpc/docs/shared-vpc#shared_vpc_networks>).
pub(crate) fn network_project(path: &str) -> Option<&str> {
    path.strip_prefix("projects/")
        .and_then(|r| r.split_once('/'))
        .map(|(p, _)| p)
}

/// Whether a VM in `status` runs or comes up on its own (compute.v1.json `Instance.status`: PROVISIONING
/// "Resources are being allocated", STAGING "All required resources have been allocated and the instance is
/// being started", PENDING "For Flex Start provisioning instance is waiting for available capacity").
pub(crate) fn is_up(status: &str) -> bool {
    matches!(status, "RUNNING" | "PROVISIONING" | "STAGING" | "PENDING")
}

/// A static route (`compute.routes`) to one destination range through the gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Route {
    pub(crate) name: String,
    pub(crate) network: String,
    pub(crate) dest_range: Ipv4Net,
    /// `None` in a desired route: the internal address, known after apply.
    pub(crate) next_hop_ip: Option<Ipv4Addr>,
    /// A gateway in two or more zones: its forwarding rule, `projects/P/regions/R/forwardingRules/N`
    /// (`nextHopIlb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) next_hop_ilb: Option<String>,
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

impl NodePool {
    /// The pool with the tags of `remove` taken out and those of `add` it lacks appended: the pool's own
    /// order is kept, so tags natgw does not touch stay where they are.
    pub(crate) fn with_tags(&self, add: &[String], remove: &[String]) -> NodePool {
        NodePool {
            id: self.id.clone(),
            tags: with_tags(&self.tags, add, remove),
        }
    }

    /// The tags to add to and remove from this pool to reach `after`: `with_tags`'s inverse.
    pub(crate) fn tags_to(&self, after: &NodePool) -> (Vec<String>, Vec<String>) {
        let missing_from = |tags: &[String], of: &[String]| -> Vec<String> {
            of.iter().filter(|t| !tags.contains(t)).cloned().collect()
        };
        (
            missing_from(&self.tags, &after.tags),
            missing_from(&after.tags, &self.tags),
        )
    }
}

/// `tags` without `remove`, then with the tags of `add` it lacks, in order.
pub(crate) fn with_tags(tags: &[String], add: &[String], remove: &[String]) -> Vec<String> {
    let mut out: Vec<String> = tags
        .iter()
        .filter(|t| !remove.contains(t))
        .cloned()
        .collect();
    for t in add {
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
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
    InstanceTemplate(ha::InstanceTemplate),
    InstanceGroup(ha::InstanceGroup),
    HealthCheck(ha::HealthCheck),
    BackendService(ha::BackendService),
    ForwardingRule(ha::ForwardingRule),
}

impl Resource {
    pub(crate) fn name(&self) -> String {
        match self {
            Resource::Address(a) => a.name.clone(),
            Resource::Firewall(f) => f.name.clone(),
            Resource::Instance(i) => i.name.clone(),
            Resource::Route(r) => r.name.clone(),
            Resource::NodePool(p) => p.id.to_string(),
            Resource::InstanceTemplate(t) => t.name.clone(),
            Resource::InstanceGroup(g) => g.name.clone(),
            Resource::HealthCheck(h) => h.name.clone(),
            Resource::BackendService(b) => b.name.clone(),
            Resource::ForwardingRule(f) => f.name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{NodePool, NodePoolId};

    fn pool(tags: &[&str]) -> NodePool {
        NodePool {
            id: NodePoolId {
                location: "l".into(),
                cluster: "c".into(),
                name: "p".into(),
            },
            tags: tags.iter().map(ToString::to_string).collect(),
        }
    }

    fn strings(tags: &[&str]) -> Vec<String> {
        tags.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn tags_keep_the_pool_s_order_and_go_both_ways() {
        let before = pool(&["a", "natgw", "b"]);
        let after = before.with_tags(&strings(&["b", "c", "d"]), &strings(&["natgw"]));
        assert_eq!(after.tags, strings(&["a", "b", "c", "d"]));
        let (add, remove) = before.tags_to(&after);
        assert_eq!(
            (add.clone(), remove.clone()),
            (strings(&["c", "d"]), strings(&["natgw"]))
        );
        assert_eq!(before.with_tags(&add, &remove), after);
        assert_eq!(before.with_tags(&[], &[]), before);
    }
}
