//! The names natgw gives a gateway's resources: deterministic, documented, derived from the gateway's name.

use crate::net::Ipv4Net;

/// The VM, and the network tag that the firewall rule targets.
pub(crate) fn instance(gateway: &str) -> String {
    format!("natgw-{gateway}")
}

pub(crate) fn external_address(gateway: &str) -> String {
    format!("natgw-{gateway}-ext")
}

pub(crate) fn internal_address(gateway: &str) -> String {
    format!("natgw-{gateway}-int")
}

pub(crate) fn firewall(gateway: &str) -> String {
    format!("natgw-{gateway}-allow")
}

/// One route per destination range: `natgw-gitlab-34-120-10-10-32`.
pub(crate) fn route(gateway: &str, destination: &Ipv4Net) -> String {
    format!("natgw-{gateway}-{}", destination.slug())
}
