use super::*;
use crate::metainfo::{FileAttr, FileEntry};

/// Two 40-byte files in pieces of 16: piece 2 spans both.
fn info() -> Info {
    let file = |name: &str, offset| FileEntry {
        path: vec!["top".into(), name.into()],
        length: 40,
        offset,
        attr: FileAttr::default(),
    };
    Info {
        name: "top".into(),
        piece_length: 16,
        pieces: vec![[0; 20]; 5],
        pieces_v2: Vec::new(),
        v2_layers: Vec::new(),
        files: vec![file("a", 0), file("b", 40)],
        private: false,
        multi_file: true,
        total_length: 80,
    }
}

fn stamp(mtime_ns: i64) -> Option<FileStamp> {
    Some(FileStamp {
        length: 40,
        mtime_ns,
    })
}

fn state(pieces: &[u32]) -> ResumeState {
    let mut have = Bitfield::new(5);
    for &p in pieces {
        have.set(p);
    }
    ResumeState {
        info_hash: InfoHash([7; 20]),
        root: PathBuf::from("/data/top"),
        have,
        files: vec![stamp(1), stamp(2)],
    }
}

#[test]
fn round_trips() {
    let s = state(&[0, 3, 4]);
    assert_eq!(ResumeState::decode(&s.encode()).unwrap(), s);
    let mut s = s;
    s.files[1] = None;
    assert_eq!(ResumeState::decode(&s.encode()).unwrap(), s);
}

#[test]
fn damaged_files_are_refused() {
    let good = state(&[1]).encode();
    assert!(matches!(
        ResumeState::decode(&good[..good.len() - 1]),
        Err(ResumeError::Decode(_))
    ));
    for (from, to, field) in [
        (&b"7:versioni1e"[..], &b"7:versioni9e"[..], None),
        (b"6:piecesi5e", b"6:piecesi9e", Some("have")),
        (b"6:piecesi5e", b"6:piecesi-1e", Some("pieces")),
        (b"9:info-hash20:", b"9:info-hash19:", Some("info-hash")),
    ] {
        let text = good.clone();
        let at = text
            .windows(from.len())
            .position(|w| w == from)
            .expect("field present");
        let mut bad = text[..at].to_vec();
        bad.extend_from_slice(to);
        bad.extend_from_slice(&text[at + from.len()..]);
        match (ResumeState::decode(&bad), field) {
            (Err(ResumeError::Version(9)), None) => {}
            (Err(ResumeError::Field(f)), Some(want)) => assert_eq!(f, want),
            // A shortened hash shifts every later byte: not bencode any more.
            (Err(ResumeError::Decode(_)), Some("info-hash")) => {}
            (other, _) => panic!("{from:?} -> {to:?}: {other:?}"),
        }
    }
}

#[test]
fn a_fetch_trusts_files_that_were_there_at_full_length() {
    let s = state(&[0, 1]);
    let info = info();
    let root = Path::new("/data/top");
    // The mtime moved (our own writes after the save): still trusted.
    let now = [stamp(5), stamp(6)];
    let have = s
        .usable(&InfoHash([7; 20]), &info, root, &now, &[true, true], false)
        .unwrap();
    assert_eq!(have.ones().collect::<Vec<_>>(), [0, 1]);
    // File b was recreated: it claims nothing, so that is fine too.
    assert!(
        s.usable(&InfoHash([7; 20]), &info, root, &now, &[true, false], false)
            .is_ok()
    );
    // File a was recreated: its pieces cannot be trusted.
    assert_eq!(
        s.usable(&InfoHash([7; 20]), &info, root, &now, &[false, true], false),
        Err(Mismatch::Missing("top/a".into()))
    );
}

#[test]
fn a_fetch_wants_finished_files_unchanged() {
    // Pieces 0..=2 cover all of file a (0..40) and the start of b.
    let s = state(&[0, 1, 2]);
    let info = info();
    let (root, hash, both) = (Path::new("/data/top"), InfoHash([7; 20]), [true, true]);
    // b is still being written: its mtime may move.
    assert!(
        s.usable(&hash, &info, root, &[stamp(1), stamp(9)], &both, false)
            .is_ok()
    );
    // a was finished when saved: a new mtime means it was changed.
    assert_eq!(
        s.usable(&hash, &info, root, &[stamp(9), stamp(2)], &both, false),
        Err(Mismatch::Changed("top/a".into()))
    );
}

#[test]
fn a_state_for_something_else_is_not_used() {
    let s = state(&[0]);
    let info = info();
    let now = [stamp(1), stamp(2)];
    let both = [true, true];
    let root = Path::new("/data/top");
    let other = InfoHash([8; 20]);
    assert_eq!(
        s.usable(&other, &info, root, &now, &both, false),
        Err(Mismatch::Identity)
    );
    assert_eq!(
        s.usable(
            &InfoHash([7; 20]),
            &info,
            Path::new("/x/top"),
            &now,
            &both,
            false
        ),
        Err(Mismatch::Identity)
    );
}

#[test]
fn a_seed_wants_every_file_unchanged() {
    let s = state(&[0, 1, 2, 3, 4]);
    let info = info();
    let root = Path::new("/data/top");
    let hash = InfoHash([7; 20]);
    let both = [true, true];
    assert!(
        s.usable(&hash, &info, root, &[stamp(1), stamp(2)], &both, true)
            .is_ok()
    );
    assert_eq!(
        s.usable(&hash, &info, root, &[stamp(1), stamp(3)], &both, true),
        Err(Mismatch::Changed("top/b".into()))
    );
    let short = Some(FileStamp {
        length: 39,
        mtime_ns: 1,
    });
    assert_eq!(
        s.usable(&hash, &info, root, &[short, stamp(2)], &both, true),
        Err(Mismatch::Changed("top/a".into()))
    );
}

#[test]
fn file_names_differ_by_directory() {
    let h = InfoHash([1; 20]);
    let a = ResumeState::file_name(&h, Path::new("/a/top"));
    let b = ResumeState::file_name(&h, Path::new("/b/top"));
    assert_ne!(a, b);
    assert!(a.starts_with(&h.to_hex()) && a.ends_with(".resume"));
}
