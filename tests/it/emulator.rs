//! The emulator's Compute Engine API driven through `google-cloud-compute-v1`.

use google_cloud_compute_v1::model::{
    Address, Firewall, Instance, InstancesSetLabelsRequest, Metadata, Network,
    RegionSetLabelsRequest, Route, Subnetwork, Tags,
};
use google_cloud_gax::error::Error;
use google_cloud_gax::error::rpc::StatusDetails;
use google_cloud_gax::paginator::ItemPaginator;
use google_cloud_gax::paginator::internal::PageableResponse;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::harness::Natgw;
use crate::support::{
    EmulatorProcess, PROJECT, compute_addresses, compute_firewalls, compute_global_operations,
    compute_instances, compute_machine_types, compute_networks, compute_region_operations,
    compute_regions, compute_routes, compute_subnetworks, compute_zone_operations, compute_zones,
};

const REGION: &str = "europe-west1";
const ZONE: &str = "europe-west1-b";
const SUBNET: &str = "regions/europe-west1/subnetworks/runners";

/// Every item of a paginated list.
pub(crate) trait All<R: PageableResponse> {
    async fn all(self) -> Result<Vec<R::PageItem>, Error>;
}

impl<P: ItemPaginator<R, Error>, R: PageableResponse> All<R> for P {
    async fn all(mut self) -> Result<Vec<R::PageItem>, Error> {
        let mut out = Vec::new();
        while let Some(item) = self.next().await {
            out.push(item?);
        }
        Ok(out)
    }
}

/// A Google model from JSON (lets a test send what the typed setters cannot, like an unknown field).
pub(crate) fn model<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("JSON matches the model")
}

pub(crate) fn j<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("model serialises")
}

/// `(HTTP status, reason of errors[0], canonical status name)` of a failed call.
pub(crate) fn failure(e: &Error) -> (u16, String, String) {
    let status = e.status().expect("a service error with a status");
    let reason = status
        .details
        .iter()
        .find_map(|d| match d {
            StatusDetails::ErrorInfo(info) => Some(info.reason.clone()),
            _ => None,
        })
        .unwrap_or_default();
    (
        e.http_status_code().expect("an HTTP status"),
        reason,
        format!("{:?}", status.code),
    )
}

