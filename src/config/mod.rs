//! natgw.toml: parsing and validation (pure: text in, typed config or located errors out).
//!
//! CONTRACT (other modules code against these types; keep them stable):
//! `load(path)` reads and parses a file; `parse(path_for_messages, text)` is the pure part.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::net::Ipv4Net;

pub(crate) const DEFAULT_ROUTE_PRIORITY: u32 = 900;
pub(crate) const DEFAULT_MACHINE_TYPE: &str = "e2-small";
pub(crate) const DEFAULT_IMAGE: &str = "projects/debian-cloud/global/images/family/debian-12";
pub(crate) const DEFAULT_CONNTRACK_MAX: u32 = 65_536;
pub(crate) const DEFAULT_CONNTRACK_TCP_TIMEOUT_ESTABLISHED: u32 = 3_600;
pub(crate) const DEFAULT_HEALTH_INTERVAL_SEC: u32 = 5;
pub(crate) const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
pub(crate) const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 2;
pub(crate) const DEFAULT_HEALTH_PORT: u16 = 9090;

/// A validated natgw.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    /// The file it came from, for messages.
    pub(crate) path: PathBuf,
    /// `project`; `None` means: resolve from the environment later.
    pub(crate) project: Option<String>,
    /// `stack`: the ownership scope.
    pub(crate) stack: String,
    /// `[gateways.NAME]`, ordered by name.
    pub(crate) gateways: BTreeMap<String, Gateway>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gateway {
    pub(crate) name: String,
    pub(crate) region: String,
    /// The VM's zone; with `ha`, the first of `ha.zones`.
    pub(crate) zone: String,
    /// `zones = [..]` instead of `zone`: a gateway in several zones that heals itself (README "High
    /// availability"). `None`: today's single VM.
    pub(crate) ha: Option<Ha>,
    pub(crate) network: String,
    /// `network_project`: the Shared VPC host project that holds `network` and `subnetwork`, and where the
    /// firewall rules and routes go; `None`: the stack's own project.
    pub(crate) network_project: Option<String>,
    pub(crate) subnetwork: String,
    pub(crate) internal_ip: Option<Ipv4Addr>,
    /// Sorted, no duplicates, no overlaps.
    pub(crate) destinations: Vec<Ipv4Net>,
    /// Non-empty.
    pub(crate) source_ranges: Vec<Ipv4Net>,
    /// Default: tcp:443 and tcp:22.
    pub(crate) allow: Vec<Allow>,
    pub(crate) node_tag: String,
    pub(crate) route_priority: u32,
    pub(crate) machine_type: String,
    pub(crate) image: String,
    pub(crate) node_pool: NodePoolRef,
    pub(crate) conntrack: Conntrack,
    /// `ssh`: who may reach the gateway's sshd; `None` means nobody.
    pub(crate) ssh: Option<Ssh>,
    /// `[gateways.NAME.adopt]`: existing resources this gateway takes over in place.
    pub(crate) adopt: Adopt,
}

/// Names of resources that exist already and that the gateway takes over instead of creating its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Adopt {
    pub(crate) external_address: Option<String>,
    pub(crate) internal_address: Option<String>,
    pub(crate) instance: Option<String>,
    /// Replaced make-before-break by natgw's own routes: routes cannot be edited.
    pub(crate) routes: Vec<String>,
    pub(crate) firewall: Option<String>,
}

impl Adopt {
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        *self == Adopt::default()
    }
}

/// `ssh = "iap"`: tcp:22 on the gateway is open to Google's IAP TCP forwarding range only (the
/// startup script's input filter, and a VPC firewall rule natgw owns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Ssh {
    Iap,
}

impl Ssh {
    /// The value as written in natgw.toml.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Ssh::Iap => "iap",
        }
    }

    /// Where connections may come from. IAP TCP forwarding connects from 35.235.240.0/20:
    /// <https://cloud.google.com/iap/docs/using-tcp-forwarding#create-firewall-rule>.
    pub(crate) fn source_range(self) -> Ipv4Net {
        match self {
            Ssh::Iap => Ipv4Net::new(Ipv4Addr::new(35, 235, 240, 0), 20)
                .expect("35.235.240.0/20 has no host bits set"),
        }
    }

    /// The port: sshd's.
    pub(crate) fn port(self) -> u16 {
        match self {
            Ssh::Iap => 22,
        }
    }
}

/// A gateway built to survive: one managed VM per zone, behind a load balancer when there are several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ha {
    /// In the config's order, at least one, no duplicates, all in the gateway's region.
    pub(crate) zones: Vec<String>,
    pub(crate) health_check: HealthCheck,
}

