//! Peer exchange (BEP 11): a leecher that knows only peer A learns peer B
//! from A and finishes from B. A moves 1 KiB/s each way (so it stays a
//! leecher, connected to B), and finishing in time proves the leecher found
//! B; the leecher's summary counts what PEX told it. A is libtorrent, then
//! ringtorrent; the leecher ringtorrent, then libtorrent. No DHT anywhere
//! (it would find B too). Every byte is compared. With `--no-pex` we offer
//! no peer exchange and take none.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::fake_peer;
use common::*;

const LIMIT: Duration = Duration::from_secs(120);
/// What A gives: too little to finish from it alone within `LIMIT`.
const SLOW: u64 = 1024;

fn payload(root: &Path) -> (PathBuf, PathBuf) {
    let data = root.join("seed/data.bin");
    write_random(&data, 4 * 1024 * 1024 + 3, 17);
    let torrent = root.join("data.torrent");
    rt_create(&data, &torrent, "64K");
    (data, torrent)
}

/// A ringtorrent peer of the swarm of `peers` that moves at most [`SLOW`]
/// bytes/s each way: it stays a leecher, connected to them.
fn rt_slow_peer(torrent: &Path, dir: &Path, peers: &[SocketAddr]) -> (Proc, SocketAddr) {
    let port = free_port();
    let slow = SLOW.to_string();
    let mut cmd = rt_fetch_cmd(
        torrent,
        dir,
        port,
        peers,
        &[
            "--upload-limit",
            &slow,
            "--download-limit",
            &slow,
            "--no-dht",
        ],
    );
    let mut p = Proc::spawn(&mut cmd, "ringtorrent peer A");
    wait_listening(local(port), &mut p, Duration::from_secs(60));
    (p, local(port))
}

fn rt_leech_via(torrent: &Path, out: &Path, a: SocketAddr) -> serde_json::Value {
    let mut cmd = rt_fetch_cmd(
        torrent,
        out,
        free_port(),
        &[a],
        &["--json", "--timeout", "60", "--no-dht"],
    );
    json(&run_limited_ok(&mut cmd, LIMIT, "the leecher"))
}

#[test]
fn ringtorrent_learns_a_peer_from_libtorrent() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = payload(tmp.path());
    let (_b, b) = rt_seed(&torrent, &tmp.path().join("seed"), &["--no-dht"]);
    let (_a, a) = lt_join(&torrent, &tmp.path().join("a"), SLOW, SLOW, &[b]);
    let out = tmp.path().join("out");
    let summary = rt_leech_via(&torrent, &out, a);
    assert!(summary["pex_peers"].as_u64().unwrap() >= 1, "{summary}");
    assert_same_tree(&data, &out.join("data.bin"));
}

#[test]
fn ringtorrent_learns_a_peer_from_ringtorrent() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = payload(tmp.path());
    let (_b, b) = rt_seed(&torrent, &tmp.path().join("seed"), &["--no-dht"]);
    let (_a, a) = rt_slow_peer(&torrent, &tmp.path().join("a"), &[b]);
    let out = tmp.path().join("out");
    let summary = rt_leech_via(&torrent, &out, a);
    assert!(summary["pex_peers"].as_u64().unwrap() >= 1, "{summary}");
    assert_same_tree(&data, &out.join("data.bin"));
}

#[test]
fn libtorrent_learns_a_peer_from_ringtorrent() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, torrent) = payload(tmp.path());
    let (_b, b) = rt_seed(&torrent, &tmp.path().join("seed"), &["--no-dht"]);
    let (_a, a) = rt_slow_peer(&torrent, &tmp.path().join("a"), &[b]);
    let out = tmp.path().join("lt");
    let port = free_port().to_string();
    run_limited_ok(
        &mut lt(&[
            "leech",
            torrent.to_str().unwrap(),
            out.to_str().unwrap(),
            &port,
            &a.to_string(),
        ]),
        LIMIT,
        "libtorrent's fetch",
    );
    assert_same_tree(&data, &out.join("data.bin"));
}

#[test]
fn no_pex_offers_and_takes_no_peer_exchange() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, torrent) = payload(tmp.path());
    let (_seed, addr) = rt_seed(
        &torrent,
        &tmp.path().join("seed"),
        &["--no-dht", "--no-pex"],
    );
    let raw = info_hash_bytes(&torrent);
    let (mut s, _) = fake_peer::connect_and_handshake_ext(addr, &raw).unwrap();
    let ext = fake_peer::their_ext_handshake(&mut s);
    assert!(
        ext.contains("ut_metadata"),
        "metadata is still offered: {ext}"
    );
    assert!(!ext.contains("ut_pex"), "{ext}");
    // A peer that sends peer exchange anyway is dropped: it was not offered.
    fake_peer::send_pex(&mut s).unwrap();
    assert!(fake_peer::closed_within(&mut s, Duration::from_secs(10)));
}
