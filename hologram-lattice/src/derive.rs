//! [`DeriveContext`]: a BLAKE3 key-derivation context hashed once.
//!
//! `blake3::Hasher::new_derive_key(context)` hashes the context string at
//! every call: one compression more than the input needs, which is a third
//! of the work for a 100-byte input and half of it for a 64-byte one. The
//! hashes of the crates' hot paths (command ids, batch proofs, R96 digests,
//! receipt chains, signed messages) start from a context hashed once per
//! process instead. The output is the same: BLAKE3's
//! [`hazmat`](blake3::hazmat) module splits `new_derive_key` into these two
//! steps.

use blake3::hazmat::{hash_derive_key_context, ContextKey, HasherExt};
use std::sync::OnceLock;

/// A key-derivation context whose hash is computed at first use and kept:
/// [`hasher`](Self::hasher) is `blake3::Hasher::new_derive_key(context)`
/// without hashing the context again.
///
/// ```
/// use hologram_lattice::DeriveContext;
///
/// static EXAMPLE: DeriveContext = DeriveContext::new("hologram example v1");
/// let ours = EXAMPLE.hasher().update(b"abc").finalize();
/// let plain = blake3::Hasher::new_derive_key("hologram example v1").update(b"abc").finalize();
/// assert_eq!(ours, plain);
/// ```
#[derive(Debug)]
pub struct DeriveContext {
    context: &'static str,
    key: OnceLock<ContextKey>,
}

impl DeriveContext {
    /// The context `context`, not hashed yet (usable in a `static`).
    pub const fn new(context: &'static str) -> Self {
        Self {
            context,
            key: OnceLock::new(),
        }
    }

    /// The context string.
    pub const fn context(&self) -> &'static str {
        self.context
    }

    /// A hasher in key-derivation mode for this context.
    pub fn hasher(&self) -> blake3::Hasher {
        let key = self
            .key
            .get_or_init(|| hash_derive_key_context(self.context));
        blake3::Hasher::new_from_context_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    static CONTEXT: DeriveContext = DeriveContext::new("hologram derive test v1");

    proptest! {
        #[test]
        fn the_same_as_new_derive_key(input in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let ours = CONTEXT.hasher().update(&input).finalize();
            let plain = blake3::Hasher::new_derive_key(CONTEXT.context()).update(&input).finalize();
            prop_assert_eq!(ours, plain);
        }
    }
}
