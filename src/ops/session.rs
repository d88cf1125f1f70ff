//! A connection to Google, or to the embedded emulator, for one run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::context::Loaded;
use super::{ConnectOptions, Frontend, Notice, OpsError, seed};
use crate::emulator::{Emulator, Options as EmulatorOptions};
use crate::gcp::{Cloud, Connection, GcpError, Notices, auth};

/// A connection, and the embedded emulator behind it when `--emulator` is used (kept alive until `finish`).
pub(super) struct Session {
    pub(super) cloud: Cloud,
    emulator: Option<Emulator>,
}

impl Session {
    pub(super) async fn open(
        options: &ConnectOptions,
        loaded: &Loaded,
        frontend: &Arc<dyn Frontend>,
    ) -> Result<Session, OpsError> {
        let debug = |text: String| frontend.notify(Notice::Debug(text));
        let (endpoint, credentials, emulator) = if let Some(state) = &options.emulator {
            let emulator = start_emulator(state, loaded).await?;
            debug(format!(
                "embedded emulator at {} (world in {})",
                emulator.url(),
                state.display()
            ));
            (Some(emulator.url()), auth::anonymous(), Some(emulator))
        } else if options.anonymous {
            (options.endpoint.clone(), auth::anonymous(), None)
        } else {
            let resolved = auth::resolve(options.impersonate_service_account.as_deref())
                .await
                .map_err(GcpError::from)?;
            debug(format!("credentials: {}", resolved.from));
            (options.endpoint.clone(), resolved.credentials, None)
        };
        if let Some(url) = &endpoint {
            debug(format!("API endpoint: {url}"));
        }
        let mut conn = Connection::new(endpoint, credentials);
        conn.retry.max_elapsed = options.retry_timeout;
        conn.retry.cluster_busy_timeout = options.cluster_busy_timeout;
        let waits = frontend.clone();
        conn.notices = Notices::new(move |n| waits.notify(Notice::Waiting(n.to_string())));
        let cloud = Cloud::connect(&loaded.project, &conn).await?;
        Ok(Session { cloud, emulator })
    }

    /// Stops the embedded emulator (saving its world).
    pub(super) async fn finish(self) -> Result<(), OpsError> {
        if let Some(e) = self.emulator {
            e.shutdown()
                .await
                .map_err(|e| OpsError::Message(format!("embedded emulator: {e}")))?;
        }
        Ok(())
    }
}

async fn start_emulator(state: &Path, loaded: &Loaded) -> Result<Emulator, OpsError> {
    if let Some(dir) = state.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| OpsError::Message(format!("cannot create {}: {e}", dir.display())))?;
    }
    let options = EmulatorOptions {
        state: Some(PathBuf::from(state)),
        ..EmulatorOptions::default()
    };
    let listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let emulator = Emulator::start(listen, options)
        .await
        .map_err(|e| OpsError::Message(format!("cannot start the embedded emulator: {e}")))?;
    emulator
        .seed(&seed::seed(&loaded.project, &loaded.config))
        .map_err(|e| OpsError::Message(format!("cannot seed the embedded emulator: {e}")))?;
    Ok(emulator)
}
