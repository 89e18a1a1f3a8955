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
    let m = Metainfo::from_bytes(&root.to_bytes()).unwrap();
    assert_eq!(fields(&m), ["announce-list"]);
    assert_eq!(m.tracker_tiers(), [vec!["http://ignored/".to_string()]]);
}

fn set_path(info: &mut OwnedValue, file: usize, key: &str, path: Vec<OwnedValue>) {
    if let OwnedValue::Dict(d) = info
        && let Some(OwnedValue::List(files)) = d.get_mut(&b"files"[..])
    {
        files[file].insert(key, path);
    }
}

fn fields(m: &Metainfo) -> Vec<&str> {
    m.warnings.iter().map(|w| w.field.as_str()).collect()
}

#[test]
fn path_utf8_twin_wins_and_bad_utf8_is_replaced() {
    let mut info = multi_info(&[(&["x"], 4)], 16);
    set_path(
        &mut info,
        0,
        "path",
        vec![OwnedValue::Bytes(b"a\xff\xfe.txt".to_vec())],
    );
    let m = parse(info.clone()).unwrap();
    assert_eq!(m.info.files[0].path, vec!["top", "a__.txt"]);
    assert_eq!(fields(&m), ["info.files[0].path[0]"]);
    assert_eq!(m.renamed[&0].to_string(), "top/a\u{fffd}\u{fffd}.txt");
    set_path(&mut info, 0, "path.utf-8", vec![OwnedValue::from("ok.txt")]);
    let m = parse(info).unwrap();
    assert_eq!(m.info.files[0].path, vec!["top", "ok.txt"]);
    assert!(m.warnings.is_empty() && m.renamed.is_empty());
}

#[test]
fn names_are_decoded_with_the_torrents_encoding() {
    // "中文" in GBK.
    let mut root = OwnedValue::dict();
    root.insert("encoding", "GBK");
    root.insert(
        "info",
        with(single_info(1, 16), "name", vec![0xd6u8, 0xd0, 0xce, 0xc4]),
    );
    let m = Metainfo::from_bytes(&root.to_bytes()).unwrap();
    assert_eq!(m.info.name, "中文");
    assert_eq!(m.info.files[0].path, vec!["中文"]);
    assert!(matches!(
        m.warnings[0].fix,
        Fix::Decoded {
            encoding: "GBK",
            ..
        }
    ));
}

#[test]
fn hostile_paths_are_mended_inside_the_torrent() {
    let long = "n".repeat(300) + ".mkv";
    let cases: [(&str, &[&str]); 6] = [
        ("", &["top", "d", "f"]),
        (".", &["top", "d", "f"]),
        ("..", &["top", "d", "f"]),
        ("a/b", &["top", "d", "a_b", "f"]),
        ("/etc", &["top", "d", "_etc", "f"]),
        ("a\0b", &["top", "d", "a_b", "f"]),
    ];
    for (bad, want) in cases {
        let info = multi_info(&[(&["ok"], 1), (&["d", bad, "f"], 1)], 16);
        let m = parse(info).unwrap();
        assert_eq!(m.info.files[1].path, want, "component {bad:?}");
        assert_eq!(fields(&m), ["info.files[1].path[1]"], "component {bad:?}");
        assert_eq!(m.renamed[&1].to_string(), format!("top/d/{bad}/f"));
    }
    let info = multi_info(&[(&["..", "..", "etc", "passwd"], 1)], 16);
    assert_eq!(
        parse(info).unwrap().info.files[0].path,
        ["top", "etc", "passwd"]
    );
    let info = multi_info(&[(&[long.as_str()], 1)], 16);
    let path = &parse(info).unwrap().info.files[0].path;
    assert_eq!(path[1].len(), MAX_NAME_BYTES);
    assert!(path[1].ends_with("nnn.mkv"));
    // Nothing left of a path, or of the name.
    let m = parse(multi_info(&[(&[], 1)], 16)).unwrap();
    assert_eq!(m.info.files[0].path, ["top", "_"]);
    for bad in ["", ".", ".."] {
        let m = parse(with(single_info(1, 16), "name", bad)).unwrap();
        assert_eq!(m.info.name, m.info_hash.to_hex(), "name {bad:?}");
        assert_eq!(m.info.files[0].path, [m.info_hash.to_hex()]);
    }
    let m = parse(with(single_info(1, 16), "name", "a/../b")).unwrap();
    assert_eq!(m.info.name, "a_.._b");
}

