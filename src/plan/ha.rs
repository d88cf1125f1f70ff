//! The changes of a gateway in several zones (`model::ha`): its zones' addresses and groups, the template,
//! the health checks, the load balancer, and routes through it.

use serde_json::json;

use super::{
    Action, AddedTags, Change, FieldDiff, PlanError, address_change, by_name, compare,
    firewall_changes, force_unknown,
};
use crate::model::desired::DesiredGateway;
use crate::model::fields::{Field, RouteField};
use crate::model::fields_ha::{ForwardingRuleField, InstanceGroupField};
use crate::model::ha::{DesiredHa, ROLE_AUTOHEAL};
use crate::model::observed::Observation;
use crate::model::ownership::{KEY_ROLE, Owner};
use crate::model::{Kind, Resource};

pub(super) fn gateway_changes(
    stack: &str,
    gw: &DesiredGateway,
    ha: &DesiredHa,
    added: &AddedTags,
    world: &Observation,
    changes: &mut Vec<Change>,
) -> Result<(), PlanError> {
    let gateway = &gw.owner.gateway;
    let record = firewall_changes(stack, gw, added, world, changes)?;
    let found = by_name(
        &world.firewalls,
        &ha.health_firewall.name,
        |f| &f.name,
        Resource::Firewall,
    );
    changes.push(compare(
        stack,
        gateway,
        Kind::HealthFirewall,
        Resource::Firewall(ha.health_firewall.clone()),
        found,
    )?);

    // With one zone, its VM's internal address is the routes' next hop.
    let mut next_hop_ip = None;
    let mut next_hop_replaced = false;
    for z in &ha.zones {
        let ext = address_change(stack, gateway, &z.external_address, world, false)?;
        let int = address_change(stack, gateway, &z.internal_address, world, false)?;
        if ha.lb.is_none() {
            next_hop_ip = z.internal_address.address.or_else(|| int.kept_ip());
            next_hop_replaced = int.made_anew();
        }
        changes.push(ext);
        changes.push(int);
        let found = by_name(
            &world.groups,
            &z.group.name,
            |g| &g.name,
            Resource::InstanceGroup,
        );
        let mut gc = compare(
            stack,
            gateway,
            Kind::InstanceGroup,
            Resource::InstanceGroup(z.group.clone()),
            found,
        )?;
        let new_template = Field::InstanceGroup(InstanceGroupField::InstanceTemplate);
        if ha.lb.is_none() && gc.diffs.iter().any(|d| d.field == new_template) {
            gc.warnings.push(
                "with one zone, its VM is replaced for the new template: egress through the gateway stops for one boot (a second zone would carry it)".into(),
            );
        }
        changes.push(gc);
    }
    let found = by_name(
        &world.templates,
        &ha.template.name,
        |t| &t.name,
        Resource::InstanceTemplate,
    );
    changes.push(compare(
        stack,
        gateway,
        Kind::InstanceTemplate,
        Resource::InstanceTemplate(ha.template.clone()),
        found,
    )?);
    for (kind, check) in [
        (Kind::HealthCheck, &ha.health_check),
        (Kind::AutohealCheck, &ha.autoheal_check),
    ] {
        let found = by_name(
            &world.health_checks,
            &check.name,
            |h| &h.name,
            Resource::HealthCheck,
        );
        changes.push(compare(
            stack,
            gateway,
            kind,
            Resource::HealthCheck(check.clone()),
            found,
        )?);
    }

    let mut rule_replaced = false;
    if let Some(lb) = &ha.lb {
        let vip = address_change(stack, gateway, &lb.address, world, false)?;
        let mut rule = lb.forwarding_rule.clone();
        rule.ip_address = lb.address.address.or_else(|| vip.kept_ip());
        let vip_replaced = vip.made_anew();
        changes.push(vip);
        let found = by_name(
            &world.backend_services,
            &lb.backend_service.name,
            |b| &b.name,
            Resource::BackendService,
        );
        changes.push(compare(
            stack,
            gateway,
            Kind::BackendService,
            Resource::BackendService(lb.backend_service.clone()),
            found,
        )?);
        let found = by_name(
            &world.forwarding_rules,
            &rule.name,
            |f| &f.name,
            Resource::ForwardingRule,
        );
        let mut rc = compare(
            stack,
            gateway,
            Kind::ForwardingRule,
            Resource::ForwardingRule(rule),
            found,
        )?;
        if rc.before.is_some() && vip_replaced {
            force_unknown(
                &mut rc,
                Field::ForwardingRule(ForwardingRuleField::IpAddress),
            );
        }
        rule_replaced = rc.action == Action::Replace;
        changes.push(rc);
    }

    for route in &gw.routes {
        let mut r = route.clone();
        if ha.lb.is_none() {
            r.next_hop_ip = next_hop_ip;
        }
        r.description = record.clone();
        let found = by_name(&world.routes, &r.name, |r| &r.name, Resource::Route);
        let mut rc = compare(stack, gateway, Kind::Route, Resource::Route(r), found)?;
        if rc.before.is_some() && next_hop_replaced {
            force_unknown(&mut rc, Field::Route(RouteField::NextHopIp));
        }
        // Google refuses to delete a forwarding rule that a route uses: a new rule means new routes.
        if rc.before.is_some() && rule_replaced && rc.action != Action::Replace {
            let field = Field::Route(RouteField::NextHopIlb);
            let value = rc.after.as_ref().map_or(json!(null), |a| a.value(field));
            rc.diffs.push(FieldDiff {
                field,
                before: value.clone(),
                after: value,
                unknown: false,
                forces_replacement: true,
            });
            rc.action = Action::Replace;
        }
        changes.push(rc);
    }
    Ok(())
}

