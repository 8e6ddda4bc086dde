//! `DistributedCAM` and the size of one answer: `put` refuses what no peer
//! could fetch (pointing to `put_blob`), an object exactly at the limit is
//! put and fetched by another node, and a `get` whose only answers were over
//! the limit says so instead of `NotFound`.

use futures::executor::block_on;
use hologram_cam::MemoryStore;
use hologram_cam::MAX_OBJECT_BYTES;
use hologram_cam::{CamError, CamHandler, DistributedCAM, Object, ProviderRecords, Store};
use hologram_lattice::transport::MemoryNetwork;
use hologram_lattice::LatticeRouter;
use hologram_lattice::NodeId;
use std::sync::{Arc, RwLock};

type Cam = DistributedCAM<MemoryStore>;

/// Two nodes that route to each other; `max_frame` set on the network if given.
fn pair(max_frame: Option<usize>) -> [Cam; 2] {
    let network = MemoryNetwork::new(3);
    if let Some(max) = max_frame {
        network.set_max_frame(max);
    }
    let ids = [NodeId::from_bytes([1; 32]), NodeId::from_bytes([2; 32])];
    let cam = |i: usize| {
        let store = Arc::new(MemoryStore::new());
        let providers = ProviderRecords::new(100);
        let handler = CamHandler::new(Arc::clone(&store), providers.clone());
        let transport = Arc::new(network.join(ids[i], Arc::new(handler)));
        let mut router = LatticeRouter::new(ids[i]);
        router.table_mut().insert(ids[1 - i]);
        DistributedCAM::new(
            ids[i],
            store,
            transport,
            Arc::new(RwLock::new(router)),
            providers,
        )
    };
    [cam(0), cam(1)]
}

/// `n` bytes that differ from those of any other length.
fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + n) as u8).collect()
}

#[test]
fn a_put_over_the_limit_is_refused_and_points_to_put_blob() {
    let [a, _] = pair(None);
    // The default frame (4 MiB) is larger than one CAM message: the
    // protocol's limit binds.
    assert_eq!(a.max_object_bytes(), MAX_OBJECT_BYTES);
    let data = bytes(2 << 20);
    let refused = block_on(a.put(data.clone())).unwrap_err();
    assert_eq!(
        refused,
        CamError::ObjectTooLargeForPut {
            size: 2 << 20,
            max: MAX_OBJECT_BYTES
        }
    );
    assert!(refused.to_string().contains("put_blob"), "{refused}");
    // Nothing was stored.
    assert!(a.store().is_empty());
}

#[test]
fn an_object_exactly_at_the_limit_is_put_and_fetched_by_another_node() {
    let [a, b] = pair(None);
    let max = a.max_object_bytes();
    let data = bytes(max);
    let address = block_on(a.put(data.clone())).unwrap();
    assert_eq!(block_on(b.get(address)).unwrap().data(), &data[..]);
    assert!(matches!(
        block_on(a.put(bytes(max + 1))),
        Err(CamError::ObjectTooLargeForPut { .. })
    ));
}

#[test]
fn under_a_small_frame_the_limit_is_the_frame_minus_the_answer_overhead() {
    // An answer is a one-byte tag, the length as a varint (2 bytes for
    // 9,997) and the bytes: 10,000 - 3.
    let [a, b] = pair(Some(10_000));
    assert_eq!(a.max_object_bytes(), 9_997);
    let data = bytes(9_997);
    let address = block_on(a.put(data.clone())).unwrap();
    assert_eq!(block_on(b.get(address)).unwrap().data(), &data[..]);
    assert_eq!(
        block_on(a.put(bytes(9_998))),
        Err(CamError::ObjectTooLargeForPut {
            size: 9_998,
            max: 9_997
        })
    );
}

#[test]
fn a_get_whose_only_answers_were_too_large_says_so() {
    // Over the message limit (the default frame carries it, the asker's
    // decoder refuses it) and over a small frame (the transport refuses the
    // answer): both are over-limit answers, not absence.
    for (frame, size) in [(None, 2 << 20), (Some(10_000), 20_000)] {
        let [a, b] = pair(frame);
        // Put into a's store directly, as a `put` would now refuse it.
        let object = Object::new(bytes(size));
        let address = object.address();
        block_on(a.store().put(object)).unwrap();
        assert_eq!(
            block_on(b.get(address)),
            Err(CamError::AnswerTooLarge { address, peers: 1 }),
            "frame {frame:?}, {size} bytes"
        );
        assert!(!block_on(b.store().contains(&address)).unwrap());
    }
    // Absent everywhere is still `NotFound`.
    let [_, b] = pair(None);
    let missing = Object::new(b"never stored".to_vec()).address();
    assert_eq!(block_on(b.get(missing)), Err(CamError::NotFound(missing)));
}
