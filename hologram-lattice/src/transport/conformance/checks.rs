//! The checks every transport gets: calls between three nodes.

use super::node::{short, within, Node, GRACE, LONG};
use super::probe::{ask, echoed, Command, PROBE, UNSERVED};
use super::{check, Failure, TestNetwork};
use crate::transport::{Timer, TransportError};
use crate::PeerId;
use futures::channel::oneshot;
use futures::future::{join, join_all};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest `max_frame` the suite fills a frame to.
const MAX_TESTED_FRAME: usize = 256 << 20;
/// The timeout of the "slow handler" check.
const SLOW_TIMEOUT: Duration = Duration::from_millis(300);
/// Callers, and requests each, of the "concurrent" check.
const CALLERS: usize = 8;
const CALLS_EACH: usize = 40;

/// The three nodes and the suite's clock.
pub(super) struct Suite {
    pub(super) timer: Timer,
    pub(super) a: Node,
    pub(super) b: Node,
    pub(super) c: Node,
}

/// An id no node of the suite has.
const UNKNOWN: PeerId = PeerId::from_bytes([0xee; 32]);

impl Suite {
    /// Starts the three nodes.
    pub(super) async fn start<N: TestNetwork + ?Sized>(network: &mut N) -> Result<Suite, Failure> {
        let timer = Timer::new();
        let mut nodes = Vec::new();
        for byte in [0xa1, 0xb2, 0xc3] {
            nodes.push(Node::start(network, &timer, PeerId::from_bytes([byte; 32])).await?);
        }
        match <[Node; 3]>::try_from(nodes) {
            Ok([a, b, c]) => Ok(Suite { timer, a, b, c }),
            Err(_) => Err(Failure {
                check: "start",
                message: "the suite did not get its three nodes".into(),
            }),
        }
    }

    /// The node whose sockets the `socket:` checks attack.
    pub(super) fn target_id(&self) -> PeerId {
        self.b.id
    }

    /// Every check that needs no socket, in the order of `CHECKS`.
    pub(super) async fn run_all<N: TestNetwork + ?Sized>(
        &self,
        network: &N,
    ) -> Result<(), Failure> {
        check("unknown peer", self.unknown_peer().await)?;
        check("round trip", self.round_trip().await)?;
        check("self request", self.self_request().await)?;
        check("messages", self.messages().await)?;
        check("unregistered protocol", self.unregistered().await)?;
        check("handler error", self.handler_error().await)?;
        check("request too large", self.request_too_large().await)?;
        check("answer too large", self.answer_too_large().await)?;
        check("slow handler", self.slow_handler().await)?;
        check("concurrent", self.concurrent(network).await)?;
        check("handler panic", self.handler_panic().await)
    }

    async fn unknown_peer(&self) -> Result<(), String> {
        let start = Instant::now();
        let unreachable = |e: &TransportError| *e == TransportError::Unreachable(UNKNOWN);
        let payload = ask(Command::Echo, b"anyone?");
        let wanted = "Unreachable naming the unknown peer";
        let request = (PROBE, payload.clone());
        let a = &self.a;
        a.expect_error(UNKNOWN, request, wanted, unreachable)
            .await?;
        if start.elapsed() >= LONG {
            return Err("a request to an unknown peer waited out its timeout".into());
        }
        a.expect_send_error(UNKNOWN, payload, wanted, unreachable)
            .await
    }

    async fn round_trip(&self) -> Result<(), String> {
        let before = self.b.probe.requests();
        self.a.echo(self.b.id, b"hello").await?;
        self.b.echo(self.a.id, b"hello back").await?;
        self.c.echo(self.b.id, &[]).await?;
        if self.b.probe.requests() != before + 2 {
            return Err("two requests to a node did not reach its handler exactly twice".into());
        }
        Ok(())
    }

