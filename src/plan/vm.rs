//! What brings a gateway VM back to running its current startup script, by the status natgw found it in
//! (pure). The statuses and their meaning are compute.v1.json's `Instance.status` enum and its
//! `enumDescriptions`, and Google's "Instance life cycle" page
//! (https://cloud.google.com/compute/docs/instances/instance-life-cycle).

use serde::{Deserialize, Serialize};

/// One thing apply does to the VM's power, in the order of `Change::vm_actions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum VmAction {
    /// TERMINATED ("The instance has stopped (either by explicit action or underlying failure)") or
    /// STOPPED: `instances.start`, a fresh boot that runs the startup script.
    Start,
    /// SUSPENDED: `instances.resume` ("Resumes an instance that was suspended using the instances().suspend
    /// method"); a suspended VM cannot be started. The guest goes on where it was: no startup script runs.
    Resume,
    /// STOPPING ("currently stopping (either being deleted or killed)"), PENDING_STOP ("gracefully shutting
    /// down") or DEPROVISIONING ("halted and we are performing tear down tasks"): each ends in TERMINATED,
    /// and `instances.start` "Starts an instance that was stopped", so wait for the stop to end, then start.
    WaitThenStart,
    /// SUSPENDING: ends in SUSPENDED; wait, then resume.
    WaitThenResume,
    /// REPAIRING ("The instance is in repair"): Compute Engine repairs it after an internal error or a host
    /// failure, and it is unusable meanwhile; once repaired it returns to the state it was in (life-cycle
    /// page). Nothing natgw sends helps, so it waits, and does nothing more if the VM came back running.
    WaitForRepair,
    /// A status this natgw does not know: wait for it to end, then start or resume as it then needs.
    WaitToSettle,
    /// `instances.reset`: the VM runs an older startup script than its metadata holds (a new script, or a
    /// restart an interrupted apply left pending), and nothing above boots it afresh.
    Restart,
}

impl VmAction {
    /// What brings a VM in `status` back to running; `None`: it runs, or is coming up on its own.
    pub(crate) fn for_status(status: &str) -> Option<VmAction> {
        match status {
            s if crate::model::is_up(s) => None,
            "TERMINATED" | "STOPPED" => Some(VmAction::Start),
            "SUSPENDED" => Some(VmAction::Resume),
            "STOPPING" | "PENDING_STOP" | "DEPROVISIONING" => Some(VmAction::WaitThenStart),
            "SUSPENDING" => Some(VmAction::WaitThenResume),
            "REPAIRING" => Some(VmAction::WaitForRepair),
            _ => Some(VmAction::WaitToSettle),
        }
    }

    /// Whether apply boots the VM afresh with this action, so that its startup script runs anyway.
    pub(crate) fn boots(self) -> bool {
        matches!(self, VmAction::Start | VmAction::WaitThenStart)
    }

    /// How plans name the action after the status change, e.g. `resume`.
    pub(crate) fn describe(self, status: &str) -> String {
        match self {
            VmAction::Start => "start".into(),
            VmAction::Resume => "resume".into(),
            VmAction::WaitThenStart => format!("wait for {status} to finish, then start"),
            VmAction::WaitThenResume => format!("wait for {status} to finish, then resume"),
            VmAction::WaitForRepair => "wait for Google's repair".into(),
            VmAction::WaitToSettle => format!("wait for {status} to end, then start or resume"),
            VmAction::Restart => "restart".into(),
        }
    }
}

/// Where a VM's status is heading, once it settles: what apply does when it stops waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Running or coming up: nothing to do but wait for it to report ready.
    Up,
    Stopped,
    Suspended,
    /// Still moving (STOPPING, SUSPENDING, REPAIRING, ...): keep waiting.
    Moving,
}

impl Settled {
    pub(crate) fn of(status: &str) -> Settled {
        match VmAction::for_status(status) {
            None => Settled::Up,
            Some(VmAction::Start) => Settled::Stopped,
            Some(VmAction::Resume) => Settled::Suspended,
            Some(_) => Settled::Moving,
        }
    }
}

/// The power actions of a VM change: what its observed status needs, then a restart if its startup script
/// must run again (`restart`) and that action does not boot it afresh.
pub(crate) fn actions(status: &str, restart: bool) -> Vec<VmAction> {
    let mut out: Vec<VmAction> = VmAction::for_status(status).into_iter().collect();
    if restart && !out.iter().any(|a| a.boots()) {
        out.push(VmAction::Restart);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_of_the_discovery_document_has_its_action() {
        // compute.v1.json, `Instance.status.enum`.
        let expected = [
            ("DEPROVISIONING", Some(VmAction::WaitThenStart)),
            ("PENDING", None),
            ("PENDING_STOP", Some(VmAction::WaitThenStart)),
            ("PROVISIONING", None),
            ("REPAIRING", Some(VmAction::WaitForRepair)),
            ("RUNNING", None),
            ("STAGING", None),
            ("STOPPED", Some(VmAction::Start)),
            ("STOPPING", Some(VmAction::WaitThenStart)),
            ("SUSPENDED", Some(VmAction::Resume)),
            ("SUSPENDING", Some(VmAction::WaitThenResume)),
            ("TERMINATED", Some(VmAction::Start)),
            ("UNKNOWN", Some(VmAction::WaitToSettle)),
        ];
        for (status, action) in expected {
            assert_eq!(VmAction::for_status(status), action, "{status}");
        }
    }

    #[test]
    fn a_restart_is_added_only_where_nothing_boots_the_vm() {
        assert_eq!(actions("RUNNING", false), []);
        assert_eq!(actions("RUNNING", true), [VmAction::Restart]);
        assert_eq!(actions("TERMINATED", true), [VmAction::Start]);
        assert_eq!(actions("STOPPING", true), [VmAction::WaitThenStart]);
        assert_eq!(
            actions("SUSPENDED", true),
            [VmAction::Resume, VmAction::Restart]
        );
        assert_eq!(
            actions("REPAIRING", true),
            [VmAction::WaitForRepair, VmAction::Restart]
        );
        assert_eq!(
            VmAction::WaitThenStart.describe("STOPPING"),
            "wait for STOPPING to finish, then start"
        );
    }
}
