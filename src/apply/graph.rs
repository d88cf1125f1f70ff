//! Steps and their dependencies.
//!
//! Building up (create, update): addresses, then the VM (and its boot), then routes; the firewall rule before
//! the node-pool tag (the rule records whether natgw added the tag). Tearing down runs the other way: routes,
//! then the VM, then addresses; node-pool tags once the routes that use them are gone, and a deleted rule
//! after the tag it records.

use crate::model::{Kind, Resource};
use crate::plan::{Action, Change};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Delete (alone, or the first half of a replacement).
    Down,
    /// Create or update.
    Up,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) change: usize,
    pub(crate) direction: Direction,
}

pub(crate) fn steps(changes: &[Change]) -> Vec<Step> {
    let mut steps = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        match c.action {
            Action::NoOp => {}
            Action::Create | Action::Update => steps.push(Step {
                change: i,
                direction: Direction::Up,
            }),
            Action::Delete => steps.push(Step {
                change: i,
                direction: Direction::Down,
            }),
            Action::Replace => {
                steps.push(Step {
                    change: i,
                    direction: Direction::Down,
                });
                steps.push(Step {
                    change: i,
                    direction: Direction::Up,
                });
            }
        }
    }
    steps
}

fn is_address(k: Kind) -> bool {
    matches!(k, Kind::ExternalAddress | Kind::InternalAddress)
}

fn address_ip(r: Option<&Resource>) -> Option<std::net::Ipv4Addr> {
    match r {
        Some(Resource::Address(a)) => a.address,
        _ => None,
    }
}

/// Whether step `a` must finish before step `b` starts.
fn before(changes: &[Change], a: Step, b: Step) -> bool {
    let (ca, cb) = (&changes[a.change], &changes[b.change]);
    let same_gateway = !ca.gateway.is_empty() && ca.gateway == cb.gateway;
    use Direction::{Down, Up};
    match (a.direction, b.direction) {
        // A replacement deletes, then creates.
        (Down, Up) if a.change == b.change => true,
        (Up, Up) if same_gateway => matches!(
            (ca.kind, cb.kind),
            (
                Kind::ExternalAddress | Kind::InternalAddress,
                Kind::Instance
            ) | (Kind::Instance | Kind::InternalAddress, Kind::Route)
        ),
        (Up, Up) => ca.kind == Kind::Firewall && cb.kind == Kind::NodePool,
        (Down, Down) if same_gateway => matches!(
            (ca.kind, cb.kind),
            (Kind::Route, Kind::Instance)
                | (
                    Kind::Instance,
                    Kind::ExternalAddress | Kind::InternalAddress
                )
        ),
        // Tags go once the routes that use them are gone; a deleted rule goes after the tag it records.
        (Down, Up) if ca.kind == Kind::Route && cb.kind == Kind::NodePool => true,
        (Up, Down) if ca.kind == Kind::NodePool && cb.kind == Kind::Firewall => {
            cb.action == Action::Delete
        }
        // An address that takes the IP another one frees (a renamed gateway with a fixed internal IP).
        (Down, Up) if is_address(ca.kind) && is_address(cb.kind) => {
            let freed = address_ip(ca.before.as_ref());
            freed.is_some() && freed == address_ip(cb.after.as_ref())
        }
        _ => false,
    }
}

/// For each step, the steps it waits for.
pub(crate) fn dependencies(changes: &[Change], steps: &[Step]) -> Vec<Vec<usize>> {
    steps
        .iter()
        .map(|&b| {
            steps
                .iter()
                .enumerate()
                .filter(|&(_, &a)| a != b && before(changes, a, b))
                .map(|(i, _)| i)
                .collect()
        })
        .collect()
}

/// The order in which ready steps start: the longest chain of dependants first (an address, with a VM and a
/// route behind it, before a firewall rule), so that the concurrency bound delays the steps that have slack
/// rather than the critical path. Ties keep the plan's order.
pub(crate) fn priority(deps: &[Vec<usize>]) -> Vec<usize> {
    let n = deps.len();
    let mut dependants = vec![Vec::new(); n];
    for (b, ds) in deps.iter().enumerate() {
        for &a in ds {
            if a < n {
                dependants[a].push(b);
            }
        }
    }
    // 0: not yet computed; the graph has no cycles, but a cycle would only end the chain, never loop.
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
    use super::priority;

    #[test]
    fn longest_chains_start_first_and_ties_keep_their_order() {
        // 0: rule (then 1: tag), 2 and 3: addresses (then 4: VM, then 5: route), 6: alone.
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
