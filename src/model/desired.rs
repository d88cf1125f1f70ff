//! What a gateway's config implies in Google Cloud (pure).

use sha2::{Digest, Sha256};

use super::ownership::{KEY_IMAGE, KEY_ROLE, Owner};
use super::{Address, AddressType, Firewall, Instance, NodePoolId, Route};
use crate::config::{self, names};

/// The `natgw-role` of the IAP ssh rule.
pub(crate) const ROLE_SSH: &str = "ssh";

/// The priority of the ingress rule (Google's default).
pub(crate) const FIREWALL_PRIORITY: u32 = 1000;

/// Every resource of one gateway, as the config wants it. Values only known once Google has made them
/// (an internal address that Google picks) are `None`; the plan fills them in from what it observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DesiredGateway {
    pub(crate) owner: Owner,
    pub(crate) external_address: Address,
    pub(crate) internal_address: Address,
    pub(crate) firewall: Firewall,
    /// `ssh = "iap"`: the VPC rule that lets IAP's TCP forwarding reach sshd (the VM's own input filter opens
    /// the same port to the same range only).
    pub(crate) ssh_firewall: Option<Firewall>,
    pub(crate) instance: Instance,
    pub(crate) routes: Vec<Route>,
    pub(crate) node_pool: NodePoolId,
    pub(crate) node_tag: String,
    /// Existing resources taken over in place; their names replace natgw's derived ones.
    pub(crate) adopt: config::Adopt,
    /// `zones = [..]`: the managed groups and load balancer that replace the single VM. With it, the plan
    /// ignores `external_address`, `internal_address` and `instance` (the firewall rules, routes and node
    /// pool are the same).
    pub(crate) ha: Option<super::ha::DesiredHa>,
}

/// The token the VM reports in the guest attribute `natgw/ready` once its startup script has finished:
/// derived from the script, so a new script means a new token and a reboot proves the new script runs.
pub(crate) fn ready_token(startup_script: &str) -> String {
    let digest = Sha256::digest(startup_script.as_bytes());
    crate::hex::encode(&digest[..8])
}

/// The Shared VPC host project of a gateway, when it names one other than `project`.
pub(crate) fn host_project<'a>(project: &str, gw: &'a config::Gateway) -> Option<&'a str> {
    gw.network_project.as_deref().filter(|h| *h != project)
}

