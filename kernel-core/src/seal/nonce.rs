//! Nonces: random, and unique per key in every process — also in a child forked without exec.
//!
//! Nonces come from `rand`'s thread-local CSPRNG (ChaCha12, seeded from the OS), so a seal costs
//! no system call for randomness. `fork()` copies that generator's state into the child, and
//! the parent and the child would then draw the same nonces: under one key, that reveals the XOR
//! of two plaintexts and, with AES-GCM, the authentication key. So each thread remembers the
//! process id its generator was last seeded in, and a seal in another process (a forked child:
//! its id differs) reseeds the generator from the OS first. Process ids can be reused, but a
//! reused id never reuses a stream: every process reseeds at its first seal, whatever its id.
//! Cost: one `getpid` per seal (about 65 ns here); no unsafe code.

use std::cell::Cell;

use rand::Rng as _;

use super::SealError;

thread_local! {
    /// The process this thread's generator was last reseeded in; 0 before its first seal.
    static SEEDED_IN: Cell<u32> = const { Cell::new(0) };
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
