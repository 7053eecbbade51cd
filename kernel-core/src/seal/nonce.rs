//! Nonces: random, and unique per key in every process — also in a child forked without exec.
//!
//! Nonces come from `rand`'s thread-local CSPRNG (ChaCha12, seeded from the OS), so a seal costs
//! no system call for randomness. `fork()` copies that generator's state into the child, and
//! the parent and the child would then draw the same nonces: under one key, that reveals the XOR
//! of two plaintexts and, with AES-GCM, the authentication key. So each thread remembers the
//! process id its generator was last seeded in, and a seal in another process (a forked child:
//! its id differs) reseeds the generator from the OS first. Cost: one `getpid` per seal (about
//! 65 ns here); no unsafe code.
//!
//! What a process-id check cannot see: a descendant that inherits a generator *and* gets the
//! very process id its generator was seeded in. That takes a process P that sealed, forked a
//! child C and exited; C forking again without sealing first; and the grandchild receiving P's
//! recycled id — then the grandchild would repeat P's later nonces. Detecting it needs a fork
//! hook (`pthread_atfork`, `MADV_WIPEONFORK`), which safe Rust does not offer; a program that
//! forks chains of workers sealing under one key should have each worker seal once right after
//! it starts, use its own key, or draw nonces from the OS (`Sealer::with_nonces_from_os`) —
//! which also covers a virtual machine restored twice from one snapshot.

use std::cell::Cell;

use rand::Rng as _;

use super::SealError;

thread_local! {
    /// The process this thread's generator was last reseeded in; 0 before its first seal.
    static SEEDED_IN: Cell<u32> = const { Cell::new(0) };
}

/// Fills `nonce` from the operating system's generator (a system call per seal).
pub(crate) fn fill_from_os(nonce: &mut [u8]) -> Result<(), SealError> {
    use rand::TryRng as _;
    rand::rngs::SysRng
        .try_fill_bytes(nonce)
        .map_err(|error| SealError::Rng(error.to_string()))
}

/// Fills `nonce` with random bytes no other process draws.
pub(crate) fn fill(nonce: &mut [u8]) -> Result<(), SealError> {
    let pid = std::process::id();
    let mut rng = rand::rng();
    if SEEDED_IN.with(Cell::get) != pid {
        rng.reseed().map_err(|error| SealError::Rng(error.to_string()))?;
        SEEDED_IN.with(|seeded| seeded.set(pid));
    }
    rng.fill_bytes(nonce);
    Ok(())
}
