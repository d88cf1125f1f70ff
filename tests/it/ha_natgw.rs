//! natgw's gateway in several zones against the emulator: apply from nothing converges and carries traffic
//! in both zones, a broken VM fails over and heals with its IPs, a new machine type rolls zone by zone
//! without a moment without a healthy next hop, one zone routes to its VM, and destroy leaves nothing.
//! Timing is the emulator's clock (`at_ms`), never the test's.

use std::time::Duration;

use serde_json::{Value, json};

use crate::emulator::{j, model};
use crate::fake::killed_after;
use crate::ha::{carriers, next_hops_of, poll_next_hops, raw};
use crate::harness::{Project, Run, example_config};
use crate::inventory::Inventory;
use crate::support::{
    PROJECT, compute_addresses, compute_instance_group_managers, compute_instance_templates,
    compute_routes, runtime,
};

const REGION: &str = "europe-west1";
pub(crate) const ZONES: [&str; 2] = ["europe-west1-b", "europe-west1-c"];
/// The example's destination, and its runners' node tag.
const DESTINATION: &str = "34.120.10.10";
const TAG: &str = "gitlab-runner";
/// The load balancer's health check of the test config: a failed VM leaves within 2 × 1 s.
const INTERVAL_MS: i64 = 1000;
const UNHEALTHY_THRESHOLD: i64 = 2;

/// The example with `zones` and a quick health check.
pub(crate) fn config(zones: &[&str]) -> String {
    let text = example_config();
    let zone = "zone          = \"europe-west1-b\"";
    assert!(text.contains(zone), "{text}");
    let list: Vec<String> = zones.iter().map(|z| format!("\"{z}\"")).collect();
    let mut out = text.replace(zone, &format!("zones = [{}]", list.join(", ")));
    out.push_str(&format!(
        "\n[gateways.gitlab.health_check]\ninterval_sec = {}\nunhealthy_threshold = {UNHEALTHY_THRESHOLD}\n",
        INTERVAL_MS / 1000
    ));
    out
}

/// The VMs that carry a new connection from a runner to the gateway's destination right now.
fn next_hops(url: &str) -> Value {
    next_hops_of(url, DESTINATION, TAG)
}

pub(crate) fn both_healthy() -> Vec<(String, String, bool)> {
    vec![
        ("natgw-gitlab-b".into(), ZONES[0].into(), true),
        ("natgw-gitlab-c".into(), ZONES[1].into(), true),
    ]
}

/// Polls the gateway's next-hops every 100 ms until `done` holds (see `poll_next_hops`).
pub(crate) fn poll_until(url: &str, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    poll_next_hops(url, DESTINATION, TAG, done)
}

/// `(id, internal IP, external IP)` of a VM.
fn identity(url: &str, zone: &str, name: &str) -> (String, String, String) {
    runtime().block_on(crate::ha::identity(url, zone, name))
}

/// The IP of a reserved address.
fn address_ip(url: &str, name: &str) -> String {
    runtime().block_on(async {
        compute_addresses(url)
            .await
            .get()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_address(name)
            .send()
            .await
            .expect("get address")
            .address
            .unwrap_or_default()
    })
}

/// The names of every HA kind natgw could have made (`natgw-...`), by kind: nothing is left after a destroy.
fn ha_leftovers(url: &str) -> Vec<String> {
    let mut out = runtime().block_on(async {
        let mut out = Vec::new();
        let templates = compute_instance_templates(url)
            .await
            .list()
            .set_project(PROJECT)
            .send()
            .await
            .expect("templates");
        out.extend(templates.items.iter().filter_map(|t| t.name.clone()));
        let groups = compute_instance_group_managers(url)
            .await
            .aggregated_list()
            .set_project(PROJECT)
            .send()
            .await
            .expect("groups");
        out.extend(groups.items.values().flat_map(|s| {
            s.instance_group_managers
                .iter()
                .filter_map(|g| g.name.clone())
        }));
        out
    });
    for kind in ["healthChecks", "backendServices", "forwardingRules"] {
        let (status, list) = raw(
            url,
            "GET",
            &format!("/compute/v1/projects/{PROJECT}/regions/{REGION}/{kind}"),
        );
        assert_eq!(status, 200, "{list}");
        out.extend(
            list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["name"].as_str().map(str::to_string)),
        );
    }
    // GKE's own node-pool groups and templates are not natgw's.
    out.retain(|n| n.starts_with("natgw-"));
    out
}

