//! Torrent metainfo files (BEP 3), with multitracker tiers (BEP 12), the
//! private flag (BEP 27) and pad files (BEP 47).
//!
//! Parsing refuses what makes a torrent unusable (sizes that overflow or do
//! not match the piece hashes, `info` that is not a dictionary) and mends the
//! rest as other clients do ([`sanitize`]): paths that would escape the
//! download directory or collide with each other, names that are not UTF-8,
//! malformed optional keys. A torrent that parses is safe to lay out on disk
//! under `DIR/<name>`.

mod error;
mod info_hash;
mod layout;
mod parse;
mod sanitize;
mod v2;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use error::MetainfoError;
pub use info_hash::{InfoHash, InfoHashParseError};
pub use layout::FileSpan;
pub use sanitize::{Fix, MAX_NAME_BYTES, Warning};
pub use v2::{FileLayer, NeededLayers, V2Piece, layers_needed};

use crate::hash::merkle::LayerTree;

/// The largest piece length accepted. Whole pieces are held in memory while
/// they are downloaded and hashed, so this bounds memory per piece.
pub const MAX_PIECE_LENGTH: u32 = 256 * 1024 * 1024;

/// The largest total payload accepted (1 PiB): anything claiming more is a
/// hostile or broken file, and refusing it early keeps offset arithmetic far
/// from overflow.
pub const MAX_TOTAL_LENGTH: u64 = 1 << 50;

/// The largest torrent file we read (100 MiB): a torrent of several million
/// files fits; a file meant to exhaust memory does not.
pub const MAX_TORRENT_FILE_SIZE: u64 = 100 * 1024 * 1024;

/// A parsed, validated torrent.
#[derive(Debug, Clone)]
pub struct Metainfo {
    pub info: Info,
    /// The hash peers, trackers and the DHT know the torrent by: SHA-1 of
    /// the exact bytes of the `info` dictionary, or for a v2-only torrent
    /// their SHA-256 cut to 20 bytes (BEP 52).
    pub info_hash: InfoHash,
    /// SHA-256 of the same bytes, for a v2 or hybrid torrent (`meta
    /// version` 2).
    pub info_hash_v2: Option<[u8; 32]>,
    /// The `info` dictionary as it appears in the file (BEP 9 serves these).
    pub info_bytes: Vec<u8>,
    pub announce: Option<String>,
    /// BEP 12 tiers as written in the file, empty tiers dropped.
    pub announce_list: Vec<Vec<String>>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
    /// BEP 19 web seeds, kept for later.
    pub url_list: Vec<String>,
    /// What was mended to load the torrent, one entry per change.
    pub warnings: Vec<Warning>,
    /// The path as the torrent wrote it of each stored file whose path on
    /// disk differs, by index in `info.files`.
    pub renamed: BTreeMap<usize, TorrentPath>,
}

/// A file's path as the torrent wrote it: raw components, the torrent's
/// name first (web seeds' URLs are made of these). Displayed with `/`
/// between components and invalid UTF-8 as U+FFFD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentPath(pub Vec<Vec<u8>>);

impl std::fmt::Display for TorrentPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(&String::from_utf8_lossy(c))?;
        }
        Ok(())
    }
}

/// The `info` dictionary.
#[derive(Debug, Clone)]
pub struct Info {
    /// A single safe path component: the file name, or the top directory.
    pub name: String,
    pub piece_length: u32,
    /// One SHA-1 per piece; none in a v2-only torrent.
    pub pieces: Vec<[u8; 20]>,
    /// One Merkle root per piece (BEP 52), in a v2 or hybrid torrent whose
    /// piece layers are sound; else none.
    pub pieces_v2: Vec<V2Piece>,
    /// The files whose piece layers `pieces_v2` holds (those longer than
    /// a piece), for `piece layers` and BEP 52 hash requests.
    pub v2_layers: Vec<FileLayer>,
    /// Every file in torrent order, pad files included. For a single-file
    /// torrent this is one entry whose path is `[name]`.
    pub files: Vec<FileEntry>,
    pub private: bool,
    /// Whether the torrent has a `files` list (payload is a directory).
    pub multi_file: bool,
    /// Sum of all file lengths, pad files included.
    pub total_length: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components below the download directory, starting with the
    /// torrent's name. Each names one entry: never empty, `.` or `..`, no
    /// `/` or NUL, at most 255 bytes; no two stored files share a path.
    pub path: Vec<String>,
    pub length: u64,
    /// Offset of the file's first byte in the torrent's byte stream.
    pub offset: u64,
    pub attr: FileAttr,
}