    async fn self_request(&self) -> Result<(), String> {
        self.a.echo(self.a.id, b"myself").await?;
        let note = ask(Command::Echo, b"a note to myself");
        self.a.send(self.a.id, note.clone()).await?;
        self.a.expect_message(&(self.a.id, PROBE, note)).await
    }

    async fn messages(&self) -> Result<(), String> {
        let dropped = ask(Command::Echo, b"for a protocol nobody serves");
        // Dropped at the receiver, or refused: either is fine, a hang is not.
        self.a.send_on(self.b.id, UNSERVED, dropped).await?.ok();
        for (from, to, text) in [(&self.a, &self.b, "one"), (&self.b, &self.a, "two")] {
            let note = ask(Command::Echo, text.as_bytes());
            from.send(to.id, note.clone()).await?;
            to.expect_message(&(from.id, PROBE, note)).await?;
        }
        if self.b.probe.messages().iter().any(|m| m.1 == UNSERVED) {
            return Err("a message on an unserved protocol reached the probe's handler".into());
        }
        Ok(())
    }

    async fn unregistered(&self) -> Result<(), String> {
        let before = self.b.probe.requests();
        let refused = |e: &TransportError| matches!(e, TransportError::Refused(_));
        let request = (UNSERVED, ask(Command::Echo, b"unserved"));
        self.a
            .expect_error(self.b.id, request, "Refused", refused)
            .await?;
        if self.b.probe.requests() != before {
            return Err("a request for an unserved protocol reached another handler".into());
        }
        Ok(())
    }

    async fn handler_error(&self) -> Result<(), String> {
        let remote = |e: &TransportError| matches!(e, TransportError::Remote(_));
        let request = (PROBE, ask(Command::Fail, &[]));
        let (a, b) = (&self.a, self.b.id);
        a.expect_error(b, request, "Remote", remote).await?;
        let refused = |e: &TransportError| matches!(e, TransportError::Refused(_));
        a.expect_error(b, (PROBE, vec![]), "Refused", refused).await
    }

    /// The sender's limit, if the suite can fill a frame to it.
    fn limit(&self) -> Result<usize, String> {
        let max = self.a.transport.max_frame();
        if max > MAX_TESTED_FRAME {
            return Err(format!(
                "max_frame is {max} bytes; run the suite with a limit of at most {MAX_TESTED_FRAME}"
            ));
        }
        Ok(max)
    }

    async fn request_too_large(&self) -> Result<(), String> {
        let max = self.limit()?;
        let before = self.b.probe.requests();
        let mut over = ask(Command::Len, &[]);
        over.resize(max + 1, 0);
        let too_large = |e: &TransportError| *e == TransportError::TooLarge { size: max + 1, max };
        let wanted = format!("TooLarge {{ size: {}, max: {max} }}", max + 1);
        let (a, b) = (&self.a, self.b.id);
        let request = (PROBE, over.clone());
        a.expect_error(b, request, &wanted, too_large).await?;
        a.expect_send_error(b, over, &wanted, too_large).await?;
        if self.b.probe.requests() != before {
            return Err("an over-limit request reached the receiver's handler".into());
        }
        let mut at_limit = ask(Command::Len, &[]);
        at_limit.resize(max, 0);
        let expected = (max as u64).to_le_bytes();
        a.expect(b, at_limit, &expected).await
    }

    async fn answer_too_large(&self) -> Result<(), String> {
        let max = self.limit()?;
        let big = |len: usize| ask(Command::Big, &(len as u64).to_le_bytes());
        let too_large = |e: &TransportError| matches!(e, TransportError::TooLarge { .. });
        let (a, b) = (&self.a, self.b.id);
        let request = (PROBE, big(max + 1));
        a.expect_error(b, request, "TooLarge", too_large).await?;
        a.expect(b, big(max), &vec![0; max]).await
    }

