//! Pure checks for single config values. Each returns the parsed value or a message that quotes the
//! value and says what is expected (no key, no location: the caller adds those).

use std::net::Ipv4Addr;

use super::{Allow, Protocol};
use crate::net::{Ipv4Net, NetError};

/// Longest name Google accepts for Compute resources, labels and network tags.
pub(crate) const MAX_NAME_LEN: usize = 63;
/// GKE cluster and node-pool names are shorter than Compute names.
pub(crate) const MAX_GKE_NAME_LEN: usize = 40;

/// A value quoted for a message: `"value"`, escaped, and shortened when long.
pub(crate) fn quote(s: &str) -> String {
    const MAX: usize = 70;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX - 3).collect();
        format!(
            "{:?} ({} characters)",
            format!("{head}..."),
            s.chars().count()
        )
    }
}

/// `[a-z]([-a-z0-9]{0,max-2}[a-z0-9])?` (with `_` inside too when `underscore`): the shape of
/// Compute resource names, network tags, gateway names and (with `_`) label values.
pub(crate) fn is_name(s: &str, max: usize, underscore: bool) -> bool {
    let b = s.as_bytes();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    b.len() <= max
        && first.is_ascii_lowercase()
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && b.iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || (underscore && c == b'_')
        })
}

/// Why `s` is not a name in the sense of [`is_name`], with a suggestion when an obvious fix exists.
fn name_problem(s: &str, what: &str, max: usize, underscore: bool) -> String {
    let allowed = if underscore {
        "lowercase letters, digits, hyphens and underscores"
    } else {
        "lowercase letters, digits and hyphens"
    };
    let rule = format!(
        "expected a {what}: 1 to {max} {allowed}, starting with a letter and ending with a letter or digit"
    );
    let q = quote(s);
    if s.is_empty() {
        return format!("the value is empty; {rule}");
    }
    let len = s.chars().count();
    if len > max {
        return format!("{q} is {len} characters long; {rule}");
    }
    let mut fixed = s.to_ascii_lowercase();
    if !underscore {
        fixed = fixed.replace('_', "-");
    }
    fixed = fixed.replace([' ', '.'], "-");
    if fixed != s && is_name(&fixed, max, underscore) {
        return format!(
            "{q} is not a valid {what}; did you mean {}? ({rule})",
            quote(&fixed)
        );
    }
    format!("{q} is not a valid {what}; {rule}")
}

pub(crate) fn check_name(s: &str, what: &str, max: usize, underscore: bool) -> Result<(), String> {
    if is_name(s, max, underscore) {
        Ok(())
    } else {
        Err(name_problem(s, what, max, underscore))
    }
}

/// A gateway's name: `[a-z]([-a-z0-9]*[a-z0-9])?`; its length is checked through the names it derives.
pub(crate) fn check_gateway_name(s: &str) -> Result<(), String> {
    check_name(s, "gateway name", MAX_NAME_LEN, false)
}

/// The `stack`: a label value (it becomes the `natgw-stack` label) that also fits in descriptions.
pub(crate) fn check_stack(s: &str) -> Result<(), String> {
    check_name(s, "stack name", MAX_NAME_LEN, true)
}

pub(crate) fn check_network_tag(s: &str) -> Result<(), String> {
    check_name(s, "network tag", MAX_NAME_LEN, false)
}

pub(crate) fn check_resource_name(s: &str) -> Result<(), String> {
    if s.contains('/') {
        return Err(format!(
            "{} looks like a path or URL; expected just the resource's name, e.g. \"vpc-network\"",
            quote(s)
        ));
    }
    check_name(s, "resource name", MAX_NAME_LEN, false)
}

pub(crate) fn check_gke_name(s: &str, what: &str) -> Result<(), String> {
    if s.contains('/') {
        return Err(format!(
            "{} looks like a path or URL; expected just the {what}",
            quote(s)
        ));
    }
    check_name(s, what, MAX_GKE_NAME_LEN, false)
}

