//! Loading the torrents other clients load: names that are not UTF-8,
//! path components that are empty, relative or too long, two files with one
//! path, malformed optional keys. Each is mended the way mature clients
//! mend it, never so that a path leaves the download directory, and each
//! change is reported as a [`Warning`]. The info-hash is unaffected: it is
//! taken over the original bytes.

use std::collections::{HashMap, HashSet};
use std::fmt;

use encoding_rs::Encoding;

use super::FileEntry;

/// The longest file name Linux filesystems store, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// The longest extension kept when a name is shortened; a longer "extension"
/// is more likely part of the name.
const MAX_KEPT_EXTENSION: usize = 32;

/// One change made to load a torrent, and the field it was made to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub field: String,
    pub fix: Fix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fix {
    /// An empty, `.` or `..` path component, left out.
    Dropped(String),
    /// `/` or NUL inside a component, replaced by `_`.
    Replaced { to: String },
    /// A component over 255 bytes, shortened with its extension kept.
    Shortened { to: String },
    /// Text that is not UTF-8, decoded from the torrent's `encoding`.
    Decoded { encoding: &'static str, to: String },
    /// Text that is not UTF-8 (and no usable `encoding`): invalid bytes
    /// replaced by `_`.
    InvalidUtf8 { to: String },
    /// A file whose path another file has, or that another file needs as a
    /// directory: stored under a numbered name.
    Duplicate { to: String },
    /// Nothing usable left of a name: one was made up.
    Unnamed { to: String },
    /// A symlink entry: not created (its target could be anywhere).
    Symlink,
    /// An optional key of the wrong shape, ignored.
    Ignored { expected: &'static str },
    /// Bytes after the torrent's dictionary, ignored.
    TrailingBytes(usize),
    /// A hybrid torrent's v2 side that cannot check its pieces: they are
    /// checked by their v1 hashes alone.
    V2Ignored(String),
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: ", self.field)?;
        match &self.fix {
            Fix::Dropped(c) if c.is_empty() => write!(f, "empty path component left out"),
            Fix::Dropped(c) => write!(f, "path component {c:?} left out"),
            Fix::Replaced { to } => write!(f, "path separator or NUL replaced: {to:?}"),
            Fix::Shortened { to } => write!(f, "over {MAX_NAME_BYTES} bytes, shortened to {to:?}"),
            Fix::Decoded { encoding, to } => write!(f, "decoded from {encoding}: {to:?}"),
            Fix::InvalidUtf8 { to } => write!(f, "not UTF-8, invalid bytes replaced: {to:?}"),
            Fix::Duplicate { to } => write!(f, "path taken by another file, stored as {to:?}"),
            Fix::Unnamed { to } => write!(f, "no usable name, named {to:?}"),
            Fix::Symlink => write!(f, "symlink not created"),
            Fix::Ignored { expected } => write!(f, "ignored: should be {expected}"),
            Fix::TrailingBytes(n) => write!(f, "{n} bytes after the torrent ignored"),
            Fix::V2Ignored(why) => write!(f, "v2 hashes not used ({why}); pieces checked by SHA-1"),
        }
    }
}

/// Where mended text goes, and how non-UTF-8 text is decoded.
pub(super) struct Mender {
    /// The torrent's `encoding`, if it names one we know.
    pub encoding: Option<&'static Encoding>,
    pub warnings: Vec<Warning>,
}

impl Mender {
    pub fn new(encoding_label: Option<&[u8]>) -> Mender {
        Mender {
            encoding: encoding_label.and_then(Encoding::for_label),
            warnings: Vec::new(),
        }
    }

    pub fn warn(&mut self, field: String, fix: Fix) {
        self.warnings.push(Warning { field, fix });
    }

    /// Text as UTF-8: as it is when it is, else decoded from the torrent's
    /// `encoding`, else with invalid bytes replaced by `_`.
    pub fn text(&mut self, bytes: &[u8], field: &dyn Fn() -> String) -> String {
        if let Ok(s) = std::str::from_utf8(bytes) {
            return s.to_owned();
        }
        if let Some(enc) = self.encoding
            && let Some(s) = enc.decode_without_bom_handling_and_without_replacement(bytes)
        {
            let to = s.into_owned();
            self.warn(
                field(),
                Fix::Decoded {
                    encoding: enc.name(),
                    to: to.clone(),
                },
            );
            return to;
        }
        let to = lossy(bytes);
        self.warn(field(), Fix::InvalidUtf8 { to: to.clone() });
        to
    }

    /// A path component as it is stored, or `None` when it is left out.
    pub fn component(&mut self, raw: &[u8], field: &dyn Fn() -> String) -> Option<String> {
        let mut s = self.text(raw, field);
        if s.is_empty() || s == "." || s == ".." {
            self.warn(field(), Fix::Dropped(s));
            return None;
        }
        if s.contains(['/', '\0']) {
            s = s.replace(['/', '\0'], "_");
            self.warn(field(), Fix::Replaced { to: s.clone() });
        }
        if s.len() > MAX_NAME_BYTES {
            s = shorten(&s, MAX_NAME_BYTES);
            self.warn(field(), Fix::Shortened { to: s.clone() });
        }
        Some(s)
    }
}

/// Invalid UTF-8 sequences replaced by `_`.
fn lossy(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            out.push('_');
        }
    }
    out
}

/// `name` cut to at most `max` bytes on a character boundary, its extension
/// kept when it has a short one.
fn shorten(name: &str, max: usize) -> String {
    let ext = match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= MAX_KEPT_EXTENSION.min(max / 2) => &name[i..],
        _ => "",
    };
    let stem = &name[..name.len() - ext.len()];
    let mut cut = max - ext.len();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ext}", &stem[..cut])
}

