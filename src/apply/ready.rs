//! Waiting for a VM to forward: its startup script writes the ready token to the guest attribute
//! `natgw/ready` once its rules are in place, and the line `natgw-ready: TOKEN` to the serial console.
//!
//! Guest attributes may be read at most 10 times a minute per VM and never more than 3 times in one second,
//! so natgw first waits for the VM to run (instances.get, not rate limited), then reads the attribute on a
//! schedule that stays inside that budget. Where constraints/compute.disableGuestAttributesAccess blocks
//! guest attributes, natgw reads serial port 1 instead (`instances.getSerialPortOutput`, each read from the
//! `next` byte of the last one), on the same schedule.
//!
//! Before that, a VM found stopped, suspended or between states is brought back ([`bring_up`]).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::StepError;
use crate::gcp::{Cloud, Ready, SerialChunk};
use crate::model::Instance;
use crate::model::progress::Wait;
use crate::plan::VmAction;
use crate::plan::vm::Settled;

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

/// What readiness reads of a gateway VM: where it is, and the token its startup script reports once ready.
#[derive(Clone, Copy, Debug)]
pub(super) struct VmRef<'a> {
    pub(super) zone: &'a str,
    pub(super) name: &'a str,
    pub(super) ready_token: &'a str,
}

impl<'a> From<&'a Instance> for VmRef<'a> {
    fn from(i: &'a Instance) -> Self {
        VmRef {
            zone: &i.zone,
            name: &i.name,
            ready_token: &i.ready_token,
        }
    }
}

/// Waits until `vm` reports ready, saying what it waits for on the step's progress line.
pub(super) async fn wait(cloud: &Cloud, vm: VmRef<'_>, timeout: Duration) -> Result<(), StepError> {
    let result = wait_ready(cloud, vm, timeout).await;
    super::waiting(None);
    result
}

async fn wait_ready(cloud: &Cloud, vm: VmRef<'_>, timeout: Duration) -> Result<(), StepError> {
    super::waiting(Some(Wait::VmRunning));
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
    let mut status = cloud.instance_status(vm.zone, vm.name).await?;
    while status != "RUNNING" {
        if Instant::now() + delay > deadline {
            return Err(not_ready(&status));
        }
        sleep(delay).await;
        if start.elapsed() > Duration::from_secs(10) {
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        status = cloud.instance_status(vm.zone, vm.name).await?;
    }
    // 2. Until the script reports the token.
    super::waiting(Some(Wait::StartupScriptReady));
    let mut per_minute = Limiter::new(Duration::from_secs(60), 10);
    let mut per_second = Limiter::new(Duration::from_secs(1), 3);
    let mut serial: Option<SerialReader> = None;
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
            let said = serial.as_ref().and_then(|r| r.failure.as_deref());
            return Err(match said {
                Some(reason) => StepError::Other(format!(
                    "instance {} did not report ready within {}s: its startup script reported verify=failed:{reason} on the serial console",
                    vm.name,
                    timeout.as_secs()
                )),
                None => not_ready(&status),
            });
        }
        sleep(pause).await;
        let now = Instant::now();
        per_minute.record(now);
        per_second.record(now);
        attempt += 1;
        if let Some(reader) = serial.as_mut() {
            let chunk = cloud.serial_output(vm.zone, vm.name, reader.next).await?;
            if reader.feed(&chunk, vm.ready_token) {
                return Ok(());
            }
            continue;
        }
        match cloud.guest_ready(vm.zone, vm.name, vm.ready_token).await? {
            Ready::Yes => return Ok(()),
            Ready::NotYet => {}
            Ready::GuestAttributesBlocked => serial = Some(SerialReader::default()),
        }
    }
}

/// Brings a VM back from where the plan found it, as `action` says; true if it booted the VM afresh (a
/// start, which runs the startup script). `start` goes straight to Google, which accepts it on a VM that runs
/// meanwhile; every other action first reads where the VM is, waiting out STOPPING, SUSPENDING or a repair
/// (compute.v1.json: `start` is for "an instance that was stopped", `resume` for one "that was suspended"),
/// then starts, resumes or leaves alone what it finds.
pub(super) async fn bring_up(
    cloud: &Cloud,
    vm: VmRef<'_>,
    action: VmAction,
    timeout: Duration,
) -> Result<bool, StepError> {
    let settled = match action {
        VmAction::Start => Settled::Stopped,
        VmAction::Restart => return Ok(false),
        VmAction::Resume
        | VmAction::WaitThenStart
        | VmAction::WaitThenResume
        | VmAction::WaitForRepair
        | VmAction::WaitToSettle => {
            let result = settle(cloud, vm, timeout).await;
            super::waiting(None);
            result?
        }
    };
    match settled {
        Settled::Stopped => {
            cloud.start_instance(vm.zone, vm.name).await?;
            Ok(true)
        }
        Settled::Suspended => {
            cloud.resume_instance(vm.zone, vm.name).await?;
            Ok(false)
        }
        Settled::Up | Settled::Moving => Ok(false),
    }
}

