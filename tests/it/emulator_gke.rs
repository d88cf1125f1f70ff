//! The emulator's GKE API driven through `google-cloud-container-v1`.

use google_cloud_container_v1::model::{Cluster, NetworkTags};
use serde_json::json;

use crate::emulator::{failure, model};
use crate::harness::Natgw;
use crate::support::{EmulatorProcess, PROJECT, container};

const CLUSTER: &str = "projects/natgw-test/locations/europe-west1/clusters/gke-gitlab-runner";
const POOL: &str =
    "projects/natgw-test/locations/europe-west1/clusters/gke-gitlab-runner/nodePools/runners";

#[tokio::test]
async fn seeded_cluster_and_node_pools() {
    let emu = EmulatorProcess::seeded(&[]);
    let gke = container(&emu.url).await;
    let c = gke
        .get_cluster()
        .set_name(CLUSTER)
        .send()
        .await
        .expect("cluster");
    assert_eq!(c.name, "gke-gitlab-runner");
    assert_eq!(c.network, "vpc-network");
    assert_eq!(format!("{:?}", c.status), "Running");
    assert_eq!(c.node_pools.len(), 1);
    let pools = gke
        .list_node_pools()
        .set_parent(CLUSTER)
        .send()
        .await
        .expect("node pools");
    assert_eq!(pools.node_pools.len(), 1);
    let np = gke
        .get_node_pool()
        .set_name(POOL)
        .send()
        .await
        .expect("node pool");
    assert_eq!(
        np.config.as_ref().map(|c| c.tags.clone()),
        Some(vec!["existing-tag".to_string()])
    );
    assert!(!np.etag.is_empty());
    let list = gke
        .list_clusters()
        .set_parent("projects/natgw-test/locations/europe-west1")
        .send()
        .await
        .expect("list");
    assert_eq!(list.clusters.len(), 1);
    let all = gke
        .list_clusters()
        .set_parent("projects/natgw-test/locations/-")
        .send()
        .await
        .expect("list all");
    assert_eq!(all.clusters.len(), 1);
    let e = gke
        .get_cluster()
        .set_name("projects/natgw-test/locations/europe-west1/clusters/nope")
        .send()
        .await
        .expect_err("404");
    assert_eq!(failure(&e).0, 404);
    assert_eq!(failure(&e).2, "NotFound");
    let e = gke
        .get_node_pool()
        .set_name(format!("{CLUSTER}/nodePools/nope"))
        .send()
        .await
        .expect_err("404");
    assert_eq!(failure(&e).0, 404);
}

