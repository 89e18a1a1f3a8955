use std::collections::BTreeMap;

use super::sanitize::{self, Fix, Mender};
use super::v2::{self, TreeFile};
use super::{
    FileAttr, FileEntry, Info, InfoHash, MAX_PIECE_LENGTH, MAX_TOTAL_LENGTH, Metainfo,
    MetainfoError, TorrentPath,
};
use crate::bencode::{self, Dict, Value};

type Result<T> = std::result::Result<T, MetainfoError>;

/// A field's name for error messages, built only when an error needs it: a
/// torrent of a million files should not format a million names.
pub(super) type Name<'a> = &'a dyn Fn() -> String;

fn named(s: &str) -> impl Fn() -> String + '_ {
    move || s.to_owned()
}

pub(super) fn metainfo(bytes: &[u8]) -> Result<Metainfo> {
    let (root, used) = bencode::decode_prefix(bytes)?;
    let root = root
        .as_dict()
        .ok_or_else(|| wrong(&named("(torrent)"), "a dictionary"))?;
    let mut m = Mender::new(root.get(b"encoding").and_then(Value::as_bytes));
    if used < bytes.len() {
        m.warn("(torrent)".into(), Fix::TrailingBytes(bytes.len() - used));
    }
    let info_value = root
        .get(b"info")
        .ok_or_else(|| MetainfoError::Missing("info".into()))?;
    let layers = root.get(b"piece layers").and_then(Value::as_dict);
    let (info, renamed) = info_with(info_value, layers, &mut m)?;

    let announce = root
        .get(b"announce")
        .and_then(|v| url(v, "announce", &mut m));
    let announce_list = root
        .get(b"announce-list")
        .map(|v| tiers(v, &mut m))
        .unwrap_or_default();
    let url_list = match root.get(b"url-list") {
        None => Vec::new(),
        Some(v) => match (v.as_list(), v.as_bytes()) {
            (Some(items), _) => items
                .iter()
                .enumerate()
                .filter_map(|(i, u)| url(u, &format!("url-list[{i}]"), &mut m))
                .collect(),
            (None, Some(_)) => url(v, "url-list", &mut m).into_iter().collect(),
            (None, None) => {
                m.warn(
                    "url-list".into(),
                    Fix::Ignored {
                        expected: "a list of URLs",
                    },
                );
                Vec::new()
            }
        },
    };
    // Informational fields: a wrong type there is no reason to refuse a torrent.
    let comment = text_field(root, "comment", &mut m);
    let created_by = text_field(root, "created by", &mut m);
    let creation_date = root.get(b"creation date").and_then(|v| {
        let n = v.as_int();
        if n.is_none() {
            m.warn(
                "creation date".into(),
                Fix::Ignored {
                    expected: "an integer",
                },
            );
        }
        n
    });

    let info_hash_v2 = info_value
        .as_dict()
        .and_then(|d| d.get(b"meta version"))
        .and_then(Value::as_int)
        .filter(|&v| v == 2)
        .map(|_| crate::hash::merkle::sha256(info_value.raw));
    let info_hash = InfoHash::known_by(info_value.raw, info.has_v1(), info_hash_v2.as_ref());
    Ok(Metainfo {
        info,
        info_hash,
        info_hash_v2,
        info_bytes: info_value.raw.to_vec(),
        announce,
        announce_list,
        comment,
        created_by,
        creation_date,
        url_list,
        warnings: m.warnings,
        renamed,
    })
}

