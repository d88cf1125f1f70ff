//! Steps and their dependencies.
//!
//! Building up (create, update): addresses, then the VM (and its boot), then routes; the firewall rule before
//! the node-pool tag (the rule records whether natgw added the tag). Tearing down runs the other way: routes,
//! then the VM, then addresses; node-pool tags once the routes that use them are gone, and a deleted rule
//! after the tag it records.

use crate::model::{Kind, Resource};
use crate::plan::{Action, Change};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Delete (alone, or the first half of a replacement).
    Down,
    /// Create or update.
    Up,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) change: usize,
    pub(crate) direction: Direction,
}

pub(crate) fn steps(changes: &[Change]) -> Vec<Step> {
    let mut steps = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        match c.action {
            Action::NoOp => {}
            Action::Create | Action::Update => steps.push(Step {
                change: i,
                direction: Direction::Up,
            }),
            Action::Delete => steps.push(Step {
                change: i,
                direction: Direction::Down,
            }),
            Action::Replace => {
                steps.push(Step {
                    change: i,
                    direction: Direction::Down,
                });
                steps.push(Step {
                    change: i,
                    direction: Direction::Up,
                });
            }
        }
    }
    steps
}

/// Building up a gateway in several zones: whether a step of kind `a` must finish before one of kind `b`.
/// Its zones' addresses come first (the groups' VMs keep them, and an HA kind never exists without them, which
/// is how a plan knows to read the HA kinds of a gateway the config no longer names); the template, the
/// autohealing check and the probers' firewall rule before the groups; the groups and the load balancer's
/// health check before the backend service, which goes before the forwarding rule; and the next hop before
/// the routes. Tearing down runs the same relation backwards.
fn ha_up(a: Kind, b: Kind) -> bool {
    use Kind::{
        AutohealCheck, BackendService, ForwardingRule, HealthCheck, HealthFirewall, IlbAddress,
        InstanceGroup, InstanceTemplate, Route, ZoneExternalAddress, ZoneInternalAddress,
    };
    let zone_address = matches!(a, ZoneExternalAddress | ZoneInternalAddress);
    let ha_kind = matches!(
        b,
        InstanceGroup
            | InstanceTemplate
            | HealthCheck
            | AutohealCheck
            | BackendService
            | ForwardingRule
            | HealthFirewall
            | IlbAddress
    );
    (zone_address && (ha_kind || (a == ZoneInternalAddress && b == Route)))
        || matches!(
            (a, b),
            (
                InstanceTemplate | AutohealCheck | HealthFirewall,
                InstanceGroup
            ) | (HealthCheck | InstanceGroup, BackendService)
                | (BackendService | IlbAddress, ForwardingRule)
                | (ForwardingRule | InstanceGroup, Route)
        )
}

/// The order of a gateway in several zones' steps (see [`ha_up`]), and across directions: the groups move
/// to a new template before the old one goes, and a zone leaves the backend service before its group goes.
fn ha_before(ca: &Change, a: Direction, cb: &Change, b: Direction) -> bool {
    use Direction::{Down, Up};
    match (a, b) {
        (Up, Up) => ha_up(ca.kind, cb.kind),
        (Down, Down) => ha_up(cb.kind, ca.kind),
        (Up, Down) => matches!(
            (ca.kind, cb.kind),
            (Kind::InstanceGroup, Kind::InstanceTemplate)
                | (Kind::BackendService, Kind::InstanceGroup)
        ),
        (Down, Up) => false,
    }
}

fn address_ip(r: Option<&Resource>) -> Option<std::net::Ipv4Addr> {
    match r {
        Some(Resource::Address(a)) => a.address,
        _ => None,
    }
}

fn route_dest(r: Option<&Resource>) -> Option<crate::net::Ipv4Net> {
    match r {
        Some(Resource::Route(r)) => Some(r.dest_range),
        _ => None,
    }
}

/// Whether the plan replaces the single VM of `gateway` (same name, so the old one goes first).
fn vm_replaced(changes: &[Change], gateway: &str) -> bool {
    changes
        .iter()
        .any(|c| c.gateway == gateway && c.kind == Kind::Instance && c.action == Action::Replace)
}