/// `europe-west1`, `us-central1`, `northamerica-northeast2`: letters, a hyphen, letters and a number.
pub(crate) fn is_region(s: &str) -> bool {
    let Some((area, rest)) = s.split_once('-') else {
        return false;
    };
    let digits = rest.trim_start_matches(|c: char| c.is_ascii_lowercase());
    !area.is_empty()
        && area.bytes().all(|b| b.is_ascii_lowercase())
        && digits.len() < rest.len()
        && !digits.is_empty()
        && digits.len() <= 3
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Splits a zone `europe-west1-b` into its region and letter.
pub(crate) fn zone_region(s: &str) -> Option<&str> {
    let (region, letter) = s.rsplit_once('-')?;
    (letter.len() == 1 && letter.bytes().all(|b| b.is_ascii_lowercase()) && is_region(region))
        .then_some(region)
}

pub(crate) fn check_region(s: &str) -> Result<(), String> {
    if is_region(s) {
        return Ok(());
    }
    if let Some(region) = zone_region(s) {
        return Err(format!(
            "{} is a zone, not a region; did you mean {}?",
            quote(s),
            quote(region)
        ));
    }
    let lower = s.to_ascii_lowercase();
    if lower != s && is_region(&lower) {
        return Err(format!(
            "{} is not a valid region; did you mean {}?",
            quote(s),
            quote(&lower)
        ));
    }
    Err(format!(
        "{} is not a valid region; expected a region name like \"europe-west1\"",
        quote(s)
    ))
}

/// A zone, and that it lies in `region` (when the region itself is valid).
pub(crate) fn check_zone(s: &str, region: Option<&str>) -> Result<(), String> {
    let Some(zone_region) = zone_region(s) else {
        if is_region(s) {
            return Err(format!(
                "{} is a region, not a zone; expected a zone like \"{s}-b\"",
                quote(s)
            ));
        }
        let example = match region {
            Some(r) => format!("{r}-b"),
            None => "europe-west1-b".to_string(),
        };
        return Err(format!(
            "{} is not a valid zone; expected a zone name like {}",
            quote(s),
            quote(&example)
        ));
    };
    match region {
        Some(region) if region != zone_region => Err(format!(
            "zone {} is not in region {}; expected a zone of that region, like {}",
            quote(s),
            quote(region),
            quote(&format!("{region}-b"))
        )),
        _ => Ok(()),
    }
}

/// A node pool's location: the cluster's region or zone.
pub(crate) fn check_location(s: &str) -> Result<(), String> {
    if is_region(s) || zone_region(s).is_some() {
        Ok(())
    } else {
        Err(format!(
            "{} is not a valid location; expected the cluster's region (\"europe-west1\") or zone (\"europe-west1-b\")",
            quote(s)
        ))
    }
}

/// `e2-small`, `n2-standard-4`, `e2-custom-2-4096`, `f1-micro`: lowercase words joined by hyphens.
pub(crate) fn check_machine_type(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('-').collect();
    let ok = s.len() <= MAX_NAME_LEN
        && parts.len() >= 2
        && parts
            .first()
            .is_some_and(|p| p.starts_with(|c: char| c.is_ascii_lowercase()))
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if ok {
        return Ok(());
    }
    if s.contains('/') {
        return Err(format!(
            "{} looks like a path or URL; expected just the machine type's name, e.g. \"e2-small\"",
            quote(s)
        ));
    }
    let lower = s.to_ascii_lowercase();
    if lower != s && check_machine_type(&lower).is_ok() {
        return Err(format!(
            "{} is not a valid machine type; did you mean {}?",
            quote(s),
            quote(&lower)
        ));
    }
    Err(format!(
        "{} is not a valid machine type; expected a name like \"e2-small\" or \"n2-standard-2\"",
        quote(s)
    ))
}

/// An image path `projects/P/global/images/NAME` or `projects/P/global/images/family/FAMILY`, optionally
/// as a full `https://` Compute API URL.
pub(crate) fn check_image(s: &str) -> Result<(), String> {
    let path = [
        "https://www.googleapis.com/compute/v1/",
        "https://compute.googleapis.com/compute/v1/",
    ]
    .iter()
    .find_map(|prefix| s.strip_prefix(prefix))
    .unwrap_or(s);
    let parts: Vec<&str> = path.split('/').collect();
    let name_ok = |n: &str| is_name(n, MAX_NAME_LEN, false);
    let ok = match parts.as_slice() {
        ["projects", project, "global", "images", "family", family] => {
            super::validate_project_id(project).is_ok() && name_ok(family)
        }
        ["projects", project, "global", "images", image] => {
            super::validate_project_id(project).is_ok() && name_ok(image)
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not a valid image; expected \"projects/PROJECT/global/images/family/FAMILY\" or \"projects/PROJECT/global/images/IMAGE\", e.g. \"{}\"",
            quote(s),
            super::DEFAULT_IMAGE
        ))
    }
}

