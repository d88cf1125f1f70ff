//! What GKE makes in Compute Engine for a node pool: one zonal managed instance group per zone of the pool,
//! holding its node VMs, which carry the pool's network tags.
//!
//! Sources:
//! - container.v1.json, `NodePool.instanceGroupUrls`: "Output only. The resource URLs of the managed instance
//!   groups associated with this node pool."; `NodePool.initialNodeCount` and `NodePool.locations` (the
//!   count is per zone of the pool).
//! - container.v1.json, `NodeConfig.tags`: "The list of instance tags applied to all nodes. Tags are used to
//!   identify valid sources or targets for network firewalls"; GKE adds its own `gke-CLUSTER-HASH-node` tag
//!   to every node ("Automatically created firewall rules",
//!   https://cloud.google.com/kubernetes-engine/docs/concepts/firewall-rules: their target is the nodes'
//!   network tag).
//! - "Update node labels and taints for existing node pools",
//!   https://cloud.google.com/kubernetes-engine/docs/how-to/update-existing-nodepools: network tags are
//!   applied to a pool's existing nodes dynamically, without recreating them, and new nodes get the new
//!   configuration.
//! - Private clusters: "the nodes have internal IP addresses only"
//!   (https://cloud.google.com/kubernetes-engine/docs/concepts/private-cluster-concept).
//! - Node and group names as GKE gives them: `gke-CLUSTER-POOL-HASH-XXXX` VMs of the group
//!   `gke-CLUSTER-POOL-HASH-grp` (the names `kubectl get nodes` shows). How GKE shortens long cluster and pool
//!   names is undocumented (README, "Known differences").

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Ctx;
use super::igm::{delete_igm, insert_igm};
use super::instance::set_instance_field;
use super::instance_template::insert_template;
use super::mig_loop::members;
use super::url;
use crate::emulator::world::{World, hash_hex, obj, resolve_ref, str_field, strings};

/// The longest cluster and pool parts of a node name (keeps `gke-C-P-HASH-grp` within 63 characters).
const NAME_PART: usize = 20;

fn short(name: &str) -> &str {
    let cut = &name[..name.len().min(NAME_PART)];
    cut.trim_end_matches('-')
}

/// GKE's own calls to Compute: the caller's clock and policies, none of its query (no `requestId`).
fn as_gke<'a>(ctx: &Ctx<'a>, quiet: &'a BTreeMap<String, String>) -> Ctx<'a> {
    Ctx {
        now: ctx.now,
        timing: ctx.timing,
        query: quiet,
        policies: ctx.policies,
    }
}

/// The tag GKE puts on every node of a cluster, beside the pools' own tags.
pub(crate) fn cluster_node_tag(cluster: &Value) -> String {
    let name = str_field(cluster, "name").unwrap_or_default();
    let id = str_field(cluster, "id").unwrap_or_default();
    format!("gke-{}-{}-node", short(name), &id[..id.len().min(8)])
}

/// The project and path of the cluster's subnetwork (`networkConfig.subnetwork`), when it exists.
fn subnetwork_of(world: &World, cluster: &Value) -> Option<String> {
    let sub = cluster
        .get("networkConfig")
        .and_then(|n| str_field(n, "subnetwork"))?;
    world.resources.contains_key(sub).then(|| sub.to_string())
}

/// Makes the groups and node VMs of every pool of the cluster at `cluster_path` that has none yet, and
/// records them in the pool's `instanceGroupUrls`. A cluster whose subnetwork does not exist gets none.
pub(crate) fn create_pool_nodes(world: &mut World, ctx: &Ctx<'_>, cluster_path: &str) {
    let Some(cluster) = world.clusters.get(cluster_path).cloned() else {
        return;
    };
    let Some(subnetwork) = subnetwork_of(world, &cluster) else {
        return;
    };
    let p = cluster_path
        .split('/')
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let network = cluster
        .get("networkConfig")
        .and_then(|n| str_field(n, "network"))
        .unwrap_or_default()
        .to_string();
    let pools: Vec<Value> = cluster
        .get("nodePools")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let quiet = BTreeMap::new();
    let gke = as_gke(ctx, &quiet);
    let mut urls: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pool in pools
        .iter()
        .filter(|np| np.get("instanceGroupUrls").is_none())
    {
        let pool_name = str_field(pool, "name").unwrap_or_default();
        let hash = &hash_hex(&[cluster_path, pool_name, &world.new_id()])[..8];
        let base = format!(
            "gke-{}-{}-{hash}",
            short(str_field(&cluster, "name").unwrap_or_default()),
            short(pool_name)
        );
        let config = pool.get("config").cloned().unwrap_or_default();
        let template_name = base.clone();
        let template = json!({
            "name": template_name,
            "properties": {
                "machineType": str_field(&config, "machineType").unwrap_or("e2-medium"),
                "disks": [{"boot": true, "autoDelete": true, "type": "PERSISTENT", "initializeParams": {
                    "diskSizeGb": config.get("diskSizeGb").and_then(Value::as_i64).unwrap_or(100).to_string(),
                }}],
                // No access config: the nodes of a private cluster have internal IPs only.
                "networkInterfaces": [{"network": url(&network), "subnetwork": url(&subnetwork)}],
                "tags": {"items": node_tags(&cluster, &config)},
                "metadata": {"items": [{"key": "cluster-name", "value": str_field(&cluster, "name").unwrap_or_default()}]},
            },
        });
        if insert_template(world, &gke, &p, Some(template)).is_err() {
            continue;
        }
        let template_url = url(&format!(
            "projects/{p}/global/instanceTemplates/{template_name}"
        ));
        let count = pool
            .get("initialNodeCount")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let zones: Vec<String> = strings(pool.get("locations"));
        for z in zones {
            let mig = json!({
                "name": format!("{base}-grp"),
                "baseInstanceName": base,
                "instanceTemplate": template_url,
                "targetSize": count,
                // GKE rolls its nodes itself (surge upgrades), never the group.
                "updatePolicy": {"type": "OPPORTUNISTIC"},
            });
            if insert_igm(world, &gke, &p, &z, Some(mig)).is_ok() {
                urls.entry(pool_name.to_string())
                    .or_default()
                    .push(url(&format!(
                        "projects/{p}/zones/{z}/instanceGroupManagers/{base}-grp"
                    )));
            }
        }
    }
    if let Some(Value::Array(pools)) = world
        .clusters
        .get_mut(cluster_path)
        .and_then(|c| obj(c).get_mut("nodePools"))
    {
        for np in pools.iter_mut() {
            let name = str_field(np, "name").unwrap_or_default().to_string();
            if let Some(u) = urls.remove(&name) {
                obj(np).insert("instanceGroupUrls".into(), json!(u));
            }
        }
    }
}

