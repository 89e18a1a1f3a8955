//! Disks that fail: full, read-only, removed under a download, truncated
//! under a seeder. Each gives a clear error and a non-zero exit where the
//! work cannot go on, keeps the resume state, and a later run completes
//! once the cause is gone.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::fake_peer::{self, Behavior, FakeSeeder};
use common::single_file::{SingleFile, saved_state};
use common::*;

const LIMIT: Duration = Duration::from_secs(90);

fn fixture(len: usize) -> SingleFile {
    SingleFile::new(len, 5, "64K")
}

/// A seeder paced to about `mib_s` MiB/s, so a test can act mid-transfer.
fn slow_seeder(f: &SingleFile, mib_s: u64) -> FakeSeeder {
    f.fake_seeder(
        Behavior::Honest,
        [127, 0, 0, 1],
        Duration::from_micros(16_000 / mib_s),
    )
}

fn state_dir(f: &SingleFile) -> PathBuf {
    f.tmp.path().join("state")
}

fn fetch(f: &SingleFile, out: &Path, peer: std::net::SocketAddr) -> Command {
    let mut c = rt_fetch_cmd(&f.torrent, out, free_port(), &[peer], &["--json"]);
    c.arg("--state-dir").arg(state_dir(f));
    c
}

fn saved_pieces(f: &SingleFile) -> u32 {
    saved_state(&state_dir(f))
        .expect("the resume state is intact")
        .have
        .count_ones()
}

fn failed_with(o: &Output, expect: &str) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "succeeded; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(expect), "expected {expect:?} in: {stderr}");
    stderr
}

/// A tmpfs of `size` at `dir` (root only), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, options: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn wait_for_data(seeder: &FakeSeeder, p: &mut Proc) {
    let start = Instant::now();
    while seeder.served.lock().unwrap().concat().iter().sum::<u32>() < 64 {
        assert!(start.elapsed() < Duration::from_secs(30), "no data flowed");
        assert!(p.child.try_wait().unwrap().is_none(), "fetch exited early");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_output(mut p: Proc) -> Output {
    let start = Instant::now();
    while p.child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < LIMIT, "fetch did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stderr = Vec::new();
    std::io::Read::read_to_end(p.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    Output {
        status: p.child.wait().unwrap(),
        stdout: Vec::new(),
        stderr,
    }
}

#[test]
fn a_disk_that_fills_up_mid_download() {
    let f = fixture(8 * 1024 * 1024);
    let mnt = f.tmp.path().join("small");
    let Some(_fs) = Tmpfs::mount(&mnt, "size=12m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root); ENOSPC is not tested");
        return;
    };
    let seeder = slow_seeder(&f, 4);
    let out = mnt.join("out");
    let mut p = Proc::spawn(&mut fetch(&f, &out, seeder.addr), "fetch");
    wait_for_data(&seeder, &mut p);
    std::thread::sleep(Duration::from_millis(1200)); // let a resume save happen
    // Take every free byte.
    let filler = mnt.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .output();
    let o = wait_output(p);
    failed_with(&o, "No space left on device");
    let saved = saved_pieces(&f);
    assert!(saved > 0, "no progress was saved");

    // Space again: the next run completes, fetching none of the saved pieces.
    std::fs::remove_file(&filler).unwrap();
    seeder.next_epoch();
    let o = run_limited(&mut fetch(&f, &out, seeder.addr), LIMIT);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["resumed_pieces"], saved);
    assert_same_tree(&f.src.join("data.bin"), &out.join("data.bin"));
}

#[test]
fn a_torrent_larger_than_the_disk_is_refused_before_anything_is_written() {
    // 64 TiB in 256 MiB pieces: valid metainfo, but no disk here holds it.
    let pieces = (64u64 << 40) / (256 << 20);
    let mut t =
        b"d4:infod6:lengthi70368744177664e4:name4:huge12:piece lengthi268435456e6:pieces".to_vec();
    t.extend_from_slice(format!("{}:", pieces * 20).as_bytes());
    t.resize(t.len() + pieces as usize * 20, 7);
    t.extend_from_slice(b"ee");
    let tmp = tempfile::tempdir().unwrap();
    let torrent = tmp.path().join("huge.torrent");
    std::fs::write(&torrent, t).unwrap();
    let out = tmp.path().join("out");
    let mut cmd = rt_fetch_cmd(&torrent, &out, free_port(), &[local(1)], &[]);
    let o = run_limited(&mut cmd, LIMIT);
    failed_with(&o, "not enough space");
    assert!(!out.join("huge").exists(), "a file was created anyway");
}