/// `project`: the stack's project, where the addresses, the VM and the node pool are. With a Shared VPC
/// host project, the network and subnetwork are named by their path in the host, where the firewall rules
/// and routes go (`gcp` sends each to its network's project), with names that carry the stack's host tag.
pub(crate) fn gateway(
    project: &str,
    stack: &str,
    gw: &config::Gateway,
    startup_script: String,
) -> DesiredGateway {
    let host = host_project(project, gw);
    let tag = host.map(|_| names::host_tag(project, stack));
    let tag = tag.as_deref();
    let (network, subnetwork) = match host {
        Some(h) => (
            format!("projects/{h}/global/networks/{}", gw.network),
            format!(
                "projects/{h}/regions/{}/subnetworks/{}",
                gw.region, gw.subnetwork
            ),
        ),
        None => (gw.network.clone(), gw.subnetwork.clone()),
    };
    let owner = Owner {
        stack: stack.to_string(),
        gateway: gw.name.clone(),
    };
    let labels = owner.labels();
    let adopted = |name: &Option<String>, derived: String| name.clone().unwrap_or(derived);
    let vm_name = adopted(&gw.adopt.instance, names::instance(&gw.name));
    let external_address = Address {
        name: adopted(
            &gw.adopt.external_address,
            names::external_address(&gw.name),
        ),
        region: gw.region.clone(),
        address_type: AddressType::External,
        subnetwork: None,
        address: None,
        description: format!("natgw gateway {}: egress address", gw.name),
        labels: labels.clone(),
    };
    let internal_address = Address {
        name: adopted(
            &gw.adopt.internal_address,
            names::internal_address(&gw.name),
        ),
        region: gw.region.clone(),
        address_type: AddressType::Internal,
        subnetwork: Some(subnetwork.clone()),
        address: gw.internal_ip,
        description: format!("natgw gateway {}: next hop of its routes", gw.name),
        labels: labels.clone(),
    };
    let mut allowed: Vec<String> = gw.allow.iter().map(ToString::to_string).collect();
    allowed.sort();
    allowed.dedup();
    let firewall = Firewall {
        name: adopted(&gw.adopt.firewall, names::firewall(&gw.name, tag)),
        network: network.clone(),
        priority: FIREWALL_PRIORITY,
        source_ranges: gw.source_ranges.clone(),
        allowed,
        target_tags: vec![vm_name.clone()],
        // The node-pool record is added by the plan, which knows whether the tag was already there.
        description: owner.description(&[]),
    };
    let ssh_firewall = gw.ssh.map(|ssh| Firewall {
        name: names::ssh_firewall(&gw.name, tag),
        network: network.clone(),
        priority: FIREWALL_PRIORITY,
        source_ranges: vec![ssh.source_range()],
        allowed: vec![format!("tcp:{}", ssh.port())],
        target_tags: vec![vm_name.clone()],
        description: owner.description(&[(KEY_ROLE, ROLE_SSH.to_string())]),
    });
    let instance = Instance {
        name: vm_name.clone(),
        zone: gw.zone.clone(),
        machine_type: gw.machine_type.clone(),
        image: gw.image.clone(),
        network: network.clone(),
        subnetwork,
        network_ip: gw.internal_ip,
        nat_ip: None,
        can_ip_forward: true,
        shielded_vm: true,
        service_account: false,
        tags: vec![vm_name],
        labels,
        ready_token: ready_token(&startup_script),
        startup_script,
        description: owner.description(&[(KEY_IMAGE, gw.image.clone())]),
        status: "RUNNING".to_string(),
        restart_pending: false,
    };
    let ha = gw.ha.as_ref().map(|ha| {
        super::ha::desired(
            gw,
            ha,
            &super::ha::Base {
                owner: &owner,
                network: &network,
                subnetwork: &instance.subnetwork,
                host_tag: tag,
                vm_tag: &instance.name,
                startup_script: &instance.startup_script,
                ready_token: &instance.ready_token,
            },
        )
    });
    let next_hop_ilb = ha.as_ref().and_then(|h| h.next_hop_ilb(project));
    let routes = gw
        .destinations
        .iter()
        .map(|dest| Route {
            name: if ha.is_some() {
                names::zones_route(&gw.name, tag, dest, next_hop_ilb.is_some())
            } else {
                names::route(&gw.name, tag, dest)
            },
            network: network.clone(),
            dest_range: *dest,
            next_hop_ip: if next_hop_ilb.is_some() {
                None
            } else {
                gw.internal_ip
            },
            next_hop_ilb: next_hop_ilb.clone(),
            priority: gw.route_priority,
            tags: vec![gw.node_tag.clone()],
            description: owner.description(&[]),
        })
        .collect();
    DesiredGateway {
        owner,
        external_address,
        internal_address,
        firewall,
        ssh_firewall,
        instance,
        routes,
        node_pool: NodePoolId {
            location: gw.node_pool.location.clone(),
            cluster: gw.node_pool.cluster.clone(),
            name: gw.node_pool.name.clone(),
        },
        node_tag: gw.node_tag.clone(),
        adopt: gw.adopt.clone(),
        ha,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn example() -> config::Config {
        let text = include_str!("../../examples/gitlab-runner.toml");
        config::parse(std::path::Path::new("natgw.toml"), text).expect("the example parses")
    }

    #[test]
    fn derives_names_and_ownership() {
        let cfg = example();
        let gw = cfg.gateways.get("gitlab").expect("gitlab gateway");
        let d = gateway("acme-ci", &cfg.stack, gw, "#!/bin/bash\n".into());
        assert_eq!(d.external_address.name, "natgw-gitlab-ext");
        assert_eq!(d.internal_address.name, "natgw-gitlab-int");
        assert_eq!(
            d.internal_address.address,
            Some("10.0.0.50".parse().expect("ip"))
        );
        assert_eq!(d.firewall.name, "natgw-gitlab-allow");
        assert_eq!(d.firewall.allowed, vec!["tcp:22", "tcp:443"]);
        assert_eq!(d.firewall.target_tags, vec!["natgw-gitlab"]);
        assert_eq!(d.instance.name, "natgw-gitlab");
        assert!(d.instance.can_ip_forward && d.instance.shielded_vm && !d.instance.service_account);
        assert_eq!(d.routes.len(), 1);
        assert_eq!(d.routes[0].name, "natgw-gitlab-34-120-10-10-32");
        assert_eq!(d.routes[0].tags, vec!["gitlab-runner"]);
        assert_eq!(d.routes[0].priority, 900);
        assert_eq!(
            d.instance.labels.get("natgw-stack").map(String::as_str),
            Some("gitlab-runners")
        );
        assert!(
            d.instance
                .description
                .contains("natgw-image=projects/debian-cloud/global/images/family/debian-12")
        );
    }

    #[test]
    fn shared_vpc_puts_the_network_side_in_the_host_project() {
        let mut cfg = example();
        let gw = cfg.gateways.get_mut("gitlab").expect("gitlab gateway");
        gw.network_project = Some("net-host".into());
        let gw = gw.clone();
        let d = gateway("svc-a", &cfg.stack, &gw, "#!/bin/bash\n".into());
        let tag = names::host_tag("svc-a", &cfg.stack);
        assert_eq!(d.firewall.name, format!("natgw-gitlab-{tag}-allow"));
        assert_eq!(
            d.firewall.network,
            "projects/net-host/global/networks/vpc-network"
        );
        assert_eq!(
            d.routes[0].name,
            format!("natgw-gitlab-{tag}-34-120-10-10-32")
        );
        assert_eq!(d.routes[0].network, d.firewall.network);
        assert_eq!(d.instance.network, d.firewall.network);
        assert_eq!(
            d.instance.subnetwork,
            format!(
                "projects/net-host/regions/{}/subnetworks/{}",
                gw.region, gw.subnetwork
            )
        );
        assert_eq!(
            d.internal_address.subnetwork.as_deref(),
            Some(d.instance.subnetwork.as_str())
        );
        // What stays in the service project keeps its name.
        assert_eq!(d.instance.name, "natgw-gitlab");
        assert_eq!(d.external_address.name, "natgw-gitlab-ext");
        // Another service project with the same stack and gateway gets other names in the host.
        let other = gateway("svc-b", &cfg.stack, &gw, "#!/bin/bash\n".into());
        assert_ne!(other.firewall.name, d.firewall.name);
        assert_ne!(other.routes[0].name, d.routes[0].name);
        // Naming the stack's own project is no Shared VPC.
        let same = gateway("net-host", &cfg.stack, &gw, "#!/bin/bash\n".into());
        assert_eq!(same.firewall.name, "natgw-gitlab-allow");
        assert_eq!(same.firewall.network, "vpc-network");
    }

    #[test]
    fn ready_token_follows_the_script() {
        assert_eq!(ready_token("a"), ready_token("a"));
        assert_ne!(ready_token("a"), ready_token("b"));
        assert_eq!(ready_token("a").len(), 16);
    }
}
