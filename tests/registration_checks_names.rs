//! Names are checked when a service registers or is replaced: a name too long for the store's
//! file names or for the sealed envelope, and a dependency listed twice, are refused with a
//! typed error; at the limit, a service saves and restores.

mod common;

use common::stored::{private_dir, sealer};
use common::{Journal, Probe};
use microkernel::store::{MAX_NAME_LEN, StoreError};
use microkernel::{DirStore, Kernel, LifecycleError, NameRefusal};

/// A stateless service with a name and dependencies chosen at run time.
fn named(name: &'static str, deps: &[&'static str]) -> Probe {
    Probe::new(name, deps, &Journal::default())
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

#[test]
fn names_too_long_for_the_store_or_the_envelope_are_refused_at_registration() {
    let dir = private_dir("names");
    let kernel = Kernel::builder()
        .sealer(sealer())
        .store(DirStore::open(&dir).unwrap())
        .build()
        .unwrap();
    // The longest name the store takes registers, saves and restores.
    let longest = leak("n".repeat(MAX_NAME_LEN));
    kernel.register(named(longest, &[])).unwrap();
    kernel.start_all().unwrap();
    kernel.stop_all().unwrap();
    assert!(dir.join(format!("{longest}.state")).exists());
    let err = kernel
        .register(named(leak("n".repeat(MAX_NAME_LEN + 1)), &[]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            LifecycleError::InvalidName {
                reason: NameRefusal::Store(StoreError::NameTooLong { .. }),
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("at most {MAX_NAME_LEN} bytes")),
        "{err}"
    );
    drop(kernel);
    // With a sealer and no store, the envelope's one-byte length is the limit.
    let sealed = Kernel::builder().sealer(sealer()).build().unwrap();
    sealed.register(named(leak("s".repeat(255)), &[])).unwrap();
    let err = sealed.register(named(leak("s".repeat(256)), &[])).unwrap_err();
    assert!(
        matches!(
            err,
            LifecycleError::InvalidName {
                reason: NameRefusal::TooLongToSeal { len: 256, max: 255 },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("at most 255 bytes"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_dependency_listed_twice_is_refused_at_registration() {
    let kernel = Kernel::new();
    kernel.register(named("db", &[])).unwrap();
    let err = kernel.register(named("api", &["db", "db"])).unwrap_err();
    assert!(
        matches!(&err, LifecycleError::DuplicateDependency { service, dependency } if service == "api" && dependency == "db"),
        "{err}"
    );
    // Nor can a replacement bring one in.
    kernel.register(named("api", &["db"])).unwrap();
    let err = kernel.replace(named("api", &["db", "db"])).unwrap_err();
    assert_eq!(err.step(), microkernel::Step::Dependencies, "{err}");
    // Nothing panics afterwards.
    kernel.start_all().unwrap();
    kernel.stop_all().unwrap();
}
