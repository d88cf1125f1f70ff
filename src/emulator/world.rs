//! The emulated world: every resource, operation and requestId, serialisable as the state file.
//!
//! Resources are kept as the JSON the API returns (plus a few private runtime fields), keyed by their path
//! below `compute/v1/` (`projects/p/regions/r/addresses/a`) or `v1/` for GKE; a `BTreeMap` keeps lists sorted
//! by name. Changes take effect when the request is accepted; operations only report progress over time.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::api_error::{ApiError, OpError};

pub(crate) const COMPUTE_URL: &str = "https://www.googleapis.com/compute/v1/";
pub(crate) const CONTAINER_URL: &str = "https://container.googleapis.com/v1/";

/// Wall-clock milliseconds since the epoch: stored in the state file, so a restart continues the timeline.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => t
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+00:00"
            ))
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// URL-safe base64 with padding, the encoding Google's clients use for `bytes` fields.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Fingerprints compare equal whatever base64 alphabet or padding the client used.
pub(crate) fn same_fingerprint(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim_end_matches('=').replace('+', "-").replace('/', "_");
    norm(a) == norm(b)
}

pub(crate) fn hash_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    crate::hex::encode(&h.finalize())
}

/// A stable stand-in for the project number Google puts in quota and policy messages.
pub(crate) fn project_number(project: &str) -> String {
    let digest = hash_hex(&[project]);
    let n = u64::from_str_radix(&digest[..12], 16).unwrap_or(0) % 1_000_000_000_000;
    n.to_string()
}

/// A stable id derived from a name, for catalogue entries.
pub(crate) fn stable_id(name: &str) -> String {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(b) >> 1).to_string()
}

/// Where an operation lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    Global,
    Region(String),
    Zone(String),
}

impl Scope {
    pub(crate) fn path(&self, project: &str) -> String {
        match self {
            Scope::Global => format!("projects/{project}/global"),
            Scope::Region(r) => format!("projects/{project}/regions/{r}"),
            Scope::Zone(z) => format!("projects/{project}/zones/{z}"),
        }
    }
}

/// A Compute operation. Its status is derived from the clock: PENDING, RUNNING, then DONE at `done_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredOp {
    pub(crate) body: Value,
    pub(crate) insert_ms: i64,
    pub(crate) done_ms: i64,
    pub(crate) error: Option<OpError>,
}

impl StoredOp {
    pub(crate) fn render(&self, now: i64) -> Value {
        let mut body = self.body.clone();
        let span = (self.done_ms - self.insert_ms).max(1);
        let (status, progress) = if now >= self.done_ms {
            ("DONE", 100)
        } else if now < self.insert_ms + span / 3 {
            ("PENDING", 0)
        } else {
            ("RUNNING", 50)
        };
        if let Some(obj) = body.as_object_mut() {
            obj.insert("status".into(), json!(status));
            obj.insert("progress".into(), json!(progress));
            if status != "PENDING" {
                obj.insert("startTime".into(), json!(rfc3339(self.insert_ms)));
            }
            if status == "DONE" {
                obj.insert("endTime".into(), json!(rfc3339(self.done_ms)));
                if let Some(e) = &self.error {
                    obj.insert(
                        "error".into(),
                        json!({"errors": [{"code": e.code, "message": e.message}]}),
                    );
                    obj.insert("httpErrorStatusCode".into(), json!(e.http));
                    obj.insert("httpErrorMessage".into(), json!(e.http_message()));
                }
            }
        }
        body
    }
}

/// The power state of an instance; `status` is derived from it and the clock, following Google's instance
/// life cycle (docs: compute/docs/instances/instance-lifecycle): create, start, reset and resume go through
/// PROVISIONING (create, resume) or STAGING to RUNNING; stop through STOPPING to TERMINATED; suspend through
/// SUSPENDING to SUSPENDED (compute.v1.json, `Instance.status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Power {
    /// Booting/running since `since` (the moment the operation that started it is DONE), or stopped.
    pub(crate) running: bool,
    pub(crate) since: i64,
    pub(crate) first_boot: bool,
    /// Whether the current boot has completed and its guest attribute was settled.
    pub(crate) booted: bool,
    /// The value of `natgw/ready` written by the "startup script" of the current boot.
    pub(crate) ready: Option<String>,
    /// Stopped by `suspend` (memory kept), not by `stop`.
    #[serde(default)]
    pub(crate) suspended: bool,
    /// Running again by `resume`: the guest goes on where it was; no startup script runs.
    #[serde(default)]
    pub(crate) resumed: bool,
}

impl Power {
    /// A boot that starts at `since`: the startup script runs once it completes.
    pub(crate) fn boot(since: i64, first_boot: bool) -> Self {
        Self {
            running: true,
            since,
            first_boot,
            booted: false,
            ready: None,
            suspended: false,
            resumed: false,
        }
    }

