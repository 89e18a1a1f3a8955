//! Bodies of the fuzz targets (`fuzz/`), kept in the library so that the
//! regression inputs in `fuzz/regressions/` replay through the very same code
//! in the ordinary test suite (`tests/fuzz_regressions.rs`). Each function
//! panics only when it finds a bug.

use crate::bencode;
use crate::metainfo::Metainfo;

/// Decoding never panics; whatever decodes re-encodes canonically to bytes
/// that decode to the same value, and canonical input round-trips exactly.
pub fn bencode(data: &[u8]) {
    let Ok(v) = bencode::decode(data) else {
        return;
    };
    assert_eq!(v.raw, data, "a full decode covers the whole input");
    let canonical = bencode::encode(&v);
    let again = bencode::decode(&canonical).expect("canonical output decodes");
    assert_eq!(again.to_owned_value(), v.to_owned_value());
    assert_eq!(bencode::encode(&again), canonical, "encoding is stable");
}

/// Parsing never panics; an accepted torrent satisfies every invariant the
/// storage layer relies on.
pub fn metainfo(data: &[u8]) {
    let Ok(m) = Metainfo::from_bytes(data) else {
        return;
    };
    let info = &m.info;
    if info.has_v1() {
        assert_eq!(m.info_hash, crate::metainfo::InfoHash::of(&m.info_bytes));
        assert_eq!(info.pieces.len(), info.piece_count() as usize);
    } else {
        // v2-only: known by its SHA-256 cut to 20 bytes, every piece with
        // its Merkle root.
        let v2 = crate::hash::merkle::sha256(&m.info_bytes);
        assert_eq!(m.info_hash, crate::metainfo::InfoHash::truncated(&v2));
        assert_eq!(info.pieces_v2.len(), info.piece_count() as usize);
    }
    for (p, v2) in info.pieces_v2.iter().enumerate() {
        assert!(v2.data_len > 0 && v2.data_len <= info.piece_len(p as u32));
        assert!(v2.leaves.is_power_of_two());
    }
    assert!(info.piece_length > 0);
    assert!(info.total_length > 0);
    let mut offset = 0u64;
    let mut stored = std::collections::HashSet::new();
    let mut dirs = std::collections::HashSet::new();
    for f in &info.files {
        assert_eq!(f.offset, offset);
        offset += f.length;
        for c in &f.path {
            assert!(
                !c.is_empty()
                    && c != "."
                    && c != ".."
                    && !c.contains('/')
                    && !c.contains('\0')
                    && c.len() <= crate::metainfo::MAX_NAME_BYTES
            );
        }
        if f.is_stored() {
            assert!(stored.insert(f.path.clone()), "two files at {:?}", f.path);
            for n in 1..f.path.len() {
                dirs.insert(f.path[..n].to_vec());
            }
        }
    }
    assert!(
        stored.is_disjoint(&dirs),
        "a file where a directory must be"
    );
    assert_eq!(offset, info.total_length);
    assert_eq!(crate::webseed::url_paths(&m).len(), info.files.len());
    assert_eq!(
        u64::from(info.piece_count()),
        info.total_length.div_ceil(u64::from(info.piece_length))
    );
    let last = info.piece_count() - 1;
    let spanned: u64 = info
        .block_spans(last, 0, info.piece_len(last))
        .map(|s| s.len)
        .sum();
    assert_eq!(spanned, u64::from(info.piece_len(last)));
}

/// Magnet parsing never panics.
pub fn magnet(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = crate::magnet::Magnet::parse(s);
    }
}

