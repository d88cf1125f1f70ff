//! Walks a plan: each change becomes one or two steps (a replacement deletes, then creates), steps wait for
//! the steps they depend on, independent steps run concurrently (bounded), and a failure skips only what
//! depends on it.
//!
//! Apply follows the plan's changes alone; the reasons shown to the user never steer it.

mod graph;
mod ready;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::gcp::{Cloud, GcpError, OwnerCheck};
use crate::model::observed::Observation;
use crate::model::progress::{Event, Outcome, Outputs, Verb};
use crate::model::{Kind, Resource};
use crate::plan::{Action, Change, Plan};
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

/// The outputs of the gateways a plan keeps or creates, from the IPs known so far.
fn outputs(
    changes: &[Change],
    ips: &HashMap<(String, Kind), Ipv4Addr>,
) -> BTreeMap<String, Outputs> {
    changes
        .iter()
        .filter(|c| c.kind == Kind::ExternalAddress && c.after.is_some())
        .map(|c| {
            let ip = |kind| ips.get(&(c.gateway.clone(), kind)).copied();
            (
                c.gateway.clone(),
                Outputs {
                    egress_ip: ip(Kind::ExternalAddress),
                    internal_ip: ip(Kind::InternalAddress),
                },
            )
        })
        .collect()
}