    pub(crate) fn status(&self, now: i64, boot: i64) -> &'static str {
        match (self.running, self.suspended) {
            (true, _) if now < self.since && (self.first_boot || self.resumed) => "PROVISIONING",
            (true, _) if now < self.since + boot => "STAGING",
            (true, _) => "RUNNING",
            (false, true) if now < self.since => "SUSPENDING",
            (false, true) => "SUSPENDED",
            (false, false) if now < self.since => "STOPPING",
            (false, false) => "TERMINATED",
        }
    }
}

/// Serial port 1 of an instance: the last 1 MB of what it wrote, and how much older output was discarded
/// (compute.v1.json, `instances.getSerialPortOutput`: "Returns the last 1 MB of serial port output").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SerialLog {
    pub(crate) discarded: u64,
    pub(crate) text: String,
}

impl SerialLog {
    const LIMIT: usize = 1 << 20;

    pub(crate) fn push(&mut self, text: &str) {
        self.text.push_str(text);
        if self.text.len() > Self::LIMIT {
            let over = self.text.len() - Self::LIMIT;
            let cut = (over..=self.text.len())
                .find(|&i| self.text.is_char_boundary(i))
                .unwrap_or(self.text.len());
            self.text.drain(..cut);
            self.discarded += cut as u64;
        }
    }

    /// Output from byte `start` on, as the `start` parameter means it: 0 the oldest byte still kept, a start
    /// in discarded output moves up to the oldest kept, a negative start counts back from the end. Returns
    /// `(start, contents, next)`, `next` being the position after the last byte written.
    pub(crate) fn read(&self, start: i64) -> (u64, &str, u64) {
        let end = self.discarded + self.text.len() as u64;
        let wanted = if start < 0 {
            end.saturating_sub(start.unsigned_abs())
        } else {
            start.unsigned_abs()
        };
        let from = wanted.clamp(self.discarded, end);
        let offset = usize::try_from(from - self.discarded).unwrap_or(0);
        let contents = self.text.get(offset..).unwrap_or_default();
        (from, contents, end)
    }
}

/// A GKE operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GkeOp {
    pub(crate) body: Value,
    pub(crate) insert_ms: i64,
    pub(crate) done_ms: i64,
}

impl GkeOp {
    pub(crate) fn render(&self, now: i64) -> Value {
        let mut body = self.body.clone();
        let span = (self.done_ms - self.insert_ms).max(1);
        let status = if now >= self.done_ms {
            "DONE"
        } else if now < self.insert_ms + span / 3 {
            "PENDING"
        } else {
            "RUNNING"
        };
        if let Some(obj) = body.as_object_mut() {
            obj.insert("status".into(), json!(status));
            if status == "DONE" {
                obj.insert("endTime".into(), json!(rfc3339(self.done_ms)));
            }
        }
        body
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct World {
    pub(crate) next_id: u64,
    pub(crate) next_external_ip: u32,
    /// Compute resources by path below `compute/v1/`.
    pub(crate) resources: BTreeMap<String, Value>,
    /// Instance power states by instance path.
    pub(crate) power: BTreeMap<String, Power>,
    pub(crate) operations: BTreeMap<String, StoredOp>,
    /// `project/requestId` -> operation path.
    pub(crate) request_ids: BTreeMap<String, String>,
    /// GKE clusters by `projects/p/locations/l/clusters/c`, node pools inside.
    pub(crate) clusters: BTreeMap<String, Value>,
    pub(crate) gke_operations: BTreeMap<String, GkeOp>,
    /// Health endpoints and managed instance groups (`health.rs`).
    #[serde(default)]
    pub(crate) ha: super::health::HaState,
    /// Serial port 1 of each instance, by instance path.
    #[serde(default)]
    pub(crate) serial: BTreeMap<String, SerialLog>,
    /// Shared VPC hosts and their service projects.
    #[serde(default)]
    pub(crate) xpn: super::compute::xpn::Xpn,
    /// Network Management's Connectivity Tests and their operations.
    #[serde(default)]
    pub(crate) network_management: super::networkmanagement::State,
}

/// The timing knobs the world needs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Timing {
    pub(crate) op_ms: i64,
    pub(crate) boot_ms: i64,
    pub(crate) boot_fail: bool,
}

impl World {
    pub(crate) fn new_id(&mut self) -> String {
        if self.next_id == 0 {
            self.next_id =
                1_000_000_000_000_000_000 + (now_ms().unsigned_abs() % 1_000_000) * 1_000;
        }
        self.next_id += 1;
        self.next_id.to_string()
    }

    pub(crate) fn get(&self, path: &str) -> Result<&Value, ApiError> {
        self.resources
            .get(path)
            .ok_or_else(|| ApiError::not_found(path))
    }

