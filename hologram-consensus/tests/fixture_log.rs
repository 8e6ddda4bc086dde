//! A validator's data directory written by today's formats, committed to
//! the repository (`tests/fixtures/log-v1/`), opened and read back: a
//! change to the durable log's formats that cannot read old data fails
//! here; and blocks or voting records of a format newer than this build
//! reads are refused with an error naming both versions, not taken for
//! damage (which would discard them).
//!
//! Each fixture is a `RedbStore` file (store format 1) holding a
//! `DurableLog`: six certified blocks (`"hologram block v1"`) and a voting
//! record in which the leader of height 6 proposed and prevoted there, with
//! the command it was submitted (both copies): `log-v1/` holds a `"hologram
//! voting-record v2"`, `log-v2/` a `"hologram voting-record v3"` (which
//! names the log's length too). The test opens a copy of each (opening may
//! write) and checks every decision and the record.
//!
//! Regenerating is for a deliberate format change only: it writes the
//! newest directory, and the old directories stay so that the test keeps
//! opening them:
//!
//! ```text
//! HOLOGRAM_WRITE_FIXTURES=1 cargo test -p hologram-consensus --test fixture_log
//! ```

mod support;

use futures::executor::block_on;
use hologram_cam::{MemoryStore, Name, Object, RedbStore, Store};
use hologram_consensus::{
    Batch, ConsensusError, Decision, DurableLog, Outputs, ReplicaConfig, VotingRecord,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use support::decided::{certified, commands, validators};

/// The fixtures' directories, oldest first (the last is the one
/// regenerated), and the store file in each.
const FIXTURES: [&str; 2] = [
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/log-v1"),
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/log-v2"),
];
const STORE_FILE: &str = "store.redb";

/// The six decisions of the fixture.
fn decisions() -> Vec<Decision> {
    let (keys, _) = validators();
    (0..6)
        .map(|h| {
            let batch = Batch::new(commands(&format!("fixture {h}"), 2)).expect("small");
            certified(&keys, h, batch)
        })
        .collect()
}

/// Writes the fixture's log into `store`: the decisions, then validator 0's
/// proposal and prevote at height 6. Returns the record saved.
async fn write(store: Arc<dyn Store>) -> VotingRecord {
    let (keys, set) = validators();
    let (mut log, _) = DurableLog::open(store.clone(), set.clone())
        .await
        .expect("open");
    log.append(&decisions()).await.expect("append");
    let (mut log, recovered) = {
        drop(log);
        DurableLog::open(store, set.clone()).await.expect("reopen")
    };
    // The leader of height 6, round 0: a submission makes it propose and prevote.
    let leader = set.leader(6, 0);
    let me = keys
        .iter()
        .find(|k| k.node_id() == leader)
        .expect("a validator");
    let mut replica = recovered
        .replica(me.clone(), ReplicaConfig::new(set))
        .expect("config");
    let mut out = Outputs::default();
    replica
        .submit(0, commands("fixture record", 1), true, &mut out)
        .expect("taken");
    log.persist(&out.decisions, replica.voting_record())
        .await
        .expect("persist");
    replica.voting_record().clone()
}

/// A copy of the store file in `fixture`, to open (opening may write).
fn copy_of_fixture(fixture: &str, n: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hologram-fixture-log-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let to = dir.join(STORE_FILE);
    std::fs::copy(Path::new(fixture).join(STORE_FILE), &to).expect("copy the fixture");
    to
}

#[test]
fn the_committed_logs_open_and_read_back() {
    let newest = FIXTURES[FIXTURES.len() - 1];
    if std::env::var_os("HOLOGRAM_WRITE_FIXTURES").is_some() {
        let _ = std::fs::remove_dir_all(newest);
        std::fs::create_dir_all(newest).expect("fixture dir");
        let store = RedbStore::create(Path::new(newest).join(STORE_FILE)).expect("create");
        block_on(write(Arc::new(store)));
    }
    // What the fixtures hold, written again in memory by today's code.
    let expected = block_on(write(Arc::new(MemoryStore::new())));
    assert!(!expected.heights.is_empty(), "the record holds a vote");
    assert!(!expected.submitted.is_empty(), "the record holds a command");

    for (n, fixture) in FIXTURES.iter().enumerate() {
        let path = copy_of_fixture(fixture, n);
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path).expect("open the fixture"));
        let (_, set) = validators();
        let (log, recovered) = block_on(DurableLog::open(store, set)).expect("open the log");
        assert!(
            recovered.rejected.is_empty(),
            "{fixture}: {:?}",
            recovered.rejected
        );
        assert_eq!(log.len(), 6, "{fixture}");
        assert_eq!(recovered.decisions, decisions(), "{fixture}");
        assert!(!recovered.record_unreadable, "{fixture}");
        assert_eq!(recovered.record, expected, "{fixture}");
        assert_eq!(recovered.stored_end, 6, "{fixture}");
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }
}

#[test]
fn blocks_and_records_of_a_newer_format_are_refused_naming_both_versions() {
    block_on(async {
        let (_, set) = validators();
        for (name, bytes, what, found, supported) in [
            (
                {
                    let mut n = b"hologram-consensus/log/block/".to_vec();
                    n.extend_from_slice(&2u64.to_be_bytes());
                    n
                },
                b"hologram block v2 and what a newer build wrote".to_vec(),
                "block",
                2,
                1,
            ),
            (
                b"hologram-consensus/log/voting-record/copy".to_vec(),
                b"hologram voting-record v7 and what a newer build wrote".to_vec(),
                "voting record",
                7,
                3,
            ),
        ] {
            let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
            write(store.clone()).await;
            let name = Name::new(name).expect("name");
            store
                .set_named(vec![(name.clone(), Some(Object::new(bytes.clone())))])
                .await
                .expect("set");
            match DurableLog::open(store.clone(), set.clone()).await {
                Err(e @ ConsensusError::UnsupportedFormat { .. }) => {
                    let ConsensusError::UnsupportedFormat {
                        what: w,
                        found: f,
                        supported: s,
                    } = e
                    else {
                        unreachable!()
                    };
                    assert_eq!((w, f, s), (what, found, supported));
                }
                other => panic!("{what}: {other:?}"),
            }
            // Nothing was changed: the newer object is still there.
            let kept = store.get_named(&name).await.expect("get").expect("kept");
            assert_eq!(kept.data(), &bytes[..]);
        }
    });
}
