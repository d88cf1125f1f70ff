//! Convergence, as a property: for any config and any observed world (part of what an earlier config
//! applied, with drift, next to resources of another stack and unmarked ones), applying the plan gives a
//! world whose next plan has no changes; a destroy then leaves nothing of the stack; and what the stack
//! does not own is never in a plan.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use proptest::prelude::*;
use proptest::sample::{select, subsequence};

use super::tests::{applied_world, config_from, desired_from};
use super::{Action, Change, Context, diff};
use crate::model::observed::{Observation, Observed, Preconditions};
use std::net::Ipv4Addr;

use crate::model::desired::DesiredGateway;
use crate::model::ownership::Owner;
use crate::model::{Address, AddressType, NodePool, NodePoolId, Route};

const STACK: &str = "gitlab-runners";

/// One gateway of a generated config.
#[derive(Clone, Debug)]
struct GatewaySpec {
    zone: &'static str,
    internal_ip: Option<u8>,
    destinations: Vec<u8>,
    wide_destinations: bool,
    more_sources: bool,
    allow: Vec<&'static str>,
    /// Use the tag the pool already has (natgw must not remove it on destroy).
    existing_tag: bool,
    pool: &'static str,
    priority: u32,
    machine_type: &'static str,
    /// In a Shared VPC host (`network_project`), so that a config change can move it in or out.
    host: bool,
}

fn gateway_spec() -> impl Strategy<Value = GatewaySpec> {
    (
        select(vec!["europe-west1-b", "europe-west1-c"]),
        proptest::option::of(0u8..3),
        subsequence(vec![0u8, 1, 2, 3], 1..=3),
        any::<bool>(),
        any::<bool>(),
        subsequence(vec!["tcp:443", "tcp:22", "udp:53"], 1..=3),
        prop::bool::weighted(0.2),
        select(vec!["runners", "other"]),
        select(vec![0u32, 900, 1000, 65535]),
        select(vec!["e2-small", "e2-medium"]),
        prop::bool::weighted(0.3),
    )
        .prop_map(
            |(
                zone,
                internal_ip,
                destinations,
                wide_destinations,
                more_sources,
                allow,
                existing_tag,
                pool,
                priority,
                machine_type,
                host,
            )| GatewaySpec {
                zone,
                internal_ip,
                destinations,
                wide_destinations,
                more_sources,
                allow,
                existing_tag,
                pool,
                priority,
                machine_type,
                host,
            },
        )
}

/// A config of one to three gateways, as natgw.toml text.
fn config_text() -> impl Strategy<Value = String> {
    subsequence(vec!["a", "gw", "gitlab"], 1..=3)
        .prop_flat_map(|names| {
            let n = names.len();
            (Just(names), prop::collection::vec(gateway_spec(), n))
        })
        .prop_map(|(names, specs)| render(&names, &specs))
}

fn render(names: &[&str], specs: &[GatewaySpec]) -> String {
    let mut t = format!("project = \"acme-ci\"\nstack = \"{STACK}\"\n");
    for (i, (name, g)) in names.iter().zip(specs).enumerate() {
        let i = u8::try_from(i).unwrap_or(0);
        let dests: Vec<String> = g
            .destinations
            .iter()
            .map(|d| {
                if g.wide_destinations {
                    format!("\"34.{}.{d}.0/24\"", 100 + i)
                } else {
                    format!("\"34.{}.0.{d}/32\"", 100 + i)
                }
            })
            .collect();
        let allow: Vec<String> = g.allow.iter().map(|a| format!("\"{a}\"")).collect();
        let tag = if g.existing_tag {
            "existing-tag".to_string()
        } else {
            format!("runner-{name}")
        };
        let _ = write!(
            t,
            "\n[gateways.{name}]\nregion = \"europe-west1\"\nzone = \"{}\"\nnetwork = \"vpc-network\"\nsubnetwork = \"runners\"\n",
            g.zone
        );
        if g.host {
            t.push_str("network_project = \"net-host\"\n");
        }
        if let Some(k) = g.internal_ip {
            let _ = writeln!(t, "internal_ip = \"10.0.0.{}\"", 50 + i * 3 + k);
        }
        let sources = if g.more_sources {
            "\"10.0.0.0/20\", \"10.4.0.0/14\""
        } else {
            "\"10.0.0.0/20\""
        };
        let _ = write!(
            t,
            "destinations = [{}]\nsource_ranges = [{sources}]\nallow = [{}]\nnode_tag = \"{tag}\"\nroute_priority = {}\nmachine_type = \"{}\"\n",
            dests.join(", "),
            allow.join(", "),
            g.priority,
            g.machine_type
        );
        let _ = write!(
            t,
            "\n[gateways.{name}.node_pool]\ncluster = \"gke-gitlab-runner\"\nlocation = \"europe-west1\"\nname = \"{}\"\n",
            g.pool
        );
    }
    t
}

