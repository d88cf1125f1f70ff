//! Addresses: internal ones inside their subnetwork, external ones from a pool; IPs taken and free.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::{
    Answer, Ctx, body_of, check_labels, insert_body, mutate, nics, parse_ip, region_of, stamp, url,
    usable,
};
use crate::emulator::api_error::{ApiError, OpError};
use crate::emulator::schema::{self, Api};
use crate::emulator::world::{
    Scope, World, fingerprint, obj, resolve_ref, same_fingerprint, str_field,
};
use crate::net::Ipv4Net;

/// Internal IPs taken in a network: reserved internal addresses and instances' primary IPs.
pub(super) fn taken_ips(world: &World, network_url: &str) -> BTreeSet<Ipv4Addr> {
    let mut out = BTreeSet::new();
    for (k, v) in &world.resources {
        if k.contains("/addresses/")
            && str_field(v, "network") == Some(network_url)
            && let Some(ip) = str_field(v, "address").and_then(|s| s.parse().ok())
        {
            out.insert(ip);
        }
        if k.contains("/instances/") {
            for n in nics(v) {
                if str_field(n, "network") == Some(network_url)
                    && let Some(ip) = str_field(n, "networkIP").and_then(|s| s.parse().ok())
                {
                    out.insert(ip);
                }
            }
        }
    }
    out
}

pub(super) fn free_ip(world: &World, network_url: &str, range: Ipv4Net) -> Option<Ipv4Addr> {
    let taken = taken_ips(world, network_url);
    let first = u32::from(range.addr());
    let size = 1u64 << (32 - u32::from(range.prefix()));
    (2..size.saturating_sub(2))
        .filter_map(|i| u32::try_from(u64::from(first) + i).ok())
        .map(Ipv4Addr::from)
        .find(|ip| !taken.contains(ip))
}

pub(super) fn next_external_ip(world: &mut World) -> String {
    world.next_external_ip += 1;
    let n = world.next_external_ip;
    Ipv4Addr::from(u32::from(Ipv4Addr::new(34, 76, 0, 0)).wrapping_add(n)).to_string()
}

pub(super) struct Subnet {
    pub(super) path: String,
    pub(super) network_url: String,
    pub(super) range: Ipv4Net,
}

pub(super) fn subnet(
    world: &World,
    reference: &str,
    project: &str,
    region: &str,
    field: &str,
) -> Result<Subnet, ApiError> {
    let path = resolve_ref(
        reference,
        project,
        &format!("regions/{region}"),
        "subnetworks",
    );
    let sub = world.get(&path)?;
    super::xpn::check_subnet_use(world, project, &path, field, reference)?;
    if !path.contains(&format!("/regions/{region}/")) {
        return Err(ApiError::invalid_field(
            field,
            reference,
            &format!("The subnetwork must be in region '{region}'."),
        ));
    }
    let range = str_field(sub, "ipCidrRange")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            ApiError::invalid_field(field, reference, "The subnetwork has no IPv4 range.")
        })?;
    Ok(Subnet {
        network_url: str_field(sub, "network").unwrap_or_default().to_string(),
        path,
        range,
    })
}

pub(super) fn insert_address(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    r: &str,
    body: Option<Value>,
) -> Answer {
    region_of(p, r)?;
    let (mut body, path) = insert_body(world, "Address", "compute.addresses.insert", body, |n| {
        format!("projects/{p}/regions/{r}/addresses/{n}")
    })?;
    check_labels(body.get("labels"))?;
    let internal = str_field(&body, "addressType") == Some("INTERNAL");
    let mut sub = None;
    let mut wanted = None;
    if internal {
        let reference = str_field(&body, "subnetwork").ok_or_else(|| {
            ApiError::invalid_field(
                "resource.subnetwork",
                "",
                "An internal address needs a subnetwork.",
            )
        })?;
        let s = subnet(world, reference, p, r, "resource.subnetwork")?;
        if let Some(a) = str_field(&body, "address") {
            let ip = parse_ip("resource.address", a)?;
            if !usable(s.range, ip) {
                return Err(ApiError::invalid(format!(
                    "Requested internal IP address {ip} is not a usable address of the subnetwork range {} of '{}'.",
                    s.range, s.path
                )));
            }
            wanted = Some(ip);
        }
        sub = Some(s);
    } else if let Some(a) = str_field(&body, "address") {
        parse_ip("resource.address", a)?;
    }
    mutate(
        world,
        ctx,
        p,
        &Scope::Region(r.to_string()),
        "insert",
        &path.clone(),
        |w| {
            let ip = match (&sub, wanted) {
                (Some(s), Some(ip)) => {
                    if taken_ips(w, &s.network_url).contains(&ip) {
                        return Ok(Err(OpError::ip_in_use(format!(
                            "IP '{ip}' is already being used by another resource."
                        ))));
                    }
                    ip.to_string()
                }
                (Some(s), None) => match free_ip(w, &s.network_url, s.range) {
                    Some(ip) => ip.to_string(),
                    None => {
                        return Ok(Err(OpError::new(
                            400,
                            "IP_SPACE_EXHAUSTED",
                            format!("The subnetwork '{}' has no free address.", s.path),
                        )));
                    }
                },
                (None, _) => match str_field(&body, "address") {
                    Some(a) => a.to_string(),
                    None => next_external_ip(w),
                },
            };
            stamp(w, ctx, &mut body, "compute#address", &path);
            let fp = fingerprint(w, &body);
            let o = obj(&mut body);
            o.insert("address".into(), json!(ip));
            o.insert(
                "region".into(),
                json!(url(&format!("projects/{p}/regions/{r}"))),
            );
            o.insert("status".into(), json!("RESERVED"));
            o.insert("labelFingerprint".into(), json!(fp));
            o.entry("ipVersion").or_insert(json!("IPV4"));
            if let Some(s) = &sub {
                o.insert("addressType".into(), json!("INTERNAL"));
                o.insert("subnetwork".into(), json!(url(&s.path)));
                o.insert("network".into(), json!(s.network_url));
                o.entry("purpose").or_insert(json!("GCE_ENDPOINT"));
                o.insert("prefixLength".into(), json!(32));
            } else {
                o.insert("addressType".into(), json!("EXTERNAL"));
                o.entry("networkTier").or_insert(json!("PREMIUM"));
            }
            w.resources.insert(path.clone(), body);
            Ok(Ok(()))
        },
    )
}

