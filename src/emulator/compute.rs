//! Compute Engine v1: `/compute/v1/projects/{project}/...`.
//!
//! Which errors are synchronous (HTTP error status) and which come back in the DONE operation follows one
//! rule: whatever can be judged from the request and the existence of what it names (schema, names, ranges,
//! fingerprints, notFound, alreadyExists, a network that still has subnetworks) is answered at once; conflicts
//! with how other resources *use* things (an IP already taken, an address in use, a natIP that is not a
//! reserved address of the instance's region, a subnetwork still in use) are accepted and fail in the operation.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use regex::Regex;
use serde_json::{Map, Value, json};

use super::api_error::{ApiError, OpError};
use super::catalog;
use super::filter::{Filter, page};
use super::schema::{self, Api};
use super::world::{
    COMPUTE_URL, OpSpec, Power, Scope, Timing, World, fingerprint, hash_hex, last_segment, obj,
    resolve_ref, rfc3339, same_fingerprint, str_field,
};
use crate::net::Ipv4Net;

/// What the server needs to answer a request.
pub(crate) struct Ctx<'a> {
    pub(crate) now: i64,
    pub(crate) timing: Timing,
    pub(crate) query: &'a BTreeMap<String, String>,
}

impl Ctx<'_> {
    fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }
}

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) body: Value,
    pub(crate) mutated: bool,
    /// For `operations.wait`: the operation to wait for (Compute path, or GKE path when `gke`).
    pub(crate) wait: Option<String>,
}

impl Reply {
    pub(crate) fn read(body: Value) -> Self {
        Self {
            body,
            mutated: false,
            wait: None,
        }
    }
}

type Answer = Result<Reply, ApiError>;

fn name_re() -> &'static Regex {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        Regex::new("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$").unwrap_or_else(|_| unreachable!())
    })
}

pub(crate) fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    if name_re().is_match(name) {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            name,
            "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'",
        ))
    }
}

fn check_labels(labels: Option<&Value>) -> Result<(), ApiError> {
    static KEY: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    static VAL: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let key = KEY
        .get_or_init(|| Regex::new("^[a-z][-_a-z0-9]{0,62}$").unwrap_or_else(|_| unreachable!()));
    let val =
        VAL.get_or_init(|| Regex::new("^[-_a-z0-9]{0,63}$").unwrap_or_else(|_| unreachable!()));
    if let Some(Value::Object(m)) = labels {
        for (k, v) in m {
            let v = v.as_str().unwrap_or_default();
            if !key.is_match(k) || !val.is_match(v) {
                return Err(ApiError::invalid_field(
                    &format!("labels.{k}"),
                    v,
                    "Label keys must start with a lowercase letter; keys and values may contain only lowercase letters, digits, '-' and '_' and be at most 63 characters long.",
                ));
            }
        }
    }
    Ok(())
}

fn body_of(body: Option<Value>) -> Value {
    body.unwrap_or_else(|| json!({}))
}

fn parse_ip(field: &str, s: &str) -> Result<Ipv4Addr, ApiError> {
    s.parse::<Ipv4Addr>()
        .map_err(|_| ApiError::invalid_field(field, s, "Must be an IPv4 address."))
}

fn parse_net(field: &str, s: &str) -> Result<Ipv4Net, ApiError> {
    if !s.contains('/') {
        return Err(ApiError::invalid_field(
            field,
            s,
            "Must be a CIDR range a.b.c.d/n.",
        ));
    }
    s.parse::<Ipv4Net>()
        .map_err(|e| ApiError::invalid_field(field, s, &format!("Invalid IPv4 CIDR range: {e}.")))
}

/// The addresses of a subnetwork range an instance or address may take.
fn usable(net: Ipv4Net, ip: Ipv4Addr) -> bool {
    let first = u32::from(net.addr());
    let size = 1u64 << (32 - u32::from(net.prefix()));
    let last = u64::from(first) + size - 1;
    let x = u64::from(u32::from(ip));
    net.contains(ip) && x >= u64::from(first) + 2 && x + 2 <= last
}

fn url(path: &str) -> String {
    format!("{COMPUTE_URL}{path}")
}

