//! What the commands do, behind them (cargo's `ops::*`): load the config, set up a session with Google or the
//! embedded emulator, observe, plan, apply. The `cli` parses flags into options, calls one function here and
//! hands the result to `render`; what a run says as it goes reaches the user through a [`Frontend`].

mod apply;
mod check;
mod context;
mod emulator;
pub(crate) mod lock;
mod output;
mod plan;
mod saved;
mod seed;
mod session;
mod startup_script;
mod validate;

use std::path::PathBuf;
use std::time::Duration;

pub(crate) use apply::{Applied, ApplyOptions, apply, destroy};
pub(crate) use check::{CheckOptions, check};
pub(crate) use emulator::{EmulatorOptions, emulator};
pub(crate) use lock::{ForceUnlockOptions, Unlocked, force_unlock_stack};
pub(crate) use output::{OutputOptions, output};
pub(crate) use plan::{PlanOptions, plan};
pub(crate) use startup_script::startup_script;
pub(crate) use validate::validate;

use crate::model::progress::Event;
use crate::plan::Plan;

/// What a command failed with; printed once, at the top.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpsError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Gcp(#[from] crate::gcp::GcpError),
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    #[error(transparent)]
    Script(#[from] crate::startup_script::ScriptError),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error("{0}")]
    Message(String),
}

/// Where natgw sends its calls, and as whom.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectOptions {
    /// Google's endpoints when `None`.
    pub(crate) endpoint: Option<String>,
    /// Send no credentials.
    pub(crate) anonymous: bool,
    /// Run the embedded emulator, its world kept in this file.
    pub(crate) emulator: Option<PathBuf>,
    pub(crate) impersonate_service_account: Option<String>,
    /// How long one failing call is retried.
    pub(crate) retry_timeout: Duration,
    /// How long a node-pool change waits for another GKE operation on its cluster.
    pub(crate) cluster_busy_timeout: Duration,
}

/// What a run says as it goes.
#[derive(Debug)]
pub(crate) enum Notice<'a> {
    /// For `-v` (never credentials).
    Debug(String),
    /// The plan is made: shown before anything else happens to it.
    Planned(&'a Plan),
    /// The plan is saved to this file.
    Saved(&'a std::path::Path),
    /// natgw waits on Google for something it names (a busy GKE cluster).
    Waiting(String),
    /// Apply's progress.
    Progress(Event),
    /// A first interrupt: nothing new starts, changes in flight finish.
    Interrupted,
    /// An interrupt before any change was made: the lock is given back and natgw exits.
    InterruptedBeforeChanges,
    /// A second interrupt: natgw exits at once.
    Quitting,
    /// The emulator is serving at this URL.
    Listening(String),
    /// About the stack lock.
    Lock(lock::Notice),
}

/// Whoever started the run: told what happens, asked for approval. Called from any task.
pub(crate) trait Frontend: Send + Sync {
    fn notify(&self, notice: Notice<'_>);
    /// Whether to go ahead with the plan last notified; `destroy` when it destroys the stack.
    fn approve(&self, destroy: bool) -> Result<bool, OpsError>;
}

/// An async runtime for one command (`workers`: all cores when `None`).
fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime, OpsError> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder
        .build()
        .map_err(|e| OpsError::Message(format!("cannot start the async runtime: {e}")))
}
