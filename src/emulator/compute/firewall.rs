//! Firewall rules: insert, and PATCH that merges the fields present.

use serde_json::{Value, json};

use super::network::network_exists;
use super::{Answer, Ctx, body_of, insert_body, mutate, stamp, url};
use crate::emulator::api_error::ApiError;
use crate::emulator::schema::{self, Api};
use crate::emulator::world::{Scope, World, obj, resolve_ref, str_field};
use crate::net::Ipv4Net;

pub(super) fn check_firewall(world: &World, p: &str, body: &mut Value) -> Result<(), ApiError> {
    let network = str_field(body, "network")
        .unwrap_or("global/networks/default")
        .to_string();
    let network_path = resolve_ref(&network, p, "global", "networks");
    network_exists(world, &network_path)?;
    let o = obj(body);
    o.insert("network".into(), json!(url(&network_path)));
    let allowed = o
        .get("allowed")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let denied = o
        .get("denied")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if allowed == denied {
        return Err(ApiError::invalid(
            "Invalid value for field 'resource': exactly one of 'allowed' or 'denied' must be specified.",
        ));
    }
    for key in ["allowed", "denied"] {
        for (i, rule) in o
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let Some(m) = rule.as_object() else { continue };
            for k in m.keys() {
                if k != "IPProtocol" && k != "ports" {
                    return Err(ApiError::bad_json(format!(
                        "Invalid JSON payload received. Unknown name \"{k}\" at 'resource.{key}[{i}]': Cannot find field."
                    )));
                }
            }
            if rule.get("IPProtocol").and_then(Value::as_str).is_none() {
                return Err(ApiError::required(&format!(
                    "resource.{key}[{i}].IPProtocol"
                )));
            }
        }
    }
    for key in ["sourceRanges", "destinationRanges"] {
        for r in o
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let s = r.as_str().unwrap_or_default();
            s.parse::<Ipv4Net>().map_err(|_| {
                ApiError::invalid_field(
                    &format!("resource.{key}"),
                    s,
                    "Must be an IPv4 CIDR range.",
                )
            })?;
        }
    }
    Ok(())
}

pub(super) fn insert_firewall(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    body: Option<Value>,
) -> Answer {
    let (mut body, path) = insert_body(world, "Firewall", "compute.firewalls.insert", body, |n| {
        format!("projects/{p}/global/firewalls/{n}")
    })?;
    check_firewall(world, p, &mut body)?;
    let o = obj(&mut body);
    let direction = o
        .get("direction")
        .and_then(Value::as_str)
        .unwrap_or("INGRESS")
        .to_string();
    o.insert("direction".into(), json!(direction));
    o.entry("priority").or_insert(json!(1000));
    o.entry("disabled").or_insert(json!(false));
    o.entry("logConfig").or_insert(json!({"enable": false}));
    if direction == "INGRESS"
        && o.get("sourceRanges").is_none()
        && o.get("sourceTags").is_none()
        && o.get("sourceServiceAccounts").is_none()
    {
        o.insert("sourceRanges".into(), json!(["0.0.0.0/0"]));
    }
    if direction == "EGRESS" && o.get("destinationRanges").is_none() {
        o.insert("destinationRanges".into(), json!(["0.0.0.0/0"]));
    }
    mutate(
        world,
        ctx,
        p,
        &Scope::Global,
        "insert",
        &path.clone(),
        |w| {
            stamp(w, ctx, &mut body, "compute#firewall", &path);
            w.resources.insert(path.clone(), body);
            Ok(Ok(()))
        },
    )
}

/// PATCH semantics: the fields present replace the stored ones (lists whole); absent fields stay.
pub(super) fn patch_firewall(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    f: &str,
    body: Option<Value>,
) -> Answer {
    let path = format!("projects/{p}/global/firewalls/{f}");
    let mut body = body_of(body);
    schema::validate(Api::Compute, "Firewall", None, "resource", &mut body)?;
    let current = world.get(&path)?.clone();
    if let Some(n) = str_field(&body, "name")
        && n != f
    {
        return Err(ApiError::invalid_field(
            "resource.name",
            n,
            "The name of a firewall cannot be changed.",
        ));
    }
    let mut merged = current.clone();
    for (k, v) in body.as_object().cloned().unwrap_or_default() {
        obj(&mut merged).insert(k, v);
    }
    if str_field(&merged, "network") != str_field(&current, "network") {
        let n = str_field(&body, "network").unwrap_or_default();
        if url(&resolve_ref(n, p, "global", "networks"))
            != str_field(&current, "network").unwrap_or_default()
        {
            return Err(ApiError::invalid_field(
                "resource.network",
                n,
                "The network of a firewall cannot be changed.",
            ));
        }
    }
    check_firewall(world, p, &mut merged)?;
    mutate(world, ctx, p, &Scope::Global, "patch", &path.clone(), |w| {
        w.resources.insert(path.clone(), merged);
        Ok(Ok(()))
    })
}
