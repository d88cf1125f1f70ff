//! What the emulator holds, read through Google's own clients (list calls), never through natgw; and
//! resources made out of band, as someone else would.

use std::future::Future;
use std::time::Duration;

use google_cloud_compute_v1::model::{Address, Route, address::AddressType};

use crate::support::{
    PROJECT, compute_addresses, compute_firewalls, compute_instances, compute_routes, container,
    runtime, wait_global, wait_region,
};

/// The demo world's node pool.
pub(crate) const POOL: &str =
    "projects/natgw-test/locations/europe-west1/clusters/gke-gitlab-runner/nodePools/runners";

/// What the example config creates, by name.
pub(crate) const EXPECTED_ADDRESSES: [&str; 2] = ["natgw-gitlab-ext", "natgw-gitlab-int"];
pub(crate) const EXPECTED_INSTANCES: [&str; 1] = ["natgw-gitlab"];
pub(crate) const EXPECTED_FIREWALLS: [&str; 1] = ["natgw-gitlab-allow"];
pub(crate) const EXPECTED_ROUTES: [&str; 1] = ["natgw-gitlab-34-120-10-10-32"];

/// Every resource whose name starts with `natgw-`, one entry per resource (duplicates would show twice),
/// sorted, and the demo node pool's tags.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Inventory {
    pub(crate) addresses: Vec<String>,
    pub(crate) instances: Vec<String>,
    pub(crate) firewalls: Vec<String>,
    pub(crate) routes: Vec<String>,
    pub(crate) pool_tags: Vec<String>,
}

pub(crate) fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(ToString::to_string).collect()
}

impl Inventory {
    /// After the example config was applied.
    pub(crate) fn applied() -> Inventory {
        Inventory {
            addresses: strings(&EXPECTED_ADDRESSES),
            instances: strings(&EXPECTED_INSTANCES),
            firewalls: strings(&EXPECTED_FIREWALLS),
            routes: strings(&EXPECTED_ROUTES),
            pool_tags: strings(&["existing-tag", "gitlab-runner"]),
        }
    }

    /// The seeded world, or after a destroy.
    pub(crate) fn destroyed() -> Inventory {
        Inventory {
            addresses: vec![],
            instances: vec![],
            firewalls: vec![],
            routes: vec![],
            pool_tags: strings(&["existing-tag"]),
        }
    }

    /// `kind/name` of every resource, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = [
            ("address", &self.addresses),
            ("instance", &self.instances),
            ("firewall", &self.firewalls),
            ("route", &self.routes),
        ]
        .into_iter()
        .flat_map(|(kind, names)| names.iter().map(move |n| format!("{kind}/{n}")))
        .collect();
        out.sort();
        out
    }

    /// Reads the emulator at `url` on a runtime of its own (call it outside any runtime).
    pub(crate) fn of(url: &str) -> Inventory {
        runtime().block_on(Inventory::read(url))
    }

    /// Lists every address, instance, firewall rule and route of the project, and reads the node pool;
    /// patient with 429 and 5xx, which the emulator may be injecting.
    pub(crate) async fn read(url: &str) -> Inventory {
        let addresses_client = compute_addresses(url).await;
        let instances_client = compute_instances(url).await;
        let firewalls_client = compute_firewalls(url).await;
        let routes_client = compute_routes(url).await;
        let gke = container(url).await;

        let pages = patiently("list addresses", || {
            addresses_client
                .aggregated_list()
                .set_project(PROJECT)
                .send()
        })
        .await;
        assert!(pages.next_page_token.is_none_or(|t| t.is_empty()));
        let addresses = pages
            .items
            .values()
            .flat_map(|s| s.addresses.iter())
            .filter_map(|a| a.name.clone())
            .collect();

        let pages = patiently("list instances", || {
            instances_client
                .aggregated_list()
                .set_project(PROJECT)
                .send()
        })
        .await;
        assert!(pages.next_page_token.is_none_or(|t| t.is_empty()));
        let instances = pages
            .items
            .values()
            .flat_map(|s| s.instances.iter())
            .filter_map(|i| i.name.clone())
            .collect();

        let page = patiently("list firewalls", || {
            firewalls_client.list().set_project(PROJECT).send()
        })
        .await;
        assert!(page.next_page_token.is_none_or(|t| t.is_empty()));
        // The stack lock is not one of the stack's resources (tests/it/lock.rs reads it on its own): a
        // release is sent without waiting, so it may outlive the run by one operation.
        let firewalls = page
            .items
            .iter()
            .filter_map(|f| f.name.clone())
            .filter(|n| !n.starts_with("natgw-lock-"))
            .collect();

        let page = patiently("list routes", || {
            routes_client.list().set_project(PROJECT).send()
        })
        .await;
        assert!(page.next_page_token.is_none_or(|t| t.is_empty()));
        let routes = page.items.iter().filter_map(|r| r.name.clone()).collect();

        let pool = patiently("get node pool", || {
            gke.get_node_pool().set_name(POOL).send()
        })
        .await;
        let pool_tags = pool.config.map(|c| c.tags).unwrap_or_default();

        Inventory {
            addresses: natgw_names(addresses),
            instances: natgw_names(instances),
            firewalls: natgw_names(firewalls),
            routes: natgw_names(routes),
            pool_tags,
        }
    }
}

