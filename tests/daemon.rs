//! `ringtorrent daemon` driven the way its users drive it: Debian's
//! transmission-remote, raw RPC requests (good and bad), restarts and
//! `kill -9`, a watch directory, and a Prometheus parser on `/metrics`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, transmission_remote};
use common::tracker::{FakeTracker, Mode};
use common::*;
use serde_json::{Value, json};

/// The `-l` line of torrent `id`.
fn list_line(port: u16, id: u32) -> String {
    transmission_remote(port, &["-l"])
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&id.to_string()))
        .unwrap_or_default()
        .to_owned()
}

fn wait_list(port: u16, id: u32, what: &str, done: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let line = list_line(port, id);
        if done(&line) {
            return line;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{what}: -l still says {line:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn transmission_remote_drives_the_daemon_against_a_libtorrent_seeder() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = FakeTracker::start(Mode::Good);
    let seed_dir = tmp.path().join("seed");
    let payload = make_multi(&seed_dir, "payload", 3 << 20);
    let torrent = tmp.path().join("p.torrent");
    rt_create_with_trackers(&payload, &torrent, "64K", &[&[tracker.http_url()]]);
    let (_seeder, _) = lt_seed(&torrent, &seed_dir);
    let d = Daemon::start(&tmp.path().join("d"), &[]);
    let port = d.rpc_port;
    let got = d.download_dir.join("payload");

    let out = transmission_remote(port, &["-a", torrent.to_str().unwrap()]);
    assert!(out.contains("success"), "{out}");
    // One file unwanted: only the pieces it shares with others come.
    let files = d.torrents(&["files"])[0]["files"].clone();
    let last = files
        .as_array()
        .unwrap()
        .iter()
        .position(|f| f["name"] == "payload/z/last.dat")
        .expect("z/last.dat listed");
    transmission_remote(port, &["-t", "1", "-G", &last.to_string()]);
    wait_list(port, 1, "download", |l| {
        l.contains("100%") && l.contains("Done")
    });
    let info = transmission_remote(port, &["-t", "1", "-i"]);
    assert!(info.contains("Percent Done: 100%"), "{info}");
    assert!(info.contains("Name: payload"), "{info}");
    let flist = transmission_remote(port, &["-t", "1", "-f"]);
    let row = flist
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{last}:")))
        .unwrap_or_else(|| panic!("no row {last}: {flist}"));
    assert!(row.contains(" No "), "file {last} still wanted: {row}");
    let stats = &d.torrents(&["fileStats", "files"])[0];
    let len = stats["files"][last]["length"].as_u64().unwrap();
    assert!(stats["fileStats"][last]["bytesCompleted"].as_u64().unwrap() < len);
    for f in ["big.bin", "a/odd-1.dat", "a/b/c/deep.dat", "a/b/one-byte"] {
        assert_same_tree(&payload.join(f), &got.join(f));
    }
    let partial = std::fs::read(got.join("z/last.dat")).unwrap_or_default();
    assert_ne!(partial, std::fs::read(payload.join("z/last.dat")).unwrap());

    // Wanted again: the torrent restarts and fetches the rest.
    transmission_remote(port, &["-t", "1", "-g", &last.to_string()]);
    d.wait_for(
        &["percentDone", "status"],
        Duration::from_secs(60),
        "rest",
        |t| t[0]["percentDone"] == 1.0 && t[0]["status"] == 6,
    );
    assert_same_tree(&payload, &got);

    // Limits, per torrent and for the session.
    transmission_remote(port, &["-t", "1", "-d", "100", "-u", "50"]);
    let info = transmission_remote(port, &["-t", "1", "-i"]);
    assert!(info.contains("Download Limit: 100 kB/s"), "{info}");
    assert!(info.contains("Upload Limit: 50 kB/s"), "{info}");
    transmission_remote(port, &["-d", "300"]);
    let si = transmission_remote(port, &["-si"]);
    assert!(si.contains("300 kB/s"), "{si}");

    // Stop, start, verify: a corrupted byte is found and fetched again.
    transmission_remote(port, &["-t", "1", "-S"]);
    wait_list(port, 1, "stop", |l| l.contains("Stopped"));
    let big = got.join("big.bin");
    let mut bytes = std::fs::read(&big).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&big, &bytes).unwrap();
    transmission_remote(port, &["-t", "1", "-v"]);
    let line = wait_list(port, 1, "verify", |l| {
        l.contains("Stopped") && !l.contains("100%")
    });
    assert!(line.contains("Stopped"), "{line}");
    transmission_remote(port, &["-t", "1", "-s"]);
    wait_list(port, 1, "refetch", |l| {
        l.contains("100%") && !l.contains("Stopped")
    });
    assert_same_tree(&payload, &got);

    let trackers = transmission_remote(port, &["-t", "1", "-it"]);
    assert!(
        trackers.contains(&format!("127.0.0.1:{}", tracker.port)),
        "{trackers}"
    );
    assert!(trackers.contains("Got a list of 1 peers"), "{trackers}");
    transmission_remote(port, &["-t", "1", "-pi"]);

    // "all" is an empty list in the request: every file.
    transmission_remote(port, &["-t", "1", "-G", "all"]);
    let wanted = |t: &[serde_json::Value]| t[0]["wanted"].as_array().unwrap().clone();
    let t = d.torrents(&["wanted"]);
    assert!(wanted(&t).iter().all(|w| w == false), "{t:?}");
    transmission_remote(port, &["-t", "1", "-g", "all"]);
    let t = d.torrents(&["wanted"]);
    assert!(wanted(&t).iter().all(|w| w == true), "{t:?}");

    transmission_remote(port, &["-t", "1", "--remove-and-delete"]);
    let start = Instant::now();
    while got.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "data not deleted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.torrents(&["id"]).is_empty());
    assert!(
        payload.join("big.bin").exists(),
        "the seeder's data is not ours to delete"
    );
}

/// Sends raw HTTP and returns (status, headers, body).
fn raw(port: u16, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(local(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    // A server that answers before reading everything may reset after.
    let _ = s.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// Reads a response's head, byte by byte, up to the blank line.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("a whole response head");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn post(port: u16, host: &str, id: &str, body: &str) -> (u16, String, String) {
    raw(
        port,
        &format!(
            "POST /transmission/rpc HTTP/1.1\r\nHost: {host}\r\nX-Transmission-Session-Id: {id}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn bad_rpc_requests_get_transmissions_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::start(tmp.path(), &[]);
    let port = d.rpc_port;
    let host = format!("127.0.0.1:{port}");
    // The session-id handshake.
    let (status, head, _) = post(port, &host, "", "{}");
    assert_eq!(status, 409);
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-transmission-session-id: "))
        .expect("409 carries the id")
        .trim()
        .to_owned();
    // A client resending on the same connection after the 409 is answered,
    // even when its first body was large (it is read, not left in the way).
    let big = format!(
        r#"{{"method":"session-get","arguments":{{"pad":"{}"}}}}"#,
        "x".repeat(300_000)
    );
    let mut s = TcpStream::connect(local(port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    for (sid, want) in [("", "409"), (id.as_str(), "200")] {
        let req = format!(
            "POST /transmission/rpc HTTP/1.1\r\nHost: {host}\r\nX-Transmission-Session-Id: {sid}\r\nContent-Length: {}\r\n\r\n{big}",
            big.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let head = read_head(&mut s);
        assert!(head.starts_with(&format!("HTTP/1.1 {want}")), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no length: {head}"));
        let mut body = vec![0; len];
        s.read_exact(&mut body).unwrap();
    }

    let result = |body: &str| {
        let (status, _, text) = post(port, &host, &id, body);
        assert_eq!(status, 200, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        v["result"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        result(r#"{"method":"no-such-method"}"#),
        "method name not recognized"
    );
    assert_eq!(result("{not json"), "no method name");
    assert_eq!(result(r#"{"arguments":{}}"#), "no method name");
    assert_eq!(
        result(r#"{"method":"torrent-get","arguments":{}}"#),
        "no fields specified"
    );
    assert_eq!(
        result(r#"{"method":"torrent-add","arguments":{"metainfo":"bm90IGEgdG9ycmVudA=="}}"#),
        "invalid or corrupt torrent file"
    );
    assert_eq!(
        result(r#"{"method":"torrent-add","arguments":{"filename":"/dev/zero"}}"#),
        "invalid or corrupt torrent file"
    );
    assert_eq!(
        result(r#"{"method":"free-space","arguments":{}}"#),
        "directory path argument is missing"
    );
    // Wrong types are ignored, as Transmission ignores them.
    assert_eq!(
        result(
            r#"{"method":"session-set","arguments":{"speed-limit-down":"fast","alt-speed-enabled":[]}}"#
        ),
        "success"
    );
    assert_eq!(
        result(r#"{"method":"torrent-get","arguments":{"fields":["id",7,null],"ids":{"x":1}}}"#),
        "success"
    );
    // A download directory outside the allowed roots.
    let v: Value = serde_json::from_str(
        &post(
            port,
            &host,
            &id,
            r#"{"method":"session-set","arguments":{"download-dir":"/etc"}}"#,
        )
        .2,
    )
    .unwrap();
    assert!(v["result"].as_str().unwrap().contains("not under"), "{v}");
    // The tag comes back.
    let (_, _, text) = post(port, &host, &id, r#"{"method":"session-stats","tag":42}"#);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["tag"], 42);

    // DNS rebinding: a name that is not ours is refused.
    let (status, _, _) = post(port, "evil.example.com", &id, r#"{"method":"session-get"}"#);
    assert_eq!(status, 421);
    let (status, _, _) = post(
        port,
        &format!("localhost:{port}"),
        &id,
        r#"{"method":"session-get"}"#,
    );
    assert_eq!(status, 200);
    // A body larger than the cap is refused before it is read.
    let (status, _, _) = raw(
        port,
        &format!(
            "POST /transmission/rpc HTTP/1.1\r\nHost: {host}\r\nX-Transmission-Session-Id: {id}\r\nContent-Length: 200000000\r\nConnection: close\r\n\r\n{{"
        ),
    );
    assert_eq!(status, 413);
    // Idle connections hold nobody up.
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(local(port)).unwrap())
        .collect();
    let start = Instant::now();
    assert_eq!(result(r#"{"method":"session-get"}"#), "success");
    assert!(start.elapsed() < Duration::from_secs(2));
    drop(idle);
    // The web UI and the metrics are served.
    let (status, _, page) = raw(
        port,
        &format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200);
    assert!(page.contains("ringtorrent"));
}

#[test]
fn credentials_are_required_when_set_and_an_open_rpc_needs_them() {
    let tmp = tempfile::tempdir().unwrap();
    // No password, not on loopback: refused at start.
    let out = Command::new(bin())
        .args(["daemon", "--rpc", "0.0.0.0:0", "--state-dir"])
        .arg(tmp.path().join("s"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without credentials"), "{err}");

    let d = Daemon::start(
        &tmp.path().join("d"),
        &["--rpc-username", "admin", "--rpc-password", "s3cret"],
    );
    let port = d.rpc_port;
    // Our client sends the right ones.
    d.ok("session-get", json!({}));
    let (status, head, _) = post(port, "anything.example", "", "{}");
    assert_eq!(status, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic")
    );
    let out = Command::new("transmission-remote")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--auth", "admin:s3cret", "-l"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn twenty_torrents_survive_sigterm_and_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = FakeTracker::start(Mode::Good);
    let seed_dir = tmp.path().join("seed");
    let mut torrents = Vec::new();
    for i in 0..20 {
        let name = format!("t{i:02}.bin");
        write_random(&seed_dir.join(&name), (2 << 20) + i * 4099, 100 + i as u64);
        let t = tmp.path().join(format!("{name}.torrent"));
        rt_create_with_trackers(&seed_dir.join(&name), &t, "32K", &[&[tracker.http_url()]]);
        torrents.push(t);
    }
    // One seeder for all twenty, slow enough to stop it mid-way.
    let args: Vec<&str> = torrents.iter().map(|t| t.to_str().unwrap()).collect();
    let mut extra = vec!["--upload-limit", "3M"];
    extra.extend(args[1..].iter().copied());
    let (_seeder, _) = rt_seed(&torrents[0], &seed_dir, &extra);
    let root = tmp.path().join("d");
    let mut d = Daemon::start(&root, &[]);
    for t in &torrents {
        d.add(t, json!({}));
    }
    let fields = ["hashString", "pieces", "percentDone", "status", "id"];
    let progress = |t: &[Value]| {
        t.iter()
            .map(|x| x["percentDone"].as_f64().unwrap())
            .sum::<f64>()
            / t.len() as f64
    };
    // Halfway through the first third: SIGTERM must stop it within 3 s.
    let before = d.wait_for(&fields, Duration::from_secs(120), "a quarter", |t| {
        t.len() == 20 && progress(t) >= 0.25
    });
    let (status, took) = d.proc.terminate(Duration::from_secs(3));
    assert!(status.success(), "exit {status} after SIGTERM");
    assert!(took < Duration::from_secs(3), "SIGTERM took {took:?}");

    let check_kept = |d: &Daemon, before: &[Value]| {
        let after = d.torrents(&fields);
        assert_eq!(after.len(), 20, "every torrent is back");
        for b in before {
            let a = after
                .iter()
                .find(|a| a["hashString"] == b["hashString"])
                .unwrap_or_else(|| panic!("{} is gone", b["hashString"]));
            let had = data_encoding::BASE64
                .decode(b["pieces"].as_str().unwrap().as_bytes())
                .unwrap();
            let has = data_encoding::BASE64
                .decode(a["pieces"].as_str().unwrap().as_bytes())
                .unwrap();
            for (x, y) in had.iter().zip(&has) {
                if x & y != *x {
                    let files: Vec<_> = std::fs::read_dir(d.state_dir.join("resume"))
                        .unwrap()
                        .map(|e| e.unwrap().file_name())
                        .collect();
                    panic!(
                        "a verified piece was lost: {b} -> {a}; {files:?}\n{}",
                        d.log_text()
                    );
                }
            }
        }
    };
    let mut d = Daemon::start_at(&root, d.rpc_port, &[]);
    check_kept(&d, &before);

    // Now without warning.
    let before = d.wait_for(&fields, Duration::from_secs(120), "two thirds", |t| {
        progress(t) >= 0.6 && progress(t) < 1.0
    });
    // The journal write follows a piece's publication by microseconds.
    std::thread::sleep(Duration::from_millis(100));
    d.kill9();
    let d = Daemon::start_at(&root, d.rpc_port, &[]);
    check_kept(&d, &before);
    d.wait_for(&fields, Duration::from_secs(120), "all done", |t| {
        t.iter().all(|x| x["percentDone"] == 1.0)
    });
    for t in &torrents {
        let name = t.file_stem().unwrap();
        assert_same_tree(&seed_dir.join(name), &d.download_dir.join(name));
    }

    // A clean restart of finished torrents checks nothing: sizes and
    // mtimes match their resume state.
    let mut d = d;
    d.proc.terminate(Duration::from_secs(3));
    let log_before = d.log_text().len();
    let mut d = Daemon::start_at(&root, d.rpc_port, &[]);
    d.wait_for(&["status"], Duration::from_secs(30), "seeding", |t| {
        t.len() == 20 && t.iter().all(|x| x["status"] == 6)
    });
    d.proc.terminate(Duration::from_secs(3));
    let log = d.log_text()[log_before..].to_owned();
    assert_eq!(log.matches("from resume state").count(), 20, "{log}");
    assert!(!log.contains("pieces present (checked"), "{log}");
}

#[test]
fn a_torrent_dropped_in_the_watch_dir_is_added() {
    let tmp = tempfile::tempdir().unwrap();
    let watch = tmp.path().join("watch");
    std::fs::create_dir_all(&watch).unwrap();
    write_random(&tmp.path().join("src/w.bin"), 100_000, 9);
    rt_create(
        &tmp.path().join("src/w.bin"),
        &watch.join("w.torrent"),
        "16K",
    );
    std::fs::write(watch.join("junk.torrent"), b"not a torrent").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(watch.join("junk.torrent"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let d = Daemon::start(
        &tmp.path().join("d"),
        &[
            "--watch-dir",
            watch.to_str().unwrap(),
            "--start-added-torrents",
            "false",
        ],
    );
    let t = d.wait_for(
        &["name", "status"],
        Duration::from_secs(20),
        "watched",
        |t| !t.is_empty(),
    );
    assert_eq!(t[0]["name"], "w.bin");
    assert_eq!(
        t[0]["status"], 0,
        "start-added-torrents false: added stopped"
    );
    let start = Instant::now();
    while !watch.join("junk.torrent.invalid").exists() || !watch.join("w.torrent.added").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "watch dir files not renamed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_random(&src.join("m.bin"), 1 << 20, 3);
    let torrent = tmp.path().join("m.torrent");
    rt_create(&src.join("m.bin"), &torrent, "64K");
    let d = Daemon::start(&tmp.path().join("d"), &[]);
    std::fs::copy(src.join("m.bin"), d.download_dir.join("m.bin")).unwrap();
    d.add(&torrent, json!({}));
    d.wait_for(&["status"], Duration::from_secs(30), "seeding", |t| {
        t[0]["status"] == 6
    });
    // A leecher takes the whole torrent from the daemon.
    let port = d.ok("session-get", json!({}))["peer-port"]
        .as_u64()
        .unwrap() as u16;
    let out_dir = tmp.path().join("leech");
    let out = run_limited(
        &mut rt_fetch_cmd(&torrent, &out_dir, 0, &[local(port)], &[]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_tree(&src.join("m.bin"), &out_dir.join("m.bin"));
    // Counters reach the daemon within a couple of seconds.
    let url = format!("http://127.0.0.1:{}/metrics", d.rpc_port);
    let start = Instant::now();
    let (body, scrape) = loop {
        let body = ureq::get(&url).call().unwrap().into_string().unwrap();
        let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
            .unwrap_or_else(|e| panic!("{e}: {body}"));
        let uploaded = scrape.samples.iter().any(|s| {
            s.metric == "ringtorrent_torrent_bytes_total"
                && s.labels.get("direction") == Some("up")
                && matches!(s.value, prometheus_parse::Value::Counter(v) if v >= f64::from(1 << 20))
        });
        if uploaded || start.elapsed() > Duration::from_secs(10) {
            break (body, scrape);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let sample = |name: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("{name} {label:?} missing: {body}"))
            .value
            .clone()
    };
    use prometheus_parse::Value as V;
    assert!(matches!(
        sample("ringtorrent_torrents", Some(("status", "seeding"))),
        V::Gauge(v) if v == 1.0
    ));
    assert!(matches!(
        sample("ringtorrent_torrent_pieces", Some(("state", "total"))),
        V::Gauge(v) if v == 16.0
    ));
    let up = sample("ringtorrent_torrent_bytes_total", Some(("direction", "up")));
    assert!(
        matches!(up, V::Counter(v) if v >= f64::from(1 << 20)),
        "{up:?}: {body}"
    );
    // The uploads were read from disk: the disk latency summary has them.
    match sample("ringtorrent_disk_latency_seconds", None) {
        V::Summary(q) => assert!(!q.is_empty()),
        other => panic!("not a summary: {other:?}"),
    }
    assert!(matches!(sample("ringtorrent_uptime_seconds", None), V::Gauge(v) if v > 0.0));
}

#[test]
fn systemd_hears_ready_reloading_and_stopping_and_sighup_rereads_the_config() {
    use std::os::unix::net::UnixDatagram;
    let tmp = tempfile::tempdir().unwrap();
    let sock_path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification from the daemon");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let config = tmp.path().join("ringtorrent.toml");
    std::fs::write(&config, "speed-limit-down = 100000\n").unwrap();
    let mut d = Daemon::start_with_env(
        &tmp.path().join("d"),
        free_port(),
        &["--config", config.to_str().unwrap()],
        &[("NOTIFY_SOCKET", &sock_path)],
    );
    assert!(next().contains("READY=1"));
    let limit = |d: &Daemon| {
        let s = d.ok("session-get", json!({}));
        (
            s["speed-limit-down"].clone(),
            s["speed-limit-down-enabled"].clone(),
        )
    };
    assert_eq!(limit(&d), (json!(100), json!(true)));
    let hup = |d: &Daemon| {
        // SAFETY: kill(2) on our own, not yet reaped, child.
        unsafe { libc::kill(d.proc.child.id() as i32, libc::SIGHUP) };
    };

    // A file that must not be used is refused and the running settings stay.
    std::fs::write(&config, "speed-limit-down = 300000\nrpc-password = \"x\"\n").unwrap();
    hup(&d);
    assert!(next().contains("RELOADING=1"));
    assert!(next().contains("READY=1"));
    assert_eq!(limit(&d), (json!(100), json!(true)));
    assert!(d.log_text().contains("not reloaded"), "{}", d.log_text());

    std::fs::write(&config, "speed-limit-down = 300000\n").unwrap();
    hup(&d);
    assert!(next().contains("RELOADING=1"));
    assert!(next().contains("READY=1"));
    assert_eq!(limit(&d), (json!(300), json!(true)));

    let (status, _) = d.proc.terminate(Duration::from_secs(3));
    assert!(status.success());
    assert!(next().contains("STOPPING=1"));
}