/// A peer's byte stream: the decoder never panics, yields the same events
/// however the stream is cut into reads, and the connection state machine
/// accepts or refuses each event without panicking.
///
/// Input: byte 0 picks the torrent's piece count, byte 1 the read size; the
/// rest is the stream (a handshake is prepended so the messages are reached).
pub fn wire(data: &[u8]) {
    use crate::wire::Event;
    let [pieces, chunk, stream @ ..] = data else {
        return;
    };
    let piece_count = u32::from(*pieces) + 1;
    let mut input = Vec::with_capacity(68 + stream.len());
    input.push(19);
    input.extend_from_slice(b"BitTorrent protocol");
    input.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
    input.extend_from_slice(&[0; 40]);
    input.extend_from_slice(stream);

    /// Events as comparable values; block runs merged into whole blocks.
    fn collect(input: &[u8], chunk: usize, piece_count: u32) -> (Vec<String>, bool) {
        let info = fuzz_info(piece_count);
        let mut dec = crate::wire::Decoder::new(crate::wire::Limits::for_pieces(piece_count));
        let now = std::time::Instant::now();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let mut peer = crate::peer::PeerState::new(now, addr, true, piece_count);
        let mut peer_ok = true;
        let mut out: Vec<String> = Vec::new();
        let mut block: Option<(u32, u32, u32, Vec<u8>)> = None;
        for mut part in input.chunks(chunk) {
            loop {
                match dec.decode(&mut part) {
                    Ok(None) => break,
                    Ok(Some(ev)) => {
                        if let Event::Block {
                            piece,
                            begin,
                            len,
                            offset,
                            data,
                        } = ev
                        {
                            let b = block.get_or_insert_with(|| (piece, begin, len, Vec::new()));
                            assert_eq!((b.0, b.1, b.2), (piece, begin, len));
                            assert_eq!(offset as usize, b.3.len(), "block runs are contiguous");
                            b.3.extend_from_slice(data);
                            if b.3.len() == len as usize {
                                out.push(format!("{:?}", block.take()));
                            }
                        } else {
                            assert!(block.is_none(), "a block's runs are not interleaved");
                            out.push(format!("{ev:?}"));
                        }
                        if peer_ok && peer.accept(now, ev, &info).is_err() {
                            peer_ok = false;
                        }
                    }
                    Err(e) => {
                        out.push(format!("error {e}"));
                        return (out, peer_ok);
                    }
                }
            }
        }
        (out, peer_ok)
    }

    let whole = collect(&input, input.len().max(1), piece_count);
    let pieces = collect(&input, usize::from(*chunk % 64) + 1, piece_count);
    assert_eq!(
        whole.0, pieces.0,
        "the events depend on how reads cut the stream"
    );
}

/// A small torrent shape for the wire target: `piece_count` pieces of 32 KiB.
fn fuzz_info(piece_count: u32) -> crate::metainfo::Info {
    let total = u64::from(piece_count) * 32768;
    crate::metainfo::Info {
        name: "fuzz".into(),
        piece_length: 32768,
        pieces: vec![[0; 20]; piece_count as usize],
        pieces_v2: Vec::new(),
        v2_layers: Vec::new(),
        files: vec![crate::metainfo::FileEntry {
            path: vec!["fuzz".into()],
            length: total,
            offset: 0,
            attr: Default::default(),
        }],
        private: false,
        multi_file: false,
        total_length: total,
    }
}

/// An HTTP tracker's response body: parsing never panics, and every peer it
/// yields has a port.
pub fn http_tracker(data: &[u8]) {
    if let Ok(r) = crate::tracker::http::parse_announce(data) {
        assert!(r.peers.iter().all(|p| p.port() != 0));
    }
    let _ = crate::tracker::http::parse_scrape(data, &crate::metainfo::InfoHash([0; 20]));
}

/// UDP tracker datagrams fed to the client state machine during an
/// announce. Each packet is `[len, flags, bytes...]`; with flag bit 0 the
/// transaction id of the request in flight is patched in, so the fuzzer
/// reaches the states past the id check. Never panics, never loops.
pub fn udp_tracker(data: &[u8]) {
    use crate::tracker::udp::{Request, Step, UdpTracker};
    let now = std::time::Instant::now();
    let mut t = UdpTracker::new(
        std::time::Duration::from_secs(1),
        4,
        data.first() == Some(&1),
    );
    let req = crate::tracker::AnnounceRequest {
        info_hash: crate::metainfo::InfoHash([1; 20]),
        peer_id: crate::wire::PeerId([2; 20]),
        port: 6881,
        uploaded: 0,
        downloaded: 0,
        left: 1,
        event: crate::tracker::Event::Started,
        num_want: 50,
        key: 3,
        tracker_id: None,
    };
    let mut last_sent = match t.start(now, Request::Announce(req)) {
        Step::Send(p, _) => p,
        other => panic!("a request starts with a datagram, not {other:?}"),
    };
    let mut rest = data.get(1..).unwrap_or_default();
    while let [len, flags, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let mut packet = tail[..n].to_vec();
        rest = &tail[n..];
        if flags & 1 == 1 && packet.len() >= 8 && last_sent.len() >= 16 {
            packet[4..8].copy_from_slice(&last_sent[12..16]);
        }
        match t.handle_packet(now, &packet) {
            Ok(Step::Send(p, _)) => last_sent = p,
            Ok(Step::Done(_)) => return,
            Ok(Step::Wait(_)) | Err(_) => {}
        }
    }
}

