//! Transmission's RPC (rpc-spec of Transmission 3.00 and 4.0): a JSON
//! request in, a JSON response out. Errors are answered the way a
//! Transmission daemon answers them: `result` holds the message and
//! `arguments` is empty. Arguments of the wrong type are ignored, as
//! Transmission ignores them.

pub mod fields;
#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::control::{
    AddOutcome, AddRequest, Brief, ControlError, Daemon, FileChanges, TorrentChanges,
};
use super::table::{QueueMove, RECENT, Table};
use crate::magnet::Magnet;
use fields::{Field, SPEED_UNIT, View};

/// The RPC version we speak (Transmission 4.0's).
pub const RPC_VERSION: u32 = 17;
const RPC_VERSION_MINIMUM: u32 = 14;
const RPC_SEMVER: &str = "5.3.0";

type Args = Map<String, Value>;
/// A method's answer: its arguments, or the error text for `result`.
type Answer = Result<Args, String>;

/// Answers one request body.
pub fn handle(d: &Daemon, body: &[u8]) -> Vec<u8> {
    if json_values(body) > MAX_VALUES {
        let resp = json!({"arguments": {}, "result": "request has too many values"});
        return serde_json::to_vec(&resp).unwrap_or_default();
    }
    let req: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
    let tag = req
        .as_ref()
        .and_then(|r| r.get("tag"))
        .filter(|t| t.is_number())
        .cloned();
    let empty = Args::new();
    let args = req
        .as_ref()
        .and_then(|r| r.get("arguments"))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let method = req
        .as_ref()
        .and_then(|r| r.get("method"))
        .and_then(Value::as_str);
    // torrent-get writes its own answer: it can be large.
    if method == Some("torrent-get") {
        return torrent_get(d, args, tag.as_ref());
    }
    let answer = match method {
        None => Err("no method name".to_owned()),
        Some(m) => call(d, m, args),
    };
    let mut resp = Map::new();
    match answer {
        Ok(a) => {
            resp.insert("result".into(), "success".into());
            resp.insert("arguments".into(), Value::Object(a));
        }
        Err(e) => {
            resp.insert("result".into(), e.into());
            resp.insert("arguments".into(), Value::Object(Args::new()));
        }
    }
    if let Some(t) = tag {
        resp.insert("tag".into(), t);
    }
    serde_json::to_vec(&resp).unwrap_or_default()
}

fn call(d: &Daemon, method: &str, a: &Args) -> Answer {
    match method {
        "session-get" => Ok(session_get(d, a)),
        "session-set" => session_set(d, a),
        "session-stats" => Ok(session_stats(d)),
        "session-close" => {
            d.close();
            Ok(Args::new())
        }
        "torrent-add" => torrent_add(d, a),
        "torrent-start" => each(d, a, |d, ids| d.start(ids, false)),
        "torrent-start-now" => each(d, a, |d, ids| d.start(ids, true)),
        "torrent-stop" => each(d, a, Daemon::stop),
        "torrent-verify" => each(d, a, Daemon::verify),
        "torrent-reannounce" => each(d, a, Daemon::reannounce),
        "torrent-remove" => {
            let delete = flag(a, "delete-local-data").unwrap_or(false);
            each(d, a, |d, ids| d.remove(ids, delete))
        }
        "torrent-set" => torrent_set(d, a),
        "torrent-set-location" => {
            let Some(dir) = a.get("location").and_then(Value::as_str) else {
                return Err("no location".into());
            };
            let ids = select(&d.table(), a);
            d.set_location(&ids, Path::new(dir), flag(a, "move").unwrap_or(false))
                .map_err(|e| message(&e))?;
            Ok(Args::new())
        }
        "torrent-rename-path" => rename_path(d, a),
        "queue-move-top" => queue(d, a, QueueMove::Top),
        "queue-move-up" => queue(d, a, QueueMove::Up),
        "queue-move-down" => queue(d, a, QueueMove::Down),
        "queue-move-bottom" => queue(d, a, QueueMove::Bottom),
        "free-space" => free_space(a),
        "port-test" => Err("port-test is not supported".into()),
        "blocklist-update" => Err("blocklists are not supported".into()),
        _ => Err("method name not recognized".into()),
    }
}

