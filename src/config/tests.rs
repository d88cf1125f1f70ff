//! Tests for natgw.toml parsing: valid configs, the bad-input corpus, and never panicking.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::{
    Adopt, Allow, ConfigError, Conntrack, DEFAULT_IMAGE, DEFAULT_MACHINE_TYPE,
    DEFAULT_ROUTE_PRIORITY, HealthCheck, Protocol, Ssh, load, parse, validate_project_id,
};
use crate::net::Ipv4Net;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("valid test range")
}

fn errors(text: &str) -> String {
    match parse(Path::new("natgw.toml"), text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

const MINIMAL: &str = r#"
stack = "ci"

[gateways.gw]
region = "europe-west1"
zone = "europe-west1-b"
network = "vpc"
subnetwork = "runners"
destinations = ["34.120.10.10/32"]
source_ranges = ["10.0.0.0/20"]
node_tag = "runner"

[gateways.gw.node_pool]
cluster = "ci"
location = "europe-west1"
name = "runners"
"#;

const FULL: &str = r#"
project = "acme-ci"
stack = "gitlab_runners-2"

[gateways.gitlab]
region = "europe-west1"
zone = "europe-west1-c"
network = "vpc-network"
subnetwork = "runners"
internal_ip = "10.0.0.50"
destinations = ["35.0.0.0/8", "34.120.10.10/32", "34.120.11.0/24"]
source_ranges = ["10.4.0.0/14", "10.0.0.0/20"]
allow = ["tcp:443", "tcp:8000-8080", "udp:53", "icmp", "udp"]
node_tag = "gitlab-runner"
route_priority = 0x10
machine_type = "n2-standard-2"
image = "https://www.googleapis.com/compute/v1/projects/debian-cloud/global/images/debian-12-bookworm-v20240110"
ssh = "iap"

[gateways.gitlab.node_pool]
cluster = "gke-gitlab-runner"
location = "europe-west1-b"
name = "runners"

[gateways.gitlab.conntrack]
max = 1_000_000
tcp_timeout_established = 600

[gateways.github]
region = "us-central1"
zone = "us-central1-a"
network = "vpc-network"
subnetwork = "runners-us"
destinations = ["140.82.112.0/20"]
source_ranges = ["10.8.0.0/20"]
node_tag = "github-runner"
route_priority = 65535

[gateways.github.node_pool]
cluster = "gke-github-runner"
location = "us-central1"
name = "runners"
"#;

/// The example's commented-out `zones` and `[gateways.gitlab.health_check]`, uncommented in place of `zone`,
/// make a valid gateway in two zones with the defaults they show.
#[test]
fn example_with_its_zones_uncommented_parses() {
    let path = manifest().join("examples/gitlab-runner.toml");
    let text = std::fs::read_to_string(&path).expect("read the example");
    let mut ha = String::new();
    let mut in_health = false;
    for line in text.lines() {
        if line.starts_with("zone ") {
            continue;
        }
        if line.starts_with("# [gateways.gitlab.health_check]") {
            in_health = true;
        }
        let uncomment = line.starts_with("# zones ") || (in_health && line.starts_with("# "));
        ha.push_str(if uncomment { &line[2..] } else { line });
        ha.push('\n');
    }
    let config = parse(&path, &ha).expect("the example with zones is valid");
    let gw = config.gateways.get("gitlab").expect("gateway gitlab");
    let h = gw.ha.as_ref().expect("zones");
    assert_eq!(h.zones, ["europe-west1-b", "europe-west1-c"]);
    assert_eq!(h.health_check, HealthCheck::default());
}

#[test]
fn example_parses() {
    let config =
        load(&manifest().join("examples/gitlab-runner.toml")).expect("the example is valid");
    assert_eq!(config.project.as_deref(), Some("acme-ci"));
    assert_eq!(config.stack, "gitlab-runners");
    let gw = config.gateways.get("gitlab").expect("gateway gitlab");
    assert_eq!(gw.name, "gitlab");
    assert_eq!(gw.internal_ip, Some(Ipv4Addr::new(10, 0, 0, 50)));
    assert_eq!(gw.destinations, vec![net("34.120.10.10/32")]);
    assert_eq!(
        gw.source_ranges,
        vec![net("10.0.0.0/20"), net("10.4.0.0/14")]
    );
    assert_eq!(gw.route_priority, 900);
    assert_eq!(gw.node_pool.cluster, "gke-gitlab-runner");
}

#[test]
fn defaults() {
    let config = parse(Path::new("natgw.toml"), MINIMAL).expect("minimal config is valid");
    assert_eq!(config.project, None);
    assert_eq!(config.path, PathBuf::from("natgw.toml"));
    let gw = config.gateways.get("gw").expect("gateway gw");
    assert_eq!(gw.internal_ip, None);
    assert_eq!(gw.route_priority, DEFAULT_ROUTE_PRIORITY);
    assert_eq!(gw.machine_type, DEFAULT_MACHINE_TYPE);
    assert_eq!(gw.image, DEFAULT_IMAGE);
    assert_eq!(gw.conntrack, Conntrack::default());
    assert_eq!(gw.conntrack.max, 65_536);
    assert_eq!(gw.conntrack.tcp_timeout_established, 3_600);
    assert_eq!(gw.ssh, None, "sshd is closed unless the config opens it");
    let allow: Vec<String> = gw.allow.iter().map(ToString::to_string).collect();
    assert_eq!(allow, ["tcp:443", "tcp:22"]);
}

#[test]
fn every_field() {
    let config = parse(Path::new("full.toml"), FULL).expect("full config is valid");
    assert_eq!(config.project.as_deref(), Some("acme-ci"));
    assert_eq!(config.stack, "gitlab_runners-2");
    let names: Vec<&String> = config.gateways.keys().collect();
    assert_eq!(names, ["github", "gitlab"]);
    let gw = config.gateways.get("gitlab").expect("gateway gitlab");
    assert_eq!(gw.zone, "europe-west1-c");
    // Sorted.
    assert_eq!(
        gw.destinations,
        vec![
            net("34.120.10.10/32"),
            net("34.120.11.0/24"),
            net("35.0.0.0/8")
        ]
    );
    // File order kept.
    assert_eq!(
        gw.source_ranges,
        vec![net("10.4.0.0/14"), net("10.0.0.0/20")]
    );
    assert_eq!(
        gw.allow,
        vec![
            Allow {
                protocol: Protocol::Tcp,
                ports: Some((443, 443))
            },
            Allow {
                protocol: Protocol::Tcp,
                ports: Some((8000, 8080))
            },
            Allow {
                protocol: Protocol::Udp,
                ports: Some((53, 53))
            },
            Allow {
                protocol: Protocol::Icmp,
                ports: None
            },
            Allow {
                protocol: Protocol::Udp,
                ports: None
            },
        ]
    );
    assert_eq!(gw.route_priority, 16);
    assert_eq!(gw.machine_type, "n2-standard-2");
    assert!(gw.image.ends_with("debian-12-bookworm-v20240110"));
    assert_eq!(gw.node_pool.location, "europe-west1-b");
    assert_eq!(gw.conntrack.max, 1_000_000);
    assert_eq!(gw.conntrack.tcp_timeout_established, 600);
    assert_eq!(gw.ssh, Some(Ssh::Iap));
    assert_eq!(Ssh::Iap.source_range(), net("35.235.240.0/20"));
    assert_eq!(Ssh::Iap.port(), 22);
    let github = config.gateways.get("github").expect("gateway github");
    assert_eq!(github.ssh, None);
    assert_eq!(github.route_priority, 65_535);
    assert_eq!(github.internal_ip, None);
}

#[test]
fn reports_every_problem_with_its_location() {
    let text = MINIMAL
        .replace("\"europe-west1-b\"", "\"us-east1-b\"")
        .replace(
            "node_tag = \"runner\"",
            "node_tag = \"Runner\"\nroute_priority = 70000\ncolour = 1",
        );
    let e = parse(Path::new("natgw.toml"), &text).expect_err("three problems");
    let shown: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "natgw.toml:6:8: gateways.gw.zone: zone \"us-east1-b\" is not in region \"europe-west1\"; expected a zone of that region, like \"europe-west1-b\"",
            "natgw.toml:11:12: gateways.gw.node_tag: \"Runner\" is not a valid network tag; did you mean \"runner\"? (expected a network tag: 1 to 63 lowercase letters, digits and hyphens, starting with a letter and ending with a letter or digit)",
            "natgw.toml:12:18: gateways.gw.route_priority: 70000 is out of range: expected 0 to 65535",
            "natgw.toml:13:1: gateways.gw.colour: unknown key \"colour\"; expected one of: region, zone, zones, network, network_project, subnetwork, internal_ip, destinations, source_ranges, allow, node_tag, route_priority, machine_type, image, node_pool, conntrack, ssh, adopt, health_check",
        ]
    );
}

