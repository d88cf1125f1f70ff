//! `apply` (from the config, or a saved plan) and `destroy`: plan, approve, walk the plan with progress.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::context::{self, Loaded};
use super::lock::{self, Held};
use super::plan::make;
use super::saved::{self, Expected};
use super::session::Session;
use super::{ConnectOptions, Frontend, Notice, OpsError, runtime};
use crate::apply::{self, Options};
use crate::model::progress::Outcome;
use crate::plan::Plan;

#[derive(Clone, Debug, Default)]
pub(crate) struct ApplyOptions {
    pub(crate) config: PathBuf,
    pub(crate) connect: ConnectOptions,
    /// A plan saved by `natgw plan --out`: applied exactly, without asking, if the project still matches
    /// what it saw. Not for destroy.
    pub(crate) planfile: Option<PathBuf>,
    /// Go ahead without asking.
    pub(crate) auto_approve: bool,
    /// Whether the frontend can ask at all (a terminal); without it and without `auto_approve`, natgw
    /// refuses before contacting anything.
    pub(crate) can_ask: bool,
    /// Changes in flight at once.
    pub(crate) parallelism: usize,
    /// How long a new or restarted gateway VM may take to report ready.
    pub(crate) ready_timeout: Duration,
    /// `--lock`, `--lock-timeout`.
    pub(crate) lock: lock::Options,
}

/// How an apply or a destroy ended.
#[derive(Debug)]
pub(crate) enum Applied {
    /// The user did not approve; nothing was changed.
    Cancelled { destroy: bool },
    /// Walked to the end (or to an interrupt): what was done, what failed, what to allow-list.
    Finished { destroy: bool, outcome: Outcome },
}

/// Makes the project match the config, or applies the saved plan.
pub(crate) fn apply(
    options: &ApplyOptions,
    frontend: &Arc<dyn Frontend>,
) -> Result<Applied, OpsError> {
    let loaded = context::load(&options.config)?;
    let Some(path) = &options.planfile else {
        return plan_and_apply(options, &loaded, false, frontend);
    };
    let saved = read_plan(path, &loaded)?;
    runtime(Some(2))?.block_on(async {
        let session = Session::open(&options.connect, &loaded, frontend).await?;
        // Taken before re-observing: the check that the project still matches the plan must not read a
        // world another run is changing.
        let result = match take_lock(&session, &loaded, "apply PLANFILE", options, frontend).await {
            Ok(held) => {
                let result = apply_saved(&session, &loaded, saved, path, options, frontend).await;
                release(held, frontend).await;
                result
            }
            Err(e) => Err(e),
        };
        session.finish().await?;
        result
    })
}

/// Removes everything the stack owns.
pub(crate) fn destroy(
    options: &ApplyOptions,
    frontend: &Arc<dyn Frontend>,
) -> Result<Applied, OpsError> {
    let loaded = context::load(&options.config)?;
    plan_and_apply(options, &loaded, true, frontend)
}

fn plan_and_apply(
    options: &ApplyOptions,
    loaded: &Loaded,
    destroy: bool,
    frontend: &Arc<dyn Frontend>,
) -> Result<Applied, OpsError> {
    // Without a terminal nobody can answer the question: refuse before contacting anything.
    if !options.auto_approve && !options.can_ask {
        return Err(OpsError::Message(
            "no terminal to ask for approval: pass --auto-approve, or apply a saved plan (natgw plan --out FILE, then natgw apply FILE)".into(),
        ));
    }
    let command = if destroy { "destroy" } else { "apply" };
    runtime(Some(2))?.block_on(async {
        let session = Session::open(&options.connect, loaded, frontend).await?;
        let result = match take_lock(&session, loaded, command, options, frontend).await {
            Ok(held) => {
                let result = plan_approve_apply(&session, loaded, destroy, options, frontend).await;
                release(held, frontend).await;
                result
            }
            Err(e) => Err(e),
        };
        session.finish().await?;
        result
    })
}

/// Takes the stack lock (unless `--lock=false`), in the project the stack writes to, on the network of its
/// first gateway by name. Until the walk starts, an interrupt gives the lock back and quits; from then on
/// the walk's own handler stops it, and the lock is released once changes in flight are done.
async fn take_lock(
    session: &Session,
    loaded: &Loaded,
    command: &str,
    options: &ApplyOptions,
    frontend: &Arc<dyn Frontend>,
) -> Result<Option<(Held, tokio::task::JoinHandle<()>)>, OpsError> {
    if !options.lock.enabled {
        frontend.notify(Notice::Lock(lock::Notice::Disabled));
        return Ok(None);
    }
    let Some((cloud, network)) = lock::place(&session.cloud, loaded) else {
        return Ok(None);
    };
    let me = context::identity(command);
    let tell = frontend.clone();
    let held = lock::acquire(
        &cloud,
        &loaded.config.stack,
        &network,
        &me,
        &options.lock,
        &move |n| tell.notify(Notice::Lock(n)),
    )
    .await?;
    let guard = tokio::spawn(release_on_signal(held.releaser(), frontend.clone()));
    Ok(Some((held, guard)))
}

/// Gives the lock back; a failure is a warning (the lock goes stale, or is force-unlocked), not the run's.
async fn release(held: Option<(Held, tokio::task::JoinHandle<()>)>, frontend: &Arc<dyn Frontend>) {
    let Some((held, guard)) = held else { return };
    guard.abort();
    let id = held.id();
    match held.release().await {
        Ok(true) => {}
        Ok(false) => frontend.notify(Notice::Lock(lock::Notice::Lost { id })),
        Err(e) => frontend.notify(Notice::Lock(lock::Notice::NotReleased {
            id,
            why: e.to_string(),
        })),
    }
}

