//! The web UI: files built into the binary, or another client's files
//! from `--web-dir`.

use std::path::{Component, Path, PathBuf};

/// A file to serve: its bytes and content type.
pub struct Asset {
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");
const STYLE: &str = include_str!("web/style.css");

/// The built-in UI's file at `path` (below `/`).
pub fn builtin(path: &str) -> Option<Asset> {
    let (body, content_type) = match path {
        "" | "index.html" => (INDEX, "text/html; charset=utf-8"),
        "app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return None,
    };
    Some(Asset {
        body: body.as_bytes().to_vec(),
        content_type,
    })
}

/// A file of `root` (a web client's directory), if `path` names one
/// inside it. Percent-escapes are decoded; `..`, absolute paths and
/// symlinks out of `root` are refused.
pub fn from_dir(root: &Path, path: &str) -> Option<Asset> {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    let rel = PathBuf::from(decoded.as_ref());
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let mut file = root.join(&rel);
    if file.is_dir() || decoded.is_empty() {
        file = file.join("index.html");
    }
    let real = file.canonicalize().ok()?;
    if !real.starts_with(root.canonicalize().ok()?) || !real.is_file() {
        return None;
    }
    let body = std::fs::read(&real).ok()?;
    Some(Asset {
        body,
        content_type: content_type(&real),
    })
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "gif" => "image/gif",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_dir_paths_stay_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("web");
        std::fs::create_dir_all(root.join("js")).unwrap();
        std::fs::write(root.join("index.html"), "<html>").unwrap();
        std::fs::write(root.join("js/a b.js"), "x").unwrap();
        std::fs::write(tmp.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), root.join("link")).unwrap();
        assert_eq!(from_dir(&root, "").unwrap().body, b"<html>");
        assert_eq!(from_dir(&root, "js/a%20b.js").unwrap().body, b"x");
        assert!(from_dir(&root, "../secret").is_none());
        assert!(from_dir(&root, "js/%2e%2e/%2e%2e/secret").is_none());
        assert!(from_dir(&root, "/etc/passwd").is_none());
        assert!(from_dir(&root, "link").is_none());
        assert!(builtin("index.html").is_some());
        assert!(builtin("../x").is_none());
    }
}
