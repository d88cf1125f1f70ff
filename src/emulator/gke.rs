//! GKE v1: `/v1/projects/{project}/locations/{location}/...` (and the older `zones/{zone}` paths).
//!
//! Changes take effect when the request is accepted; the cluster and node pool `status` and the operation
//! follow the operation latency (PROVISIONING/RUNNING, PENDING/RUNNING/DONE). Every change of a node pool
//! gives it a new `etag`; an update with a stale `etag` is refused at once with 409 ABORTED.

use serde_json::{Value, json};

use super::api_error::ApiError;
use super::catalog;
use super::compute::{Ctx, Reply, check_name, gke_nodes};
use super::schema::{self, Api};
use super::world::{
    COMPUTE_URL, CONTAINER_URL, GkeOp, World, hash_hex, obj, resolve_ref, rfc3339, str_field,
};

type Answer = Result<Reply, ApiError>;

const VERSION: &str = "1.33.5-gke.1080000";

/// The operation type of `nodePools.update`.
const UPDATE_POOL: &str = "UPGRADE_NODES";

fn not_found(what: &str) -> ApiError {
    ApiError::new(404, "notFound", format!("Not found: {what}."))
}

fn location_ok(p: &str, l: &str) -> Result<(), ApiError> {
    if catalog::region_exists(l) || catalog::zone_region(l).is_some() {
        Ok(())
    } else {
        Err(not_found(&format!("projects/{p}/locations/{l}")))
    }
}

/// `rest` is the path after `projects/{project}/`.
pub(crate) fn handle(
    world: &mut World,
    ctx: &Ctx<'_>,
    method: &str,
    p: &str,
    rest: &[&str],
    body: Option<Value>,
) -> Answer {
    let rest: Vec<&str> = rest.to_vec();
    let (l, tail) = match rest.as_slice() {
        ["locations" | "zones", l, tail @ ..] => (*l, tail.to_vec()),
        _ => {
            return Err(ApiError::method_not_found(
                method,
                &format!("/v1/projects/{p}/{}", rest.join("/")),
            ));
        }
    };
    match (method, tail.as_slice()) {
        ("GET", ["clusters"]) => list_clusters(world, ctx, p, l),
        ("POST", ["clusters"]) => create_cluster(world, ctx, p, l, body),
        ("GET", ["clusters", c]) => get_cluster(world, ctx, p, l, c).map(Reply::read),
        ("DELETE", ["clusters", c]) => delete_cluster(world, ctx, p, l, c),
        ("GET", ["clusters", c, "nodePools"]) => {
            let cluster = get_cluster(world, ctx, p, l, c)?;
            Ok(Reply::read(
                json!({"nodePools": cluster.get("nodePools").cloned().unwrap_or_else(|| json!([]))}),
            ))
        }
        ("GET", ["clusters", c, "nodePools", n]) => {
            let cluster = get_cluster(world, ctx, p, l, c)?;
            find_pool(&cluster, n)
                .cloned()
                .map(Reply::read)
                .ok_or_else(|| {
                    not_found(&format!(
                        "projects/{p}/locations/{l}/clusters/{c}/nodePools/{n}"
                    ))
                })
        }
        ("PUT", ["clusters", c, "nodePools", n])
        | ("POST", ["clusters", c, "nodePools", n, "update"]) => {
            update_pool(world, ctx, p, l, c, n, body)
        }
        ("GET", ["operations", o]) => world
            .gke_operations
            .get(&format!("projects/{p}/locations/{l}/operations/{o}"))
            .map(|op| Reply::read(op.render(ctx.now)))
            .ok_or_else(|| not_found(&format!("projects/{p}/locations/{l}/operations/{o}"))),
        _ => Err(ApiError::method_not_found(
            method,
            &format!("/v1/projects/{p}/{}", rest.join("/")),
        )),
    }
}

