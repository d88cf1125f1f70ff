//! Organization policy constraints the emulated project enforces (`natgw emulator --org-policy CONSTRAINT`),
//! answered as Compute answers them: 412 `conditionNotMet` with "Constraint constraints/... violated for
//! ...", one `errors[]` entry per violated constraint.

use std::str::FromStr;

use serde_json::Value;

use super::api_error::ApiError;
use super::world::project_number;

/// A constraint the emulator knows how to enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Constraint {
    /// List constraint on the instances that may have an external IP.
    VmExternalIpAccess,
    /// List constraint on the instances that may forward IP packets.
    VmCanIpForward,
    /// Boolean: guest attributes can be neither written nor read.
    DisableGuestAttributesAccess,
    /// List constraint on load balancer types; the emulator serves no forwarding rules, so it has nothing to
    /// refuse yet (README, "Known differences").
    RestrictLoadBalancerCreationForTypes,
}

impl Constraint {
    pub(crate) const ALL: [(&'static str, Constraint); 4] = [
        (
            "constraints/compute.vmExternalIpAccess",
            Constraint::VmExternalIpAccess,
        ),
        (
            "constraints/compute.vmCanIpForward",
            Constraint::VmCanIpForward,
        ),
        (
            "constraints/compute.disableGuestAttributesAccess",
            Constraint::DisableGuestAttributesAccess,
        ),
        (
            "constraints/compute.restrictLoadBalancerCreationForTypes",
            Constraint::RestrictLoadBalancerCreationForTypes,
        ),
    ];
}

impl FromStr for Constraint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let full = if s.starts_with("constraints/") {
            s.to_string()
        } else {
            format!("constraints/{s}")
        };
        Constraint::ALL
            .iter()
            .find(|(n, _)| *n == full)
            .map(|(_, c)| *c)
            .ok_or_else(|| {
                let names: Vec<&str> = Constraint::ALL.iter().map(|(n, _)| *n).collect();
                format!(
                    "the emulator does not enforce {s:?}; it knows {}",
                    names.join(", ")
                )
            })
    }
}

fn refused(messages: Vec<String>) -> Result<(), ApiError> {
    let mut messages = messages.into_iter();
    match messages.next() {
        None => Ok(()),
        Some(first) => {
            Err(ApiError::new(412, "conditionNotMet", first).with_more_errors(messages.collect()))
        }
    }
}

/// `instances.insert` under the enforced constraints. The texts are Google's, as real answers show them:
/// vmExternalIpAccess "Constraint constraints/compute.vmExternalIpAccess violated for project 346696193484.
/// Add instance projects/.../instances/... to the constraint to use external IP with it." (synchronous 412
/// conditionNotMet: gardener/gardener-extension-provider-gcp#415, fortinet/fortigate-terraform-deploy#34);
/// vmCanIpForward "Constraint constraints/compute.vmCanIpForward violated for projects/.... Enabling IP
/// forwarding is not allowed for projects/.../instances/...." (hashicorp/terraform-provider-google#4989).
pub(crate) fn check_instance_insert(
    enforced: &[Constraint],
    project: &str,
    instance_path: &str,
    body: &Value,
) -> Result<(), ApiError> {
    let mut messages = Vec::new();
    let external_ip = body
        .get("networkInterfaces")
        .and_then(Value::as_array)
        .is_some_and(|nics| {
            nics.iter().any(|n| {
                n.get("accessConfigs")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty())
            })
        });
    if external_ip && enforced.contains(&Constraint::VmExternalIpAccess) {
        messages.push(format!(
            "Constraint constraints/compute.vmExternalIpAccess violated for project {}. Add instance {instance_path} to the constraint to use external IP with it.",
            project_number(project)
        ));
    }
    let forwards = body.get("canIpForward").and_then(Value::as_bool) == Some(true);
    if forwards && enforced.contains(&Constraint::VmCanIpForward) {
        messages.push(format!(
            "Constraint constraints/compute.vmCanIpForward violated for projects/{project}. Enabling IP forwarding is not allowed for {instance_path}."
        ));
    }
    refused(messages)
}

