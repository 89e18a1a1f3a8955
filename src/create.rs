//! Making torrents (`ringtorrent create`): walk the payload in a fixed order,
//! hash its pieces on every core, and write canonical bencode.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::bencode::OwnedValue;
use crate::hash::merkle;
use crate::metainfo::{InfoHash, MAX_PIECE_LENGTH, MAX_TOTAL_LENGTH};
use crate::storage::hashing::{ReadError, Source, hash_pieces as hash_pieces_of};

#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Tracker tiers (BEP 12); the first URL also goes in `announce`.
    pub trackers: Vec<Vec<String>>,
    /// Web seeds (BEP 19, `url-list`).
    pub web_seeds: Vec<String>,
    /// `None` picks a size from the payload size ([`auto_piece_length`]).
    pub piece_length: Option<u32>,
    pub private: bool,
    pub comment: Option<String>,
    /// Seconds since the epoch; `None` leaves the date out.
    pub creation_date: Option<i64>,
    pub created_by: Option<String>,
    /// Hashing threads; 0 means one per core.
    pub threads: usize,
    /// Which hashes the torrent carries.
    pub version: Version,
}

/// The BitTorrent versions a created torrent speaks (BEP 52).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// SHA-1 piece hashes, which every client reads.
    V1,
    /// Per-file SHA-256 Merkle trees only; each file starts a piece.
    V2,
    /// Both for the same files, each starting a piece (pad files fill the
    /// gaps in the v1 list), so that v1 and v2 clients share one swarm.
    Hybrid,
}

impl Version {
    fn has_v1(self) -> bool {
        self != Version::V2
    }

    fn has_v2(self) -> bool {
        self != Version::V1
    }
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            trackers: Vec::new(),
            web_seeds: Vec::new(),
            piece_length: None,
            private: false,
            comment: None,
            creation_date: None,
            created_by: Some(concat!("ringtorrent/", env!("CARGO_PKG_VERSION")).to_owned()),
            threads: 0,
            version: Version::V1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not a regular file or directory")]
    NotFileOrDir(PathBuf),
    #[error("{0}: no name (give a file or directory with a name)")]
    NoName(PathBuf),
    #[error("{0}: name is not valid UTF-8")]
    NotUtf8(PathBuf),
    #[error("{0}: nothing to share (no files, or only empty ones)")]
    Empty(PathBuf),
    #[error("{0}: payload is larger than 1 PiB")]
    TooLarge(PathBuf),
    #[error("piece size {0} is not a power of two between 16 KiB and 256 MiB")]
    PieceLength(u32),
    #[error("{0}: a file changed size while it was being hashed")]
    Changed(PathBuf),
}

/// A created torrent.
pub struct Created {
    /// The `.torrent` file's bytes.
    pub bytes: Vec<u8>,
    pub info_hash: InfoHash,
    /// SHA-256 of the info dictionary, for a v2 or hybrid torrent.
    pub info_hash_v2: Option<[u8; 32]>,
    pub piece_length: u32,
    pub piece_count: u32,
    pub total_length: u64,
    pub file_count: usize,
}

/// One payload file, in torrent order.
struct SourceFile {
    /// Components below the payload root (empty for a single-file torrent).
    components: Vec<String>,
    path: PathBuf,
    length: u64,
}

/// Piece length for a payload of `total` bytes, as the common clients pick
/// it: a power of two giving roughly 1000 to 2000 pieces, from 16 KiB up to
/// 16 MiB (1 GiB gets 1 MiB pieces).
pub fn auto_piece_length(total: u64) -> u32 {
    const MIN: u64 = 16 * 1024;
    const MAX: u64 = 16 * 1024 * 1024;
    let target = (total / 1500).clamp(MIN, MAX);
    target.next_power_of_two().min(MAX) as u32
}

