//! `diff(desired, observed) -> Plan` (pure).
//!
//! Matching is by name among every observed resource natgw could have named. A resource of this stack that
//! the config no longer wants is deleted; a resource with a wanted name that this stack does not own is a
//! conflict, never an adoption.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::desired::{DesiredGateway, ROLE_SSH};
use crate::model::fields::{Field, InstanceField, Mutability, NodePoolField, RouteField};
use crate::model::observed::{Observation, Observed, Preconditions};
use crate::model::ownership::{
    KEY_NODE_POOL, KEY_NODE_TAG, KEY_ROLE, KEY_TAG_ADDED, LABEL_ROLE, Owner,
};
use crate::model::{Address, Kind, NodePoolId, Resource};
pub(crate) use vm::VmAction;

pub(crate) mod vm;

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

/// One attribute that differs. A saved plan holds the field by name (`F = String`), which the change's kind
/// turns back into a `Field`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct FieldDiff<F = Field> {
    pub(crate) field: F,
    pub(crate) before: Value,
    /// `null` with `unknown`: known after apply.
    pub(crate) after: Value,
    #[serde(default)]
    pub(crate) unknown: bool,
    #[serde(default)]
    pub(crate) forces_replacement: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SavedChange")]
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
    /// The name of an existing resource this change takes over (`[gateways.NAME.adopt]`), as Terraform's
    /// `change.importing.id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) importing: Option<String>,
    /// Differences left alone because fixing them would stop or replace an adopted VM, or an interruption
    /// the change itself causes: each says what it would interrupt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) warnings: Vec<String>,
    /// What apply does to a kept VM's power, in order (see `vm`): shown with the status and restart lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) vm_actions: Vec<VmAction>,
    /// A resource this plan deletes while it creates another under the same address, with another name: the
    /// old route of a move between `zone` and `zones` (destroyed make-before-break, once its successor
    /// exists), or the old rule and routes of a gateway moved in or out of a Shared VPC host. Terraform's
    /// deposed object: it shares its successor's address, and its name tells the two apart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) deposed: bool,
}

/// A change as saved, before its field names are checked against its kind.
#[derive(Deserialize)]
struct SavedChange {
    gateway: String,
    kind: Kind,
    name: String,
    action: Action,
    before: Option<Resource>,
    after: Option<Resource>,
    #[serde(default)]
    preconditions: Preconditions,
    #[serde(default)]
    diffs: Vec<FieldDiff<String>>,
    #[serde(default)]
    importing: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    vm_actions: Vec<VmAction>,
    #[serde(default)]
    deposed: bool,
}

impl TryFrom<SavedChange> for Change {
    type Error = String;

