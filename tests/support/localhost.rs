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

/// `n` free UDP ports on 127.0.0.1, chosen by the kernel and released for
/// the caller's processes.
pub fn free_udp_addrs(n: usize) -> Vec<SocketAddr> {
    let sockets: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    sockets.iter().map(|s| s.local_addr().unwrap()).collect()
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
