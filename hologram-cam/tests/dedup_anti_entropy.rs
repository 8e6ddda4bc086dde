//! Anti-entropy between ring neighbours (issue 22): five holders, N = 3,
//! whose disks rot, flip bits on read, misdirect reads and lose
//! acknowledged writes at crashes ([`FaultyStore`]); then one holder is
//! lost for good. No client puts anything again and no `repair` is called:
//! scrubs drop rotten copies and anti-entropy between neighbours restores
//! every object to N good copies, references following the objects, and
//! the reference sets of objects the owners all hold converging.
//!
//! The campaign, per seed: (1) puts, reads, crashes, scrub and anti-entropy
//! steps in a seeded order while two disks fail (one rots and misreads, one
//! loses writes); (2) the faults stop and the holders heal; (3) one holder
//! is wiped and leaves the ring for good while the rotting disk keeps
//! rotting and the steps go on; (4) the faults stop and the holders heal.
//! At most two copies of an object are damaged between heals, the fault
//! budget of N = 3. Some steps take or release a reference at one owner
//! only (a client whose request reached one owner of three), so the
//! owners' reference sets of an object they all hold differ. Invariants
//! after every step: a read returns the object's own bytes or nothing;
//! every acknowledged object has a good copy somewhere. After each heal:
//! every acknowledged object is readable and held good by each of its N
//! owners, and its owners hold one reference set, in which every reference
//! taken at one owner is live unless it was released (at any owner).
//!
//! Seeds: `HOLOGRAM_SEEDS=<n>` (default 3), `HOLOGRAM_SEED=<s>` replays one.

use futures::executor::block_on;
use hologram_cam::dedup::{AntiEntropy, DedupMessage, FetchedItem, Reference, Request};
use hologram_cam::{
    DedupHandler, DeduplicationNetwork, DiskFaults, FaultyStore, HashRing, MemoryReferences,
    MemoryStore, Object, ReferenceStore, Store, StoreResult, DEDUP_PROTOCOL,
};
use hologram_lattice::sim::check_seeds;
use hologram_lattice::transport::{
    async_trait, Handler, HandlerError, MemoryNetwork, MemoryTransport, Protocol,
};
use hologram_lattice::{NodeId, PeerId};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, RwLock};
use std::time::Duration;

type Disk = FaultyStore<MemoryStore>;

const TIMEOUT: Duration = Duration::from_secs(2);

struct Holder {
    id: NodeId,
    disk: Arc<Disk>,
    references: Arc<MemoryReferences>,
    handler: Arc<DedupHandler<Disk>>,
    transport: MemoryTransport,
}

struct Net {
    _network: MemoryNetwork,
    ring: Arc<RwLock<HashRing>>,
    holders: Vec<Holder>,
    client: DeduplicationNetwork,
}

/// Holder 0 is lost in phase 3; holder 1 rots and misreads; holder 2
/// loses writes at crashes.
const LOST: usize = 0;
const ROTTING: usize = 1;
const FORGETFUL: usize = 2;

const ROTS: DiskFaults = DiskFaults {
    rot_at_rest: 0.1,
    flip_on_read: 0.02,
    misdirected_read: 0.02,
    ..DiskFaults::NONE
};

const FORGETS: DiskFaults = DiskFaults {
    lost_on_crash: 0.5,
    ..DiskFaults::NONE
};

