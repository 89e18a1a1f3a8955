//! BEP 52: the v2 `file tree` and `piece layers`, and the Merkle root each
//! piece of a v2 or hybrid torrent must hash to.
//!
//! Files of a v2 torrent start on piece boundaries. A v2-only torrent is
//! laid out here as a v1 byte stream with a pad file after each file that
//! does not end on one (as libtorrent lays it out), so piece indices on the
//! wire, the picker and storage are the same for v1, v2 and hybrid.

use super::parse::{attr, wrong};
use super::sanitize::Mender;
use super::{FileAttr, MetainfoError};
use crate::bencode::{Dict, Value};
use crate::hash::merkle::{self, BLOCK, Hash};

type Result<T> = std::result::Result<T, MetainfoError>;

/// What one piece must hash to: the root of a subtree over its 16 KiB
/// blocks, `leaves` wide, the leaves past the file's end zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V2Piece {
    pub root: Hash,
    /// Bytes of the file in this piece; any after them are padding.
    pub data_len: u32,
    /// The subtree's width: a whole piece's blocks, or for a file that
    /// fits in one piece, its blocks rounded up to a power of two.
    pub leaves: u32,
}

impl V2Piece {
    /// Whether `data` (the piece, padding included) hashes to this root.
    pub fn matches(&self, data: &[u8]) -> bool {
        let Some(data) = data.get(..self.data_len as usize) else {
            return false;
        };
        let mut leaves: Vec<Hash> = data.chunks(BLOCK).map(merkle::sha256).collect();
        if leaves.len() > self.leaves as usize {
            return false;
        }
        leaves.resize(self.leaves as usize, [0; 32]);
        merkle::root(&leaves) == self.root
    }
}

/// A file of a v2 torrent with a piece layer (longer than one piece): its
/// Merkle root, and the pieces of `Info::pieces_v2` that are its layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLayer {
    pub root: Hash,
    pub first_piece: u32,
    pub pieces: u32,
}

/// One file of the `file tree`, as the torrent wrote it.
pub(super) struct TreeFile<'a> {
    /// Path components below the torrent's name.
    pub raw: Vec<&'a [u8]>,
    pub length: u64,
    pub root: Option<Hash>,
    pub attr: FileAttr,
}

impl TreeFile<'_> {
    pub fn display(&self) -> String {
        self.raw
            .iter()
            .map(|c| String::from_utf8_lossy(c))
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// The files of a `file tree`, in the order the torrent lists them. A
/// node with the key `""` is a file; every other node is a directory.
pub(super) fn file_tree<'a>(tree: &Value<'a>, m: &mut Mender) -> Result<Vec<TreeFile<'a>>> {
    let root = tree
        .as_dict()
        .ok_or_else(|| wrong(&|| "info.file tree".into(), "a dictionary"))?;
    let mut files = Vec::new();
    walk(root, &mut Vec::new(), &mut files, m)?;
    if files.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    Ok(files)
}

fn walk<'a>(
    node: &Dict<'a>,
    prefix: &mut Vec<&'a [u8]>,
    out: &mut Vec<TreeFile<'a>>,
    m: &mut Mender,
) -> Result<()> {
    let field = |prefix: &[&[u8]]| {
        let path: Vec<_> = prefix.iter().map(|c| String::from_utf8_lossy(c)).collect();
        format!("info.file tree/{}", path.join("/"))
    };
    if let Some(leaf) = node.get(b"") {
        if node.len() > 1 || prefix.is_empty() {
            return Err(wrong(&|| field(prefix), "either a file or a directory"));
        }
        let d = leaf
            .as_dict()
            .ok_or_else(|| wrong(&|| field(prefix), "a dictionary"))?;
        let attr = attr(d, &field(prefix), m);
        let length = match d.get(b"length") {
            Some(v) => super::parse::length(v, &|| format!("{}.length", field(prefix)))?,
            None if attr.symlink => 0,
            None => return Err(MetainfoError::Missing(format!("{}.length", field(prefix)))),
        };
        let root = match d.get(b"pieces root") {
            None if length == 0 => None,
            None => {
                return Err(MetainfoError::Missing(format!(
                    "{}.pieces root",
                    field(prefix)
                )));
            }
            Some(v) => Some(
                v.as_bytes()
                    .and_then(|b| <Hash>::try_from(b).ok())
                    .ok_or_else(|| {
                        wrong(&|| format!("{}.pieces root", field(prefix)), "32 bytes")
                    })?,
            ),
        };
        out.push(TreeFile {
            raw: prefix.clone(),
            length,
            root,
            attr,
        });
        return Ok(());
    }
    for (key, child) in node.iter() {
        prefix.push(key);
        let d = child
            .as_dict()
            .ok_or_else(|| wrong(&|| field(prefix), "a dictionary"))?;
        walk(d, prefix, out, m)?;
        prefix.pop();
    }
    Ok(())
}