/// `name.N.ext`: the `n`th other name for a file called `name`.
fn numbered(name: &str, n: u32) -> String {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= MAX_KEPT_EXTENSION => name.split_at(i),
        _ => (name, ""),
    };
    let suffix = format!(".{n}{ext}");
    if stem.len() + suffix.len() <= MAX_NAME_BYTES {
        format!("{stem}{suffix}")
    } else {
        format!("{}{suffix}", shorten(stem, MAX_NAME_BYTES - suffix.len()))
    }
}

/// Gives every stored file a path of its own: a file whose path another
/// file took first, or that another file needs as a directory, gets a
/// numbered name in the same directory. Pad files and symlinks are never
/// written, so they are left as they are.
pub(super) fn dedupe(files: &mut [FileEntry], m: &mut Mender) {
    let stored = |f: &&FileEntry| f.is_stored();
    let mut renames: Vec<(usize, String)> = Vec::new();
    {
        let mut dirs: HashSet<&[String]> = HashSet::new();
        for f in files.iter().filter(stored) {
            for n in 1..f.path.len() {
                dirs.insert(&f.path[..n]);
            }
        }
        let mut seen: HashSet<&[String]> = HashSet::with_capacity(files.len());
        let mut clashes = Vec::new();
        for (i, f) in files.iter().enumerate().filter(|(_, f)| f.is_stored()) {
            if dirs.contains(f.path.as_slice()) || !seen.insert(&f.path) {
                clashes.push(i);
            }
        }
        let mut given: HashSet<Vec<String>> = HashSet::new();
        // Where numbering goes on for each clashing path: a thousand files
        // of one name take a thousand tries, not half a million.
        let mut next: HashMap<&[String], u32> = HashMap::new();
        for i in clashes {
            let path = &files[i].path;
            let (last, parent) = path.split_last().expect("paths have a name");
            let mut candidate = path.clone();
            let n = next.entry(path.as_slice()).or_insert(1);
            loop {
                candidate[parent.len()] = numbered(last, *n);
                *n += 1;
                let c = candidate.as_slice();
                if !seen.contains(c) && !dirs.contains(c) && !given.contains(c) {
                    break;
                }
            }
            renames.push((i, candidate[parent.len()].clone()));
            given.insert(candidate);
        }
    }
    for (i, name) in renames {
        let path = &mut files[i].path;
        let last = path.len() - 1;
        path[last] = name;
        m.warn(
            format!("info.files[{i}].path"),
            Fix::Duplicate { to: path.join("/") },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortening_keeps_the_extension_and_character_boundaries() {
        let long = format!("{}.tar.gz", "é".repeat(200));
        let s = shorten(&long, MAX_NAME_BYTES);
        assert!(s.len() <= MAX_NAME_BYTES);
        assert!(s.ends_with(".gz"));
        assert!(s.starts_with("éé"));
        let no_ext = "x".repeat(300);
        assert_eq!(shorten(&no_ext, MAX_NAME_BYTES).len(), MAX_NAME_BYTES);
        // A "extension" longer than 32 bytes is cut like the rest.
        let odd = format!("a.{}", "b".repeat(400));
        assert_eq!(shorten(&odd, MAX_NAME_BYTES), odd[..MAX_NAME_BYTES]);
    }

    #[test]
    fn numbered_names_go_before_the_extension() {
        assert_eq!(numbered("a.txt", 1), "a.1.txt");
        assert_eq!(numbered("a", 2), "a.2");
        assert_eq!(numbered(".hidden", 1), ".hidden.1");
        let long = format!("{}.bin", "y".repeat(251));
        let n = numbered(&long, 12);
        assert!(n.len() <= MAX_NAME_BYTES && n.ends_with(".12.bin"), "{n}");
        // Long "extensions" are not kept, whatever their length.
        let odd = format!("a.{}", "b".repeat(253));
        let n = numbered(&odd, 1);
        assert!(n.len() <= MAX_NAME_BYTES && n.ends_with(".1"), "{n}");
        let odd = format!("s.{}.{}", "c".repeat(20), "d".repeat(232));
        assert!(numbered(&odd, 1).len() <= MAX_NAME_BYTES);
        assert!(shorten("ab.cdefgh", 4).len() <= 4);
    }

    #[test]
    fn invalid_utf8_is_decoded_or_replaced() {
        // "中文" in GBK.
        let gbk = [0xd6, 0xd0, 0xce, 0xc4];
        let mut m = Mender::new(Some(b"GBK"));
        assert_eq!(m.text(&gbk, &|| "f".into()), "中文");
        assert!(matches!(m.warnings[0].fix, Fix::Decoded { .. }));
        let mut m = Mender::new(None);
        assert_eq!(m.text(b"a\xffb", &|| "f".into()), "a_b");
        assert!(matches!(m.warnings[0].fix, Fix::InvalidUtf8 { .. }));
        let mut m = Mender::new(Some(b"no-such-encoding"));
        assert_eq!(m.text(b"ok", &|| "f".into()), "ok");
        assert!(m.warnings.is_empty());
    }

    #[test]
    fn components_that_name_no_entry_are_left_out() {
        let mut m = Mender::new(None);
        for c in ["", ".", ".."] {
            assert_eq!(m.component(c.as_bytes(), &|| "f".into()), None);
        }
        assert_eq!(
            m.component(b"a/b\0c", &|| "f".into()).as_deref(),
            Some("a_b_c")
        );
        assert_eq!(m.component(b"...", &|| "f".into()).as_deref(), Some("..."));
        assert_eq!(m.warnings.len(), 4);
    }
}
