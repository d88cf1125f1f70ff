//! Golden files for the plan's text and JSON. Refresh them with `NATGW_BLESS=1 cargo test golden`.

use std::path::PathBuf;

use super::*;
use crate::plan::tests::{EXAMPLE, applied_world, config_from, desired_from, empty_world};
use crate::plan::{Context, FORMAT_VERSION, diff};

pub(crate) fn plan_for(
    config: &str,
    world: &crate::model::observed::Observation,
    destroy: bool,
) -> Plan {
    let cfg = config_from(config);
    let desired = if destroy {
        Vec::new()
    } else {
        desired_from(&cfg)
    };
    let changes = diff(&Context { stack: &cfg.stack }, &desired, world).expect("plan");
    Plan {
        format_version: FORMAT_VERSION,
        natgw_version: "0.0.0-test".into(),
        project: "acme-ci".into(),
        stack: cfg.stack.clone(),
        config_digest: String::new(),
        destroy,
        changes,
        world: world.clone(),
    }
}

pub(crate) fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    // Tests read their own switches from the environment.
    #[allow(clippy::disallowed_methods)]
    let bless = std::env::var_os("NATGW_BLESS").is_some();
    if bless {
        std::fs::create_dir_all(path.parent().expect("golden dir")).expect("create tests/golden");
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run NATGW_BLESS=1 cargo test golden",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "{} differs; if the change is intended, run NATGW_BLESS=1 cargo test golden",
        path.display()
    );
}

fn applied() -> crate::model::observed::Observation {
    let cfg = config_from(EXAMPLE);
    applied_world(&desired_from(&cfg), &empty_world())
}

#[test]
fn golden_create() {
    let plan = plan_for(EXAMPLE, &empty_world(), false);
    golden("plan-create.txt", &plan_text(&plan, Style { color: false }));
    let json = serde_json::to_string_pretty(&plan_json(&plan)).expect("json");
    golden("plan-create.json", &format!("{json}\n"));
}

#[test]
fn golden_update_and_replace() {
    let edited = EXAMPLE
        .replacen(
            "internal_ip   = \"10.0.0.50\"",
            "internal_ip   = \"10.0.0.60\"",
            1,
        )
        .replacen(
            "allow         = [\"tcp:443\", \"tcp:22\"]",
            "allow         = [\"tcp:443\"]",
            1,
        );
    assert_ne!(edited, EXAMPLE);
    let plan = plan_for(&edited, &applied(), false);
    golden(
        "plan-replace.txt",
        &plan_text(&plan, Style { color: false }),
    );
    let json = serde_json::to_string_pretty(&plan_json(&plan)).expect("json");
    golden("plan-replace.json", &format!("{json}\n"));
}

#[test]
fn golden_destroy_and_no_changes() {
    let plan = plan_for(EXAMPLE, &applied(), true);
    golden(
        "plan-destroy.txt",
        &plan_text(&plan, Style { color: false }),
    );
    let none = plan_for(EXAMPLE, &applied(), false);
    assert_eq!(
        plan_text(&none, Style { color: false }),
        "No changes. Your infrastructure matches the configuration.\n"
    );
}

#[test]
fn colours_only_when_asked() {
    let plan = plan_for(EXAMPLE, &empty_world(), false);
    assert!(!plan_text(&plan, Style { color: false }).contains('\x1b'));
    assert!(plan_text(&plan, Style { color: true }).contains("\x1b[32m+\x1b[0m"));
}

/// A long step's progress line says what it waits for once its API calls are done.
#[test]
fn still_lines_say_what_they_wait_for() {
    use std::time::Duration;

    use crate::model::progress::{Event, Verb, Wait};
    use crate::render::apply::progress;

    let still = |waiting| Event::Still {
        address: "gitlab.instance".into(),
        name: "natgw-gitlab".into(),
        verb: Verb::Create,
        elapsed: Duration::from_secs(20),
        waiting,
    };
    let lines: Vec<String> = [
        None,
        Some(Wait::VmRunning),
        Some(Wait::VmSettling),
        Some(Wait::StartupScriptReady),
        Some(Wait::BackendHealthy),
    ]
    .into_iter()
    .map(|w| progress(&still(w), Style { color: false }))
    .collect();
    assert_eq!(
        lines,
        [
            "natgw-gitlab: Still creating... [20s elapsed]",
            "natgw-gitlab: Still creating... [20s elapsed, waiting for the VM to be RUNNING]",
            "natgw-gitlab: Still creating... [20s elapsed, waiting for the VM to finish stopping, suspending or its repair]",
            "natgw-gitlab: Still creating... [20s elapsed, waiting for the startup script to report ready]",
            "natgw-gitlab: Still creating... [20s elapsed, waiting for the backend to become healthy]",
        ]
    );
}

/// A VM found in each status, or with a restart left pending, is shown with what brings it back, in the
/// text and in the JSON plan.
#[test]
fn vm_lines_say_how_the_vm_comes_back() {
    let cases = [
        (
            "TERMINATED",
            false,
            "~ status = \"TERMINATED\" -> \"RUNNING\" (start)",
            "[\"start\"]",
        ),
        (
            "SUSPENDED",
            false,
            "~ status = \"SUSPENDED\" -> \"RUNNING\" (resume)",
            "[\"resume\"]",
        ),
        (
            "STOPPING",
            false,
            "~ status = \"STOPPING\" -> \"RUNNING\" (wait for STOPPING to finish, then start)",
            "[\"wait-then-start\"]",
        ),
        (
            "SUSPENDING",
            false,
            "~ status = \"SUSPENDING\" -> \"RUNNING\" (wait for SUSPENDING to finish, then resume)",
            "[\"wait-then-resume\"]",
        ),
        (
            "REPAIRING",
            false,
            "~ status = \"REPAIRING\" -> \"RUNNING\" (wait for Google's repair)",
            "[\"wait-for-repair\"]",
        ),
        (
            "RUNNING",
            true,
            "~ restart_pending = true -> false (restart pending from an interrupted apply)",
            "[\"restart\"]",
        ),
        (
            "SUSPENDED",
            true,
            "~ restart_pending = true -> false (restart pending from an interrupted apply)",
            "[\"resume\",\"restart\"]",
        ),
    ];
    for (status, pending, line, actions) in cases {
        let mut world = applied();
        world.instances[0].resource.status = status.into();
        world.instances[0].resource.restart_pending = pending;
        let plan = plan_for(EXAMPLE, &world, false);
        let text = plan_text(&plan, Style { color: false });
        assert!(text.contains(line), "{status}, pending {pending}:\n{text}");
        assert!(text.contains("Plan: 0 to add, 1 to change, 0 to destroy."));
        let json = plan_json(&plan);
        let vm = json["resource_changes"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["address"] == "gitlab.instance"))
            .map(|c| c["change"]["vm_actions"].to_string());
        assert_eq!(vm.as_deref(), Some(actions), "{status}, pending {pending}");
    }
}