/// An internal IPv4 address for the gateway VM.
pub(crate) fn parse_internal_ip(s: &str) -> Result<Ipv4Addr, String> {
    let q = quote(s);
    if s.contains(':') {
        return Err(format!(
            "{q}: IPv6 is not supported yet; expected an IPv4 address like \"10.0.0.50\""
        ));
    }
    if let Some((addr, _)) = s.split_once('/') {
        return Err(format!(
            "{q} has a prefix length; expected a single address like {}",
            quote(addr)
        ));
    }
    let ip: Ipv4Addr = s.parse().map_err(|_| {
        format!("{q} is not an IPv4 address; expected an address like \"10.0.0.50\"")
    })?;
    let why = if ip.is_unspecified() {
        Some("the unspecified address")
    } else if ip.is_broadcast() {
        Some("the broadcast address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip.octets()[0] >= 240 || ip.octets()[0] == 0 {
        Some("a reserved address")
    } else {
        None
    };
    match why {
        Some(why) => Err(format!(
            "{q} is {why}; expected a free address in the subnetwork's range"
        )),
        None => Ok(ip),
    }
}

/// An IPv4 CIDR range (a bare address means /32).
pub(crate) fn parse_range(s: &str) -> Result<Ipv4Net, String> {
    let q = quote(s);
    s.parse::<Ipv4Net>().map_err(|e| match e {
        NetError::Ipv6 => format!("{q}: IPv6 is not supported yet; use IPv4 ranges"),
        NetError::Syntax => {
            format!("{q} is not an IPv4 CIDR range; expected a.b.c.d/n, e.g. \"34.120.10.0/24\"")
        }
        NetError::Prefix => {
            format!("{q} has a prefix length over 32; expected a.b.c.d/0 to a.b.c.d/32")
        }
        NetError::HostBits(net) => format!(
            "{q} has host bits set; did you mean {}?",
            quote(&net.to_string())
        ),
    })
}

/// Ranges a destination must not fall into (or, for the metadata server, contain).
const SPECIAL: &[(&str, &str)] = &[
    ("0.0.0.0/8", "the \"this network\" range"),
    ("127.0.0.0/8", "the loopback range"),
    (
        "169.254.0.0/16",
        "the link-local range, home of the metadata server",
    ),
    ("224.0.0.0/4", "the multicast range"),
    ("240.0.0.0/4", "the reserved range"),
];

/// A destination: a routable IPv4 range that is not everything.
pub(crate) fn parse_destination(s: &str) -> Result<Ipv4Net, String> {
    let net = parse_range(s)?;
    let q = quote(s);
    if net.prefix() == 0 {
        return Err(format!(
            "{q} would route all traffic through the gateway; natgw never does that: list the destination ranges"
        ));
    }
    for (special, what) in SPECIAL {
        let Ok(special) = special.parse::<Ipv4Net>() else {
            continue;
        };
        if net.prefix() >= special.prefix() && special.contains(net.addr()) {
            return Err(format!(
                "{q} is in {special}, {what}, which cannot be routed through a gateway"
            ));
        }
    }
    if net.contains(Ipv4Addr::new(169, 254, 169, 254)) {
        return Err(format!(
            "{q} contains the metadata server 169.254.169.254; routing it through the gateway would cut the nodes off it"
        ));
    }
    Ok(net)
}

/// A source range allowed to use the gateway.
pub(crate) fn parse_source_range(s: &str) -> Result<Ipv4Net, String> {
    let net = parse_range(s)?;
    if net.prefix() == 0 {
        return Err(format!(
            "{} would let anyone use the gateway (an open relay); list the runners' node and pod ranges",
            quote(s)
        ));
    }
    Ok(net)
}

/// One `allow` entry: `tcp`, `tcp:443`, `tcp:8000-8080`, `udp:53`, `icmp`.
pub(crate) fn parse_allow(s: &str) -> Result<Allow, String> {
    let q = quote(s);
    let expected = "expected \"tcp:PORT\", \"tcp:FIRST-LAST\", \"udp:PORT\", \"udp:FIRST-LAST\", \"tcp\", \"udp\" or \"icmp\"";
    let (proto, ports) = match s.split_once(':') {
        Some((p, r)) => (p, Some(r)),
        None => (s, None),
    };
    let protocol = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "icmp" => Protocol::Icmp,
        other => {
            let lower = s.to_ascii_lowercase();
            if lower != s && parse_allow(&lower).is_ok() {
                return Err(format!(
                    "{q} is not a valid allow entry; did you mean {}?",
                    quote(&lower)
                ));
            }
            if other.bytes().all(|b| b.is_ascii_digit()) && !other.is_empty() && ports.is_none() {
                return Err(format!(
                    "{q} has no protocol; did you mean {}?",
                    quote(&format!("tcp:{other}"))
                ));
            }
            return Err(format!(
                "{q} is not a valid allow entry: unknown protocol {}; {expected}",
                quote(other)
            ));
        }
    };
    let Some(ports) = ports else {
        return Ok(Allow {
            protocol,
            ports: None,
        });
    };
    if protocol == Protocol::Icmp {
        return Err(format!("{q}: icmp has no ports; write just \"icmp\""));
    }
    let port = |p: &str| -> Result<u16, String> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{q} is not a valid allow entry; {expected}"));
        }
        match p.parse::<u16>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!(
                "{q}: port {p} is out of range; expected ports 1 to 65535"
            )),
        }
    };
    let (a, b) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(ports)?;
            (p, p)
        }
    };
    if a > b {
        return Err(format!(
            "{q}: the port range is backwards; did you mean {}?",
            quote(&format!("{}:{b}-{a}", protocol.as_str()))
        ));
    }
    Ok(Allow {
        protocol,
        ports: Some((a, b)),
    })
}

