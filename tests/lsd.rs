//! Local service discovery (BEP 14): two ringtorrent processes in two
//! network namespaces joined by a bridge find each other by multicast
//! and transfer, with no tracker, no DHT and no `--peer`; every byte
//! compared. Needs root and iproute2 (skipped with a message otherwise).

mod common;

use std::time::Duration;

use common::netns::{Cleanup, ip, must_ip, rt_in};
use common::*;

#[test]
fn two_namespaces_find_each_other_by_multicast() {
    let tag = std::process::id() % 100_000;
    let (ns_a, ns_b) = (format!("rt-lsd-a{tag}"), format!("rt-lsd-b{tag}"));
    if !ip(&["netns", "add", &ns_a]) {
        eprintln!("SKIPPED: cannot create network namespaces here (needs root and iproute2)");
        return;
    }
    let bridge = format!("rtlsd{tag}");
    let _net = Cleanup {
        namespaces: vec![ns_a.clone(), ns_b.clone()],
        links: vec![bridge.clone()],
    };
    must_ip(&["netns", "add", &ns_b]);
    if !ip(&[
        "link",
        "add",
        &bridge,
        "type",
        "bridge",
        "mcast_snooping",
        "0",
    ]) {
        eprintln!("SKIPPED: cannot create a bridge here");
        return;
    }
    must_ip(&["link", "set", &bridge, "up"]);
    let addrs = ["10.214.0.1", "10.214.0.2"];
    for (i, ns) in [&ns_a, &ns_b].into_iter().enumerate() {
        let (inner, outer) = (format!("rtl{i}x{tag}"), format!("rtl{i}y{tag}"));
        must_ip(&[
            "link", "add", &inner, "type", "veth", "peer", "name", &outer,
        ]);
        must_ip(&["link", "set", &inner, "netns", ns]);
        must_ip(&["link", "set", &outer, "master", &bridge, "up"]);
        must_ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", addrs[i]),
            "dev",
            &inner,
        ]);
        must_ip(&["-n", ns, "link", "set", &inner, "up", "multicast", "on"]);
        must_ip(&["-n", ns, "link", "set", "lo", "up"]);
        must_ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", &inner]);
    }

    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    let payload = make_multi(&seed, "tree", 6 * 1024 * 1024);
    let torrent = tmp.path().join("t.torrent");
    rt_create(&payload, &torrent, "256K");
    let _seeder = Proc::spawn(
        rt_in(&ns_a, "seed", &torrent, "--data-dir", &seed).args([
            "--no-resume",
            "--no-dht",
            "--listen",
            &format!("{}:6881", addrs[0]),
        ]),
        "seeder in namespace A",
    );
    std::thread::sleep(Duration::from_millis(500));
    let out = tmp.path().join("out");
    let o = run_limited_ok(
        rt_in(&ns_b, "fetch", &torrent, "--out-dir", &out)
            .args(["--no-resume", "--no-dht", "--json", "--timeout", "60"])
            .args(["--listen", &format!("{}:6882", addrs[1])]),
        Duration::from_secs(120),
        "fetch through LSD",
    );
    let summary = json(&o);
    assert_eq!(summary["complete"], true, "{summary}");
    assert_same_tree(&payload, &out.join("tree"));
}
