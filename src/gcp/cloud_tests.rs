//! Against the emulator over real HTTP with Google's clients: the answers Google gives under load (which are
//! retried, how a busy GKE cluster is waited for) and organization policy refusals.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use google_cloud_container_v1::model as gke;

use super::{Cloud, Connection, GcpError, Notice, Notices};
use crate::emulator::{Constraint, Emulator, FaultKind, Options};
use crate::model::{NodePoolId, desired};

const PROJECT: &str = "natgw-test";

struct Setup {
    emu: Emulator,
    cloud: Cloud,
    gw: desired::DesiredGateway,
    log: PathBuf,
    notices: Arc<Mutex<Vec<Notice>>>,
}

impl Setup {
    async fn start(options: Options, tune: impl FnOnce(&mut Connection)) -> Setup {
        let log = std::env::temp_dir().join(format!(
            "natgw-load-{}-{}.jsonl",
            std::process::id(),
            rand::random::<u64>()
        ));
        let options = Options {
            request_log: Some(log.clone()),
            ..options
        };
        let notices = Arc::new(Mutex::new(Vec::new()));
        let heard = notices.clone();
        let (emu, cloud, gw) = super::demo(options, |conn| {
            conn.retry.initial_delay = Duration::from_millis(1);
            conn.retry.max_delay = Duration::from_millis(5);
            conn.notices = Notices::new(move |n| heard.lock().expect("lock").push(n.clone()));
            tune(conn);
        })
        .await;
        Setup {
            emu,
            cloud,
            gw,
            log,
            notices,
        }
    }

    /// The HTTP statuses the emulator answered, in order.
    fn statuses(&self) -> Vec<u64> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["status"].as_u64())
            .collect()
    }

    async fn finish(self) {
        self.emu.shutdown().await.expect("shutdown");
        let _ = std::fs::remove_file(&self.log);
    }
}

fn faults(kind: FaultKind, seed: u64) -> Options {
    Options {
        fault_rate: 0.5,
        fault_kinds: vec![kind],
        seed,
        ..Options::default()
    }
}

/// Each Compute answer under load is retried until the change is made: the gateway's addresses, firewall
/// rule and a read of the project all succeed while half the requests fail with that answer.
#[tokio::test]
async fn compute_answers_under_load_are_retried() {
    for (kind, status) in [
        (FaultKind::QuotaPerMinute, 403),
        (FaultKind::ConcurrentOperations, 403),
        (FaultKind::ResourceNotReady, 400),
    ] {
        let s = Setup::start(faults(kind, 7), |_| {}).await;
        let ext = s.cloud.insert_address(&s.gw.external_address).await;
        let int = s.cloud.insert_address(&s.gw.internal_address).await;
        let fw = s.cloud.insert_firewall(&s.gw.firewall).await;
        let world = s.cloud.observe(&[]).await;
        assert!(
            ext.is_ok() && int.is_ok() && fw.is_ok() && world.is_ok(),
            "{kind:?}: {ext:?} {int:?} {fw:?} {:?}",
            world.err()
        );
        let failed = s.statuses().iter().filter(|&&c| c == status).count();
        assert!(failed > 0, "{kind:?}: no fault was injected");
        s.finish().await;
    }
}

