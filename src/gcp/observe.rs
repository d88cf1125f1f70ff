//! Reading the project: one parallel round of list calls, whatever the number of gateways.

use std::collections::BTreeSet;

use futures::future::try_join_all;

use super::wire::{
    address_from_wire, firewall_from_wire, instance_from_wire, node_pool_from_wire, route_from_wire,
};
use super::{Cloud, GcpError, api_error};
use crate::model::NodePoolId;
use crate::model::observed::{Observation, Observed};

/// Every name natgw gives starts with this; the filter returns natgw's resources and any other resource that
/// holds one of its names (a conflict the plan must report).
const NAME_FILTER: &str = "name eq \"natgw-.*\"";
const NAME_PREFIX: &str = "natgw-";

/// The names beyond natgw's own prefix that a plan must see, in the same round: the config's derived names
/// and the names its adopt tables give. An adopted resource keeps its name, so once adopted it is found by
/// its ownership marker, with or without the adopt table (see each list call).
#[derive(Clone, Debug, Default)]
pub(crate) struct Names {
    pub(crate) addresses: BTreeSet<String>,
    pub(crate) instances: BTreeSet<String>,
    pub(crate) firewalls: BTreeSet<String>,
    pub(crate) routes: BTreeSet<String>,
    /// A gateway of the config has `zones`: its own kinds are read in the same round.
    pub(crate) ha: bool,
    /// The stack: a Shared VPC host that its VMs are on but the config does not name (a gateway removed, or
    /// moved to another `network_project`) is read in a second round, so that its rules and routes there go.
    pub(crate) stack: String,
}

/// Addresses and instances carry natgw's labels, so one AIP-160 filter finds every owned one whatever its
/// name, plus whatever holds a name the config wants (a conflict, or a resource to adopt). Compute refuses
/// to mix this style with regular expressions (compute.v1.json, `filter`: "These two types of filter
/// expressions cannot be mixed in one request"), hence exact names.
pub(crate) fn labelled_filter(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        return NAME_FILTER.to_string();
    }
    let mut terms = vec![format!(
        "(labels.{} = \"true\")",
        crate::model::ownership::LABEL_MANAGED
    )];
    terms.extend(names.iter().map(|n| format!("(name = \"{n}\")")));
    terms.join(" OR ")
}

/// Routes have no labels and an adopted route is replaced by natgw's own: the prefix and the adopted names,
/// as one regular expression (Compute names are `[a-z]([-a-z0-9]*[a-z0-9])?`, nothing to escape).
fn route_filter(names: &BTreeSet<String>) -> String {
    let extra: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !n.starts_with(NAME_PREFIX))
        .collect();
    if extra.is_empty() {
        return NAME_FILTER.to_string();
    }
    format!("name eq \"natgw-.*|{}\"", extra.join("|"))
}

/// A Shared VPC host project and the tag natgw's names carry there for this stack
/// (`config::names::host_tag`): the filter returns this stack's resources and nobody else's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct HostScope {
    pub(crate) project: String,
    pub(crate) tag: String,
}

/// A host project's firewall rules and routes of the stack.
type HostHolds = (
    Vec<Observed<crate::model::Firewall>>,
    Vec<Observed<crate::model::Route>>,
);

impl HostScope {
    fn filter(&self) -> String {
        format!("name eq \"natgw-.*-{}-.*\"", self.tag)
    }
}

impl Cloud {
    /// Reads everything natgw could own, and the given node pools. Node pools that natgw's own records name
    /// but the caller did not ask for (a gateway removed from the config) are read in a second round.
    #[cfg(test)]
    pub(crate) async fn observe(&self, pools: &[NodePoolId]) -> Result<Observation, GcpError> {
        self.observe_names(pools, &Names::default(), &[]).await
    }

