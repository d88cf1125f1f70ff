//! The control loop of managed instance groups: what a group does on its own, replayed on the emulator's
//! clock by `reconcile` before and after every request (sources in `igm.rs`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Ctx;
use super::health_check::probed;
use super::igm::{group_path, instance_path, parts, path_of};
use super::instance::{delete_instance, insert_instance};
use super::instance_template::instance_body;
use super::url;
use crate::emulator::health::{Group, Managed, Probe};
use crate::emulator::org_policy::Constraint;
use crate::emulator::world::{Timing, World, hash_hex, obj, resolve_ref, str_field};

/// A creation that failed (an IP still in use, a template gone) is retried this much later.
const RETRY_MS: i64 = 30_000;

/// The autohealing health check of a group: its URL, the check, and the initial delay in ms.
pub(super) fn autohealing<'a>(world: &'a World, mig: &Value) -> Option<(String, &'a Value, i64)> {
    let policy = mig.get("autoHealingPolicies")?.as_array()?.first()?;
    let hc_url = str_field(policy, "healthCheck")?;
    let hc = world.resources.get(&path_of(hc_url))?;
    let delay = policy
        .get("initialDelaySec")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    Some((hc_url.to_string(), hc, delay * 1000))
}

/// When autohealing recreates the VM at `instance` (if it ever does in its current boot).
fn heal_at(world: &World, mig: &Value, instance: &str, timing: Timing) -> Option<i64> {
    let (_, hc, delay) = autohealing(world, mig)?;
    let probe = Probe::of(hc);
    let power = world.power.get(instance)?;
    let endpoint = probed(world, timing, instance, hc)?;
    let delay_end = power.since + delay;
    let at = match endpoint.transitions(probe) {
        (Some(healthy), unhealthy) if healthy <= delay_end => unhealthy?,
        _ => delay_end,
    };
    // A verdict needs at least one probe, so a VM that never answers is not recreated in a loop.
    Some(at.max(delay_end).max(power.since + probe.interval_ms))
}

#[derive(Debug)]
enum Action {
    Create,
    Recreate,
    Remove,
}

#[derive(Debug)]
struct Event {
    at: i64,
    mig: String,
    /// Empty: a new VM with a generated name.
    name: String,
    action: Action,
}

/// The earliest thing some group does at or before `now`.
fn next_event(world: &World, now: i64, timing: Timing) -> Option<Event> {
    let mut best: Option<Event> = None;
    let mut consider = |e: Event| {
        if e.at <= now && best.as_ref().is_none_or(|b| e.at < b.at) {
            best = Some(e);
        }
    };
    for (mig, g) in &world.ha.groups {
        let Some(m) = world.resources.get(mig) else {
            continue;
        };
        let proactive = m
            .get("updatePolicy")
            .and_then(|u| str_field(u, "type"))
            .unwrap_or("PROACTIVE")
            == "PROACTIVE";
        let template = str_field(m, "instanceTemplate").unwrap_or_default();
        for (name, managed) in &g.instances {
            let ip = instance_path(mig, name);
            let event = |at, action| Event {
                at,
                mig: mig.clone(),
                name: name.clone(),
                action,
            };
            if !world.resources.contains_key(&ip) {
                consider(event(managed.retry_ms.unwrap_or(now), Action::Create));
            } else if managed.pending_recreate || (proactive && managed.template != template) {
                consider(event(now, Action::Recreate));
            } else if let Some(at) = heal_at(world, m, &ip, timing) {
                consider(event(at, Action::Recreate));
            }
        }
        let target =
            usize::try_from(m.get("targetSize").and_then(Value::as_i64).unwrap_or(0)).unwrap_or(0);
        let resize = match g.instances.len().cmp(&target) {
            // Names of per-instance configs without a VM come first.
            std::cmp::Ordering::Less => g
                .configs
                .keys()
                .find(|n| !g.instances.contains_key(*n))
                .cloned()
                .or_else(|| Some(String::new()))
                .map(|name| (name, Action::Create)),
            // VMs without a per-instance config go first.
            std::cmp::Ordering::Greater => g
                .instances
                .keys()
                .rev()
                .find(|n| !g.configs.contains_key(*n))
                .or_else(|| g.instances.keys().next_back())
                .map(|name| (name.clone(), Action::Remove)),
            std::cmp::Ordering::Equal => None,
        };
        if let Some((name, action)) = resize {
            consider(Event {
                at: now,
                mig: mig.clone(),
                name,
                action,
            });
        }
    }
    best
}