    fn try_from(c: SavedChange) -> Result<Change, String> {
        let diffs = c
            .diffs
            .into_iter()
            .map(|d| {
                let field = Field::parse(c.kind, &d.field).ok_or_else(|| {
                    format!("{} has no field \"{}\"", c.kind.type_name(), d.field)
                })?;
                Ok(FieldDiff {
                    field,
                    before: d.before,
                    after: d.after,
                    unknown: d.unknown,
                    forces_replacement: d.forces_replacement,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Change {
            gateway: c.gateway,
            kind: c.kind,
            name: c.name,
            action: c.action,
            before: c.before,
            after: c.after,
            preconditions: c.preconditions,
            diffs,
            importing: c.importing,
            warnings: c.warnings,
            vm_actions: c.vm_actions,
            deposed: c.deposed,
        })
    }
}

impl Change {
    /// Terraform-style address: `gitlab.external_address`, `gitlab.route["34.120.10.10/32"]`.
    pub(crate) fn address(&self) -> String {
        match (&self.kind, self.after.as_ref().or(self.before.as_ref())) {
            (Kind::Route, Some(Resource::Route(r))) => {
                format!("{}.route[\"{}\"]", self.gateway, r.dest_range)
            }
            (Kind::NodePool, _) => format!("node_pool[\"{}\"]", self.name),
            (kind, _) if kind.by_name() => {
                format!("{}.{}[\"{}\"]", self.gateway, kind.role(), self.name)
            }
            (kind, _) => format!("{}.{}", self.gateway, kind.role()),
        }
    }

    /// The address as people read it: a deposed route also names itself, since it shares its successor's.
    pub(crate) fn label(&self) -> String {
        match self.deposed {
            true => format!("{} (deposed object {})", self.address(), self.name),
            false => self.address(),
        }
    }

    /// The IP an address change keeps (none if it creates or replaces the address).
    pub(crate) fn kept_ip(&self) -> Option<Ipv4Addr> {
        match (&self.action, &self.before) {
            (Action::NoOp | Action::Update, Some(Resource::Address(a))) => a.address,
            _ => None,
        }
    }

    /// Whether the resource is new after the change (created, or replaced).
    pub(crate) fn made_anew(&self) -> bool {
        matches!(self.action, Action::Create | Action::Replace)
    }

    pub(crate) fn forces_replacement(&self) -> Vec<&'static str> {
        self.diffs
            .iter()
            .filter(|d| d.forces_replacement)
            .map(|d| d.field.name())
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
    /// Existing resources taken over (Terraform's "to import").
    #[serde(skip)]
    pub(crate) adopt: usize,
    pub(crate) add: usize,
    pub(crate) change: usize,
    pub(crate) destroy: usize,
}

impl Plan {
    pub(crate) fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            if c.importing.is_some() {
                s.adopt += 1;
            }
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
        self.changes
            .iter()
            .any(|c| c.action != Action::NoOp || c.importing.is_some())
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
    #[error(
        "gateways.{gateway}.internal_ip: the gateway exists with `{from}` and the config now says `{to}`; moving it builds the new path next to the old one, and both cannot hold internal_ip {ip} at once. Remove internal_ip for the move (Google picks a free address; the routes follow it), or, to allow-list the new egress IPs first, add a second gateway with `{to}` under another name, its own node_tag and a route_priority one above this one's, apply, allow-list its egress IPs, then remove this one and apply again (README \"High availability\", \"To allow-list first\")"
    )]
    Migration {
        gateway: String,
        from: &'static str,
        to: &'static str,
        ip: std::net::Ipv4Addr,
    },
    #[error("gateways.{gateway}.adopt.{key}: cannot adopt {kind} \"{name}\": {reason}")]
    Adopt {
        gateway: String,
        key: &'static str,
        kind: &'static str,
        name: String,
        reason: String,
    },
}

/// Everything diff needs besides the two worlds.
pub(crate) struct Context<'a> {
    pub(crate) stack: &'a str,
}

/// Which (pool, tag) pairs natgw added.
type AddedTags = BTreeSet<(NodePoolId, String)>;

/// Compares what the config wants with what the project holds. An empty `desired` plans the destruction of
/// everything the stack owns.
pub(crate) fn diff(
    ctx: &Context<'_>,
    desired: &[DesiredGateway],
    world: &Observation,
) -> Result<Vec<Change>, PlanError> {
    let stack = ctx.stack;
    let added = tags_natgw_added(stack, desired, world)?;
    let mut changes = Vec::new();
    for gw in desired {
        let gw = &known_names(stack, gw, world);
        let moving = ha::migration(stack, gw, world)?;
        let first = changes.len();
        gateway_changes(stack, gw, &added, world, &mut changes)?;
        if let Some(warning) = moving {
            for c in changes[first..]
                .iter_mut()
                .filter(|c| c.kind == Kind::Route && c.action == Action::Create)
            {
                c.warnings.push(warning.clone());
            }
        }
    }
    changes.extend(node_pool_changes(stack, desired, &added, world));
    let wanted: BTreeSet<(Kind, String)> =
        changes.iter().map(|c| (c.kind, c.name.clone())).collect();
    changes.extend(unwanted(stack, &wanted, world));
    mark_deposed(&mut changes);
    changes.sort_by(|a, b| (&a.gateway, a.kind, &a.name).cmp(&(&b.gateway, b.kind, &b.name)));
    // Node pools (no gateway) last.
    changes.sort_by_key(|c| c.kind == Kind::NodePool);
    Ok(changes)
}

/// Marks each resource deleted while one with the same address is created (see `Change::deposed`): the old
/// route of a move between `zone` and `zones`, or the old rule and routes of a gateway moved in or out of a
/// Shared VPC host, whose names differ from their successors'.
fn mark_deposed(changes: &mut [Change]) {
    let created: BTreeSet<String> = changes
        .iter()
        .filter(|c| c.action == Action::Create)
        .map(Change::address)
        .collect();
    for c in changes.iter_mut() {
        if c.action == Action::Delete && created.contains(&c.address()) {
            c.deposed = true;
        }
    }
}

