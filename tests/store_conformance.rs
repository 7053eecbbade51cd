//! The directory store passes the store conformance suite (`microkernel::store::conformance`),
//! the same checks every `StateStore` backend runs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use microkernel::store::conformance::Fixture;
use microkernel::store::{DirStore, StoreError, StoreOptions};

/// A fresh private directory per check, removed afterwards.
struct TempDirFixture {
    dir: PathBuf,
}

impl TempDirFixture {
    const LIMIT: u64 = 64 << 10;

    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mk-conformance-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Self { dir }
    }

    fn file(&self, service: &str) -> PathBuf {
        self.dir.join(format!("{service}.state"))
    }
}

impl Fixture for TempDirFixture {
    type Store = DirStore;

    fn open(&self) -> Result<DirStore, StoreError> {
        DirStore::open_with(&self.dir, StoreOptions::default().max_state_bytes(Self::LIMIT))
    }

    fn raw(&self, service: &str) -> Option<Vec<u8>> {
        std::fs::read(self.file(service)).ok()
    }

    fn put_raw(&self, service: &str, bytes: &[u8]) {
        std::fs::write(self.file(service), bytes).expect("writing around the store");
    }

    fn max_object_bytes(&self) -> u64 {
        Self::LIMIT
    }
}

impl Drop for TempDirFixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

microkernel::store_conformance!(TempDirFixture::new());

/// The whole suite in one call, as a backend without the macro would run it.
#[test]
fn run_all_passes_for_the_directory_store() {
    microkernel::store::conformance::run_all(TempDirFixture::new);
}

/// An in-memory backend written from the trait's docs alone: a second implementation the suite
/// accepts, and, with `careless` set, one that forgets generations, which the suite must refuse.
mod memory {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use microkernel::seal::SealedObject;
    use microkernel::store::conformance::Fixture;
    use microkernel::store::{Location, StateStore, StoreError, StoreFuture, Stored};

    type Objects = Arc<Mutex<HashMap<String, Vec<u8>>>>;

    #[derive(Debug)]
    pub struct MemoryStore {
        objects: Objects,
        newest: Mutex<HashMap<String, u64>>,
        careless: bool,
        _owner: Arc<()>,
    }

    impl MemoryStore {
        fn location(service: &str) -> Location {
            Location::key("memory", service)
        }

        fn save_now(&self, service: &str, object: SealedObject) -> Result<Location, StoreError> {
            self.check_name(service)?;
            let object_at = Self::location(service);
            if object.len() as u64 > LIMIT {
                let size = object.len() as u64;
                return Err(StoreError::TooLarge {
                    object: object_at,
                    size,
                    limit: LIMIT,
                });
            }
            let mut newest = self.newest.lock().unwrap();
            let known = newest.get(service).copied().unwrap_or(0);
            if !self.careless && known > 0 && object.generation() <= known {
                return Err(StoreError::Stale {
                    object: object_at,
                    generation: object.generation(),
                    newest: known,
                });
            }
            newest.insert(service.to_owned(), object.generation());
            self.objects
                .lock()
                .unwrap()
                .insert(service.to_owned(), object.into_bytes());
            Ok(object_at)
        }

        fn load_now(&self, service: &str) -> Result<Option<Stored>, StoreError> {
            let mut newest = self.newest.lock().unwrap();
            let Some(bytes) = self.objects.lock().unwrap().get(service).cloned() else {
                return Ok(None);
            };
            let location = Self::location(service);
            if bytes.len() as u64 > LIMIT {
                return Err(StoreError::TooLarge {
                    object: location,
                    size: bytes.len() as u64,
                    limit: LIMIT,
                });
            }
            let object = SealedObject::from_bytes(bytes).map_err(|source| StoreError::Seal {
                object: location.clone(),
                source,
            })?;
            let known = newest.get(service).copied().unwrap_or(0);
            if !self.careless && object.generation() < known {
                return Err(StoreError::Replayed {
                    object: location,
                    found: object.generation(),
                    newest: known,
                });
            }
            newest.insert(service.to_owned(), object.generation());
            Ok(Some(Stored::new(location, object)))
        }
    }

    impl StateStore for MemoryStore {
        fn check_name(&self, service: &str) -> Result<(), StoreError> {
            microkernel::store::check_name(service)
        }

        fn location(&self, service: &str) -> Location {
            Self::location(service)
        }

        fn save<'a>(&'a self, service: &'a str, object: SealedObject) -> StoreFuture<'a, Location> {
            Box::pin(std::future::ready(self.save_now(service, object)))
        }

        fn load<'a>(&'a self, service: &'a str) -> StoreFuture<'a, Option<Stored>> {
            Box::pin(std::future::ready(self.load_now(service)))
        }

        fn set_aside<'a>(&'a self, service: &'a str) -> StoreFuture<'a, Option<Location>> {
            let mut objects = self.objects.lock().unwrap();
            let moved = objects.remove(service).map(|bytes| {
                objects.insert(format!("{service}.rejected"), bytes);
                Self::location(&format!("{service}.rejected"))
            });
            Box::pin(std::future::ready(Ok(moved)))
        }

        fn known_generation(&self, service: &str) -> u64 {
            self.newest.lock().unwrap().get(service).copied().unwrap_or(0)
        }
    }

    const LIMIT: u64 = 4096;

    /// One "place": the objects, and who holds them (a store lives as long as its `Arc`).
    pub struct MemoryFixture {
        pub careless: bool,
        objects: Objects,
        owner: Mutex<std::sync::Weak<()>>,
    }

    impl MemoryFixture {
        pub fn new(careless: bool) -> Self {
            Self {
                careless,
                objects: Objects::default(),
                owner: Mutex::new(std::sync::Weak::new()),
            }
        }
    }

    impl Fixture for MemoryFixture {
        type Store = MemoryStore;

        fn open(&self) -> Result<MemoryStore, StoreError> {
            let mut owner = self.owner.lock().unwrap();
            if owner.upgrade().is_some() {
                return Err(StoreError::Locked {
                    store: Location::key("memory", ""),
                });
            }
            let token = Arc::new(());
            *owner = Arc::downgrade(&token);
            Ok(MemoryStore {
                objects: Arc::clone(&self.objects),
                newest: Mutex::default(),
                careless: self.careless,
                _owner: token,
            })
        }

        fn raw(&self, service: &str) -> Option<Vec<u8>> {
            self.objects.lock().unwrap().get(service).cloned()
        }

        fn put_raw(&self, service: &str, bytes: &[u8]) {
            self.objects.lock().unwrap().insert(service.to_owned(), bytes.to_vec());
        }

        fn max_object_bytes(&self) -> u64 {
            LIMIT
        }
    }
}

#[test]
fn a_second_backend_written_from_the_docs_passes_the_suite() {
    microkernel::store::conformance::run_all(|| memory::MemoryFixture::new(false));
}

/// The suite is not a formality: a backend that forgets generations fails the generation
/// checks, and only those.
#[test]
fn a_backend_that_forgets_generations_fails_the_suite() {
    use microkernel::store::conformance as suite;
    let fails = |check: fn(&memory::MemoryFixture)| {
        std::panic::catch_unwind(|| check(&memory::MemoryFixture::new(true))).is_err()
    };
    assert!(fails(suite::older_generation_is_refused));
    assert!(fails(suite::replayed_object_is_refused_and_left_untouched));
    assert!(fails(suite::generations_survive_reopening));
    assert!(!fails(suite::round_trip));
    assert!(!fails(suite::corrupt_object_is_named_and_left_untouched));
}
