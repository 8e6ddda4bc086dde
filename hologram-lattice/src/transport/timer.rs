//! A timer that needs no runtime: one background thread per [`Timer`] wakes
//! the futures whose deadlines have passed; or, for a deterministic
//! simulation, a [manual](Timer::manual) timer on a virtual clock that only
//! its owner moves ([`Timer::advance_to`]), with no thread at all.
//!
//! The thread keeps an ordered map `(deadline, key) → Waker` behind a mutex
//! and sleeps on a condition variable until the earliest deadline (or until
//! a new, earlier deadline is registered). A [`Sleep`] checks the clock before
//! it registers, registers (or refreshes) its waker under the same mutex the
//! thread reads, and deregisters when dropped. No wakeup is lost:
//!
//! - a deadline registered after the thread last looked at the map is seen on
//!   its next look, because registering an earlier deadline than every other
//!   one notifies the condition variable under the mutex, and the thread only
//!   waits after reading the map under that mutex;
//! - the thread wakes a waker only after its deadline has passed, and
//!   [`Instant`] is monotonic, so the woken [`Sleep`] sees the deadline passed
//!   when it is polled again; if it is polled again before (a spurious poll)
//!   and finds its entry gone, it registers again.
//!
//! A [`Sleep`] that is ready on its first poll never touches the thread or
//! the mutex, and [`Timer::timeout_at`] polls its future before it makes a
//! [`Sleep`] at all, so a timeout around a future that is ready at once costs
//! nothing. The thread ends when the last [`Timer`] and [`Sleep`] sharing it
//! are dropped.
//!
//! A manual timer keeps the same map, but its clock is a virtual [`Instant`]
//! (the instant it was made, plus the virtual time advanced since): a
//! [`Sleep`] compares its deadline with that clock, and
//! [`advance_to`](Timer::advance_to) moves the clock and wakes the due
//! wakers itself, earliest deadline first (ties in order of registration),
//! so which futures wake, and in what order, is a function of the calls
//! alone. [`sim::Executor`](crate::sim::Executor) runs futures on one.

use futures::future::{poll_fn, select, Either};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A clock for futures on any executor: [`sleep`](Timer::sleep) and
/// [`timeout`](Timer::timeout), driven by one background thread.
///
/// Cloning is cheap and shares the thread (or, for a [manual](Self::manual)
/// timer, the virtual clock).
///
/// ```
/// use hologram_lattice::transport::Timer;
/// use std::time::{Duration, Instant};
///
/// let timer = Timer::new();
/// let start = Instant::now();
/// futures::executor::block_on(timer.sleep(Duration::from_millis(5)));
/// assert!(start.elapsed() >= Duration::from_millis(5));
///
/// let never = futures::future::pending::<()>();
/// let out = futures::executor::block_on(timer.timeout(Duration::from_millis(5), never));
/// assert_eq!(out, None);
/// ```
#[derive(Clone)]
pub struct Timer {
    handle: Arc<Handle>,
}

/// What the thread and the futures share.
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// When the timer was made: the origin of a manual timer's clock.
    origin: Instant,
    /// Whether the clock is virtual (moved by `advance_to`, no thread).
    manual: bool,
}

/// The registered deadlines, earliest first, whether the thread should end,
/// and a manual timer's virtual now.
struct State {
    wakers: BTreeMap<(Instant, u64), Waker>,
    next_key: u64,
    shutdown: bool,
    now: Instant,
}

impl Shared {
    fn new(manual: bool) -> Arc<Shared> {
        let origin = Instant::now();
        Arc::new(Shared {
            state: Mutex::new(State {
                wakers: BTreeMap::new(),
                next_key: 0,
                shutdown: false,
                now: origin,
            }),
            changed: Condvar::new(),
            origin,
            manual,
        })
    }

    /// The clock: the real one, or a manual timer's virtual now.
    fn now(&self) -> Instant {
        match self.manual {
            false => Instant::now(),
            true => lock(&self.state).now,
        }
    }
}

/// Keeps the thread alive; the last one dropped tells the thread to end.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.changed.notify_one();
    }
}

