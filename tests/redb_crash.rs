//! `RedbStore` keeps what it acknowledged when its process is killed.
//!
//! The test re-runs its own binary as a child that writes to a store and
//! prints the address of every object as soon as the write returned `Ok`,
//! kills it with SIGKILL in the middle of the stream, reopens the store and
//! checks that every acknowledged object is there and intact.
//!
//! Unix only: the crash modelled is SIGKILL, which `Child::kill` sends on
//! Unix. (On Windows it is `TerminateProcess`, and the file lock and page
//! cache behave differently; that platform is not covered here.)
#![cfg(unix)]

use futures::executor::block_on;
use hologram::cam::RedbStore;
use hologram::cam::{Object, Store};
use hologram::lattice::Address;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Set (to the store's path) in the child's environment.
const CHILD_VAR: &str = "HOLOGRAM_REDB_CRASH_WRITER";
/// How the child marks an acknowledged address on stdout.
const ACK: &str = "ACK ";
/// Acknowledgements the parent waits for before killing each child.
const KILL_AFTER: [usize; 3] = [250, 600, 400];
/// How long the child writes if nobody kills it (an orphan stops by itself).
const CHILD_LIFETIME: Duration = Duration::from_secs(30);

/// The child: writes until killed. A no-op in a normal test run.
#[test]
fn writer_child() {
    let Some(path) = std::env::var_os(CHILD_VAR) else {
        return;
    };
    let store = RedbStore::create(PathBuf::from(path)).unwrap();
    let stdout = std::io::stdout();
    let start = Instant::now();
    // Each writer writes different objects.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64 ^ u64::from(std::process::id());
    let mut round = 0u64;
    while start.elapsed() < CHILD_LIFETIME {
        round += 1;
        // Every third write is a batch of 1 to 40 objects, the others single puts.
        let count = if round.is_multiple_of(3) {
            1 + seed % 40
        } else {
            1
        };
        let objects: Vec<Object> = (0..count)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let len = 64 + (seed % 4000) as usize;
                let mut bytes = seed.to_le_bytes().repeat(len / 8);
                bytes.extend_from_slice(&round.to_le_bytes());
                Object::new(bytes)
            })
            .collect();
        let addresses: Vec<Address> = objects.iter().map(Object::address).collect();
        if count == 1 {
            block_on(store.put(objects.into_iter().next().unwrap())).unwrap();
        } else {
            block_on(store.put_batch(objects)).unwrap();
        }
        let mut out = stdout.lock();
        for address in addresses {
            writeln!(out, "{ACK}{address}").unwrap();
        }
        out.flush().unwrap();
    }
}

/// Removes the store's file when the test ends, however it ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs a writer on the store at `path`, kills it with SIGKILL once it has
/// acknowledged at least `kill_after` objects, and returns every address it
/// acknowledged.
fn write_until_killed(path: &Path, kill_after: usize) -> Vec<Address> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["writer_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    let mut acknowledged = Vec::new();
    while acknowledged.len() < kill_after {
        let line = lines
            .next()
            .expect("the writer stopped before it was killed")
            .unwrap();
        if let Some(address) = line.strip_prefix(ACK) {
            acknowledged.push(address.parse::<Address>().unwrap());
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the writer was not killed: {status}");
    // Lines already in the pipe were acknowledged before the kill (the last
    // one may be cut short).
    for line in lines {
        if let Some(address) = line.unwrap().strip_prefix(ACK) {
            if let Ok(address) = address.parse::<Address>() {
                acknowledged.push(address);
            }
        }
    }
    acknowledged
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let file = TempFile(std::env::temp_dir().join(format!(
        "hologram-redb-crash-{}-{}.redb",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    )));
    let _ = std::fs::remove_file(&file.0);
    // Three crashes of the same file: each writer opens what the last one
    // left behind.
    for kill_after in KILL_AFTER {
        let acknowledged = write_until_killed(&file.0, kill_after);
        check_after_crash(&file.0, acknowledged);
    }
}

/// Reopens the store and checks it holds every acknowledged object, intact,
/// and nothing that does not verify.
fn check_after_crash(path: &Path, acknowledged: Vec<Address>) {
    // redb notices the unclean shutdown and repairs the file on open.
    let store = RedbStore::open(path).unwrap();
    for address in &acknowledged {
        let object = block_on(store.get(address))
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {address} is missing after the crash"));
        assert_eq!(Address::of(object.data()), *address);
    }

    let mut stored = BTreeSet::new();
    let mut after = None;
    loop {
        let page = block_on(store.scan(after, 100)).unwrap();
        let Some(last) = page.last() else { break };
        after = Some(*last);
        for address in page {
            let object = block_on(store.get(&address)).unwrap().unwrap();
            assert_eq!(Address::of(object.data()), address);
            stored.insert(address);
        }
    }
    let acknowledged: BTreeSet<Address> = acknowledged.into_iter().collect();
    assert!(
        stored.is_superset(&acknowledged),
        "scan misses acknowledged objects"
    );
    println!(
        "{} acknowledged before SIGKILL, {} stored after reopening",
        acknowledged.len(),
        stored.len()
    );
}
