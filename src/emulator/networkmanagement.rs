//! Network Management v1, Connectivity Tests: `/v1/projects/{project}/locations/global/connectivityTests`
//! (create, get, delete) and their long-running operations (`.../locations/global/operations/{id}`).
//!
//! Sources:
//! - The REST reference (networkmanagement.googleapis.com/v1, `projects.locations.global.connectivityTests`):
//!   create takes `testId` and a `ConnectivityTest` and answers a `google.longrunning.Operation` whose
//!   metadata is an `OperationMetadata` (`createTime`, `target`, `verb`, `apiVersion`) and whose response is
//!   the test; "the reachability analysis is performed as part of the long running operation, which
//!   completes when the analysis completes"; delete answers an operation whose response is `Empty`.
//! - `ReachabilityDetails` (`result`: REACHABLE, UNREACHABLE, AMBIGUOUS, UNDETERMINED; `traces[]`), `Trace`
//!   (`endpointInfo`, `steps[]`), `Step` (`state`, `description`, `causesDrop`, `projectId`, and one of
//!   `instance`, `firewall`, `route`, `deliver`, `drop`, `abort`), with the states START_FROM_INSTANCE,
//!   APPLY_EGRESS_FIREWALL_RULE, APPLY_ROUTE, APPLY_INGRESS_FIREWALL_RULE, ARRIVE_AT_INSTANCE, DELIVER, DROP,
//!   ABORT and the drop causes INSTANCE_NOT_RUNNING ("Packet is sent from or to a Compute Engine instance that
//!   is not in a running state"), NO_ROUTE, FIREWALL_RULE, ROUTE_NEXT_HOP_IP_ADDRESS_NOT_RESOLVED and
//!   NO_EXTERNAL_ADDRESS ("Endpoint with only an internal IP address tries to access external hosts, but
//!   there is no matching Cloud NAT gateway in the subnet"), as google-cloud-networkmanagement-v1's model
//!   defines them.
//! - Equal routes give one trace each: "If there is still a tie, it uses the layer 3 and 4 packet headers to
//!   select just one of the remaining matching routes" (`gcloud compute routes create`), and a Connectivity
//!   Test shows every path a packet may take.
//!
//! The trace follows the emulator's own route selection (`crate::routing`) and VM states. What Google's trace
//! shows after a VM that is a route's next hop is undocumented: the emulator delivers to that VM (README,
//! "Known differences").

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::api_error::ApiError;
use super::compute::{Ctx, Reply, applies_to, carriers, entries_cover, render, routes_of_network};
use super::world::{COMPUTE_URL, World, hash_hex, last_segment, obj, rfc3339, str_field, strings};
use crate::net::Ipv4Net;
use crate::routing;

type Answer = Result<Reply, ApiError>;

const TYPE_PREFIX: &str = "type.googleapis.com/";

/// Connectivity Tests and their operations, by resource name.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    tests: BTreeMap<String, Value>,
    operations: BTreeMap<String, Operation>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Operation {
    body: Value,
    response: Value,
    done_ms: i64,
}

impl Operation {
    fn render(&self, now: i64) -> Value {
        let mut body = self.body.clone();
        let done = now >= self.done_ms;
        let o = obj(&mut body);
        o.insert("done".into(), json!(done));
        if done {
            o.insert("response".into(), self.response.clone());
        }
        body
    }
}

