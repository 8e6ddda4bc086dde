//! [`DurablePoint`]: how far the node's state is durable, which is what its
//! status and log pages report.
//!
//! The consensus driver applies a decided height to the machine while it
//! handles the round's inputs, then writes the round (decisions and voting
//! record) and only then hands the decisions on (write-ahead for every
//! message, acknowledgement and decision). The machine therefore runs ahead
//! of the store: a status read from it could report a height whose write
//! then fails (a full disk), and the node, which stops on a failed write,
//! restarts from its store behind what it reported. Every answer of the
//! node's local state is given from the durable prefix instead: the
//! machine's [`Point`] right after the newest height the driver handed on,
//! which a restart recovers.

use super::machine::Point;
use std::collections::VecDeque;

/// The durable prefix of the machine's progress; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct DurablePoint {
    /// The newest point known durable.
    durable: Point,
    /// Points the machine reached and the store may not hold yet, in order,
    /// each with the height whose hand-on makes it durable. Emptied at each
    /// hand-on: the driver writes and hands on every round's decisions (or
    /// stops), so it holds at most the heights of one driver round.
    pending: VecDeque<(u64, Point)>,
}

impl DurablePoint {
    /// Starts at `recovered`: what the node rebuilt from its store.
    pub(crate) fn new(recovered: Point) -> Self {
        Self {
            durable: recovered,
            pending: VecDeque::new(),
        }
    }

    /// The machine applied `height` and reached `point`: durable once the
    /// driver hands `height` on.
    pub(crate) fn applied(&mut self, height: u64, point: Point) {
        self.pending.push_back((height, point));
    }

    /// The machine restored a snapshot and reached `point`: durable once a
    /// height after the snapshot is handed on (the driver moves its log to
    /// the snapshot in the write before it hands any such height on).
    pub(crate) fn restored(&mut self, point: Point) {
        self.pending.push_back((point.heights, point));
    }

    /// The driver handed `height` on: it and everything before it is
    /// durable.
    pub(crate) fn handed_on(&mut self, height: u64) {
        while let Some(&(at, point)) = self.pending.front() {
            if at > height {
                break;
            }
            self.pending.pop_front();
            self.durable = point;
        }
    }

    /// The newest durable point.
    pub(crate) fn point(&self) -> Point {
        self.durable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hologram_receipt::{Receipt, ReceiptChain};

    /// A point `heights` heights and `commands` commands in.
    fn point(heights: u64, commands: u8) -> Point {
        let receipts: Vec<Receipt> = (0..commands).map(|i| Receipt::from_bytes(&[i])).collect();
        Point {
            heights,
            chain: ReceiptChain::from_receipts(&receipts),
        }
    }

    #[test]
    fn only_what_was_handed_on_is_reported() {
        let mut durable = DurablePoint::new(point(2, 1));
        durable.applied(2, point(3, 2));
        durable.applied(3, point(4, 3));
        assert_eq!(durable.point(), point(2, 1), "applied, not written yet");
        durable.handed_on(2);
        assert_eq!(durable.point(), point(3, 2));
        // A later hand-on covers every height before it.
        durable.applied(4, point(5, 4));
        durable.handed_on(4);
        assert_eq!(durable.point(), point(5, 4));
        assert!(durable.pending.is_empty());
        // A hand-on of a height applied before never goes back.
        durable.handed_on(1);
        assert_eq!(durable.point(), point(5, 4));
    }

    #[test]
    fn a_restored_snapshot_waits_for_a_height_after_it() {
        let mut durable = DurablePoint::new(point(1, 1));
        durable.restored(point(10, 6));
        durable.handed_on(9);
        assert_eq!(
            durable.point(),
            point(1, 1),
            "the snapshot may not be written"
        );
        durable.applied(10, point(11, 7));
        durable.handed_on(10);
        assert_eq!(durable.point(), point(11, 7));
    }
}

/// A node whose durable write fails reports nothing it then loses.
#[cfg(test)]
mod node_tests {
    use super::super::{Client, NodeConfig, ValidatorNode};
    use hologram_cam::{CamError, MemoryStore, Name, Object, Store};
    use hologram_lattice::transport::async_trait;
    use hologram_lattice::Address;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex, PoisonError};
    use std::time::Duration;

    /// A store whose writes, once held, wait until released and then fail
    /// as on a full disk (the node's writes run on blocking threads, see
    /// `offload`, so a held write holds only the driver).
    struct HeldStore {
        inner: Arc<MemoryStore>,
        /// (held, released)
        state: Mutex<(bool, bool)>,
        released: Condvar,
        waiting: AtomicUsize,
    }

    impl HeldStore {
        fn new(inner: Arc<MemoryStore>) -> Self {
            Self {
                inner,
                state: Mutex::new((false, false)),
                released: Condvar::new(),
                waiting: AtomicUsize::new(0),
            }
        }

