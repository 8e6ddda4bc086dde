//! A deterministic executor for async code inside a simulation.
//!
//! Protocol cores run in the [`Simulation`](super::Simulation) itself; code
//! that is async all the way down (a client over a [`Transport`], a
//! [`Driver`](crate::driver::Driver) with its inbox) runs on an
//! [`Executor`] instead: one thread, the caller's, and one
//! [manual](Timer::manual) timer whose virtual clock moves only when the
//! executor has nothing left to run. Give that timer to everything the
//! tasks sleep or time out on (a [`MemoryNetwork`](crate::transport::MemoryNetwork)
//! made [`with_timer`](crate::transport::MemoryNetwork::with_timer), a
//! driver's `timer`), and which frames are lost, which requests time out
//! and in which order tasks run are a function of the seed and the calls
//! alone: a run replays exactly.
//!
//! Tasks run in the order they were woken (a task woken twice before it
//! runs runs once), each until it is pending; when none is ready the clock
//! moves to the earliest deadline a sleep waits for and the sleeps due then
//! wake, earliest first. Nothing here spawns a thread or reads the wall
//! clock.
//!
//! [`Transport`]: crate::transport::Transport

use super::Millis;
use crate::transport::Timer;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// The most task polls one [`Executor::run_ready`] makes: a task that wakes
/// itself forever cannot hang the simulation (the rest wait for the next
/// call).
pub const POLLS_PER_RUN: usize = 1 << 20;

/// A single-threaded executor on a virtual clock, for async code inside a
/// simulation.
///
/// Protocol cores run in the [`Simulation`](super::Simulation) itself; code
/// that is async all the way down (a client over a
/// [`Transport`](crate::transport::Transport), a
/// [`Driver`](crate::driver::Driver) with its inbox) runs here instead: one
/// thread, the caller's, and one [manual](Timer::manual) timer whose virtual
/// clock moves only when nothing is left to run. Give that timer to
/// everything the tasks sleep or time out on (a
/// [`MemoryNetwork`](crate::transport::MemoryNetwork) made
/// [`with_timer`](crate::transport::MemoryNetwork::with_timer), a driver's
/// `timer`), and which frames are lost, which requests time out and in which
/// order tasks run are a function of the seed and the calls alone: a run
/// replays exactly.
///
/// Tasks run in the order they were woken (a task woken twice before it
/// runs runs once), each until it is pending; when none is ready the clock
/// moves to the earliest deadline a sleep waits for and the sleeps due then
/// wake, earliest first. Nothing here spawns a thread or reads the wall
/// clock.
///
/// Cloning is cheap and shares the tasks and the clock. Its methods must
/// not be called from inside one of its own tasks.
///
/// ```
/// use hologram_lattice::sim::Executor;
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// let exec = Executor::new();
/// let log = Arc::new(Mutex::new(Vec::new()));
/// for (name, ms) in [("slow", 30), ("fast", 10)] {
///     let (timer, log) = (exec.timer().clone(), Arc::clone(&log));
///     exec.spawn(async move {
///         timer.sleep(Duration::from_millis(ms)).await;
///         log.lock().unwrap().push((name, timer.elapsed().as_millis()));
///     });
/// }
/// exec.run_until(20);
/// assert_eq!(*log.lock().unwrap(), [("fast", 10)]);
/// // A future run to completion moves the clock as far as it needs.
/// let timer = exec.timer().clone();
/// let out = exec.block_on(async { timer.sleep(Duration::from_millis(50)).await; 7 }, Duration::from_secs(1));
/// assert_eq!(out, Some(7));
/// assert_eq!(exec.now(), 70);
/// assert_eq!(*log.lock().unwrap(), [("fast", 10), ("slow", 30)]);
/// ```
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

/// The tasks, the queue of woken ones, and the clock.
struct Inner {
    timer: Timer,
    tasks: Mutex<Tasks>,
    ready: Arc<Ready>,
}

/// Each task's future (`None` while it is being polled), by number.
#[derive(Default)]
struct Tasks {
    futures: BTreeMap<u64, Option<BoxFuture<'static, ()>>>,
    next: u64,
}

/// The tasks woken and not yet run, in the order they were woken.
#[derive(Default)]
struct Ready {
    queue: Mutex<(VecDeque<u64>, BTreeSet<u64>)>,
}

impl Ready {
    fn push(&self, task: u64) {
        let mut guard = lock(&self.queue);
        let (queue, queued) = &mut *guard;
        if queued.insert(task) {
            queue.push_back(task);
        }
    }

