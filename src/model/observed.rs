//! What natgw observed in the project: every resource whose name natgw could have given it, whoever owns it,
//! and the node pools the config (or natgw's records) names.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::ownership::{self, Owner};
use crate::model::{Address, Firewall, Instance, NodePool, NodePoolId, Route, ha};

/// Server-side facts that are not part of the resource's shape but that updates need.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Preconditions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) self_link: Option<String>,
    /// `labelFingerprint` (addresses, instances).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) label_fingerprint: Option<String>,
    /// `metadata.fingerprint` (instances).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) metadata_fingerprint: Option<String>,
    /// `tags.fingerprint` (instances).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tags_fingerprint: Option<String>,
    /// `etag` (node pools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) etag: Option<String>,
    /// Who uses an address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) users: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Observed<T> {
    pub(crate) resource: T,
    /// `None`: no natgw marker at all.
    pub(crate) owner: Option<Owner>,
    /// The `key=value` facts of a description marker.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) facts: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) preconditions: Preconditions,
}

impl<T> Observed<T> {
    pub(crate) fn owned_by(&self, stack: &str) -> bool {
        self.owner.as_ref().is_some_and(|o| o.stack == stack)
    }
}

/// Builds an observation from a resource and its labels (for APIs with labels).
pub(crate) fn from_labels<T>(
    resource: T,
    labels: &BTreeMap<String, String>,
    preconditions: Preconditions,
) -> Observed<T> {
    Observed {
        resource,
        owner: Owner::from_labels(labels),
        facts: BTreeMap::new(),
        preconditions,
    }
}

