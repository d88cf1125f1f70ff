//! Regional health checks: how often and how strictly a backend service or an autohealing policy probes VMs.

use serde_json::{Value, json};

use super::ha::Regional;
use crate::emulator::api_error::ApiError;
use crate::emulator::health::{Endpoint, Probe};
use crate::emulator::world::{Timing, World, obj, str_field};

/// The protocol-specific field of each `HealthCheck.type` (compute.v1.json: "Exactly one of the
/// protocol-specific health check fields must be specified, which must match type field.").
const TYPES: &[(&str, &str)] = &[
    ("TCP", "tcpHealthCheck"),
    ("SSL", "sslHealthCheck"),
    ("HTTP", "httpHealthCheck"),
    ("HTTPS", "httpsHealthCheck"),
    ("HTTP2", "http2HealthCheck"),
    ("GRPC", "grpcHealthCheck"),
    ("GRPC_WITH_TLS", "grpcTlsHealthCheck"),
];

pub(super) const HEALTH_CHECK: Regional = Regional {
    schema: "HealthCheck",
    collection: "healthChecks",
    kind: "compute#healthCheck",
    fingerprint: false,
};

/// Checks a whole health check and fills in Google's defaults.
pub(super) fn check_health_check(_: &World, body: &mut Value) -> Result<(), ApiError> {
    let ty = str_field(body, "type").unwrap_or_default().to_string();
    let Some((_, field)) = TYPES.iter().find(|(t, _)| *t == ty) else {
        return Err(ApiError::invalid_field(
            "resource.type",
            &ty,
            "Must be one of TCP, SSL, HTTP, HTTPS, HTTP2, GRPC, GRPC_WITH_TLS.",
        ));
    };
    let given: Vec<&str> = TYPES
        .iter()
        .map(|(_, f)| *f)
        .filter(|f| body.get(*f).is_some())
        .collect();
    if given != [*field] {
        return Err(ApiError::invalid(format!(
            "Invalid value for field 'resource': exactly one of the protocol-specific health check fields must be specified, and it must be '{field}' for type {ty}."
        )));
    }
    let o = obj(body);
    for (key, default, max) in [
        ("checkIntervalSec", 5, 300),
        ("timeoutSec", 5, 300),
        ("healthyThreshold", 2, 10),
        ("unhealthyThreshold", 2, 10),
    ] {
        let v = o.get(key).and_then(Value::as_i64).unwrap_or(default);
        if !(1..=max).contains(&v) {
            return Err(ApiError::invalid_field(
                &format!("resource.{key}"),
                &v.to_string(),
                &format!("Must be between 1 and {max}."),
            ));
        }
        o.insert(key.into(), json!(v));
    }
    // compute.v1.json, HealthCheck.timeoutSec: "It is invalid for timeoutSec to have greater value than
    // checkIntervalSec."
    if o.get("timeoutSec").and_then(Value::as_i64)
        > o.get("checkIntervalSec").and_then(Value::as_i64)
    {
        return Err(ApiError::invalid(
            "Invalid value for field 'resource.timeoutSec': timeoutSec must be less than or equal to checkIntervalSec.",
        ));
    }
    let spec = obj(o.entry(*field).or_insert_with(|| json!({})));
    // compute.v1.json, TCPHealthCheck.port (and the others): "The default value is 80."
    let port = spec.get("port").and_then(Value::as_i64).unwrap_or(80);
    if !(1..=65535).contains(&port) {
        return Err(ApiError::invalid_field(
            &format!("resource.{field}.port"),
            &port.to_string(),
            "Valid values are 1 through 65535.",
        ));
    }
    spec.insert("port".into(), json!(port));
    spec.entry("portSpecification")
        .or_insert(json!("USE_FIXED_PORT"));
    spec.entry("proxyHeader").or_insert(json!("NONE"));
    Ok(())
}

/// Google's health-check probers' source ranges for passthrough load balancers and autohealing
/// (https://cloud.google.com/load-balancing/docs/health-check-concepts, "Probe IP ranges and firewall rules").
const PROBER_RANGES: [&str; 2] = ["35.191.0.0/16", "130.211.0.0/22"];

/// Whether Google's probers reach `instance` on the health check's port: enabled INGRESS rules of the
/// instance's network allow TCP to that port from both prober ranges, for all instances or one of its tags.
/// Otherwise every probe fails, as the Network Management API documents for a `HealthCheckFirewallState` of
/// MISCONFIGURED ("firewall rules configured to allow partial health check ranges or block all health check
/// ranges ... the health check to the backend will fail. Then, the backend will be marked unhealthy").
pub(super) fn probes_allowed(world: &World, instance: &str, health_check: &Value) -> bool {
    let Some(vm) = world.resources.get(instance) else {
        return false;
    };
    let network = vm
        .get("networkInterfaces")
        .and_then(|n| n.get(0))
        .and_then(|n| str_field(n, "network"))
        .unwrap_or_default();
    let tags: Vec<&str> = vm
        .get("tags")
        .and_then(|t| t.get("items"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let port = TYPES
        .iter()
        .find_map(|(_, f)| health_check.get(*f))
        .and_then(|s| s.get("port"))
        .and_then(Value::as_i64)
        .unwrap_or(80);
    let covers = |rule: &Value, range: &str| {
        let Ok(range) = range.parse::<crate::net::Ipv4Net>() else {
            return false;
        };
        rule.get("sourceRanges")
            .and_then(Value::as_array)
            .is_some_and(|rs| {
                rs.iter()
                    .filter_map(Value::as_str)
                    .filter_map(|r| r.parse::<crate::net::Ipv4Net>().ok())
                    .any(|r| r.prefix() <= range.prefix() && r.contains(range.addr()))
            })
    };
    let rules: Vec<&Value> = world
        .resources
        .iter()
        .filter(|(k, _)| k.contains("/global/firewalls/"))
        .map(|(_, rule)| rule)
        .filter(|rule| super::applies_to(rule, network, &tags))
        .filter(|rule| super::entries_cover(rule.get("allowed"), "tcp", Some(port)))
        .collect();
    PROBER_RANGES
        .iter()
        .all(|range| rules.iter().any(|rule| covers(rule, range)))
}

/// The VM's health endpoint as the probes of `health_check` see it (none reach it without a firewall rule).
pub(super) fn probed(
    world: &World,
    timing: Timing,
    instance: &str,
    health_check: &Value,
) -> Option<Endpoint> {
    let power = world.power.get(instance)?;
    let mut endpoint = Endpoint::of(power, timing, world.ha.failing.get(instance).copied());
    if !probes_allowed(world, instance, health_check) {
        endpoint.window = None;
    }
    Some(endpoint)
}

/// The verdict of `health_check` on the VM at `now`.
pub(super) fn healthy(
    world: &World,
    timing: Timing,
    now: i64,
    instance: &str,
    health_check: &Value,
) -> bool {
    probed(world, timing, instance, health_check)
        .is_some_and(|e| e.healthy(Probe::of(health_check), now))
}
