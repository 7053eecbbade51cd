//! Registration, dependency order, start/stop and their errors.

mod common;

use common::{Fault, Journal, Probe};
use microkernel::{Kernel, LifecycleError, Notice, Status};

fn kernel_with(probes: Vec<Probe>) -> Kernel {
    let kernel = Kernel::new();
    for probe in probes {
        kernel.register(probe).unwrap();
    }
    kernel
}

#[test]
fn duplicate_name_is_refused() {
    let j = Journal::default();
    let kernel = kernel_with(vec![Probe::new("a", &[], &j)]);
    let err = kernel.register(Probe::new("a", &[], &j)).unwrap_err();
    assert!(matches!(err, LifecycleError::Duplicate { ref name } if name == "a"));
    assert_eq!(err.to_string(), "a service named `a` is already registered");
}

#[test]
fn unknown_dependency_names_both_services() {
    let j = Journal::default();
    let kernel = kernel_with(vec![Probe::new("api", &["db"], &j)]);
    let err = kernel.start_all().unwrap_err();
    assert_eq!(
        err.to_string(),
        "service `api` depends on `db`, which is not registered"
    );
    assert!(j.lines().is_empty(), "nothing starts when the graph is invalid");
    let err = kernel.start("api").unwrap_err();
    assert!(
        matches!(err, LifecycleError::UnknownDependency { ref service, ref dependency } if service == "api" && dependency == "db")
    );
}

#[test]
fn cycle_is_reported_with_the_whole_chain_before_anything_starts() {
    let j = Journal::default();
    let kernel = kernel_with(vec![
        Probe::new("a", &["b"], &j),
        Probe::new("b", &["c"], &j),
        Probe::new("c", &["a"], &j),
        Probe::new("free", &[], &j),
    ]);
    let err = kernel.start_all().unwrap_err();
    assert_eq!(err.to_string(), "dependency cycle: a -> b -> c -> a");
    assert!(j.lines().is_empty());
    assert_eq!(kernel.status("free"), Some(Status::Created));
}

#[test]
fn diamond_starts_in_dependency_order_and_stops_in_reverse() {
    let j = Journal::default();
    let kernel = kernel_with(vec![
        Probe::new("top", &["left", "right"], &j),
        Probe::new("left", &["base"], &j),
        Probe::new("right", &["base"], &j),
        Probe::new("base", &[], &j),
    ]);
    kernel.start_all().unwrap();
    assert_eq!(j.take(), ["start base", "start left", "start right", "start top"]);
    kernel.stop_all().unwrap();
    assert_eq!(j.take(), ["stop top", "stop right", "stop left", "stop base"]);
}

#[test]
fn chain_order_is_independent_of_registration_order() {
    let j = Journal::default();
    let kernel = kernel_with(vec![
        Probe::new("c", &["b"], &j),
        Probe::new("a", &[], &j),
        Probe::new("b", &["a"], &j),
    ]);
    assert_eq!(kernel.start_order().unwrap(), ["a", "b", "c"]);
    kernel.start_all().unwrap();
    assert_eq!(j.take(), ["start a", "start b", "start c"]);
}

#[test]
fn independent_services_start_in_name_order() {
    let j = Journal::default();
    let kernel = kernel_with(vec![
        Probe::new("zeta", &[], &j),
        Probe::new("alpha", &[], &j),
        Probe::new("mid", &[], &j),
    ]);
    kernel.start_all().unwrap();
    assert_eq!(j.take(), ["start alpha", "start mid", "start zeta"]);
}

#[test]
fn starting_a_service_whose_dependency_is_not_running_fails() {
    let j = Journal::default();
    let kernel = kernel_with(vec![Probe::new("api", &["db"], &j), Probe::new("db", &[], &j)]);
    let err = kernel.start("api").unwrap_err();
    assert_eq!(err.to_string(), "service `api` needs `db` running, but it is created");
    kernel.start("db").unwrap();
    kernel.start("api").unwrap();
    assert_eq!(kernel.status("api"), Some(Status::Running));
}

#[test]
fn stopping_a_dependency_of_a_running_service_is_refused_naming_the_dependants() {
    let j = Journal::default();
    let kernel = kernel_with(vec![
        Probe::new("api", &["db"], &j),
        Probe::new("jobs", &["db"], &j),
        Probe::new("db", &[], &j),
    ]);
    kernel.start_all().unwrap();
    let err = kernel.stop("db").unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot stop `db`: running services depend on it: api, jobs"
    );
    assert_eq!(kernel.status("db"), Some(Status::Running));
}

