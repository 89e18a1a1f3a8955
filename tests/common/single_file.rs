//! A single-file payload of random bytes with its torrent, and the fake
//! peers and resume state that tests built around it need.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ringtorrent::metainfo::Metainfo;
use ringtorrent::resume::ResumeState;

use super::fake_peer::{Behavior, FakeSeeder, SeederSpec};
use super::{random_bytes, rt_create_cmd, run_ok};

/// `src/data.bin` in a temp dir, and `t.torrent` for it.
pub struct SingleFile {
    pub tmp: tempfile::TempDir,
    pub src: PathBuf,
    pub torrent: PathBuf,
    pub meta: Metainfo,
    pub data: Arc<Vec<u8>>,
}

impl SingleFile {
    pub fn new(len: usize, seed: u64, piece: &str) -> SingleFile {
        Self::with_create_args(len, seed, piece, &[])
    }

    /// The same, the torrent made with `ringtorrent create ARGS`
    /// (`--v2`, say).
    pub fn with_create_args(len: usize, seed: u64, piece: &str, args: &[&str]) -> SingleFile {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let data = random_bytes(len, seed);
        std::fs::write(src.join("data.bin"), &data).unwrap();
        let torrent = tmp.path().join("t.torrent");
        run_ok(rt_create_cmd(&src.join("data.bin"), &torrent, piece).args(args));
        let meta = Metainfo::from_file(&torrent).unwrap();
        SingleFile {
            tmp,
            src,
            torrent,
            meta,
            data: Arc::new(data),
        }
    }

    /// A fake peer serving this payload from its own loopback address.
    pub fn fake_seeder(
        &self,
        behavior: Behavior,
        ip: [u8; 4],
        block_delay: Duration,
    ) -> FakeSeeder {
        FakeSeeder::start(SeederSpec {
            info_hash: self.meta.info_hash.0,
            data: self.data.clone(),
            piece_length: self.meta.info.piece_length,
            behavior,
            block_delay,
            ip,
        })
    }
}

/// The resume state saved in `state_dir`, if there is one yet.
pub fn saved_state(state_dir: &Path) -> Option<ResumeState> {
    let entry = std::fs::read_dir(state_dir)
        .ok()?
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "resume"))?;
    let bytes = std::fs::read(entry.path()).ok()?;
    Some(ResumeState::decode(&bytes).expect("a saved state always decodes"))
}

/// The pieces named by the resume journal in `state_dir` (written since the
/// last save), if there is one.
pub fn journaled_pieces(state_dir: &Path) -> Vec<u32> {
    std::fs::read_dir(state_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "journal"))
        .flat_map(|e| {
            std::fs::read(e.path())
                .unwrap_or_default()
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect::<Vec<_>>()
        })
        .collect()
}
