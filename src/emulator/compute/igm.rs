//! Zonal managed instance groups: a group keeps its target size, recreates a VM that was deleted or that its
//! autohealing health check finds unhealthy after the initial delay, and gives a VM its preserved IPs back.
//!
//! Sources:
//! - "Work with managed instances", https://cloud.google.com/compute/docs/instance-groups/working-with-managed-instances:
//!   "if you delete or update a VM in a MIG by using the instances API instead of the required instance group
//!   manager API, the MIG will not be aware of your intent and ... might automatically attempt to recreate or
//!   revert that VM according to the MIG's configuration"; for each managed instance "the MIG keeps an actual
//!   VM up and running according to the managed instance's specification", named after the managed instance.
//! - compute.v1.json, `InstanceGroupManagerAutoHealingPolicy.initialDelaySec`: "During a VM's initial delay
//!   period, the MIG ignores unsuccessful health checks because the VM might be in the startup process ...
//!   If the health check receives a healthy response during the initial delay, it indicates that the startup
//!   process is complete and the VM is ready." A VM that is not healthy when the delay ends is recreated.
//! - compute.v1.json, `PreservedStatePreservedNetworkIp.autoDelete`: "These stateful IPs will never be released
//!   during autohealing, update or VM instance recreate operations."
//! - compute.v1.json, `InstanceGroupManager.baseInstanceName`: VMs are named after it; Google appends a hyphen
//!   and four random characters ("Creating groups of managed instances").
//! - compute.v1.json, `InstanceGroupManagerUpdatePolicy.type`: "PROACTIVE so that the MIG automatically
//!   updates VMs to the latest configurations or OPPORTUNISTIC so that the MIG applies updates only to new
//!   VMs".
//!
//! The group acts from `mig_loop::reconcile`, which runs before and after every request and replays what
//! the group would have done since, in the order it would have done it, each action at its own moment.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::health_check::healthy;
use super::instance::delete_instance;
use super::mig_loop::autohealing;
use super::{
    Answer, Ctx, Reply, body_of, check_name, insert_body, mutate, parse_ip, render, stamp, url,
    zone_region_of,
};
use crate::emulator::api_error::{ApiError, OpError};
use crate::emulator::health::{Group, Managed};
use crate::emulator::schema::{self, Api};
use crate::emulator::world::{
    COMPUTE_URL, Scope, World, fingerprint, last_segment, obj, resolve_ref, str_field,
};

pub(super) fn path_of(reference: &str) -> String {
    reference
        .strip_prefix(COMPUTE_URL)
        .unwrap_or(reference)
        .to_string()
}

/// `(project, zone, name)` of `projects/p/zones/z/instanceGroupManagers/n`.
pub(super) fn parts(mig: &str) -> (String, String, String) {
    let s: Vec<&str> = mig.split('/').collect();
    let at = |i: usize| s.get(i).copied().unwrap_or_default().to_string();
    (at(1), at(3), at(5))
}

pub(super) fn instance_path(mig: &str, name: &str) -> String {
    let (p, z, _) = parts(mig);
    format!("projects/{p}/zones/{z}/instances/{name}")
}

pub(super) fn group_path(mig: &str) -> String {
    mig.replace("/instanceGroupManagers/", "/instanceGroups/")
}

