//! Magnet links (BEP 9): ringtorrent fetches the metadata from libtorrent
//! and serves its own to libtorrent; peers that send bad metadata, offer
//! too much of it or push pieces nobody asked for are refused and counted.
//! Every payload byte is compared.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::fake_peer::{message, read_message};
use common::*;

const LIMIT: Duration = Duration::from_secs(180);

fn magnet(hash: &str, peers: &[SocketAddr]) -> String {
    let mut m = format!("magnet:?xt=urn:btih:{hash}");
    for p in peers {
        m.push_str(&format!("&x.pe={p}"));
    }
    m
}

/// `ringtorrent fetch MAGNET`; returns its `--json` summary.
fn rt_fetch_magnet(uri: &str, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut cmd = rt_fetch_cmd(Path::new(uri), out, free_port(), &[], extra);
    cmd.arg("--json");
    json(&run_limited_ok(&mut cmd, LIMIT, &format!("fetch of {uri}")))
}

/// A single-file and a multi-file payload with their torrents, the
/// multi-file one with enough pieces for its metadata to span several
/// 16 KiB pieces.
fn payloads(root: &Path) -> Vec<(std::path::PathBuf, std::path::PathBuf)> {
    let seed = root.join("seed");
    let file = seed.join("file.bin");
    write_random(&file, 3 * 1024 * 1024 + 77, 91);
    let tree = make_multi(&seed, "tree", 12 * 1024 * 1024 + 5);
    let mut out = Vec::new();
    for (payload, piece) in [(file, "64K"), (tree, "16K")] {
        let torrent = root.join(format!(
            "{}.torrent",
            payload.file_name().unwrap().to_string_lossy()
        ));
        rt_create(&payload, &torrent, piece);
        out.push((payload, torrent));
    }
    out
}

#[test]
fn ringtorrent_fetches_magnets_from_libtorrent() {
    let tmp = tempfile::tempdir().unwrap();
    for (payload, torrent) in payloads(tmp.path()) {
        let (_lt, addr) = lt_seed(&torrent, &tmp.path().join("seed"));
        let hash = info_hash(&torrent);
        let out = tmp.path().join(format!("out-{hash}"));
        let saved = tmp.path().join(format!("{hash}.torrent"));
        let summary = rt_fetch_magnet(
            &magnet(&hash, &[addr]),
            &out,
            &["--save-torrent", saved.to_str().unwrap()],
        );
        assert_eq!(summary["complete"], true, "{summary}");
        assert_eq!(summary["protocol_errors"], 0, "{summary}");
        assert_eq!(summary["metadata_sources"], 1, "{summary}");
        assert!(
            summary["metadata_seconds"].as_f64().unwrap() < 30.0,
            "{summary}"
        );
        assert_same_tree(&payload, &out.join(payload.file_name().unwrap()));
        // The saved torrent is the same torrent, and libtorrent reads it.
        assert_eq!(info_hash(&saved), hash);
        let lt_info = json(&run_ok(&mut lt(&["info", saved.to_str().unwrap()])));
        assert_eq!(lt_info["info_hash"], hash.as_str());
    }
}

#[test]
fn libtorrent_fetches_magnets_from_ringtorrent() {
    let tmp = tempfile::tempdir().unwrap();
    for (payload, torrent) in payloads(tmp.path()) {
        let (_rt, addr) = rt_seed(&torrent, &tmp.path().join("seed"), &[]);
        let hash = info_hash(&torrent);
        let out = tmp.path().join(format!("lt-{hash}"));
        let port = free_port().to_string();
        let uri = magnet(&hash, &[addr]);
        run_limited_ok(
            &mut lt(&[
                "magnet",
                &uri,
                out.to_str().unwrap(),
                &port,
                &addr.to_string(),
            ]),
            LIMIT,
            "libtorrent's magnet fetch",
        );
        assert_same_tree(&payload, &out.join(payload.file_name().unwrap()));
    }
}

