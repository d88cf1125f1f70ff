//! What check concludes from what it read (pure): each function turns observations into findings, with the
//! fix when something is wrong.

use std::net::Ipv4Addr;

use crate::gcp::check::{NetworkRoute, NodeVm, PathResult};
use crate::model::{Firewall, Route};
use crate::net::Ipv4Net;
use crate::plan::{Action, Change};
use crate::render::check::{Check, Finding};
use crate::routing;

/// The plan's changes that concern one gateway, in one line.
pub(super) fn drift(gateway: &str, changes: &[Change]) -> Finding {
    let (mut add, mut change, mut destroy) = (0, 0, 0);
    for c in changes
        .iter()
        .filter(|c| c.gateway == gateway || c.gateway.is_empty())
    {
        match c.action {
            Action::NoOp => {}
            Action::Create => add += 1,
            Action::Update => change += 1,
            Action::Delete => destroy += 1,
            Action::Replace => {
                add += 1;
                destroy += 1;
            }
        }
    }
    let resource = format!("gateway {gateway}");
    if add + change + destroy == 0 {
        return Finding::pass(
            Check::Drift,
            resource,
            "no changes: the project matches the config.",
        );
    }
    Finding::problem(
        Check::Drift,
        resource,
        format!(
            "{add} to add, {change} to change, {destroy} to destroy; run `natgw plan` for the details."
        ),
        "run `natgw apply` to make the project match the config.",
    )
}

/// How the VM answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum VmState {
    /// instances.get found nothing.
    Missing,
    /// Not RUNNING: its status.
    NotRunning(String),
    /// RUNNING, and its startup script reported the current token (`serial`: read from the serial console
    /// because guest attributes are blocked).
    Ready { serial: bool },
    /// RUNNING without reporting the current token.
    NotReady,
}

/// The gateway VM's finding; `summary` is the last `natgw-summary:` line of its serial console.
pub(super) fn vm(name: &str, zone: &str, state: &VmState, summary: Option<&str>) -> Finding {
    let log = format!("gcloud compute instances get-serial-port-output {name} --zone {zone}");
    let said = summary.map_or_else(
        || " Its serial console shows no natgw-summary line.".to_string(),
        |s| format!(" Last on its serial console: {s}"),
    );
    match state {
        VmState::Missing => Finding::problem(
            Check::Vm,
            name,
            format!("does not exist in zone {zone}."),
            "run `natgw apply` to create it.",
        ),
        VmState::NotRunning(status) => Finding::problem(
            Check::Vm,
            name,
            format!("is {status}, not RUNNING: the routes' next hop does not forward.{said}"),
            format!(
                "run `natgw apply`, which starts it again (or `gcloud compute instances start {name} --zone {zone}`)."
            ),
        ),
        VmState::Ready { serial } => Finding::pass(
            Check::Vm,
            name,
            if *serial {
                "RUNNING, and its startup script reported ready with the current token (on the serial console: guest attributes are blocked by constraints/compute.disableGuestAttributesAccess)."
            } else {
                "RUNNING, and its startup script reported ready with the current token (guest attribute natgw/ready)."
            },
        ),
        VmState::NotReady => Finding::problem(
            Check::Vm,
            name,
            format!(
                "RUNNING, but its startup script has not reported ready with the current token: its rules may not be in place.{said}"
            ),
            format!("read its log (`{log}`); `natgw apply` restarts a VM whose script changed."),
        ),
    }
}

