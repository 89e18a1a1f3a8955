//! Replays every input in `fuzz/regressions/<target>/` (crashes the fuzzers
//! found, and hostile samples) through the fuzz target bodies.

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} reproduces a crash",
            path.display()
        );
        n += 1;
    }
    n
}

#[test]
fn bencode_regressions() {
    assert!(replay("bencode", ringtorrent::fuzzing::bencode) > 0);
}

#[test]
fn metainfo_regressions() {
    assert!(replay("metainfo", ringtorrent::fuzzing::metainfo) > 0);
}

#[test]
fn magnet_regressions() {
    assert!(replay("magnet", ringtorrent::fuzzing::magnet) > 0);
}

#[test]
fn wire_regressions() {
    assert!(replay("wire", ringtorrent::fuzzing::wire) > 0);
}

#[test]
fn http_tracker_regressions() {
    assert!(replay("http_tracker", ringtorrent::fuzzing::http_tracker) > 0);
}

#[test]
fn udp_tracker_regressions() {
    assert!(replay("udp_tracker", ringtorrent::fuzzing::udp_tracker) > 0);
}

#[test]
fn rpc_regressions() {
    assert!(replay("rpc", ringtorrent::fuzzing::rpc) > 0);
}

#[test]
fn metadata_regressions() {
    assert!(replay("metadata", ringtorrent::fuzzing::metadata) > 0);
}

#[test]
fn krpc_regressions() {
    assert!(replay("krpc", ringtorrent::fuzzing::krpc) > 0);
}

#[test]
fn mse_regressions() {
    assert!(replay("mse", ringtorrent::fuzzing::mse) > 0);
}

#[test]
fn tracker_server_regressions() {
    assert!(replay("tracker_server", ringtorrent::fuzzing::tracker_server) > 0);
}
