//! The command line of `cluster_node`, parsed by hand (no dependency), and
//! its three modes: make a key, run a node, talk to a node.

use super::control::Client;
use super::error::{io, ClusterError};
use super::keys;
use super::node::{self, NodeConfig};
use hologram::consensus::Command;
use hologram::lattice::NodeId;
use hologram::receipt::KeyPair;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// The usage text.
pub const USAGE: &str = "\
cluster_node: one validator of a BFT cluster over TCP, or a client of one.

Make a key, for a node or a client (prints the id the others name it by):
  cluster_node --gen-key <file>

Run a node:
  cluster_node --listen <addr> --key <file> --data <dir>
               (--peer <id>@<addr>)... [--peers <file>] [--pipeline <n>]
  Every validator runs with the same members: itself and its peers. A peers
  file holds one <id>@<addr> a line (# starts a comment); a node skips its
  own line, so every node can share one file. --pipeline: heights decided
  concurrently (default 4).

Talk to a node:
  cluster_node --node <id>@<addr> --client-key <file> --submit <text> [--submit <text>]...
  cluster_node --node <id>@<addr> --status
  cluster_node --node <id>@<addr> --log
  Every command is signed with the client's key (made by --gen-key): the
  replicas verify it, so no one else can submit or alter one in its name.
";

/// The largest peers file read.
const MAX_PEERS_FILE: u64 = 1 << 20;
/// The default pipeline depth.
const DEFAULT_PIPELINE: usize = 4;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Print the usage.
    Help,
    /// Make a key file.
    GenKey(PathBuf),
    /// Run a node.
    Run(RunOptions),
    /// Talk to a node.
    Client {
        /// The node.
        node: (NodeId, SocketAddr),
        /// The client's key file (needed to submit).
        key: Option<PathBuf>,
        /// What to ask.
        action: ClientAction,
    },
}

/// How to run a node, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The key file.
    pub key: PathBuf,
    /// The data directory.
    pub data: PathBuf,
    /// Peers given with `--peer`.
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// Peers files given with `--peers`.
    pub peers_files: Vec<PathBuf>,
    /// Heights decided concurrently.
    pub pipeline: usize,
}

/// What a client asks a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAction {
    /// Submit these commands, one after the other.
    Submit(Vec<String>),
    /// Print the node's status.
    Status,
    /// Print the node's log of applied commands.
    Log,
}

/// Parses the arguments (without the program name).
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Invocation, ClusterError> {
    let mut args = args.into_iter();
    let mut listen = None;
    let mut key = None;
    let mut data = None;
    let mut gen_key = None;
    let mut client_key = None;
    let mut node = None;
    let mut pipeline = None;
    let mut peers = Vec::new();
    let mut peers_files = Vec::new();
    let mut submits = Vec::new();
    let mut status = false;
    let mut log = false;
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| ClusterError::Usage(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(Invocation::Help),
            "--listen" => set_once(&mut listen, &flag, resolve(&value()?)?)?,
            "--key" => set_once(&mut key, &flag, PathBuf::from(value()?))?,
            "--data" => set_once(&mut data, &flag, PathBuf::from(value()?))?,
            "--gen-key" => set_once(&mut gen_key, &flag, PathBuf::from(value()?))?,
            "--client-key" => set_once(&mut client_key, &flag, PathBuf::from(value()?))?,
            "--node" => set_once(&mut node, &flag, parse_peer(&value()?)?)?,
            "--peer" => peers.push(parse_peer(&value()?)?),
            "--peers" => peers_files.push(PathBuf::from(value()?)),
            "--pipeline" => {
                let depth = number(&flag, &value()?, 1..=256)?;
                set_once(&mut pipeline, &flag, depth)?;
            }
            "--submit" => submits.push(value()?),
            "--status" => status = true,
            "--log" => log = true,
            other => return Err(ClusterError::Usage(format!("unknown argument {other:?}"))),
        }
    }

    if let Some(path) = gen_key {
        let others = listen.is_some()
            || key.is_some()
            || data.is_some()
            || node.is_some()
            || client_key.is_some();
        if others || !peers.is_empty() || !peers_files.is_empty() {
            return Err(ClusterError::Usage("--gen-key takes no other flag".into()));
        }
        return Ok(Invocation::GenKey(path));
    }
    if let Some(node) = node {
        let asked = usize::from(!submits.is_empty()) + usize::from(status) + usize::from(log);
        if asked != 1 {
            return Err(ClusterError::Usage(
                "--node needs exactly one of --submit, --status or --log".into(),
            ));
        }
        let action = if status {
            ClientAction::Status
        } else if log {
            ClientAction::Log
        } else if client_key.is_none() {
            return Err(ClusterError::Usage(
                "--submit needs --client-key: commands are signed by their client".into(),
            ));
        } else {
            ClientAction::Submit(submits)
        };
        return Ok(Invocation::Client {
            node,
            key: client_key,
            action,
        });
    }
    if !submits.is_empty() || status || log || client_key.is_some() {
        return Err(ClusterError::Usage(
            "--submit, --status, --log and --client-key need --node".into(),
        ));
    }
    match (listen, key, data) {
        (None, None, None) if peers.is_empty() && peers_files.is_empty() => Ok(Invocation::Help),
        (Some(listen), Some(key), Some(data)) => Ok(Invocation::Run(RunOptions {
            listen,
            key,
            data,
            peers,
            peers_files,
            pipeline: pipeline.unwrap_or(DEFAULT_PIPELINE),
        })),
        _ => Err(ClusterError::Usage(
            "a node needs --listen, --key and --data".into(),
        )),
    }
}

