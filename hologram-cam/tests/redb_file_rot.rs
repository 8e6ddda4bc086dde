//! Faults below the `Store` seam (#22): bytes of a real `RedbStore` file
//! flipped between runs, as a disk that rots at rest or misdirects a write
//! does to redb's own pages. A file-level shim, not a patched redb: each
//! case writes a store, closes it, flips seeded bytes of a copy of the
//! file and opens the copy again.
//!
//! What must hold, whatever was hit (object bytes, keys, redb's b-tree
//! pages, its header): opening either succeeds or fails with an error;
//! nothing panics; no read returns bytes other than the object's own (a
//! read gives the object, nothing, or an error); a scan lists only
//! addresses, and a scrub of a durable holder over the copy finishes or
//! errors, and everything it keeps reads back as written.
//!
//! `HOLOGRAM_SEEDS=N cargo test --release -p hologram-cam --test
//! redb_file_rot` runs more cases (default 24; the case is printed on
//! failure, `HOLOGRAM_SEED=n` replays one).

use futures::executor::block_on;
use hologram_cam::{DedupHandler, Object, RedbStore, Store};
use hologram_lattice::sim::check_seeds;
use hologram_lattice::Address;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The objects every case writes: small ones (packed in segments), a few
/// over a segment's size.
fn objects() -> Vec<Object> {
    let mut rng = ChaCha8Rng::seed_from_u64(0x00b1_ec75);
    (0..300)
        .map(|i| {
            let len = match i % 50 {
                0 => rng.random_range(64 << 10..200 << 10),
                _ => rng.random_range(0..4096),
            };
            Object::new((0..len).map(|_| rng.random::<u8>()).collect::<Vec<u8>>())
        })
        .collect()
}

/// The pristine file, written once per test process.
fn pristine() -> &'static (PathBuf, BTreeMap<Address, Object>) {
    static FILE: OnceLock<(PathBuf, BTreeMap<Address, Object>)> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hologram-redb-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pristine.redb");
        let store = RedbStore::create(&file).unwrap();
        let objects = objects();
        block_on(store.put_batch(objects.clone())).unwrap();
        drop(store);
        let by_address = objects.into_iter().map(|o| (o.address(), o)).collect();
        (file, by_address)
    })
}

/// A copy of the pristine file with `flips` seeded bytes XORed with a
/// non-zero mask, anywhere in the file or (`head`) in its first 16 KiB,
/// where redb keeps its header and allocator state; returns the copy's
/// path and the offsets hit.
fn rotten_copy(seed: u64, flips: usize, head: bool) -> (PathBuf, Vec<usize>) {
    let (file, _) = pristine();
    let mut bytes = std::fs::read(file).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut hit = Vec::new();
    let end = match head {
        true => bytes.len().min(16 << 10),
        false => bytes.len(),
    };
    for _ in 0..flips {
        let at = rng.random_range(0..end);
        bytes[at] ^= rng.random_range(1..=255u8);
        hit.push(at);
    }
    let copy = file.with_file_name(format!("case-{seed}.redb"));
    std::fs::write(&copy, &bytes).unwrap();
    (copy, hit)
}

/// Opens and reads a rotten copy; the invariants of the module docs.
fn check_copy(path: &Path, expected: &BTreeMap<Address, Object>) -> Result<String, String> {
    let store = match RedbStore::open(path) {
        Ok(store) => Arc::new(store),
        Err(e) => return Ok(format!("refused at open: {e}")),
    };
    let (mut good, mut missing, mut errors) = (0, 0, 0);
    for (address, object) in expected {
        match block_on(store.get(address)) {
            Ok(Some(got)) if got == *object => good += 1,
            Ok(Some(_)) => return Err(format!("{address} read back other bytes")),
            Ok(None) => missing += 1,
            Err(_) => errors += 1,
        }
    }
    // A scan lists addresses only; whatever it lists and reads is right.
    let mut after = None;
    let mut listed = 0usize;
    while listed <= expected.len() * 2 {
        let page = match block_on(store.scan(after, 64)) {
            Ok(page) => page,
            Err(_) => break,
        };
        let Some(&last) = page.last() else {
            break;
        };
        for address in &page {
            if let Ok(Some(got)) = block_on(store.get(address)) {
                if got.address() != *address {
                    return Err(format!(
                        "scan listed {address}, which read back other bytes"
                    ));
                }
            }
        }
        listed += page.len();
        after = Some(last);
    }
    // A durable holder's scrub over the copy ends, and what it keeps is right.
    let holder = DedupHandler::durable(Arc::clone(&store));
    let mut dropped = 0;
    for _ in 0..8 {
        match block_on(holder.scrub(10_000)) {
            Ok(step) => {
                dropped += step.corrupt.len();
                if step.finished_pass {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    for (address, object) in expected {
        if let Ok(Some(got)) = block_on(store.get(address)) {
            if got != *object {
                return Err(format!("{address} read back other bytes after the scrub"));
            }
        }
    }
    Ok(format!(
        "opened: {good} good, {missing} missing, {errors} errors, {listed} listed, {dropped} dropped by the scrub"
    ))
}

#[test]
fn flipped_bytes_in_a_redb_file_never_read_back_as_an_object() {
    let outcomes = std::sync::Mutex::new(BTreeMap::<String, u64>::new());
    check_seeds("a rotten redb file", 24, |seed| {
        let flips = 1 + (seed as usize % 4) * 3;
        let (copy, hit) = rotten_copy(seed, flips, seed % 3 == 2);
        let (_, expected) = pristine();
        let outcome = catch_unwind(AssertUnwindSafe(|| check_copy(&copy, expected)));
        let _ = std::fs::remove_file(&copy);
        match outcome {
            Ok(Ok(summary)) => {
                let kind = match summary.as_str() {
                    s if s.starts_with("refused") => "refused at open",
                    s if s.contains(" 0 missing, 0 errors")
                        && s.ends_with(" 0 dropped by the scrub") =>
                    {
                        "opened, every object intact"
                    }
                    _ => "opened, objects lost or refused (none wrong)",
                };
                *outcomes
                    .lock()
                    .unwrap()
                    .entry(kind.to_string())
                    .or_default() += 1;
                if std::env::var_os("HOLOGRAM_VERBOSE").is_some() {
                    println!("case {seed}: {flips} bytes flipped: {summary}");
                }
                Ok(())
            }
            Ok(Err(e)) => Err(format!("{flips} bytes flipped at {hit:?}: {e}")),
            Err(_) => Err(format!("{flips} bytes flipped at {hit:?}: panicked")),
        }
    });
    println!("outcomes: {:?}", outcomes.lock().unwrap());
    if let Some(dir) = pristine().0.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}