/// BEP 47 file attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileAttr {
    /// `p`: alignment padding, all zeros, never written to disk.
    pub pad: bool,
    /// `x`
    pub executable: bool,
    /// `h`
    pub hidden: bool,
    /// `l`: a symlink. We never create symlinks from a torrent (one could
    /// point outside the download directory), so these are skipped.
    pub symlink: bool,
}

impl FileEntry {
    /// The file's path relative to the download directory.
    pub fn relative_path(&self) -> PathBuf {
        self.path.iter().collect()
    }

    /// The path as text with `/` separators, for messages and output.
    pub fn display_path(&self) -> String {
        self.path.join("/")
    }

    /// Whether the file's bytes live on disk (pad files and symlinks do not).
    pub fn is_stored(&self) -> bool {
        !self.attr.pad && !self.attr.symlink
    }
}

impl Metainfo {
    /// Parses and validates a torrent file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        parse::metainfo(bytes)
    }

    /// Reads and parses a torrent file, refusing oversized files before
    /// reading them.
    pub fn from_file(path: &std::path::Path) -> Result<Metainfo, MetainfoError> {
        let io = |source| MetainfoError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.len() > MAX_TORRENT_FILE_SIZE {
            return Err(MetainfoError::FileTooLarge(meta.len()));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::from_bytes(&bytes)
    }

    /// The torrent an `info` dictionary fetched by its info-hash makes (a
    /// magnet link's), with the magnet's trackers, and for a v2 torrent
    /// the piece layers fetched from peers (root, hashes).
    pub fn from_info(
        info: &[u8],
        layers: &[([u8; 32], Vec<u8>)],
        tiers: &[Vec<String>],
    ) -> Result<Metainfo, MetainfoError> {
        Self::from_bytes(&torrent_bytes(info, layers, tiers))
    }

    /// A torrent file of this torrent: its `info` dictionary as it was
    /// received, its piece layers and its trackers.
    pub fn to_torrent_bytes(&self) -> Vec<u8> {
        torrent_bytes(
            &self.info_bytes,
            &self.info.piece_layers(),
            &self.tracker_tiers(),
        )
    }

    /// Tracker tiers to use: `announce-list` when it has any tracker (BEP 12
    /// says it supersedes `announce`), else `announce` as a single tier.
    pub fn tracker_tiers(&self) -> Vec<Vec<String>> {
        if !self.announce_list.is_empty() {
            self.announce_list.clone()
        } else if let Some(a) = &self.announce {
            vec![vec![a.clone()]]
        } else {
            Vec::new()
        }
    }
}

/// `d 8:announce .. 13:announce-list .. 4:info <info> 12:piece layers ..
/// e`, keys in order.
fn torrent_bytes(info: &[u8], layers: &[([u8; 32], Vec<u8>)], tiers: &[Vec<String>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(info.len() + 64);
    let mut e = crate::bencode::Encoder::new(&mut out);
    e.begin_dict();
    if let Some(first) = tiers.iter().flatten().next() {
        e.bytes(b"announce").bytes(first.as_bytes());
        e.bytes(b"announce-list").begin_list();
        for tier in tiers.iter().filter(|t| !t.is_empty()) {
            e.begin_list();
            for url in tier {
                e.bytes(url.as_bytes());
            }
            e.end();
        }
        e.end();
    }
    e.bytes(b"info").raw(info);
    if !layers.is_empty() {
        let mut sorted: Vec<_> = layers.iter().collect();
        sorted.sort_by_key(|(root, _)| *root);
        sorted.dedup_by_key(|(root, _)| *root);
        e.bytes(b"piece layers").begin_dict();
        for (root, hashes) in sorted {
            e.bytes(root).bytes(hashes);
        }
        e.end();
    }
    e.end();
    out
}

/// A v2-only torrent file without piece layers its files need (libtorrent
/// writes such files when it has not got the layers yet): it cannot be
/// checked piece by piece until peers give the layers, as for a `btmh`
/// magnet link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layerless {
    pub info: Vec<u8>,
    pub info_hash_v2: [u8; 32],
    pub tiers: Vec<Vec<String>>,
}