#[test]
fn a_read_only_output_directory() {
    let f = fixture(256 * 1024);
    let out = f.tmp.path().join("ro");
    let _fs = Tmpfs::mount(&out, "ro,size=1m");
    if _fs.is_none() {
        // Not root: permissions make it read-only.
        std::fs::create_dir_all(&out).unwrap();
        let mut perm = std::fs::metadata(&out).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o555);
        std::fs::set_permissions(&out, perm).unwrap();
    }
    let o = run_limited(&mut fetch(&f, &out, local(1)), LIMIT);
    let err = failed_with(&o, &out.display().to_string());
    assert!(
        err.contains("Read-only file system") || err.contains("Permission denied"),
        "{err}"
    );
}

#[test]
fn an_output_directory_removed_mid_download() {
    let f = fixture(8 * 1024 * 1024);
    let seeder = slow_seeder(&f, 4);
    let parent = f.tmp.path().join("parent");
    let out = parent.join("out");
    let mut p = Proc::spawn(&mut fetch(&f, &out, seeder.addr), "fetch");
    wait_for_data(&seeder, &mut p);
    std::fs::remove_dir_all(&parent).unwrap();
    let o = wait_output(p);
    failed_with(&o, "was removed while downloading into it");

    // The next run starts over in a fresh directory and completes.
    let o = run_limited(&mut fetch(&f, &out, seeder.addr), LIMIT);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["resumed_pieces"], 0);
    assert_same_tree(&f.src.join("data.bin"), &out.join("data.bin"));
}

#[test]
fn a_file_truncated_under_a_running_seeder() {
    let f = fixture(4 * 1024 * 1024);
    let file = f.src.join("data.bin");
    let (mut seeder, addr) = rt_seed(&f.torrent, &f.src, &[]);
    // Half the payload disappears after the seeder checked it.
    let half = 2 * 1024 * 1024;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(half)
        .unwrap();
    let out = f.tmp.path().join("out");
    let mut cmd = fetch(&f, &out, addr);
    cmd.args(["--timeout", "3"]);
    let o = run_limited(&mut cmd, LIMIT);
    failed_with(&o, "nothing received for 3 s");
    assert!(
        seeder.child.try_wait().unwrap().is_none(),
        "the seeder died: {}",
        seeder.stderr()
    );
    let saved = saved_pieces(&f);
    assert_eq!(saved, 32, "the intact half was saved");

    // The data is back: the download completes from where it stopped.
    std::fs::write(&file, &*f.data).unwrap();
    let o = run_limited(&mut fetch(&f, &out, addr), LIMIT);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["resumed_pieces"], saved);
    assert_same_tree(&file, &out.join("data.bin"));
    let (st, _) = seeder.terminate(Duration::from_secs(5));
    assert!(st.success());
    assert!(
        seeder.stderr().contains("shorter than the torrent says"),
        "the read error was not reported"
    );
}

/// A leecher connection that is unchoked and may request.
fn unchoked_leecher(f: &SingleFile, addr: std::net::SocketAddr) -> std::net::TcpStream {
    let (mut s, _) = fake_peer::connect_and_handshake(addr, &f.meta.info_hash.0).unwrap();
    s.write_all(&fake_peer::message(2, &[])).unwrap();
    fake_peer::read_until(&mut s, 1);
    s
}

#[test]
fn a_file_truncated_under_pieces_being_uploaded() {
    const BLOCK: u32 = 16384;
    let f = fixture(4 * 1024 * 1024);
    let file = f.src.join("data.bin");
    let (mut seeder, addr) = rt_seed(&f.torrent, &f.src, &[]);
    let last = f.meta.info.piece_count() - 1;
    let at = |piece: u32, begin: u32| (piece * 65536 + begin) as usize;

    // The last piece is in the page cache (just checked), so it is served
    // from a mapping of the file, and stays mapped for its next blocks.
    let mut s = unchoked_leecher(&f, addr);
    s.write_all(&fake_peer::request(last, 0, BLOCK)).unwrap();
    let body = fake_peer::read_until(&mut s, 7);
    assert_eq!(&body[8..], &f.data[at(last, 0)..at(last, BLOCK)]);

    // The file loses its second half: the mapped pages are gone. The next
    // block of that piece cannot be sent; the connection is dropped
    // rather than the seeder crashing or sending something else.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(2 * 1024 * 1024)
        .unwrap();
    s.write_all(&fake_peer::request(last, BLOCK, BLOCK))
        .unwrap();
    assert!(
        fake_peer::closed_within(&mut s, Duration::from_secs(10)),
        "a block of the truncated piece was sent"
    );

    // A new connection: the lost piece is refused (its size is checked
    // again), the intact half is still served.
    let mut s = unchoked_leecher(&f, addr);
    s.write_all(&fake_peer::request(last, BLOCK, BLOCK))
        .unwrap();
    s.write_all(&fake_peer::request(0, BLOCK, BLOCK)).unwrap();
    let body = fake_peer::read_until(&mut s, 7);
    assert_eq!(
        &body[..8],
        &[0, 0, 0, 0, 0, 0, 0x40, 0],
        "not the intact block"
    );
    assert_eq!(&body[8..], &f.data[at(0, BLOCK)..at(0, 2 * BLOCK)]);

    let (st, _) = seeder.terminate(Duration::from_secs(5));
    assert!(st.success(), "{}", seeder.stderr());
    let stderr = seeder.stderr();
    assert!(
        stderr.contains("a file shrank under pieces being uploaded"),
        "{stderr}"
    );
    assert!(stderr.contains("shorter than the torrent says"), "{stderr}");
}