fn network(seed: u64) -> Net {
    let network = MemoryNetwork::new(seed);
    let ring = Arc::new(RwLock::new(HashRing::new()));
    let mut holders = Vec::new();
    for i in 0..5u8 {
        let id = NodeId::from_bytes(*blake3::hash(&[i, 22]).as_bytes());
        let disk = Arc::new(FaultyStore::new(
            MemoryStore::new(),
            seed ^ (u64::from(i) << 32),
            DiskFaults::NONE,
        ));
        let references = Arc::new(MemoryReferences::new());
        let handler =
            Arc::new(
                DedupHandler::with_references(Arc::clone(&disk), Arc::clone(&references))
                    .with_ring(id, Arc::clone(&ring), 3),
            );
        let transport = network.join(id, Arc::clone(&handler) as _);
        ring.write().unwrap().add(id);
        holders.push(Holder {
            id,
            disk,
            references,
            handler,
            transport,
        });
    }
    let client = network.join(
        NodeId::from_bytes([0xc1; 32]),
        Arc::new(DedupHandler::new(Arc::new(MemoryStore::new()))),
    );
    let client =
        DeduplicationNetwork::new(Arc::new(client), Arc::clone(&ring), 3).with_timeout(TIMEOUT);
    Net {
        _network: network,
        ring,
        holders,
        client,
    }
}

/// Whether `holder` holds a good copy of `object` (asked of the disk's
/// oracle, not by a read, which may inject a fault).
fn good_copy(holder: &Holder, object: &Object) -> bool {
    block_on(holder.disk.inner().get(&object.address()))
        .ok()
        .flatten()
        .is_some_and(|o| o == *object)
        && !holder.disk.is_rotten(&object.address())
}

fn on_ring(net: &Net, holder: &Holder) -> bool {
    net.ring.read().unwrap().nodes().any(|n| n == holder.id)
}

/// Every acknowledged object has a good copy on some holder of the ring.
fn none_lost(net: &Net, acked: &[Object]) -> Result<(), String> {
    for o in acked {
        let copies = net
            .holders
            .iter()
            .filter(|h| on_ring(net, h) && good_copy(h, o))
            .count();
        if copies == 0 {
            return Err(format!("{} has no good copy left", o.address()));
        }
    }
    Ok(())
}

/// Every owner of every acknowledged object holds a good copy.
fn fully_replicated(net: &Net, acked: &[Object]) -> Result<(), String> {
    for o in acked {
        for owner in net.client.owners(&o.address()) {
            let holder = net.holders.iter().find(|h| h.id == owner).unwrap();
            if !good_copy(holder, o) {
                let held = block_on(holder.disk.inner().contains(&o.address()));
                return Err(format!(
                    "owner {owner} lacks {} (held {held:?}, rotten {})",
                    o.address(),
                    holder.disk.is_rotten(&o.address())
                ));
            }
        }
    }
    Ok(())
}

/// The owners of every acknowledged object hold one reference set, in
/// which every reference taken at one owner is live unless released.
fn references_agree(net: &Net, acked: &[Object], seen: &Seen) -> Result<(), String> {
    let set_at = |owner: &NodeId, o: &Object| {
        let holder = net.holders.iter().find(|h| h.id == *owner).unwrap();
        block_on(holder.references.load(&o.address())).map_err(|e| e.to_string())
    };
    for o in acked {
        let owners = net.client.owners(&o.address());
        let first = set_at(&owners[0], o)?;
        for owner in &owners[1..] {
            let set = set_at(owner, o)?;
            if set != first {
                return Err(format!(
                    "the owners of {} hold other reference sets: {first:?} at {}, {set:?} at {owner}",
                    o.address(),
                    owners[0]
                ));
            }
        }
        let Some(set) = first else { continue };
        // What reached only a holder lost for good is lost with it.
        let kept = |id: &NodeId| net.ring.read().unwrap().nodes().any(|n| n == *id);
        for p in seen.partial.iter().filter(|p| p.address == o.address()) {
            let live = set.live.contains(&p.reference);
            let wrong = match p.released_at {
                Some(at) => kept(&at) && live,
                None => kept(&p.taken_at) && !live,
            };
            if wrong {
                return Err(format!(
                    "{}: a reference taken at one owner is live: {live} ({p:?})",
                    o.address()
                ));
            }
        }
    }
    Ok(())
}

/// What the campaign saw, for its report and its checks.
#[derive(Default, Debug)]
struct Seen {
    anti_entropy: AntiEntropy,
    scrubbed_corrupt: usize,
    reads: usize,
    /// References taken at one owner.
    partial: Vec<Partial>,
}

