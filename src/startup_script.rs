//! The gateway VM's startup script, rendered from `templates/startup.sh.j2` (pure: no I/O).
//!
//! The rendering is deterministic: the plan compares it byte for byte with the VM's
//! `startup-script` metadata to decide whether the VM needs an update. Every value from the
//! config reaches the shell single-quoted, even though the config has validated it.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

use crate::config::{Allow, Conntrack, Gateway, HealthCheck, Protocol, Ssh};
use crate::net::Ipv4Net;

const TEMPLATE_NAME: &str = "startup.sh.j2";
const TEMPLATE: &str = include_str!("../templates/startup.sh.j2");

/// What the script needs from one gateway's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScriptInput {
    pub(crate) gateway: String,
    pub(crate) source_ranges: Vec<Ipv4Net>,
    pub(crate) destinations: Vec<Ipv4Net>,
    pub(crate) allow: Vec<Allow>,
    pub(crate) conntrack: Conntrack,
    /// What may reach the gateway itself besides loopback, replies, ICMP and DHCP.
    pub(crate) input_exceptions: Vec<InputException>,
    /// `zones`: the port of the health endpoint that Google's health checks probe. Only the port
    /// reaches the script: tuning the probes' interval or thresholds must not replace the VMs.
    pub(crate) health_port: Option<u16>,
}

/// A service of the gateway's own that one source range may reach: the script's input filter
/// accepts new connections to `protocol`/`port` from `source` and drops every other new one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct InputException {
    pub(crate) protocol: Protocol,
    pub(crate) port: u16,
    pub(crate) source: Ipv4Net,
    /// The config setting it comes from, for a comment in the script.
    pub(crate) because: String,
}

impl InputException {
    pub(crate) fn ssh(ssh: Ssh) -> Self {
        Self {
            protocol: Protocol::Tcp,
            port: ssh.port(),
            source: ssh.source_range(),
            because: format!("ssh = \"{}\"", ssh.as_str()),
        }
    }

    /// `zones`: the health endpoint, open to Google's health-check probes only.
    pub(crate) fn health_check(port: u16) -> Vec<Self> {
        HealthCheck::source_ranges()
            .into_iter()
            .map(|source| Self {
                protocol: Protocol::Tcp,
                port,
                source,
                because: "Google's health checks".to_string(),
            })
            .collect()
    }

    fn nft(&self) -> String {
        let (source, proto, port) = (self.source, self.protocol.as_str(), self.port);
        match self.protocol {
            Protocol::Icmp => format!("ip saddr {source} meta l4proto icmp"),
            Protocol::Tcp | Protocol::Udp => format!("ip saddr {source} {proto} dport {port}"),
        }
    }

    fn iptables(&self) -> String {
        let (source, proto, port) = (self.source, self.protocol.as_str(), self.port);
        match self.protocol {
            Protocol::Icmp => format!("-s {source} -p icmp"),
            Protocol::Tcp | Protocol::Udp => {
                format!("-s {source} -p {proto} -m {proto} --dport {port}")
            }
        }
    }
}

impl ScriptInput {
    /// Takes the gateway's fields; lists are sorted and deduplicated so that reordering them
    /// in natgw.toml does not change the script (and so does not update the VM).
    pub(crate) fn from_gateway(gw: &Gateway) -> Self {
        let health_port = gw.ha.as_ref().map(|ha| ha.health_check.port);
        let exceptions: Vec<InputException> = gw
            .ssh
            .into_iter()
            .map(InputException::ssh)
            .chain(
                health_port
                    .into_iter()
                    .flat_map(InputException::health_check),
            )
            .collect();
        Self {
            gateway: gw.name.clone(),
            source_ranges: sorted(&gw.source_ranges),
            destinations: sorted(&gw.destinations),
            allow: sorted(&gw.allow),
            conntrack: gw.conntrack,
            input_exceptions: sorted(&exceptions),
            health_port,
        }
    }
}

fn sorted<T: Ord + Clone>(items: &[T]) -> Vec<T> {
    let mut v = items.to_vec();
    v.sort();
    v.dedup();
    v
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ScriptError {
    #[error(
        "gateway \"{gateway}\" has no {field}, so its VM would forward nothing; add at least one entry to gateways.{gateway}.{field}"
    )]
    Empty {
        gateway: String,
        field: &'static str,
    },
    #[error("cannot render the startup script template (a bug in natgw; please report it)")]
    Template(#[source] minijinja::Error),
}