/// `rest` is the path after `projects/{project}/locations/global/`.
pub(crate) fn handle(
    world: &mut World,
    ctx: &Ctx<'_>,
    method: &str,
    p: &str,
    rest: &[&str],
    body: Option<Value>,
) -> Answer {
    let base = format!("projects/{p}/locations/global");
    match (method, rest) {
        ("POST", ["connectivityTests"]) => create(world, ctx, p, body),
        ("GET", ["connectivityTests", id]) => {
            let name = format!("{base}/connectivityTests/{id}");
            world
                .network_management
                .tests
                .get(&name)
                .cloned()
                .map(Reply::read)
                .ok_or_else(|| not_found(&name))
        }
        ("DELETE", ["connectivityTests", id]) => {
            let name = format!("{base}/connectivityTests/{id}");
            if world.network_management.tests.remove(&name).is_none() {
                return Err(not_found(&name));
            }
            let op = operation(
                world,
                ctx,
                p,
                &name,
                "delete",
                json!({"@type": format!("{TYPE_PREFIX}google.protobuf.Empty")}),
            );
            Ok(Reply {
                body: op,
                mutated: true,
                wait: None,
            })
        }
        ("GET", ["operations", id]) => {
            let name = format!("{base}/operations/{id}");
            world
                .network_management
                .operations
                .get(&name)
                .map(|op| Reply::read(op.render(ctx.now)))
                .ok_or_else(|| not_found(&name))
        }
        _ => Err(ApiError::method_not_found(
            method,
            &format!("/v1/{base}/{}", rest.join("/")),
        )),
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(404, "notFound", format!("Resource '{name}' was not found"))
}

fn operation(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    target: &str,
    verb: &str,
    response: Value,
) -> Value {
    let id = world.new_id();
    let name = format!(
        "projects/{p}/locations/global/operations/operation-{}-{}",
        ctx.now,
        &hash_hex(&[&id])[..12]
    );
    let op = Operation {
        body: json!({
            "name": name,
            "metadata": {
                "@type": format!("{TYPE_PREFIX}google.cloud.networkmanagement.v1.OperationMetadata"),
                "createTime": rfc3339(ctx.now),
                "target": target,
                "verb": verb,
                "apiVersion": "v1",
            },
        }),
        response,
        done_ms: ctx.now + ctx.timing.op_ms,
    };
    let out = op.render(ctx.now);
    world.network_management.operations.insert(name, op);
    out
}

fn create(world: &mut World, ctx: &Ctx<'_>, p: &str, body: Option<Value>) -> Answer {
    let id = ctx.q("testId").unwrap_or_default().to_string();
    // The reference: "The logical name of the Connectivity Test ... must start with a letter, contain only
    // lowercase letters, numbers and hyphens, end with a letter or number, and be at most 63 characters".
    let valid =
        regex::Regex::new("^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$").is_ok_and(|re| re.is_match(&id));
    if !valid {
        return Err(ApiError::invalid_field("testId", &id, "Invalid test ID."));
    }
    let mut test = body.ok_or_else(|| ApiError::required("resource"))?;
    for field in ["source", "destination"] {
        if test.get(field).is_none_or(|v| !v.is_object()) {
            return Err(ApiError::required(field));
        }
    }
    let name = format!("projects/{p}/locations/global/connectivityTests/{id}");
    if world.network_management.tests.contains_key(&name) {
        return Err(ApiError::new(
            409,
            "alreadyExists",
            format!("Resource '{name}' already exists"),
        ));
    }
    let details = reachability(world, ctx, p, &test);
    let o = obj(&mut test);
    o.insert("name".into(), json!(name));
    o.insert("createTime".into(), json!(rfc3339(ctx.now)));
    o.insert("updateTime".into(), json!(rfc3339(ctx.now)));
    o.entry("protocol").or_insert(json!("TCP"));
    o.insert("reachabilityDetails".into(), details);
    world
        .network_management
        .tests
        .insert(name.clone(), test.clone());
    let mut response = test;
    obj(&mut response).insert(
        "@type".into(),
        json!(format!(
            "{TYPE_PREFIX}google.cloud.networkmanagement.v1.ConnectivityTest"
        )),
    );
    let op = operation(world, ctx, p, &name, "create", response);
    Ok(Reply {
        body: op,
        mutated: true,
        wait: None,
    })
}

/// A VM as a step shows it.
struct Vm {
    path: String,
    body: Value,
    status: String,
    ip: String,
    network: String,
    tags: Vec<String>,
}

fn vm(world: &World, ctx: &Ctx<'_>, path: &str) -> Option<Vm> {
    let body = render(world, ctx, path)?;
    let nic = body.get("networkInterfaces")?.get(0)?.clone();
    Some(Vm {
        path: path.to_string(),
        status: str_field(&body, "status").unwrap_or("UNKNOWN").to_string(),
        ip: str_field(&nic, "networkIP").unwrap_or_default().to_string(),
        network: str_field(&nic, "network").unwrap_or_default().to_string(),
        tags: strings(body.get("tags").and_then(|t| t.get("items"))),
        body,
    })
}

fn instance_step(state: &str, project: &str, vm: &Vm, description: &str) -> Value {
    let external = vm
        .body
        .get("networkInterfaces")
        .and_then(|n| n.get(0))
        .and_then(|n| n.get("accessConfigs"))
        .and_then(|a| a.get(0))
        .and_then(|a| str_field(a, "natIP"))
        .unwrap_or_default();
    json!({
        "state": state,
        "description": description,
        "causesDrop": false,
        "projectId": project,
        "instance": {
            "displayName": last_segment(&vm.path),
            "uri": format!("{COMPUTE_URL}{}", vm.path),
            "interface": "nic0",
            "networkUri": vm.network,
            "internalIp": vm.ip,
            "externalIp": external,
            "networkTags": vm.tags,
            "running": vm.status == "RUNNING",
            "status": if vm.status == "RUNNING" { "RUNNING" } else { "NOT_RUNNING" },
        },
    })
}

fn drop_step(project: &str, cause: &str, resource: &str, description: &str) -> Value {
    json!({
        "state": "DROP",
        "description": description,
        "causesDrop": true,
        "projectId": project,
        "drop": {"cause": cause, "resourceUri": resource},
    })
}

fn abort(cause: &str, project: &str) -> Value {
    json!({
        "result": "UNDETERMINED",
        "traces": [{"steps": [{
            "state": "ABORT",
            "description": "Analysis aborted.",
            "causesDrop": false,
            "projectId": project,
            "abort": {"cause": cause},
        }]}],
    })
}

/// The packet the test describes: protocol and destination port, as `allowed` entries name them.
struct Packet {
    dest: Ipv4Addr,
    protocol: String,
    port: Option<i64>,
}

/// Runs the analysis on the world as it is now.
fn reachability(world: &World, ctx: &Ctx<'_>, p: &str, test: &Value) -> Value {
    let source = test.get("source").cloned().unwrap_or_default();
    let destination = test.get("destination").cloned().unwrap_or_default();
    let Some(src_path) = str_field(&source, "instance")
        .map(|i| i.strip_prefix(COMPUTE_URL).unwrap_or(i).to_string())
    else {
        return abort("UNSUPPORTED", p);
    };
    let Some(src) = vm(world, ctx, &src_path) else {
        return abort("RESOURCE_CONFIG_NOT_FOUND", p);
    };
    let Some(dest) =
        str_field(&destination, "ipAddress").and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    else {
        return abort("NO_SOURCE_LOCATION", p);
    };
    let packet = Packet {
        dest,
        protocol: str_field(test, "protocol")
            .unwrap_or("TCP")
            .to_ascii_lowercase(),
        port: destination
            .get("port")
            .and_then(Value::as_i64)
            .filter(|p| *p > 0),
    };
    let endpoint = json!({
        "sourceIp": src.ip,
        "destinationIp": dest.to_string(),
        "protocol": packet.protocol.to_ascii_uppercase(),
        "destinationPort": packet.port.unwrap_or(0),
        "sourceNetworkUri": src.network,
    });
    let start = instance_step(
        "START_FROM_INSTANCE",
        p,
        &src,
        "Initial state: packet originating from a Compute Engine instance.",
    );
    if src.status != "RUNNING" {
        let steps = vec![
            start,
            drop_step(
                p,
                "INSTANCE_NOT_RUNNING",
                &format!("{COMPUTE_URL}{}", src.path),
                "Final state: packet dropped: the instance is not running.",
            ),
        ];
        return json!({"result": "UNREACHABLE", "traces": [{"endpointInfo": endpoint, "steps": steps}]});
    }
    let egress = json!({
        "state": "APPLY_EGRESS_FIREWALL_RULE",
        "description": "Config checking state: verify EGRESS firewall rule.",
        "causesDrop": false,
        "projectId": p,
        "firewall": {
            "displayName": "",
            "direction": "EGRESS",
            "action": "ALLOW",
            "priority": 65535,
            "networkUri": src.network,
            "firewallRuleType": "IMPLIED_VPC_FIREWALL_RULE",
        },
    });
    let net_path = src
        .network
        .strip_prefix(COMPUTE_URL)
        .unwrap_or(&src.network)
        .to_string();
    let net_project = net_path.split('/').nth(1).unwrap_or(p).to_string();
    let routes = routes_of_network(world, &net_project, &src.network);
    let tags: Vec<&str> = src.tags.iter().map(String::as_str).collect();
    let winners = routing::select(&routes, dest, &tags);
    if winners.is_empty() {
        let steps = vec![
            start,
            egress,
            drop_step(
                p,
                "NO_ROUTE",
                &src.network,
                "Final state: packet dropped: no route matches.",
            ),
        ];
        return json!({"result": "UNREACHABLE", "traces": [{"endpointInfo": endpoint, "steps": steps}]});
    }
    let (traces, reached): (Vec<Value>, Vec<bool>) = winners
        .iter()
        .enumerate()
        .map(|(i, route)| {
            let mut steps = vec![start.clone(), egress.clone(), route_step(p, route)];
            let reached = after_route(
                world,
                ctx,
                p,
                &net_project,
                &src,
                &packet,
                route,
                &mut steps,
            );
            let mut trace = json!({"endpointInfo": endpoint, "steps": steps});
            if i > 0 {
                obj(&mut trace).insert("forwardTraceId".into(), json!(i));
            }
            (trace, reached)
        })
        .unzip();
    let result = if reached.iter().all(|r| *r) {
        "REACHABLE"
    } else if !reached.iter().any(|r| *r) {
        "UNREACHABLE"
    } else {
        "AMBIGUOUS"
    };
    json!({"result": result, "verifyTime": rfc3339(ctx.now), "traces": traces})
}

fn route_step(p: &str, route: &routing::Route<Value>) -> Value {
    let r = &route.next_hop;
    let (next_hop_type, next_hop) = if let Some(ip) = str_field(r, "nextHopIp") {
        ("NEXT_HOP_IP", ip.to_string())
    } else if let Some(i) = str_field(r, "nextHopInstance") {
        ("NEXT_HOP_INSTANCE", i.to_string())
    } else if let Some(i) = str_field(r, "nextHopIlb") {
        ("NEXT_HOP_ILB", i.to_string())
    } else if let Some(n) = str_field(r, "nextHopNetwork") {
        ("NEXT_HOP_NETWORK", n.to_string())
    } else {
        (
            "NEXT_HOP_INTERNET_GATEWAY",
            str_field(r, "nextHopGateway")
                .unwrap_or_default()
                .to_string(),
        )
    };
    let route_type = if next_hop_type == "NEXT_HOP_NETWORK" {
        "SUBNET"
    } else {
        "STATIC"
    };
    json!({
        "state": "APPLY_ROUTE",
        "description": "Config checking state: verify route.",
        "causesDrop": false,
        "projectId": p,
        "route": {
            "routeType": route_type,
            "nextHopType": next_hop_type,
            "displayName": route.name,
            "uri": str_field(r, "selfLink").unwrap_or_default(),
            "destIpRange": route.dest.to_string(),
            "nextHop": next_hop,
            "networkUri": str_field(r, "network").unwrap_or_default(),
            "priority": route.priority,
            "instanceTags": route.tags,
        },
    })
}

/// The steps after the route; true when the packet is delivered.
#[allow(clippy::too_many_arguments)]
fn after_route(
    world: &World,
    ctx: &Ctx<'_>,
    p: &str,
    net_project: &str,
    src: &Vm,
    packet: &Packet,
    route: &routing::Route<Value>,
    steps: &mut Vec<Value>,
) -> bool {
    let r = &route.next_hop;
    let hop_path = if ["nextHopIp", "nextHopInstance", "nextHopIlb"]
        .iter()
        .any(|k| str_field(r, k).is_some())
    {
        carriers(world, ctx, net_project, &src.network, r)
            .into_iter()
            .next()
            .map(|(path, _)| path)
    } else if str_field(r, "nextHopGateway").is_some() {
        let external = src
            .body
            .get("networkInterfaces")
            .and_then(|n| n.get(0))
            .and_then(|n| n.get("accessConfigs"))
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if external {
            steps.push(json!({
                "state": "DELIVER",
                "description": "Final state: packet delivered to the internet.",
                "causesDrop": false,
                "projectId": p,
                "deliver": {"target": "INTERNET", "ipAddress": packet.dest.to_string()},
            }));
            return true;
        }
        steps.push(drop_step(p, "NO_EXTERNAL_ADDRESS", &format!("{COMPUTE_URL}{}", src.path), "Final state: packet dropped: the instance has no external IP address and no Cloud NAT serves its subnet."));
        return false;
    } else {
        steps.push(drop_step(
            p,
            "NO_ROUTE",
            str_field(r, "selfLink").unwrap_or_default(),
            "Final state: packet dropped: the route's next hop is not modelled.",
        ));
        return false;
    };
    let Some(hop) = hop_path.and_then(|path| vm(world, ctx, &path)) else {
        steps.push(drop_step(
            p,
            "ROUTE_NEXT_HOP_IP_ADDRESS_NOT_RESOLVED",
            str_field(r, "selfLink").unwrap_or_default(),
            "Final state: packet dropped: the route's next hop cannot be resolved.",
        ));
        return false;
    };
    let uri = format!("{COMPUTE_URL}{}", hop.path);
    if hop.status != "RUNNING" {
        steps.push(drop_step(
            p,
            "INSTANCE_NOT_RUNNING",
            &uri,
            "Final state: packet dropped: the next hop instance is not running.",
        ));
        return false;
    }
    // No rule that matches: the implied deny (VPC firewall rules overview, "Implied rules").
    let rule = ingress_rule(world, net_project, &hop, &src.ip, packet).unwrap_or_else(|| {
        json!({
            "displayName": "",
            "direction": "INGRESS",
            "action": "DENY",
            "priority": 65535,
            "networkUri": src.network,
            "firewallRuleType": "IMPLIED_VPC_FIREWALL_RULE",
        })
    });
    let allowed = str_field(&rule, "action") == Some("ALLOW");
    steps.push(json!({
        "state": "APPLY_INGRESS_FIREWALL_RULE",
        "description": "Config checking state: verify INGRESS firewall rule.",
        "causesDrop": !allowed,
        "projectId": p,
        "firewall": rule,
    }));
    if !allowed {
        steps.push(drop_step(
            p,
            "FIREWALL_RULE",
            &uri,
            "Final state: packet dropped due to a firewall rule.",
        ));
        return false;
    }
    steps.push(instance_step(
        "ARRIVE_AT_INSTANCE",
        p,
        &hop,
        "Arriving at a Compute Engine instance.",
    ));
    steps.push(json!({
        "state": "DELIVER",
        "description": "Final state: packet delivered to instance.",
        "causesDrop": false,
        "projectId": p,
        "deliver": {"target": "INSTANCE", "resourceUri": uri, "ipAddress": hop.ip},
    }));
    true
}

/// The ingress rule of the network that decides for a packet from `source_ip` to `vm`: the lowest priority
/// value among the enabled rules that target the VM and match the packet, a deny before an allow of the
/// same priority (the VPC firewall rules overview, "Priority"); `None`: the implied deny.
fn ingress_rule(
    world: &World,
    net_project: &str,
    vm: &Vm,
    source_ip: &str,
    packet: &Packet,
) -> Option<Value> {
    let ip: Ipv4Addr = source_ip.parse().ok()?;
    let tags: Vec<&str> = vm.tags.iter().map(String::as_str).collect();
    let mut candidates: Vec<(i64, bool, String, Value)> = world
        .children(&format!("projects/{net_project}/global/firewalls/"))
        .filter(|(_, r)| applies_to(r, &vm.network, &tags))
        .filter(|(_, r)| {
            strings(r.get("sourceRanges"))
                .iter()
                .filter_map(|s| s.parse::<Ipv4Net>().ok())
                .any(|s| s.contains(ip))
        })
        .filter_map(|(k, r)| {
            let covers = |entries| entries_cover(entries, &packet.protocol, packet.port);
            let deny = covers(r.get("denied"));
            (deny || covers(r.get("allowed"))).then(|| {
                (
                    r.get("priority").and_then(Value::as_i64).unwrap_or(1000),
                    !deny,
                    k.clone(),
                    r.clone(),
                )
            })
        })
        .collect();
    candidates.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
    let (priority, allow, path, rule) = candidates.into_iter().next()?;
    Some(json!({
        "displayName": last_segment(&path),
        "uri": format!("{COMPUTE_URL}{path}"),
        "direction": "INGRESS",
        "action": if allow { "ALLOW" } else { "DENY" },
        "priority": priority,
        "networkUri": vm.network,
        "targetTags": strings(rule.get("targetTags")),
        "firewallRuleType": "VPC_FIREWALL_RULE",
    }))
}