fn message(e: &ControlError) -> String {
    match e {
        ControlError::BadTorrent(_) => "invalid or corrupt torrent file".into(),
        e => crate::error_chain(e),
    }
}

fn each(d: &Daemon, a: &Args, f: impl FnOnce(&Daemon, &[u32])) -> Answer {
    let ids = select(&d.table(), a);
    f(d, &ids);
    Ok(Args::new())
}

fn queue(d: &Daemon, a: &Args, to: QueueMove) -> Answer {
    let mut t = d.table();
    let ids = select(&t, a);
    t.queue_move(&ids, to);
    Ok(Args::new())
}

/// Which torrents `ids` names: all of them when absent; a number, a hash,
/// or a list of both; or `recently-active`.
/// Values a request may hold. A body under the size cap can still hold
/// tens of millions of tiny values (`[0,0,0,...]`), each tens of bytes once
/// parsed; a real request (a torrent-get of every id, a base64 torrent)
/// has far fewer.
const MAX_VALUES: usize = 1 << 20;

/// About how many JSON values `body` holds: separators and openings
/// outside strings (a cheap scan before parsing).
fn json_values(body: &[u8]) -> usize {
    let (mut n, mut in_string, mut escaped) = (0, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b',' | b'[' | b'{' | b':' => n += 1,
                _ => {}
            }
        }
    }
    n
}

fn select(t: &Table, a: &Args) -> Vec<u32> {
    let one = |v: &Value| -> Option<u32> {
        match v {
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|id| t.entries.contains_key(id)),
            Value::String(s) => crate::metainfo::InfoHash::parse(s)
                .ok()
                .and_then(|h| t.by_hash.get(&h).copied()),
            _ => None,
        }
    };
    match a.get("ids") {
        None => t.entries.keys().copied().collect(),
        Some(Value::String(s)) if s == "recently-active" => t
            .entries
            .iter()
            .filter(|(_, e)| e.touched.elapsed() < RECENT)
            .map(|(id, _)| *id)
            .collect(),
        // Each torrent once, however often it is named.
        Some(Value::Array(list)) => {
            let mut seen = std::collections::HashSet::new();
            list.iter()
                .filter_map(one)
                .filter(|id| seen.insert(*id))
                .collect()
        }
        Some(v) => one(v).into_iter().collect(),
    }
}

