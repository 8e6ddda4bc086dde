//! What a run recorded, and the checks on it: the nodes' logs are prefixes
//! of one another; the final log holds every acknowledged command exactly
//! once, at its acknowledged position, nothing answered "not applied" and
//! nothing nobody submitted; the history (appends, and the final read of the
//! log) is linearizable against the append-only log model; every status a
//! node reported during the run (its applied count and chain head, a local
//! read) is a prefix of the final log, and no node's shrinks.

use super::checker::{check, CheckError, History, Operation, Outcome};
use super::kv_workload::KvRecord;
use super::models::{AppendLog, LogInput, LogOutput};
use hologram::receipt::ChainHead;
use std::collections::HashMap;

/// How a submitted command ended for its client.
#[derive(Clone, Debug, PartialEq)]
pub enum End {
    /// Acknowledged: applied at this position of the log.
    Acked {
        /// When the acknowledgement arrived.
        at: u64,
        /// Where it was applied.
        position: u64,
    },
    /// Answered "decided, not applied": it never takes effect.
    NotApplied,
    /// Timed out or failed on the way at every node tried.
    Unknown,
}

/// One command of the workload.
#[derive(Clone, Debug)]
pub struct Op {
    /// The client that submitted it.
    pub client: usize,
    /// The value its payload names (unique in a run).
    pub value: u64,
    /// When it was first submitted.
    pub call: u64,
    /// How it ended.
    pub end: End,
}

/// A node's status, read during the run.
#[derive(Clone, Debug)]
pub struct StatusRead {
    /// The node read.
    pub node: usize,
    /// When it was asked.
    pub call: u64,
    /// Commands it had applied.
    pub applied: u64,
    /// The head of its chain over them.
    pub head: ChainHead,
}

/// Everything a run recorded (times in ns since the run began).
#[derive(Clone, Debug, Default)]
pub struct RunRecord {
    /// The fault schedule's seed.
    pub seed: u64,
    /// Every command submitted.
    pub ops: Vec<Op>,
    /// Each node's log at the end, as the values of its commands (`None`: a
    /// command whose payload is not the workload's).
    pub logs: Vec<Vec<Option<u64>>>,
    /// The chain heads of the longest log's prefixes (`heads[k]` after `k`
    /// commands).
    pub heads: Vec<ChainHead>,
    /// When the final logs were asked for, and when the last arrived.
    pub final_read: (u64, u64),
    /// Statuses read during the run.
    pub reads: Vec<StatusRead>,
    /// The key-value operations (also commands of `ops`), checked by
    /// `verify_kv`.
    pub kv: Vec<KvRecord>,
}

/// What the checks counted.
#[derive(Clone, Debug, Default)]
pub struct Checked {
    /// Operations in the history checked (the final read included).
    pub operations: usize,
    /// Acknowledged commands.
    pub acked: usize,
    /// Commands of unknown outcome, and how many of them were applied.
    pub unknown: (usize, usize),
    /// Commands answered "not applied".
    pub not_applied: usize,
    /// The final log's length.
    pub log: usize,
    /// Status reads checked.
    pub reads: usize,
    /// Status reads behind an acknowledgement received before they were
    /// asked (local reads are not linearizable).
    pub stale_reads: usize,
}

