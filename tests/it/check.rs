//! `natgw check`: a healthy gateway passes; each problem, injected through Google's API with Google's own
//! clients as an operator or another tool would, is found with its fix; and check never changes anything.

use std::collections::BTreeMap;

use google_cloud_compute_v1::model::{Firewall, Route, Tags};
use serde_json::json;

use crate::harness::Project;
use crate::inventory::EXPECTED_ROUTES;
use crate::support::{
    PROJECT, compute_firewalls, compute_instances, compute_routes, request_kind, runtime,
    wait_global, wait_zone,
};

const VM: &str = "natgw-gitlab";
const ZONE: &str = "europe-west1-b";

/// The example config applied to the demo world.
fn applied() -> Project {
    let p = Project::new(&[]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    p
}

/// Stops the gateway VM through the instances API, as an operator would.
fn stop_vm(p: &Project) {
    runtime().block_on(async {
        let op = compute_instances(&p.emu.url)
            .await
            .stop()
            .set_project(PROJECT)
            .set_zone(ZONE)
            .set_instance(VM)
            .send()
            .await
            .expect("stop the VM");
        wait_zone(&p.emu.url, ZONE, op).await;
    });
}

/// The kind of a request, with the random part of GKE's group names masked.
fn kind(r: &serde_json::Value) -> String {
    let re = regex::Regex::new(r"instanceGroupManagers/[^/]+").expect("regex");
    re.replace(&request_kind(r), "instanceGroupManagers/*")
        .into_owned()
}

/// The reads of a plain `natgw check` of the example, by kind.
fn plain_check_reads() -> BTreeMap<String, usize> {
    [
        // The plan's one round.
        ("GET /compute/v1/projects/*/aggregated/addresses", 1),
        // The plan's, and the node VMs by name.
        ("GET /compute/v1/projects/*/aggregated/instances", 2),
        ("GET /compute/v1/projects/*/global/firewalls", 1),
        // The plan's (natgw's routes), and every route of the network.
        ("GET /compute/v1/projects/*/global/routes", 2),
        ("GET /v1/projects/*/locations/*/clusters/*/nodePools/*", 1),
        // The VM.
        ("GET /compute/v1/projects/*/zones/*/instances/*", 1),
        (
            "GET /compute/v1/projects/*/zones/*/instances/*/getGuestAttributes",
            1,
        ),
        // The node pool's cluster, subnetwork and its three zones' groups.
        ("GET /v1/projects/*/locations/*/clusters/*", 1),
        (
            "GET /compute/v1/projects/*/regions/*/subnetworks/runners",
            1,
        ),
        (
            "POST /compute/v1/projects/*/zones/*/instanceGroupManagers/*/listManagedInstances",
            3,
        ),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect()
}

/// The requests of a run by kind, without the Connectivity Tests' (see `connectivity_requests`).
fn read_kinds(requests: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for r in requests {
        if !r["path"]
            .as_str()
            .is_some_and(|p| p.contains("/locations/global/"))
        {
            *kinds.entry(kind(r)).or_insert(0) += 1;
        }
    }
    kinds
}

#[test]
fn a_healthy_gateway_passes_with_a_fixed_number_of_reads_and_no_change() {
    let p = applied();
    let before = p.emu.requests().len();
    let run = p.natgw(&["check"]);
    run.code(0).golden("check.txt", "healthy");
    let requests = p.emu.requests().split_off(before);
    let changes: Vec<&serde_json::Value> = requests
        .iter()
        .filter(|r| r["method"] != "GET")
        .filter(|r| {
            !r["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/listManagedInstances"))
        })
        .collect();
    assert!(changes.is_empty(), "check sent changes: {changes:#?}");
    assert_eq!(read_kinds(&requests), plain_check_reads());

    let json = p.natgw(&["check", "--json"]);
    json.code(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON on stdout");
    assert_eq!(v["problems"], 0);
    let checks: Vec<&str> = v["gateways"][0]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["check"].as_str())
        .collect();
    assert_eq!(checks, ["drift", "vm", "route", "firewall", "tag"]);
}

#[test]
fn a_deleted_route_is_found_with_apply_as_the_fix() {
    let p = applied();
    runtime().block_on(async {
        let op = compute_routes(&p.emu.url)
            .await
            .delete()
            .set_project(PROJECT)
            .set_route(EXPECTED_ROUTES[0])
            .send()
            .await
            .expect("delete the route");
        wait_global(&p.emu.url, op).await;
    });
    p.natgw(&["check"])
        .code(2)
        .stdout_has("PROBLEM gitlab  drift     gateway gitlab: 1 to add, 0 to change, 0 to destroy; run `natgw plan` for the details.")
        .stdout_has(&format!(
            "PROBLEM gitlab  route     {}: does not exist: the runners' traffic to 34.120.10.10/32 does not go through the gateway. Fix: run `natgw apply` to create it.",
            EXPECTED_ROUTES[0]
        ));
}

/// Someone else's route to GitLab through the default internet gateway, with priority 100.
fn add_foreign_route(p: &Project) {
    runtime().block_on(async {
        let body = Route::new()
            .set_name("corp-egress")
            .set_network(format!("projects/{PROJECT}/global/networks/vpc-network"))
            .set_dest_range("34.120.10.10/32")
            .set_next_hop_gateway(format!(
                "projects/{PROJECT}/global/gateways/default-internet-gateway"
            ))
            .set_priority(100u32);
        let op = compute_routes(&p.emu.url)
            .await
            .insert()
            .set_project(PROJECT)
            .set_body(body)
            .send()
            .await
            .expect("insert a route");
        wait_global(&p.emu.url, op).await;
    });
}

#[test]
fn a_foreign_route_with_a_better_priority_is_found_with_the_priority_to_set() {
    let p = applied();
    add_foreign_route(&p);
    p.natgw(&["check"])
        .code(2)
        .golden("check.txt", "a foreign route with a better priority");
}

#[test]
fn a_node_range_missing_from_the_sources_is_found() {
    let p = applied();
    runtime().block_on(async {
        let op = compute_firewalls(&p.emu.url)
            .await
            .patch()
            .set_project(PROJECT)
            .set_firewall("natgw-gitlab-allow")
            .set_body(Firewall::new().set_source_ranges(["10.4.0.0/14"]))
            .send()
            .await
            .expect("patch the rule");
        wait_global(&p.emu.url, op).await;
    });
    p.natgw(&["check"])
        .code(2)
        .stdout_has("PROBLEM gitlab  firewall  natgw-gitlab-allow: its sources (10.4.0.0/14) do not cover the node range 10.0.0.0/20 (subnetwork runners)")
        .stdout_has("Fix: run `natgw apply`: the config's source_ranges cover it, the rule was changed outside natgw.");
    // Google's analysis agrees: the gateway's implied deny drops the node's packets.
    p.natgw(&["check", "--connectivity-test"])
        .code(2)
        .stdout_has("does not reach the gateway (stops at DROP: FIREWALL_RULE after route natgw-gitlab-34-120-10-10-32). Fix: see the firewall finding");
}

#[test]
fn a_node_vm_without_the_tag_is_found_and_a_tag_update_on_the_pool_reaches_the_nodes() {
    let p = applied();
    let node = runtime().block_on(async {
        let instances = compute_instances(&p.emu.url).await;
        let list = instances
            .aggregated_list()
            .set_project(PROJECT)
            .send()
            .await
            .expect("list instances");
        let nodes: Vec<google_cloud_compute_v1::model::Instance> = list
            .items
            .values()
            .flat_map(|s| s.instances.iter().cloned())
            .filter(|i| i.name.as_deref().is_some_and(|n| n.starts_with("gke-")))
            .collect();
        assert_eq!(nodes.len(), 3, "one node VM per zone of the pool");
        for n in &nodes {
            let tags = n.tags.as_ref().map(|t| t.items.clone()).unwrap_or_default();
            assert!(
                tags.contains(&"gitlab-runner".to_string())
                    && tags.contains(&"existing-tag".to_string()),
                "apply's tag on the pool reached {:?}: {tags:?}",
                n.name
            );
            assert!(
                n.network_interfaces
                    .iter()
                    .all(|nic| nic.access_configs.is_empty()),
                "private nodes have no external IP"
            );
        }
        let node = nodes[0].clone();
        let name = node.name.clone().unwrap_or_default();
        let zone = node
            .zone
            .as_deref()
            .and_then(|z| z.rsplit('/').next())
            .unwrap_or_default()
            .to_string();
        let tags = node.tags.clone().unwrap_or_default();
        let kept: Vec<String> = tags
            .items
            .iter()
            .filter(|t| *t != "gitlab-runner")
            .cloned()
            .collect();
        let op = instances
            .set_tags()
            .set_project(PROJECT)
            .set_zone(&zone)
            .set_instance(&name)
            .set_body(
                Tags::new()
                    .set_items(kept)
                    .set_fingerprint(tags.fingerprint.unwrap_or_default()),
            )
            .send()
            .await
            .expect("set the node's tags");
        wait_zone(&p.emu.url, &zone, op).await;
        (name, zone)
    });
    let (name, zone) = node;
    p.natgw(&["check"])
        .code(2)
        .stdout_has(&format!(
            "PROBLEM gitlab  tag       node VM {name}: lacks the network tag gitlab-runner that its node pool runners carries"
        ))
        .stdout_has(&format!(
            "Fix: `gcloud compute instances add-tags {name} --zone {zone} --tags gitlab-runner`"
        ))
        .stdout_lacks("ok      gitlab  tag");
    // natgw's own resources never include the node VMs: destroy removes natgw's five and no node.
    p.natgw(&["destroy", "--auto-approve"]).ok();
    let left = runtime().block_on(async {
        compute_instances(&p.emu.url)
            .await
            .aggregated_list()
            .set_project(PROJECT)
            .send()
            .await
            .expect("list instances")
            .items
            .values()
            .flat_map(|s| s.instances.iter())
            .filter_map(|i| i.name.clone())
            .collect::<Vec<_>>()
    });
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.iter().all(|n| n.starts_with("gke-")), "{left:?}");
}

