//! The node of `tcp_node` on another runtime: smol, over the library's
//! in-memory network with 1–20 ms latency and some duplication. The node
//! code (`examples/support/node.rs`) is unchanged, and nothing in the library
//! needs tokio: the network's clock is its own timer thread.
//!
//! ```text
//! cargo run --example smol_node
//! ```

#[path = "support/node.rs"]
mod node;

use hologram::lattice::sim::Faults;
use hologram::lattice::transport::{MemoryNetwork, Protocol, Transport};
use node::{converse, id_of, short, Greeter};
use std::sync::Arc;
use std::time::Duration;

fn main() {
    smol::block_on(async {
        let network = MemoryNetwork::new(2024);
        network.set_faults(Faults {
            latency_ms: (1, 20),
            duplicate: 0.2,
            ..Faults::NONE
        });
        let names = ["ada", "bob", "cy"];
        let ids: Vec<_> = names.iter().map(|name| id_of(name)).collect();
        let nodes: Vec<_> = names
            .iter()
            .map(|name| {
                let greeter = Greeter::new(name);
                let transport = network.join(id_of(name), Arc::clone(&greeter) as _);
                println!("{name} is {}", short(id_of(name)));
                (greeter, transport)
            })
            .collect();

        // One smol task per node, all conversing at once.
        let tasks: Vec<_> = nodes
            .iter()
            .map(|(_, transport)| {
                let me = transport.local_id();
                let peers = ids.iter().copied().filter(|&id| id != me).collect();
                smol::spawn(converse(Arc::new(transport.clone()), peers))
            })
            .collect();
        for task in tasks {
            for line in task.await {
                println!("{line}");
            }
        }
        for ((greeter, _), name) in nodes.iter().zip(names) {
            // Duplication may deliver a note twice.
            greeter.wait_for_notes(2, Duration::from_secs(2)).await;
            println!("{name} got notes {:?}", greeter.notes());
        }

        let (_, ada) = &nodes[0];
        network.crash(ids[1]);
        let down = ada
            .request(
                ids[1],
                Protocol::PING,
                b"bob?".to_vec(),
                Duration::from_secs(1),
            )
            .await;
        println!("bob crashed: {down:?}");
        let bob = network.restart(ids[1], Greeter::new("bob again"));
        let back = ada
            .request(
                bob.local_id(),
                Protocol::PING,
                b"bob?".to_vec(),
                Duration::from_secs(1),
            )
            .await
            .map(|answer| String::from_utf8_lossy(&answer).into_owned());
        println!("bob restarted: {back:?}");
    });
}