/// v2-only torrents by their `btmh` link alone (BEP 52): the `info`
/// dictionary is checked against the SHA-256 info-hash, and the piece
/// layers come with hash requests, ours to libtorrent and libtorrent's to
/// us. A file of 577 pieces takes two requests of up to 512 hashes; a tree
/// has files shorter than a piece, which need no layer.
#[test]
fn v2_magnets_move_both_ways_with_libtorrent() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    let file = seed.join("v2file.bin");
    write_random(&file, 9 * 1024 * 1024 + 77, 92);
    let tree = make_multi(&seed, "v2tree", 5 * 1024 * 1024 + 3);
    for (payload, piece) in [(file, "16K"), (tree, "64K")] {
        let name = payload.file_name().unwrap().to_string_lossy().into_owned();
        let torrent = tmp.path().join(format!("{name}.torrent"));
        run_ok(rt_create_cmd(&payload, &torrent, piece).arg("--v2"));
        let lt_info = json(&run_ok(&mut lt(&["info", torrent.to_str().unwrap()])));
        let v2 = lt_info["info_hash_v2"].as_str().unwrap().to_owned();
        let btmh = |peer: SocketAddr| format!("magnet:?xt=urn:btmh:1220{v2}&x.pe={peer}");

        let (_lt, addr) = lt_seed(&torrent, &seed);
        let out = tmp.path().join(format!("rt-{name}"));
        let saved = tmp.path().join(format!("rt-{name}.torrent"));
        let summary = rt_fetch_magnet(
            &btmh(addr),
            &out,
            &["--save-torrent", saved.to_str().unwrap()],
        );
        assert_eq!(summary["complete"], true, "{name}: {summary}");
        assert_eq!(summary["protocol_errors"], 0, "{name}: {summary}");
        assert_eq!(summary["hash_failures"], 0, "{name}: {summary}");
        assert_same_tree(&payload, &out.join(&name));
        // The saved torrent carries the layers fetched: libtorrent loads it
        // as the same v2 torrent.
        let saved_info = json(&run_ok(&mut lt(&["info", saved.to_str().unwrap()])));
        assert_eq!(saved_info["info_hash_v2"], v2.as_str(), "{name}");
        drop(_lt);

        let (_rt, addr) = rt_seed(&torrent, &seed, &[]);
        let out = tmp.path().join(format!("lt-{name}"));
        let port = free_port().to_string();
        run_limited_ok(
            &mut lt(&[
                "magnet",
                &btmh(addr),
                out.to_str().unwrap(),
                &port,
                &addr.to_string(),
            ]),
            LIMIT,
            "libtorrent's v2 magnet fetch",
        );
        assert_same_tree(&payload, &out.join(&name));
    }
}

/// A v2 torrent file without its `piece layers` (libtorrent writes such
/// files before it has the layers) is fetched like a `btmh` link whose
/// metadata is known: the layers come from the peers with hash requests.
#[test]
fn a_v2_torrent_file_without_piece_layers_gets_them_from_peers() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    let tree = make_multi(&seed, "bare", 2 * 1024 * 1024 + 9);
    let torrent = tmp.path().join("full.torrent");
    run_ok(rt_create_cmd(&tree, &torrent, "16K").arg("--v2"));
    let bytes = std::fs::read(&torrent).unwrap();
    let at = bytes
        .windows(15)
        .position(|w| w == b"12:piece layers")
        .unwrap();
    let bare = tmp.path().join("bare.torrent");
    std::fs::write(&bare, [&bytes[..at], b"e"].concat()).unwrap();
    // Alone, it cannot be checked piece by piece.
    let o = Command::new(bin()).arg("info").arg(&bare).output().unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("piece layer is missing"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let (_lt, addr) = lt_seed(&torrent, &seed);
    let out = tmp.path().join("out");
    let o = run_limited_ok(
        &mut rt_fetch_cmd(&bare, &out, free_port(), &[addr], &["--json"]),
        LIMIT,
        "fetching a torrent file without its piece layers",
    );
    let summary = json(&o);
    assert_eq!(summary["complete"], true, "{summary}");
    assert_eq!(summary["hash_failures"], 0, "{summary}");
    assert_same_tree(&tree, &out.join("bare"));
}

/// What a fake peer does with the metadata.
#[derive(Clone, Copy)]
enum Fake {
    /// Offers the right size, answers every request with flipped bytes.
    Liar,
    /// Offers more than the cap.
    Huge,
    /// Sends piece 0 before anyone asked.
    Pusher,
    /// Gives the metadata, then answers hash requests with wrong hashes.
    LayerLiar,
}

/// A peer on `listener` that speaks the handshakes and `ut_metadata`,
/// misbehaving as `fake` says, for `info` (the real info dictionary).
fn fake_peer(
    listener: TcpListener,
    fake: Fake,
    hash: [u8; 20],
    info: Arc<Vec<u8>>,
    stop: Arc<AtomicBool>,
) {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let info = info.clone();
            std::thread::spawn(move || {
                let _ = fake_conn(s, fake, hash, &info);
            });
        }
    });
}

