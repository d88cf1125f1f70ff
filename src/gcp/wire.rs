//! Google's resources <-> natgw's model.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use google_cloud_compute_v1::model as gce;
use google_cloud_container_v1::model as gke;

use crate::model::observed::{self as observed, Observed, Preconditions};
use crate::model::ownership::{self, KEY_IMAGE, Owner};
use crate::model::{Address, AddressType, Firewall, Instance, NodePool, NodePoolId, Route};
use crate::net::Ipv4Net;

pub(super) const META_STARTUP_SCRIPT: &str = "startup-script";
pub(super) const META_READY_TOKEN: &str = "natgw-ready-token";
/// Written with a new startup script, in the same `setMetadata` call, and removed once the VM reported ready
/// with the script's token: while it is there, the VM may still run an older script (natgw was stopped
/// between `setMetadata` and the restart), so a plan restarts it. A metadata item rather than a label: the
/// script and the intent then change in one atomic call (`instances.setMetadata` replaces the whole item list,
/// compute.v1.json `Metadata.items`), with no window in which one is set without the other, and no extra call.
/// Its value is the token the restart is for.
pub(super) const META_RESTART_PENDING: &str = "natgw-restart-pending";
pub(super) const META_GUEST_ATTRIBUTES: &str = "enable-guest-attributes";
/// The boot image, for a VM whose description natgw did not write (an adopted one: no method changes an
/// instance's description). Google does not report the image of a running VM.
pub(super) const META_IMAGE: &str = "natgw-image";

/// The last segment of a URL or partial URL: `.../regions/europe-west1` -> `europe-west1`.
pub(super) fn last_segment(s: &str) -> String {
    s.rsplit('/').next().unwrap_or(s).to_string()
}

pub(super) fn region_of_zone(zone: &str) -> String {
    match zone.rsplit_once('-') {
        Some((region, _)) => region.to_string(),
        None => zone.to_string(),
    }
}

