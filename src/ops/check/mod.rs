//! `check`: do the runners reach their destinations through the gateway right now, and if not, why? Reads
//! only: a plan's observation round, then per gateway its VM, the network's routes, the node pool's cluster,
//! subnetwork and VMs. Nothing here sends a change.
//!
//! A read Google refuses (an organization policy, a missing permission) becomes a finding that names the
//! constraint or the permission; any other failure is an error.

mod judge;

use std::path::PathBuf;
use std::sync::Arc;

use futures::future::try_join_all;

use super::context::{self, Loaded};
use super::session::Session;
use super::{ConnectOptions, Frontend, OpsError, runtime};
use crate::apply::ready::SerialReader;
use crate::config;
use crate::gcp::check::{CheckReads, NodeVm, PathTest, PoolNetwork};
use crate::gcp::{Cloud, GcpError, Ready};
use crate::model::desired::DesiredGateway;
use crate::model::ha::DesiredHa;
use crate::model::observed::Observation;
use crate::plan::Plan;
use crate::render::check::{Check, Finding, GatewayReport, Report};
use judge::VmState;

#[derive(Clone, Debug, Default)]
pub(crate) struct CheckOptions {
    pub(crate) config: PathBuf,
    pub(crate) connect: ConnectOptions,
    /// One gateway of the config; all of them when `None`.
    pub(crate) gateway: Option<String>,
    /// Also run a Connectivity Test from a node to each destination.
    pub(crate) connectivity_test: bool,
}

/// Checks every gateway asked for.
pub(crate) fn check(
    options: &CheckOptions,
    frontend: &Arc<dyn Frontend>,
) -> Result<Report, OpsError> {
    let loaded = context::load(&options.config)?;
    if let Some(name) = &options.gateway {
        super::output::check_gateway(&loaded, name)?;
    }
    runtime(Some(2))?.block_on(async {
        let session = Session::open(&options.connect, &loaded, frontend).await?;
        let result = run(&session, &loaded, options, frontend.as_ref()).await;
        session.finish().await?;
        result
    })
}

async fn run(
    session: &Session,
    loaded: &Loaded,
    options: &CheckOptions,
    frontend: &dyn Frontend,
) -> Result<Report, OpsError> {
    // A refused read of the plan is one finding, each gateway's drift with its own resource.
    let plan = match super::plan::make(session, loaded, false, frontend).await {
        Ok(plan) => Ok(plan),
        Err(OpsError::Gcp(e)) if refused(&e) => Err(blocked(Check::Drift, "", e)?),
        Err(e) => return Err(e),
    };
    let reads = CheckReads::new(&session.cloud, options.connectivity_test).await?;
    let (reads, plan) = (&reads, plan.as_ref());
    // The gateways are checked at once, each reading what it can at once; the report keeps the config's order.
    let checks = loaded.selected(options.gateway.as_ref()).filter_map(|gw| {
        let config = loaded.config.gateways.get(&gw.owner.gateway)?;
        Some(async move {
            let (mut findings, nodes) = gateway(&session.cloud, reads, gw, config, plan).await?;
            if options.connectivity_test {
                findings.extend(paths(reads, gw, config, nodes).await?);
            }
            Ok::<_, OpsError>(GatewayReport {
                gateway: gw.owner.gateway.clone(),
                findings,
            })
        })
    });
    Ok(Report {
        gateways: try_join_all(checks).await?,
    })
}

/// Google refused the call for a reason outside natgw: an organization policy, or a missing permission.
fn refused(e: &GcpError) -> bool {
    matches!(e, GcpError::OrgPolicy { .. }) || e.status() == Some(403)
}

/// The finding for a read Google refused, or the error back.
fn blocked(check: Check, resource: &str, e: GcpError) -> Result<Finding, OpsError> {
    if !refused(&e) {
        return Err(e.into());
    }
    let fix = if matches!(e, GcpError::OrgPolicy { .. }) {
        "ask for the exception above, or run natgw check where the policy allows the read."
    } else {
        "grant natgw's identity the permission Google names (README, \"The IAM permissions natgw needs\": check needs plan's reads and those listed for check)."
    };
    Ok(Finding::blocked(check, resource, format!("{e}."), fix))
}