#[test]
fn a_stopped_vm_is_found_with_its_last_summary() {
    let p = applied();
    stop_vm(&p);
    p.natgw(&["check", "--gateway", "gitlab"])
        .code(2)
        .stdout_has(&format!(
            "PROBLEM gitlab  vm        {VM}: is TERMINATED, not RUNNING: the routes' next hop does not forward."
        ))
        .stdout_has("Last on its serial console: natgw-summary: ")
        .stdout_has(&format!(
            "Fix: run `natgw apply`, which starts it again (or `gcloud compute instances start {VM} --zone {ZONE}`)."
        ));
}

#[test]
fn blocked_guest_attributes_are_read_from_the_serial_console() {
    let p = Project::new(&["--org-policy", "compute.disableGuestAttributesAccess"]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    p.natgw(&["check"]).code(0).stdout_has(
        "on the serial console: guest attributes are blocked by constraints/compute.disableGuestAttributesAccess",
    );
}

#[test]
fn an_unknown_gateway_is_refused_before_contacting_anything() {
    let p = Project::new(&[]);
    let before = p.emu.requests().len();
    p.natgw(&["check", "--gateway", "nope"])
        .code(1)
        .stderr_has("no gateway \"nope\"");
    assert_eq!(p.emu.requests().len(), before);
}

#[test]
fn a_shared_vpc_gateway_is_checked_in_both_projects() {
    use crate::shared_vpc::{HOST, config, seed};

    let p = Project::with_seed(&config(), &seed(json!({"host": HOST})), &[]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    let run = p.natgw(&["check"]);
    run.code(0)
        .stdout_has("Check: 5 passed, 0 problems.")
        .stdout_has("its sources cover the node range 10.0.0.0/20 (subnetwork runners)");
    let host_reads: Vec<String> = p
        .emu
        .requests()
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|x| x.contains(&format!("/projects/{HOST}/")))
        })
        .map(request_kind)
        .collect();
    assert!(
        host_reads
            .iter()
            .any(|k| k == "GET /compute/v1/projects/*/regions/*/subnetworks/runners"),
        "the node range is read in the host: {host_reads:?}"
    );
    // Google's analysis follows the host's routes and firewall rules to the gateway in the service project.
    p.natgw(&["check", "--connectivity-test"])
        .code(0)
        .stdout_has(": reaches the gateway natgw-gitlab through route natgw-gitlab-");
}

