//! Commands: a client's payload, bound to the client by its signature
//! (see [`Command`] for the canonical bytes and the wire format).

use crate::batch_proof::BatchProof;
use crate::ConsensusError;
use hologram_lattice::{Address, DeriveContext, NodeId};
use hologram_receipt::{verify_signature, KeyPair, Purpose, Receipt, Signature};
use serde::de::{Error as _, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

/// The largest command payload, in bytes.
pub const MAX_COMMAND_BYTES: usize = 64 << 10;

/// The BLAKE3 key-derivation context of a command's id.
const ID_CONTEXT: &str = "hologram command-id v2";

/// A command's identity: `BLAKE3-derive("hologram command-id v2", client ‖
/// sequence ‖ first unanswered ‖ payload)` (see [`Command`]).
pub type CommandId = Address;

/// A client's signed command for the replicated state machine. Cheap to
/// clone.
///
/// A [`Command`] is what a client asks the replicated state machine to do:
/// opaque payload bytes, the client's Ed25519 public key (a [`NodeId`]), the
/// command's place in the client's session, and the client's signature.
/// Replicas verify the signature before a command enters a mempool or is
/// accepted inside a proposal, so no host on the network and no Byzantine
/// validator can inject a command in a client's name or alter one (it can
/// still issue commands under its own key: what a client may do is the
/// state machine's business, and it sees [`Command::client`]).
///
/// # Sessions
///
/// A client numbers its commands: [`Command::sequence`] is the command's
/// number in the client's session, and [`Command::first_unanswered`] says
/// that the client holds an answer for every sequence below it (so replicas
/// may forget those answers). A command is thus identified by (client,
/// sequence), the client-session model of Raft (Ongaro's dissertation
/// §6.3): the same payload under a new sequence is a new command, and a
/// retry resends the *same signed command* (same id), which the
/// [`SessionTable`](crate::SessionTable) of every replica applies at most
/// once. [`ClientSession`](crate::ClientSession) numbers a client's commands.
///
/// # Canonical bytes (hand-defined, hashed and signed)
///
/// ```text
/// id        = BLAKE3-derive("hologram command-id v2",
///                 client public key (32 bytes) ‖ sequence u64 LE ‖ first unanswered u64 LE ‖ payload)
/// root      = the root of the Merkle tree over the ids of the commands the
///             client signed at once (a batch of one: the id itself; see
///             [`BatchProof`])
/// signature = Ed25519 over BLAKE3-derive("hologram command v1", root)   (Purpose::Command, SPEC §7)
/// ```
///
/// The key and numbers are fixed-size, so the concatenation is
/// unambiguous. The [`CommandId`] is the identity: the same client,
/// numbers and payload are the same command. The signature and the proof
/// are not part of the id: only the holder of the key can make another
/// valid pair, and replicas keep the first verified copy. Signing a 32-byte
/// root keeps verification's cost independent of the payload's size, and
/// a client that signs many commands at once ([`Command::sign_batch`])
/// pays one signature, and each replica one verification, for all of them
/// (the replica's signature cache answers for the others). Version 1 had
/// no sequence numbers (the id was of key and payload only).
///
/// # Wire format
///
/// A tuple `(client, sequence, first_unanswered, signature, proof, payload)`
/// in serde: the 32-byte key, the two numbers, the signature's two 32-byte
/// halves, the [`BatchProof`], and the payload as a byte string of at most
/// [`MAX_COMMAND_BYTES`] (checked before it is copied). Decoding does not
/// verify; [`Command::verify`] and [`verify_commands`] do.
///
/// Its [`CommandId`] is computed once, when the command is made (by a
/// client, or by a replica decoding it), and travels with its clones; so
/// does the receipt of its payload once asked for
/// ([`payload_receipt`](Self::payload_receipt)).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Command {
    id: CommandId,
    client: NodeId,
    sequence: u64,
    first_unanswered: u64,
    signature: Signature,
    proof: BatchProof,
    payload: Arc<[u8]>,
    payload_receipt: ReceiptCache,
}

/// `Receipt::from_bytes(payload)`, made at most once: applying a command
/// asks for it twice (the state machine's digest and the log's transition
/// receipt). A function of the payload, so not part of the command's
/// identity: every cache equals every other and hashes to nothing.
#[derive(Clone, Default)]
struct ReceiptCache(OnceLock<Receipt>);