/// A backend (one zone's group) of an HA gateway as its load balancer sees it, from
/// `regionBackendServices.getHealth`: each VM and whether it is HEALTHY.
pub(super) fn backend(service: &str, zone: &str, group: &str, vms: &[(String, bool)]) -> Finding {
    let resource = format!("backend {group} ({zone})");
    if vms.is_empty() {
        return Finding::problem(
            Check::Backend,
            resource,
            format!("has no VM: backend service {service} has nothing to send to in {zone}."),
            format!(
                "the group recreates its VM by itself; see `gcloud compute instance-groups managed list-instances {group} --zone {zone}`."
            ),
        );
    }
    let sick: Vec<&str> = vms
        .iter()
        .filter(|(_, healthy)| !healthy)
        .map(|(name, _)| name.as_str())
        .collect();
    if sick.is_empty() {
        let names: Vec<&str> = vms.iter().map(|(n, _)| n.as_str()).collect();
        return Finding::pass(
            Check::Backend,
            resource,
            format!(
                "{} HEALTHY for backend service {service}.",
                names.join(", ")
            ),
        );
    }
    Finding::problem(
        Check::Backend,
        resource,
        format!(
            "{} not HEALTHY for backend service {service}: the load balancer sends new connections to the healthy backends only.",
            sick.join(", ")
        ),
        format!(
            "autohealing recreates the VM after its initial delay; its serial console says why (`gcloud compute instances get-serial-port-output {} --zone {zone}`).",
            sick[0]
        ),
    )
}

/// Whether the route `r` applies to a VM with `tags`.
fn as_selectable(r: &NetworkRoute) -> routing::Route<&NetworkRoute> {
    routing::Route {
        name: r.name.clone(),
        dest: r.dest,
        priority: r.priority,
        tags: r.tags.clone(),
        next_hop: r,
    }
}

/// For each of natgw's routes: it is the one Google selects for the runners' nodes (`node_tags`: the
/// pool's tags with natgw's) at every address of its range, alone.
pub(super) fn routes(
    gateway: &str,
    wanted: &[Route],
    node_tags: &[String],
    all: &[NetworkRoute],
) -> Vec<Finding> {
    let tags: Vec<&str> = node_tags.iter().map(String::as_str).collect();
    let table: Vec<routing::Route<&NetworkRoute>> = all.iter().map(as_selectable).collect();
    wanted
        .iter()
        .map(|want| route(gateway, want, &tags, &table))
        .collect()
}

fn route(
    gateway: &str,
    want: &Route,
    tags: &[&str],
    table: &[routing::Route<&NetworkRoute>],
) -> Finding {
    let name = want.name.as_str();
    let dest = want.dest_range;
    if !table.iter().any(|r| r.name == name) {
        return Finding::problem(
            Check::Route,
            name,
            format!(
                "does not exist: the runners' traffic to {dest} does not go through the gateway."
            ),
            "run `natgw apply` to create it.",
        );
    }
    // The range's first address, and the first address of every more specific route inside it that
    // applies to the nodes: the places where another route could take part of the range.
    let mut points: Vec<Ipv4Addr> = vec![dest.addr()];
    points.extend(
        table
            .iter()
            .filter(|r| {
                r.applies_to(tags)
                    && r.dest.prefix() > dest.prefix()
                    && dest.contains(r.dest.addr())
            })
            .map(|r| r.dest.addr()),
    );
    let tag_list = tags.join(", ");
    for point in points {
        let winners = routing::select(table, point, tags);
        let mine = winners.iter().any(|r| r.name == name);
        let Some(other) = winners.iter().find(|r| r.name != name) else {
            continue;
        };
        let o = other.next_hop;
        let what = format!(
            "route {} ({}, priority {}, {})",
            o.name, o.dest, o.priority, o.next_hop
        );
        let mine_priority = want.priority;
        let lower = |p: u32| {
            if p == 0 {
                format!(
                    "delete route {} or raise its priority value (natgw's cannot go below 0).",
                    o.name
                )
            } else {
                format!(
                    "set route_priority = {} (below {p}) in [gateways.{gateway}] and run `natgw apply`, or delete route {} if it is not needed.",
                    p - 1,
                    o.name
                )
            }
        };
        return if mine {
            Finding::problem(
                Check::Route,
                name,
                format!(
                    "ties with {what} for nodes tagged {tag_list}: same range, same priority {mine_priority}, so Google splits the runners' connections between them."
                ),
                lower(o.priority),
            )
        } else if o.dest.prefix() > dest.prefix() {
            Finding::problem(
                Check::Route,
                name,
                format!(
                    "is shadowed at {point} by the more specific {what}, which applies to nodes tagged {tag_list}."
                ),
                format!(
                    "delete route {} (`gcloud compute routes delete {}`), narrow it, or give it network tags the runners' nodes do not carry.",
                    o.name, o.name
                ),
            )
        } else {
            Finding::problem(
                Check::Route,
                name,
                format!(
                    "loses to {what} for nodes tagged {tag_list}: same range, and a lower priority value than natgw's {mine_priority} wins."
                ),
                lower(o.priority),
            )
        };
    }
    Finding::pass(
        Check::Route,
        name,
        format!(
            "Google selects it for {dest} from nodes tagged {} (priority {}); no other route shadows it.",
            want.tags.join(", "),
            want.priority
        ),
    )
}

