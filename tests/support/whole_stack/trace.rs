//! The campaign's event trace: what every layer did, in order, so that two
//! runs of one seed can be compared event by event (`a_seed_replays_exactly`
//! in `tests/whole_stack.rs`).
//!
//! Recorded: every frame a node of the storage layer or of a replicated
//! group was handed (when, from whom, to whom, which protocol, a hash of the
//! bytes, and of the answer or the failure), every outcome a client saw
//! (stores, reads, releases; the groups' calls), and after every tick the
//! simulators' counters (steps, deliveries, losses, duplicates,
//! corruptions, drops, timers: each simulator is a pure function of its
//! seed and its inputs, so its counters and the inputs recorded here fix
//! its run) with the heights its honest validators committed. A trace that
//! is off records nothing and costs nothing.

use hologram_lattice::sim::Executor;
use hologram_lattice::transport::{async_trait, Handler, HandlerError, Protocol};
use hologram_lattice::{NodeId, PeerId};
use std::fmt::Display;
use std::sync::{Arc, Mutex, PoisonError};

/// A run's events, or nothing when off. Cheap to clone: clones share it.
#[derive(Clone, Default)]
pub struct Trace(Option<Arc<Mutex<Vec<String>>>>);

/// A short, stable name of bytes: the first 8 bytes of their BLAKE3 hash.
pub fn digest(bytes: &[u8]) -> String {
    let hash = blake3::hash(bytes);
    hash.as_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A short name of a node: the first 4 bytes of its id.
pub fn short(id: &NodeId) -> String {
    id.to_bytes()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Trace {
    /// A trace that records.
    pub fn on() -> Trace {
        Trace(Some(Arc::default()))
    }

    /// A trace that records nothing.
    pub fn off() -> Trace {
        Trace(None)
    }

    /// Whether it records.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Records one event (built only when the trace is on).
    pub fn record<D: Display>(&self, event: impl FnOnce() -> D) {
        if let Some(events) = &self.0 {
            let line = event().to_string();
            events
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line);
        }
    }

    /// The events so far.
    pub fn events(&self) -> Vec<String> {
        match &self.0 {
            Some(events) => events
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            None => Vec::new(),
        }
    }

    /// `handler` of node `node`, recording every frame it is handed (or
    /// `handler` itself when the trace is off).
    pub fn handler(
        &self,
        exec: &Executor,
        node: NodeId,
        handler: Arc<dyn Handler>,
    ) -> Arc<dyn Handler> {
        match self.is_on() {
            false => handler,
            true => Arc::new(Traced {
                trace: self.clone(),
                exec: exec.clone(),
                node,
                inner: handler,
            }),
        }
    }
}

/// The first event where two traces differ, with its neighbours, or `None`
/// if they are equal.
pub fn first_difference(a: &[String], b: &[String]) -> Option<String> {
    let at = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))?;
    let show = |t: &[String]| {
        t[at.saturating_sub(3)..(at + 1).min(t.len())]
            .iter()
            .map(|e| format!("    {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Some(format!(
        "the runs part at event {at} of {} and {}:\n  first run:\n{}\n  second run:\n{}",
        a.len(),
        b.len(),
        show(a),
        show(b)
    ))
}

/// A handler that records what it is handed, then hands it on.
struct Traced {
    trace: Trace,
    exec: Executor,
    node: NodeId,
    inner: Arc<dyn Handler>,
}

#[async_trait]
impl Handler for Traced {
    async fn request(
        &self,
        from: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        let (at, asked) = (self.exec.now(), digest(&payload));
        let answer = self.inner.request(from, protocol, payload).await;
        self.trace.record(|| {
            let answered = match &answer {
                Ok(bytes) => digest(bytes),
                Err(e) => e.to_string(),
            };
            format!(
                "{at}..{} request {} {}->{} {asked} answered {answered}",
                self.exec.now(),
                protocol.0,
                short(&from),
                short(&self.node)
            )
        });
        answer
    }

    async fn message(&self, from: PeerId, protocol: Protocol, payload: Vec<u8>) {
        self.trace.record(|| {
            format!(
                "{} message {} {}->{} {}",
                self.exec.now(),
                protocol.0,
                short(&from),
                short(&self.node),
                digest(&payload)
            )
        });
        self.inner.message(from, protocol, payload).await;
    }
}
