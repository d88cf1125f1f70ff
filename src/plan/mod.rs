//! `diff(desired, observed) -> Plan` (pure).
//!
//! Matching is by name among every observed resource natgw could have named. A resource of this stack that
//! the config no longer wants is deleted; a resource with a wanted name that this stack does not own is a
//! conflict, never an adoption.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::desired::Gateway;
use crate::model::observed::{Observation, Observed, Preconditions};
use crate::model::ownership::{KEY_NODE_POOL, KEY_NODE_TAG, KEY_TAG_ADDED, Owner};
use crate::model::{Address, Kind, NodePool, NodePoolId, Resource};

/// The plan file format; a plan from another format is refused.
pub(crate) const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Action {
    NoOp,
    Create,
    Update,
    /// Delete, then create under the same name (names are fixed, so never the other way round).
    Replace,
    Delete,
}

impl Action {
    /// Terraform's words for `resource_changes[].change.actions`.
    pub(crate) fn terraform_actions(self) -> &'static [&'static str] {
        match self {
            Action::NoOp => &["no-op"],
            Action::Create => &["create"],
            Action::Update => &["update"],
            Action::Replace => &["delete", "create"],
            Action::Delete => &["delete"],
        }
    }
}

/// One attribute that differs, for display and for the JSON plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct FieldDiff {
    pub(crate) field: String,
    pub(crate) before: Value,
    /// `null` with `unknown`: known after apply.
    pub(crate) after: Value,
    #[serde(default)]
    pub(crate) unknown: bool,
    #[serde(default)]
    pub(crate) forces_replacement: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Change {
    /// The gateway the resource belongs to; empty for node pools, which gateways share.
    pub(crate) gateway: String,
    pub(crate) kind: Kind,
    pub(crate) name: String,
    pub(crate) action: Action,
    pub(crate) before: Option<Resource>,
    pub(crate) after: Option<Resource>,
    #[serde(default)]
    pub(crate) preconditions: Preconditions,
    #[serde(default)]
    pub(crate) diffs: Vec<FieldDiff>,
}

impl Change {
    /// Terraform-style address: `gitlab.external_address`, `gitlab.route["34.120.10.10/32"]`.
    pub(crate) fn address(&self) -> String {
        match (&self.kind, self.after.as_ref().or(self.before.as_ref())) {
            (Kind::Route, Some(Resource::Route(r))) => {
                format!("{}.route[\"{}\"]", self.gateway, r.dest_range)
            }
            (Kind::NodePool, _) => format!("node_pool[\"{}\"]", self.name),
            (kind, _) => format!("{}.{}", self.gateway, kind.role()),
        }
    }

    pub(crate) fn forces_replacement(&self) -> Vec<&str> {
        self.diffs
            .iter()
            .filter(|d| d.forces_replacement)
            .map(|d| d.field.as_str())
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Plan {
    pub(crate) format_version: u32,
    pub(crate) natgw_version: String,
    pub(crate) project: String,
    pub(crate) stack: String,
    /// SHA-256 of the config file the plan was made from.
    pub(crate) config_digest: String,
    pub(crate) destroy: bool,
    pub(crate) changes: Vec<Change>,
    /// What the plan saw; `apply PLANFILE` refuses to run if the project no longer matches it.
    pub(crate) world: Observation,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Summary {
    pub(crate) add: usize,
    pub(crate) change: usize,
    pub(crate) destroy: usize,
}

impl Plan {
    pub(crate) fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::NoOp => {}
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Replace => {
                    s.add += 1;
                    s.destroy += 1;
                }
                Action::Delete => s.destroy += 1,
            }
        }
        s
    }

    pub(crate) fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action != Action::NoOp)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PlanError {
    #[error(
        "{kind} \"{name}\" already exists and natgw's stack \"{stack}\" does not own it ({owner}); natgw never adopts or changes it: rename the gateway, or delete or rename that resource"
    )]
    Conflict {
        kind: &'static str,
        name: String,
        stack: String,
        owner: String,
    },
    #[error(
        "node pool \"{0}\" (gateway {1}) was not found: check [gateways.{1}.node_pool] cluster, location and name"
    )]
    MissingNodePool(NodePoolId, String),
}

/// Everything diff needs besides the two worlds.
pub(crate) struct Context<'a> {
    pub(crate) stack: &'a str,
}

