//! A `ringtorrent daemon` process for tests, and clients for its RPC: our
//! own (raw JSON over HTTP) and Debian's `transmission-remote`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Proc, bin, free_port, local, wait_listening};

pub struct Daemon {
    pub proc: Proc,
    /// Where its log goes (every run of the same root appends).
    pub log: PathBuf,
    pub rpc_port: u16,
    pub download_dir: PathBuf,
    pub state_dir: PathBuf,
    session_id: std::cell::RefCell<String>,
    credentials: Option<(String, String)>,
}

impl Daemon {
    /// Starts a daemon keeping its state in `root/state` and downloading
    /// into `root/downloads`, with `extra` flags.
    pub fn start(root: &Path, extra: &[&str]) -> Daemon {
        Daemon::start_at(root, free_port(), extra)
    }

    pub fn start_at(root: &Path, rpc_port: u16, extra: &[&str]) -> Daemon {
        Daemon::start_with_env(root, rpc_port, extra, &[])
    }

    /// [`Daemon::start_at`] with environment variables set for it.
    pub fn start_with_env(
        root: &Path,
        rpc_port: u16,
        extra: &[&str],
        env: &[(&str, &Path)],
    ) -> Daemon {
        let download_dir = root.join("downloads");
        let state_dir = root.join("state");
        std::fs::create_dir_all(&download_dir).unwrap();
        let log = root.join("daemon.log");
        let mut p = Proc::spawn_logged(
            Command::new(bin())
                .arg("daemon")
                .arg("--download-dir")
                .arg(&download_dir)
                .arg("--state-dir")
                .arg(&state_dir)
                .args(["--listen", "127.0.0.1:0"])
                .args(["--rpc", &format!("127.0.0.1:{rpc_port}")])
                .args(extra)
                .envs(env.iter().copied())
                .env("RUST_LOG", "info"),
            "ringtorrent daemon",
            &log,
        );
        wait_listening(local(rpc_port), &mut p, Duration::from_secs(60));
        let credentials = extra
            .iter()
            .position(|a| *a == "--rpc-username")
            .and_then(|i| {
                let j = extra.iter().position(|a| *a == "--rpc-password")?;
                Some((extra[i + 1].to_owned(), extra[j + 1].to_owned()))
            });
        Daemon {
            proc: p,
            log,
            rpc_port,
            download_dir,
            state_dir,
            session_id: Default::default(),
            credentials,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/transmission/rpc", self.rpc_port)
    }

    /// One RPC call; the whole response.
    pub fn call(&self, method: &str, args: Value) -> Value {
        let body = json!({"method": method, "arguments": args}).to_string();
        for _ in 0..2 {
            let mut req =
                ureq::post(&self.url()).set("X-Transmission-Session-Id", &self.session_id.borrow());
            if let Some((u, p)) = &self.credentials {
                let token = data_encoding::BASE64.encode(format!("{u}:{p}").as_bytes());
                req = req.set("Authorization", &format!("Basic {token}"));
            }
            match req.send_string(&body) {
                Ok(r) => return serde_json::from_str(&r.into_string().unwrap()).unwrap(),
                Err(ureq::Error::Status(409, r)) => {
                    *self.session_id.borrow_mut() =
                        r.header("X-Transmission-Session-Id").unwrap().to_owned();
                }
                Err(e) => panic!("{method}: {e}"),
            }
        }
        panic!("{method}: no session id");
    }

    /// A successful call's arguments.
    pub fn ok(&self, method: &str, args: Value) -> Value {
        let r = self.call(method, args);
        assert_eq!(r["result"], "success", "{method}: {r}");
        r["arguments"].clone()
    }

    pub fn add(&self, torrent: &Path, extra: Value) -> u64 {
        let mut args = json!({
            "metainfo": data_encoding::BASE64.encode(&std::fs::read(torrent).unwrap()),
        });
        if let (Some(a), Some(e)) = (args.as_object_mut(), extra.as_object()) {
            a.extend(e.clone());
        }
        let r = self.ok("torrent-add", args);
        r["torrent-added"]["id"]
            .as_u64()
            .or_else(|| r["torrent-duplicate"]["id"].as_u64())
            .unwrap_or_else(|| panic!("no id in {r}"))
    }

    pub fn torrents(&self, fields: &[&str]) -> Vec<Value> {
        let r = self.ok("torrent-get", json!({ "fields": fields }));
        r["torrents"].as_array().unwrap().clone()
    }

    /// Waits until `done` holds for the torrent list (`fields` each).
    pub fn wait_for(
        &self,
        fields: &[&str],
        limit: Duration,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let t = self.torrents(fields);
            if done(&t) {
                return t;
            }
            assert!(
                start.elapsed() < limit,
                "{what}: not after {limit:?}: {t:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, no chance to save anything.
    pub fn kill9(&mut self) {
        self.proc.child.kill().unwrap();
        self.proc.child.wait().unwrap();
    }
}

/// Debian's transmission-remote, or a panic saying how to get it.
pub fn transmission_remote(port: u16, args: &[&str]) -> String {
    let out = Command::new("transmission-remote")
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run transmission-remote ({e}): run scripts/test, it installs transmission-cli")
        });
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "transmission-remote {args:?}: {text}");
    text
}