/// Edit distance, for "did you mean" suggestions.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known key closest to `unknown`, if it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    let squash = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-' && *c != ' ')
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    let u = squash(unknown);
    if let Some(k) = known.iter().find(|k| squash(k) == u) {
        return Some(k);
    }
    if unknown.chars().count() > 64 {
        return None;
    }
    let (best, d) = known
        .iter()
        .map(|k| (*k, distance(&u, &squash(k))))
        .min_by_key(|(_, d)| *d)?;
    let limit = match u.chars().count() {
        0..=3 => 1,
        4..=7 => 2,
        _ => 3,
    };
    (d <= limit).then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_name("a", 63, false));
        assert!(is_name("gitlab-runner", 63, false));
        assert!(!is_name("gitlab-", 63, false));
        assert!(!is_name("1gitlab", 63, false));
        assert!(!is_name("git_lab", 63, false));
        assert!(is_name("git_lab", 63, true));
        assert!(!is_name("", 63, false));
        assert!(is_name(&"a".repeat(63), 63, false));
        assert!(!is_name(&"a".repeat(64), 63, false));
        let e = check_network_tag("GitLab_Runner").expect_err("uppercase is invalid");
        assert!(e.contains("did you mean \"gitlab-runner\"?"), "{e}");
    }

    #[test]
    fn regions_and_zones() {
        assert!(is_region("europe-west1"));
        assert!(is_region("northamerica-northeast2"));
        assert!(is_region("europe-west10"));
        assert!(!is_region("europe-west"));
        assert!(!is_region("europe-west1-b"));
        assert_eq!(zone_region("europe-west1-b"), Some("europe-west1"));
        assert_eq!(zone_region("europe-west1"), None);
        assert!(check_zone("europe-west1-b", Some("europe-west1")).is_ok());
        let e = check_zone("us-east1-b", Some("europe-west1")).expect_err("other region");
        assert!(e.contains("is not in region \"europe-west1\""), "{e}");
        let e = check_region("europe-west1-b").expect_err("a zone");
        assert!(e.contains("did you mean \"europe-west1\"?"), "{e}");
    }

    #[test]
    fn allow_entries() {
        let a = parse_allow("tcp:8000-8080").expect("valid");
        assert_eq!(a.to_string(), "tcp:8000-8080");
        assert_eq!(parse_allow("icmp").expect("valid").ports, None);
        assert_eq!(parse_allow("udp").expect("valid").ports, None);
        assert!(parse_allow("tcp:0").is_err());
        assert!(parse_allow("tcp:65536").is_err());
        assert!(parse_allow("tcp:99999999999999999999").is_err());
        assert!(parse_allow("tcp:-1").is_err());
        assert!(parse_allow("tcp:").is_err());
        assert!(parse_allow("icmp:8").is_err());
        assert!(parse_allow("sctp:1").is_err());
        let e = parse_allow("tcp:9000-8000").expect_err("backwards");
        assert!(e.contains("did you mean \"tcp:8000-9000\"?"), "{e}");
        let e = parse_allow("TCP:443").expect_err("uppercase");
        assert!(e.contains("did you mean \"tcp:443\"?"), "{e}");
        let e = parse_allow("443").expect_err("no protocol");
        assert!(e.contains("did you mean \"tcp:443\"?"), "{e}");
    }

    #[test]
    fn destinations() {
        assert!(parse_destination("34.120.10.10/32").is_ok());
        assert!(parse_destination("0.0.0.0/0").is_err());
        assert!(parse_destination("127.0.0.1/32").is_err());
        assert!(parse_destination("169.254.169.254").is_err());
        assert!(parse_destination("128.0.0.0/1").is_err());
        assert!(parse_destination("224.0.0.1").is_err());
        let e = parse_destination("2001:db8::/32").expect_err("IPv6");
        assert!(e.contains("IPv6 is not supported yet"), "{e}");
        let e = parse_destination("34.120.10.10/24").expect_err("host bits");
        assert!(e.contains("did you mean \"34.120.10.0/24\"?"), "{e}");
    }

    #[test]
    fn internal_ips() {
        assert!(parse_internal_ip("10.0.0.50").is_ok());
        assert!(parse_internal_ip("0.0.0.0").is_err());
        assert!(parse_internal_ip("255.255.255.255").is_err());
        assert!(parse_internal_ip("10.0.0.50/32").is_err());
        assert!(parse_internal_ip("fd00::1").is_err());
        assert!(parse_internal_ip("10.0.0.256").is_err());
    }

    #[test]
    fn images_and_machine_types() {
        assert!(check_image(super::super::DEFAULT_IMAGE).is_ok());
        assert!(
            check_image("projects/debian-cloud/global/images/debian-12-bookworm-v20240110").is_ok()
        );
        assert!(
            check_image("https://www.googleapis.com/compute/v1/projects/debian-cloud/global/images/family/debian-12")
                .is_ok()
        );
        assert!(check_image("debian-12").is_err());
        assert!(check_image("projects/debian-cloud/images/debian-12").is_err());
        for ok in [
            "e2-small",
            "n2-standard-4",
            "e2-custom-2-4096",
            "f1-micro",
            "c3-highcpu-4-lssd",
        ] {
            assert!(check_machine_type(ok).is_ok(), "{ok}");
        }
        for bad in [
            "e2",
            "E2-small",
            "e2--small",
            "zones/x/machineTypes/e2-small",
            "",
        ] {
            assert!(check_machine_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn suggestions() {
        let known = ["destinations", "source_ranges", "route_priority", "region"];
        assert_eq!(suggest("destination", &known), Some("destinations"));
        assert_eq!(suggest("source-ranges", &known), Some("source_ranges"));
        assert_eq!(suggest("routePriority", &known), Some("route_priority"));
        assert_eq!(suggest("regoin", &known), Some("region"));
        assert_eq!(suggest("banana", &known), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
        let long = "x".repeat(200);
        assert!(quote(&long).ends_with("(200 characters)"));
    }
}