/// The gateway with the names its adopted resources kept: the adopt table's, or, once it is gone from the
/// config, those of the resources this stack owns for this gateway under a name natgw did not derive. An
/// adopted VM's name is also its network tag, which the firewall rule targets.
fn known_names(stack: &str, gw: &DesiredGateway, world: &Observation) -> DesiredGateway {
    let mut gw = gw.clone();
    let gateway = gw.owner.gateway.clone();
    let mine = |o: &Option<Owner>| {
        o.as_ref()
            .is_some_and(|o| o.stack == stack && o.gateway == gateway)
    };
    let pick = |names: Vec<&String>, want: &str| -> Option<String> {
        if names.iter().any(|n| *n == want) {
            return None;
        }
        names.first().map(|n| (*n).clone())
    };
    if gw.adopt.external_address.is_none() || gw.adopt.internal_address.is_none() {
        for (adopted, want) in [
            (
                gw.adopt.external_address.is_some(),
                &mut gw.external_address,
            ),
            (
                gw.adopt.internal_address.is_some(),
                &mut gw.internal_address,
            ),
        ] {
            if adopted {
                continue;
            }
            let names = world
                .addresses
                .iter()
                // A gateway in several zones labels its own addresses with their role (`model::ha`).
                .filter(|o| {
                    mine(&o.owner)
                        && o.resource.address_type == want.address_type
                        && !o.resource.labels.contains_key(LABEL_ROLE)
                })
                .map(|o| &o.resource.name)
                .collect();
            if let Some(name) = pick(names, &want.name) {
                want.name = name;
            }
        }
    }
    if gw.adopt.firewall.is_none() {
        // A rule in another network's project is the one of a gateway moved in or out of a Shared VPC host:
        // it goes with the old network, it does not name the new rule.
        let here = crate::model::network_project(&gw.firewall.network);
        let names = world
            .firewalls
            .iter()
            .filter(|o| {
                mine(&o.owner)
                    && !o.facts.contains_key(KEY_ROLE)
                    && crate::model::network_project(&o.resource.network) == here
            })
            .map(|o| &o.resource.name)
            .collect();
        if let Some(name) = pick(names, &gw.firewall.name) {
            gw.firewall.name = name;
        }
    }
    if gw.adopt.instance.is_none() {
        let names = world
            .instances
            .iter()
            .filter(|o| mine(&o.owner) && !o.resource.labels.contains_key(LABEL_ROLE))
            .map(|o| &o.resource.name)
            .collect();
        if let Some(name) = pick(names, &gw.instance.name) {
            let derived = std::mem::replace(&mut gw.instance.name, name.clone());
            let retag = |tags: &mut Vec<String>| {
                for t in tags.iter_mut().filter(|t| **t == derived) {
                    t.clone_from(&name);
                }
            };
            retag(&mut gw.instance.tags);
            retag(&mut gw.firewall.target_tags);
            if let Some(ssh) = gw.ssh_firewall.as_mut() {
                retag(&mut ssh.target_tags);
            }
        }
    }
    gw
}

/// The (pool, tag) pairs natgw added: recorded by any of this stack's firewalls or routes, or missing now
/// (and therefore about to be added by natgw). A gateway whose node pool is missing is an error.
fn tags_natgw_added(
    stack: &str,
    desired: &[DesiredGateway],
    world: &Observation,
) -> Result<AddedTags, PlanError> {
    let mut added = AddedTags::new();
    for facts in world.records(Some(stack)) {
        let pool = facts
            .get(KEY_NODE_POOL)
            .and_then(|p| crate::model::observed::parse_pool(p));
        if let (true, Some(pool), Some(tag)) = (
            facts.get(KEY_TAG_ADDED).map(String::as_str) == Some("true"),
            pool,
            facts.get(KEY_NODE_TAG),
        ) {
            added.insert((pool, tag.clone()));
        }
    }
    for gw in desired {
        match world.node_pool(&gw.node_pool) {
            Some(pool) if pool.resource.tags.contains(&gw.node_tag) => {}
            Some(_) => {
                added.insert((gw.node_pool.clone(), gw.node_tag.clone()));
            }
            None => {
                return Err(PlanError::MissingNodePool(
                    gw.node_pool.clone(),
                    gw.owner.gateway.clone(),
                ));
            }
        }
    }
    Ok(added)
}

