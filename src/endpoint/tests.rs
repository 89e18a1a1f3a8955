use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::metainfo::InfoHash;
use crate::torrent::{Budget, TorrentConfig, TorrentCtx};
use crate::wire::{BlockRef, Handshake, Message, PeerId};

fn ctx(id: u32, hash: u8, config: TorrentConfig) -> Arc<TorrentCtx> {
    let data = vec![7u8; 100_000];
    let info = crate::session::sim::info("x", &data, 16384);
    Arc::new(TorrentCtx {
        id: TorrentId(id),
        info: Arc::new(info),
        info_hash: InfoHash([hash; 20]),
        info_hash_v2: None,
        peer_id: PeerId([1; 20]),
        config,
        listen_port: 6881,
        budget: Arc::new(Budget::new(8 << 20)),
        read_pool: BufPool::new(16384, 4),
        wanted: None,
        metadata: None,
        dht_port: 0,
    })
}

fn endpoint() -> Endpoint {
    Endpoint::new(
        0,
        Admission::new(10, 10),
        BufPool::with_byte_limit(0, 1 << 20),
        Duration::from_secs(5),
    )
}

fn drain(e: &mut Endpoint) -> (VecDeque<Action>, Vec<ShardEvent>) {
    let mut a = VecDeque::new();
    let mut ev = Vec::new();
    let mut d = Vec::new();
    e.drain(&mut a, &mut ev, &mut d);
    (a, ev)
}

#[test]
fn a_handshake_routes_to_its_torrent_or_is_refused() {
    let now = Instant::now();
    let mut e = endpoint();
    e.handle_command(
        now,
        ShardCommand::Add(ctx(1, 9, TorrentConfig::default()), Bitfield::full(7)),
    );
    e.handle_command(
        now,
        ShardCommand::Add(ctx(2, 8, TorrentConfig::default()), Bitfield::full(7)),
    );
    let peer: SocketAddr = "10.9.9.9:1".parse().unwrap();
    // Another torrent's handshake: refused and counted.
    let c = e.handle_accepted(now, peer).unwrap();
    e.handle_recv(
        now,
        c,
        &Handshake::ours(InfoHash([3; 20]), PeerId([2; 20])).encode(),
    );
    let (actions, events) = drain(&mut e);
    assert!(matches!(actions.front(), Some(Action::Close { conn }) if *conn == c));
    assert!(
        events
            .iter()
            .any(|ev| matches!(ev, ShardEvent::Refused("wrong_info_hash")))
    );
    // Torrent 2's handshake, split over two reads: attached to torrent 2.
    let c = e.handle_accepted(now, peer).unwrap();
    let hs = Handshake::ours(InfoHash([8; 20]), PeerId([2; 20])).encode();
    e.handle_recv(now, c, &hs[..30]);
    e.handle_recv(now, c, &hs[30..]);
    let (_, events) = drain(&mut e);
    assert!(events.iter().any(|ev| matches!(
        ev,
        ShardEvent::Torrent(Event::Handshaken {
            torrent: TorrentId(2),
            ..
        })
    )));
    assert!(
        e.send_queue(c).is_some_and(|q| !q.is_empty()),
        "our handshake and bitfield"
    );
    assert_eq!(e.connection_count(), 1);
}

#[test]
fn silent_connections_time_out() {
    let now = Instant::now();
    let mut e = endpoint();
    let c = e
        .handle_accepted(now, "10.9.9.9:1".parse().unwrap())
        .unwrap();
    assert_eq!(e.poll_timeout(), Some(now + Duration::from_secs(5)));
    e.handle_timeout(now + Duration::from_secs(5));
    let (actions, events) = drain(&mut e);
    assert!(matches!(actions.front(), Some(Action::Close { conn }) if *conn == c));
    assert!(
        events
            .iter()
            .any(|ev| matches!(ev, ShardEvent::Refused("handshake_timeout")))
    );
    assert_eq!(e.poll_timeout(), None, "nothing left to wake for");
}

#[test]
fn choked_requests_are_rejected_for_fast_peers() {
    // A leecher that is never unchoked (no slots) gets rejects, not silence.
    let now = Instant::now();
    let mut e = endpoint();
    let cfg = TorrentConfig {
        choker: crate::choker::ChokerConfig {
            slots: 0,
            optimistic_every: 1,
            seed_turn: 3,
            lagging: 0,
        },
        ..TorrentConfig::default()
    };
    let ctx = ctx(1, 9, cfg);
    e.handle_command(now, ShardCommand::Add(ctx, Bitfield::full(7)));
    // No free slot either.
    e.handle_command(
        now,
        ShardCommand::Torrent(
            TorrentId(1),
            Command::Unchoke {
                keep: Vec::new(),
                decided: now,
                allowance: 0,
            },
        ),
    );
    let c = e
        .handle_accepted(now, "10.9.9.9:1".parse().unwrap())
        .unwrap();
    let mut bytes = Handshake::ours(InfoHash([9; 20]), PeerId([2; 20]))
        .encode()
        .to_vec();
    Message::HaveNone.encode(&mut bytes);
    Message::Interested.encode(&mut bytes);
    let req = BlockRef {
        piece: 0,
        begin: 0,
        len: 16384,
    };
    Message::Request(req).encode(&mut bytes);
    e.handle_recv(now, c, &bytes);
    let out: Vec<u8> = e
        .send_queue(c)
        .unwrap()
        .front(100)
        .iter()
        .flat_map(|b| b.to_vec())
        .collect();
    let mut reject = Vec::new();
    Message::Reject(req).encode(&mut reject);
    assert!(
        out.windows(reject.len()).any(|w| w == reject),
        "a reject was queued"
    );
}