/// GKE runs one operation at a time on a cluster and refuses another with 400 FAILED_PRECONDITION naming the
/// running one (the Terraform provider's `RetryWhileIncompatibleOperation` retries exactly this).
pub(crate) fn cluster_busy(op_name: &str) -> ApiError {
    ApiError::new(
        400,
        "failedPrecondition",
        format!(
            "Cluster is running incompatible operation {op_name}. Wait for it to finish and retry."
        ),
    )
}

fn cluster_path(p: &str, l: &str, c: &str) -> String {
    format!("projects/{p}/locations/{l}/clusters/{c}")
}

fn find_pool<'a>(cluster: &'a Value, name: &str) -> Option<&'a Value> {
    cluster
        .get("nodePools")?
        .as_array()?
        .iter()
        .find(|np| str_field(np, "name") == Some(name))
}

/// The cluster with status derived from the clock.
fn render(world: &World, ctx: &Ctx<'_>, path: &str) -> Option<Value> {
    let mut c = world.clusters.get(path)?.clone();
    let ready_at = c.get("readyAtMs").and_then(Value::as_i64).unwrap_or(0);
    // Pools with an update still running show RECONCILING, and so does their cluster.
    let cluster_url = format!("{CONTAINER_URL}{path}");
    let updating: Vec<String> = world
        .gke_operations
        .values()
        .filter(|op| {
            ctx.now < op.done_ms && str_field(&op.body, "operationType") == Some(UPDATE_POOL)
        })
        .filter_map(|op| str_field(&op.body, "targetLink"))
        .filter_map(|t| {
            t.strip_prefix(&format!("{cluster_url}/nodePools/"))
                .map(str::to_string)
        })
        .collect();
    let status = if ctx.now < ready_at {
        "PROVISIONING"
    } else if updating.is_empty() {
        "RUNNING"
    } else {
        "RECONCILING"
    };
    let o = obj(&mut c);
    o.remove("readyAtMs");
    o.insert("status".into(), json!(status));
    if let Some(Value::Array(pools)) = o.get_mut("nodePools") {
        for np in pools {
            let name = str_field(np, "name").unwrap_or_default().to_string();
            let pool_status = if status == "RECONCILING" && !updating.contains(&name) {
                "RUNNING"
            } else {
                status
            };
            obj(np).insert("status".into(), json!(pool_status));
        }
    }
    Some(c)
}

fn get_cluster(world: &World, ctx: &Ctx<'_>, p: &str, l: &str, c: &str) -> Result<Value, ApiError> {
    let path = cluster_path(p, l, c);
    render(world, ctx, &path).ok_or_else(|| not_found(&path))
}

fn list_clusters(world: &World, ctx: &Ctx<'_>, p: &str, l: &str) -> Answer {
    if l != "-" {
        location_ok(p, l)?;
    }
    let prefix = format!("projects/{p}/locations/");
    let clusters: Vec<Value> = world
        .clusters
        .keys()
        .filter(|k| k.starts_with(&prefix) && (l == "-" || k.starts_with(&format!("{prefix}{l}/"))))
        .filter_map(|k| render(world, ctx, k))
        .collect();
    Ok(Reply::read(json!({"clusters": clusters})))
}

fn new_etag(world: &mut World, pool: &Value) -> String {
    let id = world.new_id();
    hash_hex(&[&id, &pool.to_string()])[..32].to_string()
}

fn record_op(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    l: &str,
    op_type: &str,
    target: &str,
) -> Value {
    let id = world.new_id();
    let name = format!("operation-{}-{}", ctx.now, &hash_hex(&[&id])[..8]);
    let path = format!("projects/{p}/locations/{l}/operations/{name}");
    let body = json!({
        "name": name,
        "zone": l,
        "location": l,
        "operationType": op_type,
        "selfLink": format!("{CONTAINER_URL}{path}"),
        "targetLink": format!("{CONTAINER_URL}{target}"),
        "startTime": rfc3339(ctx.now),
    });
    let op = GkeOp {
        body,
        insert_ms: ctx.now,
        done_ms: ctx.now + ctx.timing.op_ms,
    };
    let out = op.render(ctx.now);
    world.gke_operations.insert(path, op);
    out
}

