//! What apply and destroy say (pure): progress lines as Terraform prints them, the closing summary, the
//! outputs to allow-list, and the same in JSON.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::model::progress::{Event, Outcome, Wait};
use crate::output::Style;

/// One progress line (without its newline).
pub(crate) fn progress(e: &Event, style: Style) -> String {
    match e {
        Event::Started { name, verb, .. } => format!("{}: {}...", style.bold(name), verb.ing()),
        Event::Still {
            name,
            verb,
            elapsed,
            waiting,
            ..
        } => match waiting {
            None => format!(
                "{}: Still {}... [{}s elapsed]",
                style.bold(name),
                verb.progressive(),
                elapsed.as_secs()
            ),
            Some(w) => format!(
                "{}: Still {}... [{}s elapsed, {}]",
                style.bold(name),
                verb.progressive(),
                elapsed.as_secs(),
                waiting_for(*w)
            ),
        },
        Event::Done {
            name,
            verb,
            elapsed,
            ..
        } => format!(
            "{}: {} complete after {}s",
            style.bold(name),
            verb.noun(),
            elapsed.as_secs()
        ),
        Event::Failed { name, verb, .. } => {
            format!("{}: {} failed", style.bold(name), verb.noun())
        }
        Event::Skipped { address, reason } => format!("{address}: skipped: {reason}"),
    }
}

fn waiting_for(w: Wait) -> &'static str {
    match w {
        Wait::VmRunning => "waiting for the VM to be RUNNING",
        Wait::VmSettling => "waiting for the VM to finish stopping, suspending or its repair",
        Wait::StartupScriptReady => "waiting for the startup script to report ready",
        Wait::BackendHealthy => "waiting for the backend to become healthy",
    }
}

/// The confirmation question, shown after the plan.
pub(crate) fn question(destroy: bool) -> &'static str {
    if destroy {
        "\nDo you really want to destroy all resources of this stack?\n  natgw will destroy all the resources shown above.\n  Only 'yes' will be accepted to confirm.\n\n  Enter a value: "
    } else {
        "\nDo you want to perform these actions?\n  natgw will perform the actions described above.\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
    }
}

/// Whether an answer to `question` approves.
pub(crate) fn approves(answer: &str) -> bool {
    answer.trim() == "yes"
}

pub(crate) fn cancelled(destroy: bool) -> &'static str {
    if destroy {
        "\nDestroy cancelled."
    } else {
        "\nApply cancelled."
    }
}

pub(crate) const INTERRUPTED: &str = "interrupt received: starting no new changes and waiting for those in flight (interrupt again to quit at once)";
pub(crate) const QUITTING: &str =
    "second interrupt: quitting now; run natgw plan to see what is left";

/// Where a saved plan went, and how to apply it.
pub(crate) fn saved(path: &Path) -> String {
    format!(
        "\nSaved the plan to: {}\nTo perform exactly these actions, run: natgw apply {}",
        path.display(),
        path.display()
    )
}

/// Each failure as `address: error`, for the error lines.
pub(crate) fn failures(o: &Outcome) -> Vec<String> {
    o.failed
        .iter()
        .map(|(address, error)| format!("{address}: {error}"))
        .collect()
}

/// The closing lines: the summary, then (unless destroying) the outputs.
pub(crate) fn summary(destroy: bool, o: &Outcome, style: Style) -> String {
    let mut text = String::from("\n");
    if o.success() {
        let line = if destroy {
            format!("Destroy complete! Resources: {} destroyed.", o.destroyed)
        } else {
            format!(
                "Apply complete! Resources: {} added, {} changed, {} destroyed.",
                o.added, o.changed, o.destroyed
            )
        };
        text.push_str(&style.green(&style.bold(&line)));
    } else {
        text.push_str(&style.red(&incomplete(destroy, o)));
    }
    text.push('\n');
    if !destroy {
        text.push_str(&outputs(o));
    }
    text
}

fn incomplete(destroy: bool, o: &Outcome) -> String {
    let mut line = format!(
        "{} Resources: {} added, {} changed, {} destroyed; {} failed",
        if destroy {
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
        let _ = write!(
            line,
            ", {} skipped because of a failure ({})",
            o.skipped.len(),
            o.skipped.join(", ")
        );
    }
    if !o.not_started.is_empty() {
        let _ = write!(
            line,
            ", {} not started because of the interrupt ({})",
            o.not_started.len(),
            o.not_started.join(", ")
        );
    }
    line.push_str(". Run natgw plan to see what is left.");
    line
}

/// The addresses to know after an apply, Terraform's way: the egress IP goes on the allow-list.
fn outputs(o: &Outcome) -> String {
    if o.outputs.is_empty() {
        return String::new();
    }
    let rows = super::output::rows(&o.outputs, "(not known yet)");
    format!("\nOutputs:\n\n{rows}")
}

/// The outcome in JSON, for `--json`.
pub(crate) fn json(destroy: bool, o: &Outcome) -> Value {
    let failed: Vec<Value> = o
        .failed
        .iter()
        .map(|(address, error)| json!({"address": address, "error": error}))
        .collect();
    json!({
        "success": o.success(),
        "destroy": destroy,
        "added": o.added,
        "changed": o.changed,
        "destroyed": o.destroyed,
        "failed": failed,
        "skipped": o.skipped,
        "not_started": o.not_started,
        "outputs": if destroy { json!({}) } else { json!(o.outputs) },
    })
}