/// Locks the state; a panic while it was held cannot leave it inconsistent
/// (every critical section is a single map operation), so poisoning is ignored.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Timer {
    /// Starts a timer and its thread (named `hologram-timer`).
    ///
    /// # Panics
    ///
    /// If the operating system cannot start a thread, as [`std::thread::spawn`].
    pub fn new() -> Timer {
        let shared = Shared::new(false);
        let for_thread = Arc::clone(&shared);
        // `Builder::spawn` only fails where `thread::spawn` would panic.
        std::thread::Builder::new()
            .name("hologram-timer".into())
            .spawn(move || run(&for_thread))
            .unwrap_or_else(|e| panic!("cannot start the timer thread: {e}"));
        Timer {
            handle: Arc::new(Handle { shared }),
        }
    }

    /// A timer on a virtual clock, for deterministic simulation: no thread;
    /// its time starts at the instant it is made and moves only with
    /// [`advance_to`](Self::advance_to), which wakes the sleeps it makes
    /// due. Sleeps and timeouts on it complete only as its owner moves the
    /// clock (an executor such as [`sim::Executor`](crate::sim::Executor)).
    ///
    /// ```
    /// use hologram_lattice::transport::Timer;
    /// use futures::FutureExt;
    /// use std::time::Duration;
    ///
    /// let timer = Timer::manual();
    /// let mut nap = timer.sleep(Duration::from_millis(10)).boxed();
    /// assert!((&mut nap).now_or_never().is_none());
    /// assert_eq!(timer.next_deadline(), Some(Duration::from_millis(10)));
    /// timer.advance_to(Duration::from_millis(10));
    /// assert!(nap.now_or_never().is_some());
    /// ```
    pub fn manual() -> Timer {
        Timer {
            handle: Arc::new(Handle {
                shared: Shared::new(true),
            }),
        }
    }

    /// Whether this is a [manual](Self::manual) timer.
    pub fn is_manual(&self) -> bool {
        self.handle.shared.manual
    }

    /// The time now on this timer's clock: the real [`Instant::now`], or a
    /// manual timer's virtual instant.
    pub fn now(&self) -> Instant {
        self.handle.shared.now()
    }

    /// The time since this timer was made: virtual for a manual timer.
    pub fn elapsed(&self) -> Duration {
        self.now()
            .saturating_duration_since(self.handle.shared.origin)
    }

    /// The earliest deadline a pending sleep waits for, as time since the
    /// timer was made (`None` when nothing waits).
    pub fn next_deadline(&self) -> Option<Duration> {
        let state = lock(&self.handle.shared.state);
        let (&(deadline, _), _) = state.wakers.first_key_value()?;
        Some(deadline.saturating_duration_since(self.handle.shared.origin))
    }

    /// Moves a manual timer's clock to `elapsed` since it was made (never
    /// back: an earlier time leaves it where it is), then wakes every sleep
    /// now due, earliest deadline first. Does nothing on a real timer,
    /// whose thread keeps the time.
    pub fn advance_to(&self, elapsed: Duration) {
        if !self.is_manual() {
            return;
        }
        let shared = &self.handle.shared;
        let target = shared.origin.checked_add(elapsed).unwrap_or(shared.origin);
        let due = {
            let mut state = lock(&shared.state);
            state.now = state.now.max(target);
            let now = state.now;
            let mut due = Vec::new();
            while let Some(entry) = state.wakers.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            due
        };
        due.into_iter().for_each(Waker::wake);
    }

    /// The instant `duration` from now on this timer's clock (see
    /// [`deadline_after`]).
    pub(crate) fn deadline_after(&self, duration: Duration) -> Instant {
        deadline_after(self.now(), duration)
    }

    /// A future that completes once `duration` has passed.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        self.sleep_until(self.deadline_after(duration))
    }

    /// A future that completes once `deadline` has passed.
    pub fn sleep_until(&self, deadline: Instant) -> Sleep {
        Sleep {
            handle: Arc::clone(&self.handle),
            deadline,
            key: None,
        }
    }

    /// Runs `future` for at most `duration`: `Some(output)` if it finished
    /// in time, `None` if the time ran out first (and `future` was dropped).
    pub async fn timeout<F: Future>(&self, duration: Duration, future: F) -> Option<F::Output> {
        self.timeout_at(self.deadline_after(duration), future).await
    }

    /// Runs `future` until `deadline` at the latest, as
    /// [`timeout`](Self::timeout). The future is polled before the clock is
    /// read, so one that is ready at once never times out and costs no
    /// registration.
    pub async fn timeout_at<F: Future>(&self, deadline: Instant, future: F) -> Option<F::Output> {
        let mut future = pin!(future);
        if let Poll::Ready(output) = poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await {
            return Some(output);
        }
        match select(future, self.sleep_until(deadline)).await {
            Either::Left((output, _)) => Some(output),
            Either::Right(((), _)) => None,
        }
    }
}

impl Default for Timer {
    fn default() -> Self {
        Timer::new()
    }
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pending = lock(&self.handle.shared.state).wakers.len();
        f.debug_struct("Timer").field("pending", &pending).finish()
    }
}