/// Builds a stored cluster from a request's `cluster` (no checks: callers validated).
pub(crate) fn create_cluster_value(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    l: &str,
    mut cluster: Value,
) -> String {
    let name = str_field(&cluster, "name").unwrap_or_default().to_string();
    let path = cluster_path(p, l, &name);
    let id = hash_hex(&[&world.new_id()])[..32].to_string();
    let zones: Vec<String> = catalog::REGIONS
        .iter()
        .find(|(r, _)| *r == l)
        .map(|(r, zs)| zs.iter().map(|z| format!("{r}-{z}")).collect())
        .unwrap_or_else(|| vec![l.to_string()]);
    let version = VERSION;
    let mut pools: Vec<Value> = cluster
        .get("nodePools")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if pools.is_empty() {
        let count = cluster.get("initialNodeCount").cloned().unwrap_or(json!(3));
        let config = cluster
            .get("nodeConfig")
            .cloned()
            .unwrap_or_else(|| json!({}));
        pools.push(json!({"name": "default-pool", "initialNodeCount": count, "config": config}));
    }
    for np in &mut pools {
        complete_pool(world, np, &path, &json!(zones));
    }
    let network_config = network_config(world, p, l, &cluster);
    let network = str_field(&cluster, "network")
        .unwrap_or("default")
        .rsplit('/')
        .next()
        .unwrap_or("default")
        .to_string();
    let subnetwork =
        str_field(&cluster, "subnetwork").map(|s| s.rsplit('/').next().unwrap_or(s).to_string());
    let etag = hash_hex(&[&world.new_id()])[..32].to_string();
    let o = obj(&mut cluster);
    o.insert("nodePools".into(), Value::Array(pools));
    o.insert("id".into(), json!(id));
    o.insert("location".into(), json!(l));
    o.insert("zone".into(), json!(l));
    o.insert("locations".into(), json!(zones));
    o.insert("network".into(), json!(network));
    o.insert(
        "subnetwork".into(),
        json!(subnetwork.unwrap_or_else(|| network.clone())),
    );
    o.insert("selfLink".into(), json!(format!("{CONTAINER_URL}{path}")));
    o.insert("createTime".into(), json!(rfc3339(ctx.now)));
    o.insert("endpoint".into(), json!("34.78.0.10"));
    o.insert("initialClusterVersion".into(), json!(version));
    o.insert("currentMasterVersion".into(), json!(version));
    o.insert("currentNodeVersion".into(), json!(version));
    o.entry("clusterIpv4Cidr").or_insert(json!("10.4.0.0/14"));
    o.insert("networkConfig".into(), network_config);
    o.insert("servicesIpv4Cidr".into(), json!("10.8.0.0/20"));
    o.insert("etag".into(), json!(etag));
    o.insert("readyAtMs".into(), json!(ctx.now + ctx.timing.op_ms));
    o.remove("initialNodeCount");
    o.remove("nodeConfig");
    world.clusters.insert(path.clone(), cluster);
    gke_nodes::create_pool_nodes(world, ctx, &path);
    path
}

/// `networkConfig.network` and `.subnetwork` (container.v1.json: "The relative name of the Google Compute
/// Engine network ... Example: projects/my-project/global/networks/my-network", and of the subnetwork). A
/// cluster that names no subnetwork is on its network's subnetwork in the cluster's region.
fn network_config(world: &World, p: &str, l: &str, cluster: &Value) -> Value {
    let network = resolve_ref(
        str_field(cluster, "network").unwrap_or("default"),
        p,
        "global",
        "networks",
    );
    let net_project = network.split('/').nth(1).unwrap_or(p).to_string();
    let region = catalog::zone_region(l).unwrap_or(l);
    let subnetwork = match str_field(cluster, "subnetwork") {
        Some(s) => resolve_ref(s, &net_project, &format!("regions/{region}"), "subnetworks"),
        None => {
            let net_url = format!("{COMPUTE_URL}{network}");
            world
                .children(&format!(
                    "projects/{net_project}/regions/{region}/subnetworks/"
                ))
                .find(|(_, v)| str_field(v, "network") == Some(net_url.as_str()))
                .map(|(k, _)| k.clone())
                .unwrap_or_default()
        }
    };
    json!({"network": network, "subnetwork": subnetwork})
}