/// The two-zone config with a bigger machine type: a new template for both zones.
fn bigger() -> String {
    config(&ZONES).replace(
        "node_tag      = \"gitlab-runner\"",
        "node_tag      = \"gitlab-runner\"\nmachine_type = \"e2-medium\"",
    )
}

/// Breaks the health endpoint of a zone's VM, as if its forwarding broke; the emulator's clock then.
pub(crate) fn fail(url: &str, zone: &str, vm: &str) -> i64 {
    let (status, failed) = raw(
        url,
        "POST",
        &format!("/_emulator/instances/{PROJECT}/{zone}/{vm}:fail"),
    );
    assert_eq!(status, 200, "{failed}");
    failed["failed_at_ms"].as_i64().expect("failed_at_ms")
}

/// Applies, sampling next-hops every 100 ms until natgw exits; asserts that a healthy VM carried in every
/// sample.
fn apply_sampled(p: &Project, url: &str) {
    apply_sampled_ending(
        p,
        url,
        "Apply complete! Resources: 1 added, 2 changed, 1 destroyed.",
    )
}

/// `apply_sampled`, whose apply ends with `summary`.
fn apply_sampled_ending(p: &Project, url: &str, summary: &str) {
    let mut child = p.cmd(&["apply", "--auto-approve"]).spawn();
    // At least one sample, however quickly the apply ends.
    let mut samples = vec![next_hops(url)];
    while child.try_wait().expect("the apply runs").is_none() {
        std::thread::sleep(Duration::from_millis(100));
        samples.push(next_hops(url));
    }
    Run::of(child).ok().stdout_has(summary);
    for h in &samples {
        assert!(
            carriers(h).iter().any(|(_, _, healthy)| *healthy),
            "no healthy VM carried traffic: {h}"
        );
    }
}

/// Autohealing waits for a boot (`initialDelaySec` 300) on the emulator's clock, which is real time: the
/// test shortens it out of band, as someone could in the console, to 10 s (a delay shorter than a boot
/// and two healthy probes would recreate the new VM again and again, as Google would).
fn shorten_initial_delay(url: &str, zone: &str, group: &str) {
    runtime().block_on(async {
        let groups = compute_instance_group_managers(url).await;
        let g = groups
            .get()
            .set_project(PROJECT)
            .set_zone(zone)
            .set_instance_group_manager(group)
            .send()
            .await
            .expect("get group");
        let check = g.auto_healing_policies[0]
            .health_check
            .clone()
            .expect("an autohealing check");
        let op = groups
            .patch()
            .set_project(PROJECT)
            .set_zone(zone)
            .set_instance_group_manager(group)
            .set_body(
                model::<google_cloud_compute_v1::model::InstanceGroupManager>(
                    json!({"autoHealingPolicies": [{"healthCheck": check, "initialDelaySec": 10}]}),
                ),
            )
            .send()
            .await
            .expect("patch group");
        assert_eq!(j(&op)["status"], "DONE");
    });
}

