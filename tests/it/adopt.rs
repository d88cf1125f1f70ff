//! Adopting the blog's hand-made gateway in place (`[gateways.NAME.adopt]`), and each refusal.

use google_cloud_compute_v1::model::{Address, Firewall, Instance, Route};
use serde_json::{Value, json};

use crate::emulator::{j, model};
use crate::harness::{Project, example_config, is_lock_request};
use crate::inventory::Inventory;
use crate::support::{
    PROJECT, compute_addresses, compute_firewalls, compute_instances, compute_routes, runtime,
};

const EXT: &str = "nat-gateway-external-address";
const INT: &str = "nat-gateway-internal-address";
const VM: &str = "vm-nat-gateway";
const ROUTE: &str = "routes-gke-gitlab-runner-to-nat-gateway";
const FIREWALL: &str = "allow-runners-to-nat";
const NEW_ROUTE: &str = "natgw-gitlab-34-120-10-10-32";

const ADOPT: &str = r#"
[gateways.gitlab.adopt]
external_address = "nat-gateway-external-address"
internal_address = "nat-gateway-internal-address"
instance         = "vm-nat-gateway"
routes           = ["routes-gke-gitlab-runner-to-nat-gateway"]
firewall         = "allow-runners-to-nat"
"#;

fn with_adopt() -> String {
    format!("{}{ADOPT}", example_config())
}

/// What the blog's authors made by hand, with their names; `change` edits a body before its insert.
struct Blog {
    ext_region: &'static str,
    can_ip_forward: bool,
    route_dest: &'static str,
}

impl Default for Blog {
    fn default() -> Blog {
        Blog {
            ext_region: "europe-west1",
            can_ip_forward: true,
            route_dest: "34.120.10.10/32",
        }
    }
}

fn check_done(op: &impl serde::Serialize) {
    let v = j(op);
    assert_eq!(v["status"], "DONE", "{v}");
    assert!(v.get("error").is_none(), "operation failed: {v}");
}

