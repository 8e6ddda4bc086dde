//! `RemoteParticipant` and `ParticipantService` over a `MemoryNetwork`:
//! single-replica shards served request/response, a transfer and a refused
//! overdraft through `DistributedTransaction`, a down node answered by the
//! next one serving the participant, and garbage requests refused without
//! a panic.

use futures::executor::block_on;
use hologram_cam::MemoryStore;
use hologram_lattice::transport::{Handler, MemoryNetwork, ProtocolMux, Transport};
use hologram_lattice::wire::Wire;
use hologram_lattice::NodeId;
use hologram_receipt::KeyPair;
use hologram_txn::{
    DistributedTransaction, Key, LocalParticipant, Op, Participant, ParticipantConfig,
    ParticipantCore, ParticipantService, RemoteParticipant, ShardMap, TxnError, TxnId,
};
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;

type Local = LocalParticipant<MemoryStore>;

struct Net {
    network: MemoryNetwork,
    map: ShardMap,
    shards: Vec<Arc<Local>>,
    remote: Vec<RemoteParticipant>,
    coordinator: Arc<dyn Transport>,
}

fn net() -> Net {
    let network = MemoryNetwork::new(3);
    let keys = [KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32])];
    let map = ShardMap::even(&[keys[0].node_id(), keys[1].node_id()]);
    let coordinator: Arc<dyn Transport> =
        Arc::new(network.join(NodeId::from_bytes([9; 32]), Arc::new(ProtocolMux::new())));
    let mut shards = Vec::new();
    let mut remote = Vec::new();
    for k in &keys {
        let core = ParticipantCore::new(k.clone(), ParticipantConfig::default(), map.clone())
            .expect("core");
        let shard = Arc::new(LocalParticipant::new(core, Arc::new(MemoryStore::new())));
        let service = ProtocolMux::new();
        service.mount(Arc::new(ParticipantService::new(Arc::clone(&shard))));
        let _ = network.join(k.node_id(), Arc::new(service));
        remote.push(RemoteParticipant::new(
            k.node_id(),
            k.node_id(),
            Arc::clone(&coordinator),
            Duration::from_millis(200),
        ));
        shards.push(shard);
    }
    Net {
        network,
        map,
        shards,
        remote,
        coordinator,
    }
}

fn key(name: &str) -> Key {
    Key::new(name.as_bytes().to_vec()).expect("short key")
}

impl Net {
    fn shard_of(&self, k: &Key) -> usize {
        usize::from(self.map.node_of(k) != Some(self.shards[0].id()))
    }

    fn balance(&self, k: &Key) -> Option<Vec<u8>> {
        block_on(self.shards[self.shard_of(k)].with_core(|c| c.value(k).map(<[u8]>::to_vec)))
            .expect("store")
    }

    fn transfer(&self, txn: u8, from: &Key, to: &Key, amount: i64) -> Result<(), TxnError> {
        let writes = [
            (
                &self.remote[self.shard_of(from)] as &dyn Participant,
                vec![Op::Add {
                    key: from.clone(),
                    delta: -amount,
                }],
            ),
            (
                &self.remote[self.shard_of(to)] as &dyn Participant,
                vec![Op::Add {
                    key: to.clone(),
                    delta: amount,
                }],
            ),
        ];
        block_on(
            DistributedTransaction::new(TxnId([txn; 16]), self.map.version(), writes).execute(),
        )
        .map(|_| ())
    }
}

/// Two accounts on different shards.
fn accounts(net: &Net) -> (Key, Key) {
    let names: Vec<Key> = (0..16).map(|i| key(&format!("account-{i}"))).collect();
    let a = names
        .iter()
        .find(|k| net.shard_of(k) == 0)
        .expect("one on shard 0");
    let b = names
        .iter()
        .find(|k| net.shard_of(k) == 1)
        .expect("one on shard 1");
    (a.clone(), b.clone())
}

#[test]
fn transfers_through_remote_participants_commit_or_abort_everywhere() {
    let net = net();
    let (a, b) = accounts(&net);
    block_on(net.shards[0].with_core(|c| c.load(a.clone(), 100i64.to_le_bytes().to_vec())))
        .unwrap()
        .unwrap();
    net.transfer(1, &a, &b, 30).unwrap();
    assert_eq!(net.balance(&a), Some(70i64.to_le_bytes().to_vec()));
    assert_eq!(net.balance(&b), Some(30i64.to_le_bytes().to_vec()));
    // An overdraft is refused by the shard, with its own error.
    let refused = net.transfer(2, &a, &b, 71);
    assert!(
        matches!(refused, Err(TxnError::Rejected { .. })),
        "{refused:?}"
    );
    assert_eq!(net.balance(&a), Some(70i64.to_le_bytes().to_vec()));
    assert!(net
        .shards
        .iter()
        .all(|s| block_on(s.with_core(|c| c.locks().is_empty())).unwrap()));
}

#[test]
fn a_down_node_is_a_retryable_transport_error_and_the_next_node_answers() {
    let net = net();
    let (a, _) = accounts(&net);
    let shard = &net.shards[0];
    block_on(shard.with_core(|c| c.load(a.clone(), 100i64.to_le_bytes().to_vec())))
        .unwrap()
        .unwrap();
    // A node that does not exist: the call fails, retryably.
    let nowhere = RemoteParticipant::new(
        shard.id(),
        NodeId::from_bytes([77; 32]),
        Arc::clone(&net.coordinator),
        Duration::from_millis(50),
    );
    let err = block_on(nowhere.abort(TxnId([5; 16]))).unwrap_err();
    assert!(
        matches!(
            &err,
            TxnError::Unreachable { participant, peer, .. }
                if *participant == shard.id() && *peer == NodeId::from_bytes([77; 32])
        ) && err.is_retryable(),
        "{err:?}"
    );
    // The same participant served by a dead node and a live one: the call
    // moves on to the live one.
    net.network.crash(net.shards[1].id());
    let served = RemoteParticipant::served_by(
        shard.id(),
        vec![net.shards[1].id(), shard.id()],
        Arc::clone(&net.coordinator),
        Duration::from_millis(50),
    );
    let decision = block_on(served.abort(TxnId([5; 16]))).unwrap();
    assert!(!decision.is_commit());
    decision.verify(&TxnId([5; 16]), &shard.id()).unwrap();
}

proptest! {
    /// Whatever bytes a service is sent, it answers (a refusal, or a reply
    /// that decodes) without panicking, and holds no lock after.
    #[test]
    fn a_participant_service_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let net = net();
        let service = ParticipantService::new(Arc::clone(&net.shards[0]));
        let answer = block_on(service.request(NodeId::from_bytes([9; 32]), hologram_txn::TXN_CALL_PROTOCOL, bytes));
        if let Ok(reply) = answer {
            prop_assert!(hologram_txn::TxnMessage::from_wire(&reply).is_ok());
        }
        let wrong = block_on(service.request(NodeId::from_bytes([9; 32]), hologram_txn::TXN_PROTOCOL, vec![]));
        prop_assert!(wrong.is_err());
    }
}
