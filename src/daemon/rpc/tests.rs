//! The RPC on a daemon whose session is a stand-in: what each method
//! answers and what it changes.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use serde_json::{Value, json};

use super::fields::Field;
use crate::daemon::config::Settings;
use crate::daemon::control::Daemon;
use crate::daemon::engine::{Engine, StandIn};
use crate::daemon::state::StateDir;

struct Harness {
    d: Arc<Daemon>,
    engine: Arc<StandIn>,
    jobs: Receiver<u32>,
    dl: PathBuf,
    tmp: tempfile::TempDir,
}

impl Harness {
    fn new() -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let dl = tmp.path().join("dl");
        let state = StateDir::open(&tmp.path().join("state")).unwrap();
        let engine = Arc::new(StandIn::default());
        let settings = Settings {
            download_dir: Some(dl.clone()),
            ..Settings::default()
        };
        let (d, jobs) = Daemon::new(engine.clone(), state, settings).unwrap();
        Harness {
            d,
            engine,
            jobs,
            dl,
            tmp,
        }
    }

    fn call(&self, req: Value) -> Value {
        let out = super::handle(&self.d, req.to_string().as_bytes());
        self.settle();
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {out:?}"))
    }

    fn ok(&self, method: &str, args: Value) -> Value {
        let r = self.call(json!({"method": method, "arguments": args}));
        assert_eq!(r["result"], "success", "{method} {args}: {r}");
        r["arguments"].clone()
    }

    fn err(&self, method: &str, args: Value) -> String {
        let r = self.call(json!({"method": method, "arguments": args}));
        assert_ne!(r["result"], "success", "{method} {args}: {r}");
        assert_eq!(r["arguments"], json!({}));
        r["result"].as_str().unwrap().to_owned()
    }

    /// Runs what the starter and the manager threads would, until nothing
    /// is left to do.
    fn settle(&self) {
        loop {
            let mut busy = false;
            while let Ok(id) = self.jobs.try_recv() {
                self.d.start_one(id);
                busy = true;
            }
            while let Some(ev) = self.engine.next_event(std::time::Duration::ZERO) {
                self.d.on_event(ev);
                busy = true;
            }
            if !busy {
                return;
            }
        }
    }

    /// A torrent of `len` bytes in `files` files; its base64.
    fn torrent(&self, name: &str, files: usize) -> String {
        let src = self.tmp.path().join("src").join(name);
        for i in 0..files {
            let p = if files == 1 {
                src.clone()
            } else {
                src.join(format!("f{i}"))
            };
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, vec![i as u8; 40_000 + i]).unwrap();
        }
        let opts = crate::create::CreateOptions {
            trackers: vec![vec!["http://127.0.0.1:1/announce".into()]],
            piece_length: Some(16384),
            ..Default::default()
        };
        let c = crate::create::create(&src, &opts).unwrap();
        data_encoding::BASE64.encode(&c.bytes)
    }

    fn get(&self, fields: &[&str]) -> Vec<Value> {
        self.ok("torrent-get", json!({ "fields": fields }))["torrents"]
            .as_array()
            .unwrap()
            .clone()
    }
}

#[test]
fn session_get_says_what_we_are() {
    let h = Harness::new();
    let s = h.ok("session-get", json!({}));
    assert_eq!(s["rpc-version"], 17);
    assert_eq!(s["units"]["speed-bytes"], 1000);
    assert_eq!(s["download-dir"], h.dl.to_string_lossy().as_ref());
    assert_eq!(s["session-id"], h.d.session_id.as_str());
    let only = h.ok("session-get", json!({"fields": ["version", "nonsense"]}));
    assert_eq!(only.as_object().unwrap().len(), 1);
    assert!(only["version"].as_str().unwrap().contains("ringtorrent"));
}

#[test]
fn session_set_changes_limits_and_rejects_foreign_dirs() {
    let h = Harness::new();
    h.ok(
        "session-set",
        json!({"speed-limit-down": 300, "speed-limit-down-enabled": true, "download-queue-size": 2}),
    );
    let s = h.ok("session-get", json!({}));
    assert_eq!(s["speed-limit-down"], 300);
    assert_eq!(s["speed-limit-down-enabled"], true);
    assert_eq!(s["download-queue-size"], 2);
    assert_eq!(h.d.table().prefs.session_limits(), (None, Some(300_000)));
    let e = h.err("session-set", json!({"download-dir": "/etc"}));
    assert!(e.contains("not under an allowed"), "{e}");
    let e = h.err("session-set", json!({"download-dir": "relative/dir"}));
    assert!(e.contains("absolute"), "{e}");
}