    fn pop(&self) -> Option<u64> {
        let mut guard = lock(&self.queue);
        let (queue, queued) = &mut *guard;
        let task = queue.pop_front()?;
        queued.remove(&task);
        Some(task)
    }
}

/// Wakes one task: queues it.
struct TaskWaker {
    task: u64,
    ready: Arc<Ready>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.ready.push(self.task);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.push(self.task);
    }
}

/// Wakes the future given to [`Executor::block_on`]: raises a flag.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

// Every critical section is one map or queue operation: a panic elsewhere
// cannot leave the state inconsistent, so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds of a duration, saturating.
fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

impl Executor {
    /// An executor with no tasks, its clock at zero.
    pub fn new() -> Executor {
        Executor {
            inner: Arc::new(Inner {
                timer: Timer::manual(),
                tasks: Mutex::new(Tasks::default()),
                ready: Arc::new(Ready::default()),
            }),
        }
    }

    /// The executor's clock: a [manual](Timer::manual) timer. Sleeps and
    /// timeouts of its tasks must use it (or a clone).
    pub fn timer(&self) -> &Timer {
        &self.inner.timer
    }

    /// The virtual time now, in milliseconds since the executor was made.
    pub fn now(&self) -> Millis {
        millis(self.inner.timer.elapsed())
    }

    /// How many tasks have not finished.
    pub fn tasks(&self) -> usize {
        lock(&self.inner.tasks).futures.len()
    }

    /// Adds a task; it first runs at the next [`run_ready`](Self::run_ready)
    /// (or a call that runs the tasks).
    pub fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        let task = {
            let mut tasks = lock(&self.inner.tasks);
            let task = tasks.next;
            tasks.next += 1;
            tasks.futures.insert(task, Some(Box::pin(future)));
            task
        };
        self.inner.ready.push(task);
    }

    /// Runs the woken tasks, in the order they were woken, until none is
    /// (at most [`POLLS_PER_RUN`] polls); the clock does not move. Returns
    /// how many polls it made.
    pub fn run_ready(&self) -> usize {
        let mut polls = 0;
        while polls < POLLS_PER_RUN {
            let Some(task) = self.inner.ready.pop() else {
                break;
            };
            // Out of the map while it runs, so that it may spawn.
            let future = lock(&self.inner.tasks)
                .futures
                .get_mut(&task)
                .and_then(Option::take);
            let Some(mut future) = future else {
                continue;
            };
            polls += 1;
            let waker = Waker::from(Arc::new(TaskWaker {
                task,
                ready: Arc::clone(&self.inner.ready),
            }));
            let done = future
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready();
            let mut tasks = lock(&self.inner.tasks);
            match done {
                true => {
                    tasks.futures.remove(&task);
                }
                false => {
                    if let Some(slot) = tasks.futures.get_mut(&task) {
                        *slot = Some(future);
                    }
                }
            }
        }
        polls
    }

    /// Runs the tasks and moves the clock to `time` (virtual milliseconds
    /// since the executor was made): every sleep due by then wakes, at its
    /// deadline, and what it wakes runs. A time already passed only runs
    /// the woken tasks.
    pub fn run_until(&self, time: Millis) {
        let timer = &self.inner.timer;
        let until = Duration::from_millis(time);
        loop {
            self.run_ready();
            match timer.next_deadline() {
                Some(due) if due <= until => timer.advance_to(due),
                _ => break,
            }
        }
        timer.advance_to(until);
        self.run_ready();
    }

    /// Runs `future` to completion on this thread, with the tasks: whenever
    /// neither it nor a task can go on, the clock moves to the next
    /// deadline. Returns `None` if it has not completed once `within` of
    /// virtual time has passed, or when nothing is left that could wake it
    /// (no task ready, no sleep pending: it would wait forever).
    pub fn block_on<F: Future>(&self, future: F, within: Duration) -> Option<F::Output> {
        let timer = &self.inner.timer;
        let limit = timer.elapsed().saturating_add(within);
        let flag = Arc::new(Flag(AtomicBool::new(true)));
        let waker = Waker::from(Arc::clone(&flag));
        let mut future = pin!(future);
        loop {
            if flag.0.swap(false, Ordering::SeqCst) {
                if let Poll::Ready(out) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
                    return Some(out);
                }
            }
            self.run_ready();
            if flag.0.load(Ordering::SeqCst) {
                continue;
            }
            match timer.next_deadline() {
                Some(due) if due <= limit => timer.advance_to(due),
                Some(_) => {
                    timer.advance_to(limit);
                    self.run_ready();
                    return None;
                }
                None => return None,
            }
        }
    }
}