/// A reference taken at one owner, and where it was released, if it was
/// (at one owner too, which recorded the release).
#[derive(Debug)]
struct Partial {
    address: hologram_lattice::Address,
    reference: Reference,
    taken_at: NodeId,
    released_at: Option<NodeId>,
}

/// Sends one numbered request straight to `holder`'s handler, as a client
/// whose copies to the other owners were lost.
fn to_one(holder: &Holder, op: u64, message: DedupMessage) -> Result<DedupMessage, String> {
    let request = Request { op, message }.encode();
    let answer = block_on(
        holder
            .handler
            .request(PARTIAL_CLIENT, DEDUP_PROTOCOL, request),
    )
    .map_err(|e| e.to_string())?;
    DedupMessage::decode_owned(answer).map_err(|e| e.to_string())
}

/// One owner of `address`, drawn.
fn one_owner<'a>(
    net: &'a Net,
    rng: &mut ChaCha8Rng,
    address: hologram_lattice::Address,
) -> &'a Holder {
    let owners = net.client.owners(&address);
    let owner = owners[rng.random_range(0..owners.len())];
    net.holders.iter().find(|h| h.id == owner).unwrap()
}

/// The client whose requests reach one owner only.
const PARTIAL_CLIENT: PeerId = PeerId::from_bytes([0xc2; 32]);

impl Seen {
    fn add(&mut self, report: AntiEntropy) {
        let a = &mut self.anti_entropy;
        a.compared += report.compared;
        a.differing += report.differing;
        a.fetched += report.fetched;
        a.merged += report.merged;
        a.unavailable += report.unavailable;
        a.refused += report.refused;
        a.failed += report.failed;
    }
}

/// One seeded step of a phase with faults.
fn step(
    net: &Net,
    rng: &mut ChaCha8Rng,
    seed: u64,
    acked: &mut Vec<Object>,
    seen: &mut Seen,
) -> Result<(), String> {
    let live: Vec<&Holder> = net.holders.iter().filter(|h| on_ring(net, h)).collect();
    let holder = live[rng.random_range(0..live.len())];
    match rng.random_range(0..100) {
        40..45 if !acked.is_empty() => {
            // A reference taken at one owner, or one of those released at
            // one owner.
            let open: Vec<usize> = (0..seen.partial.len())
                .filter(|&i| seen.partial[i].released_at.is_none())
                .collect();
            let op = (1 << 40) | (seen.partial.len() as u64 * 2);
            if rng.random_bool(0.3) && !open.is_empty() {
                let i = open[rng.random_range(0..open.len())];
                let (address, r) = (seen.partial[i].address, seen.partial[i].reference);
                let owner = one_owner(net, rng, address);
                to_one(owner, op + 1, DedupMessage::Release(address, r))?;
                // A holder without the object, or without a record of its
                // references, records no release.
                let set = block_on(owner.references.load(&address)).map_err(|e| e.to_string())?;
                if set.is_some_and(|s| s.released.contains(&r)) {
                    seen.partial[i].released_at = Some(owner.id);
                }
            } else {
                let object = &acked[rng.random_range(0..acked.len())];
                let r = Reference {
                    client: PARTIAL_CLIENT,
                    op,
                };
                let put = DedupMessage::Put {
                    address: object.address(),
                    reference: Some(r),
                    data: object.shared_data(),
                };
                let owner = one_owner(net, rng, object.address());
                if let DedupMessage::Held { .. } = to_one(owner, op, put)? {
                    seen.partial.push(Partial {
                        address: object.address(),
                        reference: r,
                        taken_at: owner.id,
                        released_at: None,
                    });
                }
            }
        }
        0..45 => {
            let object = Object::new(format!("seed {seed} object {}", rng.random::<u64>()));
            match block_on(net.client.store_unique(object.shared_data())) {
                StoreResult::Stored(..) | StoreResult::Duplicate(_) => acked.push(object),
                StoreResult::Failed(_) => {}
            }
        }
        45..65 if !acked.is_empty() => {
            let object = &acked[rng.random_range(0..acked.len())];
            seen.reads += 1;
            if let Ok(read) = block_on(net.client.get(object.address())) {
                if read != *object {
                    return Err(format!(
                        "a read of {} returned other bytes",
                        object.address()
                    ));
                }
            }
        }
        65..75 => {
            let forgetful = &net.holders[FORGETFUL];
            block_on(forgetful.disk.crash()).map_err(|e| e.to_string())?;
        }
        75..85 => {
            let s = block_on(holder.handler.scrub(16)).map_err(|e| e.to_string())?;
            seen.scrubbed_corrupt += s.corrupt.len();
        }
        _ => {
            let peers = net.ring.read().unwrap().neighbours(&holder.id, 3).to_vec();
            let peer = peers[rng.random_range(0..peers.len())];
            let report = block_on(
                holder
                    .handler
                    .anti_entropy(&holder.transport, peer, TIMEOUT),
            )
            .map_err(|e| e.to_string())?;
            if report.refused > 0 {
                return Err(format!("an honest neighbour sent bad bytes: {report:?}"));
            }
            seen.add(report);
        }
    }
    none_lost(net, acked)
}

