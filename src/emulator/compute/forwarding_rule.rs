//! Regional forwarding rules of internal passthrough Network Load Balancers, and the `nextHopIlb` of a route.

use serde_json::{Map, Value, json};

use super::address::{Subnet, free_ip, release_addresses, subnet};
use super::{Answer, Ctx, insert_body, mutate, parse_ip, region_of, stamp, url, usable};
use crate::emulator::api_error::{ApiError, OpError};
use crate::emulator::org_policy;
use crate::emulator::world::{COMPUTE_URL, Scope, World, obj, resolve_ref, str_field};

pub(super) fn insert_forwarding_rule(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    r: &str,
    body: Option<Value>,
) -> Answer {
    region_of(p, r)?;
    let (mut body, path) = insert_body(
        world,
        "ForwardingRule",
        "compute.forwardingRules.insert",
        body,
        |n| format!("projects/{p}/regions/{r}/forwardingRules/{n}"),
    )?;
    let scheme = str_field(&body, "loadBalancingScheme").unwrap_or("EXTERNAL");
    org_policy::check_forwarding_rule_insert(ctx.policies, p, &path, scheme)?;
    if scheme != "INTERNAL" {
        return Err(ApiError::invalid_field(
            "resource.loadBalancingScheme",
            scheme,
            "The emulator serves internal passthrough Network Load Balancers only (INTERNAL).",
        ));
    }
    // compute.v1.json, ForwardingRule.backendService: "It is a required field for ... Internal passthrough
    // Network Load Balancers".
    let service = str_field(&body, "backendService")
        .ok_or_else(|| ApiError::required("resource.backendService"))?;
    let service_path = resolve_ref(service, p, &format!("regions/{r}"), "backendServices");
    let service_value = world.get(&service_path)?;
    if str_field(service_value, "loadBalancingScheme") != Some("INTERNAL") {
        return Err(ApiError::invalid_field(
            "resource.backendService",
            service,
            "The backend service's loadBalancingScheme must match the forwarding rule's.",
        ));
    }
    // compute.v1.json, ForwardingRule.subnetwork: "If the network specified is in auto subnet mode, this field
    // is optional. However, a subnetwork must be specified if the network is in custom subnet mode".
    let sub_ref = str_field(&body, "subnetwork")
        .ok_or_else(|| ApiError::required("resource.subnetwork"))?
        .to_string();
    let sub = subnet(world, &sub_ref, p, r, "resource.subnetwork")?;
    if let Some(n) = str_field(&body, "network")
        && url(&resolve_ref(n, p, "global", "networks")) != sub.network_url
    {
        return Err(ApiError::invalid_field(
            "resource.network",
            n,
            "The subnetwork does not belong to this network.",
        ));
    }
    let protocol = protocol_and_ports(&body)?;
    let (reserved, literal) = requested_ip(world, &body, &sub, p, r)?;
    mutate(
        world,
        ctx,
        p,
        &Scope::Region(r.to_string()),
        "insert",
        &path.clone(),
        |w| {
            let stored = Stored {
                path: &path,
                service_path: &service_path,
                sub: &sub,
                protocol: &protocol,
                reserved,
                literal,
            };
            Ok(store(w, ctx, p, r, &mut body, stored))
        },
    )
}

/// Deleting a rule releases its reserved address; a route whose `nextHopIlb` names the rule keeps it.
pub(super) fn delete_forwarding_rule(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    r: &str,
    n: &str,
) -> Answer {
    let path = format!("projects/{p}/regions/{r}/forwardingRules/{n}");
    world.get(&path)?;
    mutate(
        world,
        ctx,
        p,
        &Scope::Region(r.to_string()),
        "delete",
        &path.clone(),
        |w| {
            let rule_url = url(&path);
            let route = w
                .resources
                .iter()
                .find(|(k, v)| {
                    k.contains("/global/routes/")
                        && str_field(v, "nextHopIlb") == Some(rule_url.as_str())
                })
                .map(|(k, _)| k.clone());
            if let Some(route) = route {
                return Ok(Err(OpError::in_use(format!(
                    "The forwarding_rule resource '{path}' is already being used by '{route}'"
                ))));
            }
            release_addresses(w, &rule_url);
            w.resources.remove(&path);
            Ok(Ok(()))
        },
    )
}

