//! The client's key-value calls: each operation is a command of the
//! client's session ([`Client::submit_payload`], retried at other nodes
//! with the same signed command, applied at most once), its result read
//! from the acknowledgement.

use super::client::Client;
use super::error::NodeError;
use super::kv::{KvOp, KvResult};
use hologram_lattice::NodeId;

impl Client {
    /// Runs the key-value operation `op` through consensus, first at
    /// `node`: its result once applied (a refusal is
    /// [`KvResult::Refused`]). An operation out of bounds is refused
    /// before it is sent ([`NodeError::Kv`]). Reads are ordered like
    /// writes, so every result is linearizable.
    ///
    /// ```no_run
    /// # async fn run(client: hologram::node::Client, node: hologram::lattice::NodeId)
    /// #     -> Result<(), hologram::node::NodeError> {
    /// use hologram::node::{KvOp, KvResult};
    ///
    /// client.kv_write(node, b"colour", b"blue").await?;
    /// assert!(client.kv_cas(node, b"colour", Some(b"blue"), b"green").await?);
    /// assert_eq!(client.kv_read(node, b"colour").await?, Some(b"green".to_vec()));
    /// // Accounts hold balances (u64 LE; absent: 0).
    /// client.kv_write(node, b"alice", &100u64.to_le_bytes()).await?;
    /// client.transfer(node, b"alice", b"bob", 30).await?;
    /// let op = KvOp::ReadMany { keys: vec![b"alice".to_vec(), b"bob".to_vec()] };
    /// let KvResult::Values(balances) = client.kv(node, &op).await? else { unreachable!() };
    /// assert_eq!(balances[1], Some(30u64.to_le_bytes().to_vec()));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn kv(&self, node: NodeId, op: &KvOp) -> Result<KvResult, NodeError> {
        let payload = op.encode().map_err(NodeError::Kv)?;
        let (_, ack) = self.submit_payload(node, payload).await?;
        ack.kv.ok_or(NodeError::UnexpectedResponse {
            got: "an acknowledgement without a key-value result",
        })
    }

    /// [`kv`](Self::kv), a refusal as [`NodeError::Kv`].
    async fn kv_done(&self, node: NodeId, op: &KvOp) -> Result<KvResult, NodeError> {
        match self.kv(node, op).await? {
            KvResult::Refused(e) => Err(NodeError::Kv(e)),
            result => Ok(result),
        }
    }

    /// The value of `key` (`None`: absent), read through consensus.
    pub async fn kv_read(&self, node: NodeId, key: &[u8]) -> Result<Option<Vec<u8>>, NodeError> {
        match self
            .kv_done(node, &KvOp::Read { key: key.to_vec() })
            .await?
        {
            KvResult::Value(value) => Ok(value),
            other => Err(mismatch(&other)),
        }
    }

    /// The values of `keys` (1 to [`MAX_KV_READ`](super::MAX_KV_READ)),
    /// read at one point of the order.
    pub async fn kv_read_many(
        &self,
        node: NodeId,
        keys: &[&[u8]],
    ) -> Result<Vec<Option<Vec<u8>>>, NodeError> {
        let keys = keys.iter().map(|k| k.to_vec()).collect();
        match self.kv_done(node, &KvOp::ReadMany { keys }).await? {
            KvResult::Values(values) => Ok(values),
            other => Err(mismatch(&other)),
        }
    }

    /// Sets `key` to `value`.
    pub async fn kv_write(&self, node: NodeId, key: &[u8], value: &[u8]) -> Result<(), NodeError> {
        let op = KvOp::Write {
            key: key.to_vec(),
            value: value.to_vec(),
        };
        match self.kv_done(node, &op).await? {
            KvResult::Written => Ok(()),
            other => Err(mismatch(&other)),
        }
    }

    /// Sets `key` to `new` if it holds `expected` (`None`: absent);
    /// whether it did.
    pub async fn kv_cas(
        &self,
        node: NodeId,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, NodeError> {
        let op = KvOp::Cas {
            key: key.to_vec(),
            expected: expected.map(<[u8]>::to_vec),
            new: new.to_vec(),
        };
        match self.kv_done(node, &op).await? {
            KvResult::Cas { swapped } => Ok(swapped),
            other => Err(mismatch(&other)),
        }
    }

    /// Moves `amount` from the balance at `from` to the one at `to`
    /// atomically; refused ([`NodeError::Kv`]) with
    /// [`KvError::InsufficientFunds`](super::KvError::InsufficientFunds) if `from` holds less.
    pub async fn transfer(
        &self,
        node: NodeId,
        from: &[u8],
        to: &[u8],
        amount: u64,
    ) -> Result<(), NodeError> {
        let op = KvOp::Transfer {
            from: from.to_vec(),
            to: to.to_vec(),
            amount,
        };
        match self.kv_done(node, &op).await? {
            KvResult::Transferred => Ok(()),
            other => Err(mismatch(&other)),
        }
    }
}

