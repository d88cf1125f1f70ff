//! Networks and subnetworks, with the routes Google creates for them.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::{Answer, Ctx, insert_body, mutate, nics, parse_net, region_of, stamp, url};
use crate::emulator::api_error::{ApiError, OpError};
use crate::emulator::catalog;
use crate::emulator::world::{
    Scope, World, fingerprint, hash_hex, last_segment, obj, resolve_ref, str_field,
};
use crate::net::Ipv4Net;

pub(crate) fn network_exists(world: &World, path: &str) -> Result<(), ApiError> {
    world.get(path).map(|_| ())
}

/// Creates a network with Google's default route (no checks: callers validated).
pub(crate) fn create_network(
    world: &mut World,
    ctx: &Ctx<'_>,
    project: &str,
    mut body: Value,
    path: &str,
) {
    stamp(world, ctx, &mut body, "compute#network", path);
    let id = str_field(&body, "id").unwrap_or_default().to_string();
    let auto = body.get("autoCreateSubnetworks").and_then(Value::as_bool) == Some(true);
    let o = obj(&mut body);
    o.insert(
        "selfLinkWithId".into(),
        json!(url(&format!("projects/{project}/global/networks/{id}"))),
    );
    o.insert("autoCreateSubnetworks".into(), json!(auto));
    o.entry("mtu").or_insert(json!(1460));
    o.entry("routingConfig")
        .or_insert(json!({"routingMode": "REGIONAL"}));
    o.entry("networkFirewallPolicyEnforcementOrder")
        .or_insert(json!("AFTER_CLASSIC_FIREWALL"));
    o.insert("subnetworks".into(), json!([]));
    world.resources.insert(path.to_string(), body);
    let route = system_route_name(path, "0.0.0.0/0");
    let route_path = format!("projects/{project}/global/routes/{route}");
    let mut r = json!({
        "name": route,
        "description": "Default route to the Internet.",
        "network": url(path),
        "destRange": "0.0.0.0/0",
        "priority": 1000,
        "nextHopGateway": url(&format!("projects/{project}/global/gateways/default-internet-gateway")),
        "routeType": "STATIC",
    });
    stamp(world, ctx, &mut r, "compute#route", &route_path);
    world.resources.insert(route_path, r);
    if auto {
        for (i, (region, _)) in catalog::REGIONS.iter().enumerate() {
            let net = Ipv4Addr::new(10, 128 + 4 * u8::try_from(i).unwrap_or(0), 0, 0);
            let name = last_segment(path).to_string();
            let sub_path = format!("projects/{project}/regions/{region}/subnetworks/{name}");
            let sub =
                json!({"name": name, "network": url(path), "ipCidrRange": format!("{net}/20")});
            create_subnetwork(world, ctx, project, region, sub, &sub_path);
        }
    }
}

pub(super) fn system_route_name(network_path: &str, dest: &str) -> String {
    format!("default-route-{}", &hash_hex(&[network_path, dest])[..16])
}

pub(super) fn insert_network(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    body: Option<Value>,
) -> Answer {
    let (body, path) = insert_body(world, "Network", "compute.networks.insert", body, |n| {
        format!("projects/{p}/global/networks/{n}")
    })?;
    if body.get("IPv4Range").is_some() {
        return Err(ApiError::invalid_field(
            "resource.IPv4Range",
            "",
            "Legacy networks are not supported by the emulator.",
        ));
    }
    let target = path.clone();
    mutate(world, ctx, p, &Scope::Global, "insert", &target, |w| {
        create_network(w, ctx, p, body, &path);
        Ok(Ok(()))
    })
}

pub(super) fn delete_network(world: &mut World, ctx: &Ctx<'_>, p: &str, n: &str) -> Answer {
    let path = format!("projects/{p}/global/networks/{n}");
    world.get(&path)?;
    let net_url = url(&path);
    let user = world
        .resources
        .iter()
        .find(|(k, v)| {
            str_field(v, "network") == Some(net_url.as_str())
                && (k.contains("/subnetworks/")
                    || k.contains("/firewalls/")
                    || (k.contains("/routes/") && !is_system_route(v)))
        })
        .map(|(k, _)| k.clone());
    if let Some(user) = user {
        return Err(ApiError::in_use(format!(
            "The network resource '{path}' is already being used by '{user}'"
        )));
    }
    mutate(
        world,
        ctx,
        p,
        &Scope::Global,
        "delete",
        &path.clone(),
        |w| {
            w.resources.retain(|_, v| {
                !(str_field(v, "network") == Some(net_url.as_str()) && is_system_route(v))
            });
            w.resources.remove(&path);
            Ok(Ok(()))
        },
    )
}

pub(super) fn is_system_route(v: &Value) -> bool {
    str_field(v, "name").is_some_and(|n| n.starts_with("default-route-"))
        && (v.get("nextHopNetwork").is_some()
            || str_field(v, "description") == Some("Default route to the Internet."))
}

