//! Three nodes on 127.0.0.1 talking over real TCP sockets (tokio): each greets
//! the others, sends them a note and asks for a protocol nobody serves; then
//! one node greets itself, one call shows a frame refused for its size and
//! one a peer that is gone.
//!
//! ```text
//! cargo run --example tcp_node
//! ```
//!
//! The transport is `examples/support/tcp.rs` (it passes the transport
//! conformance suite, but does not authenticate who sends a frame: for
//! trusted networks only); the node code (`examples/support/node.rs`) is
//! the same that `smol_node` runs in memory.

#[path = "support/node.rs"]
mod node;
#[path = "support/tcp.rs"]
mod tcp;

use hologram::lattice::transport::{Protocol, Transport, DEFAULT_MAX_FRAME};
use node::{converse, id_of, short, Greeter};
use std::sync::Arc;
use std::time::Duration;
use tcp::{TcpConfig, TcpTransport};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let names = ["ada", "bob", "cy"];
    let mut nodes = Vec::new();
    for name in names {
        let greeter = Greeter::new(name);
        let handler = Arc::clone(&greeter);
        // The handler is given when the transport is built. The limits:
        // frames up to 4 MiB arriving whole within 10 s, at most 256 inbound
        // connections, idle ones closed after 60 s.
        let config = TcpConfig {
            max_frame: DEFAULT_MAX_FRAME,
            frame_deadline: Duration::from_secs(10),
            max_inbound: 256,
            idle_timeout: Duration::from_secs(60),
            ..TcpConfig::default()
        };
        let transport =
            TcpTransport::bind_with(id_of(name), "127.0.0.1:0".parse()?, handler, config).await?;
        println!(
            "{name} is {} on {}",
            short(id_of(name)),
            transport.local_addr()
        );
        nodes.push((greeter, transport));
    }
    for (_, transport) in &nodes {
        for (_, peer) in &nodes {
            if peer.local_id() != transport.local_id() {
                transport.add_peer(peer.local_id(), peer.local_addr());
            }
        }
    }

    let conversations = nodes.iter().map(|(_, transport)| {
        let peers = nodes
            .iter()
            .map(|(_, peer)| peer.local_id())
            .filter(|&peer| peer != transport.local_id())
            .collect();
        converse(Arc::new(transport.clone()), peers)
    });
    for line in futures::future::join_all(conversations).await.concat() {
        println!("{line}");
    }
    for ((greeter, _), name) in nodes.iter().zip(names) {
        greeter.wait_for_notes(2, Duration::from_secs(2)).await;
        println!("{name} got notes {:?}", greeter.notes());
    }

    // A node may call itself, as a remote validator naming its own node does.
    let (_, ada) = &nodes[0];
    let itself = ada
        .request(
            ada.local_id(),
            Protocol::PING,
            b"me".to_vec(),
            Duration::from_secs(1),
        )
        .await;
    println!("ada greets herself: {:?}", itself.map(String::from_utf8));

    let (_, cy) = nodes.pop().ok_or("cy is missing")?;
    let (_, ada) = &nodes[0];
    let (_, bob) = &nodes[1];
    let huge = vec![0; DEFAULT_MAX_FRAME + 1];
    let refused = ada
        .request(bob.local_id(), Protocol::PING, huge, Duration::from_secs(1))
        .await;
    println!("a frame one byte too large: {refused:?}");

    // Dropping cy's transport closes its listener and its connections.
    let cy_id = cy.local_id();
    drop(cy);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let gone = ada
        .request(
            cy_id,
            Protocol::PING,
            b"still there?".to_vec(),
            Duration::from_millis(500),
        )
        .await;
    println!("cy after it shut down: {gone:?}");
    Ok(())
}