/// The daemon's RPC on a stand-in session: any request body gets a JSON
/// answer with a `result`, never a panic, and the daemon keeps answering.
pub fn rpc(data: &[u8]) {
    use std::sync::{Arc, OnceLock};

    use crate::daemon::Daemon;
    use crate::daemon::config::Settings;
    use crate::daemon::engine::StandIn;
    use crate::daemon::state::StateDir;

    static DAEMON: OnceLock<(Arc<Daemon>, tempfile::TempDir)> = OnceLock::new();
    // Requests that would reach the network (torrent-add of a URL) are not
    // this target's business.
    if data.windows(4).any(|w| w.eq_ignore_ascii_case(b"http")) {
        return;
    }
    let (d, _dir) = DAEMON.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let state = StateDir::open(&dir.path().join("state")).expect("state directory");
        let settings = Settings {
            download_dir: Some(dir.path().join("dl")),
            ..Settings::default()
        };
        let (d, jobs) = Daemon::new(Arc::new(StandIn::default()), state, settings).expect("daemon");
        // Nobody starts torrents here: the jobs are dropped.
        drop(jobs);
        (d, dir)
    });
    let out = crate::daemon::rpc::handle(d, data);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("the answer is JSON");
    assert!(v["result"].is_string(), "no result in {v}");
    assert!(v["arguments"].is_object(), "no arguments in {v}");
}

/// The extension messages and the metadata exchange never panic: the
/// input decodes as `ut_metadata` and `ut_pex` messages, then drives an
/// exchange as four peers' answers (4 bytes an operation). Whatever the
/// exchange returns as done hashes to the info-hash.
pub fn metadata(data: &[u8]) {
    use crate::metadata::{Exchange, MetadataMsg, PIECE, Progress};
    use std::time::{Duration, Instant};
    let _ = crate::pex::PexMessage::decode(data);
    if let Ok(m @ (MetadataMsg::Request(_) | MetadataMsg::Reject(_))) = MetadataMsg::decode(data) {
        assert_eq!(MetadataMsg::decode(&m.encode()), Ok(m));
    }
    let info: Vec<u8> = (0..40_000u32).map(|i| (i * 31 % 253) as u8).collect();
    let hash = crate::metainfo::InfoHash::of(&info);
    let mut x = Exchange::<u8>::new(hash, 1 << 20);
    let t0 = Instant::now();
    let mut now = t0;
    let sizes = [
        None,
        Some(0),
        Some(40_000),
        Some(39_999),
        Some(2 << 20),
        Some(16_384),
    ];
    for op in data.chunks_exact(4) {
        let peer = op[1] % 4;
        let piece = u32::from(op[2] % 4);
        match op[0] % 7 {
            0 => {
                let _ = x.add_peer(peer, sizes[usize::from(op[3]) % sizes.len()]);
            }
            1 => {
                let _ = x.next_request(now, peer);
            }
            2 | 3 => {
                let start = (piece as usize * PIECE).min(info.len());
                let end = (start + PIECE).min(info.len());
                let mut chunk = info[start..end].to_vec();
                if op[0] % 7 == 3 && !chunk.is_empty() {
                    let i = usize::from(op[3]) % chunk.len();
                    chunk[i] ^= 1;
                }
                let size = if op[3] & 0x80 == 0 { 40_000 } else { 39_999 };
                if let Ok(Progress::Done { info: got, .. }) = x.on_data(peer, piece, size, &chunk) {
                    assert_eq!(crate::metainfo::InfoHash::of(&got), hash);
                }
            }
            4 => {
                let _ = x.on_reject(now, peer, piece);
            }
            5 => x.remove_peer(peer),
            _ => {
                now += Duration::from_secs(u64::from(op[3]));
                for p in x.stalled(now) {
                    x.remove_peer(p);
                }
            }
        }
    }
}

