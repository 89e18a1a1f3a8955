//! IPv6 peers (BEP 7): one `[::]` listener takes both families, `--peer
//! [::1]:P` dials over IPv6, trackers' `peers6` are used, and libtorrent
//! trades with us over IPv6 both ways. Skipped, saying so, where the host
//! has no IPv6 loopback.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::single_file::SingleFile;
use common::tracker::{FakeTracker, Mode};
use common::*;

fn have_ipv6() -> bool {
    let ok = std::net::TcpListener::bind("[::1]:0").is_ok();
    if !ok {
        eprintln!("skipped: this host has no IPv6 loopback (::1)");
    }
    ok
}

fn v6(port: u16) -> SocketAddr {
    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))
}

/// `ringtorrent seed` listening on `[::]:P`, once it accepts on both
/// families.
fn seed_dual_stack(torrent: &Path, data: &Path) -> (Proc, u16) {
    let port = free_port();
    let mut p = rt_seed_at(
        &[torrent.to_path_buf()],
        data,
        &format!("[::]:{port}"),
        &["--no-dht", "--no-lsd"],
    );
    wait_listening(v6(port), &mut p, Duration::from_secs(60));
    wait_listening(local(port), &mut p, Duration::from_secs(5));
    (p, port)
}

fn fetch(f: &SingleFile, out: &str, listen: SocketAddr, peers: &[SocketAddr]) -> Vec<u8> {
    let out = f.tmp.path().join(out);
    let mut cmd = Command::new(bin());
    cmd.arg("fetch")
        .arg(&f.torrent)
        .arg("--out-dir")
        .arg(&out)
        .env("RINGTORRENT_STATE_DIR", out.with_extension("state"))
        .args(["--listen", &listen.to_string(), "--no-dht", "--no-lsd"]);
    for p in peers {
        cmd.args(["--peer", &p.to_string()]);
    }
    run_limited_ok(&mut cmd, Duration::from_secs(120), "fetch");
    std::fs::read(out.join("data.bin")).unwrap()
}

#[test]
fn one_listener_takes_ipv4_and_ipv6_peers() {
    if !have_ipv6() {
        return;
    }
    let f = SingleFile::new(3 << 20, 61, "64K");
    let (_seed, port) = seed_dual_stack(&f.torrent, &f.src);
    let over_v6 = fetch(&f, "v6", v6(0), &[v6(port)]);
    assert!(over_v6 == *f.data, "IPv6 copy differs");
    let over_v4 = fetch(&f, "v4", local(0), &[local(port)]);
    assert!(over_v4 == *f.data, "IPv4 copy differs");
}

#[test]
fn peers6_from_a_tracker_are_dialled() {
    if !have_ipv6() {
        return;
    }
    let tracker = FakeTracker::start(Mode::Peers6);
    let f = SingleFile::new(2 << 20, 62, "64K");
    let torrent = f.tmp.path().join("tracked.torrent");
    rt_create_with_trackers(
        &f.src.join("data.bin"),
        &torrent,
        "64K",
        &[&[tracker.http_url()]],
    );
    let meta = ringtorrent::metainfo::Metainfo::from_file(&torrent).unwrap();
    let tracked = SingleFile { torrent, meta, ..f };
    let (_seed, _) = seed_dual_stack(&tracked.torrent, &tracked.src);
    // No --peer: the seeder is known only as [::1]:P from `peers6`.
    let got = fetch(&tracked, "out", v6(0), &[]);
    assert!(got == *tracked.data, "copy differs");
}

#[test]
fn libtorrent_trades_with_us_over_ipv6_both_ways() {
    if !have_ipv6() {
        return;
    }
    let f = SingleFile::new(3 << 20, 63, "64K");
    // libtorrent seeds on [::1], we fetch.
    let (lt_seed, lt_port) = lt_seed_env(&f.torrent, &f.src, &[("LT_HOST", "::1")]);
    let got = fetch(&f, "from-lt", v6(0), &[v6(lt_port)]);
    assert!(got == *f.data, "copy from libtorrent differs");
    drop(lt_seed);

    // We seed on [::], libtorrent fetches from [::1].
    let (_seed, port) = seed_dual_stack(&f.torrent, &f.src);
    let save = f.tmp.path().join("lt-out");
    let peer = v6(port).to_string();
    lt_leech_env(&f.torrent, &save, &peer, &[("LT_HOST", "::1")]);
    assert!(std::fs::read(save.join("data.bin")).unwrap() == *f.data);
}