    /// `observe`, also seeing the given names (see `Names`). The Shared VPC host projects (`hosts`) are read
    /// in the same round: their firewall rules and routes.
    pub(crate) async fn observe_names(
        &self,
        pools: &[NodePoolId],
        names: &Names,
        hosts: &[HostScope],
    ) -> Result<Observation, GcpError> {
        let mut asked: BTreeSet<NodePoolId> = pools.iter().cloned().collect();
        let (address_filter, instance_filter) = (
            labelled_filter(&names.addresses),
            labelled_filter(&names.instances),
        );
        let route_filter = route_filter(&names.routes);
        let ha = async {
            if names.ha {
                self.observe_ha(NAME_FILTER).await.map(Some)
            } else {
                Ok(None)
            }
        };
        let (addresses, instances, mut firewalls, mut routes, mut node_pools, in_hosts, ha) = tokio::try_join!(
            self.list_addresses(&address_filter),
            self.list_instances(&instance_filter),
            self.list_firewalls(&self.project, Some(&names.firewalls), NAME_FILTER),
            self.list_routes(&self.project, &route_filter),
            self.read_node_pools(asked.iter().cloned().collect()),
            self.read_hosts(hosts),
            ha,
        )?;
        for (f, r) in in_hosts {
            firewalls.extend(f);
            routes.extend(r);
        }
        let mut world = Observation {
            addresses,
            instances,
            firewalls,
            routes,
            ..Observation::default()
        };
        // Hosts the stack's VMs are on and the config does not name. Before the node pools: the host's rules
        // and routes record the pools whose tags natgw added.
        let tag = crate::config::names::host_tag(&self.project, &names.stack);
        let unnamed: Vec<HostScope> = world
            .host_projects(&self.project, &names.stack)
            .into_iter()
            .filter(|p| !hosts.iter().any(|h| h.project == *p))
            .map(|project| HostScope {
                project,
                tag: tag.clone(),
            })
            .collect();
        for (f, r) in self.read_hosts(&unnamed).await? {
            world.firewalls.extend(f);
            world.routes.extend(r);
        }
        // A gateway in several zones that the config no longer names: its addresses say so, and its own kinds
        // are read in a second round.
        let ha = match ha {
            Some(ha) => Some(ha),
            None if world.has_ha_addresses() => Some(self.observe_ha(NAME_FILTER).await?),
            None => None,
        };
        if let Some(ha) = ha {
            world.templates = ha.templates;
            world.groups = ha.groups;
            world.health_checks = ha.health_checks;
            world.backend_services = ha.backend_services;
            world.forwarding_rules = ha.forwarding_rules;
        }
        let recorded: Vec<NodePoolId> = world
            .recorded_node_pools(None)
            .into_iter()
            .filter(|id| !asked.contains(id))
            .collect();
        if !recorded.is_empty() {
            asked.extend(recorded.iter().cloned());
            let more = self.read_node_pools(recorded).await?;
            node_pools.extend(more);
        }
        for (id, pool) in node_pools {
            match pool {
                Some(p) => world.node_pools.push(p),
                None => world.missing_node_pools.push(id),
            }
        }
        Ok(world)
    }

    /// The firewall rules and routes of the stack in each host project, all at once.
    async fn read_hosts(&self, hosts: &[HostScope]) -> Result<Vec<HostHolds>, GcpError> {
        try_join_all(hosts.iter().map(|h| async move {
            let filter = h.filter();
            tokio::try_join!(
                self.list_firewalls(&h.project, None, &filter),
                self.list_routes(&h.project, &filter)
            )
        }))
        .await
    }

    pub(crate) async fn list_addresses(
        &self,
        filter: &str,
    ) -> Result<Vec<Observed<crate::model::Address>>, GcpError> {
        all_pages(|token| async move {
            let page = self
                .addresses
                .aggregated_list()
                .set_project(&self.project)
                .set_filter(filter)
                .set_page_token(token)
                .send()
                .await
                .map_err(api_error("listing addresses"))?;
            let items = page
                .items
                .values()
                .flat_map(|s| {
                    s.addresses
                        .iter()
                        .map(|x| address_from_wire(&self.project, x))
                })
                .collect();
            Ok((items, page.next_page_token))
        })
        .await
    }