/// The `info` dictionary, and the path as the torrent wrote it of each file
/// stored under another.
fn info_with(
    value: &Value<'_>,
    layers: Option<&Dict<'_>>,
    m: &mut Mender,
) -> Result<(Info, BTreeMap<usize, TorrentPath>)> {
    let info = value
        .as_dict()
        .ok_or_else(|| wrong(&named("info"), "a dictionary"))?;

    let (name_key, raw_name) = match (
        info.get(b"name.utf-8").and_then(Value::as_str),
        info.get(b"name"),
    ) {
        (Some(s), _) => ("info.name.utf-8", s.as_bytes()),
        (None, Some(v)) => match v.as_bytes() {
            Some(b) => ("info.name", b),
            None => {
                m.warn(
                    "info.name".into(),
                    Fix::Ignored {
                        expected: "a byte string",
                    },
                );
                ("info.name", &b""[..])
            }
        },
        (None, None) => ("info.name", &b""[..]),
    };
    let name = m.component(raw_name, &named(name_key)).unwrap_or_else(|| {
        let to = InfoHash::of(value.raw).to_hex();
        m.warn(name_key.into(), Fix::Unnamed { to: to.clone() });
        to
    });

    let piece_length = int(info, "info.piece length", b"piece length")?
        .ok_or_else(|| MetainfoError::Missing("info.piece length".into()))?;
    let piece_length = u32::try_from(piece_length)
        .ok()
        .filter(|&p| p > 0 && p <= MAX_PIECE_LENGTH)
        .ok_or(MetainfoError::PieceLength(piece_length))?;

    let private = match info.get(b"private") {
        None => false,
        Some(v) => match v.as_int() {
            Some(n) => n == 1,
            None => {
                m.warn(
                    "info.private".into(),
                    Fix::Ignored {
                        expected: "an integer",
                    },
                );
                false
            }
        },
    };

    let tree = (info.get(b"meta version").and_then(Value::as_int) == Some(2))
        .then(|| info.get(b"file tree"))
        .flatten()
        .map(|t| v2::file_tree(t, m));
    let pieces_raw = match info.get(b"pieces") {
        Some(v) => {
            let raw = v
                .as_bytes()
                .ok_or_else(|| wrong(&named("info.pieces"), "a byte string"))?;
            if raw.len() % 20 != 0 {
                return Err(MetainfoError::PiecesLength(raw.len()));
            }
            Some(raw)
        }
        None => None,
    };

    let mut paths = Paths {
        name: &name,
        raw_name,
        written: Vec::new(),
    };
    let (files, multi_file, tree) = match (pieces_raw, tree) {
        (None, None) => return Err(MetainfoError::Missing("info.pieces".into())),
        (None, Some(tree)) => {
            if !v2::usable_piece_length(piece_length) {
                return Err(MetainfoError::V2PieceLength(piece_length));
            }
            let tree = tree?;
            let (files, multi) = v2_files(&tree, &mut paths, piece_length, m)?;
            (files, multi, Some(tree))
        }
        (Some(_), tree) => {
            let (files, multi) = match (info.get(b"length"), info.get(b"files")) {
                (Some(_), Some(_)) => return Err(MetainfoError::LengthAndFiles),
                (None, None) => return Err(MetainfoError::NoLengthOrFiles),
                (Some(len), None) => {
                    let length = length(len, &named("info.length"))?;
                    let attr = attr(info, "info.attr", m);
                    let file = FileEntry {
                        path: vec![name.clone()],
                        length,
                        offset: 0,
                        attr,
                    };
                    paths.written.push(TorrentPath(vec![raw_name.to_vec()]));
                    (vec![file], false)
                }
                (None, Some(list)) => {
                    let files = file_list(list, &mut paths, m)?;
                    (files, true)
                }
            };
            // A hybrid's v2 side is checked too when it is sound; when it
            // is not, the v1 side still makes the torrent usable.
            let tree = match tree {
                Some(Ok(t)) => Some(t),
                Some(Err(e)) => {
                    m.warn("info.file tree".into(), Fix::V2Ignored(e.to_string()));
                    None
                }
                None => None,
            };
            (files, multi, tree)
        }
    };
    let renamed = files
        .iter()
        .zip(paths.written)
        .enumerate()
        .filter(|(_, (f, original))| {
            f.is_stored()
                && (f.path.len() != original.0.len()
                    || f.path
                        .iter()
                        .zip(&original.0)
                        .any(|(a, b)| a.as_bytes() != b))
        })
        .map(|(i, (_, original))| (i, original))
        .collect();

    let total_length = files.last().map_or(0, |f| f.offset + f.length);
    if total_length == 0 {
        return Err(MetainfoError::Empty);
    }
    let expected = total_length.div_ceil(u64::from(piece_length));
    // Piece indices are 32-bit on the wire.
    let piece_count = u32::try_from(expected).map_err(|_| MetainfoError::TooLarge)?;
    let pieces = match pieces_raw {
        Some(raw) => {
            let found = raw.len() / 20;
            if found as u64 != expected {
                return Err(MetainfoError::PieceCount {
                    found,
                    expected,
                    total: total_length,
                    piece_length,
                });
            }
            raw.chunks_exact(20)
                .map(|c| <[u8; 20]>::try_from(c).unwrap_or_default())
                .collect()
        }
        None => Vec::new(),
    };
    let (pieces_v2, v2_layers) = match tree {
        None => (Vec::new(), Vec::new()),
        Some(tree) => {
            let hashes = v2_offsets(&tree, &files).and_then(|offsets| {
                v2::piece_hashes(&tree, &offsets, piece_length, piece_count, layers)
            });
            match hashes {
                Ok(h) => h,
                Err(e) if !pieces.is_empty() => {
                    m.warn("piece layers".into(), Fix::V2Ignored(e.to_string()));
                    (Vec::new(), Vec::new())
                }
                Err(e) => return Err(e),
            }
        }
    };

    let info = Info {
        name,
        piece_length,
        pieces,
        pieces_v2,
        v2_layers,
        files,
        private,
        multi_file,
        total_length,
    };
    Ok((info, renamed))
}