/// The node pool's VMs as `gateway` read them, for the Connectivity Tests' source.
enum Nodes {
    /// The node pool does not exist (its tag finding says so).
    NoPool,
    /// Google refused to read the pool or its VMs: the tag finding that says so.
    Refused(Finding),
    Read(Vec<NodeVm>),
}

/// One gateway's findings, in debugging order, and the node VMs it read.
async fn gateway(
    cloud: &Cloud,
    reads: &CheckReads,
    gw: &DesiredGateway,
    config: &config::Gateway,
    plan: Result<&Plan, &Finding>,
) -> Result<(Vec<Finding>, Nodes), OpsError> {
    let mut out = Vec::new();
    let name = &gw.owner.gateway;
    let world: Option<&Observation> = match plan {
        Ok(p) => {
            out.push(judge::drift(name, &p.changes));
            Some(&p.world)
        }
        Err(refusal) => {
            out.push(Finding {
                resource: format!("gateway {name}"),
                ..refusal.clone()
            });
            None
        }
    };
    let vms = async {
        match &gw.ha {
            None => {
                let i = &gw.instance;
                Ok(vec![vm(cloud, &i.name, &i.zone, &i.ready_token).await?])
            }
            Some(ha) => zones(cloud, ha).await,
        }
    };
    // The VMs, the pool (its tags, ranges and groups) and the network's routes are read at once; the routes are
    // judged for the tags the pool's nodes carry.
    let (vms, pool, routes) = tokio::join!(
        vms,
        reads.pool_network(&gw.node_pool),
        reads.network_routes(&gw.instance.network)
    );
    out.extend(vms?);
    let pool = match pool {
        Ok(p) => Ok(p),
        Err(e) => Err(blocked(
            Check::Tag,
            &format!("node pool {}", gw.node_pool.name),
            e,
        )?),
    };
    let mut node_tags: Vec<String> = match &pool {
        Ok(Some(p)) => p.tags.clone(),
        _ => Vec::new(),
    };
    if !node_tags.contains(&gw.node_tag) {
        node_tags.push(gw.node_tag.clone());
    }
    match routes {
        Ok(all) => out.extend(judge::routes(name, &gw.routes, &node_tags, &all)),
        Err(e) => out.push(blocked(
            Check::Route,
            &format!("network {}", last(&gw.instance.network)),
            e,
        )?),
    }
    let pool = match pool {
        Ok(Some(p)) => p,
        Ok(None) => {
            out.push(Finding::problem(
                Check::Tag,
                format!("node pool {}", gw.node_pool),
                "does not exist.",
                format!(
                    "check [gateways.{name}.node_pool] (cluster, location, name) against `gcloud container node-pools list`."
                ),
            ));
            return Ok((out, Nodes::NoPool));
        }
        Err(finding) => {
            out.push(finding.clone());
            return Ok((out, Nodes::Refused(finding)));
        }
    };
    let rule = async {
        match world {
            Some(world) => firewall(reads, gw, config, world, &pool).await.map(Some),
            None => Ok(None),
        }
    };
    let (rule, node_vms) = tokio::join!(rule, reads.node_vms(&pool.instance_groups));
    out.extend(rule?);
    let nodes = match node_vms {
        Ok(vms) => {
            out.extend(judge::tags(
                &gw.node_pool.name,
                &pool.tags,
                &gw.node_tag,
                &vms,
            ));
            Nodes::Read(vms)
        }
        Err(e) => {
            let finding = blocked(Check::Tag, &format!("node pool {}", gw.node_pool.name), e)?;
            out.push(finding.clone());
            Nodes::Refused(finding)
        }
    };
    Ok((out, nodes))
}

