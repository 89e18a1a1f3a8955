//! The DHT (BEP 5): eight nodes on loopback, ringtorrent processes and
//! libtorrent sessions, joined through the first of them. A magnet link
//! with nothing but the info-hash (no tracker, no `x.pe`, no `--peer`)
//! completes in both directions, every byte compared; and a node flooded
//! with malformed and excessive packets stays up, bounded, answering.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(150);

fn torrent_of(root: &Path, name: &str, len: usize, seed: u64) -> (PathBuf, PathBuf) {
    let data = root.join("seed").join(name);
    write_random(&data, len, seed);
    let torrent = root.join(format!("{name}.torrent"));
    rt_create(&data, &torrent, "64K");
    (data, torrent)
}

/// A libtorrent session in the DHT through `boot`: seeding `torrent`, or
/// with no torrent at all.
fn lt_dht(torrent: Option<&Path>, save: &Path, boot: SocketAddr) -> Proc {
    let port = free_port().to_string();
    let boot = boot.to_string();
    let args: Vec<&str> = match torrent {
        Some(t) => vec![
            "seed",
            t.to_str().unwrap(),
            save.to_str().unwrap(),
            &port,
            "--dht",
            &boot,
        ],
        None => vec!["node", &port, "--dht", &boot],
    };
    lt_ready(&args, "libtorrent DHT node")
}

#[test]
fn magnets_complete_through_a_dht_of_eight_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let (x_data, x) = torrent_of(tmp.path(), "x.bin", 3 * 1024 * 1024 + 1, 1);
    let (y_data, y) = torrent_of(tmp.path(), "y.bin", 2 * 1024 * 1024 + 7, 2);
    let (_, z) = torrent_of(tmp.path(), "z.bin", 100_000, 3);
    // 1: ringtorrent seeds X and is the node everyone joins through.
    let (_x_seed, boot) = rt_seed(&x, &seed_dir, &["--dht-bootstrap", ""]);
    let join = ["--dht-bootstrap".to_owned(), boot.to_string()];
    let join: Vec<&str> = join.iter().map(String::as_str).collect();
    // 2: libtorrent seeds Y.
    let _y_seed = lt_dht(Some(&y), &seed_dir, boot);
    // 3-6: two libtorrent nodes, two ringtorrent processes (seeding Z).
    let _lt_a = lt_dht(None, &seed_dir, boot);
    let _lt_b = lt_dht(None, &seed_dir, boot);
    let z_dirs = [tmp.path().join("z1"), tmp.path().join("z2")];
    let _rt_z: Vec<_> = z_dirs
        .iter()
        .map(|d| {
            std::fs::create_dir_all(d).unwrap();
            std::fs::copy(seed_dir.join("z.bin"), d.join("z.bin")).unwrap();
            rt_seed(&z, d, &join).0
        })
        .collect();
    // 7: ringtorrent fetches Y by its info-hash alone; 8: libtorrent X.
    let rt_out = tmp.path().join("rt-out");
    let y_uri = format!("magnet:?xt=urn:btih:{}", info_hash(&y));
    let mut rt_fetch = rt_fetch_cmd(Path::new(&y_uri), &rt_out, free_port(), &[], &join);
    rt_fetch.arg("--json");
    let rt =
        std::thread::spawn(move || run_limited_ok(&mut rt_fetch, LIMIT, "ringtorrent's DHT fetch"));
    let lt_out = tmp.path().join("lt-out");
    let x_uri = format!("magnet:?xt=urn:btih:{}", info_hash(&x));
    let port = free_port().to_string();
    let started = Instant::now();
    run_limited_ok(
        &mut lt(&[
            "magnet",
            &x_uri,
            lt_out.to_str().unwrap(),
            &port,
            "--dht",
            &boot.to_string(),
        ]),
        LIMIT,
        "libtorrent's DHT fetch",
    );
    eprintln!(
        "libtorrent fetched X through the DHT in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let summary = json(&rt.join().unwrap());
    eprintln!("ringtorrent fetched Y: {summary}");
    assert_eq!(summary["complete"], true, "{summary}");
    assert_same_tree(&y_data, &rt_out.join("y.bin"));
    assert_same_tree(&x_data, &lt_out.join("x.bin"));
}

#[test]
fn a_flooded_node_stays_up_bounded_and_answering() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, x) = torrent_of(tmp.path(), "x.bin", 100_000, 4);
    let (mut seed, addr) = rt_seed(
        &x,
        &tmp.path().join("seed"),
        &["--dht-bootstrap", "", "--json"],
    );
    let pid = seed.child.id();
    let rss = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
    };
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let ping = |tid: &[u8]| {
        let mut m = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:".to_vec();
        m.extend_from_slice(tid);
        m.extend_from_slice(b"1:y1:qe");
        m
    };
    let answered = |sock: &UdpSocket| {
        let mut buf = [0u8; 1500];
        (0..10).any(|i| {
            let tid = [b'p', i];
            sock.send_to(&ping(&tid), addr).unwrap();
            matches!(sock.recv_from(&mut buf), Ok((n, _)) if buf[..n].windows(4).any(|w| w == b"1:rd"))
        })
    };
    assert!(answered(&sock), "the node answers a ping");
    let before = rss();
    // Malformed packets, from every angle.
    let junk: Vec<Vec<u8>> = vec![
        vec![],
        b"d".to_vec(),
        b"de".to_vec(),
        b"d1:y1:qe".to_vec(),
        b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe".to_vec(),
        b"d1:ad2:id20:abcdefghij0123456789e1:q9:get_peers1:t2:aa1:y1:qe".to_vec(),
        b"d1:ad2:id20:abcdefghij01234567899:info_hash20:abcdefghij01234567894:porti-5e5:token0:e1:q13:announce_peer1:t2:aa1:y1:qe".to_vec(),
        b"l".repeat(1400),
        vec![0xff; 1400],
        b"d1:rd2:id20:abcdefghij0123456789e1:t2:zz1:y1:re".to_vec(),
    ];
    for j in &junk {
        sock.send_to(j, addr).unwrap();
    }
    // A flood of valid queries from one address, then from many ports:
    // the rate limit answers a few and refuses the rest.
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..20_000u32 {
        let mut q = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:".to_vec();
        q.extend_from_slice(&[(i % 251) as u8; 20]);
        q.extend_from_slice(b"e1:q9:get_peers1:t4:");
        q.extend_from_slice(&i.to_be_bytes());
        q.extend_from_slice(b"1:y1:qe");
        let _ = flood.send_to(&q, addr);
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        seed.child.try_wait().unwrap().is_none(),
        "the seeder is still running"
    );
    let after = rss();
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    // The flood's budget refills: an honest neighbour is answered again.
    std::thread::sleep(Duration::from_secs(2));
    assert!(answered(&sock), "the node answers after the flood");
    let summary = seed.terminate_json();
    // How much of the flood reaches the node depends on the machine (the
    // kernel drops what overflows the socket's buffer); of what does, the
    // rate limit refuses nearly all.
    let refused = summary["dht"]["refused"].as_u64().unwrap();
    let answered = summary["dht"]["queries_answered"].as_u64().unwrap();
    assert!(
        refused > 1_000 && refused > 50 * answered,
        "the flood was refused: {summary}"
    );
}