/// KRPC decoding and a DHT node never panic on any datagram: the input
/// is decoded, then fed to a node as datagrams from a few addresses (cut
/// at 0xfe bytes), and what the node keeps stays bounded.
pub fn krpc(data: &[u8]) {
    use crate::dht::{KrpcMsg, Node, NodeId};
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};
    let _ = KrpcMsg::decode(data);
    let now = Instant::now();
    let mut node = Node::new(NodeId([1; 20]), now, fastrand::Rng::with_seed(1));
    node.join(now, vec!["10.0.0.1:6881".parse().expect("literal")], &[]);
    for (i, packet) in data.split(|&b| b == 0xfe).enumerate() {
        let from: SocketAddr = SocketAddr::from(([10, 0, 0, (i % 4) as u8 + 1], 6881));
        node.handle_packet(now + Duration::from_millis(i as u64), from, packet);
        while node.poll_transmit().is_some() {}
        while node.poll_event().is_some() {}
    }
    node.handle_timeout(now + Duration::from_secs(60));
    let s = node.stats();
    assert!(s.nodes <= 160 * 8 && s.stored_torrents <= crate::dht::MAX_STORED_TORRENTS);
}

/// MSE/PE exchanges fed arbitrary bytes, in pieces split at `0xfe`: each
/// side either waits, finishes or fails, and never holds more than the
/// bounded window it scans.
pub fn mse(data: &[u8]) {
    use crate::metainfo::InfoHash;
    use crate::mse::{Handshake, Outcome, Policy, req2};
    let torrent = InfoHash([3; 20]);
    let lookup = |h: &[u8; 20]| (*h == req2(&torrent)).then_some(torrent);
    let mut sides = [
        Handshake::responder(Policy::Prefer),
        Handshake::initiator(torrent, Policy::PreferPlain),
    ];
    for side in &mut sides {
        let _ = side.take_output();
        for piece in data.split(|&b| b == 0xfe) {
            match side.recv(piece, &lookup) {
                Ok(Outcome::Pending) => {
                    let _ = side.take_output();
                }
                Ok(Outcome::Done(_)) | Err(_) => break,
            }
        }
    }
}

/// The tracker's request parsers: pieces of the input (split at `0xfe`)
/// are HTTP request targets when they start with `/`, whole HTTP requests
/// when they start with a capital letter, else UDP packets carrying a
/// valid connection id; the caps always hold.
pub fn tracker_server(data: &[u8]) {
    use crate::tracker::server::udp::{ConnectionIds, handle};
    use crate::tracker::server::{Limits, Tracker, http};
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};
    let limits = Limits {
        max_torrents: 8,
        max_peers: 32,
        ..Limits::default()
    };
    let mut t = Tracker::new(limits, None);
    let ids = ConnectionIds::new();
    let now = Instant::now();
    let mut out = Vec::new();
    for (i, piece) in data.split(|&b| b == 0xfe).enumerate() {
        let from = SocketAddr::from(([10, 0, 0, (i % 5) as u8], 1000 + i as u16 % 7));
        let at = now + Duration::from_secs(i as u64);
        if piece.first() == Some(&b'/') {
            let _ = http::respond(&mut t, at, from, &String::from_utf8_lossy(piece));
            continue;
        }
        if piece.first().is_some_and(u8::is_ascii_uppercase) {
            let _ = crate::tracker::server::http_conn::answer(&mut t, from, piece);
            continue;
        }
        handle(
            &mut t,
            &ids,
            at,
            Some(1),
            from,
            &crate::tracker::udp::connect_packet(1),
            &mut out,
        );
        let mut p = piece.to_vec();
        if p.len() >= 16 && out.len() == 16 {
            p[..8].copy_from_slice(&out[8..16]);
        }
        handle(&mut t, &ids, at, Some(1), from, &p, &mut out);
        assert!(t.peer_count() <= 32);
    }
    t.expire(now + Duration::from_secs(1 << 20));
    assert_eq!(t.peer_count(), 0);
}