/// Compares what the config wants with what the project holds. An empty `desired` plans the destruction of
/// everything the stack owns.
pub(crate) fn diff(
    ctx: &Context<'_>,
    desired: &[Gateway],
    world: &Observation,
) -> Result<Vec<Change>, PlanError> {
    let stack = ctx.stack;
    let mut changes = Vec::new();
    let mut matched: BTreeSet<(Kind, String)> = BTreeSet::new();

    // Which (pool, tag) pairs natgw added: recorded by any of this stack's firewalls, or missing now (and
    // therefore about to be added by natgw).
    let mut natgw_added: BTreeSet<(NodePoolId, String)> = BTreeSet::new();
    for facts in world.records(Some(stack)) {
        let pool = facts
            .get(KEY_NODE_POOL)
            .and_then(|p| crate::model::observed::parse_pool(p));
        if let (true, Some(pool), Some(tag)) = (
            facts.get(KEY_TAG_ADDED).map(String::as_str) == Some("true"),
            pool,
            facts.get(KEY_NODE_TAG),
        ) {
            natgw_added.insert((pool, tag.clone()));
        }
    }
    for gw in desired {
        match world.node_pool(&gw.node_pool) {
            Some(pool) if pool.resource.tags.contains(&gw.node_tag) => {}
            Some(_) => {
                natgw_added.insert((gw.node_pool.clone(), gw.node_tag.clone()));
            }
            None => {
                return Err(PlanError::MissingNodePool(
                    gw.node_pool.clone(),
                    gw.owner.gateway.clone(),
                ));
            }
        }
    }

    for gw in desired {
        let gateway = &gw.owner.gateway;
        // Addresses.
        let ext = address_change(
            stack,
            gateway,
            Kind::ExternalAddress,
            &gw.external_address,
            world,
        )?;
        let int = address_change(
            stack,
            gateway,
            Kind::InternalAddress,
            &gw.internal_address,
            world,
        )?;
        let kept_ip = |c: &Change| -> Option<Ipv4Addr> {
            match (&c.action, &c.before) {
                (Action::NoOp | Action::Update, Some(Resource::Address(a))) => a.address,
                _ => None,
            }
        };
        let ext_ip = kept_ip(&ext);
        let int_ip = gw.internal_address.address.or_else(|| kept_ip(&int));
        let int_replaced = matches!(int.action, Action::Create | Action::Replace);
        let ext_replaced = matches!(ext.action, Action::Create | Action::Replace);
        matched.insert((Kind::ExternalAddress, ext.name.clone()));
        matched.insert((Kind::InternalAddress, int.name.clone()));
        changes.push(ext);
        changes.push(int);

        // Firewall, with the node-pool tag record (routes carry it too).
        let added = natgw_added.contains(&(gw.node_pool.clone(), gw.node_tag.clone()));
        let record = gw.owner.description(&[
            (KEY_NODE_POOL, gw.node_pool.to_string()),
            (KEY_NODE_TAG, gw.node_tag.clone()),
            (KEY_TAG_ADDED, added.to_string()),
        ]);
        let mut fw = gw.firewall.clone();
        fw.description = record.clone();
        let fw_change = simple_change(
            stack,
            gateway,
            Kind::Firewall,
            &fw.name,
            Resource::Firewall(fw.clone()),
            world,
        )?;
        matched.insert((Kind::Firewall, fw.name.clone()));
        changes.push(fw_change);

        // Instance.
        let mut vm = gw.instance.clone();
        vm.network_ip = int_ip;
        vm.nat_ip = ext_ip;
        let mut vm_change = simple_change(
            stack,
            gateway,
            Kind::Instance,
            &vm.name,
            Resource::Instance(vm.clone()),
            world,
        )?;
        if vm_change.before.is_some() {
            if int_replaced {
                force_unknown(&mut vm_change, "network_ip");
            }
            if ext_replaced {
                force_unknown(&mut vm_change, "nat_ip");
            }
        }
        matched.insert((Kind::Instance, vm.name.clone()));
        changes.push(vm_change);

        // Routes.
        for route in &gw.routes {
            let mut r = route.clone();
            r.next_hop_ip = int_ip;
            // Set when the route is made; a route is never replaced for its description alone.
            r.description = record.clone();
            let mut rc = simple_change(
                stack,
                gateway,
                Kind::Route,
                &r.name,
                Resource::Route(r.clone()),
                world,
            )?;
            if rc.before.is_some() && int_replaced {
                force_unknown(&mut rc, "next_hop_ip");
            }
            matched.insert((Kind::Route, r.name.clone()));
            changes.push(rc);
        }
    }

    // Node pools: add wanted tags; remove tags natgw added that no gateway wants any more.
    let mut wanted: BTreeMap<NodePoolId, BTreeSet<String>> = BTreeMap::new();
    for gw in desired {
        wanted
            .entry(gw.node_pool.clone())
            .or_default()
            .insert(gw.node_tag.clone());
    }
    let mut pools: BTreeSet<NodePoolId> = wanted.keys().cloned().collect();
    pools.extend(world.recorded_node_pools(Some(stack)));
    for id in pools {
        let Some(observed) = world.node_pool(&id) else {
            continue;
        };
        let want = wanted.get(&id).cloned().unwrap_or_default();
        let mut tags = observed.resource.tags.clone();
        for tag in &want {
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        tags.retain(|t| want.contains(t) || !natgw_added.contains(&(id.clone(), t.clone())));
        let after = NodePool {
            id: id.clone(),
            tags,
        };
        let action = if after == observed.resource {
            Action::NoOp
        } else {
            Action::Update
        };
        let diffs = if action == Action::Update {
            vec![FieldDiff {
                field: "tags".into(),
                before: json!(observed.resource.tags),
                after: json!(after.tags),
                unknown: false,
                forces_replacement: false,
            }]
        } else {
            Vec::new()
        };
        changes.push(Change {
            gateway: String::new(),
            kind: Kind::NodePool,
            name: id.to_string(),
            action,
            before: Some(Resource::NodePool(observed.resource.clone())),
            after: Some(Resource::NodePool(after)),
            preconditions: observed.preconditions.clone(),
            diffs,
        });
    }

    // What the stack owns and the config no longer wants.
    let gateway_of = |o: &Option<Owner>| o.as_ref().map(|o| o.gateway.clone()).unwrap_or_default();
    for a in world.addresses.iter().filter(|a| a.owned_by(stack)) {
        let kind = if a.resource.address_type == crate::model::AddressType::External {
            Kind::ExternalAddress
        } else {
            Kind::InternalAddress
        };
        if !matched.contains(&(kind, a.resource.name.clone())) {
            changes.push(delete(
                gateway_of(&a.owner),
                kind,
                Resource::Address(a.resource.clone()),
                &a.preconditions,
            ));
        }
    }
    for f in world.firewalls.iter().filter(|f| f.owned_by(stack)) {
        if !matched.contains(&(Kind::Firewall, f.resource.name.clone())) {
            changes.push(delete(
                gateway_of(&f.owner),
                Kind::Firewall,
                Resource::Firewall(f.resource.clone()),
                &f.preconditions,
            ));
        }
    }
    for i in world.instances.iter().filter(|i| i.owned_by(stack)) {
        if !matched.contains(&(Kind::Instance, i.resource.name.clone())) {
            changes.push(delete(
                gateway_of(&i.owner),
                Kind::Instance,
                Resource::Instance(i.resource.clone()),
                &i.preconditions,
            ));
        }
    }
    for r in world.routes.iter().filter(|r| r.owned_by(stack)) {
        if !matched.contains(&(Kind::Route, r.resource.name.clone())) {
            changes.push(delete(
                gateway_of(&r.owner),
                Kind::Route,
                Resource::Route(r.resource.clone()),
                &r.preconditions,
            ));
        }
    }
    changes.sort_by(|a, b| (&a.gateway, a.kind, &a.name).cmp(&(&b.gateway, b.kind, &b.name)));
    // Node pools (no gateway) last.
    changes.sort_by_key(|c| c.kind == Kind::NodePool);
    Ok(changes)
}

fn delete(gateway: String, kind: Kind, before: Resource, preconditions: &Preconditions) -> Change {
    Change {
        gateway,
        kind,
        name: before.name(),
        action: Action::Delete,
        before: Some(before),
        after: None,
        preconditions: preconditions.clone(),
        diffs: Vec::new(),
    }
}

/// A field whose new value is only known after apply (its producer is being replaced): the resource must be
/// replaced too.
fn force_unknown(change: &mut Change, field: &str) {
    let known_after = change
        .after
        .as_ref()
        .map(|a| field_value(a, field))
        .unwrap_or(Value::Null);
    if !known_after.is_null() {
        // The new value is known (a configured IP): the ordinary comparison already covers it.
        return;
    }
    change.diffs.retain(|d| d.field != field);
    let before = change
        .before
        .as_ref()
        .map(|b| field_value(b, field))
        .unwrap_or(Value::Null);
    change.diffs.push(FieldDiff {
        field: field.into(),
        before,
        after: Value::Null,
        unknown: true,
        forces_replacement: true,
    });
    change.action = Action::Replace;
}

fn field_value(r: &Resource, field: &str) -> Value {
    r.fields().remove(field).unwrap_or(Value::Null)
}

/// How each field of each kind may change: ignored, updated in place, or only by replacement.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mutability {
    Ignore,
    InPlace,
    Replace,
}