/// The torrent's name, and each file's path as the torrent wrote it (in
/// file order), for `Metainfo::renamed`.
struct Paths<'a> {
    name: &'a str,
    raw_name: &'a [u8],
    written: Vec<TorrentPath>,
}

impl Paths<'_> {
    /// Where a file is stored, from its path as the torrent wrote it below
    /// the name (`raw`; `None` for a single file named by the torrent):
    /// each component mended, `_` made up when nothing is left (`.pad/N`
    /// for a pad file). `field` names the path in warnings, `component(j)`
    /// its `j`th component.
    fn store(
        &mut self,
        raw: Option<&[&[u8]]>,
        attr: FileAttr,
        length: u64,
        field: &dyn Fn() -> String,
        component: &dyn Fn(usize) -> String,
        m: &mut Mender,
    ) -> Vec<String> {
        let mut path = vec![self.name.to_owned()];
        let mut original = vec![self.raw_name.to_vec()];
        if let Some(raw) = raw {
            for (j, c) in raw.iter().enumerate() {
                if let Some(c) = m.component(c, &|| component(j)) {
                    path.push(c);
                }
            }
            original.extend(raw.iter().map(|c| c.to_vec()));
            if path.len() == 1 {
                if attr.pad {
                    path.extend([".pad".to_owned(), length.to_string()]);
                } else {
                    path.push("_".to_owned());
                    m.warn(field(), Fix::Unnamed { to: path.join("/") });
                }
            }
        }
        if attr.symlink {
            m.warn(field(), Fix::Symlink);
        }
        self.written.push(TorrentPath(original));
        path
    }
}

