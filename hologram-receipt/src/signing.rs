//! Node keys and domain-separated Ed25519 signatures (SPEC §7).
//!
//! Every signature covers `BLAKE3-derive("hologram <purpose> v1", canonical
//! bytes)`: the 32-byte derived hash is the Ed25519 message. Purposes form a
//! closed set ([`Purpose`]), each with its own context string, so a signature
//! made for one purpose never verifies for another.
//!
//! Verification is `verify_strict` (no small-order keys or `R`, canonical `s`
//! and `R` encodings). A [`NodeId`] is the 32-byte public key.

use crate::cache::Cache;
use crate::ReceiptError;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hologram_lattice::{DeriveContext, NodeId};
use serde::{Deserialize, Serialize};

/// What a signature is for. Each purpose has its own BLAKE3 key-derivation
/// context, `"hologram <purpose> v1"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Purpose {
    /// A consensus vote on a receipt: `"hologram vote v1"`.
    Vote,
    /// A commit (consensus decision or transaction commit): `"hologram commit v1"`.
    Commit,
    /// A transaction participant's prepare: `"hologram prepare v1"`.
    Prepare,
    /// A transaction participant's abort: `"hologram abort v1"`.
    Abort,
    /// A consensus leader's proposal: `"hologram proposal v1"`.
    Proposal,
    /// The origin link of a witness chain: `"hologram witness-origin v1"`.
    WitnessOrigin,
    /// A forwarding hop of a witness chain: `"hologram witness-hop v1"`.
    WitnessHop,
    /// An acknowledgement that an object or message was delivered or stored:
    /// `"hologram delivery v1"`.
    Delivery,
    /// A replicated state machine's transition receipt: `"hologram transition v1"`.
    Transition,
    /// A hand-off of keys from their previous owner to the next (shard splits
    /// and migrations), or its acknowledgement: `"hologram hand-off v1"`.
    HandOff,
    /// A client's command for a replicated state machine: `"hologram command v1"`.
    Command,
    /// A validator's approval of a change of its consensus group's
    /// validator set: `"hologram set-change v1"`.
    SetChange,
}

impl Purpose {
    /// Every purpose.
    pub const ALL: [Purpose; 12] = [
        Purpose::Vote,
        Purpose::Commit,
        Purpose::Prepare,
        Purpose::Abort,
        Purpose::Proposal,
        Purpose::WitnessOrigin,
        Purpose::WitnessHop,
        Purpose::Delivery,
        Purpose::Transition,
        Purpose::HandOff,
        Purpose::Command,
        Purpose::SetChange,
    ];

    /// The context, hashed once per process (see [`DeriveContext`]).
    fn derive_context(self) -> &'static DeriveContext {
        static CONTEXTS: [DeriveContext; Purpose::ALL.len()] = [
            DeriveContext::new(Purpose::ALL[0].context()),
            DeriveContext::new(Purpose::ALL[1].context()),
            DeriveContext::new(Purpose::ALL[2].context()),
            DeriveContext::new(Purpose::ALL[3].context()),
            DeriveContext::new(Purpose::ALL[4].context()),
            DeriveContext::new(Purpose::ALL[5].context()),
            DeriveContext::new(Purpose::ALL[6].context()),
            DeriveContext::new(Purpose::ALL[7].context()),
            DeriveContext::new(Purpose::ALL[8].context()),
            DeriveContext::new(Purpose::ALL[9].context()),
            DeriveContext::new(Purpose::ALL[10].context()),
            DeriveContext::new(Purpose::ALL[11].context()),
        ];
        let context = &CONTEXTS[self as usize];
        debug_assert_eq!(context.context(), self.context());
        context
    }

    /// The BLAKE3 key-derivation context of this purpose.
    pub const fn context(self) -> &'static str {
        match self {
            Purpose::Vote => "hologram vote v1",
            Purpose::Commit => "hologram commit v1",
            Purpose::Prepare => "hologram prepare v1",
            Purpose::Abort => "hologram abort v1",
            Purpose::Proposal => "hologram proposal v1",
            Purpose::WitnessOrigin => "hologram witness-origin v1",
            Purpose::WitnessHop => "hologram witness-hop v1",
            Purpose::Delivery => "hologram delivery v1",
            Purpose::Transition => "hologram transition v1",
            Purpose::HandOff => "hologram hand-off v1",
            Purpose::Command => "hologram command v1",
            Purpose::SetChange => "hologram set-change v1",
        }
    }

    /// The Ed25519 message for `canonical` bytes signed for this purpose:
    /// `BLAKE3-derive(self.context(), canonical)`.
    pub fn message(self, canonical: &[u8]) -> [u8; 32] {
        *self
            .derive_context()
            .hasher()
            .update(canonical)
            .finalize()
            .as_bytes()
    }
}

