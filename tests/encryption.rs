//! MSE/PE (`--encryption`): RC4 both ways with libtorrent when it forces
//! encryption (a magnet's metadata connections included), our own policies
//! against each other, and the fallback to plaintext for a peer that
//! refuses the exchange. Every byte compared.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::single_file::SingleFile;
use common::*;

const LIMIT: Duration = Duration::from_secs(120);

/// Fetches `f` from `peer` with `--encryption policy`; returns the summary
/// after comparing every byte.
fn fetch(f: &SingleFile, name: &str, peer: SocketAddr, policy: &str) -> serde_json::Value {
    let out = f.tmp.path().join(name);
    let o = run_limited(
        &mut rt_fetch_cmd(
            &f.torrent,
            &out,
            free_port(),
            &[peer],
            &["--json", "--no-dht", "--encryption", policy],
        ),
        LIMIT,
    );
    assert!(
        o.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        std::fs::read(out.join("data.bin")).unwrap() == *f.data,
        "{name}: copy differs"
    );
    json(&o)
}

fn lt_seed_with(f: &SingleFile, encryption: &str) -> (Proc, SocketAddr) {
    let (p, port) = lt_seed_env(&f.torrent, &f.src, &[("LT_ENCRYPTION", encryption)]);
    (p, local(port))
}

#[test]
fn rc4_both_ways_with_libtorrent_forcing_encryption() {
    let f = SingleFile::new(6 << 20, 71, "256K");
    // libtorrent refuses plaintext both ways: the transfer can only be RC4.
    let (lt_seed, addr) = lt_seed_with(&f, "forced");
    let s = fetch(&f, "from-lt", addr, "require");
    assert!(s["rc4_connections"].as_u64().unwrap() >= 1, "{s}");
    drop(lt_seed);

    let (_seed, addr) = rt_seed(&f.torrent, &f.src, &["--encryption", "require"]);
    let save = f.tmp.path().join("to-lt");
    lt_leech_env(
        &f.torrent,
        &save,
        &addr.to_string(),
        &[("LT_ENCRYPTION", "forced")],
    );
    assert!(std::fs::read(save.join("data.bin")).unwrap() == *f.data);
}

#[test]
fn a_magnet_fetches_its_metadata_encrypted_from_libtorrent_forcing_it() {
    let f = SingleFile::new(2 << 20, 75, "64K");
    // libtorrent refuses plaintext: the metadata can only come over RC4.
    let (_lt, addr) = lt_seed_with(&f, "forced");
    let uri = format!(
        "magnet:?xt=urn:btih:{}&x.pe={addr}",
        f.meta.info_hash.to_hex()
    );
    for policy in ["require", "prefer"] {
        let out = f.tmp.path().join(format!("magnet-{policy}"));
        let mut cmd = rt_fetch_cmd(
            std::path::Path::new(&uri),
            &out,
            free_port(),
            &[],
            &["--json", "--no-dht", "--encryption", policy],
        );
        let s = json(&run_limited_ok(&mut cmd, LIMIT, "the magnet fetch"));
        assert_eq!(s["complete"], true, "{s}");
        assert!(s["rc4_connections"].as_u64().unwrap() >= 1, "{s}");
        assert!(
            std::fs::read(out.join("data.bin")).unwrap() == *f.data,
            "{policy}: copy differs"
        );
    }
}

#[test]
fn our_policies_meet_as_documented() {
    let f = SingleFile::new(3 << 20, 72, "64K");
    // (seeder, fetcher, RC4 expected)
    let cases = [
        ("require", "require", true),
        ("prefer-plain", "prefer", true),
        ("require", "prefer", true),
        ("prefer", "require", true),
        ("prefer", "prefer-plain", false),
        ("prefer-plain", "prefer-plain", false),
    ];
    for (seeder, fetcher, rc4) in cases {
        let (_seed, addr) = rt_seed(&f.torrent, &f.src, &["--encryption", seeder]);
        let s = fetch(&f, &format!("{seeder}-{fetcher}"), addr, fetcher);
        assert_eq!(
            s["rc4_connections"].as_u64().unwrap() >= 1,
            rc4,
            "seeder {seeder}, fetcher {fetcher}: {s}"
        );
    }
}

#[test]
fn prefer_falls_back_to_plaintext_for_a_peer_without_encryption() {
    let f = SingleFile::new(2 << 20, 73, "64K");
    let (_lt, addr) = lt_seed_with(&f, "disabled");
    let s = fetch(&f, "fallback", addr, "prefer");
    assert_eq!(s["rc4_connections"], 0, "{s}");
}

#[test]
fn require_refuses_a_plaintext_peer() {
    let f = SingleFile::new(1 << 20, 74, "64K");
    let (_seed, addr) = rt_seed(&f.torrent, &f.src, &["--encryption", "require"]);
    // A plaintext handshake gets the connection closed, no handshake back.
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    use std::io::{Read, Write};
    let mut hs = b"\x13BitTorrent protocol".to_vec();
    hs.extend_from_slice(&[0; 8]);
    hs.extend_from_slice(&f.meta.info_hash.0);
    hs.extend_from_slice(b"-XX0000-000000000000");
    s.write_all(&hs).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 68];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "a plaintext peer got an answer");
}