/// The network tags of a node: the pool's, then GKE's own.
fn node_tags(cluster: &Value, config: &Value) -> Vec<String> {
    let mut tags: Vec<String> = strings(config.get("tags"));
    let own = cluster_node_tag(cluster);
    if !tags.contains(&own) {
        tags.push(own);
    }
    tags
}

/// A tag update on a pool reaches its existing nodes in place, and its template (for new nodes).
pub(crate) fn set_pool_tags(world: &mut World, ctx: &Ctx<'_>, cluster: &Value, pool: &Value) {
    let tags = node_tags(cluster, &pool.get("config").cloned().unwrap_or_default());
    let quiet = BTreeMap::new();
    let gke = as_gke(ctx, &quiet);
    for mig_url in group_urls(pool) {
        let mig = resolve_ref(&mig_url, "", "", "");
        let Some(template) = world
            .resources
            .get(&mig)
            .and_then(|m| str_field(m, "instanceTemplate"))
            .map(|t| resolve_ref(t, "", "", ""))
        else {
            continue;
        };
        // Google's own template, changed in place where GKE would roll a new one (README, "Known
        // differences"): the nodes it makes from now on carry the new tags.
        if let Some(props) = world
            .resources
            .get_mut(&template)
            .and_then(|t| obj(t).get_mut("properties"))
        {
            obj(props).insert("tags".into(), json!({"items": tags}));
        }
        for vm in members(
            world,
            &mig.replace("/instanceGroupManagers/", "/instanceGroups/"),
        ) {
            let parts: Vec<&str> = vm.split('/').collect();
            let fingerprint = world
                .resources
                .get(&vm)
                .and_then(|v| v.get("tags"))
                .and_then(|t| str_field(t, "fingerprint"))
                .unwrap_or_default()
                .to_string();
            if let [_, p, _, z, _, name] = parts.as_slice() {
                let _ = set_instance_field(
                    world,
                    &gke,
                    p,
                    z,
                    name,
                    "setTags",
                    Some(json!({"items": tags, "fingerprint": fingerprint})),
                );
            }
        }
    }
}

/// Deleting a cluster deletes its pools' groups and their VMs.
pub(crate) fn delete_pool_nodes(world: &mut World, ctx: &Ctx<'_>, cluster: &Value) {
    let quiet = BTreeMap::new();
    let gke = as_gke(ctx, &quiet);
    let pools: Vec<Value> = cluster
        .get("nodePools")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for pool in &pools {
        for mig_url in group_urls(pool) {
            let mig = resolve_ref(&mig_url, "", "", "");
            let parts: Vec<&str> = mig.split('/').collect();
            if let [_, p, _, z, _, n] = parts.as_slice() {
                let template = world
                    .resources
                    .get(&mig)
                    .and_then(|m| str_field(m, "instanceTemplate"))
                    .map(|t| resolve_ref(t, "", "", ""));
                let _ = delete_igm(world, &gke, p, z, n);
                if let Some(t) = template {
                    world.resources.remove(&t);
                }
            }
        }
    }
}

fn group_urls(pool: &Value) -> Vec<String> {
    strings(pool.get("instanceGroupUrls"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shortened_like_gkes() {
        assert_eq!(short("gke-gitlab-runner"), "gke-gitlab-runner");
        assert_eq!(
            short("a-very-long-cluster-name-indeed"),
            "a-very-long-cluster"
        );
        let cluster = json!({"name": "gke-gitlab-runner", "id": "0123456789abcdef"});
        assert_eq!(
            cluster_node_tag(&cluster),
            "gke-gke-gitlab-runner-01234567-node"
        );
    }
}
