//! Waiting for a VM to forward: its startup script writes the ready token to the guest attribute
//! `natgw/ready` once its rules are in place.
//!
//! Guest attributes may be read at most 10 times a minute per VM and never more than 3 times in one second,
//! so natgw first waits for the VM to run (instances.get, not rate limited), then reads the attribute on a
//! schedule that stays inside that budget.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::StepError;
use crate::gcp::{Cloud, Ready};
use crate::model::Instance;

/// Delays between guest-attribute reads: quick at first (the script usually finishes seconds after boot),
/// then one every 6 s, which is 10 a minute.
const SCHEDULE_MS: [u64; 5] = [0, 300, 700, 1_500, 3_000];
const STEADY: Duration = Duration::from_secs(6);

/// Sliding-window limiter: at most `max` events in any `window`.
struct Limiter {
    window: Duration,
    max: usize,
    times: VecDeque<Instant>,
}

impl Limiter {
    fn new(window: Duration, max: usize) -> Self {
        Self {
            window,
            max,
            times: VecDeque::new(),
        }
    }

    /// How long to wait before the next event is allowed at `now`.
    fn wait_at(&mut self, now: Instant) -> Duration {
        while self
            .times
            .front()
            .is_some_and(|&t| now.duration_since(t) >= self.window)
        {
            self.times.pop_front();
        }
        if self.times.len() < self.max {
            Duration::ZERO
        } else {
            self.times.front().map_or(Duration::ZERO, |&t| {
                (t + self.window).saturating_duration_since(now)
            })
        }
    }

    fn record(&mut self, now: Instant) {
        self.times.push_back(now);
    }
}

pub(super) async fn wait(cloud: &Cloud, vm: &Instance, timeout: Duration) -> Result<(), StepError> {
    let start = Instant::now();
    let deadline = start + timeout;
    let not_ready = |status: &str| {
        StepError::Other(format!(
            "instance {} did not report ready within {}s (status {status}): its startup script did not finish; see its log with `gcloud compute instances get-serial-port-output {} --zone {}` or `journalctl -u google-startup-scripts` on the VM",
            vm.name,
            timeout.as_secs(),
            vm.name,
            vm.zone
        ))
    };
    // 1. Until the VM runs.
    let mut delay = Duration::from_millis(250);
    let mut status = cloud.instance_status(&vm.zone, &vm.name).await?;
    while status != "RUNNING" {
        if Instant::now() + delay > deadline {
            return Err(not_ready(&status));
        }
        sleep(delay).await;
        if start.elapsed() > Duration::from_secs(10) {
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        status = cloud.instance_status(&vm.zone, &vm.name).await?;
    }
    // 2. Until the script reports the token.
    let mut per_minute = Limiter::new(Duration::from_secs(60), 10);
    let mut per_second = Limiter::new(Duration::from_secs(1), 3);
    let mut attempt = 0usize;
    loop {
        let planned = SCHEDULE_MS
            .get(attempt)
            .map_or(STEADY, |&ms| Duration::from_millis(ms));
        let now = Instant::now();
        let pause = planned
            .max(per_minute.wait_at(now))
            .max(per_second.wait_at(now));
        if now + pause > deadline {
            return Err(not_ready(&status));
        }
        sleep(pause).await;
        let now = Instant::now();
        per_minute.record(now);
        per_second.record(now);
        attempt += 1;
        if cloud
            .guest_ready(&vm.zone, &vm.name, &vm.ready_token)
            .await?
            == Ready::Yes
        {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_keeps_the_budget() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Duration::from_secs(60), 10);
        for i in 0..10 {
            let t = t0 + Duration::from_millis(100 * i);
            assert_eq!(l.wait_at(t), Duration::ZERO);
            l.record(t);
        }
        let t = t0 + Duration::from_secs(1);
        assert_eq!(l.wait_at(t), Duration::from_secs(59));
        assert_eq!(l.wait_at(t0 + Duration::from_secs(60)), Duration::ZERO);
    }

    #[test]
    fn schedule_fits_google_guidance() {
        // Simulate the read loop for ten minutes: never more than 3 reads in a second or 10 in a minute.
        let t0 = Instant::now();
        let mut now = t0;
        let mut per_minute = Limiter::new(Duration::from_secs(60), 10);
        let mut per_second = Limiter::new(Duration::from_secs(1), 3);
        let mut times = Vec::new();
        for attempt in 0..200 {
            let planned = SCHEDULE_MS
                .get(attempt)
                .map_or(STEADY, |&ms| Duration::from_millis(ms));
            now += planned
                .max(per_minute.wait_at(now))
                .max(per_second.wait_at(now));
            per_minute.record(now);
            per_second.record(now);
            times.push(now.duration_since(t0));
        }
        for (i, &a) in times.iter().enumerate() {
            assert!(
                times[i..]
                    .iter()
                    .filter(|&&b| b < a + Duration::from_secs(1))
                    .count()
                    <= 3
            );
            assert!(
                times[i..]
                    .iter()
                    .filter(|&&b| b < a + Duration::from_secs(60))
                    .count()
                    <= 10
            );
        }
        // The first reads come quickly.
        assert!(times[2] <= Duration::from_millis(1_000));
    }
}
