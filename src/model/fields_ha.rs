//! The fields of a gateway in several zones' own kinds (`model::ha`), declared as in `fields`.

use serde_json::Value;

use super::fields::{Display, Mutability, Spec, json, spec};
use super::ha::{BackendService, ForwardingRule, HealthCheck, InstanceGroup, InstanceTemplate};
/// `InstanceTemplate`. Templates cannot change (compute.v1.json has no update method for them): every field
/// replaces, and since the name carries the content's hash, a new content is a new template anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum InstanceTemplateField {
    Name,
    Region,
    MachineType,
    Image,
    Network,
    Subnetwork,
    CanIpForward,
    ShieldedVm,
    Tags,
    Labels,
    StartupScript,
    ReadyToken,
    Description,
}

impl InstanceTemplateField {
    pub(crate) const ALL: &'static [InstanceTemplateField] = &[
        Self::Name,
        Self::Region,
        Self::MachineType,
        Self::Image,
        Self::Network,
        Self::Subnetwork,
        Self::CanIpForward,
        Self::ShieldedVm,
        Self::Tags,
        Self::Labels,
        Self::StartupScript,
        Self::ReadyToken,
        Self::Description,
    ];

    pub(crate) const fn spec(self) -> Spec {
        use Display::{Hidden, Script, Value};
        use Mutability::{Ignore, Replace};
        match self {
            Self::Name => spec("name", Ignore, Hidden),
            Self::Region => spec("region", Replace, Value),
            Self::MachineType => spec("machine_type", Replace, Value),
            Self::Image => spec("image", Replace, Value),
            Self::Network => spec("network", Replace, Value),
            Self::Subnetwork => spec("subnetwork", Replace, Value),
            Self::CanIpForward => spec("can_ip_forward", Replace, Value),
            Self::ShieldedVm => spec("shielded_vm", Replace, Value),
            Self::Tags => spec("tags", Replace, Value),
            Self::Labels => spec("labels", Replace, Value),
            Self::StartupScript => spec("startup_script", Replace, Script),
            Self::ReadyToken => spec("ready_token", Replace, Value),
            Self::Description => spec("description", Ignore, Hidden),
        }
    }

    pub(crate) fn value(self, t: &InstanceTemplate) -> Value {
        match self {
            Self::Name => json(&t.name),
            Self::Region => json(&t.region),
            Self::MachineType => json(&t.machine_type),
            Self::Image => json(&t.image),
            Self::Network => json(&t.network),
            Self::Subnetwork => json(&t.subnetwork),
            Self::CanIpForward => json(&t.can_ip_forward),
            Self::ShieldedVm => json(&t.shielded_vm),
            Self::Tags => json(&t.tags),
            Self::Labels => json(&t.labels),
            Self::StartupScript => json(&t.startup_script),
            Self::ReadyToken => json(&t.ready_token),
            Self::Description => json(&t.description),
        }
    }
}

/// `InstanceGroup`. A new template is rolled out zone by zone (`apply::ha`), as is an old VM left by a roll
/// that stopped (`up_to_date`); the size and autohealing are patched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum InstanceGroupField {
    Name,
    Zone,
    InstanceTemplate,
    TargetSize,
    AutohealingCheck,
    InitialDelaySec,
    UpToDate,
    Description,
}

impl InstanceGroupField {
    pub(crate) const ALL: &'static [InstanceGroupField] = &[
        Self::Name,
        Self::Zone,
        Self::InstanceTemplate,
        Self::TargetSize,
        Self::AutohealingCheck,
        Self::InitialDelaySec,
        Self::UpToDate,
        Self::Description,
    ];

    pub(crate) const fn spec(self) -> Spec {
        use Display::{Hidden, Value};
        use Mutability::{Ignore, InPlace, Replace};
        match self {
            Self::Name => spec("name", Ignore, Hidden),
            Self::Zone => spec("zone", Replace, Value),
            Self::InstanceTemplate => spec("instance_template", InPlace, Value),
            Self::TargetSize => spec("target_size", InPlace, Value),
            Self::AutohealingCheck => spec("autohealing_check", InPlace, Value),
            Self::InitialDelaySec => spec("initial_delay_sec", InPlace, Value),
            Self::UpToDate => spec("up_to_date", InPlace, Value),
            Self::Description => spec("description", Ignore, Hidden),
        }
    }

    pub(crate) fn value(self, g: &InstanceGroup) -> Value {
        match self {
            Self::Name => json(&g.name),
            Self::Zone => json(&g.zone),
            Self::InstanceTemplate => json(&g.instance_template),
            Self::TargetSize => json(&g.target_size),
            Self::AutohealingCheck => json(&g.autohealing_check),
            Self::InitialDelaySec => json(&g.initial_delay_sec),
            Self::UpToDate => json(&g.up_to_date),
            Self::Description => json(&g.description),
        }
    }
}

