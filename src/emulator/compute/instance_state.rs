//! An instance's power (start, stop, reset, suspend, resume) and what its guest reports: the guest attribute
//! `natgw/ready` and serial port 1.

use serde_json::json;

use super::{Answer, Ctx, Reply, mutate, url};
use crate::emulator::api_error::ApiError;
use crate::emulator::org_policy;
use crate::emulator::world::{Power, Scope, World, obj, rfc3339};

/// The power verbs of `instances`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verb {
    Start,
    Stop,
    Reset,
    Suspend,
    Resume,
}

impl Verb {
    pub(super) fn parse(s: &str) -> Option<Verb> {
        Some(match s {
            "start" => Verb::Start,
            "stop" => Verb::Stop,
            "reset" => Verb::Reset,
            "suspend" => Verb::Suspend,
            "resume" => Verb::Resume,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Reset => "reset",
            Verb::Suspend => "suspend",
            Verb::Resume => "resume",
        }
    }
}

fn not_ready(path: &str) -> ApiError {
    ApiError::new(
        400,
        "resourceNotReady",
        format!("The resource '{path}' is not ready"),
    )
}

/// The power state after `verb`, from `status`; `Ok(None)`: nothing changes (Google accepts a start of a
/// running instance and a stop of a stopped one). Refusals: a reset needs a running instance; suspend needs
/// a RUNNING one, and resume a SUSPENDED one (docs: "Suspend and resume an instance"); a suspended instance
/// is resumed, not started (the emulator's messages for these are its own: README, "Known differences").
fn next_power(
    verb: Verb,
    now: &Power,
    status: &str,
    at: i64,
    path: &str,
) -> Result<Option<Power>, ApiError> {
    let after = match (verb, status) {
        (Verb::Reset, _) if !now.running => return Err(not_ready(path)),
        (Verb::Reset, _) => Power::boot(at, false),
        (Verb::Start, "SUSPENDED" | "SUSPENDING") => {
            return Err(ApiError::invalid(format!(
                "The instance '{path}' is suspended: resume it instead of starting it."
            )));
        }
        (Verb::Start, _) if now.running => return Ok(None),
        (Verb::Start, _) => Power::boot(at, false),
        (Verb::Stop, _) if !now.running && !now.suspended => return Ok(None),
        (Verb::Stop, _) => Power {
            running: false,
            suspended: false,
            since: at,
            ..Power::boot(at, false)
        },
        (Verb::Suspend, "RUNNING") => Power {
            running: false,
            suspended: true,
            since: at,
            ..now.clone()
        },
        (Verb::Suspend, _) => {
            return Err(ApiError::invalid(format!(
                "The instance '{path}' is {status}: only a RUNNING instance can be suspended."
            )));
        }
        (Verb::Resume, "SUSPENDED") => Power {
            running: true,
            suspended: false,
            resumed: true,
            since: at,
            ..now.clone()
        },
        (Verb::Resume, _) => {
            return Err(ApiError::invalid(format!(
                "The instance '{path}' is {status}: only a SUSPENDED instance can be resumed."
            )));
        }
    };
    Ok(Some(after))
}

/// start, stop, reset, suspend, resume. The new state takes effect when the operation is DONE; the
/// transitional states (STOPPING, SUSPENDING, PROVISIONING, STAGING) come from the clock before that.
pub(super) fn power(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    z: &str,
    i: &str,
    verb: Verb,
) -> Answer {
    let path = format!("projects/{p}/zones/{z}/instances/{i}");
    world.get(&path)?;
    let at = ctx.now + ctx.timing.op_ms;
    let after = match world.power.get(&path) {
        Some(now) => next_power(
            verb,
            now,
            now.status(ctx.now, ctx.timing.boot_ms),
            at,
            &path,
        )?,
        None => None,
    };
    let target = path.clone();
    mutate(
        world,
        ctx,
        p,
        &Scope::Zone(z.to_string()),
        verb.name(),
        &target,
        |w| {
            let Some(after) = after else {
                return Ok(Ok(()));
            };
            let stamp = if after.running {
                "lastStartTimestamp"
            } else if after.suspended {
                "lastSuspendedTimestamp"
            } else {
                "lastStopTimestamp"
            };
            w.power.insert(path.clone(), after);
            if let Some(inst) = w.resources.get_mut(&path) {
                obj(inst).insert(stamp.into(), json!(rfc3339(at)));
            }
            Ok(Ok(()))
        },
    )
}

/// The guest attribute `natgw/ready`: present once the instance is RUNNING and its boot's "startup script"
/// wrote it; before that (and with `--boot-fail`) 404 notFound, as the real API answers for a missing key.
/// With constraints/compute.disableGuestAttributesAccess enforced, 412 (`org_policy`).
pub(super) fn guest_attributes(world: &World, ctx: &Ctx<'_>, p: &str, z: &str, i: &str) -> Answer {
    let path = format!("projects/{p}/zones/{z}/instances/{i}");
    world.get(&path)?;
    org_policy::check_guest_attributes(ctx.policies, p)?;
    let query_path = ctx.q("queryPath").unwrap_or("");
    let variable_key = ctx.q("variableKey").unwrap_or("");
    let asked = if variable_key.is_empty() {
        query_path
    } else {
        variable_key
    };
    let missing = || ApiError::not_found(&format!("{path}/guestAttributes/{asked}"));
    let power = world.power.get(&path).ok_or_else(missing)?;
    if power.status(ctx.now, ctx.timing.boot_ms) != "RUNNING" {
        return Err(missing());
    }
    let value = power.ready.clone().ok_or_else(missing)?;
    let key = "natgw/ready";
    let mut out = json!({"kind": "compute#guestAttributes", "selfLink": format!("{}/guestAttributes/{asked}", url(&path))});
    let o = obj(&mut out);
    if !variable_key.is_empty() {
        if variable_key != key {
            return Err(missing());
        }
        o.insert("variableKey".into(), json!(variable_key));
        o.insert("variableValue".into(), json!(value));
    } else {
        if !key.starts_with(query_path) || query_path.is_empty() {
            return Err(missing());
        }
        o.insert("queryPath".into(), json!(query_path));
        o.insert(
            "queryValue".into(),
            json!({"items": [{"namespace": "natgw", "key": "ready", "value": value}]}),
        );
    }
    Ok(Reply::read(out))
}

/// `instances.getSerialPortOutput` (compute.v1.json): `port` 1 to 4 (only port 1 carries output here),
/// `start` as the discovery document defines it (see `SerialLog::read`), and `start`/`next` in the answer.
/// int64 values travel as strings.
pub(super) fn serial_port(world: &World, ctx: &Ctx<'_>, p: &str, z: &str, i: &str) -> Answer {
    let path = format!("projects/{p}/zones/{z}/instances/{i}");
    world.get(&path)?;
    let port = match ctx.q("port") {
        None => 1,
        Some(s) => s
            .parse::<i32>()
            .ok()
            .filter(|n| (1..=4).contains(n))
            .ok_or_else(|| ApiError::invalid_field("port", s, "Must be between 1 and 4."))?,
    };
    let start = match ctx.q("start") {
        None => 0,
        Some(s) => s
            .parse::<i64>()
            .map_err(|_| ApiError::invalid_field("start", s, "Must be an integer."))?,
    };
    let empty = Default::default();
    let log = if port == 1 {
        world.serial.get(&path).unwrap_or(&empty)
    } else {
        &empty
    };
    let (from, contents, next) = log.read(start);
    Ok(Reply::read(json!({
        "kind": "compute#serialPortOutput",
        "contents": contents,
        "start": from.to_string(),
        "next": next.to_string(),
        "selfLink": format!("{}/serialPort?port={port}", url(&path)),
    })))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use google_cloud_compute_v1::client::{Instances, ZoneOperations};
    use google_cloud_gax::options::RequestOptionsBuilder;

    use crate::emulator::Options;

    const ZONE: &str = "europe-west1-b";

    /// suspend and resume through Google's client: SUSPENDING while the operation runs, SUSPENDED after it,
    /// then PROVISIONING on resume; a resume of a running instance is refused.
    #[tokio::test]
    async fn suspend_and_resume_go_through_googles_states() {
        let options = Options {
            op_latency: Duration::from_millis(1500),
            ..Options::default()
        };
        let (emu, cloud, gw) = crate::gcp::demo(options, |_| {}).await;
        crate::gcp::demo_vm(&cloud, &gw).await;
        let creds = google_cloud_auth::credentials::anonymous::Builder::new().build();
        let instances = Instances::builder()
            .with_endpoint(emu.url())
            .with_credentials(creds.clone())
            .build()
            .await
            .expect("client");
        let operations = ZoneOperations::builder()
            .with_endpoint(emu.url())
            .with_credentials(creds)
            .build()
            .await
            .expect("client");
        let status = || async {
            instances
                .get()
                .set_project("natgw-test")
                .set_zone(ZONE)
                .set_instance(&gw.instance.name)
                .send()
                .await
                .expect("get")
                .status
                .and_then(|s| s.name().map(str::to_string))
                .unwrap_or_default()
        };
        let wait = |name: String| async {
            operations
                .wait()
                .set_project("natgw-test")
                .set_zone(ZONE)
                .set_operation(name)
                .with_idempotency(true)
                .send()
                .await
                .expect("wait");
        };
        let resume = || {
            instances
                .resume()
                .set_project("natgw-test")
                .set_zone(ZONE)
                .set_instance(&gw.instance.name)
                .send()
        };
        let refused = resume().await.expect_err("not suspended");
        assert_eq!(refused.http_status_code(), Some(400));

        let op = instances
            .suspend()
            .set_project("natgw-test")
            .set_zone(ZONE)
            .set_instance(&gw.instance.name)
            .send()
            .await
            .expect("suspend");
        assert_eq!(status().await, "SUSPENDING");
        wait(op.name.unwrap_or_default()).await;
        assert_eq!(status().await, "SUSPENDED");

        let op = resume().await.expect("resume");
        assert_eq!(status().await, "PROVISIONING");
        wait(op.name.unwrap_or_default()).await;
        assert_eq!(status().await, "RUNNING");
        emu.shutdown().await.expect("shutdown");
    }
}
