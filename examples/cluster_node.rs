//! A validator of a BFT cluster over real TCP sockets: Tendermint consensus
//! (`hologram-consensus`) among a fixed set of nodes, each keeping what it
//! decided and signed in a `RedbStore`, so that a node killed at any moment
//! restarts with everything it committed and catches up with the others.
//!
//! Four nodes on one machine (each in its own terminal):
//!
//! ```text
//! for i in 1 2 3 4; do cargo run --release --example cluster_node -- --gen-key node$i.key; done
//! # write peers.txt: one line <id>@127.0.0.1:700<i> per node, ids as printed above
//! cargo run --release --example cluster_node -- --listen 127.0.0.1:7001 --key node1.key --data node1 --peers peers.txt
//! # ... and the same for nodes 2, 3 and 4
//! cargo run --release --example cluster_node -- --node <id1>@127.0.0.1:7001 --submit "set x = 1"
//! cargo run --release --example cluster_node -- --node <id2>@127.0.0.1:7002 --status
//! ```
//!
//! With 4 validators the cluster tolerates one faulty node (crashed or
//! Byzantine): three keep committing. `cargo run --example cluster_node --
//! --help` lists every flag; the code is in `examples/support/cluster/`, and
//! `tests/cluster.rs` runs four of these processes, kills one with SIGKILL,
//! restarts it and checks that nothing was lost.

#[path = "support/cluster/mod.rs"]
mod cluster;

use cluster::error::ClusterError;

fn main() {
    match cluster::cli::main(std::env::args().skip(1)) {
        Ok(()) => {}
        Err(e @ ClusterError::Usage(_)) => {
            eprintln!("{e}\n\n{}", cluster::cli::USAGE);
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("cluster_node: {e}");
            std::process::exit(1);
        }
    }
}