/// A boolean, as Transmission reads them: `true`, `1`, `"true"`.
fn flag(a: &Args, key: &str) -> Option<bool> {
    match a.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        Value::String(s) => match s.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn int(a: &Args, key: &str) -> Option<i64> {
    match a.get(key)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn uint(a: &Args, key: &str) -> Option<u64> {
    int(a, key).and_then(|n| u64::try_from(n).ok())
}

fn real(a: &Args, key: &str) -> Option<f64> {
    match a.get(key)? {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        Value::String(s) => s.parse().ok().filter(|f: &f64| f.is_finite()),
        _ => None,
    }
}

fn string(a: &Args, key: &str) -> Option<String> {
    a.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// A list of file indices (`Some(empty)`: every file, as the spec says).
fn indices(a: &Args, key: &str) -> Option<Vec<usize>> {
    match a.get(key) {
        Some(Value::Array(v)) => Some(
            v.iter()
                .filter_map(|x| x.as_u64().and_then(|n| usize::try_from(n).ok()))
                .collect(),
        ),
        _ => None,
    }
}

fn strings(a: &Args, key: &str) -> Option<Vec<String>> {
    match a.get(key) {
        Some(Value::Array(v)) => Some(
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }
}

/// `torrent-set`'s file lists; `torrent-add` gives no meaning to an empty
/// one (Transmission's own daemon neither).
fn file_changes(a: &Args, empty_means_all: bool) -> FileChanges {
    let indices = |key| indices(a, key).filter(|l| empty_means_all || !l.is_empty());
    FileChanges {
        wanted: indices("files-wanted"),
        unwanted: indices("files-unwanted"),
        high: indices("priority-high"),
        normal: indices("priority-normal"),
        low: indices("priority-low"),
    }
}

fn session_get(d: &Daemon, a: &Args) -> Args {
    let settings = d.settings();
    // statvfs outside the lock: a hung mount must not stall every request.
    let dir = d.table().prefs.download_dir.clone();
    let free = free_bytes(&dir).unwrap_or(-1);
    let t = d.table();
    let p = &t.prefs;
    let kb = |v: u64| v / SPEED_UNIT;
    let Value::Object(mut m) = json!({
        "alt-speed-down": kb(p.alt_speed_down),
        "alt-speed-enabled": p.alt_speed_enabled,
        "alt-speed-time-begin": 540,
        "alt-speed-time-day": 127,
        "alt-speed-time-enabled": false,
        "alt-speed-time-end": 1020,
        "alt-speed-up": kb(p.alt_speed_up),
        "blocklist-enabled": false,
        "blocklist-size": 0,
        "blocklist-url": "",
        "cache-size-mb": settings.memory.unwrap_or(64 << 20) >> 20,
        "config-dir": d.state_dir().to_string_lossy(),
        "default-trackers": "",
        "dht-enabled": settings.dht.unwrap_or(true),
        "download-dir": p.download_dir.to_string_lossy(),
        "download-dir-free-space": free,
        "download-queue-enabled": p.download_queue_enabled,
        "download-queue-size": p.download_queue_size,
        "encryption": settings.encryption.unwrap_or_default().transmission_name(),
        "idle-seeding-limit": p.idle_seeding_limit,
        "idle-seeding-limit-enabled": p.idle_seeding_limit_enabled,
        "incomplete-dir": p.download_dir.to_string_lossy(),
        "incomplete-dir-enabled": false,
        "lpd-enabled": settings.lsd.unwrap_or(true),
        "peer-limit-global": settings.max_peers.unwrap_or(500),
        "peer-limit-per-torrent": 50,
        "peer-port": d.engine.port(),
        "peer-port-random-on-start": false,
        "pex-enabled": true,
        "port-forwarding-enabled": false,
        "queue-stalled-enabled": false,
        "queue-stalled-minutes": 30,
        "rename-partial-files": false,
        "rpc-version": RPC_VERSION,
        "rpc-version-minimum": RPC_VERSION_MINIMUM,
        "rpc-version-semver": RPC_SEMVER,
        "script-torrent-added-enabled": false,
        "script-torrent-added-filename": "",
        "script-torrent-done-enabled": false,
        "script-torrent-done-filename": "",
        "script-torrent-done-seeding-enabled": false,
        "script-torrent-done-seeding-filename": "",
        "seed-queue-enabled": p.seed_queue_enabled,
        "seed-queue-size": p.seed_queue_size,
        "seedRatioLimit": p.ratio_limit,
        "seedRatioLimited": p.ratio_limited,
        "session-id": d.session_id,
        "speed-limit-down": kb(p.speed_limit_down),
        "speed-limit-down-enabled": p.speed_limit_down_enabled,
        "speed-limit-up": kb(p.speed_limit_up),
        "speed-limit-up-enabled": p.speed_limit_up_enabled,
        "start-added-torrents": p.start_added_torrents,
        "tcp-enabled": true,
        "trash-original-torrent-files": p.trash_original_torrent_files,
        "units": {
            "memory-bytes": 1024,
            "memory-units": ["KiB", "MiB", "GiB", "TiB"],
            "size-bytes": 1000,
            "size-units": ["kB", "MB", "GB", "TB"],
            "speed-bytes": 1000,
            "speed-units": ["kB/s", "MB/s", "GB/s", "TB/s"],
        },
        "utp-enabled": false,
        "version": version(),
    }) else {
        return Args::new();
    };
    // Transmission 4: only the fields asked for, when asked.
    if let Some(want) = strings(a, "fields") {
        let want: std::collections::HashSet<String> = want.into_iter().collect();
        m.retain(|k, _| want.contains(k));
    }
    m
}

/// What `version` says: Transmission's version we follow, and ours.
pub fn version() -> String {
    format!("4.0.6 (ringtorrent {})", env!("CARGO_PKG_VERSION"))
}

fn session_set(d: &Daemon, a: &Args) -> Answer {
    let dir = match string(a, "download-dir") {
        Some(dir) => Some(d.allowed_dir(Path::new(&dir)).map_err(|e| message(&e))?),
        None => None,
    };
    let mut t = d.table();
    let p = &mut t.prefs;
    if let Some(dir) = dir {
        p.download_dir = dir;
    }
    let speed = |key| uint(a, key).map(|v| v.saturating_mul(SPEED_UNIT));
    macro_rules! set {
        ($field:ident, $value:expr) => {
            if let Some(v) = $value {
                p.$field = v;
            }
        };
    }
    set!(alt_speed_down, speed("alt-speed-down"));
    set!(alt_speed_up, speed("alt-speed-up"));
    set!(alt_speed_enabled, flag(a, "alt-speed-enabled"));
    set!(speed_limit_down, speed("speed-limit-down"));
    set!(
        speed_limit_down_enabled,
        flag(a, "speed-limit-down-enabled")
    );
    set!(speed_limit_up, speed("speed-limit-up"));
    set!(speed_limit_up_enabled, flag(a, "speed-limit-up-enabled"));
    set!(ratio_limit, real(a, "seedRatioLimit"));
    set!(ratio_limited, flag(a, "seedRatioLimited"));
    set!(
        idle_seeding_limit,
        uint(a, "idle-seeding-limit").map(|v| v.min(u64::from(u32::MAX)) as u32)
    );
    set!(
        idle_seeding_limit_enabled,
        flag(a, "idle-seeding-limit-enabled")
    );
    set!(
        download_queue_size,
        uint(a, "download-queue-size").map(|v| v as usize)
    );
    set!(download_queue_enabled, flag(a, "download-queue-enabled"));
    set!(
        seed_queue_size,
        uint(a, "seed-queue-size").map(|v| v as usize)
    );
    set!(seed_queue_enabled, flag(a, "seed-queue-enabled"));
    set!(start_added_torrents, flag(a, "start-added-torrents"));
    set!(
        trash_original_torrent_files,
        flag(a, "trash-original-torrent-files")
    );
    t.dirty = true;
    drop(t);
    d.apply_prefs();
    Ok(Args::new())
}

fn session_stats(d: &Daemon) -> Args {
    let t = d.table();
    let active = t
        .entries
        .values()
        .filter(|e| e.rates.down > 0 || e.rates.up > 0)
        .count();
    let paused = t
        .entries
        .values()
        .filter(|e| e.status() == super::table::Status::Stopped)
        .count();
    let (down, up) = t
        .entries
        .values()
        .fold((0, 0), |(d, u), e| (d + e.rates.down, u + e.rates.up));
    let stats = |c: &super::state::Cumulative| {
        json!({
            "uploadedBytes": c.uploaded_bytes,
            "downloadedBytes": c.downloaded_bytes,
            "filesAdded": c.files_added,
            "sessionCount": c.session_count,
            "secondsActive": c.seconds_active,
        })
    };
    let Value::Object(m) = json!({
        "activeTorrentCount": active,
        "downloadSpeed": down,
        "pausedTorrentCount": paused,
        "torrentCount": t.entries.len(),
        "uploadSpeed": up,
        "cumulative-stats": stats(&t.cumulative),
        "current-stats": stats(&t.current),
    }) else {
        return Args::new();
    };
    m
}

fn torrent_add(d: &Daemon, a: &Args) -> Answer {
    let torrent = if let Some(b64) = string(a, "metainfo") {
        let clean: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        data_encoding::BASE64
            .decode(clean.as_bytes())
            .map_err(|_| "invalid or corrupt torrent file".to_owned())?
    } else if let Some(name) = string(a, "filename") {
        if name.starts_with("magnet:") {
            return torrent_add_magnet(d, &name, a);
        }
        read_torrent(&name)?
    } else {
        return Err("no filename or metainfo specified".into());
    };
    added(d.add(add_request(torrent, a)))
}

/// A magnet link: answered at once, added when its metadata arrives.
fn torrent_add_magnet(d: &Daemon, uri: &str, a: &Args) -> Answer {
    let magnet = Magnet::parse(uri).map_err(|e| format!("invalid magnet link: {e}"))?;
    added(d.add_magnet(magnet, add_request(Vec::new(), a)))
}

fn add_request(torrent: Vec<u8>, a: &Args) -> AddRequest {
    AddRequest {
        torrent,
        download_dir: string(a, "download-dir").map(PathBuf::from),
        paused: flag(a, "paused"),
        files: file_changes(a, false),
        labels: strings(a, "labels"),
        peer_limit: uint(a, "peer-limit").map(|v| v.min(u64::from(u32::MAX)) as u32),
        bandwidth_priority: int(a, "bandwidthPriority").map(|v| v.clamp(-1, 1) as i8),
        ..AddRequest::default()
    }
}

fn added(outcome: Result<AddOutcome, ControlError>) -> Answer {
    let brief = |b: Brief| json!({"id": b.id, "name": b.name, "hashString": b.hash});
    let mut m = Args::new();
    match outcome.map_err(|e| message(&e))? {
        AddOutcome::Added(b) => m.insert("torrent-added".into(), brief(b)),
        AddOutcome::Duplicate(b) => m.insert("torrent-duplicate".into(), brief(b)),
    };
    Ok(m)
}

/// `filename`: a local .torrent, or one on a web server.
fn read_torrent(name: &str) -> Result<Vec<u8>, String> {
    let max = crate::metainfo::MAX_TORRENT_FILE_SIZE;
    if name.starts_with("http://") || name.starts_with("https://") {
        let resp = ureq::AgentBuilder::new()
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .get(name)
            .call()
            .map_err(|e| format!("cannot fetch {name}: {e}"))?;
        let mut body = Vec::new();
        resp.into_reader()
            .take(max + 1)
            .read_to_end(&mut body)
            .map_err(|e| format!("cannot fetch {name}: {e}"))?;
        return Ok(body);
    }
    // A regular file only (not a FIFO or /dev/zero), and not a huge one.
    let meta = std::fs::metadata(name).map_err(|_| "invalid or corrupt torrent file".to_owned())?;
    if !meta.is_file() || meta.len() > max {
        return Err("invalid or corrupt torrent file".into());
    }
    std::fs::read(name).map_err(|_| "invalid or corrupt torrent file".into())
}

fn torrent_set(d: &Daemon, a: &Args) -> Answer {
    let ids = select(&d.table(), a);
    let speed = |key| uint(a, key).map(|v| v.saturating_mul(SPEED_UNIT));
    let replace = match a.get("trackerReplace") {
        Some(Value::Array(v)) => v
            .chunks(2)
            .filter_map(|pair| match pair {
                [id, url] => Some((id.as_u64()? as usize, url.as_str()?.to_owned())),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let tracker_list = string(a, "trackerList").map(|text| {
        text.split("\n\n")
            .map(|tier| {
                tier.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .filter(|t| !t.is_empty())
            .collect()
    });
    let c = TorrentChanges {
        bandwidth_priority: int(a, "bandwidthPriority").map(|v| v.clamp(-1, 1) as i8),
        download_limit: speed("downloadLimit"),
        download_limited: flag(a, "downloadLimited"),
        upload_limit: speed("uploadLimit"),
        upload_limited: flag(a, "uploadLimited"),
        files: file_changes(a, true),
        labels: strings(a, "labels"),
        peer_limit: uint(a, "peer-limit").map(|v| v.min(u64::from(u32::MAX)) as u32),
        queue_position: uint(a, "queuePosition").map(|v| v as usize),
        seed_idle_limit: uint(a, "seedIdleLimit").map(|v| v.min(u64::from(u32::MAX)) as u32),
        seed_idle_mode: uint(a, "seedIdleMode").map(|v| v.min(2) as u8),
        seed_ratio_limit: real(a, "seedRatioLimit"),
        seed_ratio_mode: uint(a, "seedRatioMode").map(|v| v.min(2) as u8),
        tracker_add: strings(a, "trackerAdd").unwrap_or_default(),
        tracker_remove: indices(a, "trackerRemove").unwrap_or_default(),
        tracker_replace: replace,
        tracker_list,
    };
    d.set(&ids, &c);
    if let Some(dir) = string(a, "location") {
        d.set_location(&ids, Path::new(&dir), false)
            .map_err(|e| message(&e))?;
    }
    Ok(Args::new())
}

fn rename_path(d: &Daemon, a: &Args) -> Answer {
    let ids = select(&d.table(), a);
    let [id] = ids[..] else {
        return Err("torrent-rename-path requires 1 torrent".into());
    };
    let (Some(path), Some(name)) = (string(a, "path"), string(a, "name")) else {
        return Err("torrent-rename-path requires path and name".into());
    };
    d.rename_path(id, &path, &name).map_err(|e| message(&e))?;
    let Value::Object(m) = json!({"id": id, "path": path, "name": name}) else {
        return Ok(Args::new());
    };
    Ok(m)
}

fn free_space(a: &Args) -> Answer {
    let Some(path) = string(a, "path") else {
        return Err("directory path argument is missing".into());
    };
    if !Path::new(&path).is_absolute() {
        return Err("directory path is not absolute".into());
    }
    let st =
        rustix::fs::statvfs(Path::new(&path)).map_err(|e| std::io::Error::from(e).to_string())?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let total = st.f_blocks.saturating_mul(st.f_frsize);
    let Value::Object(m) = json!({"path": path, "size-bytes": free, "total_size": total}) else {
        return Ok(Args::new());
    };
    Ok(m)
}

fn free_bytes(dir: &Path) -> Option<i64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    i64::try_from(st.f_bavail.saturating_mul(st.f_frsize)).ok()
}

/// `torrent-get`, written as it goes.
fn torrent_get(d: &Daemon, a: &Args, tag: Option<&Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    let finish = |out: &mut Vec<u8>, result: &str| {
        out.extend_from_slice(b",\"result\":");
        let _ = serde_json::to_writer(&mut *out, result);
        if let Some(t) = tag {
            out.extend_from_slice(b",\"tag\":");
            let _ = serde_json::to_writer(&mut *out, t);
        }
        out.push(b'}');
    };
    let Some(Value::Array(names)) = a.get("fields") else {
        out.extend_from_slice(b"{\"arguments\":{}");
        finish(&mut out, "no fields specified");
        return out;
    };
    let mut seen = std::collections::HashSet::new();
    let fields: Vec<Field> = names
        .iter()
        .filter_map(|n| n.as_str().and_then(Field::parse))
        .filter(|f| seen.insert(*f))
        .collect();
    let table_format = a.get("format").and_then(Value::as_str) == Some("table");
    let t = d.table();
    let ids = select(&t, a);
    out.extend_from_slice(b"{\"arguments\":{\"torrents\":[");
    if table_format {
        out.push(b'[');
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let _ = serde_json::to_writer(&mut out, f.name());
        }
        out.push(b']');
    }
    let mut first = !table_format;
    for id in ids {
        let Some(e) = t.entries.get(&id) else {
            continue;
        };
        if !first {
            out.push(b',');
        }
        first = false;
        let mut view = View::new(id, e, &*d.engine, d.state());
        out.push(if table_format { b'[' } else { b'{' });
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if !table_format {
                let _ = serde_json::to_writer(&mut out, f.name());
                out.push(b':');
            }
            view.write(&mut out, *f);
        }
        out.push(if table_format { b']' } else { b'}' });
    }
    out.push(b']');
    if a.get("ids").and_then(Value::as_str) == Some("recently-active") {
        out.extend_from_slice(b",\"removed\":");
        let removed: Vec<u32> = t.removed.iter().map(|(id, _)| *id).collect();
        let _ = serde_json::to_writer(&mut out, &removed);
    }
    drop(t);
    out.push(b'}');
    finish(&mut out, "success");
    out
}
