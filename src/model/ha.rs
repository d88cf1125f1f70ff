//! A gateway in several zones (`zones = [..]`, README "High availability"): per zone a managed instance
//! group of one VM that keeps its zone's reserved addresses, an instance template they share, health checks,
//! and with two or more zones an internal passthrough load balancer that the routes use as their next hop.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::desired::FIREWALL_PRIORITY;
use super::ownership::{KEY_IMAGE, KEY_ROLE, LABEL_ROLE, Owner};
use super::{Address, AddressType, Firewall};
use crate::config::{self, names};

/// `natgw-role` of the load balancer's health check, of autohealing's, and of the probers' firewall rule.
pub(crate) const ROLE_HEALTH: &str = "health";
pub(crate) const ROLE_AUTOHEAL: &str = "autoheal";
/// `natgw-role` labels of the addresses of a gateway in several zones.
pub(crate) const ROLE_ZONE_EXT: &str = "zone-ext";
pub(crate) const ROLE_ZONE_INT: &str = "zone-int";
pub(crate) const ROLE_ILB: &str = "ilb";
/// The `natgw-role` label of a zone's VM.
pub(crate) const ROLE_ZONE_VM: &str = "zone-vm";

/// The path the health checks ask for; the VM's endpoint answers on any path.
pub(crate) const HEALTH_PATH: &str = "/";

/// Autohealing's check is more conservative than the load balancer's, as Google recommends ("Use separate
/// health checks for load balancing and for autohealing ... the autohealing health check should be more
/// conservative": <https://cloud.google.com/compute/docs/instance-groups/autohealing-instances-in-migs>):
/// twice the interval and one more failure, so a VM leaves the load balancer well before its group
/// recreates it (defaults: every 10 s, 3 failures, 30 s).
fn autoheal_interval(interval_sec: u32) -> u32 {
    (interval_sec * 2).min(300)
}
fn autoheal_unhealthy(unhealthy_threshold: u32) -> u32 {
    (unhealthy_threshold + 1).min(10)
}
/// How long a new VM has before autohealing judges it: a boot and the startup script (Google's default,
/// `InstanceGroupManagerAutoHealingPolicy.initialDelaySec`, is 300).
pub(crate) const AUTOHEAL_INITIAL_DELAY_SEC: u32 = 300;

/// The VMs' instance template (`compute.instanceTemplates`). Templates cannot change: its name carries a
/// hash of its content, so a change is a new template that the groups move to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InstanceTemplate {
    pub(crate) name: String,
    pub(crate) region: String,
    pub(crate) machine_type: String,
    pub(crate) image: String,
    pub(crate) network: String,
    pub(crate) subnetwork: String,
    pub(crate) can_ip_forward: bool,
    pub(crate) shielded_vm: bool,
    pub(crate) tags: Vec<String>,
    /// The VMs' labels (`properties.labels`); the template itself has none.
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) startup_script: String,
    pub(crate) ready_token: String,
    pub(crate) description: String,
}

/// A zone's managed instance group (`compute.instanceGroupManagers`) of one VM named like the group, which
/// keeps its zone's two reserved addresses (`names::zone_addresses_of`) through a stateful per-instance
/// config. Its update, stateful and autohealing policies are natgw's fixed choices (`gcp::wire`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InstanceGroup {
    pub(crate) name: String,
    pub(crate) zone: String,
    /// The template's name.
    pub(crate) instance_template: String,
    pub(crate) target_size: u32,
    /// The autohealing health check's name.
    pub(crate) autohealing_check: String,
    pub(crate) initial_delay_sec: u32,
    /// Its VM runs its template (`status.versionTarget.isReached`); false after a roll that stopped halfway,
    /// which the next apply finishes.
    pub(crate) up_to_date: bool,
    pub(crate) description: String,
}

/// A regional HTTP health check (`compute.regionHealthChecks`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HealthCheck {
    pub(crate) name: String,
    pub(crate) region: String,
    pub(crate) port: u16,
    pub(crate) request_path: String,
    pub(crate) check_interval_sec: u32,
    pub(crate) timeout_sec: u32,
    pub(crate) healthy_threshold: u32,
    pub(crate) unhealthy_threshold: u32,
    pub(crate) description: String,
}