    async fn list_instances(
        &self,
        filter: &str,
    ) -> Result<Vec<Observed<crate::model::Instance>>, GcpError> {
        all_pages(|token| async move {
            let page = self
                .instances
                .aggregated_list()
                .set_project(&self.project)
                .set_filter(filter)
                .set_page_token(token)
                .send()
                .await
                .map_err(api_error("listing instances"))?;
            let items = page
                .items
                .values()
                .flat_map(|s| {
                    s.instances
                        .iter()
                        .map(|x| instance_from_wire(&self.project, x))
                })
                .collect();
            Ok((items, page.next_page_token))
        })
        .await
    }

    /// Firewall rules have no labels, and Compute takes a regular expression on one field only: an adopted
    /// rule keeps its name and is natgw's by its description marker, so with adoptable `names` the list is read
    /// unfiltered (one page holds 500 rules) and kept here: natgw's prefix, a marker, or a name the config
    /// gives. Without `names` (a Shared VPC host), `filter` alone decides.
    async fn list_firewalls(
        &self,
        project: &str,
        names: Option<&BTreeSet<String>>,
        filter: &str,
    ) -> Result<Vec<Observed<crate::model::Firewall>>, GcpError> {
        let filter = if names.is_some_and(|n| !n.is_empty()) {
            ""
        } else {
            filter
        };
        all_pages(|token| async move {
            let page = self
                .firewalls
                .list()
                .set_project(project)
                .set_filter(filter)
                .set_page_token(token)
                .send()
                .await
                .map_err(api_error(format!(
                    "listing firewall rules{}",
                    self.in_project(project)
                )))?;
            let items = page
                .items
                .iter()
                // The stack lock is natgw's bookkeeping, not a resource of any stack: a plan, and the check
                // that a saved plan's world is unchanged, never see it.
                .filter(|f| {
                    !f.name
                        .as_deref()
                        .is_some_and(crate::model::lock::is_lock_name)
                })
                .map(|x| firewall_from_wire(&self.project, x))
                .filter(|f| {
                    names.is_none_or(|names| {
                        f.resource.name.starts_with(NAME_PREFIX)
                            || f.owner.is_some()
                            || names.contains(&f.resource.name)
                    })
                })
                .collect();
            Ok((items, page.next_page_token))
        })
        .await
    }

    async fn list_routes(
        &self,
        project: &str,
        filter: &str,
    ) -> Result<Vec<Observed<crate::model::Route>>, GcpError> {
        all_pages(|token| async move {
            let page = self
                .routes
                .list()
                .set_project(project)
                .set_filter(filter)
                .set_page_token(token)
                .send()
                .await
                .map_err(api_error(format!(
                    "listing routes{}",
                    self.in_project(project)
                )))?;
            Ok((
                page.items
                    .iter()
                    .filter_map(|x| route_from_wire(&self.project, x))
                    .collect(),
                page.next_page_token,
            ))
        })
        .await
    }

    async fn read_node_pools(
        &self,
        ids: Vec<NodePoolId>,
    ) -> Result<Vec<(NodePoolId, Option<Observed<crate::model::NodePool>>)>, GcpError> {
        try_join_all(ids.into_iter().map(|id| async move {
            let pool = self.read_node_pool(&id).await?;
            Ok::<_, GcpError>((id, pool))
        }))
        .await
    }

    /// `None` when the node pool (or its cluster) does not exist.
    pub(crate) async fn read_node_pool(
        &self,
        id: &NodePoolId,
    ) -> Result<Option<Observed<crate::model::NodePool>>, GcpError> {
        match self
            .gke
            .get_node_pool()
            .set_name(id.resource_name(&self.project))
            .send()
            .await
        {
            Ok(p) => Ok(Some(node_pool_from_wire(id, &p))),
            Err(e) if e.http_status_code() == Some(404) => Ok(None),
            Err(e) => Err(api_error(format!("reading node pool {id}"))(e)),
        }
    }
}

/// Follows `nextPageToken` until the last page.
pub(super) async fn all_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, GcpError>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), GcpError>>,
{
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = fetch(token).await?;
        out.extend(items);
        match next {
            Some(t) if !t.is_empty() => token = t,
            _ => return Ok(out),
        }
    }
}
