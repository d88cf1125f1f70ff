//! Shared VPC: the gateway's network side in a host project, the rest in the stack's (service) project.
//! Everything is checked through Google's own clients, in the project where it must be.

use serde_json::json;

use crate::harness::{Project, example_config};
use crate::support::{
    PROJECT, compute_addresses, compute_firewalls, compute_instances, compute_networks,
    compute_projects, compute_routes, compute_subnetworks, request_kind, runtime, wait_global,
    wait_region,
};

pub(crate) const HOST: &str = "net-host-1";

/// The example, with its network in the host project.
pub(crate) fn config() -> String {
    let text = example_config();
    let out = text.replacen(
        "subnetwork    = \"runners\"",
        &format!("subnetwork    = \"runners\"\nnetwork_project = \"{HOST}\""),
        1,
    );
    assert_ne!(out, text, "the example names its subnetwork");
    out
}

/// The demo world, with its network in the host project and `shared_vpc` as given.
pub(crate) fn seed(shared_vpc: serde_json::Value) -> serde_json::Value {
    json!({
        "project": PROJECT,
        "networks": [{"name": "vpc-network", "subnetworks": [
            {"name": "runners", "region": "europe-west1", "ip_cidr_range": "10.0.0.0/20"}
        ]}],
        "clusters": [{"location": "europe-west1", "name": "gke-gitlab-runner", "network": "vpc-network",
            "node_pools": [{"name": "runners", "tags": ["existing-tag"]}]}],
        "shared_vpc": shared_vpc,
    })
}

/// Names starting with `natgw-` of the firewall rules, routes, addresses and instances of `project`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Held {
    firewalls: Vec<String>,
    routes: Vec<String>,
    addresses: Vec<(String, Option<String>)>,
    instances: Vec<(String, Option<String>)>,
}

fn held(url: &str, project: &str) -> Held {
    runtime().block_on(async {
        let natgw = |n: &Option<String>| n.as_deref().is_some_and(|n| n.starts_with("natgw-"));
        let fw = compute_firewalls(url)
            .await
            .list()
            .set_project(project)
            .send()
            .await
            .expect("list firewalls");
        let routes = compute_routes(url)
            .await
            .list()
            .set_project(project)
            .send()
            .await
            .expect("list routes");
        let addresses = compute_addresses(url)
            .await
            .aggregated_list()
            .set_project(project)
            .send()
            .await
            .expect("list addresses");
        let instances = compute_instances(url)
            .await
            .aggregated_list()
            .set_project(project)
            .send()
            .await
            .expect("list instances");
        let mut h = Held {
            firewalls: fw
                .items
                .iter()
                .filter(|f| natgw(&f.name))
                .filter_map(|f| f.name.clone())
                .collect(),
            routes: routes
                .items
                .iter()
                .filter(|r| natgw(&r.name))
                .filter_map(|r| r.name.clone())
                .collect(),
            addresses: addresses
                .items
                .values()
                .flat_map(|s| s.addresses.iter())
                .filter(|a| natgw(&a.name))
                .map(|a| (a.name.clone().unwrap_or_default(), a.subnetwork.clone()))
                .collect(),
            instances: instances
                .items
                .values()
                .flat_map(|s| s.instances.iter())
                .filter(|i| natgw(&i.name))
                .map(|i| {
                    let sub = i
                        .network_interfaces
                        .first()
                        .and_then(|n| n.subnetwork.clone());
                    (i.name.clone().unwrap_or_default(), sub)
                })
                .collect(),
        };
        h.firewalls.sort();
        h.routes.sort();
        h.addresses.sort();
        h
    })
}

fn is_host_subnet(url: &Option<String>) -> bool {
    url.as_deref().is_some_and(|u| {
        u.ends_with(&format!(
            "projects/{HOST}/regions/europe-west1/subnetworks/runners"
        ))
    })
}