/// The forwarding rule a `nextHopIlb` names (a URL, a partial path, or the rule's IP in `network`).
pub(super) fn ilb_rule<'a>(
    world: &'a World,
    p: &str,
    network_url: &str,
    next_hop: &str,
) -> Option<(String, &'a Value)> {
    if let Ok(ip) = next_hop.parse::<std::net::Ipv4Addr>() {
        let ip = ip.to_string();
        return world
            .resources
            .iter()
            .find(|(k, v)| {
                k.contains("/forwardingRules/")
                    && str_field(v, "network") == Some(network_url)
                    && str_field(v, "IPAddress") == Some(ip.as_str())
            })
            .map(|(k, v)| (k.clone(), v));
    }
    let path = resolve_ref(next_hop, p, "regions/-", "forwardingRules");
    world
        .resources
        .get(path.strip_prefix(COMPUTE_URL).unwrap_or(&path))
        .map(|v| (path.clone(), v))
}

/// Validates a route's `nextHopIlb` (compute.v1.json, Route.nextHopIlb: "The URL to a forwarding rule of type
/// loadBalancingScheme=INTERNAL that should handle matching packets or the IP address of the forwarding
/// Rule"): the rule must exist, be INTERNAL and be in the route's network ("Each internal passthrough Network
/// Load Balancer operates within a single VPC network",
/// https://cloud.google.com/load-balancing/docs/internal/ilb-next-hop-overview; peered networks are not
/// emulated). A URL is stored in full; an IP stays an IP, as Google shows it.
pub(super) fn check_next_hop_ilb(
    world: &World,
    p: &str,
    route: &mut Map<String, Value>,
    network_url: &str,
) -> Result<(), ApiError> {
    let given = route
        .get("nextHopIlb")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let is_ip = given.parse::<std::net::Ipv4Addr>().is_ok();
    if !is_ip && given.contains('.') {
        parse_ip("resource.nextHopIlb", &given)?;
    }
    let Some((path, rule)) = ilb_rule(world, p, network_url, &given) else {
        return Err(if is_ip {
            ApiError::invalid_field(
                "resource.nextHopIlb",
                &given,
                "No INTERNAL forwarding rule of the route's network has this IP address.",
            )
        } else {
            ApiError::not_found(&resolve_ref(&given, p, "regions/-", "forwardingRules"))
        });
    };
    if str_field(rule, "loadBalancingScheme") != Some("INTERNAL") {
        return Err(ApiError::invalid_field(
            "resource.nextHopIlb",
            &given,
            "The forwarding rule must have loadBalancingScheme=INTERNAL.",
        ));
    }
    if str_field(rule, "network") != Some(network_url) {
        return Err(ApiError::invalid_field(
            "resource.nextHopIlb",
            &given,
            "The forwarding rule must be in the route's network.",
        ));
    }
    if !is_ip {
        route.insert("nextHopIlb".into(), json!(url(&path)));
    }
    Ok(())
}

/// The protocol, and the ports an internal passthrough rule may take (compute.v1.json, ForwardingRule.ports:
/// "The ports, portRange, and allPorts fields are mutually exclusive"; "You can specify a list of up to five
/// ports").
fn protocol_and_ports(body: &Value) -> Result<String, ApiError> {
    let protocol = str_field(body, "IPProtocol").unwrap_or("TCP").to_string();
    if !["TCP", "UDP", "L3_DEFAULT"].contains(&protocol.as_str()) {
        return Err(ApiError::invalid_field(
            "resource.IPProtocol",
            &protocol,
            "An internal passthrough forwarding rule takes TCP, UDP or L3_DEFAULT.",
        ));
    }
    let all_ports = body.get("allPorts") == Some(&json!(true));
    let ports = body
        .get("ports")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if (all_ports && ports > 0) || body.get("portRange").is_some() || ports > 5 {
        return Err(ApiError::invalid(
            "Invalid value for field 'resource': ports (at most five), portRange and allPorts are mutually exclusive; an internal passthrough rule takes ports or allPorts.",
        ));
    }
    if !all_ports && ports == 0 && protocol != "L3_DEFAULT" {
        return Err(ApiError::invalid(
            "Invalid value for field 'resource': an internal passthrough forwarding rule needs ports or allPorts.",
        ));
    }
    Ok(protocol)
}

