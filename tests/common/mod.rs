//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod browser;
pub mod daemon;
pub mod fake_peer;
pub mod netns;
pub mod single_file;
pub mod tracker;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ringtorrent"))
}

/// Debian's Python, which has the `libtorrent` module (pyenv's does not).
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// The libtorrent helper script; panics with the fix if libtorrent is missing,
/// so a machine without it fails loudly instead of skipping interop.
pub fn lt_tool() -> Vec<String> {
    let ok = Command::new(SYSTEM_PYTHON)
        .args(["-c", "import libtorrent"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "python3-libtorrent is not installed for {SYSTEM_PYTHON}: run scripts/test (it installs it)"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/lt_tool.py");
    vec![SYSTEM_PYTHON.into(), script.to_string_lossy().into_owned()]
}

/// Runs a command and returns its output, panicking with its stderr on failure.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// A torrent's info-hash in hex, as `ringtorrent info` gives it.
pub fn info_hash(torrent: &Path) -> String {
    let o = run_ok(Command::new(bin()).arg("info").arg(torrent).arg("--json"));
    json(&o)["info_hash"].as_str().unwrap().to_owned()
}

/// A torrent's info-hash as the handshake carries it.
pub fn info_hash_bytes(torrent: &Path) -> [u8; 20] {
    let hash = info_hash(torrent);
    let mut raw = [0u8; 20];
    for (i, b) in raw.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hash[2 * i..2 * i + 2], 16).unwrap();
    }
    raw
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn write_random(path: &Path, len: usize, seed: u64) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, random_bytes(len, seed)).unwrap();
}

/// A multi-file payload: odd sizes, a zero-length file, nested directories.
/// Returns the payload directory (`parent/name`).
pub fn make_multi(parent: &Path, name: &str, big: usize) -> PathBuf {
    let root = parent.join(name);
    write_random(&root.join("big.bin"), big, 1);
    write_random(&root.join("a/odd-1.dat"), 100_003, 2);
    write_random(&root.join("a/b/c/deep.dat"), 16 * 1024 + 1, 3);
    write_random(&root.join("a/b/one-byte"), 1, 4);
    write_random(&root.join("z/last.dat"), 777_777, 5);
    std::fs::write(root.join("a/empty"), b"").unwrap();
    root
}

/// Every file under `a` has the same bytes under `b`, and `b` has no extra
/// regular files.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let ma = std::fs::metadata(a).unwrap_or_else(|e| panic!("{}: {e}", a.display()));
    if ma.is_file() {
        let (x, y) = (
            std::fs::read(a).unwrap(),
            std::fs::read(b).unwrap_or_else(|e| panic!("{}: {e}", b.display())),
        );
        assert!(
            x == y,
            "{} and {} differ ({} vs {} bytes)",
            a.display(),
            b.display(),
            x.len(),
            y.len()
        );
        return;
    }
    let names = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(a),
        names(b),
        "directory listings of {} and {} differ",
        a.display(),
        b.display()
    );
    for n in names(a) {
        assert_same_tree(&a.join(&n), &b.join(&n));
    }
}

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A child process that is killed when the test lets go of it, so a failing
/// test never leaves a seeder running.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, name: &str) -> Proc {
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.to_owned(),
        }
    }

    /// Like `spawn`, with stdout and stderr appended to `log` (a pipe that
    /// nobody reads would fill and stall a long-running process).
    pub fn spawn_logged(cmd: &mut Command, name: &str, log: &Path) -> Proc {
        let file = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file())
            .stderr(file())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.to_owned(),
        }
    }

    /// Sends SIGTERM and waits (up to `limit`); returns the exit status and
    /// how long the exit took.
    pub fn terminate(&mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let start = Instant::now();
        // SAFETY: kill(2) on our own, not yet reaped, child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st, start.elapsed());
            }
            assert!(
                start.elapsed() < limit,
                "{} did not exit within {limit:?} of SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops a `--json` process with SIGTERM, checks it exited 0 and returns
    /// its summary.
    pub fn terminate_json(&mut self) -> serde_json::Value {
        let (st, _) = self.terminate(Duration::from_secs(5));
        if !st.success() {
            let err = self.stderr();
            panic!("{} failed ({st}): {err}", self.name);
        }
        let mut text = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut text).unwrap();
        }
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    pub fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits until something accepts connections at `addr`.
pub fn wait_listening(addr: SocketAddr, p: &mut Proc, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return;
        }
        if let Some(st) = p.child.try_wait().unwrap() {
            let err = p.stderr();
            panic!("{} exited ({st}) before listening: {err}", p.name);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} is not listening on {addr} after {limit:?}", p.name);
}

/// Resume state beside the payload directory (inside the test's temp dir),
/// never in the user's home.
pub fn state_dir(payload_dir: &Path) -> PathBuf {
    payload_dir
        .parent()
        .unwrap_or(payload_dir)
        .join("resume-state")
}

/// Starts `ringtorrent seed` on a free port and waits until it listens.
pub fn rt_seed(torrent: &Path, data_dir: &Path, extra: &[&str]) -> (Proc, SocketAddr) {
    rt_seed_many(&[torrent.to_path_buf()], data_dir, extra)
}

/// [`rt_seed`] of several torrents in one process.
pub fn rt_seed_many(torrents: &[PathBuf], data_dir: &Path, extra: &[&str]) -> (Proc, SocketAddr) {
    let addr = local(free_port());
    let mut p = rt_seed_at(torrents, data_dir, &addr.to_string(), extra);
    wait_listening(addr, &mut p, Duration::from_secs(60));
    (p, addr)
}

