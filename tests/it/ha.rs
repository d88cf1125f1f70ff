//! The emulator's high-availability resources, driven through `google-cloud-compute-v1`: an instance template,
//! two zonal stateful managed instance groups with preserved IPs, health checks, an internal backend
//! service, a forwarding rule and a route with `nextHopIlb`; then failover, autohealing and a deleted VM,
//! observed through `/_emulator/next-hops` on the emulator's clock.

use std::io::{Read, Write};
use std::time::Duration;

use google_cloud_compute_v1::client::{
    ForwardingRules, InstanceGroupManagers, InstanceTemplates, RegionBackendServices,
    RegionHealthChecks,
};
use google_cloud_compute_v1::model::{
    Address, BackendService, Firewall, ForwardingRule, HealthCheck, InstanceGroupManager,
    InstanceGroupManagersCreateInstancesRequest, InstanceTemplate, ResourceGroupReference, Route,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::emulator::{failure, j, model};
use crate::support::{
    EmulatorProcess, PROJECT, anonymous, compute_addresses, compute_firewalls, compute_instances,
    compute_routes,
};

const REGION: &str = "europe-west1";
const ZONES: [&str; 2] = ["europe-west1-b", "europe-west1-c"];
const SUBNET: &str = "regions/europe-west1/subnetworks/runners";
const DEST: &str = "34.1.2.3";
/// The backend service's health check: a failed VM leaves within 2 × 1 s of failing.
const INTERVAL_MS: i64 = 1000;
const UNHEALTHY_THRESHOLD: i64 = 2;

macro_rules! client {
    ($ty:ty, $url:expr) => {
        <$ty>::builder()
            .with_endpoint($url)
            .with_credentials(anonymous())
            .build()
            .await
            .expect("client")
    };
}

fn done<T: Serialize>(op: &T) {
    let v = j(op);
    assert_eq!(v["status"], "DONE", "{v}");
    assert!(v.get("error").is_none(), "operation failed: {v}");
}

/// A raw request to the emulator's own endpoints: `(status, JSON body)`.
pub(crate) fn raw(url: &str, method: &str, path: &str) -> (u16, Value) {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let status = resp
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).expect("a JSON body"))
}

fn next_hops(url: &str) -> Value {
    next_hops_of(url, DEST, "existing-tag")
}

