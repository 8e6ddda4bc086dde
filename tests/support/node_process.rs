//! `hologram-node` processes for the multi-process tests (included with
//! `#[path]`): start one and wait for its ready line, kill one, and on the
//! way out kill what is left and, if the test is failing, print the last
//! lines of each node's output.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

/// The program under test: the binary Cargo builds for the test.
pub const NODE_BIN: &str = env!("CARGO_BIN_EXE_hologram-node");
/// How long a node may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The arguments that run a validator: its listening address, key file,
/// data directory and peers file.
pub fn node_args(listen: SocketAddr, key: &Path, data: &Path, peers: &Path) -> Vec<String> {
    vec![
        "--listen".to_string(),
        listen.to_string(),
        "--key".into(),
        key.display().to_string(),
        "--data".into(),
        data.display().to_string(),
        "--peers".into(),
        peers.display().to_string(),
    ]
}

/// Starts node `i` with `args`, its stdout into `out` and its stderr (its
/// logs, filtered by the environment variable `log_var`, else by
/// `default_log`) into `out` with the extension `err`; waits for its ready
/// line and returns the process and that line. A node that exits or is not
/// ready in [`READY_TIMEOUT`] fails the test (killed first).
pub fn start_node(
    i: usize,
    args: &[String],
    out: &Path,
    log_var: &str,
    default_log: &str,
) -> (Child, String) {
    let mut child = Process::new(NODE_BIN)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var(log_var).unwrap_or(default_log.into()),
        )
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::fs::File::create(out.with_extension("err")).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        if let Some(at) = text.find("ready node=") {
            let line = text[at..].lines().next().unwrap_or_default().to_string();
            return (child, line);
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("node {i} exited before it was ready: {status}");
        }
        if start.elapsed() > READY_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("node {i} is not ready after {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills node `i` with SIGKILL (stopped or not) and reaps it.
pub fn kill_node(i: usize, mut child: Child) {
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "node {i} was not killed: {status}");
}

/// Kills and reaps every process left; if the test is failing, prints the
/// last `lines` lines of each node's files (node index, files).
pub fn stop_nodes<'a>(
    children: impl IntoIterator<Item = &'a mut Option<Child>>,
    files: impl IntoIterator<Item = (usize, PathBuf)>,
    lines: usize,
) {
    for slot in children {
        if let Some(mut child) = slot.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    if std::thread::panicking() {
        for (i, file) in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            eprintln!("--- node {i}: {} (last lines)", file.display());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