/// A result of another operation's kind.
fn mismatch(got: &KvResult) -> NodeError {
    NodeError::UnexpectedResponse {
        got: match got {
            KvResult::Value(_) => "a read's result",
            KvResult::Values(_) => "a read of several keys' result",
            KvResult::Written => "a write's result",
            KvResult::Cas { .. } => "a compare-and-set's result",
            KvResult::Transferred => "a transfer's result",
            KvResult::Refused(_) => "a refusal",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::{KvError, NodeConfig, ValidatorNode, MAX_KV_KEY};
    use super::*;
    use std::net::SocketAddr;

    /// A one-validator cluster in this process, and a client of it: every
    /// call goes through consensus and answers its operation's result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_client_reads_writes_swaps_and_transfers_through_a_node() {
        let dir = std::env::temp_dir().join(format!(
            "hologram-kv-client-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let addr: SocketAddr = {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap()
        };
        let keys = hologram_receipt::KeyPair::from_seed([7; 32]);
        let config = NodeConfig::new(keys.clone(), addr, vec![], dir.join("node"));
        let node = ValidatorNode::start(config).await.unwrap();
        let driver = node.driver();
        tokio::spawn(node.run());
        let members = [(keys.node_id(), addr)];
        let client = Client::anonymous(&members).unwrap();
        let n = keys.node_id();
        assert_eq!(client.kv_read(n, b"k").await.unwrap(), None);
        client.kv_write(n, b"k", b"one").await.unwrap();
        assert!(!client.kv_cas(n, b"k", None, b"two").await.unwrap());
        assert!(client.kv_cas(n, b"k", Some(b"one"), b"two").await.unwrap());
        assert_eq!(
            client.kv_read(n, b"k").await.unwrap(),
            Some(b"two".to_vec())
        );
        client
            .kv_write(n, b"a", &50u64.to_le_bytes())
            .await
            .unwrap();
        client.transfer(n, b"a", b"b", 20).await.unwrap();
        match client.transfer(n, b"a", b"b", 31).await {
            Err(NodeError::Kv(KvError::InsufficientFunds {
                balance: 30,
                amount: 31,
            })) => {}
            other => panic!("{other:?}"),
        }
        let balances = client.kv_read_many(n, &[b"a", b"b"]).await.unwrap();
        let balance = |v: u64| Some(v.to_le_bytes().to_vec());
        assert_eq!(balances, [balance(30), balance(20)]);
        // Out of bounds: refused before it is sent.
        let long = vec![0u8; MAX_KV_KEY + 1];
        assert!(matches!(
            client.kv_read(n, &long).await,
            Err(NodeError::Kv(KvError::KeyTooLong { .. }))
        ));
        // A plain payload is a log entry with no key-value result.
        let (_, ack) = client.submit_payload(n, b"plain".to_vec()).await.unwrap();
        assert_eq!(ack.kv, None);
        client.close();
        driver.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