/// Fills a node pool's output fields and gives it an etag.
fn complete_pool(world: &mut World, np: &mut Value, cluster_path: &str, zones: &Value) {
    let np_name = str_field(np, "name").unwrap_or_default().to_string();
    let o = obj(np);
    let config = o.entry("config").or_insert_with(|| json!({}));
    let c = obj(config);
    c.entry("machineType").or_insert(json!("e2-medium"));
    c.entry("diskSizeGb").or_insert(json!(100));
    c.entry("imageType").or_insert(json!("COS_CONTAINERD"));
    c.entry("serviceAccount").or_insert(json!("default"));
    c.entry("oauthScopes")
        .or_insert(json!(["https://www.googleapis.com/auth/cloud-platform"]));
    o.entry("initialNodeCount").or_insert(json!(1));
    o.insert(
        "selfLink".into(),
        json!(format!("{CONTAINER_URL}{cluster_path}/nodePools/{np_name}")),
    );
    o.insert("version".into(), json!(VERSION));
    o.insert("locations".into(), zones.clone());
    o.insert("podIpv4CidrSize".into(), json!(24));
    let etag = new_etag(world, np);
    obj(np).insert("etag".into(), json!(etag));
}

/// Adds a node pool to an existing cluster if it has none of that name (for seeding).
pub(crate) fn ensure_pool(world: &mut World, ctx: &Ctx<'_>, cluster_path: &str, mut np: Value) {
    let Some(cluster) = world.clusters.get(cluster_path) else {
        return;
    };
    let name = str_field(&np, "name").unwrap_or_default().to_string();
    if find_pool(cluster, &name).is_some() {
        return;
    }
    let zones = cluster
        .get("locations")
        .cloned()
        .unwrap_or_else(|| json!([]));
    complete_pool(world, &mut np, cluster_path, &zones);
    if let Some(c) = world.clusters.get_mut(cluster_path)
        && let Value::Array(pools) = obj(c).entry("nodePools").or_insert_with(|| json!([]))
    {
        pools.push(np);
    }
    gke_nodes::create_pool_nodes(world, ctx, cluster_path);
}

fn create_cluster(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    l: &str,
    body: Option<Value>,
) -> Answer {
    location_ok(p, l)?;
    let mut body = body.unwrap_or_else(|| json!({}));
    schema::validate(Api::Container, "CreateClusterRequest", None, "", &mut body)?;
    let cluster = body
        .get("cluster")
        .cloned()
        .ok_or_else(|| ApiError::required("cluster"))?;
    let name = str_field(&cluster, "name").unwrap_or_default().to_string();
    check_name("cluster.name", &name)?;
    let path = cluster_path(p, l, &name);
    if world.clusters.contains_key(&path) {
        return Err(ApiError::new(
            409,
            "alreadyExists",
            format!("Already exists: {path}."),
        ));
    }
    let network = str_field(&cluster, "network").unwrap_or("default");
    let net_path = super::world::resolve_ref(network, p, "global", "networks");
    if !world.resources.contains_key(&net_path) {
        return Err(ApiError::invalid(format!(
            "Network \"{network}\" does not exist."
        )));
    }
    for np in cluster
        .get("nodePools")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        check_name(
            "cluster.nodePools.name",
            str_field(&np, "name").unwrap_or_default(),
        )?;
    }
    let path = create_cluster_value(world, ctx, p, l, cluster);
    let op = record_op(world, ctx, p, l, "CREATE_CLUSTER", &path);
    Ok(Reply {
        body: op,
        mutated: true,
        wait: None,
    })
}