/// Creates a torrent of the file or directory at `path`.
pub fn create(path: &Path, opts: &CreateOptions) -> Result<Created, CreateError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| CreateError::Io { path: p, source }
    };
    let name = path
        .file_name()
        .ok_or_else(|| CreateError::NoName(path.to_path_buf()))?
        .to_str()
        .ok_or_else(|| CreateError::NotUtf8(path.to_path_buf()))?
        .to_owned();
    let meta = std::fs::metadata(path).map_err(io(path))?;
    let (files, multi) = if meta.is_file() {
        let file = SourceFile {
            components: Vec::new(),
            path: path.to_path_buf(),
            length: meta.len(),
        };
        (vec![file], false)
    } else if meta.is_dir() {
        let mut files = Vec::new();
        let mut seen = HashSet::new();
        walk(path, &mut Vec::new(), &mut files, &mut seen)?;
        (files, true)
    } else {
        return Err(CreateError::NotFileOrDir(path.to_path_buf()));
    };

    let total = files
        .iter()
        .try_fold(0u64, |acc, f| {
            acc.checked_add(f.length).filter(|&t| t <= MAX_TOTAL_LENGTH)
        })
        .ok_or_else(|| CreateError::TooLarge(path.to_path_buf()))?;
    if total == 0 {
        return Err(CreateError::Empty(path.to_path_buf()));
    }
    let piece_length = match opts.piece_length {
        None => auto_piece_length(total),
        Some(p) if p.is_power_of_two() && (16 * 1024..=MAX_PIECE_LENGTH).contains(&p) => p,
        Some(p) => return Err(CreateError::PieceLength(p)),
    };

    // A v2 or hybrid torrent starts every file on a piece, so that its v1
    // pieces and v2 trees cover the same bytes: padding after each file
    // but the last.
    let piece = u64::from(piece_length);
    let pads: Vec<u64> = (0..files.len())
        .map(|i| {
            // A v2-only torrent's layout pads the last file too.
            if opts.version == Version::V2 || (opts.version.has_v2() && i + 1 < files.len()) {
                (piece - files[i].length % piece) % piece
            } else {
                0
            }
        })
        .collect();
    let v1_total = total + pads.iter().sum::<u64>();
    let pieces = if opts.version.has_v1() {
        hash_pieces(path, &files, &pads, v1_total, piece_length, opts.threads)?
    } else {
        Vec::new()
    };

    let mut info = OwnedValue::dict();
    if !opts.version.has_v1() {
        // A v2-only torrent lists its files in the `file tree` alone.
    } else if multi {
        let mut list = Vec::with_capacity(files.len());
        for (f, &pad) in files.iter().zip(&pads) {
            let mut d = OwnedValue::dict();
            d.insert("length", f.length as i64);
            let path: Vec<OwnedValue> = f.components.iter().map(|c| c.as_str().into()).collect();
            d.insert("path", path);
            list.push(d);
            if pad > 0 {
                let mut d = OwnedValue::dict();
                d.insert("attr", "p");
                d.insert("length", pad as i64);
                d.insert(
                    "path",
                    vec![
                        OwnedValue::from(".pad"),
                        OwnedValue::from(pad.to_string().as_str()),
                    ],
                );
                list.push(d);
            }
        }
        info.insert("files", list);
    } else {
        info.insert("length", total as i64);
    }
    info.insert("name", name.as_str());
    info.insert("piece length", i64::from(piece_length));
    if opts.version.has_v1() {
        info.insert("pieces", pieces.concat());
    }
    if opts.private {
        info.insert("private", 1);
    }
    let mut layers = OwnedValue::dict();
    if opts.version.has_v2() {
        let threads = match opts.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let (tree, piece_layers) = v2_tree(&name, &files, multi, piece_length, threads)?;
        info.insert("meta version", 2);
        info.insert("file tree", tree);
        layers = piece_layers;
    }
    let info_bytes = info.to_bytes();

    let mut root = OwnedValue::dict();
    if opts.version.has_v2() {
        root.insert("piece layers", layers);
    }
    if let Some(first) = opts.trackers.iter().flatten().next() {
        root.insert("announce", first.as_str());
    }
    if opts.trackers.iter().map(Vec::len).sum::<usize>() > 1 {
        let tiers: Vec<OwnedValue> = opts
            .trackers
            .iter()
            .filter(|t| !t.is_empty())
            .map(|t| OwnedValue::List(t.iter().map(|u| u.as_str().into()).collect()))
            .collect();
        root.insert("announce-list", tiers);
    }
    if !opts.web_seeds.is_empty() {
        let urls: Vec<OwnedValue> = opts.web_seeds.iter().map(|u| u.as_str().into()).collect();
        root.insert("url-list", urls);
    }
    if let Some(c) = &opts.comment {
        root.insert("comment", c.as_str());
    }
    if let Some(c) = &opts.created_by {
        root.insert("created by", c.as_str());
    }
    if let Some(d) = opts.creation_date {
        root.insert("creation date", d);
    }
    root.insert("info", OwnedValue::dict());
    // Encode the root with a placeholder, then splice in the info bytes we
    // hashed, so the info-hash is over exactly what we write.
    let bytes = splice_info(&root, &info_bytes);

    let info_hash_v2 = opts.version.has_v2().then(|| merkle::sha256(&info_bytes));
    Ok(Created {
        info_hash: InfoHash::known_by(&info_bytes, opts.version.has_v1(), info_hash_v2.as_ref()),
        info_hash_v2,
        bytes,
        piece_length,
        piece_count: v1_total.div_ceil(u64::from(piece_length)) as u32,
        total_length: v1_total,
        file_count: files.len(),
    })
}