/// Moving a gateway between `zone` and `zones`: the new path is built next to the old one (its own VMs,
/// addresses and, named apart, routes: `config::names::zones_route`); each new route is created once its
/// next hop is ready or healthy, and only then does the old route to the same destination go, then the old
/// VMs and addresses (`apply::graph`). The warning for the plan says what changes for the allow-lists: the
/// egress IPs. Refused with a fixed `internal_ip`, which both paths would need at once.
pub(super) fn migration(
    stack: &str,
    gw: &DesiredGateway,
    world: &Observation,
) -> Result<Option<String>, PlanError> {
    let gateway = &gw.owner.gateway;
    let mine = |o: &Option<Owner>| {
        o.as_ref()
            .is_some_and(|o| o.stack == stack && o.gateway == *gateway)
    };
    let (has_vm, has_groups) = (
        world.instances.iter().any(|i| mine(&i.owner)),
        world.groups.iter().any(|g| mine(&g.owner)),
    );
    let (from, to) = match (&gw.ha, has_vm, has_groups) {
        (Some(_), true, _) => ("zone", "zones"),
        (None, _, true) => ("zones", "zone"),
        _ => return Ok(None),
    };
    if let Some(ip) = gw.internal_address.address {
        return Err(PlanError::Migration {
            gateway: gateway.clone(),
            from,
            to,
            ip,
        });
    }
    Ok(Some(format!(
        "gateway {gateway} moves from `{from}` to `{to}`, make-before-break: its new routes are created once the new path is ready, then the old ones go. The egress IPs change with the routes: the new ones ({gateway}.egress_ip{s} after apply) must be allow-listed at the destinations, or the runners are refused there until they are. To allow-list first, see README \"High availability\", \"To allow-list first\"",
        s = if to == "zones" { "s" } else { "" }
    )))
}

/// The kind of an observed health check or firewall rule, by the role its marker records.
pub(super) fn health_check_kind(facts: &std::collections::BTreeMap<String, String>) -> Kind {
    match facts.get(KEY_ROLE).map(String::as_str) {
        Some(ROLE_AUTOHEAL) => Kind::AutohealCheck,
        _ => Kind::HealthCheck,
    }
}

/// Deletes of what the stack owns among a gateway in several zones' own kinds.
pub(super) fn owned<'a>(
    world: &'a Observation,
    stack: &'a str,
) -> impl Iterator<
    Item = (
        Kind,
        &'a Owner,
        Resource,
        &'a crate::model::observed::Preconditions,
    ),
> + 'a {
    let mine = move |o: &'a Option<Owner>| o.as_ref().filter(|o| o.stack == stack);
    let templates = world.templates.iter().filter_map(move |o| {
        let r = Resource::InstanceTemplate(o.resource.clone());
        Some((Kind::InstanceTemplate, mine(&o.owner)?, r, &o.preconditions))
    });
    let groups = world.groups.iter().filter_map(move |o| {
        let r = Resource::InstanceGroup(o.resource.clone());
        Some((Kind::InstanceGroup, mine(&o.owner)?, r, &o.preconditions))
    });
    let checks = world.health_checks.iter().filter_map(move |o| {
        let r = Resource::HealthCheck(o.resource.clone());
        let kind = health_check_kind(&o.facts);
        Some((kind, mine(&o.owner)?, r, &o.preconditions))
    });
    let services = world.backend_services.iter().filter_map(move |o| {
        let r = Resource::BackendService(o.resource.clone());
        Some((Kind::BackendService, mine(&o.owner)?, r, &o.preconditions))
    });
    let rules = world.forwarding_rules.iter().filter_map(move |o| {
        let r = Resource::ForwardingRule(o.resource.clone());
        Some((Kind::ForwardingRule, mine(&o.owner)?, r, &o.preconditions))
    });
    templates
        .chain(groups)
        .chain(checks)
        .chain(services)
        .chain(rules)
}
