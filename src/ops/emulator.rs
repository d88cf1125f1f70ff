//! `emulator`: serve the local Compute Engine + GKE API emulator until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{Frontend, Notice, OpsError, runtime};
use crate::emulator::{Emulator, Options, Seed};

#[derive(Debug)]
pub(crate) struct EmulatorOptions {
    pub(crate) listen: SocketAddr,
    pub(crate) options: Options,
    /// Create this project's demo world at start.
    pub(crate) seed_project: Option<String>,
    /// Create the world this JSON file describes at start.
    pub(crate) seed_file: Option<PathBuf>,
}

/// Serves until interrupted, then saves the world (if it has a state file).
pub(crate) fn emulator(options: EmulatorOptions, frontend: &dyn Frontend) -> Result<(), OpsError> {
    let runtime = runtime(None)?;
    let mut seeds = Vec::new();
    if let Some(project) = &options.seed_project {
        seeds.push(Seed::demo(project));
    }
    if let Some(path) = &options.seed_file {
        seeds.push(read_seed(path).map_err(OpsError::Message)?);
    }
    let message = |e: crate::emulator::EmulatorError| OpsError::Message(e.to_string());
    runtime.block_on(async move {
        let emulator = Emulator::start(options.listen, options.options)
            .await
            .map_err(message)?;
        for seed in &seeds {
            emulator.seed(seed).map_err(message)?;
        }
        frontend.notify(Notice::Listening(emulator.url()));
        wait_for_signal().await;
        emulator.shutdown().await.map_err(message)
    })
}

fn read_seed(path: &Path) -> Result<Seed, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the seed file {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "the seed file {} is not a valid seed ({e}); see `natgw emulator --help`",
            path.display()
        )
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
