//! Dependency order: which services start before which, and the errors when there is none;
//! and the hashing of service names ([`Names`]) every table keyed by them uses.
//!
//! A [`Graph`] numbers the services in name order once, resolves every dependency to a number
//! and turns the edges around once; every walk after that (the start order, dependants, cycles)
//! goes over numbers and visits each edge once, so an operation on the whole kernel costs
//! O((V + E) log V), the log from keeping the ready set in name order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use crate::runtime::error::{Cycle, LifecycleError};

/// Hashes service names for the registry with FNV-1a: a name lookup is on the path of every
/// call by name, names are short and chosen by the program (not by an attacker), and SipHash
/// cost more than the rest of the lookup.
#[derive(Default)]
pub(crate) struct NameHasher(u64);

impl std::hash::Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let start = if self.0 == 0 { crate::state::FNV_OFFSET } else { self.0 };
        self.0 = crate::state::fnv1a(start, bytes);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type Names = std::hash::BuildHasherDefault<NameHasher>;

/// Handler name → names it depends on, in name order.
pub(crate) type DepGraph<'a> = BTreeMap<&'a str, &'a [String]>;

/// The order to start every service in: each after its dependencies, ties broken by name.
/// Fails on the first unknown dependency (in name order) or on a cycle, naming the whole chain.
pub(crate) fn start_order(graph: &DepGraph<'_>) -> Result<Vec<String>, LifecycleError> {
    let graph = Graph::new(graph.iter().map(|(name, deps)| (*name, *deps)).collect());
    let order = graph.start_order()?;
    Ok(order.into_iter().map(|n| graph.name(n).to_owned()).collect())
}

/// Every service that depends on `service`, directly or through others.
#[cfg(test)]
pub(crate) fn dependants_closure<'a>(graph: &DepGraph<'a>, service: &str) -> std::collections::BTreeSet<&'a str> {
    let numbered = Graph::new(graph.iter().map(|(name, deps)| (*name, *deps)).collect());
    let Some(service) = numbered.number(service) else {
        return Default::default();
    };
    let found = numbered.dependants_closure(service);
    (0..numbered.len())
        .filter(|n| found[*n])
        .map(|n| numbered.names[n])
        .collect()
}

/// A dependency listed twice (the second time it appears), if any: registration and
/// replacement both refuse one.
pub(crate) fn listed_twice(deps: &[String]) -> Option<&str> {
    // A few dependencies are compared pairwise; a long list goes through a set, so that a
    // service with very many dependencies is not checked in quadratic time.
    const PAIRWISE: usize = 16;
    if deps.len() <= PAIRWISE {
        return deps
            .iter()
            .enumerate()
            .find(|(i, d)| deps[..*i].contains(d))
            .map(|(_, d)| d.as_str());
    }
    let mut seen = HashSet::with_capacity_and_hasher(deps.len(), Names::default());
    deps.iter().map(String::as_str).find(|d| !seen.insert(*d))
}

/// `items` in name order. Most comparisons compare the names' first eight bytes, kept beside
/// each item as one number, instead of following two pointers to the names: with 100,000
/// services, those cache misses were most of the sort's time.
pub(crate) fn sorted_by_name<N: AsRef<str>, T>(items: impl Iterator<Item = (N, T)>) -> Vec<(N, T)> {
    let mut keyed: Vec<(u64, N, T)> = items.map(|(name, item)| (prefix(name.as_ref()), name, item)).collect();
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.as_ref().cmp(b.1.as_ref())));
    keyed.into_iter().map(|(_, name, item)| (name, item)).collect()
}

/// A name's first eight bytes as a big-endian number, zero-padded. Where two names' numbers
/// differ, they differ at a byte both names have, or one name ended there and the other has a
/// byte above zero: either way the numbers are in the names' order.
fn prefix(name: &str) -> u64 {
    let mut bytes = [0; 8];
    let n = name.len().min(8);
    bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
    u64::from_be_bytes(bytes)
}