/// `[gateways.NAME.health_check]`: how Google probes each VM's health endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HealthCheck {
    pub(crate) interval_sec: u32,
    pub(crate) healthy_threshold: u32,
    pub(crate) unhealthy_threshold: u32,
    /// The port the startup script's health endpoint listens on.
    pub(crate) port: u16,
}

impl HealthCheck {
    /// Where Google's health-check probes come from, for the VM's input filter and the VPC firewall rule:
    /// <https://cloud.google.com/load-balancing/docs/health-check-concepts#ip-ranges>.
    pub(crate) fn source_ranges() -> [Ipv4Net; 2] {
        [
            Ipv4Net::new(Ipv4Addr::new(35, 191, 0, 0), 16)
                .expect("35.191.0.0/16 has no host bits set"),
            Ipv4Net::new(Ipv4Addr::new(130, 211, 0, 0), 22)
                .expect("130.211.0.0/22 has no host bits set"),
        ]
    }
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            interval_sec: DEFAULT_HEALTH_INTERVAL_SEC,
            healthy_threshold: DEFAULT_HEALTHY_THRESHOLD,
            unhealthy_threshold: DEFAULT_UNHEALTHY_THRESHOLD,
            port: DEFAULT_HEALTH_PORT,
        }
    }
}

/// One `allow` entry: `tcp:443`, `tcp:8000-8080`, `udp:53`, `icmp`, `tcp` (all ports).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Allow {
    pub(crate) protocol: Protocol,
    /// Inclusive port range; `None` means every port (and always for ICMP).
    pub(crate) ports: Option<(u16, u16)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
    Icmp,
}

impl Protocol {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.protocol.as_str())?;
        match self.ports {
            Some((a, b)) if a == b => write!(f, ":{a}"),
            Some((a, b)) => write!(f, ":{a}-{b}"),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct NodePoolRef {
    pub(crate) cluster: String,
    /// A region or a zone.
    pub(crate) location: String,
    pub(crate) name: String,
}

/// Connection-tracking sizing for the gateway VM (`[gateways.NAME.conntrack]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Conntrack {
    pub(crate) max: u32,
    pub(crate) tcp_timeout_established: u32,
}

impl Default for Conntrack {
    fn default() -> Self {
        Self {
            max: DEFAULT_CONNTRACK_MAX,
            tcp_timeout_established: DEFAULT_CONNTRACK_TCP_TIMEOUT_ESTABLISHED,
        }
    }
}

/// One problem in a config file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) path: PathBuf,
    /// 1-based; 0 when the problem is about the file as a whole.
    pub(crate) line: usize,
    pub(crate) column: usize,
    /// Dotted key, e.g. `gateways.gitlab.destinations[1]`; empty for syntax errors.
    pub(crate) key: String,
    pub(crate) message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one file (natgw reports them all at once).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) struct ConfigError {
    pub(crate) problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Reads and parses a config file.
pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
    parse(path, &read(path)?)
}

/// Reads a config file's text, with the same located errors as `load`.
pub(crate) fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![Problem {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message: match e.kind() {
                std::io::ErrorKind::NotFound => "the file does not exist; create it (examples/gitlab-runner.toml shows every field) or name another with -c FILE".to_string(),
                std::io::ErrorKind::InvalidData => "the file is not UTF-8 text".to_string(),
                _ => format!("cannot read the file: {e}"),
            },
        }],
    })
}

/// Parses and validates config text. `path` is only used in messages.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    raw::parse(path, text)
}

/// A valid Google Cloud project ID: 6 to 30 characters, lowercase letters, digits and hyphens,
/// starting with a letter and not ending with a hyphen. The message quotes the value and says what is wrong;
/// callers add where the value came from (a config key, an environment variable).
pub(crate) fn validate_project_id(id: &str) -> Result<(), String> {
    let q = fields::quote(id);
    let rule = "expected 6 to 30 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen";
    let len = id.chars().count();
    let why = if id.is_empty() {
        "it is empty".to_string()
    } else if id.bytes().all(|b| b.is_ascii_digit()) {
        "it looks like a project number; use the project ID".to_string()
    } else if id.contains(' ') {
        "it contains spaces (is it the project's display name?)".to_string()
    } else if id.bytes().any(|b| b.is_ascii_uppercase()) {
        "it contains uppercase letters".to_string()
    } else if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        format!("it contains {}", fields::quote(&c.to_string()))
    } else if !(6..=30).contains(&len) {
        format!("it is {len} characters long")
    } else if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        "it does not start with a letter".to_string()
    } else if id.ends_with('-') {
        "it ends with a hyphen".to_string()
    } else {
        return Ok(());
    };
    Err(format!("{q} is not a valid project ID: {why}; {rule}"))
}

mod fields;
pub(crate) mod names;
mod raw;
#[cfg(test)]
mod tests;