/// Whether `piece_length` can be a v2 torrent's: a power of two, at least
/// one 16 KiB block.
pub(super) fn usable_piece_length(piece_length: u32) -> bool {
    piece_length.is_power_of_two() && piece_length as usize >= BLOCK
}

/// The hash of every piece, and the files that have piece layers:
/// `offsets[i]` is where `files[i]` starts in the torrent's byte stream, on
/// a piece boundary. Each file longer than a piece needs its layer in
/// `layers`, and the layer must hash to the file's root: a torrent cannot
/// be checked piece by piece without it.
pub(super) fn piece_hashes(
    files: &[TreeFile<'_>],
    offsets: &[u64],
    piece_length: u32,
    piece_count: u32,
    layers: Option<&Dict<'_>>,
) -> Result<(Vec<V2Piece>, Vec<FileLayer>)> {
    let pl = u64::from(piece_length);
    let per_piece = piece_length / BLOCK as u32;
    // Grown as layers are found, never sized by the claimed lengths: a
    // torrent may claim far more pieces than it has hashes for.
    let mut out = Vec::new();
    let mut with_layers = Vec::new();
    for (f, &offset) in files.iter().zip(offsets) {
        let (Some(root), true) = (f.root, f.length > 0) else {
            continue;
        };
        let problem = |problem| MetainfoError::PieceLayer {
            file: f.display(),
            problem,
        };
        if offset % pl != 0 || offset / pl != out.len() as u64 {
            return Err(problem("does not start on a piece boundary"));
        }
        let count = f.length.div_ceil(pl);
        if count == 1 {
            let blocks = f.length.div_ceil(BLOCK as u64) as u32;
            out.push(V2Piece {
                root,
                data_len: f.length as u32,
                leaves: blocks.next_power_of_two(),
            });
            continue;
        }
        let layer = layers
            .and_then(|l| l.get(&root))
            .ok_or_else(|| problem("its piece layer is missing from `piece layers`"))?
            .as_bytes()
            .ok_or_else(|| problem("its piece layer is not a byte string"))?;
        if layer.len() as u64 != count * 32 {
            return Err(problem("its piece layer holds the wrong number of hashes"));
        }
        let hashes: Vec<Hash> = layer
            .chunks_exact(32)
            .map(|c| <Hash>::try_from(c).unwrap_or_default())
            .collect();
        if merkle::root_of_layer(&hashes, piece_length as usize) != root {
            return Err(problem(
                "its piece layer does not hash to its `pieces root`",
            ));
        }
        with_layers.push(FileLayer {
            root,
            first_piece: out.len() as u32,
            pieces: hashes.len() as u32,
        });
        for (j, h) in hashes.into_iter().enumerate() {
            out.push(V2Piece {
                root: h,
                data_len: (f.length - j as u64 * pl).min(pl) as u32,
                leaves: per_piece,
            });
        }
    }
    if out.len() != piece_count as usize {
        return Err(MetainfoError::PieceLayer {
            file: "(torrent)".into(),
            problem: "the files do not cover every piece",
        });
    }
    Ok((out, with_layers))
}

/// The piece layers a v2 torrent's `info` dictionary alone lacks: it
/// cannot be checked piece by piece without them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeededLayers {
    pub piece_length: u32,
    /// Each file longer than a piece: its root and piece count.
    pub files: Vec<(Hash, u32)>,
}

/// The layers to fetch (BEP 52 hash requests) before a torrent known only
/// by its `info` dictionary can be downloaded. `None` when it has v1
/// hashes or no `file tree`: a v1 or hybrid torrent needs none.
pub fn layers_needed(info: &[u8]) -> Result<Option<NeededLayers>> {
    let value = crate::bencode::decode(info)?;
    let d = value
        .as_dict()
        .ok_or_else(|| wrong(&|| "info".into(), "a dictionary"))?;
    let (Some(tree), None) = (d.get(b"file tree"), d.get(b"pieces")) else {
        return Ok(None);
    };
    let piece_length = d
        .get(b"piece length")
        .and_then(Value::as_int)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| usable_piece_length(n))
        .ok_or_else(|| {
            wrong(
                &|| "info.piece length".into(),
                "a power of two of at least 16 KiB",
            )
        })?;
    let mut m = Mender::new(None);
    let files = file_tree(tree, &mut m)?;
    let pl = u64::from(piece_length);
    Ok(Some(NeededLayers {
        piece_length,
        files: files
            .iter()
            .filter(|f| f.length > pl)
            .filter_map(|f| Some((f.root?, u32::try_from(f.length.div_ceil(pl)).ok()?)))
            .collect(),
    }))
}
