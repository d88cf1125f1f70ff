//! The emulator's own endpoints under `/_emulator/`, outside Google's API, for tests and try-outs:
//!
//! - `GET /_emulator/next-hops?project=P&network=N&destination=IP&tag=T` (`tag` may be repeated as a
//!   comma-separated list): `{"routes": [names], "instances": [{"name", "zone", "healthy"}], "at_ms": T}`,
//!   the VMs that would carry a new connection from a VM with those tags to IP now, and the emulator's clock.
//! - `POST /_emulator/instances/P/ZONE/NAME:fail`: that VM's health endpoint fails from now until the VM is
//!   recreated. Answers `{"failed_at_ms": T}`.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::backend_service::{backend_groups, vm_healthy};
use super::forwarding_rule::ilb_rule;
use super::mig_loop::members;
use super::{Answer, Ctx, Reply, url};
use crate::emulator::api_error::ApiError;
use crate::emulator::health::Endpoint;
use crate::emulator::world::{COMPUTE_URL, World, last_segment, resolve_ref, str_field, strings};
use crate::net::Ipv4Net;
use crate::routing::{self, Route};

/// `rest` is the path after `/_emulator/`.
pub(crate) fn emulator_endpoint(
    world: &mut World,
    ctx: &Ctx<'_>,
    method: &str,
    rest: &[&str],
) -> Answer {
    match (method, rest) {
        ("GET", ["next-hops"]) => next_hops(world, ctx),
        ("POST", ["instances", p, z, last]) if last.ends_with(":fail") => {
            let name = last.trim_end_matches(":fail");
            let path = format!("projects/{p}/zones/{z}/instances/{name}");
            world.get(&path)?;
            world.ha.failing.entry(path).or_insert(ctx.now);
            Ok(Reply {
                body: json!({"failed_at_ms": ctx.now}),
                mutated: true,
                wait: None,
            })
        }
        _ => Err(ApiError::method_not_found(
            method,
            &format!("/_emulator/{}", rest.join("/")),
        )),
    }
}

fn query<'a>(ctx: &'a Ctx<'_>, key: &str) -> Result<&'a str, ApiError> {
    ctx.q(key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::required(key))
}

fn next_hops(world: &World, ctx: &Ctx<'_>) -> Answer {
    let p = query(ctx, "project")?;
    let network = query(ctx, "network")?;
    let destination = query(ctx, "destination")?;
    let dest: Ipv4Addr = destination.parse().map_err(|_| {
        ApiError::invalid_field("destination", destination, "Must be an IPv4 address.")
    })?;
    let tags: Vec<&str> = ctx
        .q("tag")
        .unwrap_or_default()
        .split(',')
        .filter(|t| !t.is_empty())
        .collect();
    let net_path = resolve_ref(network, p, "global", "networks");
    world.get(&net_path)?;
    let net_url = url(&net_path);
    let routes = routes_of_network(world, p, &net_url);
    let winners = routing::select(&routes, dest, &tags);
    let mut instances = Vec::new();
    for route in &winners {
        for (path, healthy) in carriers(world, ctx, p, &net_url, &route.next_hop) {
            let vm = vm(&path, healthy);
            if !instances.contains(&vm) {
                instances.push(vm);
            }
        }
    }
    Ok(Reply::read(json!({
        "routes": winners.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        "instances": instances,
        "at_ms": ctx.now,
    })))
}

/// The routes of the network at `net_url` (in project `p`) as route selection sees them, each with its
/// stored body as the next hop.
pub(crate) fn routes_of_network(world: &World, p: &str, net_url: &str) -> Vec<Route<Value>> {
    world
        .children(&format!("projects/{p}/global/routes/"))
        .filter(|(_, v)| str_field(v, "network") == Some(net_url))
        .filter_map(|(_, v)| {
            Some(Route {
                name: str_field(v, "name")?.to_string(),
                dest: str_field(v, "destRange")?.parse::<Ipv4Net>().ok()?,
                priority: v
                    .get("priority")
                    .and_then(Value::as_u64)
                    .and_then(|x| u32::try_from(x).ok())
                    .unwrap_or(1000),
                tags: strings(v.get("tags")),
                next_hop: v.clone(),
            })
        })
        .collect()
}

fn vm(instance: &str, healthy: bool) -> Value {
    let zone = instance.split('/').nth(3).unwrap_or_default();
    json!({"name": last_segment(instance), "zone": zone, "healthy": healthy})
}

/// The VMs a route's next hop sends new connections to: each VM's path, and whether it is healthy.
pub(crate) fn carriers(
    world: &World,
    ctx: &Ctx<'_>,
    p: &str,
    net_url: &str,
    route: &Value,
) -> Vec<(String, bool)> {
    // Without a load balancer, "healthy" is whether the VM's health endpoint answers now.
    let answers = |instance: &str| {
        world.power.get(instance).is_some_and(|power| {
            Endpoint::of(power, ctx.timing, world.ha.failing.get(instance).copied())
                .answers(ctx.now)
        })
    };
    if let Some(i) = str_field(route, "nextHopInstance") {
        let path = i.strip_prefix(COMPUTE_URL).unwrap_or(i).to_string();
        return if world.resources.contains_key(&path) {
            vec![(path.clone(), answers(&path))]
        } else {
            Vec::new()
        };
    }
    if let Some(ip) = str_field(route, "nextHopIp") {
        return world
            .resources
            .iter()
            .filter(|(k, _)| k.contains("/instances/"))
            .filter(|(_, v)| {
                v.get("networkInterfaces")
                    .and_then(Value::as_array)
                    .is_some_and(|nics| {
                        nics.iter().any(|n| {
                            str_field(n, "network") == Some(net_url)
                                && str_field(n, "networkIP") == Some(ip)
                        })
                    })
            })
            .map(|(k, _)| (k.clone(), answers(k)))
            .collect();
    }
    if let Some(ilb) = str_field(route, "nextHopIlb") {
        let Some((_, rule)) = ilb_rule(world, p, net_url, ilb) else {
            return Vec::new();
        };
        let Some(service) = str_field(rule, "backendService").and_then(|s| {
            world
                .resources
                .get(s.strip_prefix(COMPUTE_URL).unwrap_or(s))
        }) else {
            return Vec::new();
        };
        let all: Vec<(String, bool)> = backend_groups(service)
            .iter()
            .flat_map(|g| members(world, g))
            .map(|i| {
                let ok = vm_healthy(world, ctx, service, &i);
                (i, ok)
            })
            .collect();
        // "If you haven't configured failover, an internal passthrough Network Load Balancer distributes new
        // connections to its healthy backend VMs if at least one backend VM is healthy. When all backend VMs
        // are unhealthy, the load balancer distributes new connections among all backends as a last resort."
        // (https://cloud.google.com/load-balancing/docs/internal/int-netlb-traffic-distribution)
        let any_healthy = all.iter().any(|(_, ok)| *ok);
        return all
            .into_iter()
            .filter(|(_, ok)| *ok || !any_healthy)
            .collect();
    }
    Vec::new()
}
