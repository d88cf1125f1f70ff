//! Applies a plan: each change becomes one or two steps (a replacement deletes, then creates; see `graph`),
//! which `crate::walk` runs in dependency order, bounded, skipping only what depends on a failure. Here is
//! what a step does, one function per kind going up (`up_*`) and one for going down (`down`).
//!
//! Apply follows the plan's changes alone; the reasons shown to the user never steer it.

pub(crate) mod graph;
mod ha;
pub(crate) mod ready;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::gcp::{Cloud, GcpError, NextHop, OwnerCheck};
use crate::model::fields::{Field, InstanceField};
use crate::model::observed::Observation;
use crate::model::progress::{Event, Outcome, Outputs, Verb, Wait};
use crate::model::{Address, Firewall, Instance, Kind, NodePool, Resource, Route};
use crate::plan::{Action, Change, Plan, VmAction};
use crate::walk::{self, State};
pub(crate) use graph::{Direction, Step};

#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// Steps in flight at once.
    pub(crate) concurrency: usize,
    /// How long a new or restarted VM may take to report ready.
    pub(crate) ready_timeout: Duration,
    /// How often a long step reports that it is still running.
    pub(crate) progress_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            concurrency: 16,
            ready_timeout: Duration::from_secs(300),
            progress_every: Duration::from_secs(10),
        }
    }
}

/// The outputs of the gateways a plan keeps or creates, from the IPs known so far (by address name).
fn outputs(changes: &[Change], ips: &HashMap<String, Ipv4Addr>) -> BTreeMap<String, Outputs> {
    let names = address_names(changes);
    let mut out: BTreeMap<String, Outputs> = changes
        .iter()
        .filter(|c| c.kind == Kind::ExternalAddress && c.after.is_some())
        .map(|c| {
            let ip = |kind| {
                let name = names.get(&(c.gateway.clone(), kind))?;
                ips.get(name).copied()
            };
            (
                c.gateway.clone(),
                Outputs {
                    egress_ip: ip(Kind::ExternalAddress),
                    internal_ip: ip(Kind::InternalAddress),
                    egress_ips: None,
                },
            )
        })
        .collect();
    out.extend(ha::outputs(changes, ips));
    out
}

/// The outputs of a plan with nothing to do: the addresses it observed.
pub(crate) fn kept_outputs(changes: &[Change]) -> BTreeMap<String, Outputs> {
    outputs(changes, &known_ips(changes))
}

/// IPs of the addresses the plan keeps, by name.
fn known_ips(changes: &[Change]) -> HashMap<String, Ipv4Addr> {
    changes
        .iter()
        .filter_map(|c| Some((c.name.clone(), c.kept_ip()?)))
        .collect()
}

