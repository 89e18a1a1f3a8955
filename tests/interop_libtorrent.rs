//! ringtorrent and libtorrent-rasterbar (python3-libtorrent) exchange data in
//! both directions over loopback; every byte is compared.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(180);

fn lt(args: &[&str]) -> Command {
    let tool = lt_tool();
    let mut cmd = Command::new(&tool[0]);
    cmd.arg(&tool[1]).args(args);
    cmd
}

/// Starts a libtorrent seeder and waits for it to report that it seeds.
fn lt_seed(torrent: &std::path::Path, save: &std::path::Path) -> (Proc, std::net::SocketAddr) {
    let port = free_port();
    let mut p = Proc::spawn(
        &mut lt(&[
            "seed",
            torrent.to_str().unwrap(),
            save.to_str().unwrap(),
            &port.to_string(),
        ]),
        "libtorrent seed",
    );
    let stdout = p.child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line == "READY" {
                let _ = tx.send(());
            }
        }
    });
    let start = Instant::now();
    while rx.try_recv().is_err() {
        if let Some(st) = p.child.try_wait().unwrap() {
            let err = p.stderr();
            panic!("libtorrent seeder exited ({st}): {err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "libtorrent seeder never became ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (p, local(port))
}

#[test]
fn ringtorrent_leeches_from_libtorrent() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    for (name, piece) in [("tree", "256K"), ("file.bin", "16K")] {
        let payload = if name == "tree" {
            make_multi(&seed, name, 20 * 1024 * 1024 + 17)
        } else {
            let p = seed.join(name);
            write_random(&p, 5 * 1024 * 1024 + 999, 11);
            p
        };
        let torrent = tmp.path().join(format!("{name}.torrent"));
        rt_create(&payload, &torrent, piece);
        let (_lt, addr) = lt_seed(&torrent, &seed);
        let out = tmp.path().join(format!("out-{name}"));
        let mut cmd = rt_fetch_cmd(&torrent, &out, free_port(), &[addr], &["--json"]);
        let o = run_limited(&mut cmd, LIMIT);
        assert!(
            o.status.success(),
            "fetch from libtorrent failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let summary = json(&o);
        assert_eq!(summary["protocol_errors"], 0, "{summary}");
        assert_eq!(summary["hash_failures"], 0, "{summary}");
        assert_same_tree(&payload, &out.join(name));
    }
}

#[test]
fn libtorrent_leeches_from_ringtorrent() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    for (name, piece) in [("tree", "1M"), ("file.bin", "32K")] {
        let payload = if name == "tree" {
            make_multi(&seed, name, 20 * 1024 * 1024 + 17)
        } else {
            let p = seed.join(name);
            write_random(&p, 5 * 1024 * 1024 + 999, 12);
            p
        };
        let torrent = tmp.path().join(format!("{name}.torrent"));
        rt_create(&payload, &torrent, piece);
        let (mut rt, addr) = rt_seed(&torrent, &seed, &[]);
        let out = tmp.path().join(format!("out-{name}"));
        let o = run_limited(
            &mut lt(&[
                "leech",
                torrent.to_str().unwrap(),
                out.to_str().unwrap(),
                &free_port().to_string(),
                &addr.to_string(),
            ]),
            LIMIT,
        );
        assert!(
            o.status.success(),
            "libtorrent leech failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_same_tree(&payload, &out.join(name));
        let (status, _) = rt.terminate(Duration::from_secs(5));
        assert!(status.success());
        let err = rt.stderr();
        assert!(err.contains("uploaded"), "{err}");
        assert!(
            !err.contains("protocol errors"),
            "ringtorrent saw protocol errors: {err}"
        );
    }
}