#[test]
fn ssh_is_iap_or_nothing() {
    let with = |value: &str| MINIMAL.replace("node_tag = ", &format!("ssh = {value}\nnode_tag = "));
    let err = errors(&with("\"open\""));
    assert!(
        err.starts_with("natgw.toml:11:7: gateways.gw.ssh: expected \"iap\""),
        "{err}"
    );
    assert!(err.contains("found \"open\""), "{err}");
    assert!(
        errors(&with("\"IAP\"")).contains("did you mean \"iap\"?"),
        "case matters"
    );
    assert!(errors(&with("true")).contains("found boolean true"));
    let ok = parse(Path::new("natgw.toml"), &with("\"iap\"")).expect("ssh = \"iap\" is valid");
    assert_eq!(ok.gateways["gw"].ssh, Some(Ssh::Iap));
}

#[test]
fn zones_replace_zone_for_an_ha_gateway() {
    let zones = MINIMAL.replace(
        "zone = \"europe-west1-b\"",
        "zones = [\"europe-west1-b\", \"europe-west1-c\"]",
    );
    let ok = parse(Path::new("natgw.toml"), &zones).expect("zones is valid");
    let gw = &ok.gateways["gw"];
    let ha = gw.ha.as_ref().expect("zones makes an HA gateway");
    assert_eq!(ha.zones, ["europe-west1-b", "europe-west1-c"]);
    assert_eq!(gw.zone, "europe-west1-b", "zone is the first of zones");
    assert_eq!(ha.health_check, HealthCheck::default());
    assert_eq!(
        HealthCheck::source_ranges(),
        [net("35.191.0.0/16"), net("130.211.0.0/22")]
    );
    assert_eq!(
        (
            ha.health_check.interval_sec,
            ha.health_check.healthy_threshold,
            ha.health_check.unhealthy_threshold,
            ha.health_check.port
        ),
        (5, 2, 2, 9090)
    );
    let single = parse(Path::new("natgw.toml"), MINIMAL).expect("zone is valid");
    assert_eq!(single.gateways["gw"].ha, None, "zone keeps the single VM");

    let tuned = format!(
        "{zones}\n[gateways.gw.health_check]\ninterval_sec = 10\nhealthy_threshold = 3\nunhealthy_threshold = 4\nport = 8081\n"
    );
    let ok = parse(Path::new("natgw.toml"), &tuned).expect("a health_check table is valid");
    assert_eq!(
        ok.gateways["gw"].ha.as_ref().map(|h| h.health_check),
        Some(HealthCheck {
            interval_sec: 10,
            healthy_threshold: 3,
            unhealthy_threshold: 4,
            port: 8081
        })
    );
}

