//! The reads of `natgw check` beyond a plan's: every route of a network (whoever made it), the node pool's
//! cluster and subnetwork, and the node VMs of its instance groups. Read-only: nothing here changes anything.

use std::net::Ipv4Addr;

use std::time::Duration;

use google_cloud_compute_v1::client::{InstanceGroupManagers, Subnetworks};
use google_cloud_container_v1::model as gke;
use google_cloud_networkmanagement_v1::client::ReachabilityService;
use google_cloud_networkmanagement_v1::model as nm;
use tokio::time::{Instant, sleep};

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

/// A Connectivity Test to run: from a VM to an address, on a protocol and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathTest {
    /// `gateway` for the test's ID.
    pub(crate) label: String,
    pub(crate) source_zone: String,
    pub(crate) source_vm: String,
    pub(crate) destination: Ipv4Addr,
    /// `TCP`, `UDP`, `ICMP`.
    pub(crate) protocol: String,
    pub(crate) port: Option<u16>,
}

/// One step of a Connectivity Test's trace, as check reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TraceStep {
    /// `APPLY_ROUTE`, `ARRIVE_AT_INSTANCE`, `DROP`, ...
    pub(crate) state: String,
    /// The route an APPLY_ROUTE step applied.
    pub(crate) route: Option<String>,
    /// The instance an instance step is at.
    pub(crate) instance: Option<String>,
    /// `DROP: NO_ROUTE`, `ABORT: ...`.
    pub(crate) cause: Option<String>,
}

/// A Connectivity Test's result: `REACHABLE`, ..., and each trace's steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PathResult {
    pub(crate) result: String,
    pub(crate) traces: Vec<Vec<TraceStep>>,
}

/// The extra clients of check, built once for a run.
#[derive(Clone, Debug)]
pub(crate) struct CheckReads {
    cloud: Cloud,
    subnetworks: Subnetworks,
    groups: InstanceGroupManagers,
    /// Built for `--connectivity-test` only.
    reachability: Option<ReachabilityService>,
}

impl CheckReads {
    pub(crate) async fn new(cloud: &Cloud, connectivity: bool) -> Result<CheckReads, GcpError> {
        let conn: &Connection = &cloud.conn;
        Ok(CheckReads {
            cloud: cloud.clone(),
            subnetworks: client!(Subnetworks, conn),
            groups: client!(InstanceGroupManagers, conn),
            reachability: if connectivity {
                Some(client!(ReachabilityService, conn))
            } else {
                None
            },
        })
    }

    /// Creates a Connectivity Test, waits for its analysis (the long-running operation), reads its traces
    /// and deletes it. The test's ID is unique per run, so a test left by an interrupted run never collides.
    pub(crate) async fn path(&self, test: &PathTest) -> Result<PathResult, GcpError> {
        let Some(client) = &self.reachability else {
            return Err(GcpError::Setup("no Network Management client".into()));
        };
        let c = &self.cloud;
        let b: [u8; 4] = rand::random();
        let id = format!("natgw-check-{}-{}", test.label, crate::hex::encode(&b));
        let parent = format!("projects/{}/locations/global", c.project);
        let context = format!("running Connectivity Test {id}");
        let mut destination = nm::Endpoint::new().set_ip_address(test.destination.to_string());
        if let Some(port) = test.port {
            destination = destination.set_port(i32::from(port));
        }
        let body = nm::ConnectivityTest::new()
            .set_description("natgw check: does a node reach the gateway? (deleted when done)")
            .set_source(nm::Endpoint::new().set_instance(format!(
                "projects/{}/zones/{}/instances/{}",
                c.project, test.source_zone, test.source_vm
            )))
            .set_destination(destination)
            .set_protocol(test.protocol.clone());
        let mut op = client
            .create_connectivity_test()
            .set_parent(&parent)
            .set_test_id(&id)
            .set_resource(body)
            .send()
            .await
            .map_err(api_error(&context))?;
        let name = format!("{parent}/connectivityTests/{id}");
        let analysed = async {
            let started = Instant::now();
            let mut delay = Duration::from_millis(250);
            while !op.done {
                if started.elapsed() > c.op_deadline {
                    return Err(GcpError::Deadline {
                        context: context.clone(),
                        after: c.op_deadline,
                    });
                }
                sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                op = client
                    .get_operation()
                    .set_name(&op.name)
                    .send()
                    .await
                    .map_err(api_error(&context))?;
            }
            if let Some(e) = op.error() {
                return Err(GcpError::Operation {
                    context: context.clone(),
                    status: None,
                    message: e.message.clone(),
                });
            }
            client
                .get_connectivity_test()
                .set_name(&name)
                .send()
                .await
                .map_err(api_error(&context))
        }
        .await;
        // Once created, the test is deleted whatever came of its analysis; the deletion's own operation is
        // not awaited.
        let deleted = client
            .delete_connectivity_test()
            .set_name(&name)
            .send()
            .await
            .map_err(api_error(format!("deleting Connectivity Test {id}")));
        let got = analysed?;
        deleted?;
        Ok(path_result(&got))
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
        let name = wire::last_segment(network);
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
                    .map(wire::last_segment)
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
                        .map(wire::last_segment)
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
    let next_hop = if let Some(ip) = &r.next_hop_ip {
        format!("next hop {ip}")
    } else if let Some(i) = &r.next_hop_instance {
        format!("next hop instance {}", wire::last_segment(i))
    } else if r.next_hop_gateway.is_some() {
        "the default internet gateway".to_string()
    } else if let Some(i) = &r.next_hop_ilb {
        format!("next hop load balancer {}", wire::last_segment(i))
    } else if let Some(n) = &r.next_hop_network {
        format!("the subnet route of {}", wire::last_segment(n))
    } else if let Some(p) = &r.next_hop_peering {
        format!("peering {p}")
    } else if let Some(v) = &r.next_hop_vpn_tunnel {
        format!("VPN tunnel {}", wire::last_segment(v))
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

fn path_result(test: &nm::ConnectivityTest) -> PathResult {
    let Some(details) = &test.reachability_details else {
        return PathResult::default();
    };
    let traces = details
        .traces
        .iter()
        .map(|t| {
            t.steps
                .iter()
                .map(|s| TraceStep {
                    state: s.state.name().unwrap_or("UNKNOWN").to_string(),
                    route: s.route().map(|r| r.display_name.clone()),
                    instance: s.instance().map(|i| i.display_name.clone()),
                    cause: s
                        .drop()
                        .map(|d| d.cause.name().unwrap_or("UNKNOWN").to_string())
                        .or_else(|| {
                            s.abort()
                                .map(|a| a.cause.name().unwrap_or("UNKNOWN").to_string())
                        }),
                })
                .collect()
        })
        .collect();
    PathResult {
        result: details.result.name().unwrap_or("UNKNOWN").to_string(),
        traces,
    }
}
