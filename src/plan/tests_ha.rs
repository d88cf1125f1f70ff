//! diff scenarios of a gateway in several zones, without a server.

use super::tests::{
    EXAMPLE, HA_EXAMPLE, actions, applied_world, config_from, desired_from, empty_world, plan,
};
use super::*;
use crate::model::fields_ha::{HealthCheckField, InstanceGroupField};

fn ha(edit: &str, replacement: &str) -> Vec<DesiredGateway> {
    assert!(HA_EXAMPLE.contains(edit), "{edit}");
    desired_from(&config_from(&HA_EXAMPLE.replace(edit, replacement)))
}

fn two_zones() -> Vec<DesiredGateway> {
    desired_from(&config_from(HA_EXAMPLE))
}

fn kinds(changes: &[Change], action: Action) -> Vec<(Kind, String)> {
    changes
        .iter()
        .filter(|c| c.action == action)
        .map(|c| (c.kind, c.name.clone()))
        .collect()
}

#[test]
fn a_fresh_two_zone_gateway_creates_its_groups_and_load_balancer() {
    let changes = plan(&two_zones(), &empty_world());
    let created = kinds(&changes, Action::Create);
    let template = two_zones()[0]
        .ha
        .as_ref()
        .map(|h| h.template.name.clone())
        .expect("zones");
    assert!(template.starts_with("natgw-gitlab-") && template.len() == 21);
    for want in [
        (Kind::Firewall, "natgw-gitlab-allow"),
        (Kind::HealthFirewall, "natgw-gitlab-probes"),
        (Kind::ZoneExternalAddress, "natgw-gitlab-b-ext"),
        (Kind::ZoneInternalAddress, "natgw-gitlab-b-int"),
        (Kind::ZoneExternalAddress, "natgw-gitlab-c-ext"),
        (Kind::ZoneInternalAddress, "natgw-gitlab-c-int"),
        (Kind::InstanceGroup, "natgw-gitlab-b"),
        (Kind::InstanceGroup, "natgw-gitlab-c"),
        (Kind::InstanceTemplate, template.as_str()),
        (Kind::HealthCheck, "natgw-gitlab-hc"),
        (Kind::AutohealCheck, "natgw-gitlab-ah"),
        (Kind::IlbAddress, "natgw-gitlab-ilb"),
        (Kind::BackendService, "natgw-gitlab"),
        (Kind::ForwardingRule, "natgw-gitlab"),
        (Kind::Route, "natgw-gitlab-lb-34-120-10-10-32"),
    ] {
        assert!(
            created.contains(&(want.0, want.1.to_string())),
            "{want:?} in {created:?}"
        );
    }
    // No single VM and none of its addresses.
    assert!(
        !created.iter().any(|(k, _)| matches!(
            k,
            Kind::Instance | Kind::ExternalAddress | Kind::InternalAddress
        )),
        "{created:?}"
    );
    assert_eq!(created.len(), 15, "{created:?}");
    let route = changes
        .iter()
        .find(|c| c.kind == Kind::Route)
        .and_then(|c| c.after.clone());
    match route {
        Some(Resource::Route(r)) => {
            assert_eq!(
                r.next_hop_ilb.as_deref(),
                Some("projects/p/regions/europe-west1/forwardingRules/natgw-gitlab")
            );
            assert_eq!(r.next_hop_ip, None);
        }
        other => panic!("{other:?}"),
    }
    let group = changes
        .iter()
        .find(|c| c.kind == Kind::InstanceGroup)
        .expect("a group");
    assert_eq!(group.address(), "gitlab.instance_group[\"natgw-gitlab-b\"]");
    // The applied world plans nothing.
    let w = applied_world(&two_zones(), &empty_world());
    let again = plan(&two_zones(), &w);
    assert_eq!(actions(&again), vec![]);
}

#[test]
fn a_new_machine_type_is_a_new_template_the_groups_move_to() {
    let w = applied_world(&two_zones(), &empty_world());
    let d = ha(
        "node_tag      = \"gitlab-runner\"",
        "node_tag      = \"gitlab-runner\"\nmachine_type = \"e2-medium\"",
    );
    let changes = plan(&d, &w);
    let a = actions(&changes);
    let template = |c: &Change| match &c.after {
        Some(Resource::InstanceTemplate(t)) => Some(t.name.clone()),
        _ => None,
    };
    let new = changes
        .iter()
        .filter(|c| c.action == Action::Create)
        .find_map(template)
        .expect("a new template");
    assert_eq!(
        a.iter()
            .filter(|(_, x)| *x == Action::Update)
            .map(|(addr, _)| addr.as_str())
            .collect::<Vec<_>>(),
        vec![
            "gitlab.instance_group[\"natgw-gitlab-b\"]",
            "gitlab.instance_group[\"natgw-gitlab-c\"]"
        ]
    );
    for c in changes.iter().filter(|c| c.action == Action::Update) {
        assert_eq!(
            c.diffs.iter().map(|d| d.field).collect::<Vec<_>>(),
            vec![Field::InstanceGroup(InstanceGroupField::InstanceTemplate)]
        );
        assert_eq!(c.diffs[0].after, json!(new));
        assert!(c.warnings.is_empty(), "another zone carries the traffic");
    }
    assert_eq!(
        kinds(&changes, Action::Delete)
            .iter()
            .map(|(k, _)| *k)
            .collect::<Vec<_>>(),
        vec![Kind::InstanceTemplate],
        "the old template goes"
    );
}