/// The VMs that carry a new connection from a node tagged `tag` in `vpc-network` to `destination` now.
pub(crate) fn next_hops_of(url: &str, destination: &str, tag: &str) -> Value {
    let (status, body) = raw(
        url,
        "GET",
        &format!(
            "/_emulator/next-hops?project={PROJECT}&network=vpc-network&destination={destination}&tag={tag}"
        ),
    );
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls `next_hops_of` every 100 ms until `done` holds; every answer, the last one `done`'s. Gives up
/// after 60 s so that a broken gateway fails the test instead of hanging it.
pub(crate) fn poll_next_hops(
    url: &str,
    destination: &str,
    tag: &str,
    done: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut seen = Vec::new();
    for _ in 0..600 {
        let hops = next_hops_of(url, destination, tag);
        let stop = done(&hops);
        seen.push(hops);
        if stop {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("never reached: last answer {:?}", seen.last());
}

/// `(name, zone, healthy)` of each VM in a next-hops answer, sorted.
pub(crate) fn carriers(hops: &Value) -> Vec<(String, String, bool)> {
    let mut out: Vec<(String, String, bool)> = hops["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap_or_default().to_string(),
                i["zone"].as_str().unwrap_or_default().to_string(),
                i["healthy"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    out.sort();
    out
}

fn both_healthy() -> Vec<(String, String, bool)> {
    vec![
        ("gw-b".into(), ZONES[0].into(), true),
        ("gw-c".into(), ZONES[1].into(), true),
    ]
}

/// Polls this test's next-hops every 100 ms until `done` holds (see `poll_next_hops`).
fn poll_until(url: &str, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    poll_next_hops(url, DEST, "existing-tag", done)
}

async fn address(url: &str, body: Value) -> String {
    let addresses = compute_addresses(url).await;
    let name = body["name"].as_str().unwrap_or_default().to_string();
    done(
        &addresses
            .insert()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_body(model::<Address>(body))
            .send()
            .await
            .expect("insert address"),
    );
    let a = addresses
        .get()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_address(name)
        .send()
        .await
        .expect("get address");
    a.address.unwrap_or_default()
}

async fn instance(url: &str, zone: &str, name: &str) -> Value {
    j(&compute_instances(url)
        .await
        .get()
        .set_project(PROJECT)
        .set_zone(zone)
        .set_instance(name)
        .send()
        .await
        .expect("get instance"))
}

/// `(id, internal IP, external IP)` of a VM.
pub(crate) async fn identity(url: &str, zone: &str, name: &str) -> (String, String, String) {
    let v = instance(url, zone, name).await;
    (
        v["id"].as_str().unwrap_or_default().to_string(),
        v["networkInterfaces"][0]["networkIP"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        v["networkInterfaces"][0]["accessConfigs"][0]["natIP"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Inserts the gateway's instance template.
async fn template(url: &str, name: &str, machine_type: &str) {
    done(
        &client!(InstanceTemplates, url)
            .insert()
            .set_project(PROJECT)
            .set_body(model::<InstanceTemplate>(json!({
                "name": name,
                "properties": {
                    "machineType": machine_type,
                    "canIpForward": true,
                    "tags": {"items": ["natgw"]},
                    "disks": [{"boot": true, "autoDelete": true,
                               "initializeParams": {"sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
                    "networkInterfaces": [{"subnetwork": SUBNET,
                                           "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]}],
                },
            })))
            .send()
            .await
            .expect("insert template"),
    );
}

/// Inserts a route to 34.1.2.4/32 through `next_hop` (`nextHopIlb`).
async fn ilb_route(
    url: &str,
    name: &str,
    next_hop: impl Into<String>,
) -> Result<google_cloud_compute_v1::model::Operation, google_cloud_gax::error::Error> {
    compute_routes(url)
        .await
        .insert()
        .set_project(PROJECT)
        .set_body(model::<Route>(json!({
            "name": name, "network": "global/networks/vpc-network", "destRange": "34.1.2.4/32",
            "priority": 900, "nextHopIlb": next_hop.into(),
        })))
        .send()
        .await
}

/// Builds the whole gateway, with the firewall rule that lets Google's health-check probers in if
/// `probes_allowed`; returns the reserved `(internal, external)` IPs of each zone.
#[allow(clippy::too_many_lines)]
async fn build(url: &str, probes_allowed: bool) -> Vec<(String, String)> {
    let a = |r: &str| format!("regions/{REGION}/addresses/{r}");
    if probes_allowed {
        done(
            &compute_firewalls(url)
                .await
                .insert()
                .set_project(PROJECT)
                .set_body(model::<Firewall>(json!({
                    "name": "gw-health", "network": "global/networks/vpc-network", "direction": "INGRESS",
                    "sourceRanges": ["35.191.0.0/16", "130.211.0.0/22"], "targetTags": ["natgw"],
                    "allowed": [{"IPProtocol": "tcp", "ports": ["9090"]}],
                })))
                .send()
                .await
                .expect("insert firewall"),
        );
    }
    let mut ips = Vec::new();
    for (i, zone) in ZONES.iter().enumerate() {
        let suffix = &zone[zone.len() - 1..];
        let internal = address(
            url,
            json!({"name": format!("gw-{suffix}-int"), "addressType": "INTERNAL",
                   "subnetwork": SUBNET, "address": format!("10.0.0.{}", 10 + i)}),
        )
        .await;
        let external = address(url, json!({"name": format!("gw-{suffix}-ext")})).await;
        ips.push((internal, external));
    }
    address(
        url,
        json!({"name": "gw-ilb", "addressType": "INTERNAL", "subnetwork": SUBNET, "address": "10.0.0.20"}),
    )
    .await;

    template(url, "gw-tpl", "e2-small").await;

    let checks = client!(RegionHealthChecks, url);
    for (name, interval, unhealthy) in [
        ("gw-hc", INTERVAL_MS / 1000, UNHEALTHY_THRESHOLD),
        // Autohealing's own, more conservative check: a failed VM leaves the load balancer well before
        // the group recreates it.
        ("gw-autoheal", 2, 3),
    ] {
        done(
            &checks
                .insert()
                .set_project(PROJECT)
                .set_region(REGION)
                .set_body(model::<HealthCheck>(json!({
                    "name": name, "type": "TCP", "tcpHealthCheck": {"port": 9090},
                    "checkIntervalSec": interval, "timeoutSec": 1,
                    "healthyThreshold": 2, "unhealthyThreshold": unhealthy,
                })))
                .send()
                .await
                .expect("insert health check"),
        );
    }

    let migs = client!(InstanceGroupManagers, url);
    let mut groups = Vec::new();
    for (zone, (_, _)) in ZONES.iter().zip(&ips) {
        let suffix = &zone[zone.len() - 1..];
        let name = format!("gw-{suffix}");
        done(
            &migs
                .insert()
                .set_project(PROJECT)
                .set_zone(*zone)
                .set_body(model::<InstanceGroupManager>(json!({
                    "name": name,
                    "baseInstanceName": "gw",
                    "instanceTemplate": "global/instanceTemplates/gw-tpl",
                    "targetSize": 0,
                    "autoHealingPolicies": [{"healthCheck": format!("regions/{REGION}/healthChecks/gw-autoheal"),
                                             "initialDelaySec": 5}],
                    "statefulPolicy": {"preservedState": {
                        "internalIPs": {"nic0": {"autoDelete": "NEVER"}},
                        "externalIPs": {"nic0": {"autoDelete": "NEVER"}}}},
                    "updatePolicy": {"type": "OPPORTUNISTIC", "minimalAction": "REPLACE",
                                     "replacementMethod": "RECREATE",
                                     "maxSurge": {"fixed": 0}, "maxUnavailable": {"fixed": 1}},
                })))
                .send()
                .await
                .expect("insert group"),
        );
        done(
            &migs
                .create_instances()
                .set_project(PROJECT)
                .set_zone(*zone)
                .set_instance_group_manager(&name)
                .set_body(model::<InstanceGroupManagersCreateInstancesRequest>(json!({
                    "instances": [{"name": name, "preservedState": {
                        "internalIPs": {"nic0": {"autoDelete": "NEVER", "ipAddress": {"address": a(&format!("{name}-int"))}}},
                        "externalIPs": {"nic0": {"autoDelete": "NEVER", "ipAddress": {"address": a(&format!("{name}-ext"))}}},
                    }}],
                })))
                .send()
                .await
                .expect("create instances"),
        );
        let group = migs
            .get()
            .set_project(PROJECT)
            .set_zone(*zone)
            .set_instance_group_manager(&name)
            .send()
            .await
            .expect("get group");
        assert_eq!(group.target_size, Some(1));
        groups.push(group.instance_group.expect("an instance group"));
    }

    let services = client!(RegionBackendServices, url);
    done(
        &services
            .insert()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_body(model::<BackendService>(json!({
                "name": "gw-bs", "loadBalancingScheme": "INTERNAL", "protocol": "TCP",
                "healthChecks": [format!("regions/{REGION}/healthChecks/gw-hc")],
                "backends": groups.iter().map(|g| json!({"group": g, "balancingMode": "CONNECTION"})).collect::<Vec<_>>(),
            })))
            .send()
            .await
            .expect("insert backend service"),
    );
    let rules = client!(ForwardingRules, url);
    done(
        &rules
            .insert()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_body(model::<ForwardingRule>(json!({
                "name": "gw-ilb", "loadBalancingScheme": "INTERNAL", "IPProtocol": "TCP", "allPorts": true,
                "backendService": format!("regions/{REGION}/backendServices/gw-bs"),
                "subnetwork": SUBNET, "IPAddress": a("gw-ilb"),
            })))
            .send()
            .await
            .expect("insert forwarding rule"),
    );
    done(
        &compute_routes(url)
            .await
            .insert()
            .set_project(PROJECT)
            .set_body(model::<Route>(json!({
                "name": "gw-route", "network": "global/networks/vpc-network", "destRange": format!("{DEST}/32"),
                "priority": 800, "tags": ["existing-tag"],
                "nextHopIlb": format!("regions/{REGION}/forwardingRules/gw-ilb"),
            })))
            .send()
            .await
            .expect("insert route"),
    );
    ips
}

#[tokio::test]
async fn a_two_zone_gateway_fails_over_heals_and_keeps_its_ips() {
    let emu = EmulatorProcess::seeded(&["--boot-ms", "300"]);
    let url = emu.url.as_str();
    let ips = build(url, true).await;

    // Both VMs carry traffic once healthy, each with its zone's reserved IPs.
    let seen = poll_until(url, |h| carriers(h) == both_healthy());
    assert_eq!(
        seen.last().expect("an answer")["routes"],
        json!(["gw-route"])
    );
    let mut before = Vec::new();
    for (zone, (internal, external)) in ZONES.iter().zip(&ips) {
        let name = format!("gw-{}", &zone[zone.len() - 1..]);
        let (id, ip, nat) = identity(url, zone, &name).await;
        assert_eq!((&ip, &nat), (internal, external), "{name}");
        before.push(id);
    }
    let services = client!(RegionBackendServices, url);
    let health = services
        .get_health()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_backend_service("gw-bs")
        .set_body(model::<ResourceGroupReference>(json!({
            "group": format!("zones/{}/instanceGroups/gw-b", ZONES[0])
        })))
        .send()
        .await
        .expect("get health");
    let health = j(&health);
    assert_eq!(
        health["healthStatus"][0]["healthState"], "HEALTHY",
        "{health}"
    );
    assert_eq!(health["healthStatus"][0]["ipAddress"], ips[0].0.as_str());
    assert_eq!(health["healthStatus"][0]["forwardingRuleIp"], "10.0.0.20");

    // The zone-b VM breaks: it leaves the next hops within interval × unhealthy threshold (+ one
    // interval), and not before the threshold's failures could have been seen.
    let (status, failed) = raw(
        url,
        "POST",
        &format!("/_emulator/instances/{PROJECT}/{}/gw-b:fail", ZONES[0]),
    );
    assert_eq!(status, 200, "{failed}");
    let failed_at = failed["failed_at_ms"].as_i64().expect("failed_at_ms");
    let only_c = vec![("gw-c".to_string(), ZONES[1].to_string(), true)];
    let seen = poll_until(url, |h| carriers(h) == only_c);
    let bound = failed_at + INTERVAL_MS * UNHEALTHY_THRESHOLD + INTERVAL_MS;
    for h in &seen[..seen.len() - 1] {
        assert_eq!(carriers(h), both_healthy(), "{h}");
        assert!(h["at_ms"].as_i64().expect("at_ms") < bound, "{h}");
    }
    let switched = seen.last().expect("an answer")["at_ms"]
        .as_i64()
        .expect("at_ms");
    assert!(
        switched >= failed_at + INTERVAL_MS * (UNHEALTHY_THRESHOLD - 1),
        "failed over after {} ms, before {UNHEALTHY_THRESHOLD} probes could fail",
        switched - failed_at
    );

    // Autohealing recreates it, with the same name and IPs, and it carries traffic again.
    poll_until(url, |h| carriers(h) == both_healthy());
    let (id, ip, nat) = identity(url, ZONES[0], "gw-b").await;
    assert_ne!(id, before[0], "a new VM");
    assert_eq!((ip, nat), ips[0].clone());

    // A VM deleted through the instances API comes back at once, with its name and IPs.
    done(
        &compute_instances(url)
            .await
            .delete()
            .set_project(PROJECT)
            .set_zone(ZONES[1])
            .set_instance("gw-c")
            .send()
            .await
            .expect("delete the VM"),
    );
    let (id, ip, nat) = identity(url, ZONES[1], "gw-c").await;
    assert_ne!(id, before[1], "a new VM");
    assert_eq!((ip, nat), ips[1].clone());
    let migs = client!(InstanceGroupManagers, url);
    let managed = migs
        .list_managed_instances()
        .set_project(PROJECT)
        .set_zone(ZONES[1])
        .set_instance_group_manager("gw-c")
        .send()
        .await
        .expect("list managed instances");
    let managed = j(&managed);
    assert_eq!(
        managed["managedInstances"].as_array().map(Vec::len),
        Some(1),
        "{managed}"
    );
    assert_eq!(managed["managedInstances"][0]["name"], "gw-c");
}

#[tokio::test]
async fn resources_in_use_and_bad_bodies_are_refused() {
    let emu = EmulatorProcess::seeded(&[]);
    let url = emu.url.as_str();
    build(url, false).await;

    // Without a firewall rule for Google's probers no VM is ever healthy, and the load balancer spreads new
    // connections over all of them as a last resort.
    let hops = next_hops(url);
    assert_eq!(
        carriers(&hops),
        vec![
            ("gw-b".to_string(), ZONES[0].to_string(), false),
            ("gw-c".to_string(), ZONES[1].to_string(), false),
        ],
        "{hops}"
    );

    // A forwarding rule a route uses, a health check a backend service uses: the operation fails.
    let rules = client!(ForwardingRules, url);
    let op = j(&rules
        .delete()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_forwarding_rule("gw-ilb")
        .send()
        .await
        .expect("accepted"));
    assert_eq!(
        op["error"]["errors"][0]["code"], "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE",
        "{op}"
    );
    let checks = client!(RegionHealthChecks, url);
    let op = j(&checks
        .delete()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_health_check("gw-hc")
        .send()
        .await
        .expect("accepted"));
    assert_eq!(
        op["error"]["errors"][0]["code"],
        "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE"
    );

    // nextHopIlb must name an INTERNAL forwarding rule of the route's network.
    let err = ilb_route(url, "bad", "10.0.0.99")
        .await
        .expect_err("no rule has this IP");
    assert_eq!(failure(&err).0, 400, "{err:?}");
    assert!(format!("{err:?}").contains("nextHopIlb"), "{err:?}");
    let err = ilb_route(
        url,
        "bad",
        format!("regions/{REGION}/forwardingRules/missing"),
    )
    .await
    .expect_err("no such rule");
    assert_eq!(failure(&err).0, 404, "{err:?}");
    // By IP, the route keeps the IP as given.
    done(&ilb_route(url, "by-ip", "10.0.0.20").await.expect("by IP"));

    // Health check bodies follow the discovery document.
    let err = checks
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(model::<HealthCheck>(json!({
            "name": "slow", "type": "TCP", "tcpHealthCheck": {"port": 9090},
            "checkIntervalSec": 1, "timeoutSec": 5,
        })))
        .send()
        .await
        .expect_err("timeout above interval");
    assert_eq!(failure(&err).0, 400);
    let err = checks
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(model::<HealthCheck>(json!({
            "name": "mixed", "type": "HTTP", "tcpHealthCheck": {"port": 9090},
        })))
        .send()
        .await
        .expect_err("type and field disagree");
    assert_eq!(failure(&err).0, 400);

    // A template's machine type is a bare name.
    let templates = client!(InstanceTemplates, url);
    let err = templates
        .insert()
        .set_project(PROJECT)
        .set_body(model::<InstanceTemplate>(json!({
            "name": "bad-tpl",
            "properties": {"machineType": "zones/europe-west1-b/machineTypes/e2-small",
                           "disks": [{"boot": true}], "networkInterfaces": [{"subnetwork": SUBNET}]},
        })))
        .send()
        .await
        .expect_err("a URL machine type");
    assert_eq!(failure(&err).0, 400);
    // A template a group uses stays.
    let op = j(&templates
        .delete()
        .set_project(PROJECT)
        .set_instance_template("gw-tpl")
        .send()
        .await
        .expect("accepted"));
    assert_eq!(
        op["error"]["errors"][0]["code"],
        "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE"
    );

    // :fail on a VM that does not exist is a 404; next-hops needs its parameters.
    let (status, _) = raw(
        url,
        "POST",
        &format!("/_emulator/instances/{PROJECT}/{}/nope:fail", ZONES[0]),
    );
    assert_eq!(status, 404);
    let (status, _) = raw(url, "GET", "/_emulator/next-hops?project=natgw-test");
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_new_template_reaches_a_vm_by_the_update_policy_with_the_same_ips() {
    let emu = EmulatorProcess::seeded(&[]);
    let url = emu.url.as_str();
    let ips = build(url, true).await;
    template(url, "gw-tpl-2", "e2-medium").await;
    let migs = client!(InstanceGroupManagers, url);
    let machine = |v: &Value| {
        v["machineType"]
            .as_str()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let patch = |zone: &'static str, name: &'static str, policy: &'static str| {
        let migs = migs.clone();
        async move {
            done(
                &migs
                    .patch()
                    .set_project(PROJECT)
                    .set_zone(zone)
                    .set_instance_group_manager(name)
                    .set_body(model::<InstanceGroupManager>(json!({
                        "instanceTemplate": "global/instanceTemplates/gw-tpl-2",
                        "updatePolicy": {"type": policy},
                    })))
                    .send()
                    .await
                    .expect("patch group"),
            );
        }
    };

    // OPPORTUNISTIC: the VM keeps its template until the group is told to apply the update.
    let (id_b, _, _) = identity(url, ZONES[0], "gw-b").await;
    patch(ZONES[0], "gw-b", "OPPORTUNISTIC").await;
    let vm = instance(url, ZONES[0], "gw-b").await;
    assert_eq!(
        (vm["id"].as_str().unwrap_or_default(), machine(&vm).as_str()),
        (id_b.as_str(), "e2-small")
    );
    let managed = j(&migs
        .list_managed_instances()
        .set_project(PROJECT)
        .set_zone(ZONES[0])
        .set_instance_group_manager("gw-b")
        .send()
        .await
        .expect("list managed instances"));
    assert!(
        managed["managedInstances"][0]["version"]["instanceTemplate"]
            .as_str()
            .is_some_and(|t| t.ends_with("/gw-tpl")),
        "{managed}"
    );
    done(
        &migs
            .apply_updates_to_instances()
            .set_project(PROJECT)
            .set_zone(ZONES[0])
            .set_instance_group_manager("gw-b")
            .set_body(model::<
                google_cloud_compute_v1::model::InstanceGroupManagersApplyUpdatesRequest,
            >(json!({
                "instances": [format!("zones/{}/instances/gw-b", ZONES[0])],
                "minimalAction": "REPLACE",
            })))
            .send()
            .await
            .expect("apply updates"),
    );
    let vm = instance(url, ZONES[0], "gw-b").await;
    assert_ne!(vm["id"].as_str().unwrap_or_default(), id_b);
    assert_eq!(machine(&vm), "e2-medium");
    let (_, ip, nat) = identity(url, ZONES[0], "gw-b").await;
    assert_eq!((ip, nat), ips[0].clone());

    // PROACTIVE: the group recreates the VM on the new template at once, with its IPs.
    let (id_c, _, _) = identity(url, ZONES[1], "gw-c").await;
    patch(ZONES[1], "gw-c", "PROACTIVE").await;
    let vm = instance(url, ZONES[1], "gw-c").await;
    assert_ne!(vm["id"].as_str().unwrap_or_default(), id_c);
    assert_eq!(machine(&vm), "e2-medium");
    let (_, ip, nat) = identity(url, ZONES[1], "gw-c").await;
    assert_eq!((ip, nat), ips[1].clone());

    // Resizing to 0 deletes the VM and keeps its per-instance config; back to 1, the VM returns under the
    // config's name with its IPs.
    for size in [0, 1] {
        done(
            &migs
                .resize()
                .set_project(PROJECT)
                .set_zone(ZONES[0])
                .set_instance_group_manager("gw-b")
                .set_size(size)
                .send()
                .await
                .expect("resize"),
        );
        let found = compute_instances(url)
            .await
            .get()
            .set_project(PROJECT)
            .set_zone(ZONES[0])
            .set_instance("gw-b")
            .send()
            .await;
        assert_eq!(found.is_ok(), size == 1, "size {size}: {found:?}");
    }
    let (_, ip, nat) = identity(url, ZONES[0], "gw-b").await;
    assert_eq!((ip, nat), ips[0].clone());

    // One aggregated list per kind finds the gateway's pieces in every zone and region.
    let groups = j(&migs
        .aggregated_list()
        .set_project(PROJECT)
        .send()
        .await
        .expect("aggregated groups"));
    for zone in ZONES {
        let name = format!("gw-{}", &zone[zone.len() - 1..]);
        // The demo node pool's GKE group is in each zone too.
        let names: Vec<&str> = groups["items"][format!("zones/{zone}")]["instanceGroupManagers"]
            .as_array()
            .map(|a| a.iter().filter_map(|g| g["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(names.contains(&name.as_str()), "{groups}");
    }
    let rules = j(&client!(ForwardingRules, url)
        .aggregated_list()
        .set_project(PROJECT)
        .send()
        .await
        .expect("aggregated rules"));
    assert_eq!(
        rules["items"][format!("regions/{REGION}")]["forwardingRules"][0]["IPAddress"],
        "10.0.0.20"
    );
    for (kind, name) in [
        ("healthChecks", "gw-autoheal"),
        ("backendServices", "gw-bs"),
    ] {
        let (status, list) = raw(
            url,
            "GET",
            &format!("/compute/v1/projects/{PROJECT}/aggregated/{kind}"),
        );
        assert_eq!(status, 200, "{list}");
        assert_eq!(
            list["items"][format!("regions/{REGION}")][kind][0]["name"],
            name,
            "{list}"
        );
    }

    // The old template is no longer used and can go.
    done(
        &client!(InstanceTemplates, url)
            .delete()
            .set_project(PROJECT)
            .set_instance_template("gw-tpl")
            .send()
            .await
            .expect("delete the old template"),
    );
}

#[tokio::test]
async fn next_hops_follow_route_selection_and_a_single_vm_health_endpoint() {
    let emu = EmulatorProcess::seeded(&[]);
    let url = emu.url.as_str();
    done(
        &compute_instances(url)
            .await
            .insert()
            .set_project(PROJECT)
            .set_zone(ZONES[0])
            .set_body(model::<google_cloud_compute_v1::model::Instance>(json!({
                "name": "single", "machineType": "zones/europe-west1-b/machineTypes/e2-small",
                "canIpForward": true,
                "disks": [{"boot": true, "initializeParams": {"sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
                "networkInterfaces": [{"subnetwork": SUBNET, "networkIP": "10.0.0.5"}],
            })))
            .send()
            .await
            .expect("insert instance"),
    );
    let routes = compute_routes(url).await;
    for (name, dest, priority, tags) in [
        ("via-vm", "34.1.2.0/24", 800, json!(["existing-tag"])),
        // More specific, but for other nodes only: it must not hide `via-vm`.
        ("other-nodes", "34.1.2.3/32", 100, json!(["web"])),
        // Same prefix as `via-vm`, a higher priority value: it loses.
        ("backup", "34.1.2.0/24", 900, json!(["existing-tag"])),
    ] {
        let hop = if name == "via-vm" {
            json!("10.0.0.5")
        } else {
            json!(null)
        };
        let mut body = json!({"name": name, "network": "global/networks/vpc-network", "destRange": dest,
                              "priority": priority, "tags": tags});
        if hop.is_null() {
            body["nextHopGateway"] = json!("global/gateways/default-internet-gateway");
        } else {
            body["nextHopIp"] = hop;
        }
        done(
            &routes
                .insert()
                .set_project(PROJECT)
                .set_body(model::<Route>(body))
                .send()
                .await
                .expect("insert route"),
        );
    }
    let hops = next_hops(url);
    assert_eq!(hops["routes"], json!(["via-vm"]), "{hops}");
    assert_eq!(
        carriers(&hops),
        vec![("single".to_string(), ZONES[0].to_string(), true)]
    );
    // Without the tag, only the default route to the internet applies: no VM carries the connection.
    let (_, untagged) = raw(
        url,
        "GET",
        &format!("/_emulator/next-hops?project={PROJECT}&network=vpc-network&destination={DEST}"),
    );
    assert_eq!(untagged["instances"], json!([]), "{untagged}");
    assert!(
        untagged["routes"][0]
            .as_str()
            .is_some_and(|r| r.starts_with("default-route-")),
        "{untagged}"
    );
    // Without a load balancer, a failed endpoint shows at once; the route still points at the VM.
    let (status, _) = raw(
        url,
        "POST",
        &format!("/_emulator/instances/{PROJECT}/{}/single:fail", ZONES[0]),
    );
    assert_eq!(status, 200);
    assert_eq!(
        carriers(&next_hops(url)),
        vec![("single".to_string(), ZONES[0].to_string(), false)]
    );
    let log = emu.requests();
    assert_eq!(
        log.iter()
            .filter(|r| r["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/_emulator/")))
            .count(),
        4,
        "the emulator's own endpoints are logged like any request"
    );
}
