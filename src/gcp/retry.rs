//! Which failures natgw retries, and how long it waits between attempts.
//!
//! Retried: 429, 5xx, a connection that failed or was reset, an attempt that timed out, and the answers that
//! Compute gives under load with another status (`Busy`, below). Only requests that are safe to send again are
//! retried: reads, and changes that carry a `requestId` (Compute does them once) or an `etag` (GKE refuses a
//! stale one).

use std::time::Duration;

use google_cloud_gax::error::Error;
use google_cloud_gax::exponential_backoff::{ExponentialBackoff, ExponentialBackoffBuilder};
use google_cloud_gax::retry_policy::RetryPolicy;
use google_cloud_gax::retry_result::RetryResult;
use google_cloud_gax::retry_state::RetryState;
use google_cloud_gax::retry_throttler::CircuitBreaker;

#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Attempts per call, the first included.
    pub(crate) max_attempts: u32,
    /// Longest time spent retrying one call.
    pub(crate) max_elapsed: Duration,
    pub(crate) initial_delay: Duration,
    pub(crate) max_delay: Duration,
    /// Longest wait for one operation to finish.
    pub(crate) op_deadline: Duration,
    /// Longest wait for GKE to finish another operation on a cluster (a node-pool upgrade can hold one for an
    /// hour), before natgw changes a node pool of it. Separate from `op_deadline`.
    pub(crate) cluster_busy_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            max_elapsed: Duration::from_secs(120),
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            op_deadline: Duration::from_secs(600),
            cluster_busy_timeout: Duration::from_secs(3600),
        }
    }
}

impl Settings {
    pub(crate) fn policy(&self) -> impl RetryPolicy + use<> {
        Transient {
            max_attempts: self.max_attempts,
        }
        .with_budget(self.max_elapsed)
    }

    /// natgw bounds retries with `policy()` (attempts and time). gax's default throttler also refuses a retry
    /// with a probability of about 1/2 on a client whose first request failed, and natgw's clients are young
    /// (a handful of requests each): one 503 could fail an apply. This one stops retrying only on a client
    /// that failed a thousand more times than it succeeded.
    pub(crate) fn throttler(&self) -> CircuitBreaker {
        CircuitBreaker::clamp(1000, 0, 1)
    }

    /// Truncated exponential backoff with full jitter.
    pub(crate) fn backoff(&self) -> ExponentialBackoff {
        ExponentialBackoffBuilder::new()
            .with_initial_delay(self.initial_delay)
            .with_maximum_delay(self.max_delay)
            .with_scaling(2.0)
            .build()
            .unwrap_or_else(|_| ExponentialBackoffBuilder::new().clamp())
    }
}

/// Retries transient failures of idempotent requests: at most `max_attempts` attempts, except for `Busy`
/// answers, which only the time budget bounds (a per-minute quota can take a minute to refill).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transient {
    pub(crate) max_attempts: u32,
}

impl RetryPolicy for Transient {
    fn on_error(&self, state: &RetryState, error: Error) -> RetryResult {
        if !state.idempotent && !error.is_transient_and_before_rpc() {
            return RetryResult::Permanent(error);
        }
        if busy(&error).is_some() {
            RetryResult::Continue(error)
        } else if !is_transient(&error) {
            RetryResult::Permanent(error)
        } else if state.attempt_count >= self.max_attempts {
            RetryResult::Exhausted(error)
        } else {
            RetryResult::Continue(error)
        }
    }
}

pub(crate) fn is_transient(error: &Error) -> bool {
    if error.is_transient_and_before_rpc()
        || error.is_timeout()
        || error.is_io()
        || error.is_connect()
        || busy(error).is_some()
    {
        return true;
    }
    match error.http_status_code() {
        Some(code) => code == 429 || (500..600).contains(&code),
        None => error.status().is_some_and(|s| {
            use google_cloud_gax::error::rpc::Code;
            matches!(
                s.code,
                Code::Unavailable | Code::ResourceExhausted | Code::Internal
            )
        }),
    }
}