#[test]
fn zones_are_checked_with_their_location() {
    let both = MINIMAL.replace(
        "zone = \"europe-west1-b\"",
        "zone = \"europe-west1-b\"\nzones = [\"europe-west1-b\"]",
    );
    let err = errors(&both);
    assert!(
        err.starts_with("natgw.toml:7:9: gateways.gw.zones: zone and zones are mutually exclusive"),
        "{err}"
    );
    let with =
        |zones: &str| MINIMAL.replace("zone = \"europe-west1-b\"", &format!("zones = {zones}"));
    let err = errors(&with("[\"europe-west1-b\", \"us-east1-b\"]"));
    assert!(
        err.starts_with(
            "natgw.toml:6:28: gateways.gw.zones[1]: zone \"us-east1-b\" is not in region"
        ),
        "{err}"
    );
    let err = errors(&with("[\"europe-west1-b\", \"europe-west1-b\"]"));
    assert!(
        err.starts_with(
            "natgw.toml:6:28: gateways.gw.zones[1]: \"europe-west1-b\" is listed twice"
        ),
        "{err}"
    );
    assert!(errors(&with("[]")).contains("gateways.gw.zones: the list is empty"));
    assert!(errors(&with("\"europe-west1-b\"")).contains("did you mean [\"europe-west1-b\"]?"));
    let neither = MINIMAL.replace("zone = \"europe-west1-b\"\n", "");
    assert!(
        errors(&neither).contains("gateways.gw.zone: missing required key \"zone\""),
        "{}",
        errors(&neither)
    );
}

