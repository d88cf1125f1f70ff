//! The gateway VM found suspended, stopped or stopping, and the restart window: natgw stopped between the
//! `setMetadata` of a new startup script and the VM's `reset`. The VM is driven out of band with Google's
//! own compute client, as an operator or Google would.

use google_cloud_compute_v1::model as gce;
use serde_json::Value;

use crate::fake::killed_after;
use crate::harness::{Project, example_config, is_lock_request};
use crate::support::{PROJECT, compute_instances, request_kind, runtime, wait_zone};

const ZONE: &str = "europe-west1-b";
const VM: &str = "natgw-gitlab";
const RESTART_PENDING: &str = "natgw-restart-pending";

/// The instance as Google's client reads it.
fn instance(p: &Project) -> gce::Instance {
    runtime().block_on(async {
        compute_instances(&p.emu.url)
            .await
            .get()
            .set_project(PROJECT)
            .set_zone(ZONE)
            .set_instance(VM)
            .send()
            .await
            .expect("get the VM")
    })
}

fn status(p: &Project) -> String {
    instance(p)
        .status
        .and_then(|s| s.name().map(str::to_string))
        .unwrap_or_default()
}

fn has_restart_intent(p: &Project) -> bool {
    instance(p).metadata.is_some_and(|m| {
        m.items
            .iter()
            .any(|i| i.key.as_deref() == Some(RESTART_PENDING))
    })
}

#[derive(Clone, Copy)]
enum Power {
    Stop,
    Suspend,
}

/// Stops or suspends the VM with Google's client; `finish`: wait for the operation, else return while the
/// VM is still STOPPING or SUSPENDING.
fn power(p: &Project, verb: Power, finish: bool) {
    runtime().block_on(async {
        let vms = compute_instances(&p.emu.url).await;
        let sent = match verb {
            Power::Stop => {
                vms.stop()
                    .set_project(PROJECT)
                    .set_zone(ZONE)
                    .set_instance(VM)
                    .send()
                    .await
            }
            Power::Suspend => {
                vms.suspend()
                    .set_project(PROJECT)
                    .set_zone(ZONE)
                    .set_instance(VM)
                    .send()
                    .await
            }
        };
        let op = sent.expect("power call");
        if finish {
            wait_zone(&p.emu.url, ZONE, op).await;
        }
    });
}

/// The mutating calls natgw sent since request `from`, as `METHOD LAST-SEGMENT` (the stack lock's rule and
/// operation waits left out, as `Project::mutations` does).
fn calls_since(p: &Project, from: usize) -> Vec<String> {
    p.emu
        .requests()
        .iter()
        .skip(from)
        .filter(|r| r["method"] != "GET" && !is_lock_request(r))
        .filter_map(|r| {
            let path = r["path"].as_str()?;
            let last = path.rsplit('/').next()?;
            (last != "wait").then(|| format!("{} {last}", r["method"].as_str().unwrap_or("?")))
        })
        .collect()
}

/// The VM's change in `natgw plan --json`.
fn json_vm_change(p: &Project) -> Value {
    let json = p.natgw(&["plan", "--json"]);
    json.ok();
    let v: Value = serde_json::from_str(&json.stdout).expect("one JSON document");
    v["resource_changes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["address"] == "gitlab.instance"))
        .map(|c| c["change"].clone())
        .unwrap_or_default()
}

/// The plan with changes, its JSON actions for the VM, then apply, then no changes.
fn plan_apply_converge(p: &Project, status_line: &str, json_actions: &[&str]) -> Vec<String> {
    let plan = p.natgw(&["plan", "--detailed-exitcode"]);
    plan.code(2)
        .stdout_has("# gitlab.instance will be updated in-place")
        .stdout_has(status_line)
        .stdout_has("Plan: 0 to add, 1 to change, 0 to destroy.");
    assert_eq!(
        json_vm_change(p)["vm_actions"],
        serde_json::json!(json_actions)
    );
    let from = p.emu.requests().len();
    p.natgw(&["apply", "--auto-approve"]).ok();
    let calls = calls_since(p, from);
    assert_eq!(status(p), "RUNNING");
    p.natgw(&["plan", "--detailed-exitcode"])
        .code(0)
        .stdout_has("No changes.");
    calls
}

/// `natgw plan --out FILE`, then `natgw apply FILE`: the calls the apply sent, once the VM runs and the next
/// plan has no changes.
fn saved_plan_applied(p: &Project) -> Vec<String> {
    let saved = p.dir.join("vm.plan");
    let saved = saved.to_str().expect("utf-8 path");
    p.natgw(&["plan", "--out", saved]).ok();
    let from = p.emu.requests().len();
    p.natgw(&["apply", saved]).ok();
    let calls = calls_since(p, from);
    assert_eq!(status(p), "RUNNING");
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);
    calls
}

