//! diff scenarios, without a server.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::*;
use crate::config;
use crate::model::NodePool;
use crate::model::desired::{self, DesiredGateway};
use crate::model::observed::{Observation, Observed, Preconditions};
use crate::model::ownership::Owner;

pub(crate) const EXAMPLE: &str = include_str!("../../examples/gitlab-runner.toml");

/// The example with two zones: a gateway that survives a zone outage.
pub(crate) const HA_EXAMPLE: &str = r#"
project = "acme-ci"
stack   = "gitlab-runners"

[gateways.gitlab]
region        = "europe-west1"
zones         = ["europe-west1-b", "europe-west1-c"]
network       = "vpc-network"
subnetwork    = "runners"
destinations  = ["34.120.10.10/32"]
source_ranges = ["10.0.0.0/20", "10.4.0.0/14"]
node_tag      = "gitlab-runner"

[gateways.gitlab.node_pool]
cluster  = "gke-gitlab-runner"
location = "europe-west1"
name     = "runners"
"#;

pub(crate) fn config_from(text: &str) -> config::Config {
    config::parse(std::path::Path::new("natgw.toml"), text).expect("test config parses")
}

pub(crate) fn desired_from(cfg: &config::Config) -> Vec<DesiredGateway> {
    cfg.gateways
        .values()
        .map(|gw| desired::gateway("p", &cfg.stack, gw, format!("#!/bin/bash\n# {}\n", gw.name)))
        .collect()
}

fn observed<T>(resource: T, owner: &Owner, facts_from: Option<&str>) -> Observed<T> {
    let facts = facts_from
        .and_then(crate::model::ownership::parse_description)
        .map(|(_, f)| f)
        .unwrap_or_default();
    Observed {
        resource,
        owner: Some(owner.clone()),
        facts,
        preconditions: Preconditions::default(),
    }
}

fn pool(tags: &[&str]) -> Observed<NodePool> {
    Observed {
        resource: NodePool {
            id: NodePoolId {
                location: "europe-west1".into(),
                cluster: "gke-gitlab-runner".into(),
                name: "runners".into(),
            },
            tags: tags.iter().map(ToString::to_string).collect(),
        },
        owner: None,
        facts: BTreeMap::new(),
        preconditions: Preconditions {
            etag: Some("e1".into()),
            ..Preconditions::default()
        },
    }
}

/// A project with only the node pool.
pub(crate) fn empty_world() -> Observation {
    Observation {
        node_pools: vec![pool(&["existing-tag"])],
        ..Observation::default()
    }
}

