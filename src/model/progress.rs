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
    BackendHealthy,
    /// A rolling change waits for another zone's VM to be healthy before it replaces the last healthy one.
    AnotherBackendHealthy,
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
    /// A gateway in several zones has one only with one zone; `egress_ips` lists them all.
    pub(crate) egress_ip: Option<Ipv4Addr>,
    /// The routes' next hop: the VM's, or a gateway in several zones' load balancer's.
    pub(crate) internal_ip: Option<Ipv4Addr>,
    /// A gateway in several zones: every zone's egress IP, the list to allow-list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) egress_ips: Option<Vec<Ipv4Addr>>,
}

impl Outputs {
    /// A gateway in several zones: `egress_ip` only with one zone; `egress_ips` once every zone's IP is
    /// known, empty until then.
    pub(crate) fn zones(egress: &[Option<Ipv4Addr>], next_hop: Option<Ipv4Addr>) -> Outputs {
        Outputs {
            egress_ip: match egress {
                [only] => *only,
                _ => None,
            },
            internal_ip: next_hop,
            egress_ips: Some(
                egress
                    .iter()
                    .copied()
                    .collect::<Option<Vec<_>>>()
                    .unwrap_or_default(),
            ),
        }
    }
}

impl Outcome {
    pub(crate) fn success(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && self.not_started.is_empty()
    }
}
