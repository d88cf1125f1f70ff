//! What a user sees of plan, apply and destroy, written through a shell into buffers: the notices of the ops
//! layer and the closing report. Golden files in tests/golden/, refreshed with `NATGW_BLESS=1 cargo test
//! golden`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::frontend::{ShowPlan, Terminal, report};
use crate::model::progress::{Event, Outcome, Outputs, Verb, Wait};
use crate::ops::{Applied, Frontend, Notice};
use crate::output::{Buffer, Shell};
use crate::plan::tests::{EXAMPLE, applied_world, config_from, desired_from, empty_world};
use crate::plan::{Action, Change, Plan};
use crate::render::tests::{golden, plan_for};

/// A terminal frontend whose stdout and stderr are buffers (`interleaved`: one buffer for both, as a
/// terminal shows them).
fn terminal(json: bool, interleaved: bool, answers: &[&str]) -> (Terminal, Buffer, Buffer) {
    let out = Buffer::default();
    let err = if interleaved {
        out.clone()
    } else {
        Buffer::default()
    };
    let shell = Shell::from_write(
        Box::new(out.clone()),
        Box::new(err.clone()),
        json,
        answers.iter().map(|a| (*a).to_string()).collect(),
    );
    let frontend = Terminal {
        shell,
        show_plan: ShowPlan::BeforeApproval,
    };
    (frontend, out, err)
}

fn plan(destroy: bool) -> Plan {
    let world = if destroy {
        applied_world(&desired_from(&config_from(EXAMPLE)), &empty_world())
    } else {
        empty_world()
    };
    plan_for(EXAMPLE, &world, destroy)
}

fn verb(c: &Change) -> Verb {
    match c.action {
        Action::Create | Action::Replace => Verb::Create,
        Action::Delete => Verb::Destroy,
        Action::Update | Action::NoOp => Verb::Modify,
    }
}

/// Each change started and done, in plan order; the instance takes long enough to say so.
fn events(plan: &Plan) -> Vec<Event> {
    let mut events = Vec::new();
    for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        let (address, name, verb) = (c.address(), c.name.clone(), verb(c));
        events.push(Event::Started {
            address: address.clone(),
            name: name.clone(),
            verb,
        });
        let mut elapsed = Duration::from_secs(2);
        if c.kind.role() == "instance" {
            events.push(Event::Still {
                address: address.clone(),
                name: name.clone(),
                verb,
                elapsed: Duration::from_secs(10),
                waiting: (verb == Verb::Create).then_some(Wait::StartupScriptReady),
            });
            elapsed = Duration::from_secs(14);
        }
        events.push(Event::Done {
            address,
            name,
            verb,
            elapsed,
        });
    }
    events
}

fn outputs() -> BTreeMap<String, Outputs> {
    BTreeMap::from([(
        "gitlab".to_string(),
        Outputs {
            egress_ip: Some(Ipv4Addr::new(34, 1, 1, 11)),
            internal_ip: Some(Ipv4Addr::new(10, 0, 0, 50)),
            egress_ips: None,
        },
    )])
}

/// Progress of `events`, then the report of `applied`, through `frontend`.
fn run(frontend: &Terminal, events: Vec<Event>, applied: &Applied) -> bool {
    for e in events {
        frontend.notify(Notice::Progress(e));
    }
    report(applied, &frontend.shell)
}

#[test]
fn golden_apply() {
    let plan = plan(false);
    let s = plan.summary();
    let outcome = Outcome {
        added: s.add,
        changed: s.change,
        outputs: outputs(),
        ..Outcome::default()
    };
    let applied = Applied::Finished {
        destroy: false,
        outcome,
    };
    let (frontend, out, _) = terminal(false, true, &[]);
    assert!(run(&frontend, events(&plan), &applied));
    golden("apply.txt", &out.text());
    let (frontend, out, err) = terminal(true, false, &[]);
    assert!(run(&frontend, events(&plan), &applied));
    golden("apply.json", &out.text());
    assert!(
        err.text()
            .contains("natgw-gitlab: Creation complete after 14s\n")
    );
    assert!(
        err.text()
            .ends_with("\ngitlab.internal_ip = \"10.0.0.50\"\n")
    );
}

