//! The `socket:` checks: raw TCP connections to a node's listening address,
//! made with blocking sockets on threads of the suite's own.

use super::checks::Suite;
use super::node::{within, Node, GRACE, LONG};
use super::probe::{ask, Command, PROBE};
use super::{check, Failure, SocketTarget, TestNetwork};
use crate::PeerId;
use futures::channel::oneshot;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The longest limit the suite waits out.
const MAX_LIMIT: Duration = Duration::from_secs(30);
/// The most inbound connections the suite opens beyond the node's cap.
const MAX_CAP: usize = 4096;
/// Connections that stall a half-sent frame.
const STALLED: usize = 8;
/// The size of a stalled frame's payload (or the limit, if smaller).
const STALLED_PAYLOAD: usize = 1 << 20;
/// How far over the limit the over-limit frame is: more than any header, so
/// that a transport checking a frame's whole length against the payload
/// limit plus its header's sees it over.
const OVER: usize = 64 << 10;
/// Idle connections opened beyond the node's cap.
const EXTRA_IDLE: usize = 16;
/// The id the raw frames claim.
const RAW: PeerId = PeerId::from_bytes([0x5a; 32]);
/// The node started during the idle flood.
const LATECOMER: PeerId = PeerId::from_bytes([0xd4; 32]);