impl Layerless {
    /// Whether `bytes` is such a torrent file, and what it holds.
    pub fn from_bytes(bytes: &[u8]) -> Option<Layerless> {
        parse::layerless(bytes)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenameError {
    #[error("{0:?} is not a usable file name")]
    BadName(String),
    #[error("the torrent has no file or directory {0:?}")]
    NoSuchPath(String),
    #[error("{0:?} is taken by another file of the torrent")]
    Taken(String),
}

impl Info {
    /// Gives the payload another name: the single file's, or the top
    /// directory's of a multi-file torrent. (The info-hash stays the
    /// torrent's: it is taken over the original bytes.)
    pub fn rename(&mut self, name: &str) {
        self.name = name.to_owned();
        for f in &mut self.files {
            if let Some(first) = f.path.first_mut() {
                *first = name.to_owned();
            }
        }
    }

    /// Renames one file or directory of the payload, as Transmission's
    /// `torrent-rename-path` does: `path` names it from the torrent's name
    /// down (`name/dir/file`), `new_name` is its new last component.
    pub fn rename_path(&mut self, path: &str, new_name: &str) -> Result<(), RenameError> {
        if parse::component_problem(new_name).is_some() {
            return Err(RenameError::BadName(new_name.to_owned()));
        }
        let from: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let matches = |f: &FileEntry| {
            f.path.len() >= from.len() && f.path.iter().zip(&from).all(|(a, b)| a == b)
        };
        if from.is_empty() || !self.files.iter().any(matches) {
            return Err(RenameError::NoSuchPath(path.to_owned()));
        }
        if from.len() == 1 {
            self.rename(new_name);
            return Ok(());
        }
        let depth = from.len() - 1;
        let taken = self.files.iter().any(|f| {
            !matches(f)
                && f.path.len() > depth
                && f.path[..depth].iter().zip(&from).all(|(a, b)| a == b)
                && f.path[depth] == new_name
        });
        if taken {
            return Err(RenameError::Taken(new_name.to_owned()));
        }
        for f in self.files.iter_mut().filter(|f| matches(f)) {
            f.path[depth] = new_name.to_owned();
        }
        Ok(())
    }

    pub fn piece_count(&self) -> u32 {
        // Parsing checked that the count fits in u32.
        self.pieces.len().max(self.pieces_v2.len()) as u32
    }

    /// Each piece layer as `piece layers` holds it: the file's root, and
    /// its pieces' hashes end to end.
    pub fn piece_layers(&self) -> Vec<([u8; 32], Vec<u8>)> {
        self.v2_layers
            .iter()
            .map(|l| (l.root, self.layer(l).flatten().copied().collect()))
            .collect()
    }

    fn layer<'a>(&'a self, l: &FileLayer) -> impl Iterator<Item = &'a [u8; 32]> + 'a {
        let (from, n) = (l.first_piece as usize, l.pieces as usize);
        self.pieces_v2.iter().skip(from).take(n).map(|p| &p.root)
    }

    /// The tree over the piece layer of the file whose root is `root`,
    /// if it has one (a file longer than a piece).
    pub fn layer_tree(&self, root: &[u8; 32]) -> Option<LayerTree> {
        let l = self.v2_layers.iter().find(|l| l.root == *root)?;
        let layer = self.layer(l).copied().collect();
        Some(LayerTree::new(layer, self.piece_length as usize))
    }

    /// The answer to a BEP 52 hash request from `tree` (its file's): the
    /// requested hashes and their uncles, or `None` to reject it. We keep
    /// piece layers only, so only requests at the piece layer are answered.
    pub fn hashes(
        &self,
        req: &crate::wire::HashRequest,
        tree: &LayerTree,
    ) -> Option<Vec<[u8; 32]>> {
        /// libtorrent's bound: 256 KiB of hashes in one answer.
        const MAX_COUNT: u32 = 8192;
        let piece_layer =
            (self.piece_length as usize / crate::hash::merkle::BLOCK).trailing_zeros();
        if req.base != piece_layer || req.count > MAX_COUNT {
            return None;
        }
        tree.hashes(
            req.index as usize,
            req.count as usize,
            req.uncles() as usize,
        )
    }

    /// Whether the torrent has v1 hashes: callers that hash many pieces
    /// at once compute SHA-1 in batches and pass it to [`Info::verify`].
    pub fn has_v1(&self) -> bool {
        !self.pieces.is_empty()
    }

    /// Whether `data` is piece `piece`: its SHA-1 (`sha1`, when the caller
    /// computed it already) against the v1 hash, and its Merkle root
    /// against the v2 one, each where the torrent has it. A hybrid piece
    /// must pass both.
    pub fn verify(&self, piece: u32, data: &[u8], sha1: Option<[u8; 20]>) -> bool {
        let p = piece as usize;
        if piece >= self.piece_count() {
            return false;
        }
        if let Some(want) = self.pieces.get(p)
            && sha1.unwrap_or_else(|| crate::hash::sha1(data)) != *want
        {
            return false;
        }
        self.pieces_v2.get(p).is_none_or(|v2| v2.matches(data))
    }
}

#[cfg(test)]
mod tests;