/// Polls the VM's status until it is no longer between states.
async fn settle(cloud: &Cloud, vm: VmRef<'_>, timeout: Duration) -> Result<Settled, StepError> {
    super::waiting(Some(Wait::VmSettling));
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(250);
    loop {
        let status = cloud.instance_status(vm.zone, vm.name).await?;
        let settled = Settled::of(&status);
        if settled != Settled::Moving {
            return Ok(settled);
        }
        if Instant::now() + delay > deadline {
            return Err(StepError::Other(format!(
                "instance {} is still {status} after {}s; natgw starts or resumes it once Google is done (see `gcloud compute instances describe {} --zone {}`), run apply again later",
                vm.name,
                timeout.as_secs(),
                vm.name,
                vm.zone
            )));
        }
        sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Whether the VM already reports `vm`'s token, in one guest-attribute read: it then booted with this
/// script. Where guest attributes are blocked, `false` (the caller restarts, which is always safe).
pub(super) async fn reports(cloud: &Cloud, vm: VmRef<'_>) -> Result<bool, StepError> {
    Ok(matches!(
        cloud.guest_ready(vm.zone, vm.name, vm.ready_token).await?,
        Ready::Yes
    ))
}

/// Reads the serial console line by line across reads: a line cut between two reads is joined, and lost
/// output (Google keeps the last 1 MB) drops the partial line.
#[derive(Debug, Default)]
pub(crate) struct SerialReader {
    pub(crate) next: i64,
    partial: String,
    /// The reason of the last `natgw-summary: ... verify=failed:REASON` seen.
    failure: Option<String>,
    /// The last `natgw-summary: ...` line seen, from the marker on (`natgw check` shows it).
    pub(crate) summary: Option<String>,
}

const READY_PREFIX: &str = "natgw-ready: ";
const SUMMARY_PREFIX: &str = "natgw-summary: ";

impl SerialReader {
    /// Takes one chunk; true once a `natgw-ready: TOKEN` line with this token has been read. Lines may carry
    /// a prefix (a timestamp, the console's own), so the markers are found anywhere in a line.
    pub(crate) fn feed(&mut self, chunk: &SerialChunk, token: &str) -> bool {
        if chunk.start != self.next {
            self.partial.clear();
        }
        self.next = chunk.next;
        self.partial.push_str(&chunk.contents);
        let Some(end) = self.partial.rfind('\n') else {
            return false;
        };
        let complete: String = self.partial.drain(..=end).collect();
        let mut ready = false;
        for line in complete.lines() {
            let line = line.trim_end_matches('\r');
            if let Some(i) = line.find(READY_PREFIX) {
                ready |= line[i + READY_PREFIX.len()..].trim() == token;
            } else if let Some(i) = line.find(SUMMARY_PREFIX) {
                let summary = &line[i + SUMMARY_PREFIX.len()..];
                self.summary = Some(line[i..].trim().to_string());
                self.failure = summary
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("verify=failed:"))
                    .map(str::to_string);
            }
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(start: i64, contents: &str) -> SerialChunk {
        SerialChunk {
            start,
            contents: contents.into(),
            next: start + i64::try_from(contents.len()).unwrap_or(0),
        }
    }

    #[test]
    fn serial_lines_are_read_across_chunks() {
        let mut r = SerialReader::default();
        let first = "Booting...\nnatgw-summary: backend=nft egress=ens4 sources=10.0.0.0/8 destinations=1.2.3.4/32 verify=failed:no-nat-rule\nnatgw-rea";
        assert!(!r.feed(&chunk(0, first), "abc"));
        assert_eq!(r.failure.as_deref(), Some("no-nat-rule"));
        let start = r.next;
        assert!(!r.feed(&chunk(start, "dy: old\n"), "abc"), "another token");
        let start = r.next;
        assert!(r.feed(
            &chunk(
                start,
                "[  12.3] natgw-summary: verify=ok\r\nnatgw-ready: abc\r\n"
            ),
            "abc"
        ));
        assert_eq!(r.failure, None);
        assert_eq!(r.summary.as_deref(), Some("natgw-summary: verify=ok"));
    }

    #[test]
    fn lost_output_drops_the_partial_line() {
        let mut r = SerialReader::default();
        assert!(!r.feed(&chunk(0, "natgw-ready: a"), "abc"));
        // Google discarded bytes 14..100: the read starts later than asked.
        assert!(!r.feed(&chunk(100, "bc\n"), "abc"));
        assert!(r.feed(&chunk(103, "natgw-ready: abc\n"), "abc"));
    }

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

/// Against the emulator over real HTTP: with guest attributes blocked by organization policy, readiness is
/// read from the serial console.
#[cfg(test)]
mod emulated {
    use super::*;
    use crate::emulator::{Constraint, Options};

    #[tokio::test]
    async fn blocked_guest_attributes_fall_back_to_the_serial_console() {
        let log = std::env::temp_dir().join(format!(
            "natgw-ready-{}-{}.jsonl",
            std::process::id(),
            rand::random::<u64>()
        ));
        let options = Options {
            org_policies: vec![Constraint::DisableGuestAttributesAccess],
            boot: Duration::from_millis(300),
            request_log: Some(log.clone()),
            ..Options::default()
        };
        let (emu, cloud, gw) = crate::gcp::demo(options, |_| {}).await;
        crate::gcp::demo_vm(&cloud, &gw).await;
        wait(&cloud, (&gw.instance).into(), Duration::from_secs(30))
            .await
            .expect("ready from the serial console");
        let paths: Vec<String> = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["path"].as_str().map(str::to_string))
            .collect();
        let guest = paths
            .iter()
            .filter(|p| p.ends_with("/getGuestAttributes"))
            .count();
        let serial = paths.iter().filter(|p| p.ends_with("/serialPort")).count();
        assert_eq!(
            guest, 1,
            "one refused guest-attribute read, then the console"
        );
        assert!((1..=3).contains(&serial), "{serial} serial reads");
        emu.shutdown().await.expect("shutdown");
        let _ = std::fs::remove_file(&log);
    }
}
