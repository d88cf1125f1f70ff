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
        let p = Transient.with_budget(Duration::from_secs(10));
        assert!(matches!(
            p.on_error(&state(Duration::from_secs(1)), unavailable()),
            RetryResult::Continue(_)
        ));
        match p.on_error(&state(Duration::from_secs(11)), unavailable()) {
            RetryResult::Exhausted(e) => assert!(e.is_exhausted(), "{e:?}"),
            other => panic!("{other:?}"),
        }
        let limited = Transient
            .with_attempt_limit(2)
            .with_budget(Duration::from_secs(10));
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
        let p = Transient.with_budget(Duration::from_secs(1));
        let left = p.remaining_time(&state(Duration::from_secs(5)));
        assert_eq!(left, Some(ATTEMPT_MIN));
        let p = Transient.with_budget(Duration::from_secs(600));
        let left = p.remaining_time(&state(Duration::ZERO)).expect("a time");
        assert!(left > ATTEMPT_MIN && left <= Duration::from_secs(600));
    }
}
