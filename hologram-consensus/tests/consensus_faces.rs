//! Both wire faces of consensus on one node: each of four nodes serves a
//! replica (one-way `hologram_consensus::CONSENSUS_PROTOCOL` messages between `ReplicaDriver`s)
//! and a `LocalValidator` (request/response `hologram_consensus::VALIDATOR_PROTOCOL` calls from
//! `RemoteValidator`s) through one `ProtocolMux`, and both commit.
//!
//! The two faces run two separate chains here, to show they do not shadow
//! each other on the wire; a deployment gives each chain its own keys.

mod support;

use futures::channel::mpsc::UnboundedReceiver;
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use futures::StreamExt;
use hologram_consensus::{
    inbox, Batch, ConsensusResult, Decision, LocalValidator, ReceiptConsensus, RemoteValidator,
    Replica, ReplicaConfig, ReplicaDriver, ValidatorHandler,
};
use hologram_lattice::transport::{MemoryNetwork, ProtocolMux, Timer};
use hologram_lattice::NodeId;
use std::sync::Arc;
use std::time::Duration;
use support::decided::{commands, validators};

#[test]
fn one_mux_serves_a_replica_and_a_validator() {
    let (keys, set) = validators();
    let network = MemoryNetwork::new(19);
    let timer = Timer::new();
    let mut pool = LocalPool::new();
    let spawner = pool.spawner();

    let mut handles = Vec::new();
    let mut streams: Vec<UnboundedReceiver<Decision>> = Vec::new();
    let mut locals = Vec::new();
    for k in &keys {
        let (replica_face, replica_inbox) = inbox();
        let local = Arc::new(LocalValidator::new(k.clone(), set.clone()));
        let mux = ProtocolMux::new();
        mux.mount(Arc::new(replica_face))
            .mount(Arc::new(ValidatorHandler::new(local.clone())));
        let transport = Arc::new(network.join(k.node_id(), Arc::new(mux)));
        let replica = Replica::new(k.clone(), ReplicaConfig::new(set.clone())).expect("config");
        let (driver, handle, decisions) =
            ReplicaDriver::new(replica, transport, timer.clone(), replica_inbox);
        spawner
            .spawn_local(async move {
                driver.run().await;
            })
            .expect("spawn");
        handles.push(handle);
        streams.push(decisions);
        locals.push(local);
    }

    // The request/response face: a client node proposes through RemoteValidators.
    let client =
        Arc::new(network.join(NodeId::from_bytes([0xEE; 32]), Arc::new(ProtocolMux::new())));
    let remotes: Vec<RemoteValidator> = keys
        .iter()
        .map(|k| RemoteValidator::new(k.node_id(), client.clone(), Duration::from_secs(5)))
        .collect();
    let mut rc = ReceiptConsensus::new(keys[0].clone(), set.clone(), remotes, 0).expect("members");
    let batch = Batch::new(commands("v", 3)).expect("batch");
    assert_eq!(
        pool.run_until(rc.achieve_consensus(batch.clone())),
        ConsensusResult::Committed(batch.receipt())
    );
    for v in &locals {
        assert_eq!(
            pool.run_until(v.next_height()),
            1,
            "every validator took the decision"
        );
    }

    // The one-way face: the replicas commit what was submitted to them.
    let wanted = commands("r", 5);
    for h in &handles {
        pool.run_until(h.submit(wanted.clone(), false))
            .expect("accepted");
    }
    for stream in &mut streams {
        let mut seen = Vec::new();
        while !wanted.iter().all(|c| seen.contains(c)) {
            let next = pool.run_until(timer.timeout(Duration::from_secs(20), stream.next()));
            let d = next.flatten().expect("a decision within 20 s");
            seen.extend(d.batch.commands().iter().cloned());
        }
    }
    for h in &handles {
        h.stop();
    }
    pool.run();
}
