//! Each kind's fields, declared once: the name plans show and save, how the field may change, and how plans
//! show it. The matches here have no catch-all arm, so a new field does not compile until someone decides.
//!
//! The names are the snake_case names of the structs' serde fields: saved plans and the JSON plan use them.

use serde::{Serialize, Serializer};
use serde_json::Value;

use super::{Address, Firewall, Instance, Kind, NodePool, Resource, Route};

/// How a field may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mutability {
    /// Never compared: the identity natgw matches by, or a record natgw sets only when it creates.
    Ignore,
    InPlace,
    /// Only by deleting and creating the resource again.
    Replace,
}

/// How plans show a field among a resource's attributes. A difference in any field is always shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Display {
    /// Left out: the name is in the heading, and descriptions are natgw's own records.
    Hidden,
    Value,
    /// Computed by Google when unset: `null` is shown as known after apply.
    Computed,
    /// A startup script, shown by its line count.
    Script,
}

/// Everything natgw decides about one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) name: &'static str,
    pub(crate) mutability: Mutability,
    pub(crate) display: Display,
}

const fn spec(name: &'static str, mutability: Mutability, display: Display) -> Spec {
    Spec {
        name,
        mutability,
        display,
    }
}

/// `Address`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum AddressField {
    Name,
    Region,
    AddressType,
    Subnetwork,
    Address,
    Description,
    Labels,
}

impl AddressField {
    pub(crate) const ALL: &'static [AddressField] = &[
        Self::Name,
        Self::Region,
        Self::AddressType,
        Self::Subnetwork,
        Self::Address,
        Self::Description,
        Self::Labels,
    ];

    pub(crate) const fn spec(self) -> Spec {
        use Display::{Computed, Hidden, Value};
        use Mutability::{Ignore, InPlace, Replace};
        match self {
            Self::Name => spec("name", Ignore, Hidden),
            Self::Region => spec("region", Replace, Value),
            Self::AddressType => spec("address_type", Replace, Value),
            Self::Subnetwork => spec("subnetwork", Replace, Value),
            Self::Address => spec("address", Replace, Computed),
            Self::Description => spec("description", Ignore, Hidden),
            Self::Labels => spec("labels", InPlace, Value),
        }
    }

    fn value(self, a: &Address) -> Value {
        match self {
            Self::Name => json(&a.name),
            Self::Region => json(&a.region),
            Self::AddressType => json(&a.address_type),
            Self::Subnetwork => json(&a.subnetwork),
            Self::Address => json(&a.address),
            Self::Description => json(&a.description),
            Self::Labels => json(&a.labels),
        }
    }
}

/// `Firewall`. Every field but the network is patched in place (the description carries the node-pool
/// tag record, which a plan may rewrite).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum FirewallField {
    Name,
    Network,
    Priority,
    SourceRanges,
    Allowed,
    TargetTags,
    Description,
}

impl FirewallField {
    pub(crate) const ALL: &'static [FirewallField] = &[
        Self::Name,
        Self::Network,
        Self::Priority,
        Self::SourceRanges,
        Self::Allowed,
        Self::TargetTags,
        Self::Description,
    ];

    pub(crate) const fn spec(self) -> Spec {
        use Display::{Hidden, Value};
        use Mutability::{Ignore, InPlace, Replace};
        match self {
            Self::Name => spec("name", Ignore, Hidden),
            Self::Network => spec("network", Replace, Value),
            Self::Priority => spec("priority", InPlace, Value),
            Self::SourceRanges => spec("source_ranges", InPlace, Value),
            Self::Allowed => spec("allowed", InPlace, Value),
            Self::TargetTags => spec("target_tags", InPlace, Value),
            Self::Description => spec("description", InPlace, Hidden),
        }
    }

    fn value(self, f: &Firewall) -> Value {
        match self {
            Self::Name => json(&f.name),
            Self::Network => json(&f.network),
            Self::Priority => json(&f.priority),
            Self::SourceRanges => json(&f.source_ranges),
            Self::Allowed => json(&f.allowed),
            Self::TargetTags => json(&f.target_tags),
            Self::Description => json(&f.description),
        }
    }
}