#[test]
fn apply_puts_the_network_side_in_the_host_and_a_noop_plan_reads_both_projects_in_one_round() {
    let p = Project::with_seed(&config(), &seed(json!({"host": HOST})), &[]);
    let plan = p.natgw(&["plan"]);
    plan.ok();
    let tagged = regex::Regex::new(r"natgw-gitlab-[0-9a-f]{6}-allow").expect("regex");
    let text = plan.all();
    let firewall = tagged
        .find(&text)
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| panic!("the plan shows the host-project rule's name:\n{text}"));
    let tag = &firewall["natgw-gitlab-".len().."natgw-gitlab-".len() + 6];
    let route = format!("natgw-gitlab-{tag}-34-120-10-10-32");
    plan.stdout_has(&route);

    p.natgw(&["apply", "--auto-approve"]).ok();
    let host = held(&p.emu.url, HOST);
    assert_eq!(host.firewalls, vec![firewall.clone()]);
    assert_eq!(host.routes, vec![route.clone()]);
    assert!(
        host.addresses.is_empty() && host.instances.is_empty(),
        "{host:?}"
    );
    let svc = held(&p.emu.url, PROJECT);
    assert!(svc.firewalls.is_empty() && svc.routes.is_empty(), "{svc:?}");
    let names: Vec<&str> = svc.addresses.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["natgw-gitlab-ext", "natgw-gitlab-int"]);
    assert!(is_host_subnet(&svc.addresses[1].1), "{svc:?}");
    assert_eq!(svc.instances.len(), 1);
    assert_eq!(svc.instances[0].0, "natgw-gitlab");
    assert!(is_host_subnet(&svc.instances[0].1), "{svc:?}");

    // A no-op plan: one round of reads, the service project's five and the host's two.
    let before = p.emu.requests().len();
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);
    let requests = p.emu.requests().split_off(before);
    let mut kinds: Vec<String> = requests
        .iter()
        .map(|r| {
            let project = r.get("path").and_then(|x| x.as_str()).unwrap_or_default();
            let which = if project.contains(&format!("/projects/{HOST}/")) {
                "host"
            } else {
                "service"
            };
            format!("{which} {}", request_kind(r))
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "host GET /compute/v1/projects/*/global/firewalls",
            "host GET /compute/v1/projects/*/global/routes",
            "service GET /compute/v1/projects/*/aggregated/addresses",
            "service GET /compute/v1/projects/*/aggregated/instances",
            "service GET /compute/v1/projects/*/global/firewalls",
            "service GET /compute/v1/projects/*/global/routes",
            "service GET /v1/projects/*/locations/*/clusters/*/nodePools/*",
        ]
    );

    p.natgw(&["destroy", "--auto-approve"]).ok();
    assert_eq!(held(&p.emu.url, HOST), Held::default());
    assert_eq!(held(&p.emu.url, PROJECT), Held::default());
}

#[test]
fn a_service_project_that_is_not_attached_is_told_so() {
    let p = Project::with_seed(
        &config(),
        &seed(json!({"host": HOST, "detached": true})),
        &[],
    );
    p.natgw(&["apply", "--auto-approve"])
        .code(1)
        .output_has("Cross-project references for this resource are not allowed")
        .output_has(&format!(
            "project {PROJECT} is not attached to the Shared VPC host project {HOST}"
        ))
        .output_has("network_project");
    // The emulator's association, through Google's client: attaching makes the apply go through.
    runtime().block_on(async {
        let projects = compute_projects(&p.emu.url).await;
        let got = projects
            .get_xpn_host()
            .set_project(PROJECT)
            .send()
            .await
            .expect("getXpnHost");
        assert_eq!(got.name, None, "not attached: empty");
        let body = google_cloud_compute_v1::model::ProjectsEnableXpnResourceRequest::new()
            .set_xpn_resource(
                google_cloud_compute_v1::model::XpnResourceId::new()
                    .set_id(PROJECT)
                    .set_type(google_cloud_compute_v1::model::xpn_resource_id::Type::Project),
            );
        projects
            .enable_xpn_resource()
            .set_project(HOST)
            .set_body(body)
            .send()
            .await
            .expect("enableXpnResource");
        let got = projects
            .get_xpn_host()
            .set_project(PROJECT)
            .send()
            .await
            .expect("getXpnHost");
        assert_eq!(got.name.as_deref(), Some(HOST));
        let got = projects
            .get_xpn_resources()
            .set_project(HOST)
            .send()
            .await
            .expect("getXpnResources");
        let ids: Vec<_> = got.resources.iter().filter_map(|r| r.id.clone()).collect();
        assert_eq!(ids, [PROJECT]);
    });
    p.natgw(&["apply", "--auto-approve"]).ok();
}

