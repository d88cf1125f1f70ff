//! Walks a graph of steps, knowing nothing of what they do: a step starts once every step it depends on is
//! done, at most `bound` steps run at once, a failure skips only the steps downstream of it, and a stop
//! signal starts nothing new while what is in flight finishes. Terraform's `dag/walk.go` works the same way
//! with its `upstreamFailed` set.
//!
//! Among the steps ready to start, those with the longest chain of dependants go first, so that the bound
//! delays the steps that have slack rather than the critical path.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::task::JoinSet;

/// How a step ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum State<E> {
    Done,
    Failed(E),
    /// Never started: a step it depends on failed or was skipped.
    Skipped,
    /// Never started: the walk was stopped first.
    NotStarted,
}

/// A step whose task panicked or was cancelled: reported as its failure, so the walk itself never crashes.
#[derive(Debug, thiserror::Error)]
#[error("internal error: {0}")]
pub(crate) struct Aborted(String);

enum Slot<E> {
    Waiting,
    Running,
    Ended(State<E>),
}

impl<E> Slot<E> {
    fn is_done(&self) -> bool {
        matches!(self, Slot::Ended(State::Done))
    }

    fn is_failed_or_skipped(&self) -> bool {
        matches!(self, Slot::Ended(State::Failed(_) | State::Skipped))
    }
}

/// Runs step `i` (for `i` in `0..deps.len()`) with `run(i)` once every step of `deps[i]` is done, and returns
/// how each step ended. `ended` hears of each step as it ends (done, failed or skipped), in that order.
pub(crate) async fn walk<E, F, Fut>(
    deps: &[Vec<usize>],
    bound: usize,
    stop: &AtomicBool,
    mut run: F,
    mut ended: impl FnMut(usize, &State<E>),
) -> Vec<State<E>>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: From<Aborted> + Send + 'static,
{
    let order = priority(deps);
    let mut slots: Vec<Slot<E>> = deps.iter().map(|_| Slot::Waiting).collect();
    let mut running: JoinSet<Result<(), E>> = JoinSet::new();
    let mut tasks = HashMap::new();
    loop {
        skip_downstream_of_failures(deps, &mut slots, &mut ended);
        if !stop.load(Ordering::SeqCst) {
            for &i in &order {
                if running.len() >= bound.max(1) {
                    break;
                }
                let ready = deps[i]
                    .iter()
                    .all(|&d| slots.get(d).is_some_and(Slot::is_done));
                if matches!(slots[i], Slot::Waiting) && ready {
                    slots[i] = Slot::Running;
                    tasks.insert(running.spawn(run(i)).id(), i);
                }
            }
        }
        let Some(joined) = running.join_next_with_id().await else {
            break;
        };
        let (id, state) = match joined {
            Ok((id, Ok(()))) => (id, State::Done),
            Ok((id, Err(e))) => (id, State::Failed(e)),
            Err(e) => (e.id(), State::Failed(E::from(Aborted(e.to_string())))),
        };
        if let Some(i) = tasks.remove(&id) {
            ended(i, &state);
            slots[i] = Slot::Ended(state);
        }
    }
    slots
        .into_iter()
        .map(|s| match s {
            Slot::Ended(state) => state,
            Slot::Waiting | Slot::Running => State::NotStarted,
        })
        .collect()
}

/// Marks every waiting step downstream of a failed or skipped one as skipped, transitively.
fn skip_downstream_of_failures<E>(
    deps: &[Vec<usize>],
    slots: &mut [Slot<E>],
    ended: &mut impl FnMut(usize, &State<E>),
) {
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..deps.len() {
            let upstream_failed = deps[i]
                .iter()
                .any(|&d| slots.get(d).is_some_and(Slot::is_failed_or_skipped));
            if matches!(slots[i], Slot::Waiting) && upstream_failed {
                ended(i, &State::Skipped);
                slots[i] = Slot::Ended(State::Skipped);
                changed = true;
            }
        }
    }
}

/// For each step, the steps that wait for it (`deps` turned around; out-of-range indices are ignored).
fn dependants(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = deps.len();
    let mut dependants = vec![Vec::new(); n];
    for (b, ds) in deps.iter().enumerate() {
        for &a in ds {
            if a < n {
                dependants[a].push(b);
            }
        }
    }
    dependants
}