#[test]
fn a_suspended_vm_is_resumed_even_from_a_saved_plan() {
    let p = Project::new(&["--boot-ms", "60"]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    power(&p, Power::Suspend, true);
    assert_eq!(status(&p), "SUSPENDED");
    p.natgw(&["plan", "--detailed-exitcode"])
        .code(2)
        .stdout_has("~ status = \"SUSPENDED\" -> \"RUNNING\" (resume)")
        .stdout_lacks("(start)")
        .golden("plan-vmstate.txt", "a suspended VM");
    // A saved plan carries the action; applying it resumes.
    assert_eq!(saved_plan_applied(&p), ["POST resume"]);

    // Again, plan-and-apply, with the JSON plan.
    power(&p, Power::Suspend, true);
    let calls = plan_apply_converge(&p, "\"SUSPENDED\" -> \"RUNNING\" (resume)", &["resume"]);
    assert_eq!(calls, ["POST resume"]);
}

#[test]
fn a_stopped_vm_is_started() {
    let p = Project::new(&["--boot-ms", "60"]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    power(&p, Power::Stop, true);
    assert_eq!(status(&p), "TERMINATED");
    let calls = plan_apply_converge(&p, "\"TERMINATED\" -> \"RUNNING\" (start)", &["start"]);
    assert_eq!(calls, ["POST start"]);
}

/// Caught mid-stop (each operation takes 2 s here): the plan says it waits, and apply, which sees the VM
/// STOPPING too, waits for TERMINATED before it starts the VM.
#[test]
fn a_stopping_vm_is_waited_for_then_started() {
    let p = Project::new(&["--op-latency-ms", "2000", "--boot-ms", "60"]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    let line = "~ status = \"STOPPING\" -> \"RUNNING\" (wait for STOPPING to finish, then start)";

    power(&p, Power::Stop, false);
    assert_eq!(status(&p), "STOPPING");
    p.natgw(&["plan", "--detailed-exitcode"])
        .code(2)
        .stdout_has(line)
        .golden("plan-vmstate.txt", "a VM caught stopping");
    // Saved while STOPPING, applied once the lock is taken (one more 2 s operation), when the VM is
    // TERMINATED: the same kind of state, so the plan still applies, and apply starts what it finds.
    assert_eq!(saved_plan_applied(&p), ["POST start"]);

    // Apply itself catches the VM stopping: without the lock's operation in front, it observes the VM at
    // once, then waits for the stop to end.
    power(&p, Power::Stop, false);
    let from = p.emu.requests().len();
    p.natgw(&["apply", "--auto-approve", "--lock=false"])
        .ok()
        .output_has(line);
    assert_eq!(calls_since(&p, from), ["POST start"]);
    assert_eq!(status(&p), "RUNNING");
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);
}

/// A VM that stays STOPPING past `--ready-timeout` (each operation takes 3 s here, the timeout is 1 s): apply
/// fails that change, naming the VM, its status and the `gcloud` command to look at it, sends no `start`
/// while Google is still stopping it, and the next apply, once the stop is over, starts it.
#[test]
fn a_vm_still_stopping_past_the_ready_timeout_fails_its_change_and_the_next_apply_starts_it() {
    let p = Project::new(&["--op-latency-ms", "3000", "--boot-ms", "60"]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    power(&p, Power::Stop, false);
    let from = p.emu.requests().len();
    p.natgw(&[
        "apply",
        "--auto-approve",
        "--lock=false",
        "--ready-timeout",
        "1",
    ])
    .code(1)
    .output_has("instance natgw-gitlab is still STOPPING after 1s")
    .output_has("gcloud compute instances describe natgw-gitlab --zone europe-west1-b");
    assert_eq!(
        calls_since(&p, from),
        Vec::<String>::new(),
        "no start while stopping"
    );

    let mut reads = 0;
    while status(&p) != "TERMINATED" {
        reads += 1;
        assert!(reads < 1_000, "the stop never ended");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let from = p.emu.requests().len();
    p.natgw(&["apply", "--auto-approve", "--lock=false"]).ok();
    assert_eq!(calls_since(&p, from), ["POST start"]);
    assert_eq!(status(&p), "RUNNING");
}

/// natgw killed right after the `setMetadata` of a new startup script, before the `reset` that runs it (each
/// operation takes 300 ms here, so the kill lands while natgw waits for the metadata operation): the VM still
/// runs the old script, the intent to restart is in its metadata, and the next plan says so and restarts it.
#[test]
fn a_kill_between_the_new_script_and_the_restart_leaves_a_pending_restart() {
    let p = Project::new(&["--op-latency-ms", "300", "--boot-ms", "60"]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    let old_token = ready_token(&p);
    // A config change that changes the startup script alone.
    p.write_config(&format!(
        "{}\n[gateways.gitlab.conntrack]\nmax = 131072\n",
        example_config()
    ));
    p.natgw(&["plan", "--detailed-exitcode"])
        .code(2)
        .stdout_has("startup_script")
        .stdout_has("(restart)");

    let from = p.emu.requests().len();
    apply_killed_after(&p, "/setMetadata");
    assert_eq!(
        calls_since(&p, from),
        ["POST setMetadata"],
        "killed between setMetadata and reset"
    );
    assert!(has_restart_intent(&p), "the intent went with the script");
    assert_ne!(ready_token(&p), old_token, "the new script is in place");

    let from = p.emu.requests().len();
    let plan = p.natgw(&["plan", "--detailed-exitcode"]);
    // Seeing the intent costs the plan nothing: it is in the instance list it reads anyway.
    let kinds: Vec<String> = p.emu.requests()[from..].iter().map(request_kind).collect();
    assert_eq!(
        kinds.len(),
        5,
        "one round of reads, as a no-op plan: {kinds:?}"
    );
    plan.code(2)
        .stdout_has("# gitlab.instance will be updated in-place")
        .stdout_has("~ restart_pending = true -> false (restart pending from an interrupted apply)")
        .stdout_lacks("startup_script")
        .stdout_has("Plan: 0 to add, 1 to change, 0 to destroy.")
        .golden(
            "plan-vmstate.txt",
            "a restart left pending by a killed apply",
        );
    assert_eq!(
        json_vm_change(&p)["vm_actions"],
        serde_json::json!(["restart"])
    );

    let from = p.emu.requests().len();
    p.natgw(&["apply", "--auto-approve"]).ok();
    // The restart, then the intent cleared once the VM reported the new token.
    assert_eq!(calls_since(&p, from), ["POST reset", "POST setMetadata"]);
    assert!(!has_restart_intent(&p));
    p.natgw(&["plan", "--detailed-exitcode"])
        .code(0)
        .stdout_has("No changes.");
}

/// Killed right after the reset: the VM boots the new script, but the intent is still there. The next apply
/// sees the VM report the new token and does not restart it again: it only clears the intent.
#[test]
fn a_kill_after_the_restart_costs_no_second_restart() {
    let p = Project::new(&["--op-latency-ms", "300", "--boot-ms", "60"]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    p.write_config(&format!(
        "{}\n[gateways.gitlab.conntrack]\nmax = 131072\n",
        example_config()
    ));
    let from = p.emu.requests().len();
    apply_killed_after(&p, "/reset");
    assert_eq!(calls_since(&p, from), ["POST setMetadata", "POST reset"]);
    assert!(has_restart_intent(&p));
    // The reset's boot completes on its own.
    let token = ready_token(&p);
    let mut reads = 0;
    while guest_ready(&p) != token {
        reads += 1;
        assert!(reads < 1_000, "the reset's boot never reported {token}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    p.natgw(&["plan", "--detailed-exitcode"])
        .code(2)
        .stdout_has("(restart pending from an interrupted apply)");
    let from = p.emu.requests().len();
    p.natgw(&["apply", "--auto-approve"]).ok();
    assert_eq!(calls_since(&p, from), ["POST setMetadata"]);
    assert!(!has_restart_intent(&p));
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);
}

/// An uninterrupted script change: the script and the intent in one call, the reset, and the intent
/// cleared; nothing left for the next plan.
#[test]
fn a_new_script_restarts_the_vm_and_clears_its_intent() {
    let p = Project::new(&["--boot-ms", "60"]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    p.write_config(&format!(
        "{}\n[gateways.gitlab.conntrack]\nmax = 131072\n",
        example_config()
    ));
    let from = p.emu.requests().len();
    p.natgw(&["apply", "--auto-approve"]).ok();
    assert_eq!(
        calls_since(&p, from),
        ["POST setMetadata", "POST reset", "POST setMetadata"]
    );
    assert!(!has_restart_intent(&p));
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);
}

fn ready_token(p: &Project) -> String {
    instance(p)
        .metadata
        .and_then(|m| {
            m.items
                .into_iter()
                .find(|i| i.key.as_deref() == Some("natgw-ready-token"))
        })
        .and_then(|i| i.value)
        .unwrap_or_default()
}

/// `natgw apply --auto-approve`, killed with SIGKILL right after it has sent a request whose path ends with
/// `suffix` (the emulator's operations take long enough that natgw is still waiting for that one).
fn apply_killed_after(p: &Project, suffix: &'static str) {
    killed_after(p, &["apply", "--auto-approve"], move |seen| {
        seen.path.ends_with(suffix)
    });
}

/// The VM's guest attribute `natgw/ready`, empty until it is written.
fn guest_ready(p: &Project) -> String {
    runtime().block_on(async {
        compute_instances(&p.emu.url)
            .await
            .get_guest_attributes()
            .set_project(PROJECT)
            .set_zone(ZONE)
            .set_instance(VM)
            .set_variable_key("natgw/ready")
            .send()
            .await
            .ok()
            .and_then(|g| g.variable_value)
            .unwrap_or_default()
    })
}