/// The names of each single-VM gateway's two addresses, by `(gateway, kind)`: an adopted address keeps its
/// own name.
fn address_names(changes: &[Change]) -> HashMap<(String, Kind), String> {
    changes
        .iter()
        .filter(|c| matches!(c.kind, Kind::ExternalAddress | Kind::InternalAddress))
        .map(|c| ((c.gateway.clone(), c.kind), c.name.clone()))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    #[error(transparent)]
    Gcp(#[from] GcpError),
    #[error(transparent)]
    Aborted(#[from] walk::Aborted),
    #[error("{0}")]
    Other(String),
}

tokio::task_local! {
    /// What the running step waits on, for its progress line: set deep inside the step (`ready::wait`),
    /// read by the ticker of `run_step`, which polls the step in the same task. A task-local spares every
    /// step function a parameter that only the waits use.
    static WAITING: Arc<Mutex<Option<Wait>>>;
}

/// Tells the progress line of the running step what it waits on (`None`: its API calls).
fn waiting(w: Option<Wait>) {
    let _ = WAITING.try_with(|cell| {
        if let Ok(mut current) = cell.lock() {
            *current = w;
        }
    });
}

/// Runs `work`, calling `tick` every `every` with what it waits on (see [`waiting`]).
async fn with_progress<T>(
    work: impl Future<Output = T>,
    every: Duration,
    mut tick: impl FnMut(Option<Wait>),
) -> T {
    let waits: Arc<Mutex<Option<Wait>>> = Arc::default();
    let work = WAITING.scope(waits.clone(), work);
    tokio::pin!(work);
    let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
    loop {
        tokio::select! {
            r = &mut work => break r,
            _ = ticker.tick() => tick(waits.lock().ok().and_then(|w| *w)),
        }
    }
}

/// Receives apply's events, from any task.
pub(crate) type Reporter = Arc<dyn Fn(Event) + Send + Sync>;

/// A delete re-reads the resource to check its ownership marker, unless apply's own observation saw the
/// marker less than this long ago. Compute's deletes take no precondition, so the re-read only narrows the
/// window in which someone could change the marker; seconds after the observation it is a round trip on the
/// critical path for nothing.
const OBSERVATION_FRESH: Duration = Duration::from_secs(30);

struct Shared {
    cloud: Cloud,
    stack: String,
    options: Options,
    /// IPs known before and learnt while applying, by address name.
    ips: Ips,
    /// The single-VM gateways' address names (see `address_names`).
    address_names: HashMap<(String, Kind), String>,
    /// The plan's observation, and when it was made.
    world: Observation,
    observed: Instant,
    /// The VMs this plan keeps (no-op or in-place update), by gateway: a route created for one of them
    /// first checks that it reports ready, since an earlier run may have left a VM that never did. The
    /// check runs once per VM; the routes of other gateways do not wait for it.
    kept_vms: HashMap<String, (Instance, tokio::sync::OnceCell<()>)>,
    /// The gateways in several zones, by name.
    ha: HashMap<String, Arc<ha::Gateway>>,
}

/// Address name -> IP.
type Ips = Arc<Mutex<HashMap<String, Ipv4Addr>>>;

/// Applies `plan`, whose world was observed at `observed_at` (plan-and-apply observes first; a saved plan is
/// applied only if a new observation finds the same world, and `observed_at` is then that new one). `stop`
/// asks apply to start nothing new (Ctrl-C); what is in flight finishes.
pub(crate) async fn apply(
    cloud: &Cloud,
    plan: &Plan,
    observed_at: Instant,
    options: &Options,
    stop: Arc<AtomicBool>,
    events: Reporter,
) -> Outcome {
    let steps = graph::steps(&plan.changes);
    let deps = graph::dependencies(&plan.changes, &steps);
    let stuck = crate::walk::stuck(&deps);
    if !stuck.is_empty() {
        let mut changes: Vec<String> = stuck
            .iter()
            .map(|&i| plan.changes[steps[i].change].label())
            .collect();
        changes.dedup();
        let mut outcome = Outcome::default();
        outcome.failed.push((
            "plan".into(),
            format!(
                "natgw's own error: these changes wait for each other, so none of them can start: {}. Nothing was changed; please report it with the plan (natgw plan --out FILE)",
                changes.join(", ")
            ),
        ));
        return outcome;
    }
    if !steps.is_empty() {
        cloud.prepare_changes();
    }
    let ips: Ips = Arc::new(Mutex::new(known_ips(&plan.changes)));
    let shared = Arc::new(Shared {
        cloud: cloud.clone(),
        stack: plan.stack.clone(),
        options: options.clone(),
        ips,
        world: plan.world.clone(),
        observed: observed_at,
        kept_vms: kept_vms(&plan.changes),
        ha: ha::gateways(&plan.changes),
        address_names: address_names(&plan.changes),
    });
    let mut outcome = Outcome::default();
    let run = |i: usize| {
        let step = steps[i];
        let change = plan.changes[step.change].clone();
        let shared = shared.clone();
        let report = events.clone();
        async move { run_step(&shared, &change, step, &report).await }
    };
    let mut ended = |i: usize, state: &State<StepError>| {
        let step = steps[i];
        count(
            &mut outcome,
            &plan.changes[step.change],
            step,
            state,
            &events,
        );
    };
    let states = walk::walk(&deps, options.concurrency, &stop, run, &mut ended).await;
    for (i, state) in states.iter().enumerate() {
        if let State::NotStarted = state {
            ended(i, state);
        }
    }
    if let Ok(ips) = shared.ips.lock() {
        outcome.outputs = outputs(&plan.changes, &ips);
    }
    outcome
}

/// Adds how a step ended to the outcome, once per change: a replacement's two steps count as one change,
/// and a change is skipped or not started once, whichever of its steps it was.
fn count(
    outcome: &mut Outcome,
    change: &Change,
    step: Step,
    state: &State<StepError>,
    events: &Reporter,
) {
    match state {
        State::Done => {
            // A replacement counts once its create is done.
            if change.action == Action::Replace && step.direction == Direction::Down {
                return;
            }
            match change.action {
                Action::Create => outcome.added += 1,
                Action::Update => outcome.changed += 1,
                Action::Delete => outcome.destroyed += 1,
                Action::Replace => {
                    outcome.added += 1;
                    outcome.destroyed += 1;
                }
                Action::NoOp => {}
            }
        }
        State::Failed(e) => outcome.failed.push((change.label(), e.to_string())),
        State::Skipped => {
            let address = change.address();
            if !outcome.skipped.contains(&address) {
                events(Event::Skipped {
                    address: address.clone(),
                    reason: "a resource it depends on failed".into(),
                });
                outcome.skipped.push(address);
            }
        }
        State::NotStarted => {
            let address = change.address();
            if !outcome.not_started.contains(&address) && !outcome.skipped.contains(&address) {
                outcome.not_started.push(address);
            }
        }
    }
}

fn kept_vms(changes: &[Change]) -> HashMap<String, (Instance, tokio::sync::OnceCell<()>)> {
    changes
        .iter()
        .filter(|c| matches!(c.action, Action::NoOp | Action::Update))
        .filter_map(|c| match &c.after {
            Some(Resource::Instance(i)) => {
                Some((c.gateway.clone(), (i.clone(), tokio::sync::OnceCell::new())))
            }
            _ => None,
        })
        .collect()
}

fn verb(change: &Change, direction: Direction) -> Verb {
    match (change.action, direction) {
        (_, Direction::Down) => Verb::Destroy,
        (Action::Update, Direction::Up) => Verb::Modify,
        _ => Verb::Create,
    }
}

async fn run_step(
    shared: &Shared,
    change: &Change,
    step: Step,
    events: &Reporter,
) -> Result<(), StepError> {
    let address = change.address();
    let name = change.name.clone();
    let verb = verb(change, step.direction);
    events(Event::Started {
        address: address.clone(),
        name: name.clone(),
        verb,
    });
    let start = Instant::now();
    let result = with_progress(
        execute(shared, change, step),
        shared.options.progress_every,
        |waiting| {
            events(Event::Still {
                address: address.clone(),
                name: name.clone(),
                verb,
                elapsed: start.elapsed(),
                waiting,
            });
        },
    )
    .await;
    match &result {
        Ok(()) => events(Event::Done {
            address,
            name,
            verb,
            elapsed: start.elapsed(),
        }),
        Err(e) => events(Event::Failed {
            address,
            name,
            verb,
            error: e.to_string(),
        }),
    }
    result
}

fn ip_of(shared: &Shared, gateway: &str, kind: Kind) -> Result<Ipv4Addr, StepError> {
    let ips = shared
        .ips
        .lock()
        .map_err(|_| StepError::Other("internal state poisoned".into()))?;
    shared
        .address_names
        .get(&(gateway.to_string(), kind))
        .and_then(|name| ips.get(name))
        .copied()
        .ok_or_else(|| {
            StepError::Other(format!(
                "the {} of gateway {gateway} is not known",
                kind.role()
            ))
        })
}

async fn execute(shared: &Shared, change: &Change, step: Step) -> Result<(), StepError> {
    match step.direction {
        Direction::Down => down(shared, change).await,
        Direction::Up => up(shared, change).await,
    }
}

/// Deletes what the change had before (a delete that finds nothing has succeeded).
async fn down(shared: &Shared, change: &Change) -> Result<(), StepError> {
    let cloud = &shared.cloud;
    let check = if change.importing.is_some() {
        // An adopted route: routes cannot be edited, so it never carries a marker; the adopt table naming it
        // is the consent, and the plan refused it if another stack's marker was there.
        OwnerCheck::Observed
    } else {
        owner_check(
            &shared.world,
            &shared.stack,
            shared.observed.elapsed(),
            change.before.as_ref(),
        )
    };
    match &change.before {
        Some(Resource::Address(a)) => Ok(cloud.delete_address(check, &a.region, &a.name).await?),
        Some(Resource::Firewall(f)) => Ok(cloud.delete_firewall(check, f).await?),
        Some(Resource::Instance(i)) => Ok(cloud.delete_instance(check, &i.zone, &i.name).await?),
        Some(Resource::Route(r)) => Ok(cloud.delete_route(check, r).await?),
        Some(
            Resource::InstanceTemplate(_)
            | Resource::InstanceGroup(_)
            | Resource::HealthCheck(_)
            | Resource::BackendService(_)
            | Resource::ForwardingRule(_),
        ) => ha::down(shared, change, check).await,
        // A node pool is never natgw's to delete: its tags are removed by an update.
        Some(Resource::NodePool(_)) | None => Err(StepError::Other("nothing to delete".into())),
    }
}

/// Creates or updates what the change has after.
async fn up(shared: &Shared, change: &Change) -> Result<(), StepError> {
    match &change.after {
        Some(Resource::Address(a)) => up_address(shared, change, a).await,
        Some(Resource::Firewall(f)) => up_firewall(shared, change, f).await,
        Some(Resource::Instance(i)) => up_instance(shared, change, i).await,
        Some(Resource::Route(r)) => up_route(shared, change, r).await,
        Some(Resource::NodePool(p)) => up_node_pool(shared, change, p).await,
        Some(
            Resource::InstanceTemplate(_)
            | Resource::InstanceGroup(_)
            | Resource::HealthCheck(_)
            | Resource::BackendService(_)
            | Resource::ForwardingRule(_),
        ) => ha::up(shared, change).await,
        None => Err(StepError::Other("nothing to create".into())),
    }
}

/// Creates the address or updates its labels, and makes its IP known to the steps that need it.
async fn up_address(shared: &Shared, change: &Change, a: &Address) -> Result<(), StepError> {
    let cloud = &shared.cloud;
    let ip = if change.action == Action::Update {
        let fingerprint = change.preconditions.label_fingerprint.as_deref();
        cloud.set_address_labels(a, fingerprint).await?;
        before_address(change)?
    } else {
        cloud.insert_address(a).await?
    };
    shared
        .ips
        .lock()
        .map_err(|_| StepError::Other("internal state poisoned".into()))?
        .insert(a.name.clone(), ip);
    Ok(())
}

async fn up_firewall(shared: &Shared, change: &Change, f: &Firewall) -> Result<(), StepError> {
    if change.action == Action::Update {
        let adopting = change.importing.is_some();
        shared
            .cloud
            .patch_firewall(&shared.stack, f, adopting)
            .await?;
    } else {
        shared.cloud.insert_firewall(f).await?;
    }
    Ok(())
}

/// Creates the VM with the gateway's addresses and waits until it reports ready, or updates it in place.
async fn up_instance(shared: &Shared, change: &Change, i: &Instance) -> Result<(), StepError> {
    if change.action == Action::Update {
        return update_instance(shared, change, i).await;
    }
    let network_ip = ip_of(shared, &change.gateway, Kind::InternalAddress)?;
    let nat_ip = ip_of(shared, &change.gateway, Kind::ExternalAddress)?;
    shared.cloud.insert_instance(i, network_ip, nat_ip).await?;
    ready::wait(&shared.cloud, i.into(), shared.options.ready_timeout).await
}

/// Creates the route through the gateway's internal address, once a VM the plan keeps reports ready.
async fn up_route(shared: &Shared, change: &Change, r: &Route) -> Result<(), StepError> {
    if let Some(done) = ha::up_route(shared, change, r).await {
        return done;
    }
    let cloud = &shared.cloud;
    let next_hop = ip_of(shared, &change.gateway, Kind::InternalAddress)?;
    if let Some((vm, ready)) = shared.kept_vms.get(&change.gateway) {
        ready
            .get_or_try_init(|| ready::wait(cloud, vm.into(), shared.options.ready_timeout))
            .await?;
    }
    Ok(cloud.insert_route(r, NextHop::Ip(next_hop)).await?)
}

/// Adds and removes the node-pool tags the plan changes, leaving the pool's other tags alone.
async fn up_node_pool(shared: &Shared, change: &Change, after: &NodePool) -> Result<(), StepError> {
    let before = match &change.before {
        Some(Resource::NodePool(b)) => b.clone(),
        _ => NodePool {
            id: after.id.clone(),
            tags: Vec::new(),
        },
    };
    let (add, remove) = before.tags_to(after);
    let known = change
        .preconditions
        .etag
        .as_deref()
        .filter(|_| shared.observed.elapsed() < OBSERVATION_FRESH)
        .map(|etag| (&before.tags[..], etag));
    Ok(shared
        .cloud
        .update_node_pool_tags(&after.id, &add, &remove, known)
        .await?)
}

/// Whether a delete must read the resource again to check its marker: yes unless apply's observation is
/// fresh and saw this very resource with this stack's marker (so a hand-edited saved plan cannot delete what
/// the stack does not own).
fn owner_check<'a>(
    w: &Observation,
    stack: &'a str,
    age: Duration,
    resource: Option<&Resource>,
) -> OwnerCheck<'a> {
    if age >= OBSERVATION_FRESH {
        return OwnerCheck::Read(stack);
    }
    let seen = match resource {
        Some(Resource::Address(a)) => w.addresses.iter().any(|o| {
            o.resource.name == a.name && o.resource.region == a.region && o.owned_by(stack)
        }),
        Some(Resource::Firewall(f)) => w
            .firewalls
            .iter()
            .any(|o| o.resource.name == f.name && o.owned_by(stack)),
        Some(Resource::Instance(i)) => w
            .instances
            .iter()
            .any(|o| o.resource.name == i.name && o.resource.zone == i.zone && o.owned_by(stack)),
        Some(Resource::Route(r)) => w
            .routes
            .iter()
            .any(|o| o.resource.name == r.name && o.owned_by(stack)),
        Some(
            r @ (Resource::InstanceTemplate(_)
            | Resource::InstanceGroup(_)
            | Resource::HealthCheck(_)
            | Resource::BackendService(_)
            | Resource::ForwardingRule(_)),
        ) => ha::seen(w, stack, r),
        Some(Resource::NodePool(_)) | None => false,
    };
    if seen {
        OwnerCheck::Observed
    } else {
        OwnerCheck::Read(stack)
    }
}

