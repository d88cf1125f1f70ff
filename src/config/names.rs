//! natgw's resource names, derived from the gateway's name (pure; the model uses exactly these).
//!
//! Every name is at most [`MAX_NAME_LEN`] characters long for a valid config: `parse` refuses gateway names
//! whose derived names would be longer.

use crate::net::Ipv4Net;

pub(crate) use super::fields::MAX_NAME_LEN;

/// The prefix of every resource natgw creates.
pub(crate) const PREFIX: &str = "natgw";

/// The gateway VM: `natgw-{gw}`.
pub(crate) fn instance(gateway: &str) -> String {
    format!("{PREFIX}-{gateway}")
}

/// The reserved external (egress) address: `natgw-{gw}-ext`.
pub(crate) fn external_address(gateway: &str) -> String {
    format!("{PREFIX}-{gateway}-ext")
}

/// The reserved internal address (the routes' next hop): `natgw-{gw}-int`.
pub(crate) fn internal_address(gateway: &str) -> String {
    format!("{PREFIX}-{gateway}-int")
}

/// Characters of [`host_tag`].
pub(crate) const HOST_TAG_LEN: usize = 6;

/// What sets a gateway's firewall rules and routes apart in a Shared VPC host project, where several
/// service projects, each with its own stacks, put theirs: a short hash of the service project and the
/// stack. `None` for a gateway in its own project, whose names stay as they always were.
pub(crate) fn host_tag(project: &str, stack: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{project}/{stack}").as_bytes());
    crate::hex::encode(&digest[..HOST_TAG_LEN / 2])
}

/// `natgw-{gw}` or, in a host project, `natgw-{gw}-{tag}`.
fn host_scoped(gateway: &str, tag: Option<&str>) -> String {
    match tag {
        Some(t) => format!("{PREFIX}-{gateway}-{t}"),
        None => format!("{PREFIX}-{gateway}"),
    }
}

/// The ingress firewall rule from the source ranges to the VM: `natgw-{gw}-allow`
/// (`natgw-{gw}-{tag}-allow` in a Shared VPC host project).
pub(crate) fn firewall(gateway: &str, tag: Option<&str>) -> String {
    format!("{}-allow", host_scoped(gateway, tag))
}

/// The ingress rule that opens sshd on the VM to Google's IAP TCP forwarding (`ssh = "iap"`):
/// `natgw-{gw}-ssh`. Shorter than the `-allow` rule, so it adds no length limit.
pub(crate) fn ssh_firewall(gateway: &str, tag: Option<&str>) -> String {
    format!("{}-ssh", host_scoped(gateway, tag))
}

/// The route for one destination: `natgw-{gw}-{slug}`, e.g. `natgw-gitlab-34-120-10-10-32`
/// (`natgw-{gw}-{tag}-{slug}` in a Shared VPC host project).
pub(crate) fn route(gateway: &str, tag: Option<&str>, destination: &Ipv4Net) -> String {
    format!("{}-{}", host_scoped(gateway, tag), destination.slug())
}

/// The route for one destination of a gateway with `zones`: `natgw-{gw}-lb-{slug}` through its load
/// balancer (two or more zones), `natgw-{gw}-ha-{slug}` to its one zone's VM (`natgw-{gw}-{tag}-..` in a
/// Shared VPC host project). Names of their own, so that a change of next hop (moving a gateway between
/// `zone` and `zones`, or between one zone and several) creates the new route next to the old one and
/// deletes the old one only then: routes cannot be edited, and the runners must never lack a route through
/// the gateway.
pub(crate) fn zones_route(
    gateway: &str,
    tag: Option<&str>,
    destination: &Ipv4Net,
    load_balanced: bool,
) -> String {
    let via = if load_balanced { "lb" } else { "ha" };
    format!("{}-{via}-{}", host_scoped(gateway, tag), destination.slug())
}

/// The zone's suffix in natgw's names: its last segment, `b` for `europe-west1-b`.
pub(crate) fn zone_suffix(zone: &str) -> &str {
    zone.rsplit('-').next().unwrap_or(zone)
}

/// A zone's managed instance group of a gateway in several zones, and the name of its one VM:
/// `natgw-{gw}-{z}`. The group's VM keeps the addresses [`zone_internal_address`] and
/// [`zone_external_address`] of the same zone, derived from the group's name (see `zone_address_of`).
pub(crate) fn zone_group(gateway: &str, zone: &str) -> String {
    format!("{PREFIX}-{gateway}-{}", zone_suffix(zone))
}