impl Default for Executor {
    fn default() -> Self {
        Executor::new()
    }
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("now_ms", &self.now())
            .field("tasks", &self.tasks())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Faults;
    use crate::transport::{
        async_trait, Handler, HandlerError, MemoryNetwork, Protocol, Transport,
    };
    use crate::PeerId;

    /// Answers a request after a sleep on the executor's clock.
    struct Slow(Timer);

    #[async_trait]
    impl Handler for Slow {
        async fn request(
            &self,
            _: PeerId,
            _: Protocol,
            p: Vec<u8>,
        ) -> Result<Vec<u8>, HandlerError> {
            let ms = u64::from(p.first().copied().unwrap_or(0) % 7);
            self.0.sleep(Duration::from_millis(ms)).await;
            Ok(p)
        }
        async fn message(&self, _: PeerId, _: Protocol, _: Vec<u8>) {}
    }

    /// Twenty clients each send ten requests over a lossy, slow, duplicating
    /// network on the executor; returns every outcome with its virtual time.
    fn run(seed: u64) -> Vec<(u64, u8, String, Millis)> {
        let exec = Executor::new();
        let net = MemoryNetwork::with_timer(seed, exec.timer().clone());
        net.set_faults(Faults {
            loss: 0.2,
            duplicate: 0.1,
            corrupt: 0.05,
            latency_ms: (1, 9),
        });
        let server = PeerId::from_bytes([0xff; 32]);
        let _s = net.join(server, Arc::new(Slow(exec.timer().clone())));
        let log = Arc::new(Mutex::new(Vec::new()));
        for c in 0..20u8 {
            let t = net.join(
                PeerId::from_bytes([c; 32]),
                Arc::new(Slow(exec.timer().clone())),
            );
            let (log, exec2) = (Arc::clone(&log), exec.clone());
            exec.spawn(async move {
                for i in 0..10u8 {
                    let r = t
                        .request(
                            server,
                            Protocol::PING,
                            vec![c ^ i, i],
                            Duration::from_millis(12),
                        )
                        .await;
                    lock(&log).push((u64::from(c), i, format!("{r:?}"), exec2.now()));
                }
            });
        }
        exec.run_until(10_000);
        assert_eq!(exec.tasks(), 0, "every client finished");
        let out = lock(&log).clone();
        out
    }

    #[test]
    fn a_seed_replays_exactly_and_seeds_differ() {
        let first = run(3);
        assert_eq!(first.len(), 200);
        assert!(
            first.iter().any(|e| e.2.contains("TimedOut")),
            "some requests are lost"
        );
        assert!(
            first.iter().any(|e| e.2.starts_with("Ok")),
            "most are answered"
        );
        assert_eq!(first, run(3), "the same seed, the same run");
        assert_ne!(first, run(4), "another seed, another run");
    }

    #[test]
    fn run_until_wakes_sleeps_in_deadline_order_and_stops_at_the_time() {
        let exec = Executor::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        for ms in [30u64, 10, 20, 10, 50] {
            let (timer, log) = (exec.timer().clone(), Arc::clone(&log));
            exec.spawn(async move {
                timer.sleep(Duration::from_millis(ms)).await;
                lock(&log).push((ms, timer.elapsed()));
            });
        }
        exec.run_until(35);
        let seen: Vec<u64> = lock(&log).iter().map(|e| e.0).collect();
        assert_eq!(seen, [10, 10, 20, 30]);
        assert!(lock(&log).iter().all(|e| e.1 == Duration::from_millis(e.0)));
        assert_eq!(exec.now(), 35);
        assert_eq!(exec.tasks(), 1);
    }

    #[test]
    fn block_on_gives_up_after_its_virtual_limit_or_when_nothing_can_wake_it() {
        let exec = Executor::new();
        let timer = exec.timer().clone();
        let long = exec.block_on(timer.sleep(Duration::from_secs(5)), Duration::from_secs(1));
        assert_eq!(long, None);
        assert_eq!(exec.now(), 1_000);
        let never = exec.block_on(futures::future::pending::<()>(), Duration::from_secs(1));
        assert_eq!(never, None);
        assert_eq!(exec.now(), 1_000, "no sleep pending: the clock stays");
        let timed_out = exec.block_on(
            timer.timeout(Duration::from_millis(5), futures::future::pending::<()>()),
            Duration::from_secs(1),
        );
        assert_eq!(timed_out, Some(None));
        assert_eq!(exec.now(), 1_005);
    }
}
