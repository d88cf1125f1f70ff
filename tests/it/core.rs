//! plan / apply / destroy against the emulator: the scenarios of the core issue.

use std::path::PathBuf;

use google_cloud_compute_v1::model as gce;

use crate::harness::{Project, example_config};
use crate::inventory::{EXPECTED_ROUTES, Inventory, POOL, create_route, route_marker};
use crate::support::{
    PROJECT, compute_addresses, compute_firewalls, compute_instances, compute_routes, container,
    runtime as rt,
};

const ROUTE: &str = EXPECTED_ROUTES[0];

fn pool_tags(url: &str) -> Vec<String> {
    Inventory::of(url).pool_tags
}

#[test]
fn fresh_apply_then_no_changes_then_destroy_restores_the_pool() {
    let p = Project::new(&[]);
    let rt = rt();
    assert_eq!(pool_tags(&p.emu.url), vec!["existing-tag"]);

    let plan = p.natgw(&["plan", "--detailed-exitcode"]);
    plan.code(2);
    plan.stdout_has("Plan: 5 to add, 1 to change, 0 to destroy.");

    let apply = p.natgw(&["apply", "--auto-approve"]);
    apply.ok();
    apply.stdout_has("Apply complete! Resources: 5 added, 1 changed, 0 destroyed.");
    assert_eq!(Inventory::of(&p.emu.url), Inventory::applied());
    assert_eq!(pool_tags(&p.emu.url), vec!["existing-tag", "gitlab-runner"]);

    // The VM as the issue describes it.
    let vm = rt.block_on(async {
        let c = compute_instances(&p.emu.url).await;
        c.get()
            .set_project(PROJECT)
            .set_zone("europe-west1-b")
            .set_instance("natgw-gitlab")
            .send()
            .await
            .expect("vm")
    });
    assert_eq!(vm.can_ip_forward, Some(true));
    assert!(vm.service_accounts.is_empty());
    let shielded = vm.shielded_instance_config.expect("shielded config");
    assert_eq!(shielded.enable_secure_boot, Some(true));
    let nic = &vm.network_interfaces[0];
    assert_eq!(nic.network_ip.as_deref(), Some("10.0.0.50"));
    assert!(nic.access_configs[0].nat_ip.is_some());
    let items: Vec<String> = vm
        .metadata
        .expect("metadata")
        .items
        .into_iter()
        .filter_map(|i| i.key)
        .collect();
    assert!(
        items.contains(&"startup-script".to_string())
            && items.contains(&"enable-guest-attributes".to_string())
    );

    // The egress IP to allow-list is printed, and it is the external address's.
    let ext = rt.block_on(async {
        let c = compute_addresses(&p.emu.url).await;
        c.get()
            .set_project(PROJECT)
            .set_region("europe-west1")
            .set_address("natgw-gitlab-ext")
            .send()
            .await
            .expect("external address")
    });
    let ip = ext.address.expect("an IP");
    apply.stdout_has(&format!("gitlab.egress_ip   = \"{ip}\""));
    apply.stdout_has("gitlab.internal_ip = \"10.0.0.50\"");

    let again = p.natgw(&["plan", "--detailed-exitcode"]);
    again.code(0);
    again.stdout_has("No changes.");

    let destroy = p.natgw(&["destroy", "--auto-approve"]);
    destroy.ok();
    destroy.stdout_has("Destroy complete! Resources: 5 destroyed.");
    assert_eq!(Inventory::of(&p.emu.url), Inventory::destroyed());
    assert_eq!(pool_tags(&p.emu.url), vec!["existing-tag"]);
    p.natgw(&["plan", "--destroy", "--detailed-exitcode"])
        .code(0);
}