/// The `(httpErrorStatusCode, error.errors[0].code)` of a DONE operation that failed.
fn op_failure<T: Serialize>(op: &T) -> (u64, String) {
    let v = j(op);
    assert_eq!(v["status"], "DONE", "{v}");
    (
        v["httpErrorStatusCode"].as_u64().unwrap_or(0),
        v["error"]["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

fn op_ok<T: Serialize>(op: &T) {
    let v = j(op);
    assert_eq!(v["status"], "DONE", "{v}");
    assert!(v.get("error").is_none(), "operation failed: {v}");
    assert!(
        v.get("httpErrorStatusCode").is_none(),
        "operation failed: {v}"
    );
}

async fn insert_address(
    url: &str,
    body: Value,
) -> Result<google_cloud_compute_v1::model::Operation, Error> {
    compute_addresses(url)
        .await
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(model::<Address>(body))
        .send()
        .await
}

async fn get_address(url: &str, name: &str) -> Result<Address, Error> {
    compute_addresses(url)
        .await
        .get()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_address(name)
        .send()
        .await
}

async fn insert_instance(
    url: &str,
    body: Value,
) -> Result<google_cloud_compute_v1::model::Operation, Error> {
    compute_instances(url)
        .await
        .insert()
        .set_project(PROJECT)
        .set_zone(ZONE)
        .set_body(model::<Instance>(body))
        .send()
        .await
}

async fn get_instance(url: &str, name: &str) -> Value {
    j(&compute_instances(url)
        .await
        .get()
        .set_project(PROJECT)
        .set_zone(ZONE)
        .set_instance(name)
        .send()
        .await
        .expect("get instance"))
}

fn gateway(name: &str, extra: Value) -> Value {
    let mut v = json!({
        "name": name,
        "machineType": format!("zones/{ZONE}/machineTypes/e2-small"),
        "canIpForward": true,
        "disks": [{"boot": true, "autoDelete": true, "initializeParams": {"sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
        "networkInterfaces": [{"subnetwork": SUBNET}],
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    v
}

#[tokio::test]
async fn catalogue_of_regions_zones_and_machine_types() {
    let emu = EmulatorProcess::spawn(&[]);
    let regions = compute_regions(&emu.url).await;
    let r = regions
        .get()
        .set_project("any-project")
        .set_region(REGION)
        .send()
        .await
        .expect("region");
    assert_eq!(r.name.as_deref(), Some(REGION));
    assert!(r.zones.iter().any(|z| z.ends_with("/zones/europe-west1-b")));
    let all: Vec<_> = regions
        .list()
        .set_project("p")
        .by_item()
        .all()
        .await
        .expect("list regions");
    assert!(all.len() >= 4, "several regions");
    let e = regions
        .get()
        .set_project("p")
        .set_region("mars-north1")
        .send()
        .await
        .expect_err("unknown region");
    assert_eq!(failure(&e).0, 404);
    assert_eq!(failure(&e).1, "notFound");

    let zones = compute_zones(&emu.url).await;
    let z = zones
        .get()
        .set_project("p")
        .set_zone(ZONE)
        .send()
        .await
        .expect("zone");
    assert!(
        z.region
            .as_deref()
            .is_some_and(|r| r.ends_with("/regions/europe-west1"))
    );
    let all: Vec<_> = zones
        .list()
        .set_project("p")
        .by_item()
        .all()
        .await
        .expect("list zones");
    assert!(all.len() >= 12);

    let mts = compute_machine_types(&emu.url).await;
    let m = mts
        .get()
        .set_project("p")
        .set_zone(ZONE)
        .set_machine_type("e2-small")
        .send()
        .await
        .expect("machine type");
    assert_eq!(m.guest_cpus, Some(2));
    assert_eq!(m.memory_mb, Some(2048));
    let all: Vec<_> = mts
        .list()
        .set_project("p")
        .set_zone(ZONE)
        .by_item()
        .all()
        .await
        .expect("list");
    let names: Vec<_> = all.iter().filter_map(|m| m.name.clone()).collect();
    assert!(
        names.contains(&"n2-standard-2".to_string()) && names.contains(&"e2-medium".to_string())
    );
    let e = mts
        .get()
        .set_project("p")
        .set_zone(ZONE)
        .set_machine_type("x9-huge")
        .send()
        .await
        .expect_err("unknown");
    assert_eq!(failure(&e).0, 404);
}

#[tokio::test]
async fn networks_with_their_automatic_routes() {
    let emu = EmulatorProcess::spawn(&[]);
    let networks = compute_networks(&emu.url).await;
    let op = networks
        .insert()
        .set_project("proj-a")
        .set_body(
            Network::new()
                .set_name("net-a")
                .set_auto_create_subnetworks(false),
        )
        .send()
        .await
        .expect("insert network");
    op_ok(&op);
    let n = networks
        .get()
        .set_project("proj-a")
        .set_network("net-a")
        .send()
        .await
        .expect("get");
    assert_eq!(n.kind.as_deref(), Some("compute#network"));
    assert!(
        n.id.is_some()
            && n.self_link
                .as_deref()
                .is_some_and(|s| s.ends_with("/projects/proj-a/global/networks/net-a"))
    );
    let e = networks
        .insert()
        .set_project("proj-a")
        .set_body(
            Network::new()
                .set_name("net-a")
                .set_auto_create_subnetworks(false),
        )
        .send()
        .await
        .expect_err("exists");
    assert_eq!(
        failure(&e),
        (409, "alreadyExists".into(), "AlreadyExists".into())
    );
    let e = networks
        .insert()
        .set_project("proj-a")
        .set_body(Network::new().set_name("Bad_Name"))
        .send()
        .await
        .expect_err("bad name");
    assert_eq!(failure(&e).0, 400);
    assert_eq!(failure(&e).1, "invalid");

    let subnets = compute_subnetworks(&emu.url).await;
    let op = subnets
        .insert()
        .set_project("proj-a")
        .set_region(REGION)
        .set_body(
            Subnetwork::new()
                .set_name("sub-a")
                .set_network("global/networks/net-a")
                .set_ip_cidr_range("10.10.0.0/24"),
        )
        .send()
        .await
        .expect("insert subnetwork");
    op_ok(&op);
    let routes: Vec<Route> = compute_routes(&emu.url)
        .await
        .list()
        .set_project("proj-a")
        .by_item()
        .all()
        .await
        .expect("routes");
    let default = routes
        .iter()
        .find(|r| r.dest_range.as_deref() == Some("0.0.0.0/0"))
        .expect("default route");
    assert!(
        default
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("default-route-"))
    );
    assert!(
        default
            .next_hop_gateway
            .as_deref()
            .is_some_and(|g| g.ends_with("/global/gateways/default-internet-gateway"))
    );
    let local = routes
        .iter()
        .find(|r| r.dest_range.as_deref() == Some("10.10.0.0/24"))
        .expect("local route");
    assert!(
        local
            .next_hop_network
            .as_deref()
            .is_some_and(|n| n.ends_with("/global/networks/net-a"))
    );
    assert_eq!(
        local.description.as_deref(),
        Some("Default local route to the subnetwork 10.10.0.0/24.")
    );
    let e = compute_routes(&emu.url)
        .await
        .delete()
        .set_project("proj-a")
        .set_route(local.name.clone().unwrap_or_default())
        .send()
        .await
        .expect_err("local route stays");
    assert_eq!(failure(&e).0, 400);

    let e = networks
        .delete()
        .set_project("proj-a")
        .set_network("net-a")
        .send()
        .await
        .expect_err("has subnetworks");
    assert_eq!(
        failure(&e),
        (
            400,
            "resourceInUseByAnotherResource".into(),
            "InvalidArgument".into()
        )
    );
    op_ok(
        &subnets
            .delete()
            .set_project("proj-a")
            .set_region(REGION)
            .set_subnetwork("sub-a")
            .send()
            .await
            .expect("delete subnet"),
    );
    let routes: Vec<Route> = compute_routes(&emu.url)
        .await
        .list()
        .set_project("proj-a")
        .by_item()
        .all()
        .await
        .expect("routes");
    assert_eq!(routes.len(), 1, "the local route went with its subnetwork");
    op_ok(
        &networks
            .delete()
            .set_project("proj-a")
            .set_network("net-a")
            .send()
            .await
            .expect("delete network"),
    );
    let routes: Vec<Route> = compute_routes(&emu.url)
        .await
        .list()
        .set_project("proj-a")
        .by_item()
        .all()
        .await
        .expect("routes");
    assert!(routes.is_empty(), "the default route went with its network");
    let e = networks
        .get()
        .set_project("proj-a")
        .set_network("net-a")
        .send()
        .await
        .expect_err("gone");
    assert_eq!(failure(&e), (404, "notFound".into(), "NotFound".into()));
}

#[tokio::test]
async fn subnetworks_rules_and_aggregated_list() {
    let emu = EmulatorProcess::seeded(&[]);
    let subnets = compute_subnetworks(&emu.url).await;
    let s = subnets
        .get()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_subnetwork("runners")
        .send()
        .await
        .expect("seeded");
    assert_eq!(s.ip_cidr_range.as_deref(), Some("10.0.0.0/20"));
    assert_eq!(s.gateway_address.as_deref(), Some("10.0.0.1"));
    let e = subnets
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(
            Subnetwork::new()
                .set_name("overlap")
                .set_network("global/networks/vpc-network")
                .set_ip_cidr_range("10.0.8.0/24"),
        )
        .send()
        .await
        .expect_err("overlaps runners");
    assert_eq!(failure(&e).0, 400);
    let e = subnets
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(
            Subnetwork::new()
                .set_name("orphan")
                .set_network("global/networks/nope")
                .set_ip_cidr_range("10.9.0.0/24"),
        )
        .send()
        .await
        .expect_err("no such network");
    assert_eq!(failure(&e).0, 404);
    op_ok(
        &subnets
            .insert()
            .set_project(PROJECT)
            .set_region("us-central1")
            .set_body(
                Subnetwork::new()
                    .set_name("us")
                    .set_network("global/networks/vpc-network")
                    .set_ip_cidr_range("10.1.0.0/24"),
            )
            .send()
            .await
            .expect("second subnetwork"),
    );
    let agg = subnets
        .aggregated_list()
        .set_project(PROJECT)
        .send()
        .await
        .expect("aggregated");
    let v = j(&agg);
    assert_eq!(
        v["items"]["regions/europe-west1"]["subnetworks"][0]["name"],
        "runners"
    );
    assert_eq!(
        v["items"]["regions/us-central1"]["subnetworks"][0]["name"],
        "us"
    );
    assert_eq!(
        v["items"]["regions/us-east1"]["warning"]["code"], "NO_RESULTS_ON_PAGE",
        "empty scopes are listed with a warning"
    );
    let listed: Vec<_> = subnets
        .list()
        .set_project(PROJECT)
        .set_region(REGION)
        .by_item()
        .all()
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);

    // A subnetwork in use by an address cannot be deleted: the operation fails.
    let _ = compute_addresses(&emu.url)
        .await
        .insert()
        .set_project(PROJECT)
        .set_region("us-central1")
        .set_body(model::<Address>(json!({"name": "int", "addressType": "INTERNAL", "subnetwork": "regions/us-central1/subnetworks/us"})))
        .send()
        .await
        .expect("internal address in us-central1");
    let op = subnets
        .delete()
        .set_project(PROJECT)
        .set_region("us-central1")
        .set_subnetwork("us")
        .send()
        .await
        .expect("accepted");
    assert_eq!(
        op_failure(&op),
        (400, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE".into())
    );
}

#[tokio::test]
async fn addresses_internal_external_labels_and_paging() {
    let emu = EmulatorProcess::seeded(&[]);
    op_ok(
        &insert_address(
            &emu.url,
            json!({"name": "ext", "labels": {"natgw-stack": "gitlab"}}),
        )
        .await
        .expect("external"),
    );
    let a = get_address(&emu.url, "ext").await.expect("get");
    assert_eq!(j(&a)["addressType"], "EXTERNAL");
    assert_eq!(j(&a)["status"], "RESERVED");
    // compute.v1.json, Address.labels: "These can only be added or modified by the setLabels method".
    assert!(a.labels.is_empty(), "{:?}", a.labels);
    assert!(a.address.is_some());

    op_ok(&insert_address(&emu.url, json!({"name": "int", "addressType": "INTERNAL", "subnetwork": SUBNET, "address": "10.0.0.10"})).await.expect("internal"));
    let i = get_address(&emu.url, "int").await.expect("get");
    assert_eq!(i.address.as_deref(), Some("10.0.0.10"));
    assert!(
        i.subnetwork
            .as_deref()
            .is_some_and(|s| s.ends_with("/subnetworks/runners"))
    );

    // Outside the subnetwork: refused at once.
    let e = insert_address(&emu.url, json!({"name": "out", "addressType": "INTERNAL", "subnetwork": SUBNET, "address": "10.9.0.10"})).await.expect_err("outside");
    assert_eq!(failure(&e).0, 400);
    // Taken: accepted, fails in the operation.
    let op = insert_address(&emu.url, json!({"name": "dup", "addressType": "INTERNAL", "subnetwork": SUBNET, "address": "10.0.0.10"})).await.expect("accepted");
    assert_eq!(
        op_failure(&op),
        (400, "IP_IN_USE_BY_ANOTHER_RESOURCE".into())
    );
    assert_eq!(
        failure(&get_address(&emu.url, "dup").await.expect_err("not created")).0,
        404
    );
    // Auto-allocated internal addresses avoid the reserved ones.
    op_ok(
        &insert_address(
            &emu.url,
            json!({"name": "auto", "addressType": "INTERNAL", "subnetwork": SUBNET}),
        )
        .await
        .expect("auto"),
    );
    assert_eq!(
        get_address(&emu.url, "auto")
            .await
            .expect("auto")
            .address
            .as_deref(),
        // 10.0.0.2 to .4 are the demo node pool's three node VMs (one per zone).
        Some("10.0.0.5")
    );

    // Schema: unknown field, missing required name, bad enum.
    let e = insert_address(&emu.url, json!({"name": "x", "colour": "red"}))
        .await
        .expect_err("unknown field");
    let (code, _, status) = failure(&e);
    assert_eq!((code, status.as_str()), (400, "InvalidArgument"));
    assert!(
        e.status()
            .is_some_and(|s| s.message.contains("Unknown name \"colour\"")),
        "{e}"
    );
    let e = insert_address(&emu.url, json!({"description": "no name"}))
        .await
        .expect_err("name required");
    assert_eq!(failure(&e).0, 400);
    assert_eq!(failure(&e).1, "required");
    let e = insert_address(&emu.url, json!({"name": "x", "addressType": "SIDEWAYS"}))
        .await
        .expect_err("bad enum");
    assert_eq!(failure(&e).0, 400);
    // Output-only fields are ignored.
    op_ok(
        &insert_address(
            &emu.url,
            json!({"name": "ro", "status": "IN_USE", "id": "42"}),
        )
        .await
        .expect("output-only ignored"),
    );
    assert_eq!(
        j(&get_address(&emu.url, "ro").await.expect("ro"))["status"],
        "RESERVED"
    );

    // setLabels needs the current fingerprint.
    let client = compute_addresses(&emu.url).await;
    let set = |fp: Value| {
        client
            .set_labels()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_resource("ext")
            .set_body(model::<RegionSetLabelsRequest>(
                json!({"labels": {"a": "b"}, "labelFingerprint": fp}),
            ))
            .send()
    };
    let e = set(json!("AAAAAAAAAAA="))
        .await
        .expect_err("stale fingerprint");
    assert_eq!(
        failure(&e),
        (412, "conditionNotMet".into(), "FailedPrecondition".into())
    );
    let fp = j(&a)["labelFingerprint"].clone();
    op_ok(&set(fp.clone()).await.expect("current fingerprint"));
    let after = get_address(&emu.url, "ext").await.expect("get");
    assert_eq!(after.labels.get("a").map(String::as_str), Some("b"));
    assert!(
        !after.labels.contains_key("natgw-stack"),
        "setLabels replaces all labels"
    );
    assert_ne!(j(&after)["labelFingerprint"], fp);

    // Paging: 4 addresses, 3 pages of at most 2... (plus aggregatedList over regions).
    let all: Vec<Address> = client
        .list()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_max_results(2_u32)
        .by_item()
        .all()
        .await
        .expect("pages");
    assert_eq!(all.len(), 4);
    let lists = emu
        .requests()
        .iter()
        .filter(|r| {
            r["method"] == "GET"
                && r["path"] == format!("/compute/v1/projects/{PROJECT}/regions/{REGION}/addresses")
        })
        .count();
    assert_eq!(lists, 2, "two pages of two");
    let e = client
        .list()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_page_token("garbage!")
        .send()
        .await
        .expect_err("bad token");
    assert_eq!(failure(&e).0, 400);

    let agg = client
        .aggregated_list()
        .set_project(PROJECT)
        .set_filter(r#"labels.a = "b""#)
        .send()
        .await
        .expect("aggregated");
    let v = j(&agg);
    let items = v["items"]["regions/europe-west1"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["name"], "ext");
    let agg = client
        .aggregated_list()
        .set_project(PROJECT)
        .set_filter(r#"name eq "(int|auto)""#)
        .send()
        .await
        .expect("regex");
    assert_eq!(
        j(&agg)["items"]["regions/europe-west1"]["addresses"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // aggregatedList pages too.
    let first = client
        .aggregated_list()
        .set_project(PROJECT)
        .set_filter(r#"name eq "(int|auto)""#)
        .set_max_results(1_u32)
        .send()
        .await
        .expect("page 1");
    let token = first.next_page_token.clone().unwrap_or_default();
    assert!(!token.is_empty());
    let second = client
        .aggregated_list()
        .set_project(PROJECT)
        .set_filter(r#"name eq "(int|auto)""#)
        .set_max_results(1_u32)
        .set_page_token(token)
        .send()
        .await
        .expect("page 2");
    let names: Vec<Value> = [&first, &second]
        .iter()
        .map(|page| j(*page)["items"]["regions/europe-west1"]["addresses"][0]["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("auto"), json!("int")]);
    assert!(
        second
            .next_page_token
            .as_deref()
            .unwrap_or_default()
            .is_empty()
    );
    let e = client
        .aggregated_list()
        .set_project(PROJECT)
        .set_filter(r#"name eq "int" labels.a = "b""#)
        .send()
        .await
        .expect_err("mixed styles");
    assert_eq!(failure(&e).0, 400);
    let e = client
        .aggregated_list()
        .set_project(PROJECT)
        .set_filter(r#"name eq "int" description eq "x""#)
        .send()
        .await
        .expect_err("two regex fields");
    assert_eq!(failure(&e).0, 400);

    op_ok(
        &client
            .delete()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_address("ro")
            .send()
            .await
            .expect("delete"),
    );
    let e = client
        .delete()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_address("ro")
        .send()
        .await
        .expect_err("gone");
    assert_eq!(failure(&e).0, 404);
}

#[tokio::test]
async fn instances_use_and_free_reserved_addresses() {
    let emu = EmulatorProcess::seeded(&[]);
    op_ok(&insert_address(&emu.url, json!({"name": "gw-int", "addressType": "INTERNAL", "subnetwork": SUBNET, "address": "10.0.0.5"})).await.expect("int"));
    op_ok(
        &insert_address(&emu.url, json!({"name": "gw-ext"}))
            .await
            .expect("ext"),
    );
    let ext_ip = get_address(&emu.url, "gw-ext")
        .await
        .expect("ext")
        .address
        .unwrap_or_default();
    let body = gateway(
        "gw",
        json!({
            "labels": {"natgw-stack": "gitlab"},
            "tags": {"items": ["natgw"]},
            "networkInterfaces": [{"subnetwork": SUBNET, "networkIP": "10.0.0.5", "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "natIP": ext_ip}]}],
        }),
    );
    op_ok(&insert_instance(&emu.url, body).await.expect("insert gw"));
    let inst = get_instance(&emu.url, "gw").await;
    assert_eq!(inst["networkInterfaces"][0]["networkIP"], "10.0.0.5");
    assert_eq!(
        inst["networkInterfaces"][0]["accessConfigs"][0]["natIP"],
        ext_ip.as_str()
    );
    assert_eq!(inst["canIpForward"], true);
    assert_eq!(inst["labels"]["natgw-stack"], "gitlab");
    let self_link = inst["selfLink"].as_str().unwrap_or_default().to_string();
    for name in ["gw-int", "gw-ext"] {
        let a = get_address(&emu.url, name).await.expect("address");
        assert_eq!(j(&a)["status"], "IN_USE", "{name}");
        assert_eq!(a.users, vec![self_link.clone()], "{name}");
    }
    // An address in use cannot be deleted: the operation fails.
    let addresses = compute_addresses(&emu.url).await;
    let op = addresses
        .delete()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_address("gw-ext")
        .send()
        .await
        .expect("accepted");
    assert_eq!(
        op_failure(&op),
        (400, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE".into())
    );
    let us_ip = {
        let c = compute_addresses(&emu.url).await;
        c.insert()
            .set_project(PROJECT)
            .set_region("us-central1")
            .set_body(Address::new().set_name("us-ext"))
            .send()
            .await
            .expect("us address");
        c.get()
            .set_project(PROJECT)
            .set_region("us-central1")
            .set_address("us-ext")
            .send()
            .await
            .expect("us")
            .address
            .unwrap_or_default()
    };
    // Accepted, then failed in the operation: a second instance cannot take the same addresses, and a natIP
    // from another region, or not reserved at all, fails.
    let nat = |ip: &str| json!([{"subnetwork": SUBNET, "accessConfigs": [{"natIP": ip}]}]);
    for (name, nics, code, reason) in [
        (
            "gw2",
            json!([{"subnetwork": SUBNET, "networkIP": "10.0.0.5"}]),
            400,
            None,
        ),
        ("gw3", nat(&ext_ip), 400, None),
        ("gw4", nat(&us_ip), 400, Some("INVALID_FIELD_VALUE")),
        ("gw5", nat("203.0.113.9"), 400, None),
    ] {
        let op = insert_instance(&emu.url, gateway(name, json!({"networkInterfaces": nics})))
            .await
            .expect("accepted");
        let (got, got_reason) = op_failure(&op);
        assert_eq!(got, code, "{name}");
        if let Some(reason) = reason {
            assert_eq!(got_reason, reason, "{name}");
        }
    }
    // Refused at once: a networkIP outside the subnetwork, no boot disk, a taken name (409); an unknown
    // machine type or subnetwork is 404.
    for (name, extra, code) in [
        (
            "gw6",
            json!({"networkInterfaces": [{"subnetwork": SUBNET, "networkIP": "192.168.0.5"}]}),
            400,
        ),
        (
            "gw7",
            json!({"machineType": "zones/europe-west1-b/machineTypes/z9-giant"}),
            404,
        ),
        (
            "gw8",
            json!({"networkInterfaces": [{"subnetwork": "regions/europe-west1/subnetworks/nope"}]}),
            404,
        ),
        ("nodisk", json!({"disks": []}), 400),
        ("gw", json!({}), 409),
    ] {
        let e = insert_instance(&emu.url, gateway(name, extra))
            .await
            .expect_err(name);
        assert_eq!(failure(&e).0, code, "{name}");
    }

    // aggregatedList with a label filter.
    let instances = compute_instances(&emu.url).await;
    let agg = instances
        .aggregated_list()
        .set_project(PROJECT)
        .set_filter(r#"labels.natgw-stack = "gitlab""#)
        .send()
        .await
        .expect("aggregated");
    let found = j(&agg)["items"]["zones/europe-west1-b"]["instances"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(found.len(), 1);
    let listed: Vec<_> = instances
        .list()
        .set_project(PROJECT)
        .set_zone(ZONE)
        .by_item()
        .all()
        .await
        .expect("list");
    // Beside the demo node pool's node VM in this zone, which GKE made.
    let listed: Vec<_> = listed
        .into_iter()
        .filter(|i| !i.name.as_deref().is_some_and(|n| n.starts_with("gke-")))
        .collect();
    assert_eq!(listed.len(), 1);

    // Deleting the instance frees both addresses, which can then be deleted.
    op_ok(
        &instances
            .delete()
            .set_project(PROJECT)
            .set_zone(ZONE)
            .set_instance("gw")
            .send()
            .await
            .expect("delete"),
    );
    for name in ["gw-int", "gw-ext"] {
        let a = get_address(&emu.url, name).await.expect("address");
        assert_eq!(j(&a)["status"], "RESERVED", "{name}");
        assert!(a.users.is_empty());
    }
    op_ok(
        &addresses
            .delete()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_address("gw-ext")
            .send()
            .await
            .expect("delete address"),
    );
}

#[tokio::test]
async fn instance_fingerprints_metadata_tags_labels() {
    let emu = EmulatorProcess::seeded(&[]);
    op_ok(
        &insert_instance(
            &emu.url,
            gateway(
                "vm",
                json!({"metadata": {"items": [{"key": "a", "value": "1"}]}}),
            ),
        )
        .await
        .expect("insert"),
    );
    let inst = get_instance(&emu.url, "vm").await;
    let instances = compute_instances(&emu.url).await;

    let stale = json!("AAAAAAAAAAA=");
    let set_md = |fp: &Value| {
        instances
            .set_metadata()
            .set_project(PROJECT)
            .set_zone(ZONE)
            .set_instance("vm")
            .set_body(model::<Metadata>(
                json!({"fingerprint": fp, "items": [{"key": "b", "value": "2"}]}),
            ))
            .send()
    };
    let e = set_md(&stale).await.expect_err("stale");
    assert_eq!(
        failure(&e),
        (412, "conditionNotMet".into(), "FailedPrecondition".into())
    );
    op_ok(
        &set_md(&inst["metadata"]["fingerprint"])
            .await
            .expect("current"),
    );
    let after = get_instance(&emu.url, "vm").await;
    assert_eq!(
        after["metadata"]["items"],
        json!([{"key": "b", "value": "2"}])
    );
    assert_ne!(
        after["metadata"]["fingerprint"],
        inst["metadata"]["fingerprint"]
    );
    let e = set_md(&inst["metadata"]["fingerprint"])
        .await
        .expect_err("old fingerprint is stale now");
    assert_eq!(failure(&e).0, 412);

    let set_tags = |fp: &Value| {
        instances
            .set_tags()
            .set_project(PROJECT)
            .set_zone(ZONE)
            .set_instance("vm")
            .set_body(model::<Tags>(
                json!({"fingerprint": fp, "items": ["x", "y"]}),
            ))
            .send()
    };
    assert_eq!(failure(&set_tags(&stale).await.expect_err("stale")).0, 412);
    op_ok(&set_tags(&inst["tags"]["fingerprint"]).await.expect("tags"));
    assert_eq!(
        get_instance(&emu.url, "vm").await["tags"]["items"],
        json!(["x", "y"])
    );

    let set_labels = |fp: &Value| {
        instances
            .set_labels()
            .set_project(PROJECT)
            .set_zone(ZONE)
            .set_instance("vm")
            .set_body(model::<InstancesSetLabelsRequest>(
                json!({"labelFingerprint": fp, "labels": {"k": "v"}}),
            ))
            .send()
    };
    assert_eq!(
        failure(&set_labels(&stale).await.expect_err("stale")).0,
        412
    );
    op_ok(&set_labels(&inst["labelFingerprint"]).await.expect("labels"));
    assert_eq!(
        get_instance(&emu.url, "vm").await["labels"],
        json!({"k": "v"})
    );
    let e = instances
        .get()
        .set_project(PROJECT)
        .set_zone(ZONE)
        .set_instance("nope")
        .send()
        .await
        .expect_err("404");
    assert_eq!(failure(&e).0, 404);
}

async fn wait_running(url: &str, name: &str) {
    for _ in 0..200 {
        if get_instance(url, name).await["status"] == "RUNNING" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{name} never became RUNNING");
}

async fn ready_value(url: &str, name: &str) -> Result<String, Error> {
    let g = compute_instances(url)
        .await
        .get_guest_attributes()
        .set_project(PROJECT)
        .set_zone(ZONE)
        .set_instance(name)
        .set_query_path("natgw/")
        .send()
        .await?;
    let v = j(&g);
    Ok(v["queryValue"]["items"][0]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

fn ready_metadata(token: &str) -> Value {
    json!({"items": [{"key": "enable-guest-attributes", "value": "TRUE"}, {"key": "natgw-ready-token", "value": token}]})
}

#[tokio::test]
async fn boot_guest_attribute_and_reset() {
    let emu = EmulatorProcess::seeded(&["--boot-ms", "1500"]);
    op_ok(
        &insert_instance(
            &emu.url,
            gateway("gw", json!({"metadata": ready_metadata("t1")})),
        )
        .await
        .expect("insert"),
    );
    assert_eq!(get_instance(&emu.url, "gw").await["status"], "STAGING");
    let e = ready_value(&emu.url, "gw")
        .await
        .expect_err("not ready while booting");
    assert_eq!(failure(&e).0, 404);
    wait_running(&emu.url, "gw").await;
    assert_eq!(ready_value(&emu.url, "gw").await.expect("ready"), "t1");
    let by_key = compute_instances(&emu.url)
        .await
        .get_guest_attributes()
        .set_project(PROJECT)
        .set_zone(ZONE)
        .set_instance("gw")
        .set_variable_key("natgw/ready")
        .send()
        .await
        .expect("by key");
    assert_eq!(by_key.variable_value.as_deref(), Some("t1"));

    // setMetadata alone does not change what the running boot reported.
    let instances = compute_instances(&emu.url).await;
    let fp = get_instance(&emu.url, "gw").await["metadata"]["fingerprint"].clone();
    let mut md = ready_metadata("t2");
    md["fingerprint"] = fp;
    op_ok(
        &instances
            .set_metadata()
            .set_project(PROJECT)
            .set_zone(ZONE)
            .set_instance("gw")
            .set_body(model::<Metadata>(md))
            .send()
            .await
            .expect("setMetadata"),
    );
    assert_eq!(ready_value(&emu.url, "gw").await.expect("still t1"), "t1");

    // reset reboots: STAGING again, then the new token.
    op_ok(
        &instances
            .reset()
            .set_project(PROJECT)
            .set_zone(ZONE)
            .set_instance("gw")
            .send()
            .await
            .expect("reset"),
    );
    assert_eq!(get_instance(&emu.url, "gw").await["status"], "STAGING");
    assert_eq!(
        failure(&ready_value(&emu.url, "gw").await.expect_err("rebooting")).0,
        404
    );
    wait_running(&emu.url, "gw").await;
    assert_eq!(
        ready_value(&emu.url, "gw").await.expect("ready again"),
        "t2"
    );

    // stop + start reboots too.
    op_ok(
        &instances
            .stop()
            .set_project(PROJECT)
            .set_zone(ZONE)
            .set_instance("gw")
            .send()
            .await
            .expect("stop"),
    );
    assert_eq!(get_instance(&emu.url, "gw").await["status"], "TERMINATED");
    assert_eq!(
        failure(&ready_value(&emu.url, "gw").await.expect_err("stopped")).0,
        404
    );
    op_ok(
        &instances
            .start()
            .set_project(PROJECT)
            .set_zone(ZONE)
            .set_instance("gw")
            .send()
            .await
            .expect("start"),
    );
    wait_running(&emu.url, "gw").await;
    assert_eq!(
        ready_value(&emu.url, "gw")
            .await
            .expect("ready after start"),
        "t2"
    );

    // Without enable-guest-attributes there is never an attribute.
    op_ok(
        &insert_instance(
            &emu.url,
            gateway(
                "plain",
                json!({"metadata": {"items": [{"key": "natgw-ready-token", "value": "x"}]}}),
            ),
        )
        .await
        .expect("insert"),
    );
    wait_running(&emu.url, "plain").await;
    assert_eq!(
        failure(&ready_value(&emu.url, "plain").await.expect_err("disabled")).0,
        404
    );
}

#[tokio::test]
async fn boot_fail_never_reports_ready() {
    let emu = EmulatorProcess::seeded(&["--boot-fail"]);
    op_ok(
        &insert_instance(
            &emu.url,
            gateway("gw", json!({"metadata": ready_metadata("t1")})),
        )
        .await
        .expect("insert"),
    );
    wait_running(&emu.url, "gw").await;
    assert_eq!(
        failure(&ready_value(&emu.url, "gw").await.expect_err("never ready")).0,
        404
    );
}

#[tokio::test]
async fn routes_rules() {
    let emu = EmulatorProcess::seeded(&[]);
    let routes = compute_routes(&emu.url).await;
    let route = |name: &str, hop: Value| {
        let mut v = json!({"name": name, "network": "global/networks/vpc-network", "destRange": "34.1.2.0/24", "priority": 900,
                           "tags": ["natgw"], "description": "natgw-stack=gitlab"});
        if let (Some(o), Some(h)) = (v.as_object_mut(), hop.as_object()) {
            o.extend(h.clone());
        }
        routes
            .insert()
            .set_project(PROJECT)
            .set_body(model::<Route>(v))
            .send()
    };
    op_ok(
        &route("via-ip", json!({"nextHopIp": "10.0.0.5"}))
            .await
            .expect("next hop ip"),
    );
    for (name, hop, code) in [
        ("outside", json!({"nextHopIp": "192.168.1.1"}), 400),
        (
            "two-hops",
            json!({"nextHopIp": "10.0.0.5", "nextHopGateway": "global/gateways/default-internet-gateway"}),
            400,
        ),
        (
            "no-net",
            json!({"nextHopIp": "10.0.0.5", "network": "global/networks/nope"}),
            404,
        ),
        ("via-ip", json!({"nextHopIp": "10.0.0.5"}), 409),
    ] {
        let e = route(name, hop).await.expect_err(name);
        assert_eq!(failure(&e).0, code, "{name}");
    }
    let e = routes.insert().set_project(PROJECT).set_body(model::<Route>(json!({"name": "nodest", "network": "global/networks/vpc-network", "priority": 1, "nextHopIp": "10.0.0.5"}))).send().await.expect_err("required");
    assert_eq!(
        failure(&e),
        (400, "required".into(), "InvalidArgument".into())
    );
    op_ok(
        &insert_instance(&emu.url, gateway("gw", json!({})))
            .await
            .expect("instance"),
    );
    op_ok(
        &route(
            "via-vm",
            json!({"nextHopInstance": format!("zones/{ZONE}/instances/gw")}),
        )
        .await
        .expect("next hop instance"),
    );

    let r = routes
        .get()
        .set_project(PROJECT)
        .set_route("via-ip")
        .send()
        .await
        .expect("get");
    assert_eq!(r.priority, Some(900));
    assert_eq!(r.tags, vec!["natgw".to_string()]);
    let mine: Vec<Route> = routes
        .list()
        .set_project(PROJECT)
        .set_filter(r#"description eq ".*natgw-stack=gitlab.*""#)
        .by_item()
        .all()
        .await
        .expect("filtered");
    assert_eq!(mine.len(), 2);
    let all: Vec<Route> = routes
        .list()
        .set_project(PROJECT)
        .by_item()
        .all()
        .await
        .expect("all");
    assert_eq!(
        all.len(),
        4,
        "two natgw routes, the default route and the local route"
    );
    op_ok(
        &routes
            .delete()
            .set_project(PROJECT)
            .set_route("via-ip")
            .send()
            .await
            .expect("delete"),
    );
    assert_eq!(
        failure(
            &routes
                .get()
                .set_project(PROJECT)
                .set_route("via-ip")
                .send()
                .await
                .expect_err("gone")
        )
        .0,
        404
    );
}

#[tokio::test]
async fn firewalls_insert_patch_filter_delete() {
    let emu = EmulatorProcess::seeded(&[]);
    let fws = compute_firewalls(&emu.url).await;
    let body = json!({"name": "natgw-fw", "network": "global/networks/vpc-network", "description": "natgw-stack=gitlab",
                      "allowed": [{"IPProtocol": "all"}], "sourceRanges": ["10.4.0.0/14"], "targetTags": ["natgw"]});
    op_ok(
        &fws.insert()
            .set_project(PROJECT)
            .set_body(model::<Firewall>(body.clone()))
            .send()
            .await
            .expect("insert"),
    );
    let e = fws
        .insert()
        .set_project(PROJECT)
        .set_body(model::<Firewall>(body))
        .send()
        .await
        .expect_err("exists");
    assert_eq!(failure(&e).0, 409);
    let f = j(&fws
        .get()
        .set_project(PROJECT)
        .set_firewall("natgw-fw")
        .send()
        .await
        .expect("get"));
    assert_eq!(f["direction"], "INGRESS");
    assert_eq!(f["priority"], 1000);
    op_ok(
        &fws.patch()
            .set_project(PROJECT)
            .set_firewall("natgw-fw")
            .set_body(model::<Firewall>(
                json!({"name": "natgw-fw", "sourceRanges": ["10.8.0.0/14", "10.4.0.0/14"]}),
            ))
            .send()
            .await
            .expect("patch"),
    );
    let f = j(&fws
        .get()
        .set_project(PROJECT)
        .set_firewall("natgw-fw")
        .send()
        .await
        .expect("get"));
    assert_eq!(f["sourceRanges"], json!(["10.8.0.0/14", "10.4.0.0/14"]));
    assert_eq!(
        f["targetTags"],
        json!(["natgw"]),
        "patch keeps absent fields"
    );
    assert_eq!(f["description"], "natgw-stack=gitlab");
    let e = fws
        .patch()
        .set_project(PROJECT)
        .set_firewall("nope")
        .set_body(Firewall::new().set_name("nope"))
        .send()
        .await
        .expect_err("404");
    assert_eq!(failure(&e).0, 404);
    let listed: Vec<Firewall> = fws
        .list()
        .set_project(PROJECT)
        .set_filter(r#"description eq ".*natgw-stack=gitlab.*""#)
        .by_item()
        .all()
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    let listed: Vec<Firewall> = fws
        .list()
        .set_project(PROJECT)
        .set_filter(r#"description eq "natgw-stack=other""#)
        .by_item()
        .all()
        .await
        .expect("list");
    assert!(listed.is_empty());
    op_ok(
        &fws.delete()
            .set_project(PROJECT)
            .set_firewall("natgw-fw")
            .send()
            .await
            .expect("delete"),
    );
    assert_eq!(
        failure(
            &fws.get()
                .set_project(PROJECT)
                .set_firewall("natgw-fw")
                .send()
                .await
                .expect_err("gone")
        )
        .0,
        404
    );
}

#[tokio::test]
async fn operations_progress_wait_and_request_ids() {
    let emu = EmulatorProcess::seeded(&["--op-latency-ms", "1500"]);
    let client = compute_addresses(&emu.url).await;
    let op = client
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_request_id("5b0f0c4e-6f0a-4d43-a6a4-0f1b2c3d4e5f")
        .set_body(Address::new().set_name("a1"))
        .send()
        .await
        .expect("insert");
    assert_eq!(j(&op)["status"], "PENDING");
    let name = op.name.clone().unwrap_or_default();
    let again = client
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_request_id("5b0f0c4e-6f0a-4d43-a6a4-0f1b2c3d4e5f")
        .set_body(Address::new().set_name("a1"))
        .send()
        .await
        .expect("same requestId: same operation, no alreadyExists");
    assert_eq!(again.name.as_deref(), Some(name.as_str()));
    let ops = compute_region_operations(&emu.url).await;
    let waited = ops
        .wait()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_operation(&name)
        .send()
        .await
        .expect("wait");
    op_ok(&waited);
    let got = ops
        .get()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_operation(&name)
        .send()
        .await
        .expect("get");
    op_ok(&got);
    let e = ops
        .get()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_operation("operation-nope")
        .send()
        .await
        .expect_err("404");
    assert_eq!(failure(&e).0, 404);
    let logged: Vec<Value> = emu
        .requests()
        .into_iter()
        .filter(|r| r["request_id"] == "5b0f0c4e-6f0a-4d43-a6a4-0f1b2c3d4e5f")
        .collect();
    assert_eq!(logged.len(), 2);

    // The poller of the client library works against the emulator.
    use google_cloud_lro::Poller;
    let done = client
        .insert()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_body(Address::new().set_name("a2"))
        .poller()
        .until_done()
        .await
        .expect("poller");
    op_ok(&done);

    // Global and zonal operations: get + wait.
    let nets = compute_networks(&emu.url).await;
    let op = nets
        .insert()
        .set_project(PROJECT)
        .set_body(
            Network::new()
                .set_name("n2")
                .set_auto_create_subnetworks(false),
        )
        .send()
        .await
        .expect("net");
    let g = compute_global_operations(&emu.url).await;
    op_ok(
        &g.wait()
            .set_project(PROJECT)
            .set_operation(op.name.clone().unwrap_or_default())
            .send()
            .await
            .expect("wait global"),
    );
    let op = insert_instance(&emu.url, gateway("vm", json!({})))
        .await
        .expect("vm");
    assert_ne!(j(&op)["status"], "DONE");
    assert_eq!(get_instance(&emu.url, "vm").await["status"], "PROVISIONING");
    let z = compute_zone_operations(&emu.url).await;
    op_ok(
        &z.wait()
            .set_project(PROJECT)
            .set_zone(ZONE)
            .set_operation(op.name.clone().unwrap_or_default())
            .send()
            .await
            .expect("wait zonal"),
    );
    op_ok(
        &z.get()
            .set_project(PROJECT)
            .set_zone(ZONE)
            .set_operation(op.name.clone().unwrap_or_default())
            .send()
            .await
            .expect("get zonal"),
    );

    // A requestId whose change failed in the operation answers that failure again and does nothing.
    let emu = EmulatorProcess::seeded(&[]);
    let client = compute_addresses(&emu.url).await;
    op_ok(
        &insert_address(&emu.url, json!({"name": "e"}))
            .await
            .expect("e"),
    );
    let ip = get_address(&emu.url, "e")
        .await
        .expect("e")
        .address
        .unwrap_or_default();
    op_ok(&insert_instance(&emu.url, gateway("vm", json!({"networkInterfaces": [{"subnetwork": SUBNET, "accessConfigs": [{"natIP": ip}]}]}))).await.expect("vm"));
    let del = |_: ()| {
        client
            .delete()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_address("e")
            .set_request_id("7a8b9c0d-0000-4000-8000-000000000001")
            .send()
    };
    let first = del(()).await.expect("accepted");
    assert_eq!(op_failure(&first).0, 400);
    op_ok(
        &compute_instances(&emu.url)
            .await
            .delete()
            .set_project(PROJECT)
            .set_zone(ZONE)
            .set_instance("vm")
            .send()
            .await
            .expect("delete vm"),
    );
    let second = del(()).await.expect("same operation");
    assert_eq!(second.name, first.name);
    assert_eq!(op_failure(&second).0, 400);
    assert!(
        get_address(&emu.url, "e").await.is_ok(),
        "the repeated request did nothing"
    );
}

#[tokio::test]
async fn faults_are_googles_errors_and_deterministic() {
    let statuses = |seed: &str| {
        let seed = seed.to_string();
        async move {
            let emu = EmulatorProcess::spawn(&["--fault-rate", "0.5", "--seed", &seed]);
            let client = compute_networks(&emu.url).await;
            let mut out = Vec::new();
            for i in 0..16 {
                let r = client
                    .insert()
                    .set_project("p")
                    .set_body(
                        Network::new()
                            .set_name(format!("n{i}"))
                            .set_auto_create_subnetworks(false),
                    )
                    .send()
                    .await;
                out.push(match r {
                    Ok(_) => (200, String::new()),
                    Err(e) => {
                        let (code, reason, _) = failure(&e);
                        (code, reason)
                    }
                });
            }
            out
        }
    };
    let a = statuses("7").await;
    let b = statuses("7").await;
    assert_eq!(a, b, "same seed, same faults");
    assert!(a.iter().any(|(c, _)| *c == 200));
    assert!(a.iter().any(|(c, _)| *c != 200));
    for (code, reason) in &a {
        match code {
            200 => {}
            429 => assert_eq!(reason, "rateLimitExceeded"),
            503 => assert_eq!(reason, "backendError"),
            other => panic!("unexpected status {other}"),
        }
    }
}

#[tokio::test]
async fn request_log_lines() {
    let emu = EmulatorProcess::spawn(&[]);
    let _ = compute_networks(&emu.url)
        .await
        .get()
        .set_project("p")
        .set_network("missing")
        .send()
        .await;
    // A raw request with a bearer token: the log keeps only its hash.
    use std::io::{Read, Write};
    let addr = emu.url.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).expect("connect");
    write!(s, "GET /compute/v1/projects/p/regions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer secret-token\r\nConnection: close\r\n\r\n").expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let log = emu.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["method"], "GET");
    assert_eq!(
        log[0]["path"],
        "/compute/v1/projects/p/global/networks/missing"
    );
    assert_eq!(log[0]["status"], 404);
    assert!(log[0]["auth"].is_null());
    assert!(
        log[0]["duration_ms"].is_u64() && log[0]["time"].is_string() && log[0]["query"].is_string()
    );
    assert_eq!(log[1]["auth"]["scheme"], "Bearer");
    let hash = log[1]["auth"]["token_sha256"].as_str().unwrap_or_default();
    assert_eq!(hash.len(), 64);
    assert!(!log[1].to_string().contains("secret-token"));
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = crate::support::temp_dir("state");
    let state = dir.join("state.json");
    let state_arg = state.to_string_lossy().to_string();
    let emu = EmulatorProcess::spawn_in(
        dir.clone(),
        &["--seed-project", PROJECT, "--state", &state_arg],
    );
    op_ok(
        &insert_address(&emu.url, json!({"name": "kept", "labels": {"x": "y"}}))
            .await
            .expect("insert"),
    );
    let before = j(&get_address(&emu.url, "kept").await.expect("get"));
    let status = emu.terminate();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    assert!(state.exists());
    let emu = EmulatorProcess::spawn_in(dir, &["--state", &state_arg]);
    let after = j(&get_address(&emu.url, "kept").await.expect("still there"));
    assert_eq!(before, after);
    let s = compute_subnetworks(&emu.url)
        .await
        .get()
        .set_project(PROJECT)
        .set_region(REGION)
        .set_subnetwork("runners")
        .send()
        .await;
    assert!(s.is_ok(), "the seeded world survived too");
    op_ok(
        &insert_address(&emu.url, json!({"name": "next"}))
            .await
            .expect("ids continue"),
    );
    assert_ne!(
        j(&get_address(&emu.url, "next").await.expect("next"))["id"],
        after["id"]
    );
}

#[test]
fn cli_bad_flags_exit_non_zero() {
    let dir = crate::support::temp_dir("emulator-flags");
    let run = Natgw::new(&dir)
        .args(["emulator", "--fault-rate", "2"])
        .run();
    let _ = std::fs::remove_dir_all(&dir);
    assert_ne!(run.code, 0, "{run:?}");
    run.stderr_has("fault-rate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_requests_stay_consistent() {
    let emu = EmulatorProcess::seeded(&["--api-latency-ms", "10"]);
    let client = compute_addresses(&emu.url).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let client = client.clone();
        tasks.spawn(async move {
            client
                .insert()
                .set_project(PROJECT)
                .set_region(REGION)
                .set_body(model::<Address>(json!({"name": format!("p{i}"), "addressType": "INTERNAL", "subnetwork": SUBNET})))
                .send()
                .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        op_ok(&r.expect("task").expect("insert"));
    }
    let all: Vec<Address> = client
        .list()
        .set_project(PROJECT)
        .set_region(REGION)
        .by_item()
        .all()
        .await
        .expect("list");
    let ips: std::collections::BTreeSet<String> =
        all.iter().filter_map(|a| a.address.clone()).collect();
    assert_eq!(all.len(), 40);
    assert_eq!(ips.len(), 40, "every parallel insert got its own IP");
}

#[tokio::test]
async fn wait_does_not_block_other_requests() {
    let emu = EmulatorProcess::spawn(&["--op-latency-ms", "3000"]);
    let nets = compute_networks(&emu.url).await;
    let op = nets
        .insert()
        .set_project("p")
        .set_body(
            Network::new()
                .set_name("n")
                .set_auto_create_subnetworks(false),
        )
        .send()
        .await
        .expect("insert");
    let ops = compute_global_operations(&emu.url).await;
    let name = op.name.clone().unwrap_or_default();
    let waiting =
        tokio::spawn(async move { ops.wait().set_project("p").set_operation(name).send().await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    nets.get()
        .set_project("p")
        .set_network("n")
        .send()
        .await
        .expect("served while another request waits");
    assert!(
        !waiting.is_finished(),
        "wait returns only when the operation is DONE"
    );
    op_ok(&waiting.await.expect("task").expect("wait"));
}

/// Throughput numbers for the README (run with `--ignored --nocapture`); asserts nothing about time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark"]
#[allow(clippy::print_stderr)]
async fn throughput() {
    let emu = EmulatorProcess::seeded(&[]);
    let client = compute_addresses(&emu.url).await;
    let started = std::time::Instant::now();
    for i in 0..500 {
        client
            .insert()
            .set_project(PROJECT)
            .set_region(REGION)
            .set_body(model::<Address>(
                json!({"name": format!("s{i}"), "addressType": "INTERNAL", "subnetwork": SUBNET}),
            ))
            .send()
            .await
            .expect("insert");
    }
    let sequential = started.elapsed();
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..2000 {
        let client = client.clone();
        tasks.spawn(async move {
            client
                .get()
                .set_project(PROJECT)
                .set_region(REGION)
                .set_address(format!("s{}", i % 500))
                .send()
                .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task").expect("get");
    }
    let parallel = started.elapsed();
    eprintln!(
        "500 sequential inserts: {sequential:?} ({:.0}/s); 2000 parallel gets: {parallel:?} ({:.0}/s)",
        500.0 / sequential.as_secs_f64(),
        2000.0 / parallel.as_secs_f64()
    );
}