/// The changes of one gateway's own resources: addresses, firewall rule, VM, routes.
fn gateway_changes(
    stack: &str,
    gw: &DesiredGateway,
    added: &AddedTags,
    world: &Observation,
    changes: &mut Vec<Change>,
) -> Result<(), PlanError> {
    if let Some(desired) = &gw.ha {
        return ha::gateway_changes(stack, gw, desired, added, world, changes);
    }
    let gateway = &gw.owner.gateway;
    let ext = address_change(
        stack,
        gateway,
        &gw.external_address,
        world,
        gw.adopt.external_address.is_some(),
    )?;
    let int = address_change(
        stack,
        gateway,
        &gw.internal_address,
        world,
        gw.adopt.internal_address.is_some(),
    )?;
    let ext_ip = ext.kept_ip();
    let int_ip = gw.internal_address.address.or_else(|| int.kept_ip());
    let int_replaced = int.made_anew();
    let ext_replaced = ext.made_anew();
    changes.push(ext);
    changes.push(int);

    let record = firewall_changes(stack, gw, added, world, changes)?;

    let mut vm = gw.instance.clone();
    vm.network_ip = int_ip;
    vm.nat_ip = ext_ip;
    let found = by_name(&world.instances, &vm.name, |i| &i.name, Resource::Instance);
    let adopting = gw.adopt.instance.is_some();
    let found = adoptable(stack, gateway, Kind::Instance, &vm.name, found, adopting)?;
    if let Some(Found {
        resource: Resource::Instance(i),
        owner: None,
        ..
    }) = &found
        && !i.can_ip_forward
    {
        return Err(adopt_error(
                gateway,
                Kind::Instance,
                &vm.name,
                "it does not forward packets (canIpForward is false), and Google sets canIpForward only when a VM is created: a gateway VM must be created with it".into(),
        ));
    }
    let mut vm_change = compare(
        stack,
        gateway,
        Kind::Instance,
        Resource::Instance(vm),
        found,
    )?;
    // A VM natgw made carries its marker in the description, which no method changes: one without it was
    // adopted, with or without the adopt table still there, and is never stopped or replaced unasked.
    let was_adopted = matches!(&vm_change.before, Some(Resource::Instance(i))
        if crate::model::ownership::parse_description(&i.description).is_none());
    if adopting || was_adopted {
        keep_adopted_instance(gateway, &mut vm_change)?;
    }
    if vm_change.before.is_some() {
        if int_replaced {
            force_unknown(&mut vm_change, Field::Instance(InstanceField::NetworkIp));
        }
        if ext_replaced {
            force_unknown(&mut vm_change, Field::Instance(InstanceField::NatIp));
        }
    }
    if vm_change.action == Action::Update {
        vm_change.vm_actions = vm_actions(&vm_change);
    }
    changes.push(vm_change);

    for route in &gw.routes {
        let mut r = route.clone();
        r.next_hop_ip = int_ip;
        // Set when the route is made; a route is never replaced for its description alone.
        r.description = record.clone();
        let found = by_name(&world.routes, &r.name, |r| &r.name, Resource::Route);
        let mut rc = compare(stack, gateway, Kind::Route, Resource::Route(r), found)?;
        if rc.before.is_some() && int_replaced {
            force_unknown(&mut rc, Field::Route(RouteField::NextHopIp));
        }
        changes.push(rc);
    }
    for name in &gw.adopt.routes {
        changes.extend(adopted_route(stack, gw, name, world)?);
    }
    Ok(())
}