        fn set(&self, held: bool, released: bool) {
            *self.state.lock().unwrap_or_else(PoisonError::into_inner) = (held, released);
            self.released.notify_all();
        }

        /// Whether a write may go ahead: at once when not held; else it
        /// waits for the release, then fails.
        fn write(&self) -> Result<(), CamError> {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if !state.0 {
                return Ok(());
            }
            self.waiting.fetch_add(1, Ordering::SeqCst);
            while !state.1 {
                state = (self.released.wait(state)).unwrap_or_else(PoisonError::into_inner);
            }
            Err(CamError::Storage(
                "No space left on device (os error 28)".into(),
            ))
        }
    }

    #[async_trait]
    impl Store for HeldStore {
        async fn get(&self, address: &Address) -> Result<Option<Object>, CamError> {
            self.inner.get(address).await
        }
        async fn put(&self, object: Object) -> Result<(), CamError> {
            self.write()?;
            self.inner.put(object).await
        }
        async fn put_batch(&self, objects: Vec<Object>) -> Result<(), CamError> {
            self.write()?;
            self.inner.put_batch(objects).await
        }
        async fn contains(&self, address: &Address) -> Result<bool, CamError> {
            self.inner.contains(address).await
        }
        async fn remove(&self, address: &Address) -> Result<bool, CamError> {
            self.write()?;
            self.inner.remove(address).await
        }
        async fn scan(
            &self,
            after: Option<Address>,
            limit: usize,
        ) -> Result<Vec<Address>, CamError> {
            self.inner.scan(after, limit).await
        }
        async fn get_named(&self, name: &Name) -> Result<Option<Object>, CamError> {
            self.inner.get_named(name).await
        }
        async fn set_named(&self, changes: Vec<(Name, Option<Object>)>) -> Result<(), CamError> {
            self.write()?;
            self.inner.set_named(changes).await
        }
    }

    /// A one-validator node applies a height before its write; the write
    /// fails (the disk is full) and the node stops. Every status it gave
    /// while the write was pending must be within what it recovers when it
    /// restarts on the same store: the status reports the durable prefix,
    /// not the machine (which had applied the lost height).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_status_never_reports_what_a_failed_write_loses() {
        let dir = std::env::temp_dir().join(format!(
            "hologram-durable-status-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let free_port = || -> SocketAddr {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap()
        };
        let addr = free_port();
        let keys = hologram_receipt::KeyPair::from_seed([9; 32]);
        let config = NodeConfig::new(keys.clone(), addr, vec![], dir.join("node"));
        let disk = Arc::new(MemoryStore::new());
        let store = Arc::new(HeldStore::new(Arc::clone(&disk)));
        let opened: Arc<dyn Store> = store.clone();
        let node = ValidatorNode::start_on(config.clone(), |_| Ok(opened))
            .await
            .unwrap();
        let running = tokio::spawn(node.run());
        let n = keys.node_id();
        let client = Client::anonymous(&[(n, addr)]).unwrap();
        client.submit_payload(n, b"durable".to_vec()).await.unwrap();
        let before = client.status(n).await.unwrap();
        assert_eq!((before.heights, before.applied), (1, 1));

        // The next height's write is held: the machine applies it, the
        // store does not have it.
        store.set(true, false);
        let submitter = Client::anonymous(&[(n, addr)]).unwrap();
        let pending = tokio::spawn(async move {
            let _ = submitter.submit_payload(n, b"lost".to_vec()).await;
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while store.waiting.load(Ordering::SeqCst) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "no write was held");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut reported = Vec::new();
        for _ in 0..20 {
            reported.push(client.status(n).await.unwrap());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The write fails: the driver stops, and the node with it.
        store.set(true, true);
        let stopped = tokio::time::timeout(Duration::from_secs(20), running)
            .await
            .expect("the node stops when its write fails")
            .unwrap();
        assert!(stopped.is_err(), "the node names the failed write");
        pending.abort();
        client.close();

        // Restarted on what the disk holds (on another port: the old
        // endpoint may still be draining).
        let opened: Arc<dyn Store> = disk;
        let config = NodeConfig {
            listen: free_port(),
            ..config
        };
        let again = ValidatorNode::start_on(config, |_| Ok(opened))
            .await
            .unwrap();
        let recovered = again.info().clone();
        assert_eq!(
            (recovered.heights, recovered.applied),
            (1, 1),
            "the lost height is gone"
        );
        for status in reported {
            assert!(
                status.heights <= recovered.heights && status.applied <= recovered.applied,
                "reported {} heights, {} applied; a restart recovers {} and {}",
                status.heights,
                status.applied,
                recovered.heights,
                recovered.applied
            );
            assert_eq!(status.head, before.head);
        }
        again.driver().stop();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