impl PartialEq for ReceiptCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ReceiptCache {}

impl core::hash::Hash for ReceiptCache {
    fn hash<H: core::hash::Hasher>(&self, _: &mut H) {}
}

impl core::fmt::Debug for Command {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Command({} bytes, {}, client {} #{} (first unanswered {}))",
            self.payload.len(),
            self.id,
            self.client,
            self.sequence,
            self.first_unanswered
        )
    }
}

/// The id of `client`'s command number `sequence` of `payload`.
fn command_id(client: &NodeId, sequence: u64, first_unanswered: u64, payload: &[u8]) -> CommandId {
    static CONTEXT: DeriveContext = DeriveContext::new(ID_CONTEXT);
    let hash = CONTEXT
        .hasher()
        .update(client.as_bytes())
        .update(&sequence.to_le_bytes())
        .update(&first_unanswered.to_le_bytes())
        .update(payload)
        .finalize();
    Address::from_bytes(*hash.as_bytes())
}

fn check_size(len: usize) -> Result<(), ConsensusError> {
    if len > MAX_COMMAND_BYTES {
        return Err(ConsensusError::TooLarge {
            what: "command",
            size: len,
            max: MAX_COMMAND_BYTES,
        });
    }
    Ok(())
}

impl Command {
    /// `client`'s command number `sequence` of `payload` (at most
    /// [`MAX_COMMAND_BYTES`]), saying that the client holds the answers of
    /// every sequence below `first_unanswered`; signed alone with its keys.
    /// A client usually lets a [`ClientSession`](crate::ClientSession) pick
    /// the numbers.
    pub fn sign(
        client: &KeyPair,
        sequence: u64,
        first_unanswered: u64,
        payload: impl Into<Arc<[u8]>>,
    ) -> Result<Self, ConsensusError> {
        let mut one = Self::sign_batch(client, [(sequence, first_unanswered, payload.into())])?;
        Ok(one.remove(0))
    }

    /// `client`'s commands of these `(sequence, first unanswered, payload)`,
    /// in order, all signed with one signature (of the root of a tree over
    /// their ids, see [`BatchProof`]): 1 to
    /// [`MAX_SIGNED_BATCH`](crate::MAX_SIGNED_BATCH) commands, each payload
    /// at most [`MAX_COMMAND_BYTES`]. Each command travels, is verified and
    /// is applied on its own; verifying the first of a batch verifies the
    /// signature, the others are a cache hit.
    pub fn sign_batch(
        client: &KeyPair,
        commands: impl IntoIterator<Item = (u64, u64, Arc<[u8]>)>,
    ) -> Result<Vec<Self>, ConsensusError> {
        let key = client.node_id();
        let parts = commands
            .into_iter()
            .map(|(sequence, first_unanswered, payload)| {
                check_size(payload.len())?;
                let id = command_id(&key, sequence, first_unanswered, &payload);
                Ok((id, sequence, first_unanswered, payload))
            })
            .collect::<Result<Vec<_>, ConsensusError>>()?;
        let ids: Vec<CommandId> = parts.iter().map(|p| p.0).collect();
        let (root, proofs) = BatchProof::build(&ids)?;
        let signature = client.sign(Purpose::Command, root.as_bytes());
        Ok(parts
            .into_iter()
            .zip(proofs)
            .map(|((id, sequence, first_unanswered, payload), proof)| Self {
                id,
                client: key,
                sequence,
                first_unanswered,
                signature,
                proof,
                payload,
                payload_receipt: ReceiptCache::default(),
            })
            .collect())
    }

    /// A command from its parts as they were stored or received, **not
    /// verified**: call [`verify`](Self::verify) (or [`verify_commands`])
    /// before trusting it. Refuses a payload over [`MAX_COMMAND_BYTES`]. A
    /// command signed alone has the proof [`BatchProof::single`].
    pub fn from_parts(
        client: NodeId,
        sequence: u64,
        first_unanswered: u64,
        signature: Signature,
        proof: BatchProof,
        payload: impl Into<Arc<[u8]>>,
    ) -> Result<Self, ConsensusError> {
        let payload = payload.into();
        check_size(payload.len())?;
        Ok(Self {
            id: command_id(&client, sequence, first_unanswered, &payload),
            client,
            sequence,
            first_unanswered,
            signature,
            proof,
            payload,
            payload_receipt: ReceiptCache::default(),
        })
    }

