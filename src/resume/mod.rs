//! Resume state: which pieces of a payload are verified and on disk, so a
//! restarted `fetch` does not fetch them again and `seed --trust-resume`
//! can skip the full check.
//!
//! The format is a small bencoded dictionary (this module, no I/O); `store`
//! writes it crash-safely. The state is only ever a *subset* of the truth:
//! the engine flushes the payload files before it saves a bitfield that
//! claims their pieces.

pub mod store;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::bencode::{self, OwnedValue, Value};
use crate::bitfield::Bitfield;
use crate::metainfo::{Info, InfoHash};

const VERSION: i64 = 1;

/// What a file looked like when the state was saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub length: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeState {
    pub info_hash: InfoHash,
    /// The payload directory (`DIR/<name>`), canonical.
    pub root: PathBuf,
    pub have: Bitfield,
    /// One per `Info::files` entry; `None` for files not on disk (pad files,
    /// missing files).
    pub files: Vec<Option<FileStamp>>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    #[error("resume state is not valid bencode")]
    Decode(#[from] bencode::DecodeError),
    #[error("resume state: field `{0}` is missing or malformed")]
    Field(&'static str),
    #[error("resume state has version {0}, this build reads {VERSION}")]
    Version(i64),
}

/// Why a saved state does not apply to the payload as it is now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Mismatch {
    #[error("it is for another torrent or directory")]
    Identity,
    #[error("{0} was not there when the download restarted")]
    Missing(String),
    #[error("{0} changed size or modification time since")]
    Changed(String),
}

impl ResumeState {
    /// The state file's name for a torrent in a directory: one file per
    /// (torrent, directory) pair, so two downloads of one torrent into two
    /// places keep separate states.
    pub fn file_name(info_hash: &InfoHash, root: &Path) -> String {
        let dir_hash = crate::hash::sha1(root.as_os_str().as_encoded_bytes());
        let short = data_encoding::HEXLOWER.encode(&dir_hash[..6]);
        format!("{}-{short}.resume", info_hash.to_hex())
    }

    pub fn encode(&self) -> Vec<u8> {
        let files: Vec<OwnedValue> = self
            .files
            .iter()
            .map(|f| match f {
                Some(s) => OwnedValue::List(vec![
                    OwnedValue::Int(s.length as i64),
                    OwnedValue::Int(s.mtime_ns),
                ]),
                None => OwnedValue::List(Vec::new()),
            })
            .collect();
        let mut d = OwnedValue::dict();
        d.insert("files", OwnedValue::List(files))
            .insert("have", self.have.as_wire().to_vec())
            .insert("info-hash", self.info_hash.0.to_vec())
            .insert("pieces", i64::from(self.have.len()))
            .insert("root", self.root.as_os_str().as_encoded_bytes().to_vec())
            .insert("version", VERSION);
        d.to_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<ResumeState, ResumeError> {
        let v = bencode::decode(bytes)?;
        let field = |name: &'static str| v.get(name.as_bytes()).ok_or(ResumeError::Field(name));
        let version = field("version")?
            .as_int()
            .ok_or(ResumeError::Field("version"))?;
        if version != VERSION {
            return Err(ResumeError::Version(version));
        }
        let info_hash = field("info-hash")?
            .as_bytes()
            .and_then(|b| <[u8; 20]>::try_from(b).ok())
            .map(InfoHash)
            .ok_or(ResumeError::Field("info-hash"))?;
        let pieces = field("pieces")?
            .as_int()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(ResumeError::Field("pieces"))?;
        let have = field("have")?
            .as_bytes()
            .and_then(|b| Bitfield::from_wire(b, pieces).ok())
            .ok_or(ResumeError::Field("have"))?;
        let root = field("root")?
            .as_bytes()
            .map(|b| PathBuf::from(std::ffi::OsStr::from_bytes(b)))
            .ok_or(ResumeError::Field("root"))?;
        let files = field("files")?
            .as_list()
            .ok_or(ResumeError::Field("files"))?
            .iter()
            .map(decode_stamp)
            .collect::<Result<_, _>>()?;
        Ok(ResumeState {
            info_hash,
            root,
            have,
            files,
        })
    }

    /// The pieces this state vouches for, if it describes this torrent in
    /// this place. A fetch trusts the pieces of every file that was already
    /// on disk at its full length (its own writes change the mtimes) and
    /// wants the mtime unchanged only for files it had finished; a seed
    /// (`strict`) wants every file's mtime unchanged.
    pub fn usable(
        &self,
        info_hash: &InfoHash,
        info: &Info,
        root: &Path,
        now: &[Option<FileStamp>],
        preexisting: &[bool],
        strict: bool,
    ) -> Result<Bitfield, Mismatch> {
        if self.info_hash != *info_hash
            || self.root != root
            || self.have.len() != info.piece_count()
            || self.files.len() != info.files.len()
            || now.len() != info.files.len()
        {
            return Err(Mismatch::Identity);
        }
        for (i, f) in info.files.iter().enumerate() {
            if !f.is_stored() || f.length == 0 {
                continue;
            }
            let name = || f.path.join("/");
            let claimed = info.file_pieces(i).any(|p| self.have.get(p));
            if !claimed && !strict {
                continue;
            }
            let Some(cur) = now[i] else {
                return Err(Mismatch::Missing(name()));
            };
            if !preexisting.get(i).copied().unwrap_or(false) {
                return Err(Mismatch::Missing(name()));
            }
            // A file all of whose pieces are claimed is never written
            // again: a changed mtime means someone else changed it.
            let finished = info.file_pieces(i).all(|p| self.have.get(p));
            if cur.length != f.length || ((strict || finished) && self.files[i] != Some(cur)) {
                return Err(Mismatch::Changed(name()));
            }
        }
        Ok(self.have.clone())
    }
}

fn decode_stamp(v: &Value<'_>) -> Result<Option<FileStamp>, ResumeError> {
    let bad = || ResumeError::Field("files");
    match v.as_list().ok_or_else(bad)? {
        [] => Ok(None),
        [len, mtime] => Ok(Some(FileStamp {
            length: len
                .as_int()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(bad)?,
            mtime_ns: mtime.as_int().ok_or_else(bad)?,
        })),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests;