/// Builds an observation from a resource and its description (for APIs without labels).
pub(crate) fn from_description<T>(
    resource: T,
    description: &str,
    preconditions: Preconditions,
) -> Observed<T> {
    match ownership::parse_description(description) {
        Some((owner, facts)) => Observed {
            resource,
            owner: Some(owner),
            facts,
            preconditions,
        },
        None => Observed {
            resource,
            owner: None,
            facts: BTreeMap::new(),
            preconditions,
        },
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Observation {
    pub(crate) addresses: Vec<Observed<Address>>,
    pub(crate) firewalls: Vec<Observed<Firewall>>,
    pub(crate) instances: Vec<Observed<Instance>>,
    pub(crate) routes: Vec<Observed<Route>>,
    pub(crate) node_pools: Vec<Observed<NodePool>>,
    /// A gateway in several zones' own kinds (`model::ha`): read only when a config gateway has `zones` or
    /// an address natgw owns says a gateway had them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) templates: Vec<Observed<ha::InstanceTemplate>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) groups: Vec<Observed<ha::InstanceGroup>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) health_checks: Vec<Observed<ha::HealthCheck>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) backend_services: Vec<Observed<ha::BackendService>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) forwarding_rules: Vec<Observed<ha::ForwardingRule>>,
    /// Node pools natgw looked for and did not find.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) missing_node_pools: Vec<NodePoolId>,
}

impl Observation {
    /// The `key=value` facts natgw recorded in descriptions: the firewall rule and every route of a gateway
    /// record its node pool, its tag and whether natgw added the tag, so that losing one of them out of band
    /// loses no record. `stack`: only that stack's; `None`: any stack's.
    pub(crate) fn records<'a>(
        &'a self,
        stack: Option<&'a str>,
    ) -> impl Iterator<Item = &'a BTreeMap<String, String>> + 'a {
        let mine = move |owner: &Option<Owner>| {
            owner
                .as_ref()
                .is_some_and(|o| stack.is_none_or(|s| o.stack == s))
        };
        let firewalls = self
            .firewalls
            .iter()
            .filter(move |f| mine(&f.owner))
            .map(|f| &f.facts);
        let routes = self
            .routes
            .iter()
            .filter(move |r| mine(&r.owner))
            .map(|r| &r.facts);
        firewalls.chain(routes)
    }

    /// The node pools natgw's records name.
    pub(crate) fn recorded_node_pools(&self, stack: Option<&str>) -> Vec<NodePoolId> {
        let mut ids: Vec<NodePoolId> = self
            .records(stack)
            .filter_map(|facts| parse_pool(facts.get(ownership::KEY_NODE_POOL)?))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The Shared VPC host projects the stack's VMs and internal addresses are on (their network's or
    /// subnetwork's project, when it is not `own`): where that stack's firewall rules and routes are, even for
    /// a gateway the config no longer names, or names with another `network_project`.
    pub(crate) fn host_projects(&self, own: &str, stack: &str) -> BTreeSet<String> {
        let project = |path: &str| {
            super::network_project(path)
                .filter(|p| *p != own)
                .map(str::to_string)
        };
        let vms = self
            .instances
            .iter()
            .filter(|i| i.owned_by(stack))
            .filter_map(|i| project(&i.resource.network));
        let addresses = self
            .addresses
            .iter()
            .filter(|a| a.owned_by(stack))
            .filter_map(|a| project(a.resource.subnetwork.as_deref()?));
        vms.chain(addresses).collect()
    }

    /// Whether an address natgw owns (any stack's) belongs to a gateway in several zones: then the HA kinds
    /// must be read, even if no gateway of the config has `zones` any more.
    pub(crate) fn has_ha_addresses(&self) -> bool {
        self.addresses.iter().any(|a| {
            a.owner.is_some()
                && matches!(
                    a.resource.kind(),
                    crate::model::Kind::ZoneExternalAddress
                        | crate::model::Kind::ZoneInternalAddress
                        | crate::model::Kind::IlbAddress
                )
        })
    }

    pub(crate) fn node_pool(&self, id: &NodePoolId) -> Option<&Observed<NodePool>> {
        self.node_pools.iter().find(|p| &p.resource.id == id)
    }

    /// A canonical form for comparing two observations of the same project: what a saved plan saw against
    /// what is there now. Of an instance's status only whether it is up counts: a VM that finished booting
    /// has not changed, and apply reads where a VM that is not up went (`apply::ready::bring_up`); a VM that
    /// went down or came back since the plan has.
    pub(crate) fn canonical(&self) -> Observation {
        let mut w = self.clone();
        w.addresses.sort_by(|a, b| {
            (&a.resource.region, &a.resource.name).cmp(&(&b.resource.region, &b.resource.name))
        });
        w.firewalls
            .sort_by(|a, b| a.resource.name.cmp(&b.resource.name));
        w.instances.sort_by(|a, b| {
            (&a.resource.zone, &a.resource.name).cmp(&(&b.resource.zone, &b.resource.name))
        });
        for i in &mut w.instances {
            let up = super::is_up(&i.resource.status);
            i.resource.status = if up { "up" } else { "down" }.into();
        }
        w.routes
            .sort_by(|a, b| a.resource.name.cmp(&b.resource.name));
        w.node_pools
            .sort_by(|a, b| a.resource.id.cmp(&b.resource.id));
        w.templates
            .sort_by(|a, b| a.resource.name.cmp(&b.resource.name));
        w.groups.sort_by(|a, b| {
            (&a.resource.zone, &a.resource.name).cmp(&(&b.resource.zone, &b.resource.name))
        });
        w.health_checks
            .sort_by(|a, b| a.resource.name.cmp(&b.resource.name));
        w.backend_services
            .sort_by(|a, b| a.resource.name.cmp(&b.resource.name));
        w.forwarding_rules
            .sort_by(|a, b| a.resource.name.cmp(&b.resource.name));
        w.missing_node_pools.sort();
        w
    }
}

/// `LOCATION/CLUSTER/POOL`, as recorded in descriptions.
pub(crate) fn parse_pool(s: &str) -> Option<NodePoolId> {
    let mut parts = s.split('/');
    let (location, cluster, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || location.is_empty() || cluster.is_empty() || name.is_empty() {
        return None;
    }
    Some(NodePoolId {
        location: location.into(),
        cluster: cluster.into(),
        name: name.into(),
    })
}
