//! Regional backend services of internal passthrough Network Load Balancers: instance groups as backends, one
//! health check, and `getHealth` from the simulated health of each VM.

use serde_json::{Value, json};

use super::ha::Regional;
use super::health_check::healthy;
use super::mig_loop::members;
use super::{Answer, Ctx, Reply, body_of, url};
use crate::emulator::api_error::ApiError;
use crate::emulator::catalog;
use crate::emulator::schema::{self, Api};
use crate::emulator::world::{COMPUTE_URL, World, obj, resolve_ref, str_field};

pub(super) const BACKEND_SERVICE: Regional = Regional {
    schema: "BackendService",
    collection: "backendServices",
    kind: "compute#backendService",
    fingerprint: true,
};

/// Checks a whole backend service of region `r` and fills in Google's defaults.
pub(super) fn check_backend_service(
    world: &World,
    p: &str,
    r: &str,
    body: &mut Value,
) -> Result<(), ApiError> {
    let scheme = str_field(body, "loadBalancingScheme").unwrap_or("EXTERNAL");
    if scheme != "INTERNAL" {
        return Err(ApiError::invalid_field(
            "resource.loadBalancingScheme",
            scheme,
            "The emulator serves internal passthrough Network Load Balancers only (INTERNAL).",
        ));
    }
    let protocol = str_field(body, "protocol").unwrap_or("TCP").to_string();
    // Internal passthrough NLBs take TCP, UDP or UNSPECIFIED (the L3_DEFAULT forwarding rules),
    // https://cloud.google.com/load-balancing/docs/internal#forwarding-rule-protocols.
    if !["TCP", "UDP", "UNSPECIFIED"].contains(&protocol.as_str()) {
        return Err(ApiError::invalid_field(
            "resource.protocol",
            &protocol,
            "An INTERNAL backend service takes TCP, UDP or UNSPECIFIED.",
        ));
    }
    let hcs: Vec<String> = body
        .get("healthChecks")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    // compute.v1.json, BackendService.healthChecks: "Currently, at most one health check can be specified
    // for each backend service"; internal passthrough NLBs require one.
    if hcs.len() != 1 {
        return Err(ApiError::invalid_field(
            "resource.healthChecks",
            "",
            "An INTERNAL backend service needs exactly one health check.",
        ));
    }
    let hc_path = resolve_ref(&hcs[0], p, &format!("regions/{r}"), "healthChecks");
    world.get(&hc_path)?;
    let mut backends = body
        .get("backends")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut seen = Vec::new();
    for (i, b) in backends.iter_mut().enumerate() {
        let field = format!("resource.backends[{i}]");
        let group = str_field(b, "group").unwrap_or_default();
        let group_path = resolve_ref(group, p, "zones/-", "instanceGroups");
        let zone = group_path.split('/').nth(3).unwrap_or_default();
        if !group_path.contains("/instanceGroups/") || catalog::zone_region(zone) != Some(r) {
            return Err(ApiError::invalid_field(
                &format!("{field}.group"),
                group,
                &format!("Must be an instance group in a zone of region '{r}'."),
            ));
        }
        world.get(&group_path)?;
        if seen.contains(&group_path) {
            return Err(ApiError::invalid_field(
                &format!("{field}.group"),
                group,
                "Duplicate backend group.",
            ));
        }
        let mode = str_field(b, "balancingMode").unwrap_or("CONNECTION");
        // Internal passthrough NLB backends balance by CONNECTION
        // (https://cloud.google.com/load-balancing/docs/backend-service#balancing-mode).
        if mode != "CONNECTION" {
            return Err(ApiError::invalid_field(
                &format!("{field}.balancingMode"),
                mode,
                "An INTERNAL backend service balances by CONNECTION.",
            ));
        }
        let o = obj(b);
        o.insert("group".into(), json!(url(&group_path)));
        o.insert("balancingMode".into(), json!("CONNECTION"));
        o.entry("capacityScaler").or_insert(json!(1));
        seen.push(group_path);
    }
    let o = obj(body);
    o.insert("healthChecks".into(), json!([url(&hc_path)]));
    o.insert("backends".into(), Value::Array(backends));
    o.insert("protocol".into(), json!(protocol));
    o.entry("sessionAffinity").or_insert(json!("NONE"));
    o.entry("timeoutSec").or_insert(json!(30));
    o.entry("connectionDraining")
        .or_insert(json!({"drainingTimeoutSec": 0}));
    if let Some(n) = o.get("network").and_then(Value::as_str).map(str::to_string) {
        let net = resolve_ref(&n, p, "global", "networks");
        world.get(&net)?;
        o.insert("network".into(), json!(url(&net)));
    }
    Ok(())
}