fn paths_of(info: OwnedValue) -> Vec<String> {
    let m = parse(info).unwrap();
    m.info.files.iter().map(|f| f.display_path()).collect()
}

#[test]
fn colliding_paths_get_numbered_names() {
    let info = multi_info(
        &[
            (&["a", "b.txt"], 1),
            (&["a", "b.txt"], 2),
            (&["a", "b.txt"], 3),
        ],
        16,
    );
    let m = parse(info.clone()).unwrap();
    assert_eq!(fields(&m), ["info.files[1].path", "info.files[2].path"]);
    assert_eq!(
        paths_of(info),
        ["top/a/b.txt", "top/a/b.1.txt", "top/a/b.2.txt"]
    );
    // A file where another needs a directory moves aside.
    let info = multi_info(&[(&["a"], 1), (&["a", "b"], 2)], 16);
    assert_eq!(paths_of(info), ["top/a.1", "top/a/b"]);
    // Mending can make collisions too: "x/." is "x".
    let info = multi_info(&[(&["x"], 1), (&["x", "."], 2), (&["x.1"], 1)], 16);
    assert_eq!(paths_of(info), ["top/x", "top/x.2", "top/x.1"]);
}

#[test]
fn many_files_of_one_name_are_numbered_in_linear_time() {
    let files: Vec<(&[&str], i64)> = vec![(&["same"][..], 1); 20_000];
    // Quadratic numbering would take minutes here.
    let paths = paths_of(multi_info(&files, 16384));
    assert_eq!(paths[19_999], "top/same.19999");
    let distinct: std::collections::HashSet<_> = paths.iter().collect();
    assert_eq!(distinct.len(), 20_000);
}

#[test]
fn pad_files_need_no_path_and_symlinks_are_not_stored() {
    let mut info = multi_info(&[(&["a"], 5), (&["p"], 11), (&["l"], 0), (&["b"], 1)], 16);
    if let OwnedValue::Dict(d) = &mut info
        && let Some(OwnedValue::List(files)) = d.get_mut(&b"files"[..])
    {
        if let OwnedValue::Dict(f) = &mut files[1] {
            f.remove(&b"path"[..]);
        }
        files[1].insert("attr", "p");
        files[2].insert("attr", "l");
        files[2].insert("symlink path", vec![OwnedValue::from("..")]);
    }
    let m = parse(info).unwrap();
    assert_eq!(m.info.files[1].path, ["top", ".pad", "11"]);
    assert!(!m.info.files[2].is_stored());
    assert_eq!(fields(&m), ["info.files[2].path"]);
    assert!(matches!(m.warnings[0].fix, Fix::Symlink));
    // A file with no path that is not padding is refused.
    let mut info = multi_info(&[(&["a"], 5)], 16);
    if let OwnedValue::Dict(d) = &mut info
        && let Some(OwnedValue::List(files)) = d.get_mut(&b"files"[..])
        && let OwnedValue::Dict(f) = &mut files[0]
    {
        f.remove(&b"path"[..]);
    }
    assert!(matches!(parse(info), Err(MetainfoError::Missing(f)) if f == "info.files[0].path"));
}