#[derive(Serialize)]
struct Context {
    gateway: String,
    source_ranges: Vec<String>,
    destinations: Vec<String>,
    allow: Vec<AllowContext>,
    input_exceptions: Vec<ExceptionContext>,
    conntrack_max: String,
    conntrack_tcp_timeout_established: String,
    health_port: Option<String>,
}

#[derive(Serialize)]
struct AllowContext {
    /// As written in natgw.toml, for a comment.
    label: String,
    /// The nftables match for it.
    nft: String,
    /// The iptables match for it.
    iptables: String,
}

#[derive(Serialize)]
struct ExceptionContext {
    /// Where it comes from and what it opens, for a comment.
    label: String,
    nft: String,
    iptables: String,
}

/// The nftables match that selects the traffic one `allow` entry permits.
fn nft_match(allow: &Allow) -> String {
    let proto = allow.protocol.as_str();
    match (allow.protocol, allow.ports) {
        (Protocol::Icmp, _) | (_, None) => format!("meta l4proto {proto}"),
        (_, Some((a, b))) if a == b => format!("{proto} dport {a}"),
        (_, Some((a, b))) => format!("{proto} dport {a}-{b}"),
    }
}

/// The iptables match that selects the traffic one `allow` entry permits.
fn iptables_match(allow: &Allow) -> String {
    let proto = allow.protocol.as_str();
    match (allow.protocol, allow.ports) {
        (Protocol::Icmp, _) | (_, None) => format!("-p {proto}"),
        (_, Some((a, b))) if a == b => format!("-p {proto} -m {proto} --dport {a}"),
        (_, Some((a, b))) => format!("-p {proto} -m {proto} --dport {a}:{b}"),
    }
}

/// Quotes a value for a POSIX shell: single quotes, with `'` written as `'\''`.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Renders the startup script for one gateway.
pub(crate) fn render(input: &ScriptInput) -> Result<String, ScriptError> {
    for (field, empty) in [
        ("source_ranges", input.source_ranges.is_empty()),
        ("destinations", input.destinations.is_empty()),
        ("allow", input.allow.is_empty()),
    ] {
        if empty {
            return Err(ScriptError::Empty {
                gateway: input.gateway.clone(),
                field,
            });
        }
    }
    let context = Context {
        gateway: input.gateway.clone(),
        source_ranges: input
            .source_ranges
            .iter()
            .map(ToString::to_string)
            .collect(),
        destinations: input.destinations.iter().map(ToString::to_string).collect(),
        allow: input
            .allow
            .iter()
            .map(|a| AllowContext {
                label: a.to_string(),
                nft: nft_match(a),
                iptables: iptables_match(a),
            })
            .collect(),
        input_exceptions: input
            .input_exceptions
            .iter()
            .map(|e| ExceptionContext {
                label: format!(
                    "{}:{} from {} ({})",
                    e.protocol.as_str(),
                    e.port,
                    e.source,
                    e.because
                ),
                nft: e.nft(),
                iptables: e.iptables(),
            })
            .collect(),
        conntrack_max: input.conntrack.max.to_string(),
        conntrack_tcp_timeout_established: input.conntrack.tcp_timeout_established.to_string(),
        health_port: input.health_port.map(|p| p.to_string()),
    };
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env.add_filter("sh", |value: String| shell_quote(&value));
    env.add_template(TEMPLATE_NAME, TEMPLATE)
        .map_err(ScriptError::Template)?;
    env.get_template(TEMPLATE_NAME)
        .and_then(|t| t.render(&context))
        .map_err(ScriptError::Template)
}

