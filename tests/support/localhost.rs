//! What the multi-process tests and benches on 127.0.0.1 share (included
//! with `#[path]`): a fresh temporary directory and free UDP and TCP ports.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// A new directory under the system's temporary one, named `prefix`, the
/// process id and the time.
pub fn fresh_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `n` free UDP ports on 127.0.0.1 for the caller's processes to bind,
/// chosen outside the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`): a port the kernel chose
/// (bound to port 0) and released could be handed out again at once to any
/// socket bound to port 0 — the fault proxy's relays, a client's endpoint,
/// another test's — before the node that was meant to have it binds it, or
/// while that node is down between a kill and its restart. A port outside
/// the range is never handed out for port 0; each is checked free (bound
/// once) and claimed for the life of this process (see [`claim_port`]), so
/// no other test process of ours (which picks from the same range) takes
/// it while its node is down.
pub fn free_udp_addrs(n: usize) -> Vec<SocketAddr> {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let (low, high) = ephemeral_range();
    // Below the range if there is room there, else above it.
    let (first, last) = if low > 2_048 {
        (1_024.max(low / 2), low - 1)
    } else {
        (high + 1, u16::MAX)
    };
    assert!(
        first < last,
        "no port outside the ephemeral range {low}-{high}"
    );
    let span = u64::from(last - first) + 1;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let pid = u64::from(std::process::id());
    let start = (nanos ^ pid.wrapping_mul(0x9e37_79b9_7f4a_7c15)) % span;
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut held = Vec::with_capacity(n);
    for k in 0..span {
        if held.len() == n {
            break;
        }
        let port = first + ((start + k) % span) as u16;
        if given.contains(&port) {
            continue;
        }
        if let Ok(socket) = UdpSocket::bind(("127.0.0.1", port)) {
            if claim_port(port) {
                given.insert(port);
                held.push(socket);
            }
        }
    }
    assert_eq!(held.len(), n, "not {n} free ports in {first}-{last}");
    held.iter().map(|s| s.local_addr().unwrap()).collect()
}

/// Claims `port` for this process among the test processes on the machine:
/// a file named after it holding this process's id, in a directory they
/// share; a claim whose process is gone is taken over. False if a live
/// process holds it.
fn claim_port(port: u16) -> bool {
    use std::io::Write;
    let dir = std::env::temp_dir().join("hologram-test-ports");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(port.to_string());
    let me = std::process::id().to_string();
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
        {
            Ok(mut f) => return f.write_all(me.as_bytes()).is_ok(),
            Err(_) => {
                let holder = std::fs::read_to_string(&file).unwrap_or_default();
                let alive = !holder.is_empty()
                    && std::path::Path::new("/proc").join(holder.trim()).exists();
                if alive || holder.is_empty() {
                    // Held, or being written by its claimer right now.
                    return holder.trim() == me;
                }
                let _ = std::fs::remove_file(&file);
            }
        }
    }
    false
}

/// The kernel's ephemeral port range (Linux's default where it cannot be
/// read).
#[allow(dead_code)] // only the harness's own test asks
pub fn ephemeral_range() -> (u16, u16) {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut bounds = text
        .split_whitespace()
        .filter_map(|w| w.parse::<u16>().ok());
    match (bounds.next(), bounds.next()) {
        (Some(low), Some(high)) if low <= high => (low, high),
        _ => (32_768, 60_999),
    }
}

/// `n` free TCP ports on 127.0.0.1, chosen by the kernel and released for
/// the caller's processes.
#[allow(dead_code)] // not every includer listens on TCP
pub fn free_tcp_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}
