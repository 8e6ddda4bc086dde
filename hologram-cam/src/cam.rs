//! The chapter's `DistributedCAM`: content-addressed get and put across a
//! network, every fetched object verified before it is cached or returned.

use crate::wire::{CamMessage, MAX_MESSAGE_BYTES, MAX_OBJECT_BYTES};
use crate::{CamError, Object, SharedBytes, Store};
use futures::future::{BoxFuture, FutureExt, Shared};
use hologram_lattice::transport::{
    async_trait, Handler, HandlerError, Protocol, Service, Transport, TransportError,
};
use hologram_lattice::wire::WireError;
use hologram_lattice::LatticeRouter;
use hologram_lattice::{Address, PeerId};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Providers remembered per address, at most.
const PROVIDERS_PER_ADDRESS: usize = crate::wire::MAX_PROVIDERS;
/// Peers one `get` asks, at most.
const MAX_ASKED: usize = 32;

/// Who announced which addresses: bounded, oldest records evicted first.
#[derive(Debug, Clone)]
pub struct ProviderRecords {
    inner: Arc<Mutex<ProvidersInner>>,
}

#[derive(Debug)]
struct ProvidersInner {
    by_address: HashMap<Address, Vec<PeerId>>,
    order: VecDeque<Address>,
    capacity: usize,
}

impl ProviderRecords {
    /// Records for at most `capacity` addresses.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(ProvidersInner {
                by_address: HashMap::new(),
                order: VecDeque::new(),
                capacity: capacity.max(1),
            })),
        }
    }

    /// Notes that `peer` provides `address`.
    pub fn insert(&self, address: Address, peer: PeerId) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let new = !inner.by_address.contains_key(&address);
        let peers = inner.by_address.entry(address).or_default();
        if !peers.contains(&peer) {
            if peers.len() >= PROVIDERS_PER_ADDRESS {
                peers.remove(0);
            }
            peers.push(peer);
        }
        if new {
            inner.order.push_back(address);
            while inner.order.len() > inner.capacity {
                if let Some(old) = inner.order.pop_front() {
                    inner.by_address.remove(&old);
                }
            }
        }
    }

    /// Forgets that `peer` provides `address` (it failed or lied).
    pub fn forget(&self, address: &Address, peer: &PeerId) {
        if let Ok(mut inner) = self.inner.lock() {
            if let Some(peers) = inner.by_address.get_mut(address) {
                peers.retain(|p| p != peer);
            }
        }
    }

    /// The known providers of `address`, most recent last.
    pub fn get(&self, address: &Address) -> Vec<PeerId> {
        self.inner
            .lock()
            .ok()
            .and_then(|inner| inner.by_address.get(address).cloned())
            .unwrap_or_default()
    }
}

/// The inbound side of the CAM protocol: serves `Get` from the local store
/// and records `Provide` announcements.
pub struct CamHandler<S: Store + ?Sized> {
    store: Arc<S>,
    providers: ProviderRecords,
}

impl<S: Store + ?Sized> CamHandler<S> {
    /// A handler serving `store` and recording into `providers`.
    pub fn new(store: Arc<S>, providers: ProviderRecords) -> Self {
        Self { store, providers }
    }
}

#[async_trait]
impl<S: Store + ?Sized + 'static> Handler for CamHandler<S> {
    async fn request(
        &self,
        _from: PeerId,
        _protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        match CamMessage::decode(&payload).map_err(|e| HandlerError::Refused(e.to_string()))? {
            CamMessage::Get(address) => {
                let found = self
                    .store
                    .get(&address)
                    .await
                    .map_err(|e| HandlerError::Failed(e.to_string()))?;
                let providers = self.providers.get(&address);
                Ok(match found {
                    Some(object) => CamMessage::Found(object.shared_data()),
                    None if providers.is_empty() => CamMessage::NotFound,
                    None => CamMessage::Providers(providers),
                }
                .encode())
            }
            _ => Err(HandlerError::Refused("not a CAM request".into())),
        }
    }

    async fn message(&self, from: PeerId, _protocol: Protocol, payload: Vec<u8>) {
        if let Ok(CamMessage::Provide(address)) = CamMessage::decode(&payload) {
            self.providers.insert(address, from);
        }
    }
}

impl<S: Store + ?Sized + 'static> Service for CamHandler<S> {
    fn protocol(&self) -> Protocol {
        crate::CAM_PROTOCOL
    }
}

