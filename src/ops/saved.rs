//! Checks a saved plan (pure): it must be a plan of this format, made by this natgw, from this very config,
//! for this project and stack, with exactly the changes that config and the world it saw give; and before it
//! is applied, the project must still be that world.

use std::path::Path;

use crate::model::desired::DesiredGateway;
use crate::model::observed::{Observation, Observed};
use crate::plan::{self, Context, FORMAT_VERSION, Plan};

/// What a saved plan must agree with.
pub(super) struct Expected<'a> {
    pub(super) natgw_version: &'a str,
    pub(super) config_path: &'a Path,
    pub(super) config_digest: &'a str,
    pub(super) project: &'a str,
    pub(super) stack: &'a str,
    /// The config's gateways (a destroy plan wants none, whatever this says).
    pub(super) desired: &'a [DesiredGateway],
}

/// The plan in `bytes`, or why it is refused (the first check that fails, naming the plan's field).
pub(super) fn verify(bytes: &[u8], expected: &Expected<'_>) -> Result<Plan, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "not a natgw plan file (line {}, column {}: {e}); make a new one with natgw plan --out",
            e.line(),
            e.column()
        )
    })?;
    let version = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(FORMAT_VERSION)) {
        return Err(format!(
            "format_version: this natgw reads plan format {FORMAT_VERSION}, the file has {}; make a new plan",
            version.map_or("none".to_string(), |v| v.to_string())
        ));
    }
    let plan: Plan = serde_json::from_value(value).map_err(|e| {
        format!("not a valid natgw plan ({e}); was it edited? Make a new one with natgw plan --out")
    })?;
    if plan.natgw_version != expected.natgw_version {
        return Err(format!(
            "natgw_version: made by natgw {}, this is natgw {}; make a new plan",
            plan.natgw_version, expected.natgw_version
        ));
    }
    if plan.config_digest != expected.config_digest {
        return Err(format!(
            "config_digest: the plan was made from another config than {} (or the file changed since); make a new plan",
            expected.config_path.display()
        ));
    }
    if plan.project != expected.project || plan.stack != expected.stack {
        return Err(format!(
            "the plan is for project {} stack {}, the config says project {} stack {}",
            plan.project, plan.stack, expected.project, expected.stack
        ));
    }
    // The changes must be exactly what this config and the world the plan saw give: an edited plan is
    // refused here, before anything is contacted (an edited world is caught by `unchanged`).
    let desired = if plan.destroy { &[] } else { expected.desired };
    let context = Context {
        stack: expected.stack,
    };
    let implied = plan::diff(&context, desired, &plan.world)
        .map_err(|e| format!("the plan does not hold together ({e}); make a new plan"))?;
    if implied != plan.changes {
        return Err(
            "changes: the plan's changes are not what the config and the world the plan saw give; was it edited? Make a new one with natgw plan --out".into(),
        );
    }
    Ok(plan)
}

