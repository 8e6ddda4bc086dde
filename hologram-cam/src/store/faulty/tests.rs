use super::*;
use crate::conformance;
use crate::MemoryStore;
use futures::executor::block_on;
use std::time::Instant;

fn object(i: u32) -> Object {
    Object::new(format!("object {i}").into_bytes())
}

fn name(i: u32) -> Name {
    Name::new(format!("record {i}").as_bytes()).unwrap()
}

fn disk(faults: DiskFaults) -> FaultyStore<MemoryStore> {
    FaultyStore::new(MemoryStore::new(), 7, faults)
}

#[test]
fn a_perfect_disk_conforms() {
    let store = disk(DiskFaults::NONE);
    block_on(conformance::run(&store)).unwrap();
    assert_eq!(store.counts(), DiskFaultCounts::default());
}

#[test]
fn a_failed_write_changes_nothing() {
    block_on(async {
        for faults in [
            DiskFaults {
                write_error: 1.0,
                ..DiskFaults::NONE
            },
            DiskFaults {
                no_space: 1.0,
                ..DiskFaults::NONE
            },
        ] {
            let store = disk(faults);
            let e = store.put(object(1)).await.unwrap_err();
            assert!(
                matches!(e, CamError::Storage(ref m) if m.contains("EIO") || m.contains("ENOSPC")),
                "{e}"
            );
            assert!(store
                .set_named(vec![(name(1), Some(object(1)))])
                .await
                .is_err());
            assert!(!store.inner().contains(&object(1).address()).await.unwrap());
            assert_eq!(store.inner().get_named(&name(1)).await.unwrap(), None);
        }
    });
}

#[test]
fn a_torn_batch_lands_a_prefix_and_fails() {
    block_on(async {
        let store = disk(DiskFaults {
            torn_batch: 1.0,
            ..DiskFaults::NONE
        });
        let batch: Vec<Object> = (0..8).map(object).collect();
        assert!(store.put_batch(batch.clone()).await.is_err());
        let mut landed = Vec::new();
        for o in &batch {
            landed.push(store.inner().contains(&o.address()).await.unwrap());
        }
        let prefix = landed.iter().take_while(|&&l| l).count();
        assert!(prefix < batch.len(), "{landed:?}");
        assert!(
            landed[prefix..].iter().all(|l| !l),
            "not a prefix: {landed:?}"
        );
        assert_eq!(store.counts().torn, 1);
        // One object is not a batch: it never tears.
        store.put(object(100)).await.unwrap();
    });
}

#[test]
fn a_crash_loses_unflushed_writes_but_each_key_keeps_a_value_it_held() {
    block_on(async {
        let store = disk(DiskFaults::NONE);
        store.put(object(1)).await.unwrap();
        store
            .set_named(vec![(name(1), Some(object(10)))])
            .await
            .unwrap();
        // A crash on a perfect disk loses nothing, and flushes.
        assert_eq!(store.crash().await.unwrap(), 0);
        store.set_faults(DiskFaults {
            lost_on_crash: 1.0,
            ..DiskFaults::NONE
        });
        store.put(object(2)).await.unwrap();
        for v in [11, 12, 13] {
            store
                .set_named(vec![(name(1), Some(object(v)))])
                .await
                .unwrap();
        }
        assert!(store.remove(&object(1).address()).await.unwrap());
        assert_eq!(store.crash().await.unwrap(), 5);
        // Back to what was flushed before.
        assert!(store.contains(&object(1).address()).await.unwrap());
        assert!(!store.contains(&object(2).address()).await.unwrap());
        assert_eq!(store.get_named(&name(1)).await.unwrap(), Some(object(10)));
        assert_eq!(store.counts().lost, 5);
    });
}

#[test]
fn a_crash_that_keeps_a_newer_write_keeps_it() {
    // Whatever is lost, each name ends with a value it really held and
    // never older than a write that was kept.
    for seed in 0..50 {
        block_on(async {
            let store = FaultyStore::new(
                MemoryStore::new(),
                seed,
                DiskFaults {
                    lost_on_crash: 0.5,
                    ..DiskFaults::NONE
                },
            );
            for v in 0..6 {
                store
                    .set_named(vec![(name(1), Some(object(v)))])
                    .await
                    .unwrap();
            }
            let lost = store.crash().await.unwrap();
            let held = store.get_named(&name(1)).await.unwrap();
            // Lost are the newest `lost` writes, none older.
            let expected = (6 - lost).checked_sub(1).map(|v| object(v as u32));
            assert_eq!(held, expected, "seed {seed}: {lost} lost");
        });
    }
}

