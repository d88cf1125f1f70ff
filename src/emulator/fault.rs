//! Injected faults (`--fault-rate`, `--fault-kinds`): the answers Google gives under load, each with the body
//! Google sends for it.

use std::str::FromStr;

use serde_json::{Value, json};

use super::api_error::ApiError;
use super::world::project_number;

/// One kind of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// 429 `rateLimitExceeded`.
    RateLimit,
    /// 503 `backendError`.
    BackendError,
    /// Compute's 403 `rateLimitExceeded` for a per-minute quota.
    QuotaPerMinute,
    /// Compute's 403 `CONCURRENT_OPERATIONS_QUOTA_EXCEEDED` on a change.
    ConcurrentOperations,
    /// Compute's 400 `resourceNotReady` on a change that names a network or subnetwork.
    ResourceNotReady,
    /// GKE's 400 `FAILED_PRECONDITION` on a node-pool update: another operation runs on the cluster.
    ClusterBusy,
}

impl FaultKind {
    pub(crate) const ALL: [(&'static str, FaultKind); 6] = [
        ("rate-limit", FaultKind::RateLimit),
        ("backend-error", FaultKind::BackendError),
        ("quota-per-minute", FaultKind::QuotaPerMinute),
        ("concurrent-operations", FaultKind::ConcurrentOperations),
        ("resource-not-ready", FaultKind::ResourceNotReady),
        ("cluster-busy", FaultKind::ClusterBusy),
    ];

    /// `--fault-kinds`' default.
    pub(crate) const DEFAULT: [FaultKind; 2] = [FaultKind::RateLimit, FaultKind::BackendError];

    /// The error this kind answers `request` with, or `None` when the kind does not apply to it (Compute's
    /// quotas are not GKE's; only changes count against the concurrent-operations quota; only a change that
    /// names a network can find it not ready; only a node-pool update can find its cluster busy).
    pub(crate) fn answer(self, request: &Request<'_>) -> Option<ApiError> {
        let compute = request.segments.first() == Some(&"compute");
        let change = request.method != "GET" && request.segments.last() != Some(&"wait");
        match self {
            FaultKind::RateLimit => Some(ApiError::rate_limited()),
            FaultKind::BackendError => Some(ApiError::backend_error()),
            FaultKind::QuotaPerMinute => compute.then(|| quota_per_minute(request.project())),
            FaultKind::ConcurrentOperations => {
                (compute && change).then(|| concurrent_operations(request.project()))
            }
            FaultKind::ResourceNotReady => (compute && change)
                .then(|| network_named(request.body?, request.project()))
                .flatten()
                .map(|network| resource_not_ready(&network)),
            FaultKind::ClusterBusy => {
                let pool_update = !compute
                    && change
                    && request.segments.contains(&"nodePools")
                    && matches!(request.method, "PUT" | "POST");
                pool_update.then(|| super::gke::cluster_busy("operation-0000000000000-emulated"))
            }
        }
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, k)| *k)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|(n, _)| *n).collect();
                format!("unknown fault kind {s:?}; known: {}", names.join(", "))
            })
    }
}

/// What a fault may depend on.
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    /// The path's segments: `compute/v1/projects/p/...` or `v1/projects/p/...`.
    pub(crate) segments: &'a [&'a str],
    pub(crate) body: Option<&'a Value>,
}

impl Request<'_> {
    fn project(&self) -> &str {
        self.segments
            .iter()
            .position(|s| *s == "projects")
            .and_then(|i| self.segments.get(i + 1))
            .copied()
            .unwrap_or_default()
    }
}

/// The network or subnetwork a change body names: an address's or a NIC's subnetwork, a route's or a
/// firewall's network.
fn network_named(body: &Value, project: &str) -> Option<String> {
    let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let nic = body
        .get("networkInterfaces")
        .and_then(|n| n.get(0))
        .and_then(|n| field(n, "subnetwork").or_else(|| field(n, "network")));
    let reference = field(body, "subnetwork")
        .or_else(|| field(body, "network"))
        .or(nic)?;
    let path = reference.find("projects/").map_or_else(
        || format!("projects/{project}/{reference}"),
        |i| reference[i..].to_string(),
    );
    Some(path)
}

/// As GCE answers a per-minute API quota: 403 (where 429 would be right), reason `rateLimitExceeded`, and
/// the message the Terraform provider matches ("Quota exceeded for quota metric '...' and limit '... per
/// minute' of service ..."; hashicorp/terraform-provider-google, `is403QuotaExceededPerMinuteError`;
/// hashicorp/terraform-provider-google#8360 shows GCE's 403 with `rateLimitExceeded`).
fn quota_per_minute(project: &str) -> ApiError {
    let message = format!(
        "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'compute.googleapis.com' for consumer 'project_number:{}'. (emulated fault)",
        project_number(project)
    );
    ApiError::new(403, "rateLimitExceeded", message).with_domain("usageLimits")
}

