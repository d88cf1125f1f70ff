//! `plan`: observe the project, diff it with the config, and save the plan for `apply PLANFILE`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::context::{self, Loaded};
use super::session::Session;
use super::{ConnectOptions, Frontend, Notice, OpsError, runtime};
use crate::plan::{self, Context, FORMAT_VERSION, Plan};

#[derive(Clone, Debug, Default)]
pub(crate) struct PlanOptions {
    pub(crate) config: PathBuf,
    pub(crate) connect: ConnectOptions,
    /// Plan the destruction of everything the stack owns.
    pub(crate) destroy: bool,
    /// Save the plan here.
    pub(crate) out: Option<PathBuf>,
    /// Write GitLab's Terraform report here.
    pub(crate) gitlab_report: Option<PathBuf>,
}

/// A plan made, shown (`Notice::Planned`) and saved where asked (`Notice::Saved`).
#[derive(Debug)]
pub(crate) struct Planned {
    pub(crate) has_changes: bool,
}

/// Makes the plan and tells the frontend; then saves it and the GitLab report, if asked.
pub(crate) fn plan(
    options: &PlanOptions,
    frontend: &Arc<dyn Frontend>,
) -> Result<Planned, OpsError> {
    let loaded = context::load(&options.config)?;
    for path in options.out.iter().chain(&options.gitlab_report) {
        check_output_path(path)?;
    }
    let plan = runtime(Some(2))?.block_on(async {
        let session = Session::open(&options.connect, &loaded, frontend).await?;
        let result = make(&session, &loaded, options.destroy, frontend.as_ref()).await;
        session.finish().await?;
        result
    })?;
    frontend.notify(Notice::Planned(&plan));
    if let Some(path) = &options.out {
        save(&plan, path)?;
        frontend.notify(Notice::Saved(path));
    }
    if let Some(path) = &options.gitlab_report {
        let s = plan.summary();
        let report = serde_json::json!({"create": s.add, "update": s.change, "delete": s.destroy});
        write_file(path, format!("{report}\n").as_bytes())?;
    }
    Ok(Planned {
        has_changes: plan.has_changes(),
    })
}

/// Observes the project and diffs it with the config (or with nothing, for a destroy).
pub(super) async fn make(
    session: &Session,
    loaded: &Loaded,
    destroy: bool,
    frontend: &dyn Frontend,
) -> Result<Plan, OpsError> {
    let started = Instant::now();
    let world = session
        .cloud
        .observe_names(&loaded.node_pools(), &loaded.names(), &loaded.hosts())
        .await?;
    frontend.notify(Notice::Debug(format!(
        "observed {} addresses, {} instances, {} firewall rules, {} routes, {} node pools in {} ms",
        world.addresses.len(),
        world.instances.len(),
        world.firewalls.len(),
        world.routes.len(),
        world.node_pools.len(),
        started.elapsed().as_millis()
    )));
    let changes = plan::diff(
        &Context {
            stack: &loaded.config.stack,
        },
        loaded.desired(destroy),
        &world,
    )
    .map_err(|e| match e {
        // Names the file: the fix is in it.
        plan::PlanError::Migration { .. } => {
            OpsError::Message(format!("{}: {e}", loaded.config.path.display()))
        }
        other => other.into(),
    })?;
    Ok(Plan {
        format_version: FORMAT_VERSION,
        natgw_version: env!("CARGO_PKG_VERSION").to_string(),
        project: loaded.project.clone(),
        stack: loaded.config.stack.clone(),
        config_digest: loaded.digest.clone(),
        destroy,
        changes,
        world,
    })
}

/// A file natgw will write must be writable where it is named: refused before contacting anything.
fn check_output_path(path: &Path) -> Result<(), OpsError> {
    if path.is_dir() {
        return Err(OpsError::Message(format!(
            "{}: is a directory; name a file to write",
            path.display()
        )));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(OpsError::Message(format!(
            "{}: the directory {} does not exist; create it or write elsewhere",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

fn save(plan: &Plan, path: &Path) -> Result<(), OpsError> {
    let json = serde_json::to_vec_pretty(plan)
        .map_err(|e| OpsError::Message(format!("cannot encode the plan: {e}")))?;
    write_file(path, &json)
}

/// Writes a file atomically (temporary file, then rename), so a killed run leaves no half-written plan.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), OpsError> {
    let tmp = path.with_extension("natgw-tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| OpsError::Message(format!("cannot write {}: {e}", path.display())))
}
