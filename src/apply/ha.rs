//! The steps of a gateway in several zones (`model::ha`), one up and one down per kind, and the waits that
//! keep egress flowing: a route is created only once a backend is healthy, and a new template reaches the
//! zones one at a time, unhealthy ones first, never taking down the last healthy VM.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OnceCell};
use tokio::time::{Instant, sleep};

use super::ready::{self, VmRef};
use super::{Shared, StepError, waiting};
use crate::config::names;
use crate::gcp::{BackendHealth, NextHop, OwnerCheck};
use crate::model::fields::Field;
use crate::model::fields_ha::InstanceGroupField;
use crate::model::ha::{BackendService, HealthCheck, InstanceGroup, InstanceTemplate};
use crate::model::observed::Observation;
use crate::model::progress::{Outputs, Wait};
use crate::model::{Kind, Resource, Route};
use crate::plan::{Action, Change};

/// How often apply asks for a VM or a backend's health while it waits: at first, then at most.
const HEALTH_POLL: Duration = Duration::from_millis(500);
const HEALTH_POLL_MAX: Duration = Duration::from_secs(3);

/// What the steps of one gateway in several zones share.
#[derive(Debug, Default)]
pub(super) struct Gateway {
    /// `(zone, group)` of each group the plan keeps or creates.
    groups: Vec<(String, String)>,
    /// `(region, name)` of the backend service the plan keeps or creates.
    service: Option<(String, String)>,
    template: Option<InstanceTemplate>,
    /// Without a load balancer: the one zone's internal address, the routes' next hop.
    next_hop_address: Option<String>,
    /// Held while a healthy zone's VM is replaced: one zone at a time.
    roll: Mutex<()>,
    /// Without a load balancer: the zone's VM reported ready (checked once for every route).
    ready: OnceCell<()>,
}

/// The gateways in several zones of a plan, by name.
pub(super) fn gateways(changes: &[Change]) -> HashMap<String, Arc<Gateway>> {
    let mut out: HashMap<String, Gateway> = HashMap::new();
    for c in changes.iter().filter(|c| c.action != Action::Delete) {
        match (&c.after, c.kind) {
            (Some(Resource::InstanceGroup(g)), _) => out
                .entry(c.gateway.clone())
                .or_default()
                .groups
                .push((g.zone.clone(), g.name.clone())),
            (Some(Resource::BackendService(b)), _) => {
                out.entry(c.gateway.clone()).or_default().service =
                    Some((b.region.clone(), b.name.clone()));
            }
            (Some(Resource::InstanceTemplate(t)), _) => {
                out.entry(c.gateway.clone()).or_default().template = Some(t.clone());
            }
            (Some(Resource::Address(a)), Kind::ZoneInternalAddress) => {
                out.entry(c.gateway.clone()).or_default().next_hop_address = Some(a.name.clone());
            }
            _ => {}
        }
    }
    out.into_iter().map(|(k, v)| (k, Arc::new(v))).collect()
}

fn gateway<'a>(shared: &'a Shared, change: &Change) -> Result<&'a Arc<Gateway>, StepError> {
    shared.ha.get(&change.gateway).ok_or_else(|| {
        StepError::Other(format!(
            "gateway {} has no zones in this plan",
            change.gateway
        ))
    })
}

/// A zone's VM, as the readiness check reads it: named like its group, in its zone, the template's token.
fn zone_vm<'a>(group: &'a str, zone: &'a str, template: Option<&'a InstanceTemplate>) -> VmRef<'a> {
    VmRef {
        zone,
        name: group,
        ready_token: template.map_or("", |t| t.ready_token.as_str()),
    }
}

/// Creates or updates one of the kinds of a gateway in several zones.
pub(super) async fn up(shared: &Shared, change: &Change) -> Result<(), StepError> {
    match &change.after {
        Some(Resource::InstanceTemplate(t)) => up_template(shared, change, t).await,
        Some(Resource::InstanceGroup(g)) => up_group(shared, change, g).await,
        Some(Resource::HealthCheck(h)) => up_health_check(shared, change, h).await,
        Some(Resource::BackendService(b)) => up_backend_service(shared, change, b).await,
        Some(Resource::ForwardingRule(f)) => {
            let address = names::ilb_address(&change.gateway);
            Ok(shared.cloud.insert_forwarding_rule(f, &address).await?)
        }
        _ => Err(StepError::Other("nothing to create".into())),
    }
}