fn before_address(change: &Change) -> Result<Ipv4Addr, StepError> {
    match &change.before {
        Some(Resource::Address(a)) => a
            .address
            .ok_or_else(|| StepError::Other("the address has no IP".into())),
        _ => Err(StepError::Other("the address was not observed".into())),
    }
}

/// What an in-place update of the VM does, from the fields and the power actions the plan changes.
#[derive(Debug, Default, PartialEq, Eq)]
struct InstanceUpdate {
    labels: bool,
    tags: bool,
    /// A new startup script and token, which run at boot: set together with the restart intent.
    metadata: bool,
    /// An earlier apply's restart intent is there: cleared once the VM reports ready.
    pending: bool,
    /// What brings the VM back from the status it was found in.
    power: Option<VmAction>,
    /// The VM must boot again to run its script, unless `power` booted it.
    restart: bool,
}

impl InstanceUpdate {
    fn of(change: &Change) -> Result<InstanceUpdate, StepError> {
        let mut update = InstanceUpdate::default();
        let mut status = false;
        for d in &change.diffs {
            let Field::Instance(field) = d.field else {
                return Err(StepError::Other(format!(
                    "an instance has no field {}",
                    d.field.name()
                )));
            };
            match field {
                InstanceField::Labels => update.labels = true,
                InstanceField::Tags => update.tags = true,
                InstanceField::StartupScript | InstanceField::ReadyToken => update.metadata = true,
                InstanceField::RestartPending => update.pending = true,
                InstanceField::Status => status = true,
                InstanceField::Name
                | InstanceField::Zone
                | InstanceField::MachineType
                | InstanceField::Image
                | InstanceField::Network
                | InstanceField::Subnetwork
                | InstanceField::NetworkIp
                | InstanceField::NatIp
                | InstanceField::CanIpForward
                | InstanceField::ShieldedVm
                | InstanceField::ServiceAccount
                | InstanceField::Description => {
                    return Err(StepError::Other(format!(
                        "the {} of an instance cannot change in place",
                        field.spec().name
                    )));
                }
            }
        }
        for &action in &change.vm_actions {
            match action {
                VmAction::Restart => update.restart = true,
                other => update.power = Some(other),
            }
        }
        let boots = update.power.is_some_and(VmAction::boots) || update.restart;
        if status != update.power.is_some() || ((update.metadata || update.pending) && !boots) {
            return Err(StepError::Other(format!(
                "the plan's power actions for instance {} ({:?}) do not match its changes",
                change.name, change.vm_actions
            )));
        }
        Ok(update)
    }
}

