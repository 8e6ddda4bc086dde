//! Following decided heights without proposing: `LocalValidator::subscribe`
//! yields every height once and in order to a subscriber that joined before
//! the commits and to one that joined while they ran; a subscriber that falls
//! behind what the validator keeps gets `Lagged`, not a silent gap.

mod support;

use futures::executor::LocalPool;
use futures::future::join;
use futures::StreamExt;
use hologram_consensus::{
    Batch, ConsensusError, ConsensusResult, Decision, Decisions, LocalValidator, ReceiptConsensus,
};
use std::sync::Arc;
use support::decided::{commands, validators};

const HEIGHTS: u64 = 12;

/// Four in-process validators (keeping `keep` decided heights each) and
/// validator 0 proposing to them.
fn cluster(
    keep: usize,
) -> (
    Vec<Arc<LocalValidator>>,
    ReceiptConsensus<Arc<LocalValidator>>,
) {
    let (keys, set) = validators();
    let locals: Vec<Arc<LocalValidator>> = keys
        .iter()
        .map(|k| Arc::new(LocalValidator::new(k.clone(), set.clone()).keep_decided(keep)))
        .collect();
    let rc = ReceiptConsensus::new(keys[0].clone(), set, locals.clone(), 0).expect("members");
    (locals, rc)
}

/// Commits `HEIGHTS` batches, one after the other; returns their receipts.
async fn commit_all(rc: &mut ReceiptConsensus<Arc<LocalValidator>>) -> Vec<Batch> {
    let mut batches = Vec::new();
    for h in 0..HEIGHTS {
        let batch = Batch::new(commands(&format!("h{h}-"), 2)).expect("batch");
        assert_eq!(
            rc.achieve_consensus(batch.clone()).await,
            ConsensusResult::Committed(batch.receipt())
        );
        batches.push(batch);
        // Let subscribers run between commits.
        yield_now().await;
    }
    batches
}

/// Returns to the executor once (woken at once), so that others run.
async fn yield_now() {
    let mut yielded = false;
    futures::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// Reads `n` decisions from `sub`, checking heights are consecutive.
async fn read(sub: &mut Decisions, n: u64) -> Vec<Decision> {
    let mut got = Vec::new();
    for _ in 0..n {
        let expected = sub.next_height();
        let d = sub.next().await.expect("open").expect("not lagged");
        assert_eq!(d.height(), expected, "heights in order, none skipped");
        got.push(d);
    }
    got
}

#[test]
fn followers_see_every_height_once_in_order() {
    let (locals, mut rc) = cluster(1024);
    // Validator 2 never proposes; it is followed from height 0, before any
    // commit, and (later) by a subscriber that joins at height 0 mid-way.
    let follower = locals[2].clone();
    let mut early = follower.subscribe(0);
    let mut pool = LocalPool::new();
    let (batches, seen) = pool.run_until(join(commit_all(&mut rc), async {
        let first = read(&mut early, HEIGHTS / 2).await;
        let mut late = follower.subscribe(0);
        let rest = read(&mut early, HEIGHTS - HEIGHTS / 2).await;
        let all_late = read(&mut late, HEIGHTS).await;
        (first.into_iter().chain(rest).collect::<Vec<_>>(), all_late)
    }));
    let (early_seen, late_seen) = seen;
    for heard in [&early_seen, &late_seen] {
        let receipts: Vec<_> = heard.iter().map(|d| d.batch.receipt()).collect();
        let wanted: Vec<_> = batches.iter().map(Batch::receipt).collect();
        assert_eq!(receipts, wanted, "each decided batch once, in height order");
    }
    // Caught up: the next read waits for a new height (nothing is ready).
    let mut caught_up = follower.subscribe(HEIGHTS);
    assert!(pool.run_until(async { futures::poll!(caught_up.next()).is_pending() }));
    // A dropped validator ends its subscribers.
    drop(rc);
    drop(locals);
    drop(follower);
    assert!(pool.run_until(caught_up.next()).is_none());
}

#[test]
fn a_subscriber_behind_the_kept_window_is_told_to_read_the_log() {
    let (locals, mut rc) = cluster(4);
    let mut slow = locals[1].subscribe(0);
    let mut pool = LocalPool::new();
    // It reads three heights, then stalls while the others commit.
    let (_, first) = pool.run_until(join(
        async {
            for i in 0..3 {
                let batch = Batch::new(commands(&format!("first{i}-"), 1)).expect("batch");
                rc.achieve_consensus(batch).await;
                yield_now().await;
            }
        },
        async { read(&mut slow, 3).await },
    ));
    assert_eq!(first.len(), 3);
    pool.run_until(commit_all(&mut rc));
    let total = 3 + HEIGHTS;
    match pool.run_until(slow.next()) {
        Some(Err(ConsensusError::Lagged { from, oldest })) => {
            assert_eq!((from, oldest), (3, total - 4));
        }
        other => panic!("expected Lagged, got {other:?}"),
    }
    assert!(
        pool.run_until(slow.next()).is_none(),
        "a lagged stream ends"
    );
    // Subscribing again from the oldest kept height reads the rest.
    let mut again = locals[1].subscribe(total - 4);
    let rest = pool.run_until(read(&mut again, 4));
    assert_eq!(rest.last().map(Decision::height), Some(total - 1));
}