/// The gateway's firewall rules; returns the record (its description) that the rule and every route carry:
/// the node-pool tag, and whether natgw added it.
fn firewall_changes(
    stack: &str,
    gw: &DesiredGateway,
    added: &AddedTags,
    world: &Observation,
    changes: &mut Vec<Change>,
) -> Result<String, PlanError> {
    let gateway = &gw.owner.gateway;
    let tag_added = added.contains(&(gw.node_pool.clone(), gw.node_tag.clone()));
    let record = gw.owner.description(&[
        (KEY_NODE_POOL, gw.node_pool.to_string()),
        (KEY_NODE_TAG, gw.node_tag.clone()),
        (KEY_TAG_ADDED, tag_added.to_string()),
    ]);
    let mut fw = gw.firewall.clone();
    fw.description = record.clone();
    let found = by_name(&world.firewalls, &fw.name, |f| &f.name, Resource::Firewall);
    let adopting = gw.adopt.firewall.is_some();
    let found = adoptable(stack, gateway, Kind::Firewall, &fw.name, found, adopting)?;
    changes.push(compare(
        stack,
        gateway,
        Kind::Firewall,
        Resource::Firewall(fw),
        found,
    )?);
    if let Some(ssh) = &gw.ssh_firewall {
        let found = by_name(&world.firewalls, &ssh.name, |f| &f.name, Resource::Firewall);
        changes.push(compare(
            stack,
            gateway,
            Kind::SshFirewall,
            Resource::Firewall(ssh.clone()),
            found,
        )?);
    }
    Ok(record)
}

/// The `[gateways.NAME.adopt]` key of a kind.
fn adopt_key(kind: Kind) -> &'static str {
    match kind {
        Kind::Route => "routes",
        other => other.role(),
    }
}

fn adopt_error(gateway: &str, kind: Kind, name: &str, reason: String) -> PlanError {
    PlanError::Adopt {
        gateway: gateway.into(),
        key: adopt_key(kind),
        kind: kind.type_name(),
        name: name.into(),
        reason,
    }
}

/// What the adopt table names must exist and belong to nobody else. A resource without any natgw marker is
/// taken over: `compare` then sees it as this stack's, and its ownership markers are among the differences.
fn adoptable<'a>(
    stack: &str,
    gateway: &str,
    kind: Kind,
    name: &str,
    found: Option<Found<'a>>,
    adopting: bool,
) -> Result<Option<Found<'a>>, PlanError> {
    if !adopting {
        return Ok(found);
    }
    match &found {
        None => Err(adopt_error(
            gateway,
            kind,
            name,
            "it does not exist in the project: check the name, or remove the key to let natgw create its own".into(),
        )),
        Some(Found {
            owner: Some(o), ..
        }) if o.stack != stack => Err(adopt_error(
            gateway,
            kind,
            name,
            format!(
                "it belongs to natgw stack \"{}\" (gateway \"{}\"); natgw never takes a resource from another stack",
                o.stack, o.gateway
            ),
        )),
        Some(Found {
            owner: Some(o), ..
        }) if o.gateway != gateway => Err(adopt_error(
            gateway,
            kind,
            name,
            format!("it belongs to this stack's gateway \"{}\"", o.gateway),
        )),
        Some(_) => Ok(found.map(|f| Found {
            adopting: true,
            ..f
        })),
    }
}

/// An adopted VM is never stopped or replaced by the adoption: its boot image, which Google does not report,
/// is taken to match (and recorded); differences that need a stop or a new VM become warnings; installing
/// natgw's startup script is announced with its one reset.
fn keep_adopted_instance(gateway: &str, change: &mut Change) -> Result<(), PlanError> {
    let mut kept = Vec::new();
    for d in std::mem::take(&mut change.diffs) {
        match d.field {
            Field::Instance(InstanceField::Image) => {}
            Field::Instance(
                f @ (InstanceField::MachineType
                | InstanceField::ShieldedVm
                | InstanceField::ServiceAccount),
            ) => {
                let interrupts = match f {
                    InstanceField::MachineType => "a stop and start of the VM",
                    _ => "a new VM (a stop, a new boot disk and a new instance id)",
                };
                change.warnings.push(format!(
                    "{} is {} where the config wants {}; left as it is: fixing it needs {interrupts}, and with it an interruption of egress",
                    d.field.name(),
                    d.before,
                    d.after
                ));
            }
            _ if d.forces_replacement && !d.unknown => {
                return Err(adopt_error(
                    gateway,
                    Kind::Instance,
                    &change.name,
                    format!(
                        "it does not match the gateway: its {} is {}, the gateway's is {}",
                        d.field.name(),
                        d.before,
                        d.after
                    ),
                ));
            }
            _ => kept.push(d),
        }
    }
    if kept
        .iter()
        .any(|d| d.field == Field::Instance(InstanceField::StartupScript))
        && change.importing.is_some()
    {
        change.warnings.push(
            "installing natgw's startup script resets the VM once: egress through the gateway stops for one boot".into(),
        );
    }
    change.diffs = kept;
    change.action = if change.diffs.iter().any(|d| d.forces_replacement) {
        Action::Replace
    } else if change.diffs.is_empty() {
        Action::NoOp
    } else {
        Action::Update
    };
    Ok(())
}

