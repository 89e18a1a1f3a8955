//! A stopped torrent's files on disk: moved, renamed or deleted for
//! `torrent-set-location`, `torrent-rename-path` and `torrent-remove`.
//! Only the torrent's own files are touched, found from its file list.

use std::io;
use std::path::{Path, PathBuf};

use crate::metainfo::Info;

/// The torrent's files that are on disk under `dir`, deepest paths first
/// for directories.
fn stored_files(info: &Info, dir: &Path) -> Vec<PathBuf> {
    info.files
        .iter()
        .filter(|f| f.is_stored())
        .map(|f| dir.join(f.relative_path()))
        .collect()
}

/// The directories the torrent's files sit in, below `dir`, deepest first.
fn own_dirs(info: &Info, dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for f in &info.files {
        let mut p = f.relative_path();
        while p.pop() && !p.as_os_str().is_empty() {
            let d = dir.join(&p);
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    dirs
}

/// Whether every directory between `dir` and `path` (below `dir`) is a
/// real directory: a symlink there could lead a delete or a move out of
/// the download directory (storage refuses them too).
fn no_symlinked_dirs(dir: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(dir) else {
        return false;
    };
    let mut at = dir.to_path_buf();
    let mut parts: Vec<_> = rel.components().collect();
    parts.pop();
    parts.into_iter().all(|c| {
        at.push(c);
        !std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink())
    })
}

fn symlinked(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} lies under a symbolic link: left alone", path.display()),
    )
}

/// Deletes the torrent's files, then its directories that are left empty.
/// Files missing already are fine.
pub fn delete(info: &Info, dir: &Path) -> io::Result<()> {
    let mut first_error = None;
    for f in stored_files(info, dir) {
        if !no_symlinked_dirs(dir, &f) {
            first_error.get_or_insert(symlinked(&f));
            continue;
        }
        match std::fs::remove_file(&f) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                first_error.get_or_insert(e);
            }
            _ => {}
        }
    }
    for d in own_dirs(info, dir) {
        // Not empty (someone else's files): left alone.
        let _ = std::fs::remove_dir(&d);
    }
    first_error.map_or(Ok(()), Err)
}

/// Moves the torrent's files from `from` to `to` (renamed where both are
/// on one file system, copied and then deleted where not). Nothing moves
/// if a file would overwrite one already at `to`.
pub fn relocate(info: &Info, from: &Path, to: &Path) -> io::Result<()> {
    if from == to {
        return Ok(());
    }
    let pairs: Vec<(PathBuf, PathBuf)> = info
        .files
        .iter()
        .filter(|f| f.is_stored())
        .map(|f| (from.join(f.relative_path()), to.join(f.relative_path())))
        .filter(|(src, _)| src.exists())
        .collect();
    for (src, dst) in &pairs {
        if !no_symlinked_dirs(from, src) {
            return Err(symlinked(src));
        }
        if !no_symlinked_dirs(to, dst) {
            return Err(symlinked(dst));
        }
        if std::fs::symlink_metadata(dst).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", dst.display()),
            ));
        }
    }
    std::fs::create_dir_all(to)?;
    for (i, (src, dst)) in pairs.iter().enumerate() {
        if let Err(e) = move_file(src, dst) {
            // Put back what moved, so the data stays in one place.
            for (src, dst) in pairs[..i].iter().rev() {
                if let Err(back) = move_file(dst, src) {
                    log::error!("cannot move {} back: {back}", dst.display());
                }
            }
            for d in own_dirs(info, to) {
                let _ = std::fs::remove_dir(&d);
            }
            return Err(e);
        }
    }
    for d in own_dirs(info, from) {
        let _ = std::fs::remove_dir(&d);
    }
    Ok(())
}

/// Renames, or copies (flushed) and deletes across file systems.
fn move_file(src: &Path, dst: &Path) -> io::Result<()> {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::rename(src, dst) {
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            std::fs::copy(src, dst)?;
            std::fs::File::open(dst)?.sync_all()?;
            std::fs::remove_file(src)
        }
        r => r,
    }
}