/// The regional internal backend service (`compute.regionBackendServices`), the groups as its backends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BackendService {
    pub(crate) name: String,
    pub(crate) region: String,
    /// The health check's name.
    pub(crate) health_check: String,
    /// `zones/Z/instanceGroups/N`, sorted.
    pub(crate) backends: Vec<String>,
    pub(crate) description: String,
}

/// The internal forwarding rule (`compute.forwardingRules`): every port of its reserved address to the
/// backend service; the routes' next hop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ForwardingRule {
    pub(crate) name: String,
    pub(crate) region: String,
    pub(crate) network: String,
    pub(crate) subnetwork: String,
    /// The reserved `-ilb` address's IP; `None` in a desired rule: known after apply.
    pub(crate) ip_address: Option<Ipv4Addr>,
    /// The backend service's name.
    pub(crate) backend_service: String,
    pub(crate) description: String,
}

/// One zone of the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DesiredZone {
    pub(crate) zone: String,
    pub(crate) external_address: Address,
    pub(crate) internal_address: Address,
    pub(crate) group: InstanceGroup,
}

/// The load balancer of a gateway in two or more zones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DesiredLb {
    pub(crate) address: Address,
    pub(crate) backend_service: BackendService,
    pub(crate) forwarding_rule: ForwardingRule,
}

/// Everything a gateway in several zones has instead of its single VM and its two addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DesiredHa {
    pub(crate) zones: Vec<DesiredZone>,
    pub(crate) template: InstanceTemplate,
    pub(crate) health_check: HealthCheck,
    pub(crate) autoheal_check: HealthCheck,
    pub(crate) health_firewall: Firewall,
    /// Two or more zones; with one, the routes go to that zone's preserved internal IP.
    pub(crate) lb: Option<DesiredLb>,
}

impl DesiredHa {
    /// The forwarding rule as a route's `nextHopIlb` names it.
    pub(crate) fn next_hop_ilb(&self, project: &str) -> Option<String> {
        self.lb.as_ref().map(|lb| {
            format!(
                "projects/{project}/regions/{}/forwardingRules/{}",
                lb.forwarding_rule.region, lb.forwarding_rule.name
            )
        })
    }
}

/// What the plain gateway is built from, for its HA side.
pub(crate) struct Base<'a> {
    pub(crate) owner: &'a Owner,
    pub(crate) network: &'a str,
    pub(crate) subnetwork: &'a str,
    pub(crate) host_tag: Option<&'a str>,
    /// The VMs' network tag, which the gateway's firewall rules target.
    pub(crate) vm_tag: &'a str,
    pub(crate) startup_script: &'a str,
    pub(crate) ready_token: &'a str,
}

/// The VMs' labels say whose gateway they serve, without natgw's `natgw-managed` mark: natgw manages their
/// group, the group manages them, and a plan never deletes or changes them itself.
fn vm_labels(owner: &Owner) -> BTreeMap<String, String> {
    let mut labels = owner.labels();
    labels.remove(super::ownership::LABEL_MANAGED);
    labels.insert(LABEL_ROLE.to_string(), ROLE_ZONE_VM.to_string());
    labels
}

fn with_role(owner: &Owner, role: &str) -> BTreeMap<String, String> {
    let mut labels = owner.labels();
    labels.insert(LABEL_ROLE.to_string(), role.to_string());
    labels
}

