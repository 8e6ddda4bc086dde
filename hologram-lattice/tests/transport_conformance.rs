//! The transport conformance suite: `MemoryNetwork` passes it, and each
//! deliberately broken transport fails it at the check its flaw breaks.

use futures::channel::oneshot;
use futures::executor::block_on;
use futures::future::{BoxFuture, FutureExt};
use hologram_lattice::transport::conformance::{self, TestNetwork};
use hologram_lattice::transport::{
    async_trait, check_frame, Handler, HandlerError, MemoryNetwork, Protocol, Timer, Transport,
    TransportError,
};
use hologram_lattice::PeerId;
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Each spawned task on a thread of its own.
fn spawn_thread(task: BoxFuture<'static, ()>) {
    std::thread::spawn(move || block_on(task));
}

struct Memory(MemoryNetwork);

#[async_trait]
impl TestNetwork for Memory {
    async fn node(
        &mut self,
        id: PeerId,
        handler: Arc<dyn Handler>,
    ) -> Result<Arc<dyn Transport>, String> {
        Ok(Arc::new(self.0.join(id, handler)))
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        spawn_thread(task)
    }
}

#[test]
fn memory_network_passes() {
    let outcome = block_on(conformance::run(&mut Memory(MemoryNetwork::new(5))));
    assert_eq!(outcome, Ok(()));
}

/// A small in-process transport that calls the receiver's handler directly,
/// correct unless given a flaw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    None,
    /// Answers go to callers in the order the calls started.
    CrossesAnswers,
    /// Waits for the answer however long it takes.
    IgnoresTimeout,
    /// A handler's panic unwinds into the caller.
    PanicsReachCaller,
    /// No size limit on requests or answers.
    NoSizeLimit,
    /// Cannot call its own node.
    NoSelfCalls,
    /// Hands the receiver a wrong sender id.
    WrongFrom,
    /// Refuses every request with `Unreachable`.
    Unreachable,
}

const MAX: usize = 64 * 1024;

/// The callers of a `CrossesAnswers` transport waiting for an answer.
type Waiting = Arc<Mutex<VecDeque<oneshot::Sender<Result<Vec<u8>, TransportError>>>>>;

#[derive(Clone)]
struct Direct {
    id: PeerId,
    flaw: Flaw,
    handlers: Arc<Mutex<HashMap<PeerId, Arc<dyn Handler>>>>,
    /// For `CrossesAnswers`: the callers waiting, in the order they started.
    waiting: Waiting,
    timer: Timer,
}

impl Direct {
    fn handler(&self, to: PeerId) -> Result<Arc<dyn Handler>, TransportError> {
        if self.flaw == Flaw::NoSelfCalls && to == self.id {
            return Err(TransportError::Unreachable(to));
        }
        let handlers = self.handlers.lock().unwrap();
        handlers
            .get(&to)
            .cloned()
            .ok_or(TransportError::Unreachable(to))
    }

    fn from(&self) -> PeerId {
        match self.flaw {
            Flaw::WrongFrom => PeerId::from_bytes([0x77; 32]),
            _ => self.id,
        }
    }

    async fn call(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError> {
        let handler = self.handler(to)?;
        let call = handler.request(self.from(), protocol, payload);
        let answer = if self.flaw == Flaw::PanicsReachCaller {
            call.await
        } else {
            AssertUnwindSafe(call)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(HandlerError::Failed("the handler panicked".into())))
        };
        let answer = answer?;
        if self.flaw != Flaw::NoSizeLimit {
            check_frame(answer.len(), MAX)?;
        }
        Ok(answer)
    }
}

#[async_trait]
impl Transport for Direct {
    fn local_id(&self) -> PeerId {
        self.id
    }

    fn max_frame(&self) -> usize {
        MAX
    }

    async fn request(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        if self.flaw == Flaw::Unreachable {
            return Err(TransportError::Unreachable(to));
        }
        if self.flaw != Flaw::NoSizeLimit {
            check_frame(payload.len(), MAX)?;
        }
        if self.flaw == Flaw::IgnoresTimeout {
            return self.call(to, protocol, payload).await;
        }
        let call = async {
            if self.flaw != Flaw::CrossesAnswers {
                return self.call(to, protocol, payload).await;
            }
            let (mine, answer) = oneshot::channel();
            self.waiting.lock().unwrap().push_back(mine);
            let got = self.call(to, protocol, payload).await;
            if let Some(first) = self.waiting.lock().unwrap().pop_front() {
                let _ = first.send(got);
            }
            answer.await.unwrap_or(Err(TransportError::Closed))
        };
        self.timer
            .timeout(timeout, call)
            .await
            .unwrap_or(Err(TransportError::TimedOut { peer: to, timeout }))
    }

    async fn send(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<(), TransportError> {
        if self.flaw != Flaw::NoSizeLimit {
            check_frame(payload.len(), MAX)?;
        }
        let handler = self.handler(to)?;
        let delivery = handler.message(self.from(), protocol, payload);
        if self.flaw == Flaw::PanicsReachCaller {
            delivery.await;
        } else {
            let _ = AssertUnwindSafe(delivery).catch_unwind().await;
        }
        Ok(())
    }
}

struct DirectNetwork {
    flaw: Flaw,
    handlers: Arc<Mutex<HashMap<PeerId, Arc<dyn Handler>>>>,
    waiting: Waiting,
    timer: Timer,
}

#[async_trait]
impl TestNetwork for DirectNetwork {
    async fn node(
        &mut self,
        id: PeerId,
        handler: Arc<dyn Handler>,
    ) -> Result<Arc<dyn Transport>, String> {
        self.handlers.lock().unwrap().insert(id, handler);
        Ok(Arc::new(Direct {
            id,
            flaw: self.flaw,
            handlers: Arc::clone(&self.handlers),
            waiting: Arc::clone(&self.waiting),
            timer: self.timer.clone(),
        }))
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        spawn_thread(task)
    }
}

fn run_with(flaw: Flaw) -> Result<(), conformance::Failure> {
    let mut network = DirectNetwork {
        flaw,
        handlers: Arc::default(),
        waiting: Arc::default(),
        timer: Timer::new(),
    };
    block_on(conformance::run(&mut network))
}

fn fails_at(flaw: Flaw, check: &str) {
    match run_with(flaw) {
        Ok(()) => panic!("a transport with flaw {flaw:?} passed the suite"),
        Err(failure) => assert_eq!(failure.check, check, "{flaw:?}: {failure}"),
    }
}

#[test]
fn the_direct_transport_without_flaws_passes() {
    assert_eq!(run_with(Flaw::None), Ok(()));
}

#[test]
fn crossed_answers_fail_the_concurrent_check() {
    fails_at(Flaw::CrossesAnswers, "concurrent");
}

#[test]
fn an_ignored_timeout_fails_the_slow_handler_check() {
    fails_at(Flaw::IgnoresTimeout, "slow handler");
}

#[test]
fn a_panic_reaching_the_caller_fails_the_handler_panic_check() {
    fails_at(Flaw::PanicsReachCaller, "handler panic");
}

#[test]
fn no_size_limit_fails_the_request_too_large_check() {
    fails_at(Flaw::NoSizeLimit, "request too large");
}

#[test]
fn no_self_calls_fail_the_self_request_check() {
    fails_at(Flaw::NoSelfCalls, "self request");
}

#[test]
fn a_wrong_sender_fails_the_round_trip_check() {
    fails_at(Flaw::WrongFrom, "round trip");
}

#[test]
fn refusing_everything_fails_the_round_trip_check() {
    fails_at(Flaw::Unreachable, "round trip");
}
