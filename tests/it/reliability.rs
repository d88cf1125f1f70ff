//! Reliability: a flaky API, interrupted runs and resources natgw does not own.
//!
//! Every check counts what the emulator holds through Google's own clients (list calls), not through natgw.

use std::process::Child;
use std::time::Duration;

use crate::fake::{Fake, json_status};
use crate::harness::{Natgw, Project, Run, example_config};
use crate::inventory::{
    EXPECTED_ADDRESSES, EXPECTED_FIREWALLS, EXPECTED_INSTANCES, EXPECTED_ROUTES, Inventory,
    create_address, create_route, route_marker, strings,
};
use crate::support::{
    PROJECT, compute_addresses, compute_firewalls, compute_instances, compute_routes, runtime,
};

const REGION: &str = "europe-west1";

fn inventory_of(project: &Project) -> Inventory {
    Inventory::of(&project.emu.url)
}

/// A run that did not crash: exit 0 or 1, never a panic (101) or a signal.
fn no_crash(run: &Run, what: &str) {
    assert!(
        run.code == 0 || run.code == 1,
        "{what}: exit {}\nstdout:\n{}\nstderr:\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{what}: {}", run.stderr);
}

// ---------------------------------------------------------------------------------------------------------
// Fault injection
// ---------------------------------------------------------------------------------------------------------

/// With 30% of all requests answering 429 or 503, apply, plan and destroy each succeed in one run: natgw
/// retries reads, changes (same requestId) and operation waits.
fn converges_under_faults(seed: u64) {
    let seed_arg = seed.to_string();
    let p = Project::new(&[
        "--fault-rate",
        "0.3",
        "--seed",
        &seed_arg,
        "--op-latency-ms",
        "20",
        "--boot-ms",
        "30",
    ]);
    let ctx = format!("seed {seed}");
    p.natgw(&["apply", "--auto-approve"]).ok();
    assert_eq!(inventory_of(&p), Inventory::applied(), "{ctx}: after apply");
    let faults = p
        .emu
        .requests()
        .iter()
        .filter(|r| matches!(r["status"].as_u64(), Some(429 | 503)))
        .count();
    assert!(faults > 0, "{ctx}: the emulator injected no fault");

    let plan = p.natgw(&["plan", "--detailed-exitcode"]);
    plan.code(0);
    assert!(plan.stdout.contains("No changes"), "{ctx}: {}", plan.stdout);

    // Every mutating Compute call kept one requestId across its retries, and no requestId was used by two
    // different calls: Google then does each change exactly once.
    let mut by_id: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for r in p.mutations() {
        let path = r["path"].as_str().unwrap_or_default().to_string();
        if path.starts_with("/compute/") {
            let id = r["request_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{ctx}: a Compute change without requestId: {r}"))
                .to_string();
            by_id
                .entry(id)
                .or_default()
                .insert(format!("{} {path}", r["method"]));
        }
    }
    for (id, calls) in &by_id {
        assert_eq!(calls.len(), 1, "{ctx}: requestId {id} used for {calls:?}");
    }

    p.natgw(&["destroy", "--auto-approve"]).ok();
    assert_eq!(
        inventory_of(&p),
        Inventory::destroyed(),
        "{ctx}: after destroy"
    );
    p.natgw(&["plan", "--destroy", "--detailed-exitcode"])
        .code(0);
}

#[test]
fn faults_seed_1() {
    converges_under_faults(1);
}

#[test]
fn faults_seed_7() {
    converges_under_faults(7);
}

#[test]
fn faults_seed_42() {
    converges_under_faults(42);
}

#[test]
fn faults_seed_1234() {
    converges_under_faults(1234);
}

/// When the retry budget runs out (a 90% fault rate, one second), the run fails cleanly: exit 1 and
/// Google's message with the HTTP status, never a panic.
#[test]
fn exhausted_retries_fail_cleanly() {
    let p = Project::new(&[
        "--fault-rate",
        "0.9",
        "--seed",
        "3",
        "--op-latency-ms",
        "10",
    ]);
    let run = p.natgw(&["apply", "--auto-approve", "--retry-timeout", "1"]);
    run.code(1);
    assert!(
        run.stderr.contains("HTTP 429") || run.stderr.contains("HTTP 503"),
        "{}",
        run.stderr
    );
    run.stderr_has("natgw stopped retrying");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------------------------
// Interruption
// ---------------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Signal {
    Kill,
    Int,
    Term,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Kill => "-KILL",
            Signal::Int => "-INT",
            Signal::Term => "-TERM",
        }
    }
}

