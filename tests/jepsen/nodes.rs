//! The cluster under test: `hologram-node` processes on 127.0.0.1, each
//! reaching every peer through a relay of the fault proxy (its own peers
//! file names each peer at the relay of that directed pair), and the
//! process faults: SIGKILL and restart, SIGSTOP and SIGCONT, and a full
//! disk (each data directory a size-limited `tmpfs`, see `disk`).

use super::disk;
use super::proxy::{Direction, Faults, Proxy};
use crate::localhost::{free_udp_addrs, fresh_dir};
use crate::node_process::{kill_node, node_args, start_node, stop_nodes};
use hologram::lattice::NodeId;
use hologram::node::generate_key_file;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command as Process};

/// One node: its files, real address and current process.
pub struct Node {
    /// Its id.
    pub id: NodeId,
    /// Where it listens (clients reach it here, directly).
    pub addr: SocketAddr,
    key: PathBuf,
    data: PathBuf,
    peers: PathBuf,
    child: Option<Child>,
    /// Whether it is stopped (SIGSTOP).
    pub stopped: bool,
    /// The stderr file of each start.
    logs: Vec<PathBuf>,
    /// Whether its disk is full.
    pub full: bool,
}

/// The nodes, their proxy and their directory (removed when dropped; if the
/// test is failing, kept, and the nodes' last log lines printed).
pub struct Nodes {
    dir: PathBuf,
    /// The nodes.
    pub nodes: Vec<Node>,
    /// The relays: `relay[a][b]` carries what `a` sends when it dials `b`.
    relay: Vec<Vec<usize>>,
    /// The fault proxy.
    pub proxy: Proxy,
    /// Whether the data directories are size-limited mounts (disk faults
    /// possible), or why not.
    pub disks: Result<(), String>,
    /// Nodes that exited by themselves (not killed), with their status and
    /// last log line.
    pub exits: Vec<(usize, String)>,
}

impl Nodes {
    /// `n` nodes behind a proxy whose relays draw from `seed` (not started).
    pub fn new(n: usize, seed: u64) -> Nodes {
        let dir = fresh_dir("hologram-jepsen");
        let addrs = free_udp_addrs(n);
        let mut proxy = Proxy::new();
        let ids: Vec<NodeId> = (0..n)
            .map(|i| {
                generate_key_file(&dir.join(format!("node{i}.key")))
                    .unwrap()
                    .node_id()
            })
            .collect();
        let relay: Vec<Vec<usize>> = (0..n)
            .map(|a| {
                (0..n)
                    .map(|b| {
                        proxy.relay(
                            addrs[b],
                            seed.wrapping_mul(64).wrapping_add((a * n + b) as u64),
                        )
                    })
                    .collect()
            })
            .collect();
        let nodes = (0..n)
            .map(|a| {
                let mut peers = format!("# node {a}: every peer through its relay\n");
                for b in 0..n {
                    let at = if a == b {
                        addrs[b]
                    } else {
                        proxy.get(relay[a][b]).listen
                    };
                    peers.push_str(&format!("{}@{at}\n", ids[b]));
                }
                let file = dir.join(format!("peers{a}.txt"));
                std::fs::write(&file, peers).unwrap();
                Node {
                    id: ids[a],
                    addr: addrs[a],
                    key: dir.join(format!("node{a}.key")),
                    data: dir.join(format!("node{a}")),
                    peers: file,
                    child: None,
                    stopped: false,
                    logs: Vec::new(),
                    full: false,
                }
            })
            .collect::<Vec<Node>>();
        let data: Vec<PathBuf> = nodes.iter().map(|n| n.data.clone()).collect();
        let disks = disk::mount(&data);
        Nodes {
            dir,
            nodes,
            relay,
            proxy,
            disks,
            exits: Vec::new(),
        }
    }

    /// Fills node `i`'s disk (its data directory's file system): the
    /// bytes the filler took. Only with [`Nodes::disks`] mounted.
    pub fn fill_disk(&mut self, i: usize) -> u64 {
        assert!(self.disks.is_ok(), "no size-limited data directories");
        self.nodes[i].full = true;
        disk::fill(&self.nodes[i].data)
    }

    /// Records the nodes that exited by themselves (their process gone).
    pub fn reap(&mut self) {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            let Some(child) = node.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                let log = node.logs.last().map(std::fs::read_to_string);
                let last = log.and_then(Result::ok).unwrap_or_default();
                let last = last.lines().last().unwrap_or_default().to_string();
                self.exits.push((i, format!("{status}: {last}")));
                node.child = None;
                node.stopped = false;
            }
        }
    }

    /// Each node's id and real address, for clients.
    pub fn members(&self) -> Vec<(NodeId, SocketAddr)> {
        self.nodes.iter().map(|n| (n.id, n.addr)).collect()
    }

    /// Starts node `i` (again) and waits for its ready line.
    pub fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {i} is running");
        let out = self.dir.join(format!("node{i}-run{}.out", node.logs.len()));
        let args = node_args(node.addr, &node.key, &node.data, &node.peers);
        node.logs.push(out.with_extension("err"));
        // JEPSEN_LOG sets the nodes' log filter (their stderr, printed if
        // the test fails).
        node.child = Some(start_node(i, &args, &out, "JEPSEN_LOG", "warn").0);
    }

    /// Kills node `i` with SIGKILL (stopped or not).
    pub fn kill(&mut self, i: usize) {
        kill_node(i, self.nodes[i].child.take().expect("node is running"));
        self.nodes[i].stopped = false;
    }

    /// Sends SIGSTOP (`stop`) or SIGCONT to node `i`.
    pub fn pause(&mut self, i: usize, stop: bool) {
        let pid = self.nodes[i].child.as_ref().expect("running").id();
        let signal = if stop { "-STOP" } else { "-CONT" };
        let status = Process::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
        self.nodes[i].stopped = stop;
    }

    /// Cuts every link between `side` and the other nodes, both ways.
    pub fn partition(&self, side: &[usize]) {
        let cut = Faults {
            cut: true,
            ..Faults::default()
        };
        for a in 0..self.nodes.len() {
            for b in 0..self.nodes.len() {
                if a != b && side.contains(&a) != side.contains(&b) {
                    let relay = self.proxy.get(self.relay[a][b]);
                    relay.set(Direction::Forward, cut);
                    relay.set(Direction::Backward, cut);
                }
            }
        }
    }

    /// Sets `faults` on both directions of the relay of `a` dialing `b`.
    pub fn degrade(&self, a: usize, b: usize, faults: Faults) {
        let relay = self.proxy.get(self.relay[a][b]);
        relay.set(Direction::Forward, faults);
        relay.set(Direction::Backward, faults);
    }

    /// Heals the network, frees full disks, continues stopped nodes and
    /// restarts killed ones and ones that exited by themselves
    /// ([`Nodes::exits`]).
    pub fn heal(&mut self) {
        self.proxy.heal();
        for node in &mut self.nodes {
            if node.full {
                disk::free(&node.data);
                node.full = false;
            }
        }
        self.reap();
        for i in 0..self.nodes.len() {
            if self.nodes[i].stopped {
                self.pause(i, false);
            }
            if self.nodes[i].child.is_none() {
                self.start(i);
            }
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        let files: Vec<(usize, PathBuf)> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, node)| node.logs.iter().map(move |f| (i, f.clone())))
            .collect();
        stop_nodes(self.nodes.iter_mut().map(|n| &mut n.child), files, 20);
        if self.disks.is_ok() {
            for node in &self.nodes {
                disk::unmount(&node.data);
            }
        }
        if std::thread::panicking() {
            eprintln!("the nodes' files are kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