/// Deletes one of the kinds of a gateway in several zones.
pub(super) async fn down(
    shared: &Shared,
    change: &Change,
    check: OwnerCheck<'_>,
) -> Result<(), StepError> {
    let cloud = &shared.cloud;
    let result = match &change.before {
        Some(Resource::InstanceTemplate(t)) => cloud.delete_template(check, &t.name).await,
        Some(Resource::InstanceGroup(g)) => cloud.delete_group(check, &g.zone, &g.name).await,
        Some(Resource::HealthCheck(h)) => {
            cloud.delete_health_check(check, &h.region, &h.name).await
        }
        Some(Resource::BackendService(b)) => {
            cloud
                .delete_backend_service(check, &b.region, &b.name)
                .await
        }
        Some(Resource::ForwardingRule(f)) => {
            cloud
                .delete_forwarding_rule(check, &f.region, &f.name)
                .await
        }
        _ => return Err(StepError::Other("nothing to delete".into())),
    };
    Ok(result?)
}

/// Whether the plan's fresh observation saw this resource (of a gateway in several zones) with the stack's
/// marker.
pub(super) fn seen(w: &Observation, stack: &str, resource: &Resource) -> bool {
    let name = resource.name();
    match resource {
        Resource::InstanceTemplate(_) => w
            .templates
            .iter()
            .any(|o| o.resource.name == name && o.owned_by(stack)),
        Resource::InstanceGroup(g) => w
            .groups
            .iter()
            .any(|o| o.resource.name == name && o.resource.zone == g.zone && o.owned_by(stack)),
        Resource::HealthCheck(_) => w
            .health_checks
            .iter()
            .any(|o| o.resource.name == name && o.owned_by(stack)),
        Resource::BackendService(_) => w
            .backend_services
            .iter()
            .any(|o| o.resource.name == name && o.owned_by(stack)),
        Resource::ForwardingRule(_) => w
            .forwarding_rules
            .iter()
            .any(|o| o.resource.name == name && o.owned_by(stack)),
        _ => false,
    }
}

async fn up_template(
    shared: &Shared,
    change: &Change,
    t: &InstanceTemplate,
) -> Result<(), StepError> {
    if change.action == Action::Update {
        return Err(StepError::Other(format!(
            "instance template {} cannot change; a new content is a new template",
            t.name
        )));
    }
    Ok(shared.cloud.insert_template(t).await?)
}

async fn up_health_check(
    shared: &Shared,
    change: &Change,
    h: &HealthCheck,
) -> Result<(), StepError> {
    if change.action == Action::Update {
        Ok(shared.cloud.patch_health_check(&shared.stack, h).await?)
    } else {
        Ok(shared.cloud.insert_health_check(h).await?)
    }
}

async fn up_backend_service(
    shared: &Shared,
    change: &Change,
    b: &BackendService,
) -> Result<(), StepError> {
    if change.action == Action::Update {
        Ok(shared.cloud.patch_backend_service(&shared.stack, b).await?)
    } else {
        Ok(shared.cloud.insert_backend_service(b).await?)
    }
}

/// What an update of a group does, from the fields the plan changes.
#[derive(Debug, Default, PartialEq, Eq)]
struct GroupUpdate {
    /// A new template, rolled out to the VM.
    template: bool,
    /// The VM is replaced from the group's template (a new one, or one a stopped roll left behind).
    roll: bool,
    autohealing: bool,
    /// The group lost its VM (resized to 0): it gets it back.
    size: bool,
}

impl GroupUpdate {
    fn of(change: &Change) -> Result<GroupUpdate, StepError> {
        let mut u = GroupUpdate::default();
        for d in &change.diffs {
            let Field::InstanceGroup(field) = d.field else {
                return Err(StepError::Other(format!(
                    "a managed instance group has no field {}",
                    d.field.name()
                )));
            };
            match field {
                InstanceGroupField::InstanceTemplate => {
                    u.template = true;
                    u.roll = true;
                }
                InstanceGroupField::UpToDate => u.roll = true,
                InstanceGroupField::AutohealingCheck | InstanceGroupField::InitialDelaySec => {
                    u.autohealing = true;
                }
                InstanceGroupField::TargetSize => u.size = true,
                InstanceGroupField::Name
                | InstanceGroupField::Zone
                | InstanceGroupField::Description => {
                    return Err(StepError::Other(format!(
                        "the {} of a managed instance group cannot change in place",
                        field.spec().name
                    )));
                }
            }
        }
        Ok(u)
    }
}

/// Creates a zone's group and waits for its VM to report ready; or updates it, rolling a new template out
/// to its VM (see [`roll`]).
async fn up_group(shared: &Shared, change: &Change, g: &InstanceGroup) -> Result<(), StepError> {
    let cloud = &shared.cloud;
    let gw = gateway(shared, change)?;
    let vm = zone_vm(&g.name, &g.zone, gw.template.as_ref());
    if change.action != Action::Update {
        cloud.insert_group(g).await?;
        return wait_vm_ready(shared, vm).await;
    }
    let update = GroupUpdate::of(change)?;
    if update.template || update.autohealing {
        cloud.patch_group(&shared.stack, g, update.template).await?;
    }
    if update.size {
        cloud.ensure_vm(g).await?;
        wait_vm_ready(shared, vm).await?;
    }
    if update.roll {
        roll(shared, gw, g, vm).await?;
    }
    Ok(())
}