/// Renames `path` (from the torrent's name down) to `new_name` on disk, if
/// it is there.
pub fn rename(dir: &Path, path: &str, new_name: &str) -> io::Result<()> {
    let src: PathBuf = dir.join(
        path.split('/')
            .filter(|c| !c.is_empty())
            .collect::<PathBuf>(),
    );
    let Some(parent) = src.parent() else {
        return Ok(());
    };
    if !no_symlinked_dirs(dir, &src) {
        return Err(symlinked(&src));
    }
    let dst = parent.join(new_name);
    if dst.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists", dst.display()),
        ));
    }
    match std::fs::rename(&src, &dst) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::{FileAttr, FileEntry};

    fn info() -> Info {
        let file = |path: &[&str], offset, length| FileEntry {
            path: path.iter().map(|s| s.to_string()).collect(),
            length,
            offset,
            attr: FileAttr::default(),
        };
        Info {
            name: "top".into(),
            piece_length: 16,
            pieces: vec![[0; 20]; 1],
            pieces_v2: Vec::new(),
            v2_layers: Vec::new(),
            files: vec![file(&["top", "a"], 0, 3), file(&["top", "d", "b"], 3, 3)],
            private: false,
            multi_file: true,
            total_length: 6,
        }
    }

    fn plant(dir: &Path) {
        std::fs::create_dir_all(dir.join("top/d")).unwrap();
        std::fs::write(dir.join("top/a"), b"aaa").unwrap();
        std::fs::write(dir.join("top/d/b"), b"bbb").unwrap();
    }

    #[test]
    fn delete_takes_only_the_torrents_files() {
        let tmp = tempfile::tempdir().unwrap();
        plant(tmp.path());
        std::fs::write(tmp.path().join("top/d/mine"), b"keep").unwrap();
        std::fs::write(tmp.path().join("other"), b"keep").unwrap();
        delete(&info(), tmp.path()).unwrap();
        assert!(!tmp.path().join("top/a").exists());
        assert!(!tmp.path().join("top/d/b").exists());
        assert_eq!(
            std::fs::read(tmp.path().join("top/d/mine")).unwrap(),
            b"keep"
        );
        assert!(tmp.path().join("other").exists());
        // Deleting again finds nothing to do.
        delete(&info(), tmp.path()).unwrap();
    }

    #[test]
    fn relocate_moves_every_file_and_leaves_no_empty_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let (from, to) = (tmp.path().join("x"), tmp.path().join("y/z"));
        plant(&from);
        relocate(&info(), &from, &to).unwrap();
        assert_eq!(std::fs::read(to.join("top/d/b")).unwrap(), b"bbb");
        assert_eq!(std::fs::read(to.join("top/a")).unwrap(), b"aaa");
        assert!(!from.join("top").exists());
    }

    #[test]
    fn nothing_is_touched_through_a_symlinked_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let (dl, elsewhere) = (tmp.path().join("dl"), tmp.path().join("elsewhere"));
        plant(&elsewhere);
        std::fs::create_dir_all(&dl).unwrap();
        // dl/top -> elsewhere/top: the torrent's own name, but not its files.
        std::os::unix::fs::symlink(elsewhere.join("top"), dl.join("top")).unwrap();
        assert!(delete(&info(), &dl).is_err());
        assert!(relocate(&info(), &dl, &tmp.path().join("to")).is_err());
        assert!(rename(&dl, "top/a", "b").is_err());
        assert_eq!(std::fs::read(elsewhere.join("top/a")).unwrap(), b"aaa");
        assert_eq!(std::fs::read(elsewhere.join("top/d/b")).unwrap(), b"bbb");
    }

    #[test]
    fn relocate_overwrites_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (from, to) = (tmp.path().join("x"), tmp.path().join("y"));
        plant(&from);
        std::fs::create_dir_all(to.join("top/d")).unwrap();
        std::fs::write(to.join("top/d/b"), b"theirs").unwrap();
        assert!(relocate(&info(), &from, &to).is_err());
        assert_eq!(std::fs::read(to.join("top/d/b")).unwrap(), b"theirs");
        assert_eq!(std::fs::read(from.join("top/a")).unwrap(), b"aaa");
        assert!(!to.join("top/a").exists());
    }

    #[test]
    fn rename_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        plant(tmp.path());
        rename(tmp.path(), "top/d", "e").unwrap();
        assert!(tmp.path().join("top/e/b").exists());
        assert!(rename(tmp.path(), "top/a", "e").is_err());
        // Nothing on disk yet: nothing to do.
        rename(tmp.path(), "top/none", "f").unwrap();
    }
}