#[test]
fn a_two_zone_gateway_converges_fails_over_heals_and_is_destroyed() {
    let p = Project::with_config(&config(&ZONES), &["--boot-ms", "300"]);
    let url = p.emu.url.clone();
    let applied = p.natgw(&["apply", "--auto-approve"]);
    applied.ok();
    let egress: Vec<String> = ["b", "c"]
        .iter()
        .map(|z| address_ip(&url, &format!("natgw-gitlab-{z}-ext")))
        .collect();
    applied.stdout_has(&format!(
        "gitlab.egress_ips  = [\"{}\", \"{}\"]",
        egress[0], egress[1]
    ));
    let vip = address_ip(&url, "natgw-gitlab-ilb");
    applied.stdout_has(&format!("gitlab.internal_ip = \"{vip}\""));

    // Converged: nothing to do, and the same outputs in JSON.
    p.natgw(&["plan", "--detailed-exitcode"])
        .code(0)
        .output_has("No changes.");
    let out = p.natgw(&["output", "--json"]);
    let out: Value = serde_json::from_str(&out.ok().stdout).expect("JSON");
    assert_eq!(out["gitlab"]["egress_ips"], json!(egress), "{out}");
    assert_eq!(out["gitlab"]["internal_ip"], json!(vip), "{out}");
    p.natgw(&["output", "gitlab"]).ok().stdout_has(&format!(
        "gitlab.egress_ips  = [\"{}\", \"{}\"]",
        egress[0], egress[1]
    ));

    // The route goes through the load balancer, and both zones carry traffic with their reserved IPs.
    let seen = poll_until(&url, |h| carriers(h) == both_healthy());
    assert_eq!(
        seen.last().expect("an answer")["routes"],
        json!(["natgw-gitlab-lb-34-120-10-10-32"])
    );
    let mut before = Vec::new();
    for (zone, z) in ZONES.iter().zip(["b", "c"]) {
        let name = format!("natgw-gitlab-{z}");
        let (id, ip, nat) = identity(&url, zone, &name);
        assert_eq!(ip, address_ip(&url, &format!("{name}-int")), "{name}");
        assert_eq!(nat, address_ip(&url, &format!("{name}-ext")), "{name}");
        before.push((id, ip, nat));
    }

    // Zone b's VM breaks: within interval × unhealthy threshold and one interval, only zone c carries, and
    // not before the threshold's failures could have been seen. On the emulator's clock: every answer
    // before the switch was given before the bound (the answer that saw it may come late).
    shorten_initial_delay(&url, ZONES[0], "natgw-gitlab-b");
    let failed_at = fail(&url, ZONES[0], "natgw-gitlab-b");
    let only_c = vec![("natgw-gitlab-c".to_string(), ZONES[1].to_string(), true)];
    let seen = poll_until(&url, |h| carriers(h) == only_c);
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

    // Autohealing recreates it with the same name and IPs, and it carries traffic again.
    poll_until(&url, |h| carriers(h) == both_healthy());
    let (id, ip, nat) = identity(&url, ZONES[0], "natgw-gitlab-b");
    assert_ne!(id, before[0].0, "a new VM");
    assert_eq!((ip, nat), (before[0].1.clone(), before[0].2.clone()));

    // Destroy removes everything, the VMs with their groups.
    p.natgw(&["destroy", "--auto-approve"]).ok();
    assert_eq!(Inventory::of(&url), Inventory::destroyed());
    assert_eq!(ha_leftovers(&url), Vec::<String>::new());
}

#[test]
fn a_new_machine_type_rolls_zone_by_zone_and_a_healthy_vm_always_carries() {
    let p = Project::with_config(&config(&ZONES), &["--boot-ms", "300"]);
    let url = p.emu.url.clone();
    p.natgw(&["apply", "--auto-approve"]).ok();
    poll_until(&url, |h| carriers(h) == both_healthy());
    let before: Vec<String> = ZONES
        .iter()
        .zip(["b", "c"])
        .map(|(zone, z)| identity(&url, zone, &format!("natgw-gitlab-{z}")).0)
        .collect();

    p.write_config(&bigger());
    apply_sampled(&p, &url);
    // Both VMs are new, on the new machine type, and healthy.
    for ((zone, z), old) in ZONES.iter().zip(["b", "c"]).zip(&before) {
        let (id, _, _) = identity(&url, zone, &format!("natgw-gitlab-{z}"));
        assert_ne!(&id, old, "zone {z} has a new VM");
    }
    poll_until(&url, |h| carriers(h) == both_healthy());
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn one_zone_routes_to_its_vm_and_a_renamed_gateway_leaves_nothing_behind() {
    let p = Project::with_config(&config(&ZONES[..1]), &["--boot-ms", "100"]);
    let url = p.emu.url.clone();
    // Through a saved plan: apply checks that the project, HA kinds included, is as the plan saw it.
    p.natgw(&["plan", "--out", "ha.plan"]).ok();
    let applied = p.natgw(&["apply", "ha.plan"]);
    let egress = address_ip(&url, "natgw-gitlab-b-ext");
    applied
        .ok()
        .stdout_has(&format!("gitlab.egress_ips  = [\"{egress}\"]"));
    let internal = address_ip(&url, "natgw-gitlab-b-int");
    let route = runtime().block_on(async {
        compute_routes(&url)
            .await
            .get()
            .set_project(PROJECT)
            .set_route("natgw-gitlab-ha-34-120-10-10-32")
            .send()
            .await
            .expect("the route")
    });
    assert_eq!(route.next_hop_ip.as_deref(), Some(internal.as_str()));
    assert_eq!(route.next_hop_ilb, None);
    assert!(
        !ha_leftovers(&url).iter().any(|n| n == "natgw-gitlab"),
        "no load balancer with one zone"
    );
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);
    // A saved plan of the applied gateway still matches the project it saw, groups and template included.
    p.natgw(&["plan", "--out", "again.plan"]).ok();
    p.natgw(&["apply", "again.plan"]).ok();
    assert_eq!(
        carriers(&next_hops(&url)),
        vec![("natgw-gitlab-b".to_string(), ZONES[0].to_string(), true)]
    );
    // The gateway renamed and made a single VM: the config no longer has zones, and the plan still finds
    // the old gateway's groups and load balancer kinds through its addresses, and removes them.
    p.write_config(&example_config().replace("[gateways.gitlab", "[gateways.gl2"));
    p.natgw(&["apply", "--auto-approve"]).ok();
    assert_eq!(ha_leftovers(&url), Vec::<String>::new());
    assert_eq!(Inventory::of(&url).instances, vec!["natgw-gl2".to_string()]);
    p.natgw(&["destroy", "--auto-approve"]).ok();
    assert_eq!(Inventory::of(&url), Inventory::destroyed());
    assert_eq!(ha_leftovers(&url), Vec::<String>::new());
}

