//! `natgw apply [PLANFILE]` and `natgw destroy`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::context::{self, Loaded, Session};
use super::plan::make;
use super::{CliError, Global};
use crate::apply::{self, Options};
use crate::model::progress::{Event, Outcome};
use crate::output::Shell;
use crate::plan::{FORMAT_VERSION, Plan};
use crate::render;

#[derive(Debug, clap::Args)]
pub(crate) struct ApplyArgs {
    /// A plan saved by `natgw plan --out FILE`: applied exactly, without asking, if the project still
    /// matches what the plan saw.
    #[arg(value_name = "PLANFILE")]
    planfile: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    auto_approve: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DestroyArgs {
    /// Do not ask for confirmation.
    #[arg(long)]
    auto_approve: bool,
}

pub(crate) async fn run_apply(
    global: &Global,
    args: &ApplyArgs,
    shell: &Shell,
) -> Result<ExitCode, CliError> {
    let loaded = context::load(global)?;
    if let Some(path) = &args.planfile {
        let saved = read_plan(path, &loaded)?;
        let session = Session::open(global, &loaded, shell).await?;
        let result = apply_saved(&session, &loaded, saved, path, global, shell).await;
        session.finish().await?;
        return result;
    }
    require_approval_possible(args.auto_approve)?;
    let session = Session::open(global, &loaded, shell).await?;
    let result = plan_and_apply(&session, &loaded, false, args.auto_approve, global, shell).await;
    session.finish().await?;
    result
}

pub(crate) async fn run_destroy(
    global: &Global,
    args: &DestroyArgs,
    shell: &Shell,
) -> Result<ExitCode, CliError> {
    let loaded = context::load(global)?;
    require_approval_possible(args.auto_approve)?;
    let session = Session::open(global, &loaded, shell).await?;
    let result = plan_and_apply(&session, &loaded, true, args.auto_approve, global, shell).await;
    session.finish().await?;
    result
}

/// Without a terminal nobody can answer the question: refuse before contacting anything.
fn require_approval_possible(auto_approve: bool) -> Result<(), CliError> {
    if auto_approve || std::io::stdin().is_terminal() {
        Ok(())
    } else {
        Err(CliError::Message(
            "no terminal to ask for approval: pass --auto-approve, or apply a saved plan (natgw plan --out FILE, then natgw apply FILE)".into(),
        ))
    }
}

async fn plan_and_apply(
    session: &Session,
    loaded: &Loaded,
    destroy: bool,
    auto_approve: bool,
    global: &Global,
    shell: &Shell,
) -> Result<ExitCode, CliError> {
    // Taken before reading the project: the confirmation below may take minutes, and apply trusts the
    // observation's ownership markers only while it is fresh.
    let observed_at = Instant::now();
    let plan = make(session, loaded, destroy, shell).await?;
    if !shell.json {
        shell.out(&render::plan_text(&plan, shell.style));
    }
    if !plan.has_changes() {
        let outcome = Outcome {
            outputs: apply::kept_outputs(&plan.changes),
            ..Outcome::default()
        };
        summary(&plan, &outcome, shell);
        return Ok(ExitCode::SUCCESS);
    }
    if !auto_approve && !confirm(destroy, shell)? {
        shell.line(if destroy {
            "\nDestroy cancelled."
        } else {
            "\nApply cancelled."
        });
        return Ok(ExitCode::FAILURE);
    }
    execute(session, &plan, observed_at, global, shell).await
}

fn confirm(destroy: bool, shell: &Shell) -> Result<bool, CliError> {
    let question = if destroy {
        "\nDo you really want to destroy all resources of this stack?\n  natgw will destroy all the resources shown above.\n  Only 'yes' will be accepted to confirm.\n\n  Enter a value: "
    } else {
        "\nDo you want to perform these actions?\n  natgw will perform the actions described above.\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
    };
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(shell.style.bold(question).as_bytes());
    let _ = err.flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::Message(format!("cannot read the answer: {e}")))?;
    Ok(answer.trim() == "yes")
}

