//! ringtorrent and libtorrent-rasterbar (python3-libtorrent) exchange data in
//! both directions over loopback; every byte is compared.

mod common;

use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(180);

/// A libtorrent leecher fetching `torrent` from `peer` into `out` (at most
/// `rate` bytes/s); panics with its stderr if it fails.
fn lt_leech(
    torrent: &std::path::Path,
    out: &std::path::Path,
    peer: std::net::SocketAddr,
    rate: Option<u64>,
) {
    let port = free_port().to_string();
    let peer = peer.to_string();
    let rate = rate.map(|r| r.to_string());
    let mut args = vec![
        "leech",
        torrent.to_str().unwrap(),
        out.to_str().unwrap(),
        &port,
        &peer,
    ];
    args.extend(rate.as_deref());
    let o = run_limited(&mut lt(&args), LIMIT);
    assert!(
        o.status.success(),
        "libtorrent leech of {} failed: {}",
        torrent.display(),
        String::from_utf8_lossy(&o.stderr)
    );
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
        lt_leech(&torrent, &out, addr, None);
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

/// A super-seeding seeder greets libtorrent with have-none and shows it
/// pieces a few at a time: it must still get every byte, from one seeder
/// to two leechers at once.
#[test]
fn libtorrent_leeches_from_a_super_seeding_ringtorrent() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    let payload = seed.join("file.bin");
    write_random(&payload, 12 * 1024 * 1024 + 5, 13);
    let torrent = tmp.path().join("file.torrent");
    rt_create(&payload, &torrent, "256K");
    let (mut rt, addr) = rt_seed(&torrent, &seed, &["--super-seed", "-v"]);
    let leechers: Vec<_> = (0..2)
        .map(|i| {
            let (torrent, out) = (torrent.clone(), tmp.path().join(format!("out-{i}")));
            std::thread::spawn(move || {
                lt_leech(&torrent, &out, addr, None);
                out
            })
        })
        .collect();
    for l in leechers {
        let out = l.join().unwrap();
        assert_same_tree(&payload, &out.join("file.bin"));
    }
    let (status, _) = rt.terminate(Duration::from_secs(5));
    assert!(status.success());
    let err = rt.stderr();
    assert!(
        err.contains("every piece has gone out once"),
        "not super-seeding: {err}"
    );
    assert!(!err.contains("protocol errors"), "{err}");
}

/// Piece sizes users reach, each with a payload of a few pieces (the last
/// one short) kept small enough for the suite.
const PIECE_SIZES: [(&str, usize); 5] = [
    ("16K", 3 << 20),
    ("1M", 9 << 20),
    ("4M", 18 << 20),
    ("16M", 40 << 20),
    ("64M", 72 << 20),
];

/// One payload per piece size and layout, with its torrent.
struct Case {
    piece: &'static str,
    name: String,
    payload: std::path::PathBuf,
    torrent: std::path::PathBuf,
}

/// Single-file and multi-file payloads of every size in `PIECE_SIZES`.
fn cases(seed_dir: &std::path::Path, torrents: &std::path::Path) -> Vec<Case> {
    let mut out = Vec::new();
    for (i, (piece, len)) in PIECE_SIZES.iter().enumerate() {
        for multi in [false, true] {
            let name = format!("{}-{piece}", if multi { "tree" } else { "file" });
            let payload = if multi {
                // A tree of odd sizes around one large file.
                make_multi(seed_dir, &name, len - (1 << 20) + 13)
            } else {
                let p = seed_dir.join(&name);
                write_random(&p, len + 1234, 40 + i as u64);
                p
            };
            let torrent = torrents.join(format!("{name}.torrent"));
            rt_create(&payload, &torrent, piece);
            out.push(Case {
                piece,
                name,
                payload,
                torrent,
            });
        }
    }
    out
}

fn rt_fetch_ok(case: &Case, out: &std::path::Path, peer: std::net::SocketAddr) {
    let mut cmd = rt_fetch_cmd(&case.torrent, out, free_port(), &[peer], &["--json"]);
    let o = run_limited(&mut cmd, LIMIT);
    assert!(
        o.status.success(),
        "{} ({} pieces): fetch failed: {}",
        case.name,
        case.piece,
        String::from_utf8_lossy(&o.stderr)
    );
    let s = json(&o);
    assert_eq!(s["hash_failures"], 0, "{}: {s}", case.name);
    assert_same_tree(&case.payload, &out.join(&case.name));
}

#[test]
fn every_piece_size_from_ringtorrent_to_ringtorrent() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    for case in cases(&seed, tmp.path()) {
        let (mut rt, addr) = rt_seed(&case.torrent, &seed, &[]);
        rt_fetch_ok(&case, &tmp.path().join(format!("out-{}", case.name)), addr);
        let (status, _) = rt.terminate(Duration::from_secs(5));
        assert!(status.success(), "{}: seeder failed", case.name);
    }
}

#[test]
fn every_piece_size_from_libtorrent_to_ringtorrent() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    for case in cases(&seed, tmp.path()) {
        let (_lt, addr) = lt_seed(&case.torrent, &seed);
        rt_fetch_ok(&case, &tmp.path().join(format!("out-{}", case.name)), addr);
    }
}