/// Whether step `a` must finish before step `b` starts.
fn before(changes: &[Change], a: Step, b: Step) -> bool {
    let (ca, cb) = (&changes[a.change], &changes[b.change]);
    let same_gateway = !ca.gateway.is_empty() && ca.gateway == cb.gateway;
    if same_gateway && a.change != b.change && ha_before(ca, a.direction, cb, b.direction) {
        return true;
    }
    use Direction::{Down, Up};
    match (a.direction, b.direction) {
        // A replacement deletes, then creates.
        (Down, Up) if a.change == b.change => true,
        (Up, Up) if same_gateway => matches!(
            (ca.kind, cb.kind),
            (
                Kind::ExternalAddress | Kind::InternalAddress,
                Kind::Instance
            ) | (Kind::Instance | Kind::InternalAddress, Kind::Route)
        ),
        (Up, Up) => ca.kind == Kind::Firewall && cb.kind == Kind::NodePool,
        (Down, Down) if same_gateway => matches!(
            (ca.kind, cb.kind),
            (Kind::Route, Kind::Instance)
                | (
                    Kind::Instance,
                    Kind::ExternalAddress | Kind::InternalAddress
                )
        ),
        // An adopted route goes only once natgw's routes of the same gateway are in place, and a route that a
        // gateway moving between `zone` and `zones` no longer wants only once its successor to the same
        // destination is (make-before-break: routes cannot be edited, and the runners must never lack a route
        // through the gateway). Not when the gateway's VM is replaced (a gateway moved in or out of a Shared
        // VPC host): the new route leads to the new VM, which comes only after the old route and VM are gone.
        (Up, Down) if same_gateway && ca.kind == Kind::Route && cb.kind == Kind::Route => {
            ca.action == Action::Create
                && (cb.importing.is_some()
                    || (cb.action == Action::Delete
                        && route_dest(ca.after.as_ref()).is_some()
                        && route_dest(ca.after.as_ref()) == route_dest(cb.before.as_ref())
                        && !vm_replaced(changes, &ca.gateway)))
        }
        // Tags go once the routes that use them are gone; a deleted rule goes after the tag it records.
        (Down, Up) if ca.kind == Kind::Route && cb.kind == Kind::NodePool => true,
        (Up, Down) if ca.kind == Kind::NodePool && cb.kind == Kind::Firewall => {
            cb.action == Action::Delete
        }
        // An address that takes the IP another one frees (a renamed gateway with a fixed internal IP).
        (Down, Up) if ca.kind.is_address() && cb.kind.is_address() => {
            let freed = address_ip(ca.before.as_ref());
            freed.is_some() && freed == address_ip(cb.after.as_ref())
        }
        _ => false,
    }
}

/// For each step, the steps it waits for.
pub(crate) fn dependencies(changes: &[Change], steps: &[Step]) -> Vec<Vec<usize>> {
    steps
        .iter()
        .map(|&b| {
            steps
                .iter()
                .enumerate()
                .filter(|&(_, &a)| a != b && before(changes, a, b))
                .map(|(i, _)| i)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{EXAMPLE, applied_world, config_from, desired_from, empty_world};
    use crate::plan::{Context, diff};

    /// The plan from the example as `from` to the example as `to`, and its steps' dependencies.
    fn moved(from: &str, to: &str) -> (Vec<Change>, Vec<Step>, Vec<Vec<usize>>) {
        let world = applied_world(&desired_from(&config_from(from)), &empty_world());
        let ctx = Context {
            stack: "gitlab-runners",
        };
        let changes = diff(&ctx, &desired_from(&config_from(to)), &world).expect("a plan");
        let steps = steps(&changes);
        let deps = dependencies(&changes, &steps);
        (changes, steps, deps)
    }

    /// Whether the delete of the deposed route waits for the create of its successor.
    fn deposed_route_waits(changes: &[Change], steps: &[Step], deps: &[Vec<usize>]) -> bool {
        let step_of = |deposed: bool, direction: Direction| {
            steps
                .iter()
                .position(|s| {
                    let c = &changes[s.change];
                    c.kind == Kind::Route && c.deposed == deposed && s.direction == direction
                })
                .unwrap_or_else(|| panic!("a route step: {changes:#?}"))
        };
        let (old, new) = (
            step_of(true, Direction::Down),
            step_of(false, Direction::Up),
        );
        deps[old].contains(&new)
    }

    #[test]
    fn a_move_between_zone_and_zones_breaks_the_old_route_after_making_the_new_one() {
        let unfixed: String = EXAMPLE
            .lines()
            .filter(|l| !l.starts_with("internal_ip"))
            .map(|l| format!("{l}\n"))
            .collect();
        let zones = unfixed.replace(
            "zone          = \"europe-west1-b\"",
            "zones = [\"europe-west1-b\", \"europe-west1-c\"]",
        );
        for (from, to) in [(&unfixed, &zones), (&zones, &unfixed)] {
            let (changes, steps, deps) = moved(from, to);
            assert_eq!(crate::walk::stuck(&deps), Vec::<usize>::new());
            assert!(deposed_route_waits(&changes, &steps, &deps));
        }
    }

    /// In or out of a Shared VPC host the VM keeps its name and is replaced: its old route must go before it
    /// does, so the new route cannot come first (that order waited on itself, and apply started nothing).
    #[test]
    fn a_move_in_or_out_of_a_shared_vpc_host_replaces_the_vm_without_a_cycle() {
        let hosted = EXAMPLE.replacen(
            "subnetwork    = \"runners\"",
            "subnetwork    = \"runners\"\nnetwork_project = \"net-host\"",
            1,
        );
        assert_ne!(hosted, EXAMPLE);
        for (from, to) in [(EXAMPLE, hosted.as_str()), (hosted.as_str(), EXAMPLE)] {
            let (changes, steps, deps) = moved(from, to);
            assert!(
                changes
                    .iter()
                    .any(|c| c.kind == Kind::Instance && c.action == Action::Replace),
                "{changes:#?}"
            );
            assert_eq!(crate::walk::stuck(&deps), Vec::<usize>::new());
            assert!(!deposed_route_waits(&changes, &steps, &deps));
        }
    }
}