    /// The receipt of the payload, `Receipt::from_bytes(self.bytes())`,
    /// computed at the first call and kept (with the command's clones made
    /// after it): what a state machine digesting commands and the
    /// replicated log's transition receipts both use.
    pub fn payload_receipt(&self) -> Receipt {
        *self
            .payload_receipt
            .0
            .get_or_init(|| Receipt::from_bytes(&self.payload))
    }

    /// The command's number in its client's session.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The client holds the answer of every sequence below this one.
    pub fn first_unanswered(&self) -> u64 {
        self.first_unanswered
    }

    /// The payload: the client's bytes, what the state machine applies.
    pub fn bytes(&self) -> &[u8] {
        &self.payload
    }

    /// The client that issued (signed) the command: its public key.
    pub fn client(&self) -> NodeId {
        self.client
    }

    /// The client's signature of the root of the batch it signed the
    /// command in (the id, for a command signed alone).
    pub fn signature(&self) -> Signature {
        self.signature
    }

    /// The command's place in the batch its client signed at once.
    pub fn proof(&self) -> &BatchProof {
        &self.proof
    }

    /// The command's identity (hashed when the command was made).
    pub fn id(&self) -> CommandId {
        self.id
    }

    /// Checks the client's signature of the root its proof leads to
    /// (strictly, `verify_strict`; once per signed batch and process, the
    /// signature cache answering for the rest), or
    /// [`ConsensusError::BadCommand`].
    pub fn verify(&self) -> Result<(), ConsensusError> {
        verify_signature(
            &self.client,
            Purpose::Command,
            self.proof.root(&self.id).as_bytes(),
            &self.signature,
        )
        .map_err(|e| self.refused(e))
    }

    fn refused(&self, reason: hologram_receipt::ReceiptError) -> ConsensusError {
        ConsensusError::BadCommand {
            id: self.id,
            client: self.client,
            reason: Box::new(reason),
        }
    }
}

/// Checks the signature of every command, one by one with `verify_strict`;
/// on failure, the error names the first bad one in order
/// ([`ConsensusError::BadCommand`]).
///
/// Not batch-verified, on purpose: whether a proposal's commands are valid decides
/// whether replicas vote for it, so every replica must reach the same
/// answer. A [`SignatureBatch`](hologram_receipt::SignatureBatch) draws
/// random coefficients, and a client can craft a signature (a key or `R`
/// with a torsion component that is not of small order) that passes some
/// batches and fails others: replicas would then disagree on the proposal
/// and a round would fail, as often as the client liked. `verify_strict` is
/// deterministic. The price, measured in `benches/consensus.rs` on the
/// project's 2-core machine: 2–4× the per-signature cost of a large batch.
/// Each replica checks a command once (on admission to its mempool or in
/// the first proposal carrying it), never again, and a signature once per
/// batch its client signed at once ([`Command::sign_batch`]): that is how
/// clients amortize the cost, deterministically.
pub fn verify_commands<'a>(
    commands: impl IntoIterator<Item = &'a Command>,
) -> Result<(), ConsensusError> {
    commands.into_iter().try_for_each(Command::verify)
}

/// The payload as a serde byte string.
struct PayloadRef<'a>(&'a [u8]);

impl Serialize for PayloadRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// A decoded payload: its size is checked before it is copied.
struct PayloadOwned(Arc<[u8]>);

impl<'de> Deserialize<'de> for PayloadOwned {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl Visitor<'_> for Visit {
            type Value = PayloadOwned;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "a byte string of at most {MAX_COMMAND_BYTES} bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<PayloadOwned, E> {
                check_size(v.len()).map_err(E::custom)?;
                Ok(PayloadOwned(v.into()))
            }
        }
        d.deserialize_bytes(Visit)
    }
}

