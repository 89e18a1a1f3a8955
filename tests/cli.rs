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

#[test]
fn hostile_torrents_get_one_clear_line() {
    let cases = [
        (
            "hostile-dotdot.torrent",
            "unsafe path in `info.files[0].path[0]`",
        ),
        ("hostile-absolute.torrent", "contains a path separator"),
        (
            "hostile-duplicate.torrent",
            "two files have the path \"x/a\"",
        ),
        (
            "hostile-file-dir.torrent",
            "\"x/a\" is both a file and a directory",
        ),
        ("hostile-name.torrent", "unsafe path in `info.name`"),
        ("hostile-overflow.torrent", "more than 1 PiB"),
    ];
    for (file, expect) in cases {
        let stderr = refused(&["info".as_ref(), regression(file).as_os_str()]);
        assert!(stderr.contains(expect), "{file}: {stderr}");
    }
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
