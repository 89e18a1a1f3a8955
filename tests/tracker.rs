//! `ringtorrent tracker`: libtorrent and ringtorrent find each other
//! through it over HTTP and UDP (no peer given to either), `health` reads
//! it, the allow-list is reloaded on SIGHUP, forged or malformed packets
//! get no answer while real clients keep being served, and HTTP clients
//! that are slow, silent or oversized are answered or refused without
//! holding up others.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

struct OurTracker {
    proc: Proc,
    port: u16,
}

impl OurTracker {
    fn start(extra: &[&str]) -> OurTracker {
        let port = free_port();
        let mut proc = Proc::spawn(
            Command::new(bin())
                .args(["tracker", "--listen", &format!("127.0.0.1:{port}")])
                .args(extra),
            "ringtorrent tracker",
        );
        wait_listening(local(port), &mut proc, Duration::from_secs(20));
        OurTracker { proc, port }
    }

    fn get(&self, target: &str) -> Vec<u8> {
        let mut body = Vec::new();
        let r = ureq::get(&format!("http://127.0.0.1:{}{target}", self.port))
            .call()
            .unwrap();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut body).unwrap();
        body
    }
}

fn quoted(hash: &[u8]) -> String {
    hash.iter().map(|b| format!("%{b:02X}")).collect()
}

