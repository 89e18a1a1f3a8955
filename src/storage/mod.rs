//! The payload on disk: `DIR/<info.name>`, laid out as the torrent's files.
//!
//! Opening for a download never writes outside `DIR`: the metainfo parser
//! already refused unsafe path components, and here every directory and file
//! below `DIR` is opened relative to its parent without following symlinks,
//! and only regular files are accepted. Space is checked before anything is
//! created. Seeding opens files read-only and never modifies them.

pub mod hashing;
pub mod mapping;

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::bitfield::Bitfield;
use crate::metainfo::Info;
use crate::resume::FileStamp;
use hashing::Source;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is a symlink; refusing to follow it inside the download directory")]
    Symlink(PathBuf),
    #[error("{0} exists and is not a regular file; refusing to write to it")]
    NotRegular(PathBuf),
    #[error("{0} exists and is not a directory")]
    NotDirectory(PathBuf),
    #[error(
        "not enough space in {path}: the torrent needs {need} more bytes, {available} are free"
    )]
    NoSpace {
        path: PathBuf,
        need: u64,
        available: u64,
    },
    #[error("none of the data is in {0}")]
    NoData(PathBuf),
}

/// How verified pieces reach the disk (measured in `perf/RESULTS.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// `O_DIRECT` for the aligned middle of every span: no page-cache copy.
    /// Where the file system refuses `O_DIRECT` (tmpfs), buffered.
    #[default]
    Direct,
    /// Through the page cache, with write-behind (`sync_file_range`) so dirty
    /// pages do not pile up.
    Buffered,
}

/// How the payload is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read-only; files must already exist (missing ones are missing pieces).
    Seed,
    /// Read-write; directories and files are created, files sized to their
    /// final length.
    Fetch,
}

/// How a payload file is opened for I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileMode {
    Read,
    Write,
    /// Written with `O_DIRECT` (aligned spans only).
    WriteDirect,
}

/// The torrent's files on disk. No file stays open: the shards open them
/// through their own bounded caches (`open_file`), relative to the payload
/// directory and never through a symlink.
pub struct Storage {
    /// `DIR`, the directory the payload lives in (shared by the torrents of
    /// one directory, see `share_dir`).
    dir: Arc<OwnedFd>,
    /// Each file's path below `DIR`, indexed like `Info::files`.
    paths: Vec<PathBuf>,
    /// Which files are on disk (`false` for pad files, symlink entries and
    /// files missing when seeding).
    present: Vec<bool>,
    /// Which files existed with data before we opened them (only their
    /// pieces need checking when fetching).
    preexisting: Vec<bool>,
    /// Files written since the last `sync`.
    written: Vec<AtomicBool>,
    /// Whether the file system takes `O_DIRECT` (downloads only).
    direct: bool,
    writable: bool,
    root: PathBuf,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({})", self.root.display())
    }
}

impl Storage {
    pub fn open(info: &Info, dir: &Path, mode: OpenMode) -> Result<Storage, StorageError> {
        Self::open_some(info, dir, mode, None)
    }

    /// Like `open`; for a download, only the files `needed` says are
    /// created (the others are left alone: `None` means all).
    pub fn open_some(
        info: &Info,
        dir: &Path,
        mode: OpenMode,
        needed: Option<&[bool]>,
    ) -> Result<Storage, StorageError> {
        match mode {
            OpenMode::Seed => open_seed(info, dir),
            OpenMode::Fetch => open_fetch(info, dir, needed),
        }
    }

    /// Opens `Info::files[i]` for `mode`: relative to the payload
    /// directory, refusing symlinks anywhere on the way (`openat2` with
    /// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), so nothing planted after
    /// the start can redirect a write outside it.
    pub fn open_file(&self, i: usize, mode: FileMode) -> std::io::Result<File> {
        if !self.present.get(i).copied().unwrap_or(false) {
            return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        }
        let flags = match mode {
            FileMode::Read => OFlags::RDONLY,
            _ if !self.writable => {
                return Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
            }
            FileMode::Write => OFlags::RDWR,
            FileMode::WriteDirect if !self.direct => {
                return Err(std::io::Error::from(std::io::ErrorKind::Unsupported));
            }
            FileMode::WriteDirect => OFlags::RDWR | OFlags::DIRECT,
        };
        let fd = rustix::fs::openat2(
            &*self.dir,
            &self.paths[i],
            flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )?;
        Ok(File::from(fd))
    }