fn seed(url: &str, blog: &Blog) {
    runtime().block_on(async {
        let addresses = compute_addresses(url).await;
        for (name, region, body) in [
            (
                EXT,
                blog.ext_region,
                json!({"name": EXT, "addressType": "EXTERNAL"}),
            ),
            (
                INT,
                "europe-west1",
                json!({"name": INT, "addressType": "INTERNAL", "address": "10.0.0.50",
                       "subnetwork": "regions/europe-west1/subnetworks/runners"}),
            ),
        ] {
            check_done(
                &addresses
                    .insert()
                    .set_project(PROJECT)
                    .set_region(region)
                    .set_body(model::<Address>(body))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("insert {name}: {e}")),
            );
        }
        let ext_ip = addresses
            .get()
            .set_project(PROJECT)
            .set_region(blog.ext_region)
            .set_address(EXT)
            .send()
            .await
            .expect("read the external address")
            .address
            .expect("an IP");
        let mut nic = json!({"subnetwork": "regions/europe-west1/subnetworks/runners", "networkIP": "10.0.0.50"});
        if blog.ext_region == "europe-west1" {
            nic["accessConfigs"] = json!([{"name": "External NAT", "natIP": ext_ip}]);
        }
        check_done(
            &compute_instances(url)
                .await
                .insert()
                .set_project(PROJECT)
                .set_zone("europe-west1-b")
                .set_body(model::<Instance>(json!({
                    "name": VM, "machineType": "zones/europe-west1-b/machineTypes/e2-micro",
                    "canIpForward": blog.can_ip_forward, "tags": {"items": ["nat-gateway"]},
                    "disks": [{"boot": true, "initializeParams": {"sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
                    "networkInterfaces": [nic],
                })))
                .send()
                .await
                .expect("insert the VM"),
        );
        check_done(
            &compute_routes(url)
                .await
                .insert()
                .set_project(PROJECT)
                .set_body(model::<Route>(json!({
                    "name": ROUTE, "network": "global/networks/vpc-network", "destRange": blog.route_dest,
                    "priority": 900, "tags": ["gitlab-runner"], "nextHopIp": "10.0.0.50",
                })))
                .send()
                .await
                .expect("insert the route"),
        );
        check_done(
            &compute_firewalls(url)
                .await
                .insert()
                .set_project(PROJECT)
                .set_body(model::<Firewall>(json!({
                    "name": FIREWALL, "network": "global/networks/vpc-network",
                    "sourceRanges": ["10.0.0.0/20", "10.4.0.0/14"], "targetTags": ["nat-gateway"],
                    "allowed": [{"IPProtocol": "tcp", "ports": ["443"]}, {"IPProtocol": "tcp", "ports": ["22"]}],
                })))
                .send()
                .await
                .expect("insert the firewall rule"),
        );
    });
}

/// The VM's id and both of its IPs, read through Google's client.
fn vm_identity(url: &str) -> (u64, String, String) {
    runtime().block_on(async {
        let vm = compute_instances(url)
            .await
            .get()
            .set_project(PROJECT)
            .set_zone("europe-west1-b")
            .set_instance(VM)
            .send()
            .await
            .expect("read the VM");
        let v = j(&vm);
        let nic = &v["networkInterfaces"][0];
        (
            vm.id.expect("an id"),
            nic["networkIP"].as_str().unwrap_or_default().to_string(),
            nic["accessConfigs"][0]["natIP"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    })
}

/// Every name of every address, instance, firewall rule and route in the project, whoever made it.
fn all_names(url: &str) -> Vec<String> {
    runtime().block_on(async {
        let mut out = Vec::new();
        let a = compute_addresses(url)
            .await
            .aggregated_list()
            .set_project(PROJECT)
            .send()
            .await
            .expect("list addresses");
        out.extend(
            a.items
                .values()
                .flat_map(|s| s.addresses.iter())
                .filter_map(|x| x.name.clone()),
        );
        let i = compute_instances(url)
            .await
            .aggregated_list()
            .set_project(PROJECT)
            .send()
            .await
            .expect("list instances");
        out.extend(
            i.items
                .values()
                .flat_map(|s| s.instances.iter())
                .filter_map(|x| x.name.clone()),
        );
        let f = compute_firewalls(url)
            .await
            .list()
            .set_project(PROJECT)
            .send()
            .await
            .expect("list firewalls");
        out.extend(f.items.iter().filter_map(|x| x.name.clone()));
        let r = compute_routes(url)
            .await
            .list()
            .set_project(PROJECT)
            .send()
            .await
            .expect("list routes");
        out.extend(r.items.iter().filter_map(|x| x.name.clone()));
        out.sort();
        out
    })
}

fn path_of(r: &Value) -> &str {
    r["path"].as_str().unwrap_or_default()
}

#[test]
fn the_blog_s_gateway_is_adopted_in_place_then_destroyed_like_any_other() {
    let p = Project::with_config(&with_adopt(), &[]);
    let untouched = all_names(&p.emu.url);
    seed(&p.emu.url, &Blog::default());
    let before = vm_identity(&p.emu.url);
    assert!(!before.2.is_empty(), "the VM has its external IP");

    p.natgw(&["plan", "--detailed-exitcode"])
        .code(2)
        .stdout_has("will be adopted")
        .golden("plan-adopt.txt", "plan");
    let json = p.natgw(&["--json", "plan"]);
    json.ok();
    let v: Value = serde_json::from_str(&json.stdout).expect("JSON plan");
    let importing: Vec<(&str, &str)> = v["resource_changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| {
            Some((
                c["address"].as_str()?,
                c["change"]["importing"]["id"].as_str()?,
            ))
        })
        .collect();
    assert_eq!(
        importing,
        [
            ("gitlab.external_address", EXT),
            ("gitlab.internal_address", INT),
            ("gitlab.firewall", FIREWALL),
            ("gitlab.instance", VM),
            ("gitlab.route[\"34.120.10.10/32\"]", ROUTE),
        ]
    );
    let pretty = serde_json::to_string_pretty(&v).expect("JSON");
    crate::golden::check_section("plan-adopt.json", "plan --json", &pretty);

    let setup = p.emu.requests().len();
    p.natgw(&["apply", "--auto-approve"]).ok();
    assert_eq!(
        vm_identity(&p.emu.url),
        before,
        "the VM's id and IPs are kept"
    );
    let log: Vec<Value> = p.emu.requests().into_iter().skip(setup).collect();
    let at = |method: &str, tail: &str| {
        log.iter()
            .position(|r| r["method"] == method && path_of(r).ends_with(tail))
            .unwrap_or_else(|| panic!("no {method} …{tail} in the log"))
    };
    let inserted = log
        .iter()
        .position(|r| {
            r["method"] == "POST"
                && path_of(r).ends_with("/global/routes")
                && r.to_string().contains(NEW_ROUTE)
        })
        .or_else(|| Some(at("POST", "/global/routes")))
        .unwrap_or_default();
    let deleted = at("DELETE", &format!("/global/routes/{ROUTE}"));
    assert!(inserted < deleted, "make-before-break: the new route first");
    // Nothing that carries the IPs or the VM was deleted.
    // (The stack lock's own rule is released with a DELETE: natgw's bookkeeping, not a resource.)
    for r in log.iter().filter(|r| !is_lock_request(r)) {
        if r["method"] == "DELETE" {
            assert!(path_of(r).ends_with(ROUTE), "deleted {}", path_of(r));
        }
    }

    for config in [with_adopt(), example_config()] {
        p.write_config(&config);
        let before = p.emu.requests().len();
        p.natgw(&["plan", "--detailed-exitcode"])
            .code(0)
            .stdout_has("No changes.");
        // One round: four list calls and the node pool.
        assert_eq!(
            p.emu.requests().len() - before,
            5,
            "a no-op plan's requests"
        );
    }

    p.natgw(&["destroy", "--auto-approve"]).ok();
    assert_eq!(
        all_names(&p.emu.url),
        untouched,
        "destroy removes everything, and nothing else"
    );
    assert_eq!(Inventory::of(&p.emu.url), Inventory::destroyed());
}

fn refused(config: &str, blog: &Blog, section: &str, reason: &str) {
    let p = Project::with_config(config, &[]);
    seed(&p.emu.url, blog);
    let setup = p.mutations().len();
    p.natgw(&["plan"])
        .code(1)
        .output_has(reason)
        .golden("errors-adopt.txt", section);
    assert_eq!(p.mutations().len(), setup, "{section}: nothing was sent");
}

#[test]
fn adopting_what_does_not_fit_is_refused_with_the_reason() {
    let adopt = with_adopt();
    refused(
        &adopt.replace(
            "instance         = \"vm-nat-gateway\"",
            "instance = \"vm-missing\"",
        ),
        &Blog::default(),
        "a VM that does not exist",
        "does not exist",
    );
    refused(
        &adopt,
        &Blog {
            can_ip_forward: false,
            ..Blog::default()
        },
        "a VM without canIpForward",
        "canIpForward is false",
    );
    refused(
        &adopt,
        &Blog {
            route_dest: "203.0.113.0/24",
            ..Blog::default()
        },
        "a route to another range",
        "not one of the gateway's destinations",
    );
    refused(
        &adopt,
        &Blog {
            ext_region: "europe-west4",
            ..Blog::default()
        },
        "an address in another region",
        "it is in region europe-west4",
    );
    let p = Project::with_config(&adopt, &[]);
    seed(&p.emu.url, &Blog::default());
    p.write_config(&adopt.replace("stack   = \"gitlab-runners\"", "stack   = \"other\""));
    p.natgw(&["apply", "--auto-approve"]).ok();
    p.write_config(&adopt);
    let setup = p.mutations().len();
    p.natgw(&["plan"])
        .code(1)
        .output_has("belongs to natgw stack \"other\"")
        .golden("errors-adopt.txt", "adopted by another stack");
    assert_eq!(p.mutations().len(), setup);
}