fn desired(text: &str) -> Vec<DesiredGateway> {
    desired_from(&config_from(text))
}

fn pool(name: &str, tags: &[&str]) -> Observed<NodePool> {
    Observed {
        resource: NodePool {
            id: NodePoolId {
                location: "europe-west1".into(),
                cluster: "gke-gitlab-runner".into(),
                name: name.into(),
            },
            tags: tags.iter().map(ToString::to_string).collect(),
        },
        owner: None,
        facts: BTreeMap::new(),
        preconditions: Preconditions {
            etag: Some("e0".into()),
            ..Preconditions::default()
        },
    }
}

/// The project before natgw: two node pools that already carry a tag.
fn base_world() -> Observation {
    Observation {
        node_pools: vec![
            pool("runners", &["existing-tag"]),
            pool("other", &["existing-tag"]),
        ],
        ..Observation::default()
    }
}

/// What happens to one observed resource: kept, deleted out of band, or changed out of band.
#[derive(Clone, Copy, Debug)]
enum Drift {
    Keep,
    Gone,
    Change(u8),
}

fn drift() -> impl Strategy<Value = Drift> {
    prop_oneof![
        4 => Just(Drift::Keep),
        1 => Just(Drift::Gone),
        2 => (0u8..4).prop_map(Drift::Change),
    ]
}

/// Applies one drift per resource, in a fixed order (addresses, firewalls, instances, routes, pools).
fn drifted(mut w: Observation, drifts: &[Drift]) -> Observation {
    let mut d = drifts.iter().copied().cycle();
    let mut next = move || d.next().unwrap_or(Drift::Keep);

    let mut addresses = Vec::new();
    for mut a in std::mem::take(&mut w.addresses) {
        match next() {
            Drift::Keep => {}
            Drift::Gone => continue,
            Drift::Change(k) => match k % 2 {
                0 => {
                    a.resource.labels.insert("someone".into(), "edited".into());
                }
                _ => a.resource.description = "edited by hand".into(),
            },
        }
        addresses.push(a);
    }
    w.addresses = addresses;

    let mut firewalls = Vec::new();
    for mut f in std::mem::take(&mut w.firewalls) {
        match next() {
            Drift::Keep => {}
            Drift::Gone => continue,
            Drift::Change(k) => match k {
                0 => f.resource.priority += 1,
                1 => f.resource.source_ranges.truncate(0),
                2 => f.resource.allowed.push("tcp:3389".into()),
                _ => f.resource.target_tags = vec!["elsewhere".into()],
            },
        }
        firewalls.push(f);
    }
    w.firewalls = firewalls;

    let mut instances = Vec::new();
    for mut i in std::mem::take(&mut w.instances) {
        match next() {
            Drift::Keep => {}
            Drift::Gone => continue,
            Drift::Change(k) => match k {
                0 => i.resource.status = "TERMINATED".into(),
                1 => i.resource.machine_type = "e2-micro".into(),
                2 => {
                    i.resource.startup_script = "#!/bin/sh\n".into();
                    i.resource.ready_token = "stale".into();
                }
                _ => i.resource.tags.push("ssh".into()),
            },
        }
        instances.push(i);
    }
    w.instances = instances;

    let mut routes = Vec::new();
    for mut r in std::mem::take(&mut w.routes) {
        match next() {
            Drift::Keep => {}
            Drift::Gone => continue,
            Drift::Change(k) => match k {
                0 => r.resource.priority = r.resource.priority.wrapping_add(1) % 65536,
                1 => r.resource.tags = vec!["everyone".into()],
                2 => r.resource.next_hop_ip = Some(std::net::Ipv4Addr::new(10, 0, 0, 99)),
                _ => r.resource.description.push_str(" edited"),
            },
        }
        routes.push(r);
    }
    w.routes = routes;

    for p in &mut w.node_pools {
        match next() {
            Drift::Keep => {}
            // A pool is never deleted here (a missing pool is a plan error, tested elsewhere): its tags are.
            Drift::Gone => p.resource.tags.retain(|t| t == "existing-tag"),
            Drift::Change(_) => p.resource.tags.push("someone-elses".into()),
        }
    }
    w
}

