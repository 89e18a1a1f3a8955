use std::collections::HashSet;

use super::{
    FileAttr, FileEntry, Info, InfoHash, MAX_PIECE_LENGTH, MAX_TOTAL_LENGTH, Metainfo,
    MetainfoError,
};
use crate::bencode::{self, Dict, Value};

type Result<T> = std::result::Result<T, MetainfoError>;

/// A field's name for error messages, built only when an error needs it: a
/// torrent of a million files should not format a million names.
type Name<'a> = &'a dyn Fn() -> String;

fn named(s: &str) -> impl Fn() -> String + '_ {
    move || s.to_owned()
}

pub(super) fn metainfo(bytes: &[u8]) -> Result<Metainfo> {
    let root = bencode::decode(bytes)?;
    let root = root
        .as_dict()
        .ok_or_else(|| wrong(&named("(torrent)"), "a dictionary"))?;
    let info_value = root
        .get(b"info")
        .ok_or_else(|| MetainfoError::Missing("info".into()))?;
    let info = parse_info(info_value)?;

    let announce = opt_string(root, "announce")?;
    let announce_list = match root.get(b"announce-list") {
        None => Vec::new(),
        Some(v) => tiers(v)?,
    };
    let url_list = match root.get(b"url-list") {
        None => Vec::new(),
        Some(v) => match v.as_list() {
            Some(items) => items
                .iter()
                .enumerate()
                .map(|(i, u)| string(u, &|| format!("url-list[{i}]")))
                .collect::<Result<_>>()?,
            None => vec![string(v, &named("url-list"))?]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect(),
        },
    };
    // Informational fields: a wrong type there is no reason to refuse a torrent.
    let comment = root
        .get(b"comment")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let created_by = root
        .get(b"created by")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let creation_date = root.get(b"creation date").and_then(Value::as_int);

    Ok(Metainfo {
        info,
        info_hash: InfoHash::of(info_value.raw),
        info_bytes: info_value.raw.to_vec(),
        announce,
        announce_list,
        comment,
        created_by,
        creation_date,
        url_list,
    })
}

/// Parses a bare `info` dictionary, as BEP 9 delivers it.
pub(crate) fn parse_info(value: &Value<'_>) -> Result<Info> {
    let info = value
        .as_dict()
        .ok_or_else(|| wrong(&named("info"), "a dictionary"))?;

    let name = utf8_field(info, "info.name", b"name", b"name.utf-8")?
        .ok_or_else(|| MetainfoError::Missing("info.name".into()))?;
    check_component(&name, &named("info.name"))?;

    let piece_length = int(info, "info.piece length", b"piece length")?
        .ok_or_else(|| MetainfoError::Missing("info.piece length".into()))?;
    let piece_length = u32::try_from(piece_length)
        .ok()
        .filter(|&p| p > 0 && p <= MAX_PIECE_LENGTH)
        .ok_or(MetainfoError::PieceLength(piece_length))?;

    let pieces_raw = info
        .get(b"pieces")
        .ok_or_else(|| MetainfoError::Missing("info.pieces".into()))?
        .as_bytes()
        .ok_or_else(|| wrong(&named("info.pieces"), "a byte string"))?;
    if pieces_raw.len() % 20 != 0 {
        return Err(MetainfoError::PiecesLength(pieces_raw.len()));
    }

    let private = matches!(info.get(b"private").and_then(Value::as_int), Some(1));

    let (files, multi_file) = match (info.get(b"length"), info.get(b"files")) {
        (Some(_), Some(_)) => return Err(MetainfoError::LengthAndFiles),
        (None, None) => return Err(MetainfoError::NoLengthOrFiles),
        (Some(len), None) => {
            let length = length(len, &named("info.length"))?;
            let attr = attr(info, &named("info.attr"))?;
            let file = FileEntry {
                path: vec![name.clone()],
                length,
                offset: 0,
                attr,
            };
            (vec![file], false)
        }
        (None, Some(list)) => (file_list(list, &name)?, true),
    };

    let total_length = files.last().map_or(0, |f| f.offset + f.length);
    if total_length == 0 {
        return Err(MetainfoError::Empty);
    }
    let expected = total_length.div_ceil(u64::from(piece_length));
    let found = pieces_raw.len() / 20;
    if found as u64 != expected {
        return Err(MetainfoError::PieceCount {
            found,
            expected,
            total: total_length,
            piece_length,
        });
    }
    // Piece indices are 32-bit on the wire.
    if u32::try_from(found).is_err() {
        return Err(MetainfoError::TooLarge);
    }
    let pieces = pieces_raw
        .chunks_exact(20)
        .map(|c| {
            let mut h = [0u8; 20];
            h.copy_from_slice(c);
            h
        })
        .collect();

    Ok(Info {
        name,
        piece_length,
        pieces,
        files,
        private,
        multi_file,
        total_length,
    })
}

