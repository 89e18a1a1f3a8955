use proptest::prelude::*;

use super::*;
use crate::bencode::OwnedValue;

/// A torrent with `files` of (path, length); single-file when `files` is None.
fn torrent(info: OwnedValue) -> Vec<u8> {
    let mut root = OwnedValue::dict();
    root.insert("announce", "http://t/announce");
    root.insert("info", info);
    root.to_bytes()
}

fn multi_info(files: &[(&[&str], i64)], piece_length: i64) -> OwnedValue {
    let total = files
        .iter()
        .fold(0i64, |acc, f| acc.saturating_add(f.1.max(0)));
    let list: Vec<OwnedValue> = files
        .iter()
        .map(|(path, len)| {
            let mut d = OwnedValue::dict();
            d.insert("length", *len);
            d.insert(
                "path",
                path.iter()
                    .map(|c| OwnedValue::from(*c))
                    .collect::<Vec<_>>(),
            );
            d
        })
        .collect();
    let mut info = OwnedValue::dict();
    info.insert("files", list);
    info.insert("name", "top");
    info.insert("piece length", piece_length);
    let count = (total as u64)
        .div_ceil(piece_length.max(1) as u64)
        .min(1000) as usize;
    info.insert("pieces", vec![0u8; count * 20]);
    info
}

fn single_info(len: i64, piece_length: i64) -> OwnedValue {
    let mut info = OwnedValue::dict();
    info.insert("length", len);
    info.insert("name", "file.bin");
    info.insert("piece length", piece_length);
    let count = (len.max(0) as u64).div_ceil(piece_length.max(1) as u64) as usize;
    info.insert("pieces", vec![0u8; count * 20]);
    info
}

fn parse(info: OwnedValue) -> Result<Metainfo, MetainfoError> {
    Metainfo::from_bytes(&torrent(info))
}

fn with(mut info: OwnedValue, key: &str, value: impl Into<OwnedValue>) -> OwnedValue {
    info.insert(key, value);
    info
}

#[test]
fn single_file() {
    let m = parse(single_info(100_000, 32768)).unwrap();
    assert!(!m.info.multi_file);
    assert_eq!(m.info.piece_count(), 4);
    assert_eq!(m.info.piece_len(3), 100_000 - 3 * 32768);
    assert_eq!(m.info.files[0].path, vec!["file.bin"]);
    assert_eq!(
        m.tracker_tiers(),
        vec![vec!["http://t/announce".to_string()]]
    );
    assert_eq!(m.info_hash, InfoHash::of(&m.info_bytes));
}

#[test]
fn info_hash_is_over_the_exact_bytes() {
    // Unsorted keys inside info: re-encoding would sort them and change the hash.
    let info: &[u8] =
        b"d4:name1:a6:lengthi1e12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae";
    let mut file = b"d4:info".to_vec();
    file.extend_from_slice(info);
    file.push(b'e');
    let m = Metainfo::from_bytes(&file).unwrap();
    assert_eq!(m.info_bytes, info);
    assert_eq!(m.info_hash.0, crate::hash::sha1(info));
}

#[test]
fn multi_file_offsets_pad_files_and_private() {
    let info = multi_info(
        &[
            (&["a"], 5),
            (&[".pad", "11"], 11),
            (&["d", "b"], 0),
            (&[".pad", "11"], 11),
            (&["d", "c"], 3),
        ],
        16,
    );
    let mut info = with(info, "private", 1);
    if let OwnedValue::Dict(d) = &mut info
        && let Some(OwnedValue::List(files)) = d.get_mut(&b"files"[..])
    {
        files[1].insert("attr", "p");
        files[3].insert("attr", "p");
        files[4].insert("attr", "x");
    }
    let m = parse(info).unwrap();
    let i = &m.info;
    assert!(i.private && i.multi_file);
    assert_eq!(i.total_length, 30);
    let offsets: Vec<u64> = i.files.iter().map(|f| f.offset).collect();
    assert_eq!(offsets, vec![0, 5, 16, 16, 27]);
    assert!(i.files[1].attr.pad && !i.files[1].is_stored());
    assert!(i.files[4].attr.executable);
    assert_eq!(
        i.files[4].relative_path(),
        std::path::PathBuf::from("top/d/c")
    );
}

