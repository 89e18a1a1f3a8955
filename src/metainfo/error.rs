use std::path::PathBuf;

use crate::bencode::DecodeError;

/// Why a torrent file was refused. Every variant names the field at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetainfoError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("torrent file is {0} bytes, more than the 100 MiB accepted")]
    FileTooLarge(u64),
    #[error("not a torrent")]
    Bencode(#[from] DecodeError),
    #[error("missing field `{0}`")]
    Missing(String),
    #[error("field `{field}` should be {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
    },
    #[error("`info.piece length` is {0}; it must be between 1 byte and 256 MiB")]
    PieceLength(i64),
    #[error("`info.pieces` is {0} bytes, not a multiple of 20")]
    PiecesLength(usize),
    #[error(
        "`info.pieces` holds {found} hashes, but {total} bytes in pieces of {piece_length} need {expected}"
    )]
    PieceCount {
        found: usize,
        expected: u64,
        total: u64,
        piece_length: u32,
    },
    #[error("`{field}` is negative ({value})")]
    NegativeLength { field: String, value: i64 },
    #[error("total length is more than 1 PiB")]
    TooLarge,
    #[error("`info` has both `length` and `files`")]
    LengthAndFiles,
    #[error("`info` has neither `length` nor `files`")]
    NoLengthOrFiles,
    #[error("torrent has no files")]
    NoFiles,
    #[error("torrent holds no data (total length 0)")]
    Empty,
    #[error("`info.piece length` is {0}; a v2 torrent's must be a power of two of at least 16 KiB")]
    V2PieceLength(u32),
    #[error("v2 file `{file}`: {problem}")]
    PieceLayer { file: String, problem: &'static str },
}