/// The world as apply leaves it for `desired`: what `diff` against it must call a no-op.
pub(crate) fn applied_world(desired: &[DesiredGateway], base: &Observation) -> Observation {
    let ctx = Context {
        stack: "gitlab-runners",
    };
    let changes = diff(&ctx, desired, base).expect("plan");
    let mut w = base.clone();
    let mut n = 10u8;
    for c in &changes {
        let owner = desired
            .iter()
            .find(|g| g.owner.gateway == c.gateway)
            .map(|g| g.owner.clone());
        match (&c.action, &c.after) {
            (Action::Create | Action::Update | Action::Replace, Some(after)) => {
                let owner = owner.unwrap_or_else(|| Owner {
                    stack: String::new(),
                    gateway: String::new(),
                });
                match after.clone() {
                    Resource::Address(mut a) => {
                        w.addresses.retain(|x| x.resource.name != a.name);
                        if a.address.is_none() {
                            n += 1;
                            a.address =
                                Some(if a.address_type == crate::model::AddressType::External {
                                    Ipv4Addr::new(34, 1, 1, n)
                                } else {
                                    Ipv4Addr::new(10, 0, 0, n)
                                });
                        }
                        w.addresses.push(observed(a, &owner, None));
                    }
                    Resource::Firewall(f) => {
                        w.firewalls.retain(|x| x.resource.name != f.name);
                        let d = f.description.clone();
                        w.firewalls.push(observed(f, &owner, Some(&d)));
                    }
                    Resource::Instance(i) => {
                        w.instances.retain(|x| x.resource.name != i.name);
                        w.instances.push(observed(i, &owner, None));
                    }
                    Resource::Route(r) => {
                        w.routes.retain(|x| x.resource.name != r.name);
                        let d = r.description.clone();
                        w.routes.push(observed(r, &owner, Some(&d)));
                    }
                    Resource::InstanceTemplate(t) => {
                        w.templates.retain(|x| x.resource.name != t.name);
                        let d = t.description.clone();
                        w.templates.push(observed(t, &owner, Some(&d)));
                    }
                    Resource::InstanceGroup(g) => {
                        w.groups.retain(|x| x.resource.name != g.name);
                        let d = g.description.clone();
                        w.groups.push(observed(g, &owner, Some(&d)));
                    }
                    Resource::HealthCheck(h) => {
                        w.health_checks.retain(|x| x.resource.name != h.name);
                        let d = h.description.clone();
                        w.health_checks.push(observed(h, &owner, Some(&d)));
                    }
                    Resource::BackendService(b) => {
                        w.backend_services.retain(|x| x.resource.name != b.name);
                        let d = b.description.clone();
                        w.backend_services.push(observed(b, &owner, Some(&d)));
                    }
                    Resource::ForwardingRule(f) => {
                        w.forwarding_rules.retain(|x| x.resource.name != f.name);
                        let d = f.description.clone();
                        w.forwarding_rules.push(observed(f, &owner, Some(&d)));
                    }
                    Resource::NodePool(p) => {
                        w.node_pools.retain(|x| x.resource.id != p.id);
                        w.node_pools.push(Observed {
                            resource: p,
                            owner: None,
                            facts: BTreeMap::new(),
                            preconditions: Preconditions::default(),
                        });
                    }
                }
            }
            (Action::Delete, Some(_)) | (Action::Delete, None) => {
                let name = c.name.clone();
                w.addresses.retain(|x| x.resource.name != name);
                w.firewalls.retain(|x| x.resource.name != name);
                w.instances.retain(|x| x.resource.name != name);
                w.routes.retain(|x| x.resource.name != name);
                w.templates.retain(|x| x.resource.name != name);
                w.groups.retain(|x| x.resource.name != name);
                w.health_checks.retain(|x| x.resource.name != name);
                w.backend_services.retain(|x| x.resource.name != name);
                w.forwarding_rules.retain(|x| x.resource.name != name);
            }
            _ => {}
        }
    }
    // Fill in what Google decides: IPs of the VM and next hops.
    let addrs = w.addresses.clone();
    let find_ip = |name: &str| {
        addrs
            .iter()
            .find(|a| a.resource.name == name)
            .and_then(|a| a.resource.address)
    };
    for i in &mut w.instances {
        let gw = i
            .owner
            .as_ref()
            .map(|o| o.gateway.clone())
            .unwrap_or_default();
        i.resource.network_ip = find_ip(&config::names::internal_address(&gw));
        i.resource.nat_ip = find_ip(&config::names::external_address(&gw));
    }
    for r in &mut w.routes {
        let gw = r
            .owner
            .as_ref()
            .map(|o| o.gateway.clone())
            .unwrap_or_default();
        if r.resource.next_hop_ilb.is_none() {
            // A single VM's internal address, or a gateway in one zone's.
            let zone_int = addrs
                .iter()
                .find(|a| {
                    a.resource.kind() == crate::model::Kind::ZoneInternalAddress
                        && a.owner.as_ref().is_some_and(|o| o.gateway == gw)
                })
                .and_then(|a| a.resource.address);
            r.resource.next_hop_ip = find_ip(&config::names::internal_address(&gw)).or(zone_int);
        }
    }
    for f in &mut w.forwarding_rules {
        let gw = f
            .owner
            .as_ref()
            .map(|o| o.gateway.clone())
            .unwrap_or_default();
        f.resource.ip_address = find_ip(&config::names::ilb_address(&gw));
    }
    w
}

pub(super) fn plan(desired: &[DesiredGateway], world: &Observation) -> Vec<Change> {
    diff(
        &Context {
            stack: "gitlab-runners",
        },
        desired,
        world,
    )
    .expect("plan")
}

pub(super) fn actions(changes: &[Change]) -> Vec<(String, Action)> {
    changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .map(|c| (c.address(), c.action))
        .collect()
}

fn example() -> (config::Config, Vec<DesiredGateway>) {
    let cfg = config_from(EXAMPLE);
    let d = desired_from(&cfg);
    (cfg, d)
}

