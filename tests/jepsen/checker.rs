//! A linearizability checker: Wing & Gong's search with Lowe's memoisation
//! of (linearized set, model state), over a doubly linked list of call and
//! return events as in Porcupine, generic over a sequential [`Model`].
//!
//! A history is a list of [`Operation`]s, each with its invocation time and
//! either a return (time and output) or an unknown outcome (a timeout: it
//! may or may not have taken effect, at any time after its invocation).
//! An operation that failed for certain (it had no effect) is left out of
//! the history by the caller. A history is linearizable iff there is one
//! total order of its returned operations and some of its unknown ones,
//! consistent with real time (an operation that returned before another was
//! invoked comes first), in which every output is the model's.
//!
//! On a violation, [`check`] reports the minimal failing window: the
//! operation whose return no partial linearization gets past (the culprit:
//! the longest linearizable prefix of the history ends just before its
//! return), the operations concurrent with it, and the states the model
//! could be in when it had to take effect.

use std::collections::HashSet;
use std::fmt::{self, Debug, Write as _};
use std::hash::Hash;

/// A sequential specification.
pub trait Model {
    /// The model's state (compared and hashed for memoisation).
    type State: Clone + Eq + Hash + Debug;
    /// What an operation asks.
    type Input: Clone + Debug;
    /// What an operation answers.
    type Output: Clone + Debug;

    /// The initial state.
    fn init(&self) -> Self::State;

    /// The state after `input` is applied to `state` and answers `output`
    /// (`None`: unknown, any answer), or `None` if the specification cannot
    /// answer that. With an unknown output the step must succeed: an
    /// operation of unknown outcome can always take effect.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<O> {
    /// It returned `output` at time `at`. An operation whose client never
    /// heard back but whose effect was observed later (its output known) is
    /// `Returned` at `u64::MAX`: it must be linearized, at any time after its
    /// invocation.
    Returned {
        /// When it returned (the history's clock).
        at: u64,
        /// What it answered.
        output: O,
    },
    /// Unknown: it may take effect at any time after its invocation, or never.
    Unknown,
}

/// One operation of a history.
#[derive(Clone, Debug)]
pub struct Operation<I, O> {
    /// The client (process) that ran it.
    pub process: usize,
    /// What it asked.
    pub input: I,
    /// When it was invoked (the history's clock, e.g. ns since the start).
    pub call: u64,
    /// How it ended.
    pub outcome: Outcome<O>,
}

impl<I, O> Operation<I, O> {
    /// Its return time, `u64::MAX` if unknown (open-ended).
    pub fn ret(&self) -> u64 {
        match self.outcome {
            Outcome::Returned { at, .. } => at,
            Outcome::Unknown => u64::MAX,
        }
    }

    fn output(&self) -> Option<&O> {
        match &self.outcome {
            Outcome::Returned { output, .. } => Some(output),
            Outcome::Unknown => None,
        }
    }
}

/// The history of a model.
pub type History<M> = Vec<Operation<<M as Model>::Input, <M as Model>::Output>>;

/// The most configurations one search may memoise before it gives up.
pub const MAX_CONFIGURATIONS: usize = 4_000_000;

/// Why a history was not shown linearizable.
#[derive(Debug)]
pub enum CheckError<S> {
    /// No linearization exists.
    Violation(Violation<S>),
    /// The search memoised [`MAX_CONFIGURATIONS`] configurations.
    TooBig {
        /// Configurations explored.
        explored: usize,
    },
}

/// A non-linearizable history's minimal failing window.
#[derive(Debug)]
pub struct Violation<S> {
    /// The operation (index into the history) whose return no partial
    /// linearization gets past.
    pub culprit: usize,
    /// The operations concurrent with it, and it, by invocation time.
    pub window: Vec<usize>,
    /// How many operations were invoked by its return (the failing prefix).
    pub prefix_ops: usize,
    /// Some states the model was in, everything linearizable before it
    /// linearized, when it could not take effect.
    pub states_before: Vec<S>,
}

impl<S: Debug> Violation<S> {
    /// The window, printed with the seed that produced the history.
    pub fn render<I: Debug, O: Debug>(&self, history: &[Operation<I, O>], seed: u64) -> String {
        let mut out = format!(
            "NOT LINEARIZABLE (seed {seed}): no linearization gets past the return of operation {}; \
             {} of {} operations were invoked by then. Window (operations concurrent with it):\n",
            self.culprit,
            self.prefix_ops,
            history.len(),
        );
        for &i in &self.window {
            let op = &history[i];
            let mark = if i == self.culprit { "=>" } else { "  " };
            let end = match &op.outcome {
                Outcome::Returned {
                    at: u64::MAX,
                    output,
                } => {
                    format!("took effect (seen later), return unknown: {output:?}")
                }
                Outcome::Returned { at, output } => format!("returned at {at}: {output:?}"),
                Outcome::Unknown => "unknown outcome".into(),
            };
            let _ = writeln!(
                out,
                "{mark} #{i} process {} invoked at {}: {:?}, {end}",
                op.process, op.call, op.input
            );
        }
        if self.states_before.is_empty() {
            out.push_str("no state of the model reaches the culprit's invocation\n");
        }
        for s in &self.states_before {
            let _ = writeln!(out, "   a possible state before it: {s:?}");
        }
        out
    }
}

