//! Where a range of the torrent's bytes lives on a web seed (BEP 19): one
//! URL for a single-file torrent, `URL/name/dir/file` for each file of a
//! multi-file one.

use std::ops::Range;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::metainfo::Info;

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

/// The URL of file `i` on the web seed at `base`.
pub fn file_url(base: &str, info: &Info, i: usize) -> String {
    if !info.multi_file {
        return if base.ends_with('/') {
            format!("{base}{}", utf8_percent_encode(&info.name, COMPONENT))
        } else {
            base.to_owned()
        };
    }
    let mut url = base.to_owned();
    // The file's path starts with the torrent's name, as BEP 19 wants.
    for c in &info.files[i].path {
        if !url.ends_with('/') {
            url.push('/');
        }
        url.extend(utf8_percent_encode(c, COMPONENT));
    }
    url
}

/// The requests that fetch `range` of the torrent's byte stream.
pub fn parts(base: &str, info: &Info, range: Range<u64>) -> Vec<Part> {
    info.spans(range.clone())
        .map(|s| {
            let at = (info.files[s.file].offset + s.offset - range.start) as usize;
            let len = s.len as usize;
            if info.files[s.file].is_stored() {
                Part::Http {
                    url: file_url(base, info, s.file),
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
            files,
            private: false,
            multi_file: multi,
            total_length: offset,
        }
    }

    #[test]
    fn single_file_urls_take_the_name_only_after_a_slash() {
        let i = info(&[(&["a b.iso"], 40, false)], false);
        assert_eq!(file_url("http://h/x.iso", &i, 0), "http://h/x.iso");
        assert_eq!(file_url("http://h/d/", &i, 0), "http://h/d/a%20b.iso");
        assert_eq!(
            parts("http://h/x.iso", &i, 16..32),
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
        assert_eq!(
            file_url("http://h/s", &i, 2),
            "http://h/s/top/d/%C3%A9%23%3F"
        );
        assert_eq!(
            parts("http://h/s/", &i, 4..24),
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
}