#[test]
fn a_load_balancer_policy_stops_apply_before_any_route_and_names_the_exception() {
    let p = Project::with_config(
        &config(&ZONES),
        &[
            "--org-policy",
            "constraints/compute.restrictLoadBalancerCreationForTypes",
        ],
    );
    let url = p.emu.url.clone();
    p.natgw(&["apply", "--auto-approve"])
        .code(1)
        .stderr_has("constraints/compute.restrictLoadBalancerCreationForTypes")
        .stderr_has("INTERNAL_TCP_UDP")
        .stderr_has("forwardingRules/natgw-gitlab");
    assert_eq!(
        Inventory::of(&url).routes,
        Vec::<String>::new(),
        "no route without a next hop"
    );
}

/// The example without its fixed `internal_ip`, which both paths of a move would need at once.
fn without_internal_ip(text: &str) -> String {
    let out: String = text
        .lines()
        .filter(|l| !l.starts_with("internal_ip"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(out.lines().count(), text.lines().count(), "{text}");
    out
}

/// `zone` -> `zones` -> `zone`, make-before-break: sampled every 100 ms, a healthy VM carries the runners'
/// traffic throughout each move; the old route goes only after the new one (named apart) exists, the plan
/// warns that the egress IPs change, and each move converges.
#[test]
fn a_gateway_moves_between_zone_and_zones_without_a_moment_without_a_healthy_next_hop() {
    let single = without_internal_ip(&example_config());
    let p = Project::with_config(&single, &["--boot-ms", "300"]);
    let url = p.emu.url.clone();
    p.natgw(&["apply", "--auto-approve"]).ok();
    poll_until(&url, |h| !carriers(h).is_empty());

    p.write_config(&without_internal_ip(&config(&ZONES)));
    p.natgw(&["plan"])
        .ok()
        .stdout_has("Warning: gateway gitlab moves from `zone` to `zones`, make-before-break")
        .stdout_has("# gitlab.route[\"34.120.10.10/32\"] will be created")
        .stdout_has(&format!(
            "# gitlab.route[\"34.120.10.10/32\"] (deposed object {OLD_ROUTE}) will be destroyed"
        ));
    deposed_in_json(&p);
    apply_sampled_ending(
        &p,
        &url,
        "Apply complete! Resources: 14 added, 0 changed, 4 destroyed.",
    );
    made_before_broken(&p, LB_ROUTE, OLD_ROUTE);
    poll_until(&url, |h| carriers(h) == both_healthy());
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);

    p.write_config(&single);
    apply_sampled_ending(
        &p,
        &url,
        "Apply complete! Resources: 4 added, 0 changed, 14 destroyed.",
    );
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);
    assert_eq!(ha_leftovers(&url), Vec::<String>::new());
}

/// The route of the example's single VM, and the one through the load balancer that replaces it.
const OLD_ROUTE: &str = "natgw-gitlab-34-120-10-10-32";
const LB_ROUTE: &str = "natgw-gitlab-lb-34-120-10-10-32";

/// The JSON plan of a move keeps Terraform's addresses and tells the two routes to one destination apart as
/// Terraform does a deposed object: `(address, deposed)` is unique, and the old route is the deposed one.
fn deposed_in_json(p: &Project) {
    let run = p.natgw(&["plan", "--json"]);
    run.ok();
    let v: Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    let changes = v["resource_changes"].as_array().expect("resource_changes");
    let keys: Vec<(String, Option<String>)> = changes
        .iter()
        .map(|c| {
            let address = c["address"].as_str().unwrap_or_default().to_string();
            (address, c["deposed"].as_str().map(str::to_string))
        })
        .collect();
    let unique: std::collections::BTreeSet<_> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "{keys:?}");
    let address = "gitlab.route[\"34.120.10.10/32\"]".to_string();
    let routes: std::collections::BTreeSet<_> =
        keys.iter().filter(|(a, _)| *a == address).collect();
    assert_eq!(
        routes,
        [&(address.clone(), None), &(address, Some(OLD_ROUTE.into()))].into(),
        "the new route and the deposed one"
    );
}