/// Before the walk starts nothing is in flight: an interrupt releases the lock and quits.
fn release_on_signal(
    release: impl std::future::Future<Output = ()> + Send + 'static,
    frontend: Arc<dyn Frontend>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut signals = Signals::new();
    async move {
        loop {
            signals.next().await;
            // Claimed atomically, so that the walk cannot start while the lock is being given back.
            if PHASE
                .compare_exchange(PLANNING, QUITTING, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                break;
            }
        }
        frontend.notify(Notice::InterruptedBeforeChanges);
        release.await;
        std::process::exit(130);
    }
}

/// Where the run is, for the two signal handlers: planning (an interrupt quits), walking (an interrupt is
/// the walk's to handle) or quitting (an interrupt came first: the walk must not start).
static PHASE: AtomicU8 = AtomicU8::new(PLANNING);
const PLANNING: u8 = 0;
const WALKING: u8 = 1;
const QUITTING: u8 = 2;

/// Moves the run from planning to walking; `false` when an interrupt already claimed it.
fn start_walking() -> bool {
    PHASE
        .compare_exchange(PLANNING, WALKING, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
        || PHASE.load(Ordering::SeqCst) == WALKING
}

/// SIGINT and SIGTERM (Ctrl-C elsewhere), registered when made, so that none sent after that can still kill
/// natgw with the default action.
struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                int: signal(SignalKind::interrupt()).ok(),
                term: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) {
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
                () = recv(&mut self.int) => {}
                () = recv(&mut self.term) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn plan_approve_apply(
    session: &Session,
    loaded: &Loaded,
    destroy: bool,
    options: &ApplyOptions,
    frontend: &Arc<dyn Frontend>,
) -> Result<Applied, OpsError> {
    // Taken before reading the project: the confirmation below may take minutes, and apply trusts the
    // observation's ownership markers only while it is fresh.
    let observed_at = Instant::now();
    let plan = make(session, loaded, destroy, frontend.as_ref()).await?;
    frontend.notify(Notice::Planned(&plan));
    if plan.has_changes() && !options.auto_approve && !frontend.approve(destroy)? {
        return Ok(Applied::Cancelled { destroy });
    }
    Ok(execute(session, &plan, observed_at, options, frontend).await)
}

/// Reads a saved plan and checks it against this natgw and this config, before contacting anything.
fn read_plan(path: &Path, loaded: &Loaded) -> Result<Plan, OpsError> {
    let bad = |why: String| OpsError::Message(format!("{}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read the plan file: {e}")))?;
    saved::verify(
        &bytes,
        &Expected {
            natgw_version: env!("CARGO_PKG_VERSION"),
            config_path: &loaded.config.path,
            config_digest: &loaded.digest,
            project: &loaded.project,
            stack: &loaded.config.stack,
            desired: &loaded.desired,
        },
    )
    .map_err(bad)
}

async fn apply_saved(
    session: &Session,
    loaded: &Loaded,
    saved: Plan,
    path: &Path,
    options: &ApplyOptions,
    frontend: &Arc<dyn Frontend>,
) -> Result<Applied, OpsError> {
    let observed_at = Instant::now();
    let now = make(session, loaded, saved.destroy, frontend.as_ref()).await?;
    saved::unchanged(&saved.world, &now.world).map_err(|why| {
        OpsError::Message(format!(
            "{}: the project changed since this plan was made ({why}); nothing was changed. Run natgw plan again.",
            path.display()
        ))
    })?;
    Ok(execute(session, &saved, observed_at, options, frontend).await)
}

/// Walks the plan's changes (none: the outputs of what it keeps), reporting progress, until done or
/// interrupted.
async fn execute(
    session: &Session,
    plan: &Plan,
    observed_at: Instant,
    options: &ApplyOptions,
    frontend: &Arc<dyn Frontend>,
) -> Applied {
    let destroy = plan.destroy;
    if !plan.has_changes() {
        let outcome = Outcome {
            outputs: apply::kept_outputs(&plan.changes),
            ..Outcome::default()
        };
        return Applied::Finished { destroy, outcome };
    }
    let stop = Arc::new(AtomicBool::new(false));
    let signals = Signals::new();
    if !start_walking() {
        // An interrupt came first: its handler is giving the lock back and ends the process.
        std::future::pending::<()>().await;
    }
    let watcher = tokio::spawn(watch_signals(signals, stop.clone(), frontend.clone()));
    let walk = Options {
        concurrency: options.parallelism,
        ready_timeout: options.ready_timeout,
        ..Options::default()
    };
    let progress = frontend.clone();
    let reporter: apply::Reporter = Arc::new(move |e| progress.notify(Notice::Progress(e)));
    let outcome = apply::apply(
        &session.cloud,
        plan,
        observed_at,
        &walk,
        stop.clone(),
        reporter,
    )
    .await;
    watcher.abort();
    Applied::Finished { destroy, outcome }
}

/// First Ctrl-C (or SIGTERM, as a cancelled CI job sends): start nothing new, let changes in flight finish.
/// Second: exit at once.
///
/// `signals` were registered before the walk could start, so that no signal sent once apply has started a
/// change can still kill natgw with the default action.
fn watch_signals(
    mut signals: Signals,
    stop: Arc<AtomicBool>,
    frontend: Arc<dyn Frontend>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    async move {
        loop {
            signals.next().await;
            if SEEN.fetch_add(1, Ordering::SeqCst) == 0 {
                stop.store(true, Ordering::SeqCst);
                frontend.notify(Notice::Interrupted);
            } else {
                frontend.notify(Notice::Quitting);
                std::process::exit(130);
            }
        }
    }
}