    /// Uses the descriptor another torrent already holds for the same
    /// directory, if there is one, instead of our own: a thousand torrents in
    /// one download directory hold one descriptor for it, not a thousand.
    pub fn share_dir(&mut self, open: &mut HashMap<(u64, u64), Weak<OwnedFd>>) {
        let Ok(st) = rustix::fs::fstat(&*self.dir) else {
            return;
        };
        let key = (st.st_dev, st.st_ino);
        open.retain(|_, w| w.strong_count() > 0);
        match open.get(&key).and_then(Weak::upgrade) {
            Some(shared) => self.dir = shared,
            None => {
                open.insert(key, Arc::downgrade(&self.dir));
            }
        }
    }

    /// Whether `Info::files[i]` is on disk.
    pub fn is_present(&self, i: usize) -> bool {
        self.present.get(i).copied().unwrap_or(false)
    }

    /// Whether pieces may be written with `O_DIRECT` here.
    pub fn has_direct(&self) -> bool {
        self.direct
    }

    /// Where the payload lives (`DIR/<name>`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Which files held data before this run opened them.
    pub fn preexisting(&self) -> &[bool] {
        &self.preexisting
    }

    /// Each file's length and modification time, for resume state.
    pub fn stamps(&self) -> Vec<Option<FileStamp>> {
        self.paths
            .iter()
            .zip(&self.present)
            .map(|(p, &present)| {
                if !present {
                    return None;
                }
                let st = rustix::fs::statat(&*self.dir, p, AtFlags::SYMLINK_NOFOLLOW).ok()?;
                Some(FileStamp {
                    length: st.st_size as u64,
                    mtime_ns: st.st_mtime.saturating_mul(1_000_000_000) + st.st_mtime_nsec as i64,
                })
            })
            .collect()
    }

    /// Notes that a write to file `i` completed (before its piece is marked
    /// had, so a `sync` that follows a look at the have bits covers it).
    pub fn mark_written(&self, i: usize) {
        if let Some(flag) = self.written.get(i) {
            flag.store(true, Ordering::Release);
        }
    }

    /// Flushes the files written since the last call to stable storage, so
    /// that pieces recorded as written afterwards survive a crash. Only
    /// written files: a torrent of 20 000 files syncs the few in flight.
    pub fn sync(&self) -> Result<(), StorageError> {
        for (i, flag) in self.written.iter().enumerate() {
            if flag.swap(false, Ordering::AcqRel) {
                let r = self
                    .open_file(i, FileMode::Read)
                    .and_then(|f| f.sync_data());
                if let Err(e) = r {
                    flag.store(true, Ordering::Release);
                    return Err(io_err(&self.root)(e));
                }
            }
        }
        Ok(())
    }

    /// Whether the payload is still where this run put it (a removed output
    /// directory would swallow every write): the directory still has a name,
    /// the payload's top entry is in it, and the files written since the
    /// last `sync` are still there.
    pub fn still_in_place(&self) -> bool {
        let dir_linked = rustix::fs::fstat(&*self.dir).is_ok_and(|st| st.st_nlink > 0);
        let top = self
            .root
            .file_name()
            .map(Path::new)
            .unwrap_or(Path::new("."));
        dir_linked
            && rustix::fs::statat(&*self.dir, top, AtFlags::SYMLINK_NOFOLLOW).is_ok()
            && self.written.iter().zip(&self.paths).all(|(w, p)| {
                !w.load(Ordering::Acquire)
                    || rustix::fs::statat(&*self.dir, p, AtFlags::SYMLINK_NOFOLLOW).is_ok()
            })
    }

    /// Hashes the pieces that may hold data already, on `threads` threads,
    /// and returns the ones that match. Pieces lying wholly in files we just
    /// created are known to be missing and are not read.
    pub fn check(
        &self,
        info: &Info,
        threads: usize,
        cancel: &AtomicBool,
    ) -> Result<Bitfield, StorageError> {
        let mut candidate = Bitfield::new(info.piece_count());
        for i in 0..info.files.len() {
            if self.preexisting[i] {
                for p in info.file_pieces(i) {
                    candidate.set(p);
                }
            }
        }
        self.check_pieces(info, threads, cancel, &candidate)
    }