/// GCE's answer when too many operations run at once in a project, verbatim in shape from a real one
/// (containers/podman#28212): 403 "Rate Limit Exceeded", `errors[].reason` `rateLimitExceeded`, and the
/// `ErrorInfo` detail with reason `CONCURRENT_OPERATIONS_QUOTA_EXCEEDED` that the Terraform provider's
/// `is403ConcurrentOperationsQuotaError` looks for.
fn concurrent_operations(project: &str) -> ApiError {
    let number = project_number(project);
    ApiError::new(403, "rateLimitExceeded", "Rate Limit Exceeded")
        .with_domain("usageLimits")
        .with_details(vec![
            json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "CONCURRENT_OPERATIONS_QUOTA_EXCEEDED",
                "domain": "compute.googleapis.com",
                "metadata": {"containerType": "PROJECT", "containerId": number, "location": "global"},
            }),
            json!({
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": format!("Quota on concurrent operations exceeded for project {number}. (emulated fault)"),
            }),
            json!({
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [{
                    "description": "Concurrent operations quota documentation.",
                    "url": "https://cloud.google.com/compute/operations-quota#concurrent_operation_limits",
                }],
            }),
        ])
}

/// GCE's 400 `resourceNotReady` for a network or subnetwork that an operation on it still holds; the
/// Terraform provider retries it (`isNetworkUnreadyError`, `isSubnetworkUnreadyError`, which match
/// `resourceNotReady` and `networks` / `subnetworks` in the body).
fn resource_not_ready(path: &str) -> ApiError {
    ApiError::new(
        400,
        "resourceNotReady",
        format!("The resource '{path}' is not ready"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(
        method: &'a str,
        segments: &'a [&'a str],
        body: Option<&'a Value>,
    ) -> Request<'a> {
        Request {
            method,
            segments,
            body,
        }
    }

    #[test]
    fn names_parse_and_unknown_names_are_listed() {
        for (name, kind) in FaultKind::ALL {
            assert_eq!(name.parse::<FaultKind>(), Ok(kind));
        }
        let err = "quota".parse::<FaultKind>().expect_err("unknown");
        assert!(
            err.contains("rate-limit") && err.contains("cluster-busy"),
            "{err}"
        );
    }

    #[test]
    fn each_kind_applies_where_google_answers_it() {
        let body = json!({"name": "r", "network": "global/networks/vpc"});
        let insert = ["compute", "v1", "projects", "p", "global", "routes"];
        let read = ["compute", "v1", "projects", "p", "global", "routes", "r"];
        let wait = [
            "compute",
            "v1",
            "projects",
            "p",
            "global",
            "operations",
            "o",
            "wait",
        ];
        let pool = [
            "v1",
            "projects",
            "p",
            "locations",
            "l",
            "clusters",
            "c",
            "nodePools",
            "n",
        ];
        let post = request("POST", &insert, Some(&body));
        let get = request("GET", &read, None);
        let waiting = request("POST", &wait, None);
        let update = request("PUT", &pool, Some(&body));

        let e = FaultKind::ResourceNotReady
            .answer(&post)
            .expect("a change naming a network");
        assert_eq!((e.code, e.reason), (400, "resourceNotReady"));
        assert!(
            e.message.contains("'projects/p/global/networks/vpc'"),
            "{}",
            e.message
        );
        assert!(FaultKind::ResourceNotReady.answer(&get).is_none());
        assert!(FaultKind::ConcurrentOperations.answer(&waiting).is_none());
        let e = FaultKind::ConcurrentOperations
            .answer(&post)
            .expect("a change");
        assert_eq!(e.code, 403);
        assert_eq!(
            e.body()["error"]["details"][0]["reason"],
            "CONCURRENT_OPERATIONS_QUOTA_EXCEEDED"
        );
        let e = FaultKind::QuotaPerMinute
            .answer(&get)
            .expect("any Compute call");
        assert!(
            e.message.contains("per minute' of service"),
            "{}",
            e.message
        );
        assert!(FaultKind::QuotaPerMinute.answer(&update).is_none());
        assert!(FaultKind::ClusterBusy.answer(&post).is_none());
        let e = FaultKind::ClusterBusy
            .answer(&update)
            .expect("a node-pool update");
        assert_eq!(e.body()["error"]["status"], "FAILED_PRECONDITION");
    }
}
