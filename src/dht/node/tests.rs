//! Nodes on a simulated network: packets delivered in memory, time passed in.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use super::*;

struct Net {
    nodes: BTreeMap<SocketAddrV4, Node>,
    now: Instant,
    events: Vec<(SocketAddrV4, NodeEvent)>,
}

fn addr(n: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, (n >> 8) as u8, n as u8), 6881)
}

impl Net {
    /// `n` nodes; every node but the first joins through the first.
    fn new(n: u16, seed: u64) -> Net {
        let now = Instant::now();
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut nodes = BTreeMap::new();
        for i in 0..n {
            let mut id = [0u8; 20];
            rng.fill(&mut id);
            let mut node = Node::new(NodeId(id), now, fastrand::Rng::with_seed(rng.u64(..)));
            let boot = if i == 0 { vec![] } else { vec![addr(0)] };
            node.join(now, boot, &[]);
            nodes.insert(addr(i), node);
        }
        Net {
            nodes,
            now,
            events: Vec::new(),
        }
    }

    /// Delivers every packet until the network is quiet, then advances
    /// the clock by `step`.
    fn run(&mut self, step: Duration) {
        for _ in 0..10_000 {
            let mut moved = false;
            let from_addrs: Vec<SocketAddrV4> = self.nodes.keys().copied().collect();
            for from in from_addrs {
                while let Some((to, bytes)) = self.nodes.get_mut(&from).unwrap().poll_transmit() {
                    moved = true;
                    if let Some(n) = self.nodes.get_mut(&to) {
                        n.handle_packet(self.now, SocketAddr::V4(from), &bytes);
                    }
                }
                while let Some(e) = self.nodes.get_mut(&from).unwrap().poll_event() {
                    self.events.push((from, e));
                }
            }
            if !moved {
                break;
            }
        }
        self.now += step;
        let now = self.now;
        for n in self.nodes.values_mut() {
            n.handle_timeout(now);
        }
    }
}

#[test]
fn a_peer_announced_by_one_node_is_found_by_another() {
    let mut net = Net::new(30, 7);
    for _ in 0..5 {
        net.run(Duration::from_secs(1));
    }
    assert!(
        net.nodes.values().all(|n| n.stats().nodes >= 5),
        "every node knows others"
    );
    let hash = NodeId([0x42; 20]);
    let seeder = addr(17);
    net.nodes
        .get_mut(&seeder)
        .unwrap()
        .get_peers(net.now, hash, Some(7000));
    for _ in 0..5 {
        net.run(Duration::from_secs(1));
    }
    assert!(
        net.events.iter().any(|(a, e)| *a == seeder
            && matches!(e, NodeEvent::Done { announced, .. } if *announced > 0))
    );
    let finder = addr(29);
    let lookup = net
        .nodes
        .get_mut(&finder)
        .unwrap()
        .get_peers(net.now, hash, None);
    for _ in 0..5 {
        net.run(Duration::from_secs(1));
    }
    let want = SocketAddr::V4(SocketAddrV4::new(*seeder.ip(), 7000));
    assert!(
        net.events.iter().any(|(a, e)| *a == finder
            && matches!(e, NodeEvent::Peers { lookup: l, peers } if *l == lookup && peers.contains(&want))),
        "{:?}",
        net.events
    );
}

#[test]
fn announce_needs_a_valid_token_and_unknown_methods_get_204() {
    let now = Instant::now();
    let mut n = Node::new(NodeId([1; 20]), now, fastrand::Rng::with_seed(1));
    let from = SocketAddr::V4(addr(2));
    let q = krpc::query(
        b"aa",
        &NodeId([2; 20]),
        &Query::AnnouncePeer {
            info_hash: NodeId([3; 20]),
            port: 1,
            implied_port: false,
            token: b"forged",
        },
    );
    n.handle_packet(now, from, &q);
    let (_, reply) = n.poll_transmit().unwrap();
    assert_eq!(Msg::decode(&reply).unwrap().body, Body::Error { code: 203 });
    assert_eq!(n.stats().stored_torrents, 0);
    n.handle_packet(
        now,
        from,
        b"d1:ad2:id20:abcdefghij0123456789e1:q5:vote!1:t2:aa1:y1:qe",
    );
    let (_, reply) = n.poll_transmit().unwrap();
    assert_eq!(Msg::decode(&reply).unwrap().body, Body::Error { code: 204 });
    // A response nobody asked for is dropped and counted.
    let r = krpc::response(b"zz", &NodeId([2; 20]), &Response::default());
    n.handle_packet(now, from, &r);
    assert!(n.poll_transmit().is_none());
    assert_eq!(n.stats().malformed, 1);
}

#[test]
fn a_flood_is_rate_limited_and_memory_stays_bounded() {
    let now = Instant::now();
    let mut n = Node::new(NodeId([1; 20]), now, fastrand::Rng::with_seed(1));
    let q = krpc::query(b"aa", &NodeId([2; 20]), &Query::Ping);
    for _ in 0..1000 {
        n.handle_packet(now, SocketAddr::V4(addr(2)), &q);
    }
    let answered = std::iter::from_fn(|| n.poll_transmit()).count();
    assert_eq!(answered, PER_ADDR_BURST as usize);
    // From many addresses: the total budget holds, the tracking is bounded.
    let t1 = now + Duration::from_secs(1);
    for i in 0..20_000u32 {
        let from = SocketAddrV4::new(Ipv4Addr::from(i + 1), 1);
        n.handle_packet(t1, SocketAddr::V4(from), &q);
    }
    let answered = std::iter::from_fn(|| n.poll_transmit()).count();
    assert!(answered <= TOTAL_RATE as usize, "{answered}");
    assert!(n.rate.per_addr.len() <= MAX_TRACKED);
    assert!(n.stats().refused > 19_000);
    assert!(n.stats().nodes <= 160 * K);
}

#[test]
fn stored_peers_are_bounded() {
    let now = Instant::now();
    let mut n = Node::new(NodeId([1; 20]), now, fastrand::Rng::with_seed(1));
    for t in 0..(MAX_STORED_TORRENTS + 10) {
        let mut h = [0u8; 20];
        h[..8].copy_from_slice(&(t as u64).to_be_bytes());
        for p in 0..3u16 {
            n.store_peer(
                now,
                NodeId(h),
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p + 1)),
            );
        }
    }
    assert_eq!(n.stats().stored_torrents, MAX_STORED_TORRENTS);
    for p in 0..(MAX_STORED_PEERS as u16 + 50) {
        n.store_peer(
            now,
            NodeId([9; 20]),
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p + 1)),
        );
    }
    assert!(
        n.store
            .get(&NodeId([9; 20]))
            .is_none_or(|v| v.len() <= MAX_STORED_PEERS)
    );
    // After their time, they go.
    n.expire(now + PEER_TTL);
    assert_eq!(n.stats().stored_torrents, 0);
}