fn mutability(kind: Kind, field: &str) -> Mutability {
    use Mutability::{Ignore, InPlace, Replace};
    match (kind, field) {
        (_, "name") => Ignore,
        (Kind::ExternalAddress | Kind::InternalAddress, "labels") => InPlace,
        (Kind::ExternalAddress | Kind::InternalAddress, "description") => Ignore,
        (Kind::Firewall, "network") => Replace,
        (Kind::Firewall, _) => InPlace,
        (Kind::Instance, "labels" | "tags" | "startup_script" | "ready_token" | "status") => {
            InPlace
        }
        (Kind::Instance, "description") => Ignore,
        (Kind::Route, "description") => Ignore,
        _ => Replace,
    }
}

/// Finds the observed resource for a desired one and says what to do.
fn simple_change(
    stack: &str,
    gateway: &str,
    kind: Kind,
    name: &str,
    after: Resource,
    world: &Observation,
) -> Result<Change, PlanError> {
    let found: Option<(Resource, &Option<Owner>, &Preconditions)> = match kind {
        Kind::Firewall => find(&world.firewalls, |f| f.name == name).map(|o| {
            (
                Resource::Firewall(o.resource.clone()),
                &o.owner,
                &o.preconditions,
            )
        }),
        Kind::Instance => find(&world.instances, |i| i.name == name).map(|o| {
            (
                Resource::Instance(o.resource.clone()),
                &o.owner,
                &o.preconditions,
            )
        }),
        Kind::Route => find(&world.routes, |r| r.name == name).map(|o| {
            (
                Resource::Route(o.resource.clone()),
                &o.owner,
                &o.preconditions,
            )
        }),
        _ => None,
    };
    compare(stack, gateway, kind, name, after, found)
}