#[test]
fn a_subnetwork_that_is_not_shared_is_told_so() {
    let p = Project::with_seed(
        &config(),
        &seed(json!({"host": HOST, "shared_subnetworks": []})),
        &[],
    );
    p.natgw(&["apply", "--auto-approve"])
        .code(1)
        .output_has(&format!(
            "Required 'compute.subnetworks.use' permission for 'projects/{HOST}/regions/europe-west1/subnetworks/runners'"
        ))
        .output_has(&format!("is not shared with project {PROJECT}"))
        .output_has("subnetwork or network_project");
    assert!(held(&p.emu.url, PROJECT).instances.is_empty());
}

/// The example's network and subnetwork, made in the stack's own project through Google's client (the seed
/// put them in the host), so that a gateway can move out of the host.
fn own_network(url: &str) {
    use google_cloud_compute_v1::model::{Network, Subnetwork};
    runtime().block_on(async {
        let op = compute_networks(url)
            .await
            .insert()
            .set_project(PROJECT)
            .set_body(
                Network::new()
                    .set_name("vpc-network")
                    .set_auto_create_subnetworks(false),
            )
            .send()
            .await
            .expect("insert the network");
        wait_global(url, op).await;
        let op = compute_subnetworks(url)
            .await
            .insert()
            .set_project(PROJECT)
            .set_region("europe-west1")
            .set_body(
                Subnetwork::new()
                    .set_name("runners")
                    .set_network("global/networks/vpc-network")
                    .set_ip_cidr_range("10.0.0.0/20"),
            )
            .send()
            .await
            .expect("insert the subnetwork");
        wait_region(url, "europe-west1", op).await;
    });
}

/// A gateway moved out of the host (its `network_project` removed from the config): the config no longer
/// names the host, but the VM the plan replaces is on the host's network, so the plan reads the host too and
/// destroys this stack's rule and route there, each a deposed object of the address its successor takes.
/// Nothing is left in the host, and the next plan has no changes. Moved back in, nothing is left outside.
#[test]
fn a_gateway_moved_out_of_its_host_and_back_leaves_nothing_behind() {
    let p = Project::with_seed(&config(), &seed(json!({"host": HOST})), &[]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    let before = held(&p.emu.url, HOST);
    assert_eq!((before.firewalls.len(), before.routes.len()), (1, 1));
    own_network(&p.emu.url);

    p.write_config(&example_config());
    let plan = p.natgw(&["plan", "--detailed-exitcode"]);
    plan.code(2);
    plan.stdout_has(&format!(
        "# gitlab.firewall (deposed object {}) will be destroyed",
        before.firewalls[0]
    ))
    .stdout_has(&format!(
        "# gitlab.route[\"34.120.10.10/32\"] (deposed object {}) will be destroyed",
        before.routes[0]
    ));
    p.natgw(&["apply", "--auto-approve"]).ok();
    assert_eq!(held(&p.emu.url, HOST), Held::default());
    let svc = held(&p.emu.url, PROJECT);
    assert_eq!(svc.firewalls, ["natgw-gitlab-allow"]);
    assert_eq!(svc.routes, ["natgw-gitlab-34-120-10-10-32"]);
    assert!(!is_host_subnet(&svc.instances[0].1), "{svc:?}");
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);

    p.write_config(&config());
    p.natgw(&["apply", "--auto-approve"]).ok();
    let host = held(&p.emu.url, HOST);
    assert_eq!(
        (host.firewalls, host.routes),
        (before.firewalls, before.routes)
    );
    let svc = held(&p.emu.url, PROJECT);
    assert!(svc.firewalls.is_empty() && svc.routes.is_empty(), "{svc:?}");
    assert!(is_host_subnet(&svc.instances[0].1), "{svc:?}");
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);
}