/// GKE's default non-masquerade destinations: a pod keeps its own IP towards these and is masqueraded to
/// its node's IP towards everything else, when the cluster has no custom `nonMasqueradeCIDRs` ("IP
/// masquerade agent", https://cloud.google.com/kubernetes-engine/docs/concepts/ip-masquerade-agent).
const NON_MASQUERADE: [&str; 11] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "240.0.0.0/4",
];

fn keeps_pod_ip(dest: &Ipv4Net) -> bool {
    NON_MASQUERADE
        .iter()
        .filter_map(|r| r.parse::<Ipv4Net>().ok())
        .any(|r| r.overlaps(dest))
}

/// Whether every address of `range` is in one of `sources`.
pub(super) fn covered(range: Ipv4Net, sources: &[Ipv4Net]) -> bool {
    let start = u64::from(u32::from(range.addr()));
    let end = start + (1u64 << (32 - u32::from(range.prefix())));
    let mut spans: Vec<(u64, u64)> = sources
        .iter()
        .map(|s| {
            let a = u64::from(u32::from(s.addr()));
            (a, a + (1u64 << (32 - u32::from(s.prefix()))))
        })
        .collect();
    spans.sort_unstable();
    let mut at = start;
    for (a, b) in spans {
        if a > at {
            break;
        }
        at = at.max(b);
        if at >= end {
            return true;
        }
    }
    at >= end
}

/// What the firewall finding needs of the node pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Runners {
    /// The subnetwork's name and primary range.
    pub(super) subnetwork: String,
    pub(super) node_range: Ipv4Net,
    pub(super) pod_range: Option<Ipv4Net>,
    pub(super) default_snat_disabled: bool,
}

/// The rule's sources cover the node range, and the pod range when pods keep their IPs towards a
/// destination. `configured`: the config's `source_ranges`, to tell a rule changed out of band from a config
/// that lacks the range.
pub(super) fn firewall(
    gateway: &str,
    rule: Option<&Firewall>,
    name: &str,
    configured: &[Ipv4Net],
    destinations: &[Ipv4Net],
    runners: &Runners,
) -> Finding {
    let Some(rule) = rule else {
        return Finding::problem(
            Check::Firewall,
            name,
            "does not exist: the gateway VM drops the runners' traffic.",
            "run `natgw apply` to create it.",
        );
    };
    let sources = &rule.source_ranges;
    let private: Vec<String> = destinations
        .iter()
        .filter(|d| keeps_pod_ip(d))
        .map(ToString::to_string)
        .collect();
    let (pods_needed, why) = if runners.default_snat_disabled {
        (
            true,
            "the cluster disables default SNAT (networkConfig.defaultSnatStatus), so pods keep their own IPs towards every destination".to_string(),
        )
    } else if private.is_empty() {
        (
            false,
            "pods reach public destinations masqueraded to their node's IP (GKE's ip-masq-agent default keeps the pod IP only towards RFC 1918 and other reserved ranges), so the node range suffices; add the pod range if the cluster's nonMasqueradeCIDRs lists a destination".to_string(),
        )
    } else {
        (
            true,
            format!(
                "pods keep their own IPs towards {} (GKE's ip-masq-agent default does not masquerade RFC 1918 and other reserved destinations)",
                private.join(", ")
            ),
        )
    };
    let mut needed = vec![(
        "node range",
        runners.node_range,
        format!("subnetwork {}", runners.subnetwork),
    )];
    if pods_needed && let Some(pods) = runners.pod_range {
        needed.push(("pod range", pods, "the pool's pods".to_string()));
    }
    for (what, range, of) in &needed {
        if covered(*range, sources) {
            continue;
        }
        let fix = if covered(*range, configured) {
            "run `natgw apply`: the config's source_ranges cover it, the rule was changed outside natgw.".to_string()
        } else {
            format!("add {range} to source_ranges in [gateways.{gateway}] and run `natgw apply`.")
        };
        return Finding::problem(
            Check::Firewall,
            name,
            format!(
                "its sources ({}) do not cover the {what} {range} ({of}): the gateway VM drops the runners' traffic from there; {why}.",
                join(sources)
            ),
            fix,
        );
    }
    let list: Vec<String> = needed
        .iter()
        .map(|(what, range, _)| format!("the {what} {range}"))
        .collect();
    Finding::pass(
        Check::Firewall,
        name,
        format!(
            "its sources cover {} (subnetwork {}); {why}.",
            list.join(" and "),
            runners.subnetwork
        ),
    )
}

