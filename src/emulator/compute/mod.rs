//! Compute Engine v1: `/compute/v1/projects/{project}/...`.
//!
//! Which errors are synchronous (HTTP error status) and which come back in the DONE operation follows one
//! rule: whatever can be judged from the request and the existence of what it names (schema, names, ranges,
//! fingerprints, notFound, alreadyExists, a network that still has subnetworks) is answered at once; conflicts
//! with how other resources *use* things (an IP already taken, an address in use, a natIP that is not a
//! reserved address of the instance's region, a subnetwork still in use) are accepted and fail in the operation.

mod address;
mod backend_service;
mod firewall;
mod forwarding_rule;
pub(crate) mod gke_nodes;
mod ha;
mod health_check;
mod igm;
mod instance;
mod instance_state;
mod instance_template;
mod mig_loop;
mod network;
mod next_hops;
mod route;
pub(crate) mod xpn;

pub(crate) use self::firewall::{applies_to, entries_cover};
pub(crate) use self::ha::{emulator_endpoint, reconcile};
pub(crate) use self::next_hops::{carriers, routes_of_network};

use self::address::{delete_address, insert_address, set_address_labels};
use self::firewall::{insert_firewall, patch_firewall};
use self::instance::{delete_instance, insert_instance, set_instance_field};
use self::instance_state::{Verb, guest_attributes, power, serial_port};
pub(crate) use self::network::{create_network, create_subnetwork};
use self::network::{delete_network, delete_subnetwork, insert_network, insert_subnetwork};
use self::route::{delete_route, insert_route};

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use regex::Regex;
use serde_json::{Map, Value, json};

use super::api_error::{ApiError, OpError};
use super::catalog;
use super::filter::{Filter, page};
use super::org_policy::Constraint;
use super::schema::{self, Api};
use super::world::{COMPUTE_URL, OpSpec, Scope, Timing, World, obj, rfc3339, str_field};
use crate::net::Ipv4Net;

/// What the server needs to answer a request.
pub(crate) struct Ctx<'a> {
    pub(crate) now: i64,
    pub(crate) timing: Timing,
    pub(crate) query: &'a BTreeMap<String, String>,
    /// Organization policy constraints enforced.
    pub(crate) policies: &'a [Constraint],
}

impl Ctx<'_> {
    pub(crate) fn q(&self, key: &str) -> Option<&str> {
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

/// Google's dispatcher: `rest` is the path after `projects/{project}/`. A change that repeats a known
/// `requestId` answers the operation it made the first time; otherwise each kind's routes are tried in turn.
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
    let request = Request {
        method,
        p,
        rest,
        body,
    };
    let routes: [Route; 8] = [
        catalog_routes,
        xpn_routes,
        network_routes,
        address_routes,
        instance_routes,
        global_routes,
        operation_routes,
        ha_routes,
    ];
    let mut request = request;
    for route in routes {
        match route(world, ctx, request) {
            Ok(answer) => return answer,
            Err(unmatched) => request = unmatched,
        }
    }
    Err(ApiError::method_not_found(
        method,
        &format!("/compute/v1/projects/{p}/{}", rest.join("/")),
    ))
}

/// One request, for the routes of `handle`.
struct Request<'a> {
    method: &'a str,
    p: &'a str,
    rest: &'a [&'a str],
    body: Option<Value>,
}

/// A kind's routes: its answer, or the request back when none of its paths matches.
type Route = for<'a> fn(&mut World, &Ctx<'_>, Request<'a>) -> Result<Answer, Request<'a>>;

fn xpn_routes<'a>(world: &mut World, ctx: &Ctx<'_>, r: Request<'a>) -> Result<Answer, Request<'a>> {
    let p = r.p;
    Ok(match (r.method, r.rest) {
        ("POST", ["enableXpnHost"]) => xpn::enable_xpn_host(world, ctx, p),
        ("POST", ["enableXpnResource"]) => xpn::enable_xpn_resource(world, ctx, p, r.body),
        ("GET", ["getXpnHost"]) => xpn::get_xpn_host(world, p),
        ("GET", ["getXpnResources"]) => xpn::get_xpn_resources(world, p),
        _ => return Err(r),
    })
}

