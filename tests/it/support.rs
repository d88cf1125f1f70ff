//! Shared test helpers: a `natgw emulator` child process and Google clients pointed at it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use google_cloud_auth::credentials::Credentials;

use crate::harness::Natgw;

/// The project the demo world (`--seed-project`) is created in by `EmulatorProcess::seeded`.
pub(crate) const PROJECT: &str = "natgw-test";

/// A fresh directory under the system temp dir, removed by whoever owns it.
pub(crate) fn temp_dir(label: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "natgw-it-{label}-{}-{n}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// A running `natgw emulator` (killed on drop).
pub(crate) struct EmulatorProcess {
    pub(crate) url: String,
    /// The request log (one JSON line per request).
    pub(crate) log: PathBuf,
    /// A temp dir owned by this emulator (removed on drop unless `keep_dir` is set).
    pub(crate) dir: PathBuf,
    pub(crate) keep_dir: bool,
    child: Child,
    _stdout: BufReader<ChildStdout>,
}

impl EmulatorProcess {
    /// Runs `natgw emulator --listen 127.0.0.1:0 --request-log DIR/requests.jsonl EXTRA...` and waits for its
    /// `listening on URL` line.
    pub(crate) fn spawn(extra_args: &[&str]) -> EmulatorProcess {
        let dir = temp_dir("emulator");
        Self::spawn_in(dir, extra_args)
    }

    /// Like `spawn`, with the demo world of `PROJECT`: network `vpc-network`, subnetwork `runners`
    /// (europe-west1, 10.0.0.0/20), cluster `gke-gitlab-runner` (europe-west1) with node pool `runners`
    /// tagged `existing-tag`.
    pub(crate) fn seeded(extra_args: &[&str]) -> EmulatorProcess {
        let mut args = vec!["--seed-project", PROJECT];
        args.extend_from_slice(extra_args);
        Self::spawn(&args)
    }

    /// Like `spawn`, with the world described by `seed` (the JSON form of `emulator::Seed`: `project`,
    /// `networks[].{name, subnetworks[].{name, region, ip_cidr_range}}`,
    /// `clusters[].{location, name, network, node_pools[].{name, tags}}`).
    pub(crate) fn with_seed(seed: &serde_json::Value, extra_args: &[&str]) -> EmulatorProcess {
        let dir = temp_dir("emulator");
        let file = dir.join("seed.json");
        std::fs::write(&file, seed.to_string()).expect("write the seed file");
        let file = file.to_string_lossy().to_string();
        let mut args = vec!["--seed-file", file.as_str()];
        args.extend_from_slice(extra_args);
        Self::spawn_in(dir, &args)
    }

    /// Spawns in a given directory (e.g. to restart on the same `--state` file).
    pub(crate) fn spawn_in(dir: PathBuf, extra_args: &[&str]) -> EmulatorProcess {
        let log = dir.join("requests.jsonl");
        let mut child = Natgw::new(&dir)
            .args(["emulator", "--listen", "127.0.0.1:0", "--request-log"])
            .arg(&log)
            .args(extra_args)
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn natgw emulator");
        let mut stdout = BufReader::new(child.stdout.take().expect("child stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("read the emulator's first line");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the emulator: {line:?}"))
            .to_string();
        EmulatorProcess {
            url,
            log,
            dir,
            keep_dir: false,
            child,
            _stdout: stdout,
        }
    }

    /// Every request logged so far.
    pub(crate) fn requests(&self) -> Vec<serde_json::Value> {
        read_log(&self.log)
    }

    /// Sends SIGTERM (via `kill`) and waits; returns the exit status.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        self.keep_dir = true;
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for the emulator")
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The complete lines of the request log. The emulator may be appending while a test reads (a test that polls
/// for a request while natgw runs), and a reader can see the first bytes of a line before the rest: a last line
/// without its newline is not written yet, and is left for the next read.
pub(crate) fn read_log(path: &Path) -> Vec<serde_json::Value> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    String::from_utf8_lossy(&bytes[..end])
        .lines()
        .map(|l| serde_json::from_str(l).expect("a request-log line is JSON"))
        .collect()
}

/// "METHOD /path/with/*/for/names" of a logged request: what request counts are counted by.
pub(crate) fn request_kind(r: &serde_json::Value) -> String {
    let method = r.get("method").and_then(|m| m.as_str()).unwrap_or("?");
    let path = r.get("path").and_then(|m| m.as_str()).unwrap_or("?");
    let parts: Vec<&str> = path.split('/').collect();
    let shaped: Vec<&str> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let named = i > 0
                && matches!(
                    parts[i - 1],
                    "projects"
                        | "regions"
                        | "zones"
                        | "addresses"
                        | "instances"
                        | "firewalls"
                        | "routes"
                        | "operations"
                        | "locations"
                        | "clusters"
                        | "nodePools"
                );
            if named { "*" } else { p }
        })
        .collect();
    format!("{method} {}", shaped.join("/"))
}

/// A runtime for the Google clients of a synchronous test.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

pub(crate) fn anonymous() -> Credentials {
    google_cloud_auth::credentials::anonymous::Builder::new().build()
}

macro_rules! client {
    ($fn:ident, $ty:path) => {
        pub(crate) async fn $fn(url: &str) -> $ty {
            <$ty>::builder()
                .with_endpoint(url)
                .with_credentials(anonymous())
                .build()
                .await
                .expect(concat!("build ", stringify!($ty)))
        }
    };
}

client!(
    compute_addresses,
    google_cloud_compute_v1::client::Addresses
);
client!(
    compute_instances,
    google_cloud_compute_v1::client::Instances
);
client!(compute_networks, google_cloud_compute_v1::client::Networks);
client!(
    compute_subnetworks,
    google_cloud_compute_v1::client::Subnetworks
);
client!(compute_routes, google_cloud_compute_v1::client::Routes);
client!(
    compute_firewalls,
    google_cloud_compute_v1::client::Firewalls
);
client!(
    compute_zone_operations,
    google_cloud_compute_v1::client::ZoneOperations
);
client!(
    compute_region_operations,
    google_cloud_compute_v1::client::RegionOperations
);
client!(
    compute_global_operations,
    google_cloud_compute_v1::client::GlobalOperations
);
client!(compute_regions, google_cloud_compute_v1::client::Regions);
client!(compute_zones, google_cloud_compute_v1::client::Zones);
client!(
    compute_machine_types,
    google_cloud_compute_v1::client::MachineTypes
);
client!(container, google_cloud_container_v1::client::ClusterManager);
client!(compute_projects, google_cloud_compute_v1::client::Projects);
client!(
    compute_instance_group_managers,
    google_cloud_compute_v1::client::InstanceGroupManagers
);
client!(
    compute_instance_templates,
    google_cloud_compute_v1::client::InstanceTemplates
);
client!(
    compute_forwarding_rules,
    google_cloud_compute_v1::client::ForwardingRules
);

/// Waits for a global operation of `PROJECT` to end.
pub(crate) async fn wait_global(url: &str, op: google_cloud_compute_v1::model::Operation) {
    compute_global_operations(url)
        .await
        .wait()
        .set_project(PROJECT)
        .set_operation(op.name.expect("an operation name"))
        .send()
        .await
        .expect("wait for the operation");
}

/// Waits for a zonal operation of `PROJECT` to end.
pub(crate) async fn wait_zone(
    url: &str,
    zone: &str,
    op: google_cloud_compute_v1::model::Operation,
) {
    compute_zone_operations(url)
        .await
        .wait()
        .set_project(PROJECT)
        .set_zone(zone)
        .set_operation(op.name.expect("an operation name"))
        .send()
        .await
        .expect("wait for the operation");
}

/// Waits for a regional operation of `PROJECT` to end.
pub(crate) async fn wait_region(
    url: &str,
    region: &str,
    op: google_cloud_compute_v1::model::Operation,
) {
    compute_region_operations(url)
        .await
        .wait()
        .set_project(PROJECT)
        .set_region(region)
        .set_operation(op.name.expect("an operation name"))
        .send()
        .await
        .expect("wait for the operation");
}