/// Resolves the templates, the autohealing health check and the policies of a group body, in place.
fn check_policies(world: &World, p: &str, body: &mut Value) -> Result<(), ApiError> {
    let versions: Vec<Value> = body
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.len() > 1 {
        return Err(ApiError::invalid_field(
            "resource.versions",
            "",
            "The emulator supports one version per group (no canary).",
        ));
    }
    let from_version = versions
        .first()
        .and_then(|v| str_field(v, "instanceTemplate"))
        .map(str::to_string);
    let given = str_field(body, "instanceTemplate").map(str::to_string);
    let template = match (given, from_version) {
        (Some(a), Some(b)) if path_of(&a) != path_of(&b) => {
            return Err(ApiError::invalid(
                "Invalid value for field 'resource.instanceTemplate': it must match versions[0].instanceTemplate.",
            ));
        }
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => {
            return Err(ApiError::required("resource.instanceTemplate"));
        }
    };
    let template_path = resolve_ref(&template, p, "global", "instanceTemplates");
    if !template_path.contains("/instanceTemplates/") {
        return Err(ApiError::invalid_field(
            "resource.instanceTemplate",
            &template,
            "Must name an instance template.",
        ));
    }
    world.get(&template_path)?;
    let template_url = url(&template_path);
    let policies: Vec<Value> = body
        .get("autoHealingPolicies")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // compute.v1.json, InstanceGroupManager.autoHealingPolicies: "You can specify only one value."
    if policies.len() > 1 {
        return Err(ApiError::invalid_field(
            "resource.autoHealingPolicies",
            "",
            "You can specify only one value.",
        ));
    }
    let mut out_policies = Vec::new();
    for policy in policies {
        let hc = str_field(&policy, "healthCheck").unwrap_or_default();
        let hc_path = resolve_ref(hc, p, "global", "healthChecks");
        world.get(&hc_path)?;
        let delay = policy
            .get("initialDelaySec")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if !(0..=3600).contains(&delay) {
            return Err(ApiError::invalid_field(
                "resource.autoHealingPolicies[0].initialDelaySec",
                &delay.to_string(),
                "The value of initial delay must be between 0 and 3600 seconds.",
            ));
        }
        out_policies.push(json!({"healthCheck": url(&hc_path), "initialDelaySec": delay}));
    }
    let o = obj(body);
    o.insert("instanceTemplate".into(), json!(template_url));
    let mut version = versions.first().cloned().unwrap_or_else(|| json!({}));
    obj(&mut version).insert("instanceTemplate".into(), json!(template_url));
    o.insert("versions".into(), json!([version]));
    if out_policies.is_empty() {
        o.remove("autoHealingPolicies");
    } else {
        o.insert("autoHealingPolicies".into(), Value::Array(out_policies));
    }
    let size = o.get("targetSize").and_then(Value::as_i64).unwrap_or(0);
    if size < 0 {
        return Err(ApiError::invalid_field(
            "resource.targetSize",
            &size.to_string(),
            "Must be greater than or equal to 0.",
        ));
    }
    // Google's defaults for a zonal group (compute.v1.json, InstanceGroupManagerUpdatePolicy).
    let up = obj(o.entry("updatePolicy").or_insert_with(|| json!({})));
    up.entry("type").or_insert(json!("PROACTIVE"));
    up.entry("minimalAction").or_insert(json!("REPLACE"));
    up.entry("replacementMethod").or_insert(json!("SUBSTITUTE"));
    up.entry("maxSurge")
        .or_insert(json!({"fixed": 1, "calculated": 1}));
    up.entry("maxUnavailable")
        .or_insert(json!({"fixed": 1, "calculated": 1}));
    Ok(())
}

pub(super) fn insert_igm(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    z: &str,
    body: Option<Value>,
) -> Answer {
    zone_region_of(p, z)?;
    let (mut body, path) = insert_body(
        world,
        "InstanceGroupManager",
        "compute.instanceGroupManagers.insert",
        body,
        |n| format!("projects/{p}/zones/{z}/instanceGroupManagers/{n}"),
    )?;
    let name = last_segment(&path).to_string();
    let base = str_field(&body, "baseInstanceName")
        .unwrap_or(&name)
        .to_string();
    // compute.v1.json, baseInstanceName: "The maximum character length is 58".
    if base.len() > 58 {
        return Err(ApiError::invalid_field(
            "resource.baseInstanceName",
            &base,
            "The maximum character length is 58.",
        ));
    }
    check_name("resource.baseInstanceName", &base)?;
    check_policies(world, p, &mut body)?;
    mutate(
        world,
        ctx,
        p,
        &Scope::Zone(z.to_string()),
        "insert",
        &path.clone(),
        |w| {
            stamp(w, ctx, &mut body, "compute#instanceGroupManager", &path);
            let fp = fingerprint(w, &body);
            let ig = group_path(&path);
            let o = obj(&mut body);
            o.insert("baseInstanceName".into(), json!(base));
            o.insert("fingerprint".into(), json!(fp));
            o.insert(
                "zone".into(),
                json!(url(&format!("projects/{p}/zones/{z}"))),
            );
            o.insert("instanceGroup".into(), json!(url(&ig)));
            o.insert("listManagedInstancesResults".into(), json!("PAGELESS"));
            o.entry("targetSize").or_insert(json!(0));
            let mut group = json!({"name": name, "size": 0});
            stamp(w, ctx, &mut group, "compute#instanceGroup", &ig);
            let gfp = fingerprint(w, &group);
            let go = obj(&mut group);
            go.insert("fingerprint".into(), json!(gfp));
            go.insert(
                "zone".into(),
                json!(url(&format!("projects/{p}/zones/{z}"))),
            );
            w.resources.insert(ig, group);
            w.resources.insert(path.clone(), body);
            w.ha.groups.insert(path.clone(), Group::default());
            Ok(Ok(()))
        },
    )
}