/// Waits until the group's VM exists (a group creates it on its own time), then until it reports ready.
async fn wait_vm_ready(shared: &Shared, vm: VmRef<'_>) -> Result<(), StepError> {
    let deadline = Instant::now() + shared.options.ready_timeout;
    waiting(Some(Wait::VmRunning));
    loop {
        match shared.cloud.instance_status(vm.zone, vm.name).await {
            Ok(_) => break,
            Err(e) if e.is_not_found() && Instant::now() < deadline => {
                sleep(HEALTH_POLL).await;
            }
            // A group reports why it cannot create a VM in its own errors, not in the operation.
            Err(e) if e.is_not_found() => {
                return Err(StepError::Other(format!(
                    "managed instance group {0} did not create its VM {0} within {1}s (--ready-timeout); its errors say why (an organization policy such as constraints/compute.vmExternalIpAccess, a quota, the template): gcloud compute instance-groups managed list-errors {0} --zone {2}",
                    vm.name,
                    shared.options.ready_timeout.as_secs(),
                    vm.zone
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    ready::wait(&shared.cloud, vm, left).await
}

/// Replaces the group's VM with one from the new template. A healthy VM is replaced only while no other
/// zone's is being replaced, and only once another zone's VM is healthy; an unhealthy one carries nothing
/// and goes at once. With a load balancer, the new VM must be healthy in it before the step ends.
async fn roll(
    shared: &Shared,
    gw: &Gateway,
    g: &InstanceGroup,
    vm: VmRef<'_>,
) -> Result<(), StepError> {
    let _turn = match &gw.service {
        Some(service) if healthy_in(shared, service, g).await? => {
            let turn = gw.roll.lock().await;
            wait_for_health(shared, gw, service, |zone, _| zone != g.zone.as_str()).await?;
            Some(turn)
        }
        _ => None,
    };
    shared.cloud.replace_vm(g).await?;
    wait_for_template(shared, g).await?;
    wait_vm_ready(shared, vm).await?;
    if let Some(service) = &gw.service {
        waiting(Some(Wait::BackendHealthy));
        wait_for_health(shared, gw, service, |zone, _| zone == g.zone.as_str()).await?;
    }
    waiting(None);
    Ok(())
}

/// Waits until the group reports its VM on its current template.
async fn wait_for_template(shared: &Shared, g: &InstanceGroup) -> Result<(), StepError> {
    let deadline = Instant::now() + shared.options.ready_timeout;
    loop {
        let versions = shared.cloud.group_versions(g).await?;
        if versions
            .iter()
            .any(|(vm, t)| *vm == g.name && *t == g.instance_template)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StepError::Other(format!(
                "managed instance group {} did not move its VM to template {} within {}s",
                g.name,
                g.instance_template,
                shared.options.ready_timeout.as_secs()
            )));
        }
        sleep(HEALTH_POLL).await;
    }
}

async fn healthy_in(
    shared: &Shared,
    (region, service): &(String, String),
    g: &InstanceGroup,
) -> Result<bool, StepError> {
    let health = shared
        .cloud
        .backend_health(region, service, &g.zone, &g.name)
        .await?;
    Ok(health.iter().any(|h| h.healthy))
}

/// Waits (within --ready-timeout) until a VM of a group that `wanted(zone, group)` accepts is healthy in
/// the backend service, saying so on the progress line.
async fn wait_for_health(
    shared: &Shared,
    gw: &Gateway,
    service: &(String, String),
    wanted: impl Fn(&str, &str) -> bool,
) -> Result<(), StepError> {
    let (region, name) = service;
    let deadline = Instant::now() + shared.options.ready_timeout;
    let groups: Vec<&(String, String)> = gw
        .groups
        .iter()
        .filter(|(zone, group)| wanted(zone, group))
        .collect();
    let mut said = false;
    let mut pause = HEALTH_POLL;
    loop {
        for (zone, group) in &groups {
            let health: Vec<BackendHealth> = shared
                .cloud
                .backend_health(region, name, zone, group)
                .await?;
            if health.iter().any(|h| h.healthy) {
                waiting(None);
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(StepError::Other(format!(
                "no VM of {} became healthy in backend service {name} within {}s (--ready-timeout){}",
                groups
                    .iter()
                    .map(|(_, g)| g.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                shared.options.ready_timeout.as_secs(),
                if groups.len() < gw.groups.len() {
                    "; natgw does not take down the last healthy zone"
                } else {
                    ""
                }
            )));
        }
        if !said {
            waiting(Some(if groups.len() < gw.groups.len() {
                Wait::AnotherBackendHealthy
            } else {
                Wait::BackendHealthy
            }));
            said = true;
        }
        sleep(pause).await;
        pause = (pause * 2).min(HEALTH_POLL_MAX);
    }
}

/// Creates a route of a gateway in several zones, once its next hop carries traffic: with a load balancer,
/// once a backend is healthy (`regionBackendServices.getHealth`); with one zone, once its VM reports ready.
/// `None` for a route of a single-VM gateway.
pub(super) async fn up_route(
    shared: &Shared,
    change: &Change,
    r: &Route,
) -> Option<Result<(), StepError>> {
    let gw = shared.ha.get(&change.gateway)?;
    Some(route_through(shared, gw, r).await)
}

async fn route_through(shared: &Shared, gw: &Gateway, r: &Route) -> Result<(), StepError> {
    let cloud = &shared.cloud;
    if let (Some(rule), Some(service)) = (&r.next_hop_ilb, &gw.service) {
        wait_for_health(shared, gw, service, |_, _| true).await?;
        return Ok(cloud.insert_route(r, NextHop::Ilb(rule)).await?);
    }
    let address = gw
        .next_hop_address
        .as_deref()
        .ok_or_else(|| StepError::Other("the gateway's next hop is not in the plan".into()))?;
    let next_hop: Ipv4Addr = named_ip(shared, address)?;
    if let Some((zone, group)) = gw.groups.first() {
        let vm = zone_vm(group, zone, gw.template.as_ref());
        gw.ready
            .get_or_try_init(|| wait_vm_ready(shared, vm))
            .await?;
    }
    Ok(cloud.insert_route(r, NextHop::Ip(next_hop)).await?)
}

/// The IPs of one gateway in several zones, as apply learns them.
#[derive(Default)]
struct Ips {
    /// Each zone's egress IP, in the plan's (zone) order.
    egress: Vec<Option<Ipv4Addr>>,
    zone_internal: Option<Ipv4Addr>,
    ilb: Option<Ipv4Addr>,
}

/// The outputs of the gateways in several zones: every zone's egress IP, and the next hop (the load
/// balancer's address, or the one zone's VM's).
pub(super) fn outputs(
    changes: &[Change],
    named: &HashMap<String, Ipv4Addr>,
) -> BTreeMap<String, Outputs> {
    let mut out: BTreeMap<String, Ips> = BTreeMap::new();
    for c in changes.iter().filter(|c| c.after.is_some()) {
        let ip = named.get(&c.name).copied();
        let entry = out.entry(c.gateway.clone());
        match c.kind {
            Kind::ZoneExternalAddress => entry.or_default().egress.push(ip),
            Kind::ZoneInternalAddress => entry.or_default().zone_internal = ip,
            Kind::IlbAddress => entry.or_default().ilb = ip,
            _ => {}
        }
    }
    out.into_iter()
        .map(|(gateway, ips)| {
            let outputs = Outputs::zones(&ips.egress, ips.ilb.or(ips.zone_internal));
            (gateway, outputs)
        })
        .collect()
}

fn named_ip(shared: &Shared, name: &str) -> Result<Ipv4Addr, StepError> {
    let named = shared
        .ips
        .lock()
        .map_err(|_| StepError::Other("internal state poisoned".into()))?;
    named
        .get(name)
        .copied()
        .ok_or_else(|| StepError::Other(format!("the IP of address {name} is not known")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{HA_EXAMPLE, config_from, desired_from, empty_world};

    #[test]
    fn a_group_update_follows_the_typed_fields_the_plan_changes() {
        let cfg = config_from(HA_EXAMPLE);
        let d = desired_from(&cfg);
        let world = crate::plan::tests::applied_world(&d, &empty_world());
        let mut changed = world.clone();
        changed.groups[0].resource.instance_template = "natgw-gitlab-old".into();
        changed.groups[0].resource.target_size = 0;
        let changes = crate::plan::diff(&crate::plan::Context { stack: &cfg.stack }, &d, &changed)
            .expect("plan");
        let group = changes
            .iter()
            .find(|c| c.kind == Kind::InstanceGroup && c.action == Action::Update)
            .expect("a group update");
        assert_eq!(
            GroupUpdate::of(group).expect("in place"),
            GroupUpdate {
                template: true,
                roll: true,
                autohealing: false,
                size: true
            }
        );
        let mut edited = group.clone();
        edited.diffs[0].field = Field::InstanceGroup(InstanceGroupField::Zone);
        assert!(GroupUpdate::of(&edited).is_err());
        let gateways = gateways(&changes);
        let gw = gateways.get("gitlab").expect("the gateway");
        assert_eq!(gw.groups.len(), 2);
        assert!(gw.service.is_some() && gw.template.is_some());
    }
}
