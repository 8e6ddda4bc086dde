//! Following decided heights: a validator's bounded window of recent
//! decisions ([`Feed`]) and the pull cursors over it ([`Decisions`], whose
//! docs say how they wait, lag and end).

use crate::message::Decision;
use crate::ConsensusError;
use futures::Stream;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// The newest decided heights of a validator, shared with its subscribers.
pub(crate) struct Feed {
    state: Mutex<FeedState>,
}

struct FeedState {
    /// The first height not decided.
    next: u64,
    /// The newest decided heights, at most `keep`, contiguous up to `next`.
    recent: BTreeMap<u64, Decision>,
    keep: usize,
    /// One waker per waiting subscriber, by subscriber number.
    waiters: BTreeMap<u64, Waker>,
    subscribers: u64,
    /// The validator is gone: waiting subscribers end.
    closed: bool,
}

impl Feed {
    /// A feed at `next` holding `recent` (trimmed to `keep`).
    pub(crate) fn new(next: u64, recent: BTreeMap<u64, Decision>, keep: usize) -> Self {
        let mut state = FeedState {
            next,
            recent,
            keep: keep.max(1),
            waiters: BTreeMap::new(),
            subscribers: 0,
            closed: false,
        };
        state.trim();
        Feed {
            state: Mutex::new(state),
        }
    }

    // Every critical section leaves the state consistent: poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps the newest `keep` heights (at least one) from now on.
    pub(crate) fn set_keep(&self, keep: usize) {
        let mut state = self.lock();
        state.keep = keep.max(1);
        state.trim();
    }

    /// Takes the next decided heights (in order, the first at the feed's
    /// next height) and wakes every waiting subscriber.
    pub(crate) fn push(&self, decided: Vec<Decision>) {
        let waiters = {
            let mut state = self.lock();
            for d in decided {
                state.next = d.height().saturating_add(1);
                state.recent.insert(d.height(), d);
            }
            state.trim();
            std::mem::take(&mut state.waiters)
        };
        waiters.into_values().for_each(Waker::wake);
    }

    /// The decision of `height`, if it is retained.
    pub(crate) fn get(&self, height: u64) -> Option<Decision> {
        self.lock().recent.get(&height).cloned()
    }

    /// Ends every subscriber once it has read what is retained.
    pub(crate) fn close(&self) {
        let waiters = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.waiters)
        };
        waiters.into_values().for_each(Waker::wake);
    }

    /// A cursor yielding the decided heights from `from` on.
    pub(crate) fn subscribe(self: &Arc<Self>, from: u64) -> Decisions {
        let id = {
            let mut state = self.lock();
            state.subscribers += 1;
            state.subscribers
        };
        Decisions {
            feed: Arc::clone(self),
            id,
            next: from,
            done: false,
        }
    }
}

impl FeedState {
    fn trim(&mut self) {
        while self.recent.len() > self.keep {
            self.recent.pop_first();
        }
    }
}

/// The decided heights of a [`LocalValidator`](super::LocalValidator), from
/// a given height on, each once and in height order; see
/// [`LocalValidator::subscribe`](super::LocalValidator::subscribe).
///
/// A [`Stream`] of `Result<Decision, ConsensusError>`: it waits when it has
/// caught up and is woken by the next decided height. It reads the
/// validator's retained window, so it queues nothing of its own; if the
/// height it needs next has left the window it yields
/// [`ConsensusError::Lagged`] once and ends. It also ends when the validator
/// is dropped (after yielding what is still retained).
pub struct Decisions {
    feed: Arc<Feed>,
    id: u64,
    next: u64,
    done: bool,
}

impl core::fmt::Debug for Decisions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Decisions")
            .field("next", &self.next)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Decisions {
    /// The next height this cursor will yield.
    pub fn next_height(&self) -> u64 {
        self.next
    }
}

impl Stream for Decisions {
    type Item = Result<Decision, ConsensusError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let mut state = this.feed.lock();
        if this.next < state.next {
            state.waiters.remove(&this.id);
            if let Some(d) = state.recent.get(&this.next) {
                this.next += 1;
                return Poll::Ready(Some(Ok(d.clone())));
            }
            this.done = true;
            let oldest = state.recent.keys().next().copied().unwrap_or(state.next);
            return Poll::Ready(Some(Err(ConsensusError::Lagged {
                from: this.next,
                oldest,
            })));
        }
        if state.closed {
            this.done = true;
            state.waiters.remove(&this.id);
            return Poll::Ready(None);
        }
        state.waiters.insert(this.id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Decisions {
    fn drop(&mut self) {
        self.feed.lock().waiters.remove(&self.id);
    }
}
