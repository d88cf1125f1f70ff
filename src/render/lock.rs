//! What natgw says about the stack lock (pure).

pub(crate) fn waiting(who: &str) -> String {
    format!("the stack is locked by {who}: waiting for the lock (--lock-timeout)")
}

pub(crate) fn broke_stale(who: &str, why: &str) -> String {
    format!("broke a stale stack lock ({why}); it was held by {who}")
}

pub(crate) const DISABLED: &str = "--lock=false: this run takes no stack lock; another apply or destroy of this stack may run at the same time and interleave its changes with this one's";

pub(crate) const INTERRUPTED: &str =
    "interrupt received before any change: the stack lock is given back; nothing was changed";

pub(crate) fn lost(id: &str) -> String {
    format!(
        "the stack lock {id} was no longer this run's when it ended (force-unlocked, or broken as stale by another run): check with natgw plan"
    )
}

pub(crate) fn not_released(id: &str, why: &str) -> String {
    format!(
        "the stack lock could not be released ({why}); it goes stale in 2 minutes, or run: natgw force-unlock {id}"
    )
}

/// The question `force-unlock` asks on a terminal.
pub(crate) fn question(who: &str, id: &str) -> String {
    format!(
        "The stack lock {id} is held by {who}.\nRemoving it while that run still changes the stack lets two runs interleave their changes.\nDo you really want to force-unlock? Only 'yes' will be accepted: "
    )
}

pub(crate) fn unlocked(who: &str, id: &str) -> String {
    format!("The stack lock {id} ({who}) is removed.")
}

pub(crate) const NOT_UNLOCKED: &str = "Force-unlock cancelled; the lock is kept.";
