//! The handler every node of the suite runs: it answers by command, counts
//! the requests it was handed and records the messages.

use super::super::{async_trait, Handler, HandlerError, Protocol, Timer};
use crate::PeerId;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The protocol the probe is registered for.
pub(super) const PROBE: Protocol = Protocol(0xfff0);
/// A protocol no node serves.
pub(super) const UNSERVED: Protocol = Protocol(0xfff1);

/// What a request or message asks of the probe: its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Command {
    /// Answers the payload followed by the caller's id.
    Echo = 0,
    /// Waits `payload[1]` milliseconds, then answers as `Echo`.
    EchoAfter = 1,
    /// Waits the little-endian `u32` of milliseconds in `payload[1..5]`,
    /// then answers nothing.
    Sleep = 2,
    /// Fails with [`HandlerError::Failed`].
    Fail = 3,
    /// Panics.
    Panic = 4,
    /// Answers the little-endian `u64` in `payload[1..9]` zero bytes.
    Big = 5,
    /// Answers the payload's length, a little-endian `u64`.
    Len = 6,
}

impl Command {
    fn of(payload: &[u8]) -> Option<Command> {
        use Command::*;
        let first = *payload.first()?;
        [Echo, EchoAfter, Sleep, Fail, Panic, Big, Len]
            .into_iter()
            .find(|c| *c as u8 == first)
    }
}

/// A request's payload: the command byte, then `rest`.
pub(super) fn ask(command: Command, rest: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(1 + rest.len());
    payload.push(command as u8);
    payload.extend_from_slice(rest);
    payload
}

/// What `Echo` answers to `payload` from `from`.
pub(super) fn echoed(payload: &[u8], from: PeerId) -> Vec<u8> {
    [payload, from.as_bytes()].concat()
}

/// A message as the probe received it.
pub(super) type Received = (PeerId, Protocol, Vec<u8>);

/// The suite's handler (see the module docs).
pub(super) struct Probe {
    timer: Timer,
    requests: AtomicUsize,
    messages: Mutex<Vec<Received>>,
}

impl Probe {
    pub(super) fn new(timer: Timer) -> Probe {
        Probe {
            timer,
            requests: AtomicUsize::new(0),
            messages: Mutex::new(Vec::new()),
        }
    }

    /// How many requests the probe was handed.
    pub(super) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The messages received so far.
    pub(super) fn messages(&self) -> MutexGuard<'_, Vec<Received>> {
        self.messages.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn number<const N: usize>(payload: &[u8]) -> Option<[u8; N]> {
    payload.get(1..1 + N)?.try_into().ok()
}

#[async_trait]
impl Handler for Probe {
    async fn request(
        &self,
        from: PeerId,
        _protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let unknown = || HandlerError::Refused("not a probe command".into());
        match Command::of(&payload).ok_or_else(unknown)? {
            Command::Echo => Ok(echoed(&payload, from)),
            Command::EchoAfter => {
                let ms = payload.get(1).copied().unwrap_or(0);
                self.timer.sleep(Duration::from_millis(ms.into())).await;
                Ok(echoed(&payload, from))
            }
            Command::Sleep => {
                let ms = u32::from_le_bytes(number(&payload).ok_or_else(unknown)?);
                self.timer.sleep(Duration::from_millis(ms.into())).await;
                Ok(Vec::new())
            }
            Command::Fail => Err(HandlerError::Failed("the probe fails on purpose".into())),
            Command::Panic => panic!("the conformance probe panics on purpose"),
            Command::Big => {
                let len = u64::from_le_bytes(number(&payload).ok_or_else(unknown)?);
                let len = usize::try_from(len).map_err(|_| unknown())?;
                Ok(vec![0; len])
            }
            Command::Len => Ok((payload.len() as u64).to_le_bytes().to_vec()),
        }
    }

    async fn message(&self, from: PeerId, protocol: Protocol, payload: Vec<u8>) {
        if Command::of(&payload) == Some(Command::Panic) {
            panic!("the conformance probe panics on purpose");
        }
        self.messages().push((from, protocol, payload));
    }
}