/// A node-pool update that finds its cluster busy waits for the operation GKE names, says so once, and then
/// makes the change; the wait is bounded by its own limit, and the error names the operation.
#[tokio::test]
async fn a_busy_cluster_is_waited_for_with_its_own_limit() {
    let options = Options {
        op_latency: Duration::from_millis(600),
        ..Options::default()
    };
    let s = Setup::start(options, |_| {}).await;
    let pool = s.gw.node_pool.clone();
    let running = start_pool_update(&s.cloud, &pool).await;
    s.cloud
        .update_node_pool_tags(&pool, &["natgw-a".into()], &[], None)
        .await
        .expect("waited, then updated");
    let heard = s.notices.lock().expect("lock").clone();
    assert_eq!(heard.len(), 1, "{heard:?}");
    let Notice::ClusterBusy { operation, .. } = &heard[0];
    assert_eq!(operation.as_deref(), Some(running.as_str()));
    assert!(heard[0].to_string().contains(&running), "{}", heard[0]);
    s.finish().await;

    let s = Setup::start(
        Options {
            op_latency: Duration::from_secs(30),
            ..Options::default()
        },
        |c| c.retry.cluster_busy_timeout = Duration::ZERO,
    )
    .await;
    let running = start_pool_update(&s.cloud, &pool).await;
    let err = s
        .cloud
        .update_node_pool_tags(&pool, &["natgw-b".into()], &[], None)
        .await
        .expect_err("the limit is zero");
    assert!(matches!(err, GcpError::ClusterBusy { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&running) && text.contains("--cluster-busy-timeout"),
        "{text}"
    );
    s.finish().await;
}

/// Injected cluster-busy answers on node-pool updates are waited out too.
#[tokio::test]
async fn injected_cluster_busy_answers_are_waited_out() {
    let s = Setup::start(faults(FaultKind::ClusterBusy, 3), |_| {}).await;
    for tag in ["natgw-1", "natgw-2", "natgw-3"] {
        s.cloud
            .update_node_pool_tags(&s.gw.node_pool, &[tag.into()], &[], None)
            .await
            .expect("updated");
    }
    assert!(s.statuses().contains(&400), "no fault was injected");
    let pool = s.cloud.read_node_pool(&s.gw.node_pool).await.expect("read");
    let tags = pool.expect("pool").resource.tags;
    assert!(tags.contains(&"natgw-3".to_string()), "{tags:?}");
    s.finish().await;
}

/// A GKE operation is polled where the request went, whatever its output-only `location` says.
#[tokio::test]
async fn gke_operations_are_polled_at_the_requests_location() {
    let options = Options {
        op_latency: Duration::from_millis(200),
        ..Options::default()
    };
    let s = Setup::start(options, |_| {}).await;
    let pool = s.gw.node_pool.clone();
    let op = s
        .cloud
        .gke
        .update_node_pool()
        .set_name(pool.resource_name(PROJECT))
        .set_tags(gke::NetworkTags::new().set_tags(["natgw-x"]))
        .send()
        .await
        .expect("update");
    let op = op.set_location("");
    s.cloud
        .wait_gke(op, &pool.location, "test")
        .await
        .expect("polled at europe-west1");
    s.finish().await;
}

/// Starts a node-pool update without waiting for it; returns its operation's name.
async fn start_pool_update(cloud: &Cloud, pool: &NodePoolId) -> String {
    cloud
        .gke
        .update_node_pool()
        .set_name(pool.resource_name(PROJECT))
        .set_tags(gke::NetworkTags::new().set_tags(["existing-tag", "other"]))
        .send()
        .await
        .expect("update")
        .name
}

/// An instance refused by the list constraints on external IPs and IP forwarding: one error naming both
/// constraints, the VM's resource name to put in their allowedValues, and why natgw needs each.
#[tokio::test]
async fn an_org_policy_refusal_names_the_exception_to_ask_for() {
    let options = Options {
        org_policies: vec![Constraint::VmExternalIpAccess, Constraint::VmCanIpForward],
        ..Options::default()
    };
    let s = Setup::start(options, |_| {}).await;
    let ext = s
        .cloud
        .insert_address(&s.gw.external_address)
        .await
        .expect("address");
    let int = s
        .cloud
        .insert_address(&s.gw.internal_address)
        .await
        .expect("address");
    let err = s
        .cloud
        .insert_instance(&s.gw.instance, int, ext)
        .await
        .expect_err("refused");
    let GcpError::OrgPolicy { violations, .. } = &err else {
        panic!("not a policy refusal: {err}");
    };
    assert_eq!(violations.len(), 2, "{err}");
    let text = err.to_string();
    let vm = format!(
        "projects/{PROJECT}/zones/{}/instances/{}",
        s.gw.instance.zone, s.gw.instance.name
    );
    for c in [
        "constraints/compute.vmExternalIpAccess",
        "constraints/compute.vmCanIpForward",
    ] {
        assert!(
            text.contains(&format!("add {vm} to the allowedValues of {c}")),
            "{text}"
        );
    }
    assert!(
        text.contains("static external IP") && text.contains("next hop"),
        "{text}"
    );
    s.finish().await;
}