#[test]
fn health_check_needs_zones_and_google_s_ranges() {
    let single = format!("{MINIMAL}\n[gateways.gw.health_check]\nport = 8081\n");
    let err = errors(&single);
    assert!(
        err.contains("gateways.gw.health_check: health_check needs zones"),
        "{err}"
    );
    let zones = MINIMAL.replace("zone = \"europe-west1-b\"", "zones = [\"europe-west1-b\"]");
    let bad = format!(
        "{zones}\n[gateways.gw.health_check]\ninterval_sec = 0\nhealthy_threshold = 11\nport = 80\ntimeout = 1\n"
    );
    let err = errors(&bad);
    for expected in [
        "gateways.gw.health_check.interval_sec: 0 is out of range: expected 1 to 300 seconds",
        "gateways.gw.health_check.healthy_threshold: 11 is out of range: expected 1 to 10 probes",
        "gateways.gw.health_check.port: 80 is out of range: expected 1024 to 65535",
        "gateways.gw.health_check.timeout: unknown key",
    ] {
        assert!(err.contains(expected), "{expected} in {err}");
    }
}

#[test]
fn columns_count_characters() {
    let text = MINIMAL.replace(
        "stack = \"ci\"",
        "stack = \"ci\" # déjà vu\nproject = \"ÄCME\"",
    );
    let e = errors(&text);
    assert!(
        e.starts_with("natgw.toml:3:11: project: \"ÄCME\" is not a valid project ID"),
        "{e}"
    );
}

#[test]
fn syntax_errors_are_located() {
    let e = errors("stack = \"ci\"\n[gateways.gw\nregion = 1\n");
    assert!(e.starts_with("natgw.toml:2:"), "{e}");
    assert!(e.contains("TOML syntax error"), "{e}");
}

#[test]
fn missing_top_level_keys_name_the_file() {
    assert_eq!(
        errors("project = \"acme-ci\"\n"),
        "natgw.toml: stack: missing required key \"stack\"; expected a stack name like \"gitlab-runners\"\nnatgw.toml: gateways: missing required key \"gateways\"; expected at least one gateway table, [gateways.NAME]"
    );
}

#[test]
fn derived_names_are_checked() {
    let long = "a".repeat(39);
    let e = errors(
        &MINIMAL
            .replace("gateways.gw", &format!("gateways.{long}"))
            .replace("34.120.10.10/32", "134.120.100.100/32"),
    );
    assert!(
        e.contains(&format!(
            "natgw.toml:4:11: gateways.{long}: the derived resource name \"natgw-{long}-134-120-100-100-32\" is 64 characters long"
        )),
        "{e}"
    );
    let ok = "a".repeat(38);
    let text = MINIMAL
        .replace("gateways.gw", &format!("gateways.{ok}"))
        .replace("34.120.10.10/32", "134.120.100.100/32");
    parse(Path::new("natgw.toml"), &text).expect("63 characters is fine");
}

#[test]
fn gateways_sharing_tag_and_network_must_not_overlap() {
    let second = MINIMAL
        .replace("stack = \"ci\"", "")
        .replace("gateways.gw", "gateways.other")
        .replace("34.120.10.10/32", "34.120.10.0/24");
    let e = errors(&format!("{MINIMAL}\n{second}"));
    assert!(
        e.contains("gateways.other.destinations[0]: \"34.120.10.0/24\" overlaps gateways.gw.destinations[0] \"34.120.10.10/32\""),
        "{e}"
    );
    // Another tag: no conflict.
    let other_tag = second.replace("node_tag = \"runner\"", "node_tag = \"other\"");
    parse(Path::new("natgw.toml"), &format!("{MINIMAL}\n{other_tag}")).expect("different tags");
}