#[test]
fn golden_apply_incomplete() {
    let plan = plan(false);
    let mut events = events(&plan);
    // The instance fails: its route is skipped; an interrupt leaves the node pool's tag unstarted.
    let at = events
        .iter()
        .position(|e| matches!(e, Event::Still { .. }))
        .expect("instance");
    events.truncate(at);
    events.push(Event::Failed {
        address: "gitlab.instance".into(),
        name: "natgw-gitlab".into(),
        verb: Verb::Create,
        error: "ZONE_RESOURCE_POOL_EXHAUSTED".into(),
    });
    let route = "gitlab.route[\"34.120.10.10/32\"]";
    events.push(Event::Skipped {
        address: route.into(),
        reason: "gitlab.instance failed".into(),
    });
    let outcome = Outcome {
        added: 3,
        failed: vec![(
            "gitlab.instance".into(),
            "creating natgw-gitlab: ZONE_RESOURCE_POOL_EXHAUSTED".into(),
        )],
        skipped: vec![route.into()],
        not_started: vec!["node_pool[\"europe-west1/gke-gitlab-runner/runners\"]".into()],
        outputs: BTreeMap::from([(
            "gitlab".to_string(),
            Outputs {
                egress_ip: Some(Ipv4Addr::new(34, 1, 1, 11)),
                internal_ip: None,
                egress_ips: None,
            },
        )]),
        ..Outcome::default()
    };
    let applied = Applied::Finished {
        destroy: false,
        outcome,
    };
    let (frontend, out, _) = terminal(false, true, &[]);
    frontend.notify(Notice::Interrupted);
    assert!(!run(&frontend, events, &applied));
    golden("apply-incomplete.txt", &out.text());
}

#[test]
fn golden_destroy() {
    let plan = plan(true);
    let outcome = Outcome {
        changed: 1,
        destroyed: plan.summary().destroy,
        // Destroy shows no outputs, in text or JSON, even if apply knew some.
        outputs: outputs(),
        ..Outcome::default()
    };
    let applied = Applied::Finished {
        destroy: true,
        outcome,
    };
    let (frontend, out, _) = terminal(false, true, &[]);
    assert!(run(&frontend, events(&plan), &applied));
    golden("destroy.txt", &out.text());
    let (frontend, out, _) = terminal(true, false, &[]);
    assert!(run(&frontend, Vec::new(), &applied));
    golden("destroy.json", &out.text());
}

#[test]
fn the_plan_is_shown_before_the_question_and_only_yes_approves() {
    let plan = plan(false);
    let (frontend, out, err) = terminal(false, false, &["yes\n", "y\n"]);
    frontend.notify(Notice::Planned(&plan));
    assert!(frontend.approve(false).expect("answer"));
    assert!(!frontend.approve(true).expect("answer"));
    // End of input is no approval.
    assert!(!frontend.approve(false).expect("answer"));
    assert!(
        out.text()
            .starts_with("natgw will perform the following actions:")
    );
    assert!(err.text().contains("Do you want to perform these actions?"));
    assert!(
        err.text()
            .contains("Do you really want to destroy all resources of this stack?")
    );
    assert!(!report(
        &Applied::Cancelled { destroy: false },
        &frontend.shell
    ));
    assert!(out.text().ends_with("\nApply cancelled.\n"));
}

#[test]
fn json_keeps_stdout_for_the_result() {
    // apply --json: the plan text is not shown; plan --json: the plan is the JSON on stdout.
    let plan = plan(false);
    let (frontend, out, err) = terminal(true, false, &[]);
    frontend.notify(Notice::Planned(&plan));
    assert_eq!(out.text(), "");
    let (mut frontend, out, _) = terminal(true, false, &[]);
    frontend.show_plan = ShowPlan::Result;
    frontend.notify(Notice::Planned(&plan));
    frontend.notify(Notice::Saved(std::path::Path::new("plan.json")));
    let value: serde_json::Value = serde_json::from_str(&out.text()).expect("one JSON document");
    assert_eq!(value["summary"]["add"], 5);
    assert_eq!(err.text(), "");
}
