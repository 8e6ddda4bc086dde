//! A Jepsen-style test of the real cluster (#17): `hologram-node` processes
//! on 127.0.0.1, every link between two of them through a userspace fault
//! proxy of ours (`proxy`: one UDP relay per directed pair, which cuts,
//! drops, delays, duplicates and reorders QUIC datagrams on command), a
//! seeded fault schedule (`schedule`: partitions, degraded links, SIGKILL and
//! restart, SIGSTOP and SIGCONT, full disks: `disk`), concurrent clients
//! through `hologram::node::Client` with retries — appending commands, and
//! running the register and bank workloads on the node's key-value machine
//! (`kv_workload`) — every operation recorded with its invocation and
//! completion (unknown outcomes included), and the history checked (`verify`,
//! `verify_kv`) — with a linearizability checker of our own (`checker`:
//! Wing–Gong with memoisation, generic over the `models`: the append-only
//! log of every command, each register, the bank).
//!
//! `jepsen_short_schedule` runs one schedule of 4 rounds on 4 nodes;
//! `HOLOGRAM_SOAK_SCHEDULES=N` makes `jepsen_soak` run N schedules (seeds
//! from `HOLOGRAM_JEPSEN_SEED`, default 1), `HOLOGRAM_JEPSEN_NODES` (4 to 7)
//! and `HOLOGRAM_JEPSEN_ROUNDS` size them; a failed schedule is counted and the
//! soak goes on, failing at the end. A failure names its seed; the same
//! seed replays the same schedule (the timing of real processes varies).
//! Unix only: the process faults are signals.
#![cfg(unix)]

#[path = "support/localhost.rs"]
mod localhost;
#[path = "support/node_process.rs"]
mod node_process;

#[path = "jepsen/campaign.rs"]
mod campaign;
#[path = "jepsen/checker.rs"]
mod checker;
#[path = "jepsen/checker_tests.rs"]
mod checker_tests;
#[path = "jepsen/disk.rs"]
mod disk;
#[path = "jepsen/kv_workload.rs"]
mod kv_workload;
#[path = "jepsen/models.rs"]
mod models;
#[path = "jepsen/nodes.rs"]
mod nodes;
#[path = "jepsen/proxy.rs"]
mod proxy;
#[path = "jepsen/proxy_tests.rs"]
mod proxy_tests;
#[path = "jepsen/schedule.rs"]
mod schedule;
#[path = "jepsen/verify.rs"]
mod verify;
#[path = "jepsen/verify_kv.rs"]
mod verify_kv;
#[path = "jepsen/verify_tests.rs"]
mod verify_tests;

use campaign::{campaign, Figures};
use hologram::node::KvResult;
use kv_workload::{KvEnd, KvInput};
use models::{BankInput, RegisterInput};
use verify::{check_run, End};
use verify_kv::check_kv;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn nodes() -> usize {
    let n = env("HOLOGRAM_JEPSEN_NODES", 4);
    assert!((4..=7).contains(&n), "HOLOGRAM_JEPSEN_NODES is 4 to 7");
    n as usize
}