fn splice_info(root: &OwnedValue, info_bytes: &[u8]) -> Vec<u8> {
    let OwnedValue::Dict(entries) = root else {
        unreachable!("root is built as a dictionary")
    };
    let mut out = Vec::with_capacity(info_bytes.len() + 256);
    let mut e = crate::bencode::Encoder::new(&mut out);
    e.begin_dict();
    for (k, v) in entries {
        e.bytes(k);
        if k == b"info" {
            e.raw(info_bytes);
        } else {
            e.owned(v);
        }
    }
    e.end();
    out
}

/// Collects regular files below `dir`, sorted by name at every level (byte
/// order, so the result does not depend on the file system or locale).
/// Symlinks are followed, except into a directory that is already being
/// walked (a symlink loop), which is skipped.
fn walk(
    dir: &Path,
    prefix: &mut Vec<String>,
    out: &mut Vec<SourceFile>,
    seen: &mut HashSet<(u64, u64)>,
) -> Result<(), CreateError> {
    let io = |source| CreateError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(dir).map_err(io)?;
    if !seen.insert((meta.dev(), meta.ino())) {
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| CreateError::NotUtf8(path.clone()))?;
        let meta = std::fs::metadata(&path).map_err(|source| CreateError::Io {
            path: path.clone(),
            source,
        })?;
        prefix.push(name);
        if meta.is_dir() {
            walk(&path, prefix, out, seen)?;
        } else if meta.is_file() {
            out.push(SourceFile {
                components: prefix.clone(),
                path,
                length: meta.len(),
            });
        }
        prefix.pop();
    }
    seen.remove(&(meta.dev(), meta.ino()));
    Ok(())
}

/// The v2 `file tree` of `files` and their `piece layers` (BEP 52).
fn v2_tree(
    name: &str,
    files: &[SourceFile],
    multi: bool,
    piece_length: u32,
    threads: usize,
) -> Result<(OwnedValue, OwnedValue), CreateError> {
    let mut tree = OwnedValue::dict();
    let mut layers = OwnedValue::dict();
    for f in files {
        let mut entry = OwnedValue::dict();
        entry.insert("length", f.length as i64);
        if f.length > 0 {
            let leaves = leaf_hashes(f, threads)?;
            let (root, layer) = merkle::file_tree(&leaves, piece_length as usize);
            entry.insert("pieces root", root.to_vec());
            if !layer.is_empty() {
                layers.insert(root.to_vec(), layer.concat());
            }
        }
        let mut leaf = OwnedValue::dict();
        leaf.insert("", entry);
        let single = [name.to_owned()];
        let components: &[String] = if multi { &f.components } else { &single };
        let mut node = &mut tree;
        for c in components {
            let OwnedValue::Dict(d) = node else {
                unreachable!("file tree nodes are dictionaries")
            };
            node = d
                .entry(c.as_bytes().to_vec())
                .or_insert_with(OwnedValue::dict);
        }
        *node = leaf;
    }
    Ok((tree, layers))
}

/// SHA-256 of each 16 KiB block of `f` (the last may be short), on
/// `threads` threads, each reading its own stretch of the file.
fn leaf_hashes(f: &SourceFile, threads: usize) -> Result<Vec<merkle::Hash>, CreateError> {
    use std::os::unix::fs::FileExt;
    let io = |source| CreateError::Io {
        path: f.path.clone(),
        source,
    };
    let file = File::open(&f.path).map_err(io)?;
    let blocks = f.length.div_ceil(merkle::BLOCK as u64) as usize;
    let mut leaves = vec![[0u8; 32]; blocks];
    let per_thread = blocks.div_ceil(threads.max(1)).max(1);
    let results: Vec<std::io::Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = leaves
            .chunks_mut(per_thread)
            .enumerate()
            .map(|(t, out)| {
                let file = &file;
                scope.spawn(move || {
                    let mut buf = vec![0u8; 64 * merkle::BLOCK];
                    let first = (t * per_thread) as u64 * merkle::BLOCK as u64;
                    let end = (first + (out.len() * merkle::BLOCK) as u64).min(f.length);
                    let mut at = first;
                    let mut done = 0;
                    while at < end {
                        let want = (end - at).min(buf.len() as u64) as usize;
                        file.read_exact_at(&mut buf[..want], at)?;
                        for c in buf[..want].chunks(merkle::BLOCK) {
                            out[done] = merkle::sha256(c);
                            done += 1;
                        }
                        at += want as u64;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("hashing thread panicked")))
            })
            .collect()
    });
    for r in results {
        r.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                CreateError::Changed(f.path.clone())
            } else {
                io(e)
            }
        })?;
    }
    Ok(leaves)
}