#[test]
fn fresh_project_creates_everything_and_adds_the_tag() {
    let (_, d) = example();
    let changes = plan(&d, &empty_world());
    assert_eq!(
        actions(&changes),
        vec![
            ("gitlab.external_address".to_string(), Action::Create),
            ("gitlab.internal_address".to_string(), Action::Create),
            ("gitlab.firewall".to_string(), Action::Create),
            ("gitlab.instance".to_string(), Action::Create),
            (
                "gitlab.route[\"34.120.10.10/32\"]".to_string(),
                Action::Create
            ),
            (
                "node_pool[\"europe-west1/gke-gitlab-runner/runners\"]".to_string(),
                Action::Update
            ),
        ]
    );
    let pool_change = changes
        .iter()
        .find(|c| c.kind == Kind::NodePool)
        .expect("pool change");
    match &pool_change.after {
        Some(Resource::NodePool(p)) => assert_eq!(p.tags, vec!["existing-tag", "gitlab-runner"]),
        other => panic!("unexpected {other:?}"),
    }
    let fw = changes
        .iter()
        .find(|c| c.kind == Kind::Firewall)
        .expect("firewall");
    match &fw.after {
        Some(Resource::Firewall(f)) => assert!(
            f.description.contains("natgw-tag-added=true"),
            "{}",
            f.description
        ),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn applied_project_has_no_changes() {
    let (_, d) = example();
    let w = applied_world(&d, &empty_world());
    assert_eq!(actions(&plan(&d, &w)), vec![]);
}

#[test]
fn out_of_band_deletion_of_each_kind_is_repaired() {
    let (_, d) = example();
    let w = applied_world(&d, &empty_world());
    let mut no_fw = w.clone();
    no_fw.firewalls.clear();
    assert_eq!(
        actions(&plan(&d, &no_fw)),
        vec![("gitlab.firewall".to_string(), Action::Create)]
    );
    let mut no_route = w.clone();
    no_route.routes.clear();
    assert_eq!(
        actions(&plan(&d, &no_route)),
        vec![(
            "gitlab.route[\"34.120.10.10/32\"]".to_string(),
            Action::Create
        )]
    );
    let mut no_vm = w.clone();
    no_vm.instances.clear();
    assert_eq!(
        actions(&plan(&d, &no_vm)),
        vec![("gitlab.instance".to_string(), Action::Create)]
    );
    let mut no_tag = w.clone();
    no_tag.node_pools = vec![pool(&["existing-tag"])];
    assert_eq!(
        actions(&plan(&d, &no_tag)),
        vec![(
            "node_pool[\"europe-west1/gke-gitlab-runner/runners\"]".to_string(),
            Action::Update
        )]
    );
    // The external address is gone: a new one (new IP) means a new VM.
    let mut no_ext = w.clone();
    no_ext
        .addresses
        .retain(|a| a.resource.address_type != crate::model::AddressType::External);
    assert_eq!(
        actions(&plan(&d, &no_ext)),
        vec![
            ("gitlab.external_address".to_string(), Action::Create),
            ("gitlab.instance".to_string(), Action::Replace)
        ]
    );
}

#[test]
fn out_of_band_changes_are_updated_in_place() {
    let (_, d) = example();
    let w = applied_world(&d, &empty_world());
    let mut edited = w.clone();
    edited.firewalls[0]
        .resource
        .source_ranges
        .push("0.0.0.0/0".parse().expect("range"));
    edited.addresses[0]
        .resource
        .labels
        .insert("natgw-extra".into(), "x".into());
    edited.instances[0].resource.status = "TERMINATED".into();
    edited.instances[0].resource.startup_script = "#!/bin/sh\n# tampered\n".into();
    let changes = plan(&d, &edited);
    assert_eq!(
        actions(&changes),
        vec![
            ("gitlab.external_address".to_string(), Action::Update),
            ("gitlab.firewall".to_string(), Action::Update),
            ("gitlab.instance".to_string(), Action::Update),
        ]
    );
    let vm = changes
        .iter()
        .find(|c| c.kind == Kind::Instance)
        .expect("vm");
    let fields: Vec<&str> = vm.diffs.iter().map(|d| d.field.name()).collect();
    assert_eq!(fields, vec!["startup_script", "status"]);
}

fn with(edit: &str, replacement: &str) -> Vec<DesiredGateway> {
    let text = EXAMPLE.replacen(edit, replacement, 1);
    assert_ne!(text, EXAMPLE, "the edit {edit:?} must apply");
    desired_from(&config_from(&text))
}

#[test]
fn config_changes_give_the_right_action() {
    let (_, d) = example();
    let w = applied_world(&d, &empty_world());

    // A new destination: one more route.
    let more = with(
        "destinations  = [\"34.120.10.10/32\"]",
        "destinations  = [\"34.120.10.10/32\", \"35.1.2.0/24\"]",
    );
    assert_eq!(
        actions(&plan(&more, &w)),
        vec![("gitlab.route[\"35.1.2.0/24\"]".to_string(), Action::Create)]
    );

    // Priority: routes cannot change in place.
    let prio = with(
        "node_tag      = \"gitlab-runner\"",
        "node_tag      = \"gitlab-runner\"\nroute_priority = 800",
    );
    let changes = plan(&prio, &w);
    assert_eq!(
        actions(&changes),
        vec![(
            "gitlab.route[\"34.120.10.10/32\"]".to_string(),
            Action::Replace
        )]
    );
    let route = changes
        .iter()
        .find(|c| c.kind == Kind::Route)
        .expect("route");
    assert_eq!(route.forces_replacement(), vec!["priority"]);

    // Allowed ports and source ranges: the firewall rule is patched.
    let ports = with(
        "allow         = [\"tcp:443\", \"tcp:22\"]",
        "allow         = [\"tcp:443\"]",
    );
    assert_eq!(
        actions(&plan(&ports, &w)),
        vec![("gitlab.firewall".to_string(), Action::Update)]
    );
    let sources = with("\"10.4.0.0/14\"]", "\"10.8.0.0/14\"]");
    // (The test scripts do not depend on the ranges; the real one does, and the VM is then updated too.)
    assert_eq!(
        actions(&plan(&sources, &w)),
        vec![("gitlab.firewall".to_string(), Action::Update)]
    );

    // Machine type: the VM is replaced, its addresses kept.
    let mt = with(
        "node_tag      = \"gitlab-runner\"",
        "node_tag      = \"gitlab-runner\"\nmachine_type = \"e2-medium\"",
    );
    let changes = plan(&mt, &w);
    assert_eq!(
        actions(&changes),
        vec![("gitlab.instance".to_string(), Action::Replace)]
    );
    assert_eq!(
        changes
            .iter()
            .find(|c| c.kind == Kind::Instance)
            .expect("vm")
            .forces_replacement(),
        vec!["machine_type"]
    );

    // Internal IP: a new internal address, so a new VM and new routes.
    let int = with(
        "internal_ip   = \"10.0.0.50\"",
        "internal_ip   = \"10.0.0.60\"",
    );
    assert_eq!(
        actions(&plan(&int, &w)),
        vec![
            ("gitlab.internal_address".to_string(), Action::Replace),
            ("gitlab.instance".to_string(), Action::Replace),
            (
                "gitlab.route[\"34.120.10.10/32\"]".to_string(),
                Action::Replace
            ),
        ]
    );
}

#[test]
fn renamed_gateway_deletes_the_old_and_creates_the_new() {
    let (_, d) = example();
    let w = applied_world(&d, &empty_world());
    let renamed = desired_from(&config_from(
        &EXAMPLE.replace("[gateways.gitlab", "[gateways.gitlab2"),
    ));
    let changes = plan(&renamed, &w);
    let a = actions(&changes);
    assert_eq!(
        a.iter().filter(|(_, x)| *x == Action::Delete).count(),
        5,
        "{a:?}"
    );
    assert_eq!(
        a.iter().filter(|(_, x)| *x == Action::Create).count(),
        5,
        "{a:?}"
    );
    assert!(
        a.iter()
            .all(|(addr, x)| (*x == Action::Delete) == addr.starts_with("gitlab.")),
        "{a:?}"
    );
    // The tag stays: gitlab2 uses it too.
    assert!(
        !a.iter().any(|(addr, _)| addr.starts_with("node_pool")),
        "{a:?}"
    );
}

#[test]
fn foreign_and_unmarked_resources_are_conflicts_not_adoptions() {
    let (_, d) = example();
    let mut w = empty_world();
    let mut foreign = applied_world(&d, &empty_world()).routes.remove(0);
    foreign.owner = None;
    w.routes.push(foreign.clone());
    match diff(
        &Context {
            stack: "gitlab-runners",
        },
        &d,
        &w,
    ) {
        Err(PlanError::Conflict { name, owner, .. }) => {
            assert_eq!(name, "natgw-gitlab-34-120-10-10-32");
            assert!(owner.contains("no natgw ownership marker"));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    foreign.owner = Some(Owner {
        stack: "other".into(),
        gateway: "gitlab".into(),
    });
    let mut w2 = empty_world();
    w2.routes.push(foreign);
    assert!(matches!(
        diff(
            &Context {
                stack: "gitlab-runners"
            },
            &d,
            &w2
        ),
        Err(PlanError::Conflict { .. })
    ));
}

#[test]
fn other_stacks_are_never_deleted() {
    let (_, d) = example();
    let mut w = applied_world(&d, &empty_world());
    for r in &mut w.routes {
        r.owner = Some(Owner {
            stack: "other".into(),
            gateway: "x".into(),
        });
        r.resource.name = "natgw-x-1-1-1-1-32".into();
    }
    let changes = diff(
        &Context {
            stack: "gitlab-runners",
        },
        &[],
        &w,
    )
    .expect("plan");
    assert!(
        changes.iter().all(|c| c.kind != Kind::Route),
        "{:?}",
        actions(&changes)
    );
}

#[test]
fn destroy_removes_everything_and_only_the_tag_natgw_added() {
    let (_, d) = example();
    let w = applied_world(&d, &empty_world());
    let changes = plan(&[], &w);
    let a = actions(&changes);
    assert_eq!(
        a.iter().filter(|(_, x)| *x == Action::Delete).count(),
        5,
        "{a:?}"
    );
    let pool_change = changes
        .iter()
        .find(|c| c.kind == Kind::NodePool)
        .expect("pool");
    match &pool_change.after {
        Some(Resource::NodePool(p)) => assert_eq!(p.tags, vec!["existing-tag"]),
        other => panic!("unexpected {other:?}"),
    }
    // Had the tag been there before natgw, destroy leaves it.
    let mut before = empty_world();
    before.node_pools = vec![pool(&["existing-tag", "gitlab-runner"])];
    let w2 = applied_world(&d, &before);
    let fw = &w2.firewalls[0];
    assert_eq!(
        fw.facts.get("natgw-tag-added").map(String::as_str),
        Some("false")
    );
    let changes = plan(&[], &w2);
    assert!(
        changes
            .iter()
            .all(|c| c.kind != Kind::NodePool || c.action == Action::NoOp)
    );
}

#[test]
fn a_missing_node_pool_is_an_error() {
    let (_, d) = example();
    let w = Observation::default();
    assert!(matches!(
        diff(
            &Context {
                stack: "gitlab-runners"
            },
            &d,
            &w
        ),
        Err(PlanError::MissingNodePool(..))
    ));
}

#[test]
fn google_picked_internal_ip_is_kept() {
    let d = with("internal_ip   = \"10.0.0.50\"\n", "");
    assert_eq!(d[0].internal_address.address, None);
    let w = applied_world(&d, &empty_world());
    assert_eq!(actions(&plan(&d, &w)), vec![]);
    let vm = &w.instances[0].resource;
    assert!(vm.network_ip.is_some());
    assert_eq!(w.routes[0].resource.next_hop_ip, vm.network_ip);
}

#[test]
fn summary_counts_replacements_twice() {
    let (_, d) = example();
    let w = applied_world(&d, &empty_world());
    let int = with(
        "internal_ip   = \"10.0.0.50\"",
        "internal_ip   = \"10.0.0.60\"",
    );
    let p = Plan {
        format_version: FORMAT_VERSION,
        natgw_version: "test".into(),
        project: "acme-ci".into(),
        stack: "gitlab-runners".into(),
        config_digest: String::new(),
        destroy: false,
        changes: plan(&int, &w),
        world: w,
    };
    assert_eq!(
        p.summary(),
        Summary {
            adopt: 0,
            add: 3,
            change: 0,
            destroy: 3
        }
    );
}

#[test]
fn the_tag_record_survives_the_loss_of_the_firewall_rule() {
    let (_, d) = example();
    let mut w = applied_world(&d, &empty_world());
    // Someone deletes the rule that records that natgw added the tag; the route still records it.
    w.firewalls.clear();
    let route = &w.routes[0];
    assert_eq!(
        route.facts.get("natgw-tag-added").map(String::as_str),
        Some("true")
    );
    // Apply recreates the rule with the record...
    let changes = plan(&d, &w);
    let fw = changes
        .iter()
        .find(|c| c.kind == Kind::Firewall)
        .expect("firewall");
    match &fw.after {
        Some(Resource::Firewall(f)) => assert!(
            f.description.contains("natgw-tag-added=true"),
            "{}",
            f.description
        ),
        other => panic!("unexpected {other:?}"),
    }
    // ...and destroy, even without the rule, removes the tag natgw added.
    let changes = plan(&[], &w);
    let pool_change = changes
        .iter()
        .find(|c| c.kind == Kind::NodePool)
        .expect("pool");
    match &pool_change.after {
        Some(Resource::NodePool(p)) => assert_eq!(p.tags, vec!["existing-tag"]),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_saved_plan_reads_back_with_typed_fields_and_an_unknown_field_is_refused() {
    let (_, d) = example();
    let mut w = applied_world(&d, &empty_world());
    w.instances[0].resource.status = "TERMINATED".into();
    w.instances[0].resource.labels.clear();
    let changes = plan(&d, &w);
    let saved = serde_json::to_value(&changes).expect("serialise");
    let vm = saved
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["kind"] == "instance"))
        .expect("the VM's change");
    let names: Vec<&str> = vm["diffs"]
        .as_array()
        .expect("diffs")
        .iter()
        .filter_map(|d| d["field"].as_str())
        .collect();
    assert_eq!(names, vec!["labels", "status"]);
    let read: Vec<Change> = serde_json::from_value(saved.clone()).expect("read back");
    assert_eq!(read, changes);

    let mut edited = saved;
    if let Some(field) = edited
        .as_array_mut()
        .and_then(|cs| cs.iter_mut().find(|c| c["kind"] == "instance"))
        .and_then(|vm| vm["diffs"][0].get_mut("field"))
    {
        *field = "dest_range".into();
    }
    let err = serde_json::from_value::<Vec<Change>>(edited).expect_err("refused");
    assert!(
        err.to_string()
            .contains("compute_instance has no field \"dest_range\""),
        "{err}"
    );
}

#[test]
fn ssh_iap_adds_its_own_firewall_rule_and_removing_it_deletes_only_that_rule() {
    let (_, plain) = example();
    let with_ssh = with(
        "zone          = \"europe-west1-b\"\n",
        "zone          = \"europe-west1-b\"\nssh           = \"iap\"\n",
    );
    let rule = with_ssh[0]
        .ssh_firewall
        .clone()
        .expect("ssh = \"iap\" wants a rule");
    assert_eq!(rule.name, "natgw-gitlab-ssh");
    assert_eq!(
        rule.source_ranges,
        vec!["35.235.240.0/20".parse().expect("range")]
    );
    assert_eq!(rule.allowed, vec!["tcp:22"]);
    assert_eq!(rule.target_tags, vec!["natgw-gitlab"]);
    assert!(plain[0].ssh_firewall.is_none());

    // Turning it on creates only the rule.
    let applied = applied_world(&plain, &empty_world());
    let on: Vec<_> = actions(&plan(&with_ssh, &applied))
        .into_iter()
        .filter(|(_, a)| *a != Action::NoOp)
        .collect();
    assert_eq!(
        on,
        vec![("gitlab.ssh_firewall".to_string(), Action::Create)]
    );

    // Applied, it is a no-op; turning it off deletes it and leaves the main rule alone.
    let applied = applied_world(&with_ssh, &applied);
    assert!(
        !plan(&with_ssh, &applied)
            .iter()
            .any(|c| c.action != Action::NoOp)
    );
    let off: Vec<_> = actions(&plan(&plain, &applied))
        .into_iter()
        .filter(|(_, a)| *a != Action::NoOp)
        .collect();
    assert_eq!(
        off,
        vec![("gitlab.ssh_firewall".to_string(), Action::Delete)]
    );

    // Destroy removes both rules.
    let gone = plan(&[], &applied);
    for address in ["gitlab.firewall", "gitlab.ssh_firewall"] {
        assert!(
            actions(&gone).contains(&(address.to_string(), Action::Delete)),
            "{address} is destroyed"
        );
    }
}