#[test]
fn announce_list_tiers_supersede_announce() {
    let mut root = OwnedValue::dict();
    root.insert("announce", "http://ignored/");
    let tiers: Vec<OwnedValue> = vec![
        vec![OwnedValue::from("udp://a:1"), OwnedValue::from("udp://b:2")].into(),
        Vec::<OwnedValue>::new().into(),
        vec![OwnedValue::from("http://c/")].into(),
    ];
    root.insert("announce-list", tiers);
    root.insert("info", single_info(1, 16384));
    let m = Metainfo::from_bytes(&root.to_bytes()).unwrap();
    assert_eq!(
        m.tracker_tiers(),
        vec![
            vec!["udp://a:1".to_string(), "udp://b:2".into()],
            vec!["http://c/".into()]
        ]
    );
    root.insert("announce-list", "nope");
    assert!(matches!(
        Metainfo::from_bytes(&root.to_bytes()),
        Err(MetainfoError::WrongType { field, .. }) if field == "announce-list"
    ));
}

#[test]
fn path_utf8_twin_wins_and_bad_utf8_is_refused() {
    let mut info = multi_info(&[(&["x"], 4)], 16);
    if let OwnedValue::Dict(d) = &mut info
        && let Some(OwnedValue::List(files)) = d.get_mut(&b"files"[..])
    {
        files[0].insert("path", vec![OwnedValue::Bytes(vec![0xff, 0xfe])]);
    }
    assert!(
        matches!(parse(info.clone()), Err(MetainfoError::NotUtf8(f)) if f == "info.files[0].path[0]")
    );
    if let OwnedValue::Dict(d) = &mut info
        && let Some(OwnedValue::List(files)) = d.get_mut(&b"files"[..])
    {
        files[0].insert("path.utf-8", vec![OwnedValue::from("ok.txt")]);
    }
    assert_eq!(
        parse(info).unwrap().info.files[0].path,
        vec!["top", "ok.txt"]
    );
}

fn unsafe_field(r: Result<Metainfo, MetainfoError>) -> String {
    match r {
        Err(MetainfoError::UnsafePath { field, .. }) => field,
        other => panic!("expected UnsafePath, got {other:?}"),
    }
}

#[test]
fn hostile_paths_are_refused() {
    for bad in ["", ".", "..", "a/b", "/etc", "a\0b", &"n".repeat(256)] {
        let info = multi_info(&[(&["ok"], 1), (&["d", bad], 1)], 16);
        assert_eq!(
            unsafe_field(parse(info)),
            "info.files[1].path[1]",
            "component {bad:?}"
        );
        let info = with(single_info(1, 16), "name", bad);
        assert_eq!(unsafe_field(parse(info)), "info.name", "name {bad:?}");
    }
    let info = multi_info(&[(&[], 1)], 16);
    assert_eq!(unsafe_field(parse(info)), "info.files[0].path");
}

#[test]
fn colliding_paths_are_refused() {
    let info = multi_info(&[(&["a", "b"], 1), (&["a", "b"], 2)], 16);
    assert!(matches!(parse(info), Err(MetainfoError::DuplicatePath(p)) if p == "top/a/b"));
    let info = multi_info(&[(&["a"], 1), (&["a", "b"], 2)], 16);
    assert!(matches!(parse(info), Err(MetainfoError::FileDirConflict(p)) if p == "top/a"));
}

#[test]
fn sizes_are_checked() {
    assert!(matches!(
        parse(single_info(10, 0)),
        Err(MetainfoError::PieceLength(0))
    ));
    assert!(matches!(
        parse(single_info(10, -5)),
        Err(MetainfoError::PieceLength(-5))
    ));
    let huge = i64::from(MAX_PIECE_LENGTH) + 1;
    assert!(
        matches!(parse(single_info(10, huge)), Err(MetainfoError::PieceLength(p)) if p == huge)
    );
    assert!(
        matches!(parse(single_info(-1, 16)), Err(MetainfoError::NegativeLength { field, value: -1 }) if field == "info.length")
    );
    assert!(matches!(
        parse(single_info(0, 16)),
        Err(MetainfoError::Empty)
    ));
    let info = multi_info(&[(&["a"], 5), (&["b"], -3)], 16);
    assert!(
        matches!(parse(info), Err(MetainfoError::NegativeLength { field, .. }) if field == "info.files[1].length")
    );
    // Lengths that overflow u64 when summed.
    let mut info = multi_info(
        &[(&["a"], i64::MAX), (&["b"], i64::MAX), (&["c"], i64::MAX)],
        1 << 20,
    );
    info.insert("pieces", vec![0u8; 20]);
    assert!(matches!(parse(info), Err(MetainfoError::TooLarge)));
    // Petabytes with a plausible-looking hash list.
    let mut info = single_info(1, 1 << 28);
    info.insert("length", 1i64 << 51);
    assert!(matches!(parse(info), Err(MetainfoError::TooLarge)));
}