/// Fingerprints travel as bytes; natgw keeps them as hex in plans.
pub(super) fn unhex(s: &str) -> bytes::Bytes {
    let v: Vec<u8> = (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    bytes::Bytes::from(v)
}

pub(super) fn fingerprint(b: Option<&bytes::Bytes>) -> Option<String> {
    b.map(|b| crate::hex::encode(b))
}

pub(super) fn sorted(labels: &HashMap<String, String>) -> BTreeMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(super) fn ip(s: Option<&String>) -> Option<Ipv4Addr> {
    s.and_then(|s| s.parse().ok())
}

/// A network as the model names it: its name in the stack's project, or `projects/HOST/global/networks/N`
/// in a Shared VPC host project.
pub(super) fn network_url(project: &str, network: &str) -> String {
    if network.starts_with("projects/") {
        return network.to_string();
    }
    format!("projects/{project}/global/networks/{network}")
}

/// A subnetwork as the model names it: like [`network_url`].
pub(super) fn subnetwork_url(project: &str, region: &str, subnetwork: &str) -> String {
    if subnetwork.starts_with("projects/") {
        return subnetwork.to_string();
    }
    format!("projects/{project}/regions/{region}/subnetworks/{subnetwork}")
}

/// The project a network (as the model names it) belongs to: its host's, or `own`.
pub(super) fn network_project<'a>(own: &'a str, network: &'a str) -> &'a str {
    crate::model::network_project(network).unwrap_or(own)
}

/// A network or subnetwork URL from Google, named as the model does: its name when it is in `own`, else its
/// path from `projects/` on.
pub(super) fn model_ref(own: &str, url: &str) -> String {
    match url.find("projects/") {
        Some(i) if network_project(own, &url[i..]) != own => url[i..].to_string(),
        _ => last_segment(url),
    }
}

/// Who owns an address: its labels, or else its description marker. natgw writes the marker at insert and the
/// labels just after (below), so an address whose labels were never set (natgw stopped between the two
/// calls) is still known as this stack's, and the plan sets its labels in place.
pub(super) fn address_owner(a: &gce::Address) -> Option<Owner> {
    Owner::from_labels(&sorted(&a.labels)).or_else(|| {
        ownership::parse_description(a.description.as_deref().unwrap_or_default()).map(|(o, _)| o)
    })
}

pub(super) fn address_from_wire(own: &str, a: &gce::Address) -> Observed<Address> {
    let labels = sorted(&a.labels);
    let address_type = match a.address_type.as_ref().and_then(|t| t.name()) {
        Some("INTERNAL") => AddressType::Internal,
        _ => AddressType::External,
    };
    let resource = Address {
        name: a.name.clone().unwrap_or_default(),
        region: a.region.as_deref().map(last_segment).unwrap_or_default(),
        address_type,
        subnetwork: a.subnetwork.as_deref().map(|u| model_ref(own, u)),
        address: ip(a.address.as_ref()),
        description: a.description.clone().unwrap_or_default(),
        labels: labels.clone(),
    };
    let preconditions = Preconditions {
        self_link: a.self_link.clone(),
        label_fingerprint: fingerprint(a.label_fingerprint.as_ref()),
        users: a.users.clone(),
        ..Preconditions::default()
    };
    Observed {
        owner: address_owner(a),
        ..observed::from_labels(resource, &labels, preconditions)
    }
}

/// What natgw sends at `addresses.insert`, field by field, as Google documents it (compute.v1.json, `Address`):
/// - `labels`: not sent. "These can only be added or modified by the setLabels method", so natgw sets them
///   right after the insert (`Cloud::insert_address`); the Terraform provider does the same.
/// - `description`: the ownership marker. Settable at insert ("An optional description of this resource.
///   Provide this field when you create the resource."), and there is no method that changes it later.
/// - `name`: "Provided by the client when the resource is created"; required.
/// - `addressType`: settable at insert; "If unspecified, defaults to EXTERNAL".
/// - `subnetwork`: "can only be used with INTERNAL type with a GCE_ENDPOINT or DNS_RESOLVER purpose" (natgw
///   leaves `purpose` unset: GCE_ENDPOINT is Google's default for internal addresses).
/// - `address`: "If an IP address is specified, it must be within the subnetwork's IP range" (internal only;
///   natgw sends it only when the config fixes the internal IP).
pub(super) fn address_to_wire(project: &str, a: &Address) -> gce::Address {
    let description =
        Owner::from_labels(&a.labels).map_or_else(|| a.description.clone(), |o| o.description(&[]));
    let mut w = gce::Address::new()
        .set_name(a.name.clone())
        .set_description(description);
    match a.address_type {
        AddressType::External => {
            w = w.set_address_type(gce::address::AddressType::External);
        }
        AddressType::Internal => {
            w = w.set_address_type(gce::address::AddressType::Internal);
            if let Some(s) = &a.subnetwork {
                w = w.set_subnetwork(subnetwork_url(project, &a.region, s));
            }
        }
    }
    if let Some(ip) = a.address {
        w = w.set_address(ip.to_string());
    }
    w
}

/// `tcp:443`, `tcp:8000-8080`, `icmp`: one string per protocol and port range, sorted.
fn allowed_from_wire(allowed: &[gce::firewall::Allowed]) -> Vec<String> {
    let mut out = Vec::new();
    for a in allowed {
        let proto = a.ip_protocol.clone().unwrap_or_default();
        if a.ports.is_empty() {
            out.push(proto);
        } else {
            out.extend(a.ports.iter().map(|p| format!("{proto}:{p}")));
        }
    }
    out.sort();
    out
}

fn allowed_to_wire(allowed: &[String]) -> Vec<gce::firewall::Allowed> {
    let mut by_proto: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for a in allowed {
        match a.split_once(':') {
            Some((proto, ports)) => by_proto.entry(proto).or_default().push(ports.to_string()),
            None => {
                by_proto.entry(a.as_str()).or_default();
            }
        }
    }
    by_proto
        .into_iter()
        .map(|(proto, ports)| {
            gce::firewall::Allowed::new()
                .set_ip_protocol(proto)
                .set_ports(ports)
        })
        .collect()
}

pub(super) fn firewall_from_wire(own: &str, f: &gce::Firewall) -> Observed<Firewall> {
    let description = f.description.clone().unwrap_or_default();
    let resource = Firewall {
        name: f.name.clone().unwrap_or_default(),
        network: f
            .network
            .as_deref()
            .map(|u| model_ref(own, u))
            .unwrap_or_default(),
        priority: f
            .priority
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(1000),
        source_ranges: f
            .source_ranges
            .iter()
            .filter_map(|r| r.parse::<Ipv4Net>().ok())
            .collect(),
        allowed: allowed_from_wire(&f.allowed),
        target_tags: f.target_tags.clone(),
        description: description.clone(),
    };
    let preconditions = Preconditions {
        self_link: f.self_link.clone(),
        ..Preconditions::default()
    };
    observed::from_description(resource, &description, preconditions)
}

/// Every field is settable at `firewalls.insert` (compute.v1.json, `Firewall`), and all but `network` by
/// `firewalls.patch`: `description` "Provide this field when you create the resource"; `direction` "The
/// default is INGRESS"; `priority` "between 0 and 65535 ... The default value is 1000"; `targetTags` "If no
/// targetTags are specified, the firewall rule applies to all instances on the specified network" (natgw
/// always sends them).
pub(super) fn firewall_to_wire(project: &str, f: &Firewall) -> gce::Firewall {
    gce::Firewall::new()
        .set_name(f.name.clone())
        .set_network(network_url(project, &f.network))
        .set_direction(gce::firewall::Direction::Ingress)
        .set_priority(i32::try_from(f.priority).unwrap_or(1000))
        .set_source_ranges(f.source_ranges.iter().map(ToString::to_string))
        .set_allowed(allowed_to_wire(&f.allowed))
        .set_target_tags(f.target_tags.clone())
        .set_description(f.description.clone())
}

/// Shielded VM: secure boot, vTPM and integrity monitoring all on.
pub(super) fn shielded(c: Option<&gce::ShieldedInstanceConfig>) -> bool {
    c.is_some_and(|s| {
        s.enable_secure_boot == Some(true)
            && s.enable_vtpm == Some(true)
            && s.enable_integrity_monitoring == Some(true)
    })
}

pub(super) fn metadata_item<'a>(m: Option<&'a gce::Metadata>, key: &str) -> Option<&'a str> {
    m?.items
        .iter()
        .find(|i| i.key.as_deref() == Some(key))?
        .value
        .as_deref()
}

