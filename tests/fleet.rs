//! A small fleet through `perf/fleet`: a seeder and three leechers, each a
//! network namespace with shaped upload and download, finding each other
//! through `ringtorrent tracker`, for ringtorrent and for libtorrent; every
//! copy compared. Needs root and iproute2 (skipped with a message
//! otherwise).

mod common;

use std::process::Command;
use std::time::Duration;

use common::netns::ip;
use common::*;

/// `perf/fleet` with a seeder and three leechers on 8 MiB, its report in
/// `report`.
fn run_fleet(report: &std::path::Path, extra: &[&str]) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("perf/fleet");
    run_limited_ok(
        Command::new("/usr/bin/python3")
            .arg(script)
            .args(["--hosts", "3", "--size", "8", "--piece", "256"])
            .args(["--up", "40", "--down", "160", "--timeout", "120"])
            .args(extra)
            .arg("--bin")
            .arg(bin())
            .arg("--json")
            .arg(report),
        Duration::from_secs(400),
        "perf/fleet",
    );
}

#[test]
fn four_namespaces_share_a_dataset_through_our_tracker() {
    let probe = format!("rt-fleet-probe{}", std::process::id() % 100_000);
    if !ip(&["netns", "add", &probe]) {
        eprintln!("SKIPPED: cannot create network namespaces here (needs root and iproute2)");
        return;
    }
    ip(&["netns", "del", &probe]);
    lt_tool();
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("fleet.json");
    run_fleet(&report, &[]);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(r["lower_bound_seconds"].as_f64().unwrap() > 0.0, "{r}");
    for client in ["ringtorrent", "libtorrent"] {
        let c = &r["clients"][client];
        assert_eq!(c["complete"], 3, "{client}: {r}");
        assert_eq!(c["verified"], true, "{client}: {r}");
        assert!(
            c["over_lower_bound"].as_f64().unwrap() >= 1.0,
            "{client}: {r}"
        );
    }
    // `--super-seed` shows each leecher only pieces nobody else was given
    // while pieces remain unsent: the swarm must still complete, each copy
    // right.
    run_fleet(
        &report,
        &["--clients", "ringtorrent", "--seed-extra=--super-seed"],
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let c = &r["clients"]["ringtorrent"];
    assert_eq!(c["complete"], 3, "{r}");
    assert_eq!(c["verified"], true, "{r}");
    // Nothing is left behind.
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains("rtf"),
        "namespaces left behind"
    );
}