/// Runs every check on `run`; the violations found, each described.
pub fn check_run(run: &RunRecord) -> Result<Checked, Vec<String>> {
    let mut bad = Vec::new();
    // Prefixes of one another.
    for a in 0..run.logs.len() {
        for b in a + 1..run.logs.len() {
            let (x, y) = (&run.logs[a], &run.logs[b]);
            if let Some(at) = (0..x.len().min(y.len())).find(|&k| x[k] != y[k]) {
                bad.push(format!(
                    "nodes {a} and {b} diverge at position {at}: {:?} against {:?}",
                    x[at], y[at]
                ));
            }
        }
    }
    let empty = Vec::new();
    let log = run.logs.iter().max_by_key(|l| l.len()).unwrap_or(&empty);
    let by_value: HashMap<u64, &Op> = run.ops.iter().map(|op| (op.value, op)).collect();
    let mut position: HashMap<u64, usize> = HashMap::new();
    for (at, entry) in log.iter().enumerate() {
        match entry {
            None => bad.push(format!("position {at} holds a command nobody submitted")),
            Some(v) if !by_value.contains_key(v) => {
                bad.push(format!("position {at} holds {v}, never submitted"))
            }
            Some(v) => {
                if let Some(first) = position.insert(*v, at) {
                    bad.push(format!("{v} applied twice, at {first} and {at}"));
                }
            }
        }
    }
    let mut checked = Checked {
        log: log.len(),
        reads: run.reads.len(),
        ..Checked::default()
    };
    for op in &run.ops {
        match op.end {
            End::Acked { position: p, .. } => {
                checked.acked += 1;
                match position.get(&op.value) {
                    None => bad.push(format!(
                        "{} (client {}) was acknowledged at position {p} and is not in the log",
                        op.value, op.client
                    )),
                    Some(&at) if at as u64 != p => bad.push(format!(
                        "{} was acknowledged at position {p} and sits at {at}",
                        op.value
                    )),
                    Some(_) => {}
                }
            }
            End::NotApplied => {
                checked.not_applied += 1;
                if let Some(at) = position.get(&op.value) {
                    bad.push(format!(
                        "{} was answered not applied and sits at {at}",
                        op.value
                    ));
                }
            }
            End::Unknown => {
                checked.unknown.0 += 1;
                checked.unknown.1 += usize::from(position.contains_key(&op.value));
            }
        }
    }
    // Local reads: each a prefix of the final log, and each node's never
    // shrinking (a restarted node recovers what it applied). Stale ones
    // (behind an acknowledgement received before they were asked) counted.
    let mut acks: Vec<(u64, u64)> = run
        .ops
        .iter()
        .filter_map(|op| match op.end {
            End::Acked { at, position } => Some((at, position + 1)),
            _ => None,
        })
        .collect();
    acks.sort_unstable();
    let mut known = 0;
    for ack in &mut acks {
        known = known.max(ack.1);
        ack.1 = known;
    }
    let mut last: HashMap<usize, u64> = HashMap::new();
    for read in &run.reads {
        let before = acks.partition_point(|&(at, _)| at < read.call);
        if before > 0 && read.applied < acks[before - 1].1 {
            checked.stale_reads += 1;
        }
        if let Some(&seen) = last.get(&read.node) {
            if read.applied < seen {
                bad.push(format!(
                    "node {} reported {} applied after {seen}",
                    read.node, read.applied
                ));
            }
        }
        last.insert(read.node, read.applied);
        match run.heads.get(read.applied as usize) {
            Some(head) if *head == read.head => {}
            Some(_) => bad.push(format!(
                "node {} reported {} applied with a head that is not the log's prefix of that length",
                read.node, read.applied
            )),
            None => bad.push(format!(
                "node {} reported {} applied, past the final log ({})",
                read.node,
                read.applied,
                run.heads.len().saturating_sub(1)
            )),
        }
    }
    // Linearizability: the appends, an unknown one's position refined from
    // the final log (where it must sit if it took effect before that read)
    // or left out (it did not), and the final read.
    let mut history: History<AppendLog> = Vec::new();
    for op in &run.ops {
        let outcome = match op.end {
            End::Acked { at, position } => Outcome::Returned {
                at,
                output: LogOutput::Appended { position },
            },
            End::NotApplied => continue,
            // Known to have taken effect, at that position; its return
            // time is unknown (open-ended).
            End::Unknown => match position.get(&op.value) {
                Some(&p) => Outcome::Returned {
                    at: u64::MAX,
                    output: LogOutput::Appended { position: p as u64 },
                },
                None => continue,
            },
        };
        history.push(Operation {
            process: op.client,
            input: LogInput::Append(op.value),
            call: op.call,
            outcome,
        });
    }
    history.push(Operation {
        process: usize::MAX,
        input: LogInput::Read,
        call: run.final_read.0,
        outcome: Outcome::Returned {
            at: run.final_read.1,
            output: LogOutput::Read(log.iter().map(|v| v.unwrap_or(u64::MAX)).collect()),
        },
    });
    checked.operations = history.len();
    match check(&AppendLog, &history) {
        Ok(_) => {}
        Err(CheckError::Violation(v)) => bad.push(v.render(&history, run.seed)),
        Err(e) => bad.push(format!("seed {}: the checker {e}", run.seed)),
    }
    if bad.is_empty() {
        Ok(checked)
    } else {
        Err(bad)
    }
}