/// A route named in the adopt table: routes cannot be edited, so natgw's own route to the same range takes
/// over and the adopted one is deleted once it is in place (see `apply::graph`). Gone, with natgw's own routes
/// in place, it was adopted already: nothing to do.
fn adopted_route(
    stack: &str,
    gw: &DesiredGateway,
    name: &str,
    world: &Observation,
) -> Result<Option<Change>, PlanError> {
    let gateway = &gw.owner.gateway;
    let found = by_name(&world.routes, name, |r| &r.name, Resource::Route);
    let taken_over = gw.routes.iter().all(|want| {
        world
            .routes
            .iter()
            .any(|o| o.resource.name == want.name && o.owned_by(stack))
    });
    if found.is_none() && taken_over {
        return Ok(None);
    }
    let found = adoptable(stack, gateway, Kind::Route, name, found, true)?
        .ok_or_else(|| adopt_error(gateway, Kind::Route, name, "it does not exist".into()))?;
    let Resource::Route(route) = &found.resource else {
        return Err(adopt_error(
            gateway,
            Kind::Route,
            name,
            "it is not a route".into(),
        ));
    };
    if !gw.routes.iter().any(|r| r.dest_range == route.dest_range) {
        let ranges: Vec<String> = gw.routes.iter().map(|r| r.dest_range.to_string()).collect();
        return Err(adopt_error(
            gateway,
            Kind::Route,
            name,
            format!(
                "it goes to {}, which is not one of the gateway's destinations ({}): natgw only takes over a route it replaces with its own",
                route.dest_range,
                ranges.join(", ")
            ),
        ));
    }
    Ok(Some(Change {
        gateway: gateway.clone(),
        kind: Kind::Route,
        name: name.into(),
        action: Action::Delete,
        before: Some(found.resource.clone()),
        after: None,
        preconditions: found.preconditions.clone(),
        diffs: Vec::new(),
        importing: Some(name.into()),
        warnings: Vec::new(),
        vm_actions: Vec::new(),
        deposed: false,
    }))
}

/// Node pools: add wanted tags; remove tags natgw added that no gateway wants any more.
fn node_pool_changes(
    stack: &str,
    desired: &[DesiredGateway],
    added: &AddedTags,
    world: &Observation,
) -> Vec<Change> {
    let mut wanted: BTreeMap<NodePoolId, BTreeSet<String>> = BTreeMap::new();
    for gw in desired {
        wanted
            .entry(gw.node_pool.clone())
            .or_default()
            .insert(gw.node_tag.clone());
    }
    let mut pools: BTreeSet<NodePoolId> = wanted.keys().cloned().collect();
    pools.extend(world.recorded_node_pools(Some(stack)));
    let mut changes = Vec::new();
    for id in pools {
        let Some(observed) = world.node_pool(&id) else {
            continue;
        };
        let want: Vec<String> = wanted
            .get(&id)
            .map(|w| w.iter().cloned().collect())
            .unwrap_or_default();
        let remove: Vec<String> = observed
            .resource
            .tags
            .iter()
            .filter(|t| !want.contains(t) && added.contains(&(id.clone(), (*t).clone())))
            .cloned()
            .collect();
        let after = observed.resource.with_tags(&want, &remove);
        let (action, diffs) = if after == observed.resource {
            (Action::NoOp, Vec::new())
        } else {
            let diff = FieldDiff {
                field: Field::NodePool(NodePoolField::Tags),
                before: json!(observed.resource.tags),
                after: json!(after.tags),
                unknown: false,
                forces_replacement: false,
            };
            (Action::Update, vec![diff])
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
            importing: None,
            warnings: Vec::new(),
            vm_actions: Vec::new(),
            deposed: false,
        });
    }
    changes
}