/// The description natgw gives a route of `stack`'s gateway `gateway` (routes have no labels).
pub(crate) fn route_marker(stack: &str, gateway: &str) -> String {
    format!(
        "Managed by natgw, do not edit: natgw-managed=true natgw-stack={stack} natgw-gateway={gateway}"
    )
}

/// Inserts a route to `dest_range` via 10.0.0.9 on the demo network, and waits for its operation.
pub(crate) fn create_route(url: &str, name: &str, dest_range: &str, description: &str) {
    runtime().block_on(async {
        let body = Route::new()
            .set_name(name)
            .set_network(format!("projects/{PROJECT}/global/networks/vpc-network"))
            .set_dest_range(dest_range)
            .set_next_hop_ip("10.0.0.9")
            .set_priority(1000u32)
            .set_description(description);
        let op = compute_routes(url)
            .await
            .insert()
            .set_project(PROJECT)
            .set_body(body)
            .send()
            .await
            .expect("insert a route");
        wait_global(url, op).await;
    });
}

/// Inserts an external address in europe-west1 with `labels`, and waits for its operation.
/// An external address with these labels, made as Google allows: labels only through `setLabels`
/// (compute.v1.json, `Address.labels`).
pub(crate) fn create_address(url: &str, name: &str, labels: &[(&str, &str)]) {
    runtime().block_on(async {
        let addresses = compute_addresses(url).await;
        let wait = |op| wait_region(url, "europe-west1", op);
        let body = Address::new()
            .set_name(name)
            .set_address_type(AddressType::External);
        let op = addresses
            .insert()
            .set_project(PROJECT)
            .set_region("europe-west1")
            .set_body(body)
            .send()
            .await
            .expect("insert an address");
        wait(op).await;
        if labels.is_empty() {
            return;
        }
        let got = addresses
            .get()
            .set_project(PROJECT)
            .set_region("europe-west1")
            .set_address(name)
            .send()
            .await
            .expect("read the address");
        let mut request = google_cloud_compute_v1::model::RegionSetLabelsRequest::new()
            .set_labels(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        if let Some(fp) = got.label_fingerprint {
            request = request.set_label_fingerprint(fp);
        }
        let op = addresses
            .set_labels()
            .set_project(PROJECT)
            .set_region("europe-west1")
            .set_resource(name)
            .set_body(request)
            .send()
            .await
            .expect("label the address");
        wait(op).await;
    });
}

fn natgw_names(mut names: Vec<String>) -> Vec<String> {
    names.retain(|n| n.starts_with("natgw-"));
    names.sort();
    names
}

/// Calls `f` until it does not fail with 429, 5xx or another fault the emulator injected (its message ends
/// with "(emulated fault)": a quota 403 or a 400 `resourceNotReady` under `--fault-kinds`).
async fn patiently<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, google_cloud_gax::error::Error>>,
{
    let mut last = None;
    for _ in 0..100 {
        match f().await {
            Ok(v) => return v,
            Err(e)
                if e.http_status_code()
                    .is_some_and(|c| c == 429 || (500..600).contains(&c))
                    || format!("{e:?}").contains("(emulated fault)") =>
            {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
    panic!("{what}: still failing after 100 attempts: {last:?}")
}