/// Services numbered in name order with their edges both ways, built once for an operation.
pub(crate) struct Graph<N> {
    /// Names in name order: a service's number is its place here, so that the smallest number
    /// is the first name.
    names: Vec<N>,
    /// Each service's dependencies, each once, in the order first listed; unknown ones left out.
    deps: Edges,
    /// Each service's dependants, each once, in name order.
    dependants: Edges,
    /// The first dependency that is not a service (services in name order, then as listed).
    unknown: Option<(usize, String)>,
}

impl<N: AsRef<str>> Graph<N> {
    /// The graph of `services`, which must be in name order, each name once.
    pub(crate) fn new(services: Vec<(N, &[String])>) -> Self {
        debug_assert!(services.windows(2).all(|w| w[0].0.as_ref() < w[1].0.as_ref()));
        visited(services.len());
        let (deps, unknown) = resolve(&services);
        let dependants = deps.reversed();
        let names = services.into_iter().map(|(name, _)| name).collect();
        Self {
            names,
            deps,
            dependants,
            unknown,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn name(&self, service: usize) -> &str {
        self.names[service].as_ref()
    }

    /// The number of the service called `name`, if there is one.
    pub(crate) fn number(&self, name: &str) -> Option<usize> {
        self.names.binary_search_by(|n| n.as_ref().cmp(name)).ok()
    }

    /// The service's dependencies, each once, in the order first listed.
    pub(crate) fn deps(&self, service: usize) -> &[usize] {
        self.deps.of(service)
    }

    /// The order to start every service in (as numbers): each after its dependencies, ties
    /// broken by name. Fails on the first unknown dependency (in name order) or on a cycle,
    /// naming the whole chain.
    ///
    /// Kahn's walk: each edge is visited once, and the ready set is a heap of numbers, whose
    /// smallest is the first name.
    pub(crate) fn start_order(&self) -> Result<Vec<usize>, LifecycleError> {
        self.check_known()?;
        let mut waiting: Vec<usize> = (0..self.len()).map(|n| self.deps.of(n).len()).collect();
        let mut ready: BinaryHeap<Reverse<usize>> = (0..self.len()).filter(|n| waiting[*n] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(self.len());
        while let Some(Reverse(next)) = ready.pop() {
            order.push(next);
            for &dependant in self.dependants.of(next) {
                // Each dependant counts each of its dependencies once, and each is started once.
                waiting[dependant] -= 1;
                if waiting[dependant] == 0 {
                    ready.push(Reverse(dependant));
                }
            }
        }
        if order.len() == self.len() {
            Ok(order)
        } else {
            Err(LifecycleError::Cycle(self.find_cycle(&waiting)))
        }
    }

    /// Every service that depends on `service`, directly or through others, marked by number
    /// (each edge visited once).
    pub(crate) fn dependants_closure(&self, service: usize) -> Vec<bool> {
        let mut found = vec![false; self.len()];
        let mut todo = vec![service];
        while let Some(next) = todo.pop() {
            for &dependant in self.dependants.of(next) {
                if !found[dependant] {
                    found[dependant] = true;
                    todo.push(dependant);
                }
            }
        }
        found
    }

    /// Every dependency of every service is itself a service.
    fn check_known(&self) -> Result<(), LifecycleError> {
        match &self.unknown {
            Some((service, dependency)) => Err(LifecycleError::UnknownDependency {
                service: self.names[*service].as_ref().to_owned(),
                dependency: dependency.clone(),
            }),
            None => Ok(()),
        }
    }

    /// A cycle among the services Kahn's walk left waiting (`waiting[n] > 0`). Each of them
    /// waits on a dependency that is itself waiting, so following waiting dependencies from the
    /// first of them (by name) must come back to a service on the path: the part of the path
    /// from there is the cycle. Each service is on the path once, so each edge is seen once.
    fn find_cycle(&self, waiting: &[usize]) -> Cycle {
        let is_waiting = |n: &usize| waiting[*n] > 0;
        let named = |path: &[usize]| path.iter().map(|n| self.names[*n].as_ref().to_owned()).collect();
        let Some(first) = (0..self.len()).find(is_waiting) else {
            // Unreachable: Kahn's walk leaves services waiting only when there is a cycle.
            return Cycle(Vec::new());
        };
        let mut path = vec![first];
        let mut on_path: HashMap<usize, usize> = HashMap::from([(first, 0)]);
        loop {
            let last = path[path.len() - 1];
            let Some(&next) = self.deps.of(last).iter().find(|n| is_waiting(n)) else {
                // Unreachable: a waiting service has a dependency that was never counted off,
                // and every dependency is known (checked before the walk).
                return Cycle(named(&path));
            };
            if let Some(&at) = on_path.get(&next) {
                let mut chain: Vec<String> = named(&path[at..]);
                chain.push(self.names[next].as_ref().to_owned());
                return Cycle(chain);
            }
            on_path.insert(next, path.len());
            path.push(next);
        }
    }
}

/// Every service's dependencies as numbers, each once in the order first listed, and the first
/// unknown one.
fn resolve<N: AsRef<str>>(services: &[(N, &[String])]) -> (Edges, Option<(usize, String)>) {
    let number: HashMap<&str, usize, Names> = services
        .iter()
        .enumerate()
        .map(|(n, (name, _))| (name.as_ref(), n))
        .collect();
    let mut edges = Edges::with_nodes(services.len());
    let mut unknown = None;
    // `listed_by[d] == n + 1` once service `n` listed `d`: a dependency listed twice counts once.
    let mut listed_by = vec![0; services.len()];
    for (n, (_, listed)) in services.iter().enumerate() {
        visited(1 + listed.len());
        for dep in *listed {
            match number.get(dep.as_str()) {
                Some(&d) if listed_by[d] != n + 1 => {
                    listed_by[d] = n + 1;
                    edges.targets.push(d);
                }
                Some(_) => {}
                None => {
                    unknown.get_or_insert_with(|| (n, dep.clone()));
                }
            }
        }
        edges.starts.push(edges.targets.len());
    }
    (edges, unknown)
}

/// Edges in two flat arrays: node `n`'s go to `targets[starts[n]..starts[n + 1]]`.
struct Edges {
    starts: Vec<usize>,
    targets: Vec<usize>,
}

impl Edges {
    fn with_nodes(nodes: usize) -> Self {
        let mut starts = Vec::with_capacity(nodes + 1);
        starts.push(0);
        Self {
            starts,
            targets: Vec::new(),
        }
    }

    fn nodes(&self) -> usize {
        self.starts.len() - 1
    }

    /// Where node `n`'s edges go (counted as visited).
    fn of(&self, n: usize) -> &[usize] {
        let targets = &self.targets[self.starts[n]..self.starts[n + 1]];
        visited(1 + targets.len());
        targets
    }

    /// The same edges turned around, each node's list in ascending order (a counting sort:
    /// sources are taken in ascending order).
    fn reversed(&self) -> Edges {
        visited(self.targets.len());
        let mut starts = vec![0; self.nodes() + 1];
        for &target in &self.targets {
            starts[target + 1] += 1;
        }
        for n in 0..self.nodes() {
            starts[n + 1] += starts[n];
        }
        let mut next = starts.clone();
        let mut targets = vec![0; self.targets.len()];
        for source in 0..self.nodes() {
            for &target in self.of(source) {
                targets[next[target]] = source;
                next[target] += 1;
            }
        }
        Edges { starts, targets }
    }
}

#[cfg(test)]
std::thread_local! {
    /// Nodes and edges this thread's walks visited, and how many they may visit, for the tests
    /// that check walks are linear.
    static VISITS: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, usize::MAX)) };
}