#[test]
fn pieces_must_match_the_total() {
    let info = with(single_info(100, 16), "pieces", vec![0u8; 21]);
    assert!(matches!(parse(info), Err(MetainfoError::PiecesLength(21))));
    let info = with(single_info(100, 16), "pieces", vec![0u8; 20 * 6]);
    assert!(matches!(
        parse(info),
        Err(MetainfoError::PieceCount {
            found: 6,
            expected: 7,
            ..
        })
    ));
    let info = with(single_info(100, 16), "pieces", vec![0u8; 20 * 8]);
    assert!(matches!(
        parse(info),
        Err(MetainfoError::PieceCount {
            found: 8,
            expected: 7,
            ..
        })
    ));
}

#[test]
fn structure_errors_name_the_field() {
    let mut both = single_info(10, 16);
    both.insert("files", Vec::<OwnedValue>::new());
    assert!(matches!(parse(both), Err(MetainfoError::LengthAndFiles)));
    let mut neither = single_info(10, 16);
    if let OwnedValue::Dict(d) = &mut neither {
        d.remove(&b"length"[..]);
    }
    assert!(matches!(
        parse(neither),
        Err(MetainfoError::NoLengthOrFiles)
    ));
    assert!(matches!(
        parse(multi_info(&[], 16)),
        Err(MetainfoError::NoFiles)
    ));
    let info = with(single_info(10, 16), "piece length", "16");
    assert!(
        matches!(parse(info), Err(MetainfoError::WrongType { field, .. }) if field == "info.piece length")
    );
    assert!(matches!(
        Metainfo::from_bytes(b"le"),
        Err(MetainfoError::WrongType { .. })
    ));
    assert!(matches!(Metainfo::from_bytes(b"de"), Err(MetainfoError::Missing(f)) if f == "info"));
    assert!(
        matches!(Metainfo::from_bytes(b"d4:infoi1ee"), Err(MetainfoError::WrongType { field, .. }) if field == "info")
    );
    let mut bytes = torrent(single_info(10, 16));
    bytes.push(b'x');
    assert!(matches!(
        Metainfo::from_bytes(&bytes),
        Err(MetainfoError::Bencode(_))
    ));
}

fn component() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _.-]{1,12}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

proptest! {
    /// Any valid multi-file torrent parses back to what was written.
    #[test]
    fn valid_torrents_round_trip(
        files in proptest::collection::btree_map(
            proptest::collection::vec(component(), 1..4), 0u64..100_000, 1..12),
        piece_exp in 14u32..22,
        private in any::<bool>(),
    ) {
        // Drop paths that are prefixes of others (they would be both file and dir).
        let paths: Vec<_> = files.keys().cloned().collect();
        let files: Vec<(Vec<String>, u64)> = files
            .into_iter()
            .filter(|(p, _)| !paths.iter().any(|q| q.len() > p.len() && q.starts_with(p)))
            .collect();
        let total: u64 = files.iter().map(|f| f.1).sum();
        prop_assume!(total > 0);
        let piece_length = 1u32 << piece_exp;
        let list: Vec<OwnedValue> = files.iter().map(|(p, len)| {
            let mut d = OwnedValue::dict();
            d.insert("length", *len as i64);
            d.insert("path", p.iter().map(|c| OwnedValue::from(c.as_str())).collect::<Vec<_>>());
            d
        }).collect();
        let mut info = OwnedValue::dict();
        info.insert("files", list);
        info.insert("name", "root");
        info.insert("piece length", i64::from(piece_length));
        let count = total.div_ceil(u64::from(piece_length)) as usize;
        let pieces: Vec<u8> = (0..count * 20).map(|i| i as u8).collect();
        info.insert("pieces", pieces.clone());
        if private {
            info.insert("private", 1);
        }
        let m = parse(info).unwrap();
        prop_assert_eq!(m.info.private, private);
        prop_assert_eq!(m.info.total_length, total);
        prop_assert_eq!(m.info.pieces.concat(), pieces);
        prop_assert_eq!(m.info.files.len(), files.len());
        let mut offset = 0;
        for (f, (p, len)) in m.info.files.iter().zip(&files) {
            prop_assert_eq!(&f.path[1..], &p[..]);
            prop_assert_eq!(f.length, *len);
            prop_assert_eq!(f.offset, offset);
            offset += len;
        }
    }

    /// Random mutations of a valid torrent never panic the parser.
    #[test]
    fn mutated_torrents_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = torrent(multi_info(&[(&["a", "b"], 40_000), (&["c"], 3)], 16384));
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let _ = Metainfo::from_bytes(&bytes);
    }
}