/// Faults stop; every holder scrubs a whole pass and runs an anti-entropy round
/// until a round fetches nothing; then every acknowledged object is read
/// back and held good by its owners.
fn heal(net: &Net, acked: &[Object], seen: &mut Seen) -> Result<usize, String> {
    for h in &net.holders {
        h.disk.set_faults(DiskFaults::NONE);
    }
    let mut rounds = 0;
    loop {
        rounds += 1;
        let mut moved = 0;
        for h in net.holders.iter().filter(|h| on_ring(net, h)) {
            // The pass the steps left half done, then a whole one.
            let mut passes = 0;
            while passes < 2 {
                let s = block_on(h.handler.scrub(64)).map_err(|e| e.to_string())?;
                seen.scrubbed_corrupt += s.corrupt.len();
                passes += usize::from(s.finished_pass);
            }
        }
        for h in net.holders.iter().filter(|h| on_ring(net, h)) {
            let report = block_on(h.handler.anti_entropy_round(&h.transport, TIMEOUT))
                .map_err(|e| e.to_string())?;
            moved += report.fetched + report.merged;
            if report.refused > 0 || report.failed > 0 {
                return Err(format!("a fault-free round went wrong: {report:?}"));
            }
            seen.add(report);
        }
        if moved == 0 {
            break;
        }
        if rounds > 4 {
            return Err("anti-entropy does not settle in 4 rounds".into());
        }
    }
    fully_replicated(net, acked)?;
    references_agree(net, acked, seen)?;
    for o in acked {
        match block_on(net.client.get(o.address())) {
            Ok(read) if read == *o => {}
            other => return Err(format!("{} unreadable: {other:?}", o.address())),
        }
    }
    Ok(rounds)
}

/// The campaign's figures (README, issue 22), per seed and in total.
#[derive(Default, Debug)]
struct Figures {
    objects: u64,
    rotted: u64,
    lost_writes: u64,
    scrubbed: u64,
    fetched: u64,
    restored: u64,
    merged: u64,
    partial: u64,
}

impl Figures {
    fn add(&mut self, o: &Figures) {
        self.objects += o.objects;
        self.rotted += o.rotted;
        self.lost_writes += o.lost_writes;
        self.scrubbed += o.scrubbed;
        self.fetched += o.fetched;
        self.restored += o.restored;
        self.merged += o.merged;
        self.partial += o.partial;
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} objects acknowledged, {} copies rotted and {} writes lost on disks, {} rotten copies \
             scrubbed, {} copies fetched by anti-entropy ({} after the holder was lost), {} references \
             taken or released at one owner, {} reference sets merged",
            self.objects,
            self.rotted,
            self.lost_writes,
            self.scrubbed,
            self.fetched,
            self.restored,
            self.partial,
            self.merged
        )
    }
}

