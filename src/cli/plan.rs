//! `natgw plan`: what apply would change, and a saved plan for `natgw apply PLANFILE`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::context::{self, Loaded, Session};
use super::{CliError, Global};
use crate::output::Shell;
use crate::plan::{self, Context, FORMAT_VERSION, Plan};
use crate::render;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Save the plan to FILE, for `natgw apply FILE`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Exit 2 when the plan has changes (0: none, 1: error).
    #[arg(long)]
    detailed_exitcode: bool,
    /// Plan the destruction of everything the stack owns.
    #[arg(long)]
    destroy: bool,
    /// Write GitLab's Terraform report (`{"create": N, "update": N, "delete": N}`) to FILE.
    #[arg(long, value_name = "FILE")]
    gitlab_report: Option<PathBuf>,
}

pub(crate) async fn run(global: &Global, args: &Args, shell: &Shell) -> Result<ExitCode, CliError> {
    let loaded = context::load(global)?;
    for path in args.out.iter().chain(&args.gitlab_report) {
        check_output_path(path)?;
    }
    let session = Session::open(global, &loaded, shell).await?;
    let result = make(&session, &loaded, args.destroy, shell).await;
    session.finish().await?;
    let plan = result?;
    if shell.json {
        shell.out(&format!("{}\n", render::plan_json(&plan)));
    } else {
        shell.out(&render::plan_text(&plan, shell.style));
    }
    if let Some(path) = &args.out {
        save(&plan, path)?;
        if !shell.json {
            shell.line(&format!(
                "\nSaved the plan to: {}\nTo perform exactly these actions, run: natgw apply {}",
                path.display(),
                path.display()
            ));
        }
    }
    if let Some(path) = &args.gitlab_report {
        let s = plan.summary();
        let report = serde_json::json!({"create": s.add, "update": s.change, "delete": s.destroy});
        write_file(path, format!("{report}\n").as_bytes())?;
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Observes the project and diffs it with the config (or with nothing, for a destroy).
pub(crate) async fn make(
    session: &Session,
    loaded: &Loaded,
    destroy: bool,
    shell: &Shell,
) -> Result<Plan, CliError> {
    let started = std::time::Instant::now();
    let world = session.cloud.observe(&loaded.node_pools()).await?;
    shell.debug(&format!(
        "observed {} addresses, {} instances, {} firewall rules, {} routes, {} node pools in {} ms",
        world.addresses.len(),
        world.instances.len(),
        world.firewalls.len(),
        world.routes.len(),
        world.node_pools.len(),
        started.elapsed().as_millis()
    ));
    let desired = if destroy {
        &[][..]
    } else {
        &loaded.desired[..]
    };
    let changes = plan::diff(
        &Context {
            stack: &loaded.config.stack,
        },
        desired,
        &world,
    )?;
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
fn check_output_path(path: &Path) -> Result<(), CliError> {
    if path.is_dir() {
        return Err(CliError::Message(format!(
            "{}: is a directory; name a file to write",
            path.display()
        )));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(CliError::Message(format!(
            "{}: the directory {} does not exist; create it or write elsewhere",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

fn save(plan: &Plan, path: &Path) -> Result<(), CliError> {
    let json = serde_json::to_vec_pretty(plan)
        .map_err(|e| CliError::Message(format!("cannot encode the plan: {e}")))?;
    write_file(path, &json)
}

/// Writes a file atomically (temporary file, then rename), so a killed run leaves no half-written plan.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let tmp = path.with_extension("natgw-tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| CliError::Message(format!("cannot write {}: {e}", path.display())))
}