/// The instant `duration` after `now`; a duration too long for [`Instant`]
/// means "never": about thirty years from now.
fn deadline_after(now: Instant, duration: Duration) -> Instant {
    now.checked_add(duration)
        .or_else(|| now.checked_add(Duration::from_secs(30 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

/// The timer thread: wakes every due waker (outside the lock), then waits
/// until the earliest deadline or a change.
fn run(shared: &Shared) {
    let mut state = lock(&shared.state);
    loop {
        if state.shutdown {
            return;
        }
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(entry) = state.wakers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        if !due.is_empty() {
            drop(state);
            due.into_iter().for_each(Waker::wake);
            state = lock(&shared.state);
            continue;
        }
        state = match state.wakers.first_key_value() {
            None => shared
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
            Some((&(deadline, _), _)) => {
                shared
                    .changed
                    .wait_timeout(state, deadline.saturating_duration_since(now))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
        };
    }
}

/// The clock of the timer `handle` belongs to.
fn shared_now(handle: &Handle) -> Instant {
    handle.shared.now()
}

/// A future that completes once its deadline has passed; see [`Timer::sleep`].
#[must_use = "a Sleep does nothing unless awaited"]
pub struct Sleep {
    handle: Arc<Handle>,
    deadline: Instant,
    /// The key of this sleep's entry, once it has registered.
    key: Option<u64>,
}

impl Sleep {
    /// When this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Removes this sleep's entry, if it has one.
    fn deregister(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.handle.shared.state)
                .wakers
                .remove(&(self.deadline, key));
        }
    }
}

impl std::fmt::Debug for Sleep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if shared_now(&self.handle) >= self.deadline {
            self.deregister();
            return Poll::Ready(());
        }
        let shared = Arc::clone(&self.handle.shared);
        let mut state = lock(&shared.state);
        let key = match self.key {
            Some(key) => key,
            None => {
                let key = state.next_key;
                state.next_key = state.next_key.wrapping_add(1);
                self.key = Some(key);
                key
            }
        };
        match state.wakers.get_mut(&(self.deadline, key)) {
            Some(waker) => waker.clone_from(cx.waker()),
            None => {
                // First poll, or the thread fired the entry just before the
                // clock read above: (re-)register.
                state
                    .wakers
                    .insert((self.deadline, key), cx.waker().clone());
                let earliest = state.wakers.keys().next() == Some(&(self.deadline, key));
                if earliest && !shared.manual {
                    shared.changed.notify_one();
                }
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.deregister();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::future::join_all;

    #[test]
    fn sleep_waits_at_least_its_duration() {
        let timer = Timer::new();
        let start = Instant::now();
        block_on(timer.sleep(Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn many_concurrent_sleeps_all_wake_after_their_deadlines() {
        // Deadlines registered in scrambled order, some equal, some already
        // past: every one must complete, none early (a lost wakeup hangs).
        let timer = Timer::new();
        let start = Instant::now();
        let sleeps = (0..200u64).map(|i| {
            let ms = (i * 37) % 23;
            let timer = timer.clone();
            async move {
                let deadline = start + Duration::from_millis(ms);
                timer.sleep_until(deadline).await;
                Instant::now() >= deadline
            }
        });
        let on_time = block_on(join_all(sleeps));
        assert!(on_time.into_iter().all(|ok| ok));
        assert!(timer.handle.shared.state.lock().unwrap().wakers.is_empty());
    }

    #[test]
    fn sleeps_on_other_threads_share_one_timer() {
        let timer = Timer::new();
        let threads: Vec<_> = (0..4u64)
            .map(|i| {
                let timer = timer.clone();
                std::thread::spawn(move || {
                    let start = Instant::now();
                    block_on(timer.sleep(Duration::from_millis(5 + i * 3)));
                    start.elapsed()
                })
            })
            .collect();
        for (i, t) in threads.into_iter().enumerate() {
            let waited = t.join().unwrap();
            assert!(waited >= Duration::from_millis(5 + i as u64 * 3));
        }
    }

    #[test]
    fn timeout_returns_the_output_or_none() {
        let timer = Timer::new();
        let quick = block_on(timer.timeout(Duration::from_secs(10), async { 7 }));
        assert_eq!(quick, Some(7));
        let start = Instant::now();
        let slow = block_on(timer.timeout(
            Duration::from_millis(10),
            timer.sleep(Duration::from_secs(10)),
        ));
        assert_eq!(slow, None);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn dropped_sleeps_deregister() {
        let timer = Timer::new();
        let out = block_on(timer.timeout(
            Duration::from_millis(1),
            timer.sleep(Duration::from_secs(3600)),
        ));
        assert_eq!(out, None);
        assert!(timer.handle.shared.state.lock().unwrap().wakers.is_empty());
    }

    #[test]
    fn the_thread_ends_with_the_last_handle() {
        let timer = Timer::new();
        let shared = Arc::clone(&timer.handle.shared);
        drop(timer);
        let start = Instant::now();
        // The thread holds the other reference until it returns.
        while Arc::strong_count(&shared) > 1 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "thread still running"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