#[test]
fn torrents_are_added_listed_by_id_or_hash_and_not_twice() {
    let h = Harness::new();
    let meta = h.torrent("one", 3);
    let a = h.ok("torrent-add", json!({"metainfo": meta, "paused": true}));
    let added = &a["torrent-added"];
    assert_eq!(added["id"], 1);
    assert_eq!(added["name"], "one");
    let hash = added["hashString"].as_str().unwrap().to_owned();
    let again = h.ok("torrent-add", json!({"metainfo": meta}));
    assert_eq!(again["torrent-duplicate"]["hashString"], hash.as_str());
    let by_hash = h.ok(
        "torrent-get",
        json!({"ids": [hash], "fields": ["id", "status"]}),
    );
    assert_eq!(by_hash["torrents"], json!([{"id": 1, "status": 0}]));
    let table = h.ok(
        "torrent-get",
        json!({"ids": 1, "fields": ["id", "name"], "format": "table"}),
    );
    assert_eq!(table["torrents"], json!([["id", "name"], [1, "one"]]));
    let recent = h.ok(
        "torrent-get",
        json!({"ids": "recently-active", "fields": ["id"]}),
    );
    assert_eq!(recent["torrents"], json!([{"id": 1}]));
    assert_eq!(recent["removed"], json!([]));
    assert_eq!(
        h.err("torrent-add", json!({"metainfo": "!!!"})),
        "invalid or corrupt torrent file"
    );
    assert_eq!(
        h.err("torrent-add", json!({})),
        "no filename or metainfo specified"
    );
    assert!(
        h.err("torrent-add", json!({"filename": "magnet:?xt=urn:btih:00"}))
            .starts_with("invalid magnet link")
    );
}

#[test]
fn a_magnet_is_answered_at_once() {
    let h = Harness::new();
    let uri = "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&dn=bunny";
    let first = h.ok("torrent-add", json!({"filename": uri}));
    let added = &first["torrent-added"];
    assert_eq!(
        added["hashString"],
        "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
    );
    assert_eq!(added["name"], "bunny");
    assert!(added["id"].as_u64().unwrap() >= 1);
}

#[test]
fn every_field_is_answered_as_json() {
    let h = Harness::new();
    h.ok("torrent-add", json!({"metainfo": h.torrent("all", 2)}));
    let names: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
    let t = &h.get(&names)[0];
    for n in &names {
        assert!(t.get(*n).is_some(), "{n} missing from {t}");
    }
    assert_eq!(t["files"].as_array().unwrap().len(), 2);
    assert_eq!(t["status"], 4, "running, nothing had: downloading");
    assert_eq!(t["trackers"][0]["announce"], "http://127.0.0.1:1/announce");
    assert!(
        t["magnetLink"]
            .as_str()
            .unwrap()
            .starts_with("magnet:?xt=urn:btih:")
    );
}

#[test]
fn stop_start_and_remove_follow_the_session() {
    let h = Harness::new();
    h.ok("torrent-add", json!({"metainfo": h.torrent("s", 1)}));
    assert_eq!(h.engine.running.lock().unwrap().len(), 1);
    h.ok("torrent-stop", json!({"ids": [1]}));
    assert_eq!(h.get(&["status"])[0]["status"], 0);
    assert!(h.engine.running.lock().unwrap().is_empty());
    h.ok("torrent-start", json!({"ids": [1]}));
    assert_eq!(h.get(&["status"])[0]["status"], 4);
    h.ok(
        "torrent-remove",
        json!({"ids": [1], "delete-local-data": false}),
    );
    assert!(h.get(&["id"]).is_empty());
    assert!(h.engine.running.lock().unwrap().is_empty());
    let recent = h.ok(
        "torrent-get",
        json!({"ids": "recently-active", "fields": ["id"]}),
    );
    assert_eq!(recent["removed"], json!([1]));
    // Its copy is gone: it does not come back after a restart.
    let kept = std::fs::read_dir(h.tmp.path().join("state/torrents"))
        .unwrap()
        .count();
    assert_eq!(kept, 0);
}

