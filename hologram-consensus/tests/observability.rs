//! What an operator reads in the logs (issue 21), under a test subscriber
//! that keeps every event:
//!
//! - a Byzantine validator that equivocates on every vote it casts (and
//!   sends each half of the validators a different one) is named in exactly
//!   one `warn` event per honest replica that proved it, carrying the proof
//!   (both signed votes or headers), however many times it equivocates,
//!   inside the span of the vote or proposal that proved it (height, round);
//! - 10,000 garbage frames sent to a replica's inbound handler produce a
//!   bounded number of log lines (the refusals are rate-limited).
//!
//! Seeds: `HOLOGRAM_SEEDS=<n>` (default 2), `HOLOGRAM_SEED=<s>`.

mod support;

use hologram_consensus::{inbox, Offence, CONSENSUS_PROTOCOL};
use hologram_lattice::sim::{seeds, Faults};
use hologram_lattice::transport::Handler;
use hologram_lattice::NodeId;
use rand::RngExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use support::byzantine::Behaviour;
use support::Cluster;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One event as recorded: its level, fields (`message` among them) and the
/// spans it happened in (outermost first), each with its fields.
#[derive(Debug, Clone)]
struct Recorded {
    level: Level,
    fields: HashMap<String, String>,
    spans: Vec<(String, HashMap<String, String>)>,
}

/// A span's fields, kept in its extensions.
struct SpanFields(HashMap<String, String>);

/// A layer that keeps every event.
#[derive(Clone, Default)]
struct Keep(Arc<Mutex<Vec<Recorded>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Keep {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let level = *event.metadata().level();
        let spans = ctx
            .event_scope(event)
            .into_iter()
            .flat_map(|scope| scope.from_root())
            .map(|span| {
                let fields = span.extensions().get::<SpanFields>().map(|f| f.0.clone());
                (span.name().to_string(), fields.unwrap_or_default())
            })
            .collect();
        self.0.lock().unwrap().push(Recorded {
            level,
            fields,
            spans,
        });
    }
}

impl Keep {
    /// Runs `f` with this layer as the thread's subscriber.
    fn capture<T>(&self, f: impl FnOnce() -> T) -> T {
        let subscriber = tracing_subscriber::registry().with(self.clone());
        tracing::subscriber::with_default(subscriber, f)
    }

    fn events(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().clone()
    }
}

fn message(e: &Recorded) -> &str {
    e.fields.get("message").map_or("", String::as_str)
}

/// One equivocating validator of four; checks the warnings.
fn equivocation(seed: u64) -> Result<usize, String> {
    let keep = Keep::default();
    let network = Faults {
        latency_ms: (1, 30),
        ..Faults::NONE
    };
    let (honest, offender, proven) = keep.capture(|| -> Result<_, String> {
        let mut c = Cluster::new(seed, 4, &[Behaviour::Equivocate], 1, network);
        let mut submitted = Vec::new();
        let mut t = 0;
        while t < 2_000 {
            if c.sim.rng().random_bool(0.5) {
                submitted.extend(c.submit_random());
            }
            t += 20;
            c.sim.run_until(t).map_err(|e| e.to_string())?;
        }
        c.run_until_committed(&submitted, c.sim.now() + 30_000)?;
        // Which honest replicas hold a proof of the equivocation.
        let mut proven: HashMap<NodeId, usize> = HashMap::new();
        for (id, node, _) in c.sim.nodes() {
            let Some(h) = node.honest() else { continue };
            let proofs = (h.node.misbehaviour().iter())
                .filter(|m| {
                    matches!(
                        m.offence,
                        Offence::Equivocation(_) | Offence::ConflictingProposals(_)
                    )
                })
                .count();
            proven.insert(id, proofs);
        }
        Ok((c.honest.clone(), c.byzantine[0], proven))
    })?;
    let warnings: Vec<Recorded> = (keep.events().into_iter())
        .filter(|e| e.level == Level::WARN && message(e) == "validator proven to equivocate")
        .collect();
    let mut by_observer: HashMap<String, usize> = HashMap::new();
    for w in &warnings {
        if w.fields.get("offender") != Some(&offender.to_string()) {
            return Err(format!("a warning names another offender: {w:?}"));
        }
        for proof in ["first", "second"] {
            if !w
                .fields
                .get(proof)
                .is_some_and(|v| v.contains("voter") || v.contains("proposer"))
            {
                return Err(format!("a warning without its proof ({proof}): {w:?}"));
            }
        }
        // It happened while the replica handled a vote or proposal: inside
        // that message's span, which names the height and round.
        let in_message = w.spans.iter().any(|(name, f)| {
            (name == "vote" || name == "proposal")
                && f.contains_key("height")
                && f.contains_key("round")
        });
        if !in_message {
            return Err(format!("a warning outside a height's span: {w:?}"));
        }
        let me = w.fields.get("me").cloned().unwrap_or_default();
        *by_observer.entry(me).or_default() += 1;
    }
    // The Byzantine validator runs a replica too, which may see its own
    // conflicting votes relayed back: its logs are not the honest ones'.
    by_observer.remove(&offender.to_string());
    let mut warned = 0;
    for id in honest {
        let (proofs, warns) = (
            proven[&id],
            by_observer.remove(&id.to_string()).unwrap_or(0),
        );
        // Exactly one warning from each replica that proved it, however
        // many proofs it holds; none from one that did not.
        if warns != usize::from(proofs > 0) {
            return Err(format!("{id}: {proofs} proofs, {warns} warnings"));
        }
        warned += warns;
    }
    if !by_observer.is_empty() || warned == 0 {
        return Err(format!(
            "warnings {by_observer:?}, {warned} from honest replicas"
        ));
    }
    Ok(warned)
}

#[test]
fn an_equivocator_is_named_once_per_replica_with_its_proof() {
    for seed in seeds(2) {
        match equivocation(seed) {
            Ok(warned) => println!("seed {seed}: {warned} replicas warned once each"),
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
}

#[test]
fn a_flood_of_garbage_frames_logs_a_bounded_number_of_lines() {
    let keep = Keep::default();
    let (handler, _inbox) = inbox();
    let peer = NodeId::from_bytes([7; 32]);
    keep.capture(|| {
        futures::executor::block_on(async {
            for i in 0..10_000u32 {
                let garbage = i.to_le_bytes().repeat(1 + (i % 7) as usize);
                handler.message(peer, CONSENSUS_PROTOCOL, garbage).await;
            }
        })
    });
    let lines = keep.events();
    let refused = lines
        .iter()
        .filter(|e| message(e) == "frame refused")
        .count();
    // 10 a second pass; the flood takes well under a few seconds.
    assert!(refused >= 1, "a refusal is logged");
    assert!(
        lines.len() <= 40,
        "{} lines for 10,000 garbage frames",
        lines.len()
    );
    println!("10,000 garbage frames: {} log lines", lines.len());
}