/// `ringtorrent seed` of `torrents` with `--listen listen`, not waited for.
pub fn rt_seed_at(torrents: &[PathBuf], data_dir: &Path, listen: &str, extra: &[&str]) -> Proc {
    Proc::spawn(
        Command::new(bin())
            .arg("seed")
            .args(torrents)
            .arg("--data-dir")
            .arg(data_dir)
            .env("RINGTORRENT_STATE_DIR", state_dir(data_dir))
            .args(["--listen", listen])
            .args(extra),
        "ringtorrent seed",
    )
}

/// The command line of a `ringtorrent fetch` from `peers`.
pub fn rt_fetch_cmd(
    torrent: &Path,
    out_dir: &Path,
    port: u16,
    peers: &[SocketAddr],
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("fetch")
        .arg(torrent)
        .arg("--out-dir")
        .arg(out_dir)
        .env("RINGTORRENT_STATE_DIR", state_dir(out_dir))
        .args(["--listen", &local(port).to_string()])
        .args(extra);
    for p in peers {
        cmd.args(["--peer", &p.to_string()]);
    }
    cmd
}

/// [`run_limited`], panicking with `what` and the command's stderr unless
/// it succeeds.
pub fn run_limited_ok(cmd: &mut Command, limit: Duration, what: &str) -> Output {
    let o = run_limited(cmd, limit);
    assert!(
        o.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Runs a command to completion within `limit`, killing it if it overruns.
pub fn run_limited(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let watchdog = std::thread::spawn(move || {
        let start = Instant::now();
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            if start.elapsed() > limit {
                // SAFETY: kill(2) on the child's pid; at worst it already exited.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    });
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let killed = watchdog.join().unwrap();
    assert!(
        !killed,
        "{cmd:?} ran longer than {limit:?}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Creates a torrent of `payload` with `ringtorrent create`.
pub fn rt_create(payload: &Path, torrent: &Path, piece: &str) {
    run_ok(
        Command::new(bin())
            .arg("create")
            .arg(payload)
            .arg("-o")
            .arg(torrent)
            .args(["--piece-size", piece, "--force", "--no-date"]),
    );
}

/// The command line of `ringtorrent create` with no date (reproducible).
pub fn rt_create_cmd(payload: &Path, torrent: &Path, piece: &str) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("create").arg(payload).arg("-o").arg(torrent).args([
        "--piece-size",
        piece,
        "--force",
        "--no-date",
    ]);
    cmd
}

/// Creates a torrent announcing to `tiers` (each a list of URLs).
pub fn rt_create_with_trackers(payload: &Path, torrent: &Path, piece: &str, tiers: &[&[String]]) {
    let mut cmd = rt_create_cmd(payload, torrent, piece);
    for tier in tiers {
        cmd.args(["-t", &tier.join(",")]);
    }
    run_ok(&mut cmd);
}

/// `lt_tool.py` with `args`.
pub fn lt(args: &[&str]) -> Command {
    let tool = lt_tool();
    let mut cmd = Command::new(&tool[0]);
    cmd.arg(&tool[1]).args(args);
    cmd
}

/// Starts a libtorrent seeder and waits for it to report that it seeds.
pub fn lt_seed(torrent: &std::path::Path, save: &std::path::Path) -> (Proc, std::net::SocketAddr) {
    let (p, port) = lt_seed_env(torrent, save, &[]);
    (p, local(port))
}

/// [`lt_seed`] with `lt_tool.py` settings from the environment
/// (`LT_HOST`, `LT_ENCRYPTION`); returns its port.
pub fn lt_seed_env(torrent: &Path, save: &Path, env: &[(&str, &str)]) -> (Proc, u16) {
    let port = free_port();
    let args = [
        "seed",
        torrent.to_str().unwrap(),
        save.to_str().unwrap(),
        &port.to_string(),
    ];
    let mut cmd = lt(&args);
    cmd.envs(env.iter().copied());
    (lt_ready_cmd(&mut cmd, "libtorrent seed"), port)
}

/// A libtorrent leecher fetching `torrent` from `peer` into `save`, with
/// `lt_tool.py` settings from the environment; panics unless it completes.
pub fn lt_leech_env(torrent: &Path, save: &Path, peer: &str, env: &[(&str, &str)]) {
    let port = free_port().to_string();
    let args = [
        "leech",
        torrent.to_str().unwrap(),
        save.to_str().unwrap(),
        &port,
        peer,
    ];
    let mut cmd = lt(&args);
    cmd.envs(env.iter().copied());
    run_limited_ok(&mut cmd, Duration::from_secs(120), "libtorrent leech");
}

/// A libtorrent session in `torrent`'s swarm connected to `peers`, at
/// most `up` and `down` bytes/s (0: unlimited), once connected.
pub fn lt_join(
    torrent: &std::path::Path,
    save: &std::path::Path,
    up: u64,
    down: u64,
    peers: &[std::net::SocketAddr],
) -> (Proc, std::net::SocketAddr) {
    let port = free_port();
    let mut args: Vec<String> = vec![
        "join".into(),
        torrent.to_string_lossy().into_owned(),
        save.to_string_lossy().into_owned(),
        port.to_string(),
        "--up".into(),
        up.to_string(),
        "--down".into(),
        down.to_string(),
    ];
    args.extend(peers.iter().map(ToString::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (lt_ready(&args, "libtorrent join"), local(port))
}

/// Runs `lt_tool.py ARGS` and waits until it prints READY.
pub fn lt_ready(args: &[&str], name: &str) -> Proc {
    lt_ready_cmd(&mut lt(args), name)
}

/// [`lt_ready`] of a prepared [`lt`] command.
pub fn lt_ready_cmd(cmd: &mut Command, name: &str) -> Proc {
    let mut p = Proc::spawn(cmd, name);
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
            panic!("{name} exited ({st}): {err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{name} never became ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p
}