/// `IPAddress`: a reserved address (URL or name), an IP literal, or none for an ephemeral IP.
fn requested_ip(
    world: &World,
    body: &Value,
    sub: &Subnet,
    p: &str,
    r: &str,
) -> Result<(Option<String>, Option<std::net::Ipv4Addr>), ApiError> {
    let wanted = str_field(body, "IPAddress").map(str::to_string);
    let mut reserved = None;
    let mut literal = None;
    if let Some(a) = &wanted {
        if let Ok(ip) = a.parse::<std::net::Ipv4Addr>() {
            if !usable(sub.range, ip) {
                return Err(ApiError::invalid_field(
                    "resource.IPAddress",
                    a,
                    &format!("The IP address is not a usable address of {}.", sub.range),
                ));
            }
            literal = Some(ip);
        } else {
            let address = resolve_ref(a, p, &format!("regions/{r}"), "addresses");
            let found = world.get(&address)?;
            if str_field(found, "subnetwork") != Some(url(&sub.path).as_str()) {
                return Err(ApiError::invalid_field(
                    "resource.IPAddress",
                    a,
                    "The address must be an internal address of the forwarding rule's subnetwork.",
                ));
            }
            reserved = Some(address);
        }
    }
    Ok((reserved, literal))
}

/// What the insert's operation stores, once the request was judged.
struct Stored<'a> {
    path: &'a str,
    service_path: &'a str,
    sub: &'a Subnet,
    protocol: &'a str,
    reserved: Option<String>,
    literal: Option<std::net::Ipv4Addr>,
}

/// The insert's operation: takes the IP (a reserved address must be free), stores the rule, marks the address
/// in use.
fn store(
    w: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    r: &str,
    body: &mut Value,
    s: Stored<'_>,
) -> Result<(), OpError> {
    let Stored {
        path,
        service_path,
        sub,
        protocol,
        reserved,
        literal,
    } = s;
    // A reserved address given by IP is that address.
    let reserved = reserved.or_else(|| {
        let ip = literal?.to_string();
        w.children(&format!("projects/{p}/regions/{r}/addresses/"))
            .find(|(_, v)| {
                str_field(v, "address") == Some(ip.as_str())
                    && str_field(v, "subnetwork") == Some(url(&sub.path).as_str())
            })
            .map(|(k, _)| k.clone())
    });
    let ip = match (&reserved, literal) {
        (Some(a), _) => {
            let v = w.get(a).cloned().unwrap_or_default();
            if str_field(&v, "status") == Some("IN_USE") {
                return Err(OpError::ip_in_use(format!(
                    "IP '{}' is already being used by another resource: the address '{a}' is in use.",
                    str_field(&v, "address").unwrap_or_default()
                )));
            }
            str_field(&v, "address").unwrap_or_default().to_string()
        }
        (None, Some(ip)) => ip.to_string(),
        (None, None) => match free_ip(w, &sub.network_url, sub.range) {
            Some(ip) => ip.to_string(),
            None => {
                return Err(OpError::new(
                    400,
                    "IP_SPACE_EXHAUSTED",
                    format!("The subnetwork '{}' has no free address.", sub.path),
                ));
            }
        },
    };
    stamp(w, ctx, body, "compute#forwardingRule", path);
    let o = obj(body);
    o.insert("IPAddress".into(), json!(ip));
    o.insert("IPProtocol".into(), json!(protocol));
    o.insert("backendService".into(), json!(url(service_path)));
    o.insert("subnetwork".into(), json!(url(&sub.path)));
    o.insert("network".into(), json!(sub.network_url));
    o.insert(
        "region".into(),
        json!(url(&format!("projects/{p}/regions/{r}"))),
    );
    o.insert("loadBalancingScheme".into(), json!("INTERNAL"));
    o.entry("networkTier").or_insert(json!("PREMIUM"));
    o.entry("ipVersion").or_insert(json!("IPV4"));
    w.resources.insert(path.to_string(), body.clone());
    if let Some(a) = reserved
        && let Some(addr) = w.resources.get_mut(&a)
    {
        let o = obj(addr);
        o.insert("status".into(), json!("IN_USE"));
        o.insert("users".into(), json!([url(path)]));
    }
    Ok(())
}