/// `Instance`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum InstanceField {
    Name,
    Zone,
    MachineType,
    Image,
    Network,
    Subnetwork,
    NetworkIp,
    NatIp,
    CanIpForward,
    ShieldedVm,
    ServiceAccount,
    Tags,
    Labels,
    StartupScript,
    ReadyToken,
    Description,
    Status,
    RestartPending,
}

impl InstanceField {
    pub(crate) const ALL: &'static [InstanceField] = &[
        Self::Name,
        Self::Zone,
        Self::MachineType,
        Self::Image,
        Self::Network,
        Self::Subnetwork,
        Self::NetworkIp,
        Self::NatIp,
        Self::CanIpForward,
        Self::ShieldedVm,
        Self::ServiceAccount,
        Self::Tags,
        Self::Labels,
        Self::StartupScript,
        Self::ReadyToken,
        Self::Description,
        Self::Status,
        Self::RestartPending,
    ];

    pub(crate) const fn spec(self) -> Spec {
        use Display::{Computed, Hidden, Script, Value};
        use Mutability::{Ignore, InPlace, Replace};
        match self {
            Self::Name => spec("name", Ignore, Hidden),
            Self::Zone => spec("zone", Replace, Value),
            Self::MachineType => spec("machine_type", Replace, Value),
            Self::Image => spec("image", Replace, Value),
            Self::Network => spec("network", Replace, Value),
            Self::Subnetwork => spec("subnetwork", Replace, Value),
            Self::NetworkIp => spec("network_ip", Replace, Computed),
            Self::NatIp => spec("nat_ip", Replace, Computed),
            Self::CanIpForward => spec("can_ip_forward", Replace, Value),
            Self::ShieldedVm => spec("shielded_vm", Replace, Value),
            Self::ServiceAccount => spec("service_account", Replace, Value),
            Self::Tags => spec("tags", InPlace, Value),
            Self::Labels => spec("labels", InPlace, Value),
            Self::StartupScript => spec("startup_script", InPlace, Script),
            Self::ReadyToken => spec("ready_token", InPlace, Value),
            // Records the image, which is compared on its own.
            Self::Description => spec("description", Ignore, Hidden),
            // Brought back to RUNNING as its status requires (`plan::vm`).
            Self::Status => spec("status", InPlace, Value),
            // Cleared by the restart it records; shown only when it differs, with what it means.
            Self::RestartPending => spec("restart_pending", InPlace, Hidden),
        }
    }

    fn value(self, i: &Instance) -> Value {
        match self {
            Self::Name => json(&i.name),
            Self::Zone => json(&i.zone),
            Self::MachineType => json(&i.machine_type),
            Self::Image => json(&i.image),
            Self::Network => json(&i.network),
            Self::Subnetwork => json(&i.subnetwork),
            Self::NetworkIp => json(&i.network_ip),
            Self::NatIp => json(&i.nat_ip),
            Self::CanIpForward => json(&i.can_ip_forward),
            Self::ShieldedVm => json(&i.shielded_vm),
            Self::ServiceAccount => json(&i.service_account),
            Self::Tags => json(&i.tags),
            Self::Labels => json(&i.labels),
            Self::StartupScript => json(&i.startup_script),
            Self::ReadyToken => json(&i.ready_token),
            Self::Description => json(&i.description),
            Self::Status => json(&i.status),
            Self::RestartPending => json(&i.restart_pending),
        }
    }
}

/// `Route`. Routes cannot be changed at all: anything that differs replaces them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RouteField {
    Name,
    Network,
    DestRange,
    NextHopIp,
    Priority,
    Tags,
    Description,
}

impl RouteField {
    pub(crate) const ALL: &'static [RouteField] = &[
        Self::Name,
        Self::Network,
        Self::DestRange,
        Self::NextHopIp,
        Self::Priority,
        Self::Tags,
        Self::Description,
    ];

    pub(crate) const fn spec(self) -> Spec {
        use Display::{Computed, Hidden, Value};
        use Mutability::{Ignore, Replace};
        match self {
            Self::Name => spec("name", Ignore, Hidden),
            Self::Network => spec("network", Replace, Value),
            Self::DestRange => spec("dest_range", Replace, Value),
            Self::NextHopIp => spec("next_hop_ip", Replace, Computed),
            Self::Priority => spec("priority", Replace, Value),
            Self::Tags => spec("tags", Replace, Value),
            // Set when the route is made; a route is never replaced for its description alone.
            Self::Description => spec("description", Ignore, Hidden),
        }
    }

    fn value(self, r: &Route) -> Value {
        match self {
            Self::Name => json(&r.name),
            Self::Network => json(&r.network),
            Self::DestRange => json(&r.dest_range),
            Self::NextHopIp => json(&r.next_hop_ip),
            Self::Priority => json(&r.priority),
            Self::Tags => json(&r.tags),
            Self::Description => json(&r.description),
        }
    }
}