/// Deleting a group deletes its VMs (and its instance group), unless a backend service still uses it.
pub(super) fn delete_igm(world: &mut World, ctx: &Ctx<'_>, p: &str, z: &str, n: &str) -> Answer {
    let path = format!("projects/{p}/zones/{z}/instanceGroupManagers/{n}");
    world.get(&path)?;
    let quiet = BTreeMap::new();
    let inner = Ctx {
        now: ctx.now,
        timing: ctx.timing,
        query: &quiet,
        policies: ctx.policies,
    };
    mutate(
        world,
        ctx,
        p,
        &Scope::Zone(z.to_string()),
        "delete",
        &path.clone(),
        |w| {
            let ig = group_path(&path);
            let user = w
                .resources
                .iter()
                .filter(|(k, _)| k.contains("/backendServices/"))
                .find(|(_, v)| user_of_value(v, &url(&ig)))
                .map(|(k, _)| k.clone());
            if let Some(user) = user {
                return Ok(Err(OpError::in_use(format!(
                    "The instance_group resource '{ig}' is already being used by '{user}'"
                ))));
            }
            let names: Vec<String> =
                w.ha.groups
                    .get(&path)
                    .map(|g| g.instances.keys().cloned().collect())
                    .unwrap_or_default();
            for name in names {
                let ip = instance_path(&path, &name);
                if w.resources.contains_key(&ip) {
                    let _ = delete_instance(w, &inner, p, z, &name);
                }
                w.ha.failing.remove(&ip);
            }
            w.ha.groups.remove(&path);
            w.resources.remove(&ig);
            w.resources.remove(&path);
            Ok(Ok(()))
        },
    )
}

fn user_of_value(v: &Value, url: &str) -> bool {
    match v {
        Value::String(s) => s == url,
        Value::Array(a) => a.iter().any(|x| user_of_value(x, url)),
        Value::Object(m) => m.values().any(|x| user_of_value(x, url)),
        _ => false,
    }
}

/// `instanceGroupManagers.patch`: the fields given replace the current ones; a new template reaches the
/// VMs at once under a PROACTIVE update policy, and on their next recreation under OPPORTUNISTIC.
pub(super) fn patch_igm(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    z: &str,
    n: &str,
    body: Option<Value>,
) -> Answer {
    let path = format!("projects/{p}/zones/{z}/instanceGroupManagers/{n}");
    let mut patch = body_of(body);
    schema::validate(
        Api::Compute,
        "InstanceGroupManager",
        None,
        "resource",
        &mut patch,
    )?;
    let mut merged = world.get(&path)?.clone();
    if let Value::Object(m) = &patch {
        let o = obj(&mut merged);
        if m.contains_key("instanceTemplate") && !m.contains_key("versions") {
            o.remove("versions");
        }
        if m.contains_key("versions") && !m.contains_key("instanceTemplate") {
            o.remove("instanceTemplate");
        }
        for (k, v) in m {
            match (k.as_str(), o.get_mut(k)) {
                ("name" | "baseInstanceName", _) => {}
                ("updatePolicy", Some(Value::Object(cur))) => {
                    if let Value::Object(new) = v {
                        for (k2, v2) in new {
                            cur.insert(k2.clone(), v2.clone());
                        }
                    }
                }
                _ => {
                    o.insert(k.clone(), v.clone());
                }
            }
        }
    }
    check_policies(world, p, &mut merged)?;
    mutate(
        world,
        ctx,
        p,
        &Scope::Zone(z.to_string()),
        "patch",
        &path.clone(),
        |w| {
            let fp = fingerprint(w, &merged);
            obj(&mut merged).insert("fingerprint".into(), json!(fp));
            w.resources.insert(path.clone(), merged);
            Ok(Ok(()))
        },
    )
}