/// Deletes of what the stack owns and the config no longer wants.
fn unwanted(stack: &str, wanted: &BTreeSet<(Kind, String)>, world: &Observation) -> Vec<Change> {
    fn owned<'a>(owner: &'a Option<Owner>, stack: &str) -> Option<&'a Owner> {
        owner.as_ref().filter(|o| o.stack == stack)
    }
    let addresses = world.addresses.iter().filter_map(|o| {
        let kind = o.resource.kind();
        Some((
            kind,
            owned(&o.owner, stack)?,
            Resource::Address(o.resource.clone()),
            &o.preconditions,
        ))
    });
    let firewalls = world.firewalls.iter().filter_map(|o| {
        let kind = match o.facts.get(KEY_ROLE).map(String::as_str) {
            Some(ROLE_SSH) => Kind::SshFirewall,
            Some(crate::model::ha::ROLE_HEALTH) => Kind::HealthFirewall,
            _ => Kind::Firewall,
        };
        let r = Resource::Firewall(o.resource.clone());
        Some((kind, owned(&o.owner, stack)?, r, &o.preconditions))
    });
    let instances = world.instances.iter().filter_map(|o| {
        let r = Resource::Instance(o.resource.clone());
        Some((Kind::Instance, owned(&o.owner, stack)?, r, &o.preconditions))
    });
    let routes = world.routes.iter().filter_map(|o| {
        let r = Resource::Route(o.resource.clone());
        Some((Kind::Route, owned(&o.owner, stack)?, r, &o.preconditions))
    });
    addresses
        .chain(firewalls)
        .chain(instances)
        .chain(routes)
        .chain(ha::owned(world, stack))
        .filter(|(kind, _, r, _)| !wanted.contains(&(*kind, r.name())))
        .map(|(kind, owner, before, preconditions)| Change {
            gateway: owner.gateway.clone(),
            kind,
            name: before.name(),
            action: Action::Delete,
            before: Some(before),
            after: None,
            preconditions: preconditions.clone(),
            diffs: Vec::new(),
            importing: None,
            warnings: Vec::new(),
            vm_actions: Vec::new(),
            deposed: false,
        })
        .collect()
}

/// A field whose new value is only known after apply (its producer is being replaced): the resource must be
/// replaced too.
fn force_unknown(change: &mut Change, field: Field) {
    let known_after = change
        .after
        .as_ref()
        .map_or(Value::Null, |a| a.value(field));
    if !known_after.is_null() {
        // The new value is known (a configured IP): the ordinary comparison already covers it.
        return;
    }
    change.diffs.retain(|d| d.field != field);
    let before = change
        .before
        .as_ref()
        .map_or(Value::Null, |b| b.value(field));
    change.diffs.push(FieldDiff {
        field,
        before,
        after: Value::Null,
        unknown: true,
        forces_replacement: true,
    });
    change.action = Action::Replace;
}

/// An observed resource, as `compare` takes it.
struct Found<'a> {
    resource: Resource,
    owner: &'a Option<Owner>,
    preconditions: &'a Preconditions,
    /// Named in the adopt table: without any natgw marker, it is taken over rather than a conflict.
    adopting: bool,
}

fn by_name<'a, T: Clone>(
    list: &'a [Observed<T>],
    name: &str,
    name_of: fn(&T) -> &String,
    wrap: fn(T) -> Resource,
) -> Option<Found<'a>> {
    list.iter()
        .find(|o| name_of(&o.resource) == name)
        .map(|o| Found {
            resource: wrap(o.resource.clone()),
            owner: &o.owner,
            preconditions: &o.preconditions,
            adopting: false,
        })
}

fn address_change(
    stack: &str,
    gateway: &str,
    want: &Address,
    world: &Observation,
    adopting: bool,
) -> Result<Change, PlanError> {
    // Prefer the one in the wanted region; another region's is then a replacement.
    let found = world
        .addresses
        .iter()
        .filter(|a| a.resource.name == want.name)
        .min_by_key(|a| a.resource.region != want.region)
        .map(|o| Found {
            resource: Resource::Address(o.resource.clone()),
            owner: &o.owner,
            preconditions: &o.preconditions,
            adopting: false,
        });
    let kind = want.kind();
    let found = adoptable(stack, gateway, kind, &want.name, found, adopting)?;
    if let (
        true,
        Some(Found {
            resource: Resource::Address(a),
            ..
        }),
    ) = (adopting, &found)
    {
        if a.region != want.region {
            return Err(adopt_error(
                gateway,
                kind,
                &want.name,
                format!(
                    "it is in region {}, the gateway's is {}: an address cannot move between regions",
                    a.region, want.region
                ),
            ));
        }
        if a.address_type != want.address_type {
            return Err(adopt_error(
                gateway,
                kind,
                &want.name,
                format!(
                    "it is an {:?} address, the key wants an {:?} one",
                    a.address_type, want.address_type
                ),
            ));
        }
    }
    let after = Resource::Address(want.clone());
    let change = compare(stack, gateway, kind, after, found)?;
    if adopting && change.action == Action::Replace {
        return Err(adopt_error(
            gateway,
            kind,
            &want.name,
            format!(
                "matching the config would replace it ({} differs), and a new address has a new IP: the IP that others allow-list would be lost. Change the config to match the address",
                change.forces_replacement().join(", ")
            ),
        ));
    }
    Ok(change)
}