/// A zone's reserved external (egress) address: `natgw-{gw}-{z}-ext`.
pub(crate) fn zone_external_address(gateway: &str, zone: &str) -> String {
    format!("{}-ext", zone_group(gateway, zone))
}

/// A zone's reserved internal address: `natgw-{gw}-{z}-int`.
pub(crate) fn zone_internal_address(gateway: &str, zone: &str) -> String {
    format!("{}-int", zone_group(gateway, zone))
}

/// The addresses a zone's group preserves for its VM: `({group}-int, {group}-ext)`.
pub(crate) fn zone_addresses_of(group: &str) -> (String, String) {
    (format!("{group}-int"), format!("{group}-ext"))
}

/// The instance template: `natgw-{gw}-{hash}`, the hash of its content (templates cannot change, so a new
/// content is a new template).
pub(crate) fn instance_template(gateway: &str, hash: &str) -> String {
    format!("{PREFIX}-{gateway}-{hash}")
}

/// Characters of the content hash in [`instance_template`].
pub(crate) const TEMPLATE_HASH_LEN: usize = 8;

/// The load balancer's health check: `natgw-{gw}-hc`.
pub(crate) fn health_check(gateway: &str) -> String {
    format!("{PREFIX}-{gateway}-hc")
}

/// Autohealing's own health check: `natgw-{gw}-ah`.
pub(crate) fn autoheal_check(gateway: &str) -> String {
    format!("{PREFIX}-{gateway}-ah")
}

/// The internal backend service and its forwarding rule: `natgw-{gw}` (two kinds, one name each).
pub(crate) fn load_balancer(gateway: &str) -> String {
    format!("{PREFIX}-{gateway}")
}

/// The load balancer's reserved internal address, the routes' next hop: `natgw-{gw}-ilb`.
pub(crate) fn ilb_address(gateway: &str) -> String {
    format!("{PREFIX}-{gateway}-ilb")
}

/// The rule that lets Google's health-check probers reach the VMs: `natgw-{gw}-probes`
/// (`natgw-{gw}-{tag}-probes` in a Shared VPC host project).
pub(crate) fn health_firewall(gateway: &str, tag: Option<&str>) -> String {
    format!("{}-probes", host_scoped(gateway, tag))
}

/// Every name a gateway with these destinations derives, in a fixed order. `shared_vpc`: its firewall
/// rules and routes carry a host tag (any tag: they all have the same length). `zones`: its routes are
/// [`zones_route`]s.
pub(crate) fn all(
    gateway: &str,
    shared_vpc: bool,
    zones: bool,
    destinations: &[Ipv4Net],
) -> Vec<String> {
    let sample = "0".repeat(HOST_TAG_LEN);
    let tag = shared_vpc.then_some(sample.as_str());
    let mut names = vec![
        instance(gateway),
        external_address(gateway),
        internal_address(gateway),
        firewall(gateway, tag),
        ssh_firewall(gateway, tag),
    ];
    names.extend(destinations.iter().map(|d| {
        if zones {
            zones_route(gateway, tag, d, true)
        } else {
            route(gateway, tag, d)
        }
    }));
    names
}