#[test]
fn symlinks_planted_in_the_payload_path_are_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let seed = tmp.path().join("seed");
    let payload = make_multi(&seed, "tree", 100_000);
    let torrent = tmp.path().join("t.torrent");
    rt_create(&payload, &torrent, "16K");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("precious"), b"keep me").unwrap();

    // A directory of the payload that is a symlink to elsewhere.
    let out = tmp.path().join("out1");
    std::fs::create_dir_all(out.join("tree")).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("tree/a")).unwrap();
    // No peer is needed: the payload path is refused before any transfer.
    let fetch_into = |out: &Path| {
        run_limited(
            &mut rt_fetch_cmd(&torrent, out, free_port(), &[local(1)], &[]),
            LIMIT,
        )
    };
    failed_with(&fetch_into(&out), "is a symlink; refusing to follow it");

    // A file of the payload that is a symlink to a file elsewhere.
    let out = tmp.path().join("out2");
    std::fs::create_dir_all(out.join("tree")).unwrap();
    std::os::unix::fs::symlink(outside.join("precious"), out.join("tree/big.bin")).unwrap();
    failed_with(&fetch_into(&out), "is a symlink; refusing to follow it");

    // Where a file should be, a directory: not replaced, not written into.
    let out = tmp.path().join("out3");
    std::fs::create_dir_all(out.join("tree/big.bin")).unwrap();
    failed_with(&fetch_into(&out), "is not a regular file");

    assert_eq!(std::fs::read(outside.join("precious")).unwrap(), b"keep me");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
}

/// Fetches from a fake seeder into `out` with `--write-mode mode` (and odd
/// file sizes, so heads and tails of spans go through the page cache);
/// returns how the summary says pieces were written.
fn fetch_with_write_mode(f: &SingleFile, out: &Path, mode: &str) -> String {
    let seeder = f.fake_seeder(Behavior::Honest, [127, 0, 0, 1], Duration::ZERO);
    let mut cmd = rt_fetch_cmd(
        &f.torrent,
        out,
        free_port(),
        &[seeder.addr],
        &["--json", "--write-mode", mode],
    );
    let o = run_limited(&mut cmd, LIMIT);
    assert!(
        o.status.success(),
        "{mode}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_same_tree(&f.src.join("data.bin"), &out.join("data.bin"));
    json(&o)["write_path"].as_str().unwrap().to_owned()
}

#[test]
fn both_write_paths_on_a_disk_file_system() {
    // The temp dir is on the machine's disk (ext4 here), which takes O_DIRECT.
    let f = SingleFile::new(6 * 1024 * 1024 + 4097, 8, "1M");
    for (mode, path) in [("direct", "direct"), ("buffered", "buffered")] {
        let out = f.tmp.path().join(format!("out-{mode}"));
        assert_eq!(fetch_with_write_mode(&f, &out, mode), path, "{mode}");
    }
}

/// Whether the file system at `dir` accepts `O_DIRECT`.
fn takes_direct_io(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join("direct-probe");
    let ok = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe)
        .is_ok();
    let _ = std::fs::remove_file(probe);
    ok
}

#[test]
fn both_write_paths_on_tmpfs() {
    // tmpfs refused O_DIRECT before Linux 6.6: there a direct download
    // falls back to the page cache. Either way every byte must arrive.
    let f = SingleFile::new(3 * 1024 * 1024 + 99, 9, "256K");
    let mnt = f.tmp.path().join("tmpfs");
    let Some(_fs) = Tmpfs::mount(&mnt, "size=16m") else {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); its write paths are not tested"
        );
        return;
    };
    let expect = if takes_direct_io(&mnt) {
        "direct"
    } else {
        "buffered"
    };
    assert_eq!(
        fetch_with_write_mode(&f, &mnt.join("out-d"), "direct"),
        expect
    );
    assert_eq!(
        fetch_with_write_mode(&f, &mnt.join("out-b"), "buffered"),
        "buffered"
    );
}
