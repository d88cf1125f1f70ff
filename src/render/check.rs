//! `natgw check`'s findings, and their text and JSON (pure). One line per finding, in the order a person
//! debugs: does the project match the config, does the VM run and forward, do the routes win, does the
//! firewall admit the runners, do the nodes carry the tag, does Google's analysis take a node's packets to
//! the gateway.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use crate::output::Style;

/// What a finding is about, in debugging order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Check {
    /// Whether a plan would change anything.
    Drift,
    /// The gateway VM: running, reporting ready with the current token.
    Vm,
    /// An HA gateway's backends, as its load balancer sees them (`regionBackendServices.getHealth`).
    Backend,
    /// natgw's route is the one Google selects for the runners' nodes.
    Route,
    /// The firewall rule's sources cover the runners' addresses.
    Firewall,
    /// The node pool and its VMs carry the tag.
    Tag,
    /// A Connectivity Test from a node to a destination reaches the gateway.
    Path,
}

impl Check {
    fn word(self) -> &'static str {
        match self {
            Check::Drift => "drift",
            Check::Vm => "vm",
            Check::Backend => "backend",
            Check::Route => "route",
            Check::Firewall => "firewall",
            Check::Tag => "tag",
            Check::Path => "path",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    Pass,
    Problem,
    /// Google refused the read (an organization policy, a missing permission): natgw could not tell.
    Blocked,
}

/// One thing found about one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Finding {
    pub(crate) check: Check,
    pub(crate) outcome: Outcome,
    /// The resource it is about: `natgw-gitlab`, `node pool runners`.
    pub(crate) resource: String,
    pub(crate) message: String,
    /// What to do, when something is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fix: Option<String>,
}

impl Finding {
    pub(crate) fn pass(
        check: Check,
        resource: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            check,
            outcome: Outcome::Pass,
            resource: resource.into(),
            message: message.into(),
            fix: None,
        }
    }

    pub(crate) fn problem(
        check: Check,
        resource: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            check,
            outcome: Outcome::Problem,
            resource: resource.into(),
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    /// A read Google refused: `message` names the constraint or the permission.
    pub(crate) fn blocked(
        check: Check,
        resource: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            outcome: Outcome::Blocked,
            ..Finding::problem(check, resource, message, fix)
        }
    }
}

/// The findings of one gateway, in debugging order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct GatewayReport {
    pub(crate) gateway: String,
    pub(crate) findings: Vec<Finding>,
}

/// Everything `natgw check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Report {
    pub(crate) gateways: Vec<GatewayReport>,
}

impl Report {
    fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.gateways.iter().flat_map(|g| g.findings.iter())
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.findings().filter(|f| f.outcome == outcome).count()
    }

    /// Findings that are not a pass (problems, and reads Google refused): what makes check exit 2.
    pub(crate) fn problems(&self) -> usize {
        self.findings()
            .filter(|f| f.outcome != Outcome::Pass)
            .count()
    }

    pub(crate) fn passed(&self) -> usize {
        self.count(Outcome::Pass)
    }
}

/// One line per finding, then a summary line.
pub(crate) fn text(report: &Report, style: Style) -> String {
    let width = report
        .gateways
        .iter()
        .map(|g| g.gateway.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for g in &report.gateways {
        for f in &g.findings {
            let outcome = match f.outcome {
                Outcome::Pass => style.green("ok     "),
                Outcome::Problem => style.red("PROBLEM"),
                Outcome::Blocked => style.yellow("BLOCKED"),
            };
            let _ = write!(
                out,
                "{outcome} {:width$}  {:<8}  {}: {}",
                g.gateway,
                f.check.word(),
                f.resource,
                f.message
            );
            if let Some(fix) = &f.fix {
                let _ = write!(out, " Fix: {fix}");
            }
            out.push('\n');
        }
    }
    let (problems, blocked) = (
        report.count(Outcome::Problem),
        report.count(Outcome::Blocked),
    );
    let _ = write!(
        out,
        "\nCheck: {} passed, {problems} {}",
        report.passed(),
        if problems == 1 { "problem" } else { "problems" }
    );
    // A refused read is neither a pass nor a problem found: said apart, only when there is one.
    if blocked > 0 {
        let _ = write!(out, ", {blocked} blocked");
    }
    out.push_str(".\n");
    out
}

/// `--json`: the same findings, with the counts.
pub(crate) fn json(report: &Report) -> Value {
    json!({
        "gateways": report.gateways,
        "passed": report.passed(),
        "problems": report.count(Outcome::Problem),
        "blocked": report.count(Outcome::Blocked),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            gateways: vec![GatewayReport {
                gateway: "gitlab".into(),
                findings: vec![
                    Finding::pass(Check::Drift, "stack s", "no changes"),
                    Finding::problem(
                        Check::Route,
                        "natgw-gitlab-34-120-10-10-32",
                        "does not exist.",
                        "run natgw apply.",
                    ),
                    Finding::blocked(
                        Check::Vm,
                        "natgw-gitlab",
                        "Required 'compute.instances.get' permission.",
                        "grant it.",
                    ),
                ],
            }],
        }
    }

    #[test]
    fn one_line_per_finding_then_the_counts() {
        let text = text(&report(), Style { color: false });
        assert_eq!(
            text,
            "ok      gitlab  drift     stack s: no changes\n\
             PROBLEM gitlab  route     natgw-gitlab-34-120-10-10-32: does not exist. Fix: run natgw apply.\n\
             BLOCKED gitlab  vm        natgw-gitlab: Required 'compute.instances.get' permission. Fix: grant it.\n\
             \n\
             Check: 1 passed, 1 problem, 1 blocked.\n"
        );
    }

    #[test]
    fn json_has_the_same_findings() {
        let v = json(&report());
        assert_eq!(
            (v["problems"].clone(), v["blocked"].clone()),
            (json!(1), json!(1))
        );
        assert_eq!(v["gateways"][0]["findings"][1]["check"], "route");
        assert_eq!(v["gateways"][0]["findings"][1]["outcome"], "problem");
        assert_eq!(v["gateways"][0]["findings"][1]["fix"], "run natgw apply.");
        assert!(v["gateways"][0]["findings"][0].get("fix").is_none());
    }
}