#[test]
fn every_piece_size_from_ringtorrent_to_libtorrent() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    for case in cases(&seed, tmp.path()) {
        let (mut rt, addr) = rt_seed(&case.torrent, &seed, &[]);
        let out = tmp.path().join(format!("out-{}", case.name));
        lt_leech(&case.torrent, &out, addr, None);
        assert_same_tree(&case.payload, &out.join(&case.name));
        let (status, _) = rt.terminate(Duration::from_secs(5));
        assert!(status.success(), "{}: seeder failed", case.name);
    }
}

/// CPU seconds a process has used (user and system), from `/proc`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[test]
fn a_seeder_of_large_pieces_idles_while_a_slow_leecher_fetches() {
    // 16 MiB pieces to a leecher capped at 6 MiB/s: the seeder answers each
    // request from a 1 MiB read unit and then waits; it must not spin.
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    let payload = seed.join("big.bin");
    write_random(&payload, 24 << 20, 77);
    let torrent = tmp.path().join("big.torrent");
    rt_create(&payload, &torrent, "16M");
    let (mut rt, addr) = rt_seed(&torrent, &seed, &[]);
    let pid = rt.child.id();
    let before = cpu_seconds(pid);
    let start = Instant::now();
    let out = tmp.path().join("out");
    lt_leech(&torrent, &out, addr, Some(6 << 20));
    let (wall, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds(pid) - before);
    assert_same_tree(&payload, &out.join("big.bin"));
    assert!(wall > 2.0, "the leecher was not slowed down ({wall:.1} s)");
    assert!(
        cpu < 0.25 * wall,
        "the seeder used {cpu:.2} s of CPU in {wall:.1} s: it is spinning"
    );
    let (status, _) = rt.terminate(Duration::from_secs(5));
    assert!(status.success());
}

/// A hybrid torrent (BEP 52, `create --hybrid`: pad files between files)
/// moves both ways with libtorrent, which checks its v2 side too.
#[test]
fn hybrid_torrents_move_both_ways_with_libtorrent() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    let payload = make_multi(&seed, "tree", 6 * 1024 * 1024 + 17);
    let torrent = tmp.path().join("tree.torrent");
    run_ok(rt_create_cmd(&payload, &torrent, "64K").arg("--hybrid"));

    let (_lt, addr) = lt_seed(&torrent, &seed);
    let out = tmp.path().join("from-lt");
    let o = run_limited(
        &mut rt_fetch_cmd(&torrent, &out, free_port(), &[addr], &["--json"]),
        LIMIT,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["hash_failures"], 0);
    assert_same_tree(&payload, &out.join("tree"));

    let (_rt, addr) = rt_seed(&torrent, &seed, &[]);
    let out = tmp.path().join("to-lt");
    lt_leech(&torrent, &out, addr, None);
    assert_same_tree(&payload, &out.join("tree"));
}

/// v2-only torrents (BEP 52) made by us and by libtorrent move both ways
/// with libtorrent, in a tree (each file padded to a piece, files smaller
/// than a piece checked against their own root) and as one file.
#[test]
fn v2_torrents_move_both_ways_with_libtorrent() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    let tree = make_multi(&seed, "tree", 3 * 1024 * 1024 + 17);
    let single = seed.join("one.bin");
    write_random(&single, 2 * 1024 * 1024 + 5, 9);
    let tool = lt_tool();
    for (payload, piece) in [(&tree, 16 * 1024), (&tree, 1 << 20), (&single, 64 * 1024)] {
        let name = payload.file_name().unwrap().to_str().unwrap();
        for maker in ["ringtorrent", "libtorrent"] {
            let torrent = tmp.path().join(format!("{name}-{piece}-{maker}.torrent"));
            if maker == "ringtorrent" {
                run_ok(rt_create_cmd(payload, &torrent, &piece.to_string()).arg("--v2"));
            } else {
                run_ok(
                    std::process::Command::new(&tool[0])
                        .arg(&tool[1])
                        .arg("create")
                        .arg(payload)
                        .arg(&torrent)
                        .arg(piece.to_string())
                        .arg("--v2"),
                );
            }
            let case = format!("{name}, {piece} B pieces, made by {maker}");

            let (_lt, addr) = lt_seed(&torrent, &seed);
            let out = tmp.path().join(format!("from-lt-{name}-{piece}-{maker}"));
            let o = run_limited(
                &mut rt_fetch_cmd(&torrent, &out, free_port(), &[addr], &["--json"]),
                LIMIT,
            );
            assert!(
                o.status.success(),
                "{case}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(json(&o)["hash_failures"], 0, "{case}");
            assert_same_tree(payload, &out.join(name));

            let (_rt, addr) = rt_seed(&torrent, &seed, &[]);
            let out = tmp.path().join(format!("to-lt-{name}-{piece}-{maker}"));
            lt_leech(&torrent, &out, addr, None);
            assert_same_tree(payload, &out.join(name));
        }
    }
}
