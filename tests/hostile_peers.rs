//! Peers that lie, stall, flood or speak for another torrent: each is cut
//! off or worked around, counted in the `--json` summary, and the transfer
//! still ends with every byte right.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fake_peer::*;
use common::*;
use ringtorrent::metainfo::Metainfo;

const PIECE: u32 = 64 * 1024;

struct Fixture {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    torrent: PathBuf,
    out: PathBuf,
    meta: Metainfo,
    data: Arc<Vec<u8>>,
}

fn fixture(len: usize) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let data = random_bytes(len, 99);
    std::fs::write(src.join("data.bin"), &data).unwrap();
    let torrent = tmp.path().join("t.torrent");
    rt_create(&src.join("data.bin"), &torrent, "64K");
    let meta = Metainfo::from_file(&torrent).unwrap();
    Fixture {
        out: tmp.path().join("out"),
        src,
        torrent,
        meta,
        data: Arc::new(data),
        _tmp: tmp,
    }
}

impl Fixture {
    fn fake(&self, behavior: Behavior, ip: [u8; 4], delay_us: u64) -> FakeSeeder {
        FakeSeeder::start(SeederSpec {
            info_hash: self.meta.info_hash.0,
            data: self.data.clone(),
            piece_length: PIECE,
            behavior,
            block_delay: Duration::from_micros(delay_us),
            ip,
        })
    }

    fn fetch(&self, peers: &[SocketAddr]) -> serde_json::Value {
        let mut cmd = rt_fetch_cmd(&self.torrent, &self.out, free_port(), peers, &["--json"]);
        let o = run_limited(&mut cmd, Duration::from_secs(60));
        assert!(
            o.status.success(),
            "fetch failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_same_tree(&self.src.join("data.bin"), &self.out.join("data.bin"));
        json(&o)
    }
}

#[test]
fn a_peer_sending_bad_data_is_banned_and_the_pieces_come_from_others() {
    let f = fixture(4 * 1024 * 1024);
    let liar = f.fake(Behavior::Corrupt, [127, 0, 0, 2], 0);
    let honest = f.fake(Behavior::Honest, [127, 0, 0, 3], 200);
    let s = f.fetch(&[liar.addr, honest.addr]);
    assert!(s["hash_failures"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["peers_banned"], 1, "{s}");
    assert!(s["wasted"].as_u64().unwrap() >= u64::from(PIECE), "{s}");
}

#[test]
fn a_peer_that_stalls_with_requests_outstanding_does_not_hold_the_download() {
    let f = fixture(4 * 1024 * 1024);
    let staller = f.fake(Behavior::Stall, [127, 0, 0, 4], 0);
    let honest = f.fake(Behavior::Honest, [127, 0, 0, 5], 100);
    let start = Instant::now();
    f.fetch(&[staller.addr, honest.addr]);
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
    let wrong = f.fake(Behavior::WrongInfoHash, [127, 0, 0, 6], 0);
    // Paced, so the download cannot end before the other handshake is seen.
    let honest = f.fake(Behavior::Honest, [127, 0, 0, 7], 5000);
    let s = f.fetch(&[wrong.addr, honest.addr]);
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

fn seed_summary(p: &mut Proc) -> serde_json::Value {
    let (st, _) = p.terminate(Duration::from_secs(5));
    assert!(st.success(), "{}", p.stderr());
    let mut text = String::new();
    std::io::Read::read_to_string(p.child.stdout.as_mut().unwrap(), &mut text).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
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
    f.fetch(&[addr]);

    let s = seed_summary(&mut seeder);
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
    assert!(d["refused"].as_u64().unwrap_or(0) >= 1, "{s}");
    assert!(
        s["peak_rss_kib"].as_u64().unwrap() < 200 * 1024,
        "the seeder grew to {} KiB",
        s["peak_rss_kib"]
    );
}