pub(crate) fn create_subnetwork(
    world: &mut World,
    ctx: &Ctx<'_>,
    project: &str,
    region: &str,
    mut body: Value,
    path: &str,
) {
    stamp(world, ctx, &mut body, "compute#subnetwork", path);
    let range = str_field(&body, "ipCidrRange")
        .unwrap_or_default()
        .to_string();
    let gateway = range
        .parse::<Ipv4Net>()
        .map(|n| Ipv4Addr::from(u32::from(n.addr()).wrapping_add(1)).to_string())
        .unwrap_or_default();
    let network = str_field(&body, "network").unwrap_or_default().to_string();
    let network_path = resolve_ref(&network, project, "global", "networks");
    let fp = fingerprint(world, &body);
    let o = obj(&mut body);
    o.insert("network".into(), json!(url(&network_path)));
    o.insert(
        "region".into(),
        json!(url(&format!("projects/{project}/regions/{region}"))),
    );
    o.insert("gatewayAddress".into(), json!(gateway));
    o.insert("fingerprint".into(), json!(fp));
    o.entry("privateIpGoogleAccess").or_insert(json!(false));
    o.entry("stackType").or_insert(json!("IPV4_ONLY"));
    o.entry("purpose").or_insert(json!("PRIVATE"));
    world.resources.insert(path.to_string(), body);
    if let Some(net) = world.resources.get_mut(&network_path)
        && let Some(Value::Array(subs)) = obj(net).get_mut("subnetworks")
    {
        subs.push(json!(url(path)));
    }
    let route = system_route_name(&network_path, path);
    let route_path = format!("projects/{project}/global/routes/{route}");
    let mut r = json!({
        "name": route,
        "description": format!("Default local route to the subnetwork {range}."),
        "network": url(&network_path),
        "destRange": range,
        "priority": 0,
        "nextHopNetwork": url(&network_path),
        "routeType": "SUBNET",
    });
    stamp(world, ctx, &mut r, "compute#route", &route_path);
    world.resources.insert(route_path, r);
}

pub(super) fn insert_subnetwork(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    r: &str,
    body: Option<Value>,
) -> Answer {
    region_of(p, r)?;
    let (body, path) = insert_body(
        world,
        "Subnetwork",
        "compute.subnetworks.insert",
        body,
        |n| format!("projects/{p}/regions/{r}/subnetworks/{n}"),
    )?;
    let network =
        str_field(&body, "network").ok_or_else(|| ApiError::required("resource.network"))?;
    let network_path = resolve_ref(network, p, "global", "networks");
    network_exists(world, &network_path)?;
    let range_s = str_field(&body, "ipCidrRange")
        .ok_or_else(|| ApiError::required("resource.ipCidrRange"))?;
    let range = parse_net("resource.ipCidrRange", range_s)?;
    if range.prefix() > 29 {
        return Err(ApiError::invalid_field(
            "resource.ipCidrRange",
            range_s,
            "The prefix length must be at most 29.",
        ));
    }
    let net_url = url(&network_path);
    for (k, v) in &world.resources {
        if k.contains("/subnetworks/") && str_field(v, "network") == Some(net_url.as_str()) {
            let other = str_field(v, "ipCidrRange").and_then(|s| s.parse::<Ipv4Net>().ok());
            if other.is_some_and(|o| o.overlaps(&range)) {
                return Err(ApiError::invalid(format!(
                    "Invalid IPCidrRange: {range_s} conflicts with existing subnetwork '{k}'."
                )));
            }
        }
    }
    mutate(
        world,
        ctx,
        p,
        &Scope::Region(r.to_string()),
        "insert",
        &path.clone(),
        |w| {
            create_subnetwork(w, ctx, p, r, body, &path);
            Ok(Ok(()))
        },
    )
}

pub(super) fn delete_subnetwork(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    r: &str,
    s: &str,
) -> Answer {
    let path = format!("projects/{p}/regions/{r}/subnetworks/{s}");
    let sub = world.get(&path)?.clone();
    let sub_url = url(&path);
    mutate(
        world,
        ctx,
        p,
        &Scope::Region(r.to_string()),
        "delete",
        &path.clone(),
        |w| {
            let user = w.resources.iter().find(|(k, v)| {
                (k.contains("/addresses/") && str_field(v, "subnetwork") == Some(sub_url.as_str()))
                    || (k.contains("/instances/")
                        && nics(v)
                            .iter()
                            .any(|n| str_field(n, "subnetwork") == Some(sub_url.as_str())))
            });
            if let Some((user, _)) = user {
                return Ok(Err(OpError::in_use(format!(
                    "The subnetwork resource '{path}' is already being used by '{user}'"
                ))));
            }
            let network = str_field(&sub, "network").unwrap_or_default().to_string();
            let network_path = resolve_ref(&network, p, "global", "networks");
            let route = system_route_name(&network_path, &path);
            w.resources
                .remove(&format!("projects/{p}/global/routes/{route}"));
            if let Some(net) = w.resources.get_mut(&network_path)
                && let Some(Value::Array(subs)) = obj(net).get_mut("subnetworks")
            {
                subs.retain(|u| u.as_str() != Some(sub_url.as_str()));
            }
            w.resources.remove(&path);
            Ok(Ok(()))
        },
    )
}
