//! Schema fingerprints: a 64-bit FNV-1a hash of a type's schema text.

use std::fmt;

/// A schema fingerprint: identifies a state type's shape (name, field names and field types) at
/// one version. `#[derive(Migratable)]` computes it at compile time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({:016x})", self.0)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// FNV-1a over the schema text and the version. The derive macro runs the same function (it has
/// its own copy, as a proc-macro crate cannot depend on this one); a test checks they agree.
///
/// ```
/// use microkernel::state::fingerprint;
/// assert_ne!(fingerprint("S { a: u32 }", 1), fingerprint("S { a: u64 }", 1));
/// assert_ne!(fingerprint("S { a: u32 }", 1), fingerprint("S { a: u32 }", 2));
/// ```
pub const fn fingerprint(schema: &str, version: u32) -> Fingerprint {
    let hash = fnv1a(FNV_OFFSET, schema.as_bytes());
    Fingerprint(fnv1a(hash, &version.to_le_bytes()))
}

/// FNV-1a's starting value.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds `bytes` into an FNV-1a hash.
pub(crate) const fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(PRIME);
        i += 1;
    }
    hash
}
