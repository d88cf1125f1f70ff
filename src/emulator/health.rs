//! Simulated health: each VM's health endpoint, health-check probes on the emulator's clock, and the
//! bookkeeping of managed instance groups. Like boots and operations, health is derived from the clock when
//! asked, so nothing runs in the background and a test sees the same answer for the same moment.
//!
//! The endpoint of a VM answers from the end of its boot (`--boot-ms`) until `:fail` breaks it; with
//! `--boot-fail` it never answers. A health check probes every `checkIntervalSec`, counted from the start of
//! the boot. Google's definitions (compute.v1.json, `HealthCheck`): "A so-far unhealthy instance will be
//! marked healthy after this many consecutive successes" (`healthyThreshold`, default 2) and "A so-far
//! healthy instance will be marked unhealthy after this many consecutive failures" (`unhealthyThreshold`,
//! default 2); `checkIntervalSec` defaults to 5. A VM starts unhealthy: it has had no success yet.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::world::{Power, Timing};

/// What the emulator keeps beyond Google's resources for high availability.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct HaState {
    /// Instance path -> the moment `:fail` broke its health endpoint (until the VM is recreated).
    #[serde(default)]
    pub(crate) failing: BTreeMap<String, i64>,
    /// Managed instance group path -> its managed instances and per-instance configs.
    #[serde(default)]
    pub(crate) groups: BTreeMap<String, Group>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Group {
    /// Instance name -> what the group knows of it.
    pub(crate) instances: BTreeMap<String, Managed>,
    /// Instance name -> the per-instance config (`PerInstanceConfig` JSON).
    pub(crate) configs: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Managed {
    /// The template URL this VM was created from.
    pub(crate) template: String,
    /// `recreateInstances` or `applyUpdatesToInstances` asked for a new VM.
    #[serde(default)]
    pub(crate) pending_recreate: bool,
    /// IPs preserved by the stateful policy (interface name -> IP), taken from the first VM.
    #[serde(default)]
    pub(crate) policy_internal: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) policy_external: BTreeMap<String, String>,
    /// A failed creation: the group retries from this moment on.
    #[serde(default)]
    pub(crate) retry_ms: Option<i64>,
}

/// The probing parameters of a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Probe {
    pub(crate) interval_ms: i64,
    pub(crate) healthy_threshold: i64,
    pub(crate) unhealthy_threshold: i64,
}

impl Probe {
    /// From a `HealthCheck` resource, with the defaults of compute.v1.json.
    pub(crate) fn of(health_check: &Value) -> Probe {
        let int = |k: &str, default: i64| {
            health_check
                .get(k)
                .and_then(Value::as_i64)
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        Probe {
            interval_ms: int("checkIntervalSec", 5) * 1000,
            healthy_threshold: int("healthyThreshold", 2),
            unhealthy_threshold: int("unhealthyThreshold", 2),
        }
    }
}

/// When the VM's endpoint answers in its current boot: from `from` until `until` (exclusive), or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// The start of the boot: probes are counted from here.
    pub(crate) anchor: i64,
    pub(crate) window: Option<(i64, Option<i64>)>,
}

impl Endpoint {
    pub(crate) fn of(power: &Power, timing: Timing, failing_since: Option<i64>) -> Endpoint {
        let from = power.since + timing.boot_ms;
        let window = (power.running && !timing.boot_fail)
            .then_some((from, failing_since.map(|f| f.max(power.since))))
            .filter(|(from, until)| until.is_none_or(|u| u > *from));
        Endpoint {
            anchor: power.since,
            window,
        }
    }

    pub(crate) fn answers(&self, at: i64) -> bool {
        self.window
            .is_some_and(|(from, until)| at >= from && until.is_none_or(|u| at < u))
    }

    /// The moments the check marks the VM healthy and, after that, unhealthy again (each `None` if never).
    pub(crate) fn transitions(&self, probe: Probe) -> (Option<i64>, Option<i64>) {
        let Some((from, until)) = self.window else {
            return (None, None);
        };
        let i = probe.interval_ms.max(1);
        // The first probe at or after `t` (probes at anchor + k·i, k ≥ 1).
        let first_probe = |t: i64| {
            let k = ((t - self.anchor) + i - 1).div_euclid(i).max(1);
            self.anchor + k * i
        };
        let healthy = first_probe(from) + (probe.healthy_threshold - 1) * i;
        if until.is_some_and(|u| healthy >= u) {
            return (None, None);
        }
        let unhealthy = until.map(|u| first_probe(u) + (probe.unhealthy_threshold - 1) * i);
        (Some(healthy), unhealthy)
    }

    /// The check's verdict at `now`.
    pub(crate) fn healthy(&self, probe: Probe, now: i64) -> bool {
        match self.transitions(probe) {
            (Some(h), u) => h <= now && u.is_none_or(|u| now < u),
            (None, _) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn power(since: i64) -> Power {
        Power {
            running: true,
            since,
            first_boot: true,
            booted: false,
            ready: None,
            suspended: false,
            resumed: false,
        }
    }

    const TIMING: Timing = Timing {
        op_ms: 0,
        boot_ms: 2500,
        boot_fail: false,
    };

    const PROBE: Probe = Probe {
        interval_ms: 1000,
        healthy_threshold: 2,
        unhealthy_threshold: 3,
    };

    #[test]
    fn a_vm_turns_healthy_after_the_healthy_threshold_of_successes() {
        let e = Endpoint::of(&power(10_000), TIMING, None);
        // Boot ends at 12_500; probes at 13_000 and 14_000 succeed.
        assert_eq!(e.transitions(PROBE), (Some(14_000), None));
        assert!(!e.healthy(PROBE, 13_999));
        assert!(e.healthy(PROBE, 14_000));
    }

    #[test]
    fn a_failed_endpoint_turns_unhealthy_after_the_unhealthy_threshold_of_failures() {
        let e = Endpoint::of(&power(10_000), TIMING, Some(20_500));
        // Failing probes at 21_000, 22_000, 23_000: 2.5 s after the failure, within interval × threshold.
        assert_eq!(e.transitions(PROBE), (Some(14_000), Some(23_000)));
        assert!(e.healthy(PROBE, 22_999));
        assert!(!e.healthy(PROBE, 23_000));
    }

    #[test]
    fn a_vm_that_fails_before_it_is_healthy_never_is() {
        let e = Endpoint::of(&power(10_000), TIMING, Some(13_500));
        assert_eq!(e.transitions(PROBE), (None, None));
        let never = Endpoint::of(
            &power(10_000),
            Timing {
                boot_fail: true,
                ..TIMING
            },
            None,
        );
        assert!(!never.healthy(PROBE, 1_000_000));
        assert!(!never.answers(1_000_000));
    }

    #[test]
    fn defaults_follow_the_discovery_document() {
        let p = Probe::of(&serde_json::json!({}));
        assert_eq!(
            p,
            Probe {
                interval_ms: 5000,
                healthy_threshold: 2,
                unhealthy_threshold: 2
            }
        );
    }
}
