//! `ringtorrent health` against Debian's opentracker (started by the test
//! on 127.0.0.1, in the whitelist mode it is built with), over HTTP and
//! UDP, with a ringtorrent seeder announcing to it, and a dead tracker
//! beside it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// opentracker on `port` (TCP and UDP), tracking `hashes`, until dropped.
struct OpenTracker {
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl OpenTracker {
    fn start(port: u16, hashes: &[String]) -> OpenTracker {
        let bin = Path::new("/usr/bin/opentracker");
        assert!(
            bin.exists(),
            "opentracker is not installed: run scripts/setup (it installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("whitelist"), hashes.join("\n") + "\n").unwrap();
        for p in [dir.path(), &root] {
            let mut perm = std::fs::metadata(p).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
            std::fs::set_permissions(p, perm).unwrap();
        }
        // It chroots to -d and drops root for -u; -w is inside the chroot.
        let mut proc = Proc::spawn_logged(
            Command::new(bin)
                .args([
                    "-i",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-P",
                    &port.to_string(),
                ])
                .arg("-d")
                .arg(&root)
                .args(["-u", "nobody", "-w", "/whitelist"]),
            "opentracker",
            &dir.path().join("opentracker.log"),
        );
        wait_listening(local(port), &mut proc, Duration::from_secs(20));
        OpenTracker {
            _proc: proc,
            _dir: dir,
        }
    }
}

fn health(torrent: &Path) -> (bool, serde_json::Value) {
    let o = Command::new(bin())
        .args(["health", "--json", "--timeout", "3"])
        .arg(torrent)
        .output()
        .unwrap();
    (o.status.success(), json(&o))
}

#[test]
fn health_reads_seeders_from_opentracker_over_http_and_udp() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let payload = data.join("file.bin");
    write_random(&payload, 300_000, 31);
    let port = free_port();
    let dead = free_port();
    let torrent = tmp.path().join("t.torrent");
    rt_create_with_trackers(
        &payload,
        &torrent,
        "16K",
        &[
            &[format!("http://127.0.0.1:{port}/announce")],
            &[format!("udp://127.0.0.1:{port}/announce")],
            &[format!("udp://127.0.0.1:{dead}/announce")],
        ],
    );
    let hash = json(&run_ok(
        Command::new(bin()).args(["info", "--json"]).arg(&torrent),
    ))["info_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let _tracker = OpenTracker::start(port, std::slice::from_ref(&hash));

    // Before anyone announces: answered, nobody there.
    let (ok, h) = health(&torrent);
    assert!(ok, "{h}");
    assert_eq!(h["info_hash"], hash.as_str());
    assert_eq!(h["answered"], 2, "{h}");
    assert_eq!(h["total"]["seeders"], 0, "{h}");
    assert_eq!(h["trackers"][2]["ok"], false, "{h}");

    // A seeder announces (over both; opentracker keeps one swarm).
    let (_seed, _) = rt_seed(&torrent, &data, &["--no-dht", "--no-lsd"]);
    let start = Instant::now();
    let h = loop {
        let (ok, h) = health(&torrent);
        assert!(ok, "{h}");
        if h["trackers"][0]["stats"]["seeders"] == 1 && h["trackers"][1]["stats"]["seeders"] == 1 {
            break h;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no seeder seen: {h}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        h["trackers"][0]["url"],
        format!("http://127.0.0.1:{port}/announce")
    );
    assert_eq!(h["trackers"][0]["stats"]["leechers"], 0, "{h}");
    assert_eq!(h["total"]["seeders"], 2, "{h}");
    assert!(h["trackers"][2]["error"].is_string(), "{h}");

    // The table, for people.
    let text = run_ok(
        Command::new(bin())
            .args(["health", "--timeout", "3"])
            .arg(&torrent),
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("total (sum over trackers)"), "{text}");
    assert!(text.contains("1:0 (-)"), "{text}");
}

#[test]
fn health_with_no_answering_tracker_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let payload = tmp.path().join("f.bin");
    write_random(&payload, 1000, 32);
    let torrent = tmp.path().join("t.torrent");
    let dead = format!("udp://127.0.0.1:{}/announce", free_port());
    rt_create_with_trackers(&payload, &torrent, "16K", &[&[dead]]);
    let (ok, h) = health(&torrent);
    assert!(!ok, "{h}");
    assert_eq!(h["answered"], 0, "{h}");
}