fn fake_conn(mut s: TcpStream, fake: Fake, hash: [u8; 20], info: &[u8]) -> std::io::Result<()> {
    use std::io::Read;
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs)?;
    let mut hs = common::fake_peer::handshake(&hash, b"-FK0001-metadata0000");
    hs[25] |= 0x10; // extension protocol
    s.write_all(&hs)?;
    let size = match fake {
        Fake::Huge => 100 << 20,
        Fake::Liar | Fake::Pusher | Fake::LayerLiar => info.len(),
    };
    let ext = format!("d1:md11:ut_metadatai3ee13:metadata_sizei{size}ee");
    let mut payload = vec![0u8];
    payload.extend_from_slice(ext.as_bytes());
    let data_msg = |piece: usize, flip: bool| {
        let start = piece * 16384;
        let end = (start + 16384).min(info.len());
        let mut p = vec![1u8]; // our id for ut_metadata, as we announced it to them
        p.extend_from_slice(
            format!(
                "d8:msg_typei1e5:piecei{piece}e10:total_sizei{}ee",
                info.len()
            )
            .as_bytes(),
        );
        let mut chunk = info[start..end].to_vec();
        if flip {
            for b in &mut chunk {
                *b ^= 0x5a;
            }
        }
        p.extend_from_slice(&chunk);
        message(20, &p)
    };
    // The pusher sends a piece before it even offers the metadata.
    if let Fake::Pusher = fake {
        s.write_all(&data_msg(0, false))?;
    }
    s.write_all(&message(20, &payload))?;
    loop {
        let Some((id, body)) = read_message(&mut s)? else {
            continue;
        };
        if id == 21 && body.len() == 48 {
            if let Fake::LayerLiar = fake {
                let count = u32::from_be_bytes(body[40..44].try_into().unwrap());
                let mut answer = body.clone();
                answer.extend(std::iter::repeat_n(0x11, count as usize * 32));
                s.write_all(&message(22, &answer))?;
            }
            continue;
        }
        if id != 20 || body.first() != Some(&3) {
            continue;
        }
        let text = String::from_utf8_lossy(&body[1..]).into_owned();
        if let Some(rest) = text.split("5:piecei").nth(1) {
            let piece: usize = rest.split('e').next().unwrap().parse().unwrap();
            match fake {
                Fake::Liar => s.write_all(&data_msg(piece, true))?,
                Fake::LayerLiar => s.write_all(&data_msg(piece, false))?,
                Fake::Huge | Fake::Pusher => {}
            }
        }
    }
}

/// An honest `ringtorrent seed` of `torrent` that comes up 1.5 s from now,
/// so that a fake peer is asked first and alone; its port, and the thread
/// that starts it.
fn seed_later(torrent: &Path, dir: &Path) -> (u16, std::thread::JoinHandle<Proc>) {
    let port = free_port();
    let (t, dir) = (torrent.to_path_buf(), dir.to_path_buf());
    let seeder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        Proc::spawn(
            Command::new(bin())
                .arg("seed")
                .arg(&t)
                .arg("--data-dir")
                .arg(&dir)
                .env("RINGTORRENT_STATE_DIR", state_dir(&dir))
                .args(["--listen", &local(port).to_string()]),
            "ringtorrent seed",
        )
    });
    (port, seeder)
}

#[test]
fn bad_metadata_peers_are_refused_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let (payload, torrent) = payloads(tmp.path()).pop().unwrap();
    let hash = info_hash(&torrent);
    let info = {
        let bytes = std::fs::read(&torrent).unwrap();
        let at = bytes.windows(6).position(|w| w == b"4:info").unwrap() + 6;
        Arc::new(bytes[at..bytes.len() - 1].to_vec())
    };
    assert!(info.len() > 16384, "the metadata spans several pieces");
    let raw = info_hash_bytes(&torrent);
    for (fake, counted) in [
        (Fake::Liar, "metadata_hash_failed"),
        (Fake::Huge, "metadata_too_large"),
        (Fake::Pusher, "metadata_unrequested"),
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let fake_addr = l.local_addr().unwrap();
        fake_peer(l, fake, raw, info.clone(), stop.clone());
        let (seed_port, seeder) = seed_later(&torrent, &tmp.path().join("seed"));
        let out = tmp.path().join(format!("out-{counted}"));
        let summary = rt_fetch_magnet(&magnet(&hash, &[fake_addr, local(seed_port)]), &out, &[]);
        drop(seeder.join().unwrap());
        stop.store(true, Ordering::Relaxed);
        assert_eq!(summary["metadata_refused"][counted], 1, "{summary}");
        assert_eq!(summary["metadata_sources"], 1, "{summary}");
        assert_eq!(summary["complete"], true, "{summary}");
        assert_same_tree(&payload, &out.join("tree"));
    }
}