/// Steps that wait for each other, directly or not, and those behind them (empty when all can run): a walk
/// of such steps would start none of them, so a caller refuses them before it starts anything.
pub(crate) fn stuck(deps: &[Vec<usize>]) -> Vec<usize> {
    // Kahn's algorithm: whatever is never freed is on, or behind, a cycle.
    let dependants = dependants(deps);
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut free: Vec<usize> = (0..deps.len()).filter(|&i| waiting[i] == 0).collect();
    while let Some(a) = free.pop() {
        for &b in &dependants[a] {
            waiting[b] -= 1;
            if waiting[b] == 0 {
                free.push(b);
            }
        }
    }
    (0..deps.len()).filter(|&i| waiting[i] > 0).collect()
}

/// The order in which ready steps start: the longest chain of dependants first. Ties keep the steps' order.
pub(crate) fn priority(deps: &[Vec<usize>]) -> Vec<usize> {
    let n = deps.len();
    let dependants = dependants(deps);
    // 0: not yet computed; a cycle would only end the chain, never loop.
    let mut height = vec![0usize; n];
    let mut visiting = vec![false; n];
    fn chain(
        i: usize,
        dependants: &[Vec<usize>],
        height: &mut [usize],
        visiting: &mut [bool],
    ) -> usize {
        if height[i] > 0 || visiting[i] {
            return height[i];
        }
        visiting[i] = true;
        let mut longest = 0;
        for &d in &dependants[i] {
            longest = longest.max(chain(d, dependants, height, visiting));
        }
        visiting[i] = false;
        height[i] = longest + 1;
        height[i]
    }
    for i in 0..n {
        chain(i, &dependants, &mut height, &mut visiting);
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(height[i]));
    order
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn stuck_steps_are_a_cycle_and_what_waits_behind_it() {
        assert_eq!(stuck(&[vec![], vec![0], vec![1]]), Vec::<usize>::new());
        // 0 and 1 wait for each other; 2 waits for 1.
        assert_eq!(stuck(&[vec![1], vec![0], vec![1]]), [0, 1, 2]);
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Fail {
        Step(usize),
        Aborted,
    }

    impl From<Aborted> for Fail {
        fn from(_: Aborted) -> Self {
            Fail::Aborted
        }
    }

    /// Fake steps: each records when it starts and ends, yields so that others can run meanwhile, and fails
    /// if it is in `failing`.
    #[derive(Clone, Default)]
    struct Fake {
        log: Arc<Mutex<Vec<String>>>,
        in_flight: Arc<AtomicUsize>,
        most_in_flight: Arc<AtomicUsize>,
    }

    impl Fake {
        fn step(
            &self,
            i: usize,
            failing: &[usize],
        ) -> impl Future<Output = Result<(), Fail>> + use<> {
            let fake = self.clone();
            let fails = failing.contains(&i);
            async move {
                fake.log.lock().expect("log").push(format!("start {i}"));
                let now = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                fake.most_in_flight.fetch_max(now, Ordering::SeqCst);
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                fake.in_flight.fetch_sub(1, Ordering::SeqCst);
                fake.log.lock().expect("log").push(format!("end {i}"));
                if fails { Err(Fail::Step(i)) } else { Ok(()) }
            }
        }

        fn log(&self) -> Vec<String> {
            self.log.lock().expect("log").clone()
        }

        fn position(&self, entry: &str) -> usize {
            self.log()
                .iter()
                .position(|e| e == entry)
                .unwrap_or_else(|| panic!("{entry} is not in {:?}", self.log()))
        }
    }

    async fn run(
        deps: &[Vec<usize>],
        bound: usize,
        failing: &[usize],
        fake: &Fake,
    ) -> (Vec<State<Fail>>, Vec<(usize, String)>) {
        let stop = AtomicBool::new(false);
        let mut heard = Vec::new();
        let states = walk(
            deps,
            bound,
            &stop,
            |i| fake.step(i, failing),
            |i, s| heard.push((i, format!("{s:?}"))),
        )
        .await;
        (states, heard)
    }

    #[tokio::test]
    async fn a_step_starts_only_after_what_it_depends_on() {
        // 0 -> 2, 1 -> 2, 2 -> 3
        let deps = vec![vec![], vec![], vec![0, 1], vec![2]];
        let fake = Fake::default();
        let (states, _) = run(&deps, 8, &[], &fake).await;
        assert!(states.iter().all(|s| *s == State::Done), "{states:?}");
        assert!(fake.position("end 0") < fake.position("start 2"));
        assert!(fake.position("end 1") < fake.position("start 2"));
        assert!(fake.position("end 2") < fake.position("start 3"));
        // Independent steps overlap.
        assert!(fake.position("start 1") < fake.position("end 0"));
    }

    #[tokio::test]
    async fn no_more_than_the_bound_run_at_once() {
        let deps = vec![vec![]; 10];
        for bound in [1, 3] {
            let fake = Fake::default();
            let (states, _) = run(&deps, bound, &[], &fake).await;
            assert!(states.iter().all(|s| *s == State::Done));
            assert_eq!(fake.most_in_flight.load(Ordering::SeqCst), bound);
        }
        // A bound of 0 still makes progress.
        let fake = Fake::default();
        let (states, _) = run(&deps, 0, &[], &fake).await;
        assert!(states.iter().all(|s| *s == State::Done));
    }

    #[tokio::test]
    async fn a_failure_skips_only_what_is_downstream_of_it() {
        // 0 fails; 1 depends on 0, 2 on 1; 3 is independent; 4 depends on 3 and 1.
        let deps = vec![vec![], vec![0], vec![1], vec![], vec![3, 1]];
        let fake = Fake::default();
        let (states, heard) = run(&deps, 4, &[0], &fake).await;
        assert_eq!(
            states,
            vec![
                State::Failed(Fail::Step(0)),
                State::Skipped,
                State::Skipped,
                State::Done,
                State::Skipped,
            ]
        );
        assert!(!fake.log().iter().any(|e| e == "start 1" || e == "start 2"));
        // Each step is heard of once, as it ends.
        let mut steps: Vec<usize> = heard.iter().map(|(i, _)| *i).collect();
        steps.sort_unstable();
        assert_eq!(steps, vec![0, 1, 2, 3, 4]);
        let heard_of = |i: usize| heard.iter().position(|(j, _)| *j == i);
        assert!(heard_of(0) < heard_of(1) && heard_of(1) < heard_of(2));
        assert!(heard.contains(&(0, "Failed(Step(0))".to_string())));
    }

    #[tokio::test]
    async fn a_stop_starts_nothing_new_and_lets_what_runs_finish() {
        // 0 and 1 run at once (bound 2); 0 asks to stop; 2 and 3 never start.
        let deps = vec![vec![], vec![], vec![], vec![0]];
        let fake = Fake::default();
        let stop = Arc::new(AtomicBool::new(false));
        let states = walk(
            &deps,
            2,
            &stop,
            |i| {
                let step = fake.step(i, &[]);
                let stop = stop.clone();
                async move {
                    if i == 0 {
                        stop.store(true, Ordering::SeqCst);
                    }
                    step.await
                }
            },
            |_, _| {},
        )
        .await;
        assert_eq!(
            states,
            vec![
                State::Done,
                State::Done,
                State::NotStarted,
                State::NotStarted
            ]
        );
    }

    #[tokio::test]
    async fn a_panicking_step_is_a_failure_not_a_crash() {
        let deps = vec![vec![], vec![0]];
        let stop = AtomicBool::new(false);
        let states = walk(
            &deps,
            1,
            &stop,
            |i| async move {
                assert!(i != 0, "step 0 panics");
                Ok::<(), Fail>(())
            },
            |_, _| {},
        )
        .await;
        assert_eq!(states, vec![State::Failed(Fail::Aborted), State::Skipped]);
    }

    #[tokio::test]
    async fn with_a_bound_of_one_the_longest_chain_starts_first() {
        // 0: rule (then 1: tag), 2 and 3: addresses (then 4: VM, then 5: route), 6: alone.
        let deps = vec![vec![], vec![0], vec![], vec![], vec![2, 3], vec![4], vec![]];
        let fake = Fake::default();
        run(&deps, 1, &[], &fake).await;
        let starts: Vec<String> = fake
            .log()
            .into_iter()
            .filter(|e| e.starts_with("start"))
            .collect();
        assert_eq!(
            starts,
            [
                "start 2", "start 3", "start 0", "start 4", "start 1", "start 5", "start 6"
            ]
        );
    }

    #[test]
    fn longest_chains_come_first_and_ties_keep_their_order() {
        let deps = vec![vec![], vec![0], vec![], vec![], vec![2, 3], vec![4], vec![]];
        assert_eq!(priority(&deps), vec![2, 3, 0, 4, 1, 5, 6]);
    }

    #[test]
    fn a_cycle_does_not_hang() {
        let deps = vec![vec![1], vec![0]];
        let mut order = priority(&deps);
        order.sort_unstable();
        assert_eq!(order, vec![0, 1]);
    }
}
