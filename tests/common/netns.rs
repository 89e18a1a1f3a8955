//! Network namespaces for tests: `ip` commands, and a guard that removes
//! what a test made even when it fails.

use std::process::Command;

/// Runs `ip ARGS`; whether it worked.
pub fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `ip ARGS`, panicking with its stderr if it fails.
pub fn must_ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Namespaces and links removed when dropped.
#[derive(Default)]
pub struct Cleanup {
    pub namespaces: Vec<String>,
    pub links: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in &self.namespaces {
            ip(&["netns", "del", n]);
        }
        for l in &self.links {
            ip(&["link", "del", l]);
        }
    }
}

/// `ringtorrent VERB TORRENT DIR_FLAG DIR` run inside namespace `ns`.
pub fn rt_in(
    ns: &str,
    verb: &str,
    torrent: &std::path::Path,
    dir_flag: &str,
    dir: &std::path::Path,
) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .arg(super::bin())
        .arg(verb)
        .arg(torrent)
        .arg(dir_flag)
        .arg(dir);
    c
}