/// An answer that says "not now" with a status that usually means "never": Compute under load. Each one is
/// in the default retry predicates of the Terraform Google provider (hashicorp/terraform-provider-google,
/// `google/transport/error_retry_predicates.go`), which learned them in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// 403 `rateLimitExceeded`, or "Quota exceeded for quota metric '...' and limit '... per minute'":
    /// `is403QuotaExceededPerMinuteError` ("GCE returns the wrong error code, as this should be a 429").
    QuotaPerMinute,
    /// 403 with the `ErrorInfo` reason `CONCURRENT_OPERATIONS_QUOTA_EXCEEDED`:
    /// `is403ConcurrentOperationsQuotaError` ("transient and clears once in-flight operations complete").
    ConcurrentOperations,
    /// 400 `resourceNotReady` on a network or subnetwork: `isNetworkUnreadyError`, `isSubnetworkUnreadyError`.
    ResourceNotReady,
    /// 400 "There is a peering operation in progress": `IsPeeringOperationInProgress`.
    PeeringInProgress,
}

/// The `ErrorInfo` reasons of an error: gax reads them from `error.details`, or from Compute's older
/// `error.errors[].reason` when there are no details.
fn reasons(error: &Error) -> Vec<&str> {
    use google_cloud_gax::error::rpc::StatusDetails;
    error
        .status()
        .map(|s| {
            s.details
                .iter()
                .filter_map(|d| match d {
                    StatusDetails::ErrorInfo(info) => Some(info.reason.as_str()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn per_minute_quota(message: &str) -> bool {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(
            r"Quota exceeded for quota metric '.*' and limit '.* per minute' of service",
        )
        .ok()
    })
    .as_ref()
    .is_some_and(|re| re.is_match(message))
}

pub(crate) fn busy(error: &Error) -> Option<Busy> {
    let status = error.http_status_code()?;
    let reasons = reasons(error);
    let message = error.status().map_or_else(
        || {
            error
                .http_payload()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        },
        |s| s.message.clone(),
    );
    match status {
        403 if reasons.contains(&"CONCURRENT_OPERATIONS_QUOTA_EXCEEDED") => {
            Some(Busy::ConcurrentOperations)
        }
        403 if reasons.contains(&"rateLimitExceeded")
            || reasons.contains(&"RATE_LIMIT_EXCEEDED")
            || per_minute_quota(&message) =>
        {
            Some(Busy::QuotaPerMinute)
        }
        400 if reasons.contains(&"resourceNotReady") && message.contains("networks") => {
            Some(Busy::ResourceNotReady)
        }
        400 if message.contains("There is a peering operation in progress") => {
            Some(Busy::PeeringInProgress)
        }
        _ => None,
    }
}

/// A 403 that is about quota, not permission: it gets no IAM hint.
pub(crate) fn is_quota(error: &Error) -> bool {
    matches!(
        busy(error),
        Some(Busy::QuotaPerMinute | Busy::ConcurrentOperations)
    ) || reasons(error).iter().any(|r| {
        matches!(
            *r,
            "quotaExceeded" | "QUOTA_EXCEEDED" | "userRateLimitExceeded"
        )
    })
}

/// The longest one attempt is allowed whatever is left of the budget: Compute's `operations.wait` blocks for
/// up to 2 minutes by design.
const ATTEMPT_MIN: Duration = Duration::from_secs(150);

/// The retry budget: no retry once `max` has passed since the first attempt. Unlike gax's
/// `with_time_limit`, it does not also cut each attempt to what is left of the budget: that cut an
/// `operations.wait` short, and a slow operation (a VM delete can take minutes) failed the apply.
///
/// Whichever limit ends the retries, the error comes back marked exhausted (`Error::is_exhausted`), with
/// the last answer inside, so that the message can say natgw stopped retrying.
#[derive(Debug)]
pub(crate) struct Budget<P> {
    inner: P,
    max: Duration,
}

pub(crate) trait WithBudget: Sized {
    fn with_budget(self, max: Duration) -> Budget<Self> {
        Budget { inner: self, max }
    }
}

impl<P: RetryPolicy> WithBudget for P {}

impl<P: RetryPolicy> Budget<P> {
    fn spent(&self, state: &RetryState) -> bool {
        tokio::time::Instant::now().into_std() >= state.start + self.max
    }
}

impl<P: RetryPolicy + 'static> RetryPolicy for Budget<P> {
    fn on_error(&self, state: &RetryState, error: Error) -> RetryResult {
        match self.inner.on_error(state, error) {
            RetryResult::Continue(e) if self.spent(state) => exhausted(e),
            RetryResult::Exhausted(e) => exhausted(e),
            other => other,
        }
    }

    fn on_throttle(
        &self,
        state: &RetryState,
        error: Error,
    ) -> google_cloud_gax::throttle_result::ThrottleResult {
        use google_cloud_gax::throttle_result::ThrottleResult;
        match self.inner.on_throttle(state, error) {
            ThrottleResult::Continue(e) if self.spent(state) => {
                ThrottleResult::Exhausted(wrap_exhausted(e))
            }
            ThrottleResult::Exhausted(e) => ThrottleResult::Exhausted(wrap_exhausted(e)),
            other => other,
        }
    }

    fn remaining_time(&self, state: &RetryState) -> Option<Duration> {
        let left = (state.start + self.max)
            .saturating_duration_since(tokio::time::Instant::now().into_std());
        Some(left.max(ATTEMPT_MIN))
    }
}

fn wrap_exhausted(e: Error) -> Error {
    if e.is_exhausted() {
        e
    } else {
        Error::exhausted(e)
    }
}

fn exhausted(e: Error) -> RetryResult {
    RetryResult::Exhausted(wrap_exhausted(e))
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    fn state(started_ago: Duration) -> RetryState {
        RetryState::new(true).set_start(std::time::Instant::now() - started_ago)
    }

    fn unavailable() -> Error {
        Error::service(
            google_cloud_gax::error::rpc::Status::default()
                .set_code(google_cloud_gax::error::rpc::Code::Unavailable)
                .set_message("try again"),
        )
    }

    #[test]
    fn retries_until_the_budget_is_spent() {
        let p = Transient { max_attempts: 8 }.with_budget(Duration::from_secs(10));
        assert!(matches!(
            p.on_error(&state(Duration::from_secs(1)), unavailable()),
            RetryResult::Continue(_)
        ));
        match p.on_error(&state(Duration::from_secs(11)), unavailable()) {
            RetryResult::Exhausted(e) => assert!(e.is_exhausted(), "{e:?}"),
            other => panic!("{other:?}"),
        }
        let limited = Transient { max_attempts: 2 }.with_budget(Duration::from_secs(10));
        match limited.on_error(
            &state(Duration::ZERO).set_attempt_count(2_u32),
            unavailable(),
        ) {
            RetryResult::Exhausted(e) => assert!(e.is_exhausted(), "{e:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_attempt_may_outlast_the_budget() {
        let p = Transient { max_attempts: 8 }.with_budget(Duration::from_secs(1));
        let left = p.remaining_time(&state(Duration::from_secs(5)));
        assert_eq!(left, Some(ATTEMPT_MIN));
        let p = Transient { max_attempts: 8 }.with_budget(Duration::from_secs(600));
        let left = p.remaining_time(&state(Duration::ZERO)).expect("a time");
        assert!(left > ATTEMPT_MIN && left <= Duration::from_secs(600));
    }
}

#[cfg(test)]
mod classify_tests {
    use google_cloud_gax::error::rpc::Status;

    use super::*;

    fn answer(code: u16, payload: &str) -> Error {
        let bytes = bytes::Bytes::from(payload.to_string());
        match Status::try_from(&bytes) {
            Ok(s) => Error::service_with_http_metadata(s, Some(code), None),
            Err(_) => Error::http(code, http::HeaderMap::new(), bytes),
        }
    }

    fn retried(e: Error) -> bool {
        let p = Transient { max_attempts: 8 };
        matches!(
            p.on_error(&RetryState::new(true), e),
            RetryResult::Continue(_)
        )
    }

    #[test]
    fn answers_under_load_are_retried_and_named() {
        let cases = [
            (
                403,
                r#"{"error":{"code":403,"message":"Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute' of service 'compute.googleapis.com' for consumer 'project_number:1'.","errors":[{"message":"x","domain":"usageLimits","reason":"rateLimitExceeded"}]}}"#,
                Busy::QuotaPerMinute,
            ),
            (
                403,
                r#"{"error":{"code":403,"message":"Rate Limit Exceeded","errors":[{"message":"Rate Limit Exceeded","domain":"usageLimits","reason":"rateLimitExceeded"}],"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"CONCURRENT_OPERATIONS_QUOTA_EXCEEDED","domain":"compute.googleapis.com","metadata":{"containerType":"PROJECT","containerId":"1","location":"us-central1"}}]}}"#,
                Busy::ConcurrentOperations,
            ),
            (
                400,
                r#"{"error":{"code":400,"message":"The resource 'projects/p/regions/r/subnetworks/s' is not ready","errors":[{"message":"x","domain":"global","reason":"resourceNotReady"}]}}"#,
                Busy::ResourceNotReady,
            ),
            (
                400,
                r#"{"error":{"code":400,"message":"There is a peering operation in progress on the local or peer network. Try again later.","errors":[{"message":"x","domain":"global","reason":"badRequest"}]}}"#,
                Busy::PeeringInProgress,
            ),
        ];
        for (code, payload, want) in cases {
            assert_eq!(busy(&answer(code, payload)), Some(want), "{payload}");
            assert!(retried(answer(code, payload)), "{payload}");
        }
    }

    #[test]
    fn a_permission_denial_and_other_400s_fail_at_once() {
        let denied = r#"{"error":{"code":403,"message":"Required 'compute.addresses.insert' permission for 'projects/p/regions/r/addresses/a'","errors":[{"message":"x","domain":"global","reason":"forbidden"}]}}"#;
        let not_ready_vm = r#"{"error":{"code":400,"message":"The resource 'projects/p/zones/z/instances/i' is not ready","errors":[{"message":"x","domain":"global","reason":"resourceNotReady"}]}}"#;
        for (code, payload) in [(403, denied), (400, not_ready_vm)] {
            assert_eq!(busy(&answer(code, payload)), None, "{payload}");
            assert!(!retried(answer(code, payload)), "{payload}");
        }
        assert!(!is_quota(&answer(403, denied)));
    }

    #[test]
    fn a_quota_403_gets_no_iam_hint_and_a_denial_names_the_permission() {
        let quota = r#"{"error":{"code":403,"message":"Rate Limit Exceeded","errors":[{"message":"Rate Limit Exceeded","domain":"usageLimits","reason":"rateLimitExceeded"}]}}"#;
        let message = super::super::api_error("creating address a")(answer(403, quota)).to_string();
        assert!(message.contains("a quota, not a permission"), "{message}");
        assert!(!message.contains("IAM"), "{message}");
        let denied = r#"{"error":{"code":403,"message":"Required 'compute.addresses.insert' permission for 'projects/p'","errors":[{"message":"x","domain":"global","reason":"forbidden"}]}}"#;
        let message =
            super::super::api_error("creating address a")(answer(403, denied)).to_string();
        assert!(
            message.contains("compute.addresses.insert") && message.contains("IAM"),
            "{message}"
        );
    }
}