/// Resources natgw must never touch: names it could derive (gateway `zz`, not in any generated config),
/// owned by another stack or by nobody.
fn with_strangers(mut w: Observation) -> Observation {
    let theirs = Owner {
        stack: "another-stack".into(),
        gateway: "zz".into(),
    };
    let labels = theirs.labels();
    let address = |name: &str, owner: Option<Owner>| Observed {
        resource: Address {
            name: name.into(),
            region: "europe-west1".into(),
            address_type: AddressType::External,
            subnetwork: None,
            address: Some(Ipv4Addr::new(34, 9, 9, 9)),
            description: String::new(),
            labels: if owner.is_some() {
                labels.clone()
            } else {
                BTreeMap::new()
            },
        },
        owner,
        facts: BTreeMap::new(),
        preconditions: Preconditions::default(),
    };
    w.addresses
        .push(address("natgw-zz-ext", Some(theirs.clone())));
    w.addresses.push(address("natgw-zz-int", None));
    let route = |name: &str, description: String, owner: Option<Owner>| Observed {
        resource: Route {
            name: name.into(),
            network: "vpc-network".into(),
            dest_range: "198.51.100.0/24".parse().expect("a range"),
            next_hop_ip: Some(Ipv4Addr::new(10, 0, 0, 99)),
            next_hop_ilb: None,
            priority: 900,
            tags: vec!["theirs".into()],
            description,
        },
        owner,
        facts: BTreeMap::new(),
        preconditions: Preconditions::default(),
    };
    w.routes.push(route(
        "natgw-zz-198-51-100-0-24",
        theirs.description(&[]),
        Some(theirs.clone()),
    ));
    w.routes
        .push(route("natgw-zz-by-hand", "made by hand".into(), None));
    w
}

/// What the stack does not own, as text. A route's next hop is left out: the simulation of apply fills in
/// every route's next hop (what Google decides) from the addresses, whoever owns the route; a change natgw
/// would make to a stranger shows up in the plan, which `touches_strangers` checks.
fn strangers(w: &Observation) -> Vec<String> {
    let mut out: Vec<String> = w
        .addresses
        .iter()
        .filter(|a| !a.owned_by(STACK))
        .map(|a| format!("{a:?}"))
        .chain(w.routes.iter().filter(|r| !r.owned_by(STACK)).map(|r| {
            let mut r = r.clone();
            r.resource.next_hop_ip = None;
            format!("{r:?}")
        }))
        .collect();
    out.sort();
    out
}

fn touches_strangers(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .filter(|c| c.action != Action::NoOp && c.name.starts_with("natgw-zz-"))
        .map(Change::address)
        .collect()
}

fn plan(desired: &[DesiredGateway], world: &Observation) -> Vec<Change> {
    diff(&Context { stack: STACK }, desired, world).expect("a plan")
}