    /// Hashes `candidate` pieces (those of files that were on disk) and
    /// returns the ones that match.
    pub fn check_pieces(
        &self,
        info: &Info,
        threads: usize,
        cancel: &AtomicBool,
        candidate: &Bitfield,
    ) -> Result<Bitfield, StorageError> {
        // The files are open for the check only.
        let open: Vec<Option<File>> = (0..info.files.len())
            .map(|i| {
                (self.preexisting[i])
                    .then(|| self.open_file(i, FileMode::Read).ok())
                    .flatten()
            })
            .collect();
        let sources: Vec<Source<'_>> = info
            .files
            .iter()
            .zip(&open)
            .map(|(f, open)| match open {
                _ if f.attr.pad => Source::Zeros(f.length),
                Some(file) => Source::File(file, f.length),
                None => Source::Missing(f.length),
            })
            .collect();
        let have = Mutex::new(Bitfield::new(info.piece_count()));
        let io_error: Mutex<Option<std::io::Error>> = Mutex::new(None);
        hashing::hash_pieces(
            &sources,
            info.piece_length,
            threads,
            info.has_v1(),
            &|p| candidate.get(p),
            &|p, r| match r {
                Ok(read) if info.verify(p, read.data, read.sha1) => {
                    if let Ok(mut b) = have.lock() {
                        b.set(p);
                    }
                }
                Ok(_) | Err(hashing::ReadError::Missing) => {}
                Err(hashing::ReadError::Io(e)) => {
                    if let Ok(mut slot) = io_error.lock() {
                        slot.get_or_insert(e);
                    }
                }
            },
            cancel,
        );
        if let Some(e) = io_error.into_inner().ok().flatten() {
            return Err(StorageError::Io {
                path: self.root.clone(),
                source: e,
            });
        }
        Ok(have.into_inner().unwrap_or_else(|p| p.into_inner()))
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn open_dir(dir: &Path) -> Result<OwnedFd, StorageError> {
    rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(dir)(e.into()))
}

fn open_seed(info: &Info, dir: &Path) -> Result<Storage, StorageError> {
    let root = dir.join(&info.name);
    let dir_fd = open_dir(dir).map_err(|e| match e {
        StorageError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            StorageError::NoData(root.clone())
        }
        e => e,
    })?;
    let mut present = Vec::with_capacity(info.files.len());
    for f in &info.files {
        if !f.is_stored() || f.length == 0 {
            present.push(false);
            continue;
        }
        let path = dir.join(f.relative_path());
        match rustix::fs::openat2(
            &dir_fd,
            f.relative_path(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => {
                let st = rustix::fs::fstat(&fd).map_err(|e| io_err(&path)(e.into()))?;
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    != rustix::fs::FileType::RegularFile
                {
                    return Err(StorageError::NotRegular(path));
                }
                present.push(true);
            }
            Err(Errno::NOENT) => {
                log::warn!("{}: missing; its pieces will not be seeded", path.display());
                present.push(false);
            }
            Err(Errno::LOOP | Errno::XDEV) => return Err(StorageError::Symlink(path)),
            Err(e) => return Err(io_err(&path)(e.into())),
        }
    }
    if !present.iter().any(|&p| p) {
        return Err(StorageError::NoData(root));
    }
    Ok(Storage {
        dir: Arc::new(dir_fd),
        paths: info.files.iter().map(|f| f.relative_path()).collect(),
        written: present.iter().map(|_| AtomicBool::new(false)).collect(),
        preexisting: present.clone(),
        present,
        direct: false,
        writable: false,
        root,
    })
}

fn open_fetch(info: &Info, dir: &Path, needed: Option<&[bool]>) -> Result<Storage, StorageError> {
    let needed = |i: usize| needed.is_none_or(|n| n.get(i).copied().unwrap_or(true));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let dir_fd: OwnedFd = rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(dir)(e.into()))?;

    // Space first: nothing is created for a torrent that cannot fit.
    let mut existing = 0u64;
    let wanted = |(i, f): &(usize, &crate::metainfo::FileEntry)| f.is_stored() && needed(*i);
    for (_, f) in info.files.iter().enumerate().filter(wanted) {
        if let Ok(st) = stat_nofollow(&dir_fd, &f.path)
            && st.is_file()
        {
            existing += st.size.min(f.length);
        }
    }
    let stored: u64 = info
        .files
        .iter()
        .enumerate()
        .filter(wanted)
        .map(|(_, f)| f.length)
        .sum();
    let need = stored.saturating_sub(existing);
    let vfs = rustix::fs::fstatvfs(&dir_fd).map_err(|e| io_err(dir)(e.into()))?;
    let available = vfs.f_bavail.saturating_mul(vfs.f_frsize);
    if need > available {
        return Err(StorageError::NoSpace {
            path: dir.to_path_buf(),
            need,
            available,
        });
    }

