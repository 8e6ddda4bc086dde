//! A node of the suite's network, and the calls the checks make through it,
//! each under a watchdog.

use super::probe::{ask, echoed, Command, Probe, PROBE};
use super::{check, Failure, TestNetwork};
use crate::transport::{Protocol, ProtocolMux, Timer, Transport, TransportError};
use crate::PeerId;
use futures::future::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The timeout of calls that should succeed.
pub(super) const LONG: Duration = Duration::from_secs(5);
/// Slack allowed past a deadline (scheduling on a loaded machine).
pub(super) const GRACE: Duration = Duration::from_secs(1);

/// A node of the suite's network.
#[derive(Clone)]
pub(super) struct Node {
    pub(super) id: PeerId,
    pub(super) transport: Arc<dyn Transport>,
    pub(super) probe: Arc<Probe>,
}

/// Runs `future` under a watchdog of `limit`, turning a panic that reaches
/// the caller into an error too.
pub(super) async fn within<F: Future>(
    timer: &Timer,
    limit: Duration,
    what: &str,
    future: F,
) -> Result<F::Output, String> {
    match timer
        .timeout(limit, AssertUnwindSafe(future).catch_unwind())
        .await
    {
        None => Err(format!("{what} did not return within {limit:?}")),
        Some(Err(_)) => Err(format!("{what} panicked in the caller")),
        Some(Ok(out)) => Ok(out),
    }
}

pub(super) fn short(id: PeerId) -> String {
    id.as_bytes()
        .iter()
        .take(2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Node {
    /// Starts node `id` on `network`, its probe behind a [`ProtocolMux`].
    pub(super) async fn start<N: TestNetwork + ?Sized>(
        network: &mut N,
        timer: &Timer,
        id: PeerId,
    ) -> Result<Node, Failure> {
        let probe = Arc::new(Probe::new(timer.clone()));
        let mux = ProtocolMux::new();
        mux.mount_as(PROBE, Arc::clone(&probe) as _);
        let transport = network.node(id, Arc::new(mux)).await;
        let transport = check("start", transport.map_err(|e| format!("node {id}: {e}")))?;
        if transport.local_id() != id {
            let message = format!(
                "node {id}'s transport says its id is {}",
                transport.local_id()
            );
            return Err(Failure {
                check: "start",
                message,
            });
        }
        Ok(Node {
            id,
            transport,
            probe,
        })
    }

    /// A request that must succeed with `expected`.
    pub(super) async fn expect(
        &self,
        timer: &Timer,
        to: PeerId,
        payload: Vec<u8>,
        expected: &[u8],
    ) -> Result<(), String> {
        let what = format!("request from {} to {}", short(self.id), short(to));
        let call = self.transport.request(to, PROBE, payload, LONG);
        match within(timer, LONG + GRACE, &what, call).await? {
            Ok(answer) if answer == expected => Ok(()),
            Ok(answer) => Err(format!(
                "{what} got a {}-byte answer, not the {}-byte one its handler gave",
                answer.len(),
                expected.len()
            )),
            Err(e) => Err(format!("{what} failed: {e}")),
        }
    }

    /// An echo request that must come back.
    pub(super) async fn echo(&self, timer: &Timer, to: PeerId, rest: &[u8]) -> Result<(), String> {
        let payload = ask(Command::Echo, rest);
        let expected = echoed(&payload, self.id);
        self.expect(timer, to, payload, &expected).await
    }

    /// A request that must fail as `matches` says.
    pub(super) async fn expect_error(
        &self,
        timer: &Timer,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
        wanted: &str,
        matches: impl Fn(&TransportError) -> bool,
    ) -> Result<(), String> {
        let what = format!("request from {} to {}", short(self.id), short(to));
        let call = self.transport.request(to, protocol, payload, LONG);
        match within(timer, LONG + GRACE, &what, call).await? {
            Err(e) if matches(&e) => Ok(()),
            Err(e) => Err(format!("{what} failed with `{e}`, expected {wanted}")),
            Ok(answer) => Err(format!(
                "{what} returned a {}-byte answer, expected {wanted}",
                answer.len()
            )),
        }
    }

    /// Waits until this node's probe holds `message`.
    pub(super) async fn expect_message(
        &self,
        timer: &Timer,
        message: &(PeerId, Protocol, Vec<u8>),
    ) -> Result<(), String> {
        let start = Instant::now();
        while !self.probe.messages().contains(message) {
            if start.elapsed() > LONG {
                return Err(format!(
                    "a message from {} did not reach {} within {LONG:?}",
                    short(message.0),
                    short(self.id)
                ));
            }
            timer.sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// A send that must succeed.
    pub(super) async fn send(
        &self,
        timer: &Timer,
        to: PeerId,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        let what = format!("send from {} to {}", short(self.id), short(to));
        let call = self.transport.send(to, PROBE, payload);
        within(timer, LONG + GRACE, &what, call)
            .await?
            .map_err(|e| format!("{what} failed: {e}"))
    }
}