#[test]
fn out_of_band_changes_are_planned_and_repaired() {
    let p = Project::new(&[]);
    let rt = rt();
    p.natgw(&["apply", "--auto-approve"]).ok();
    rt.block_on(async {
        let routes = compute_routes(&p.emu.url).await;
        let op = routes
            .delete()
            .set_project(PROJECT)
            .set_route(ROUTE)
            .send()
            .await
            .expect("delete route");
        let ops = crate::support::compute_global_operations(&p.emu.url).await;
        ops.wait()
            .set_project(PROJECT)
            .set_operation(op.name.expect("op name"))
            .send()
            .await
            .expect("wait");
        // Open the firewall rule to the world, out of band.
        let fws = compute_firewalls(&p.emu.url).await;
        let op = fws
            .patch()
            .set_project(PROJECT)
            .set_firewall("natgw-gitlab-allow")
            .set_body(gce::Firewall::new().set_source_ranges(["0.0.0.0/0"]))
            .send()
            .await
            .expect("patch firewall");
        ops.wait()
            .set_project(PROJECT)
            .set_operation(op.name.expect("op name"))
            .send()
            .await
            .expect("wait");
        // The VM is stopped, and someone adds a label to the external address.
        let vms = compute_instances(&p.emu.url).await;
        let op = vms
            .stop()
            .set_project(PROJECT)
            .set_zone("europe-west1-b")
            .set_instance("natgw-gitlab")
            .send()
            .await
            .expect("stop vm");
        let zops = crate::support::compute_zone_operations(&p.emu.url).await;
        zops.wait()
            .set_project(PROJECT)
            .set_zone("europe-west1-b")
            .set_operation(op.name.expect("op name"))
            .send()
            .await
            .expect("wait");
        let addrs = compute_addresses(&p.emu.url).await;
        let ext = addrs
            .get()
            .set_project(PROJECT)
            .set_region("europe-west1")
            .set_address("natgw-gitlab-ext")
            .send()
            .await
            .expect("get address");
        let mut labels = ext.labels.clone();
        labels.insert("owner".into(), "someone".into());
        let op = addrs
            .set_labels()
            .set_project(PROJECT)
            .set_region("europe-west1")
            .set_resource("natgw-gitlab-ext")
            .set_body(
                gce::RegionSetLabelsRequest::new()
                    .set_labels(labels)
                    .set_label_fingerprint(ext.label_fingerprint.expect("fingerprint")),
            )
            .send()
            .await
            .expect("set labels");
        let rops = crate::support::compute_region_operations(&p.emu.url).await;
        rops.wait()
            .set_project(PROJECT)
            .set_region("europe-west1")
            .set_operation(op.name.expect("op name"))
            .send()
            .await
            .expect("wait");
        // Someone drops the tag from the node pool.
        let gke = container(&p.emu.url).await;
        gke.update_node_pool()
            .set_name(POOL)
            .set_tags(
                google_cloud_container_v1::model::NetworkTags::new().set_tags(["existing-tag"]),
            )
            .send()
            .await
            .expect("update pool");
    });
    // Let the pool update finish.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let plan = p.natgw(&["plan", "--detailed-exitcode"]);
    plan.code(2);
    plan.stdout_has("# gitlab.route[\"34.120.10.10/32\"] will be created");
    plan.stdout_has("# gitlab.firewall will be updated in-place");
    plan.stdout_has("\"0.0.0.0/0\"");
    plan.stdout_has("# gitlab.instance will be updated in-place");
    plan.stdout_has("\"TERMINATED\" -> \"RUNNING\"");
    plan.stdout_has("# gitlab.external_address will be updated in-place");
    plan.stdout_has("will be updated in-place");
    p.natgw(&["apply", "--auto-approve"]).ok();
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);
    assert_eq!(pool_tags(&p.emu.url), vec!["existing-tag", "gitlab-runner"]);
}