/// The health of one VM as a backend service's health check sees it now.
pub(super) fn vm_healthy(world: &World, ctx: &Ctx<'_>, service: &Value, instance: &str) -> bool {
    service
        .get("healthChecks")
        .and_then(|h| h.get(0))
        .and_then(Value::as_str)
        .and_then(|hc| {
            world
                .resources
                .get(hc.strip_prefix(COMPUTE_URL).unwrap_or(hc))
        })
        .is_some_and(|hc| healthy(world, ctx.timing, ctx.now, instance, hc))
}

/// The groups of a backend service, as instance group paths.
pub(super) fn backend_groups(service: &Value) -> Vec<String> {
    service
        .get("backends")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|b| str_field(b, "group"))
                .map(|g| g.strip_prefix(COMPUTE_URL).unwrap_or(g).to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `regionBackendServices.getHealth`: one `HealthStatus` per VM of the group, with the forwarding rules that
/// use the service (Google reports health per forwarding rule IP for passthrough load balancers).
pub(super) fn backend_health(
    world: &World,
    ctx: &Ctx<'_>,
    p: &str,
    r: &str,
    n: &str,
    body: Option<Value>,
) -> Answer {
    let path = format!("projects/{p}/regions/{r}/backendServices/{n}");
    let service = world.get(&path)?;
    let mut body = body_of(body);
    schema::validate(
        Api::Compute,
        "ResourceGroupReference",
        None,
        "resource",
        &mut body,
    )?;
    let group = str_field(&body, "group").unwrap_or_default();
    let group_path = resolve_ref(group, p, "zones/-", "instanceGroups");
    if !backend_groups(service).contains(&group_path) {
        return Err(ApiError::invalid_field(
            "resource.group",
            group,
            &format!("The instance group is not a backend of '{path}'."),
        ));
    }
    let service_url = url(&path);
    let rules: Vec<(String, String)> = world
        .children(&format!("projects/{p}/regions/{r}/forwardingRules/"))
        .filter(|(_, v)| str_field(v, "backendService") == Some(service_url.as_str()))
        .map(|(k, v)| {
            (
                url(k),
                str_field(v, "IPAddress").unwrap_or_default().to_string(),
            )
        })
        .collect();
    let mut statuses = Vec::new();
    for instance in members(world, &group_path) {
        let vm = world.resources.get(&instance);
        let ip = vm
            .and_then(|v| v.get("networkInterfaces"))
            .and_then(|n| n.get(0))
            .and_then(|n| str_field(n, "networkIP"))
            .unwrap_or_default();
        let state = if vm_healthy(world, ctx, service, &instance) {
            "HEALTHY"
        } else {
            "UNHEALTHY"
        };
        let mut status = json!({"instance": url(&instance), "ipAddress": ip, "healthState": state});
        if let Some((rule, rule_ip)) = rules.first() {
            let o = obj(&mut status);
            o.insert("forwardingRule".into(), json!(rule));
            o.insert("forwardingRuleIp".into(), json!(rule_ip));
        }
        statuses.push(status);
    }
    let mut out = json!({"kind": "compute#backendServiceGroupHealth"});
    if !statuses.is_empty() {
        obj(&mut out).insert("healthStatus".into(), Value::Array(statuses));
    }
    Ok(Reply::read(out))
}