pub(super) fn instance_from_wire(own: &str, i: &gce::Instance) -> Observed<Instance> {
    let labels = sorted(&i.labels);
    let description = i.description.clone().unwrap_or_default();
    let facts = crate::model::ownership::parse_description(&description)
        .map(|(_, f)| f)
        .unwrap_or_default();
    let nic = i.network_interfaces.first();
    let shielded = shielded(i.shielded_instance_config.as_ref());
    let resource = Instance {
        name: i.name.clone().unwrap_or_default(),
        zone: i.zone.as_deref().map(last_segment).unwrap_or_default(),
        machine_type: i
            .machine_type
            .as_deref()
            .map(last_segment)
            .unwrap_or_default(),
        image: facts
            .get(KEY_IMAGE)
            .cloned()
            .or_else(|| metadata_item(i.metadata.as_ref(), META_IMAGE).map(str::to_string))
            .unwrap_or_default(),
        network: nic
            .and_then(|n| n.network.as_deref())
            .map(|u| model_ref(own, u))
            .unwrap_or_default(),
        subnetwork: nic
            .and_then(|n| n.subnetwork.as_deref())
            .map(|u| model_ref(own, u))
            .unwrap_or_default(),
        network_ip: nic.and_then(|n| ip(n.network_ip.as_ref())),
        nat_ip: nic
            .and_then(|n| n.access_configs.first())
            .and_then(|a| ip(a.nat_ip.as_ref())),
        can_ip_forward: i.can_ip_forward == Some(true),
        shielded_vm: shielded,
        service_account: !i.service_accounts.is_empty(),
        tags: i.tags.as_ref().map(|t| t.items.clone()).unwrap_or_default(),
        labels: labels.clone(),
        startup_script: metadata_item(i.metadata.as_ref(), META_STARTUP_SCRIPT)
            .unwrap_or_default()
            .to_string(),
        ready_token: metadata_item(i.metadata.as_ref(), META_READY_TOKEN)
            .unwrap_or_default()
            .to_string(),
        description,
        status: i
            .status
            .as_ref()
            .and_then(|s| s.name())
            .unwrap_or("UNKNOWN")
            .to_string(),
        restart_pending: metadata_item(i.metadata.as_ref(), META_RESTART_PENDING).is_some(),
    };
    let preconditions = Preconditions {
        self_link: i.self_link.clone(),
        label_fingerprint: fingerprint(i.label_fingerprint.as_ref()),
        metadata_fingerprint: fingerprint(i.metadata.as_ref().and_then(|m| m.fingerprint.as_ref())),
        tags_fingerprint: fingerprint(i.tags.as_ref().and_then(|t| t.fingerprint.as_ref())),
        ..Preconditions::default()
    };
    observed::from_labels(resource, &labels, preconditions)
}

pub(super) fn metadata_to_wire(i: &Instance, fingerprint: Option<&str>) -> gce::Metadata {
    let restart = i.restart_pending.then_some(i.ready_token.as_str());
    let mut m = gateway_metadata(&i.startup_script, &i.ready_token, &i.image, restart);
    if let Some(fp) = fingerprint {
        m = m.set_fingerprint(unhex(fp));
    }
    m
}

