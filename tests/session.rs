//! One process, many torrents: a `seed` of fifty torrents and a `fetch` of
//! all fifty from it; rate limits that hold over ten seconds.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(120);

fn summaries(o: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn fifty_torrents_from_one_seed_process_to_one_fetch_process() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    let mut torrents = Vec::new();
    let mut payloads = Vec::new();
    for i in 0..50u64 {
        let name = format!("t{i:02}");
        // Single files and trees, of sizes that do not line up with pieces.
        let payload = if i % 5 == 0 {
            make_multi(&seed, &name, 100_000 + i as usize * 1_001)
        } else {
            let p = seed.join(&name);
            write_random(&p, 50_000 + i as usize * 13_337, 100 + i);
            p
        };
        let torrent = tmp.path().join(format!("{name}.torrent"));
        rt_create(&payload, &torrent, if i % 2 == 0 { "16K" } else { "64K" });
        torrents.push(torrent);
        payloads.push((name, payload));
    }
    let (mut seeder, addr) = rt_seed_many(&torrents, &seed, &["--json"]);
    let out = tmp.path().join("out");
    let mut cmd = Command::new(bin());
    cmd.arg("fetch")
        .args(&torrents)
        .arg("--out-dir")
        .arg(&out)
        .env("RINGTORRENT_STATE_DIR", state_dir(&out))
        .args(["--listen", &local(free_port()).to_string()])
        .args(["--peer", &addr.to_string(), "--json"])
        // A torrent that stalls fails the fetch with what it saw, well
        // before the test's limit kills it silently.
        .args(["--timeout", "60"]);
    let o = run_limited(&mut cmd, LIMIT);
    assert!(
        o.status.success(),
        "fetch of 50 torrents failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s = summaries(&o);
    assert_eq!(s.len(), 50, "one summary per torrent");
    for (summary, (name, payload)) in s.iter().zip(&payloads) {
        assert_eq!(summary["name"], name.as_str());
        assert_eq!(summary["complete"], true, "{summary}");
        assert_eq!(summary["hash_failures"], 0, "{summary}");
        assert_same_tree(payload, &out.join(name));
    }
    let up: u64 = {
        // Read while it exits: fifty summaries overflow a pipe's buffer.
        let mut stdout = seeder.child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
            text
        });
        let (st, _) = seeder.terminate(Duration::from_secs(5));
        assert!(st.success());
        let text = reader.join().unwrap();
        text.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["uploaded"]
                    .as_u64()
                    .unwrap()
            })
            .sum()
    };
    let total: u64 = s.iter().map(|x| x["total_length"].as_u64().unwrap()).sum();
    assert!(up >= total, "the seeder sent {up} of {total} bytes");
}

/// A 200 MiB transfer (ten seconds at 20 MiB/s) with `seed_extra` and
/// `fetch_extra`; returns the fetch's rate in MiB/s.
fn limited_rate(seed_extra: &[&str], fetch_extra: &[&str]) -> f64 {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    let payload = seed.join("big.bin");
    write_random(&payload, 200 << 20, 7);
    let torrent = tmp.path().join("big.torrent");
    rt_create(&payload, &torrent, "1M");
    let (_seeder, addr) = rt_seed(&torrent, &seed, seed_extra);
    let out = tmp.path().join("out");
    let mut extra = vec!["--json"];
    extra.extend_from_slice(fetch_extra);
    let mut cmd = rt_fetch_cmd(&torrent, &out, free_port(), &[addr], &extra);
    let o = run_limited(&mut cmd, LIMIT);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_tree(&payload, &out.join("big.bin"));
    let rate = json(&o)["mib_per_second"].as_f64().unwrap();
    eprintln!("limited transfer: {rate:.2} MiB/s");
    rate
}

#[test]
fn a_download_limit_holds_within_five_percent_over_ten_seconds() {
    let rate = limited_rate(&[], &["--download-limit", "20M"]);
    assert!(
        (rate - 20.0).abs() < 1.0,
        "{rate:.2} MiB/s against a 20 MiB/s limit"
    );
}

#[test]
fn an_upload_limit_holds_within_five_percent_over_ten_seconds() {
    let rate = limited_rate(&["--upload-limit", "20M"], &[]);
    assert!(
        (rate - 20.0).abs() < 1.0,
        "{rate:.2} MiB/s against a 20 MiB/s limit"
    );
}
