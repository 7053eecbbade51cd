//! Nonces never repeat across `fork()`: a parent and its child, forked without exec, sealing
//! under one key, draw different nonces. Alone in its test binary: forking a process whose other
//! threads hold locks can deadlock the child, and this binary has no other test threads.
//!
//! The unsafe code is the test's own (calling `fork`, `waitpid` and `_exit`); the library has
//! none.

use microkernel::seal::envelope::Header;
use microkernel::seal::{Algorithm, Key, Keyring, Sealer};
use microkernel::state::{self, Stateless};

fn nonce(blob: &[u8]) -> Vec<u8> {
    Header::parse(blob).expect("an envelope").0.nonce.to_vec()
}

#[test]
fn a_forked_child_never_reuses_its_parents_nonces() {
    let sealer = Sealer::new(Keyring::new(1, Key::generate(Algorithm::Aes256Gcm).unwrap()));
    let seal = || sealer.seal_state("echo", state::encode(&Stateless).unwrap()).unwrap();
    // The parent has sealed already: its generator is seeded and in use.
    let before = seal();
    let out = std::env::temp_dir().join(format!("microkernel-fork-nonce-{}", std::process::id()));
    // SAFETY: the child only seals, writes a file and leaves with `_exit` (no destructors, no
    // atexit handlers); this test binary runs no other test thread that could hold a lock.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed");
    if child == 0 {
        let blobs: Vec<u8> = (0..8).flat_map(|_| nonce(&seal())).collect();
        let ok = std::fs::write(&out, blobs).is_ok();
        // SAFETY: ends the child at once, as a forked child of a test harness must.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let parent: Vec<Vec<u8>> = (0..8).map(|_| nonce(&seal())).collect();
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    let waited = unsafe { libc::waitpid(child, &mut status, 0) };
    assert_eq!(waited, child);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child failed: {status}"
    );
    let written = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let children: Vec<&[u8]> = written.chunks(12).collect();
    assert_eq!(children.len(), 8);
    for (i, child_nonce) in children.iter().enumerate() {
        assert_ne!(*child_nonce, nonce(&before).as_slice());
        for parent_nonce in &parent {
            assert_ne!(
                child_nonce, parent_nonce,
                "the child's nonce {i} repeats one of its parent's"
            );
        }
    }
}
