//! # hologram-txn
//!
//! Atomic updates across participants and shards.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod coordinator;
pub mod effects;
pub mod error;
pub mod node;
pub mod participant;
pub mod rebalance;
pub mod receipts;
pub mod sharding;
pub mod transaction;
pub mod types;
pub mod wire;

pub use coordinator::{CoordinatorConfig, CoordinatorCore, CoordinatorTimer, TxnResult};
pub use effects::{Effects, Persist};
pub use error::TxnError;
pub use node::{CoordinatorNode, ParticipantNode, TxnNode, TxnTimer};
pub use participant::{ParticipantConfig, ParticipantCore, ParticipantTimer};
pub use rebalance::{ReceiptSharding, ShardLoad, ShardingConfig, Split};
pub use receipts::{Decision, PrepareRequest, SignedReceipt};
pub use sharding::{ShardId, ShardMap};
pub use transaction::{DistributedTransaction, LocalParticipant, Participant};
pub use types::{Key, Op, TxnId};
pub use wire::{Refusal, TxnMessage};