type Fetch = Shared<BoxFuture<'static, Result<Object, CamError>>>;

/// Content-addressed storage across a network.
///
/// `get` looks in the local store, then asks the peers that announced the
/// address and the peers the [`LatticeRouter`] names for it, one after the
/// other until one returns bytes that hash to the address. A peer without
/// the object may name the providers it knows of, which are asked next. A
/// peer that returns other bytes is recorded as a suspect and skipped; at
/// most 32 peers are asked. The object is
/// verified before it is cached or returned. Concurrent `get`s of one
/// address share one fetch. `put` stores locally and announces the address
/// to the nearest peers.
///
/// An object travels in one answer, so `put` refuses one larger than
/// [`max_object_bytes`](Self::max_object_bytes) with
/// [`CamError::ObjectTooLargeForPut`]: larger data goes through
/// [`put_blob`](Self::put_blob). A `get` that found nothing, but whose only
/// answers were over the limit, fails with [`CamError::AnswerTooLarge`],
/// not [`CamError::NotFound`].
pub struct DistributedCAM<S: Store + ?Sized> {
    local: PeerId,
    store: Arc<S>,
    transport: Arc<dyn Transport>,
    router: Arc<RwLock<LatticeRouter>>,
    providers: ProviderRecords,
    inflight: Mutex<HashMap<Address, Fetch>>,
    suspects: Arc<Mutex<Vec<PeerId>>>,
    timeout: Duration,
}

impl<S: Store + ?Sized + 'static> DistributedCAM<S> {
    /// A CAM for node `local` over `store` and `transport`, routing with
    /// `router` and reading provider records from `providers` (share them
    /// with the node's [`CamHandler`]).
    pub fn new(
        local: PeerId,
        store: Arc<S>,
        transport: Arc<dyn Transport>,
        router: Arc<RwLock<LatticeRouter>>,
        providers: ProviderRecords,
    ) -> Self {
        Self {
            local,
            store,
            transport,
            router,
            providers,
            inflight: Mutex::new(HashMap::new()),
            suspects: Arc::new(Mutex::new(Vec::new())),
            timeout: Duration::from_secs(2),
        }
    }

    /// Sets the timeout of each request to a peer.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The local store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Peers caught returning bytes that do not match the address asked for.
    pub fn suspects(&self) -> Vec<PeerId> {
        self.suspects.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The largest object [`put`](Self::put) accepts: the largest whose
    /// answer (`CamMessage::Found`) fits both this transport's
    /// [`max_frame`](Transport::max_frame) and the protocol's message limit
    /// ([`MAX_OBJECT_BYTES`]), so that every object put can be fetched by a
    /// peer whose transport carries frames as large as this one's.
    pub fn max_object_bytes(&self) -> usize {
        let frame = self.transport.max_frame().min(MAX_MESSAGE_BYTES);
        largest_answer(frame).min(MAX_OBJECT_BYTES)
    }

    /// Stores `data` locally, announces it to the nearest peers, and returns
    /// its address. An announcement that fails to send is not an error: the
    /// object is stored, and peers can still find it through the router.
    ///
    /// Data larger than [`max_object_bytes`](Self::max_object_bytes) is
    /// refused with [`CamError::ObjectTooLargeForPut`] and not stored: no
    /// peer could fetch it. Store it with [`put_blob`](Self::put_blob).
    pub async fn put(&self, data: impl Into<SharedBytes>) -> Result<Address, CamError> {
        let data = data.into();
        let max = self.max_object_bytes();
        if data.len() > max {
            return Err(CamError::ObjectTooLargeForPut {
                size: data.len(),
                max,
            });
        }
        let object = Object::new(data);
        let address = object.address();
        self.store.put(object).await?;
        let announce = CamMessage::Provide(address).encode();
        for peer in self.route(&address) {
            let _ = self
                .transport
                .send(peer, crate::CAM_PROTOCOL, announce.clone())
                .await;
        }
        Ok(address)
    }

    /// The object at `address`, from the local store or, verified, from a peer.
    pub async fn get(&self, address: Address) -> Result<Object, CamError> {
        if let Some(object) = self.store.get(&address).await? {
            return Ok(object);
        }
        let fetch = {
            let mut inflight = self
                .inflight
                .lock()
                .map_err(|_| CamError::Storage("in-flight table poisoned".into()))?;
            inflight
                .entry(address)
                .or_insert_with(|| self.fetch(address).boxed().shared())
                .clone()
        };
        let result = fetch.await;
        if let Ok(mut inflight) = self.inflight.lock() {
            inflight.remove(&address);
        }
        result
    }

    /// Providers first, then the router's nearest peers; never the local node.
    fn route(&self, address: &Address) -> Vec<PeerId> {
        let mut peers = self.providers.get(address);
        peers.reverse();
        if let Ok(router) = self.router.read() {
            peers.extend(router.route_to_address(address));
        }
        let mut seen = std::collections::HashSet::new();
        peers.retain(|p| *p != self.local && seen.insert(*p));
        peers
    }

    fn fetch(
        &self,
        address: Address,
    ) -> impl std::future::Future<Output = Result<Object, CamError>> + Send + 'static {
        let peers = self.route(&address);
        let (store, transport, providers, suspects, timeout) = (
            Arc::clone(&self.store),
            Arc::clone(&self.transport),
            self.providers.clone(),
            Arc::clone(&self.suspects),
            self.timeout,
        );
        let local = self.local;
        async move {
            let request = CamMessage::Get(address).encode();
            let mut asked = std::collections::HashSet::new();
            // Peers whose answer was over the frame or message limit.
            let mut too_large = 0;
            let mut queue: VecDeque<PeerId> = peers.into();
            while let Some(peer) = queue.pop_front() {
                if asked.len() >= MAX_ASKED || !asked.insert(peer) {
                    continue;
                }
                let answer = match transport
                    .request(peer, crate::CAM_PROTOCOL, request.clone(), timeout)
                    .await
                {
                    Ok(answer) => answer,
                    Err(TransportError::TooLarge { .. }) => {
                        too_large += 1;
                        continue;
                    }
                    Err(_) => {
                        providers.forget(&address, &peer);
                        continue;
                    }
                };
                let data = match CamMessage::decode_owned(answer) {
                    Ok(CamMessage::Found(data)) => data,
                    Ok(CamMessage::Providers(named)) => {
                        // Ask the named providers next, before the router's peers.
                        for p in named.into_iter().rev() {
                            if p != local && !asked.contains(&p) {
                                queue.push_front(p);
                            }
                        }
                        continue;
                    }
                    Err(CamError::Wire(WireError::TooLarge { .. })) => {
                        too_large += 1;
                        continue;
                    }
                    _ => continue,
                };
                match Object::verify(address, data) {
                    Ok(object) => {
                        store.put(object.clone()).await?;
                        return Ok(object);
                    }
                    Err(_) => {
                        providers.forget(&address, &peer);
                        if let Ok(mut s) = suspects.lock() {
                            if !s.contains(&peer) {
                                s.push(peer);
                            }
                        }
                    }
                }
            }
            if too_large > 0 {
                return Err(CamError::AnswerTooLarge {
                    address,
                    peers: too_large,
                });
            }
            Err(CamError::NotFound(address))
        }
    }
}