/// The outputs of a plan with nothing to do: the addresses it observed.
pub(crate) fn kept_outputs(changes: &[Change]) -> BTreeMap<String, Outputs> {
    outputs(changes, &known_ips(changes))
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    #[error(transparent)]
    Gcp(#[from] GcpError),
    #[error("{0}")]
    Other(String),
}

/// Receives apply's events, from any task.
pub(crate) type Reporter = Arc<dyn Fn(Event) + Send + Sync>;

/// IPs learnt while applying: `(gateway, kind)` -> address.
type Ips = Arc<Mutex<HashMap<(String, Kind), Ipv4Addr>>>;

/// A delete re-reads the resource to check its ownership marker, unless apply's own observation saw the
/// marker less than this long ago. Compute's deletes take no precondition, so the re-read only narrows the
/// window in which someone could change the marker; seconds after the observation it is a round trip on the
/// critical path for nothing.
const OBSERVATION_FRESH: Duration = Duration::from_secs(30);

struct Shared {
    cloud: Cloud,
    stack: String,
    options: Options,
    ips: Ips,
    /// The plan's observation, and when it was made.
    world: Observation,
    observed: Instant,
    /// The VMs this plan keeps (no-op or in-place update), by gateway: a route created for one of them
    /// first checks that it reports ready, since an earlier run may have left a VM that never did. The
    /// check runs once per VM; the routes of other gateways do not wait for it.
    kept_vms: HashMap<String, (crate::model::Instance, tokio::sync::OnceCell<()>)>,
}

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
    if !steps.is_empty() {
        cloud.prepare_changes();
    }
    let deps = graph::dependencies(&plan.changes, &steps);
    let order = graph::priority(&deps);
    let ips: Ips = Arc::new(Mutex::new(known_ips(&plan.changes)));
    let shared = Arc::new(Shared {
        cloud: cloud.clone(),
        stack: plan.stack.clone(),
        options: options.clone(),
        ips,
        world: plan.world.clone(),
        observed: observed_at,
        kept_vms: kept_vms(&plan.changes),
    });

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum State {
        Waiting,
        Running,
        Ok,
        Failed,
        Skipped,
    }
    let mut state = vec![State::Waiting; steps.len()];
    let mut outcome = Outcome::default();
    let mut running: JoinSet<(usize, Result<(), StepError>)> = JoinSet::new();
    let mut in_flight = 0usize;
    loop {
        // Propagate failures: a step whose dependency failed or was skipped is skipped.
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..steps.len() {
                if state[i] == State::Waiting
                    && deps[i]
                        .iter()
                        .any(|&d| matches!(state[d], State::Failed | State::Skipped))
                {
                    state[i] = State::Skipped;
                    changed = true;
                    let address = plan.changes[steps[i].change].address();
                    if !outcome.skipped.contains(&address) {
                        events(Event::Skipped {
                            address: address.clone(),
                            reason: "a resource it depends on failed".into(),
                        });
                        outcome.skipped.push(address);
                    }
                }
            }
        }
        if !stop.load(Ordering::SeqCst) {
            for &i in &order {
                if in_flight >= options.concurrency.max(1) {
                    break;
                }
                if state[i] == State::Waiting && deps[i].iter().all(|&d| state[d] == State::Ok) {
                    state[i] = State::Running;
                    in_flight += 1;
                    let step = steps[i];
                    let change = plan.changes[step.change].clone();
                    let shared = shared.clone();
                    let report = events.clone();
                    running
                        .spawn(async move { (i, run_step(&shared, &change, step, &report).await) });
                }
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        in_flight -= 1;
        match joined {
            Ok((i, Ok(()))) => {
                state[i] = State::Ok;
                let step = steps[i];
                let change = &plan.changes[step.change];
                let last_step =
                    !(change.action == Action::Replace && step.direction == Direction::Down);
                if last_step {
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
            }
            Ok((i, Err(e))) => {
                state[i] = State::Failed;
                outcome
                    .failed
                    .push((plan.changes[steps[i].change].address(), e.to_string()));
            }
            Err(join_error) => {
                // A step task panicked or was cancelled: report it as a failure, never crash the run.
                outcome
                    .failed
                    .push(("(internal)".into(), join_error.to_string()));
            }
        }
    }
    for i in 0..steps.len() {
        if state[i] == State::Waiting {
            let address = plan.changes[steps[i].change].address();
            if !outcome.not_started.contains(&address) && !outcome.skipped.contains(&address) {
                outcome.not_started.push(address);
            }
        }
    }
    if let Ok(ips) = shared.ips.lock() {
        outcome.outputs = outputs(&plan.changes, &ips);
    }
    outcome
}

fn kept_vms(
    changes: &[Change],
) -> HashMap<String, (crate::model::Instance, tokio::sync::OnceCell<()>)> {
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

/// IPs of addresses the plan keeps.
fn known_ips(changes: &[Change]) -> HashMap<(String, Kind), Ipv4Addr> {
    let mut ips = HashMap::new();
    for c in changes {
        if let (Action::NoOp | Action::Update, Some(Resource::Address(a))) = (c.action, &c.before)
            && let Some(ip) = a.address
        {
            ips.insert((c.gateway.clone(), c.kind), ip);
        }
    }
    ips
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
    let work = execute(shared, change, step);
    tokio::pin!(work);
    let mut ticker = tokio::time::interval_at(
        start + shared.options.progress_every,
        shared.options.progress_every,
    );
    let result = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = ticker.tick() => events(Event::Still { address: address.clone(), name: name.clone(), verb, elapsed: start.elapsed() }),
        }
    };
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
    ips.get(&(gateway.to_string(), kind))
        .copied()
        .ok_or_else(|| {
            StepError::Other(format!(
                "the {} of gateway {gateway} is not known",
                kind.role()
            ))
        })
}

async fn execute(shared: &Shared, change: &Change, step: Step) -> Result<(), StepError> {
    let cloud = &shared.cloud;
    let stack = shared.stack.as_str();
    match step.direction {
        Direction::Down => {
            let check = owner_check(
                &shared.world,
                &shared.stack,
                shared.observed.elapsed(),
                change.before.as_ref(),
            );
            match &change.before {
                Some(Resource::Address(a)) => {
                    Ok(cloud.delete_address(check, &a.region, &a.name).await?)
                }
                Some(Resource::Firewall(f)) => Ok(cloud.delete_firewall(check, &f.name).await?),
                Some(Resource::Instance(i)) => {
                    Ok(cloud.delete_instance(check, &i.zone, &i.name).await?)
                }
                Some(Resource::Route(r)) => Ok(cloud.delete_route(check, &r.name).await?),
                Some(Resource::NodePool(_)) | None => {
                    Err(StepError::Other("nothing to delete".into()))
                }
            }
        }
        Direction::Up => {
            let creating = change.action != Action::Update;
            match &change.after {
                Some(Resource::Address(a)) => {
                    let ip = if creating {
                        cloud.insert_address(a).await?
                    } else {
                        cloud
                            .set_address_labels(
                                a,
                                change.preconditions.label_fingerprint.as_deref(),
                            )
                            .await?;
                        before_address(change)?
                    };
                    let mut ips = shared
                        .ips
                        .lock()
                        .map_err(|_| StepError::Other("internal state poisoned".into()))?;
                    ips.insert((change.gateway.clone(), change.kind), ip);
                    Ok(())
                }
                Some(Resource::Firewall(f)) => {
                    if creating {
                        cloud.insert_firewall(f).await?;
                    } else {
                        cloud.patch_firewall(stack, f).await?;
                    }
                    Ok(())
                }
                Some(Resource::Instance(i)) => {
                    if creating {
                        let network_ip = ip_of(shared, &change.gateway, Kind::InternalAddress)?;
                        let nat_ip = ip_of(shared, &change.gateway, Kind::ExternalAddress)?;
                        cloud.insert_instance(i, network_ip, nat_ip).await?;
                        ready::wait(cloud, i, shared.options.ready_timeout).await
                    } else {
                        update_instance(shared, change, i).await
                    }
                }
                Some(Resource::Route(r)) => {
                    let next_hop = ip_of(shared, &change.gateway, Kind::InternalAddress)?;
                    if let Some((vm, ready)) = shared.kept_vms.get(&change.gateway) {
                        ready
                            .get_or_try_init(|| {
                                ready::wait(cloud, vm, shared.options.ready_timeout)
                            })
                            .await?;
                    }
                    Ok(cloud.insert_route(r, next_hop).await?)
                }
                Some(Resource::NodePool(after)) => {
                    let before = match &change.before {
                        Some(Resource::NodePool(b)) => b.tags.clone(),
                        _ => Vec::new(),
                    };
                    let add: Vec<String> = after
                        .tags
                        .iter()
                        .filter(|t| !before.contains(t))
                        .cloned()
                        .collect();
                    let remove: Vec<String> = before
                        .iter()
                        .filter(|t| !after.tags.contains(t))
                        .cloned()
                        .collect();
                    let known = change
                        .preconditions
                        .etag
                        .as_deref()
                        .filter(|_| shared.observed.elapsed() < OBSERVATION_FRESH)
                        .map(|etag| (&before[..], etag));
                    Ok(cloud
                        .update_node_pool_tags(&after.id, &add, &remove, known)
                        .await?)
                }
                None => Err(StepError::Other("nothing to create".into())),
            }
        }
    }
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

/// In-place changes of the VM: labels, tags, and a new startup script (which runs at boot, so the VM is
/// restarted and must report ready again).
async fn update_instance(
    shared: &Shared,
    change: &Change,
    i: &crate::model::Instance,
) -> Result<(), StepError> {
    let cloud = &shared.cloud;
    let changed = |f: &str| change.diffs.iter().any(|d| d.field == f);
    if changed("labels") {
        cloud
            .set_instance_labels(i, change.preconditions.label_fingerprint.as_deref())
            .await?;
    }
    if changed("tags") {
        cloud
            .set_instance_tags(i, change.preconditions.tags_fingerprint.as_deref())
            .await?;
    }
    let mut reboot = false;
    if changed("startup_script") || changed("ready_token") {
        cloud
            .set_instance_metadata(i, change.preconditions.metadata_fingerprint.as_deref())
            .await?;
        reboot = true;
    }
    if changed("status") {
        cloud.start_instance(&i.zone, &i.name).await?;
        if reboot {
            // Starting runs the new script; no reset needed.
            reboot = false;
        }
        ready::wait(cloud, i, shared.options.ready_timeout).await?;
    }
    if reboot {
        cloud.reset_instance(&i.zone, &i.name).await?;
        ready::wait(cloud, i, shared.options.ready_timeout).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{EXAMPLE, applied_world, config_from, desired_from, empty_world};

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
}