impl core::fmt::Display for Purpose {
    /// The purpose's name, as in its context string (`witness-hop`).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let ctx = self.context();
        let name = ctx
            .strip_prefix("hologram ")
            .and_then(|s| s.strip_suffix(" v1"))
            .unwrap_or(ctx);
        f.write_str(name)
    }
}

/// An Ed25519 signature, `R ‖ s` (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signature {
    r: [u8; 32],
    s: [u8; 32],
}

impl Signature {
    /// The signature with these 64 bytes (`R ‖ s`). Any bytes are accepted;
    /// verification rejects malformed ones.
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Self::from(ed25519_dalek::Signature::from_bytes(&bytes))
    }

    /// The 64 bytes, `R ‖ s`.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.r);
        out[32..].copy_from_slice(&self.s);
        out
    }

    /// The `R` half (a compressed curve point).
    pub const fn r_bytes(&self) -> &[u8; 32] {
        &self.r
    }

    pub(crate) fn to_dalek(self) -> ed25519_dalek::Signature {
        ed25519_dalek::Signature::from_components(self.r, self.s)
    }
}

impl From<ed25519_dalek::Signature> for Signature {
    fn from(sig: ed25519_dalek::Signature) -> Self {
        Self {
            r: *sig.r_bytes(),
            s: *sig.s_bytes(),
        }
    }
}

impl core::fmt::Debug for Signature {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let hex = |b: &[u8; 32]| blake3::Hash::from_bytes(*b).to_hex();
        write!(f, "Signature({}{})", hex(&self.r), hex(&self.s))
    }
}

/// A node's Ed25519 key pair. Its [`NodeId`] is the public key.
///
/// `Debug` shows only the node id; the secret never leaves through this type
/// except by [`KeyPair::to_seed`].
///
/// ```
/// use hologram_receipt::{verify_signature, KeyPair, Purpose};
/// let keys = KeyPair::from_seed([7; 32]);
/// let sig = keys.sign(Purpose::Vote, b"receipt bytes");
/// assert!(verify_signature(&keys.node_id(), Purpose::Vote, b"receipt bytes", &sig).is_ok());
/// assert!(verify_signature(&keys.node_id(), Purpose::Commit, b"receipt bytes", &sig).is_err());
/// ```
#[derive(Clone)]
pub struct KeyPair {
    signing: SigningKey,
}

impl KeyPair {
    /// A fresh key pair from a cryptographically secure generator, such as
    /// `rand::rng()`. (`rand::rngs::SysRng` is fallible: draw a seed with
    /// its `try_fill_bytes` and use [`KeyPair::from_seed`].)
    pub fn generate<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self {
            signing: SigningKey::generate(rng),
        }
    }

    /// The key pair with this 32-byte secret seed (RFC 8032 private key).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The 32-byte secret seed. Keep it secret.
    pub fn to_seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The node's identity: its public key.
    pub fn node_id(&self) -> NodeId {
        NodeId::from_bytes(self.signing.verifying_key().to_bytes())
    }

    /// Signs `canonical` bytes for `purpose`: the Ed25519 signature of
    /// `purpose.message(canonical)`.
    pub fn sign(&self, purpose: Purpose, canonical: &[u8]) -> Signature {
        Signature::from(self.signing.sign(&purpose.message(canonical)))
    }
}

