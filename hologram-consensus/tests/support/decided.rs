//! Certified decisions made by hand, and a small state machine to apply them to.

use hologram_consensus::{Batch, Certificate, Command, Decision, StateMachine, ValidatorSet, Vote};
use hologram_consensus::{Slot, VoteKind};
use hologram_receipt::{KeyPair, Receipt};

/// Four validators with fixed keys.
pub fn validators() -> (Vec<KeyPair>, ValidatorSet) {
    let keys: Vec<KeyPair> = (1..=4u8).map(|i| KeyPair::from_seed([i; 32])).collect();
    let set = ValidatorSet::new(keys.iter().map(KeyPair::node_id).collect()).expect("set");
    (keys, set)
}

/// A decision of `height` for `batch`, certified by the first three of `keys`.
pub fn certified(keys: &[KeyPair], height: u64, batch: Batch) -> Decision {
    let slot = Slot {
        height,
        round: 0,
        kind: VoteKind::Precommit,
    };
    let value = batch.receipt();
    let votes: Vec<Vote> = keys[..3]
        .iter()
        .map(|k| Vote::sign(k, slot, Some(value)))
        .collect();
    Decision {
        batch,
        certificate: Certificate::from_votes(slot, value, &votes),
    }
}

/// The client that signs the commands of these tests.
pub fn client() -> KeyPair {
    KeyPair::from_seed([0xc1; 32])
}

/// `n` commands `{tag}{i}={i}`, numbered 0.. in a session of their own (a
/// client per tag, so that commands of two tags are distinct commands).
pub fn commands(tag: &str, n: usize) -> Vec<Command> {
    let mut seed = [0xc1; 32];
    for (s, b) in seed.iter_mut().zip(tag.bytes()) {
        *s ^= b;
    }
    let keys = KeyPair::from_seed(seed);
    (0..n)
        .map(|i| {
            Command::sign(&keys, i as u64, 0, format!("{tag}{i}={i}").into_bytes()).expect("small")
        })
        .collect()
}

/// A key-value register: commands are `key=value`, the state the last value
/// per key; the output says whether the command was of that form.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registers(pub std::collections::BTreeMap<Vec<u8>, Vec<u8>>);

impl StateMachine for Registers {
    type Output = bool;
    fn apply(&mut self, command: &Command) -> bool {
        let bytes = command.bytes();
        match bytes.iter().position(|b| *b == b'=') {
            Some(i) => {
                self.0.insert(bytes[..i].to_vec(), bytes[i + 1..].to_vec());
                true
            }
            None => false,
        }
    }
    fn state_receipt(&self) -> Receipt {
        let mut canonical = Vec::new();
        for (k, v) in &self.0 {
            canonical.extend_from_slice(&(k.len() as u32).to_le_bytes());
            canonical.extend_from_slice(k);
            canonical.extend_from_slice(&(v.len() as u32).to_le_bytes());
            canonical.extend_from_slice(v);
        }
        Receipt::from_bytes(&canonical)
    }
    fn snapshot(&self) -> Result<Vec<u8>, String> {
        postcard::to_allocvec(&self.0).map_err(|e| e.to_string())
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.0 = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
        Ok(())
    }
}