/// A gateway VM's metadata: its startup script, the token it reports once ready, guest attributes on (where
/// it reports), the boot image natgw records, and a pending restart's intent (`restart`: its token).
pub(super) fn gateway_metadata(
    startup_script: &str,
    ready_token: &str,
    image: &str,
    restart: Option<&str>,
) -> gce::Metadata {
    let items = [
        (META_STARTUP_SCRIPT, startup_script),
        (META_READY_TOKEN, ready_token),
        (META_GUEST_ATTRIBUTES, "TRUE"),
        (META_IMAGE, image),
    ]
    .into_iter()
    .chain(restart.map(|token| (META_RESTART_PENDING, token)))
    .map(|(k, v)| gce::metadata::Items::new().set_key(k).set_value(v));
    gce::Metadata::new().set_items(items)
}

/// The VM: both reserved addresses, IP forwarding, Shielded VM, no service account. What compute.v1.json says
/// of each field natgw sends at `instances.insert`:
/// - `labels`: "These can be later modified by the setLabels method": settable at insert (unlike an
///   address's).
/// - `tags`: "specified by the client during instance creation. The tags can be later modified by the setTags
///   method".
/// - `metadata`: settable at insert; changed later with `setMetadata` and its fingerprint.
/// - `description`: "Provide this property when you create the resource"; no method changes it later, which
///   is why the boot image recorded in it never changes in place.
/// - `canIpForward`: "This is required if you plan to use this instance to forward routes"; fixed at insert
///   for natgw (changing it needs `instances.update` on a stopped VM), so a change replaces the VM.
/// - `networkInterfaces[].networkIP`: "If not specified by the user, an unused internal IP is assigned";
///   natgw sends its reserved internal address.
/// - `accessConfigs[].natIP`: "Specify an unused static external IP address ... it must live in the same
///   region as the zone of the instance"; `type` "the default and only option is ONE_TO_ONE_NAT".
/// - `disks[].initializeParams.sourceImage`: "When creating a new instance boot disk, one of
///   initializeParams.sourceImage ... is required"; the instance does not echo it back.
pub(super) fn instance_to_wire(
    project: &str,
    i: &Instance,
    network_ip: Ipv4Addr,
    nat_ip: Ipv4Addr,
) -> gce::Instance {
    let region = region_of_zone(&i.zone);
    let nic = gce::NetworkInterface::new()
        .set_network(network_url(project, &i.network))
        .set_subnetwork(subnetwork_url(project, &region, &i.subnetwork))
        .set_network_ip(network_ip.to_string())
        .set_access_configs([gce::AccessConfig::new()
            .set_name("External NAT")
            .set_type(gce::access_config::Type::OneToOneNat)
            .set_nat_ip(nat_ip.to_string())]);
    let disk = gce::AttachedDisk::new()
        .set_boot(true)
        .set_auto_delete(true)
        .set_initialize_params(
            gce::AttachedDiskInitializeParams::new().set_source_image(i.image.clone()),
        );
    gce::Instance::new()
        .set_name(i.name.clone())
        .set_description(i.description.clone())
        .set_machine_type(format!("zones/{}/machineTypes/{}", i.zone, i.machine_type))
        .set_can_ip_forward(i.can_ip_forward)
        .set_labels(i.labels.clone())
        .set_tags(gce::Tags::new().set_items(i.tags.clone()))
        .set_disks([disk])
        .set_network_interfaces([nic])
        .set_metadata(metadata_to_wire(i, None))
        .set_shielded_instance_config(
            gce::ShieldedInstanceConfig::new()
                .set_enable_secure_boot(i.shielded_vm)
                .set_enable_vtpm(i.shielded_vm)
                .set_enable_integrity_monitoring(i.shielded_vm),
        )
}

pub(super) fn route_from_wire(own: &str, r: &gce::Route) -> Option<Observed<Route>> {
    let description = r.description.clone().unwrap_or_default();
    let resource = Route {
        name: r.name.clone().unwrap_or_default(),
        network: r
            .network
            .as_deref()
            .map(|u| model_ref(own, u))
            .unwrap_or_default(),
        // A route natgw could not have made (an IPv6 range) is not natgw's.
        dest_range: r.dest_range.as_deref()?.parse().ok()?,
        next_hop_ip: ip(r.next_hop_ip.as_ref()),
        next_hop_ilb: r
            .next_hop_ilb
            .as_deref()
            .map(|u| from_segment(u, "projects/")),
        priority: r.priority.unwrap_or(1000),
        tags: r.tags.clone(),
        description: description.clone(),
    };
    let preconditions = Preconditions {
        self_link: r.self_link.clone(),
        ..Preconditions::default()
    };
    Some(observed::from_description(
        resource,
        &description,
        preconditions,
    ))
}

