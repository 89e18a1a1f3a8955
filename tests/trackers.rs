//! Finding peers through trackers, and carrying on when trackers misbehave.

mod common;

use std::time::{Duration, Instant};

use common::tracker::{FakeTracker, Mode};
use common::*;

const LIMIT: Duration = Duration::from_secs(60);

struct Setup {
    _tmp: tempfile::TempDir,
    seed_dir: std::path::PathBuf,
    out: std::path::PathBuf,
    torrent: std::path::PathBuf,
}

fn setup(tiers: &[&[String]]) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    write_random(&seed_dir.join("f.bin"), 3 * 1024 * 1024 + 5, 21);
    let torrent = tmp.path().join("t.torrent");
    rt_create_with_trackers(&seed_dir.join("f.bin"), &torrent, "64K", tiers);
    Setup {
        out: tmp.path().join("out"),
        seed_dir,
        torrent,
        _tmp: tmp,
    }
}

fn fetch(s: &Setup, peers: &[std::net::SocketAddr]) -> (std::process::Output, Duration) {
    let start = Instant::now();
    let mut cmd = rt_fetch_cmd(
        &s.torrent,
        &s.out,
        free_port(),
        peers,
        &["--json", "--tracker-timeout", "1"],
    );
    let o = run_limited(&mut cmd, LIMIT);
    (o, start.elapsed())
}

fn finds_the_seeder_through(udp: bool) {
    let t = FakeTracker::start(Mode::Good);
    let url = if udp { t.udp_url() } else { t.http_url() };
    let s = setup(&[&[url]]);
    let (mut seeder, seed_addr) = rt_seed(&s.torrent, &s.seed_dir, &["--tracker-timeout", "1"]);
    // The seeder announces as a seed (left=0) before anyone asks.
    let start = Instant::now();
    while !t.events().iter().any(|a| a.port == seed_addr.port()) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the seeder never announced"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (o, _) = fetch(&s, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_tree(&s.seed_dir.join("f.bin"), &s.out.join("f.bin"));
    let (st, _) = seeder.terminate(Duration::from_secs(5));
    assert!(st.success());
    let events: Vec<_> = t.events().into_iter().filter(|a| a.port != 0).collect();
    assert!(events.iter().all(|a| a.udp == udp));
    let seed_events: Vec<_> = events
        .iter()
        .filter(|a| a.port == seed_addr.port())
        .collect();
    assert_eq!(seed_events[0].event, "started");
    assert_eq!(seed_events[0].left, 0);
    assert_eq!(seed_events.last().unwrap().event, "stopped");
    let leech: Vec<&str> = events
        .iter()
        .filter(|a| a.port != seed_addr.port())
        .map(|a| a.event.as_str())
        .collect();
    assert_eq!(leech.first(), Some(&"started"), "{events:?}");
    assert_eq!(leech.last(), Some(&"stopped"), "{events:?}");
    assert!(leech.contains(&"completed"), "{events:?}");
}

#[test]
fn fetch_finds_the_seeder_through_an_http_tracker() {
    finds_the_seeder_through(false);
}

#[test]
fn fetch_finds_the_seeder_through_a_udp_tracker() {
    finds_the_seeder_through(true);
}

#[test]
fn broken_tiers_are_passed_over() {
    let silent = FakeTracker::start(Mode::Silent);
    let garbage = FakeTracker::start(Mode::Garbage);
    let failing = FakeTracker::start(Mode::Failure);
    let erroring = FakeTracker::start(Mode::ServerError);
    let good = FakeTracker::start(Mode::Good);
    let s = setup(&[
        &[silent.udp_url(), garbage.http_url()],
        &[failing.udp_url(), erroring.http_url(), garbage.udp_url()],
        &[good.http_url()],
    ]);
    let (_seeder, _) = rt_seed(&s.torrent, &s.seed_dir, &["--tracker-timeout", "1"]);
    let (o, _) = fetch(&s, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_tree(&s.seed_dir.join("f.bin"), &s.out.join("f.bin"));
    let summary = json(&o);
    assert!(
        summary["tracker_failures"].as_u64().unwrap() >= 5,
        "{summary}"
    );
    for t in [&silent, &garbage, &failing, &erroring] {
        assert!(!t.events().is_empty(), "every broken tracker was tried");
    }
}

#[test]
fn direct_peers_work_with_every_tracker_dead_and_exit_is_not_held_up() {
    let silent = FakeTracker::start(Mode::Silent);
    let s = setup(&[&[silent.http_url(), silent.udp_url()]]);
    let (_seeder, addr) = rt_seed(&s.torrent, &s.seed_dir, &["--tracker-timeout", "1"]);
    let (o, wall) = fetch(&s, &[addr]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_same_tree(&s.seed_dir.join("f.bin"), &s.out.join("f.bin"));
    // Completion to exit includes the `stopped` announce: at most a second.
    let summary = json(&o);
    let transfer = Duration::from_secs_f64(summary["run_seconds"].as_f64().unwrap());
    assert!(
        wall < transfer + Duration::from_millis(1500),
        "exit took {:?} after a {transfer:?} run",
        wall
    );
}