/// The files of a v2-only torrent, laid out with a pad file after each
/// that does not end on a piece boundary (the last too: libtorrent lays
/// them out so, and asks for whole blocks of a last piece), their paths
/// made safe and distinct. A tree of one file at its top is a single-file
/// torrent named by `info.name`.
fn v2_files(
    tree: &[TreeFile<'_>],
    paths: &mut Paths<'_>,
    piece_length: u32,
    m: &mut Mender,
) -> Result<(Vec<FileEntry>, bool)> {
    let single = tree.len() == 1 && tree[0].raw.len() == 1;
    let pl = u64::from(piece_length);
    let mut files = Vec::with_capacity(tree.len() * 2);
    let mut offset: u64 = 0;
    for f in tree {
        let field = || format!("info.file tree/{}", f.display());
        let raw = (!single).then_some(f.raw.as_slice());
        let path = paths.store(raw, f.attr, f.length, &field, &|_| field(), m);
        files.push(FileEntry {
            path,
            length: f.length,
            offset,
            attr: f.attr,
        });
        offset = offset
            .checked_add(f.length)
            .filter(|&t| t <= MAX_TOTAL_LENGTH)
            .ok_or(MetainfoError::TooLarge)?;
        let pad = (pl - offset % pl) % pl;
        if pad > 0 {
            let attr = FileAttr {
                pad: true,
                ..FileAttr::default()
            };
            let path = paths.store(Some(&[]), attr, pad, &field, &|_| field(), m);
            files.push(FileEntry {
                path,
                length: pad,
                offset,
                attr,
            });
            offset += pad;
        }
    }
    sanitize::dedupe(&mut files, m);
    Ok((files, !single))
}

/// Where each file of a v2 `tree` starts in the byte stream of `files`
/// (a v2-only layout or a hybrid's v1 list): the tree's files must be the
/// stored files of `files`, in order and of the same lengths.
fn v2_offsets(tree: &[TreeFile<'_>], files: &[FileEntry]) -> Result<Vec<u64>> {
    let data: Vec<&FileEntry> = files.iter().filter(|f| !f.attr.pad).collect();
    let mismatch = || MetainfoError::PieceLayer {
        file: "(torrent)".into(),
        problem: "the `file tree` does not list the same files as `files`",
    };
    if data.len() != tree.len() {
        return Err(mismatch());
    }
    data.iter()
        .zip(tree)
        .map(|(f, t)| {
            (f.length == t.length)
                .then_some(f.offset)
                .ok_or_else(mismatch)
        })
        .collect()
}

/// The files of a multi-file torrent, their paths made safe and distinct;
/// each file's path as the torrent wrote it goes to `paths`.
fn file_list(list: &Value<'_>, paths: &mut Paths<'_>, m: &mut Mender) -> Result<Vec<FileEntry>> {
    let items = list
        .as_list()
        .ok_or_else(|| wrong(&named("info.files"), "a list"))?;
    if items.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    let mut files = Vec::with_capacity(items.len());
    let mut offset: u64 = 0;
    for (i, item) in items.iter().enumerate() {
        let field = || format!("info.files[{i}]");
        let d = item
            .as_dict()
            .ok_or_else(|| wrong(&field, "a dictionary"))?;
        let attr = attr(d, &format!("{}.attr", field()), m);
        let len_field = || format!("{}.length", field());
        let length = match d.get(b"length") {
            Some(v) => length(v, &len_field)?,
            // A symlink holds no bytes; some torrents give it no length.
            None if attr.symlink => 0,
            None => return Err(MetainfoError::Missing(len_field())),
        };
        // The UTF-8 twin wins when it is a list of UTF-8 strings.
        let twin = d.get(b"path.utf-8").and_then(|v| {
            v.as_list()?
                .iter()
                .map(|c| c.as_str().map(str::as_bytes))
                .collect::<Option<Vec<_>>>()
        });
        let (key, raw) = match (twin, d.get(b"path")) {
            (Some(c), _) => ("path.utf-8", Some(c)),
            (None, Some(v)) => {
                let list = v
                    .as_list()
                    .ok_or_else(|| wrong(&|| format!("{}.path", field()), "a list of strings"))?;
                let raw = list
                    .iter()
                    .enumerate()
                    .map(|(j, c)| {
                        c.as_bytes().ok_or_else(|| {
                            wrong(&|| format!("{}.path[{j}]", field()), "a byte string")
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                ("path", Some(raw))
            }
            // BEP 47 pad files need no path: they are never written.
            (None, None) if attr.pad => ("path", None),
            (None, None) => return Err(MetainfoError::Missing(format!("{}.path", field()))),
        };
        let raw = raw.unwrap_or_default();
        let path = paths.store(
            Some(&raw),
            attr,
            length,
            &|| format!("{}.{key}", field()),
            &|j| format!("{}.{key}[{j}]", field()),
            m,
        );
        files.push(FileEntry {
            path,
            length,
            offset,
            attr,
        });
        offset = offset
            .checked_add(length)
            .filter(|&t| t <= MAX_TOTAL_LENGTH)
            .ok_or(MetainfoError::TooLarge)?;
    }
    sanitize::dedupe(&mut files, m);
    Ok(files)
}

/// A path component must name exactly one entry inside its parent directory.
/// Why `c` cannot be a path component, if it cannot.
pub(super) fn component_problem(c: &str) -> Option<&'static str> {
    if c.is_empty() {
        Some("is empty")
    } else if c == "." || c == ".." {
        Some("refers to a directory by a relative name")
    } else if c.contains('/') {
        Some("contains a path separator")
    } else if c.contains('\0') {
        Some("contains a NUL byte")
    } else if c.len() > super::MAX_NAME_BYTES {
        Some("is longer than 255 bytes")
    } else {
        None
    }
}

/// BEP 47 attributes; a malformed `attr` is ignored.
pub(super) fn attr(d: &Dict<'_>, field: &str, m: &mut Mender) -> FileAttr {
    let Some(v) = d.get(b"attr") else {
        return FileAttr::default();
    };
    let Some(s) = v.as_bytes() else {
        m.warn(
            field.into(),
            Fix::Ignored {
                expected: "a byte string",
            },
        );
        return FileAttr::default();
    };
    FileAttr {
        pad: s.contains(&b'p'),
        executable: s.contains(&b'x'),
        hidden: s.contains(&b'h'),
        symlink: s.contains(&b'l'),
    }
}

/// A v2-only torrent file that lacks piece layers its files need: its
/// `info` dictionary and trackers, so that the layers can be fetched from
/// peers as for a `btmh` link. `None` for any other torrent.
pub(super) fn layerless(bytes: &[u8]) -> Option<super::Layerless> {
    let (root, _) = bencode::decode_prefix(bytes).ok()?;
    let root = root.as_dict()?;
    let info = root.get(b"info")?.raw;
    let needs = v2::layers_needed(info).ok()??;
    let layers = root.get(b"piece layers").and_then(Value::as_dict);
    let missing = needs
        .files
        .iter()
        .any(|(r, _)| layers.and_then(|l| l.get(r)).is_none());
    if !missing {
        return None;
    }
    let mut m = Mender::new(None);
    let mut tiers = root
        .get(b"announce-list")
        .map(|v| self::tiers(v, &mut m))
        .unwrap_or_default();
    if tiers.is_empty()
        && let Some(a) = root
            .get(b"announce")
            .and_then(|v| url(v, "announce", &mut m))
    {
        tiers.push(vec![a]);
    }
    Some(super::Layerless {
        info: info.to_vec(),
        info_hash_v2: crate::hash::merkle::sha256(info),
        tiers,
    })
}

/// BEP 12 tiers; a tier that is a single URL is taken as a tier of one,
/// anything else malformed is ignored.
fn tiers(v: &Value<'_>, m: &mut Mender) -> Vec<Vec<String>> {
    let Some(list) = v.as_list() else {
        m.warn(
            "announce-list".into(),
            Fix::Ignored {
                expected: "a list of lists",
            },
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, tier) in list.iter().enumerate() {
        let field = format!("announce-list[{i}]");
        let urls: Vec<String> = match (tier.as_list(), tier.as_bytes()) {
            (Some(urls), _) => urls
                .iter()
                .enumerate()
                .filter_map(|(j, u)| url(u, &format!("{field}[{j}]"), m))
                .collect(),
            (None, Some(_)) => url(tier, &field, m).into_iter().collect(),
            (None, None) => {
                m.warn(
                    field,
                    Fix::Ignored {
                        expected: "a list of URLs",
                    },
                );
                Vec::new()
            }
        };
        if !urls.is_empty() {
            out.push(urls);
        }
    }
    out
}

/// A URL, or `None` (with a warning when it is malformed; an empty one is
/// simply absent).
fn url(v: &Value<'_>, field: &str, m: &mut Mender) -> Option<String> {
    match v.as_str() {
        Some("") => None,
        Some(s) => Some(s.trim().to_owned()),
        None => {
            m.warn(
                field.into(),
                Fix::Ignored {
                    expected: "a UTF-8 URL",
                },
            );
            None
        }
    }
}

/// An informational text field, its `.utf-8` twin first.
fn text_field(d: &Dict<'_>, key: &str, m: &mut Mender) -> Option<String> {
    if let Some(s) = d
        .get(format!("{key}.utf-8").as_bytes())
        .and_then(Value::as_str)
    {
        return Some(s.to_owned());
    }
    let v = d.get(key.as_bytes())?;
    match v.as_bytes() {
        Some(b) => Some(m.text(b, &named(key))),
        None => {
            m.warn(
                key.into(),
                Fix::Ignored {
                    expected: "a byte string",
                },
            );
            None
        }
    }
}

pub(super) fn length(v: &Value<'_>, field: Name<'_>) -> Result<u64> {
    let n = v.as_int().ok_or_else(|| wrong(field, "an integer"))?;
    let n = u64::try_from(n).map_err(|_| MetainfoError::NegativeLength {
        field: field(),
        value: n,
    })?;
    if n > MAX_TOTAL_LENGTH {
        return Err(MetainfoError::TooLarge);
    }
    Ok(n)
}

fn int(d: &Dict<'_>, field: &str, key: &[u8]) -> Result<Option<i64>> {
    d.get(key)
        .map(|v| v.as_int().ok_or_else(|| wrong(&named(field), "an integer")))
        .transpose()
}

pub(super) fn wrong(field: Name<'_>, expected: &'static str) -> MetainfoError {
    MetainfoError::WrongType {
        field: field(),
        expected,
    }
}