fn catalog_routes<'a>(_: &mut World, ctx: &Ctx<'_>, r: Request<'a>) -> Result<Answer, Request<'a>> {
    let p = r.p;
    Ok(match (r.method, r.rest) {
        ("GET", ["regions"]) => list_of(
            ctx,
            &format!("projects/{p}/regions"),
            "compute#regionList",
            catalog::regions(p),
        ),
        ("GET", ["regions", reg]) => catalog_get(
            catalog::regions(p),
            reg,
            &format!("projects/{p}/regions/{reg}"),
        ),
        ("GET", ["zones"]) => list_of(
            ctx,
            &format!("projects/{p}/zones"),
            "compute#zoneList",
            catalog::zones(p),
        ),
        ("GET", ["zones", z]) => {
            catalog_get(catalog::zones(p), z, &format!("projects/{p}/zones/{z}"))
        }
        ("GET", ["zones", z, "machineTypes"]) => zone_region_of(p, z).and_then(|_| {
            list_of(
                ctx,
                &format!("projects/{p}/zones/{z}/machineTypes"),
                "compute#machineTypeList",
                catalog::machine_types(p, z),
            )
        }),
        ("GET", ["zones", z, "machineTypes", m]) => zone_region_of(p, z).and_then(|_| {
            catalog_get(
                catalog::machine_types(p, z),
                m,
                &format!("projects/{p}/zones/{z}/machineTypes/{m}"),
            )
        }),
        _ => return Err(r),
    })
}

fn network_routes<'a>(
    world: &mut World,
    ctx: &Ctx<'_>,
    r: Request<'a>,
) -> Result<Answer, Request<'a>> {
    let p = r.p;
    Ok(match (r.method, r.rest) {
        ("GET", ["global", "networks"]) => list(
            world,
            ctx,
            &format!("projects/{p}/global/networks/"),
            "compute#networkList",
        ),
        ("POST", ["global", "networks"]) => insert_network(world, ctx, p, r.body),
        ("GET", ["global", "networks", n]) => {
            get(world, ctx, &format!("projects/{p}/global/networks/{n}"))
        }
        ("DELETE", ["global", "networks", n]) => delete_network(world, ctx, p, n),
        ("GET", ["regions", reg, "subnetworks"]) => region_of(p, reg).and_then(|()| {
            list(
                world,
                ctx,
                &format!("projects/{p}/regions/{reg}/subnetworks/"),
                "compute#subnetworkList",
            )
        }),
        ("POST", ["regions", reg, "subnetworks"]) => insert_subnetwork(world, ctx, p, reg, r.body),
        ("GET", ["regions", reg, "subnetworks", s]) => get(
            world,
            ctx,
            &format!("projects/{p}/regions/{reg}/subnetworks/{s}"),
        ),
        ("DELETE", ["regions", reg, "subnetworks", s]) => delete_subnetwork(world, ctx, p, reg, s),
        ("GET", ["aggregated", "subnetworks"]) => aggregated(
            world,
            ctx,
            p,
            "subnetworks",
            "compute#subnetworkAggregatedList",
        ),
        _ => return Err(r),
    })
}

fn address_routes<'a>(
    world: &mut World,
    ctx: &Ctx<'_>,
    r: Request<'a>,
) -> Result<Answer, Request<'a>> {
    let p = r.p;
    Ok(match (r.method, r.rest) {
        ("GET", ["regions", reg, "addresses"]) => region_of(p, reg).and_then(|()| {
            list(
                world,
                ctx,
                &format!("projects/{p}/regions/{reg}/addresses/"),
                "compute#addressList",
            )
        }),
        ("POST", ["regions", reg, "addresses"]) => insert_address(world, ctx, p, reg, r.body),
        ("GET", ["regions", reg, "addresses", a]) => get(
            world,
            ctx,
            &format!("projects/{p}/regions/{reg}/addresses/{a}"),
        ),
        ("DELETE", ["regions", reg, "addresses", a]) => delete_address(world, ctx, p, reg, a),
        ("POST", ["regions", reg, "addresses", a, "setLabels"]) => {
            set_address_labels(world, ctx, p, reg, a, r.body)
        }
        ("GET", ["aggregated", "addresses"]) => {
            aggregated(world, ctx, p, "addresses", "compute#addressAggregatedList")
        }
        _ => return Err(r),
    })
}

