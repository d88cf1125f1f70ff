//! The stack lock: two runs on one stack never interleave; a dead holder never blocks for long; force-unlock.

use std::process::Child;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use google_cloud_compute_v1::model::{Firewall, firewall::Denied};
use sha2::{Digest, Sha256};

use crate::harness::{Project, Run};
use crate::inventory::Inventory;
use crate::support::{PROJECT, compute_firewalls, runtime};

/// The example config's stack.
const STACK: &str = "gitlab-runners";

/// The lock rule's name for the example stack, computed as natgw documents it (README "Reliability").
fn rule_name() -> String {
    let mut h = Sha256::new();
    h.update(PROJECT.as_bytes());
    h.update([0]);
    h.update(STACK.as_bytes());
    let d = h.finalize();
    let hex: String = d[..5].iter().map(|b| format!("{b:02x}")).collect();
    format!("natgw-lock-{hex}")
}

/// The lock rules of the project (name, description), read through Google's client.
fn lock_rules(p: &Project) -> Vec<(String, String)> {
    runtime().block_on(async {
        let client = compute_firewalls(&p.emu.url).await;
        let page = client
            .list()
            .set_project(PROJECT)
            .send()
            .await
            .expect("list firewalls");
        page.items
            .into_iter()
            .filter(|f| {
                f.name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("natgw-lock-"))
            })
            .map(|f| {
                (
                    f.name.unwrap_or_default(),
                    f.description.unwrap_or_default(),
                )
            })
            .collect()
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Inserts a lock rule as a natgw on another machine would, through Google's client.
fn seed_lock(p: &Project, host: &str, id: &str, refreshed: u64) {
    let description = format!(
        "natgw stack lock, do not edit: id={id} stack={STACK} user=bob host={host} pid=4242 command=apply started=1796032931 refreshed={refreshed}"
    );
    runtime().block_on(async {
        let client = compute_firewalls(&p.emu.url).await;
        let rule = Firewall::new()
            .set_name(rule_name())
            .set_network(format!("projects/{PROJECT}/global/networks/vpc-network"))
            .set_priority(65535)
            .set_disabled(true)
            .set_source_ranges(["0.0.0.0/32"])
            .set_target_tags(["natgw-lock"])
            .set_denied([Denied::new().set_ip_protocol("all")])
            .set_description(description);
        client
            .insert()
            .set_project(PROJECT)
            .set_body(rule)
            .send()
            .await
            .expect("insert the lock rule");
    });
}

/// Starts `natgw ARGS` and returns once it holds the lock (its rule exists), with the rule's description.
fn holding(p: &Project, args: &[&str]) -> (Child, String) {
    let mut child = p.cmd(args).spawn();
    loop {
        if let Some((_, d)) = lock_rules(p).into_iter().next() {
            return (child, d);
        }
        assert!(
            child.try_wait().expect("poll natgw").is_none(),
            "natgw ended before it held the lock: {:?}",
            Run::of(child)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The ID in a lock rule's description.
fn id_of(description: &str) -> String {
    description
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("id="))
        .expect("an id in the lock's description")
        .to_string()
}

/// Slow enough that a second run starts while the first one holds the lock.
const SLOW: [&str; 4] = ["--op-latency-ms", "300", "--boot-ms", "1500"];

#[test]
fn a_second_apply_fails_at_once_while_the_first_holds_the_lock() {
    let p = Project::new(&SLOW);
    let (first, description) = holding(&p, &["apply", "--auto-approve"]);
    let id = id_of(&description);
    let second = p.natgw(&["apply", "--auto-approve"]);
    second
        .code(1)
        .stderr_has("the stack \"gitlab-runners\" is locked by ")
        .stderr_has("running apply since ")
        .stderr_has(&format!("natgw force-unlock {id}"));
    assert!(
        second
            .stderr
            .trim_end()
            .ends_with(&format!("natgw force-unlock {id}")),
        "the message ends with the command: {}",
        second.stderr
    );
    Run::of(first).ok();
    assert_eq!(Inventory::of(&p.emu.url), Inventory::applied());
    assert!(lock_rules(&p).is_empty(), "the lock is released");
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);
}

#[test]
fn a_second_apply_with_a_lock_timeout_waits_then_has_nothing_to_do() {
    let p = Project::new(&SLOW);
    let (first, _) = holding(&p, &["apply", "--auto-approve"]);
    let second = p.natgw(&["apply", "--auto-approve", "--lock-timeout", "5m"]);
    second
        .ok()
        .output_has("waiting for the lock")
        .output_has("No changes.");
    Run::of(first).ok();
    assert_eq!(Inventory::of(&p.emu.url), Inventory::applied());
    assert!(lock_rules(&p).is_empty());
}

#[test]
fn a_destroy_racing_an_apply_waits_for_it_and_leaves_nothing() {
    let p = Project::new(&SLOW);
    let (first, _) = holding(&p, &["apply", "--auto-approve"]);
    let destroy = p.natgw(&["destroy", "--auto-approve", "--lock-timeout", "5m"]);
    destroy.ok().output_has("waiting for the lock");
    Run::of(first).ok();
    assert_eq!(Inventory::of(&p.emu.url), Inventory::destroyed());
    assert!(lock_rules(&p).is_empty());
}

#[test]
fn a_holder_killed_on_this_host_does_not_block_the_next_run() {
    let p = Project::new(&SLOW);
    let (first, description) = holding(&p, &["apply", "--auto-approve"]);
    let pid = first.id();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    let killed = Run::of(first);
    assert_ne!(killed.code, 0, "killed: {killed:?}");
    assert!(description.contains(&format!("pid={pid}")), "{description}");
    p.natgw(&["apply", "--auto-approve"])
        .ok()
        .stderr_has("broke a stale stack lock (its process no longer runs on this host)")
        .stderr_has(&format!("(pid {pid}), running apply"));
    assert_eq!(Inventory::of(&p.emu.url), Inventory::applied());
    assert!(lock_rules(&p).is_empty());
}

#[test]
fn a_lock_from_another_host_refuses_until_force_unlock() {
    let p = Project::new(&[]);
    seed_lock(&p, "ci-runner-9", "0a1b2c3d-4e5f6a7b", now());
    p.natgw(&["apply", "--auto-approve"])
        .code(1)
        .golden("errors-lock.txt", "apply while another host holds the lock");
    p.natgw(&["destroy", "--auto-approve"]).code(1);
    // `plan` takes no lock.
    p.natgw(&["plan"]).ok();
    p.natgw(&["force-unlock", "ffff-0000", "--force"])
        .code(1)
        .golden("errors-lock.txt", "force-unlock with the wrong id");
    p.natgw(&["force-unlock", "0a1b2c3d-4e5f6a7b"])
        .code(1)
        .golden(
            "errors-lock.txt",
            "force-unlock without a terminal or --force",
        );
    assert_eq!(lock_rules(&p).len(), 1, "still locked");
    p.natgw(&["force-unlock", "0a1b2c3d-4e5f6a7b", "--force"])
        .ok()
        .golden("errors-lock.txt", "force-unlock with the right id");
    assert!(lock_rules(&p).is_empty());
    p.natgw(&["force-unlock", "0a1b2c3d-4e5f6a7b", "--force"])
        .code(1)
        .golden("errors-lock.txt", "force-unlock with no lock");
    p.natgw(&["apply", "--auto-approve"]).ok();
    assert_eq!(Inventory::of(&p.emu.url), Inventory::applied());
}

#[test]
fn a_lock_from_another_host_not_refreshed_for_two_minutes_is_broken() {
    let p = Project::new(&[]);
    seed_lock(&p, "ci-runner-9", "0a1b2c3d-4e5f6a7b", now() - 121);
    p.natgw(&["apply", "--auto-approve"])
        .ok()
        .stderr_has("broke a stale stack lock (nobody has refreshed it for ")
        .stderr_has("held by bob on ci-runner-9 (pid 4242), running apply since 2026-11-30");
    assert_eq!(Inventory::of(&p.emu.url), Inventory::applied());
    assert!(lock_rules(&p).is_empty());
}

#[test]
fn the_lock_rule_is_never_one_of_the_stacks_resources() {
    let p = Project::new(&[]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    seed_lock(&p, "ci-runner-9", "0a1b2c3d-4e5f6a7b", now());
    // Neither a change nor a conflict: the rule has no ownership marker and no gateway's name.
    p.natgw(&["plan", "--detailed-exitcode"]).code(0);
    p.natgw(&["plan", "--destroy"])
        .ok()
        .output_lacks("natgw-lock-");
    p.natgw(&["force-unlock", "0a1b2c3d-4e5f6a7b", "--force"])
        .ok();
    p.natgw(&["destroy", "--auto-approve"]).ok();
    assert_eq!(Inventory::of(&p.emu.url), Inventory::destroyed());
}

#[test]
fn lock_false_takes_no_lock_and_says_so() {
    let p = Project::new(&[]);
    seed_lock(&p, "ci-runner-9", "0a1b2c3d-4e5f6a7b", now());
    p.natgw(&["apply", "--auto-approve", "--lock=false"])
        .ok()
        .stderr_has("--lock=false: this run takes no stack lock");
    assert_eq!(lock_rules(&p).len(), 1, "someone else's lock is left alone");
}

#[test]
fn the_lock_costs_one_operation_and_a_delete_sent_without_waiting() {
    // Operations that are not done at once, so that the insert's is waited for.
    let p = Project::new(&["--op-latency-ms", "100"]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    let before = p.emu.requests().len();
    p.natgw(&["apply", "--auto-approve"]).ok();
    let kinds: Vec<String> = p.emu.requests()[before..]
        .iter()
        .filter(|r| {
            let path = r.get("path").and_then(|x| x.as_str()).unwrap_or_default();
            path.ends_with("/global/firewalls")
                && r.get("method").and_then(|m| m.as_str()) == Some("POST")
                || path.contains("/global/firewalls/natgw-lock-")
                || path.contains("/global/operations/")
        })
        .map(|r| {
            format!(
                "{} {}",
                r.get("method").and_then(|m| m.as_str()).unwrap_or_default(),
                r.get("path").and_then(|m| m.as_str()).unwrap_or_default()
            )
        })
        .map(|k| {
            // Operation names vary.
            match k.split_once("/global/operations/") {
                Some((head, _)) => format!("{head}/global/operations/*"),
                None => k,
            }
        })
        .collect();
    let rule = rule_name();
    assert_eq!(
        kinds,
        [
            format!("POST /compute/v1/projects/{PROJECT}/global/firewalls"),
            format!("POST /compute/v1/projects/{PROJECT}/global/operations/*"),
            format!("GET /compute/v1/projects/{PROJECT}/global/firewalls/{rule}"),
            format!("DELETE /compute/v1/projects/{PROJECT}/global/firewalls/{rule}"),
        ],
        "a no-op apply's lock requests"
    );
}