/// Runs `work` on a thread of its own and waits for it without blocking
/// the executor.
async fn on_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (report, result) = oneshot::channel();
    std::thread::Builder::new()
        .name("hologram-conformance".into())
        .spawn(move || {
            let _ = report.send(work());
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    result
        .await
        .map_err(|_| "a socket thread panicked".to_string())?
}

fn io(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Whether the node has closed `stream`, waiting until `deadline` at most.
/// Bytes the node sends first (a refusal, say) are read and ignored.
fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// Whether the node has closed `stream` by now, without waiting.
fn closed_now(stream: &mut TcpStream) -> bool {
    closed_by(stream, Instant::now() + Duration::from_millis(1))
}

fn limits(target: &SocketTarget) -> Result<(), String> {
    if target.frame_deadline > MAX_LIMIT || target.idle_timeout > MAX_LIMIT {
        return Err(format!(
            "the suite waits out limits of at most {MAX_LIMIT:?}: configure the node under test with shorter ones"
        ));
    }
    if target.max_inbound > MAX_CAP {
        return Err(format!(
            "the suite opens at most {MAX_CAP} connections: configure a lower max_inbound"
        ));
    }
    Ok(())
}

/// Runs the `socket:` checks against node B's address.
pub(super) async fn run<N: TestNetwork + ?Sized>(
    network: &mut N,
    suite: &Suite,
    target: SocketTarget,
) -> Result<(), Failure> {
    let stalled = match limits(&target) {
        Ok(()) => stalled_frames(suite, &target).await,
        Err(e) => Err(e),
    };
    check("socket: stalled frame", stalled)?;
    check(
        "socket: over-limit announcement",
        over_limit(suite, &target).await,
    )?;
    idle_connections(network, suite, &target).await
}

/// Half-sent frames that stall are dropped at the read deadline, unhandled.
async fn stalled_frames(suite: &Suite, target: &SocketTarget) -> Result<(), String> {
    let before = suite.b.probe.requests();
    let mut payload = ask(Command::Echo, &[]);
    payload.resize(STALLED_PAYLOAD.min(suite.b.transport.max_frame()), 0);
    let frame = (target.encode_request)(RAW, PROBE, &payload);
    let (addr, deadline) = (target.addr, target.frame_deadline);
    let still_open = on_thread(move || {
        let mut streams = Vec::new();
        for _ in 0..STALLED {
            let mut stream = TcpStream::connect(addr).map_err(io("connect"))?;
            stream
                .set_write_timeout(Some(LONG))
                .map_err(io("set a write timeout"))?;
            let started = Instant::now();
            let half = frame
                .get(..frame.len().saturating_sub(1))
                .unwrap_or_default();
            stream
                .write_all(half)
                .map_err(io("write the first part of a frame"))?;
            streams.push((stream, started));
        }
        Ok(streams
            .into_iter()
            .filter_map(|(mut stream, started)| {
                let waited = started + deadline + GRACE;
                (!closed_by(&mut stream, waited)).then_some(())
            })
            .count())
    })
    .await?;
    if still_open > 0 {
        return Err(format!(
            "{still_open} of {STALLED} connections that stopped one byte short of a frame were still open {GRACE:?} past the {deadline:?} frame deadline"
        ));
    }
    if suite.b.probe.requests() != before {
        return Err("a frame that never completed reached the handler".into());
    }
    suite.c.echo(suite.b.id, b"after stalled frames").await
}

/// A frame announcing more than the limit is refused before its body.
async fn over_limit(suite: &Suite, target: &SocketTarget) -> Result<(), String> {
    let max = suite.b.transport.max_frame();
    let mut payload = ask(Command::Echo, &[]);
    payload.resize(max.saturating_add(OVER), 0);
    let frame = (target.encode_request)(RAW, PROBE, &payload);
    let prompt = (target.frame_deadline / 2).max(Duration::from_millis(200));
    let addr = target.addr;
    let closed = on_thread(move || {
        let mut stream = TcpStream::connect(addr).map_err(io("connect"))?;
        stream
            .set_write_timeout(Some(LONG))
            .map_err(io("set a write timeout"))?;
        let start = Instant::now();
        let head = frame.get(..frame.len().min(64 << 10)).unwrap_or_default();
        // A node that closes at once may make this write fail: that is fine.
        let _ = stream.write_all(head);
        Ok(closed_by(&mut stream, start + prompt))
    })
    .await?;
    if !closed {
        return Err(format!(
            "a connection announcing a {}-byte payload (over the {max}-byte limit) was still open after {prompt:?}",
            max.saturating_add(OVER)
        ));
    }
    suite.c.echo(suite.b.id, b"after an over-limit frame").await
}

/// More idle connections than the cap: the excess is refused, a new client
/// is still served, and the idle ones are closed after the idle timeout.
async fn idle_connections<N: TestNetwork + ?Sized>(
    network: &mut N,
    suite: &Suite,
    target: &SocketTarget,
) -> Result<(), Failure> {
    let name = "socket: idle connections";
    let (addr, cap) = (target.addr, target.max_inbound);
    let count = cap + EXTRA_IDLE;
    let opened = on_thread(move || {
        let streams = (0..count)
            .map(|_| TcpStream::connect(addr))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io("open an idle connection"))?;
        Ok((streams, Instant::now()))
    });
    let (mut streams, opened_at) = check(name, opened.await)?;
    // A client that was not connected before the flood.
    let latecomer = Node::start(network, &suite.timer, LATECOMER).await?;
    check(name, served(suite, &latecomer, target.idle_timeout).await)?;
    let refused_by = Instant::now() + GRACE;
    let excess = on_thread(move || {
        let mut open = count;
        while Instant::now() < refused_by {
            open = streams
                .iter_mut()
                .filter_map(|s| (!closed_now(s)).then_some(()))
                .count();
            if open <= cap {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok((open, streams))
    });
    let (open, streams) = check(name, excess.await)?;
    if open > cap {
        let message =
            format!("{open} of {count} idle connections were still open, over the cap of {cap}");
        return check(name, Err(message));
    }
    let idle = target.idle_timeout;
    let closed_at = opened_at + idle + GRACE + GRACE;
    let lingering = on_thread(move || {
        Ok(streams
            .into_iter()
            .filter_map(|mut s| (!closed_by(&mut s, closed_at)).then_some(()))
            .count())
    });
    let lingering = check(name, lingering.await)?;
    if lingering > 0 {
        let message =
            format!("{lingering} idle connections were still open {idle:?} (the idle timeout) after they were opened, and more");
        return check(name, Err(message));
    }
    check(name, served(suite, &latecomer, idle).await)
}

/// `client` is answered by node B, within the idle timeout at the latest
/// (retrying, for a node that refuses it until idle connections close).
async fn served(suite: &Suite, client: &Node, idle: Duration) -> Result<(), String> {
    let give_up = Instant::now() + idle + GRACE;
    loop {
        let payload = ask(Command::Echo, b"a real client");
        let call = client.transport.request(suite.b.id, PROBE, payload, LONG);
        let answer = within(
            &suite.timer,
            LONG + GRACE,
            "a request during an idle flood",
            call,
        )
        .await?;
        match answer {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= give_up => {
                return Err(format!(
                    "a new client was not answered while idle connections held the node: {e}"
                ))
            }
            Err(_) => suite.timer.sleep(Duration::from_millis(50)).await,
        }
    }
}