/// `forwardingRules.insert` under restrictLoadBalancerCreationForTypes, enforced as "no type allowed" (the
/// emulator's `--org-policy` takes no values). Google's text and synchronous 412 conditionNotMet, as GKE
/// shows it: "Constraint constraints/compute.restrictLoadBalancerCreationForTypes violated for
/// projects/P. Forwarding Rule projects/P/regions/R/forwardingRules/N of type EXTERNAL_NETWORK_TCP_UDP is
/// not allowed." (GoogleCloudPlatform/kubernetes-engine-samples#143, cloud-ops-sandbox#392). An internal
/// passthrough Network Load Balancer's type is INTERNAL_TCP_UDP
/// (<https://cloud.google.com/load-balancing/docs/org-policy-constraints#restrict-lb-types>).
pub(crate) fn check_forwarding_rule_insert(
    enforced: &[Constraint],
    project: &str,
    rule_path: &str,
    scheme: &str,
) -> Result<(), ApiError> {
    let mut messages = Vec::new();
    if enforced.contains(&Constraint::RestrictLoadBalancerCreationForTypes) {
        let kind = match scheme {
            "INTERNAL" => "INTERNAL_TCP_UDP",
            _ => "EXTERNAL_NETWORK_TCP_UDP",
        };
        messages.push(format!(
            "Constraint constraints/compute.restrictLoadBalancerCreationForTypes violated for projects/{project}. Forwarding Rule {rule_path} of type {kind} is not allowed."
        ));
    }
    refused(messages)
}

/// `instances.getGuestAttributes` with disableGuestAttributesAccess enforced: "HTTPError 412: Constraint
/// constraints/compute.disableGuestAttributesAccess violated for project 000000000000." (gcloud's output,
/// quoted verbatim in a public test suite; Google's guest attribute docs: the constraint disables guest
/// attributes for every VM of the project).
pub(crate) fn check_guest_attributes(
    enforced: &[Constraint],
    project: &str,
) -> Result<(), ApiError> {
    let mut messages = Vec::new();
    if enforced.contains(&Constraint::DisableGuestAttributesAccess) {
        messages.push(format!(
            "Constraint constraints/compute.disableGuestAttributesAccess violated for project {}.",
            project_number(project)
        ));
    }
    refused(messages)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_parse_with_or_without_the_prefix() {
        for (name, c) in Constraint::ALL {
            assert_eq!(name.parse::<Constraint>(), Ok(c));
            assert_eq!(name.trim_start_matches("constraints/").parse(), Ok(c));
        }
        assert!(
            "constraints/compute.requireOsLogin"
                .parse::<Constraint>()
                .is_err()
        );
    }

    #[test]
    fn a_load_balancer_is_refused_with_its_type() {
        let path = "projects/p/regions/r/forwardingRules/f";
        assert!(check_forwarding_rule_insert(&[], "p", path, "INTERNAL").is_ok());
        let e = check_forwarding_rule_insert(
            &[Constraint::RestrictLoadBalancerCreationForTypes],
            "p",
            path,
            "INTERNAL",
        )
        .expect_err("refused");
        assert_eq!((e.code, e.reason), (412, "conditionNotMet"));
        assert!(
            e.message.contains(&format!(
                "Forwarding Rule {path} of type INTERNAL_TCP_UDP is not allowed."
            )),
            "{}",
            e.message
        );
    }

    #[test]
    fn an_instance_violating_both_list_constraints_names_both() {
        let body = json!({"canIpForward": true, "networkInterfaces": [{"accessConfigs": [{"natIP": "34.1.2.3"}]}]});
        let path = "projects/p/zones/z/instances/i";
        assert!(check_instance_insert(&[], "p", path, &body).is_ok());
        let e = check_instance_insert(
            &[Constraint::VmExternalIpAccess, Constraint::VmCanIpForward],
            "p",
            path,
            &body,
        )
        .expect_err("refused");
        assert_eq!((e.code, e.reason), (412, "conditionNotMet"));
        let errors = e.body()["error"]["errors"].clone();
        assert_eq!(errors.as_array().map(Vec::len), Some(2), "{errors}");
        assert!(
            e.message
                .contains("Add instance projects/p/zones/z/instances/i")
        );
        let no_nat = json!({"networkInterfaces": [{}]});
        assert!(
            check_instance_insert(&[Constraint::VmExternalIpAccess], "p", path, &no_nat).is_ok()
        );
    }
}
