//! A round trip over `MemoryNetwork` (no faults, zero latency) beside calling
//! the same `Handler` directly: what the in-memory transport adds to a 1 KiB
//! request (fault decisions under the network's lock, the handler lookup,
//! the response's way back and the timeout around it).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::executor::block_on;
use hologram::lattice::transport::{
    async_trait, Handler, HandlerError, MemoryNetwork, Protocol, Transport,
};
use hologram::lattice::PeerId;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

/// Answers every request with its payload.
struct Echo;

#[async_trait]
impl Handler for Echo {
    async fn request(
        &self,
        _: PeerId,
        _: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        Ok(payload)
    }

    async fn message(&self, _: PeerId, _: Protocol, _: Vec<u8>) {}
}

fn bench_round_trip(c: &mut Criterion) {
    let (a, b) = (PeerId::from_bytes([1; 32]), PeerId::from_bytes([2; 32]));
    let payload = vec![0x5a; 1024];
    let handler: Arc<dyn Handler> = Arc::new(Echo);
    let network = MemoryNetwork::new(0);
    let transport = network.join(a, Arc::new(Echo));
    let _b = network.join(b, Arc::clone(&handler));
    let timeout = Duration::from_secs(5);

    let mut group = c.benchmark_group("transport/request_1KiB");
    group.throughput(Throughput::Bytes(payload.len() as u64));
    group.bench_with_input(
        BenchmarkId::from_parameter("Handler::request (direct)"),
        &payload,
        |bench, payload| {
            bench.iter(|| block_on(handler.request(a, Protocol::PING, black_box(payload.clone()))))
        },
    );
    group.bench_with_input(
        BenchmarkId::from_parameter("MemoryNetwork round trip"),
        &payload,
        |bench, payload| {
            bench.iter(|| {
                block_on(transport.request(b, Protocol::PING, black_box(payload.clone()), timeout))
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench_round_trip);
criterion_main!(benches);
