//! What apply and destroy report as they go, and how they end: read by `render`, produced by `apply`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// What apply reports as it goes; the CLI turns these into lines.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Event {
    Started {
        address: String,
        name: String,
        verb: Verb,
    },
    Still {
        address: String,
        name: String,
        verb: Verb,
        elapsed: Duration,
        /// What the step waits for, once its API calls are done; `None` while they run.
        waiting: Option<Wait>,
    },
    Done {
        address: String,
        name: String,
        verb: Verb,
        elapsed: Duration,
    },
    Failed {
        address: String,
        name: String,
        verb: Verb,
        error: String,
    },
    Skipped {
        address: String,
        reason: String,
    },
}

/// What a long step waits on, for its progress line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// A new or restarted VM is not RUNNING yet.
    VmRunning,
    /// The VM is STOPPING, SUSPENDING or in repair: natgw starts or resumes it once that ends.
    VmSettling,
    /// The VM runs; its startup script has not reported ready.
    StartupScriptReady,
    /// An HA gateway's backend is not healthy yet (`regionBackendServices.getHealth`).
    #[allow(dead_code, reason = "the HA apply (issue 14) reports it")]
    BackendHealthy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    Create,
    Modify,
    Destroy,
}

impl Verb {
    pub(crate) fn ing(self) -> &'static str {
        match self {
            Verb::Create => "Creating",
            Verb::Modify => "Modifying",
            Verb::Destroy => "Destroying",
        }
    }

    pub(crate) fn progressive(self) -> &'static str {
        match self {
            Verb::Create => "creating",
            Verb::Modify => "modifying",
            Verb::Destroy => "destroying",
        }
    }

    pub(crate) fn noun(self) -> &'static str {
        match self {
            Verb::Create => "Creation",
            Verb::Modify => "Modifications",
            Verb::Destroy => "Destruction",
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) added: usize,
    pub(crate) changed: usize,
    pub(crate) destroyed: usize,
    /// (resource address, error)
    pub(crate) failed: Vec<(String, String)>,
    /// Not attempted because something they depend on failed.
    pub(crate) skipped: Vec<String>,
    /// Not started because the run was interrupted.
    pub(crate) not_started: Vec<String>,
    /// What to allow-list, per gateway the plan keeps or creates.
    pub(crate) outputs: BTreeMap<String, Outputs>,
}

/// A gateway's addresses once applied: the egress IP is the one to put on the allow-list.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Outputs {
    pub(crate) egress_ip: Option<Ipv4Addr>,
    pub(crate) internal_ip: Option<Ipv4Addr>,
}

impl Outcome {
    pub(crate) fn success(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && self.not_started.is_empty()
    }
}