/// Whether the project is still the world the plan saw; if not, which kinds of resources differ.
pub(super) fn unchanged(then: &Observation, now: &Observation) -> Result<(), String> {
    let (then, now) = (then.canonical(), now.canonical());
    if then == now {
        return Ok(());
    }
    fn names<T: serde::Serialize>(list: &[Observed<T>]) -> Vec<String> {
        list.iter()
            .map(|o| serde_json::to_string(o).unwrap_or_default())
            .collect()
    }
    let pairs = [
        ("addresses", names(&then.addresses), names(&now.addresses)),
        (
            "firewall rules",
            names(&then.firewalls),
            names(&now.firewalls),
        ),
        ("instances", names(&then.instances), names(&now.instances)),
        ("routes", names(&then.routes), names(&now.routes)),
        (
            "node pools",
            names(&then.node_pools),
            names(&now.node_pools),
        ),
    ];
    let differ: Vec<&str> = pairs
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(what, _, _)| what)
        .collect();
    Err(if differ.is_empty() {
        "node pools it could not find differ".into()
    } else {
        format!("{} differ", differ.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::plan::tests::{EXAMPLE, applied_world, config_from, desired_from, empty_world};

    const VERSION: &str = "1.2.3";

    struct Fixture {
        desired: Vec<DesiredGateway>,
        stack: String,
        path: PathBuf,
    }

    impl Fixture {
        fn new() -> Self {
            let cfg = config_from(EXAMPLE);
            Fixture {
                desired: desired_from(&cfg),
                stack: cfg.stack.clone(),
                path: PathBuf::from("natgw.toml"),
            }
        }

        fn expected(&self) -> Expected<'_> {
            Expected {
                natgw_version: VERSION,
                config_path: &self.path,
                config_digest: "d1",
                project: "acme-ci",
                stack: &self.stack,
                desired: &self.desired,
            }
        }

        /// A plan as `natgw plan --out` saves it, against `world`.
        fn plan(&self, world: &Observation, destroy: bool) -> Plan {
            let desired = if destroy { &[][..] } else { &self.desired[..] };
            let changes =
                plan::diff(&Context { stack: &self.stack }, desired, world).expect("plan");
            Plan {
                format_version: FORMAT_VERSION,
                natgw_version: VERSION.into(),
                project: "acme-ci".into(),
                stack: self.stack.clone(),
                config_digest: "d1".into(),
                destroy,
                changes,
                world: world.clone(),
            }
        }
    }

    fn bytes(plan: &Plan) -> Vec<u8> {
        serde_json::to_vec_pretty(plan).expect("encode")
    }

    fn refused(bytes: &[u8], f: &Fixture) -> String {
        match verify(bytes, &f.expected()) {
            Ok(_) => panic!("accepted"),
            Err(why) => why,
        }
    }

    #[test]
    fn a_faithful_plan_is_accepted_as_saved() {
        let f = Fixture::new();
        for (world, destroy) in [
            (empty_world(), false),
            (applied_world(&f.desired, &empty_world()), true),
        ] {
            let plan = f.plan(&world, destroy);
            assert_eq!(verify(&bytes(&plan), &f.expected()), Ok(plan));
        }
    }

    #[test]
    fn an_edited_plan_is_refused() {
        let f = Fixture::new();
        let mut plan = f.plan(&empty_world(), false);
        plan.changes.pop();
        assert!(refused(&bytes(&plan), &f).starts_with("changes: "));
        // Turned into a destroy plan by hand: its changes no longer follow.
        let mut plan = f.plan(&empty_world(), false);
        plan.destroy = true;
        assert!(refused(&bytes(&plan), &f).starts_with("changes: "));
        // Not JSON at all, or JSON that is no plan.
        assert!(
            refused(b"{\"format_version\": 1,", &f).starts_with("not a natgw plan file (line 1")
        );
        let not_a_plan = serde_json::json!({"format_version": 1, "changes": "all"});
        assert!(
            refused(not_a_plan.to_string().as_bytes(), &f).starts_with("not a valid natgw plan")
        );
    }

    #[test]
    fn another_format_or_version_is_refused() {
        let f = Fixture::new();
        let mut value = serde_json::to_value(f.plan(&empty_world(), false)).expect("value");
        value["format_version"] = serde_json::json!(FORMAT_VERSION + 1);
        let why = refused(value.to_string().as_bytes(), &f);
        assert!(why.starts_with("format_version: "), "{why}");
        let mut plan = f.plan(&empty_world(), false);
        plan.natgw_version = "0.0.1".into();
        assert_eq!(
            refused(&bytes(&plan), &f),
            "natgw_version: made by natgw 0.0.1, this is natgw 1.2.3; make a new plan"
        );
    }

    #[test]
    fn a_plan_of_another_config_or_project_is_refused() {
        let f = Fixture::new();
        let mut plan = f.plan(&empty_world(), false);
        plan.config_digest = "d2".into();
        assert!(
            refused(&bytes(&plan), &f).starts_with(
                "config_digest: the plan was made from another config than natgw.toml"
            )
        );
        let mut plan = f.plan(&empty_world(), false);
        plan.project = "other-project".into();
        assert!(refused(&bytes(&plan), &f).starts_with("the plan is for project other-project"));
    }

    #[test]
    fn a_stale_plan_names_what_changed_in_the_project() {
        let f = Fixture::new();
        let then = empty_world();
        assert_eq!(unchanged(&then, &then.clone()), Ok(()));
        let now = applied_world(&f.desired, &then);
        let why = unchanged(&then, &now).expect_err("stale");
        assert!(
            why.starts_with("addresses, firewall rules, instances, routes"),
            "{why}"
        );
        let mut only_routes = then.clone();
        only_routes.routes = now.routes.clone();
        assert_eq!(unchanged(&then, &only_routes), Err("routes differ".into()));
    }

    /// A VM's power actions are saved with the plan and checked like its other changes; between plan and
    /// apply, a VM that went down or came back is a changed project, one that only moved between states of the
    /// same kind (SUSPENDED to TERMINATED, STAGING to RUNNING) is not: apply reads where it went.
    #[test]
    fn vm_actions_are_saved_and_a_vm_that_went_down_is_a_changed_project() {
        let f = Fixture::new();
        let mut world = applied_world(&f.desired, &empty_world());
        world.instances[0].resource.status = "SUSPENDED".into();
        world.instances[0].resource.restart_pending = true;
        let plan = f.plan(&world, false);
        let vm = plan
            .changes
            .iter()
            .find(|c| !c.vm_actions.is_empty())
            .expect("a VM change");
        assert_eq!(
            vm.vm_actions,
            [
                crate::plan::VmAction::Resume,
                crate::plan::VmAction::Restart
            ]
        );
        assert_eq!(verify(&bytes(&plan), &f.expected()), Ok(plan.clone()));
        let mut edited = plan.clone();
        for c in &mut edited.changes {
            c.vm_actions
                .retain(|a| *a != crate::plan::VmAction::Restart);
        }
        assert!(refused(&bytes(&edited), &f).starts_with("changes: "));

        let moved = |status: &str| {
            let mut now = world.clone();
            now.instances[0].resource.status = status.into();
            unchanged(&world, &now)
        };
        assert_eq!(moved("TERMINATED"), Ok(()));
        assert_eq!(moved("RUNNING"), Err("instances differ".into()));
        let up = applied_world(&f.desired, &empty_world());
        let mut staging = up.clone();
        staging.instances[0].resource.status = "STAGING".into();
        assert_eq!(unchanged(&up, &staging), Ok(()));
        let mut stopped = up.clone();
        stopped.instances[0].resource.status = "TERMINATED".into();
        assert_eq!(unchanged(&up, &stopped), Err("instances differ".into()));
    }
}
