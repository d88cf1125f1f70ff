//! The terminal as the ops layer's frontend: notices become lines through `render` and the shell, and the
//! approval question is asked on the terminal.

use crate::ops::{Applied, Frontend, Notice, OpsError, lock};
use crate::output::Shell;
use crate::render;

/// What to show of a plan once it is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ShowPlan {
    /// `natgw plan`: the plan is the result, as text or JSON.
    Result,
    /// `natgw apply` and `destroy`: the plan as text before the question (JSON carries the outcome only).
    BeforeApproval,
}

pub(super) struct Terminal {
    pub(super) shell: Shell,
    pub(super) show_plan: ShowPlan,
}

impl Frontend for Terminal {
    fn notify(&self, notice: Notice<'_>) {
        let shell = &self.shell;
        match notice {
            Notice::Debug(text) => shell.debug(&text),
            Notice::Planned(plan) => match (self.show_plan, shell.json) {
                (ShowPlan::Result, true) => shell.out(&format!("{}\n", render::plan_json(plan))),
                (_, false) => shell.out(&render::plan_text(plan, shell.style)),
                (ShowPlan::BeforeApproval, true) => {}
            },
            Notice::Saved(path) => {
                if !shell.json {
                    shell.line(&render::apply::saved(path));
                }
            }
            Notice::Waiting(text) => shell.line(&text),
            Notice::Progress(event) => shell.line(&render::apply::progress(&event, shell.style)),
            Notice::Interrupted => shell.warn(render::apply::INTERRUPTED),
            Notice::Quitting => shell.error(render::apply::QUITTING),
            Notice::Listening(url) => shell.out(&format!("listening on {url}\n")),
            Notice::InterruptedBeforeChanges => shell.warn(render::lock::INTERRUPTED),
            Notice::Lock(n) => match n {
                lock::Notice::Waiting { who } => shell.line(&render::lock::waiting(&who)),
                lock::Notice::BrokeStale { who, why } => {
                    shell.warn(&render::lock::broke_stale(&who, &why));
                }
                lock::Notice::Disabled => shell.warn(render::lock::DISABLED),
                lock::Notice::Lost { id } => shell.warn(&render::lock::lost(&id)),
                lock::Notice::NotReleased { id, why } => {
                    shell.warn(&render::lock::not_released(&id, &why));
                }
            },
        }
    }

    fn approve(&self, destroy: bool) -> Result<bool, OpsError> {
        let answer = self
            .shell
            .ask(render::apply::question(destroy))
            .map_err(|e| OpsError::Message(format!("cannot read the answer: {e}")))?;
        Ok(render::apply::approves(&answer))
    }
}

/// How an apply or destroy ended: JSON on stdout when asked, each failure as an error, the summary and the
/// outputs. Whether it succeeded.
pub(super) fn report(applied: &Applied, shell: &Shell) -> bool {
    match applied {
        Applied::Cancelled { destroy } => {
            shell.line(render::apply::cancelled(*destroy));
            false
        }
        Applied::Finished { destroy, outcome } => {
            if shell.json {
                shell.out(&format!("{}\n", render::apply::json(*destroy, outcome)));
            }
            for failure in render::apply::failures(outcome) {
                shell.error(&failure);
            }
            shell.block(&render::apply::summary(*destroy, outcome, shell.style));
            outcome.success()
        }
    }
}
