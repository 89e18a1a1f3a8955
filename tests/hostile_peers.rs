//! Peers that lie, stall, flood or speak for another torrent: each is cut
//! off or worked around, counted in the `--json` summary, and the transfer
//! still ends with every byte right.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::fake_peer::*;
use common::single_file::SingleFile;
use common::*;
use ringtorrent::metainfo::Metainfo;

const PIECE: u32 = 64 * 1024;

fn fixture(len: usize) -> SingleFile {
    SingleFile::new(len, 99, "64K")
}

fn fake(f: &SingleFile, behavior: Behavior, ip: [u8; 4], delay_us: u64) -> FakeSeeder {
    f.fake_seeder(behavior, ip, Duration::from_micros(delay_us))
}

/// Fetches from `peers`, checks every byte, returns the summary.
fn fetch(f: &SingleFile, peers: &[SocketAddr]) -> serde_json::Value {
    let out = f.tmp.path().join("out");
    let mut cmd = rt_fetch_cmd(&f.torrent, &out, free_port(), peers, &["--json"]);
    let o = run_limited(&mut cmd, Duration::from_secs(60));
    assert!(
        o.status.success(),
        "fetch failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_same_tree(&f.src.join("data.bin"), &out.join("data.bin"));
    json(&o)
}

#[test]
fn a_peer_sending_bad_data_is_banned_and_the_pieces_come_from_others() {
    let f = fixture(4 * 1024 * 1024);
    let liar = fake(&f, Behavior::Corrupt, [127, 0, 0, 2], 0);
    let honest = fake(&f, Behavior::Honest, [127, 0, 0, 3], 200);
    let s = fetch(&f, &[liar.addr, honest.addr]);
    assert!(s["hash_failures"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["peers_banned"], 1, "{s}");
    assert!(s["wasted"].as_u64().unwrap() >= u64::from(PIECE), "{s}");
}

/// The same in a v2-only torrent (BEP 52): a piece that fails its Merkle
/// check bans the peer that sent it.
#[test]
fn a_peer_sending_bad_data_in_a_v2_torrent_is_banned() {
    let f = SingleFile::with_create_args(4 * 1024 * 1024, 98, "64K", &["--v2"]);
    assert!(f.meta.info.pieces.is_empty() && f.meta.info_hash_v2.is_some());
    let liar = fake(&f, Behavior::Corrupt, [127, 0, 0, 2], 0);
    let honest = fake(&f, Behavior::Honest, [127, 0, 0, 3], 200);
    let s = fetch(&f, &[liar.addr, honest.addr]);
    assert!(s["hash_failures"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["peers_banned"], 1, "{s}");
}

#[test]
fn a_peer_that_stalls_with_requests_outstanding_does_not_hold_the_download() {
    let f = fixture(4 * 1024 * 1024);
    let staller = fake(&f, Behavior::Stall, [127, 0, 0, 4], 0);
    let honest = fake(&f, Behavior::Honest, [127, 0, 0, 5], 100);
    let start = Instant::now();
    fetch(&f, &[staller.addr, honest.addr]);
    // The honest peer alone needs ~1 s; the snub timeout is 20 s.
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "the stalled requests were not re-sent to the honest peer in time ({:?})",
        start.elapsed()
    );
}

#[test]
fn a_handshake_for_another_torrent_is_refused_and_counted() {
    let f = fixture(1024 * 1024);
    let wrong = fake(&f, Behavior::WrongInfoHash, [127, 0, 0, 6], 0);
    // Paced, so the download cannot end before the other handshake is seen.
    let honest = fake(&f, Behavior::Honest, [127, 0, 0, 7], 5000);
    let s = fetch(&f, &[wrong.addr, honest.addr]);
    assert_eq!(s["disconnects"]["wrong_info_hash"], 1, "{s}");
    assert!(s["protocol_errors"].as_u64().unwrap() >= 1, "{s}");
}

/// A connection that completed the handshake with the seeder and read its
/// bitfield and whatever else it sent first.
fn leecher(addr: SocketAddr, meta: &Metainfo) -> TcpStream {
    let (s, theirs) = connect_and_handshake(addr, &meta.info_hash.0).unwrap();
    assert_eq!(&theirs[28..48], &meta.info_hash.0);
    s
}

#[test]
fn hostile_leechers_are_cut_off_and_the_seeder_keeps_serving() {
    let f = fixture(2 * 1024 * 1024);
    let (mut seeder, addr) = rt_seed(&f.torrent, &f.src, &["--json", "--max-peers", "20"]);
    let meta = &f.meta;
    let pieces = meta.info.piece_count();
    let limit = Duration::from_secs(10);

    // Another torrent's handshake: no reply, closed.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&handshake(&[0xee; 20], b"-FK0001-wronghash000"))
        .unwrap();
    assert!(closed_within(&mut s, limit), "wrong info-hash kept open");

    // A message longer than any the protocol has.
    let mut s = leecher(addr, meta);
    s.write_all(&[0x10, 0, 0, 0, 7]).unwrap();
    assert!(closed_within(&mut s, limit), "oversized message kept open");

    // A request past the last piece, and one past the end of a piece.
    for (piece, begin) in [(pieces + 5, 0), (0, PIECE)] {
        let mut s = leecher(addr, meta);
        s.write_all(&message(2, &[])).unwrap();
        s.write_all(&request(piece, begin, 16384)).unwrap();
        assert!(closed_within(&mut s, limit), "bad request kept open");
    }

    // A bitfield of the wrong length.
    let mut s = leecher(addr, meta);
    s.write_all(&message(5, &[0; 100])).unwrap();
    assert!(closed_within(&mut s, limit), "bad bitfield kept open");

    // A flood of requests, far past the queue we advertise.
    let mut s = leecher(addr, meta);
    s.write_all(&message(2, &[])).unwrap();
    let mut flood = Vec::new();
    for i in 0..3000u32 {
        flood.extend_from_slice(&request(i % pieces, (i / pieces % 4) * 16384, 16384));
    }
    // The seeder may hang up mid-write; that is the point.
    let _ = s.write_all(&flood);
    assert!(closed_within(&mut s, limit), "request flood kept open");

    // A flood of connections: at most --max-peers are kept.
    let mut kept = 0;
    let mut conns = Vec::new();
    for i in 0..60u8 {
        let Ok(mut c) = TcpStream::connect(addr) else {
            continue;
        };
        let mut id = *b"-FK0001-connflood000";
        id[19] = b'a' + i % 26;
        id[18] = b'a' + i / 26;
        let _ = c.write_all(&handshake(&meta.info_hash.0, &id));
        conns.push(c);
    }
    std::thread::sleep(Duration::from_millis(500));
    for c in &mut conns {
        if !closed_within(c, Duration::from_millis(50)) {
            kept += 1;
        }
    }
    assert!(kept <= 20, "{kept} of 60 flood connections kept open");
    drop(conns);

    // Still serving.
    std::thread::sleep(Duration::from_millis(300));
    fetch(&f, &[addr]);

    let s = seeder.terminate_json();
    let d = &s["disconnects"];
    for kind in [
        "wrong_info_hash",
        "wire",
        "bad_request",
        "bad_bitfield",
        "request_flood",
    ] {
        assert!(d[kind].as_u64().unwrap_or(0) >= 1, "no {kind} in {s}");
    }
    assert!(s["protocol_errors"].as_u64().unwrap() >= 6, "{s}");
    // At the cap a newcomer displaces a connection still in its handshake,
    // or is refused when every connection has spoken.
    let turned_away =
        d["refused"].as_u64().unwrap_or(0) + d["too_many_connections"].as_u64().unwrap_or(0);
    assert!(turned_away >= 1, "{s}");
    assert!(
        s["peak_rss_kib"].as_u64().unwrap() < 200 * 1024,
        "the seeder grew to {} KiB",
        s["peak_rss_kib"]
    );
}

#[test]
fn an_honest_seeder_beside_a_liar_on_one_address_is_kept() {
    // A libtorrent seeder and a peer that corrupts every block, both on
    // 127.0.0.1 (as behind a NAT). One shard, so both feed the same pieces.
    let f = SingleFile::new(12 << 20, 5, "1M");
    let liar = fake(&f, Behavior::Corrupt, [127, 0, 0, 1], 0);
    let (_lt, honest) = lt_seed(&f.torrent, &f.src);
    let out = f.tmp.path().join("out");
    let mut cmd = rt_fetch_cmd(
        &f.torrent,
        &out,
        free_port(),
        &[liar.addr, honest],
        &["--json", "--threads", "1", "--timeout", "30"],
    );
    let o = run_limited(&mut cmd, Duration::from_secs(90));
    assert!(
        o.status.success(),
        "fetch failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_same_tree(&f.src.join("data.bin"), &out.join("data.bin"));
    let s = json(&o);
    assert!(s["hash_failures"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["peers_banned"], 1, "{s}");
    assert_eq!(
        s["banned_peers"],
        serde_json::json!([liar.addr.to_string()]),
        "{s}"
    );
}

#[test]
fn silent_connections_do_not_crowd_out_a_leecher() {
    let f = fixture(8 << 20);
    let (mut seeder, addr) = rt_seed(&f.torrent, &f.src, &["--json"]);
    // Hundreds of connections that never say a word, held open.
    let silent: Vec<TcpStream> = (0..400)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    assert!(
        silent.len() >= 300,
        "only {} connections opened",
        silent.len()
    );
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    fetch(&f, &[addr]);
    // Before, it waited for the silent ones to time out (15 s); the
    // handshake timeout alone is 5 s.
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "the leecher waited {:?} behind silent connections",
        start.elapsed()
    );
    drop(silent);
    let s = seeder.terminate_json();
    assert!(
        s["disconnects"]["too_many_connections"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{s}"
    );
}