/// Google's dispatcher: `rest` is the path after `projects/{project}/`.
pub(crate) fn handle(
    world: &mut World,
    ctx: &Ctx<'_>,
    method: &str,
    project: &str,
    rest: &[&str],
    body: Option<Value>,
) -> Answer {
    let p = project;
    if method != "GET"
        && rest.last() != Some(&"wait")
        && let Some(op) = ctx
            .q("requestId")
            .and_then(|rid| world.request_ids.get(&format!("{p}/{rid}")))
            .and_then(|op_path| world.operations.get(op_path))
    {
        return Ok(Reply::read(op.render(ctx.now)));
    }
    match (method, rest) {
        ("GET", ["regions"]) => list_of(
            ctx,
            &format!("projects/{p}/regions"),
            "compute#regionList",
            catalog::regions(p),
        ),
        ("GET", ["regions", r]) => {
            catalog_get(catalog::regions(p), r, &format!("projects/{p}/regions/{r}"))
        }
        ("GET", ["zones"]) => list_of(
            ctx,
            &format!("projects/{p}/zones"),
            "compute#zoneList",
            catalog::zones(p),
        ),
        ("GET", ["zones", z]) => {
            catalog_get(catalog::zones(p), z, &format!("projects/{p}/zones/{z}"))
        }
        ("GET", ["zones", z, "machineTypes"]) => {
            zone_region_of(p, z)?;
            list_of(
                ctx,
                &format!("projects/{p}/zones/{z}/machineTypes"),
                "compute#machineTypeList",
                catalog::machine_types(p, z),
            )
        }
        ("GET", ["zones", z, "machineTypes", m]) => {
            zone_region_of(p, z)?;
            catalog_get(
                catalog::machine_types(p, z),
                m,
                &format!("projects/{p}/zones/{z}/machineTypes/{m}"),
            )
        }

        ("GET", ["global", "networks"]) => list(
            world,
            ctx,
            &format!("projects/{p}/global/networks/"),
            "compute#networkList",
        ),
        ("POST", ["global", "networks"]) => insert_network(world, ctx, p, body),
        ("GET", ["global", "networks", n]) => {
            get(world, ctx, &format!("projects/{p}/global/networks/{n}"))
        }
        ("DELETE", ["global", "networks", n]) => delete_network(world, ctx, p, n),

        ("GET", ["regions", r, "subnetworks"]) => {
            region_of(p, r)?;
            list(
                world,
                ctx,
                &format!("projects/{p}/regions/{r}/subnetworks/"),
                "compute#subnetworkList",
            )
        }
        ("POST", ["regions", r, "subnetworks"]) => insert_subnetwork(world, ctx, p, r, body),
        ("GET", ["regions", r, "subnetworks", s]) => get(
            world,
            ctx,
            &format!("projects/{p}/regions/{r}/subnetworks/{s}"),
        ),
        ("DELETE", ["regions", r, "subnetworks", s]) => delete_subnetwork(world, ctx, p, r, s),
        ("GET", ["aggregated", "subnetworks"]) => aggregated(
            world,
            ctx,
            p,
            "subnetworks",
            "compute#subnetworkAggregatedList",
        ),

        ("GET", ["regions", r, "addresses"]) => {
            region_of(p, r)?;
            list(
                world,
                ctx,
                &format!("projects/{p}/regions/{r}/addresses/"),
                "compute#addressList",
            )
        }
        ("POST", ["regions", r, "addresses"]) => insert_address(world, ctx, p, r, body),
        ("GET", ["regions", r, "addresses", a]) => get(
            world,
            ctx,
            &format!("projects/{p}/regions/{r}/addresses/{a}"),
        ),
        ("DELETE", ["regions", r, "addresses", a]) => delete_address(world, ctx, p, r, a),
        ("POST", ["regions", r, "addresses", a, "setLabels"]) => {
            set_address_labels(world, ctx, p, r, a, body)
        }
        ("GET", ["aggregated", "addresses"]) => {
            aggregated(world, ctx, p, "addresses", "compute#addressAggregatedList")
        }

        ("GET", ["zones", z, "instances"]) => {
            zone_region_of(p, z)?;
            list(
                world,
                ctx,
                &format!("projects/{p}/zones/{z}/instances/"),
                "compute#instanceList",
            )
        }
        ("POST", ["zones", z, "instances"]) => insert_instance(world, ctx, p, z, body),
        ("GET", ["zones", z, "instances", i]) => {
            get(world, ctx, &format!("projects/{p}/zones/{z}/instances/{i}"))
        }
        ("DELETE", ["zones", z, "instances", i]) => delete_instance(world, ctx, p, z, i),
        (
            "POST",
            [
                "zones",
                z,
                "instances",
                i,
                verb @ ("setMetadata" | "setLabels" | "setTags"),
            ],
        ) => set_instance_field(world, ctx, p, z, i, verb, body),
        (
            "POST",
            [
                "zones",
                z,
                "instances",
                i,
                verb @ ("start" | "stop" | "reset"),
            ],
        ) => power(world, ctx, p, z, i, verb),
        ("GET", ["zones", z, "instances", i, "getGuestAttributes"]) => {
            guest_attributes(world, ctx, p, z, i)
        }
        ("GET", ["aggregated", "instances"]) => {
            aggregated(world, ctx, p, "instances", "compute#instanceAggregatedList")
        }

        ("GET", ["global", "routes"]) => list(
            world,
            ctx,
            &format!("projects/{p}/global/routes/"),
            "compute#routeList",
        ),
        ("POST", ["global", "routes"]) => insert_route(world, ctx, p, body),
        ("GET", ["global", "routes", r]) => {
            get(world, ctx, &format!("projects/{p}/global/routes/{r}"))
        }
        ("DELETE", ["global", "routes", r]) => delete_route(world, ctx, p, r),

        ("GET", ["global", "firewalls"]) => list(
            world,
            ctx,
            &format!("projects/{p}/global/firewalls/"),
            "compute#firewallList",
        ),
        ("POST", ["global", "firewalls"]) => insert_firewall(world, ctx, p, body),
        ("GET", ["global", "firewalls", f]) => {
            get(world, ctx, &format!("projects/{p}/global/firewalls/{f}"))
        }
        ("DELETE", ["global", "firewalls", f]) => delete_simple(
            world,
            ctx,
            p,
            &format!("projects/{p}/global/firewalls/{f}"),
            &Scope::Global,
        ),
        ("PATCH", ["global", "firewalls", f]) => patch_firewall(world, ctx, p, f, body),

        ("GET", ["global", "operations", o]) => {
            get_op(world, ctx, &format!("projects/{p}/global/operations/{o}"))
        }
        ("POST", ["global", "operations", o, "wait"]) => {
            wait_op(world, &format!("projects/{p}/global/operations/{o}"))
        }
        ("GET", ["regions", r, "operations", o]) => get_op(
            world,
            ctx,
            &format!("projects/{p}/regions/{r}/operations/{o}"),
        ),
        ("POST", ["regions", r, "operations", o, "wait"]) => {
            wait_op(world, &format!("projects/{p}/regions/{r}/operations/{o}"))
        }
        ("GET", ["zones", z, "operations", o]) => get_op(
            world,
            ctx,
            &format!("projects/{p}/zones/{z}/operations/{o}"),
        ),
        ("POST", ["zones", z, "operations", o, "wait"]) => {
            wait_op(world, &format!("projects/{p}/zones/{z}/operations/{o}"))
        }

        _ => Err(ApiError::method_not_found(
            method,
            &format!("/compute/v1/projects/{p}/{}", rest.join("/")),
        )),
    }
}

