//! Peers: `<id>@<host:port>`, on a command line or one a line in a peers
//! file.

use super::error::{io, NodeError};
use super::keys::parse_hex32;
use hologram_lattice::NodeId;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

/// The largest peers file read.
const MAX_PEERS_FILE: u64 = 1 << 20;

/// Resolves `host:port` (an IP address or a host name) to its first address.
pub fn resolve(text: &str) -> Result<SocketAddr, String> {
    text.to_socket_addrs()
        .map_err(|e| format!("address {text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("address {text:?}: resolves to no address"))
}

/// Parses `<id>@<addr>`: 64 hex digits of the node id, then `host:port`.
pub fn parse_peer(spec: &str) -> Result<(NodeId, SocketAddr), NodeError> {
    let bad = |reason: String| NodeError::Peer {
        spec: spec.to_string(),
        reason,
    };
    let (id, addr) = spec
        .split_once('@')
        .ok_or_else(|| bad("expected <id>@<host:port>".into()))?;
    let id = NodeId::from_bytes(parse_hex32(id).map_err(|e| bad(format!("node id: {e}")))?);
    let addr = resolve(addr).map_err(bad)?;
    Ok((id, addr))
}

/// Parses a node id: 64 hex digits.
pub fn parse_node_id(text: &str) -> Result<NodeId, NodeError> {
    let bytes = parse_hex32(text).map_err(|reason| NodeError::Peer {
        spec: text.to_string(),
        reason: format!("node id: {reason}"),
    })?;
    Ok(NodeId::from_bytes(bytes))
}

/// Reads a peers file: one `<id>@<addr>` a line; blank lines and `#`
/// comments are skipped. A file over 1 MiB is refused unread.
pub fn read_peers_file(path: &Path) -> Result<Vec<(NodeId, SocketAddr)>, NodeError> {
    let doing = format!("reading the peers file {}", path.display());
    let size = std::fs::metadata(path).map_err(io(doing.clone()))?.len();
    if size > MAX_PEERS_FILE {
        return Err(NodeError::Peer {
            spec: path.display().to_string(),
            reason: format!("a peers file of {size} bytes, at most {MAX_PEERS_FILE}"),
        });
    }
    let text = std::fs::read_to_string(path).map_err(io(doing))?;
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(parse_peer)
        .collect()
}

/// The peers of node `me`: those given, minus `me` itself, each once. The
/// same id at two addresses is refused.
pub fn merge_peers(
    me: NodeId,
    given: impl IntoIterator<Item = (NodeId, SocketAddr)>,
) -> Result<Vec<(NodeId, SocketAddr)>, NodeError> {
    let mut peers: Vec<(NodeId, SocketAddr)> = Vec::new();
    for (id, addr) in given {
        if id == me {
            continue;
        }
        match peers.iter().find(|(known, _)| *known == id) {
            Some((_, known)) if *known == addr => {}
            Some((_, known)) => {
                return Err(NodeError::Peer {
                    spec: format!("{id}@{addr}"),
                    reason: format!("the same node is also given at {known}"),
                })
            }
            None => peers.push((id, addr)),
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_merge_without_self_and_without_contradictions() {
        let me = NodeId::from_bytes([1; 32]);
        let other = NodeId::from_bytes([2; 32]);
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let merged = merge_peers(me, [(me, a), (other, b), (other, b)]).unwrap();
        assert_eq!(merged, [(other, b)]);
        assert!(merge_peers(me, [(other, a), (other, b)]).is_err());
    }

    #[test]
    fn a_missing_peers_file_is_an_error() {
        let missing = read_peers_file(Path::new("/nonexistent/peers.txt"));
        assert!(matches!(missing, Err(NodeError::Io { .. })));
    }

    #[test]
    fn peers_parse() {
        let id = "ab".repeat(32);
        let (parsed, addr) = parse_peer(&format!("{id}@127.0.0.1:7001")).unwrap();
        assert_eq!(parsed, NodeId::from_bytes([0xab; 32]));
        assert_eq!(addr, "127.0.0.1:7001".parse().unwrap());
        for bad in ["zz@127.0.0.1:1", "127.0.0.1:1", &format!("{id}@nowhere")] {
            assert!(
                matches!(parse_peer(bad), Err(NodeError::Peer { .. })),
                "{bad}"
            );
        }
    }
}