#[test]
fn stop_cascade_stops_dependants_first() {
    let j = Journal::default();
    let kernel = kernel_with(vec![
        Probe::new("web", &["api"], &j),
        Probe::new("api", &["db"], &j),
        Probe::new("db", &[], &j),
        Probe::new("other", &[], &j),
    ]);
    kernel.start_all().unwrap();
    j.take();
    kernel.stop_cascade("db").unwrap();
    assert_eq!(j.take(), ["stop web", "stop api", "stop db"]);
    assert_eq!(kernel.status("other"), Some(Status::Running));
}

#[test]
fn failed_start_all_marks_failed_and_stops_what_it_started_in_reverse() {
    for fault in [Fault::Error, Fault::Panic] {
        let j = Journal::default();
        let kernel = kernel_with(vec![
            Probe::new("a", &[], &j),
            Probe::new("b", &["a"], &j),
            Probe::new("c", &["b"], &j).failing_start(fault),
            Probe::new("d", &["c"], &j),
        ]);
        let err = kernel.start_all().unwrap_err();
        match fault {
            Fault::Error => assert_eq!(err.to_string(), "service `c` failed in start: start refused"),
            _ => assert_eq!(err.to_string(), "service `c` panicked in start: start exploded"),
        }
        assert_eq!(j.take(), ["start a", "start b", "start c", "stop b", "stop a"]);
        assert_eq!(kernel.status("c"), Some(Status::Failed));
        assert_eq!(kernel.status("a"), Some(Status::Stopped));
        assert_eq!(kernel.status("d"), Some(Status::Created));
    }
}

#[test]
fn stop_all_goes_on_past_failures_and_reports_each() {
    let j = Journal::default();
    let kernel = kernel_with(vec![
        Probe::new("a", &[], &j).failing_stop(Fault::Error),
        Probe::new("b", &["a"], &j),
        Probe::new("c", &["b"], &j).failing_stop(Fault::Panic),
    ]);
    kernel.start_all().unwrap();
    j.take();
    let err = kernel.stop_all().unwrap_err();
    assert_eq!(err.0.len(), 2);
    assert_eq!(
        err.to_string(),
        "2 service(s) failed to stop: service `c` panicked in stop: stop exploded; service `a` failed in stop: stop refused"
    );
    assert_eq!(j.take(), ["stop c", "stop b", "stop a"]);
    assert_eq!(kernel.status("a"), Some(Status::Failed));
    assert_eq!(kernel.status("b"), Some(Status::Stopped));
}

#[test]
fn a_stopped_service_restarts() {
    let j = Journal::default();
    let kernel = kernel_with(vec![Probe::new("a", &[], &j)]);
    kernel.start("a").unwrap();
    kernel.stop("a").unwrap();
    assert_eq!(kernel.status("a"), Some(Status::Stopped));
    kernel.start("a").unwrap();
    assert_eq!(kernel.status("a"), Some(Status::Running));
    assert_eq!(j.take(), ["start a", "stop a", "start a"]);
}

#[test]
fn statuses_move_created_running_stopped() {
    let j = Journal::default();
    let kernel = kernel_with(vec![Probe::new("a", &[], &j)]);
    assert_eq!(kernel.status("a"), Some(Status::Created));
    assert_eq!(kernel.status("nope"), None);
    kernel.start_all().unwrap();
    assert_eq!(kernel.status("a"), Some(Status::Running));
    kernel.stop_all().unwrap();
    assert_eq!(kernel.status("a"), Some(Status::Stopped));
    assert_eq!(kernel.services(), ["a"]);
}

#[test]
fn unknown_names_are_errors() {
    let kernel = Kernel::new();
    assert_eq!(
        kernel.start("ghost").unwrap_err().to_string(),
        "no service named `ghost` is registered"
    );
    assert_eq!(
        kernel.stop("ghost").unwrap_err().to_string(),
        "no service named `ghost` is registered"
    );
}

#[test]
fn dropping_the_kernel_stops_running_services_in_reverse_order() {
    let j = Journal::default();
    let kernel = kernel_with(vec![Probe::new("b", &["a"], &j), Probe::new("a", &[], &j)]);
    kernel.start_all().unwrap();
    j.take();
    drop(kernel);
    assert_eq!(j.take(), ["stop b", "stop a"]);
}