#[test]
fn libtorrent_and_ringtorrent_pair_through_it_over_http_and_udp() {
    let tracker = OurTracker::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let payload = data.join("file.bin");
    write_random(&payload, 3 << 20, 41);
    for scheme in ["http", "udp"] {
        let url = format!("{scheme}://127.0.0.1:{}/announce", tracker.port);
        let torrent = tmp.path().join(format!("{scheme}.torrent"));
        rt_create_with_trackers(&payload, &torrent, "64K", &[&[url]]);

        // libtorrent seeds; we know of it only through the tracker.
        let (lt, _) = lt_seed(&torrent, &data);
        let out = tmp.path().join(format!("from-lt-{scheme}"));
        let o = run_limited(
            &mut rt_fetch_cmd(&torrent, &out, free_port(), &[], &["--no-dht", "--no-lsd"]),
            Duration::from_secs(120),
        );
        assert!(
            o.status.success(),
            "{scheme}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_same_tree(&payload, &out.join("file.bin"));
        drop(lt);

        // We seed; libtorrent knows of us only through the tracker.
        let (_seed, _) = rt_seed(&torrent, &data, &["--no-dht", "--no-lsd"]);
        let save = tmp.path().join(format!("to-lt-{scheme}"));
        lt_leech_env(&torrent, &save, "-", &[]);
        assert_same_tree(&payload, &save.join("file.bin"));

        // `health` reads the swarm from it.
        let start = Instant::now();
        loop {
            let h = json(&run_ok(
                Command::new(bin())
                    .args(["health", "--json", "--timeout", "3"])
                    .arg(&torrent),
            ));
            if h["total"]["seeders"].as_u64() >= Some(1) {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{scheme}: {h}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A hybrid torrent (BEP 52) has two swarms, one per info-hash. Found
/// through the tracker alone, by a `btih` or a `btmh` magnet link, each side
/// serves the other in both: ringtorrent announces and accepts peers under
/// both names, and fetches a hybrid's metadata by its v2 name.
#[test]
fn a_hybrid_is_found_and_served_in_both_swarms() {
    let tracker = OurTracker::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let payload = data.join("hybrid.bin");
    write_random(&payload, 3 << 20, 42);
    let url = format!("http://127.0.0.1:{}/announce", tracker.port);
    let torrent = tmp.path().join("hybrid.torrent");
    run_ok(
        rt_create_cmd(&payload, &torrent, "64K")
            .args(["-t", &url])
            .arg("--hybrid"),
    );
    let info = json(&run_ok(&mut lt(&["info", torrent.to_str().unwrap()])));
    let links = [
        format!(
            "magnet:?xt=urn:btih:{}&tr={url}",
            info["info_hash"].as_str().unwrap()
        ),
        format!(
            "magnet:?xt=urn:btmh:1220{}&tr={url}",
            info["info_hash_v2"].as_str().unwrap()
        ),
    ];
    for (i, link) in links.iter().enumerate() {
        let (rt, _) = rt_seed(&torrent, &data, &[]);
        let out = tmp.path().join(format!("lt-{i}"));
        let port = free_port().to_string();
        run_limited_ok(
            &mut lt(&["magnet", link, out.to_str().unwrap(), &port]),
            Duration::from_secs(120),
            &format!("libtorrent fetching {link} from us"),
        );
        assert_same_tree(&payload, &out.join("hybrid.bin"));
        drop(rt);

        let (lt_seed, _) = lt_seed(&torrent, &data);
        let out = tmp.path().join(format!("rt-{i}"));
        let o = run_limited_ok(
            &mut rt_fetch_cmd(Path::new(link), &out, free_port(), &[], &["--json"]),
            Duration::from_secs(120),
            &format!("fetching {link} from libtorrent"),
        );
        assert_eq!(json(&o)["complete"], true);
        assert_same_tree(&payload, &out.join("hybrid.bin"));
        drop(lt_seed);
    }
}

#[test]
fn the_allow_list_is_reloaded_on_sighup() {
    let tmp = tempfile::tempdir().unwrap();
    let list = tmp.path().join("allow");
    let (a, b) = ([0xaa_u8; 20], [0xbb_u8; 20]);
    let hex = |h: &[u8; 20]| h.iter().map(|x| format!("{x:02x}")).collect::<String>();
    std::fs::write(&list, format!("# fleet torrents\n{}\n", hex(&a))).unwrap();
    let tracker = OurTracker::start(&["--allow", list.to_str().unwrap()]);
    let announce = |h: &[u8]| {
        tracker.get(&format!(
            "/announce?info_hash={}&port=7000&left=0",
            quoted(h)
        ))
    };
    let refused = |body: &[u8]| String::from_utf8_lossy(body).contains("failure reason");
    assert!(!refused(&announce(&a)));
    assert!(refused(&announce(&b)));

    std::fs::write(&list, format!("{}\n{}\n", hex(&a), hex(&b))).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(tracker.proc.child.id() as i32, libc::SIGHUP) };
    let start = Instant::now();
    while refused(&announce(&b)) {
        assert!(start.elapsed() < Duration::from_secs(10), "not reloaded");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn forged_and_malformed_packets_get_no_answer_and_do_not_stop_it() {
    let tracker = OurTracker::start(&[]);
    let to = local(tracker.port);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    // A flood of junk, truncated packets and announces with made-up
    // connection ids: none may be answered (no amplification).
    for i in 0..20_000u32 {
        let len = [8, 15, 16, 98, 200, 1400][i as usize % 6];
        let mut p: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        if len >= 16 {
            p[8..12].copy_from_slice(&[0, 0, 0, 1 + (i % 3) as u8]);
        }
        sock.send_to(&p, to).unwrap();
    }
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        sock.recv_from(&mut buf).is_err(),
        "a forged packet was answered"
    );

    // A real client is still served, over both transports.
    let connect = ringtorrent::tracker::udp::connect_packet(42);
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(&connect, to).unwrap();
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(n, 16);
    assert_eq!(&buf[4..8], &42u32.to_be_bytes());
    let body = tracker.get(&format!(
        "/announce?info_hash={}&port=7000&left=0",
        quoted(&[1; 20])
    ));
    assert!(String::from_utf8_lossy(&body).contains("interval"));
}

#[test]
fn the_daemon_runs_one_with_tracker() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut daemon = Proc::spawn(
        Command::new(bin())
            .arg("daemon")
            .arg("--state-dir")
            .arg(tmp.path().join("state"))
            .arg("--download-dir")
            .arg(tmp.path().join("dl"))
            .args(["--rpc", &local(free_port()).to_string()])
            .args(["--listen", &local(free_port()).to_string()])
            .args(["--dht", "false", "--lsd", "false"])
            .args(["--tracker", &local(port).to_string()]),
        "ringtorrent daemon",
    );
    wait_listening(local(port), &mut daemon, Duration::from_secs(30));
    let tracker = OurTracker { proc: daemon, port };
    let body = tracker.get(&format!(
        "/announce?info_hash={}&port=7000&left=0",
        quoted(&[2; 20])
    ));
    assert!(String::from_utf8_lossy(&body).contains("interval"));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(&ringtorrent::tracker::udp::connect_packet(1), local(port))
        .unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(sock.recv_from(&mut buf).unwrap().0, 16);
}

/// What the tracker answers `parts` written on one connection `pause` apart.
fn http_exchange(port: u16, parts: &[&[u8]], pause: Duration) -> String {
    let mut s = TcpStream::connect(local(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(pause);
        }
        // A refused request may be cut short: its answer is what counts.
        if s.write_all(p).is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn http_clients_slow_silent_or_oversized_do_not_hold_up_others() {
    let tracker = OurTracker::start(&[]);
    let port = tracker.port;
    let announce = format!(
        "GET /announce?info_hash={}&port=7000&left=0 HTTP/1.1\r\nHost: t\r\n\r\n",
        quoted(&[2; 20])
    );
    // Connections that never send a byte, open all along.
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(local(port)).unwrap())
        .collect();
    // A request in three pieces, 300 ms apart.
    let (a, b) = announce.as_bytes().split_at(20);
    let (b, c) = b.split_at(30);
    let split = http_exchange(port, &[a, b, c], Duration::from_millis(300));
    assert!(split.starts_with("HTTP/1.1 200 OK\r\n"), "{split}");
    assert!(split.contains("8:intervali"), "{split}");
    // Served at once while the idle ones wait.
    let t = Instant::now();
    let whole = http_exchange(port, &[announce.as_bytes()], Duration::ZERO);
    assert!(whole.contains("8:intervali"), "{whole}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // Refused: headers without end, a method we do not serve, junk.
    let mut huge = b"GET /announce?x=".to_vec();
    huge.resize(20 * 1024, b'a');
    let big = http_exchange(port, &[&huge], Duration::ZERO);
    assert!(big.starts_with("HTTP/1.1 431 "), "{big}");
    let post = http_exchange(
        port,
        &[b"DELETE /announce HTTP/1.1\r\n\r\n"],
        Duration::ZERO,
    );
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    let junk = http_exchange(
        port,
        &[b"\x16\x03\x01\x02\x00\x01\x00\r\n\r\n"],
        Duration::ZERO,
    );
    assert!(junk.starts_with("HTTP/1.1 400 "), "{junk}");
    drop(idle);
}