#[test]
fn health_check_settings_change_in_place_and_a_removed_zone_leaves_the_backends() {
    let w = applied_world(&two_zones(), &empty_world());
    let d = ha(
        "node_tag      = \"gitlab-runner\"",
        "node_tag      = \"gitlab-runner\"\n[gateways.gitlab.health_check]\ninterval_sec = 3",
    );
    let changes = plan(&d, &w);
    let hc = changes
        .iter()
        .find(|c| c.kind == Kind::HealthCheck)
        .expect("the health check");
    assert_eq!(hc.action, Action::Update);
    assert!(
        hc.diffs
            .iter()
            .any(|d| d.field == Field::HealthCheck(HealthCheckField::CheckIntervalSec))
    );

    let d = ha(
        "zones         = [\"europe-west1-b\", \"europe-west1-c\"]",
        "zones         = [\"europe-west1-b\", \"europe-west1-c\", \"europe-west1-d\"]",
    );
    let w3 = applied_world(&d, &empty_world());
    let changes = plan(&two_zones(), &w3);
    let mut deleted = kinds(&changes, Action::Delete);
    deleted.sort();
    assert_eq!(
        deleted,
        vec![
            (Kind::ZoneExternalAddress, "natgw-gitlab-d-ext".to_string()),
            (Kind::ZoneInternalAddress, "natgw-gitlab-d-int".to_string()),
            (Kind::InstanceGroup, "natgw-gitlab-d".to_string()),
        ]
    );
    assert_eq!(
        kinds(&changes, Action::Update),
        vec![(Kind::BackendService, "natgw-gitlab".to_string())]
    );
}

#[test]
fn one_zone_routes_to_its_vm_and_replacing_its_template_warns() {
    let one = ha(
        "zones         = [\"europe-west1-b\", \"europe-west1-c\"]",
        "zones         = [\"europe-west1-b\"]",
    );
    let changes = plan(&one, &empty_world());
    let created = kinds(&changes, Action::Create);
    assert!(
        !created.iter().any(|(k, _)| matches!(
            k,
            Kind::BackendService | Kind::ForwardingRule | Kind::IlbAddress
        )),
        "{created:?}"
    );
    let w = applied_world(&one, &empty_world());
    let zone_ip = w
        .addresses
        .iter()
        .find(|a| a.resource.name == "natgw-gitlab-b-int")
        .and_then(|a| a.resource.address);
    assert!(zone_ip.is_some());
    assert_eq!(
        w.routes[0].resource.next_hop_ip, zone_ip,
        "the route goes to the zone's VM"
    );
    assert_eq!(actions(&plan(&one, &w)), vec![]);
    let bigger = desired_from(&config_from(
        &HA_EXAMPLE
            .replace(
                "zones         = [\"europe-west1-b\", \"europe-west1-c\"]",
                "zones         = [\"europe-west1-b\"]",
            )
            .replace(
                "node_tag      = \"gitlab-runner\"",
                "node_tag      = \"gitlab-runner\"\nmachine_type = \"e2-medium\"",
            ),
    ));
    let changes = plan(&bigger, &w);
    let group = changes
        .iter()
        .find(|c| c.kind == Kind::InstanceGroup)
        .expect("the group");
    assert_eq!(group.action, Action::Update);
    assert!(
        group.warnings[0].contains("egress through the gateway stops for one boot"),
        "{:?}",
        group.warnings
    );
}

#[test]
fn destroy_removes_every_kind_of_a_gateway_in_several_zones() {
    let w = applied_world(&two_zones(), &empty_world());
    let changes = plan(&[], &w);
    let mut deleted: Vec<Kind> = kinds(&changes, Action::Delete)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    deleted.sort();
    deleted.dedup();
    assert_eq!(
        deleted,
        vec![
            Kind::Firewall,
            Kind::Route,
            Kind::ZoneExternalAddress,
            Kind::ZoneInternalAddress,
            Kind::IlbAddress,
            Kind::HealthFirewall,
            Kind::HealthCheck,
            Kind::AutohealCheck,
            Kind::InstanceTemplate,
            Kind::InstanceGroup,
            Kind::BackendService,
            Kind::ForwardingRule,
        ]
    );
    assert_eq!(kinds(&changes, Action::Delete).len(), 15);
}