/// Lets every group do, in order, what it would have done up to `now`.
/// `policies`: the organization policies. A constraint such as `compute.vmExternalIpAccess` is about the
/// instances themselves, so it binds the VMs a group creates as it binds any other instance insert.
pub(crate) fn reconcile(world: &mut World, now: i64, timing: Timing, policies: &[Constraint]) {
    world
        .ha
        .groups
        .retain(|mig, _| world.resources.contains_key(mig));
    // A broken endpoint goes with its VM, whoever deleted it.
    world
        .ha
        .failing
        .retain(|vm, _| world.resources.contains_key(vm));
    // Bounded: a group whose VMs never turn healthy recreates them once per initial delay, forever.
    for _ in 0..1000 {
        let Some(event) = next_event(world, now, timing) else {
            break;
        };
        apply(world, &event, timing, policies);
    }
    refresh_status(world);
}

fn apply(world: &mut World, event: &Event, timing: Timing, policies: &[Constraint]) {
    let quiet = BTreeMap::new();
    let ctx = Ctx {
        now: event.at,
        timing,
        query: &quiet,
        policies,
    };
    let (p, z, _) = parts(&event.mig);
    match event.action {
        Action::Create => create_vm(world, &ctx, &event.mig, &event.name),
        Action::Recreate => {
            let _ = delete_instance(world, &ctx, &p, &z, &event.name);
            world
                .ha
                .failing
                .remove(&instance_path(&event.mig, &event.name));
            create_vm(world, &ctx, &event.mig, &event.name);
        }
        Action::Remove => {
            let _ = delete_instance(world, &ctx, &p, &z, &event.name);
            world
                .ha
                .failing
                .remove(&instance_path(&event.mig, &event.name));
            if let Some(g) = world.ha.groups.get_mut(&event.mig) {
                g.instances.remove(&event.name);
            }
        }
    }
}

/// Google's `base-xxxx` names: four random lowercase letters and digits.
fn new_name(world: &mut World, mig: &str, base: &str) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    loop {
        let id = world.new_id();
        let h = hash_hex(&[mig, &id]);
        let suffix: String = h
            .as_bytes()
            .chunks(2)
            .take(4)
            .map(|c| {
                let v = u8::from_str_radix(std::str::from_utf8(c).unwrap_or("0"), 16).unwrap_or(0);
                char::from(CHARS[usize::from(v) % CHARS.len()])
            })
            .collect();
        let name = format!("{base}-{suffix}");
        let taken = world
            .ha
            .groups
            .get(mig)
            .is_some_and(|g| g.instances.contains_key(&name));
        if !taken && !world.resources.contains_key(&instance_path(mig, &name)) {
            return name;
        }
    }
}

/// The IP a preserved-state entry names: a reserved address's IP or a literal.
fn preserved_ip(world: &World, p: &str, region: &str, entry: &Value) -> Option<String> {
    let address = entry.get("ipAddress")?;
    if let Some(a) = str_field(address, "address") {
        let path = resolve_ref(a, p, &format!("regions/{region}"), "addresses");
        return world
            .resources
            .get(&path)
            .and_then(|v| str_field(v, "address"))
            .map(str::to_string);
    }
    str_field(address, "literal").map(str::to_string)
}

fn create_vm(world: &mut World, ctx: &Ctx<'_>, mig: &str, name: &str) {
    let Some(m) = world.resources.get(mig).cloned() else {
        return;
    };
    let (p, z, _) = parts(mig);
    let region = crate::emulator::catalog::zone_region(&z).unwrap_or_default();
    let template_url = str_field(&m, "instanceTemplate")
        .unwrap_or_default()
        .to_string();
    let base = str_field(&m, "baseInstanceName")
        .unwrap_or_default()
        .to_string();
    let name = if name.is_empty() {
        new_name(world, mig, &base)
    } else {
        name.to_string()
    };
    let group = world.ha.groups.get(mig).cloned().unwrap_or_default();
    let mut managed = group.instances.get(&name).cloned().unwrap_or_default();
    let ip = instance_path(mig, &name);
    world.ha.failing.remove(&ip);
    let created = match world.resources.get(&path_of(&template_url)).cloned() {
        Some(template) => {
            let mut body = instance_body(&template, &path_of(&template_url), &name, &z, &url(mig));
            let config = group
                .configs
                .get(&name)
                .and_then(|c| c.get("preservedState"));
            if let Some(Value::Array(nics)) = obj(&mut body).get_mut("networkInterfaces") {
                for (i, nic) in nics.iter_mut().enumerate() {
                    let key = format!("nic{i}");
                    let from_config = |kind: &str| {
                        config
                            .and_then(|c| c.get(kind))
                            .and_then(|ips| ips.get(&key))
                            .and_then(|e| preserved_ip(world, &p, region, e))
                    };
                    let internal = from_config("internalIPs")
                        .or_else(|| managed.policy_internal.get(&key).cloned());
                    let external = from_config("externalIPs")
                        .or_else(|| managed.policy_external.get(&key).cloned());
                    let n = obj(nic);
                    if let Some(ip) = internal {
                        n.insert("networkIP".into(), json!(ip));
                    }
                    if let Some(ip) = external {
                        let acs = n.entry("accessConfigs").or_insert_with(|| json!([{}]));
                        if let Some(first) = acs.as_array_mut().and_then(|a| a.first_mut()) {
                            obj(first).insert("natIP".into(), json!(ip));
                        }
                    }
                }
            }
            let _ = insert_instance(world, ctx, &p, &z, Some(body));
            world.resources.contains_key(&ip)
        }
        None => false,
    };
    managed.template = template_url;
    managed.pending_recreate = false;
    managed.retry_ms = (!created).then_some(ctx.now + RETRY_MS);
    if created {
        remember_policy_ips(world, &m, &ip, &mut managed);
    }
    world
        .ha
        .groups
        .entry(mig.to_string())
        .or_default()
        .instances
        .insert(name, managed);
}

