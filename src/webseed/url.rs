//! Where a range of the torrent's bytes lives on a web seed (BEP 19): one
//! URL for a single-file torrent, `URL/name/dir/file` for each file of a
//! multi-file one.

use std::ops::Range;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};

use crate::metainfo::{Info, Metainfo};

/// Everything but RFC 3986's unreserved characters is escaped.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One part of a range: bytes `file_range` of the file at `url`, or pad
/// bytes (zeros, never fetched), landing at `at` in the range's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Http {
        url: String,
        file_range: Range<u64>,
        at: usize,
    },
    Zeros {
        len: usize,
        at: usize,
    },
}

/// Each file's path below a web seed's URL, `name/dir/file`, percent-encoded
/// from the names as the torrent gives them (before [mending]): the server
/// holds the files under those.
///
/// [mending]: crate::metainfo::Warning
pub fn url_paths(m: &Metainfo) -> Vec<String> {
    let encode = |components: &mut dyn Iterator<Item = &[u8]>| {
        let mut out = String::new();
        for (i, c) in components.enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.extend(percent_encode(c, COMPONENT));
        }
        out
    };
    m.info
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| match m.renamed.get(&i) {
            Some(original) => encode(&mut original.0.iter().map(Vec::as_slice)),
            None => encode(&mut f.path.iter().map(|c| c.as_bytes())),
        })
        .collect()
}

/// The URL of the file at `path` (from [`url_paths`]) on the web seed at
/// `base`: for a single file, `base` itself unless it ends with `/`.
pub fn file_url(base: &str, multi_file: bool, path: &str) -> String {
    if !multi_file && !base.ends_with('/') {
        return base.to_owned();
    }
    let sep = if base.ends_with('/') { "" } else { "/" };
    format!("{base}{sep}{path}")
}

/// The requests that fetch `range` of the torrent's byte stream; `paths`
/// as [`url_paths`] makes them.
pub fn parts(base: &str, info: &Info, paths: &[String], range: Range<u64>) -> Vec<Part> {
    info.spans(range.clone())
        .map(|s| {
            let at = (info.files[s.file].offset + s.offset - range.start) as usize;
            let len = s.len as usize;
            if info.files[s.file].is_stored() {
                Part::Http {
                    url: file_url(base, info.multi_file, &paths[s.file]),
                    file_range: s.offset..s.offset + s.len,
                    at,
                }
            } else {
                Part::Zeros { len, at }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::{FileAttr, FileEntry};

    fn info(files: &[(&[&str], u64, bool)], multi: bool) -> Info {
        let mut offset = 0;
        let files: Vec<FileEntry> = files
            .iter()
            .map(|(p, len, pad)| {
                let f = FileEntry {
                    path: p.iter().map(|s| s.to_string()).collect(),
                    length: *len,
                    offset,
                    attr: FileAttr {
                        pad: *pad,
                        ..FileAttr::default()
                    },
                };
                offset += len;
                f
            })
            .collect();
        Info {
            name: files[0].path[0].clone(),
            piece_length: 16,
            pieces: vec![[0; 20]; offset.div_ceil(16) as usize],
            pieces_v2: Vec::new(),
            v2_layers: Vec::new(),
            files,
            private: false,
            multi_file: multi,
            total_length: offset,
        }
    }

    #[test]
    fn single_file_urls_take_the_name_only_after_a_slash() {
        let i = info(&[(&["a b.iso"], 40, false)], false);
        let paths = ["a%20b.iso".to_string()];
        assert_eq!(
            file_url("http://h/x.iso", false, &paths[0]),
            "http://h/x.iso"
        );
        assert_eq!(
            file_url("http://h/d/", false, &paths[0]),
            "http://h/d/a%20b.iso"
        );
        assert_eq!(
            parts("http://h/x.iso", &i, &paths, 16..32),
            [Part::Http {
                url: "http://h/x.iso".into(),
                file_range: 16..32,
                at: 0
            }]
        );
    }

    #[test]
    fn multi_file_ranges_split_at_files_and_skip_padding() {
        let i = info(
            &[
                (&["top", "a"], 10, false),
                (&["top", ".pad", "6"], 6, true),
                (&["top", "d", "é#?"], 20, false),
            ],
            true,
        );
        let paths = ["top/a", "top/.pad/6", "top/d/%C3%A9%23%3F"].map(String::from);
        assert_eq!(
            file_url("http://h/s", true, &paths[2]),
            "http://h/s/top/d/%C3%A9%23%3F"
        );
        assert_eq!(
            parts("http://h/s/", &i, &paths, 4..24),
            [
                Part::Http {
                    url: "http://h/s/top/a".into(),
                    file_range: 4..10,
                    at: 0
                },
                Part::Zeros { len: 6, at: 6 },
                Part::Http {
                    url: "http://h/s/top/d/%C3%A9%23%3F".into(),
                    file_range: 0..8,
                    at: 12
                },
            ]
        );
    }

    #[test]
    fn url_paths_use_the_names_the_torrent_gives() {
        let mut root = crate::bencode::OwnedValue::dict();
        let mut info = crate::bencode::OwnedValue::dict();
        let file = |path: Vec<crate::bencode::OwnedValue>| {
            let mut d = crate::bencode::OwnedValue::dict();
            d.insert("length", 8);
            d.insert("path", path);
            d
        };
        info.insert(
            "files",
            vec![
                file(vec![b"x y.txt".to_vec().into()]),
                file(vec![b"x y.txt".to_vec().into()]),
                file(vec![b"d".to_vec().into(), b"\xff".to_vec().into()]),
            ],
        );
        info.insert("name", "top");
        info.insert("piece length", 16);
        info.insert("pieces", vec![0u8; 40]);
        root.insert("info", info);
        let m = Metainfo::from_bytes(&root.to_bytes()).unwrap();
        // On disk: top/x y.txt, top/x y.1.txt, top/d/_.
        assert_eq!(m.info.files[1].path[1], "x y.1.txt");
        assert_eq!(
            url_paths(&m),
            ["top/x%20y.txt", "top/x%20y.txt", "top/d/%FF"]
        );
    }
}