/// With `--connectivity-test`: one Connectivity Test from a node VM of the pool to each destination, on the
/// first allowed protocol and port. They model Google's network, not the VM's own NAT: a trace that arrives at
/// the gateway VM through natgw's route is the answer ("reaches the gateway"); the NAT itself is the VM's
/// own verification (the vm finding). The tests run at once; the findings keep the destinations' order.
async fn paths(
    reads: &CheckReads,
    gw: &DesiredGateway,
    config: &config::Gateway,
    nodes: Nodes,
) -> Result<Vec<Finding>, OpsError> {
    let vms = match nodes {
        Nodes::Read(vms) => vms,
        Nodes::NoPool => return Ok(Vec::new()),
        Nodes::Refused(tag) => {
            return Ok(vec![Finding {
                check: Check::Path,
                ..tag
            }]);
        }
    };
    let resource = format!("node pool {}", gw.node_pool.name);
    let Some(source) = vms
        .iter()
        .find(|vm| vm.status == "RUNNING")
        .or_else(|| vms.first())
    else {
        return Ok(vec![Finding::pass(
            Check::Path,
            resource,
            "no Connectivity Test: the node pool has no node VMs right now.",
        )]);
    };
    let allow = config.allow.first();
    let protocol = allow
        .map_or("TCP", |a| a.protocol.as_str())
        .to_ascii_uppercase();
    let port = allow.and_then(|a| a.ports).map(|(first, _)| first);
    let gateway_vms: Vec<&str> = match &gw.ha {
        None => vec![gw.instance.name.as_str()],
        Some(ha) => ha.zones.iter().map(|z| z.group.name.as_str()).collect(),
    };
    let gateway_vms = &gateway_vms;
    let tests = gw
        .routes
        .iter()
        .zip(&config.destinations)
        .map(|(route, dest)| {
            let destination = judge::probe_address(*dest);
            let test = PathTest {
                label: gw.owner.gateway.clone(),
                source_zone: source.zone.clone(),
                source_vm: source.name.clone(),
                destination,
                protocol: protocol.clone(),
                port,
            };
            let what = format!(
                "node VM {} to {destination}{}",
                source.name,
                port.map(|p| format!(":{p}")).unwrap_or_default()
            );
            async move {
                match reads.path(&test).await {
                    Ok(result) => Ok(judge::path(&what, &route.name, gateway_vms, &result)),
                    Err(e) => blocked(Check::Path, &what, e),
                }
            }
        });
    try_join_all(tests).await
}

fn last(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// An HA gateway: each zone's VM (named like its group, `model::ha`), then, behind a load balancer, each
/// zone's backend as the load balancer sees it.
async fn zones(cloud: &Cloud, ha: &DesiredHa) -> Result<Vec<Finding>, OpsError> {
    let vms = try_join_all(
        ha.zones
            .iter()
            .map(|z| vm(cloud, &z.group.name, &z.zone, &ha.template.ready_token)),
    );
    let backends = ha.lb.iter().flat_map(|lb| {
        let service = &lb.backend_service;
        ha.zones.iter().map(move |z| async move {
            let group = &z.group.name;
            match cloud
                .backend_health(&service.region, &service.name, &z.zone, group)
                .await
            {
                Ok(health) => {
                    let vms: Vec<(String, bool)> = health
                        .into_iter()
                        .map(|h| (h.instance, h.healthy))
                        .collect();
                    Ok(judge::backend(&service.name, &z.zone, group, &vms))
                }
                Err(e) => blocked(Check::Backend, &format!("backend {group} ({})", z.zone), e),
            }
        })
    });
    let (mut out, backends) = tokio::try_join!(vms, try_join_all(backends))?;
    out.extend(backends);
    Ok(out)
}

/// The VM runs and reported the current token: the guest attribute, or the serial console where guest
/// attributes are blocked. When something is wrong, the last summary its script wrote.
async fn vm(cloud: &Cloud, name: &str, zone: &str, token: &str) -> Result<Finding, OpsError> {
    let status = match cloud.instance_status(zone, name).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => {
            return Ok(judge::vm(name, zone, &VmState::Missing, None));
        }
        Err(e) => return blocked(Check::Vm, name, e),
    };
    let guest = if status == "RUNNING" {
        match cloud.guest_ready(zone, name, token).await {
            Ok(r) => Some(r),
            Err(e) => return blocked(Check::Vm, name, e),
        }
    } else {
        None
    };
    if guest == Some(Ready::Yes) {
        return Ok(judge::vm(
            name,
            zone,
            &VmState::Ready { serial: false },
            None,
        ));
    }
    // Google keeps the last 1 MB of the console; one read from 0 returns what is kept.
    let mut serial = SerialReader::default();
    let ready = match cloud.serial_output(zone, name, 0).await {
        Ok(chunk) => serial.feed(&chunk, token),
        Err(e) => return blocked(Check::Vm, name, e),
    };
    let state = match guest {
        None => VmState::NotRunning(status),
        Some(Ready::GuestAttributesBlocked) if ready => VmState::Ready { serial: true },
        Some(_) => VmState::NotReady,
    };
    Ok(judge::vm(name, zone, &state, serial.summary.as_deref()))
}