#[test]
fn rot_at_rest_is_reported_corrupt_until_rewritten() {
    block_on(async {
        let store = disk(DiskFaults {
            rot_at_rest: 1.0,
            ..DiskFaults::NONE
        });
        store.put(object(1)).await.unwrap();
        store
            .set_named(vec![(name(1), Some(object(2)))])
            .await
            .unwrap();
        for _ in 0..2 {
            assert!(matches!(
                store.get(&object(1).address()).await,
                Err(CamError::Corrupt(a)) if a == object(1).address()
            ));
            assert!(matches!(
                store.get_named(&name(1)).await,
                Err(CamError::Corrupt(_))
            ));
        }
        // A repair writes it again on a disk that no longer rots.
        store.set_faults(DiskFaults::NONE);
        store.put(object(1)).await.unwrap();
        assert_eq!(
            store.get(&object(1).address()).await.unwrap(),
            Some(object(1))
        );
        assert_eq!(store.counts().rotted, 2);
        assert_eq!(store.counts().rotten_reads, 4);
    });
}

#[test]
fn flipped_and_misdirected_reads_never_return_wrong_bytes_for_an_address() {
    block_on(async {
        let store = disk(DiskFaults {
            flip_on_read: 0.3,
            misdirected_read: 0.3,
            ..DiskFaults::NONE
        });
        let objects: Vec<Object> = (0..50).map(object).collect();
        store.put_batch(objects.clone()).await.unwrap();
        let (mut ok, mut corrupt) = (0, 0);
        for _ in 0..10 {
            for o in &objects {
                match store.get(&o.address()).await {
                    Ok(Some(read)) => {
                        assert_eq!(read, *o);
                        ok += 1;
                    }
                    Err(CamError::Corrupt(a)) => {
                        assert_eq!(a, o.address());
                        corrupt += 1;
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        let counts = store.counts();
        assert!(ok > 0 && corrupt > 0, "{ok} ok, {corrupt} corrupt");
        assert_eq!(corrupt, counts.rotten_reads + counts.misdirected);
    });
}

#[test]
fn stale_and_misdirected_named_reads_return_real_records() {
    block_on(async {
        let store = disk(DiskFaults {
            stale_read: 0.5,
            misdirected_read: 0.2,
            ..DiskFaults::NONE
        });
        for n in 0..4 {
            for v in 0..3 {
                store
                    .set_named(vec![(name(n), Some(object(100 * n + v)))])
                    .await
                    .unwrap();
            }
        }
        let mut answers = HashSet::new();
        for _ in 0..200 {
            let read = store.get_named(&name(0)).await.unwrap().unwrap();
            answers.insert(read.address());
        }
        // The current value, the one before it, and other names' records;
        // never bytes no name held.
        assert!(answers.contains(&object(2).address()));
        assert!(answers.contains(&object(1).address()));
        assert!(!answers.contains(&object(0).address()));
        let counts = store.counts();
        assert!(counts.stale > 0 && counts.misdirected > 0, "{counts:?}");
    });
}

#[test]
fn a_seed_replays_the_same_faults() {
    let run = |seed| {
        block_on(async {
            let store = FaultyStore::new(
                MemoryStore::new(),
                seed,
                DiskFaults {
                    write_error: 0.1,
                    torn_batch: 0.2,
                    rot_at_rest: 0.1,
                    flip_on_read: 0.1,
                    lost_on_crash: 0.3,
                    ..DiskFaults::NONE
                },
            );
            let mut outcomes = Vec::new();
            for i in 0..100 {
                let batch = vec![object(2 * i), object(2 * i + 1)];
                outcomes.push(store.put_batch(batch).await.is_ok());
                outcomes.push(store.get(&object(i).address()).await.is_ok());
            }
            store.crash().await.unwrap();
            (outcomes, store.counts())
        })
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}

#[test]
fn a_slow_disk_waits_its_delay() {
    let store = disk(DiskFaults {
        delay: Duration::from_millis(20),
        ..DiskFaults::NONE
    })
    .with_timer(Timer::new());
    let start = Instant::now();
    block_on(store.put(object(1))).unwrap();
    block_on(store.get(&object(1).address())).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(40));
}