fn region_of(project: &str, region: &str) -> Result<(), ApiError> {
    if catalog::region_exists(region) {
        Ok(())
    } else {
        Err(ApiError::not_found(&format!(
            "projects/{project}/regions/{region}"
        )))
    }
}

fn zone_region_of(project: &str, zone: &str) -> Result<&'static str, ApiError> {
    catalog::zone_region(zone)
        .ok_or_else(|| ApiError::not_found(&format!("projects/{project}/zones/{zone}")))
}

fn catalog_get(items: Vec<(String, Value)>, name: &str, path: &str) -> Answer {
    items
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| Reply::read(v))
        .ok_or_else(|| ApiError::not_found(path))
}

fn list_body(kind: &str, id: &str, items: Vec<Value>, token: Option<String>) -> Value {
    let mut out = json!({"kind": kind, "id": id, "selfLink": url(id)});
    let o = obj(&mut out);
    if !items.is_empty() {
        o.insert("items".into(), Value::Array(items));
    }
    if let Some(t) = token {
        o.insert("nextPageToken".into(), json!(t));
    }
    out
}

fn list_of(ctx: &Ctx<'_>, id: &str, kind: &str, items: Vec<(String, Value)>) -> Answer {
    let filter = Filter::parse(ctx.q("filter").unwrap_or(""))?;
    let items: Vec<(String, Value)> = items
        .into_iter()
        .filter(|(_, v)| filter.matches(v))
        .collect();
    let (items, token) = page(items, ctx.q("maxResults"), ctx.q("pageToken"))?;
    Ok(Reply::read(list_body(kind, id, items, token)))
}

/// The resource as the API shows it (instances get their clock-derived status).
pub(crate) fn render(world: &World, ctx: &Ctx<'_>, path: &str) -> Option<Value> {
    let mut v = world.resources.get(path)?.clone();
    if let Some(power) = world.power.get(path) {
        obj(&mut v).insert(
            "status".into(),
            json!(power.status(ctx.now, ctx.timing.boot_ms)),
        );
    }
    Some(v)
}

fn get(world: &World, ctx: &Ctx<'_>, path: &str) -> Answer {
    render(world, ctx, path)
        .map(Reply::read)
        .ok_or_else(|| ApiError::not_found(path))
}

fn list(world: &World, ctx: &Ctx<'_>, prefix: &str, kind: &str) -> Answer {
    let items: Vec<(String, Value)> = world
        .children(prefix)
        .filter_map(|(k, _)| render(world, ctx, k).map(|v| (k.clone(), v)))
        .collect();
    list_of(ctx, prefix.trim_end_matches('/'), kind, items)
}

fn aggregated(world: &World, ctx: &Ctx<'_>, project: &str, kind: &str, list_kind: &str) -> Answer {
    let filter = Filter::parse(ctx.q("filter").unwrap_or(""))?;
    let items: Vec<(String, (String, Value))> = world
        .aggregated(project, kind)
        .filter_map(|(scope, k, _)| render(world, ctx, k).map(|v| (k.clone(), (scope, v))))
        .filter(|(_, (_, v))| filter.matches(v))
        .collect();
    let (items, token) = page(items, ctx.q("maxResults"), ctx.q("pageToken"))?;
    let mut scoped: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (scope, v) in items {
        scoped.entry(scope).or_default().push(v);
    }
    // Like Google, every scope appears; those without items carry a NO_RESULTS_ON_PAGE warning.
    let all_scopes: Vec<String> = if kind == "instances" {
        catalog::zones(project)
            .into_iter()
            .map(|(z, _)| format!("zones/{z}"))
            .collect()
    } else {
        catalog::REGIONS
            .iter()
            .map(|(r, _)| format!("regions/{r}"))
            .collect()
    };
    let mut out_items = Map::new();
    for scope in all_scopes {
        let entry = match scoped.remove(&scope) {
            Some(vs) => json!({ kind: vs }),
            None => json!({"warning": {
                "code": "NO_RESULTS_ON_PAGE",
                "message": format!("There are no results for scope '{scope}' on this page."),
                "data": [{"key": "scope", "value": scope}],
            }}),
        };
        out_items.insert(scope, entry);
    }
    for (scope, vs) in scoped {
        out_items.insert(scope, json!({ kind: vs }));
    }
    let scoped = out_items;
    let id = format!("projects/{project}/aggregated/{kind}");
    let mut out = json!({"kind": list_kind, "id": id, "selfLink": url(&id), "items": scoped});
    if let Some(t) = token {
        obj(&mut out).insert("nextPageToken".into(), json!(t));
    }
    Ok(Reply::read(out))
}