impl core::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyPair")
            .field("node_id", &self.node_id())
            .finish_non_exhaustive()
    }
}

/// The Ed25519 public key of `node`, or [`ReceiptError::InvalidKey`] when its
/// bytes are not a curve point or are a point of small order (a weak key,
/// which `verify_strict` would reject anyway).
///
/// Decompressing a key costs a field square root, about a tenth of a
/// verification; nodes verify the same few peers' signatures again and
/// again, so valid keys are kept decompressed in a bounded process-wide
/// cache (see [`KEY_CACHE_CAPACITY`]). The cache holds only keys that passed
/// both checks, keyed by all 32 bytes of the id, so a hit returns exactly
/// what decoding would: verification is unchanged, only cheaper.
pub fn verifying_key(node: &NodeId) -> Result<VerifyingKey, ReceiptError> {
    if let Some(key) = KEYS.get(node) {
        return Ok(key);
    }
    match VerifyingKey::from_bytes(node.as_bytes()) {
        Ok(key) if !key.is_weak() => {
            KEYS.insert(*node, key);
            Ok(key)
        }
        _ => Err(ReceiptError::InvalidKey(*node)),
    }
}

/// The most decompressed keys [`verifying_key`] keeps.
pub const KEY_CACHE_CAPACITY: usize = 1024;

/// The decompressed keys of [`verifying_key`].
static KEYS: Cache<NodeId, VerifyingKey> = Cache::new(KEY_CACHE_CAPACITY);

/// The most valid signatures [`verify_signature`] remembers.
pub const VERIFIED_CACHE_CAPACITY: usize = 1 << 14;

/// A signature that verified strictly: the signer, the Ed25519 message (the
/// purpose's derived hash of the canonical bytes) and the signature, all
/// their bytes.
pub(crate) type Verified = ([u8; 32], [u8; 32], [u8; 64]);

/// The signatures [`verify_signature`] found valid.
static VERIFIED: Cache<Verified, ()> = Cache::new(VERIFIED_CACHE_CAPACITY);

/// Whether exactly this signature of this message by this signer verified
/// strictly before, in this process.
pub(crate) fn verified_before(signature: &Verified) -> bool {
    VERIFIED.get(signature).is_some()
}

/// Forgets every signature [`verify_signature`] found valid, so that the
/// next verification of each is a full one again: for measuring what a node
/// pays for a signature it sees first (benches that verify the same
/// signatures over and over). Correctness never needs it.
pub fn forget_verified_signatures() {
    VERIFIED.clear();
}