/// The longest derived name, when it is longer than Google allows.
pub(crate) fn too_long(
    gateway: &str,
    shared_vpc: bool,
    zones: bool,
    destinations: &[Ipv4Net],
) -> Option<String> {
    all(gateway, shared_vpc, zones, destinations)
        .into_iter()
        .filter(|n| n.len() > MAX_NAME_LEN)
        .max_by_key(String::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme() {
        let d: Ipv4Net = "34.120.10.10/32".parse().expect("valid range");
        assert_eq!(instance("gitlab"), "natgw-gitlab");
        assert_eq!(external_address("gitlab"), "natgw-gitlab-ext");
        assert_eq!(internal_address("gitlab"), "natgw-gitlab-int");
        assert_eq!(firewall("gitlab", None), "natgw-gitlab-allow");
        assert_eq!(route("gitlab", None, &d), "natgw-gitlab-34-120-10-10-32");
        assert_eq!(ssh_firewall("gitlab", None), "natgw-gitlab-ssh");
        assert_eq!(all("gitlab", false, false, &[d]).len(), 6);
        assert_eq!(
            zones_route("gitlab", None, &d, false),
            "natgw-gitlab-ha-34-120-10-10-32"
        );
        assert_eq!(
            zones_route("gitlab", None, &d, true),
            "natgw-gitlab-lb-34-120-10-10-32"
        );
    }

    #[test]
    fn host_project_names_tell_stacks_and_projects_apart() {
        let d: Ipv4Net = "34.120.10.10/32".parse().expect("valid range");
        let a = host_tag("svc-a", "runners");
        assert_eq!(a.len(), HOST_TAG_LEN);
        assert_eq!(a, host_tag("svc-a", "runners"), "stable across runs");
        assert_ne!(a, host_tag("svc-b", "runners"), "another service project");
        assert_ne!(a, host_tag("svc-a", "other"), "another stack");
        assert_ne!(host_tag("svc-a-b", "c"), host_tag("svc-a", "b-c"));
        assert_eq!(
            firewall("gitlab", Some(&a)),
            format!("natgw-gitlab-{a}-allow")
        );
        assert_eq!(
            ssh_firewall("gitlab", Some(&a)),
            format!("natgw-gitlab-{a}-ssh")
        );
        assert_eq!(
            route("gitlab", Some(&a), &d),
            format!("natgw-gitlab-{a}-34-120-10-10-32")
        );
    }

    #[test]
    fn ha_names_are_never_the_longest() {
        // The shortest route slug (`0-0-0-0-0`) outlasts every name of a gateway in several zones, so the
        // route names that `too_long` checks bound them too (a gateway has at least one destination).
        let shortest: Ipv4Net = "0.0.0.0/0".parse().expect("valid range");
        let gw = "g";
        let shortest_route = route(gw, None, &shortest).len();
        let hash = "0".repeat(TEMPLATE_HASH_LEN);
        for name in [
            zone_group(gw, "europe-west1-b"),
            zone_external_address(gw, "europe-west1-b"),
            zone_internal_address(gw, "europe-west1-b"),
            instance_template(gw, &hash),
            health_check(gw),
            autoheal_check(gw),
            load_balancer(gw),
            ilb_address(gw),
        ] {
            assert!(name.len() <= shortest_route, "{name}");
        }
        let tag = Some("000000");
        assert!(health_firewall(gw, tag).len() < route(gw, tag, &shortest).len());
        assert_eq!(zone_group("gitlab", "europe-west1-b"), "natgw-gitlab-b");
        assert_eq!(
            zone_addresses_of("natgw-gitlab-b"),
            (
                zone_internal_address("gitlab", "europe-west1-b"),
                zone_external_address("gitlab", "europe-west1-b")
            )
        );
    }

    #[test]
    fn lengths() {
        let d: Ipv4Net = "134.120.100.100/32".parse().expect("valid range");
        // natgw- (6) + 38 + - (1) + 18 = 63
        let longest_ok = "a".repeat(38);
        assert_eq!(route(&longest_ok, None, &d).len(), 63);
        assert_eq!(too_long(&longest_ok, false, false, &[d]), None);
        // With zones, a route's name is 3 characters longer (-lb or -ha).
        assert_eq!(too_long(&"a".repeat(35), false, true, &[d]), None);
        assert_eq!(
            too_long(&"a".repeat(36), false, true, &[d]),
            Some(zones_route(&"a".repeat(36), None, &d, true))
        );
        let too = "a".repeat(39);
        assert_eq!(
            too_long(&too, false, false, &[d]),
            Some(route(&too, None, &d))
        );
        // Without routes, the firewall rule is the longest: natgw- + 51 + -allow = 63.
        assert_eq!(too_long(&"a".repeat(51), false, false, &[]), None);
        assert_eq!(
            too_long(&"a".repeat(52), false, false, &[]).map(|n| n.len()),
            Some(64)
        );
        // A host tag costs 7 characters (-{6 hex}).
        assert_eq!(too_long(&"a".repeat(31), true, false, &[d]), None);
        assert_eq!(
            too_long(&"a".repeat(32), true, false, &[d]).map(|n| n.len()),
            Some(64)
        );
        assert_eq!(too_long(&"a".repeat(44), true, false, &[]), None);
        assert_eq!(
            too_long(&"a".repeat(45), true, false, &[]).map(|n| n.len()),
            Some(64)
        );
    }
}