impl Serialize for Command {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(6)?;
        t.serialize_element(&self.client)?;
        t.serialize_element(&self.sequence)?;
        t.serialize_element(&self.first_unanswered)?;
        t.serialize_element(&self.signature)?;
        t.serialize_element(&self.proof)?;
        t.serialize_element(&PayloadRef(&self.payload))?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Command;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(
                    "a command: (client, sequence, first unanswered, signature, proof, payload)",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
                let client: NodeId = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let sequence: u64 = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(1, &self))?;
                let first_unanswered: u64 = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(2, &self))?;
                let signature: Signature = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(3, &self))?;
                let proof: BatchProof = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(4, &self))?;
                let payload: PayloadOwned = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(5, &self))?;
                Command::from_parts(
                    client,
                    sequence,
                    first_unanswered,
                    signature,
                    proof,
                    payload.0,
                )
                .map_err(A::Error::custom)
            }
        }
        d.deserialize_tuple(6, Visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(i: u8) -> KeyPair {
        KeyPair::from_seed([i; 32])
    }

    #[test]
    fn the_id_and_signature_follow_the_canonical_bytes() {
        let k = keys(1);
        let c = Command::sign(&k, 7, 3, b"set x 1".to_vec()).unwrap();
        let mut canonical = k.node_id().as_bytes().to_vec();
        canonical.extend_from_slice(&7u64.to_le_bytes());
        canonical.extend_from_slice(&3u64.to_le_bytes());
        canonical.extend_from_slice(b"set x 1");
        let id = blake3::derive_key("hologram command-id v2", &canonical);
        assert_eq!(c.id().as_bytes(), &id);
        assert!(verify_signature(&k.node_id(), Purpose::Command, &id, &c.signature()).is_ok());
        assert!(c.verify().is_ok());
        // Another client's command of the same payload is another command.
        let d = Command::sign(&keys(2), 7, 3, b"set x 1".to_vec()).unwrap();
        assert_ne!(c.id(), d.id());
        assert_eq!(
            Command::sign(&k, 7, 3, b"set x 1".to_vec()).unwrap().id(),
            c.id()
        );
        // The same bytes under another sequence (or another first
        // unanswered) are another command.
        assert_ne!(
            Command::sign(&k, 8, 3, b"set x 1".to_vec()).unwrap().id(),
            c.id()
        );
        assert_ne!(
            Command::sign(&k, 7, 4, b"set x 1".to_vec()).unwrap().id(),
            c.id()
        );
        assert_eq!((c.sequence(), c.first_unanswered()), (7, 3));
    }

    /// The forgeries of a command: its payload changed, its key swapped for
    /// another client's, its signature garbage, its sequence or first
    /// unanswered changed.
    pub(crate) fn forgeries(c: &Command, other: &KeyPair) -> [Command; 5] {
        let mut payload = c.bytes().to_vec();
        payload.push(b'!');
        let mut garbage = c.signature().to_bytes();
        garbage[7] ^= 0x40;
        let (seq, first) = (c.sequence(), c.first_unanswered());
        let part = |client, seq, first, sig, bytes: Vec<u8>| {
            Command::from_parts(client, seq, first, sig, BatchProof::single(), bytes).unwrap()
        };
        [
            part(c.client(), seq, first, c.signature(), payload),
            part(
                other.node_id(),
                seq,
                first,
                c.signature(),
                c.bytes().to_vec(),
            ),
            part(
                c.client(),
                seq,
                first,
                Signature::from_bytes(garbage),
                c.bytes().to_vec(),
            ),
            part(
                c.client(),
                seq + 1,
                first,
                c.signature(),
                c.bytes().to_vec(),
            ),
            part(
                c.client(),
                seq,
                first + 1,
                c.signature(),
                c.bytes().to_vec(),
            ),
        ]
    }

    #[test]
    fn forged_commands_are_refused_alone_and_in_batches() {
        let good: Vec<Command> = (0..9u8)
            .map(|i| Command::sign(&keys(i), u64::from(i), 0, vec![i; i as usize]).unwrap())
            .collect();
        assert!(verify_commands(&good).is_ok());
        for forged in forgeries(&good[3], &keys(200)) {
            assert!(matches!(
                forged.verify(),
                Err(ConsensusError::BadCommand { id, .. }) if id == forged.id()
            ));
            let mut mixed = good.clone();
            mixed.insert(5, forged.clone());
            assert!(matches!(
                verify_commands(&mixed),
                Err(ConsensusError::BadCommand { id, .. }) if id == forged.id()
            ));
            assert!(verify_commands([&good[0], &forged]).is_err());
        }
    }

    #[test]
    fn commands_signed_at_once_share_one_signature_and_verify_alone() {
        let k = keys(4);
        let batch =
            Command::sign_batch(&k, (0..5u64).map(|i| (i, 0, vec![i as u8; 3].into()))).unwrap();
        assert!(batch.iter().all(|c| c.signature() == batch[0].signature()));
        assert!(verify_commands(&batch).is_ok());
        for c in &batch {
            hologram_receipt::forget_verified_signatures();
            assert!(c.verify().is_ok(), "{c:?} alone");
        }
        // The same numbers and payload signed alone: the same command (id),
        // with another signature and proof.
        let alone = Command::sign(&k, 2, 0, vec![2u8; 3]).unwrap();
        assert_eq!(alone.id(), batch[2].id());
        assert_eq!(alone.proof(), &BatchProof::single());
        // A command with another's proof, or a proof not its own, fails.
        let swapped = Command::from_parts(
            k.node_id(),
            2,
            0,
            batch[2].signature(),
            batch[3].proof().clone(),
            vec![2u8; 3],
        )
        .unwrap();
        assert!(swapped.verify().is_err());
        let lone = Command::from_parts(
            k.node_id(),
            2,
            0,
            batch[2].signature(),
            BatchProof::single(),
            vec![2u8; 3],
        )
        .unwrap();
        assert!(lone.verify().is_err());
        // A payload not in the batch, under the batch's proof and signature.
        let smuggled = Command::from_parts(
            k.node_id(),
            2,
            0,
            batch[2].signature(),
            batch[2].proof().clone(),
            b"pay mallory".to_vec(),
        )
        .unwrap();
        assert!(smuggled.verify().is_err());
        assert!(Command::sign_batch(&k, []).is_err());
    }

    #[test]
    fn oversized_payloads_are_refused_when_made_and_decoded() {
        let k = keys(3);
        assert!(Command::sign(&k, 0, 0, vec![0u8; MAX_COMMAND_BYTES]).is_ok());
        assert!(Command::sign(&k, 0, 0, vec![0u8; MAX_COMMAND_BYTES + 1]).is_err());
        // A command's wire tuple with a payload of `len` bytes.
        let wire = |len: usize| {
            postcard::to_allocvec(&(
                k.node_id(),
                0u64,
                0u64,
                Signature::from_bytes([0; 64]),
                BatchProof::single(),
                PayloadRef(&vec![0u8; len]),
            ))
            .unwrap()
        };
        assert!(postcard::from_bytes::<Command>(&wire(MAX_COMMAND_BYTES + 1)).is_err());
        assert!(postcard::from_bytes::<Command>(&wire(MAX_COMMAND_BYTES)).is_ok());
    }

    proptest! {
        /// Decoding never panics, what decodes round-trips with its id, and
        /// random bytes never verify.
        #[test]
        fn decoding_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(c) = postcard::from_bytes::<Command>(&bytes) {
                let again: Command = postcard::from_bytes(&postcard::to_allocvec(&c).unwrap()).unwrap();
                prop_assert_eq!(again.id(), c.id());
                prop_assert_eq!(again, c.clone());
                prop_assert!(c.verify().is_err());
            }
        }

        #[test]
        fn a_signed_command_round_trips_and_any_changed_byte_is_refused(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            sequence in any::<u64>(),
            first_unanswered in any::<u64>(),
            flip in any::<prop::sample::Index>(),
        ) {
            let c = Command::sign(&keys(9), sequence, first_unanswered, payload).unwrap();
            let mut wire = postcard::to_allocvec(&c).unwrap();
            let back: Command = postcard::from_bytes(&wire).unwrap();
            prop_assert_eq!(&back, &c);
            prop_assert!(back.verify().is_ok());
            let i = flip.index(wire.len());
            wire[i] ^= 1;
            if let Ok(changed) = postcard::from_bytes::<Command>(&wire) {
                prop_assert!(changed.verify().is_err());
            }
        }
    }
}