/// The HA side of a gateway with `zones`.
pub(crate) fn desired(gw: &config::Gateway, ha: &config::Ha, base: &Base<'_>) -> DesiredHa {
    let owner = base.owner;
    let name = &gw.name;
    let region = &gw.region;
    let mut template = InstanceTemplate {
        name: String::new(),
        region: region.clone(),
        machine_type: gw.machine_type.clone(),
        image: gw.image.clone(),
        network: base.network.to_string(),
        subnetwork: base.subnetwork.to_string(),
        can_ip_forward: true,
        shielded_vm: true,
        tags: vec![base.vm_tag.to_string()],
        labels: vm_labels(owner),
        startup_script: base.startup_script.to_string(),
        ready_token: base.ready_token.to_string(),
        description: owner.description(&[(KEY_IMAGE, gw.image.clone())]),
    };
    template.name = names::instance_template(name, &template_hash(&template));
    let hc = ha.health_check;
    let health_check = HealthCheck {
        name: names::health_check(name),
        region: region.clone(),
        port: hc.port,
        request_path: HEALTH_PATH.to_string(),
        check_interval_sec: hc.interval_sec,
        // Google: "It is invalid for timeoutSec to have greater value than checkIntervalSec."
        timeout_sec: hc.interval_sec,
        healthy_threshold: hc.healthy_threshold,
        unhealthy_threshold: hc.unhealthy_threshold,
        description: owner.description(&[(KEY_ROLE, ROLE_HEALTH.to_string())]),
    };
    let autoheal_check = HealthCheck {
        name: names::autoheal_check(name),
        check_interval_sec: autoheal_interval(hc.interval_sec),
        timeout_sec: hc.interval_sec,
        healthy_threshold: hc.healthy_threshold,
        unhealthy_threshold: autoheal_unhealthy(hc.unhealthy_threshold),
        description: owner.description(&[(KEY_ROLE, ROLE_AUTOHEAL.to_string())]),
        ..health_check.clone()
    };
    let address = |name: String, address_type, role: &str, what: &str| Address {
        name,
        region: region.clone(),
        address_type,
        subnetwork: (address_type == AddressType::Internal).then(|| base.subnetwork.to_string()),
        address: None,
        description: format!("natgw gateway {}: {what}", gw.name),
        labels: with_role(owner, role),
    };
    let several = ha.zones.len() > 1;
    let zones: Vec<DesiredZone> = ha
        .zones
        .iter()
        .map(|zone| {
            let mut internal = address(
                names::zone_internal_address(name, zone),
                AddressType::Internal,
                ROLE_ZONE_INT,
                "a VM's internal address",
            );
            if !several {
                // With one zone its VM is the next hop, at the configured IP.
                internal.address = gw.internal_ip;
            }
            DesiredZone {
                zone: zone.clone(),
                external_address: address(
                    names::zone_external_address(name, zone),
                    AddressType::External,
                    ROLE_ZONE_EXT,
                    "a VM's egress address",
                ),
                internal_address: internal,
                group: InstanceGroup {
                    name: names::zone_group(name, zone),
                    zone: zone.clone(),
                    instance_template: template.name.clone(),
                    target_size: 1,
                    autohealing_check: autoheal_check.name.clone(),
                    initial_delay_sec: AUTOHEAL_INITIAL_DELAY_SEC,
                    up_to_date: true,
                    description: owner.description(&[]),
                },
            }
        })
        .collect();
    let lb = several.then(|| {
        let mut vip = address(
            names::ilb_address(name),
            AddressType::Internal,
            ROLE_ILB,
            "the load balancer's address, next hop of its routes",
        );
        vip.address = gw.internal_ip;
        let mut backends: Vec<String> = zones
            .iter()
            .map(|z| format!("zones/{}/instanceGroups/{}", z.zone, z.group.name))
            .collect();
        backends.sort();
        let lb_name = names::load_balancer(name);
        DesiredLb {
            address: vip,
            backend_service: BackendService {
                name: lb_name.clone(),
                region: region.clone(),
                health_check: health_check.name.clone(),
                backends,
                description: owner.description(&[]),
            },
            forwarding_rule: ForwardingRule {
                name: lb_name.clone(),
                region: region.clone(),
                network: base.network.to_string(),
                subnetwork: base.subnetwork.to_string(),
                ip_address: gw.internal_ip,
                backend_service: lb_name,
                description: owner.description(&[]),
            },
        }
    });
    let health_firewall = Firewall {
        name: names::health_firewall(name, base.host_tag),
        network: base.network.to_string(),
        priority: FIREWALL_PRIORITY,
        source_ranges: config::HealthCheck::source_ranges().to_vec(),
        allowed: vec![format!("tcp:{}", hc.port)],
        target_tags: vec![base.vm_tag.to_string()],
        description: owner.description(&[(KEY_ROLE, ROLE_HEALTH.to_string())]),
    };
    DesiredHa {
        zones,
        template,
        health_check,
        autoheal_check,
        health_firewall,
        lb,
    }
}

/// The hash in a template's name: of everything but its name.
pub(crate) fn template_hash(t: &InstanceTemplate) -> String {
    let unnamed = InstanceTemplate {
        name: String::new(),
        ..t.clone()
    };
    let text = serde_json::to_string(&unnamed).unwrap_or_default();
    let digest = Sha256::digest(text.as_bytes());
    crate::hex::encode(&digest[..names::TEMPLATE_HASH_LEN / 2])
}