/// Two campaigns at once would share two cores with eight processes.
static ONE_CAMPAIGN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn jepsen_short_schedule() {
    let _one = ONE_CAMPAIGN_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let seed = env("HOLOGRAM_JEPSEN_SEED", 1);
    let (figures, record) = campaign(seed, nodes(), env("HOLOGRAM_JEPSEN_ROUNDS", 4) as usize);
    assert!(figures.checked.acked > 0, "nothing was acknowledged");
    println!("jepsen seed {seed}: {}", figures.summary(1));

    // The same checks catch a violation planted in this real record: an
    // acknowledged command lost from every node's log...
    let acked: Vec<(u64, u64)> = record
        .ops
        .iter()
        .filter_map(|op| match op.end {
            End::Acked { position, .. } => Some((position, op.value)),
            _ => None,
        })
        .collect();
    let (_, lost) = acked[acked.len() / 2];
    let mut planted = record.clone();
    for log in &mut planted.logs {
        log.retain(|v| *v != Some(lost));
    }
    let found = check_run(&planted).expect_err("a lost acknowledged command passed");
    assert!(
        found
            .iter()
            .any(|f| f.contains(&format!("{lost} (client")) && f.contains("is not in the log")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.contains(&format!("NOT LINEARIZABLE (seed {seed})"))),
        "{found:#?}"
    );
    // ...and two commands applied in the order opposite to their
    // acknowledgements, one acknowledged before the other was invoked (each
    // acknowledgement edited to name the other's position, so only the
    // real-time order is wrong).
    let ops = &record.ops;
    let (a, b) = (0..ops.len())
        .flat_map(|a| (0..ops.len()).map(move |b| (a, b)))
        .find(|&(a, b)| match (&ops[a].end, &ops[b].end) {
            (End::Acked { at, .. }, End::Acked { .. }) => *at < ops[b].call,
            _ => false,
        })
        .expect("two acknowledgements in real-time order");
    let mut planted = record.clone();
    let (End::Acked { position: pa, .. }, End::Acked { position: pb, .. }) =
        (ops[a].end.clone(), ops[b].end.clone())
    else {
        unreachable!()
    };
    for log in &mut planted.logs {
        for entry in log.iter_mut() {
            if *entry == Some(ops[a].value) {
                *entry = Some(ops[b].value);
            } else if *entry == Some(ops[b].value) {
                *entry = Some(ops[a].value);
            }
        }
    }
    for (i, p) in [(a, pb), (b, pa)] {
        if let End::Acked { position, .. } = &mut planted.ops[i].end {
            *position = p;
        }
    }
    let found = check_run(&planted).expect_err("a real-time order violation passed");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains(&format!("NOT LINEARIZABLE (seed {seed})")),
        "{}",
        found[0]
    );
    println!(
        "planted violations caught; the second one's report:\n{}",
        found[0]
    );

    // The key-value checks catch violations planted in the same record: a
    // register's final read (after the clients stopped) answering a value
    // nobody wrote...
    let last = |want: &dyn Fn(&KvInput) -> bool| {
        (record.kv.iter())
            .rposition(|r| want(&r.input) && matches!(r.end, KvEnd::Returned { .. }))
            .expect("a final read")
    };
    let at = last(&|i| matches!(i, KvInput::Register(_, RegisterInput::Read)));
    let mut planted = record.kv.clone();
    planted[at].end = KvEnd::Returned {
        at: u64::MAX - 1,
        result: KvResult::Value(Some((1u64 << 40).to_le_bytes().to_vec())),
    };
    let found = check_kv(&planted, seed).expect_err("a read of a value never written passed");
    assert!(
        found
            .iter()
            .any(|f| f.contains(&format!("NOT LINEARIZABLE (seed {seed})"))),
        "{found:#?}"
    );
    // ...and the final read of the balances with money made out of nothing.
    let at = last(&|i| *i == KvInput::Bank(BankInput::Read));
    let mut planted = record.kv.clone();
    let KvEnd::Returned {
        result: KvResult::Values(values),
        ..
    } = &mut planted[at].end
    else {
        unreachable!()
    };
    let first = u64::from_le_bytes(values[0].clone().unwrap().try_into().unwrap());
    values[0] = Some((first + 1).to_le_bytes().to_vec());
    let found = check_kv(&planted, seed).expect_err("money made out of nothing passed");
    assert!(
        found.iter().any(|f| f.contains("is not conserved")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|f| f.contains("bank: NOT LINEARIZABLE")),
        "{found:#?}"
    );
    println!("planted key-value violations caught: {found:#?}");
}

#[test]
fn jepsen_soak() {
    let schedules = env("HOLOGRAM_SOAK_SCHEDULES", 0);
    if schedules == 0 {
        return;
    }
    let _one = ONE_CAMPAIGN_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let first = env("HOLOGRAM_JEPSEN_SEED", 1);
    let (n, rounds) = (nodes(), env("HOLOGRAM_JEPSEN_ROUNDS", 6) as usize);
    let mut total = Figures::default();
    // A schedule that fails is counted and the soak goes on; the test
    // fails at the end, naming each.
    let mut failed: Vec<(u64, String)> = Vec::new();
    for seed in first..first + schedules {
        match std::panic::catch_unwind(|| campaign(seed, n, rounds)) {
            Ok((figures, _)) => {
                println!("jepsen soak seed {seed}: {}", figures.summary(1));
                total.add(&figures);
            }
            Err(panic) => {
                let why = (panic.downcast_ref::<String>().cloned())
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                println!("jepsen soak seed {seed} FAILED: {why}");
                failed.push((seed, why));
            }
        }
    }
    let passed = schedules as usize - failed.len();
    println!(
        "jepsen soak, {schedules} schedules of {rounds} rounds on {n} nodes, {} failed: of the \
         {passed} that passed: {}",
        failed.len(),
        total.summary(passed)
    );
    assert!(failed.is_empty(), "failed schedules: {failed:#?}");
}
