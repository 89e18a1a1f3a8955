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

/// Deletes the torrent's files, then its directories that are left empty.
/// Files missing already are fine.
pub fn delete(info: &Info, dir: &Path) -> io::Result<()> {
    let mut first_error = None;
    for f in stored_files(info, dir) {
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
/// on one file system, copied and then deleted where not).
pub fn relocate(info: &Info, from: &Path, to: &Path) -> io::Result<()> {
    if from == to {
        return Ok(());
    }
    std::fs::create_dir_all(to)?;
    for f in info.files.iter().filter(|f| f.is_stored()) {
        let (src, dst) = (from.join(f.relative_path()), to.join(f.relative_path()));
        if !src.exists() {
            continue;
        }
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::rename(&src, &dst) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                std::fs::copy(&src, &dst)?;
                std::fs::File::open(&dst)?.sync_all()?;
                std::fs::remove_file(&src)?;
            }
            Err(e) => return Err(e),
        }
    }
    for d in own_dirs(info, from) {
        let _ = std::fs::remove_dir(&d);
    }
    Ok(())
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