/// `NodePool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum NodePoolField {
    Id,
    Tags,
}

impl NodePoolField {
    pub(crate) const ALL: &'static [NodePoolField] = &[Self::Id, Self::Tags];

    pub(crate) const fn spec(self) -> Spec {
        use Display::Value;
        use Mutability::{Ignore, InPlace};
        match self {
            Self::Id => spec("id", Ignore, Value),
            Self::Tags => spec("tags", InPlace, Value),
        }
    }

    fn value(self, p: &NodePool) -> Value {
        match self {
            Self::Id => json(&p.id),
            Self::Tags => json(&p.tags),
        }
    }
}

/// A field of any kind. It is saved and shown by its name alone, which the change's kind makes unambiguous.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Field {
    Address(AddressField),
    Firewall(FirewallField),
    Instance(InstanceField),
    Route(RouteField),
    NodePool(NodePoolField),
}

impl Field {
    pub(crate) const fn spec(self) -> Spec {
        match self {
            Field::Address(f) => f.spec(),
            Field::Firewall(f) => f.spec(),
            Field::Instance(f) => f.spec(),
            Field::Route(f) => f.spec(),
            Field::NodePool(f) => f.spec(),
        }
    }

    pub(crate) const fn name(self) -> &'static str {
        self.spec().name
    }

    pub(crate) const fn mutability(self) -> Mutability {
        self.spec().mutability
    }

    pub(crate) const fn display(self) -> Display {
        self.spec().display
    }

    /// Every field of a kind, in declaration order.
    pub(crate) fn all(kind: Kind) -> Vec<Field> {
        match kind {
            Kind::ExternalAddress | Kind::InternalAddress => AddressField::ALL
                .iter()
                .map(|&f| Field::Address(f))
                .collect(),
            Kind::Firewall | Kind::SshFirewall => FirewallField::ALL
                .iter()
                .map(|&f| Field::Firewall(f))
                .collect(),
            Kind::Instance => InstanceField::ALL
                .iter()
                .map(|&f| Field::Instance(f))
                .collect(),
            Kind::Route => RouteField::ALL.iter().map(|&f| Field::Route(f)).collect(),
            Kind::NodePool => NodePoolField::ALL
                .iter()
                .map(|&f| Field::NodePool(f))
                .collect(),
        }
    }

    /// The field of `kind` called `name`, as saved in a plan.
    pub(crate) fn parse(kind: Kind, name: &str) -> Option<Field> {
        Field::all(kind).into_iter().find(|f| f.name() == name)
    }
}

impl Serialize for Field {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Resource {
    /// The kind of field this resource has (both address kinds share one).
    fn field_kind(&self) -> Kind {
        match self {
            Resource::Address(_) => Kind::ExternalAddress,
            Resource::Firewall(_) => Kind::Firewall,
            Resource::Instance(_) => Kind::Instance,
            Resource::Route(_) => Kind::Route,
            Resource::NodePool(_) => Kind::NodePool,
        }
    }

    /// A field's value as JSON, as plans compare and show it; `null` for a field of another kind.
    pub(crate) fn value(&self, field: Field) -> Value {
        match (self, field) {
            (Resource::Address(a), Field::Address(f)) => f.value(a),
            (Resource::Firewall(r), Field::Firewall(f)) => f.value(r),
            (Resource::Instance(i), Field::Instance(f)) => f.value(i),
            (Resource::Route(r), Field::Route(f)) => f.value(r),
            (Resource::NodePool(p), Field::NodePool(f)) => f.value(p),
            (
                Resource::Address(_)
                | Resource::Firewall(_)
                | Resource::Instance(_)
                | Resource::Route(_)
                | Resource::NodePool(_),
                _,
            ) => Value::Null,
        }
    }

