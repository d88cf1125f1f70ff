//! natgw's resource names, derived from the gateway's name (pure; the model uses exactly these).
//!
//! Every name is at most [`MAX_NAME_LEN`] characters long for a valid config: `parse` refuses gateway names
//! whose derived names would be longer.

use crate::net::Ipv4Net;

pub(crate) use super::fields::MAX_NAME_LEN;

/// The prefix of every resource natgw creates.
pub(crate) const PREFIX: &str = "natgw";

/// The gateway VM: `natgw-{gw}`.
pub(crate) fn instance(gateway: &str) -> String {
    format!("{PREFIX}-{gateway}")
}

/// The reserved external (egress) address: `natgw-{gw}-ext`.
pub(crate) fn external_address(gateway: &str) -> String {
    format!("{PREFIX}-{gateway}-ext")
}

/// The reserved internal address (the routes' next hop): `natgw-{gw}-int`.
pub(crate) fn internal_address(gateway: &str) -> String {
    format!("{PREFIX}-{gateway}-int")
}

/// The ingress firewall rule from the source ranges to the VM: `natgw-{gw}-allow`.
pub(crate) fn firewall(gateway: &str) -> String {
    format!("{PREFIX}-{gateway}-allow")
}

/// The ingress rule that opens sshd on the VM to Google's IAP TCP forwarding (`ssh = "iap"`):
/// `natgw-{gw}-ssh`. Shorter than the `-allow` rule, so it adds no length limit.
pub(crate) fn ssh_firewall(gateway: &str) -> String {
    format!("{PREFIX}-{gateway}-ssh")
}

/// The route for one destination: `natgw-{gw}-{slug}`, e.g. `natgw-gitlab-34-120-10-10-32`.
pub(crate) fn route(gateway: &str, destination: &Ipv4Net) -> String {
    format!("{PREFIX}-{gateway}-{}", destination.slug())
}

/// Every name a gateway with these destinations derives, in a fixed order.
pub(crate) fn all(gateway: &str, destinations: &[Ipv4Net]) -> Vec<String> {
    let mut names = vec![
        instance(gateway),
        external_address(gateway),
        internal_address(gateway),
        firewall(gateway),
        ssh_firewall(gateway),
    ];
    names.extend(destinations.iter().map(|d| route(gateway, d)));
    names
}

/// The longest derived name, when it is longer than Google allows.
pub(crate) fn too_long(gateway: &str, destinations: &[Ipv4Net]) -> Option<String> {
    all(gateway, destinations)
        .into_iter()
        .filter(|n| n.len() > MAX_NAME_LEN)
        .max_by_key(String::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme() {
        let d: Ipv4Net = "34.120.10.10/32".parse().expect("valid range");
        assert_eq!(instance("gitlab"), "natgw-gitlab");
        assert_eq!(external_address("gitlab"), "natgw-gitlab-ext");
        assert_eq!(internal_address("gitlab"), "natgw-gitlab-int");
        assert_eq!(firewall("gitlab"), "natgw-gitlab-allow");
        assert_eq!(route("gitlab", &d), "natgw-gitlab-34-120-10-10-32");
        assert_eq!(ssh_firewall("gitlab"), "natgw-gitlab-ssh");
        assert_eq!(all("gitlab", &[d]).len(), 6);
    }

    #[test]
    fn lengths() {
        let d: Ipv4Net = "134.120.100.100/32".parse().expect("valid range");
        // natgw- (6) + 38 + - (1) + 18 = 63
        let longest_ok = "a".repeat(38);
        assert_eq!(route(&longest_ok, &d).len(), 63);
        assert_eq!(too_long(&longest_ok, &[d]), None);
        let too = "a".repeat(39);
        assert_eq!(too_long(&too, &[d]), Some(route(&too, &d)));
        // Without routes, the firewall rule is the longest: natgw- + 51 + -allow = 63.
        assert_eq!(too_long(&"a".repeat(51), &[]), None);
        assert_eq!(too_long(&"a".repeat(52), &[]).map(|n| n.len()), Some(64));
    }
}