/// The encoded size of a `CamMessage::Found` of `n` bytes: the variant's
/// tag (one byte), the length as a postcard varint, and the bytes.
fn found_len(n: usize) -> usize {
    1 + hologram_lattice::wire::varint_len(n) + n
}

/// The largest object whose `Found` answer fits in `frame` bytes.
fn largest_answer(frame: usize) -> usize {
    // The overhead is 2 to 11 bytes: at most ten steps down.
    let mut n = frame.saturating_sub(2);
    while n > 0 && found_len(n) > frame {
        n -= 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `found_len` is the real encoding's length, and `largest_answer`
        /// is the largest object whose answer fits the frame.
        #[test]
        fn the_answer_overhead_is_the_encodings(n in 0usize..70_000, frame in 0usize..70_000) {
            let encoded = CamMessage::Found(SharedBytes::from(vec![0u8; n])).encode();
            prop_assert_eq!(found_len(n), encoded.len());
            let max = largest_answer(frame);
            prop_assert!(frame < 2 || found_len(max) <= frame);
            prop_assert!(found_len(max + 1) > frame);
        }
    }

    #[test]
    fn varint_boundaries() {
        for n in [0, 127, 128, 16_383, 16_384, (1 << 21) - 1, 1 << 21] {
            let encoded = CamMessage::Found(SharedBytes::from(vec![0u8; n])).encode();
            assert_eq!(found_len(n), encoded.len(), "{n} bytes");
        }
    }
}
