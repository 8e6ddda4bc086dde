//! Validators run by drivers over a `MemoryNetwork`, each from what its
//! store holds.

use super::MachineFactory;
use futures::channel::mpsc::UnboundedReceiver;
use futures::channel::oneshot;
use futures::executor::{LocalPool, LocalSpawner};
use futures::task::LocalSpawnExt;
use hologram_cam::Store;
use hologram_consensus::{
    inbox, ConsensusError, Decision, DriverHandle, DurableLog, ReplicaConfig, ReplicaDriver,
    SnapshotConfig,
};
use hologram_lattice::transport::{MemoryNetwork, Timer};
use hologram_receipt::KeyPair;
use std::sync::Arc;

/// One running validator.
pub struct Running {
    pub handle: DriverHandle,
    pub decisions: UnboundedReceiver<Decision>,
    /// How its driver ended.
    pub ended: oneshot::Receiver<Result<(), ConsensusError>>,
}

/// Starts validator `keys` with `config` from what `store` holds (running
/// `machine` if given); returns it and the decisions recovered.
#[allow(clippy::too_many_arguments)]
pub fn start_driver(
    spawner: &LocalSpawner,
    pool: &mut LocalPool,
    network: &MemoryNetwork,
    timer: &Timer,
    keys: &KeyPair,
    store: Arc<dyn Store>,
    config: ReplicaConfig,
    machine: Option<(MachineFactory, SnapshotConfig)>,
) -> (Running, Vec<Decision>) {
    let set = config.validators.clone();
    let (log, recovered) = pool.run_until(DurableLog::open(store, set)).expect("open");
    assert!(recovered.rejected.is_empty(), "{:?}", recovered.rejected);
    let replica = recovered.replica(keys.clone(), config).expect("config");
    let (handler, inbox) = inbox();
    let transport = network.join(keys.node_id(), Arc::new(handler));
    let (driver, handle, decisions) =
        ReplicaDriver::new(replica, Arc::new(transport), timer.clone(), inbox);
    let mut driver = driver.with_log(log);
    if let Some((factory, snapshots)) = machine {
        driver = (driver.with_machine(move || factory(), snapshots, &recovered)).expect("machine");
    }
    let (tx, ended) = oneshot::channel();
    spawner
        .spawn_local(async move {
            let (_, result) = driver.try_run().await;
            let _ = tx.send(result);
        })
        .expect("spawn");
    (
        Running {
            handle,
            decisions,
            ended,
        },
        recovered.decisions,
    )
}