/// Reads a saved plan and checks it against this natgw and this config, before contacting anything.
fn read_plan(path: &Path, loaded: &Loaded) -> Result<Plan, CliError> {
    let bad = |why: String| CliError::Message(format!("{}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read the plan file: {e}")))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        bad(format!(
            "not a natgw plan file (line {}, column {}: {e}); make a new one with natgw plan --out",
            e.line(),
            e.column()
        ))
    })?;
    let version = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(FORMAT_VERSION)) {
        return Err(bad(format!(
            "format_version: this natgw reads plan format {FORMAT_VERSION}, the file has {}; make a new plan",
            version.map_or("none".to_string(), |v| v.to_string())
        )));
    }
    let plan: Plan = serde_json::from_value(value).map_err(|e| {
        bad(format!(
            "not a valid natgw plan ({e}); was it edited? Make a new one with natgw plan --out"
        ))
    })?;
    if plan.natgw_version != env!("CARGO_PKG_VERSION") {
        return Err(bad(format!(
            "natgw_version: made by natgw {}, this is natgw {}; make a new plan",
            plan.natgw_version,
            env!("CARGO_PKG_VERSION")
        )));
    }
    if plan.config_digest != loaded.digest {
        return Err(bad(format!(
            "config_digest: the plan was made from another config than {} (or the file changed since); make a new plan",
            loaded.config.path.display()
        )));
    }
    if plan.project != loaded.project || plan.stack != loaded.config.stack {
        return Err(bad(format!(
            "the plan is for project {} stack {}, the config says project {} stack {}",
            plan.project, plan.stack, loaded.project, loaded.config.stack
        )));
    }
    // The changes must be exactly what this config and the world the plan saw give: an edited plan is
    // refused here, before anything is contacted (an edited world is caught by the freshness check).
    let desired = if plan.destroy {
        &[][..]
    } else {
        &loaded.desired[..]
    };
    let context = crate::plan::Context {
        stack: &loaded.config.stack,
    };
    let implied = crate::plan::diff(&context, desired, &plan.world).map_err(|e| {
        bad(format!(
            "the plan does not hold together ({e}); make a new plan"
        ))
    })?;
    if implied != plan.changes {
        return Err(bad(
            "changes: the plan's changes are not what the config and the world the plan saw give; was it edited? Make a new one with natgw plan --out".into(),
        ));
    }
    Ok(plan)
}

async fn apply_saved(
    session: &Session,
    loaded: &Loaded,
    saved: Plan,
    path: &Path,
    global: &Global,
    shell: &Shell,
) -> Result<ExitCode, CliError> {
    let observed_at = Instant::now();
    let now = make(session, loaded, saved.destroy, shell).await?;
    let (then, current) = (saved.world.canonical(), now.world.canonical());
    if then != current {
        return Err(CliError::Message(format!(
            "{}: the project changed since this plan was made ({}); nothing was changed. Run natgw plan again.",
            path.display(),
            describe_drift(&then, &current)
        )));
    }
    if !saved.has_changes() {
        let outcome = Outcome {
            outputs: apply::kept_outputs(&saved.changes),
            ..Outcome::default()
        };
        summary(&saved, &outcome, shell);
        return Ok(ExitCode::SUCCESS);
    }
    execute(session, &saved, observed_at, global, shell).await
}

/// Names the resources that differ between two observations.
fn describe_drift(
    then: &crate::model::observed::Observation,
    now: &crate::model::observed::Observation,
) -> String {
    fn names<T: serde::Serialize>(list: &[crate::model::observed::Observed<T>]) -> Vec<String> {
        list.iter()
            .map(|o| serde_json::to_string(o).unwrap_or_default())
            .collect()
    }
    let mut differ = Vec::new();
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
    for (what, a, b) in pairs {
        if a != b {
            differ.push(what);
        }
    }
    if differ.is_empty() {
        "node pools it could not find differ".into()
    } else {
        format!("{} differ", differ.join(", "))
    }
}