/// The Connectivity Test requests of a run, by kind.
fn connectivity_requests(requests: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let id = regex::Regex::new(r"/(connectivityTests|operations)/[^/]+$").expect("regex");
    let mut kinds = BTreeMap::new();
    for r in requests {
        let path = r["path"].as_str().unwrap_or_default();
        if path.contains("/locations/global/") {
            let shaped = id.replace(path, "/$1/*").replace(PROJECT, "*");
            *kinds
                .entry(format!("{} {shaped}", r["method"].as_str().unwrap_or("?")))
                .or_insert(0) += 1;
        }
    }
    kinds
}

#[test]
fn a_connectivity_test_reaches_the_gateway_and_is_deleted() {
    // Operations that take 0.6 s: natgw polls the long-running operation until the analysis is done.
    let p = Project::new(&["--op-latency-ms", "600"]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    let before = p.emu.requests().len();
    p.natgw(&["check", "--connectivity-test"])
        .code(0)
        .stdout_has(" to 34.120.10.10:443: reaches the gateway natgw-gitlab through route natgw-gitlab-34-120-10-10-32")
        .stdout_has("Check: 6 passed, 0 problems.");
    let requests = p.emu.requests().split_off(before);
    // The node pool's cluster and VMs are read once, for the tag finding and the test's source alike.
    assert_eq!(read_kinds(&requests), plain_check_reads());
    let kinds = connectivity_requests(&requests);
    assert_eq!(
        kinds.get("POST /v1/projects/*/locations/global/connectivityTests"),
        Some(&1),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.get("DELETE /v1/projects/*/locations/global/connectivityTests/*"),
        Some(&1),
        "the test is deleted: {kinds:?}"
    );
    assert_eq!(
        kinds.get("GET /v1/projects/*/locations/global/connectivityTests/*"),
        Some(&1),
        "{kinds:?}"
    );
    let polls = kinds
        .get("GET /v1/projects/*/locations/global/operations/*")
        .copied()
        .unwrap_or(0);
    assert!((1..=4).contains(&polls), "operation polls: {kinds:?}");
}

/// Two destinations: their Connectivity Tests run at once, and the findings keep the config's order.
#[test]
fn the_connectivity_tests_of_two_destinations_keep_the_config_order() {
    let config = crate::harness::example_config().replacen(
        "destinations  = [\"34.120.10.10/32\"]",
        "destinations  = [\"34.120.10.10/32\", \"35.1.2.0/24\"]",
        1,
    );
    let p = Project::with_config(&config, &[]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    let before = p.emu.requests().len();
    let run = p.natgw(&["check", "--connectivity-test"]);
    run.code(0);
    let paths: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains(" path "))
        .collect();
    assert_eq!(paths.len(), 2, "{}", run.stdout);
    assert!(
        paths[0].contains(" to 34.120.10.10:443: reaches the gateway natgw-gitlab through route natgw-gitlab-34-120-10-10-32"),
        "{paths:?}"
    );
    assert!(
        paths[1]
            .contains(": reaches the gateway natgw-gitlab through route natgw-gitlab-35-1-2-0-24"),
        "{paths:?}"
    );
    let kinds = connectivity_requests(&p.emu.requests().split_off(before));
    assert_eq!(
        kinds.get("POST /v1/projects/*/locations/global/connectivityTests"),
        Some(&2),
        "{kinds:?}"
    );
}

#[test]
fn a_connectivity_test_shows_where_the_path_stops() {
    let p = applied();
    add_foreign_route(&p);
    p.natgw(&["check", "--connectivity-test"])
        .code(2)
        .stdout_has("does not reach the gateway (stops at DROP: NO_EXTERNAL_ADDRESS after route corp-egress). Fix: see the route and tag findings: the node's packets take another route.");
    // Without the foreign route, a stopped gateway VM stops the path there.
    runtime().block_on(async {
        let op = compute_routes(&p.emu.url)
            .await
            .delete()
            .set_project(PROJECT)
            .set_route("corp-egress")
            .send()
            .await
            .expect("delete the route");
        wait_global(&p.emu.url, op).await;
    });
    stop_vm(&p);
    p.natgw(&["check", "--connectivity-test"])
        .code(2)
        .stdout_has("does not reach the gateway (stops at DROP: INSTANCE_NOT_RUNNING after route natgw-gitlab-34-120-10-10-32). Fix: see the vm finding");
}

/// A gateway in several zones: each zone's VM and each backend as the load balancer sees it
/// (`regionBackendServices.getHealth`); a backend whose health endpoint fails is found, with autohealing
/// and the VM's console named, while the VM itself still runs and reports ready.
#[test]
fn an_ha_gateway_is_checked_per_zone_and_a_failed_backend_is_found() {
    use crate::ha::carriers;
    use crate::ha_natgw::{ZONES, both_healthy, config, fail, poll_until};

    let p = Project::with_config(&config(&ZONES), &["--boot-ms", "300"]);
    let url = p.emu.url.clone();
    p.natgw(&["apply", "--auto-approve"]).ok();
    poll_until(&url, |h| carriers(h) == both_healthy());
    let healthy = p.natgw(&["check", "--connectivity-test"]);
    healthy.code(0);
    for (vm, zone) in [("natgw-gitlab-b", ZONES[0]), ("natgw-gitlab-c", ZONES[1])] {
        healthy.stdout_has(&format!(
            "backend {vm} ({zone}): {vm} HEALTHY for backend service natgw-gitlab."
        ));
    }
    healthy.stdout_has(": reaches the gateway natgw-gitlab-");
    healthy.stdout_has("through route natgw-gitlab-lb-34-120-10-10-32");

    fail(&url, ZONES[0], "natgw-gitlab-b");
    poll_until(&url, |h| {
        carriers(h) == vec![("natgw-gitlab-c".to_string(), ZONES[1].to_string(), true)]
    });
    let failed = p.natgw(&["check"]);
    failed.code(2);
    failed.stdout_has(
        "natgw-gitlab-b not HEALTHY for backend service natgw-gitlab: the load balancer sends new connections to the healthy backends only.",
    );
    failed.stdout_has("autohealing recreates the VM after its initial delay");
    failed.stdout_has("natgw-gitlab-c HEALTHY for backend service natgw-gitlab.");
}

/// A `getHealth` that Google refuses for want of a permission (Google's REST reference,
/// regionBackendServices.getHealth, "IAM Permissions") is a BLOCKED finding that names the permission and
/// where the README lists it; the other findings are still made, and check exits 2.
#[test]
fn a_refused_get_health_is_a_blocked_finding_naming_the_permission() {
    use crate::ha::carriers;
    use crate::ha_natgw::{ZONES, both_healthy, config, poll_until};

    let p = Project::with_config(&config(&ZONES), &["--boot-ms", "300"]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    poll_until(&p.emu.url, |h| carriers(h) == both_healthy());
    let (run, google) = check_refusing(&p, "/getHealth", "compute.regionBackendServices.get");
    run.code(2)
        .stdout_has("BLOCKED")
        .stdout_has("compute.regionBackendServices.get")
        .stdout_has("The IAM permissions natgw needs")
        .stdout_has("Check: 6 passed, 0 problems, 2 blocked.");
    for vm in ["natgw-gitlab-b", "natgw-gitlab-c"] {
        run.stdout_has(vm);
    }
    let refused = google
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/getHealth"))
        .count();
    assert_eq!(
        refused, 2,
        "one getHealth per zone, each refused once (a 403 forbidden is not retried)"
    );
}

/// `natgw check` of `p` through a Google (a fake in front of the emulator) that refuses every request whose
/// path ends with `suffix` with Compute's 403 `forbidden` for want of `permission` on what the path names
/// (as `credentials.rs` does for a list), and the fake's log.
fn check_refusing(
    p: &Project,
    suffix: &'static str,
    permission: &'static str,
) -> (crate::harness::Run, crate::fake::Fake) {
    use crate::fake::{Fake, forward, json_status};
    use crate::harness::Natgw;

    let emulator = p.emu.url.clone();
    let google = Fake::start(move |seen| {
        let Some(resource) = seen
            .path
            .strip_prefix("/compute/v1/")
            .and_then(|r| r.strip_suffix(suffix))
        else {
            return forward(&emulator, seen);
        };
        let message = format!("Required '{permission}' permission for '{resource}'");
        json_status(
            403,
            json!({"error": {
                "code": 403,
                "message": message,
                "errors": [{"message": message, "domain": "global", "reason": "forbidden"}],
            }})
            .to_string(),
        )
    });
    let run = Natgw::new(&p.dir)
        .args(["check"])
        .config(&p.config)
        .endpoint(&google.url)
        .anonymous()
        .run();
    (run, google)
}

/// A plan read Google refuses (the addresses, which only the plan reads; Google's REST reference,
/// addresses.aggregatedList, "IAM Permissions") is the drift finding, BLOCKED, naming the permission once
/// with the read it refused; without the plan's observation there is no firewall finding, and the VM, route
/// and tag findings are still made.
#[test]
fn a_refused_plan_read_is_a_blocked_drift_finding_naming_the_permission() {
    let p = applied();
    let (run, google) = check_refusing(&p, "/aggregated/addresses", "compute.addresses.list");
    run.code(2)
        .stdout_has(&format!("BLOCKED gitlab  drift     gateway gitlab: listing addresses: Required 'compute.addresses.list' permission for 'projects/{PROJECT}' (HTTP 403)"))
        .stdout_has("The IAM permissions natgw needs")
        .stdout_lacks("reading the project")
        .stdout_has(&format!("ok      gitlab  vm        {VM}: "))
        .stdout_has("ok      gitlab  route     ")
        .stdout_has("ok      gitlab  tag       ")
        .stdout_has("Check: 3 passed, 0 problems, 1 blocked.");
    let refused = google
        .seen()
        .iter()
        .filter(|s| s.path.ends_with("/aggregated/addresses"))
        .count();
    assert_eq!(refused, 1, "a 403 forbidden is not retried");
}

/// A refused routes list refuses both the plan's read and check's own: the drift and the route findings are
/// BLOCKED, each naming the permission (routes.list, "IAM Permissions"); the VM and tag findings are still made.
#[test]
fn a_refused_routes_list_blocks_the_drift_and_route_findings() {
    let p = applied();
    let (run, _google) = check_refusing(&p, "/global/routes", "compute.routes.list");
    run.code(2)
        .stdout_has(&format!("BLOCKED gitlab  drift     gateway gitlab: listing routes: Required 'compute.routes.list' permission for 'projects/{PROJECT}' (HTTP 403)"))
        .stdout_has("BLOCKED gitlab  route     network vpc-network: listing the routes of network vpc-network: Required 'compute.routes.list' permission")
        .stdout_lacks("reading the project")
        .stdout_has(&format!("ok      gitlab  vm        {VM}: "))
        .stdout_has("ok      gitlab  tag       ")
        .stdout_has("Check: 2 passed, 0 problems, 2 blocked.");
}
