//! A gateway in several zones' resources (`model::ha`) <-> Google's. Every field natgw sends is cited from
//! compute.v1.json (the discovery document in /work/shared/gcp-discovery/ and `src/emulator/discovery/`).

use google_cloud_compute_v1::model as gce;

use super::wire::{
    self, META_READY_TOKEN, META_STARTUP_SCRIPT, fingerprint, from_segment, ip, last_segment,
    metadata_item, model_ref, network_url, sorted, subnetwork_url,
};
use crate::config::names;
use crate::model::ha::{
    BackendService, ForwardingRule, HealthCheck, InstanceGroup, InstanceTemplate,
};
use crate::model::observed::{self, Observed, Preconditions};

fn u32_of(v: Option<i32>) -> u32 {
    v.and_then(|v| u32::try_from(v).ok()).unwrap_or_default()
}

fn i32_of(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// `.../regions/R/...` -> `R`.
fn region_in(url: &str) -> String {
    url.split("/regions/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_default()
        .to_string()
}

fn preconditions(self_link: Option<&String>) -> Preconditions {
    Preconditions {
        self_link: self_link.cloned(),
        ..Preconditions::default()
    }
}

pub(super) fn template_from_wire(
    own: &str,
    t: &gce::InstanceTemplate,
) -> Observed<InstanceTemplate> {
    let description = t.description.clone().unwrap_or_default();
    let p = t.properties.clone().unwrap_or_default();
    let nic = p.network_interfaces.first();
    let subnetwork = nic
        .and_then(|n| n.subnetwork.as_deref())
        .unwrap_or_default();
    let shielded = wire::shielded(p.shielded_instance_config.as_ref());
    let resource = InstanceTemplate {
        name: t.name.clone().unwrap_or_default(),
        region: region_in(subnetwork),
        machine_type: p
            .machine_type
            .as_deref()
            .map(last_segment)
            .unwrap_or_default(),
        image: p
            .disks
            .first()
            .and_then(|d| d.initialize_params.as_ref())
            .and_then(|i| i.source_image.clone())
            .unwrap_or_default(),
        network: nic
            .and_then(|n| n.network.as_deref())
            .map(|u| model_ref(own, u))
            .unwrap_or_default(),
        subnetwork: model_ref(own, subnetwork),
        can_ip_forward: p.can_ip_forward == Some(true),
        shielded_vm: shielded,
        tags: p.tags.as_ref().map(|t| t.items.clone()).unwrap_or_default(),
        labels: sorted(&p.labels),
        startup_script: metadata_item(p.metadata.as_ref(), META_STARTUP_SCRIPT)
            .unwrap_or_default()
            .to_string(),
        ready_token: metadata_item(p.metadata.as_ref(), META_READY_TOKEN)
            .unwrap_or_default()
            .to_string(),
        description: description.clone(),
    };
    observed::from_description(resource, &description, preconditions(t.self_link.as_ref()))
}

/// `instanceTemplates.insert`. compute.v1.json, `InstanceTemplate`: `description` "Provide this property when
/// you create the resource" (the ownership marker: a template has no labels of its own); `properties` "The
/// instance properties for this instance template", of which natgw sends:
/// - `machineType`: "The machine type to use for instances that are created from these properties. This
///   field only accepts a machine type name, for example `n2-standard-4`".
/// - `canIpForward`: "Enables instances created based on these properties to send packets with source IP
///   addresses other than their own and receive packets with destination IP addresses other than their own".
/// - `labels`: "Labels to apply to instances that are created from these properties" (the VMs'; see
///   `model::ha::vm_labels`).
/// - `tags`, `metadata` (the startup script, its ready token, guest attributes on, the image record),
///   `disks[].initializeParams.sourceImage`, `shieldedInstanceConfig`: as for a single VM (`wire::instance_to_wire`).
/// - `networkInterfaces[]`: the subnetwork, and one `ONE_TO_ONE_NAT` access config without `natIP`: a VM
///   gets an external IP only through an access config, and the group's stateful per-instance config
///   (`PreservedState.externalIPs`) puts the zone's reserved address there.
pub(super) fn template_to_wire(project: &str, t: &InstanceTemplate) -> gce::InstanceTemplate {
    let nic = gce::NetworkInterface::new()
        .set_network(network_url(project, &t.network))
        .set_subnetwork(subnetwork_url(project, &t.region, &t.subnetwork))
        .set_access_configs([gce::AccessConfig::new()
            .set_name("External NAT")
            .set_type(gce::access_config::Type::OneToOneNat)]);
    let disk = gce::AttachedDisk::new()
        .set_boot(true)
        .set_auto_delete(true)
        .set_initialize_params(
            gce::AttachedDiskInitializeParams::new().set_source_image(t.image.clone()),
        );
    let metadata = wire::gateway_metadata(&t.startup_script, &t.ready_token, &t.image, None);
    let properties = gce::InstanceProperties::new()
        .set_machine_type(t.machine_type.clone())
        .set_can_ip_forward(t.can_ip_forward)
        .set_labels(t.labels.clone())
        .set_tags(gce::Tags::new().set_items(t.tags.clone()))
        .set_disks([disk])
        .set_network_interfaces([nic])
        .set_metadata(metadata)
        .set_shielded_instance_config(
            gce::ShieldedInstanceConfig::new()
                .set_enable_secure_boot(t.shielded_vm)
                .set_enable_vtpm(t.shielded_vm)
                .set_enable_integrity_monitoring(t.shielded_vm),
        );
    gce::InstanceTemplate::new()
        .set_name(t.name.clone())
        .set_description(t.description.clone())
        .set_properties(properties)
}

pub(super) fn group_from_wire(g: &gce::InstanceGroupManager) -> Observed<InstanceGroup> {
    let description = g.description.clone().unwrap_or_default();
    let healing = g.auto_healing_policies.first();
    let resource = InstanceGroup {
        name: g.name.clone().unwrap_or_default(),
        zone: g.zone.as_deref().map(last_segment).unwrap_or_default(),
        instance_template: g
            .instance_template
            .as_deref()
            .map(last_segment)
            .unwrap_or_default(),
        target_size: u32_of(g.target_size),
        autohealing_check: healing
            .and_then(|h| h.health_check.as_deref())
            .map(last_segment)
            .unwrap_or_default(),
        initial_delay_sec: u32_of(healing.and_then(|h| h.initial_delay_sec)),
        // compute.v1.json, `InstanceGroupManagerStatusVersionTarget.isReached`: "A bit indicating whether
        // version target has been reached in this managed instance group, i.e. all instances are in their
        // target version". Not reported: taken as reached, so that nothing is replaced on a guess.
        up_to_date: g
            .status
            .as_ref()
            .and_then(|s| s.version_target.as_ref())
            .and_then(|v| v.is_reached)
            .unwrap_or(true),
        description: description.clone(),
    };
    let mut pre = preconditions(g.self_link.as_ref());
    pre.etag = fingerprint(g.fingerprint.as_ref());
    observed::from_description(resource, &description, pre)
}

pub(super) fn template_url(project: &str, template: &str) -> String {
    format!("projects/{project}/global/instanceTemplates/{template}")
}

fn regional_url(project: &str, region: &str, collection: &str, name: &str) -> String {
    format!("projects/{project}/regions/{region}/{collection}/{name}")
}

/// The group's autohealing policy. compute.v1.json, `InstanceGroupManagerAutoHealingPolicy`: `healthCheck`
/// "The URL for the health check that signals autohealing"; `initialDelaySec` "The initial delay is the
/// number of seconds that a new VM takes to initialize and run its startup script".
pub(super) fn autohealing_to_wire(
    project: &str,
    g: &InstanceGroup,
) -> gce::InstanceGroupManagerAutoHealingPolicy {
    let region = super::wire::region_of_zone(&g.zone);
    gce::InstanceGroupManagerAutoHealingPolicy::new()
        .set_health_check(regional_url(
            project,
            &region,
            "healthChecks",
            &g.autohealing_check,
        ))
        .set_initial_delay_sec(i32_of(g.initial_delay_sec))
}

/// `instanceGroupManagers.insert`, created empty (`targetSize` 0): its one VM comes from `createInstances`
/// with its per-instance config ([`per_instance_config`]). compute.v1.json, `InstanceGroupManager`:
/// - `baseInstanceName`: "The base instance name is a prefix that you want to attach to the names of all
///   VMs in a MIG" (the VM is named by its per-instance config; required all the same).
/// - `instanceTemplate`: "The URL of the instance template that is specified for this managed instance
///   group. The group uses this template to create all new instances".
/// - `statefulPolicy.preservedState.internalIPs` / `externalIPs` (`nic0`, `autoDelete: NEVER`): "Internal
///   (External) network IPs assigned to the instances that will be preserved on instance delete, update,
///   etc."; NEVER keeps the reserved addresses when a VM goes.
/// - `updatePolicy`: `type: OPPORTUNISTIC` ("the MIG doesn't automatically apply actions to existing
///   instances"): natgw rolls zone by zone itself with `applyUpdatesToInstances`; `minimalAction: REPLACE`;
///   `replacementMethod: RECREATE` ("Instances are recreated with the same name"), with `maxSurge` 0 since
///   "You can't use a max surge greater than 0 ... stateful MIGs"
///   (<https://cloud.google.com/compute/docs/instance-groups/rolling-out-updates-to-managed-instance-groups#max_surge>)
///   and `maxUnavailable` 1.
/// - `autoHealingPolicies`: [`autohealing_to_wire`]; `description`: the ownership marker (a group has no
///   labels).
pub(super) fn group_to_wire(project: &str, g: &InstanceGroup) -> gce::InstanceGroupManager {
    use gce::instance_group_manager_update_policy as up;
    let never = || {
        gce::StatefulPolicyPreservedStateNetworkIp::new()
            .set_auto_delete(gce::stateful_policy_preserved_state_network_ip::AutoDelete::Never)
    };
    let preserved = gce::StatefulPolicyPreservedState::new()
        .set_internal_i_ps([("nic0".to_string(), never())])
        .set_external_i_ps([("nic0".to_string(), never())]);
    gce::InstanceGroupManager::new()
        .set_name(g.name.clone())
        .set_description(g.description.clone())
        .set_base_instance_name(g.name.clone())
        .set_instance_template(template_url(project, &g.instance_template))
        .set_target_size(0)
        .set_auto_healing_policies([autohealing_to_wire(project, g)])
        .set_stateful_policy(gce::StatefulPolicy::new().set_preserved_state(preserved))
        .set_update_policy(
            gce::InstanceGroupManagerUpdatePolicy::new()
                .set_type(up::Type::Opportunistic)
                .set_minimal_action(up::MinimalAction::Replace)
                .set_replacement_method(up::ReplacementMethod::Recreate)
                .set_max_surge(gce::FixedOrPercent::new().set_fixed(0))
                .set_max_unavailable(gce::FixedOrPercent::new().set_fixed(1)),
        )
}

/// The group's one VM: named like the group, with its zone's reserved addresses. compute.v1.json,
/// `PerInstanceConfig.name`: "The name of a per-instance configuration and its corresponding instance";
/// `PreservedStatePreservedNetworkIpIpAddress.address`: "The URL of the reservation for this IP address".
pub(super) fn per_instance_config(project: &str, g: &InstanceGroup) -> gce::PerInstanceConfig {
    let region = super::wire::region_of_zone(&g.zone);
    let (internal, external) = names::zone_addresses_of(&g.name);
    let preserved =
        |name: &str| {
            gce::PreservedStatePreservedNetworkIp::new()
                .set_auto_delete(gce::preserved_state_preserved_network_ip::AutoDelete::Never)
                .set_ip_address(
                    gce::PreservedStatePreservedNetworkIpIpAddress::new()
                        .set_address(regional_url(project, &region, "addresses", name)),
                )
        };
    gce::PerInstanceConfig::new()
        .set_name(g.name.clone())
        .set_preserved_state(
            gce::PreservedState::new()
                .set_internal_i_ps([("nic0".to_string(), preserved(&internal))])
                .set_external_i_ps([("nic0".to_string(), preserved(&external))]),
        )
}

pub(super) fn health_check_from_wire(h: &gce::HealthCheck) -> Observed<HealthCheck> {
    let description = h.description.clone().unwrap_or_default();
    let http = h.http_health_check.clone().unwrap_or_default();
    let resource = HealthCheck {
        name: h.name.clone().unwrap_or_default(),
        region: h.region.as_deref().map(last_segment).unwrap_or_default(),
        port: http
            .port
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_default(),
        request_path: http.request_path.unwrap_or_default(),
        check_interval_sec: u32_of(h.check_interval_sec),
        timeout_sec: u32_of(h.timeout_sec),
        healthy_threshold: u32_of(h.healthy_threshold),
        unhealthy_threshold: u32_of(h.unhealthy_threshold),
        description: description.clone(),
    };
    observed::from_description(resource, &description, preconditions(h.self_link.as_ref()))
}

/// `regionHealthChecks.insert` and `patch`. compute.v1.json, `HealthCheck`: `type` "Specifies the type of
/// the healthCheck ... Exactly one of the protocol-specific health check fields must be specified, which
/// must match type field" (HTTP: the VM's endpoint answers 200 while it forwards); `httpHealthCheck.port`
/// "The TCP port number to which the health check prober sends packets"; `requestPath` "The request path of
/// the HTTP health check request"; `checkIntervalSec` "How often (in seconds) to send a health check";
/// `timeoutSec` "How long (in seconds) to wait before claiming failure ... It is invalid for timeoutSec to
/// have greater value than checkIntervalSec"; `healthyThreshold` / `unhealthyThreshold`; `description` the
/// ownership marker (no labels).
pub(super) fn health_check_to_wire(h: &HealthCheck) -> gce::HealthCheck {
    gce::HealthCheck::new()
        .set_name(h.name.clone())
        .set_description(h.description.clone())
        .set_type(gce::health_check::Type::Http)
        .set_http_health_check(
            gce::HTTPHealthCheck::new()
                .set_port(i32::from(h.port))
                .set_request_path(h.request_path.clone()),
        )
        .set_check_interval_sec(i32_of(h.check_interval_sec))
        .set_timeout_sec(i32_of(h.timeout_sec))
        .set_healthy_threshold(i32_of(h.healthy_threshold))
        .set_unhealthy_threshold(i32_of(h.unhealthy_threshold))
}

pub(super) fn backend_service_from_wire(b: &gce::BackendService) -> Observed<BackendService> {
    let description = b.description.clone().unwrap_or_default();
    let mut backends: Vec<String> = b
        .backends
        .iter()
        .filter_map(|x| x.group.as_deref().map(|u| from_segment(u, "zones/")))
        .collect();
    backends.sort();
    let resource = BackendService {
        name: b.name.clone().unwrap_or_default(),
        region: b.region.as_deref().map(last_segment).unwrap_or_default(),
        health_check: b
            .health_checks
            .first()
            .map(|h| last_segment(h))
            .unwrap_or_default(),
        backends,
        description: description.clone(),
    };
    let mut pre = preconditions(b.self_link.as_ref());
    pre.etag = fingerprint(b.fingerprint.as_ref());
    observed::from_description(resource, &description, pre)
}

/// `regionBackendServices.insert` and `patch`. compute.v1.json, `BackendService`: `loadBalancingScheme`
/// INTERNAL ("Specifies the load balancer type"; an internal passthrough Network Load Balancer); `protocol`
/// TCP; `healthChecks` "The list of URLs to the healthChecks ... resource for health checking this
/// BackendService"; `backends[].group` "The fully-qualified URL of an instance group"; `balancingMode`
/// CONNECTION, the only mode of an internal passthrough load balancer
/// (<https://cloud.google.com/load-balancing/docs/backend-service#balancing-mode-lb>); `description` the
/// ownership marker.
pub(super) fn backend_service_to_wire(project: &str, b: &BackendService) -> gce::BackendService {
    gce::BackendService::new()
        .set_name(b.name.clone())
        .set_description(b.description.clone())
        .set_load_balancing_scheme(gce::backend_service::LoadBalancingScheme::Internal)
        .set_protocol(gce::backend_service::Protocol::Tcp)
        .set_health_checks([regional_url(
            project,
            &b.region,
            "healthChecks",
            &b.health_check,
        )])
        .set_backends(b.backends.iter().map(|g| {
            gce::Backend::new()
                .set_group(format!("projects/{project}/{g}"))
                .set_balancing_mode(gce::backend::BalancingMode::Connection)
        }))
}

pub(super) fn forwarding_rule_from_wire(
    own: &str,
    f: &gce::ForwardingRule,
) -> Observed<ForwardingRule> {
    let description = f.description.clone().unwrap_or_default();
    let resource = ForwardingRule {
        name: f.name.clone().unwrap_or_default(),
        region: f.region.as_deref().map(last_segment).unwrap_or_default(),
        network: f
            .network
            .as_deref()
            .map(|u| model_ref(own, u))
            .unwrap_or_default(),
        subnetwork: f
            .subnetwork
            .as_deref()
            .map(|u| model_ref(own, u))
            .unwrap_or_default(),
        ip_address: ip(f.ip_address.as_ref()),
        backend_service: f
            .backend_service
            .as_deref()
            .map(last_segment)
            .unwrap_or_default(),
        description: description.clone(),
    };
    observed::from_description(resource, &description, preconditions(f.self_link.as_ref()))
}

/// `forwardingRules.insert`. compute.v1.json, `ForwardingRule`: `loadBalancingScheme` INTERNAL;
/// `IPProtocol` TCP; `allPorts` "can be specified for internal passthrough Network Load Balancers ... all
/// ports are forwarded"; `backendService` "Identifies the backend service to which the forwarding rule
/// sends traffic. Required for internal and external passthrough Network Load Balancers"; `network` /
/// `subnetwork` "For internal load balancing, this field identifies the network (subnetwork) that the load
/// balanced IP should belong to"; `IPAddress` the reserved `-ilb` address's URL ("can be specified ... as a
/// URL of a reserved address resource"); `description` the ownership marker.
pub(super) fn forwarding_rule_to_wire(
    project: &str,
    f: &ForwardingRule,
    address: &str,
) -> gce::ForwardingRule {
    gce::ForwardingRule::new()
        .set_name(f.name.clone())
        .set_description(f.description.clone())
        .set_load_balancing_scheme(gce::forwarding_rule::LoadBalancingScheme::Internal)
        .set_ip_protocol(gce::forwarding_rule::IPProtocol::Tcp)
        .set_all_ports(true)
        .set_backend_service(regional_url(
            project,
            &f.region,
            "backendServices",
            &f.backend_service,
        ))
        .set_network(network_url(project, &f.network))
        .set_subnetwork(subnetwork_url(project, &f.region, &f.subnetwork))
        .set_ip_address(regional_url(project, &f.region, "addresses", address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_keep_what_the_model_names() {
        assert_eq!(
            from_segment(
                "https://x/compute/v1/projects/p/zones/europe-west1-b/instanceGroups/g",
                "zones/"
            ),
            "zones/europe-west1-b/instanceGroups/g"
        );
        assert_eq!(
            region_in("projects/p/regions/europe-west1/subnetworks/runners"),
            "europe-west1"
        );
        assert_eq!(region_in("runners"), "");
    }
}
