//! Google's VPC route selection as one pure function: which routes carry a packet from a VM to an address.
//!
//! Sources:
//! - the Routes overview, <https://cloud.google.com/vpc/docs/routes>: a route with network tags applies only
//!   to instances that have at least one of them, a route without tags applies to every instance of the
//!   network ("Applicability and order"); among the applicable routes the most specific destination wins,
//!   then the lowest priority value, and what is still tied shares the traffic (ECMP, by a hash of the
//!   packet's headers);
//! - compute.v1.json, `Route.priority`: "Priority is used to break ties in cases where there is more than one
//!   matching route of equal prefix length. In cases where multiple routes have equal prefix length, the one
//!   with the lowest-numbered priority value wins."
//! - `gcloud compute routes create`: "Routes match packets by destination IP address, preferring smaller or
//!   more specific ranges over larger ones. If there is a tie, the system selects the route with the smallest
//!   priority value. If there is still a tie, it uses the layer 3 and 4 packet headers to select just one of
//!   the remaining matching routes."
//!
//! Applicability is a filter before the choice, not a tie-breaker after it: a more specific route that does
//! not apply to the VM must not hide a broader one that does.

use std::net::Ipv4Addr;

use crate::net::Ipv4Net;

/// A route as the selection sees it; `H` is whatever the caller uses for the next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route<H> {
    pub(crate) name: String,
    pub(crate) dest: Ipv4Net,
    /// 0..=65535, lower wins.
    pub(crate) priority: u32,
    /// Empty: the route applies to every instance of the network.
    pub(crate) tags: Vec<String>,
    pub(crate) next_hop: H,
}

impl<H> Route<H> {
    /// Whether the route applies to a VM with these network tags.
    pub(crate) fn applies_to(&self, vm_tags: &[&str]) -> bool {
        self.tags.is_empty() || self.tags.iter().any(|t| vm_tags.contains(&t.as_str()))
    }
}

/// The routes that carry a new connection from a VM with `vm_tags` to `dest`: all tied winners (ECMP), in
/// the order given; empty when no route applies (the packet is dropped).
pub(crate) fn select<'a, H>(
    routes: &'a [Route<H>],
    dest: Ipv4Addr,
    vm_tags: &[&str],
) -> Vec<&'a Route<H>> {
    let candidates: Vec<&Route<H>> = routes
        .iter()
        .filter(|r| r.dest.contains(dest) && r.applies_to(vm_tags))
        .collect();
    let Some(best) = candidates
        .iter()
        .map(|r| (std::cmp::Reverse(r.dest.prefix()), r.priority))
        .min()
    else {
        return Vec::new();
    };
    candidates
        .into_iter()
        .filter(|r| (std::cmp::Reverse(r.dest.prefix()), r.priority) == best)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, dest: &str, priority: u32, tags: &[&str]) -> Route<&'static str> {
        Route {
            name: name.into(),
            dest: dest.parse().expect("range"),
            priority,
            tags: tags.iter().map(|t| (*t).to_string()).collect(),
            next_hop: "hop",
        }
    }

    fn names(v: &[&Route<&str>]) -> Vec<String> {
        v.iter().map(|r| r.name.clone()).collect()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_most_specific_destination_wins_whatever_the_priority() {
        // Routes overview, routing order: the most specific destination first; priority only among equals.
        let routes = [
            route("default", "0.0.0.0/0", 0, &[]),
            route("gitlab", "34.1.2.3/32", 1000, &[]),
            route("wide", "34.1.0.0/16", 10, &[]),
        ];
        assert_eq!(names(&select(&routes, ip("34.1.2.3"), &[])), ["gitlab"]);
        assert_eq!(names(&select(&routes, ip("34.1.9.9"), &[])), ["wide"]);
        assert_eq!(names(&select(&routes, ip("8.8.8.8"), &[])), ["default"]);
    }

    #[test]
    fn among_equal_prefixes_the_lowest_priority_value_wins() {
        // Route.priority: "the one with the lowest-numbered priority value wins".
        let routes = [
            route("backup", "34.1.2.3/32", 900, &[]),
            route("primary", "34.1.2.3/32", 800, &[]),
        ];
        assert_eq!(names(&select(&routes, ip("34.1.2.3"), &[])), ["primary"]);
    }

    #[test]
    fn equal_prefix_and_priority_share_the_traffic() {
        // gcloud routes create: "If there is still a tie, it uses the layer 3 and 4 packet headers to select
        // just one of the remaining matching routes" — every tied route is a possible next hop.
        let routes = [
            route("zone-b", "34.1.2.3/32", 800, &["runners"]),
            route("zone-c", "34.1.2.3/32", 800, &["runners"]),
            route("default", "0.0.0.0/0", 1000, &[]),
        ];
        assert_eq!(
            names(&select(&routes, ip("34.1.2.3"), &["runners"])),
            ["zone-b", "zone-c"]
        );
    }

    #[test]
    fn a_tagged_route_applies_only_to_vms_with_one_of_its_tags() {
        // Routes overview, applicability: tagged routes apply to instances with a matching tag, untagged ones
        // to all instances; a more specific route that does not apply does not hide a broader one.
        let routes = [
            route("natgw", "34.1.2.3/32", 800, &["runners", "ci"]),
            route("default", "0.0.0.0/0", 1000, &[]),
        ];
        assert_eq!(names(&select(&routes, ip("34.1.2.3"), &["ci"])), ["natgw"]);
        assert_eq!(
            names(&select(&routes, ip("34.1.2.3"), &["web"])),
            ["default"]
        );
        assert_eq!(names(&select(&routes, ip("34.1.2.3"), &[])), ["default"]);
    }

    #[test]
    fn no_applicable_route_means_no_next_hop() {
        let routes = [route("natgw", "34.1.2.3/32", 800, &["runners"])];
        assert!(select(&routes, ip("34.1.2.3"), &["web"]).is_empty());
        assert!(select(&routes, ip("34.1.2.4"), &["runners"]).is_empty());
        assert!(select::<&str>(&[], ip("1.1.1.1"), &[]).is_empty());
    }
}
