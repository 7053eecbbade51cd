//! The kernel's lifecycle operations are linear in services and dependencies: counted, not
//! timed. Every read of a service's edges and every copy of an entry is counted (see
//! `graph::visited`); a quadratic walk over 100,000 services would count some 10^10.

use std::mem::ManuallyDrop;

use crate::runtime::graph::{limit_visits, take_visits};
use crate::{BoxError, Context, Event, Handler, Kernel, LifecycleError, Reply, Service, Stateless, Status};

const SERVICES: usize = 100_000;

/// How many times one operation may visit each service and dependency: the graph is built
/// (three reads of each edge), ordered (two), and each service's entry and dependencies are
/// read once more as it is started or stopped.
const PER_ITEM: usize = 8;

struct Named {
    name: String,
    deps: Vec<String>,
}

impl Service for Named {
    type State = Stateless;
    fn name(&self) -> &str {
        &self.name
    }
    fn dependencies(&self) -> Vec<String> {
        self.deps.clone()
    }
    fn export_state(&self) -> Result<&Stateless, BoxError> {
        Ok(&Stateless)
    }
    fn import_state(&mut self, _: Stateless) -> Result<(), BoxError> {
        Ok(())
    }
}

impl Handler for Named {
    type Request = Event;
    type Response = Reply;
    fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
        Reply::ok("ok", "")
    }
}

fn name(i: usize) -> String {
    format!("s{i:06}")
}

/// A kernel with `SERVICES` services, service `i` depending on `deps(i)`; returns it and its
/// count of services plus dependencies.
///
/// The kernel is not dropped if the test fails: its drop would stop every service again, and
/// after a quadratic walk that would take hours.
fn kernel(deps: impl Fn(usize) -> Option<usize>) -> (ManuallyDrop<Kernel>, usize) {
    let kernel = ManuallyDrop::new(Kernel::new());
    let mut size = SERVICES;
    for i in 0..SERVICES {
        let deps: Vec<String> = deps(i).map(name).into_iter().collect();
        size += deps.len();
        kernel.register(Named { name: name(i), deps }).expect("register");
    }
    (kernel, size)
}

/// Runs `operation`, and checks it visited each service and dependency at most `PER_ITEM`
/// times.
fn linear<T>(what: &str, size: usize, operation: impl FnOnce() -> T) -> T {
    // Over the limit, the count fails at once (a quadratic walk would otherwise run for hours).
    limit_visits(PER_ITEM * size);
    let result = operation();
    let visits = take_visits();
    assert!(
        visits <= PER_ITEM * size,
        "{what} visited {visits} > {PER_ITEM} x {size}"
    );
    result
}

/// start_all, a refused stop, stop_cascade from the first service, start_all again, stop_all.
fn check(deps: impl Fn(usize) -> Option<usize>) {
    let (kernel, size) = kernel(deps);
    linear("start_all", size, || kernel.start_all()).expect("start_all");
    let first = name(0);
    let refused = linear("stop", size, || kernel.stop(&first));
    assert!(
        matches!(refused, Err(LifecycleError::HasRunningDependants { .. }) | Ok(())),
        "{refused:?}"
    );
    linear("stop_cascade", size, || kernel.stop_cascade(&first)).expect("stop_cascade");
    assert_eq!(kernel.status(&first), Some(Status::Stopped));
    linear("start_all", size, || kernel.start_all()).expect("start_all");
    linear("stop_all", size, || kernel.stop_all()).expect("stop_all");
    assert_eq!(kernel.status(&name(SERVICES - 1)), Some(Status::Stopped));
    linear("dropping the kernel", size, || drop(ManuallyDrop::into_inner(kernel)));
}

#[test]
fn a_chain_starts_and_stops_in_linear_steps() {
    check(|i| i.checked_sub(1));
}

#[test]
fn independent_services_start_and_stop_in_linear_steps() {
    check(|_| None);
}

#[test]
fn a_wide_fan_in_starts_and_stops_in_linear_steps() {
    check(|i| (i > 0).then_some(0));
}

#[test]
fn starting_and_stopping_one_service_reads_its_own_entry() {
    // One service among 100,000 starts and stops without a walk over the others: a start reads
    // its entry, a stop its entry and its (here no) dependants.
    let (kernel, size) = kernel(|_| None);
    let last = name(SERVICES - 1);
    linear("start", 1, || kernel.start(&last)).expect("start");
    linear("stop", 2, || kernel.stop(&last)).expect("stop");
    linear("dropping the kernel", size, || drop(ManuallyDrop::into_inner(kernel)));
}

#[test]
fn services_started_and_stopped_one_by_one_cost_their_own_edges() {
    // 100,000 single starts then single stops, dependants first: each reads only its own entry,
    // dependencies and dependants, so all of them together stay linear.
    let (kernel, size) = kernel(|i| i.checked_sub(1));
    linear("starting one by one", size, || {
        (0..SERVICES).for_each(|i| kernel.start(&name(i)).expect("start"))
    });
    linear("stopping one by one", size, || {
        (0..SERVICES).rev().for_each(|i| kernel.stop(&name(i)).expect("stop"))
    });
    // A refused stop names the running dependant, found the same way.
    kernel.start_all().expect("start_all");
    let refused = linear("a refused stop", 4, || kernel.stop(&name(0)));
    let Err(LifecycleError::HasRunningDependants { dependants, .. }) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(dependants, [name(1)]);
    linear("dropping the kernel", size, || drop(ManuallyDrop::into_inner(kernel)));
}

#[test]
fn dependants_follow_registration_replacement_and_removal() {
    // The registry's reverse edges, which a stop reads, stay right as services come, change
    // their dependencies and go.
    let kernel = Kernel::new();
    let service = |name: &str, deps: &[&str]| Named {
        name: name.into(),
        deps: deps.iter().map(|d| (*d).to_owned()).collect(),
    };
    kernel.register(service("c", &["a"])).expect("register");
    kernel.register(service("b", &["a", "z"])).expect("register");
    kernel.register(service("a", &[])).expect("register");
    kernel.register(service("z", &[])).expect("register");
    kernel.start_all().expect("start_all");
    let refused = |kernel: &Kernel, name: &str| match kernel.stop(name) {
        Err(LifecycleError::HasRunningDependants { dependants, .. }) => dependants,
        other => panic!("{other:?}"),
    };
    assert_eq!(refused(&kernel, "a"), ["b", "c"]);
    kernel.replace(service("b", &["z"])).expect("replace");
    assert_eq!(refused(&kernel, "a"), ["c"]);
    assert_eq!(refused(&kernel, "z"), ["b"]);
    kernel.stop("c").expect("stop");
    kernel.unregister("c").expect("unregister");
    kernel.stop("a").expect("stop");
    kernel.register(service("c", &["a"])).expect("register again");
    kernel.start("a").expect("start");
    kernel.start("c").expect("start");
    assert_eq!(refused(&kernel, "a"), ["c"]);
}
