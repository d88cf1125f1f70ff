//! Request counts, which are deterministic (timings are measured by `cargo bench`, never asserted here).

use std::collections::BTreeMap;

use crate::fleet::fleet_config;
use crate::harness::Project;
use crate::inventory::{create_route, route_marker};
use crate::support::{PROJECT, request_kind};

/// `gateways` gateways that share the demo world's one node pool.
fn config(gateways: usize) -> String {
    fleet_config(PROJECT, "perf", gateways)
}

fn count_kinds(requests: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in requests {
        *out.entry(request_kind(r)).or_insert(0) += 1;
    }
    out
}

/// The requests natgw sends for `args`, run after everything before it.
fn requests_of(p: &Project, args: &[&str], code: i32) -> Vec<serde_json::Value> {
    let (run, sent) = p.natgw_sent(args);
    run.code(code);
    sent
}

fn is_gke(kind: &str) -> bool {
    kind.split(' ')
        .nth(1)
        .is_some_and(|p| p.starts_with("/v1/"))
}

#[test]
fn a_noop_plan_is_one_round_of_filtered_reads_whatever_the_number_of_gateways() {
    let mut seen = Vec::new();
    for gateways in [1usize, 50] {
        let p = Project::with_config(&config(gateways), &[]);
        p.natgw(&["apply", "--auto-approve"]).ok();
        let plan = requests_of(&p, &["plan", "--detailed-exitcode"], 0);
        for r in &plan {
            let path = r.get("path").and_then(|x| x.as_str()).unwrap_or_default();
            if !path.contains("/nodePools/") {
                let query = r.get("query").and_then(|x| x.as_str()).unwrap_or_default();
                assert!(
                    query.contains("filter="),
                    "a list without a name filter reads the whole project: {r}"
                );
            }
        }
        seen.push((gateways, count_kinds(&plan)));
    }
    let expected: BTreeMap<String, usize> = [
        "GET /compute/v1/projects/*/aggregated/addresses",
        "GET /compute/v1/projects/*/aggregated/instances",
        "GET /compute/v1/projects/*/global/firewalls",
        "GET /compute/v1/projects/*/global/routes",
        "GET /v1/projects/*/locations/*/clusters/*/nodePools/*",
    ]
    .into_iter()
    .map(|k| (k.to_string(), 1))
    .collect();
    for (gateways, kinds) in seen {
        assert_eq!(
            kinds, expected,
            "the requests of a no-op plan for {gateways} gateways"
        );
    }
}

/// Issue 14, "Plan cost": one parallel round of list calls, at most 15. It is ten, one a kind.
#[test]
fn a_noop_plan_of_a_gateway_in_several_zones_is_still_one_round_of_ten_filtered_reads() {
    let p = Project::with_config(
        &crate::ha_natgw::config(&["europe-west1-b", "europe-west1-c"]),
        &[],
    );
    p.natgw(&["apply", "--auto-approve"]).ok();
    let plan = requests_of(&p, &["plan", "--detailed-exitcode"], 0);
    for r in &plan {
        let path = r.get("path").and_then(|x| x.as_str()).unwrap_or_default();
        let query = r.get("query").and_then(|x| x.as_str()).unwrap_or_default();
        assert!(
            path.contains("/nodePools/") || query.contains("filter="),
            "a list without a name filter reads the whole project: {r}"
        );
    }
    let expected: BTreeMap<String, usize> = [
        "GET /compute/v1/projects/*/aggregated/addresses",
        "GET /compute/v1/projects/*/aggregated/instances",
        "GET /compute/v1/projects/*/global/firewalls",
        "GET /compute/v1/projects/*/global/routes",
        "GET /v1/projects/*/locations/*/clusters/*/nodePools/*",
        "GET /compute/v1/projects/*/global/instanceTemplates",
        "GET /compute/v1/projects/*/aggregated/instanceGroupManagers",
        "GET /compute/v1/projects/*/aggregated/healthChecks",
        "GET /compute/v1/projects/*/aggregated/backendServices",
        "GET /compute/v1/projects/*/aggregated/forwardingRules",
    ]
    .into_iter()
    .map(|k| (k.to_string(), 1))
    .collect();
    assert_eq!(count_kinds(&plan), expected);
}