fn delete_cluster(world: &mut World, ctx: &Ctx<'_>, p: &str, l: &str, c: &str) -> Answer {
    let path = cluster_path(p, l, c);
    let Some(cluster) = world.clusters.remove(&path) else {
        return Err(not_found(&path));
    };
    gke_nodes::delete_pool_nodes(world, ctx, &cluster);
    let op = record_op(world, ctx, p, l, "DELETE_CLUSTER", &path);
    Ok(Reply {
        body: op,
        mutated: true,
        wait: None,
    })
}

/// Applies an update: like GKE, refused with 400 FAILED_PRECONDITION while another operation on the same
/// cluster is still running. `tags` replaces the node config's tags, `labels` its labels, `nodeVersion` and
/// `imageType` are recorded; other fields are accepted and ignored. A tags-only update is accepted.
fn update_pool(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    l: &str,
    c: &str,
    n: &str,
    body: Option<Value>,
) -> Answer {
    let mut body = body.unwrap_or_else(|| json!({}));
    schema::validate(Api::Container, "UpdateNodePoolRequest", None, "", &mut body)?;
    let path = cluster_path(p, l, c);
    let pool_path = format!("{path}/nodePools/{n}");
    let cluster = world.clusters.get(&path).ok_or_else(|| not_found(&path))?;
    let pool = find_pool(cluster, n).ok_or_else(|| not_found(&pool_path))?;
    if let Some(etag) = str_field(&body, "etag").filter(|e| !e.is_empty())
        && Some(etag) != str_field(pool, "etag")
    {
        return Err(ApiError::aborted(format!(
            "Precondition failed: the etag \"{etag}\" of node pool \"{n}\" is stale; get the node pool again and retry."
        )));
    }
    let cluster_url = format!("{CONTAINER_URL}{path}");
    let busy = world.gke_operations.iter().find(|(_, op)| {
        ctx.now < op.done_ms
            && str_field(&op.body, "targetLink")
                .is_some_and(|t| t == cluster_url || t.starts_with(&format!("{cluster_url}/")))
    });
    if let Some((op_path, _)) = busy {
        return Err(cluster_busy(op_path.rsplit('/').next().unwrap_or(op_path)));
    }
    let mut pool = pool.clone();
    let po = obj(&mut pool);
    let config = obj(po.entry("config").or_insert_with(|| json!({})));
    if let Some(tags) = body.get("tags") {
        config.insert(
            "tags".into(),
            tags.get("tags").cloned().unwrap_or_else(|| json!([])),
        );
    }
    if let Some(labels) = body.get("labels") {
        config.insert(
            "labels".into(),
            labels.get("labels").cloned().unwrap_or_else(|| json!({})),
        );
    }
    if let Some(image) = str_field(&body, "imageType").filter(|s| !s.is_empty()) {
        config.insert("imageType".into(), json!(image));
    }
    if let Some(v) = str_field(&body, "nodeVersion").filter(|s| !s.is_empty() && *s != "-") {
        po.insert("version".into(), json!(v));
    }
    let etag = new_etag(world, &pool);
    obj(&mut pool).insert("etag".into(), json!(etag));
    if let Some(Value::Array(pools)) = world
        .clusters
        .get_mut(&path)
        .map(|c| obj(c).entry("nodePools").or_insert_with(|| json!([])))
    {
        for np in pools.iter_mut() {
            if str_field(np, "name") == Some(n) {
                *np = pool.clone();
            }
        }
    }
    if body.get("tags").is_some()
        && let Some(cluster) = world.clusters.get(&path).cloned()
    {
        gke_nodes::set_pool_tags(world, ctx, &cluster, &pool);
    }
    let op = record_op(world, ctx, p, l, UPDATE_POOL, &pool_path);
    Ok(Reply {
        body: op,
        mutated: true,
        wait: None,
    })
}
