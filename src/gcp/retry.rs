//! Which failures natgw retries, and how long it waits between attempts.
//!
//! Retried: 429, 5xx, a connection that failed or was reset, an attempt that timed out. Only requests that are
//! safe to send again are retried: reads, and changes that carry a `requestId` (Compute does them once) or an
//! `etag` (GKE refuses a stale one).

use std::time::Duration;

use google_cloud_gax::error::Error;
use google_cloud_gax::exponential_backoff::{ExponentialBackoff, ExponentialBackoffBuilder};
use google_cloud_gax::retry_policy::{RetryPolicy, RetryPolicyExt};
use google_cloud_gax::retry_result::RetryResult;
use google_cloud_gax::retry_state::RetryState;

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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            max_elapsed: Duration::from_secs(120),
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            op_deadline: Duration::from_secs(600),
        }
    }
}

impl Settings {
    pub(crate) fn policy(&self) -> impl RetryPolicy + use<> {
        Transient
            .with_attempt_limit(self.max_attempts)
            .with_time_limit(self.max_elapsed)
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

/// Retries transient failures of idempotent requests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Transient;

impl RetryPolicy for Transient {
    fn on_error(&self, state: &RetryState, error: Error) -> RetryResult {
        if !state.idempotent && !error.is_transient_and_before_rpc() {
            return RetryResult::Permanent(error);
        }
        if is_transient(&error) {
            RetryResult::Continue(error)
        } else {
            RetryResult::Permanent(error)
        }
    }
}

pub(crate) fn is_transient(error: &Error) -> bool {
    if error.is_transient_and_before_rpc()
        || error.is_timeout()
        || error.is_io()
        || error.is_connect()
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