    /// Resources whose path is `prefix` + a name (no further `/`).
    pub(crate) fn children<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        self.resources
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .filter(move |(k, _)| !k[prefix.len()..].contains('/'))
    }

    /// Resources of `kind` in any region or zone of `project`: `(scope path like "regions/r", path, value)`.
    pub(crate) fn aggregated<'a>(
        &'a self,
        project: &'a str,
        kind: &'a str,
    ) -> impl Iterator<Item = (String, &'a String, &'a Value)> + 'a {
        let prefix = format!("projects/{project}/");
        self.resources
            .range(prefix.clone()..)
            .take_while({
                let prefix = prefix.clone();
                move |(k, _)| k.starts_with(&prefix)
            })
            .filter_map(move |(k, v)| {
                let rest = &k[prefix.len()..];
                let parts: Vec<&str> = rest.split('/').collect();
                (parts.len() == 4
                    && (parts[0] == "regions" || parts[0] == "zones")
                    && parts[2] == kind)
                    .then(|| (format!("{}/{}", parts[0], parts[1]), k, v))
            })
    }

    /// Brings every instance's boot up to date: a boot that completed captures the ready token that the
    /// metadata held at that moment (callers settle before any change, so "now" metadata is that metadata).
    /// The boot's startup script also writes its summary and ready lines to serial port 1, as natgw's script
    /// does (`console` in templates/startup.sh.j2).
    pub(crate) fn settle(&mut self, now: i64, timing: Timing) {
        for (path, power) in &mut self.power {
            if power.running && !power.booted && now >= power.since + timing.boot_ms {
                power.booted = true;
                let metadata = self.resources.get(path).and_then(|i| i.get("metadata"));
                power.ready = if timing.boot_fail {
                    None
                } else {
                    ready_token(metadata)
                };
                let lines = boot_lines(metadata, timing.boot_fail);
                self.serial.entry(path.clone()).or_default().push(&lines);
            }
        }
    }

    /// Records an operation (and its requestId) and returns its path.
    pub(crate) fn record_op(&mut self, spec: OpSpec<'_>, now: i64, timing: Timing) -> String {
        let id = self.new_id();
        let name = format!("operation-{now}-{}", &hash_hex(&[&id])[..16]);
        let project = spec.project;
        let op_path = format!("{}/operations/{name}", spec.scope.path(project));
        let mut body = json!({
            "kind": "compute#operation",
            "id": id,
            "name": name,
            "operationType": spec.op_type,
            "targetLink": format!("{COMPUTE_URL}{}", spec.target),
            "user": "natgw-emulator@example.iam.gserviceaccount.com",
            "insertTime": rfc3339(now),
            "selfLink": format!("{COMPUTE_URL}{op_path}"),
        });
        let o = obj(&mut body);
        if let Some(tid) = spec.target_id {
            o.insert("targetId".into(), json!(tid));
        }
        match spec.scope {
            Scope::Zone(z) => {
                o.insert(
                    "zone".into(),
                    json!(format!("{COMPUTE_URL}projects/{project}/zones/{z}")),
                );
            }
            Scope::Region(r) => {
                o.insert(
                    "region".into(),
                    json!(format!("{COMPUTE_URL}projects/{project}/regions/{r}")),
                );
            }
            Scope::Global => {}
        }
        if let Some(rid) = spec.request_id {
            o.insert("clientOperationId".into(), json!(rid));
        }
        self.operations.insert(
            op_path.clone(),
            StoredOp {
                body,
                insert_ms: now,
                done_ms: now + timing.op_ms,
                error: spec.error,
            },
        );
        if let Some(rid) = spec.request_id {
            self.request_ids
                .insert(format!("{project}/{rid}"), op_path.clone());
        }
        op_path
    }
}

/// What an operation is about.
pub(crate) struct OpSpec<'a> {
    pub(crate) project: &'a str,
    pub(crate) scope: &'a Scope,
    pub(crate) op_type: &'a str,
    pub(crate) target: &'a str,
    pub(crate) target_id: Option<String>,
    pub(crate) request_id: Option<&'a str>,
    pub(crate) error: Option<OpError>,
}