/// A move killed between its two halves: right after the insert of the route through the load balancer,
/// before the old route's delete. Both routes carry the runners meanwhile; the next plan destroys the old route
/// and what served it (no longer deposed: nothing in that plan replaces it), and the next apply converges with
/// a healthy VM carrying throughout.
#[test]
fn a_move_killed_between_the_new_route_and_the_old_ones_delete_is_finished_by_the_next_apply() {
    let single = without_internal_ip(&example_config());
    let p = Project::with_config(&single, &["--boot-ms", "300", "--op-latency-ms", "300"]);
    let url = p.emu.url.clone();
    p.natgw(&["apply", "--auto-approve"]).ok();
    poll_until(&url, |h| !carriers(h).is_empty());
    p.write_config(&without_internal_ip(&config(&ZONES)));

    let from = route_order(&p).len();
    killed_after(&p, &["apply", "--auto-approve"], |seen| {
        seen.method == "POST"
            && seen.path.ends_with("/global/routes")
            && seen.body.contains(LB_ROUTE)
    });
    assert_eq!(
        route_order(&p)[from..],
        [format!("POST {LB_ROUTE}")],
        "killed after the new route's insert, before the old one's delete"
    );
    // The insert's operation completes on its own: then both routes lead to a healthy VM.
    let both = poll_until(&url, |h| {
        let routes = h["routes"].to_string();
        routes.contains(LB_ROUTE) && routes.contains(OLD_ROUTE)
    });
    let last = both.last().expect("an answer");
    assert!(
        carriers(last).iter().any(|(_, _, healthy)| *healthy),
        "{last}"
    );

    p.natgw(&["plan", "--detailed-exitcode"])
        .code(2)
        .stdout_has("# gitlab.route[\"34.120.10.10/32\"] will be destroyed")
        .stdout_lacks("will be created")
        .stdout_lacks("deposed");
    apply_sampled_ending(&p, &url, "Resources: 0 added, 0 changed, 4 destroyed.");
    assert_eq!(route_order(&p).last(), Some(&format!("DELETE {OLD_ROUTE}")));
    poll_until(&url, |h| carriers(h) == both_healthy());
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);
}

/// One zone -> two zones: the route to the one VM becomes a route through the load balancer, make-before-break
/// (named apart), and a healthy VM carries the traffic throughout.
#[test]
fn a_second_zone_switches_the_route_to_the_load_balancer_make_before_break() {
    let one = without_internal_ip(&config(&ZONES[..1]));
    let p = Project::with_config(&one, &["--boot-ms", "300"]);
    let url = p.emu.url.clone();
    p.natgw(&["apply", "--auto-approve"]).ok();
    poll_until(&url, |h| !carriers(h).is_empty());
    p.write_config(&without_internal_ip(&config(&ZONES)));
    apply_sampled_ending(&p, &url, "Apply complete!");
    made_before_broken(&p, LB_ROUTE, "natgw-gitlab-ha-34-120-10-10-32");
    poll_until(&url, |h| carriers(h) == both_healthy());
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);
}

/// The run created route `new` before it deleted route `old`.
fn made_before_broken(p: &Project, new: &str, old: &str) {
    let order = route_order(p);
    let at = |request: String| order.iter().position(|r| *r == request);
    let created = at(format!("POST {new}")).unwrap_or_else(|| panic!("{new} created: {order:?}"));
    let deleted = at(format!("DELETE {old}")).unwrap_or_else(|| panic!("{old} deleted: {order:?}"));
    assert!(created < deleted, "make-before-break: {order:?}");
}

/// The route requests of the run, in order: `POST name` for an insert, `DELETE name`.
fn route_order(p: &Project) -> Vec<String> {
    p.mutations()
        .iter()
        .filter_map(|r| {
            let path = r["path"].as_str()?;
            let method = r["method"].as_str()?;
            if !path.contains("/global/routes") {
                return None;
            }
            let name = match method {
                "POST" => r["name"].as_str()?.to_string(),
                _ => path.rsplit('/').next()?.to_string(),
            };
            Some(format!("{method} {name}"))
        })
        .collect()
}

