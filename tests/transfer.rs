//! ringtorrent to ringtorrent over loopback, every byte compared.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(120);

fn fetch_ok(torrent: &Path, out: &Path, peers: &[SocketAddr], extra: &[&str]) -> serde_json::Value {
    let mut cmd = rt_fetch_cmd(torrent, out, free_port(), peers, extra);
    cmd.arg("--json");
    json(&run_limited_ok(&mut cmd, LIMIT, "fetch"))
}

#[test]
fn single_file_small_pieces_short_last_piece() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    // 16 KiB pieces; the last one is 12345 bytes.
    write_random(&seed.join("file.bin"), 300 * 16384 + 12345, 7);
    let torrent = tmp.path().join("t.torrent");
    rt_create(&seed.join("file.bin"), &torrent, "16K");
    let (_s, addr) = rt_seed(&torrent, &seed, &[]);
    let out = tmp.path().join("out");
    let summary = fetch_ok(&torrent, &out, &[addr], &[]);
    assert_same_tree(&seed.join("file.bin"), &out.join("file.bin"));
    assert_eq!(summary["complete"], true);
    assert_eq!(summary["pieces_verified"], 301);
    assert_eq!(summary["hash_failures"], 0);
    assert_eq!(summary["protocol_errors"], 0);
    assert!(summary["block_latency_us"]["count"].as_u64().unwrap() >= 301);
}

#[test]
fn multi_file_big_pieces() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    // Odd sizes, nested directories, a zero-length file, 4 MiB pieces.
    let payload = make_multi(&seed, "tree", 9 * 1024 * 1024 + 3);
    let torrent = tmp.path().join("t.torrent");
    rt_create(&payload, &torrent, "4M");
    let (_s, addr) = rt_seed(&torrent, &seed, &["--threads", "3"]);
    let out = tmp.path().join("out");
    fetch_ok(&torrent, &out, &[addr], &["--threads", "2"]);
    assert_same_tree(&payload, &out.join("tree"));
    assert_eq!(
        std::fs::metadata(out.join("tree/a/empty")).unwrap().len(),
        0
    );
}

#[test]
fn one_seeder_several_leechers() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    let payload = make_multi(&seed, "tree", 6 * 1024 * 1024);
    let torrent = tmp.path().join("t.torrent");
    rt_create(&payload, &torrent, "64K");
    let (_s, seed_addr) = rt_seed(&torrent, &seed, &[]);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let children: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| {
            let mut peers = vec![seed_addr];
            peers.extend(ports.iter().filter(|&&p| p != port).map(|&p| local(p)));
            let out = tmp.path().join(format!("out{i}"));
            let mut cmd = rt_fetch_cmd(&torrent, &out, port, &peers, &["--json"]);
            std::thread::spawn(move || (out, run_limited(&mut cmd, LIMIT)))
        })
        .collect();
    for c in children {
        let (out, o) = c.join().unwrap();
        assert!(
            o.status.success(),
            "leecher failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_same_tree(&payload, &out.join("tree"));
    }
}

#[test]
fn several_seeders_one_leecher() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    write_random(&seed.join("file.bin"), 12 * 1024 * 1024 + 1, 3);
    let torrent = tmp.path().join("t.torrent");
    rt_create(&seed.join("file.bin"), &torrent, "64K");
    let seeders: Vec<_> = (0..3).map(|_| rt_seed(&torrent, &seed, &[])).collect();
    let addrs: Vec<SocketAddr> = seeders.iter().map(|s| s.1).collect();
    let out = tmp.path().join("out");
    let summary = fetch_ok(&torrent, &out, &addrs, &[]);
    assert_same_tree(&seed.join("file.bin"), &out.join("file.bin"));
    assert_eq!(summary["hash_failures"], 0);
    // Every seeder was connected to (each ended its connection at completion).
    assert!(summary["peers_seen"].as_u64().unwrap() >= 3, "{summary}");
}

#[test]
fn seed_exits_promptly_on_sigterm_and_never_touches_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    write_random(&seed.join("f"), 1024 * 1024, 5);
    let before = std::fs::metadata(seed.join("f"))
        .unwrap()
        .modified()
        .unwrap();
    let torrent = tmp.path().join("t.torrent");
    rt_create(&seed.join("f"), &torrent, "16K");
    let (mut s, addr) = rt_seed(&torrent, &seed, &[]);
    fetch_ok(&torrent, &tmp.path().join("out"), &[addr], &[]);
    let (status, took) = s.terminate(Duration::from_secs(5));
    assert!(status.success(), "seed exit status {status}");
    assert!(took < Duration::from_secs(2), "seed took {took:?} to exit");
    assert_eq!(
        std::fs::metadata(seed.join("f"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
}

#[test]
fn fetch_with_nobody_to_ask_gives_up_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    write_random(&seed.join("f"), 100_000, 5);
    let torrent = tmp.path().join("t.torrent");
    rt_create(&seed.join("f"), &torrent, "16K");
    // A port where nothing listens, and no tracker.
    let dead = local(free_port());
    let mut cmd = rt_fetch_cmd(
        &torrent,
        &tmp.path().join("out"),
        free_port(),
        &[dead],
        &["--timeout", "2"],
    );
    let o = run_limited(&mut cmd, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("nothing received for 2 s"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
