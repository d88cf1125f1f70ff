//! The options every command accepts, and their checks.

use std::path::PathBuf;
use std::time::Duration;

use crate::ops::ConnectOptions;

/// Options every command accepts.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Global {
    /// The config file.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        default_value = "natgw.toml",
        global = true
    )]
    pub(crate) config: PathBuf,
    /// Send every Google API call to this URL instead of Google (an emulator).
    #[arg(long, value_name = "URL", env = "NATGW_ENDPOINT", global = true, value_parser = parse_endpoint)]
    pub(crate) endpoint: Option<String>,
    /// Send no credentials (for emulators).
    #[arg(long, global = true)]
    pub(crate) anonymous: bool,
    /// Run against the embedded emulator, its world kept in FILE (default .natgw/emulator.json).
    #[arg(
        long,
        value_name = "FILE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = ".natgw/emulator.json",
        conflicts_with_all = ["endpoint", "anonymous"],
        global = true
    )]
    pub(crate) emulator: Option<PathBuf>,
    /// Print JSON on stdout.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Say more about what natgw does (never credentials).
    #[arg(short = 'v', long, global = true)]
    pub(crate) verbose: bool,
    /// No colours (also NO_COLOR).
    #[arg(long, global = true)]
    pub(crate) no_color: bool,
    /// Impersonate this service account.
    #[arg(long, value_name = "EMAIL", global = true)]
    pub(crate) impersonate_service_account: Option<String>,
    /// How long a new or restarted gateway VM may take to report ready, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 300,
        env = "NATGW_READY_TIMEOUT",
        global = true
    )]
    pub(crate) ready_timeout: u64,
    /// How long natgw keeps retrying one failing API call (429, 5xx, network), in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 120,
        env = "NATGW_RETRY_TIMEOUT",
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        global = true
    )]
    pub(crate) retry_timeout: u64,
    /// How long natgw waits for another GKE operation on a cluster (a node-pool upgrade) before it changes
    /// the cluster's node pool, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 3600,
        env = "NATGW_CLUSTER_BUSY_TIMEOUT",
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        global = true
    )]
    pub(crate) cluster_busy_timeout: u64,
    /// Changes in flight at once.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=64), global = true)]
    pub(crate) parallelism: u16,
}

impl Global {
    pub(super) fn connect(&self) -> ConnectOptions {
        ConnectOptions {
            endpoint: self.endpoint.clone(),
            anonymous: self.anonymous,
            emulator: self.emulator.clone(),
            impersonate_service_account: self.impersonate_service_account.clone(),
            retry_timeout: Duration::from_secs(self.retry_timeout),
            cluster_busy_timeout: Duration::from_secs(self.cluster_busy_timeout),
        }
    }
}

/// An `http://` or `https://` URL with a host and an optional port, nothing else (natgw appends the API
/// paths).
pub(super) fn parse_endpoint(s: &str) -> Result<String, String> {
    let example = "e.g. http://127.0.0.1:8085";
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("not an http:// or https:// URL ({example})"))?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let bad =
        || format!("expected a scheme and a host with an optional port, nothing else ({example})");
    if authority.contains(['/', '?', '#', '@']) || authority.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    let (host, port) = match authority.strip_prefix('[') {
        // An IPv6 literal: [::1]:8085
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            (
                host,
                after
                    .strip_prefix(':')
                    .or(Some(after).filter(|a| a.is_empty()))
                    .ok_or_else(bad)?,
            )
        }
        None => authority.split_once(':').unwrap_or((authority, "")),
    };
    if host.is_empty() {
        return Err(bad());
    }
    if !port.is_empty() && port.parse::<u16>().is_err() {
        return Err(format!(
            "the port {port:?} is not a number from 0 to 65535 ({example})"
        ));
    }
    Ok(s.trim_end_matches('/').to_string())
}