#[test]
fn torrent_set_changes_what_it_names() {
    let h = Harness::new();
    h.ok(
        "torrent-add",
        json!({"metainfo": h.torrent("x", 3), "paused": true}),
    );
    h.ok(
        "torrent-set",
        json!({
            "ids": [1],
            "labels": ["tv", "hd"],
            "downloadLimit": 100,
            "downloadLimited": true,
            "files-unwanted": [1, 99],
            "priority-high": [2],
            "seedRatioMode": 1,
            "seedRatioLimit": 1.5,
            "trackerAdd": ["udp://127.0.0.1:2/announce", "ftp://nope"],
        }),
    );
    let t = &h.get(&[
        "labels",
        "downloadLimit",
        "downloadLimited",
        "wanted",
        "priorities",
        "seedRatioMode",
        "seedRatioLimit",
        "trackers",
        "sizeWhenDone",
        "totalSize",
    ])[0];
    assert_eq!(t["labels"], json!(["tv", "hd"]));
    assert_eq!(t["downloadLimit"], 100);
    assert_eq!(t["downloadLimited"], true);
    assert_eq!(t["wanted"], json!([true, false, true]));
    assert_eq!(t["priorities"], json!([0, 0, 1]));
    assert_eq!(t["seedRatioLimit"], 1.5);
    assert!(t["sizeWhenDone"].as_u64() < t["totalSize"].as_u64());
    let urls: Vec<&str> = t["trackers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["announce"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        ["http://127.0.0.1:1/announce", "udp://127.0.0.1:2/announce"]
    );
    // An empty list names every file (transmission-remote -G all / -g all).
    h.ok("torrent-set", json!({"ids": [1], "files-unwanted": []}));
    assert_eq!(
        h.get(&["wanted"])[0]["wanted"],
        json!([false, false, false])
    );
    h.ok(
        "torrent-set",
        json!({"ids": [1], "files-wanted": [], "priority-low": []}),
    );
    let t = &h.get(&["wanted", "priorities"])[0];
    assert_eq!(t["wanted"], json!([true, true, true]));
    assert_eq!(t["priorities"], json!([-1, -1, -1]));
    // Non-ASCII tracker text is refused, not a crash; the list is capped.
    h.ok(
        "torrent-set",
        json!({"ids": [1], "trackerAdd": ["aaaaaaé", "httpé://x"]}),
    );
    let many: Vec<String> = (0..1000)
        .map(|i| format!("http://t{i}.example/a"))
        .collect();
    h.ok("torrent-set", json!({"ids": [1], "trackerAdd": many}));
    let n = h.get(&["trackers"])[0]["trackers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(n, 256);
    h.ok(
        "torrent-set",
        json!({"ids": [1], "trackerList": "http://127.0.0.1:1/announce\n\nudp://127.0.0.1:2/announce"}),
    );
    h.ok("torrent-set", json!({"ids": [1], "trackerRemove": [0]}));
    assert_eq!(
        h.get(&["trackers"])[0]["trackers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn queue_moves_reorder() {
    let h = Harness::new();
    for n in ["a", "b", "c"] {
        h.ok(
            "torrent-add",
            json!({"metainfo": h.torrent(n, 1), "paused": true}),
        );
    }
    let order = || {
        let mut v: Vec<(u64, u64)> = h
            .get(&["id", "queuePosition"])
            .iter()
            .map(|t| {
                (
                    t["queuePosition"].as_u64().unwrap(),
                    t["id"].as_u64().unwrap(),
                )
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, id)| id).collect::<Vec<_>>()
    };
    assert_eq!(order(), [1, 2, 3]);
    h.ok("queue-move-top", json!({"ids": [3]}));
    assert_eq!(order(), [3, 1, 2]);
    h.ok("queue-move-down", json!({"ids": [3]}));
    assert_eq!(order(), [1, 3, 2]);
    h.ok("queue-move-bottom", json!({"ids": [1]}));
    assert_eq!(order(), [3, 2, 1]);
}

#[test]
fn renames_need_one_torrent_and_a_plain_name() {
    let h = Harness::new();
    h.ok(
        "torrent-add",
        json!({"metainfo": h.torrent("r", 2), "paused": true}),
    );
    h.ok(
        "torrent-add",
        json!({"metainfo": h.torrent("q", 1), "paused": true}),
    );
    let e = h.err(
        "torrent-rename-path",
        json!({"ids": [1, 2], "path": "r", "name": "z"}),
    );
    assert_eq!(e, "torrent-rename-path requires 1 torrent");
    assert!(
        h.err(
            "torrent-rename-path",
            json!({"ids": [1], "path": "r", "name": "../z"})
        )
        .contains("usable")
    );
    assert!(
        h.err(
            "torrent-rename-path",
            json!({"ids": [1], "path": "nope", "name": "z"})
        )
        .contains("no file")
    );
    let r = h.ok(
        "torrent-rename-path",
        json!({"ids": [1], "path": "r/f0", "name": "first"}),
    );
    assert_eq!(r, json!({"id": 1, "path": "r/f0", "name": "first"}));
    let files = &h.get(&["files"])[0]["files"];
    assert_eq!(files[0]["name"], "r/first");
}

#[test]
fn free_space_and_unknown_methods() {
    let h = Harness::new();
    let path = h.tmp.path().to_string_lossy().into_owned();
    let f = h.ok("free-space", json!({"path": path}));
    assert!(f["size-bytes"].as_u64().unwrap() > 0);
    assert_eq!(
        h.err("free-space", json!({})),
        "directory path argument is missing"
    );
    assert_eq!(h.err("no-such", json!({})), "method name not recognized");
    let r = h.call(json!({"arguments": {}}));
    assert_eq!(r["result"], "no method name");
    // Millions of tiny values are refused before they are parsed.
    let mut body = br#"{"method":"torrent-get","arguments":{"fields":["id"],"ids":["#.to_vec();
    body.extend(std::iter::repeat_n(b"0,".as_slice(), 2 << 20).flatten());
    body.extend(b"0]}}");
    let out = super::handle(&h.d, &body);
    let r: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(r["result"], "request has too many values");
    // A repeated field or id is answered once.
    h.ok("torrent-add", json!({"metainfo": h.torrent("y", 1)}));
    let got = h.ok(
        "torrent-get",
        json!({"ids": [1, 1, 1], "fields": ["id", "id", "name"]}),
    );
    assert_eq!(got["torrents"], json!([{"id": 1, "name": "y"}]));
}