    /// Every field with its value, ordered by name (the order plans list them in).
    pub(crate) fn values(&self) -> Vec<(Field, Value)> {
        let mut fields: Vec<(Field, Value)> = Field::all(self.field_kind())
            .into_iter()
            .map(|f| (f, self.value(f)))
            .collect();
        fields.sort_by_key(|(f, _)| f.name());
        fields
    }
}

/// Serialising these types cannot fail: no maps with non-string keys, no custom serialisers that error.
fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::model::desired;

    /// A resource of each kind with every optional field set, so that every field has a value.
    fn sample(kind: Kind) -> Resource {
        let cfg = crate::plan::tests::config_from(crate::plan::tests::EXAMPLE);
        let gw = cfg.gateways.values().next().expect("a gateway");
        let d = desired::gateway("p", &cfg.stack, gw, "#!/bin/bash\n".into());
        let ip = Some("10.0.0.9".parse().expect("ip"));
        match kind {
            Kind::ExternalAddress => Resource::Address(Address {
                address: ip,
                subnetwork: Some("default".into()),
                ..d.external_address
            }),
            Kind::InternalAddress => Resource::Address(Address {
                address: ip,
                ..d.internal_address
            }),
            Kind::Firewall => Resource::Firewall(d.firewall),
            Kind::SshFirewall => Resource::Firewall(Firewall {
                name: "natgw-gitlab-ssh".into(),
                ..d.firewall
            }),
            Kind::Instance => Resource::Instance(Instance {
                network_ip: ip,
                nat_ip: ip,
                ..d.instance
            }),
            Kind::Route => Resource::Route(Route {
                next_hop_ip: ip,
                ..d.routes[0].clone()
            }),
            Kind::NodePool => Resource::NodePool(NodePool {
                id: d.node_pool,
                tags: vec![d.node_tag],
            }),
        }
    }

    #[test]
    fn every_field_of_every_kind_is_declared_once_with_its_serde_name_and_value() {
        for &kind in Kind::ALL {
            let r = sample(kind);
            let serde: BTreeMap<String, Value> = match serde_json::to_value(&r) {
                Ok(Value::Object(m)) => m.into_iter().filter(|(k, _)| k != "type").collect(),
                other => panic!("{kind:?} serialises as {other:?}"),
            };
            let fields = Field::all(kind);
            let names: BTreeSet<&str> = fields.iter().map(|f| f.name()).collect();
            assert_eq!(
                names.len(),
                fields.len(),
                "{kind:?}: a name is declared twice"
            );
            assert_eq!(
                names,
                serde.keys().map(String::as_str).collect(),
                "{kind:?}: the declared fields are not the struct's fields"
            );
            for f in fields {
                assert_eq!(Field::parse(kind, f.name()), Some(f));
                assert!(
                    !r.value(f).is_null(),
                    "{kind:?}.{}: the sample leaves it unset",
                    f.name()
                );
                assert_eq!(
                    Some(&r.value(f)),
                    serde.get(f.name()),
                    "{kind:?}.{}",
                    f.name()
                );
            }
        }
    }

    #[test]
    fn every_field_has_a_mutability_and_a_rendering() {
        for &kind in Kind::ALL {
            for f in Field::all(kind) {
                let Spec {
                    name,
                    mutability,
                    display,
                } = f.spec();
                assert!(!name.is_empty());
                // Only identities and natgw's own records are hidden or ignored; nothing else.
                if display == Display::Hidden {
                    assert!(
                        matches!(name, "name" | "description" | "restart_pending"),
                        "{kind:?}.{name}"
                    );
                }
                if mutability == Mutability::Ignore {
                    assert!(
                        matches!(name, "name" | "id" | "description"),
                        "{kind:?}.{name}"
                    );
                }
                // What Google computes is never updated in place: it follows from other resources.
                if display == Display::Computed {
                    assert_eq!(mutability, Mutability::Replace, "{kind:?}.{name}");
                }
            }
        }
    }

    #[test]
    fn values_are_listed_by_name_and_another_kind_s_field_is_null() {
        let vm = sample(Kind::Instance);
        let names: Vec<&str> = vm.values().iter().map(|(f, _)| f.name()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert!(vm.value(Field::Route(RouteField::DestRange)).is_null());
        assert_eq!(Field::parse(Kind::Route, "labels"), None);
        assert_eq!(
            Field::parse(Kind::InternalAddress, "labels"),
            Some(Field::Address(AddressField::Labels))
        );
    }
}
