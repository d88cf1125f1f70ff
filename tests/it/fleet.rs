//! A config of N gateways that share the demo world's one node pool: the fleet the request-count tests and
//! `cargo bench` (which includes this file) scale with.

use std::fmt::Write as _;

pub(crate) fn fleet_config(project: &str, stack: &str, gateways: usize) -> String {
    let mut s = format!("project = \"{project}\"\nstack = \"{stack}\"\n");
    for i in 0..gateways {
        let _ = write!(
            s,
            r#"
[gateways.gw{i}]
region = "europe-west1"
zone = "europe-west1-b"
network = "vpc-network"
subnetwork = "runners"
internal_ip = "10.0.1.{}"
destinations = ["34.120.{i}.0/24"]
source_ranges = ["10.0.0.0/20", "10.4.0.0/14"]
node_tag = "runner-gw{i}"

[gateways.gw{i}.node_pool]
cluster = "gke-gitlab-runner"
location = "europe-west1"
name = "runners"
"#,
            i + 10
        );
    }
    s
}