fn get_op(world: &World, ctx: &Ctx<'_>, path: &str) -> Answer {
    world
        .operations
        .get(path)
        .map(|op| Reply::read(op.render(ctx.now)))
        .ok_or_else(|| ApiError::not_found(path))
}

fn wait_op(world: &World, path: &str) -> Answer {
    if !world.operations.contains_key(path) {
        return Err(ApiError::not_found(path));
    }
    Ok(Reply {
        body: Value::Null,
        mutated: false,
        wait: Some(path.to_string()),
    })
}

/// A change: a synchronous error answers at once and records nothing; otherwise the change (or its failure)
/// is recorded in a new operation, under the request's requestId (which `handle` checks before anything).
fn mutate(
    world: &mut World,
    ctx: &Ctx<'_>,
    project: &str,
    scope: &Scope,
    op_type: &str,
    target: &str,
    change: impl FnOnce(&mut World) -> Result<Result<(), OpError>, ApiError>,
) -> Answer {
    let request_id = ctx.q("requestId").filter(|r| !r.is_empty());
    let target_id_before = world
        .resources
        .get(target)
        .and_then(|v| str_field(v, "id"))
        .map(str::to_string);
    let error = change(world)?.err();
    let target_id = world
        .resources
        .get(target)
        .and_then(|v| str_field(v, "id"))
        .map(str::to_string)
        .or(target_id_before);
    let op_path = world.record_op(
        OpSpec {
            project,
            scope,
            op_type,
            target,
            target_id,
            request_id,
            error,
        },
        ctx.now,
        ctx.timing,
    );
    let body = world
        .operations
        .get(&op_path)
        .map(|op| op.render(ctx.now))
        .unwrap_or_default();
    Ok(Reply {
        body,
        mutated: true,
        wait: None,
    })
}

/// Validates an insert body and its name; refuses a name that exists.
fn insert_body(
    world: &World,
    schema_name: &str,
    method: &str,
    body: Option<Value>,
    path_of: impl FnOnce(&str) -> String,
) -> Result<(Value, String), ApiError> {
    let mut body = body_of(body);
    schema::validate(
        Api::Compute,
        schema_name,
        Some(method),
        "resource",
        &mut body,
    )?;
    let name = str_field(&body, "name").unwrap_or_default().to_string();
    check_name("resource.name", &name)?;
    let path = path_of(&name);
    if world.resources.contains_key(&path) {
        return Err(ApiError::already_exists(&path));
    }
    Ok((body, path))
}

fn stamp(world: &mut World, ctx: &Ctx<'_>, body: &mut Value, kind: &str, path: &str) {
    let id = world.new_id();
    let o = obj(body);
    o.insert("kind".into(), json!(kind));
    o.insert("id".into(), json!(id));
    o.insert("creationTimestamp".into(), json!(rfc3339(ctx.now)));
    o.insert("selfLink".into(), json!(url(path)));
}

// ---------------------------------------------------------------------------------------------- networks

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

fn system_route_name(network_path: &str, dest: &str) -> String {
    format!("default-route-{}", &hash_hex(&[network_path, dest])[..16])
}

