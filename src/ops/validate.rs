//! `validate`: the config checks out and every startup script renders; nothing is contacted.

use std::path::{Path, PathBuf};

use super::{OpsError, context};

/// A config that checks out.
#[derive(Debug)]
pub(crate) struct Validated {
    pub(crate) path: PathBuf,
    pub(crate) project: String,
    pub(crate) stack: String,
    pub(crate) gateways: usize,
}

pub(crate) fn validate(config: &Path) -> Result<Validated, OpsError> {
    let loaded = context::load(config)?;
    Ok(Validated {
        path: config.to_path_buf(),
        project: loaded.project,
        stack: loaded.config.stack,
        gateways: loaded.desired.len(),
    })
}