/// A deleted resource (a VM, a forwarding rule) gives back the addresses it used: compute.v1.json,
/// `Address.status`: "An address that is RESERVED is currently reserved and available to use. An IN_USE
/// address is currently being used by another resource".
pub(super) fn release_addresses(w: &mut World, user_url: &str) {
    for (k, v) in &mut w.resources {
        let used = k.contains("/addresses/")
            && v.get("users")
                .and_then(Value::as_array)
                .is_some_and(|u| u.iter().any(|x| x.as_str() == Some(user_url)));
        if used {
            let o = obj(v);
            o.remove("users");
            o.insert("status".into(), json!("RESERVED"));
        }
    }
}

pub(super) fn delete_address(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    r: &str,
    a: &str,
) -> Answer {
    let path = format!("projects/{p}/regions/{r}/addresses/{a}");
    world.get(&path)?;
    mutate(
        world,
        ctx,
        p,
        &Scope::Region(r.to_string()),
        "delete",
        &path.clone(),
        |w| {
            let addr = w.get(&path).cloned().unwrap_or_default();
            if str_field(&addr, "status") == Some("IN_USE") {
                let users: Vec<String> = addr
                    .get("users")
                    .and_then(Value::as_array)
                    .map(|u| {
                        u.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                return Ok(Err(OpError::in_use(format!(
                    "The address resource '{path}' is already being used by '{}'",
                    users.join("', '")
                ))));
            }
            w.resources.remove(&path);
            Ok(Ok(()))
        },
    )
}

pub(super) fn set_address_labels(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    r: &str,
    a: &str,
    body: Option<Value>,
) -> Answer {
    let path = format!("projects/{p}/regions/{r}/addresses/{a}");
    let mut body = body_of(body);
    schema::validate(
        Api::Compute,
        "RegionSetLabelsRequest",
        None,
        "resource",
        &mut body,
    )?;
    let current = world.get(&path)?.clone();
    check_labels(body.get("labels"))?;
    check_fingerprint(
        &current,
        "labelFingerprint",
        body.get("labelFingerprint"),
        "Labels fingerprint either invalid or resource labels have changed",
    )?;
    mutate(
        world,
        ctx,
        p,
        &Scope::Region(r.to_string()),
        "setLabels",
        &path.clone(),
        |w| {
            let fp = fingerprint(w, &body);
            if let Some(v) = w.resources.get_mut(&path) {
                let o = obj(v);
                o.insert(
                    "labels".into(),
                    body.get("labels").cloned().unwrap_or_else(|| json!({})),
                );
                o.insert("labelFingerprint".into(), json!(fp));
            }
            Ok(Ok(()))
        },
    )
}

pub(super) fn check_fingerprint(
    current: &Value,
    field: &str,
    given: Option<&Value>,
    message: &str,
) -> Result<(), ApiError> {
    let cur = field
        .split('.')
        .try_fold(current, |v, k| v.get(k))
        .and_then(Value::as_str)
        .unwrap_or_default();
    match given.and_then(Value::as_str) {
        Some(g) if same_fingerprint(g, cur) => Ok(()),
        _ => Err(ApiError::condition_not_met(message)),
    }
}