/// Parses a number of `range` given to `flag`.
fn number(
    flag: &str,
    text: &str,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ClusterError> {
    text.parse::<usize>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            ClusterError::Usage(format!(
                "{flag} {text:?}: a number from {} to {} expected",
                range.start(),
                range.end()
            ))
        })
}

fn set_once<T>(slot: &mut Option<T>, flag: &str, value: T) -> Result<(), ClusterError> {
    if slot.replace(value).is_some() {
        return Err(ClusterError::Usage(format!("{flag} given twice")));
    }
    Ok(())
}

/// Resolves `host:port` (an IP address or a host name) to its first address.
fn resolve(text: &str) -> Result<SocketAddr, ClusterError> {
    let bad = |reason: String| ClusterError::Usage(format!("address {text:?}: {reason}"));
    text.to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("resolves to no address".into()))
}

/// Parses `<id>@<addr>`: 64 hex digits of the node id, then `host:port`.
pub fn parse_peer(spec: &str) -> Result<(NodeId, SocketAddr), ClusterError> {
    let bad = |reason: String| ClusterError::Peer {
        spec: spec.to_string(),
        reason,
    };
    let (id, addr) = spec
        .split_once('@')
        .ok_or_else(|| bad("expected <id>@<host:port>".into()))?;
    let id = NodeId::from_bytes(keys::parse_hex32(id).map_err(|e| bad(format!("node id: {e}")))?);
    let addr = resolve(addr).map_err(|e| bad(e.to_string()))?;
    Ok((id, addr))
}