fn campaign(seed: u64, total: &std::sync::Mutex<Figures>) -> Result<(), String> {
    let net = network(seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut acked, mut seen) = (Vec::new(), Seen::default());
    // 1: a rotting disk and a forgetful one.
    net.holders[ROTTING].disk.set_faults(ROTS);
    net.holders[FORGETFUL].disk.set_faults(FORGETS);
    for _ in 0..200 {
        step(&net, &mut rng, seed, &mut acked, &mut seen)?;
    }
    let damaged: u64 = net
        .holders
        .iter()
        .map(|h| h.disk.counts().rotted + h.disk.counts().lost)
        .sum();
    // 2: heal.
    heal(&net, &acked, &mut seen)?;
    let before_loss = seen.anti_entropy.fetched;
    // 3: a holder is wiped and leaves the ring for good, while the rotting
    // disk rots on.
    let lost = &net.holders[LOST];
    for address in block_on(lost.disk.inner().scan(None, usize::MAX)).unwrap() {
        block_on(lost.disk.inner().remove(&address)).unwrap();
    }
    net.ring.write().unwrap().remove(&lost.id);
    net.holders[ROTTING].disk.set_faults(ROTS);
    for _ in 0..100 {
        step(&net, &mut rng, seed, &mut acked, &mut seen)?;
    }
    // 4: heal, with no one putting again.
    let rounds = heal(&net, &acked, &mut seen)?;
    let restored = seen.anti_entropy.fetched - before_loss;
    if damaged == 0 || restored == 0 {
        return Err(format!(
            "the campaign tested nothing: {damaged} copies damaged, {restored} restored"
        ));
    }
    let rotted = net.holders[ROTTING].disk.counts();
    let figures = Figures {
        objects: acked.len() as u64,
        rotted: rotted.rotted,
        lost_writes: net.holders[FORGETFUL].disk.counts().lost,
        scrubbed: seen.scrubbed_corrupt as u64,
        fetched: seen.anti_entropy.fetched as u64,
        restored: restored as u64,
        merged: seen.anti_entropy.merged as u64,
        partial: seen.partial.len() as u64,
    };
    println!(
        "seed {seed}: {figures}; {} reads; anti-entropy compared {} ranges ({} differing), settled in {rounds} rounds",
        seen.reads, seen.anti_entropy.compared, seen.anti_entropy.differing,
    );
    total.lock().unwrap().add(&figures);
    Ok(())
}

#[test]
fn anti_entropy_restores_n_copies_after_disk_faults_and_a_lost_holder() {
    let total = std::sync::Mutex::new(Figures::default());
    check_seeds("dedup anti-entropy", 3, |seed| campaign(seed, &total));
    println!("dedup anti-entropy, every seed: {}", total.lock().unwrap());
}

/// Answers anti-entropy as an honest holder would, but with its objects'
/// bytes damaged (and the answer's checksum made to match).
struct Liar {
    honest: Arc<DedupHandler<MemoryStore>>,
}

