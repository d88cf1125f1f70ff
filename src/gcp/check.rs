//! The reads of `natgw check` beyond a plan's: every route of a network (whoever made it), the node pool's
//! cluster and subnetwork, and the node VMs of its instance groups. Read-only: nothing here changes anything.

use std::net::Ipv4Addr;

use google_cloud_compute_v1::client::{InstanceGroupManagers, Subnetworks};
use google_cloud_container_v1::model as gke;

use super::observe::all_pages;
use super::{Cloud, Connection, GcpError, api_error, wire};
use crate::model::NodePoolId;
use crate::net::Ipv4Net;

/// A route of the network as route selection sees it, with its next hop in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetworkRoute {
    pub(crate) name: String,
    pub(crate) dest: Ipv4Net,
    pub(crate) priority: u32,
    pub(crate) tags: Vec<String>,
    /// `next hop 10.0.0.50`, `the default internet gateway`, ...
    pub(crate) next_hop: String,
    /// The internal IP it sends to, for a `nextHopIp` route.
    pub(crate) next_hop_ip: Option<Ipv4Addr>,
}

/// What check needs of a node pool and its cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PoolNetwork {
    /// The pool's network tags (`config.tags`).
    pub(crate) tags: Vec<String>,
    /// `projects/P/regions/R/subnetworks/S` (the cluster's `networkConfig.subnetwork`).
    pub(crate) subnetwork: String,
    /// The pool's pod range, else the cluster's.
    pub(crate) pod_range: Option<Ipv4Net>,
    /// `networkConfig.defaultSnatStatus.disabled`.
    pub(crate) default_snat_disabled: bool,
    /// The pool's managed instance groups (`instanceGroupUrls`).
    pub(crate) instance_groups: Vec<String>,
}

/// A VM of the node pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeVm {
    pub(crate) name: String,
    pub(crate) zone: String,
    pub(crate) status: String,
    pub(crate) tags: Vec<String>,
}

/// The extra clients of check, built once for a run.
#[derive(Clone, Debug)]
pub(crate) struct CheckReads {
    cloud: Cloud,
    subnetworks: Subnetworks,
    groups: InstanceGroupManagers,
}

impl CheckReads {
    pub(crate) async fn new(cloud: &Cloud) -> Result<CheckReads, GcpError> {
        let conn: &Connection = &cloud.conn;
        Ok(CheckReads {
            cloud: cloud.clone(),
            subnetworks: client!(Subnetworks, conn),
            groups: client!(InstanceGroupManagers, conn),
        })
    }

    /// Every route of `network` (a name in the stack's project, or `projects/H/global/networks/N`), whoever
    /// made it: routes.list of the network's project, kept to that network. Compute lists static and subnet
    /// routes; dynamic (Cloud Router) and peering routes are not in it.
    pub(crate) async fn network_routes(
        &self,
        network: &str,
    ) -> Result<Vec<NetworkRoute>, GcpError> {
        let c = &self.cloud;
        let project = wire::network_project(&c.project, network);
        let name = network.rsplit('/').next().unwrap_or(network);
        let suffix = format!("projects/{project}/global/networks/{name}");
        let context = format!(
            "listing the routes of network {name}{}",
            c.in_project(project)
        );
        all_pages(|token| {
            let context = context.clone();
            let suffix = suffix.clone();
            async move {
                let page = c
                    .routes
                    .list()
                    .set_project(project)
                    .set_page_token(token)
                    .send()
                    .await
                    .map_err(api_error(context))?;
                let items = page
                    .items
                    .iter()
                    .filter(|r| r.network.as_deref().is_some_and(|n| n.ends_with(&suffix)))
                    .filter_map(network_route)
                    .collect();
                Ok((items, page.next_page_token))
            }
        })
        .await
    }

    /// The node pool's tags, groups and ranges, from its cluster (one read); `None` when the cluster or the
    /// pool does not exist.
    pub(crate) async fn pool_network(
        &self,
        id: &NodePoolId,
    ) -> Result<Option<PoolNetwork>, GcpError> {
        let c = &self.cloud;
        let name = format!(
            "projects/{}/locations/{}/clusters/{}",
            c.project, id.location, id.cluster
        );
        let cluster = match c.gke.get_cluster().set_name(&name).send().await {
            Ok(cluster) => cluster,
            Err(e) if e.http_status_code() == Some(404) => return Ok(None),
            Err(e) => return Err(api_error(format!("reading cluster {}", id.cluster))(e)),
        };
        Ok(pool_network(&cluster, &id.name))
    }

    /// The primary range of a subnetwork (`projects/P/regions/R/subnetworks/S`); `None` when it does not
    /// exist.
    pub(crate) async fn subnetwork_range(&self, path: &str) -> Result<Option<Ipv4Net>, GcpError> {
        let parts: Vec<&str> = path.split('/').collect();
        let [_, project, _, region, _, name] = parts.as_slice() else {
            return Ok(None);
        };
        match self
            .subnetworks
            .get()
            .set_project(*project)
            .set_region(*region)
            .set_subnetwork(*name)
            .send()
            .await
        {
            Ok(s) => Ok(s.ip_cidr_range.as_deref().and_then(|r| r.parse().ok())),
            Err(e) if e.http_status_code() == Some(404) => Ok(None),
            Err(e) => Err(api_error(format!("reading subnetwork {name}"))(e)),
        }
    }

