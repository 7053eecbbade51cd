//! Dependency order: which services start before which, and the errors when there is none.

use std::collections::{BTreeMap, BTreeSet};

use crate::runtime::error::{Cycle, LifecycleError};

/// Handler name → names it depends on. A `BTreeMap` so that every walk is in name order,
/// which makes the order of independent services deterministic.
pub(crate) type DepGraph<'a> = BTreeMap<&'a str, &'a [String]>;

/// The order to start every service in: each after its dependencies, ties broken by name.
/// Fails on the first unknown dependency (in name order) or on a cycle, naming the whole chain.
///
/// Kahn's walk over reverse edges built once: each edge is visited once, and the ready set is
/// ordered by name, so the whole walk is O((V + E) log V). A dependency listed twice counts once.
pub(crate) fn start_order(graph: &DepGraph<'_>) -> Result<Vec<String>, LifecycleError> {
    check_known(graph)?;
    let reverse = reverse_edges(graph);
    let mut waiting: BTreeMap<&str, usize> = graph.iter().map(|(n, d)| (*n, distinct(d).len())).collect();
    let mut ready: BTreeSet<&str> = waiting.iter().filter(|(_, n)| **n == 0).map(|(s, _)| *s).collect();
    let mut order = Vec::with_capacity(graph.len());
    while let Some(next) = ready.pop_first() {
        waiting.remove(next);
        order.push(next.to_owned());
        for dependant in reverse.get(next).into_iter().flatten() {
            // Every dependant of a node not yet started is still waiting: it has a dependency
            // (this one) that was not counted off.
            if let Some(left) = waiting.get_mut(dependant) {
                *left -= 1;
                if *left == 0 {
                    ready.insert(dependant);
                }
            }
        }
    }
    if waiting.is_empty() {
        Ok(order)
    } else {
        Err(LifecycleError::Cycle(find_cycle(graph, waiting.keys().copied())))
    }
}

/// A dependency listed twice (the second time it appears), if any: registration and
/// replacement both refuse one.
pub(crate) fn listed_twice(deps: &[String]) -> Option<&str> {
    deps.iter()
        .enumerate()
        .find(|(i, d)| deps[..*i].contains(d))
        .map(|(_, d)| d.as_str())
}

/// Each dependency once, in the order first listed.
fn distinct(deps: &[String]) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    deps.iter().map(String::as_str).filter(|d| seen.insert(*d)).collect()
}

/// Handler → the services that depend on it directly, each once, in name order.
pub(crate) fn reverse_edges<'a>(graph: &DepGraph<'a>) -> BTreeMap<&'a str, Vec<&'a str>> {
    let mut reverse: BTreeMap<&'a str, Vec<&'a str>> = BTreeMap::new();
    for (name, deps) in graph {
        for dep in distinct(deps) {
            // Look the dependency up to borrow its name for 'a; unknown ones have no entry.
            if let Some((dep, _)) = graph.get_key_value(dep) {
                reverse.entry(*dep).or_default().push(name);
            }
        }
    }
    reverse
}

/// Every dependency of every service is itself a service.
pub(crate) fn check_known(graph: &DepGraph<'_>) -> Result<(), LifecycleError> {
    for (name, deps) in graph {
        if let Some(missing) = deps.iter().find(|d| !graph.contains_key(d.as_str())) {
            return Err(LifecycleError::UnknownDependency {
                service: (*name).to_owned(),
                dependency: missing.clone(),
            });
        }
    }
    Ok(())
}

/// The services that depend on `service` directly, in name order (one pass over the edges).
pub(crate) fn dependants<'a>(graph: &DepGraph<'a>, service: &str) -> Vec<&'a str> {
    graph
        .iter()
        .filter(|(_, deps)| deps.iter().any(|d| d == service))
        .map(|(n, _)| *n)
        .collect()
}

/// Every service that depends on `service`, directly or through others (each edge visited once).
pub(crate) fn dependants_closure<'a>(graph: &DepGraph<'a>, service: &str) -> BTreeSet<&'a str> {
    let reverse = reverse_edges(graph);
    let mut found = BTreeSet::new();
    let mut todo = vec![service];
    while let Some(next) = todo.pop() {
        for dependant in reverse.get(next).into_iter().flatten() {
            if found.insert(*dependant) {
                todo.push(dependant);
            }
        }
    }
    found
}

/// A cycle among the nodes Kahn's walk left waiting. Each of them waits on a dependency that is
/// itself waiting, so following waiting dependencies from any of them must come back to a node on
/// the path: the part of the path from there is the cycle.
fn find_cycle<'a>(graph: &DepGraph<'a>, waiting: impl Iterator<Item = &'a str>) -> Cycle {
    let waiting: BTreeSet<&str> = waiting.collect();
    let Some(first) = waiting.first() else {
        // Unreachable: Kahn's walk leaves nodes waiting only when there is a cycle.
        return Cycle(Vec::new());
    };
    let mut path: Vec<&str> = vec![first];
    let mut on_path: BTreeMap<&str, usize> = BTreeMap::from([(*first, 0)]);
    loop {
        let last = path[path.len() - 1];
        let next = graph
            .get(last)
            .and_then(|deps| deps.iter().map(String::as_str).find(|d| waiting.contains(d)));
        let Some(next) = next.and_then(|n| waiting.get(n)) else {
            // Unreachable: a waiting node has a dependency that was never counted off, and
            // every dependency is known (checked before the walk).
            return Cycle(path.iter().map(|s| (*s).to_owned()).collect());
        };
        if let Some(&at) = on_path.get(next) {
            let mut chain: Vec<String> = path[at..].iter().map(|s| (*s).to_owned()).collect();
            chain.push((*next).to_owned());
            return Cycle(chain);
        }
        on_path.insert(next, path.len());
        path.push(next);
    }
}

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