/// `HealthCheck`: everything but its region is patched (`regionHealthChecks.patch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum HealthCheckField {
    Name,
    Region,
    Port,
    RequestPath,
    CheckIntervalSec,
    TimeoutSec,
    HealthyThreshold,
    UnhealthyThreshold,
    Description,
}

impl HealthCheckField {
    pub(crate) const ALL: &'static [HealthCheckField] = &[
        Self::Name,
        Self::Region,
        Self::Port,
        Self::RequestPath,
        Self::CheckIntervalSec,
        Self::TimeoutSec,
        Self::HealthyThreshold,
        Self::UnhealthyThreshold,
        Self::Description,
    ];

    pub(crate) const fn spec(self) -> Spec {
        use Display::{Hidden, Value};
        use Mutability::{Ignore, InPlace, Replace};
        match self {
            Self::Name => spec("name", Ignore, Hidden),
            Self::Region => spec("region", Replace, Value),
            Self::Port => spec("port", InPlace, Value),
            Self::RequestPath => spec("request_path", InPlace, Value),
            Self::CheckIntervalSec => spec("check_interval_sec", InPlace, Value),
            Self::TimeoutSec => spec("timeout_sec", InPlace, Value),
            Self::HealthyThreshold => spec("healthy_threshold", InPlace, Value),
            Self::UnhealthyThreshold => spec("unhealthy_threshold", InPlace, Value),
            Self::Description => spec("description", Ignore, Hidden),
        }
    }

    pub(crate) fn value(self, h: &HealthCheck) -> Value {
        match self {
            Self::Name => json(&h.name),
            Self::Region => json(&h.region),
            Self::Port => json(&h.port),
            Self::RequestPath => json(&h.request_path),
            Self::CheckIntervalSec => json(&h.check_interval_sec),
            Self::TimeoutSec => json(&h.timeout_sec),
            Self::HealthyThreshold => json(&h.healthy_threshold),
            Self::UnhealthyThreshold => json(&h.unhealthy_threshold),
            Self::Description => json(&h.description),
        }
    }
}

/// `BackendService`: its health check and backends are patched (`regionBackendServices.patch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum BackendServiceField {
    Name,
    Region,
    HealthCheck,
    Backends,
    Description,
}

impl BackendServiceField {
    pub(crate) const ALL: &'static [BackendServiceField] = &[
        Self::Name,
        Self::Region,
        Self::HealthCheck,
        Self::Backends,
        Self::Description,
    ];

    pub(crate) const fn spec(self) -> Spec {
        use Display::{Hidden, Value};
        use Mutability::{Ignore, InPlace, Replace};
        match self {
            Self::Name => spec("name", Ignore, Hidden),
            Self::Region => spec("region", Replace, Value),
            Self::HealthCheck => spec("health_check", InPlace, Value),
            Self::Backends => spec("backends", InPlace, Value),
            Self::Description => spec("description", Ignore, Hidden),
        }
    }

    pub(crate) fn value(self, b: &BackendService) -> Value {
        match self {
            Self::Name => json(&b.name),
            Self::Region => json(&b.region),
            Self::HealthCheck => json(&b.health_check),
            Self::Backends => json(&b.backends),
            Self::Description => json(&b.description),
        }
    }
}

/// `ForwardingRule`: compute.v1.json changes a forwarding rule's target only through `setTarget`, which an
/// internal rule with a `backendService` does not use: every field replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ForwardingRuleField {
    Name,
    Region,
    Network,
    Subnetwork,
    IpAddress,
    BackendService,
    Description,
}

impl ForwardingRuleField {
    pub(crate) const ALL: &'static [ForwardingRuleField] = &[
        Self::Name,
        Self::Region,
        Self::Network,
        Self::Subnetwork,
        Self::IpAddress,
        Self::BackendService,
        Self::Description,
    ];

    pub(crate) const fn spec(self) -> Spec {
        use Display::{Computed, Hidden, Value};
        use Mutability::{Ignore, Replace};
        match self {
            Self::Name => spec("name", Ignore, Hidden),
            Self::Region => spec("region", Replace, Value),
            Self::Network => spec("network", Replace, Value),
            Self::Subnetwork => spec("subnetwork", Replace, Value),
            Self::IpAddress => spec("ip_address", Replace, Computed),
            Self::BackendService => spec("backend_service", Replace, Value),
            Self::Description => spec("description", Ignore, Hidden),
        }
    }

    pub(crate) fn value(self, f: &ForwardingRule) -> Value {
        match self {
            Self::Name => json(&f.name),
            Self::Region => json(&f.region),
            Self::Network => json(&f.network),
            Self::Subnetwork => json(&f.subnetwork),
            Self::IpAddress => json(&f.ip_address),
            Self::BackendService => json(&f.backend_service),
            Self::Description => json(&f.description),
        }
    }
}
