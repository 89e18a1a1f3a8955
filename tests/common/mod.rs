//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ringtorrent"))
}

/// Debian's Python, which has the `libtorrent` module (pyenv's does not).
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// The libtorrent helper script; panics with the fix if libtorrent is missing,
/// so a machine without it fails loudly instead of skipping interop.
pub fn lt_tool() -> Vec<String> {
    let ok = Command::new(SYSTEM_PYTHON)
        .args(["-c", "import libtorrent"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "python3-libtorrent is not installed for {SYSTEM_PYTHON}: run scripts/test (it installs it)"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/lt_tool.py");
    vec![SYSTEM_PYTHON.into(), script.to_string_lossy().into_owned()]
}

/// Runs a command and returns its output, panicking with its stderr on failure.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn write_random(path: &Path, len: usize, seed: u64) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, random_bytes(len, seed)).unwrap();
}

/// A multi-file payload: odd sizes, a zero-length file, nested directories.
/// Returns the payload directory (`parent/name`).
pub fn make_multi(parent: &Path, name: &str, big: usize) -> PathBuf {
    let root = parent.join(name);
    write_random(&root.join("big.bin"), big, 1);
    write_random(&root.join("a/odd-1.dat"), 100_003, 2);
    write_random(&root.join("a/b/c/deep.dat"), 16 * 1024 + 1, 3);
    write_random(&root.join("a/b/one-byte"), 1, 4);
    write_random(&root.join("z/last.dat"), 777_777, 5);
    std::fs::write(root.join("a/empty"), b"").unwrap();
    root
}

/// Every file under `a` has the same bytes under `b`, and `b` has no extra
/// regular files.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let ma = std::fs::metadata(a).unwrap_or_else(|e| panic!("{}: {e}", a.display()));
    if ma.is_file() {
        let (x, y) = (
            std::fs::read(a).unwrap(),
            std::fs::read(b).unwrap_or_else(|e| panic!("{}: {e}", b.display())),
        );
        assert!(
            x == y,
            "{} and {} differ ({} vs {} bytes)",
            a.display(),
            b.display(),
            x.len(),
            y.len()
        );
        return;
    }
    let names = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(a),
        names(b),
        "directory listings of {} and {} differ",
        a.display(),
        b.display()
    );
    for n in names(a) {
        assert_same_tree(&a.join(&n), &b.join(&n));
    }
}