/// With a fixed `internal_ip`, a move is refused at plan time naming the file and the field, and nothing
/// changes.
#[test]
fn moving_a_gateway_with_a_fixed_internal_ip_is_refused_naming_the_file_and_changing_nothing() {
    let p = Project::new(&[]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    let before = p.mutations().len();
    p.write_config(&config(&ZONES));
    let refused = p.natgw(&["apply", "--auto-approve"]);
    refused
        .code(1)
        .stderr_has("natgw.toml: gateways.gitlab.internal_ip: the gateway exists with `zone` and the config now says `zones`")
        .stderr_has("Remove internal_ip for the move");
    assert_eq!(p.mutations().len(), before, "nothing was changed");
}

#[test]
fn a_roll_replaces_an_unhealthy_zone_first_and_never_the_last_healthy_vm() {
    let p = Project::with_config(&config(&ZONES), &["--boot-ms", "300"]);
    let url = p.emu.url.clone();
    p.natgw(&["apply", "--auto-approve"]).ok();
    poll_until(&url, |h| carriers(h) == both_healthy());
    // Zone c's VM breaks; zone b's is the last healthy one.
    fail(&url, ZONES[1], "natgw-gitlab-c");
    let only_b = vec![("natgw-gitlab-b".to_string(), ZONES[0].to_string(), true)];
    poll_until(&url, |h| carriers(h) == only_b);

    p.write_config(&bigger());
    let from = p.mutations().len();
    // Every sample saw a healthy VM carry the traffic.
    apply_sampled(&p, &url);
    // Each VM replaced once, zone c's first, in the order of the request log (both groups' template
    // patches may come in either order: they replace nothing).
    let replaced: Vec<String> = p.mutations()[from..]
        .iter()
        .filter_map(|r| {
            let group = r["path"]
                .as_str()?
                .strip_suffix("/applyUpdatesToInstances")?;
            group.rsplit('/').next().map(str::to_string)
        })
        .collect();
    assert_eq!(replaced, ["natgw-gitlab-c", "natgw-gitlab-b"]);
    poll_until(&url, |h| carriers(h) == both_healthy());
}

#[test]
fn a_roll_stopped_by_the_ready_timeout_keeps_the_last_healthy_vm_and_the_next_apply_finishes_it() {
    let p = Project::with_config(&config(&ZONES), &["--boot-ms", "300"]);
    let url = p.emu.url.clone();
    p.natgw(&["apply", "--auto-approve"]).ok();
    poll_until(&url, |h| carriers(h) == both_healthy());
    let (old_b, _, _) = identity(&url, ZONES[0], "natgw-gitlab-b");
    fail(&url, ZONES[1], "natgw-gitlab-c");
    let only_b = vec![("natgw-gitlab-b".to_string(), ZONES[0].to_string(), true)];
    poll_until(&url, |h| carriers(h) == only_b);

    // Zone c's new VM needs a boot and two probes (more than 1 s): zone b, the last healthy VM, may not go.
    p.write_config(&bigger());
    p.natgw(&["apply", "--auto-approve", "--ready-timeout", "1"])
        .code(1)
        .stderr_has("natgw does not take down the last healthy zone");
    assert_eq!(
        identity(&url, ZONES[0], "natgw-gitlab-b").0,
        old_b,
        "zone b kept its VM"
    );
    // The next apply finishes the roll: zone b's group has the new template, its VM does not yet.
    p.natgw(&["plan"]).ok().stdout_has("up_to_date");
    p.natgw(&["apply", "--auto-approve"]).ok();
    assert_ne!(identity(&url, ZONES[0], "natgw-gitlab-b").0, old_b);
    poll_until(&url, |h| carriers(h) == both_healthy());
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn a_group_that_cannot_create_its_vm_says_where_its_errors_are() {
    let p = Project::with_config(
        &config(&ZONES),
        &["--org-policy", "constraints/compute.vmExternalIpAccess"],
    );
    let url = p.emu.url.clone();
    p.natgw(&["apply", "--auto-approve", "--ready-timeout", "2"])
        .code(1)
        .stderr_has("managed instance group natgw-gitlab-b did not create its VM natgw-gitlab-b within 2s")
        .stderr_has("gcloud compute instance-groups managed list-errors natgw-gitlab-b --zone europe-west1-b");
    assert_eq!(
        Inventory::of(&url).routes,
        Vec::<String>::new(),
        "no route without a VM"
    );
}