/// The instance names a request body lists as URLs or partial paths.
fn named_instances(body: &Value, key: &str) -> Vec<String> {
    body.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| last_segment(s).to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Checks the preserved IPs of a per-instance config: each names an existing reserved address of the
/// group's region (internal ones INTERNAL, external ones EXTERNAL) or is an IPv4 literal.
fn check_preserved(world: &World, p: &str, region: &str, config: &Value) -> Result<(), ApiError> {
    let name = str_field(config, "name").unwrap_or_default();
    check_name("perInstanceConfig.name", name)?;
    for (kind, address_type) in [("internalIPs", "INTERNAL"), ("externalIPs", "EXTERNAL")] {
        let Some(Value::Object(ips)) = config.get("preservedState").and_then(|s| s.get(kind))
        else {
            continue;
        };
        for (nic, ip) in ips {
            let field = format!("perInstanceConfig.preservedState.{kind}.{nic}");
            let address = ip.get("ipAddress");
            if let Some(a) = address.and_then(|a| str_field(a, "address")) {
                let path = resolve_ref(a, p, &format!("regions/{region}"), "addresses");
                let found = world.get(&path)?;
                if str_field(found, "addressType").unwrap_or("EXTERNAL") != address_type
                    || !path.starts_with(&format!("projects/{p}/regions/{region}/"))
                {
                    return Err(ApiError::invalid_field(
                        &format!("{field}.ipAddress.address"),
                        a,
                        &format!("Must be an {address_type} address of region '{region}'."),
                    ));
                }
            } else if let Some(l) = address.and_then(|a| str_field(a, "literal")) {
                parse_ip(&format!("{field}.ipAddress.literal"), l)?;
            } else {
                return Err(ApiError::required(&format!("{field}.ipAddress")));
            }
        }
    }
    Ok(())
}

fn configs_of(body: &Value, key: &str) -> Vec<Value> {
    body.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// What a group method changes, judged once the request is accepted.
type Change = Box<dyn FnOnce(&mut World) -> Result<(), OpError>>;

/// `createInstances`: VMs with given names and preserved state; the target size grows by as many.
fn create_instances(
    world: &World,
    (p, region): (&str, &str),
    path: &str,
    group: &Group,
    template: String,
    body: &Value,
) -> Result<Change, ApiError> {
    let configs = configs_of(body, "instances");
    if configs.is_empty() {
        return Err(ApiError::required("instances"));
    }
    for c in &configs {
        check_preserved(world, p, region, c)?;
        let name = str_field(c, "name").unwrap_or_default();
        if group.instances.contains_key(name) {
            return Err(ApiError::already_exists(&instance_path(path, name)));
        }
    }
    let path = path.to_string();
    Ok(Box::new(move |w: &mut World| {
        let added = i64::try_from(configs.len()).unwrap_or(0);
        let g = w.ha.groups.entry(path.clone()).or_default();
        for c in configs {
            let name = str_field(&c, "name").unwrap_or_default().to_string();
            if c.get("preservedState").is_some() {
                g.configs.insert(name.clone(), c);
            }
            g.instances.insert(
                name,
                Managed {
                    template: template.clone(),
                    ..Managed::default()
                },
            );
        }
        if let Some(m) = w.resources.get_mut(&path) {
            let size = m.get("targetSize").and_then(Value::as_i64).unwrap_or(0);
            obj(m).insert("targetSize".into(), json!(size + added));
        }
        Ok(())
    }))
}

/// `recreateInstances` and `applyUpdatesToInstances`: applyUpdatesToInstances replaces a VM only when asked
/// to (minimalAction REPLACE) or when its template is outdated; REFRESH and NONE change nothing the emulator
/// models.
fn recreate(
    verb: &str,
    path: &str,
    group: &Group,
    template: String,
    body: &Value,
) -> Result<Change, ApiError> {
    let names: Vec<String> = if body.get("allInstances") == Some(&json!(true)) {
        group.instances.keys().cloned().collect()
    } else {
        named_instances(body, "instances")
    };
    if let Some(missing) = names.iter().find(|n| !group.instances.contains_key(*n)) {
        return Err(ApiError::invalid(format!(
            "Instance '{}' is not a member of the managed instance group '{path}'.",
            instance_path(path, missing)
        )));
    }
    let replace_all =
        verb == "recreateInstances" || str_field(body, "minimalAction") == Some("REPLACE");
    let path = path.to_string();
    Ok(Box::new(move |w: &mut World| {
        let g = w.ha.groups.entry(path).or_default();
        for name in names {
            if let Some(m) = g.instances.get_mut(&name)
                && (replace_all || m.template != template)
            {
                m.pending_recreate = true;
            }
        }
        Ok(())
    }))
}

/// The group's methods on its managed instances.
pub(super) fn igm_verb(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    z: &str,
    n: &str,
    verb: &str,
    body: Option<Value>,
) -> Answer {
    let region = zone_region_of(p, z)?;
    let path = format!("projects/{p}/zones/{z}/instanceGroupManagers/{n}");
    let mig = world.get(&path)?.clone();
    let mut body = body_of(body);
    let schema_name = match verb {
        "createInstances" => "InstanceGroupManagersCreateInstancesRequest",
        "updatePerInstanceConfigs" => "InstanceGroupManagersUpdatePerInstanceConfigsReq",
        "deletePerInstanceConfigs" => "InstanceGroupManagersDeletePerInstanceConfigsReq",
        "recreateInstances" => "InstanceGroupManagersRecreateInstancesRequest",
        "applyUpdatesToInstances" => "InstanceGroupManagersApplyUpdatesRequest",
        "listManagedInstances" | "listPerInstanceConfigs" | "resize" => "",
        _ => {
            return Err(ApiError::method_not_found(
                "POST",
                &format!("/compute/v1/{path}/{verb}"),
            ));
        }
    };
    if !schema_name.is_empty() {
        schema::validate(Api::Compute, schema_name, None, "resource", &mut body)?;
    }
    let group = world.ha.groups.get(&path).cloned().unwrap_or_default();
    match verb {
        "listManagedInstances" => {
            let items: Vec<Value> = group
                .instances
                .keys()
                .map(|name| managed_view(world, ctx, &mig, &path, &group, name))
                .collect();
            return Ok(Reply::read(json!({ "managedInstances": items })));
        }
        "listPerInstanceConfigs" => {
            let items: Vec<Value> = group
                .configs
                .values()
                .map(|c| {
                    let mut c = c.clone();
                    obj(&mut c).insert("status".into(), json!("EFFECTIVE"));
                    c
                })
                .collect();
            let mut out = json!({});
            if !items.is_empty() {
                obj(&mut out).insert("items".into(), Value::Array(items));
            }
            return Ok(Reply::read(out));
        }
        _ => {}
    }
    let template = str_field(&mig, "instanceTemplate")
        .unwrap_or_default()
        .to_string();
    let target = path.clone();
    let change: Change = match verb {
        "resize" => {
            let size = ctx
                .q("size")
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|s| *s >= 0)
                .ok_or_else(|| ApiError::required("size"))?;
            Box::new(move |w: &mut World| {
                if let Some(m) = w.resources.get_mut(&path) {
                    obj(m).insert("targetSize".into(), json!(size));
                }
                Ok(())
            })
        }
        "createInstances" => create_instances(world, (p, region), &path, &group, template, &body)?,
        "updatePerInstanceConfigs" => {
            let configs = configs_of(&body, "perInstanceConfigs");
            for c in &configs {
                check_preserved(world, p, region, c)?;
            }
            Box::new(move |w: &mut World| {
                let g = w.ha.groups.entry(path.clone()).or_default();
                for c in configs {
                    let name = str_field(&c, "name").unwrap_or_default().to_string();
                    g.configs.insert(name, c);
                }
                Ok(())
            })
        }
        "deletePerInstanceConfigs" => {
            let names = named_instances(&body, "names");
            Box::new(move |w: &mut World| {
                let g = w.ha.groups.entry(path.clone()).or_default();
                for name in names {
                    g.configs.remove(&name);
                }
                Ok(())
            })
        }
        _ => recreate(verb, &path, &group, template, &body)?,
    };
    mutate(
        world,
        ctx,
        p,
        &Scope::Zone(z.to_string()),
        verb,
        &target,
        |w| Ok(change(w)),
    )
}

/// One `ManagedInstance` of `listManagedInstances`.
fn managed_view(
    world: &World,
    ctx: &Ctx<'_>,
    mig: &Value,
    mig_path: &str,
    group: &Group,
    name: &str,
) -> Value {
    let ip = instance_path(mig_path, name);
    let instance = render(world, ctx, &ip);
    let m = group.instances.get(name).cloned().unwrap_or_default();
    let mut out = json!({
        "instance": url(&ip),
        "name": name,
        "version": {"instanceTemplate": m.template},
        "targetStatus": "RUNNING",
    });
    let o = obj(&mut out);
    let status = instance
        .as_ref()
        .and_then(|i| str_field(i, "status"))
        .map(str::to_string);
    if let Some(i) = &instance {
        o.insert("id".into(), json!(str_field(i, "id")));
        o.insert("instanceStatus".into(), json!(status));
    }
    let autoheal = autohealing(world, mig);
    let healthy = autoheal.as_ref().and_then(|(hc_url, hc, _)| {
        world.power.get(&ip)?;
        Some((hc_url.clone(), healthy(world, ctx.timing, ctx.now, &ip, hc)))
    });
    let action = if instance.is_none() || m.pending_recreate {
        if m.pending_recreate {
            "RECREATING"
        } else {
            "CREATING"
        }
    } else if status.as_deref() != Some("RUNNING") {
        "CREATING"
    } else if let (Some((_, _, delay)), Some((_, false))) = (&autoheal, &healthy) {
        // compute.v1.json, ManagedInstance.currentAction: "VERIFYING The managed instance group has created
        // the instance and it is in the process of being verified."
        let since = world.power.get(&ip).map_or(0, |pw| pw.since);
        if ctx.now < since + delay {
            "VERIFYING"
        } else {
            "NONE"
        }
    } else {
        "NONE"
    };
    o.insert("currentAction".into(), json!(action));
    if let Some((hc_url, ok)) = healthy {
        o.insert(
            "instanceHealth".into(),
            json!([{"healthCheck": hc_url, "detailedHealthState": if ok { "HEALTHY" } else { "UNHEALTHY" }}]),
        );
    }
    if let Some(c) = group
        .configs
        .get(name)
        .and_then(|c| c.get("preservedState"))
    {
        o.insert("preservedStateFromConfig".into(), c.clone());
    }
    let from_policy = policy_state(&m);
    if from_policy != json!({}) {
        o.insert("preservedStateFromPolicy".into(), from_policy);
    }
    out
}

fn policy_state(m: &Managed) -> Value {
    let mut out = json!({});
    for (key, ips) in [
        ("internalIPs", &m.policy_internal),
        ("externalIPs", &m.policy_external),
    ] {
        if !ips.is_empty() {
            let v: serde_json::Map<String, Value> = ips
                .iter()
                .map(|(nic, ip)| {
                    (
                        nic.clone(),
                        json!({"autoDelete": "NEVER", "ipAddress": {"literal": ip}}),
                    )
                })
                .collect();
            obj(&mut out).insert(key.into(), Value::Object(v));
        }
    }
    out
}
