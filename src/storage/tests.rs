use std::os::unix::fs::{FileTypeExt, symlink};

use super::*;
use crate::metainfo::{FileAttr, FileEntry};

fn info(files: &[(&[&str], u64, bool)], piece_length: u32) -> Info {
    let mut offset = 0;
    let files: Vec<FileEntry> = files
        .iter()
        .map(|(path, length, pad)| {
            let mut p = vec!["top".to_owned()];
            p.extend(path.iter().map(|s| s.to_string()));
            let f = FileEntry {
                path: p,
                length: *length,
                offset,
                attr: FileAttr {
                    pad: *pad,
                    ..FileAttr::default()
                },
            };
            offset += length;
            f
        })
        .collect();
    Info {
        name: "top".into(),
        piece_length,
        pieces: vec![[0; 20]; offset.div_ceil(u64::from(piece_length)) as usize],
        pieces_v2: Vec::new(),
        v2_layers: Vec::new(),
        files,
        private: false,
        multi_file: true,
        total_length: offset,
    }
}

#[test]
fn fetch_creates_the_tree_with_final_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let i = info(
        &[
            (&["a", "b", "c.bin"], 5000, false),
            (&[".pad", "3"], 3, true),
            (&["empty"], 0, false),
            (&["z"], 7, false),
        ],
        1024,
    );
    let s = Storage::open(&i, tmp.path(), OpenMode::Fetch).unwrap();
    assert_eq!(
        std::fs::metadata(tmp.path().join("top/a/b/c.bin"))
            .unwrap()
            .len(),
        5000
    );
    assert_eq!(
        std::fs::metadata(tmp.path().join("top/empty"))
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        std::fs::metadata(tmp.path().join("top/z")).unwrap().len(),
        7
    );
    assert!(
        !tmp.path().join("top/.pad").exists(),
        "pad files are never written"
    );
    assert!(!s.is_present(1) && s.is_present(0));
    assert!(s.open_file(0, FileMode::Write).is_ok());
    // Fresh files hold nothing: the check reads nothing and finds nothing.
    let have = s.check(&i, 2, &AtomicBool::new(false)).unwrap();
    assert_eq!(have.count_ones(), 0);
}

#[test]
fn refuses_symlinks_planted_in_the_payload_path() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(out.join("top")).unwrap();
    symlink(&victim, out.join("top/file")).unwrap();
    let i = info(&[(&["file"], 100, false)], 1024);
    assert!(
        matches!(Storage::open(&i, &out, OpenMode::Fetch), Err(StorageError::Symlink(p)) if p.ends_with("top/file"))
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");

    // A symlinked directory component.
    let out2 = tmp.path().join("out2");
    std::fs::create_dir_all(&out2).unwrap();
    symlink(outside.path(), out2.join("top")).unwrap();
    assert!(
        matches!(Storage::open(&i, &out2, OpenMode::Fetch), Err(StorageError::Symlink(p)) if p.ends_with("top"))
    );
    assert!(
        !outside.path().join("file").exists(),
        "nothing was created through the link"
    );
}

#[test]
fn refuses_non_regular_files() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("top/dir-in-the-way")).unwrap();
    let i = info(&[(&["dir-in-the-way"], 10, false)], 1024);
    assert!(matches!(
        Storage::open(&i, tmp.path(), OpenMode::Fetch),
        Err(StorageError::NotRegular(_))
    ));

    let fifo = tmp.path().join("top/fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    let i = info(&[(&["fifo"], 10, false)], 1024);
    // Must not block on the FIFO, and must not accept it.
    assert!(matches!(
        Storage::open(&i, tmp.path(), OpenMode::Fetch),
        Err(StorageError::NotRegular(_))
    ));

    std::fs::write(tmp.path().join("top/plain"), b"x").unwrap();
    let i = info(&[(&["plain", "below"], 10, false)], 1024);
    assert!(matches!(
        Storage::open(&i, tmp.path(), OpenMode::Fetch),
        Err(StorageError::NotDirectory(_))
    ));
}

#[test]
fn refuses_torrents_that_cannot_fit_before_creating_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let mut i = info(&[(&["huge"], 1 << 49, false)], 1 << 28);
    i.pieces.truncate(1);
    match Storage::open(&i, tmp.path(), OpenMode::Fetch) {
        Err(StorageError::NoSpace { need, .. }) => assert_eq!(need, 1 << 49),
        other => panic!("expected NoSpace, got {:?}", other.err()),
    }
    assert!(!tmp.path().join("top").exists());
}

#[test]
fn check_finds_exactly_the_good_pieces() {
    let tmp = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
    let mut i = info(&[(&["a"], 3000, false), (&["b"], 7000, false)], 1024);
    i.pieces = data.chunks(1024).map(crate::hash::sha1).collect();
    std::fs::create_dir_all(tmp.path().join("top")).unwrap();
    std::fs::write(tmp.path().join("top/a"), &data[..3000]).unwrap();
    let mut b = data[3000..].to_vec();
    b[5000] ^= 1; // torrent offset 8000: piece 7
    std::fs::write(tmp.path().join("top/b"), &b).unwrap();
    for mode in [OpenMode::Seed, OpenMode::Fetch] {
        let s = Storage::open(&i, tmp.path(), mode).unwrap();
        let have = s.check(&i, 3, &AtomicBool::new(false)).unwrap();
        let missing: Vec<u32> = (0..i.piece_count()).filter(|&p| !have.get(p)).collect();
        assert_eq!(missing, vec![7], "{mode:?}");
    }
    // Seeding never changed a byte.
    assert_eq!(std::fs::read(tmp.path().join("top/b")).unwrap(), b);
}

#[test]
fn seed_with_missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let i = info(&[(&["a"], 3000, false)], 1024);
    assert!(matches!(
        Storage::open(&i, tmp.path(), OpenMode::Seed),
        Err(StorageError::NoData(_))
    ));
}

#[test]
fn sync_flushes_only_files_written_since_the_last_one() {
    let tmp = tempfile::tempdir().unwrap();
    let i = info(&[(&["a"], 100, false), (&["b"], 100, false)], 1024);
    let s = Storage::open(&i, tmp.path(), OpenMode::Fetch).unwrap();
    let pending = |s: &Storage| -> Vec<bool> {
        s.written
            .iter()
            .map(|w| w.load(std::sync::atomic::Ordering::Acquire))
            .collect()
    };
    assert_eq!(pending(&s), [false, false]);
    s.mark_written(1);
    s.mark_written(7); // out of range: ignored
    assert_eq!(pending(&s), [false, true]);
    s.sync().unwrap();
    assert_eq!(pending(&s), [false, false]);
    // The state on disk is still right: still in place, full length.
    assert!(s.still_in_place());
    assert_eq!(s.stamps()[1].unwrap().length, 100);
    std::fs::remove_dir_all(tmp.path().join("top")).unwrap();
    assert!(!s.still_in_place(), "a removed payload is noticed");
}
