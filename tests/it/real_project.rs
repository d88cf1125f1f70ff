//! What a real project answers that the happy path never shows: the errors of Compute and GKE under load,
//! and organization policies. Each run starts from nothing and checks the project through Google's own
//! clients (list calls), not through natgw.

use serde_json::Value;

use crate::harness::Project;
use crate::inventory::Inventory;

/// The load errors production tools retry, as the emulator answers them (`src/emulator/fault.rs`).
const LOAD_FAULTS: &str = "quota-per-minute,concurrent-operations,resource-not-ready,cluster-busy";

/// Apply from nothing converges, the next plan has no changes, and destroy leaves nothing; the requests
/// natgw sent (not the checks' own reads, which the emulator's faults hit too).
fn converges(p: &Project, what: &str) -> Vec<Value> {
    let (apply, mut sent) = p.natgw_sent(&["apply", "--auto-approve"]);
    apply.ok();
    assert_eq!(
        Inventory::of(&p.emu.url),
        Inventory::applied(),
        "{what}: after apply"
    );
    let (plan, more) = p.natgw_sent(&["plan", "--detailed-exitcode"]);
    sent.extend(more);
    plan.code(0);
    plan.stdout_has("No changes");
    let (destroy, more) = p.natgw_sent(&["destroy", "--auto-approve"]);
    sent.extend(more);
    destroy.ok();
    assert_eq!(
        Inventory::of(&p.emu.url),
        Inventory::destroyed(),
        "{what}: after destroy"
    );
    sent
}

/// How many answers had one of these HTTP statuses (the injected load errors are 403s and 400s).
fn answered(requests: &[Value], statuses: &[u64]) -> usize {
    requests
        .iter()
        .filter(|r| r["status"].as_u64().is_some_and(|s| statuses.contains(&s)))
        .count()
}

/// Issue 11, "Done when": 30% of the requests answer with the per-minute quota 403, the concurrent
/// operations 403, `resourceNotReady` and GKE's busy cluster; apply still converges in one run.
#[test]
fn apply_converges_under_the_load_errors_of_a_real_project() {
    for seed in ["5", "11"] {
        let p = Project::new(&[
            "--fault-rate",
            "0.3",
            "--fault-kinds",
            LOAD_FAULTS,
            "--seed",
            seed,
            "--op-latency-ms",
            "20",
            "--boot-ms",
            "30",
        ]);
        let sent = converges(&p, &format!("seed {seed}"));
        // Which kinds were drawn depends on timing (the order of parallel requests); that some were is not.
        assert!(
            answered(&sent, &[400, 403]) > 0,
            "seed {seed}: the emulator injected no load error"
        );
    }
}

/// A quota 403 is retried, and is never mistaken for a permission denial: no IAM hint on the way.
#[test]
fn a_quota_403_gets_no_iam_hint() {
    let p = Project::new(&[
        "--fault-rate",
        "0.5",
        "--fault-kinds",
        "quota-per-minute",
        "--seed",
        "2",
        "--op-latency-ms",
        "10",
    ]);
    let (run, sent) = p.natgw_sent(&["apply", "--auto-approve", "-v"]);
    run.ok();
    run.output_lacks("IAM");
    run.output_lacks("permission");
    assert!(answered(&sent, &[403]) > 0, "no quota 403 was injected");
}

/// Issue 11, "Done when": with guest attributes blocked, the VM's readiness comes from its serial console.
#[test]
fn apply_converges_with_guest_attributes_blocked() {
    let p = Project::new(&[
        "--org-policy",
        "constraints/compute.disableGuestAttributesAccess",
        "--op-latency-ms",
        "10",
        "--boot-ms",
        "30",
    ]);
    let serial = converges(&p, "disableGuestAttributesAccess")
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|path| path.ends_with("/serialPort"))
        })
        .count();
    assert!(serial > 0, "readiness was not read from the serial console");
}

/// Issue 11, "Done when": an enforced vmExternalIpAccess stops apply with exit 1, naming the constraint and
/// the exact exception to ask for; nothing of the VM is left behind.
#[test]
fn an_external_ip_policy_names_the_constraint_and_the_exception() {
    let p = Project::new(&["--org-policy", "constraints/compute.vmExternalIpAccess"]);
    let run = p.natgw(&["apply", "--auto-approve"]);
    run.code(1);
    run.stderr_has("constraints/compute.vmExternalIpAccess");
    run.stderr_has("allowedValues");
    run.stderr_has("projects/natgw-test/zones/europe-west1-b/instances/natgw-gitlab");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(
        Inventory::of(&p.emu.url).instances,
        Vec::<String>::new(),
        "the refused VM exists"
    );
}

/// An enforced restrictLoadBalancerCreationForTypes refuses an internal passthrough load balancer's
/// forwarding rule with Google's 412 and text, naming the rule and its type (what an HA gateway needs).
#[test]
fn a_load_balancer_policy_refuses_the_forwarding_rule_with_its_type() {
    use google_cloud_compute_v1::model::ForwardingRule;

    let p = Project::new(&[
        "--org-policy",
        "constraints/compute.restrictLoadBalancerCreationForTypes",
    ]);
    let err = crate::support::runtime().block_on(async {
        crate::support::compute_forwarding_rules(&p.emu.url)
            .await
            .insert()
            .set_project(crate::support::PROJECT)
            .set_region("europe-west1")
            .set_body(
                ForwardingRule::new()
                    .set_name("ilb")
                    .set_load_balancing_scheme(
                        google_cloud_compute_v1::model::forwarding_rule::LoadBalancingScheme::Internal,
                    )
                    .set_backend_service("regions/europe-west1/backendServices/ilb"),
            )
            .send()
            .await
            .expect_err("refused")
    });
    assert_eq!(err.http_status_code(), Some(412), "{err:?}");
    let text = format!("{err:?}");
    assert!(
        text.contains("Forwarding Rule projects/natgw-test/regions/europe-west1/forwardingRules/ilb of type INTERNAL_TCP_UDP is not allowed."),
        "{text}"
    );
    assert!(text.contains("conditionNotMet"), "{text}");
}
