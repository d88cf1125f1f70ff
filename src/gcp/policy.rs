//! Organization policy refusals: Compute answers 412 `conditionNotMet` with "Constraint constraints/... violated
//! for ..." (once per violated constraint). natgw turns each into what to ask the organization's policy
//! administrator for, and why natgw needs it.

/// One violated constraint, with what Google said of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// `constraints/compute.vmExternalIpAccess`.
    pub(crate) constraint: String,
    pub(crate) message: String,
}

/// The constraints an error's messages say were violated, each once.
pub(crate) fn violations<'a>(messages: impl IntoIterator<Item = &'a str>) -> Vec<Violation> {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let Some(re) = RE
        .get_or_init(|| regex::Regex::new(r"Constraint (constraints/[A-Za-z0-9_.]+) violated").ok())
        .as_ref()
    else {
        return Vec::new();
    };
    let mut out: Vec<Violation> = Vec::new();
    for message in messages {
        for c in re.captures_iter(message) {
            let constraint = c[1].to_string();
            if !out.iter().any(|v| v.constraint == constraint) {
                out.push(Violation {
                    constraint,
                    message: message.to_string(),
                });
            }
        }
    }
    out
}

/// Why natgw needs an exception to `constraint`, and the exact one to ask for, for `resource`
/// (`projects/P/zones/Z/instances/N`). List constraints take the resource in `allowedValues`; boolean ones are
/// turned off for the project.
pub(crate) fn explain(v: &Violation, resource: Option<&str>) -> String {
    let resource = resource.unwrap_or("the resource");
    let project = resource
        .strip_prefix("projects/")
        .and_then(|r| r.split('/').next())
        .unwrap_or("PROJECT");
    let c = v.constraint.as_str();
    let allow = |value: &str| {
        format!(
            "ask your organization policy administrator to add {value} to the allowedValues of {c} for project {project} (gcloud resource-manager org-policies allow {c} {value} --project={project})"
        )
    };
    match c {
        "constraints/compute.vmExternalIpAccess" => format!(
            "the organization policy {c} forbids an external IP on {resource}; natgw's gateway VM sends the runners' traffic to the internet from its static external IP, so it needs one: {}",
            allow(resource)
        ),
        "constraints/compute.vmCanIpForward" => format!(
            "the organization policy {c} forbids IP forwarding on {resource}; natgw's gateway VM is the next hop of its routes and forwards the runners' packets, which needs IP forwarding: {}",
            allow(resource)
        ),
        "constraints/compute.disableGuestAttributesAccess" => format!(
            "the organization policy {c} blocks guest attributes, and the serial console could not be read either; natgw needs one of them to learn that the gateway VM verified its rules: ask your organization policy administrator not to enforce {c} on project {project} (gcloud resource-manager org-policies disable-enforce {c} --project={project}), or to allow reading the serial port output"
        ),
        "constraints/compute.restrictLoadBalancerCreationForTypes" => {
            let kind = load_balancer_type(&v.message).unwrap_or("the load balancer's type");
            format!(
                "the organization policy {c} forbids load balancers of type {kind}; natgw needs one for {resource}: {}",
                allow(kind)
            )
        }
        _ => format!(
            "the organization policy {c} forbids {resource} as natgw makes it: ask your organization policy administrator for an exception to {c} covering {resource} ({})",
            v.message
        ),
    }
}

/// `INTERNAL_TCP_UDP` in "Forwarding Rule ... of type INTERNAL_TCP_UDP is not allowed".
fn load_balancer_type(message: &str) -> Option<&str> {
    let rest = &message[message.find(" of type ")? + " of type ".len()..];
    rest.split_whitespace().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: &str = "projects/acme-ci/zones/europe-west1-b/instances/natgw-gitlab";

    #[test]
    fn every_violated_constraint_is_found_once() {
        let found = violations([
            "Constraint constraints/compute.vmExternalIpAccess violated for project 123. Add instance projects/acme-ci/zones/europe-west1-b/instances/natgw-gitlab to the constraint to use external IP with it.",
            "Constraint constraints/compute.vmCanIpForward violated for projects/acme-ci. Enabling IP forwarding is not allowed for projects/acme-ci/zones/europe-west1-b/instances/natgw-gitlab.",
            "Constraint constraints/compute.vmCanIpForward violated for projects/acme-ci.",
        ]);
        let names: Vec<&str> = found.iter().map(|v| v.constraint.as_str()).collect();
        assert_eq!(
            names,
            [
                "constraints/compute.vmExternalIpAccess",
                "constraints/compute.vmCanIpForward"
            ]
        );
        assert!(violations(["Required 'compute.instances.create' permission"]).is_empty());
    }

    #[test]
    fn list_constraints_ask_for_the_vm_in_allowed_values() {
        for c in [
            "constraints/compute.vmExternalIpAccess",
            "constraints/compute.vmCanIpForward",
        ] {
            let v = Violation {
                constraint: c.into(),
                message: String::new(),
            };
            let text = explain(&v, Some(VM));
            assert!(
                text.contains(&format!(
                    "add {VM} to the allowedValues of {c} for project acme-ci"
                )),
                "{text}"
            );
            assert!(
                text.contains(&format!("org-policies allow {c} {VM} --project=acme-ci")),
                "{text}"
            );
            assert!(text.contains("natgw"), "{text}");
        }
        let lb = Violation {
            constraint: "constraints/compute.restrictLoadBalancerCreationForTypes".into(),
            message: "Constraint constraints/compute.restrictLoadBalancerCreationForTypes violated for projects/acme-ci. Forwarding Rule projects/acme-ci/regions/r/forwardingRules/f of type INTERNAL_TCP_UDP is not allowed.".into(),
        };
        assert!(explain(&lb, Some(VM)).contains("add INTERNAL_TCP_UDP to the allowedValues"));
    }

    #[test]
    fn a_boolean_constraint_asks_for_it_not_to_be_enforced() {
        let v = Violation {
            constraint: "constraints/compute.disableGuestAttributesAccess".into(),
            message: String::new(),
        };
        let text = explain(&v, Some(VM));
        assert!(
            text.contains(
                "disable-enforce constraints/compute.disableGuestAttributesAccess --project=acme-ci"
            ),
            "{text}"
        );
    }
}