#[test]
fn observer_sees_lifecycle_notices_in_order() {
    let seen = Journal::default();
    let sink = seen.clone();
    let kernel = Kernel::builder()
        .observer(move |n| match n {
            Notice::Registered { service } => sink.note(format!("registered {service}")),
            Notice::Started { service } => sink.note(format!("started {service}")),
            Notice::Stopped { service } => sink.note(format!("stopped {service}")),
            Notice::Failed { service } => sink.note(format!("failed {service}")),
            _ => {}
        })
        .build()
        .unwrap();
    let j = Journal::default();
    kernel
        .register(Probe::new("b", &["a"], &j).failing_stop(Fault::Error))
        .unwrap();
    kernel.register(Probe::new("a", &[], &j)).unwrap();
    kernel.start_all().unwrap();
    let _ = kernel.stop_all();
    assert_eq!(
        seen.lines(),
        [
            "registered b",
            "registered a",
            "started a",
            "started b",
            "failed b",
            "stopped a"
        ]
    );
}

#[test]
fn a_hook_may_register_and_start_another_service() {
    use microkernel::{BoxError, Context, Event, Handler, Reply};

    #[derive(microkernel::Service)]
    #[service(name = "spawner")]
    struct Spawner(Journal);

    impl Handler for Spawner {
        type Request = Event;
        type Response = Reply;
        fn start(&mut self, ctx: &Context<'_>) -> Result<(), BoxError> {
            let kernel = ctx.kernel().ok_or("kernel gone")?;
            kernel.register(Probe::new("child", &[], &self.0))?;
            kernel.start("child")?;
            Ok(())
        }
        fn handle(&mut self, _: Event, _: &Context<'_>) -> Reply {
            Reply::default()
        }
    }

    let j = Journal::default();
    let kernel = Kernel::new();
    kernel.register(Spawner(j.clone())).unwrap();
    kernel.start_all().unwrap();
    assert_eq!(kernel.status("child"), Some(Status::Running));
    assert_eq!(j.take(), ["start child"]);
}

/// A service whose name and dependencies come from configuration read at run time.
struct Configured {
    name: String,
    deps: Vec<String>,
}

impl microkernel::Service for Configured {
    type State = microkernel::Stateless;
    fn name(&self) -> &str {
        &self.name
    }
    fn dependencies(&self) -> Vec<String> {
        self.deps.clone()
    }
    fn export_state(&self) -> Result<&microkernel::Stateless, microkernel::BoxError> {
        Ok(&microkernel::Stateless)
    }
    fn import_state(&mut self, _: microkernel::Stateless) -> Result<(), microkernel::BoxError> {
        Ok(())
    }
}

impl microkernel::Handler for Configured {
    type Request = microkernel::Event;
    type Response = microkernel::Reply;
    fn handle(&mut self, _: microkernel::Event, _: &microkernel::Context<'_>) -> microkernel::Reply {
        microkernel::Reply::ok("ok", "")
    }
}

#[test]
fn dependencies_computed_at_run_time_order_the_start_and_follow_a_replacement() {
    let shard = |n: u32| format!("shard-{n}");
    let kernel = Kernel::new();
    let service = |name: String, deps: Vec<String>| Configured { name, deps };
    kernel
        .register(service("router".into(), vec![shard(2), shard(1)]))
        .unwrap();
    kernel.register(service(shard(1), vec![])).unwrap();
    kernel.register(service(shard(2), vec![shard(1)])).unwrap();
    assert_eq!(kernel.start_order().unwrap(), ["shard-1", "shard-2", "router"]);
    kernel.start_all().unwrap();
    // The new version depends on shard-1 only: shard-2 may now stop.
    kernel.replace(service("router".into(), vec![shard(1)])).unwrap();
    kernel.stop("shard-2").unwrap();
    let err = kernel.stop("shard-1").unwrap_err();
    assert!(matches!(err, LifecycleError::HasRunningDependants { .. }), "{err}");
    // A name listed twice is refused, as for the derive.
    let err = kernel
        .register(service("twice".into(), vec![shard(1), shard(1)]))
        .unwrap_err();
    assert!(matches!(err, LifecycleError::DuplicateDependency { .. }), "{err}");
}