    async fn slow_handler(&self) -> Result<(), String> {
        let sleep_ms = 10 * SLOW_TIMEOUT.as_millis() as u32;
        let payload = ask(Command::Sleep, &sleep_ms.to_le_bytes());
        let start = Instant::now();
        let call = self
            .a
            .transport
            .request(self.b.id, PROBE, payload, SLOW_TIMEOUT);
        let what = format!(
            "a request with a {SLOW_TIMEOUT:?} timeout to a handler that takes {sleep_ms} ms"
        );
        let answer = within(&self.timer, SLOW_TIMEOUT + GRACE, &what, call).await?;
        let waited = start.elapsed();
        let timed_out = TransportError::TimedOut {
            peer: self.b.id,
            timeout: SLOW_TIMEOUT,
        };
        if answer != Err(timed_out) {
            return Err(format!("{what} returned {answer:?}, expected TimedOut"));
        }
        if waited < SLOW_TIMEOUT.mul_f32(0.9) {
            return Err(format!("{what} timed out after only {waited:?}"));
        }
        Ok(())
    }

    async fn concurrent<N: TestNetwork + ?Sized>(&self, network: &N) -> Result<(), String> {
        let mut done = Vec::new();
        let targets = [self.a.id, self.b.id, self.c.id];
        for caller in 0..CALLERS {
            let node = if caller % 2 == 0 { &self.a } else { &self.b };
            let (id, transport) = (node.id, Arc::clone(&node.transport));
            let (report, result) = oneshot::channel();
            done.push(result);
            let task = async move {
                let calls = (0..CALLS_EACH).map(|i| {
                    let n = (caller * CALLS_EACH + i) as u64;
                    let delay = (n * 7 % 5) as u8;
                    let mut rest = vec![delay];
                    rest.extend_from_slice(&n.to_le_bytes());
                    let payload = ask(Command::EchoAfter, &rest);
                    let expected = echoed(&payload, id);
                    let to = targets[i % targets.len()];
                    let call = transport.request(to, PROBE, payload, LONG);
                    async move {
                        match call.await {
                            Ok(answer) if answer == expected => Ok(()),
                            Ok(answer) if answer.get(..1) == expected.get(..1) => Err(format!(
                                "request {n} from {} to {} got another request's answer",
                                short(id),
                                short(to)
                            )),
                            Ok(_) => Err(format!("request {n} got a wrong answer")),
                            Err(e) => Err(format!("request {n} failed: {e}")),
                        }
                    }
                });
                let outcome: Result<(), String> = join_all(calls).await.into_iter().collect();
                let _ = report.send(outcome);
            };
            network.spawn(Box::pin(task));
        }
        let all = join_all(done);
        let limit = LONG + GRACE + GRACE;
        for result in within(&self.timer, limit, "the concurrent callers", all).await? {
            match result {
                Ok(outcome) => outcome?,
                Err(_) => return Err("a spawned caller was dropped before it finished".into()),
            }
        }
        Ok(())
    }

    async fn handler_panic(&self) -> Result<(), String> {
        let timeout = Duration::from_secs(2);
        let panicking =
            self.a
                .transport
                .request(self.b.id, PROBE, ask(Command::Panic, &[]), timeout);
        let beside = self.a.echo(self.b.id, b"beside a panic");
        let what = "a request to a handler that panics";
        let (answer, beside) = join(
            within(&self.timer, timeout + GRACE, what, panicking),
            beside,
        )
        .await;
        if let Ok(answer) = answer? {
            return Err(format!("{what} returned a {}-byte answer", answer.len()));
        }
        beside.map_err(|e| format!("a call beside a panicking one: {e}"))?;
        self.a.echo(self.b.id, b"after a panic").await?;
        // A message whose handling panics, then one that must still arrive.
        let panicking = ask(Command::Panic, &[]);
        self.a.send_on(self.b.id, PROBE, panicking).await?.ok();
        let note = ask(Command::Echo, b"after a panicking message");
        self.a.send(self.b.id, note.clone()).await?;
        self.b.expect_message(&(self.a.id, PROBE, note)).await?;
        self.c.echo(self.b.id, b"still serving").await
    }
}
