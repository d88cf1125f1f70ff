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

impl Cloud {
    /// Reads everything natgw could own, and the given node pools. Node pools that natgw's own records name
    /// but the caller did not ask for (a gateway removed from the config) are read in a second round.
    pub(crate) async fn observe(&self, pools: &[NodePoolId]) -> Result<Observation, GcpError> {
        let mut asked: BTreeSet<NodePoolId> = pools.iter().cloned().collect();
        let (addresses, instances, firewalls, routes, mut node_pools) = tokio::try_join!(
            self.list_addresses(),
            self.list_instances(),
            self.list_firewalls(),
            self.list_routes(),
            self.read_node_pools(asked.iter().cloned().collect()),
        )?;
        let mut world = Observation {
            addresses,
            instances,
            firewalls,
            routes,
            ..Observation::default()
        };
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

    pub(crate) async fn list_addresses(
        &self,
    ) -> Result<Vec<Observed<crate::model::Address>>, GcpError> {
        all_pages(|token| async move {
            let page = self
                .addresses
                .aggregated_list()
                .set_project(&self.project)
                .set_filter(NAME_FILTER)
                .set_page_token(token)
                .send()
                .await
                .map_err(api_error("listing addresses"))?;
            let items = page
                .items
                .values()
                .flat_map(|s| s.addresses.iter().map(address_from_wire))
                .collect();
            Ok((items, page.next_page_token))
        })
        .await
    }

    async fn list_instances(&self) -> Result<Vec<Observed<crate::model::Instance>>, GcpError> {
        all_pages(|token| async move {
            let page = self
                .instances
                .aggregated_list()
                .set_project(&self.project)
                .set_filter(NAME_FILTER)
                .set_page_token(token)
                .send()
                .await
                .map_err(api_error("listing instances"))?;
            let items = page
                .items
                .values()
                .flat_map(|s| s.instances.iter().map(instance_from_wire))
                .collect();
            Ok((items, page.next_page_token))
        })
        .await
    }

    async fn list_firewalls(&self) -> Result<Vec<Observed<crate::model::Firewall>>, GcpError> {
        all_pages(|token| async move {
            let page = self
                .firewalls
                .list()
                .set_project(&self.project)
                .set_filter(NAME_FILTER)
                .set_page_token(token)
                .send()
                .await
                .map_err(api_error("listing firewall rules"))?;
            Ok((
                // The stack lock is natgw's bookkeeping, not a resource of any stack: a plan, and the check
                // that a saved plan's world is unchanged, never see it.
                page.items
                    .iter()
                    .filter(|f| {
                        !f.name
                            .as_deref()
                            .is_some_and(crate::model::lock::is_lock_name)
                    })
                    .map(firewall_from_wire)
                    .collect(),
                page.next_page_token,
            ))
        })
        .await
    }

    async fn list_routes(&self) -> Result<Vec<Observed<crate::model::Route>>, GcpError> {
        all_pages(|token| async move {
            let page = self
                .routes
                .list()
                .set_project(&self.project)
                .set_filter(NAME_FILTER)
                .set_page_token(token)
                .send()
                .await
                .map_err(api_error("listing routes"))?;
            Ok((
                page.items.iter().filter_map(route_from_wire).collect(),
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
async fn all_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, GcpError>
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