#[test]
fn config_changes_give_the_right_actions_and_converge() {
    let p = Project::new(&[]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    // Each change is made on top of the previous ones.
    let cases: Vec<(&str, &str, &str, Vec<&str>)> = vec![
        (
            "new destination",
            "destinations  = [\"34.120.10.10/32\"]",
            "destinations  = [\"34.120.10.10/32\", \"35.1.2.0/24\"]",
            vec![
                "# gitlab.route[\"35.1.2.0/24\"] will be created",
                "# gitlab.instance will be updated in-place",
            ],
        ),
        (
            "priority",
            "node_tag      = \"gitlab-runner\"",
            "node_tag      = \"gitlab-runner\"\nroute_priority = 800",
            vec![
                "# gitlab.route[\"34.120.10.10/32\"] must be replaced",
                "priority",
                "# forces replacement",
            ],
        ),
        (
            "allowed ports",
            "allow         = [\"tcp:443\", \"tcp:22\"]",
            "allow         = [\"tcp:443\"]",
            vec![
                "# gitlab.firewall will be updated in-place",
                "# gitlab.instance will be updated in-place",
            ],
        ),
        (
            "source ranges",
            "\"10.4.0.0/14\"]",
            "\"10.8.0.0/14\"]",
            vec!["# gitlab.firewall will be updated in-place"],
        ),
        (
            "machine type",
            "node_tag      = \"gitlab-runner\"",
            "node_tag      = \"gitlab-runner\"\nmachine_type = \"e2-medium\"",
            vec![
                "# gitlab.instance must be replaced",
                "machine_type",
                "Plan: 1 to add, 0 to change, 1 to destroy.",
            ],
        ),
        (
            "internal IP",
            "internal_ip   = \"10.0.0.50\"",
            "internal_ip   = \"10.0.0.60\"",
            vec![
                "# gitlab.internal_address must be replaced",
                "# gitlab.instance must be replaced",
            ],
        ),
    ];
    let mut current = example_config();
    for (what, from, to, expected) in cases {
        let config = current.replacen(from, to, 1);
        assert_ne!(config, current, "{what}: the edit must apply");
        current = config;
        p.write_config(&current);
        let plan = p.natgw(&["plan", "--detailed-exitcode"]);
        assert_eq!(plan.code, 2, "{what}: {}", plan.all());
        for e in expected {
            assert!(
                plan.stdout.contains(e),
                "{what}: expected {e:?} in:\n{}",
                plan.stdout
            );
        }
        p.natgw(&["apply", "--auto-approve"]).ok();
        let after = p.natgw(&["plan", "--detailed-exitcode"]);
        assert_eq!(after.code, 0, "{what}: not converged:\n{}", after.all());
    }
}

#[test]
fn renamed_gateway_replaces_the_old_one() {
    let p = Project::new(&[]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    p.write_config(&example_config().replace("[gateways.gitlab", "[gateways.gitlab2"));
    let plan = p.natgw(&["plan"]);
    plan.ok();
    plan.stdout_has("Plan: 5 to add, 0 to change, 5 to destroy.");
    p.natgw(&["apply", "--auto-approve"]).ok();
    let names = Inventory::of(&p.emu.url).names();
    assert!(
        names.iter().all(|n| n.contains("natgw-gitlab2")),
        "{names:?}"
    );
    assert_eq!(names.len(), 5);
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn unmarked_and_foreign_resources_are_never_touched() {
    let p = Project::new(&[]);
    // An unmarked route with the name natgw wants, and another stack's route.
    create_route(&p.emu.url, ROUTE, "1.2.3.4/32", "made by hand");
    create_route(
        &p.emu.url,
        "natgw-other-1-2-3-4-32",
        "1.2.3.4/32",
        &route_marker("other", "other"),
    );
    p.natgw(&["plan"])
        .code(1)
        .stderr_has(ROUTE)
        .stderr_has("no natgw ownership marker")
        .golden("errors-ownership.txt", "natgw plan over an unmarked route");
    let before = p.mutations().len();
    p.natgw(&["apply", "--auto-approve"]).code(1);
    p.natgw(&["destroy", "--auto-approve"]).ok();
    assert_eq!(
        p.mutations().len(),
        before,
        "natgw changed something: {:?}",
        p.mutations()
    );
    let names = Inventory::of(&p.emu.url).routes;
    assert!(
        names.contains(&ROUTE.to_string()) && names.contains(&"natgw-other-1-2-3-4-32".to_string()),
        "{names:?}"
    );
}

#[test]
fn a_stale_saved_plan_is_refused_and_a_fresh_one_applied_without_asking() {
    let p = Project::new(&[]);
    let plan_file: PathBuf = p.dir.join("plan.natgw");
    let plan_arg = plan_file.to_str().expect("utf-8 path");
    p.natgw(&["plan", "--out", plan_arg]).ok();
    // Someone else adds a tag to the node pool in between.
    rt().block_on(async {
        let gke = container(&p.emu.url).await;
        gke.update_node_pool()
            .set_name(POOL)
            .set_tags(
                google_cloud_container_v1::model::NetworkTags::new()
                    .set_tags(["existing-tag", "new-tag"]),
            )
            .send()
            .await
            .expect("update pool");
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    let before = p.mutations().len();
    p.natgw(&["apply", plan_arg])
        .code(1)
        .stderr_has("changed since this plan was made")
        .golden("errors-ownership.txt", "a stale saved plan");
    assert_eq!(
        p.mutations().len(),
        before,
        "a stale plan changed something"
    );

    p.natgw(&["plan", "--out", plan_arg]).ok();
    // No --auto-approve and no terminal: a saved plan needs no prompt.
    let fresh = p.natgw(&["apply", plan_arg]);
    fresh.ok();
    fresh.stdout_has("Apply complete! Resources: 5 added, 1 changed, 0 destroyed.");
    assert_eq!(
        pool_tags(&p.emu.url),
        vec!["existing-tag", "new-tag", "gitlab-runner"]
    );
}

#[test]
fn apply_without_a_terminal_needs_auto_approve_and_sends_nothing() {
    let p = Project::new(&[]);
    p.natgw(&["apply"])
        .code(1)
        .stderr_has("--auto-approve")
        .golden("errors-apply.txt", "apply without a terminal");
    assert!(p.emu.requests().is_empty(), "{:?}", p.emu.requests());
}

#[test]
fn a_vm_that_never_becomes_ready_fails_the_apply_and_gets_no_route() {
    let p = Project::new(&["--boot-fail"]);
    let run = p.natgw(&["apply", "--auto-approve", "--ready-timeout", "2"]);
    run.code(1)
        .stderr_has("did not report ready")
        .stdout_has("skipped")
        .golden_stderr("errors-apply.txt", "a VM that never reports ready");
    assert!(Inventory::of(&p.emu.url).routes.is_empty());
    // What failed shows up in the next plan.
    let plan = p.natgw(&["plan", "--detailed-exitcode"]);
    plan.code(2);
    plan.stdout_has("# gitlab.route[\"34.120.10.10/32\"] will be created");
}

#[test]
fn json_plan_uses_terraform_words() {
    let p = Project::new(&[]);
    let run = p.natgw(&["plan", "--json"]);
    run.ok();
    let v: serde_json::Value =
        serde_json::from_str(&run.stdout).expect("stdout is one JSON document");
    let changes = v["resource_changes"].as_array().expect("resource_changes");
    assert_eq!(changes.len(), 6);
    assert!(changes.iter().any(|c| c["address"] == "gitlab.instance"
        && c["change"]["actions"] == serde_json::json!(["create"])));
    assert_eq!(
        v["summary"],
        serde_json::json!({"add": 5, "change": 1, "destroy": 0})
    );
}

#[test]
fn apply_json_reports_the_outcome_on_stdout() {
    let p = Project::new(&[]);
    let run = p.natgw(&["apply", "--auto-approve", "--json"]);
    run.ok();
    let v: serde_json::Value =
        serde_json::from_str(run.stdout.trim()).expect("stdout is one JSON document");
    assert_eq!(v["success"], true);
    assert_eq!(
        (
            v["added"].as_u64(),
            v["changed"].as_u64(),
            v["destroyed"].as_u64()
        ),
        (Some(5), Some(1), Some(0))
    );
    assert!(
        run.stderr.contains("Creating..."),
        "progress goes to stderr with --json: {}",
        run.stderr
    );
    assert_eq!(v["outputs"]["gitlab"]["internal_ip"], "10.0.0.50");
    assert!(v["outputs"]["gitlab"]["egress_ip"].is_string(), "{v}");
}

#[test]
fn two_node_pools_of_one_cluster_are_updated_one_operation_at_a_time() {
    // GKE runs one operation at a time per cluster; natgw waits for the other one instead of failing.
    let seed = serde_json::json!({
        "project": PROJECT,
        "networks": [{"name": "vpc-network", "subnetworks": [{"name": "runners", "region": "europe-west1", "ip_cidr_range": "10.0.0.0/20"}]}],
        "clusters": [{"location": "europe-west1", "name": "gke-gitlab-runner", "network": "vpc-network",
                      "node_pools": [{"name": "runners", "tags": []}, {"name": "builders", "tags": ["x"]}]}]
    });
    let second = example_config()
        .replace("[gateways.gitlab", "[gateways.builds")
        .replace(
            "internal_ip   = \"10.0.0.50\"",
            "internal_ip   = \"10.0.0.51\"",
        )
        .replace(
            "node_tag      = \"gitlab-runner\"",
            "node_tag      = \"builder\"",
        )
        .replace("name     = \"runners\"", "name     = \"builders\"");
    let gateways = second
        .split_once("[gateways.builds]")
        .map(|(_, g)| format!("[gateways.builds]{g}"))
        .expect("gateway table");
    let config = format!("{}\n{gateways}", example_config());
    let p = Project::with_seed(&config, &seed, &["--op-latency-ms", "300"]);
    let run = p.natgw(&["apply", "--auto-approve"]);
    run.ok();
    run.stdout_has("Apply complete! Resources: 10 added, 2 changed, 0 destroyed.");
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);
}