/// A stateful policy preserves the IPs a VM got first (compute.v1.json, StatefulPolicyPreservedState:
/// "Internal network IPs assigned to the instances that will be preserved on instance delete, update, etc.").
fn remember_policy_ips(world: &World, mig: &Value, instance: &str, managed: &mut Managed) {
    let Some(policy) = mig
        .get("statefulPolicy")
        .and_then(|s| s.get("preservedState"))
    else {
        return;
    };
    let Some(vm) = world.resources.get(instance) else {
        return;
    };
    let nics = vm
        .get("networkInterfaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, nic) in nics.iter().enumerate() {
        let key = format!("nic{i}");
        if policy
            .get("internalIPs")
            .and_then(|m| m.get(&key))
            .is_some()
            && let Some(ip) = str_field(nic, "networkIP")
        {
            managed
                .policy_internal
                .entry(key.clone())
                .or_insert(ip.to_string());
        }
        let nat = nic
            .get("accessConfigs")
            .and_then(|a| a.get(0))
            .and_then(|a| str_field(a, "natIP"));
        if policy
            .get("externalIPs")
            .and_then(|m| m.get(&key))
            .is_some()
            && let Some(ip) = nat
        {
            managed.policy_external.entry(key).or_insert(ip.to_string());
        }
    }
}

/// `status` and `currentActions` of each group and the `size` of its instance group, from its VMs.
fn refresh_status(world: &mut World) {
    let groups: Vec<(String, Group)> = world
        .ha
        .groups
        .iter()
        .map(|(k, g)| (k.clone(), g.clone()))
        .collect();
    for (mig, g) in groups {
        let existing = g
            .instances
            .keys()
            .filter(|n| world.resources.contains_key(&instance_path(&mig, n)))
            .count();
        let Some(m) = world.resources.get_mut(&mig) else {
            continue;
        };
        let template = str_field(m, "instanceTemplate")
            .unwrap_or_default()
            .to_string();
        let current = g.instances.values().all(|i| i.template == template);
        let pending = g.instances.values().filter(|i| i.pending_recreate).count();
        let creating = g.instances.len() - existing;
        let target =
            usize::try_from(m.get("targetSize").and_then(Value::as_i64).unwrap_or(0)).unwrap_or(0);
        let stateful = m
            .get("statefulPolicy")
            .and_then(|s| s.get("preservedState"))
            .is_some_and(|s| s != &json!({}))
            || !g.configs.is_empty();
        let o = obj(m);
        o.insert(
            "status".into(),
            json!({
                "isStable": creating == 0 && pending == 0 && current && g.instances.len() == target,
                "versionTarget": {"isReached": current},
                "stateful": {"hasStatefulConfig": stateful, "perInstanceConfigs": {"allEffective": true}},
            }),
        );
        o.insert(
            "currentActions".into(),
            json!({
                "none": existing.saturating_sub(pending),
                "creating": creating,
                "recreating": pending,
                "deleting": 0, "abandoning": 0, "restarting": 0, "refreshing": 0, "verifying": 0,
                "creatingWithoutRetries": 0, "resuming": 0, "starting": 0, "stopping": 0, "suspending": 0,
            }),
        );
        if let Some(ig) = world.resources.get_mut(&group_path(&mig)) {
            obj(ig).insert("size".into(), json!(existing));
        }
    }
}

/// The VMs of an instance group that a managed group keeps, as instance paths (existing VMs only).
pub(super) fn members(world: &World, instance_group: &str) -> Vec<String> {
    let mig = path_of(instance_group).replace("/instanceGroups/", "/instanceGroupManagers/");
    world
        .ha
        .groups
        .get(&mig)
        .map(|g| {
            g.instances
                .keys()
                .map(|n| instance_path(&mig, n))
                .filter(|ip| world.resources.contains_key(ip))
                .collect()
        })
        .unwrap_or_default()
}