/// Counts `n` nodes or edges as visited (in tests only; nothing otherwise). Every read of a
/// service's edges, and of a copy of the registry, goes through here.
#[inline]
pub(crate) fn visited(n: usize) {
    #[cfg(test)]
    VISITS.with(|v| {
        let (count, limit) = v.get();
        v.set((count + n, limit));
        // A quadratic walk fails here at once, instead of running for hours (once: not again
        // while that failure unwinds).
        if count + n > limit && !std::thread::panicking() {
            panic!("more than {limit} visits: a walk is not linear");
        }
    });
    #[cfg(not(test))]
    let _ = n;
}

/// Starts counting visits on this thread afresh, allowing at most `limit` until the next call.
#[cfg(test)]
pub(crate) fn limit_visits(limit: usize) {
    VISITS.with(|v| v.set((0, limit)));
}

/// The visits counted on this thread since [`limit_visits`] (or the last call); lifts the limit.
#[cfg(test)]
pub(crate) fn take_visits() -> usize {
    VISITS.with(|v| v.replace((0, usize::MAX)).0)
}

#[cfg(test)]
mod linear;

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&'static str, &[&str])]) -> BTreeMap<&'static str, Vec<String>> {
        edges
            .iter()
            .map(|(n, d)| (*n, d.iter().map(|s| (*s).to_owned()).collect()))
            .collect()
    }

    fn order(edges: &[(&'static str, &[&str])]) -> Result<Vec<String>, LifecycleError> {
        let owned = graph(edges);
        let g: DepGraph<'_> = owned.iter().map(|(n, d)| (*n, d.as_slice())).collect();
        start_order(&g)
    }

    #[test]
    fn diamond_starts_base_first_and_ties_by_name() {
        let o = order(&[
            ("top", &["left", "right"]),
            ("right", &["base"]),
            ("left", &["base"]),
            ("base", &[]),
        ])
        .unwrap();
        assert_eq!(o, ["base", "left", "right", "top"]);
    }

    #[test]
    fn cycle_is_reported_as_a_whole_chain() {
        let err = order(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: a -> b -> c -> a");
    }

    #[test]
    fn cycle_found_behind_a_node_that_only_leads_into_it() {
        let err = order(&[("a", &["b"]), ("b", &["c"]), ("c", &["b"])]).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: b -> c -> b");
    }

    #[test]
    fn self_dependency_is_a_cycle() {
        let err = order(&[("a", &["a"])]).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: a -> a");
    }

    #[test]
    fn a_dependency_listed_twice_counts_once() {
        assert_eq!(order(&[("api", &["db", "db"]), ("db", &[])]).unwrap(), ["db", "api"]);
        let g = graph(&[("api", &["db", "db"]), ("db", &[])]);
        let g: DepGraph<'_> = g.iter().map(|(n, d)| (*n, d.as_slice())).collect();
        assert_eq!(dependants_closure(&g, "db").into_iter().collect::<Vec<_>>(), ["api"]);
    }

    #[test]
    fn a_long_chain_is_walked_in_linear_time() {
        // 100,000 services in a chain: quadratic would be 10^10 steps; this returns at once.
        let names: Vec<String> = (0..100_000).map(|i| format!("s{i:06}")).collect();
        let deps: Vec<Vec<String>> = (0..names.len())
            .map(|i| if i == 0 { vec![] } else { vec![names[i - 1].clone()] })
            .collect();
        let g: DepGraph<'_> = names
            .iter()
            .zip(&deps)
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        let order = start_order(&g).unwrap();
        assert_eq!(order.first().map(String::as_str), Some("s000000"));
        assert_eq!(order.len(), 100_000);
        assert_eq!(dependants_closure(&g, "s000000").len(), 99_999);
    }

    #[test]
    fn unknown_dependency_names_both() {
        let err = order(&[("a", &["ghost"])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "service `a` depends on `ghost`, which is not registered"
        );
    }
}