/// In-place changes of the VM: labels, tags, a new startup script, and what brings it back to running that
/// script. A new script is written with the intent to restart (one `setMetadata` call, see
/// `gcp::wire::META_RESTART_PENDING`), and the intent is cleared only once the VM reported ready with the
/// script's token: natgw stopped anywhere in between leaves the intent, and the next plan restarts the VM.
async fn update_instance(shared: &Shared, change: &Change, i: &Instance) -> Result<(), StepError> {
    let cloud = &shared.cloud;
    let update = InstanceUpdate::of(change)?;
    let preconditions = &change.preconditions;
    if update.labels {
        cloud
            .set_instance_labels(i, preconditions.label_fingerprint.as_deref())
            .await?;
    }
    if update.tags {
        cloud
            .set_instance_tags(i, preconditions.tags_fingerprint.as_deref())
            .await?;
    }
    if update.metadata {
        let intent = Instance {
            restart_pending: true,
            ..i.clone()
        };
        cloud
            .set_instance_metadata(&intent, preconditions.metadata_fingerprint.as_deref())
            .await?;
    }
    let timeout = shared.options.ready_timeout;
    let booted = match update.power {
        Some(action) => ready::bring_up(cloud, i.into(), action, timeout).await?,
        None => false,
    };
    // Whatever did not boot the VM here (it was found running, or someone started what the plan saw
    // stopping) leaves it to be restarted; but a restart left pending may have happened already (natgw was
    // stopped after the reset): a VM that reports this very token booted with this script, and is not
    // interrupted again.
    let must_boot = update.restart || update.metadata || update.pending;
    if must_boot && !booted && (update.metadata || !ready::reports(cloud, i.into()).await?) {
        cloud.reset_instance(&i.zone, &i.name).await?;
    }
    if update.power.is_some() || must_boot {
        ready::wait(cloud, i.into(), timeout).await?;
    }
    if update.metadata || update.pending {
        cloud.set_instance_metadata_fresh(i).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{EXAMPLE, applied_world, config_from, desired_from, empty_world};

    /// The ticks of a step report what the step said it waits on, and nothing once it said it is done
    /// waiting. The step moves on only when a tick has seen its state, so no timing is assumed.
    #[tokio::test]
    async fn progress_ticks_carry_what_the_step_waits_for() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let step = async move {
            for w in [
                None,
                Some(Wait::VmRunning),
                Some(Wait::StartupScriptReady),
                None,
            ] {
                waiting(w);
                rx.recv().await;
            }
        };
        let record = seen.clone();
        with_progress(step, Duration::from_millis(1), |w| {
            if let Ok(mut s) = record.lock()
                && s.last() != Some(&w)
            {
                s.push(w);
                let _ = tx.send(());
            }
        })
        .await;
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(
            seen,
            [
                None,
                Some(Wait::VmRunning),
                Some(Wait::StartupScriptReady),
                None
            ]
        );
        // Outside a step, saying what it waits on is harmless.
        waiting(Some(Wait::VmRunning));
    }

    #[test]
    fn a_delete_trusts_only_a_fresh_observation_of_its_own_marker() {
        let cfg = config_from(EXAMPLE);
        let world = applied_world(&desired_from(&cfg), &empty_world());
        let route = Resource::Route(world.routes[0].resource.clone());
        let fresh = Duration::from_secs(1);
        assert_eq!(
            owner_check(&world, "gitlab-runners", fresh, Some(&route)),
            OwnerCheck::Observed
        );
        // Old (a confirmation that took minutes): read again.
        assert_eq!(
            owner_check(&world, "gitlab-runners", OBSERVATION_FRESH, Some(&route)),
            OwnerCheck::Read("gitlab-runners")
        );
        // Another stack, or a resource the observation did not hold (an edited plan): read again.
        assert_eq!(
            owner_check(&world, "other", fresh, Some(&route)),
            OwnerCheck::Read("other")
        );
        let mut unseen = world.routes[0].resource.clone();
        unseen.name = "natgw-gitlab-1-2-3-4-32".into();
        assert_eq!(
            owner_check(
                &world,
                "gitlab-runners",
                fresh,
                Some(&Resource::Route(unseen))
            ),
            OwnerCheck::Read("gitlab-runners")
        );
    }

    #[test]
    fn an_instance_update_follows_the_typed_fields_the_plan_changes() {
        let cfg = config_from(EXAMPLE);
        let d = desired_from(&cfg);
        let mut world = applied_world(&d, &empty_world());
        world.instances[0].resource.status = "TERMINATED".into();
        world.instances[0].resource.startup_script = "#!/bin/sh\n".into();
        world.instances[0].resource.ready_token = "old".into();
        let changes = crate::plan::diff(&crate::plan::Context { stack: &cfg.stack }, &d, &world)
            .expect("plan");
        let vm = changes
            .iter()
            .find(|c| c.kind == Kind::Instance)
            .expect("the VM");
        assert_eq!(vm.action, Action::Update);
        assert_eq!(vm.vm_actions, [VmAction::Start]);
        let update = InstanceUpdate::of(vm).expect("in place");
        // The start boots the new script: no reset.
        assert_eq!(
            update,
            InstanceUpdate {
                metadata: true,
                power: Some(VmAction::Start),
                ..InstanceUpdate::default()
            }
        );
        // A field that only a replacement changes is never done in place, even in an edited plan.
        let mut edited = vm.clone();
        edited.diffs[0].field = Field::Instance(InstanceField::Zone);
        assert!(InstanceUpdate::of(&edited).is_err());
        // Nor a status change, or a new script, without what brings the VM to run it.
        let mut edited = vm.clone();
        edited.vm_actions.clear();
        assert!(InstanceUpdate::of(&edited).is_err());
    }

    /// Each status and a restart left pending, through plan and apply's reading of it: what apply calls.
    #[test]
    fn each_vm_status_and_a_pending_restart_plan_what_apply_does() {
        let cfg = config_from(EXAMPLE);
        let d = desired_from(&cfg);
        let cases = [
            ("RUNNING", true, vec![VmAction::Restart], None, true),
            ("STAGING", true, vec![VmAction::Restart], None, true),
            (
                "TERMINATED",
                false,
                vec![VmAction::Start],
                Some(VmAction::Start),
                false,
            ),
            (
                "TERMINATED",
                true,
                vec![VmAction::Start],
                Some(VmAction::Start),
                false,
            ),
            (
                "SUSPENDED",
                false,
                vec![VmAction::Resume],
                Some(VmAction::Resume),
                false,
            ),
            (
                "SUSPENDED",
                true,
                vec![VmAction::Resume, VmAction::Restart],
                Some(VmAction::Resume),
                true,
            ),
            (
                "STOPPING",
                false,
                vec![VmAction::WaitThenStart],
                Some(VmAction::WaitThenStart),
                false,
            ),
            (
                "SUSPENDING",
                false,
                vec![VmAction::WaitThenResume],
                Some(VmAction::WaitThenResume),
                false,
            ),
            (
                "REPAIRING",
                false,
                vec![VmAction::WaitForRepair],
                Some(VmAction::WaitForRepair),
                false,
            ),
        ];
        for (status, pending, actions, power, restart) in cases {
            let mut world = applied_world(&d, &empty_world());
            world.instances[0].resource.status = status.into();
            world.instances[0].resource.restart_pending = pending;
            let changes =
                crate::plan::diff(&crate::plan::Context { stack: &cfg.stack }, &d, &world)
                    .expect("plan");
            let vm = changes
                .iter()
                .find(|c| c.kind == Kind::Instance)
                .expect("the VM");
            let ctx = format!("{status}, pending {pending}");
            assert_eq!(vm.action, Action::Update, "{ctx}");
            assert_eq!(vm.vm_actions, actions, "{ctx}");
            let update = InstanceUpdate::of(vm).expect("in place");
            assert_eq!(
                update,
                InstanceUpdate {
                    pending,
                    power,
                    restart,
                    ..InstanceUpdate::default()
                },
                "{ctx}"
            );
        }
        // Running, nothing pending: nothing to do.
        let world = applied_world(&d, &empty_world());
        let changes = crate::plan::diff(&crate::plan::Context { stack: &cfg.stack }, &d, &world)
            .expect("plan");
        assert!(changes.iter().all(|c| c.action == Action::NoOp));
    }
}