#[tokio::test]
async fn node_pool_tags_update_with_etags() {
    let emu = EmulatorProcess::seeded(&["--op-latency-ms", "1500"]);
    let gke = container(&emu.url).await;
    let np = gke
        .get_node_pool()
        .set_name(POOL)
        .send()
        .await
        .expect("node pool");
    let op = gke
        .update_node_pool()
        .set_name(POOL)
        .set_tags(NetworkTags::new().set_tags(["existing-tag", "natgw-gitlab"]))
        .set_etag(np.etag.clone())
        .send()
        .await
        .expect("tags-only update with etag");
    assert_eq!(format!("{:?}", op.status), "Pending");
    let after = gke
        .get_node_pool()
        .set_name(POOL)
        .send()
        .await
        .expect("node pool");
    assert_eq!(
        after.config.as_ref().map(|c| c.tags.clone()),
        Some(vec!["existing-tag".to_string(), "natgw-gitlab".to_string()])
    );
    assert_ne!(after.etag, np.etag, "every change gives a new etag");
    assert_eq!(
        format!("{:?}", after.status),
        "Reconciling",
        "the pool is being updated"
    );
    let c = gke
        .get_cluster()
        .set_name(CLUSTER)
        .send()
        .await
        .expect("cluster");
    assert_eq!(format!("{:?}", c.status), "Reconciling");

    // The old etag is stale now: refused at once.
    let e = gke
        .update_node_pool()
        .set_name(POOL)
        .set_tags(NetworkTags::new().set_tags(["x"]))
        .set_etag(np.etag.clone())
        .send()
        .await
        .expect_err("stale etag");
    assert_eq!(failure(&e).0, 409);
    assert_eq!(failure(&e).2, "Aborted");

    // While that operation runs, GKE refuses another change to the cluster.
    let e = gke
        .update_node_pool()
        .set_name(POOL)
        .set_tags(NetworkTags::new().set_tags(["busy"]))
        .send()
        .await
        .expect_err("incompatible operation");
    assert_eq!(failure(&e).0, 400);
    assert_eq!(failure(&e).2, "FailedPrecondition");

    // The operation goes PENDING -> ... -> DONE.
    let name = format!(
        "projects/natgw-test/locations/europe-west1/operations/{}",
        op.name
    );
    let mut seen_done = false;
    for _ in 0..100 {
        let got = gke
            .get_operation()
            .set_name(&name)
            .send()
            .await
            .expect("operation");
        let status = format!("{:?}", got.status);
        assert!(
            ["Pending", "Running", "Done"].contains(&status.as_str()),
            "{status}"
        );
        if status == "Done" {
            seen_done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen_done, "the operation finished");
    let done = gke
        .get_node_pool()
        .set_name(POOL)
        .send()
        .await
        .expect("node pool");
    assert_eq!(format!("{:?}", done.status), "Running");

    // Tags replace the whole list, also without an etag.
    gke.update_node_pool()
        .set_name(POOL)
        .set_tags(NetworkTags::new().set_tags(["only"]))
        .send()
        .await
        .expect("no etag");
    let last = gke
        .get_node_pool()
        .set_name(POOL)
        .send()
        .await
        .expect("node pool");
    assert_eq!(
        last.config.as_ref().map(|c| c.tags.clone()),
        Some(vec!["only".to_string()])
    );

    let e = gke
        .get_operation()
        .set_name("projects/natgw-test/locations/europe-west1/operations/nope")
        .send()
        .await
        .expect_err("404");
    assert_eq!(failure(&e).0, 404);
    let e = gke
        .update_node_pool()
        .set_name(format!("{CLUSTER}/nodePools/nope"))
        .set_tags(NetworkTags::new())
        .send()
        .await
        .expect_err("404");
    assert_eq!(failure(&e).0, 404);
}

#[tokio::test]
async fn clusters_create_and_delete() {
    let emu = EmulatorProcess::seeded(&[]);
    let gke = container(&emu.url).await;
    let cluster: Cluster = model(json!({
        "name": "second",
        "network": "vpc-network",
        "subnetwork": "runners",
        "nodePools": [{"name": "pool-a", "initialNodeCount": 1, "config": {"tags": ["a"]}}],
    }));
    let op = gke
        .create_cluster()
        .set_parent("projects/natgw-test/locations/europe-west1")
        .set_cluster(cluster.clone())
        .send()
        .await
        .expect("create");
    assert_eq!(format!("{:?}", op.operation_type), "CreateCluster");
    let c = gke
        .get_cluster()
        .set_name("projects/natgw-test/locations/europe-west1/clusters/second")
        .send()
        .await
        .expect("get");
    assert_eq!(c.node_pools[0].name, "pool-a");
    let e = gke
        .create_cluster()
        .set_parent("projects/natgw-test/locations/europe-west1")
        .set_cluster(cluster)
        .send()
        .await
        .expect_err("exists");
    assert_eq!(failure(&e).0, 409);
    assert_eq!(failure(&e).2, "AlreadyExists");
    let bad: Cluster = model(json!({"name": "third", "network": "no-such-network"}));
    let e = gke
        .create_cluster()
        .set_parent("projects/natgw-test/locations/europe-west1")
        .set_cluster(bad)
        .send()
        .await
        .expect_err("network");
    assert_eq!(failure(&e).0, 400);
    let unknown: Cluster =
        model(json!({"name": "fourth", "network": "vpc-network", "colour": "red"}));
    let e = gke
        .create_cluster()
        .set_parent("projects/natgw-test/locations/europe-west1")
        .set_cluster(unknown)
        .send()
        .await
        .expect_err("unknown field");
    assert_eq!(failure(&e).0, 400);
    assert!(
        e.status()
            .is_some_and(|s| s.message.contains("Unknown name \"colour\"")),
        "{e}"
    );
    gke.delete_cluster()
        .set_name("projects/natgw-test/locations/europe-west1/clusters/second")
        .send()
        .await
        .expect("delete");
    let e = gke
        .get_cluster()
        .set_name("projects/natgw-test/locations/europe-west1/clusters/second")
        .send()
        .await
        .expect_err("gone");
    assert_eq!(failure(&e).0, 404);
    let _ = PROJECT;
}

#[tokio::test]
async fn custom_seed_file() {
    let seed = json!({
        "project": "other-project",
        "networks": [{"name": "net", "subnetworks": [
            {"name": "a", "region": "us-central1", "ip_cidr_range": "10.20.0.0/20"},
            {"name": "b", "region": "europe-west4", "ip_cidr_range": "10.30.0.0/20"}]}],
        "clusters": [
            {"location": "us-central1", "name": "one", "network": "net", "node_pools": [{"name": "p1", "tags": ["t1"]}, {"name": "p2"}]},
            {"location": "europe-west4-a", "name": "two", "network": "net", "node_pools": [{"name": "p3", "tags": []}]}],
    });
    let emu = EmulatorProcess::with_seed(&seed, &[]);
    let gke = container(&emu.url).await;
    let all = gke
        .list_clusters()
        .set_parent("projects/other-project/locations/-")
        .send()
        .await
        .expect("list");
    assert_eq!(all.clusters.len(), 2);
    let np = gke
        .get_node_pool()
        .set_name("projects/other-project/locations/us-central1/clusters/one/nodePools/p1")
        .send()
        .await
        .expect("pool");
    assert_eq!(np.config.map(|c| c.tags), Some(vec!["t1".to_string()]));
    let subnets = crate::support::compute_subnetworks(&emu.url).await;
    let b = subnets
        .get()
        .set_project("other-project")
        .set_region("europe-west4")
        .set_subnetwork("b")
        .send()
        .await
        .expect("subnetwork b");
    assert_eq!(b.ip_cidr_range.as_deref(), Some("10.30.0.0/20"));
}

#[test]
fn a_bad_seed_file_exits_1() {
    let dir = crate::support::temp_dir("badseed");
    let file = dir.join("seed.json");
    std::fs::write(&file, r#"{"project": "p", "netwerks": []}"#).expect("write");
    let run = Natgw::new(&dir)
        .args(["emulator", "--listen", "127.0.0.1:0", "--seed-file"])
        .arg(&file)
        .run();
    let _ = std::fs::remove_dir_all(&dir);
    run.code(1).stderr_has("netwerks");
    assert!(run.stdout.is_empty(), "no listening line");
}