fn send(child: &Child, signal: Signal) {
    let status = std::process::Command::new("kill")
        .args([signal.name(), &child.id().to_string()])
        .status()
        .expect("run kill");
    // The child may have finished just before: that is fine.
    let _ = status;
}

/// Starts `natgw ARGS`, sends `signal` once `now()` says so (or never, if natgw finishes first), and
/// returns how the run ended.
fn signalled(p: &Project, args: &[&str], signal: Signal, now: impl Fn() -> bool) -> Run {
    let mut child = p.cmd(args).spawn();
    while child.try_wait().expect("poll natgw").is_none() {
        if now() {
            send(&child, signal);
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Run::of(child)
}

/// `natgw apply --auto-approve`, sent `signal` once the emulator has logged `after` requests.
fn interrupted_apply(p: &Project, after: usize, signal: Signal) -> Run {
    signalled(p, &["apply", "--auto-approve"], signal, || {
        p.emu.requests().len() >= after
    })
}

/// Interrupts a first apply after `after` requests (and says where it stopped: the measurement), then checks that the next apply converges with no
/// duplicate and no orphan, that a plan then has no changes, and that destroy leaves nothing.
fn interrupt_then_converge(after: usize, signal: Signal) {
    interrupt_then_converge_with(after, signal, &[]);
}

/// Like `interrupt_then_converge`, with more emulator arguments (e.g. faults).
#[allow(clippy::print_stderr)]
fn interrupt_then_converge_with(after: usize, signal: Signal, emulator_args: &[&str]) {
    let mut args = vec!["--op-latency-ms", "40", "--boot-ms", "60"];
    args.extend_from_slice(emulator_args);
    let p = Project::new(&args);
    let ctx = format!("{signal:?} after {after} requests");
    let first = interrupted_apply(&p, after, signal);
    match signal {
        Signal::Kill => {}
        Signal::Int | Signal::Term if first.code == -1 || first.code == 130 => {
            // The default action of the signal, or (130) natgw giving back the stack lock and quitting: only
            // before apply has started any change.
            assert_eq!(
                p.mutations(),
                Vec::<serde_json::Value>::new(),
                "{ctx}: killed mid-apply"
            );
        }
        Signal::Int | Signal::Term => {
            // A graceful stop: a report, exit 0 (finished anyway) or 1, never a crash.
            no_crash(&first, &ctx);
            if first.code == 1 {
                assert!(
                    first.stdout.contains("Apply incomplete!")
                        || first.stderr.contains("Apply incomplete!"),
                    "{ctx}: no report\n{}\n{}",
                    first.stdout,
                    first.stderr
                );
            }
        }
    }
    let got = inventory_of(&p);
    eprintln!(
        "{ctx}: first run exit {}, {} changes sent, left {got:?}",
        first.code,
        p.mutations().len()
    );
    // Whatever exists is what the example config names: never a duplicate, never a stray.
    for (list, allowed) in [
        (&got.addresses, &EXPECTED_ADDRESSES[..]),
        (&got.instances, &EXPECTED_INSTANCES[..]),
        (&got.firewalls, &EXPECTED_FIREWALLS[..]),
        (&got.routes, &EXPECTED_ROUTES[..]),
    ] {
        for name in list {
            assert!(allowed.contains(&name.as_str()), "{ctx}: unexpected {name}");
        }
    }
    // A route never exists without its ready gateway VM.
    if !got.routes.is_empty() {
        assert_eq!(got.instances, strings(&EXPECTED_INSTANCES), "{ctx}");
    }

    let second = p.natgw(&["apply", "--auto-approve"]);
    second.ok();
    assert_eq!(
        inventory_of(&p),
        Inventory::applied(),
        "{ctx}: after the second apply"
    );
    let plan = p.natgw(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{ctx}: changes left:\n{}", plan.stdout);

    p.natgw(&["destroy", "--auto-approve"]).ok();
    assert_eq!(
        inventory_of(&p),
        Inventory::destroyed(),
        "{ctx}: after destroy"
    );
}

#[test]
fn sigkill_at_many_points_then_apply_converges() {
    for after in [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 24] {
        interrupt_then_converge(after, Signal::Kill);
    }
}

#[test]
fn sigint_at_many_points_then_apply_converges() {
    for after in [2, 6, 10, 14, 18, 22] {
        interrupt_then_converge(after, Signal::Int);
    }
}

/// A flaky API and a cancelled job at once: killed mid-apply with 30% of requests failing, the next apply
/// (still flaky) converges.
#[test]
fn sigkill_under_faults_then_apply_converges() {
    for (after, seed) in [(10, "11"), (18, "13")] {
        interrupt_then_converge_with(
            after,
            Signal::Kill,
            &["--fault-rate", "0.3", "--seed", seed],
        );
    }
}

#[test]
fn sigterm_stops_like_ctrl_c() {
    for after in [8, 16] {
        interrupt_then_converge(after, Signal::Term);
    }
}

/// A second Ctrl-C quits at once (exit 130) even while a VM is booting; the next apply converges.
#[test]
fn a_second_sigint_quits_at_once() {
    let p = Project::new(&["--op-latency-ms", "40", "--boot-ms", "3000"]);
    let mut child = p.cmd(&["apply", "--auto-approve"]).spawn();
    // Wait until the VM insert was sent: apply is then waiting for a VM that boots for 3 s.
    while !p.mutations().iter().any(|r| {
        r["path"]
            .as_str()
            .is_some_and(|x| x.ends_with("/instances"))
    }) {
        assert!(
            child.try_wait().expect("poll").is_none(),
            "apply ended early"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    send(&child, Signal::Int);
    std::thread::sleep(Duration::from_millis(100));
    send(&child, Signal::Int);
    Run::of(child).code(130).stderr_has("second interrupt");
    assert!(
        inventory_of(&p).routes.is_empty(),
        "no route before the VM is ready"
    );
    p.natgw(&["apply", "--auto-approve"]).ok();
    assert_eq!(inventory_of(&p), Inventory::applied());
    p.natgw(&["destroy", "--auto-approve"]).ok();
    assert_eq!(inventory_of(&p), Inventory::destroyed());
}

/// A saved plan whose apply was killed halfway is stale: applying it again is refused without a change;
/// a fresh apply converges.
#[test]
fn a_saved_plan_killed_halfway_is_refused_then_a_fresh_apply_converges() {
    let p = Project::new(&["--op-latency-ms", "40", "--boot-ms", "60"]);
    p.natgw(&["plan", "--out", "saved.json"]).ok();
    let before = p.mutations().len();
    signalled(&p, &["apply", "saved.json"], Signal::Kill, || {
        p.mutations().len() >= before + 3
    });
    let sent = p.mutations().len();
    let again = p.natgw(&["apply", "saved.json"]);
    again.code(1);
    again.stderr_has("the project changed since this plan was made");
    assert_eq!(p.mutations().len(), sent, "a stale plan changed something");
    p.natgw(&["apply", "--auto-approve"]).ok();
    assert_eq!(inventory_of(&p), Inventory::applied());
    p.natgw(&["destroy", "--auto-approve"]).ok();
    assert_eq!(inventory_of(&p), Inventory::destroyed());
}

/// A destroy killed halfway, then destroy again: nothing of the stack is left, the tag is removed.
#[test]
fn sigkill_during_destroy_then_destroy_finishes() {
    for after_extra in [2, 5, 8, 11] {
        let p = Project::new(&["--op-latency-ms", "40"]);
        p.natgw(&["apply", "--auto-approve"]).ok();
        let before = p.emu.requests().len();
        signalled(&p, &["destroy", "--auto-approve"], Signal::Kill, || {
            p.emu.requests().len() >= before + after_extra
        });
        p.natgw(&["destroy", "--auto-approve"]).ok();
        assert_eq!(
            inventory_of(&p),
            Inventory::destroyed(),
            "killed after {after_extra}"
        );
    }
}

// ---------------------------------------------------------------------------------------------------------
// Ownership: what natgw does not own, it never changes
// ---------------------------------------------------------------------------------------------------------

/// A resource that has one of natgw's names but no natgw marker, or another stack's: plan, apply and
/// destroy refuse to touch it, with a clear error, and send no change at all.
#[test]
fn name_clash_with_an_unowned_or_foreign_resource_is_refused() {
    let cases: [(&str, &[(&str, &str)]); 3] = [
        ("no labels", &[]),
        (
            "another stack",
            &[
                ("natgw-managed", "true"),
                ("natgw-stack", "someone-else"),
                ("natgw-gateway", "gitlab"),
            ],
        ),
        (
            "managed=false",
            &[
                ("natgw-managed", "false"),
                ("natgw-stack", "gitlab-runners"),
                ("natgw-gateway", "gitlab"),
            ],
        ),
    ];
    for (what, labels) in cases {
        let p = Project::new(&[]);
        create_address(&p.emu.url, "natgw-gitlab-ext", labels);
        let before = p.mutations().len();
        for args in [&["plan"][..], &["apply", "--auto-approve"][..]] {
            p.natgw(args).code(1).output_has("natgw-gitlab-ext").golden(
                "errors-ownership.txt",
                &format!("natgw {} over an address with {what}", args[0]),
            );
        }
        // Destroy has nothing of this stack to remove, and leaves the address alone.
        p.natgw(&["destroy", "--auto-approve"]).ok();
        assert_eq!(
            p.mutations().len(),
            before,
            "{what}: natgw changed something"
        );
        assert_eq!(
            inventory_of(&p).addresses,
            strings(&["natgw-gitlab-ext"]),
            "{what}"
        );
    }
}

/// Another stack's gateway and an unmarked route in the same project survive apply and destroy.
#[test]
fn other_stacks_and_unmarked_resources_survive_apply_and_destroy() {
    let p = Project::new(&["--op-latency-ms", "5"]);
    create_address(
        &p.emu.url,
        "natgw-other-ext",
        &[
            ("natgw-managed", "true"),
            ("natgw-stack", "someone-else"),
            ("natgw-gateway", "other"),
        ],
    );
    create_address(&p.emu.url, "natgw-stray-ext", &[]);
    create_route(
        &p.emu.url,
        "natgw-other-198-51-100-0-24",
        "198.51.100.0/24",
        &route_marker("someone-else", "other"),
    );
    create_route(
        &p.emu.url,
        "natgw-unmarked",
        "198.51.100.0/24",
        "made by hand",
    );
    let theirs = |inv: &Inventory| {
        (
            inv.addresses
                .iter()
                .filter(|a| a.contains("other") || a.contains("stray"))
                .cloned()
                .collect::<Vec<_>>(),
            inv.routes
                .iter()
                .filter(|r| r.contains("other") || r.contains("unmarked"))
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    let before = theirs(&inventory_of(&p));
    assert_eq!(before.0.len(), 2);
    assert_eq!(before.1.len(), 2);
    let setup = p.mutations().len();

    let plan = p.natgw(&["plan"]);
    plan.ok();
    assert!(!plan.stdout.contains("natgw-other"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("natgw-stray"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("natgw-unmarked"), "{}", plan.stdout);
    p.natgw(&["apply", "--auto-approve"]).ok();
    assert_eq!(theirs(&inventory_of(&p)), before);
    let destroy_plan = p.natgw(&["plan", "--destroy"]);
    destroy_plan.ok();
    assert!(
        !destroy_plan.stdout.contains("natgw-other"),
        "{}",
        destroy_plan.stdout
    );
    p.natgw(&["destroy", "--auto-approve"]).ok();
    let after = inventory_of(&p);
    assert_eq!(theirs(&after), before);
    assert_eq!(after.instances, Vec::<String>::new());
    assert_eq!(after.firewalls, Vec::<String>::new());
    assert_eq!(after.pool_tags, strings(&["existing-tag"]));
    // Nothing was ever sent for their resources.
    for r in p.mutations().into_iter().skip(setup) {
        let path = r["path"].as_str().unwrap_or_default();
        assert!(
            !path.contains("natgw-other")
                && !path.contains("natgw-stray")
                && !path.contains("natgw-unmarked"),
            "natgw touched {path}"
        );
    }
}

/// A tag the node pool already had before natgw is not natgw's: destroy keeps it.
#[test]
fn a_tag_the_pool_already_had_is_kept_by_destroy() {
    let config = example_config().replace(
        "node_tag      = \"gitlab-runner\"",
        "node_tag      = \"existing-tag\"",
    );
    assert_ne!(config, example_config(), "the example sets node_tag");
    let p = Project::with_config(&config, &["--op-latency-ms", "5"]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    p.natgw(&["destroy", "--auto-approve"]).ok();
    assert_eq!(inventory_of(&p), Inventory::destroyed());
}

/// What an applied gateway exposes, read back through Google's clients: the firewall rule admits only
/// the config's source ranges on the allowed ports, to the gateway VM alone; the VM has no service
/// account (no token to steal) and no SSH key from natgw; routes apply only to the runners' tag.
#[test]
fn an_applied_gateway_exposes_only_what_the_config_allows() {
    let p = Project::new(&[]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    runtime().block_on(async {
        let fw = compute_firewalls(&p.emu.url)
            .await
            .get()
            .set_project(PROJECT)
            .set_firewall("natgw-gitlab-allow")
            .send()
            .await
            .expect("get the firewall rule");
        assert_eq!(fw.source_ranges, vec!["10.0.0.0/20", "10.4.0.0/14"]);
        assert_eq!(fw.target_tags, vec!["natgw-gitlab"]);
        assert!(fw.source_tags.is_empty() && fw.source_service_accounts.is_empty());
        assert!(fw.denied.is_empty());
        let mut allowed: Vec<String> = fw
            .allowed
            .iter()
            .flat_map(|a| {
                let proto = a.ip_protocol.clone().unwrap_or_default();
                a.ports.iter().map(move |port| format!("{proto}:{port}"))
            })
            .collect();
        allowed.sort();
        assert_eq!(allowed, vec!["tcp:22", "tcp:443"]);

        let vm = compute_instances(&p.emu.url)
            .await
            .get()
            .set_project(PROJECT)
            .set_zone("europe-west1-b")
            .set_instance("natgw-gitlab")
            .send()
            .await
            .expect("get the VM");
        assert!(vm.service_accounts.is_empty(), "{:?}", vm.service_accounts);
        assert_eq!(vm.can_ip_forward, Some(true));
        let keys: Vec<String> = vm
            .metadata
            .iter()
            .flat_map(|m| m.items.iter())
            .filter_map(|i| i.key.clone())
            .collect();
        assert!(
            keys.iter().all(|k| k != "ssh-keys" && k != "sshKeys"),
            "{keys:?}"
        );

        let route = compute_routes(&p.emu.url)
            .await
            .get()
            .set_project(PROJECT)
            .set_route("natgw-gitlab-34-120-10-10-32")
            .send()
            .await
            .expect("get the route");
        assert_eq!(route.tags, vec!["gitlab-runner"]);
        assert_eq!(route.dest_range.as_deref(), Some("34.120.10.10/32"));
    });
}

/// A VM left behind that never reported ready (its run failed, or was killed while it booted) gets no
/// route on the next apply either: the route waits for the VM, which fails cleanly again.
#[test]
fn a_vm_that_never_became_ready_gets_no_route_on_the_next_apply() {
    let p = Project::new(&["--boot-fail"]);
    for attempt in ["first", "second"] {
        let run = p.natgw(&["apply", "--auto-approve", "--ready-timeout", "1"]);
        run.code(1);
        assert!(
            run.stderr.contains("did not report ready"),
            "{attempt}: {}",
            run.stderr
        );
        let got = inventory_of(&p);
        assert_eq!(got.instances, strings(&EXPECTED_INSTANCES), "{attempt}");
        assert_eq!(
            got.routes,
            Vec::<String>::new(),
            "{attempt}: a route to a VM that is not ready"
        );
    }
    p.natgw(&["destroy", "--auto-approve"]).ok();
    assert_eq!(inventory_of(&p), Inventory::destroyed());
}

/// Resources that vanish between natgw's plan and its calls (deleted by someone else while a destroy
/// runs) are handled: a delete that finds nothing has succeeded.
#[test]
fn resources_deleted_by_someone_else_during_destroy_are_fine() {
    let p = Project::new(&["--op-latency-ms", "300"]);
    p.natgw(&["apply", "--auto-approve"]).ok();
    let before = p.emu.requests().len();
    let child = p.cmd(&["destroy", "--auto-approve"]).spawn();
    // Once the route's delete is sent, the VM and the addresses are deleted behind natgw's back.
    while !p.emu.requests()[before..].iter().any(|r| {
        r["method"] == "DELETE" && r["path"].as_str().is_some_and(|x| x.contains("/routes/"))
    }) {
        std::thread::sleep(Duration::from_millis(5));
    }
    runtime().block_on(async {
        let vms = compute_instances(&p.emu.url).await;
        vms.delete()
            .set_project(PROJECT)
            .set_zone("europe-west1-b")
            .set_instance("natgw-gitlab")
            .send()
            .await
            .expect("delete the VM");
        // natgw, finding the VM gone, goes on to the addresses at once: whoever comes first deletes them.
        let addresses = compute_addresses(&p.emu.url).await;
        for name in EXPECTED_ADDRESSES {
            let deleted = addresses
                .delete()
                .set_project(PROJECT)
                .set_region(REGION)
                .set_address(name)
                .send()
                .await;
            if let Err(e) = deleted {
                assert_eq!(e.http_status_code(), Some(404), "delete {name}: {e:?}");
            }
        }
    });
    let run = Run::of(child);
    // natgw found them gone (404) and carried on.
    assert!(
        p.emu.requests()[before..].iter().any(|r| r["status"] == 404
            && r["path"]
                .as_str()
                .is_some_and(|x| x.ends_with("/instances/natgw-gitlab"))),
        "the VM was not found gone"
    );
    run.ok().stdout_has("Destroy complete!");
    assert_eq!(inventory_of(&p), Inventory::destroyed());
}

/// An operation that takes longer than the retry budget is waited for, not cut short: the budget bounds
/// retries, while `operations.wait` may block (for up to 2 minutes at Google) by design.
#[test]
fn operations_longer_than_the_retry_budget_are_waited_for() {
    let p = Project::new(&["--op-latency-ms", "1200"]);
    p.natgw(&["apply", "--auto-approve", "--retry-timeout", "1"])
        .ok();
    assert_eq!(inventory_of(&p), Inventory::applied());
    p.natgw(&["destroy", "--auto-approve", "--retry-timeout", "1"])
        .ok();
    assert_eq!(inventory_of(&p), Inventory::destroyed());
}

// ---------------------------------------------------------------------------------------------------------
// Answers natgw does not expect
// ---------------------------------------------------------------------------------------------------------

/// What the fake API answers: `(status, body)` for a method and a path.
type Answers = std::sync::Arc<dyn Fn(&str, &str) -> (u16, String) + Send + Sync>;

/// A stand-in for Google that answers every request with `answers`, as JSON.
fn fake_google(answers: Answers) -> Fake {
    Fake::start(move |req| {
        let (status, body) = answers(&req.method, &req.path);
        json_status(status, body)
    })
}

fn natgw_against(url: &str, dir: &std::path::Path, args: &[&str]) -> Run {
    Natgw::new(dir)
        .args(args)
        .config(&dir.join("natgw.toml"))
        .endpoint(url)
        .args(["--anonymous", "--retry-timeout", "1"])
        .run()
}

/// A pool as GKE would answer it, with the example's tag.
const POOL_JSON: &str =
    r#"{"name": "runners", "config": {"tags": ["existing-tag"]}, "etag": "e1"}"#;

/// Answers for a plan: `list` for the four Compute lists (aggregated ones wrapped), `pool` for the pool;
/// any change answers `change`.
fn plan_answers(list: &'static str, pool: &'static str, change: &'static str) -> Answers {
    std::sync::Arc::new(move |method, path| {
        if method != "GET" {
            return (200, change.to_string());
        }
        if path.contains("/nodePools/") {
            return (200, pool.to_string());
        }
        if path.contains("/aggregated/") {
            let key = if path.ends_with("/instances") {
                "instances"
            } else {
                "addresses"
            };
            let scope = if key == "instances" {
                "zones/europe-west1-b"
            } else {
                "regions/europe-west1"
            };
            return (
                200,
                format!(r#"{{"items": {{"{scope}": {{"{key}": {list}}}}}}}"#),
            );
        }
        (200, format!(r#"{{"items": {list}}}"#))
    })
}

/// Odd answers (missing fields, unknown enum values, wrong types, not JSON, an operation without a
/// name) give exit 0 or a clear error (1), never a panic; and plan with a name clash never changes anything.
#[test]
fn odd_api_answers_never_crash_natgw() {
    let dir = crate::support::temp_dir("odd");
    let config = dir.join("natgw.toml");
    std::fs::write(&config, example_config()).expect("write the config");
    let owned =
        r#"{"natgw-managed": "true", "natgw-stack": "gitlab-runners", "natgw-gateway": "gitlab"}"#;
    let cases: Vec<(&str, Answers)> = vec![
        ("empty objects", plan_answers("[]", "{}", "{}")),
        ("lists of empty items", plan_answers("[{}, {}]", POOL_JSON, "{}")),
        (
            "our name without labels or IP",
            plan_answers(r#"[{"name": "natgw-gitlab-ext"}]"#, POOL_JSON, "{}"),
        ),
        (
            "ours, with unknown enum values and no fields",
            plan_answers(
                Box::leak(
                    format!(
                        r#"[{{"name": "natgw-gitlab", "labels": {owned}, "status": "HIBERNATING", "addressType": "SIDEWAYS"}}]"#
                    )
                    .into_boxed_str(),
                ),
                POOL_JSON,
                "{}",
            ),
        ),
        (
            "ours, wrong types",
            plan_answers(
                r#"[{"name": 7, "labels": [], "priority": "high", "destRange": "not a range", "allowed": "all"}]"#,
                POOL_JSON,
                "{}",
            ),
        ),
        (
            "a route of ours to a range that is not one",
            plan_answers(
                r#"[{"name": "natgw-gitlab-34-120-10-10-32", "destRange": "34.120.10.10/99", "nextHopIp": "nope", "description": "Managed by natgw, do not edit: natgw-managed=true natgw-stack=gitlab-runners natgw-gateway=gitlab"}]"#,
                POOL_JSON,
                "{}",
            ),
        ),
        ("pool without tags", plan_answers("[]", r#"{"name": "runners"}"#, "{}")),
        ("pool tags not a list", plan_answers("[]", r#"{"config": {"tags": "a,b"}}"#, "{}")),
        (
            "operations without a name",
            plan_answers("[]", POOL_JSON, r#"{"status": "RUNNING"}"#),
        ),
        (
            "operations DONE with only an HTTP error code",
            plan_answers(
                "[]",
                POOL_JSON,
                r#"{"name": "op-1", "status": "DONE", "httpErrorStatusCode": 500}"#,
            ),
        ),
        (
            "operations DONE with empty error items",
            plan_answers(
                "[]",
                POOL_JSON,
                r#"{"name": "op-1", "status": "DONE", "error": {"errors": [{}]}}"#,
            ),
        ),
        (
            "not JSON",
            std::sync::Arc::new(|_: &str, _: &str| (200, "<html>hello</html>".to_string())),
        ),
        (
            "an error without a body",
            std::sync::Arc::new(|_: &str, _: &str| (418, String::new())),
        ),
        (
            "an error body that is not Google's",
            std::sync::Arc::new(|_: &str, _: &str| (400, r#"{"error": "nope"}"#.to_string())),
        ),
    ];
    let mut failures = Vec::new();
    for (what, answers) in cases {
        let fake = fake_google(answers);
        for args in [
            &["plan"][..],
            &["apply", "--auto-approve"],
            &["destroy", "--auto-approve"],
        ] {
            let run = natgw_against(&fake.url, &dir, args);
            if !(run.code == 0 || run.code == 1) || run.all().contains("panicked") {
                failures.push(format!(
                    "{what}: {args:?}: exit {}\n{}\n{}",
                    run.code, run.stdout, run.stderr
                ));
            }
            if run.code == 1 && !run.stderr.contains("error") {
                failures.push(format!(
                    "{what}: {args:?}: exit 1 without a message:\n{}",
                    run.stderr
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
