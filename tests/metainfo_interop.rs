//! Torrents made by ringtorrent load in libtorrent with the same info-hash and
//! pass its full recheck; torrents made by libtorrent and mktorrent parse here
//! as those tools report them.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const PIECE_SIZES: [u32; 4] = [16 << 10, 256 << 10, 1 << 20, 16 << 20];

/// libtorrent's view of a torrent, reduced to what both sides report.
fn lt_view(torrent: &Path) -> serde_json::Value {
    let tool = lt_tool();
    let out = run_ok(
        Command::new(&tool[0])
            .arg(&tool[1])
            .arg("info")
            .arg(torrent),
    );
    json(&out)
}

fn our_view(torrent: &Path) -> serde_json::Value {
    json(&run_ok(
        Command::new(bin()).arg("info").arg("--json").arg(torrent),
    ))
}

/// Compares info-hash, name, piece length and count, and the file list.
fn assert_same_view(torrent: &Path) {
    let lt = lt_view(torrent);
    let ours = our_view(torrent);
    assert_eq!(ours["info_hash"], lt["info_hash"], "{}", torrent.display());
    assert_eq!(ours["name"], lt["name"]);
    assert_eq!(ours["piece_length"], lt["piece_length"]);
    assert_eq!(ours["piece_count"], lt["num_pieces"]);
    assert_eq!(ours["total_length"], lt["total_size"]);
    assert_eq!(ours["private"], lt["private"]);
    let lt_files: Vec<(String, u64, bool)> = lt["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["size"].as_u64().unwrap(),
                f["pad"].as_bool().unwrap(),
            )
        })
        .collect();
    let our_files: Vec<(String, u64, bool)> = ours["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["length"].as_u64().unwrap(),
                f["pad"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(our_files, lt_files, "{}", torrent.display());
}

fn payloads(dir: &Path) -> Vec<std::path::PathBuf> {
    // Big enough for three 16 MiB pieces, none of them aligned.
    let single = dir.join("single.bin");
    write_random(&single, 40 * 1024 * 1024 + 12_345, 9);
    let multi = make_multi(dir, "multi", 33 * 1024 * 1024 + 7);
    vec![single, multi]
}

#[test]
fn ringtorrent_torrents_load_and_recheck_in_libtorrent() {
    let tmp = tempfile::tempdir().unwrap();
    let tool = lt_tool();
    for payload in payloads(tmp.path()) {
        for piece in PIECE_SIZES {
            let torrent = tmp.path().join(format!("rt-{piece}.torrent"));
            let out = run_ok(
                Command::new(bin())
                    .arg("create")
                    .arg(&payload)
                    .arg("-o")
                    .arg(&torrent)
                    .args(["--piece-size", &piece.to_string(), "--force", "--json"])
                    .args([
                        "-t",
                        "http://127.0.0.1:1/announce,udp://127.0.0.1:2",
                        "-t",
                        "http://127.0.0.1:3/a",
                    ]),
            );
            let created = json(&out);
            assert_same_view(&torrent);
            let lt = lt_view(&torrent);
            assert_eq!(created["info_hash"], lt["info_hash"]);
            let tiers: Vec<u64> = lt["trackers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t[1].as_u64().unwrap())
                .collect();
            assert_eq!(tiers, vec![0, 0, 1]);
            let check = json(&run_ok(
                Command::new(&tool[0])
                    .arg(&tool[1])
                    .arg("recheck")
                    .arg(&torrent)
                    .arg(tmp.path()),
            ));
            assert_eq!(check["checked"], true);
            assert_eq!(
                check["have"],
                check["num_pieces"],
                "libtorrent recheck of {} ({piece})",
                payload.display()
            );
        }
    }
}

#[test]
fn a_recheck_catches_a_changed_byte() {
    // The recheck above must be able to fail: flip one byte and see it.
    let tmp = tempfile::tempdir().unwrap();
    let tool = lt_tool();
    let payload = make_multi(tmp.path(), "m", 3 * 1024 * 1024);
    let torrent = tmp.path().join("m.torrent");
    run_ok(
        Command::new(bin())
            .arg("create")
            .arg(&payload)
            .arg("-o")
            .arg(&torrent)
            .args(["-p", "64K"]),
    );
    let big = payload.join("big.bin");
    let mut bytes = std::fs::read(&big).unwrap();
    bytes[1_000_000] ^= 1;
    std::fs::write(&big, bytes).unwrap();
    let check = json(&run_ok(
        Command::new(&tool[0])
            .arg(&tool[1])
            .arg("recheck")
            .arg(&torrent)
            .arg(tmp.path()),
    ));
    assert_eq!(
        check["have"].as_u64().unwrap() + 1,
        check["num_pieces"].as_u64().unwrap()
    );
}

#[test]
fn libtorrent_torrents_parse_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let tool = lt_tool();
    for payload in payloads(tmp.path()) {
        for piece in PIECE_SIZES {
            let torrent = tmp.path().join(format!("lt-{piece}.torrent"));
            run_ok(
                Command::new(&tool[0])
                    .arg(&tool[1])
                    .arg("create")
                    .arg(&payload)
                    .arg(&torrent)
                    .arg(piece.to_string())
                    .args(["--private", "--tracker", "http://127.0.0.1:1/announce"]),
            );
            // libtorrent 2.0 writes hybrid v1+v2 torrents with BEP 47 pad files.
            assert_same_view(&torrent);
        }
    }
}

#[test]
fn mktorrent_torrents_parse_the_same() {
    assert!(
        Command::new("mktorrent").arg("-h").output().is_ok(),
        "mktorrent is not installed: run scripts/test (it installs it)"
    );
    let tmp = tempfile::tempdir().unwrap();
    for payload in payloads(tmp.path()) {
        // mktorrent's smallest piece is 32 KiB.
        for exp in [15, 18, 20, 24] {
            let torrent = tmp.path().join(format!("mk-{exp}.torrent"));
            let _ = std::fs::remove_file(&torrent);
            run_ok(
                Command::new("mktorrent")
                    .args([
                        "-l",
                        &exp.to_string(),
                        "-a",
                        "http://127.0.0.1:1/announce",
                        "-o",
                    ])
                    .arg(&torrent)
                    .arg(&payload),
            );
            assert_same_view(&torrent);
        }
    }
}

/// `create --hybrid` and `create --v2` (BEP 52): libtorrent loads them
/// with the same v1 and v2 info-hashes and passes its full check (v1
/// pieces and v2 piece layers), for one file and a tree, at small and
/// large pieces; a changed byte fails it.
#[test]
fn hybrid_and_v2_torrents_match_libtorrent_in_both_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let tool = lt_tool();
    let single = tmp.path().join("single.bin");
    write_random(&single, 3 * 1024 * 1024 + 12_345, 21);
    let multi = make_multi(tmp.path(), "multi", 2 * 1024 * 1024 + 7);
    let recheck = |torrent: &Path| {
        json(&run_ok(
            Command::new(&tool[0])
                .arg(&tool[1])
                .arg("recheck")
                .arg(torrent)
                .arg(tmp.path()),
        ))
    };
    for flag in ["--hybrid", "--v2"] {
        for payload in [&single, &multi] {
            for piece in ["16K", "64K", "1M"] {
                let case = format!("{flag} {} {piece}", payload.display());
                let torrent = tmp.path().join(format!("{flag}-{piece}.torrent"));
                let created = json(&run_ok(
                    rt_create_cmd(payload, &torrent, piece).args([flag, "--json"]),
                ));
                let lt = lt_view(&torrent);
                assert!(created["info_hash_v2"].is_string());
                assert_eq!(created["info_hash_v2"], lt["info_hash_v2"], "{case}");
                assert_eq!(our_view(&torrent)["info_hash_v2"], lt["info_hash_v2"]);
                assert_eq!(created["piece_count"], lt["num_pieces"], "{case}");
                if flag == "--hybrid" {
                    assert_eq!(created["info_hash"], lt["info_hash"], "{case}");
                } else {
                    // No v1 hash; peers know the torrent by the v2 one cut
                    // to 20 bytes.
                    assert_eq!(lt["info_hash"], "0".repeat(40), "{case}");
                    let v2 = created["info_hash_v2"].as_str().unwrap();
                    assert_eq!(created["info_hash"], &v2[..40], "{case}");
                }
                let check = recheck(&torrent);
                assert_eq!(check["have"], check["num_pieces"], "{case}");
            }
        }
    }
    // The check above can fail.
    let torrent = tmp.path().join("--hybrid-64K.torrent");
    let mut bytes = std::fs::read(multi.join("z/last.dat")).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(multi.join("z/last.dat"), bytes).unwrap();
    let check = recheck(&torrent);
    assert_ne!(check["have"], check["num_pieces"]);
}