#[test]
fn malformed_optional_keys_are_ignored_with_a_warning() {
    let mut root = OwnedValue::dict();
    root.insert("announce", 7);
    root.insert(
        "announce-list",
        vec![
            OwnedValue::from("udp://single:1"),
            OwnedValue::from(3),
            vec![OwnedValue::from("http://ok/"), OwnedValue::from(5)].into(),
        ],
    );
    root.insert("url-list", OwnedValue::dict());
    root.insert("creation date", "yesterday");
    root.insert("comment", 1);
    root.insert(
        "info",
        with(with(single_info(1, 16), "private", "1"), "attr", 1),
    );
    let mut bytes = root.to_bytes();
    bytes.extend_from_slice(b"\r\n");
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(
        m.tracker_tiers(),
        [
            vec!["udp://single:1".to_string()],
            vec!["http://ok/".into()]
        ]
    );
    assert!(m.url_list.is_empty() && m.creation_date.is_none() && !m.info.private);
    let mut f = fields(&m);
    f.sort_unstable();
    assert_eq!(
        f,
        [
            "(torrent)",
            "announce",
            "announce-list[1]",
            "announce-list[2][1]",
            "comment",
            "creation date",
            "info.attr",
            "info.private",
            "url-list"
        ]
    );
    assert!(m.warnings.iter().any(|w| w.fix == Fix::TrailingBytes(2)));
    // A single URL as url-list is a list of one.
    let mut root = OwnedValue::dict();
    root.insert("url-list", "http://seed/");
    root.insert("info", single_info(1, 16));
    let m = Metainfo::from_bytes(&root.to_bytes()).unwrap();
    assert_eq!(m.url_list, ["http://seed/"]);
    assert!(m.warnings.is_empty());
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
    // The top dictionary must parse to its end; what follows is ignored.
    let bytes = torrent(single_info(10, 16));
    assert!(matches!(
        Metainfo::from_bytes(&bytes[..bytes.len() - 1]),
        Err(MetainfoError::Bencode(_))
    ));
}

fn component() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _.-]{1,12}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn raw_component() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"".to_vec()),
        Just(b".".to_vec()),
        Just(b"..".to_vec()),
        Just(b"a".to_vec()),
        Just(b"a.1".to_vec()),
        proptest::collection::vec(prop::sample::select(b"a./\0\xff".to_vec()), 1..4),
        Just(vec![b'x'; 300]),
        Just([&b"a."[..], &[b'b'; 253]].concat()),
        Just([&b"s."[..], &[b'c'; 20], b".", &[b'd'; 232]].concat()),
    ]
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

    /// Whatever paths a torrent has, the files land inside the torrent's
    /// directory, each at a path of its own that no other file needs as a
    /// directory.
    #[test]
    fn any_paths_are_laid_out_safely(
        paths in proptest::collection::vec(
            proptest::collection::vec(raw_component(), 0..4), 1..10),
    ) {
        let list: Vec<OwnedValue> = paths.iter().map(|p| {
            let mut d = OwnedValue::dict();
            d.insert("length", 1);
            d.insert("path", p.iter().map(|c| OwnedValue::Bytes(c.clone())).collect::<Vec<_>>());
            d
        }).collect();
        let mut info = OwnedValue::dict();
        info.insert("files", list);
        info.insert("name", "root");
        info.insert("piece length", 16384);
        info.insert("pieces", vec![0u8; 20]);
        let m = parse(info).unwrap();
        let stored: Vec<&Vec<String>> = m.info.files.iter().map(|f| &f.path).collect();
        for (i, p) in stored.iter().enumerate() {
            prop_assert_eq!(p[0].as_str(), "root");
            prop_assert!(p.len() >= 2);
            for c in p.iter() {
                prop_assert!(parse::component_problem(c).is_none(), "{:?}", p);
            }
            for q in &stored[..i] {
                prop_assert!(!q.starts_with(p) && !p.starts_with(q), "{:?} {:?}", p, q);
            }
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
        // Whatever parses is safe to lay out: every component names one
        // entry, and no two stored files share a path.
        if let Ok(m) = Metainfo::from_bytes(&bytes) {
            let mut seen = std::collections::HashSet::new();
            for f in m.info.files.iter().filter(|f| f.is_stored()) {
                for c in &f.path {
                    prop_assert!(parse::component_problem(c).is_none(), "{:?}", f.path);
                }
                prop_assert!(seen.insert(f.path.clone()), "{:?}", f.path);
            }
        }
    }
}