fn metadata_value(metadata: Option<&Value>, key: &str) -> Option<String> {
    metadata?
        .get("items")?
        .as_array()?
        .iter()
        .find(|i| i.get("key").and_then(Value::as_str) == Some(key))
        .and_then(|i| i.get("value"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The `natgw-ready-token` metadata value, if guest attributes are enabled.
pub(crate) fn ready_token(metadata: Option<&Value>) -> Option<String> {
    if metadata_value(metadata, "enable-guest-attributes")?.eq_ignore_ascii_case("true") {
        metadata_value(metadata, "natgw-ready-token")
    } else {
        None
    }
}

/// What one boot writes to serial port 1: the firmware's line, then, for a natgw gateway (it has a ready
/// token), the script's `natgw-summary:` line and, once verified, `natgw-ready: TOKEN`. The script's
/// backend, interface and ranges are not known here: the summary says `emulated` for them.
fn boot_lines(metadata: Option<&Value>, boot_fail: bool) -> String {
    let mut out = String::from("Booting from Hard Disk 0...\n");
    if let Some(token) = metadata_value(metadata, "natgw-ready-token") {
        let verify = if boot_fail {
            "failed:emulated-boot-failure"
        } else {
            "ok"
        };
        out.push_str(&format!(
            "natgw-summary: backend=emulated egress=emulated sources=emulated destinations=emulated verify={verify}\n"
        ));
        if !boot_fail {
            out.push_str(&format!("natgw-ready: {token}\n"));
        }
    }
    out
}

/// The path below `compute/v1/` that a reference names: a full URL, a partial path, or a bare name.
pub(crate) fn resolve_ref(
    reference: &str,
    project: &str,
    default_scope: &str,
    kind: &str,
) -> String {
    let r = reference.split('?').next().unwrap_or(reference);
    if let Some(i) = r.find("projects/") {
        return r[i..].trim_end_matches('/').to_string();
    }
    if r.starts_with("global/") || r.starts_with("regions/") || r.starts_with("zones/") {
        return format!("projects/{project}/{r}");
    }
    format!("projects/{project}/{default_scope}/{kind}/{r}")
}

pub(crate) fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

pub(crate) fn obj(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

pub(crate) fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The strings of a JSON array (none for anything else).
pub(crate) fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A new fingerprint for some content (unique per change thanks to the id).
pub(crate) fn fingerprint(world: &mut World, content: &Value) -> String {
    let id = world.new_id();
    let h = hash_hex(&[&id, &content.to_string()]);
    let bytes: Vec<u8> = (0..8)
        .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
        .collect();
    base64(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xfb, 0xff]), "-_8=");
    }

    #[test]
    fn fingerprints_compare_across_alphabets() {
        assert!(same_fingerprint("-_8=", "+/8"));
        assert!(!same_fingerprint("-_8=", "-_9="));
    }

    #[test]
    fn references_resolve_to_paths() {
        assert_eq!(
            resolve_ref(
                "https://www.googleapis.com/compute/v1/projects/p/global/networks/n",
                "q",
                "global",
                "networks"
            ),
            "projects/p/global/networks/n"
        );
        assert_eq!(
            resolve_ref("global/networks/n", "q", "global", "networks"),
            "projects/q/global/networks/n"
        );
        assert_eq!(
            resolve_ref("n", "q", "global", "networks"),
            "projects/q/global/networks/n"
        );
    }

    #[test]
    fn operation_status_follows_the_clock() {
        let op = StoredOp {
            body: json!({}),
            insert_ms: 1000,
            done_ms: 1300,
            error: Some(OpError::in_use("x")),
        };
        assert_eq!(op.render(1000)["status"], "PENDING");
        assert_eq!(op.render(1200)["status"], "RUNNING");
        let done = op.render(1300);
        assert_eq!(done["status"], "DONE");
        assert_eq!(done["httpErrorStatusCode"], 400);
        assert_eq!(
            done["error"]["errors"][0]["code"],
            "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE"
        );
    }

    #[test]
    fn power_status_goes_through_boot() {
        let p = Power::boot(100, true);
        assert_eq!(p.status(50, 10), "PROVISIONING");
        assert_eq!(p.status(105, 10), "STAGING");
        assert_eq!(p.status(110, 10), "RUNNING");
        let suspended = Power {
            running: false,
            suspended: true,
            ..Power::boot(200, false)
        };
        assert_eq!(suspended.status(150, 10), "SUSPENDING");
        assert_eq!(suspended.status(200, 10), "SUSPENDED");
        let resumed = Power {
            resumed: true,
            booted: true,
            ..Power::boot(300, false)
        };
        assert_eq!(resumed.status(250, 10), "PROVISIONING");
        assert_eq!(resumed.status(305, 10), "STAGING");
        assert_eq!(resumed.status(310, 10), "RUNNING");
    }

    #[test]
    fn serial_reads_follow_start_and_next() {
        let mut log = SerialLog::default();
        log.push("abc\n");
        assert_eq!(log.read(0), (0, "abc\n", 4));
        assert_eq!(log.read(2), (2, "c\n", 4));
        assert_eq!(log.read(-2), (2, "c\n", 4));
        assert_eq!(log.read(9), (4, "", 4));
        log.push(&"x".repeat(SerialLog::LIMIT));
        let (start, contents, next) = log.read(0);
        assert_eq!((start, next), (4, 4 + SerialLog::LIMIT as u64));
        assert_eq!(contents.len(), SerialLog::LIMIT);
    }
}
