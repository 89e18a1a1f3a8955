//! The web UIs in a real browser (headless Chromium over WebDriver): our
//! built-in page adds a torrent from a file, sees it finish, shows its
//! details, pauses and removes it; Transmission's own web client, served
//! with `--web-dir`, lists the daemon's torrents through our RPC.

mod common;

use std::path::Path;
use std::time::Duration;

use common::browser::Browser;
use common::daemon::Daemon;
use common::tracker::{FakeTracker, Mode};
use common::*;
use serde_json::{Value, json};

/// Every row of the built-in page's torrent table.
const ROWS: &str = "return [...document.querySelectorAll('#torrents tbody tr.torrent')].map(r => ({
    id: Number(r.dataset.id),
    name: r.querySelector('.name').textContent,
    percent: r.querySelector('.percent').textContent,
    status: r.querySelector('.status').textContent,
}))";

const LONG: Duration = Duration::from_secs(120);

#[test]
fn the_built_in_web_ui_adds_shows_pauses_and_removes_a_torrent() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = FakeTracker::start(Mode::Good);
    let seed_dir = tmp.path().join("seed");
    let payload = make_multi(&seed_dir, "payload", 6 << 20);
    let torrent = tmp.path().join("payload.torrent");
    rt_create_with_trackers(&payload, &torrent, "256K", &[&[tracker.http_url()]]);
    let (_seeder, _) = lt_seed(&torrent, &seed_dir);
    let d = Daemon::start(&tmp.path().join("d"), &[]);
    let b = Browser::start(&tmp.path().join("profile"));
    b.open(&format!("http://127.0.0.1:{}/", d.rpc_port));
    b.find("#empty");

    // Picking a file adds it at once.
    b.find("#add-file").send_keys(torrent.to_str().unwrap());
    let rows = b.wait_for(ROWS, LONG, "the torrent at 100 %", |v| {
        v[0]["percent"] == "100%"
    });
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["name"], "payload");
    assert_same_tree(&payload, &d.download_dir.join("payload"));

    // Details: every file with a wanted box, and a piece map.
    b.click("#torrents tbody tr.torrent td.name");
    let files = b.wait_for(
        "return [...document.querySelectorAll('#tab-files tbody tr')].map(r => [
            r.querySelector('.name').textContent, r.querySelector('input[type=checkbox]').checked])",
        LONG,
        "the files tab",
        |v| v.as_array().is_some_and(|a| a.len() == 6),
    );
    assert!(
        files.as_array().unwrap().iter().all(|f| f[1] == true),
        "every file wanted: {files}"
    );
    assert!(files.to_string().contains("payload/z/last.dat"), "{files}");
    b.click("#details nav button[data-tab=pieces]");
    let pieces = d.torrents(&["pieceCount"])[0]["pieceCount"].clone();
    b.wait_for(
        "return document.getElementById('piece-summary').textContent",
        LONG,
        "every piece in the piece map",
        |v| v.as_str() == Some(&format!("{pieces} of {pieces} pieces")),
    );
    b.click("#details nav button[data-tab=files]");
    let png = b.screenshot();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG screenshot");
    // `RINGTORRENT_SCREENSHOT=docs/web-ui.png cargo test --test web_ui` refreshes the README's picture.
    if let Some(to) = std::env::var_os("RINGTORRENT_SCREENSHOT") {
        std::fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join(to), &png).unwrap();
    }

    // Pause: the page and the RPC both say stopped.
    b.click("#torrents tbody tr.torrent button.pause");
    b.wait_for(ROWS, LONG, "paused", |v| {
        v[0]["status"] == "Finished" || v[0]["status"] == "Stopped"
    });
    assert_eq!(d.torrents(&["status"])[0]["status"], 0);
    b.find("#torrents tbody tr.torrent button.resume");

    // Remove with its data.
    b.click("#torrents tbody tr.torrent button.remove");
    b.click("#remove-data");
    b.click("#confirm-remove");
    b.wait_for(ROWS, LONG, "removed", |v| {
        v.as_array().is_some_and(|a| a.is_empty())
    });
    d.wait_for(&["id"], LONG, "removed from the daemon", |t| t.is_empty());
    let start = std::time::Instant::now();
    while d.download_dir.join("payload").exists() {
        assert!(start.elapsed() < LONG, "data not deleted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        payload.join("big.bin").exists(),
        "the seeder's copy is untouched"
    );
}

#[test]
fn transmissions_web_client_lists_the_daemons_torrents() {
    let web = Path::new("/usr/share/transmission/web");
    assert!(
        web.join("index.html").exists(),
        "{} is missing: run scripts/test (it installs transmission-common)",
        web.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("d");
    let d = Daemon::start(&root, &["--web-dir", web.to_str().unwrap()]);
    // Two torrents whose data is already there: they check, then seed.
    let mut names = Vec::new();
    for (i, name) in ["first-dataset", "second-dataset"].iter().enumerate() {
        let payload = d.download_dir.join(name);
        write_random(&payload, (1 << 20) + i, 10 + i as u64);
        let torrent = tmp.path().join(format!("{name}.torrent"));
        rt_create(&payload, &torrent, "64K");
        d.add(&torrent, json!({}));
        names.push(name.to_string());
    }
    d.wait_for(&["status"], LONG, "seeding", |t| {
        t.len() == 2 && t.iter().all(|t| t["status"] == 6)
    });

    let b = Browser::start(&tmp.path().join("profile"));
    // `/` sends the browser to Transmission's client.
    b.open(&format!("http://127.0.0.1:{}/", d.rpc_port));
    let seen = b.wait_for(
        "return [location.pathname, [...document.querySelectorAll('#torrent_list .torrent')].map(t => [
            t.querySelector('.torrent_name').textContent, t.textContent])]",
        LONG,
        "Transmission's web client listing both torrents",
        |v| v[1].as_array().is_some_and(|a| a.len() == 2),
    );
    assert_eq!(seen[0], "/transmission/web/");
    let rows: Vec<(String, String)> = seen[1]
        .as_array()
        .unwrap()
        .iter()
        .map(|r: &Value| {
            (
                r[0].as_str().unwrap().to_owned(),
                r[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut listed: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    listed.sort();
    assert_eq!(listed, names);
    for (name, text) in &rows {
        assert!(text.contains("Seeding"), "{name} not shown seeding: {text}");
    }
}