/// The changes whose apply steps wait for each other (apply would refuse the plan).
fn stuck(changes: &[Change]) -> Vec<String> {
    use crate::apply::graph;
    let steps = graph::steps(changes);
    crate::walk::stuck(&graph::dependencies(changes, &steps))
        .into_iter()
        .map(|i| changes[steps[i].change].label())
        .collect()
}

fn pending(changes: &[Change]) -> Vec<(String, Action)> {
    changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .map(|c| (c.address(), c.action))
        .collect()
}

fn owned_count(w: &Observation) -> usize {
    w.addresses.iter().filter(|x| x.owned_by(STACK)).count()
        + w.firewalls.iter().filter(|x| x.owned_by(STACK)).count()
        + w.instances.iter().filter(|x| x.owned_by(STACK)).count()
        + w.routes.iter().filter(|x| x.owned_by(STACK)).count()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Plan, apply, plan again: nothing left to do, from any earlier config and any drift.
    #[test]
    fn applying_a_plan_converges(
        earlier in config_text(),
        now in config_text(),
        same in any::<bool>(),
        drifts in prop::collection::vec(drift(), 1..40),
    ) {
        let now = if same { earlier.clone() } else { now };
        let earlier_world = applied_world(&desired(&earlier), &base_world());
        let observed = with_strangers(drifted(earlier_world, &drifts));
        let wanted = desired(&now);
        let changes = plan(&wanted, &observed);
        let touched = touches_strangers(&changes);
        prop_assert!(touched.is_empty(), "plan touches what the stack does not own: {touched:?}");
        let stuck = stuck(&changes);
        prop_assert!(stuck.is_empty(), "steps wait for each other: {stuck:?}\nconfig:\n{now}");
        let after = applied_world(&wanted, &observed);
        let left = pending(&plan(&wanted, &after));
        prop_assert!(left.is_empty(), "changes left after apply: {left:?}\nconfig:\n{now}");
        prop_assert_eq!(strangers(&after), strangers(&observed));
    }

    /// Destroy from any applied and drifted world: nothing of the stack is left and nothing more to
    /// destroy. The tags natgw added are gone from the pools, the pools' own tag stays, as long as each
    /// gateway kept its firewall rule or one of its routes, which record which tags natgw added (a known
    /// limit: with every record gone, natgw leaves the tag).
    #[test]
    fn destroy_leaves_nothing(
        text in config_text(),
        drifts in prop::collection::vec(drift(), 1..40),
    ) {
        let applied = applied_world(&desired(&text), &base_world());
        let observed = with_strangers(drifted(applied.clone(), &drifts));
        let changes = plan(&[], &observed);
        let touched = touches_strangers(&changes);
        prop_assert!(touched.is_empty(), "destroy touches what the stack does not own: {touched:?}");
        let stuck = stuck(&changes);
        prop_assert!(stuck.is_empty(), "steps wait for each other: {stuck:?}");
        let destroyed = applied_world(&[], &observed);
        prop_assert_eq!(strangers(&destroyed), strangers(&observed));
        prop_assert_eq!(owned_count(&destroyed), 0);
        let left = pending(&plan(&[], &destroyed));
        prop_assert!(left.is_empty(), "changes left after destroy: {left:?}");
        let gateways = |w: &Observation| -> std::collections::BTreeSet<String> {
            w.records(Some(STACK)).filter_map(|f| f.get("natgw-gateway").cloned()).collect()
        };
        let records_kept = gateways(&observed) == gateways(&applied);
        for p in &destroyed.node_pools {
            prop_assert!(p.resource.tags.iter().any(|t| t == "existing-tag"), "{:?}", p.resource);
            let before = observed.node_pools.iter().find(|o| o.resource.id == p.resource.id);
            let foreign = before.is_some_and(|o| o.resource.tags.iter().any(|t| t == "someone-elses"));
            prop_assert_eq!(foreign, p.resource.tags.iter().any(|t| t == "someone-elses"));
            if records_kept {
                prop_assert!(
                    p.resource.tags.iter().all(|t| !t.starts_with("runner-")),
                    "{:?}",
                    p.resource
                );
            }
        }
    }
}