fn address_change(
    stack: &str,
    gateway: &str,
    kind: Kind,
    want: &Address,
    world: &Observation,
) -> Result<Change, PlanError> {
    // Prefer the one in the wanted region; another region's is then a replacement.
    let found = world
        .addresses
        .iter()
        .filter(|a| a.resource.name == want.name)
        .min_by_key(|a| a.resource.region != want.region)
        .map(|o| {
            (
                Resource::Address(o.resource.clone()),
                &o.owner,
                &o.preconditions,
            )
        });
    compare(
        stack,
        gateway,
        kind,
        &want.name,
        Resource::Address(want.clone()),
        found,
    )
}

fn find<T>(list: &[Observed<T>], pred: impl Fn(&T) -> bool) -> Option<&Observed<T>> {
    list.iter().find(|o| pred(&o.resource))
}

fn compare(
    stack: &str,
    gateway: &str,
    kind: Kind,
    name: &str,
    after: Resource,
    found: Option<(Resource, &Option<Owner>, &Preconditions)>,
) -> Result<Change, PlanError> {
    let Some((before, owner, preconditions)) = found else {
        return Ok(Change {
            gateway: gateway.into(),
            kind,
            name: name.into(),
            action: Action::Create,
            before: None,
            after: Some(after),
            preconditions: Preconditions::default(),
            diffs: Vec::new(),
        });
    };
    match owner {
        Some(o) if o.stack == stack => {}
        other => {
            return Err(PlanError::Conflict {
                kind: kind.type_name(),
                name: name.into(),
                stack: stack.into(),
                owner: match other {
                    Some(o) => format!("it belongs to stack \"{}\"", o.stack),
                    None => "it has no natgw ownership marker".into(),
                },
            });
        }
    }
    let b = before.fields();
    let a = after.fields();
    let mut diffs = Vec::new();
    for (field, after_v) in &a {
        let m = mutability(kind, field);
        if m == Mutability::Ignore {
            continue;
        }
        // A desired `None` is "whatever Google picked": not a difference.
        if after_v.is_null() {
            continue;
        }
        let before_v = b.get(field).cloned().unwrap_or(Value::Null);
        if kind == Kind::Instance && field == "status" && is_running_or_booting(&before_v) {
            continue;
        }
        if &before_v != after_v {
            diffs.push(FieldDiff {
                field: field.clone(),
                before: before_v,
                after: after_v.clone(),
                unknown: false,
                forces_replacement: m == Mutability::Replace,
            });
        }
    }
    let action = if diffs.iter().any(|d| d.forces_replacement) {
        Action::Replace
    } else if diffs.is_empty() {
        Action::NoOp
    } else {
        Action::Update
    };
    Ok(Change {
        gateway: gateway.into(),
        kind,
        name: name.into(),
        action,
        before: Some(before),
        after: Some(after),
        preconditions: preconditions.clone(),
        diffs,
    })
}

fn is_running_or_booting(v: &Value) -> bool {
    matches!(v.as_str(), Some("RUNNING" | "PROVISIONING" | "STAGING"))
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod tests;
