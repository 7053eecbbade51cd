//! After `stop_all` returns, no thread the kernel started is still running. (Alone in its test
//! binary: it counts the process's threads.)

mod common;

use std::time::Duration;

use common::Echo;
use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::{DirStore, Event, KERNEL, Kernel, RestartPolicy};

/// Names of this process's threads that the kernel started (names begin "microkernel-",
/// truncated by Linux to 15 bytes).
fn kernel_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| name.starts_with("microkernel"))
        .collect()
}

#[test]
fn stop_all_leaves_no_kernel_thread_running() {
    let dir = std::env::temp_dir().join(format!("microkernel-threads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sealer = Sealer::new(Keyring::new(1, Key::generate(Algorithm::Aes256Gcm).unwrap()));
    let kernel = Kernel::builder()
        .sealer(sealer)
        .store(DirStore::open(&dir).unwrap())
        .checkpoint_every(Duration::from_millis(5))
        .stop_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let handle = kernel.register(Echo).unwrap();
    kernel.start_all().unwrap();
    let policy = RestartPolicy::OnFailure {
        max_restarts: 5,
        within: Duration::from_secs(60),
        backoff: Duration::ZERO,
    };
    kernel.supervise(&handle, policy, || Echo).unwrap();
    // Use every thread the kernel has: push workers, the supervisor, periodic checkpoints.
    for _ in 0..20 {
        assert!(
            kernel
                .push(Event::new("echo", "t", "hi", "x"), Duration::from_secs(5))
                .is_ok()
        );
    }
    assert!(
        kernel
            .push(Event::new(KERNEL, "t", "hi", ""), Duration::from_secs(1))
            .is_ok()
    );
    let _ = handle.call(Event::new("echo", "t", "panic", ""));
    std::thread::sleep(Duration::from_millis(50));
    assert!(!kernel_threads().is_empty(), "the kernel did start threads");
    kernel.stop_all().unwrap();
    assert_eq!(kernel_threads(), Vec::<String>::new());
    drop(kernel);
    let _ = std::fs::remove_dir_all(&dir);
}