#[test]
fn waiting_on_an_operation_costs_a_bounded_number_of_requests() {
    // The same apply with operations that take 0.2 s and 1.5 s: Compute operations are awaited with the
    // `wait` endpoint (one call each), GKE's are polled with backoff.
    let mut runs = Vec::new();
    for op_ms in ["200", "1500"] {
        let p = Project::new(&["--op-latency-ms", op_ms]);
        let apply = requests_of(&p, &["apply", "--auto-approve"], 0);
        runs.push(count_kinds(&apply));
    }
    let compute = |k: &BTreeMap<String, usize>| -> BTreeMap<String, usize> {
        k.iter()
            .filter(|(kind, _)| !is_gke(kind))
            .map(|(kind, n)| (kind.clone(), *n))
            .collect()
    };
    assert_eq!(
        compute(&runs[0]),
        compute(&runs[1]),
        "Compute requests grew with the length of the operations"
    );
    let slow = &runs[1];
    let changes: usize = slow
        .iter()
        .filter(|(k, _)| k.starts_with("POST /compute/") && !k.ends_with("/wait"))
        .map(|(_, n)| n)
        .sum();
    let waits: usize = slow
        .iter()
        .filter(|(k, _)| k.ends_with("/wait"))
        .map(|(_, n)| n)
        .sum();
    assert!(changes >= 4, "the apply changed too little: {slow:#?}");
    assert_eq!(waits, changes, "one wait per Compute change: {slow:#?}");
    let gke_polls = slow
        .get("GET /v1/projects/*/locations/*/operations/*")
        .copied()
        .unwrap_or(0);
    // A poll every 100 ms would take 15; backoff from 50 ms by 1.5 takes 7.
    assert!(
        (1..=8).contains(&gke_polls),
        "GKE operation polls for a 1.5 s operation: {gke_polls}"
    );
}

#[test]
fn readiness_reads_the_guest_attribute_once_the_vm_runs() {
    // Guest attributes may be read 10 times a minute: while the VM boots natgw asks instances.get (not
    // rate limited) and reads the attribute only once the VM runs.
    let p = Project::new(&["--boot-ms", "2000"]);
    let apply = count_kinds(&requests_of(&p, &["apply", "--auto-approve"], 0));
    assert_eq!(
        apply.get("GET /compute/v1/projects/*/zones/*/instances/*/getGuestAttributes"),
        Some(&1),
        "{apply:#?}"
    );
    let status_reads = apply
        .get("GET /compute/v1/projects/*/zones/*/instances/*")
        .copied()
        .unwrap_or(0);
    assert!(
        (2..=12).contains(&status_reads),
        "instances.get while a VM boots for 2 s: {status_reads}"
    );
}

#[test]
fn a_destroy_deletes_without_reading_each_resource_again() {
    // Apply's own observation, a moment old, already saw every resource with this stack's marker; reading
    // each one again before its delete would add a round trip to every link of the chain.
    let p = Project::with_config(&config(1), &[]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    // The stack lock's own read before its release is counted in tests/it/lock.rs.
    let requests: Vec<serde_json::Value> = requests_of(&p, &["destroy", "--auto-approve"], 0)
        .into_iter()
        .filter(|r| !crate::harness::is_lock_request(r))
        .collect();
    let destroy = count_kinds(&requests);
    let rereads: Vec<(&String, &usize)> = destroy
        .iter()
        .filter(|(k, _)| {
            k.starts_with("GET /compute/")
                && !k.contains("/aggregated/")
                && !k.ends_with("/global/firewalls")
                && !k.ends_with("/global/routes")
        })
        .collect();
    assert!(rereads.is_empty(), "reads before deletes: {rereads:?}");
    let deletes: usize = destroy
        .iter()
        .filter(|(k, _)| k.starts_with("DELETE "))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        deletes, 5,
        "two addresses, the VM, the rule, the route: {destroy:#?}"
    );
    // The node pool's tag goes with the etag of the observation: one read (the observation's) in all.
    assert_eq!(
        destroy.get("GET /v1/projects/*/locations/*/clusters/*/nodePools/*"),
        Some(&1),
        "{destroy:#?}"
    );
}

#[test]
fn a_saved_plan_edited_to_delete_another_stacks_route_deletes_nothing() {
    // Deletes no longer read each resource again, so this guards what stands in front of them: apply re-diffs
    // a saved plan against its fresh observation, and a delete skips the re-read only for resources that
    // observation saw with this stack's marker.
    const FOREIGN: &str = "natgw-other-1-2-3-4-32";
    let p = Project::new(&[]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    create_route(
        &p.emu.url,
        FOREIGN,
        "1.2.3.4/32",
        &route_marker("other", "other"),
    );
    let plan_path = p.dir.join("destroy.json");
    let plan_arg = plan_path.display().to_string();
    p.natgw(&["plan", "--destroy", "--out", &plan_arg]).ok();
    let mut plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_path).expect("read the saved plan"))
            .expect("the saved plan is JSON");
    let changes = plan["changes"].as_array_mut().expect("changes");
    let mut forged = changes
        .iter()
        .find(|c| c["kind"] == "route")
        .expect("the plan deletes the stack's route")
        .clone();
    forged["name"] = FOREIGN.into();
    forged["before"]["name"] = FOREIGN.into();
    forged["before"]["dest_range"] = "1.2.3.4/32".into();
    changes.push(forged);
    std::fs::write(&plan_path, plan.to_string()).expect("write the edited plan");

    let run = p.natgw(&["apply", &plan_arg]);
    run.code(1);
    let deleted_foreign = p.emu.requests().iter().any(|r| {
        r["method"] == "DELETE" && r["path"].as_str().is_some_and(|x| x.ends_with(FOREIGN))
    });
    assert!(!deleted_foreign, "natgw deleted another stack's route");
}
