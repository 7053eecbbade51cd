//! Dependency order: which services start before which, and the errors when there is none.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Cycle, LifecycleError};

/// Service name → names it depends on. A `BTreeMap` so that every walk is in name order,
/// which makes the order of independent services deterministic.
pub(crate) type DepGraph<'a> = BTreeMap<&'a str, &'a [String]>;

/// The order to start every service in: each after its dependencies, ties broken by name.
/// Fails on the first unknown dependency (in name order) or on a cycle, naming the whole chain.
pub(crate) fn start_order(graph: &DepGraph<'_>) -> Result<Vec<String>, LifecycleError> {
    check_known(graph)?;
    let mut waiting: BTreeMap<&str, usize> = graph.iter().map(|(n, d)| (*n, d.len())).collect();
    let mut ready: BTreeSet<&str> = waiting.iter().filter(|(_, n)| **n == 0).map(|(s, _)| *s).collect();
    let mut order = Vec::with_capacity(graph.len());
    while let Some(next) = ready.pop_first() {
        waiting.remove(next);
        order.push(next.to_owned());
        for (name, deps) in graph {
            if deps.iter().any(|d| d == next) {
                let left = waiting.get_mut(name).expect("dependants are waiting");
                *left -= 1;
                if *left == 0 {
                    ready.insert(name);
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

/// The services that depend on `service` directly, in name order.
pub(crate) fn dependants<'a>(graph: &DepGraph<'a>, service: &str) -> Vec<&'a str> {
    graph
        .iter()
        .filter(|(_, deps)| deps.iter().any(|d| d == service))
        .map(|(n, _)| *n)
        .collect()
}

/// Every service that depends on `service`, directly or through others.
pub(crate) fn dependants_closure<'a>(graph: &DepGraph<'a>, service: &str) -> BTreeSet<&'a str> {
    let mut found = BTreeSet::new();
    let mut todo = vec![service.to_owned()];
    while let Some(next) = todo.pop() {
        for dependant in dependants(graph, &next) {
            if found.insert(dependant) {
                todo.push(dependant.to_owned());
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
    let mut path: Vec<&str> = vec![waiting.first().expect("a cycle leaves nodes waiting")];
    loop {
        let last = *path.last().expect("path is never empty");
        let next = graph[last]
            .iter()
            .map(String::as_str)
            .find(|d| waiting.contains(d))
            .expect("a waiting node waits on a waiting dependency");
        if let Some(at) = path.iter().position(|p| *p == next) {
            let mut chain: Vec<String> = path[at..].iter().map(|s| (*s).to_owned()).collect();
            chain.push(next.to_owned());
            return Cycle(chain);
        }
        path.push(waiting.get(next).expect("checked above"));
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
    fn unknown_dependency_names_both() {
        let err = order(&[("a", &["ghost"])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "service `a` depends on `ghost`, which is not registered"
        );
    }
}