/// The firewall rule as the plan observed it, judged against the node pool's ranges.
async fn firewall(
    reads: &CheckReads,
    gw: &DesiredGateway,
    config: &config::Gateway,
    world: &Observation,
    pool: &PoolNetwork,
) -> Result<Finding, OpsError> {
    let name = &gw.firewall.name;
    let node_range = match reads.subnetwork_range(&pool.subnetwork).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Ok(Finding::problem(
                Check::Firewall,
                name,
                format!(
                    "cannot be judged: the node pool's subnetwork {} does not exist.",
                    pool.subnetwork
                ),
                "check the cluster's network configuration.",
            ));
        }
        Err(e) => {
            return blocked(
                Check::Firewall,
                &format!("subnetwork {}", pool.subnetwork),
                e,
            );
        }
    };
    let rule = world
        .firewalls
        .iter()
        .find(|f| f.resource.name == *name)
        .map(|f| &f.resource);
    Ok(judge::firewall(
        &gw.owner.gateway,
        rule,
        name,
        &config.source_ranges,
        &config.destinations,
        &judge::Runners {
            subnetwork: last(&pool.subnetwork).to_string(),
            node_range,
            pod_range: pool.pod_range,
            default_snat_disabled: pool.default_snat_disabled,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::check::Outcome;

    #[test]
    fn a_refused_read_is_a_finding_and_other_errors_are_errors() {
        let denied = GcpError::Api {
            context: "listing the routes of network vpc".into(),
            status: Some(403),
            message: "Required 'compute.routes.list' permission for 'projects/p' (HTTP 403)".into(),
        };
        let f = blocked(Check::Route, "network vpc", denied).expect("a finding");
        assert_eq!(f.outcome, Outcome::Blocked);
        assert!(f.message.contains("compute.routes.list"), "{f:?}");
        assert!(f.fix.as_deref().unwrap_or_default().contains("grant"));
        let policy = GcpError::OrgPolicy {
            context: "reading the serial port output of instance natgw-gitlab".into(),
            resource: None,
            violations: vec![crate::gcp::policy::Violation {
                constraint: "constraints/compute.disableSerialPortAccess".into(),
                message:
                    "Constraint constraints/compute.disableSerialPortAccess violated for project p."
                        .into(),
            }],
        };
        let f = blocked(Check::Vm, "natgw-gitlab", policy).expect("a finding");
        assert!(
            f.message
                .contains("constraints/compute.disableSerialPortAccess"),
            "{f:?}"
        );
        let broken = GcpError::Api {
            context: "listing routes".into(),
            status: Some(500),
            message: "backend error".into(),
        };
        assert!(blocked(Check::Route, "network vpc", broken).is_err());
    }
}