/// What to do to make `found` (if anything was found under the name) into `after`.
fn compare(
    stack: &str,
    gateway: &str,
    kind: Kind,
    after: Resource,
    found: Option<Found<'_>>,
) -> Result<Change, PlanError> {
    let name = after.name();
    let Some(found) = found else {
        return Ok(Change {
            gateway: gateway.into(),
            kind,
            name,
            action: Action::Create,
            before: None,
            after: Some(after),
            preconditions: Preconditions::default(),
            diffs: Vec::new(),
            importing: None,
            warnings: Vec::new(),
            vm_actions: Vec::new(),
            deposed: false,
        });
    };
    let importing = found.owner.is_none() && found.adopting;
    match found.owner {
        Some(o) if o.stack == stack => {}
        None if importing => {}
        other => {
            return Err(PlanError::Conflict {
                kind: kind.type_name(),
                name,
                stack: stack.into(),
                owner: match other {
                    Some(o) => format!("it belongs to stack \"{}\"", o.stack),
                    None => "it has no natgw ownership marker".into(),
                },
            });
        }
    }
    let before = found.resource;
    let mut diffs = Vec::new();
    for (field, after_v) in after.values() {
        let mutability = field.mutability();
        // A desired `None` is "whatever Google picked": not a difference.
        if mutability == Mutability::Ignore || after_v.is_null() {
            continue;
        }
        let before_v = before.value(field);
        if before_v != after_v && !as_good_as(field, &before_v) {
            diffs.push(FieldDiff {
                field,
                before: before_v,
                after: after_v,
                unknown: false,
                forces_replacement: mutability == Mutability::Replace,
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
    let importing = importing.then(|| name.clone());
    Ok(Change {
        gateway: gateway.into(),
        kind,
        name,
        action,
        before: Some(before),
        after: Some(after),
        preconditions: found.preconditions.clone(),
        diffs,
        importing,
        warnings: Vec::new(),
        vm_actions: Vec::new(),
        deposed: false,
    })
}

/// What apply does to the power of a VM it updates in place: bring it back from the status it is in, and
/// restart it if its startup script must run again (a new script or token, or a restart an interrupted apply
/// left pending) and bringing it back does not boot it afresh.
fn vm_actions(change: &Change) -> Vec<VmAction> {
    let Some(Resource::Instance(before)) = &change.before else {
        return Vec::new();
    };
    let status_changes = change
        .diffs
        .iter()
        .any(|d| d.field == Field::Instance(InstanceField::Status));
    let restart = change.diffs.iter().any(|d| {
        matches!(
            d.field,
            Field::Instance(
                InstanceField::StartupScript
                    | InstanceField::ReadyToken
                    | InstanceField::RestartPending
            )
        )
    });
    let status = if status_changes {
        before.status.as_str()
    } else {
        "RUNNING"
    };
    vm::actions(status, restart)
}

/// Whether an observed value that differs from the desired one is as good: a VM still booting is as good as
/// a running one.
fn as_good_as(field: Field, before: &Value) -> bool {
    match field {
        Field::Instance(InstanceField::Status) => before
            .as_str()
            .is_some_and(|s| VmAction::for_status(s).is_none()),
        Field::Address(_)
        | Field::Firewall(_)
        | Field::Instance(_)
        | Field::Route(_)
        | Field::NodePool(_)
        | Field::InstanceTemplate(_)
        | Field::InstanceGroup(_)
        | Field::HealthCheck(_)
        | Field::BackendService(_)
        | Field::ForwardingRule(_) => false,
    }
}

mod ha;
#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_ha;