/// A peer that gives a v2 torrent's metadata but lies about a piece layer
/// is dropped for it, and the layer comes from the honest seeder.
#[test]
fn a_peer_lying_about_a_piece_layer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let seed_dir = tmp.path().join("seed");
    let payload = seed_dir.join("layered.bin");
    write_random(&payload, 9 * 1024 * 1024 + 5, 93);
    let torrent = tmp.path().join("layered.torrent");
    run_ok(rt_create_cmd(&payload, &torrent, "16K").arg("--v2"));
    let v2 = json(&run_ok(&mut lt(&["info", torrent.to_str().unwrap()])))["info_hash_v2"]
        .as_str()
        .unwrap()
        .to_owned();
    let info = {
        let bytes = std::fs::read(&torrent).unwrap();
        let at = bytes.windows(6).position(|w| w == b"4:info").unwrap() + 6;
        let tail = bytes
            .windows(15)
            .position(|w| w == b"12:piece layers")
            .unwrap();
        Arc::new(bytes[at..tail].to_vec())
    };
    let raw: [u8; 20] =
        std::array::from_fn(|i| u8::from_str_radix(&v2[2 * i..2 * i + 2], 16).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_addr = l.local_addr().unwrap();
    fake_peer(l, Fake::LayerLiar, raw, info, stop.clone());
    let (seed_port, seeder) = seed_later(&torrent, &seed_dir);
    let out = tmp.path().join("out");
    let uri = format!(
        "magnet:?xt=urn:btmh:1220{v2}&x.pe={fake_addr}&x.pe={}",
        local(seed_port)
    );
    let summary = rt_fetch_magnet(&uri, &out, &[]);
    drop(seeder.join().unwrap());
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        summary["metadata_refused"]["hashes_bad_layer"], 1,
        "{summary}"
    );
    assert_eq!(summary["complete"], true, "{summary}");
    assert_same_tree(&payload, &out.join("layered.bin"));
}

#[test]
fn private_torrents_offer_no_metadata_and_no_pex() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("seed/p.bin");
    write_random(&data, 200_000, 5);
    let torrent = tmp.path().join("p.torrent");
    run_ok(
        Command::new(bin())
            .arg("create")
            .arg(&data)
            .arg("-o")
            .arg(&torrent)
            .arg("--private"),
    );
    let (_seed, addr) = rt_seed(&torrent, &tmp.path().join("seed"), &[]);
    let raw = info_hash_bytes(&torrent);
    let (mut s, theirs) = common::fake_peer::connect_and_handshake_ext(addr, &raw).unwrap();
    assert!(theirs[25] & 0x10 != 0, "extension protocol offered");
    let ext = common::fake_peer::their_ext_handshake(&mut s);
    assert!(!ext.contains("ut_metadata"), "{ext}");
    assert!(!ext.contains("ut_pex"), "{ext}");
    assert!(!ext.contains("metadata_size"), "{ext}");
    // Asked anyway, it hangs up: we did not offer the extension.
    let mut req = vec![1u8];
    req.extend_from_slice(b"d8:msg_typei0e5:piecei0ee");
    s.write_all(&message(20, &req)).unwrap();
    assert!(common::fake_peer::closed_within(
        &mut s,
        Duration::from_secs(10)
    ));
    // And so for peer exchange.
    let (mut s, _) = common::fake_peer::connect_and_handshake_ext(addr, &raw).unwrap();
    common::fake_peer::send_pex(&mut s).unwrap();
    assert!(common::fake_peer::closed_within(
        &mut s,
        Duration::from_secs(10)
    ));
}

#[test]
fn transmission_remote_adds_a_magnet_to_the_daemon() {
    use common::daemon::{Daemon, transmission_remote};
    let tmp = tempfile::tempdir().unwrap();
    let (payload, torrent) = payloads(tmp.path()).pop().unwrap();
    let (_lt, addr) = lt_seed(&torrent, &tmp.path().join("seed"));
    let hash = info_hash(&torrent);
    let d = Daemon::start(&tmp.path().join("d"), &[]);
    let out = transmission_remote(d.rpc_port, &["-a", &magnet(&hash, &[addr])]);
    assert!(out.contains("success"), "{out}");
    d.wait_for(
        &["percentDone", "hashString", "name"],
        LIMIT,
        "magnet download",
        |t| t.len() == 1 && t[0]["percentDone"] == 1.0,
    );
    let t = d.torrents(&["hashString", "name", "id"]);
    assert_eq!(t[0]["hashString"], hash.as_str());
    assert_eq!(t[0]["name"], "tree");
    assert_same_tree(&payload, &d.download_dir.join("tree"));
    // Adding it again is a duplicate, not a second torrent.
    let again = d.call(
        "torrent-add",
        serde_json::json!({"filename": magnet(&hash, &[addr])}),
    );
    assert!(
        again["arguments"]["torrent-duplicate"].is_object(),
        "{again}"
    );
}