fn file_list(list: &Value<'_>, name: &str) -> Result<Vec<FileEntry>> {
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
        let len_field = || format!("{}.length", field());
        let length = length(
            d.get(b"length")
                .ok_or_else(|| MetainfoError::Missing(len_field()))?,
            &len_field,
        )?;
        let path_field = || format!("{}.path", field());
        let components = match d.get(b"path.utf-8") {
            Some(v) => path_components(v, &|| format!("{}.path.utf-8", field())).ok(),
            None => None,
        };
        let components = match components {
            Some(c) => c,
            None => path_components(
                d.get(b"path")
                    .ok_or_else(|| MetainfoError::Missing(path_field()))?,
                &path_field,
            )?,
        };
        let attr = attr(d, &|| format!("{}.attr", field()))?;
        let mut path = Vec::with_capacity(components.len() + 1);
        path.push(name.to_owned());
        path.extend(components);
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
    check_unique_paths(&files)?;
    Ok(files)
}

fn path_components(v: &Value<'_>, field: Name<'_>) -> Result<Vec<String>> {
    let list = v
        .as_list()
        .ok_or_else(|| wrong(field, "a list of strings"))?;
    if list.is_empty() {
        return Err(MetainfoError::UnsafePath {
            field: field(),
            component: String::new(),
            reason: "is empty (a file needs a name)",
        });
    }
    list.iter()
        .enumerate()
        .map(|(j, c)| {
            let cfield = || format!("{}[{j}]", field());
            let s = string(c, &cfield)?;
            check_component(&s, &cfield)?;
            Ok(s)
        })
        .collect()
}

/// No two stored files may share a path, and no file may sit where another
/// file's directory must be. Pad files are exempt: BEP 47 names them
/// `.pad/<length>`, so equal paths are expected and they are never written.
fn check_unique_paths(files: &[FileEntry]) -> Result<()> {
    let mut file_paths: HashSet<&[String]> = HashSet::with_capacity(files.len());
    let mut dir_paths: HashSet<&[String]> = HashSet::new();
    for f in files.iter().filter(|f| !f.attr.pad) {
        if !file_paths.insert(&f.path) {
            return Err(MetainfoError::DuplicatePath(f.display_path()));
        }
        for n in 1..f.path.len() {
            dir_paths.insert(&f.path[..n]);
        }
    }
    if let Some(p) = file_paths.iter().find(|p| dir_paths.contains(*p)) {
        return Err(MetainfoError::FileDirConflict(p.join("/")));
    }
    Ok(())
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
    } else if c.len() > 255 {
        Some("is longer than 255 bytes")
    } else {
        None
    }
}

fn check_component(c: &str, field: Name<'_>) -> Result<()> {
    let reason = component_problem(c);
    match reason {
        Some(reason) => Err(MetainfoError::UnsafePath {
            field: field(),
            component: c.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn attr(d: &Dict<'_>, field: Name<'_>) -> Result<FileAttr> {
    let Some(v) = d.get(b"attr") else {
        return Ok(FileAttr::default());
    };
    let s = v.as_bytes().ok_or_else(|| wrong(field, "a byte string"))?;
    Ok(FileAttr {
        pad: s.contains(&b'p'),
        executable: s.contains(&b'x'),
        hidden: s.contains(&b'h'),
        symlink: s.contains(&b'l'),
    })
}

fn tiers(v: &Value<'_>) -> Result<Vec<Vec<String>>> {
    let list = v
        .as_list()
        .ok_or_else(|| wrong(&named("announce-list"), "a list of lists"))?;
    let mut out = Vec::new();
    for (i, tier) in list.iter().enumerate() {
        let field = || format!("announce-list[{i}]");
        let urls = tier.as_list().ok_or_else(|| wrong(&field, "a list"))?;
        let urls: Vec<String> = urls
            .iter()
            .enumerate()
            .map(|(j, u)| string(u, &|| format!("{}[{j}]", field())))
            .filter(|r| !matches!(r, Ok(s) if s.is_empty()))
            .collect::<Result<_>>()?;
        if !urls.is_empty() {
            out.push(urls);
        }
    }
    Ok(out)
}

fn length(v: &Value<'_>, field: Name<'_>) -> Result<u64> {
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

fn string(v: &Value<'_>, field: Name<'_>) -> Result<String> {
    let b = v.as_bytes().ok_or_else(|| wrong(field, "a byte string"))?;
    String::from_utf8(b.to_vec()).map_err(|_| MetainfoError::NotUtf8(field()))
}

fn opt_string(d: &Dict<'_>, key: &str) -> Result<Option<String>> {
    d.get(key.as_bytes())
        .map(|v| string(v, &named(key)))
        .transpose()
}

/// A text field that may have a `.utf-8` twin (older clients wrote local
/// encodings in the plain key and UTF-8 in the twin); the twin wins when valid.
fn utf8_field(d: &Dict<'_>, field: &str, key: &[u8], utf8_key: &[u8]) -> Result<Option<String>> {
    if let Some(s) = d.get(utf8_key).and_then(Value::as_str) {
        return Ok(Some(s.to_owned()));
    }
    d.get(key).map(|v| string(v, &named(field))).transpose()
}

fn wrong(field: Name<'_>, expected: &'static str) -> MetainfoError {
    MetainfoError::WrongType {
        field: field(),
        expected,
    }
}
