//! What `validate` says (pure).

use std::path::Path;

use serde_json::{Value, json};

use crate::output::Style;

/// A config that checks out, in a line.
pub(crate) fn valid_text(
    path: &Path,
    project: &str,
    stack: &str,
    gateways: usize,
    style: Style,
) -> String {
    format!(
        "{} {} is valid: {gateways} gateway{} in project {project}, stack {stack}.",
        style.green("Success!"),
        path.display(),
        if gateways == 1 { "" } else { "s" },
    )
}

pub(crate) fn valid_json(project: &str, stack: &str, gateways: usize) -> Value {
    json!({"valid": true, "project": project, "stack": stack, "gateways": gateways})
}
