//! The run checks catch planted violations: a lost acknowledged command, a
//! command applied twice, diverging nodes, an acknowledgement out of real-time
//! order, a command applied though answered "not applied", a status read
//! that is no prefix of the final log, and a node whose applied state shrank.

use super::verify::{check_run, End, Op, RunRecord, StatusRead};
use hologram::receipt::{ChainHead, Receipt};

/// A clean run: 3 clients, 30 commands appended one after another (each
/// acknowledged at its position) but #10 (unknown, applied) and #20
/// (unknown, not applied); two nodes with the whole log, one lagging.
fn clean() -> RunRecord {
    let mut ops = Vec::new();
    let mut log = Vec::new();
    for v in 0..30u64 {
        let call = v * 10;
        let end = match v {
            10 => End::Unknown,
            20 => End::Unknown,
            _ => End::Acked {
                at: call + 5,
                position: log.len() as u64,
            },
        };
        if v != 20 {
            log.push(Some(v));
        }
        ops.push(Op {
            client: (v % 3) as usize,
            value: v,
            call,
            end,
        });
    }
    let heads = heads(log.len());
    RunRecord {
        seed: 9,
        ops,
        logs: vec![log.clone(), log.clone(), log[..12].to_vec()],
        reads: vec![
            StatusRead {
                node: 2,
                call: 50,
                applied: 5,
                head: heads[5],
            },
            StatusRead {
                node: 2,
                call: 200,
                applied: 12,
                head: heads[12],
            },
        ],
        heads,
        final_read: (1_000, 1_001),
        kv: Vec::new(),
    }
}

/// Stand-in chain heads of a log of `len`.
fn heads(len: usize) -> Vec<ChainHead> {
    let mut heads = vec![ChainHead::GENESIS];
    for k in 0..len {
        let next = heads[k].next(&Receipt::from_bytes(&k.to_le_bytes()));
        heads.push(next);
    }
    heads
}

fn fails(run: &RunRecord, expect: &str) {
    match check_run(run) {
        Ok(checked) => panic!("a planted violation passed ({expect}): {checked:?}"),
        Err(found) => assert!(
            found.iter().any(|f| f.contains(expect)),
            "expected {expect:?} among {found:#?}"
        ),
    }
}

#[test]
fn a_clean_run_passes() {
    let checked = check_run(&clean()).unwrap();
    assert_eq!(checked.acked, 28);
    assert_eq!(checked.unknown, (2, 1));
    assert_eq!(checked.log, 29);
    assert_eq!(
        checked.operations, 30,
        "28 acked, one unknown applied, the read"
    );
}

#[test]
fn a_lost_acknowledged_command_is_caught_with_the_seed() {
    let mut run = clean();
    for log in &mut run.logs {
        log.retain(|v| *v != Some(5));
    }
    fails(
        &run,
        "5 (client 2) was acknowledged at position 5 and is not in the log",
    );
    // The linearizability check alone finds it too, naming the seed.
    fails(&run, "NOT LINEARIZABLE (seed 9)");
}

#[test]
fn a_command_applied_twice_is_caught() {
    let mut run = clean();
    for log in run.logs.iter_mut().take(2) {
        log.push(Some(3));
    }
    fails(&run, "3 applied twice, at 3 and 29");
}

#[test]
fn diverging_nodes_are_caught() {
    let mut run = clean();
    run.logs[2][7] = Some(8);
    run.logs[2][8] = Some(7);
    fails(&run, "nodes 0 and 2 diverge at position 7");
}

#[test]
fn an_acknowledgement_out_of_real_time_order_is_caught() {
    // 3 was acknowledged before 4 was submitted, yet 4 sits first: every
    // node agrees, each acknowledgement names the right position, and only
    // the linearizability check sees it.
    let mut run = clean();
    for log in &mut run.logs {
        log.swap(3, 4);
    }
    for op in &mut run.ops {
        if let End::Acked { position, .. } = &mut op.end {
            *position = match *position {
                3 => 4,
                4 => 3,
                p => p,
            };
        }
    }
    let found = check_run(&run).unwrap_err();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("NOT LINEARIZABLE (seed 9)"),
        "{}",
        found[0]
    );
    assert!(
        found[0].contains("=> #3"),
        "the window names the culprit: {}",
        found[0]
    );
}

#[test]
fn a_command_applied_though_not_applied_is_caught() {
    let mut run = clean();
    run.ops[10].end = End::NotApplied;
    fails(&run, "10 was answered not applied and sits at 10");
}

#[test]
fn a_status_read_off_the_final_log_is_caught() {
    let mut run = clean();
    run.reads.push(StatusRead {
        node: 1,
        call: 300,
        applied: 4,
        head: run.heads[5],
    });
    fails(
        &run,
        "node 1 reported 4 applied with a head that is not the log's",
    );
    let mut run = clean();
    run.reads.push(StatusRead {
        node: 0,
        call: 300,
        applied: 40,
        head: ChainHead::GENESIS,
    });
    fails(&run, "past the final log");
    // A node whose applied state went back.
    let mut run = clean();
    let heads = run.heads.clone();
    run.reads.push(StatusRead {
        node: 2,
        call: 300,
        applied: 11,
        head: heads[11],
    });
    fails(&run, "node 2 reported 11 applied after 12");
}