#[async_trait]
impl Handler for Liar {
    async fn request(
        &self,
        from: PeerId,
        protocol: Protocol,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HandlerError> {
        let answer = self.honest.request(from, protocol, payload).await?;
        let answer = match DedupMessage::decode(&answer) {
            Ok(DedupMessage::Fetched { items, data, .. }) => {
                let mut data = data.to_vec();
                for byte in data.iter_mut().step_by(7) {
                    *byte ^= 0x20;
                }
                let items: Vec<Option<FetchedItem>> = items;
                DedupMessage::Fetched {
                    check: hologram_cam::dedup::fetched_check(&items),
                    items,
                    data: data.into(),
                }
            }
            Ok(other) => other,
            Err(e) => return Err(HandlerError::Refused(e.to_string())),
        };
        Ok(answer.encode())
    }
    async fn message(&self, _: PeerId, _: Protocol, _: Vec<u8>) {}
}

#[test]
fn a_neighbour_that_sends_other_bytes_gets_nothing_stored() {
    let network = MemoryNetwork::new(7);
    let ring = Arc::new(RwLock::new(HashRing::new()));
    let (a, b) = (NodeId::from_bytes([1; 32]), NodeId::from_bytes([2; 32]));
    ring.write().unwrap().add(a);
    ring.write().unwrap().add(b);
    let liar_store = Arc::new(MemoryStore::new());
    let objects: Vec<Object> = (0..300)
        .map(|i| Object::new(format!("object {i}")))
        .collect();
    block_on(liar_store.put_batch(objects.clone())).unwrap();
    let honest = Arc::new(DedupHandler::new(liar_store).with_ring(a, Arc::clone(&ring), 2));
    network.join(a, Arc::new(Liar { honest }));
    let store = Arc::new(MemoryStore::new());
    let asker = Arc::new(DedupHandler::new(Arc::clone(&store)).with_ring(b, Arc::clone(&ring), 2));
    let transport = network.join(b, Arc::clone(&asker) as _);
    let report = block_on(asker.anti_entropy(&transport, a, TIMEOUT)).unwrap();
    assert_eq!(report.refused, objects.len(), "{report:?}");
    assert_eq!(report.fetched, 0);
    assert!(block_on(store.scan(None, 10)).unwrap().is_empty());
    // Honest, the same exchange fetches everything, each object with its
    // bytes; a second pass finds the sets equal and lists nothing.
    let honest_store = Arc::new(MemoryStore::new());
    block_on(honest_store.put_batch(objects.clone())).unwrap();
    let c = NodeId::from_bytes([3; 32]);
    ring.write().unwrap().add(c);
    ring.write().unwrap().remove(&a);
    network.join(
        c,
        Arc::new(DedupHandler::new(honest_store).with_ring(c, Arc::clone(&ring), 2)),
    );
    let report = block_on(asker.anti_entropy(&transport, c, TIMEOUT)).unwrap();
    assert_eq!((report.fetched, report.refused), (objects.len(), 0));
    for o in &objects {
        assert_eq!(block_on(store.get(&o.address())).unwrap().as_ref(), Some(o));
    }
    let again = block_on(asker.anti_entropy(&transport, c, TIMEOUT)).unwrap();
    assert_eq!((again.differing, again.fetched), (0, 0), "{again:?}");
}

#[test]
fn requests_out_of_bounds_are_refused() {
    let network = MemoryNetwork::new(8);
    let ring = Arc::new(RwLock::new(HashRing::new()));
    let a = NodeId::from_bytes([1; 32]);
    ring.write().unwrap().add(a);
    let holder = Arc::new(DedupHandler::new(Arc::new(MemoryStore::new())).with_ring(
        a,
        Arc::clone(&ring),
        3,
    ));
    let transport = network.join(a, Arc::clone(&holder) as _);
    let ask = |message: DedupMessage| {
        let request = Request { op: 1, message }.encode();
        block_on(holder.request(a, hologram_cam::DEDUP_PROTOCOL, request))
    };
    let too_many =
        vec![hologram_cam::dedup::AddressPrefix::ALL; hologram_cam::dedup::MAX_RANGES + 1];
    assert!(matches!(
        ask(DedupMessage::Digests(too_many)),
        Err(HandlerError::Refused(_))
    ));
    let fetch = vec![Object::new(&b"x"[..]).address(); hologram_cam::dedup::MAX_FETCH + 1];
    assert!(matches!(
        ask(DedupMessage::Fetch(fetch)),
        Err(HandlerError::Refused(_))
    ));
    // A holder without a ring refuses anti-entropy.
    let ringless = DedupHandler::new(Arc::new(MemoryStore::new()));
    let request = Request {
        op: 2,
        message: DedupMessage::List(hologram_cam::dedup::AddressPrefix::ALL),
    }
    .encode();
    assert!(matches!(
        block_on(ringless.request(a, hologram_cam::DEDUP_PROTOCOL, request)),
        Err(HandlerError::Refused(_))
    ));
    drop(transport);
}