    let mut dirs: HashMap<Vec<String>, OwnedFd> = HashMap::new();
    let mut present = Vec::with_capacity(info.files.len());
    let mut preexisting = Vec::with_capacity(info.files.len());
    let mut direct = None;
    for (i, f) in info.files.iter().enumerate() {
        if !f.is_stored() {
            present.push(false);
            preexisting.push(false);
            continue;
        }
        if !needed(i) {
            // Not created; one already there in full (wanted once) stays
            // readable, so its pieces are still seeded.
            let there = stat_nofollow(&dir_fd, &f.path)
                .is_ok_and(|st| st.is_file() && st.size == f.length && f.length > 0);
            present.push(there);
            preexisting.push(there);
            continue;
        }
        let (name, parents) = f.path.split_last().expect("paths are never empty");
        let parent = open_dirs(&dir_fd, dir, parents, &mut dirs)?;
        let path = dir.join(f.relative_path());
        let mode = if f.attr.executable { 0o755 } else { 0o644 };
        let fd = rustix::fs::openat(
            parent.as_fd(),
            name.as_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(|e| match e {
            Errno::LOOP => StorageError::Symlink(path.clone()),
            Errno::ISDIR => StorageError::NotRegular(path.clone()),
            e => io_err(&path)(e.into()),
        })?;
        let st = rustix::fs::fstat(&fd).map_err(|e| io_err(&path)(e.into()))?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(StorageError::NotRegular(path));
        }
        let file = File::from(fd);
        preexisting.push(st.st_size > 0 && f.length > 0);
        if st.st_size as u64 != f.length {
            file.set_len(f.length).map_err(io_err(&path))?;
        }
        drop(file);
        present.push(true);
        // Whether the file system takes direct I/O: asked of the first file.
        if direct.is_none() {
            direct = Some(
                rustix::fs::openat(
                    parent.as_fd(),
                    name.as_str(),
                    OFlags::RDWR | OFlags::NOFOLLOW | OFlags::DIRECT | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .is_ok(),
            );
        }
    }
    drop(dirs);
    Ok(Storage {
        paths: info.files.iter().map(|f| f.relative_path()).collect(),
        written: present.iter().map(|_| AtomicBool::new(false)).collect(),
        present,
        preexisting,
        direct: direct.unwrap_or(false),
        writable: true,
        root: dir.join(&info.name),
        dir: Arc::new(dir_fd),
    })
}

/// Opens (creating as needed) the directory chain `comps` below `base`,
/// refusing symlinks and non-directories at every step.
fn open_dirs<'d>(
    base: &'d OwnedFd,
    base_path: &Path,
    comps: &[String],
    cache: &'d mut HashMap<Vec<String>, OwnedFd>,
) -> Result<std::os::fd::BorrowedFd<'d>, StorageError> {
    for depth in 1..=comps.len() {
        let key = comps[..depth].to_vec();
        if cache.contains_key(&key) {
            continue;
        }
        let parent = if depth == 1 {
            base.as_fd()
        } else {
            cache[&comps[..depth - 1]].as_fd()
        };
        let name = comps[depth - 1].as_str();
        let path: PathBuf = base_path.join(comps[..depth].iter().collect::<PathBuf>());
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(parent, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io_err(&path)(e.into())),
                }
                rustix::fs::openat(parent, name, flags, Mode::empty())
                    .map_err(|e| dir_error(parent, name, e, &path))?
            }
            Err(e) => return Err(dir_error(parent, name, e, &path)),
        };
        cache.insert(key, fd);
    }
    Ok(if comps.is_empty() {
        base.as_fd()
    } else {
        cache[comps].as_fd()
    })
}

/// Names the reason a directory could not be opened. With `O_DIRECTORY`
/// Linux reports a symlink as `ENOTDIR`, so look at what is there.
fn dir_error(
    parent: std::os::fd::BorrowedFd<'_>,
    name: &str,
    e: Errno,
    path: &Path,
) -> StorageError {
    let is_link = || {
        rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink
        })
    };
    match e {
        Errno::LOOP => StorageError::Symlink(path.to_path_buf()),
        Errno::NOTDIR if is_link() => StorageError::Symlink(path.to_path_buf()),
        Errno::NOTDIR => StorageError::NotDirectory(path.to_path_buf()),
        e => io_err(path)(e.into()),
    }
}

/// Metadata of `comps` below `base` if no component is a symlink.
fn stat_nofollow(base: &OwnedFd, comps: &[String]) -> Result<StatLite, Errno> {
    let rel: PathBuf = comps.iter().collect();
    let st = rustix::fs::statat(base, &rel, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(StatLite {
        size: st.st_size as u64,
        kind: rustix::fs::FileType::from_raw_mode(st.st_mode),
    })
}

struct StatLite {
    size: u64,
    kind: rustix::fs::FileType,
}

impl StatLite {
    fn is_file(&self) -> bool {
        self.kind == rustix::fs::FileType::RegularFile
    }
}

#[cfg(test)]
mod tests;