/// Routes have no update method in compute.v1.json (insert, delete, get, list): every field is set at insert
/// and a change replaces the route. `nextHopIp`: "The network IP address of an instance that should handle
/// matching packets"; `priority` "from 0 to 65535 ... The default value is 1000"; `tags` "A list of instance
/// tags to which this route applies"; `description` "Provide this field when you create the resource".
/// A route through `next_hop`. Through a load balancer, compute.v1.json, `Route.nextHopIlb`: "The URL to a
/// forwarding rule of type loadBalancingScheme=INTERNAL that should handle matching packets or the IP address
/// of the forwarding Rule".
pub(super) fn route_to_wire(project: &str, r: &Route, next_hop: NextHop<'_>) -> gce::Route {
    let base = route_base(project, r);
    match next_hop {
        NextHop::Ip(ip) => base.set_next_hop_ip(ip.to_string()),
        NextHop::Ilb(rule) => base.set_next_hop_ilb(rule.to_string()),
    }
}

/// A URL from Google as the model names it: from `segment` on (`projects/` for `nextHopIlb`, `zones/` for a
/// backend's group), or as given when it has no such segment (`nextHopIlb` may be an IP).
pub(super) fn from_segment(url: &str, segment: &str) -> String {
    match url.find(segment) {
        Some(i) => url[i..].to_string(),
        None => url.to_string(),
    }
}

/// Where a new route sends its packets: a gateway VM's internal IP, or a gateway's internal passthrough load
/// balancer (its forwarding rule, as the model names it).
#[derive(Clone, Copy, Debug)]
pub(crate) enum NextHop<'a> {
    Ip(Ipv4Addr),
    Ilb(&'a str),
}

fn route_base(project: &str, r: &Route) -> gce::Route {
    gce::Route::new()
        .set_name(r.name.clone())
        .set_network(network_url(project, &r.network))
        .set_dest_range(r.dest_range.to_string())
        .set_priority(r.priority)
        .set_tags(r.tags.clone())
        .set_description(r.description.clone())
}

pub(super) fn node_pool_from_wire(id: &NodePoolId, p: &gke::NodePool) -> Observed<NodePool> {
    let tags = p
        .config
        .as_ref()
        .map(|c| c.tags.clone())
        .unwrap_or_default();
    Observed {
        resource: NodePool {
            id: id.clone(),
            tags,
        },
        owner: None,
        facts: BTreeMap::new(),
        preconditions: Preconditions {
            self_link: Some(p.self_link.clone()),
            etag: Some(p.etag.clone()),
            ..Preconditions::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_in_another_project_keep_their_project() {
        let host = "https://www.googleapis.com/compute/v1/projects/host/global/networks/vpc";
        let own = "https://www.googleapis.com/compute/v1/projects/svc/global/networks/vpc";
        assert_eq!(model_ref("svc", own), "vpc");
        assert_eq!(model_ref("svc", host), "projects/host/global/networks/vpc");
        assert_eq!(model_ref("host", host), "vpc");
        let sub = "projects/host/regions/europe-west1/subnetworks/runners";
        assert_eq!(model_ref("svc", sub), sub);
        assert_eq!(subnetwork_url("svc", "europe-west1", sub), sub);
        assert_eq!(
            network_url("svc", "vpc"),
            "projects/svc/global/networks/vpc"
        );
        assert_eq!(network_project("svc", "vpc"), "svc");
        assert_eq!(
            network_project("svc", "projects/host/global/networks/vpc"),
            "host"
        );
    }

    #[test]
    fn segments_and_regions() {
        assert_eq!(
            last_segment("https://x/compute/v1/projects/p/regions/europe-west1"),
            "europe-west1"
        );
        assert_eq!(last_segment("e2-small"), "e2-small");
        assert_eq!(region_of_zone("europe-west1-b"), "europe-west1");
    }

    #[test]
    fn fingerprints_round_trip() {
        let b = bytes::Bytes::from_static(&[0, 1, 0xab, 0xff]);
        assert_eq!(unhex(&crate::hex::encode(&b)), b);
    }

    #[test]
    fn firewall_allowed_round_trip() {
        let allowed = vec![
            "icmp".to_string(),
            "tcp:22".into(),
            "tcp:443".into(),
            "udp:53-54".into(),
        ];
        assert_eq!(allowed_from_wire(&allowed_to_wire(&allowed)), allowed);
    }
}