#[cfg(test)]
mod tests {
    use super::{InputException, ScriptError, ScriptInput, render, shell_quote};
    use crate::config::{Allow, Conntrack, Gateway, Ha, HealthCheck, Protocol, Ssh};
    use crate::net::Ipv4Net;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("valid test range")
    }

    fn input() -> ScriptInput {
        ScriptInput {
            gateway: "gitlab".to_string(),
            source_ranges: vec![net("10.0.0.0/20"), net("10.4.0.0/14")],
            destinations: vec![net("34.120.10.0/24"), net("35.1.2.3/32")],
            allow: vec![
                Allow {
                    protocol: Protocol::Tcp,
                    ports: Some((443, 443)),
                },
                Allow {
                    protocol: Protocol::Tcp,
                    ports: Some((8000, 8080)),
                },
                Allow {
                    protocol: Protocol::Udp,
                    ports: None,
                },
                Allow {
                    protocol: Protocol::Icmp,
                    ports: None,
                },
            ],
            conntrack: Conntrack {
                max: 131_072,
                tcp_timeout_established: 1_800,
            },
            input_exceptions: Vec::new(),
            health_port: None,
        }
    }

    fn line_starting<'a>(script: &'a str, prefix: &str) -> &'a str {
        script
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{script}"))
    }

    #[test]
    fn renders_the_config_as_quoted_shell_values() {
        let script = render(&input()).expect("renders");
        assert!(script.starts_with("#!/bin/bash\n"));
        assert!(script.contains("\nset -Eeuo pipefail\n"));
        assert_eq!(
            line_starting(&script, "readonly GATEWAY="),
            "readonly GATEWAY='gitlab'"
        );
        assert_eq!(
            line_starting(&script, "readonly SOURCE_RANGES="),
            "readonly SOURCE_RANGES=('10.0.0.0/20' '10.4.0.0/14')"
        );
        assert_eq!(
            line_starting(&script, "readonly DESTINATIONS="),
            "readonly DESTINATIONS=('34.120.10.0/24' '35.1.2.3/32')"
        );
        assert_eq!(
            line_starting(&script, "readonly ALLOW_NFT="),
            "readonly ALLOW_NFT=('tcp dport 443' 'tcp dport 8000-8080' \
             'meta l4proto udp' 'meta l4proto icmp')"
        );
        assert_eq!(
            line_starting(&script, "readonly ALLOW_IPTABLES="),
            "readonly ALLOW_IPTABLES=('-p tcp -m tcp --dport 443' \
             '-p tcp -m tcp --dport 8000:8080' '-p udp' '-p icmp')"
        );
        assert_eq!(
            line_starting(&script, "# allow = "),
            "# allow = [\"tcp:443\", \"tcp:8000-8080\", \"udp\", \"icmp\"], as nftables and as iptables matches:"
        );
        assert_eq!(
            line_starting(&script, "# The gateway's own services that are reachable: "),
            "# The gateway's own services that are reachable: none."
        );
        assert_eq!(
            line_starting(&script, "readonly INPUT_EXCEPTIONS_NFT="),
            "readonly INPUT_EXCEPTIONS_NFT=()"
        );
        assert_eq!(
            line_starting(&script, "readonly INPUT_EXCEPTIONS_IPTABLES="),
            "readonly INPUT_EXCEPTIONS_IPTABLES=()"
        );
        assert_eq!(
            line_starting(&script, "readonly CONNTRACK_MAX="),
            "readonly CONNTRACK_MAX='131072'"
        );
        assert_eq!(
            line_starting(&script, "readonly CONNTRACK_TCP_TIMEOUT_ESTABLISHED="),
            "readonly CONNTRACK_TCP_TIMEOUT_ESTABLISHED='1800'"
        );
        assert!(script.ends_with("log \"reported ready\"\n"));
    }

    #[test]
    fn the_script_does_what_the_issue_asks() {
        let script = render(&input()).expect("renders");
        for needle in [
            "net.ipv4.ip_forward = 1",
            "readonly SYSCTL_FILE=/run/sysctl.d/99-zz-natgw.conf",
            "rm -f \"${OLD_SYSCTL_FILE}\"",
            "send_redirects",
            "ip -4 route show default",
            "table ip natgw",
            "delete table ip natgw",
            "nft -f /dev/stdin",
            "DPkg::Lock::Timeout=",
            "iptables-restore -w --noflush",
            "-j MASQUERADE",
            "--ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-A NATGW-FORWARD -j DROP",
            "ensure_jump filter FORWARD NATGW-FORWARD",
            "ensure_jump filter INPUT NATGW-INPUT",
            "-A NATGW-INPUT -j DROP",
            "udp sport 67 udp dport 68 accept",
            "natgw-summary: backend=${backend} egress=${egress} sources=",
            "natgw-ready: ${token}",
            "${NATGW_SERIAL_CONSOLE:-}",
            "ensure_jump nat POSTROUTING NATGW-POSTROUTING",
            "natgw-ready-token",
            "guest-attributes/natgw/ready",
            "${NATGW_METADATA_URL:-http://metadata.google.internal}",
            "--max-time",
            "net.netfilter.nf_conntrack_max",
        ] {
            assert!(script.contains(needle), "missing {needle:?}");
        }
    }

    #[test]
    fn rendering_is_deterministic_and_ignores_config_order() {
        let a = render(&input()).expect("renders");
        assert_eq!(a, render(&input()).expect("renders"));

        let mut shuffled = input();
        shuffled.source_ranges.reverse();
        shuffled.destinations.reverse();
        shuffled.allow.reverse();
        shuffled.allow.push(shuffled.allow[0].clone());
        let b = render(&ScriptInput::from_gateway(&gateway(shuffled))).expect("renders");
        assert_eq!(a, b);
    }

    /// A gateway whose script input is `input` (but for the input exceptions, which come from
    /// `ssh` and `ha`: none here).
    fn gateway(input: ScriptInput) -> Gateway {
        Gateway {
            name: input.gateway,
            region: "europe-west1".to_string(),
            zone: "europe-west1-b".to_string(),
            ha: None,
            network: "default".to_string(),
            network_project: None,
            subnetwork: "default".to_string(),
            internal_ip: None,
            destinations: input.destinations,
            source_ranges: input.source_ranges,
            allow: input.allow,
            node_tag: "ci".to_string(),
            route_priority: 900,
            machine_type: "e2-small".to_string(),
            image: "debian-12".to_string(),
            node_pool: crate::config::NodePoolRef {
                cluster: "c".to_string(),
                location: "europe-west1".to_string(),
                name: "p".to_string(),
            },
            conntrack: input.conntrack,
            ssh: None,
            adopt: crate::config::Adopt::default(),
        }
    }

    fn ha(port: u16, interval_sec: u32) -> Ha {
        Ha {
            zones: vec!["europe-west1-b".to_string(), "europe-west1-c".to_string()],
            health_check: HealthCheck {
                port,
                interval_sec,
                ..HealthCheck::default()
            },
        }
    }

    #[test]
    fn the_health_endpoint_comes_with_zones_only() {
        let single = render(&input()).expect("renders");
        for absent in ["HEALTH_PORT", "natgw-health", "systemctl", "path_verified"] {
            assert!(!single.contains(absent), "{absent:?} without zones");
        }

        let mut gw = gateway(input());
        gw.ha = Some(ha(9191, 5));
        let from_config = ScriptInput::from_gateway(&gw);
        assert_eq!(from_config.health_port, Some(9191));
        let script = render(&from_config).expect("renders");
        assert_eq!(
            line_starting(&script, "readonly HEALTH_PORT="),
            "readonly HEALTH_PORT='9191'"
        );
        for needle in [
            "ListenStream=0.0.0.0:${HEALTH_PORT}",
            "Accept=yes",
            "ExecStart=/bin/bash ${HEALTH_DIR}/health-check",
            "ExecStart=/bin/bash ${HEALTH_DIR}/health-answer",
            "systemctl restart natgw-health-check.service natgw-health.socket",
            "declare -f log count broken nft_rule_count nft_set_holds verify_nft ipt check_rules verify_iptables",
            "readonly HEALTH_STATE=/run/natgw/health",
            "broken forwarding-off ",
            "broken no-default-route ",
            "HTTP/1.1 %s\\r\\n",
            "${#body}",
        ] {
            assert!(script.contains(needle), "missing {needle:?}");
        }
        assert!(
            script.find("set_sysctl net.ipv4.ip_forward 1")
                < script.find("systemctl restart natgw-health"),
            "the endpoint starts once forwarding is on"
        );
        assert!(
            script.find("systemctl restart natgw-health") < script.find("summary ok"),
            "before readiness"
        );
        assert_eq!(
            line_starting(&script, "readonly INPUT_EXCEPTIONS_NFT="),
            "readonly INPUT_EXCEPTIONS_NFT=('ip saddr 35.191.0.0/16 tcp dport 9191' \
             'ip saddr 130.211.0.0/22 tcp dport 9191')"
        );
        assert_eq!(
            line_starting(&script, "readonly INPUT_EXCEPTIONS_IPTABLES="),
            "readonly INPUT_EXCEPTIONS_IPTABLES=('-s 35.191.0.0/16 -p tcp -m tcp --dport 9191' \
             '-s 130.211.0.0/22 -p tcp -m tcp --dport 9191')"
        );
        assert_eq!(
            line_starting(&script, "# The gateway's own services that are reachable: "),
            "# The gateway's own services that are reachable: \
             tcp:9191 from 35.191.0.0/16 (Google's health checks), \
             tcp:9191 from 130.211.0.0/22 (Google's health checks)."
        );

        // Only the port reaches the VM: tuning the probes replaces no VM.
        gw.ha = Some(ha(9191, 30));
        assert_eq!(
            render(&ScriptInput::from_gateway(&gw)).expect("renders"),
            script
        );
        gw.ha = Some(ha(9090, 5));
        let other = render(&ScriptInput::from_gateway(&gw)).expect("renders");
        assert_eq!(
            line_starting(&other, "readonly HEALTH_PORT="),
            "readonly HEALTH_PORT='9090'"
        );
    }

    #[test]
    fn ssh_and_health_checks_are_both_exceptions() {
        let mut gw = gateway(input());
        gw.ssh = Some(Ssh::Iap);
        gw.ha = Some(ha(9090, 5));
        let sources: Vec<(u16, String)> = ScriptInput::from_gateway(&gw)
            .input_exceptions
            .iter()
            .map(|e| (e.port, e.source.to_string()))
            .collect();
        assert_eq!(
            sources,
            [
                (22, "35.235.240.0/20".to_string()),
                (9090, "35.191.0.0/16".to_string()),
                (9090, "130.211.0.0/22".to_string()),
            ]
        );
    }

    #[test]
    fn config_changes_change_the_script() {
        let base = render(&input()).expect("renders");
        let mut other = input();
        other.destinations.push(net("35.1.2.4/32"));
        assert_ne!(base, render(&other).expect("renders"));
        let mut other = input();
        other.conntrack.max = 65_536;
        assert_ne!(base, render(&other).expect("renders"));
    }

    #[test]
    fn ssh_iap_opens_port_22_to_the_iap_range_only() {
        let mut with_ssh = input();
        with_ssh.input_exceptions = vec![InputException::ssh(Ssh::Iap)];
        let script = render(&with_ssh).expect("renders");
        assert_eq!(
            line_starting(&script, "readonly INPUT_EXCEPTIONS_NFT="),
            "readonly INPUT_EXCEPTIONS_NFT=('ip saddr 35.235.240.0/20 tcp dport 22')"
        );
        assert_eq!(
            line_starting(&script, "readonly INPUT_EXCEPTIONS_IPTABLES="),
            "readonly INPUT_EXCEPTIONS_IPTABLES=('-s 35.235.240.0/20 -p tcp -m tcp --dport 22')"
        );
        assert_eq!(
            line_starting(&script, "# The gateway's own services that are reachable: "),
            "# The gateway's own services that are reachable: tcp:22 from 35.235.240.0/20 (ssh = \"iap\")."
        );
        assert_ne!(script, render(&input()).expect("renders"));
    }

    #[test]
    fn hostile_values_stay_inside_quotes() {
        assert_eq!(shell_quote("plain"), "'plain'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(rm -rf /)`x`\n"), "'$(rm -rf /)`x`\n'");
        let mut bad = input();
        bad.gateway = "x'; reboot; echo '".to_string();
        let script = render(&bad).expect("renders");
        assert_eq!(
            line_starting(&script, "readonly GATEWAY="),
            r"readonly GATEWAY='x'\''; reboot; echo '\'''"
        );
        // The name appears nowhere else unquoted.
        assert_eq!(script.matches("; reboot; echo").count(), 1);
    }

    #[test]
    fn empty_lists_are_refused_with_the_field_named() {
        let mut no_dest = input();
        no_dest.destinations.clear();
        let err = render(&no_dest).expect_err("no destinations");
        assert!(matches!(
            err,
            ScriptError::Empty {
                field: "destinations",
                ..
            }
        ));
        assert!(err.to_string().contains("gateways.gitlab.destinations"));
        let mut no_src = input();
        no_src.source_ranges.clear();
        assert!(matches!(
            render(&no_src),
            Err(ScriptError::Empty {
                field: "source_ranges",
                ..
            })
        ));
        let mut no_allow = input();
        no_allow.allow.clear();
        assert!(matches!(
            render(&no_allow),
            Err(ScriptError::Empty { field: "allow", .. })
        ));
    }
}
