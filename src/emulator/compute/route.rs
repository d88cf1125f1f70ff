//! Routes: one next hop, which must lie in the route's network.

use serde_json::{Value, json};

use super::network::network_exists;
use super::{Answer, Ctx, delete_simple, insert_body, mutate, parse_ip, parse_net, stamp, url};
use crate::emulator::api_error::ApiError;
use crate::emulator::world::{Scope, World, obj, resolve_ref, str_field};
use crate::net::Ipv4Net;

pub(super) fn insert_route(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    body: Option<Value>,
) -> Answer {
    let (mut body, path) = insert_body(world, "Route", "compute.routes.insert", body, |n| {
        format!("projects/{p}/global/routes/{n}")
    })?;
    let network = str_field(&body, "network").unwrap_or_default();
    let network_path = resolve_ref(network, p, "global", "networks");
    network_exists(world, &network_path)?;
    let net_url = url(&network_path);
    let dest = str_field(&body, "destRange").unwrap_or_default();
    parse_net("resource.destRange", dest)?;
    let hops: Vec<&str> = [
        "nextHopIp",
        "nextHopInstance",
        "nextHopGateway",
        "nextHopIlb",
        "nextHopVpnTunnel",
        "nextHopNetwork",
    ]
    .into_iter()
    .filter(|k| body.get(*k).is_some())
    .collect();
    if hops.len() != 1 {
        return Err(ApiError::invalid(
            "Invalid value for field 'resource': exactly one next hop must be specified.",
        ));
    }
    let o = obj(&mut body);
    match hops[0] {
        "nextHopIp" => {
            let s = o
                .get("nextHopIp")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let ip = parse_ip("resource.nextHopIp", &s)?;
            let inside = world.resources.iter().any(|(k, v)| {
                k.contains("/subnetworks/")
                    && str_field(v, "network") == Some(net_url.as_str())
                    && str_field(v, "ipCidrRange")
                        .and_then(|r| r.parse::<Ipv4Net>().ok())
                        .is_some_and(|r| r.contains(ip))
            });
            if !inside {
                return Err(ApiError::invalid_field(
                    "resource.nextHopIp",
                    &s,
                    "The next hop IP must lie in a subnetwork of the route's network.",
                ));
            }
        }
        "nextHopInstance" => {
            let s = o
                .get("nextHopInstance")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let inst = resolve_ref(&s, p, "zones/-", "instances");
            world.get(&inst)?;
            o.insert("nextHopInstance".into(), json!(url(&inst)));
        }
        "nextHopGateway" => {
            let s = o
                .get("nextHopGateway")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let gw = resolve_ref(&s, p, "global", "gateways");
            if gw != format!("projects/{p}/global/gateways/default-internet-gateway") {
                return Err(ApiError::invalid_field(
                    "resource.nextHopGateway",
                    &s,
                    "Only the default internet gateway is supported.",
                ));
            }
            o.insert("nextHopGateway".into(), json!(url(&gw)));
        }
        "nextHopIlb" => super::forwarding_rule::check_next_hop_ilb(world, p, o, &net_url)?,
        other => {
            return Err(ApiError::invalid_field(
                &format!("resource.{other}"),
                "",
                "This next hop is not supported by the emulator.",
            ));
        }
    }
    o.insert("network".into(), json!(net_url));
    o.insert("routeType".into(), json!("STATIC"));
    mutate(
        world,
        ctx,
        p,
        &Scope::Global,
        "insert",
        &path.clone(),
        |w| {
            stamp(w, ctx, &mut body, "compute#route", &path);
            w.resources.insert(path.clone(), body);
            Ok(Ok(()))
        },
    )
}

pub(super) fn delete_route(world: &mut World, ctx: &Ctx<'_>, p: &str, r: &str) -> Answer {
    let path = format!("projects/{p}/global/routes/{r}");
    let route = world.get(&path)?;
    if route.get("nextHopNetwork").is_some() {
        return Err(ApiError::in_use(format!(
            "The local route '{path}' belongs to a subnetwork and cannot be deleted while the subnetwork exists."
        )));
    }
    delete_simple(world, ctx, p, &path, &Scope::Global)
}