fn join(ranges: &[Ipv4Net]) -> String {
    ranges
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The node pool carries the tag, and so does each of its VMs (one finding per VM that lacks it).
pub(super) fn tags(pool: &str, pool_tags: &[String], tag: &str, vms: &[NodeVm]) -> Vec<Finding> {
    let resource = format!("node pool {pool}");
    if !pool_tags.iter().any(|t| t == tag) {
        return vec![Finding::problem(
            Check::Tag,
            resource,
            format!(
                "lacks the network tag {tag}: natgw's routes apply to none of its nodes (its tags: {}).",
                if pool_tags.is_empty() {
                    "none".to_string()
                } else {
                    pool_tags.join(", ")
                }
            ),
            "run `natgw apply` to add it.",
        )];
    }
    let lacking: Vec<Finding> = vms
        .iter()
        .filter(|vm| !vm.tags.iter().any(|t| t == tag))
        .map(|vm| {
            Finding::problem(
                Check::Tag,
                format!("node VM {}", vm.name),
                format!(
                    "lacks the network tag {tag} that its node pool {pool} carries: natgw's routes do not apply to it, so its runners leave through the shared NAT."
                ),
                format!(
                    "`gcloud compute instances add-tags {} --zone {} --tags {tag}`; nodes GKE creates from now on get the pool's tags.",
                    vm.name, vm.zone
                ),
            )
        })
        .collect();
    if !lacking.is_empty() {
        return lacking;
    }
    vec![Finding::pass(
        Check::Tag,
        resource,
        match vms.len() {
            0 => format!("carries {tag}; it has no node VMs right now."),
            1 => format!("carries {tag}, and so does its node VM."),
            n => format!("carries {tag}, and so do all its {n} node VMs."),
        },
    )]
}

/// The address a Connectivity Test aims at in a destination range: the address itself for a /32 or /31,
/// else the first host.
pub(super) fn probe_address(dest: Ipv4Net) -> Ipv4Addr {
    if dest.prefix() >= 31 {
        dest.addr()
    } else {
        Ipv4Addr::from(u32::from(dest.addr()).wrapping_add(1))
    }
}

/// A Connectivity Test's verdict: every trace applies natgw's route `route` and arrives at the gateway VM
/// `vm`; otherwise where the first trace that does not stops.
pub(super) fn path(what: &str, route: &str, vms: &[&str], result: &PathResult) -> Finding {
    // The gateway VM the trace arrives at after natgw's route: one of `vms` (an HA gateway's load balancer
    // picks one of its healthy backends).
    let reached = |steps: &[crate::gcp::check::TraceStep]| -> Option<String> {
        let at = steps
            .iter()
            .position(|s| s.route.as_deref() == Some(route))?;
        steps[at..]
            .iter()
            .filter(|s| s.state == "ARRIVE_AT_INSTANCE")
            .find_map(|s| s.instance.clone().filter(|i| vms.contains(&i.as_str())))
    };
    let failing = result.traces.iter().find(|t| reached(t).is_none());
    if let (Some(first), None) = (result.traces.first(), failing) {
        let vm = reached(first).unwrap_or_default();
        return Finding::pass(
            Check::Path,
            what,
            format!(
                "reaches the gateway {vm} through route {route} (Connectivity Test; Google's analysis models the network, the gateway's own NAT is its startup script's verification)."
            ),
        );
    }
    let steps = failing.map(Vec::as_slice).unwrap_or_default();
    let last = steps.last();
    let stop = last.map_or_else(
        || format!("no trace, result {}", result.result),
        |s| match &s.cause {
            Some(cause) => format!("{}: {cause}", s.state),
            None => s.state.clone(),
        },
    );
    let took = steps
        .iter()
        .rev()
        .find_map(|s| s.route.as_deref())
        .map(|r| format!(" after route {r}"))
        .unwrap_or_default();
    let fix = match last.and_then(|s| s.cause.as_deref()) {
        Some("FIREWALL_RULE") => {
            "see the firewall finding: the rule must admit the node's address."
        }
        Some("INSTANCE_NOT_RUNNING") => {
            "see the vm finding: the gateway VM (or the node) is not running."
        }
        _ if !took.is_empty() && !took.ends_with(route) => {
            "see the route and tag findings: the node's packets take another route."
        }
        _ => {
            "see the findings above; the test's trace shows the whole path (`gcloud network-management connectivity-tests`)."
        }
    };
    Finding::problem(
        Check::Path,
        what,
        format!("does not reach the gateway (stops at {stop}{took})."),
        fix,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcp::check::TraceStep;
    use crate::render::check::Outcome;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("range")
    }

    fn nroute(name: &str, dest: &str, priority: u32, tags: &[&str]) -> NetworkRoute {
        NetworkRoute {
            name: name.into(),
            dest: net(dest),
            priority,
            tags: tags.iter().map(|t| (*t).to_string()).collect(),
            next_hop: "next hop 10.0.0.9".into(),
        }
    }

    fn want(name: &str, dest: &str, priority: u32) -> Route {
        Route {
            name: name.into(),
            network: "vpc".into(),
            dest_range: net(dest),
            next_hop_ip: None,
            next_hop_ilb: None,
            priority,
            tags: vec!["runner".into()],
            description: String::new(),
        }
    }

    fn node_tags() -> Vec<String> {
        vec!["existing".into(), "runner".into()]
    }

    /// The finding of one wanted route among `all`, for nodes with `node_tags()`.
    fn one_route(wanted: Route, all: &[NetworkRoute]) -> Vec<Finding> {
        routes("gw", &[wanted], &node_tags(), all)
    }

    #[test]
    fn natgws_route_wins_over_the_default_route() {
        let all = [
            nroute("default-internet", "0.0.0.0/0", 1000, &[]),
            nroute("natgw-gw-1", "34.1.2.3/32", 900, &["runner"]),
        ];
        let f = one_route(want("natgw-gw-1", "34.1.2.3/32", 900), &all);
        assert_eq!(f[0].outcome, Outcome::Pass, "{f:?}");
    }

    #[test]
    fn a_missing_route_is_found() {
        let f = one_route(want("natgw-gw-1", "34.1.2.3/32", 900), &[]);
        assert_eq!(f[0].outcome, Outcome::Problem);
        assert!(f[0].message.starts_with("does not exist"), "{f:?}");
    }

    #[test]
    fn a_better_priority_on_the_same_range_wins_and_the_fix_names_a_lower_value() {
        let all = [
            nroute("natgw-gw-1", "34.1.2.0/24", 900, &["runner"]),
            nroute("other", "34.1.2.0/24", 500, &[]),
        ];
        let f = one_route(want("natgw-gw-1", "34.1.2.0/24", 900), &all);
        assert!(f[0].message.contains("loses to route other"), "{f:?}");
        assert!(
            f[0].fix
                .as_deref()
                .unwrap_or_default()
                .contains("route_priority = 499")
        );
    }

    #[test]
    fn a_more_specific_route_inside_the_range_shadows_part_of_it() {
        let all = [
            nroute("natgw-gw-1", "34.1.2.0/24", 900, &["runner"]),
            nroute("narrow", "34.1.2.128/25", 1000, &["existing"]),
        ];
        let f = one_route(want("natgw-gw-1", "34.1.2.0/24", 900), &all);
        assert!(f[0].message.contains("shadowed at 34.1.2.128"), "{f:?}");
        // A more specific route for other nodes' tags does not matter.
        let all = [
            nroute("natgw-gw-1", "34.1.2.0/24", 900, &["runner"]),
            nroute("narrow", "34.1.2.128/25", 1000, &["web"]),
        ];
        let f = one_route(want("natgw-gw-1", "34.1.2.0/24", 900), &all);
        assert_eq!(f[0].outcome, Outcome::Pass, "{f:?}");
    }

    #[test]
    fn a_tie_splits_the_traffic() {
        let all = [
            nroute("natgw-gw-1", "34.1.2.3/32", 900, &["runner"]),
            nroute("twin", "34.1.2.3/32", 900, &[]),
        ];
        let f = one_route(want("natgw-gw-1", "34.1.2.3/32", 900), &all);
        assert!(f[0].message.starts_with("ties with route twin"), "{f:?}");
    }

    fn step(
        state: &str,
        route: Option<&str>,
        instance: Option<&str>,
        cause: Option<&str>,
    ) -> TraceStep {
        TraceStep {
            state: state.into(),
            route: route.map(str::to_string),
            instance: instance.map(str::to_string),
            cause: cause.map(str::to_string),
        }
    }

    #[test]
    fn a_path_reaches_the_gateway_only_through_natgws_route() {
        let through = |route: &str, last: TraceStep| PathResult {
            result: "REACHABLE".into(),
            traces: vec![vec![
                step("START_FROM_INSTANCE", None, Some("node"), None),
                step("APPLY_ROUTE", Some(route), None, None),
                last,
            ]],
        };
        let ok = through(
            "natgw-gw-1",
            step("ARRIVE_AT_INSTANCE", None, Some("natgw-gw"), None),
        );
        assert_eq!(
            path("p", "natgw-gw-1", &["natgw-gw"], &ok).outcome,
            Outcome::Pass
        );
        let other = through(
            "other",
            step("ARRIVE_AT_INSTANCE", None, Some("natgw-gw"), None),
        );
        let f = path("p", "natgw-gw-1", &["natgw-gw"], &other);
        assert!(
            f.message
                .contains("stops at ARRIVE_AT_INSTANCE after route other"),
            "{f:?}"
        );
        let dropped = through(
            "natgw-gw-1",
            step("DROP", None, None, Some("FIREWALL_RULE")),
        );
        let f = path("p", "natgw-gw-1", &["natgw-gw"], &dropped);
        assert!(f.message.contains("stops at DROP: FIREWALL_RULE"), "{f:?}");
        assert!(
            f.fix
                .as_deref()
                .unwrap_or_default()
                .contains("firewall finding")
        );
        let empty = PathResult {
            result: "UNDETERMINED".into(),
            traces: vec![],
        };
        assert!(
            path("p", "r", &["v"], &empty)
                .message
                .contains("no trace, result UNDETERMINED")
        );
    }

    #[test]
    fn an_unhealthy_backend_is_named_with_its_console() {
        let ok = backend("bs", "z-b", "natgw-gw-b", &[("natgw-gw-b-x1".into(), true)]);
        assert_eq!(ok.outcome, Outcome::Pass);
        let sick = backend(
            "bs",
            "z-b",
            "natgw-gw-b",
            &[("natgw-gw-b-x1".into(), false)],
        );
        assert!(
            sick.message.starts_with("natgw-gw-b-x1 not HEALTHY"),
            "{sick:?}"
        );
        assert!(
            sick.fix
                .as_deref()
                .unwrap_or_default()
                .contains("get-serial-port-output natgw-gw-b-x1 --zone z-b")
        );
        assert_eq!(backend("bs", "z-b", "g", &[]).outcome, Outcome::Problem);
    }

    #[test]
    fn a_range_is_probed_at_its_first_host() {
        assert_eq!(
            probe_address(net("34.1.2.3/32")),
            Ipv4Addr::new(34, 1, 2, 3)
        );
        assert_eq!(
            probe_address(net("34.1.2.0/24")),
            Ipv4Addr::new(34, 1, 2, 1)
        );
    }

    #[test]
    fn coverage_is_of_every_address_across_sources() {
        assert!(covered(net("10.0.0.0/20"), &[net("10.0.0.0/16")]));
        assert!(covered(
            net("10.0.0.0/20"),
            &[net("10.0.8.0/21"), net("10.0.0.0/21")]
        ));
        assert!(!covered(net("10.0.0.0/20"), &[net("10.0.0.0/21")]));
        assert!(!covered(net("10.0.0.0/20"), &[]));
        assert!(covered(net("10.0.0.0/20"), &[net("0.0.0.0/0")]));
    }

    fn rule(sources: &[&str]) -> Firewall {
        Firewall {
            name: "natgw-gw-allow".into(),
            network: "vpc".into(),
            priority: 1000,
            source_ranges: sources.iter().map(|s| net(s)).collect(),
            allowed: vec!["tcp:443".into()],
            target_tags: vec!["natgw-gw".into()],
            description: String::new(),
        }
    }

    fn runners(snat_disabled: bool) -> Runners {
        Runners {
            subnetwork: "runners".into(),
            node_range: net("10.0.0.0/20"),
            pod_range: Some(net("10.4.0.0/14")),
            default_snat_disabled: snat_disabled,
        }
    }

    /// `r` judged for the config's `configured` sources and one destination.
    fn judged(
        r: &Firewall,
        configured: &[Ipv4Net],
        destination: &str,
        snat_disabled: bool,
    ) -> Finding {
        firewall(
            "gw",
            Some(r),
            &r.name,
            configured,
            &[net(destination)],
            &runners(snat_disabled),
        )
    }

    #[test]
    fn public_destinations_need_the_node_range_only() {
        let r = rule(&["10.0.0.0/20"]);
        let f = judged(&r, &r.source_ranges, "34.1.2.3/32", false);
        assert_eq!(f.outcome, Outcome::Pass, "{f:?}");
        assert!(
            f.message.contains("masqueraded to their node's IP"),
            "{f:?}"
        );
        let f = judged(&r, &r.source_ranges, "34.1.2.3/32", true);
        assert_eq!(
            f.outcome,
            Outcome::Problem,
            "without default SNAT pods keep their IPs: {f:?}"
        );
    }

    #[test]
    fn a_private_destination_needs_the_pod_range() {
        let r = rule(&["10.0.0.0/20"]);
        let f = judged(&r, &r.source_ranges, "192.168.5.0/24", false);
        assert!(f.message.contains("pod range 10.4.0.0/14"), "{f:?}");
        assert!(
            f.fix
                .as_deref()
                .unwrap_or_default()
                .contains("add 10.4.0.0/14 to source_ranges")
        );
    }

    #[test]
    fn a_rule_changed_outside_natgw_is_fixed_by_apply() {
        let r = rule(&["10.4.0.0/14"]);
        let configured = [net("10.0.0.0/20"), net("10.4.0.0/14")];
        let f = judged(&r, &configured, "34.1.2.3/32", false);
        assert!(
            f.message
                .contains("do not cover the node range 10.0.0.0/20"),
            "{f:?}"
        );
        assert!(
            f.fix
                .as_deref()
                .unwrap_or_default()
                .starts_with("run `natgw apply`")
        );
    }

    fn vm(name: &str, tags: &[&str]) -> NodeVm {
        NodeVm {
            name: name.into(),
            zone: "europe-west1-b".into(),
            status: "RUNNING".into(),
            tags: tags.iter().map(|t| (*t).to_string()).collect(),
        }
    }

    #[test]
    fn every_node_vm_must_carry_the_tag() {
        let pool = node_tags();
        let f = tags(
            "runners",
            &pool,
            "runner",
            &[vm("a", &["runner"]), vm("b", &["runner"])],
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].outcome, Outcome::Pass);
        let f = tags(
            "runners",
            &pool,
            "runner",
            &[vm("a", &["runner"]), vm("b", &["existing"])],
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].resource, "node VM b");
        assert!(
            f[0].fix
                .as_deref()
                .unwrap_or_default()
                .contains("add-tags b --zone europe-west1-b --tags runner")
        );
        let f = tags("runners", &["existing".into()], "runner", &[]);
        assert!(f[0].message.starts_with("lacks the network tag runner"));
    }
}