fn instance_routes<'a>(
    world: &mut World,
    ctx: &Ctx<'_>,
    r: Request<'a>,
) -> Result<Answer, Request<'a>> {
    let p = r.p;
    Ok(match (r.method, r.rest) {
        ("GET", ["zones", z, "instances"]) => zone_region_of(p, z).and_then(|_| {
            list(
                world,
                ctx,
                &format!("projects/{p}/zones/{z}/instances/"),
                "compute#instanceList",
            )
        }),
        ("POST", ["zones", z, "instances"]) => insert_instance(world, ctx, p, z, r.body),
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
        ) => set_instance_field(world, ctx, p, z, i, verb, r.body),
        ("POST", ["zones", z, "instances", i, verb]) => match Verb::parse(verb) {
            Some(v) => power(world, ctx, p, z, i, v),
            None => return Err(r),
        },
        ("GET", ["zones", z, "instances", i, "getGuestAttributes"]) => {
            guest_attributes(world, ctx, p, z, i)
        }
        ("GET", ["zones", z, "instances", i, "serialPort"]) => serial_port(world, ctx, p, z, i),
        ("GET", ["aggregated", "instances"]) => {
            aggregated(world, ctx, p, "instances", "compute#instanceAggregatedList")
        }
        _ => return Err(r),
    })
}

/// Routes and firewall rules.
fn global_routes<'a>(
    world: &mut World,
    ctx: &Ctx<'_>,
    r: Request<'a>,
) -> Result<Answer, Request<'a>> {
    let p = r.p;
    Ok(match (r.method, r.rest) {
        ("GET", ["global", "routes"]) => list(
            world,
            ctx,
            &format!("projects/{p}/global/routes/"),
            "compute#routeList",
        ),
        ("POST", ["global", "routes"]) => insert_route(world, ctx, p, r.body),
        ("GET", ["global", "routes", name]) => {
            get(world, ctx, &format!("projects/{p}/global/routes/{name}"))
        }
        ("DELETE", ["global", "routes", name]) => delete_route(world, ctx, p, name),
        ("GET", ["global", "firewalls"]) => list(
            world,
            ctx,
            &format!("projects/{p}/global/firewalls/"),
            "compute#firewallList",
        ),
        ("POST", ["global", "firewalls"]) => insert_firewall(world, ctx, p, r.body),
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
        ("PATCH", ["global", "firewalls", f]) => patch_firewall(world, ctx, p, f, r.body),
        _ => return Err(r),
    })
}

fn operation_routes<'a>(
    world: &mut World,
    ctx: &Ctx<'_>,
    r: Request<'a>,
) -> Result<Answer, Request<'a>> {
    let p = r.p;
    let (path, wait) = match (r.method, r.rest) {
        ("GET", ["global", "operations", o]) => {
            (format!("projects/{p}/global/operations/{o}"), false)
        }
        ("POST", ["global", "operations", o, "wait"]) => {
            (format!("projects/{p}/global/operations/{o}"), true)
        }
        ("GET", [scope @ ("regions" | "zones"), at, "operations", o]) => {
            (format!("projects/{p}/{scope}/{at}/operations/{o}"), false)
        }
        ("POST", [scope @ ("regions" | "zones"), at, "operations", o, "wait"]) => {
            (format!("projects/{p}/{scope}/{at}/operations/{o}"), true)
        }
        _ => return Err(r),
    };
    Ok(if wait {
        wait_op(world, &path)
    } else {
        get_op(world, ctx, &path)
    })
}

/// Instance templates, managed instance groups, health checks, backend services and forwarding rules
/// (`ha.rs`).
fn ha_routes<'a>(world: &mut World, ctx: &Ctx<'_>, r: Request<'a>) -> Result<Answer, Request<'a>> {
    match r.rest {
        ["global", "instanceTemplates", ..]
        | ["zones", _, "instanceGroupManagers" | "instanceGroups", ..]
        | [
            "regions",
            _,
            "healthChecks" | "backendServices" | "forwardingRules",
            ..,
        ]
        | [
            "aggregated",
            "instanceGroupManagers" | "healthChecks" | "backendServices" | "forwardingRules",
        ] => Ok(ha::handle(world, ctx, r.method, r.p, r.rest, r.body)),
        _ => Err(r),
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
    let all_scopes: Vec<String> = if matches!(kind, "instances" | "instanceGroupManagers") {
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

fn nics(v: &Value) -> Vec<&Value> {
    v.get("networkInterfaces")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn delete_simple(world: &mut World, ctx: &Ctx<'_>, p: &str, path: &str, scope: &Scope) -> Answer {
    world.get(path)?;
    mutate(world, ctx, p, scope, "delete", path, |w| {
        w.resources.remove(path);
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
