//! `natgw emulator`: run the local Compute Engine + GKE API emulator until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::frontend::{ShowPlan, Terminal};
use crate::emulator::{Constraint, FaultKind, Options};
use crate::ops::{self, EmulatorOptions, OpsError};
use crate::output::Shell;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8085")]
    listen: SocketAddr,
    /// Every request waits this many milliseconds before it is answered.
    #[arg(long, default_value_t = 0)]
    api_latency_ms: u64,
    /// Each operation takes this many milliseconds from insert to DONE.
    #[arg(long, default_value_t = 0)]
    op_latency_ms: u64,
    /// Instances go from STAGING to RUNNING over this many milliseconds after their operation is DONE.
    #[arg(long, default_value_t = 0)]
    boot_ms: u64,
    /// The gateway's startup script never reports ready (no `natgw/ready` guest attribute).
    #[arg(long)]
    boot_fail: bool,
    /// Share of requests (0 to 1) that answer with an injected fault (one of --fault-kinds) before doing
    /// anything.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    fault_rate: f64,
    /// Which faults --fault-rate injects, comma-separated: rate-limit (429), backend-error (503),
    /// quota-per-minute (403 rateLimitExceeded), concurrent-operations (403
    /// CONCURRENT_OPERATIONS_QUOTA_EXCEEDED), resource-not-ready (400 resourceNotReady), cluster-busy (GKE 400
    /// FAILED_PRECONDITION).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "rate-limit,backend-error"
    )]
    fault_kinds: Vec<FaultKind>,
    /// Enforce this organization policy constraint, answering as Google does (repeatable):
    /// constraints/compute.vmExternalIpAccess, constraints/compute.vmCanIpForward,
    /// constraints/compute.disableGuestAttributesAccess, constraints/compute.restrictLoadBalancerCreationForTypes.
    #[arg(long = "org-policy", value_name = "CONSTRAINT")]
    org_policies: Vec<Constraint>,
    /// Seed of the deterministic fault choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Append one JSON line per request to this file.
    #[arg(long)]
    request_log: Option<PathBuf>,
    /// Load the world from this file if it exists, and save it there after every change.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Create this project's demo world at start: network `vpc-network`, subnetwork `runners`
    /// (europe-west1, 10.0.0.0/20), GKE cluster `gke-gitlab-runner` (europe-west1) with node pool `runners`
    /// tagged `existing-tag`. Idempotent.
    #[arg(long, value_name = "PROJECT")]
    seed_project: Option<String>,
    /// Create the world described by this JSON file at start (project, networks with subnetworks, GKE
    /// clusters with node pools; see `emulator::Seed`). Idempotent.
    #[arg(long, value_name = "FILE")]
    seed_file: Option<PathBuf>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

pub(crate) fn run(args: Args, shell: &Shell) -> Result<ExitCode, OpsError> {
    let options = EmulatorOptions {
        listen: args.listen,
        options: Options {
            api_latency: Duration::from_millis(args.api_latency_ms),
            op_latency: Duration::from_millis(args.op_latency_ms),
            boot: Duration::from_millis(args.boot_ms),
            boot_fail: args.boot_fail,
            fault_rate: args.fault_rate,
            fault_kinds: args.fault_kinds,
            org_policies: args.org_policies,
            seed: args.seed,
            request_log: args.request_log,
            state: args.state,
        },
        seed_project: args.seed_project,
        seed_file: args.seed_file,
    };
    let frontend = Terminal {
        shell: shell.clone(),
        show_plan: ShowPlan::Result,
    };
    ops::emulator(options, &frontend)?;
    Ok(ExitCode::SUCCESS)
}
