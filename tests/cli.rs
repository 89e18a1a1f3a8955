//! The command line: clear one-line errors and exit codes, never a panic.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn regression(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions/metainfo")
        .join(name)
}

fn refused(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(bin()).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("ringtorrent: error: "), "{stderr}");
    stderr
}

/// Hostile paths are mended inside the download directory, with a warning
/// per change; what cannot be used gets one clear line.
#[test]
fn hostile_torrents_are_mended_or_get_one_clear_line() {
    let cases = [
        (
            "hostile-dotdot.torrent",
            "x/etc/passwd",
            "`info.files[0].path[0]`: path component \"..\" left out",
        ),
        (
            "hostile-absolute.torrent",
            "x/_etc_passwd",
            "`info.files[0].path[0]`: path separator or NUL replaced",
        ),
        (
            "hostile-duplicate.torrent",
            "x/a.1",
            "`info.files[1].path`: path taken by another file",
        ),
        (
            "hostile-file-dir.torrent",
            "x/a.1",
            "`info.files[0].path`: path taken by another file",
        ),
        (
            "hostile-name.torrent",
            "ed2d10332e9819e9e54acf2bb5463031ae68fd6f/a",
            "`info.name`: no usable name",
        ),
    ];
    for (file, path, warning) in cases {
        let out = run_ok(Command::new(bin()).arg("info").arg(regression(file)));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("  {path}\n")), "{file}: {text}");
        assert!(
            text.contains(&format!("warning:    {warning}")),
            "{file}: {text}"
        );
    }
    let stderr = refused(&[
        "info".as_ref(),
        regression("hostile-overflow.torrent").as_os_str(),
    ]);
    assert!(stderr.contains("more than 1 PiB"), "{stderr}");
    let stderr = refused(&["info".as_ref(), "/no/such/file.torrent".as_ref()]);
    assert!(stderr.contains("No such file"), "{stderr}");
}

#[test]
fn info_prints_text_and_json() {
    let t = regression("ringtorrent-multi-private.torrent");
    let text = String::from_utf8(run_ok(Command::new(bin()).arg("info").arg(&t)).stdout).unwrap();
    assert!(text.contains("private:    yes"), "{text}");
    assert!(text.contains("tier 1:     udp://a:1  udp://b:2"), "{text}");
    let v = json(&run_ok(
        Command::new(bin()).args(["info", "--json"]).arg(&t),
    ));
    assert_eq!(v["private"], true);
    assert_eq!(v["trackers"][1][0], "http://c/ann");
}

#[test]
fn create_refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("f.bin");
    write_random(&data, 1000, 1);
    let out = tmp.path().join("f.torrent");
    std::fs::write(&out, b"keep me").unwrap();
    let stderr = refused(&[
        "create".as_ref(),
        data.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    run_ok(
        Command::new(bin())
            .arg("create")
            .arg(&data)
            .arg("-o")
            .arg(&out)
            .arg("--force"),
    );
    assert!(std::fs::read(&out).unwrap().starts_with(b"d"));
}

/// The README's first command, small: generated data, two seeders, two
/// leechers that also trade, every byte checked by `bench` itself.
#[test]
fn bench_moves_a_dataset_between_several_seeders_and_leechers() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args([
            "bench",
            "--size",
            "6M",
            "--piece-size",
            "64K",
            "--layout",
            "multi",
        ])
        .args([
            "--seeders",
            "2",
            "--leechers",
            "2",
            "--threads",
            "2",
            "--json",
        ])
        .arg("--dir")
        .arg(tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["verified"], true, "{r}");
    assert_eq!(r["seeder_processes"].as_array().unwrap().len(), 2, "{r}");
    for s in r["leecher_summaries"].as_array().unwrap() {
        assert_eq!(s["complete"], true, "{s}");
        assert_eq!(s["hash_failures"], 0, "{s}");
        // Both seeders and the other leecher were met.
        assert!(s["peers_seen"].as_u64().unwrap() >= 2, "{s}");
    }
}