#[test]
fn project_id_messages() {
    assert!(validate_project_id("acme-ci").is_ok());
    assert!(validate_project_id("a23456789012345678901234567890").is_ok());
    for (id, why) in [
        ("", "it is empty"),
        ("acme", "it is 4 characters long"),
        ("Acme-CI", "uppercase"),
        ("123456789012", "project number"),
        ("acme ci", "spaces"),
        ("acme_ci", "it contains \"_\""),
        ("1acme-ci", "does not start with a letter"),
        ("acme-ci-", "ends with a hyphen"),
        ("a234567890123456789012345678901", "31 characters"),
    ] {
        let e = validate_project_id(id).expect_err("invalid");
        assert!(e.contains(why), "{id}: {e}");
        assert!(e.contains("expected 6 to 30"), "{e}");
    }
}

/// Every file in tests/bad-inputs/config starts with `# expect: SUBSTRING`; parsing it must fail with a
/// message containing that substring.
#[test]
fn bad_input_corpus() {
    let dir = manifest().join("tests/bad-inputs/config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the corpus directory exists")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 40, "only {} bad inputs", files.len());
    let mut failures = Vec::new();
    for file in &files {
        // Bytes, not text: the corpus holds files that are not UTF-8 too.
        let bytes = std::fs::read(file).expect("readable corpus file");
        let first =
            String::from_utf8_lossy(bytes.split(|&b| b == b'\n').next().unwrap_or_default())
                .into_owned();
        let expect = first
            .strip_prefix("# expect: ")
            .unwrap_or_else(|| panic!("{} must start with `# expect: `", file.display()));
        match load(file) {
            Ok(_) => failures.push(format!("{}: parsed without error", file.display())),
            Err(ConfigError { problems }) if problems.is_empty() => {
                failures.push(format!("{}: an error without problems", file.display()));
            }
            Err(e) => {
                let shown = e.to_string();
                if !shown.contains(expect) {
                    failures.push(format!(
                        "{}: expected {expect:?} in:\n{shown}",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Mutations of a valid config: the parser must answer, never panic.
fn mutated() -> impl Strategy<Value = String> {
    let base = FULL.to_string();
    let len = base.len();
    (0..=len, 0..=64usize, "\\PC{0,24}", any::<u8>()).prop_map(move |(at, del, insert, mode)| {
        let mut bytes = base.clone().into_bytes();
        let at = at.min(bytes.len());
        let end = (at + del).min(bytes.len());
        match mode % 4 {
            0 => {
                bytes.splice(at..end, insert.bytes());
            }
            1 => {
                bytes.splice(at..at, insert.bytes());
            }
            2 => {
                bytes.drain(at..end);
            }
            _ => {
                // Swap one value for a random one, keeping the structure around it.
                let line_end = bytes[at..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| at + p);
                bytes.splice(at..line_end, format!(" = {insert}").bytes());
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A syntactically valid config with arbitrary values in every field.
fn arbitrary_values() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        "\\PC{0,20}".prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(/[0-9]{1,2})?"
            .prop_map(|s| format!("[{s:?}]")),
        "(tcp|udp|icmp|x)(:[0-9-]{0,12})?".prop_map(|s| format!("[{s:?}]")),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("true".to_string()),
        Just("1.5".to_string()),
    ];
    proptest::collection::vec(value, 16).prop_map(|v| {
        let mut v = v.into_iter();
        let mut next = || v.next().unwrap_or_default();
        format!(
            "project = {}\nstack = {}\n[gateways.g]\nregion = {}\nzone = {}\nnetwork = {}\nsubnetwork = {}\n\
             internal_ip = {}\ndestinations = {}\nsource_ranges = {}\nallow = {}\nnode_tag = {}\n\
             route_priority = {}\nmachine_type = {}\nimage = {}\n[gateways.g.node_pool]\ncluster = {}\n\
             location = {}\nname = \"p\"\n",
            next(), next(), next(), next(), next(), next(), next(), next(), next(), next(), next(),
            next(), next(), next(), next(), next()
        )
    })
}

fn answers(text: &str) {
    match parse(Path::new("natgw.toml"), text) {
        Ok(config) => {
            for gw in config.gateways.values() {
                assert!(!gw.destinations.is_empty());
                assert!(!gw.source_ranges.is_empty());
                assert!(gw.destinations.windows(2).all(|w| w[0] < w[1]));
            }
        }
        Err(e) => {
            assert!(!e.problems.is_empty());
            for p in &e.problems {
                assert!(!p.message.is_empty());
                assert!(p.line <= text.lines().count() + 1, "{p}");
            }
        }
    }
}

proptest! {
    #[test]
    fn never_panics_on_any_string(text in "\\PC*") {
        answers(&text);
    }

    #[test]
    fn never_panics_on_mutated_configs(text in mutated()) {
        answers(&text);
    }

    #[test]
    fn never_panics_on_arbitrary_values(text in arbitrary_values()) {
        answers(&text);
    }
}

#[test]
#[ignore = "prints the corpus' messages for review"]
#[allow(clippy::print_stdout)]
fn show_corpus() {
    let dir = manifest().join("tests/bad-inputs/config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for f in files {
        match load(&f) {
            Ok(_) => println!("OK?? {}\n", f.display()),
            Err(e) => println!("{e}\n"),
        }
    }
}

#[test]
fn other_spellings_of_the_same_config() {
    // CRLF line endings, a byte-order mark, inline tables and dotted keys are all TOML.
    let crlf = MINIMAL.replace('\n', "\r\n");
    let a = parse(Path::new("natgw.toml"), &crlf).expect("CRLF");
    let b = parse(Path::new("natgw.toml"), &format!("\u{feff}{MINIMAL}")).expect("BOM");
    let inline = r#"
stack = "ci"
gateways.gw = { region = "europe-west1", zone = "europe-west1-b", network = "vpc", subnetwork = "runners", destinations = ["34.120.10.10/32"], source_ranges = ["10.0.0.0/20"], node_tag = "runner", node_pool = { cluster = "ci", location = "europe-west1", name = "runners" } }
"#;
    let c = parse(Path::new("natgw.toml"), inline).expect("inline tables");
    let expected = parse(Path::new("natgw.toml"), MINIMAL).expect("minimal");
    assert_eq!(a, expected);
    assert_eq!(b, expected);
    assert_eq!(c, expected);
    let e = errors(&crlf.replace("\"runner\"", "\"Runner\""));
    assert!(
        e.starts_with("natgw.toml:11:12: gateways.gw.node_tag:"),
        "{e}"
    );
}

#[test]
fn load_reports_unreadable_files() {
    let e = load(Path::new("/nonexistent/natgw.toml")).expect_err("no such file");
    let shown = e.to_string();
    assert!(shown.starts_with("/nonexistent/natgw.toml: "), "{shown}");
    assert!(shown.contains("does not exist"), "{shown}");
}

/// The example shows optional fields commented out with their defaults: uncommented, nothing changes.
#[test]
fn example_documents_the_defaults() {
    let path = manifest().join("examples/gitlab-runner.toml");
    let text = std::fs::read_to_string(&path).expect("the example exists");
    // `zones` and its health-check table are an alternative to `zone`, not defaults
    // (`example_with_its_zones_uncommented_parses`).
    let alternative = text
        .find("# [gateways.gitlab.health_check]")
        .unwrap_or(text.len());
    let uncommented: String = text[..alternative]
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.starts_with("zones ") => l,
            Some(rest)
                if rest.starts_with("[gateways.")
                    || rest.split_once('=').is_some_and(|(k, _)| {
                        !k.trim().is_empty()
                            && k.trim()
                                .bytes()
                                .all(|b| b.is_ascii_lowercase() || b == b'_')
                    }) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        uncommented.contains("\nroute_priority = 900"),
        "{uncommented}"
    );
    assert!(
        uncommented.contains("\n[gateways.gitlab.conntrack]"),
        "{uncommented}"
    );
    let plain = parse(&path, &text).expect("the example is valid");
    let explicit = parse(&path, &uncommented).expect("the uncommented example is valid");
    assert_eq!(plain, explicit);
}

#[test]
fn network_project_is_a_project_id() {
    let with = |value: &str| {
        MINIMAL.replace(
            "subnetwork = ",
            &format!("network_project = {value}\nsubnetwork = "),
        )
    };
    let ok = parse(Path::new("natgw.toml"), &with("\"acme-net-host\"")).expect("valid");
    assert_eq!(
        ok.gateways["gw"].network_project.as_deref(),
        Some("acme-net-host")
    );
    let plain = parse(Path::new("natgw.toml"), MINIMAL).expect("valid");
    assert_eq!(plain.gateways["gw"].network_project, None);
    let err = errors(&with("\"Net Host\""));
    assert!(
        err.starts_with(
            "natgw.toml:8:19: gateways.gw.network_project: \"Net Host\" is not a valid project ID"
        ),
        "{err}"
    );
    assert!(errors(&with("42")).contains("gateways.gw.network_project"));
}

#[test]
fn derived_names_in_a_host_project_count_the_tag() {
    let host = |name: &str| {
        MINIMAL
            .replace("gateways.gw", &format!("gateways.{name}"))
            .replace("34.120.10.10/32", "134.120.100.100/32")
            .replace(
                "subnetwork = ",
                "network_project = \"acme-net-host\"\nsubnetwork = ",
            )
    };
    let ok = "a".repeat(31);
    parse(Path::new("natgw.toml"), &host(&ok)).expect("63 characters with the tag is fine");
    let long = "a".repeat(32);
    let e = errors(&host(&long));
    assert!(
        e.contains(&format!(
            "gateways.{long}: the derived resource name \"natgw-{long}-"
        )),
        "{e}"
    );
    assert!(e.contains("is 64 characters long"), "{e}");
    // Without network_project the same name is fine.
    parse(
        Path::new("natgw.toml"),
        &MINIMAL
            .replace("gateways.gw", &format!("gateways.{long}"))
            .replace("34.120.10.10/32", "134.120.100.100/32"),
    )
    .expect("no tag, no limit");
}

#[test]
fn adopt_names_existing_resources() {
    let text = format!(
        "{MINIMAL}\n[gateways.gw.adopt]\nexternal_address = \"nat-gateway-external-address\"\ninternal_address = \"nat-gateway-internal-address\"\ninstance = \"vm-nat-gateway\"\nroutes = [\"routes-gke-gitlab-runner-to-nat-gateway\"]\nfirewall = \"allow-runners-to-nat\"\n"
    );
    let cfg = parse(Path::new("natgw.toml"), &text).expect("valid adopt table");
    let gw = &cfg.gateways["gw"];
    assert_eq!(
        gw.adopt,
        Adopt {
            external_address: Some("nat-gateway-external-address".into()),
            internal_address: Some("nat-gateway-internal-address".into()),
            instance: Some("vm-nat-gateway".into()),
            routes: vec!["routes-gke-gitlab-runner-to-nat-gateway".into()],
            firewall: Some("allow-runners-to-nat".into()),
        }
    );
    let plain = parse(Path::new("natgw.toml"), MINIMAL).expect("minimal");
    assert!(plain.gateways["gw"].adopt.is_empty());
}

#[test]
fn adopt_errors_name_the_line_and_field() {
    let text = format!(
        "{MINIMAL}\n[gateways.gw.adopt]\ninstance = \"VM_Nat\"\nroutes = [\"r1\", \"r1\"]\nfirewal = \"x\"\n"
    );
    let e = parse(Path::new("natgw.toml"), &text).expect_err("three problems");
    let shown: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "natgw.toml:19:12: gateways.gw.adopt.instance: \"VM_Nat\" is not a valid resource name; did you mean \"vm-nat\"? (expected a resource name: 1 to 63 lowercase letters, digits and hyphens, starting with a letter and ending with a letter or digit)",
            "natgw.toml:20:17: gateways.gw.adopt.routes[1]: \"r1\" is listed twice",
            "natgw.toml:21:1: gateways.gw.adopt.firewal: unknown key \"firewal\"; did you mean \"firewall\"?",
        ]
    );
}
