//! The node both `tcp_node` (tokio, TCP) and `smol_node` (smol, in memory)
//! run: a [`Handler`] and a conversation through `Arc<dyn Transport>`. It
//! names no runtime; its only clock is the library's [`Timer`].

use hologram::lattice::transport::{
    async_trait, Handler, HandlerError, Protocol, Timer, Transport,
};
use hologram::lattice::PeerId;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a greeting may take.
const GREETING_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers greetings on [`Protocol::PING`], keeps the notes it is sent on
/// [`hologram::consensus::BROADCAST_PROTOCOL`], and refuses every other protocol.
pub struct Greeter {
    name: String,
    notes: Mutex<Vec<String>>,
}

impl Greeter {
    /// A greeter called `name`.
    pub fn new(name: &str) -> Arc<Greeter> {
        Arc::new(Greeter {
            name: name.to_string(),
            notes: Mutex::new(Vec::new()),
        })
    }

    /// The notes received so far.
    pub fn notes(&self) -> Vec<String> {
        self.notes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits (at most `patience`) until `count` notes have arrived; returns
    /// whether they did.
    pub async fn wait_for_notes(&self, count: usize, patience: Duration) -> bool {
        let timer = Timer::new();
        let start = Instant::now();
        while self.notes().len() < count {
            if start.elapsed() > patience {
                return false;
            }
            timer.sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

#[async_trait]
impl Handler for Greeter {
    async fn request(
        &self,
        from: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        if protocol != Protocol::PING {
            return Err(HandlerError::Refused(format!(
                "{} does not serve protocol {}",
                self.name, protocol.0
            )));
        }
        let said = String::from_utf8_lossy(&payload);
        Ok(format!("{} greets {} (who said {said:?})", self.name, short(from)).into_bytes())
    }

    async fn message(&self, from: PeerId, protocol: Protocol, payload: Vec<u8>) {
        if protocol == hologram::consensus::BROADCAST_PROTOCOL {
            let note = format!("{}: {}", short(from), String::from_utf8_lossy(&payload));
            self.notes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(note);
        }
    }
}

/// The first eight hex digits of an id.
pub fn short(id: PeerId) -> String {
    id.to_string().chars().take(8).collect()
}

/// A node's id: the BLAKE3 hash of its name (a stand-in for its public key).
pub fn id_of(name: &str) -> PeerId {
    PeerId::from_bytes(*blake3::hash(name.as_bytes()).as_bytes())
}

/// Greets every peer, sends each a note, and asks the first for a protocol
/// nobody serves; returns one line per thing that happened.
pub async fn converse(transport: Arc<dyn Transport>, peers: Vec<PeerId>) -> Vec<String> {
    let me = short(transport.local_id());
    let mut log = Vec::new();
    for &peer in &peers {
        let hello = format!("hello from {me}").into_bytes();
        let line = match transport
            .request(peer, Protocol::PING, hello, GREETING_TIMEOUT)
            .await
        {
            Ok(answer) => String::from_utf8_lossy(&answer).into_owned(),
            Err(e) => format!("failed: {e}"),
        };
        log.push(format!("{me} -> {}: {line}", short(peer)));
        let note = format!("a note from {me}").into_bytes();
        if let Err(e) = transport
            .send(peer, hologram::consensus::BROADCAST_PROTOCOL, note)
            .await
        {
            log.push(format!("{me} -> {}: note not sent: {e}", short(peer)));
        }
    }
    if let Some(&peer) = peers.first() {
        let outcome = transport
            .request(
                peer,
                hologram::cam::CAM_PROTOCOL,
                b"get".to_vec(),
                GREETING_TIMEOUT,
            )
            .await;
        log.push(format!("{me} -> {} on CAM: {outcome:?}", short(peer)));
    }
    log
}