    /// The VMs of the node pool's groups: one listManagedInstances per group, then one filtered list of
    /// the project's instances for their tags.
    pub(crate) async fn node_vms(&self, groups: &[String]) -> Result<Vec<NodeVm>, GcpError> {
        let c = &self.cloud;
        let mut names: Vec<String> = Vec::new();
        for group in groups {
            let parts: Vec<&str> = group
                .split("projects/")
                .nth(1)
                .unwrap_or_default()
                .split('/')
                .collect();
            let [project, _, zone, _, name] = parts.as_slice() else {
                continue;
            };
            let managed = all_pages(|token| async move {
                let page = self
                    .groups
                    .list_managed_instances()
                    .set_project(*project)
                    .set_zone(*zone)
                    .set_instance_group_manager(*name)
                    .set_page_token(token)
                    .send()
                    .await
                    .map_err(api_error(format!(
                        "listing the VMs of instance group {name}"
                    )))?;
                let vms: Vec<String> = page
                    .managed_instances
                    .iter()
                    .filter_map(|m| m.instance.as_deref())
                    .map(|i| i.rsplit('/').next().unwrap_or(i).to_string())
                    .collect();
                Ok((vms, page.next_page_token))
            })
            .await?;
            names.extend(managed);
        }
        if names.is_empty() {
            return Ok(Vec::new());
        }
        // Compute names are `[a-z]([-a-z0-9]*[a-z0-9])?`: nothing to escape in the regular expression.
        let filter = format!("name eq \"{}\"", names.join("|"));
        let filter = filter.as_str();
        let mut vms = all_pages(|token| async move {
            let page = c
                .instances
                .aggregated_list()
                .set_project(&c.project)
                .set_filter(filter)
                .set_page_token(token)
                .send()
                .await
                .map_err(api_error("listing the node pool's VMs"))?;
            let items: Vec<NodeVm> = page
                .items
                .values()
                .flat_map(|s| s.instances.iter())
                .map(|i| NodeVm {
                    name: i.name.clone().unwrap_or_default(),
                    zone: i
                        .zone
                        .as_deref()
                        .map(|z| z.rsplit('/').next().unwrap_or(z).to_string())
                        .unwrap_or_default(),
                    status: i
                        .status
                        .as_ref()
                        .and_then(|s| s.name())
                        .unwrap_or("UNKNOWN")
                        .to_string(),
                    tags: i.tags.as_ref().map(|t| t.items.clone()).unwrap_or_default(),
                })
                .collect();
            Ok((items, page.next_page_token))
        })
        .await?;
        vms.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(vms)
    }
}

fn network_route(r: &google_cloud_compute_v1::model::Route) -> Option<NetworkRoute> {
    let last = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    let next_hop_ip = r.next_hop_ip.as_deref().and_then(|ip| ip.parse().ok());
    let next_hop = if let Some(ip) = &r.next_hop_ip {
        format!("next hop {ip}")
    } else if let Some(i) = &r.next_hop_instance {
        format!("next hop instance {}", last(i))
    } else if r.next_hop_gateway.is_some() {
        "the default internet gateway".to_string()
    } else if let Some(i) = &r.next_hop_ilb {
        format!("next hop load balancer {}", last(i))
    } else if let Some(n) = &r.next_hop_network {
        format!("the subnet route of {}", last(n))
    } else if let Some(p) = &r.next_hop_peering {
        format!("peering {p}")
    } else if let Some(v) = &r.next_hop_vpn_tunnel {
        format!("VPN tunnel {}", last(v))
    } else {
        "another next hop".to_string()
    };
    Some(NetworkRoute {
        name: r.name.clone()?,
        dest: r.dest_range.as_deref()?.parse().ok()?,
        // compute.v1.json, Route.priority: "Default value is 1000."
        priority: r.priority.unwrap_or(1000),
        tags: r.tags.clone(),
        next_hop,
        next_hop_ip,
    })
}

fn pool_network(cluster: &gke::Cluster, pool: &str) -> Option<PoolNetwork> {
    let np = cluster.node_pools.iter().find(|p| p.name == pool)?;
    let net = cluster.network_config.as_ref();
    let subnetwork = net
        .map(|n| n.subnetwork.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| cluster.subnetwork.clone());
    let pod = np
        .network_config
        .as_ref()
        .map(|n| n.pod_ipv4_cidr_block.as_str())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            cluster
                .ip_allocation_policy
                .as_ref()
                .map(|p| p.cluster_ipv4_cidr_block.as_str())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or(cluster.cluster_ipv4_cidr.as_str());
    Some(PoolNetwork {
        tags: np
            .config
            .as_ref()
            .map(|c| c.tags.clone())
            .unwrap_or_default(),
        subnetwork,
        pod_range: pod.parse().ok(),
        default_snat_disabled: net
            .and_then(|n| n.default_snat_status.as_ref())
            .is_some_and(|s| s.disabled),
        instance_groups: np.instance_group_urls.clone(),
    })
}