/// Hashes every v1 piece on `threads` threads (see `storage::hashing`),
/// with `pads[i]` zero bytes after file `i`.
fn hash_pieces(
    root: &Path,
    files: &[SourceFile],
    pads: &[u64],
    total: u64,
    piece_length: u32,
    threads: usize,
) -> Result<Vec<[u8; 20]>, CreateError> {
    let opened = files
        .iter()
        .map(|f| {
            File::open(&f.path).map_err(|source| CreateError::Io {
                path: f.path.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut sources: Vec<Source<'_>> = Vec::with_capacity(files.len() * 2);
    for ((o, f), &pad) in opened.iter().zip(files).zip(pads) {
        sources.push(Source::File(o, f.length));
        if pad > 0 {
            sources.push(Source::Zeros(pad));
        }
    }
    let count = total.div_ceil(u64::from(piece_length)) as usize;
    let hashes = Mutex::new(vec![[0u8; 20]; count]);
    let failure: Mutex<Option<ReadError>> = Mutex::new(None);
    let cancel = AtomicBool::new(false);
    hash_pieces_of(
        &sources,
        piece_length,
        threads,
        true,
        &|_| true,
        &|p, r| match r {
            Ok(read) => {
                if let (Ok(mut all), Some(h)) = (hashes.lock(), read.sha1) {
                    all[p as usize] = h;
                }
            }
            Err(e) => {
                cancel.store(true, Ordering::Relaxed);
                if let Ok(mut slot) = failure.lock() {
                    slot.get_or_insert(e);
                }
            }
        },
        &cancel,
    );
    match failure.into_inner().ok().flatten() {
        // A file shorter than when we listed it.
        Some(ReadError::Missing) => Err(CreateError::Changed(root.to_path_buf())),
        Some(ReadError::Io(source)) => Err(CreateError::Io {
            path: root.to_path_buf(),
            source,
        }),
        None => Ok(hashes.into_inner().unwrap_or_else(|p| p.into_inner())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::Metainfo;

    #[test]
    fn auto_piece_sizes() {
        assert_eq!(auto_piece_length(1), 16 * 1024);
        assert_eq!(auto_piece_length(64 << 20), 64 * 1024);
        assert_eq!(auto_piece_length(1 << 30), 1 << 20);
        assert_eq!(auto_piece_length(2 << 30), 2 << 20);
        assert_eq!(auto_piece_length(1 << 40), 16 << 20);
    }

    #[test]
    fn creates_a_multi_file_torrent_that_parses_back() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("payload");
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::write(root.join("z.bin"), vec![7u8; 40_000]).unwrap();
        std::fs::write(root.join("b/c/deep.txt"), b"hello").unwrap();
        std::fs::write(root.join("b/empty"), b"").unwrap();
        let opts = CreateOptions {
            trackers: vec![
                vec!["http://a/announce".into(), "http://b/announce".into()],
                vec!["udp://c:1".into()],
            ],
            piece_length: Some(16 * 1024),
            private: true,
            comment: Some("hi".into()),
            creation_date: None,
            web_seeds: vec!["http://origin/data/".into()],
            ..CreateOptions::default()
        };
        let created = create(&root, &opts).unwrap();
        let m = Metainfo::from_bytes(&created.bytes).unwrap();
        assert_eq!(m.info_hash, created.info_hash);
        assert_eq!(m.url_list, ["http://origin/data/"]);
        assert!(m.info.private && m.info.multi_file);
        assert_eq!(m.info.name, "payload");
        let paths: Vec<_> = m.info.files.iter().map(|f| f.display_path()).collect();
        assert_eq!(
            paths,
            ["payload/b/c/deep.txt", "payload/b/empty", "payload/z.bin"]
        );
        assert_eq!(m.info.total_length, 40_005);
        assert_eq!(m.announce.as_deref(), Some("http://a/announce"));
        assert_eq!(m.announce_list.len(), 2);
        assert_eq!(m.comment.as_deref(), Some("hi"));
        assert_eq!(m.creation_date, None);
        // Piece 0 is "hello" followed by the first bytes of z.bin.
        let mut first = b"hello".to_vec();
        first.extend(vec![7u8; 16 * 1024 - 5]);
        assert_eq!(m.info.pieces[0], crate::hash::sha1(&first));
        // Same input, same bytes: the output is deterministic.
        assert_eq!(create(&root, &opts).unwrap().bytes, created.bytes);
    }

    #[test]
    fn refuses_empty_payloads_and_bad_piece_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("empty");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/zero"), b"").unwrap();
        assert!(matches!(
            create(&root, &CreateOptions::default()),
            Err(CreateError::Empty(_))
        ));
        std::fs::write(root.join("data"), b"x").unwrap();
        let opts = CreateOptions {
            piece_length: Some(20_000),
            ..CreateOptions::default()
        };
        assert!(matches!(
            create(&root, &opts),
            Err(CreateError::PieceLength(20_000))
        ));
    }

    /// A payload of a multi-piece file, a small one and an empty one; its
    /// v1 byte stream with each file padded to a piece.
    fn v2_payload(dir: &Path) -> (PathBuf, Vec<u8>) {
        let root = dir.join("payload");
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        let big: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(root.join("z.bin"), &big).unwrap();
        std::fs::write(root.join("b/c/deep.txt"), b"hello").unwrap();
        std::fs::write(root.join("b/empty"), b"").unwrap();
        // Tree order: b/c/deep.txt, b/empty, z.bin.
        let mut stream = b"hello".to_vec();
        stream.resize(16 * 1024, 0);
        stream.extend_from_slice(&big);
        (root, stream)
    }

    fn flip_in_piece_layers(bytes: &mut [u8], root: &merkle::Hash) {
        let at = bytes
            .windows(32)
            .position(|w| w == root)
            .expect("the piece's hash is in `piece layers`");
        bytes[at] ^= 1;
    }

    /// A v2 torrent known only by its `info` dictionary (a `btmh` link's)
    /// lacks the layers of files longer than a piece; with the layers a
    /// peer answers to hash requests it is the same torrent, and a torrent
    /// file written of it carries them.
    #[test]
    fn v2_layers_are_served_and_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let (root, _) = v2_payload(dir.path());
        let opts = CreateOptions {
            piece_length: Some(16 * 1024),
            version: Version::V2,
            ..CreateOptions::default()
        };
        let bytes = create(&root, &opts).unwrap().bytes;
        let m = Metainfo::from_bytes(&bytes).unwrap();
        let needs = crate::metainfo::layers_needed(&m.info_bytes)
            .unwrap()
            .unwrap();
        // The torrent file without `piece layers` is one to fetch them for.
        use crate::metainfo::Layerless;
        assert_eq!(Layerless::from_bytes(&bytes), None);
        let mut stripped = bytes.clone();
        let at = stripped
            .windows(15)
            .position(|w| w == b"12:piece layers")
            .unwrap();
        stripped.truncate(at);
        stripped.push(b'e');
        let l = Layerless::from_bytes(&stripped).unwrap();
        assert_eq!(l.info, m.info_bytes);
        assert_eq!(Some(l.info_hash_v2), m.info_hash_v2);
        assert_eq!(needs.piece_length, 16 * 1024);
        // z.bin is the one file longer than a piece.
        let z = m.info.v2_layers[0];
        assert_eq!(needs.files, [(z.root, 3)]);
        let err = Metainfo::from_info(&m.info_bytes, &[], &[]).unwrap_err();
        assert!(err.to_string().contains("z.bin"), "{err}");

        // What a peer asks at the piece layer (base 0 for 16 KiB pieces).
        let req = crate::wire::HashRequest {
            root: z.root,
            base: 0,
            index: 0,
            count: 4,
            proof_layers: 0,
        };
        // Three pieces, and the padding that makes the layer 4 wide.
        let tree = m.info.layer_tree(&z.root).unwrap();
        assert!(m.info.layer_tree(&[7; 32]).is_none());
        let mut hashes = m.info.hashes(&req, &tree).unwrap();
        assert_eq!(hashes.len(), 4);
        assert_eq!(hashes.pop(), Some([0; 32]));
        assert_eq!(merkle::root_of_layer(&hashes, 16 * 1024), z.root);
        for bad in [
            crate::wire::HashRequest { base: 1, ..req },
            crate::wire::HashRequest { index: 1, ..req },
            crate::wire::HashRequest { count: 8, ..req },
        ] {
            assert_eq!(m.info.hashes(&bad, &tree), None, "{bad:?}");
        }
        let layers = vec![(z.root, hashes.concat())];
        assert_eq!(m.info.piece_layers(), layers);
        let again = Metainfo::from_info(&m.info_bytes, &layers, &[]).unwrap();
        assert_eq!(again.info_hash, m.info_hash);
        assert_eq!(again.info.pieces_v2, m.info.pieces_v2);
        let reread = Metainfo::from_bytes(&again.to_torrent_bytes()).unwrap();
        assert_eq!(reread.info.pieces_v2, m.info.pieces_v2);
    }

    #[test]
    fn v2_torrents_check_each_piece_against_its_merkle_root() {
        let dir = tempfile::tempdir().unwrap();
        let (root, stream) = v2_payload(dir.path());
        let opts = CreateOptions {
            piece_length: Some(16 * 1024),
            version: Version::V2,
            ..CreateOptions::default()
        };
        let created = create(&root, &opts).unwrap();
        let m = Metainfo::from_bytes(&created.bytes).unwrap();
        assert_eq!(m.info_hash, created.info_hash);
        assert_eq!(m.info_hash_v2, created.info_hash_v2);
        assert_eq!(m.info_hash.0[..], created.info_hash_v2.unwrap()[..20]);
        assert!(m.info.pieces.is_empty());
        let paths: Vec<_> = m.info.files.iter().map(|f| f.display_path()).collect();
        assert_eq!(
            paths,
            [
                "payload/b/c/deep.txt",
                "payload/.pad/16379",
                "payload/b/empty",
                "payload/z.bin",
                "payload/.pad/9152",
            ]
        );
        assert_eq!(m.info.piece_count(), 4);
        assert_eq!(m.info.piece_count(), created.piece_count);
        for p in 0..4u32 {
            let at = p as usize * 16 * 1024;
            let mut piece = stream[at..(at + 16 * 1024).min(stream.len())].to_vec();
            piece.resize(m.info.piece_len(p) as usize, 0);
            assert!(m.info.verify(p, &piece, None), "piece {p}");
            piece[0] ^= 1;
            assert!(!m.info.verify(p, &piece, None), "piece {p} changed");
        }
        assert!(!m.info.verify(4, &[], None));

        // A piece layer that does not hash to its file's root is refused,
        // naming the file.
        let mut bytes = created.bytes.clone();
        flip_in_piece_layers(&mut bytes, &m.info.pieces_v2[2].root);
        let err = Metainfo::from_bytes(&bytes).unwrap_err().to_string();
        assert!(
            err.contains("z.bin") && err.contains("piece layer"),
            "{err}"
        );
    }

    #[test]
    fn hybrid_pieces_must_pass_both_hashes_and_a_bad_v2_side_falls_back_to_v1() {
        let dir = tempfile::tempdir().unwrap();
        let (root, _) = v2_payload(dir.path());
        let opts = CreateOptions {
            piece_length: Some(16 * 1024),
            version: Version::Hybrid,
            ..CreateOptions::default()
        };
        let created = create(&root, &opts).unwrap();
        let m = Metainfo::from_bytes(&created.bytes).unwrap();
        assert!(m.info.has_v1());
        assert_eq!(m.info.pieces_v2.len(), m.info.pieces.len());
        // v1 files list in walk order: b/c/deep.txt is piece 0.
        let mut piece = b"hello".to_vec();
        piece.resize(16 * 1024, 0);
        assert!(m.info.verify(0, &piece, None));
        // Right SHA-1 claimed, wrong data: the Merkle check still fails.
        let sha1 = crate::hash::sha1(&piece);
        piece[1] ^= 1;
        assert!(!m.info.verify(0, &piece, Some(sha1)));

        let mut bytes = created.bytes.clone();
        flip_in_piece_layers(&mut bytes, &m.info.pieces_v2[2].root);
        let m = Metainfo::from_bytes(&bytes).unwrap();
        assert!(m.info.pieces_v2.is_empty());
        assert!(
            m.warnings
                .iter()
                .any(|w| matches!(w.fix, crate::metainfo::Fix::V2Ignored(_))),
            "{:?}",
            m.warnings
        );
        piece[1] ^= 1;
        assert!(m.info.verify(0, &piece, None));
    }
}
