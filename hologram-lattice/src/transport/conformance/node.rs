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
    timer: Timer,
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
        let timer = timer.clone();
        Ok(Node {
            id,
            transport,
            probe,
            timer,
        })
    }

    /// A request that must succeed with `expected`.
    pub(super) async fn expect(
        &self,
        to: PeerId,
        payload: Vec<u8>,
        expected: &[u8],
    ) -> Result<(), String> {
        let what = format!("request from {} to {}", short(self.id), short(to));
        let call = self.transport.request(to, PROBE, payload, LONG);
        match within(&self.timer, LONG + GRACE, &what, call).await? {
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
    pub(super) async fn echo(&self, to: PeerId, rest: &[u8]) -> Result<(), String> {
        let payload = ask(Command::Echo, rest);
        let expected = echoed(&payload, self.id);
        self.expect(to, payload, &expected).await
    }

    /// A request on `protocol` that must fail as `matches` says (`wanted`).
    pub(super) async fn expect_error(
        &self,
        to: PeerId,
        (protocol, payload): (Protocol, Vec<u8>),
        wanted: &str,
        matches: impl Fn(&TransportError) -> bool,
    ) -> Result<(), String> {
        let what = format!("request from {} to {}", short(self.id), short(to));
        let call = self.transport.request(to, protocol, payload, LONG);
        match within(&self.timer, LONG + GRACE, &what, call).await? {
            Err(e) if matches(&e) => Ok(()),
            Err(e) => Err(format!("{what} failed with `{e}`, expected {wanted}")),
            Ok(answer) => Err(format!(
                "{what} returned a {}-byte answer, expected {wanted}",
                answer.len()
            )),
        }
    }

    /// A probe send that must fail as `matches` says (`wanted`).
    pub(super) async fn expect_send_error(
        &self,
        to: PeerId,
        payload: Vec<u8>,
        wanted: &str,
        matches: impl Fn(&TransportError) -> bool,
    ) -> Result<(), String> {
        match self.send_on(to, PROBE, payload).await? {
            Err(e) if matches(&e) => Ok(()),
            other => Err(format!(
                "{} returned {other:?}, expected {wanted}",
                self.sending(to)
            )),
        }
    }

    /// Waits until this node's probe holds `message`.
    pub(super) async fn expect_message(
        &self,
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
            self.timer.sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    fn sending(&self, to: PeerId) -> String {
        format!("a send from {} to {}", short(self.id), short(to))
    }

    /// A send on `protocol` that must return, with what it returned.
    pub(super) async fn send_on(
        &self,
        to: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Result<(), TransportError>, String> {
        let call = self.transport.send(to, protocol, payload);
        within(&self.timer, LONG + GRACE, &self.sending(to), call).await
    }

    /// A probe send that must succeed.
    pub(super) async fn send(&self, to: PeerId, payload: Vec<u8>) -> Result<(), String> {
        let sent = self.send_on(to, PROBE, payload).await?;
        sent.map_err(|e| format!("{} failed: {e}", self.sending(to)))
    }
}