#[test]
fn moving_between_zone_and_zones_builds_the_new_path_and_warns_of_the_new_egress_ips() {
    let ctx = Context {
        stack: "gitlab-runners",
    };
    let unfixed = |text: &str| -> String {
        text.lines()
            .filter(|l| !l.starts_with("internal_ip"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let single = desired_from(&config_from(&unfixed(EXAMPLE)));
    let zones = desired_from(&config_from(&unfixed(&EXAMPLE.replace(
        "zone          = \"europe-west1-b\"",
        "zones = [\"europe-west1-b\", \"europe-west1-c\"]",
    ))));
    assert!(zones[0].ha.is_some());
    for (from, to, from_word) in [(&single, &zones, "zone"), (&zones, &single, "zones")] {
        let w = applied_world(from, &empty_world());
        let changes = diff(&ctx, to, &w).expect("a move is planned");
        let routes: Vec<(Action, &str)> = changes
            .iter()
            .filter(|c| c.kind == Kind::Route)
            .map(|c| (c.action, c.name.as_str()))
            .collect();
        let (old, new) = if from_word == "zone" {
            (
                "natgw-gitlab-34-120-10-10-32",
                "natgw-gitlab-lb-34-120-10-10-32",
            )
        } else {
            (
                "natgw-gitlab-lb-34-120-10-10-32",
                "natgw-gitlab-34-120-10-10-32",
            )
        };
        assert!(routes.contains(&(Action::Delete, old)), "{routes:?}");
        assert!(routes.contains(&(Action::Create, new)), "{routes:?}");
        // The old route shares the new one's address: it is the deposed one, and says its name.
        let deposed: Vec<String> = changes
            .iter()
            .filter(|c| c.deposed)
            .map(Change::label)
            .collect();
        assert_eq!(
            deposed,
            [format!(
                "gitlab.route[\"34.120.10.10/32\"] (deposed object {old})"
            )]
        );
        let created = changes
            .iter()
            .find(|c| c.name == new)
            .expect("the new route");
        assert!(
            created.warnings.iter().any(|w| w
                .contains(&format!("gateway gitlab moves from `{from_word}`"))
                && w.contains("egress IPs change")),
            "{:?}",
            created.warnings
        );
        // Nothing of the old path is kept, and nothing of it is taken for an adopted resource.
        assert!(
            changes.iter().all(|c| c.action != Action::Update
                || c.kind == Kind::NodePool
                || c.kind == Kind::Firewall),
            "{changes:#?}"
        );
    }
}

#[test]
fn moving_with_a_fixed_internal_ip_is_refused_with_the_way_to_do_it() {
    let single = desired_from(&config_from(EXAMPLE));
    let fixed_zones = desired_from(&config_from(&EXAMPLE.replace(
        "zone          = \"europe-west1-b\"",
        "zones = [\"europe-west1-b\", \"europe-west1-c\"]",
    )));
    let w = applied_world(&single, &empty_world());
    let ctx = Context {
        stack: "gitlab-runners",
    };
    let err = diff(&ctx, &fixed_zones, &w).expect_err("zone -> zones");
    assert!(
        matches!(
            &err,
            PlanError::Migration {
                from: "zone",
                to: "zones",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("Remove internal_ip for the move"),
        "{err}"
    );
    let w = applied_world(&fixed_zones, &empty_world());
    let err = diff(&ctx, &single, &w).expect_err("zones -> zone");
    assert!(
        matches!(
            &err,
            PlanError::Migration {
                from: "zones",
                to: "zone",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_new_load_balancer_address_replaces_the_forwarding_rule_and_the_routes() {
    let mut w = applied_world(&two_zones(), &empty_world());
    w.addresses
        .retain(|a| a.resource.name != "natgw-gitlab-ilb");
    let changes = plan(&two_zones(), &w);
    let action = |kind| {
        changes
            .iter()
            .find(|c| c.kind == kind)
            .map(|c| c.action)
            .expect("the kind")
    };
    assert_eq!(action(Kind::IlbAddress), Action::Create);
    assert_eq!(action(Kind::ForwardingRule), Action::Replace);
    assert_eq!(action(Kind::Route), Action::Replace);
}

#[test]
fn a_roll_that_stopped_halfway_is_finished_by_the_next_apply() {
    let mut w = applied_world(&two_zones(), &empty_world());
    w.groups[1].resource.up_to_date = false;
    let changes = plan(&two_zones(), &w);
    let updated: Vec<&Change> = changes
        .iter()
        .filter(|c| c.action == Action::Update)
        .collect();
    assert_eq!(updated.len(), 1, "{:?}", actions(&changes));
    assert_eq!(updated[0].name, w.groups[1].resource.name);
    assert_eq!(
        updated[0].diffs.iter().map(|d| d.field).collect::<Vec<_>>(),
        vec![Field::InstanceGroup(InstanceGroupField::UpToDate)]
    );
}