/// Checks that `signature` is `signer`'s signature of `canonical` bytes for
/// `purpose` (strict Ed25519 verification). Fails with
/// [`ReceiptError::InvalidKey`] or [`ReceiptError::BadSignature`].
///
/// A signature is often verified by several parties of one process (every
/// replica of a group, a coordinator and the participants a receipt is
/// shown to). `verify_strict` is a pure function of the signer, message and
/// signature, so the signatures found valid are remembered in a bounded
/// process-wide cache (see [`VERIFIED_CACHE_CAPACITY`]), keyed by all their
/// bytes (signer, derived message, signature: no hash, so no collision),
/// and a hit returns what verifying again would. Only valid signatures are
/// kept: an invalid one is verified, and refused, every time.
pub fn verify_signature(
    signer: &NodeId,
    purpose: Purpose,
    canonical: &[u8],
    signature: &Signature,
) -> Result<(), ReceiptError> {
    let message = purpose.message(canonical);
    let verified = (*signer.as_bytes(), message, signature.to_bytes());
    if verified_before(&verified) {
        return Ok(());
    }
    verifying_key(signer)?
        .verify_strict(&message, &signature.to_dalek())
        .map_err(|_| {
            // Per message: trace only (the callers count and log refusals).
            tracing::trace!(%signer, %purpose, "signature does not verify");
            ReceiptError::BadSignature {
                signer: *signer,
                purpose,
            }
        })?;
    VERIFIED.insert(verified, ());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_strings_are_exact_and_distinct() {
        let names: Vec<String> = Purpose::ALL.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            names,
            [
                "vote",
                "commit",
                "prepare",
                "abort",
                "proposal",
                "witness-origin",
                "witness-hop",
                "delivery",
                "transition",
                "hand-off",
                "command",
                "set-change"
            ]
        );
        for p in Purpose::ALL {
            assert_eq!(p.context(), format!("hologram {p} v1"));
            assert_eq!(p.derive_context().context(), p.context());
            let expected = blake3::Hasher::new_derive_key(p.context())
                .update(b"abc")
                .finalize();
            assert_eq!(&p.message(b"abc"), expected.as_bytes());
        }
    }

    #[test]
    fn a_signature_verifies_for_its_purpose_only() {
        let keys = KeyPair::from_seed([3; 32]);
        let id = keys.node_id();
        for p in Purpose::ALL {
            let sig = keys.sign(p, b"payload");
            // It is a plain Ed25519 signature of the derived message.
            let vk = VerifyingKey::from_bytes(id.as_bytes()).unwrap();
            assert!(vk
                .verify_strict(&p.message(b"payload"), &sig.to_dalek())
                .is_ok());
            for q in Purpose::ALL {
                let res = verify_signature(&id, q, b"payload", &sig);
                if p == q {
                    assert_eq!(res, Ok(()));
                } else {
                    assert_eq!(
                        res,
                        Err(ReceiptError::BadSignature {
                            signer: id,
                            purpose: q
                        })
                    );
                }
            }
            assert!(verify_signature(&id, p, b"payloaD", &sig).is_err());
        }
    }

    #[test]
    fn weak_and_invalid_keys_are_rejected() {
        // The identity point (y = 1) has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = NodeId::from_bytes(identity);
        assert_eq!(verifying_key(&weak), Err(ReceiptError::InvalidKey(weak)));
        let sig = Signature::from_bytes([0; 64]);
        assert_eq!(
            verify_signature(&weak, Purpose::Vote, b"", &sig),
            Err(ReceiptError::InvalidKey(weak))
        );
        let keys = KeyPair::from_seed([9; 32]);
        assert_eq!(KeyPair::from_seed(keys.to_seed()).node_id(), keys.node_id());
        assert!(!format!("{keys:?}").contains(&format!("{:?}", keys.to_seed())));
    }

    #[test]
    fn cached_keys_are_exactly_the_decoded_ones_and_the_cache_is_bounded() {
        let keys: Vec<KeyPair> = (0..KEY_CACHE_CAPACITY as u32 + 100)
            .map(|i| {
                let mut seed = [0x5a; 32];
                seed[..4].copy_from_slice(&i.to_le_bytes());
                KeyPair::from_seed(seed)
            })
            .collect();
        for k in &keys {
            let id = k.node_id();
            let fresh = VerifyingKey::from_bytes(id.as_bytes()).unwrap();
            // A miss, then a hit: both equal to decoding.
            assert_eq!(verifying_key(&id), Ok(fresh));
            assert!(KEYS.contains(&id));
            assert_eq!(verifying_key(&id), Ok(fresh));
            assert!(KEYS.len() <= KEY_CACHE_CAPACITY);
        }
        // A key in use survives the churn of others.
        let first = keys[0].node_id();
        for k in &keys[1..] {
            verifying_key(&first).unwrap();
            verifying_key(&k.node_id()).unwrap();
        }
        assert!(KEYS.contains(&first));
        // Cached or not, verification is strict: a wrong message, purpose
        // or signer still fails.
        let sig = keys[0].sign(Purpose::Vote, b"m");
        assert_eq!(verify_signature(&first, Purpose::Vote, b"m", &sig), Ok(()));
        assert!(verify_signature(&first, Purpose::Vote, b"n", &sig).is_err());
        assert!(verify_signature(&first, Purpose::Commit, b"m", &sig).is_err());
        assert!(verify_signature(&keys[1].node_id(), Purpose::Vote, b"m", &sig).is_err());
        // Weak and invalid keys are never cached.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = NodeId::from_bytes(identity);
        for _ in 0..2 {
            assert_eq!(verifying_key(&weak), Err(ReceiptError::InvalidKey(weak)));
        }
        assert!(!KEYS.contains(&weak));
    }

    #[test]
    fn only_valid_signatures_are_remembered_and_the_cache_is_bounded() {
        let keys = KeyPair::from_seed([0x6b; 32]);
        let id = keys.node_id();
        let sig = keys.sign(Purpose::Prepare, b"remembered");
        let entry = |purpose: Purpose, bytes: &[u8], sig: &Signature| {
            (*id.as_bytes(), purpose.message(bytes), sig.to_bytes())
        };
        assert_eq!(
            verify_signature(&id, Purpose::Prepare, b"remembered", &sig),
            Ok(())
        );
        assert!(VERIFIED.contains(&entry(Purpose::Prepare, b"remembered", &sig)));
        // A hit is a verification: the same answer, and nothing else passes
        // because of it (another message, purpose, signer or signature).
        assert_eq!(
            verify_signature(&id, Purpose::Prepare, b"remembered", &sig),
            Ok(())
        );
        assert!(verify_signature(&id, Purpose::Prepare, b"Remembered", &sig).is_err());
        assert!(verify_signature(&id, Purpose::Commit, b"remembered", &sig).is_err());
        let other = KeyPair::from_seed([0x6c; 32]).node_id();
        assert!(verify_signature(&other, Purpose::Prepare, b"remembered", &sig).is_err());
        let mut bytes = sig.to_bytes();
        bytes[7] ^= 1;
        let forged = Signature::from_bytes(bytes);
        for _ in 0..2 {
            assert!(verify_signature(&id, Purpose::Prepare, b"remembered", &forged).is_err());
        }
        assert!(!VERIFIED.contains(&entry(Purpose::Prepare, b"remembered", &forged)));
        assert!(!VERIFIED.contains(&entry(Purpose::Commit, b"remembered", &sig)));
        // Bounded, however many signatures verify.
        for i in 0..VERIFIED_CACHE_CAPACITY as u32 + 100 {
            let bytes = i.to_le_bytes();
            let sig = keys.sign(Purpose::Vote, &bytes);
            assert_eq!(verify_signature(&id, Purpose::Vote, &bytes, &sig), Ok(()));
        }
        assert!(VERIFIED.len() <= VERIFIED_CACHE_CAPACITY);
        // Forgotten, a signature is verified in full again, with the same answer.
        forget_verified_signatures();
        assert!(!VERIFIED.contains(&entry(Purpose::Prepare, b"remembered", &sig)));
        assert_eq!(
            verify_signature(&id, Purpose::Prepare, b"remembered", &sig),
            Ok(())
        );
        assert!(VERIFIED.contains(&entry(Purpose::Prepare, b"remembered", &sig)));
    }

    #[test]
    fn signatures_round_trip_through_bytes_and_serde() {
        let sig = KeyPair::from_seed([1; 32]).sign(Purpose::Delivery, b"x");
        assert_eq!(Signature::from_bytes(sig.to_bytes()), sig);
        let wire = postcard::to_allocvec(&sig).unwrap();
        assert_eq!(wire.len(), 64);
        assert_eq!(postcard::from_bytes::<Signature>(&wire).unwrap(), sig);
    }
}
