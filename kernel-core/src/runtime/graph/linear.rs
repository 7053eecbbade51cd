//! The graph's walks are linear: counted, not timed. Each test builds 100,000 services in one
//! shape and checks that an operation visits each node and edge a bounded number of times; a
//! walk that scanned every service per step would visit some 10^10.

use super::*;

const SERVICES: usize = 100_000;

/// How many times a walk may visit each node and edge: building the graph reads every edge
/// three times (resolving, counting, turning around), the start order twice more.
const PER_ITEM: usize = 6;

/// `s000000` … in name order, each with the dependencies `deps(i)` gives (as numbers).
fn services(deps: impl Fn(usize) -> Vec<usize>) -> (Vec<String>, Vec<Vec<String>>) {
    let names: Vec<String> = (0..SERVICES).map(|i| format!("s{i:06}")).collect();
    let deps = (0..SERVICES)
        .map(|i| deps(i).into_iter().map(|d| names[d].clone()).collect())
        .collect();
    (names, deps)
}

fn chain() -> (Vec<String>, Vec<Vec<String>>) {
    services(|i| if i == 0 { vec![] } else { vec![i - 1] })
}

fn independent() -> (Vec<String>, Vec<Vec<String>>) {
    services(|_| vec![])
}

/// Every service but the first depends on the first.
fn fan_in() -> (Vec<String>, Vec<Vec<String>>) {
    services(|i| if i == 0 { vec![] } else { vec![0] })
}

/// A ring: each depends on the next, the last on the first.
fn ring() -> (Vec<String>, Vec<Vec<String>>) {
    services(|i| vec![(i + 1) % SERVICES])
}

fn graph<'a>(names: &'a [String], deps: &'a [Vec<String>]) -> Graph<&'a str> {
    Graph::new(
        names
            .iter()
            .zip(deps)
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect(),
    )
}

/// Nodes plus edges.
fn size(deps: &[Vec<String>]) -> usize {
    deps.len() + deps.iter().map(Vec::len).sum::<usize>()
}

/// Runs `walk`, allowing it at most `bound` visits.
fn within<T>(bound: usize, walk: impl FnOnce() -> T) -> T {
    limit_visits(bound);
    let result = walk();
    let visits = take_visits();
    assert!(visits <= bound, "{visits} visits > {bound}");
    result
}

/// Builds the graph, then finds the start order and the dependants of the first service,
/// checking each step's count of visits.
fn check_linear((names, deps): (Vec<String>, Vec<Vec<String>>)) {
    let bound = PER_ITEM * size(&deps);
    let g = within(bound, || graph(&names, &deps));
    let order = within(bound, || g.start_order()).expect("an order");
    assert_eq!(order.len(), SERVICES);
    let closure = within(bound, || g.dependants_closure(0));
    assert_eq!(
        closure.iter().filter(|d| **d).count(),
        deps.iter().filter(|d| !d.is_empty()).count()
    );
}

#[test]
fn a_chain_is_walked_in_linear_steps() {
    check_linear(chain());
}

#[test]
fn independent_services_are_walked_in_linear_steps() {
    check_linear(independent());
}

#[test]
fn a_wide_fan_in_is_walked_in_linear_steps() {
    check_linear(fan_in());
}

#[test]
fn a_long_cycle_is_found_in_linear_steps() {
    let (names, deps) = ring();
    let bound = PER_ITEM * size(&deps);
    let g = graph(&names, &deps);
    let err = within(bound, || g.start_order()).unwrap_err();
    let LifecycleError::Cycle(Cycle(chain)) = err else {
        panic!("{err}")
    };
    assert_eq!(chain.len(), SERVICES + 1);
    assert_eq!((chain[0].as_str(), chain[SERVICES].as_str()), ("s000000", "s000000"));
}

#[test]
fn the_counter_sees_a_quadratic_scan() {
    // The counter's own check: asking every service's dependants by scanning all services'
    // edges, as `dependants` once did, runs out of visits.
    let (names, deps) = services(|i| if i == 0 { vec![] } else { vec![i - 1] });
    let (names, deps) = (&names[..1000], &deps[..1000]);
    let g = graph(names, deps);
    let scan = std::panic::catch_unwind(|| {
        within(PER_ITEM * size(deps), || {
            for service in 0..g.len() {
                let _ = (0..g.len()).filter(|n| g.deps(*n).contains(&service)).count();
            }
        })
    });
    take_visits();
    assert!(scan.is_err(), "a scan per service went over the bound");
}

#[test]
fn a_long_dependency_list_is_checked_through_a_set() {
    let mut deps: Vec<String> = (0..SERVICES).map(|i| format!("d{i}")).collect();
    assert_eq!(listed_twice(&deps), None);
    deps.push("d7".into());
    deps.push("d3".into());
    assert_eq!(listed_twice(&deps), Some("d7"));
}

#[test]
fn names_sort_by_their_bytes() {
    let names = [
        "b",
        "a",
        "a\0",
        "a\0b",
        "abcdefgh",
        "abcdefgha",
        "abcdefg",
        "abcdefgh\0",
        "é",
        "z",
        "",
        "ab\u{1}",
    ];
    let sorted: Vec<&str> = sorted_by_name(names.iter().map(|n| (*n, ())))
        .into_iter()
        .map(|(n, ())| n)
        .collect();
    let mut expected = names.to_vec();
    expected.sort();
    assert_eq!(sorted, expected);
}