async fn execute(
    session: &Session,
    plan: &Plan,
    observed_at: Instant,
    global: &Global,
    shell: &Shell,
) -> Result<ExitCode, CliError> {
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_signals(stop.clone(), *shell));
    let options = Options {
        concurrency: usize::from(global.parallelism),
        ready_timeout: Duration::from_secs(global.ready_timeout),
        ..Options::default()
    };
    let printer = *shell;
    let reporter: apply::Reporter = Arc::new(move |e| report(&printer, &e));
    let outcome = apply::apply(
        &session.cloud,
        plan,
        observed_at,
        &options,
        stop.clone(),
        reporter,
    )
    .await;
    watcher.abort();
    summary(plan, &outcome, shell);
    Ok(if outcome.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// First Ctrl-C (or SIGTERM, as a cancelled CI job sends): start nothing new, let changes in flight finish.
/// Second: exit at once.
///
/// The handlers are registered here, before the future is spawned, so that no signal sent once apply has
/// started a change can still kill natgw with the default action.
fn watch_signals(
    stop: Arc<AtomicBool>,
    shell: Shell,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        loop {
            #[cfg(unix)]
            {
                async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                    match s.as_mut() {
                        Some(s) => {
                            s.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                }
                tokio::select! {
                    () = recv(&mut int) => {}
                    () = recv(&mut term) => {}
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
            }
            if SEEN.fetch_add(1, Ordering::SeqCst) == 0 {
                stop.store(true, Ordering::SeqCst);
                shell.warn("interrupt received: starting no new changes and waiting for those in flight (interrupt again to quit at once)");
            } else {
                shell.error("second interrupt: quitting now; run natgw plan to see what is left");
                std::process::exit(130);
            }
        }
    }
}

fn report(shell: &Shell, e: &Event) {
    let secs = |d: &Duration| d.as_secs();
    match e {
        Event::Started { name, verb, .. } => {
            shell.line(&format!("{}: {}...", shell.style.bold(name), verb.ing()))
        }
        Event::Still {
            name,
            verb,
            elapsed,
            ..
        } => {
            shell.line(&format!(
                "{}: Still {}... [{}s elapsed]",
                shell.style.bold(name),
                verb.progressive(),
                secs(elapsed)
            ));
        }
        Event::Done {
            name,
            verb,
            elapsed,
            ..
        } => {
            shell.line(&format!(
                "{}: {} complete after {}s",
                shell.style.bold(name),
                verb.noun(),
                secs(elapsed)
            ));
        }
        Event::Failed { name, verb, .. } => {
            shell.line(&format!(
                "{}: {} failed",
                shell.style.bold(name),
                verb.noun()
            ));
        }
        Event::Skipped { address, reason } => shell.line(&format!("{address}: skipped: {reason}")),
    }
}

fn summary(plan: &Plan, o: &Outcome, shell: &Shell) {
    if shell.json {
        let failed: Vec<serde_json::Value> = o
            .failed
            .iter()
            .map(|(address, error)| serde_json::json!({"address": address, "error": error}))
            .collect();
        shell.out(&format!(
            "{}\n",
            serde_json::json!({
                "success": o.success(),
                "destroy": plan.destroy,
                "added": o.added,
                "changed": o.changed,
                "destroyed": o.destroyed,
                "failed": failed,
                "skipped": o.skipped,
                "not_started": o.not_started,
                "outputs": if plan.destroy { serde_json::json!({}) } else { serde_json::json!(o.outputs) },
            })
        ));
    }
    for (address, error) in &o.failed {
        shell.error(&format!("{address}: {error}"));
    }
    if o.success() {
        let line = if plan.destroy {
            format!("Destroy complete! Resources: {} destroyed.", o.destroyed)
        } else {
            format!(
                "Apply complete! Resources: {} added, {} changed, {} destroyed.",
                o.added, o.changed, o.destroyed
            )
        };
        shell.line(&format!(
            "\n{}",
            shell.style.green(&shell.style.bold(&line))
        ));
        if !plan.destroy {
            print_outputs(o, shell);
        }
        return;
    }
    let mut line = format!(
        "{} Resources: {} added, {} changed, {} destroyed; {} failed",
        if plan.destroy {
            "Destroy incomplete!"
        } else {
            "Apply incomplete!"
        },
        o.added,
        o.changed,
        o.destroyed,
        o.failed.len()
    );
    if !o.skipped.is_empty() {
        line.push_str(&format!(
            ", {} skipped because of a failure ({})",
            o.skipped.len(),
            o.skipped.join(", ")
        ));
    }
    if !o.not_started.is_empty() {
        line.push_str(&format!(
            ", {} not started because of the interrupt ({})",
            o.not_started.len(),
            o.not_started.join(", ")
        ));
    }
    line.push_str(". Run natgw plan to see what is left.");
    shell.line(&format!("\n{}", shell.style.red(&line)));
    if !plan.destroy {
        print_outputs(o, shell);
    }
}

/// The addresses to know after an apply, Terraform's way: the egress IP goes on the allow-list.
fn print_outputs(o: &Outcome, shell: &Shell) {
    let mut rows = Vec::new();
    for (gateway, out) in &o.outputs {
        let show = |ip: Option<std::net::Ipv4Addr>| {
            ip.map_or("(not known yet)".to_string(), |ip| format!("\"{ip}\""))
        };
        rows.push((format!("{gateway}.egress_ip"), show(out.egress_ip)));
        rows.push((format!("{gateway}.internal_ip"), show(out.internal_ip)));
    }
    if rows.is_empty() {
        return;
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut text = String::from("\nOutputs:\n");
    for (k, v) in rows {
        text.push_str(&format!("\n{k:width$} = {v}"));
    }
    shell.line(&text);
}
