//! Web seeds (BEP 19) against a real web server: Debian's nginx, started
//! by each test on 127.0.0.1. A fetch from the web seed alone (single- and
//! multi-file), from a web seed and a libtorrent seeder together, and from
//! servers that serve wrong bytes or refuse connections (the fetch
//! completes from the peer; the server is counted and dropped). Over HTTPS
//! too: a certificate from a CA of the test's own, trusted through
//! `SSL_CERT_FILE` as an administrator's CA would be through the system
//! store, and refused when not trusted.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(120);

/// An nginx serving `root` on a loopback port until dropped.
struct Nginx {
    port: u16,
    scheme: &'static str,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

/// A certificate authority and a certificate it signed for `localhost`
/// and 127.0.0.1, made with the openssl tool.
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Certs {
    fn make(dir: &Path) -> Certs {
        std::fs::create_dir_all(dir).unwrap();
        let f = |n: &str| dir.join(n);
        let openssl = |args: &[&str]| {
            run_ok(Command::new("openssl").args(args).current_dir(dir));
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=ringtorrent test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            f("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ]);
        Certs {
            ca: f("ca.pem"),
            cert: f("server.pem"),
            key: f("server.key"),
        }
    }
}

impl Nginx {
    fn start(root: &Path) -> Nginx {
        Self::start_with(root, None)
    }

    /// Serves HTTPS with `certs` instead of HTTP.
    fn start_tls(root: &Path, certs: &Certs) -> Nginx {
        Self::start_with(root, Some(certs))
    }

    fn start_with(root: &Path, tls: Option<&Certs>) -> Nginx {
        let bin = Path::new("/usr/sbin/nginx");
        assert!(
            bin.exists(),
            "nginx is not installed: run scripts/setup (it installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let p = dir.path().display();
        let listen = match tls {
            None => format!("listen 127.0.0.1:{port};"),
            Some(c) => format!(
                "listen 127.0.0.1:{port} ssl; ssl_certificate {}; ssl_certificate_key {};",
                c.cert.display(),
                c.key.display()
            ),
        };
        let conf = format!(
            "daemon off; master_process off; worker_processes 1;
             pid {p}/nginx.pid; error_log {p}/error.log;
             events {{ worker_connections 256; }}
             http {{
               access_log off;
               client_body_temp_path {p}/body; proxy_temp_path {p}/proxy;
               fastcgi_temp_path {p}/fastcgi; uwsgi_temp_path {p}/uwsgi;
               scgi_temp_path {p}/scgi;
               sendfile on; keepalive_requests 100000;
               server {{ {listen} root {}; }}
             }}",
            root.display()
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut proc = Proc::spawn_logged(
            Command::new(bin)
                .arg("-c")
                .arg(&conf_path)
                .arg("-p")
                .arg(dir.path()),
            "nginx",
            &dir.path().join("nginx.out"),
        );
        wait_listening(local(port), &mut proc, Duration::from_secs(20));
        Nginx {
            port,
            scheme: if tls.is_some() { "https" } else { "http" },
            _proc: proc,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}/{path}", self.scheme, self.port)
    }
}

fn create(payload: &Path, torrent: &Path, piece: &str, web_seeds: &[String]) {
    let mut cmd = rt_create_cmd(payload, torrent, piece);
    for u in web_seeds {
        cmd.args(["--web-seed", u]);
    }
    run_ok(&mut cmd);
}

/// `fetch --json` of `torrent` into `out` from `peers` (and the torrent's
/// web seeds); the summary.
fn fetch(torrent: &Path, out: &Path, peers: &[std::net::SocketAddr]) -> serde_json::Value {
    fetch_with(torrent, out, peers, &[])
}

fn fetch_with(
    torrent: &Path,
    out: &Path,
    peers: &[std::net::SocketAddr],
    extra: &[&str],
) -> serde_json::Value {
    let mut cmd = rt_fetch_cmd(
        torrent,
        out,
        free_port(),
        peers,
        &["--json", "--timeout", "60", "--no-dht", "--no-lsd"],
    );
    cmd.args(extra);
    json(&run_limited_ok(&mut cmd, LIMIT, "fetch"))
}

fn pieces(torrent: &Path) -> u64 {
    json(&run_ok(
        Command::new(bin()).args(["info", "--json"]).arg(torrent),
    ))["piece_count"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_web_seed_alone_serves_multi_and_single_file_torrents() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    let tree = make_multi(&www, "tree", 3 << 20);
    let nginx = Nginx::start(&www);

    // Multi-file: the URL names the directory holding the torrent's.
    let torrent = tmp.path().join("tree.torrent");
    create(&tree, &torrent, "64K", &[nginx.url("")]);
    let out = tmp.path().join("out");
    let s = fetch(&torrent, &out, &[]);
    assert_same_tree(&tree, &out.join("tree"));
    assert_eq!(
        s["web_seeds"]["pieces"].as_u64(),
        Some(pieces(&torrent)),
        "{s}"
    );
    assert_eq!(s["web_seeds"]["dropped"], 0, "{s}");

    // Single file: the URL names the file itself (pieces of 16 KiB, so
    // many pieces go in one request).
    let big = tree.join("big.bin");
    let single = tmp.path().join("big.torrent");
    create(&big, &single, "16K", &[nginx.url("tree/big.bin")]);
    let out = tmp.path().join("out-single");
    let s = fetch(&single, &out, &[]);
    assert!(std::fs::read(out.join("big.bin")).unwrap() == std::fs::read(&big).unwrap());
    assert_eq!(s["web_seeds"]["downloaded"].as_u64(), Some(3 << 20), "{s}");
}

#[test]
fn a_web_seed_over_https_with_a_trusted_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    let tree = make_multi(&www, "tree", 3 << 20);
    let certs = Certs::make(&tmp.path().join("certs"));
    let nginx = Nginx::start_tls(&www, &certs);
    let torrent = tmp.path().join("tree.torrent");
    create(&tree, &torrent, "64K", &[nginx.url("")]);

    // A fetch from the web seed alone, trusting the certificates in `ca`.
    let fetch = |name: &str, stall: &str, ca: &Path| {
        let mut cmd = rt_fetch_cmd(
            &torrent,
            &tmp.path().join(name),
            free_port(),
            &[],
            &["--json", "--timeout", stall, "--no-dht", "--no-lsd"],
        );
        cmd.env("SSL_CERT_FILE", ca);
        run_limited(&mut cmd, LIMIT)
    };

    // Trusted (as a CA in the system store would be): every piece comes
    // from the web seed.
    let o = fetch("out", "60", &certs.ca);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = json(&o);
    assert_same_tree(&tree, &tmp.path().join("out/tree"));
    assert_eq!(
        s["web_seeds"]["pieces"].as_u64(),
        Some(pieces(&torrent)),
        "{s}"
    );

    // Not trusted (only the server's own certificate is, not its CA):
    // every request fails and the fetch stalls out with an error saying
    // so, instead of hanging.
    let o = fetch("untrusted", "5", &certs.cert);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "an untrusted server was used: {err}");
    assert!(err.contains("nothing received"), "{err}");
    assert!(!err.contains(" 0 failed web seed requests"), "{err}");
}

/// A web seed and a libtorrent seeder together fill one download.
#[test]
fn a_web_seed_and_a_libtorrent_seeder_together() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    let tree = make_multi(&www, "tree", 24 << 20);
    let nginx = Nginx::start(&www);
    let torrent = tmp.path().join("tree.torrent");
    create(&tree, &torrent, "256K", &[nginx.url("")]);
    let (_lt, lt) = lt_seed(&torrent, &www);
    let out = tmp.path().join("out");
    let s = fetch(&torrent, &out, &[lt]);
    assert_same_tree(&tree, &out.join("tree"));
    assert!(s["web_seeds"]["pieces"].as_u64().unwrap() > 0, "{s}");
}

/// A server with wrong bytes is counted and dropped, and the fetch
/// completes from the peer.
#[test]
fn a_web_seed_with_wrong_bytes_is_dropped_and_the_peer_completes_the_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    let tree = make_multi(&www, "tree", 8 << 20);
    let bad_www = tmp.path().join("bad");
    let bad_tree = make_multi(&bad_www, "tree", 8 << 20);
    // Same sizes, other bytes.
    write_random(&bad_tree.join("big.bin"), 8 << 20, 99);
    let bad = Nginx::start(&bad_www);
    let torrent = tmp.path().join("tree.torrent");
    create(&tree, &torrent, "256K", &[bad.url("")]);
    let (_lt, lt) = lt_seed(&torrent, &www);
    let out: PathBuf = tmp.path().join("out");
    let s = fetch(&torrent, &out, &[lt]);
    assert_same_tree(&tree, &out.join("tree"));
    let w = &s["web_seeds"];
    assert!(w["bad_pieces"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(w["dropped"], 1, "{s}");
}

/// A server that refuses connections is counted (and backed off from);
/// a good one beside it serves the whole fetch.
#[test]
fn a_dead_web_seed_is_counted_and_a_good_one_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    let tree = make_multi(&www, "tree", 32 << 20);
    let good = Nginx::start(&www);
    let dead = format!("http://127.0.0.1:{}/", free_port());
    let torrent = tmp.path().join("tree.torrent");
    create(&tree, &torrent, "64K", &[dead, good.url("")]);
    let out: PathBuf = tmp.path().join("out");
    let s = fetch(&torrent, &out, &[]);
    assert_same_tree(&tree, &out.join("tree"));
    let w = &s["web_seeds"];
    assert!(w["errors"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(w["pieces"].as_u64(), Some(pieces(&torrent)), "{s}");
}

/// A server that answers ranges with whole files (Python's http.server)
/// is dropped at once; the peer completes the fetch.
#[test]
fn a_server_without_ranges_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    let tree = make_multi(&www, "tree", 4 << 20);
    let port = free_port();
    let mut server = Proc::spawn_logged(
        Command::new("/usr/bin/python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(&www),
        "http.server",
        &tmp.path().join("http.log"),
    );
    wait_listening(local(port), &mut server, Duration::from_secs(20));
    let torrent = tmp.path().join("tree.torrent");
    create(
        &tree,
        &torrent,
        "64K",
        &[format!("http://127.0.0.1:{port}/")],
    );
    let (_lt, lt) = lt_seed(&torrent, &www);
    let s = fetch(&torrent, &tmp.path().join("out"), &[lt]);
    drop(server);
    assert_same_tree(&tree, &tmp.path().join("out/tree"));
    assert_eq!(s["web_seeds"]["dropped"], 1, "{s}");
}

/// `fetch --web-seed` adds a server to a torrent that names none, and
/// `--no-web-seeds` leaves out the torrent's own.
#[test]
fn web_seeds_given_on_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    let tree = make_multi(&www, "tree", 2 << 20);
    let nginx = Nginx::start(&www);
    let plain = tmp.path().join("plain.torrent");
    create(&tree, &plain, "64K", &[]);
    let url = nginx.url("");
    let s = fetch_with(&plain, &tmp.path().join("a"), &[], &["--web-seed", &url]);
    assert_same_tree(&tree, &tmp.path().join("a/tree"));
    assert_eq!(
        s["web_seeds"]["pieces"].as_u64(),
        Some(pieces(&plain)),
        "{s}"
    );

    let dead = format!("http://127.0.0.1:{}/", free_port());
    let seeded = tmp.path().join("seeded.torrent");
    create(&tree, &seeded, "64K", &[dead]);
    let s = fetch_with(
        &seeded,
        &tmp.path().join("b"),
        &[],
        &["--no-web-seeds", "--web-seed", &url],
    );
    assert_same_tree(&tree, &tmp.path().join("b/tree"));
    assert_eq!(s["web_seeds"]["errors"], 0, "{s}");
}