/// Reads a peers file: one `<id>@<addr>` a line; blank lines and `#`
/// comments are skipped.
pub fn read_peers(path: &Path) -> Result<Vec<(NodeId, SocketAddr)>, ClusterError> {
    let doing = format!("reading the peers file {}", path.display());
    let size = std::fs::metadata(path).map_err(io(doing.clone()))?.len();
    if size > MAX_PEERS_FILE {
        return Err(ClusterError::Usage(format!(
            "peers file {}: {size} bytes, at most {MAX_PEERS_FILE}",
            path.display()
        )));
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
) -> Result<Vec<(NodeId, SocketAddr)>, ClusterError> {
    let mut peers: Vec<(NodeId, SocketAddr)> = Vec::new();
    for (id, addr) in given {
        if id == me {
            continue;
        }
        match peers.iter().find(|(known, _)| *known == id) {
            Some((_, known)) if *known == addr => {}
            Some((_, known)) => {
                return Err(ClusterError::Peer {
                    spec: format!("{id}@{addr}"),
                    reason: format!("the same node is also given at {known}"),
                })
            }
            None => peers.push((id, addr)),
        }
    }
    Ok(peers)
}

/// Runs what the arguments ask for; the text to print on success is
/// printed as it comes.
pub fn main(args: impl IntoIterator<Item = String>) -> Result<(), ClusterError> {
    match parse(args)? {
        Invocation::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Invocation::GenKey(path) => {
            let keys = keys::generate(&path)?;
            println!("{}", keys.node_id());
            Ok(())
        }
        Invocation::Run(options) => {
            let keys = keys::read(&options.key)?;
            let mut given = options.peers.clone();
            for file in &options.peers_files {
                given.extend(read_peers(file)?);
            }
            let config = NodeConfig {
                peers: merge_peers(keys.node_id(), given)?,
                keys,
                listen: options.listen,
                data: options.data,
                pipeline: options.pipeline,
            };
            runtime()?.block_on(node::run(config))
        }
        Invocation::Client { node, key, action } => {
            let keys = match key {
                Some(path) => keys::read(&path)?,
                // Reading needs no key: a throwaway identity.
                None => KeyPair::generate(&mut rand::rng()),
            };
            runtime()?.block_on(client(node, keys, action))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ClusterError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io("starting the tokio runtime"))
}

async fn client(
    node: (NodeId, SocketAddr),
    keys: KeyPair,
    action: ClientAction,
) -> Result<(), ClusterError> {
    let client = Client::new(keys.node_id(), &[node]).await?;
    match action {
        ClientAction::Submit(texts) => {
            for text in texts {
                let command = Command::sign(&keys, text.into_bytes())?;
                let id = command.id();
                let at = client.submit(node.0, command).await?;
                println!(
                    "applied {id} at height {} position {}",
                    at.height, at.position
                );
            }
        }
        ClientAction::Status => {
            let s = client.status(node.0).await?;
            println!(
                "node {}\nheights {}\napplied {}\nhead {}\nskipped {}",
                s.node, s.heights, s.applied, s.head, s.skipped
            );
        }
        ClientAction::Log => {
            for (position, (command, _)) in client.log(node.0).await?.iter().enumerate() {
                println!(
                    "{position} {}",
                    String::from_utf8_lossy(command.bytes()).escape_debug()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_checked() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let id = "ab".repeat(32);
        assert!(matches!(parse(args("")), Ok(Invocation::Help)));
        assert!(matches!(
            parse(args("--gen-key k")),
            Ok(Invocation::GenKey(_))
        ));
        let run = parse(args(&format!(
            "--listen 127.0.0.1:7001 --key k --data d --peer {id}@127.0.0.1:7002 --pipeline 8"
        )));
        match run {
            Ok(Invocation::Run(options)) => {
                assert_eq!(options.peers.len(), 1);
                assert_eq!(options.pipeline, 8);
            }
            other => panic!("{other:?}"),
        }
        match parse(args(&format!(
            "--node {id}@127.0.0.1:1 --client-key c --submit x --submit y"
        ))) {
            Ok(Invocation::Client {
                key: Some(key),
                action: ClientAction::Submit(texts),
                ..
            }) => assert_eq!((key, texts.len()), (PathBuf::from("c"), 2)),
            other => panic!("{other:?}"),
        }
        for bad in [
            "--listen 127.0.0.1:7001 --key k".to_string(),
            "--listen nowhere --key k --data d".into(),
            "--key k --key k2".into(),
            "--pipeline 0 --listen 127.0.0.1:1 --key k --data d".into(),
            "--status".into(),
            format!("--node {id}@127.0.0.1:1 --status --log"),
            "--frobnicate".into(),
            "--listen".into(),
            format!("--gen-key k --peer {id}@127.0.0.1:1"),
            "--gen-key k --client-key c".into(),
            // Submitting needs the client's key; the key needs a node.
            format!("--node {id}@127.0.0.1:1 --submit x"),
            "--client-key c --submit x".into(),
            format!("--node {id}@127.0.0.1:1 --client-key c --client-key d --submit x"),
        ] {
            assert!(
                matches!(parse(args(&bad)), Err(ClusterError::Usage(_))),
                "{bad:?} was accepted"
            );
        }
        assert!(matches!(
            parse(args("--node zz@127.0.0.1:1 --status")),
            Err(ClusterError::Peer { .. })
        ));
    }

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
        let missing = read_peers(Path::new("/nonexistent/peers.txt"));
        assert!(matches!(missing, Err(ClusterError::Io { .. })));
    }
}