fn insert_network(world: &mut World, ctx: &Ctx<'_>, p: &str, body: Option<Value>) -> Answer {
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

fn delete_network(world: &mut World, ctx: &Ctx<'_>, p: &str, n: &str) -> Answer {
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

fn is_system_route(v: &Value) -> bool {
    str_field(v, "name").is_some_and(|n| n.starts_with("default-route-"))
        && (v.get("nextHopNetwork").is_some()
            || str_field(v, "description") == Some("Default route to the Internet."))
}

// ------------------------------------------------------------------------------------------- subnetworks

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

fn insert_subnetwork(
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

fn delete_subnetwork(world: &mut World, ctx: &Ctx<'_>, p: &str, r: &str, s: &str) -> Answer {
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

fn nics(v: &Value) -> Vec<&Value> {
    v.get("networkInterfaces")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

// --------------------------------------------------------------------------------------------- addresses

/// Internal IPs taken in a network: reserved internal addresses and instances' primary IPs.
fn taken_ips(world: &World, network_url: &str) -> BTreeSet<Ipv4Addr> {
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

fn free_ip(world: &World, network_url: &str, range: Ipv4Net) -> Option<Ipv4Addr> {
    let taken = taken_ips(world, network_url);
    let first = u32::from(range.addr());
    let size = 1u64 << (32 - u32::from(range.prefix()));
    (2..size.saturating_sub(2))
        .filter_map(|i| u32::try_from(u64::from(first) + i).ok())
        .map(Ipv4Addr::from)
        .find(|ip| !taken.contains(ip))
}

fn next_external_ip(world: &mut World) -> String {
    world.next_external_ip += 1;
    let n = world.next_external_ip;
    Ipv4Addr::from(u32::from(Ipv4Addr::new(34, 76, 0, 0)).wrapping_add(n)).to_string()
}

struct Subnet {
    path: String,
    network_url: String,
    range: Ipv4Net,
}

fn subnet(
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
    if !path.starts_with(&format!("projects/{project}/regions/{region}/")) {
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

fn insert_address(
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

fn delete_address(world: &mut World, ctx: &Ctx<'_>, p: &str, r: &str, a: &str) -> Answer {
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

fn set_address_labels(
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

fn check_fingerprint(
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

// --------------------------------------------------------------------------------------------- instances

/// How an instance will use reserved addresses: (address path, ...).
fn insert_instance(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    z: &str,
    body: Option<Value>,
) -> Answer {
    let region = zone_region_of(p, z)?;
    let (mut body, path) = insert_body(world, "Instance", "compute.instances.insert", body, |n| {
        format!("projects/{p}/zones/{z}/instances/{n}")
    })?;
    check_labels(body.get("labels"))?;
    let mt = str_field(&body, "machineType")
        .unwrap_or_default()
        .to_string();
    if mt.is_empty() {
        return Err(ApiError::invalid_field(
            "resource.machineType",
            "",
            "Machine type must be specified.",
        ));
    }
    let mt_path = resolve_ref(&mt, p, &format!("zones/{z}"), "machineTypes");
    let mt_ok = mt_path.starts_with(&format!("projects/{p}/zones/{z}/machineTypes/"))
        && catalog::MACHINE_TYPES
            .iter()
            .any(|(n, ..)| *n == last_segment(&mt_path));
    if !mt_ok {
        return Err(ApiError::not_found(&mt_path));
    }
    let has_boot_disk = body
        .get("disks")
        .and_then(Value::as_array)
        .is_some_and(|d| {
            d.iter()
                .any(|d| d.get("boot").and_then(Value::as_bool) == Some(true))
        });
    if !has_boot_disk {
        return Err(ApiError::invalid_field(
            "resource.disks",
            "",
            "Boot disk must be specified.",
        ));
    }
    let nic_values: Vec<Value> = body
        .get("networkInterfaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if nic_values.is_empty() {
        return Err(ApiError::invalid_field(
            "resource.networkInterfaces",
            "",
            "At least one network interface is required.",
        ));
    }
    // Resolve every interface synchronously; address conflicts are left to the operation.
    let mut plans = Vec::new();
    for (i, nic) in nic_values.iter().enumerate() {
        let field = format!("resource.networkInterfaces[{i}]");
        let sub = match (str_field(nic, "subnetwork"), str_field(nic, "network")) {
            (Some(s), _) => subnet(world, s, p, region, &format!("{field}.subnetwork"))?,
            (None, net) => {
                let net_path = resolve_ref(net.unwrap_or("default"), p, "global", "networks");
                network_exists(world, &net_path)?;
                let net_url = url(&net_path);
                let found = world
                    .children(&format!("projects/{p}/regions/{region}/subnetworks/"))
                    .find(|(_, v)| str_field(v, "network") == Some(net_url.as_str()))
                    .map(|(k, _)| k.clone())
                    .ok_or_else(|| {
                        ApiError::invalid_field(
                            &format!("{field}.network"),
                            &net_url,
                            &format!("The network has no subnetwork in region '{region}'."),
                        )
                    })?;
                subnet(world, &found, p, region, &format!("{field}.subnetwork"))?
            }
        };
        if let Some(n) = str_field(nic, "network")
            && url(&resolve_ref(n, p, "global", "networks")) != sub.network_url
        {
            return Err(ApiError::invalid_field(
                &format!("{field}.network"),
                n,
                "The subnetwork does not belong to this network.",
            ));
        }
        let ip = match str_field(nic, "networkIP") {
            Some(s) => {
                let ip = parse_ip(&format!("{field}.networkIP"), s)?;
                if !usable(sub.range, ip) {
                    return Err(ApiError::invalid_field(
                        &format!("{field}.networkIP"),
                        s,
                        &format!(
                            "The IP address is not a usable address of the subnetwork range {}.",
                            sub.range
                        ),
                    ));
                }
                Some(ip)
            }
            None => None,
        };
        let mut nat_ips = Vec::new();
        for (j, ac) in nic
            .get("accessConfigs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            match str_field(ac, "natIP") {
                Some(s) => nat_ips.push(Some(parse_ip(
                    &format!("{field}.accessConfigs[{j}].natIP"),
                    s,
                )?)),
                None => nat_ips.push(None),
            }
        }
        plans.push((sub, ip, nat_ips));
    }
    mutate(
        world,
        ctx,
        p,
        &Scope::Zone(z.to_string()),
        "insert",
        &path.clone(),
        |w| {
            let self_link = url(&path);
            let mut uses: Vec<String> = Vec::new();
            let mut out_nics = Vec::new();
            for (i, ((sub, ip, nat_ips), nic)) in plans.iter().zip(nic_values.iter()).enumerate() {
                let ip = match ip {
                    Some(ip) => {
                        let reserved = w
                            .aggregated(p, "addresses")
                            .find(|(_, _, a)| {
                                str_field(a, "subnetwork") == Some(url(&sub.path).as_str())
                                    && str_field(a, "address") == Some(ip.to_string().as_str())
                            })
                            .map(|(_, k, a)| (k.clone(), str_field(a, "status") == Some("IN_USE")));
                        match reserved {
                            Some((k, false)) => uses.push(k),
                            Some((k, true)) => {
                                return Ok(Err(OpError::ip_in_use(format!(
                                    "IP '{ip}' is already being used by another resource: the address '{k}' is in use."
                                ))));
                            }
                            None => {
                                if taken_ips(w, &sub.network_url).contains(ip) {
                                    return Ok(Err(OpError::ip_in_use(format!(
                                        "IP '{ip}' is already being used by another resource."
                                    ))));
                                }
                            }
                        }
                        *ip
                    }
                    None => match free_ip(w, &sub.network_url, sub.range) {
                        Some(ip) => ip,
                        None => {
                            return Ok(Err(OpError::new(
                                400,
                                "IP_SPACE_EXHAUSTED",
                                format!("The subnetwork '{}' has no free address.", sub.path),
                            )));
                        }
                    },
                };
                let mut acs = Vec::new();
                let given_acs = nic
                    .get("accessConfigs")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (j, (nat, ac)) in nat_ips.iter().zip(given_acs.iter()).enumerate() {
                    let nat_ip = match nat {
                        Some(nat) => {
                            let found = w
                                .aggregated(p, "addresses")
                                .find(|(_, _, a)| {
                                    str_field(a, "addressType") == Some("EXTERNAL")
                                        && str_field(a, "address") == Some(nat.to_string().as_str())
                                })
                                .map(|(scope, k, a)| {
                                    (scope, k.clone(), str_field(a, "status") == Some("IN_USE"))
                                });
                            match found {
                                None => {
                                    return Ok(Err(OpError::invalid(format!(
                                        "Invalid value for field 'resource.networkInterfaces[{i}].accessConfigs[{j}].natIP': '{nat}'. The specified external IP address '{nat}' is not reserved in project '{p}'."
                                    ))));
                                }
                                Some((scope, _, _)) if scope != format!("regions/{region}") => {
                                    return Ok(Err(OpError::invalid(format!(
                                        "Invalid value for field 'resource.networkInterfaces[{i}].accessConfigs[{j}].natIP': '{nat}'. The specified external IP address '{nat}' was not found in region '{region}'."
                                    ))));
                                }
                                Some((_, k, true)) => {
                                    return Ok(Err(OpError::ip_in_use(format!(
                                        "External IP address: {nat} is already in-use by the address '{k}'."
                                    ))));
                                }
                                Some((_, k, false)) => uses.push(k),
                            }
                            nat.to_string()
                        }
                        None => next_external_ip(w),
                    };
                    let mut ac = ac.clone();
                    let o = obj(&mut ac);
                    o.insert("kind".into(), json!("compute#accessConfig"));
                    o.entry("type").or_insert(json!("ONE_TO_ONE_NAT"));
                    o.entry("name").or_insert(json!("External NAT"));
                    o.entry("networkTier").or_insert(json!("PREMIUM"));
                    o.insert("natIP".into(), json!(nat_ip));
                    acs.push(ac);
                }
                let mut n = nic.clone();
                let fp = fingerprint(w, &n);
                let o = obj(&mut n);
                o.insert("kind".into(), json!("compute#networkInterface"));
                o.insert("name".into(), json!(format!("nic{i}")));
                o.insert("network".into(), json!(sub.network_url));
                o.insert("subnetwork".into(), json!(url(&sub.path)));
                o.insert("networkIP".into(), json!(ip.to_string()));
                o.insert("fingerprint".into(), json!(fp));
                o.entry("stackType").or_insert(json!("IPV4_ONLY"));
                if acs.is_empty() {
                    o.remove("accessConfigs");
                } else {
                    o.insert("accessConfigs".into(), Value::Array(acs));
                }
                out_nics.push(n);
            }
            stamp(w, ctx, &mut body, "compute#instance", &path);
            let meta_fp = fingerprint(w, &json!(["metadata", path]));
            let tags_fp = fingerprint(w, &json!(["tags", path]));
            let label_fp = fingerprint(w, &json!(["labels", path]));
            let inst_fp = fingerprint(w, &json!(["instance", path]));
            let o = obj(&mut body);
            o.insert("networkInterfaces".into(), Value::Array(out_nics));
            o.insert(
                "zone".into(),
                json!(url(&format!("projects/{p}/zones/{z}"))),
            );
            o.insert("machineType".into(), json!(url(&mt_path)));
            let mut metadata = o.get("metadata").cloned().unwrap_or_else(|| json!({}));
            let mo = obj(&mut metadata);
            mo.insert("kind".into(), json!("compute#metadata"));
            mo.insert("fingerprint".into(), json!(meta_fp));
            o.insert("metadata".into(), metadata);
            let mut tags = o.get("tags").cloned().unwrap_or_else(|| json!({}));
            obj(&mut tags).insert("fingerprint".into(), json!(tags_fp));
            o.insert("tags".into(), tags);
            o.insert("labelFingerprint".into(), json!(label_fp));
            o.insert("fingerprint".into(), json!(inst_fp));
            o.entry("canIpForward").or_insert(json!(false));
            o.entry("deletionProtection").or_insert(json!(false));
            o.insert("cpuPlatform".into(), json!("Intel Cascade Lake"));
            o.insert("startRestricted".into(), json!(false));
            o.insert(
                "lastStartTimestamp".into(),
                json!(rfc3339(ctx.now + ctx.timing.op_ms)),
            );
            if let Some(Value::Array(disks)) = o.get_mut("disks") {
                for (i, d) in disks.iter_mut().enumerate() {
                    let dname = if i == 0 {
                        last_segment(&path).to_string()
                    } else {
                        format!("{}-{i}", last_segment(&path))
                    };
                    let d = obj(d);
                    d.insert("kind".into(), json!("compute#attachedDisk"));
                    d.insert("index".into(), json!(i));
                    d.entry("type").or_insert(json!("PERSISTENT"));
                    d.entry("mode").or_insert(json!("READ_WRITE"));
                    d.entry("deviceName").or_insert(json!(dname.clone()));
                    d.entry("source")
                        .or_insert(json!(url(&format!("projects/{p}/zones/{z}/disks/{dname}"))));
                    d.remove("initializeParams");
                }
            }
            w.resources.insert(path.clone(), body);
            w.power.insert(
                path.clone(),
                Power {
                    running: true,
                    since: ctx.now + ctx.timing.op_ms,
                    first_boot: true,
                    booted: false,
                    ready: None,
                },
            );
            for a in uses {
                if let Some(addr) = w.resources.get_mut(&a) {
                    let o = obj(addr);
                    o.insert("status".into(), json!("IN_USE"));
                    o.insert("users".into(), json!([self_link]));
                }
            }
            Ok(Ok(()))
        },
    )
}

fn delete_instance(world: &mut World, ctx: &Ctx<'_>, p: &str, z: &str, i: &str) -> Answer {
    let path = format!("projects/{p}/zones/{z}/instances/{i}");
    world.get(&path)?;
    mutate(
        world,
        ctx,
        p,
        &Scope::Zone(z.to_string()),
        "delete",
        &path.clone(),
        |w| {
            let self_link = url(&path);
            for (k, v) in &mut w.resources {
                if k.contains("/addresses/") {
                    let used = v
                        .get("users")
                        .and_then(Value::as_array)
                        .is_some_and(|u| u.iter().any(|x| x.as_str() == Some(self_link.as_str())));
                    if used {
                        let o = obj(v);
                        o.remove("users");
                        o.insert("status".into(), json!("RESERVED"));
                    }
                }
            }
            w.resources.remove(&path);
            w.power.remove(&path);
            Ok(Ok(()))
        },
    )
}

fn set_instance_field(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    z: &str,
    i: &str,
    verb: &str,
    body: Option<Value>,
) -> Answer {
    let path = format!("projects/{p}/zones/{z}/instances/{i}");
    let mut body = body_of(body);
    let schema_name = match verb {
        "setMetadata" => "Metadata",
        "setTags" => "Tags",
        _ => "InstancesSetLabelsRequest",
    };
    schema::validate(Api::Compute, schema_name, None, "resource", &mut body)?;
    let current = world.get(&path)?.clone();
    match verb {
        "setMetadata" => check_fingerprint(
            &current,
            "metadata.fingerprint",
            body.get("fingerprint"),
            "Supplied fingerprint does not match current metadata fingerprint.",
        )?,
        "setTags" => check_fingerprint(
            &current,
            "tags.fingerprint",
            body.get("fingerprint"),
            "Supplied fingerprint does not match current tags fingerprint.",
        )?,
        _ => {
            check_labels(body.get("labels"))?;
            check_fingerprint(
                &current,
                "labelFingerprint",
                body.get("labelFingerprint"),
                "Labels fingerprint either invalid or resource labels have changed",
            )?;
        }
    }
    mutate(
        world,
        ctx,
        p,
        &Scope::Zone(z.to_string()),
        verb,
        &path.clone(),
        |w| {
            let fp = fingerprint(w, &body);
            let Some(inst) = w.resources.get_mut(&path) else {
                return Ok(Ok(()));
            };
            let o = obj(inst);
            match verb {
                "setMetadata" => {
                    let items = body.get("items").cloned().unwrap_or_else(|| json!([]));
                    o.insert(
                        "metadata".into(),
                        json!({"kind": "compute#metadata", "fingerprint": fp, "items": items}),
                    );
                }
                "setTags" => {
                    let items = body.get("items").cloned().unwrap_or_else(|| json!([]));
                    o.insert("tags".into(), json!({"fingerprint": fp, "items": items}));
                }
                _ => {
                    o.insert(
                        "labels".into(),
                        body.get("labels").cloned().unwrap_or_else(|| json!({})),
                    );
                    o.insert("labelFingerprint".into(), json!(fp));
                }
            }
            Ok(Ok(()))
        },
    )
}

fn power(world: &mut World, ctx: &Ctx<'_>, p: &str, z: &str, i: &str, verb: &str) -> Answer {
    let path = format!("projects/{p}/zones/{z}/instances/{i}");
    world.get(&path)?;
    let running = world.power.get(&path).is_some_and(|pw| pw.running);
    if verb == "reset" && !running {
        return Err(ApiError::new(
            400,
            "resourceNotReady",
            format!("The resource '{path}' is not ready"),
        ));
    }
    let at = ctx.now + ctx.timing.op_ms;
    mutate(
        world,
        ctx,
        p,
        &Scope::Zone(z.to_string()),
        verb,
        &path.clone(),
        |w| {
            let boots = match verb {
                "start" => !running,
                "reset" => true,
                _ => false,
            };
            if let Some(pw) = w.power.get_mut(&path) {
                if boots {
                    *pw = Power {
                        running: true,
                        since: at,
                        first_boot: false,
                        booted: false,
                        ready: None,
                    };
                } else if verb == "stop" && running {
                    *pw = Power {
                        running: false,
                        since: at,
                        first_boot: false,
                        booted: false,
                        ready: None,
                    };
                }
            }
            if boots {
                if let Some(inst) = w.resources.get_mut(&path) {
                    obj(inst).insert("lastStartTimestamp".into(), json!(rfc3339(at)));
                }
            } else if verb == "stop"
                && running
                && let Some(inst) = w.resources.get_mut(&path)
            {
                obj(inst).insert("lastStopTimestamp".into(), json!(rfc3339(at)));
            }
            Ok(Ok(()))
        },
    )
}

/// The guest attribute `natgw/ready`: present once the instance is RUNNING and its boot's "startup script"
/// wrote it; before that (and with `--boot-fail`) 404 notFound, as the real API answers for a missing key.
fn guest_attributes(world: &World, ctx: &Ctx<'_>, p: &str, z: &str, i: &str) -> Answer {
    let path = format!("projects/{p}/zones/{z}/instances/{i}");
    world.get(&path)?;
    let query_path = ctx.q("queryPath").unwrap_or("");
    let variable_key = ctx.q("variableKey").unwrap_or("");
    let missing = || {
        let key = if variable_key.is_empty() {
            query_path
        } else {
            variable_key
        };
        ApiError::not_found(&format!("{path}/guestAttributes/{key}"))
    };
    let power = world.power.get(&path).ok_or_else(missing)?;
    if power.status(ctx.now, ctx.timing.boot_ms) != "RUNNING" {
        return Err(missing());
    }
    let value = power.ready.clone().ok_or_else(missing)?;
    let key = "natgw/ready";
    let mut out = json!({"kind": "compute#guestAttributes", "selfLink": format!("{}/guestAttributes/{}", url(&path), if variable_key.is_empty() { query_path } else { variable_key })});
    let o = obj(&mut out);
    if !variable_key.is_empty() {
        if variable_key != key {
            return Err(missing());
        }
        o.insert("variableKey".into(), json!(variable_key));
        o.insert("variableValue".into(), json!(value));
    } else {
        if !key.starts_with(query_path) || query_path.is_empty() {
            return Err(missing());
        }
        o.insert("queryPath".into(), json!(query_path));
        o.insert(
            "queryValue".into(),
            json!({"items": [{"namespace": "natgw", "key": "ready", "value": value}]}),
        );
    }
    Ok(Reply::read(out))
}

// ------------------------------------------------------------------------------------------------ routes

fn insert_route(world: &mut World, ctx: &Ctx<'_>, p: &str, body: Option<Value>) -> Answer {
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

fn delete_route(world: &mut World, ctx: &Ctx<'_>, p: &str, r: &str) -> Answer {
    let path = format!("projects/{p}/global/routes/{r}");
    let route = world.get(&path)?;
    if route.get("nextHopNetwork").is_some() {
        return Err(ApiError::in_use(format!(
            "The local route '{path}' belongs to a subnetwork and cannot be deleted while the subnetwork exists."
        )));
    }
    delete_simple(world, ctx, p, &path, &Scope::Global)
}

fn delete_simple(world: &mut World, ctx: &Ctx<'_>, p: &str, path: &str, scope: &Scope) -> Answer {
    world.get(path)?;
    mutate(world, ctx, p, scope, "delete", path, |w| {
        w.resources.remove(path);
        Ok(Ok(()))
    })
}

// --------------------------------------------------------------------------------------------- firewalls

fn check_firewall(world: &World, p: &str, body: &mut Value) -> Result<(), ApiError> {
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

fn insert_firewall(world: &mut World, ctx: &Ctx<'_>, p: &str, body: Option<Value>) -> Answer {
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
fn patch_firewall(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_googles_pattern() {
        assert!(check_name("n", "natgw-gw-1").is_ok());
        assert!(check_name("n", "a").is_ok());
        for bad in ["", "1abc", "abc-", "ABC", "a_b", &"a".repeat(64)] {
            assert!(check_name("n", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usable_addresses_skip_the_reserved_four() {
        let net: Ipv4Net = "10.0.0.0/29".parse().expect("range");
        let ok: Vec<u8> = (0..8)
            .filter(|i| usable(net, Ipv4Addr::new(10, 0, 0, *i)))
            .collect();
        assert_eq!(ok, vec![2, 3, 4, 5]);
        assert!(!usable(net, Ipv4Addr::new(10, 0, 1, 3)));
    }
}