impl<S: Debug> fmt::Display for CheckError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Violation(v) => write!(f, "not linearizable at operation {}", v.culprit),
            CheckError::TooBig { explored } => {
                write!(f, "gave up after {explored} configurations")
            }
        }
    }
}

/// Checks `history` against `model`: a linearization (operation indices in
/// order; unknown ones left out were never applied), or why there is none.
pub fn check<M: Model>(
    model: &M,
    history: &History<M>,
) -> Result<Vec<usize>, CheckError<M::State>> {
    let stuck = match search(model, history) {
        Search::Linearizable(order) => return Ok(order),
        Search::TooBig(explored) => return Err(CheckError::TooBig { explored }),
        Search::Failed(stuck) => stuck,
    };
    // Every partial linearization died at or before the return of
    // `culprit`: the longest linearizable prefix ends just before it.
    let culprit = stuck.op;
    let c = &history[culprit];
    let mut window: Vec<usize> = (0..history.len())
        .filter(|&i| history[i].call <= c.ret() && history[i].ret() >= c.call)
        .collect();
    window.sort_by_key(|&i| (history[i].call, i));
    Err(CheckError::Violation(Violation {
        culprit,
        window,
        prefix_ops: history.iter().filter(|op| op.call <= c.ret()).count(),
        states_before: stuck.states,
    }))
}

/// A set of operation indices.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn flip(&mut self, i: usize) {
        self.0[i / 64] ^= 1 << (i % 64);
    }
}

enum Search<S> {
    Linearizable(Vec<usize>),
    /// Every configuration explored: the furthest return no partial
    /// linearization got past.
    Failed(Stuck<S>),
    TooBig(usize),
}

/// Where the search got furthest: the operation whose return it could not
/// pass, and (up to 4 of) the states it was in there.
struct Stuck<S> {
    op: usize,
    rank: usize,
    states: Vec<S>,
}

/// No event.
const NIL: usize = usize::MAX;

fn search<M: Model>(model: &M, ops: &History<M>) -> Search<M::State> {
    let n = ops.len();
    // Events 0..n are calls, n..2n returns; `head` is the list's sentinel.
    let mut events: Vec<usize> = (0..2 * n).collect();
    let time = |e: usize| if e < n { ops[e].call } else { ops[e - n].ret() };
    // At equal times calls come first: such operations are concurrent.
    events.sort_by_key(|&e| (time(e), e >= n, e));
    let head = 2 * n;
    let mut next = vec![NIL; 2 * n + 1];
    let mut prev = vec![NIL; 2 * n + 1];
    let mut rank = vec![0; 2 * n];
    for (k, &e) in events.iter().enumerate() {
        rank[e] = k;
    }
    let mut last = head;
    for &e in &events {
        next[last] = e;
        prev[e] = last;
        last = e;
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        next[prev[e]] = next[e];
        if next[e] != NIL {
            prev[next[e]] = prev[e];
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        next[prev[e]] = e;
        if next[e] != NIL {
            prev[next[e]] = e;
        }
    };
    let returned = ops
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Returned { .. }))
        .count();
    let mut done = 0;
    let mut linearized = Bits::new(n);
    let mut state = model.init();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut cache: HashSet<(Bits, M::State)> = HashSet::new();
    let mut entry = next[head];
    let mut stuck: Option<Stuck<M::State>> = None;
    loop {
        if done == returned {
            return Search::Linearizable(stack.iter().map(|(op, _)| *op).collect());
        }
        if entry != NIL && entry < n {
            let op = entry;
            if let Some(after) = model.step(&state, &ops[op].input, ops[op].output()) {
                let mut set = linearized.clone();
                set.flip(op);
                if cache.insert((set.clone(), after.clone())) {
                    if cache.len() > MAX_CONFIGURATIONS {
                        return Search::TooBig(cache.len());
                    }
                    stack.push((op, std::mem::replace(&mut state, after)));
                    linearized = set;
                    done += usize::from(ops[op].output().is_some());
                    unlink(&mut next, &mut prev, op);
                    unlink(&mut next, &mut prev, op + n);
                    entry = next[head];
                    continue;
                }
            }
            entry = next[entry];
            continue;
        }
        // A return (of an operation not linearized): remember the furthest,
        // undo the last step and try the next candidate after it.
        if entry != NIL {
            match &mut stuck {
                Some(s) if rank[entry] < s.rank => {}
                Some(s) if rank[entry] == s.rank => {
                    if s.states.len() < 4 && !s.states.contains(&state) {
                        s.states.push(state.clone());
                    }
                }
                _ => {
                    stuck = Some(Stuck {
                        op: entry - n,
                        rank: rank[entry],
                        states: vec![state.clone()],
                    })
                }
            }
        }
        let Some((op, before)) = stack.pop() else {
            return Search::Failed(stuck.expect("a history that fails has a return"));
        };
        state = before;
        linearized.flip(op);
        done -= usize::from(ops[op].output().is_some());
        relink(&mut next, &mut prev, op + n);
        relink(&mut next, &mut prev, op);
        entry = next[op];
    }
}
