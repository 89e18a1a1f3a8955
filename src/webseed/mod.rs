//! Web seeds (BEP 19): pieces fetched with HTTP(S) range requests from the
//! servers in a torrent's `url-list`, alongside peers. Each server gets a
//! few worker threads, sharing one `ureq` agent (a pool of keep-alive
//! connections).
//! A worker leases a run of consecutive pieces from the session's
//! coordinator (so peers and web seeds never fetch the same piece outside
//! endgame), fetches their bytes in one request per file, checks each
//! piece's hash, writes the good ones and reports them done. Errors back
//! off (1 s doubling to 60 s); a server that keeps failing, or that serves
//! bytes failing their hash, is dropped and counted.

mod server;
mod url;

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use server::Server;
pub use server::{Dropped, MAX_BAD_PIECES, MAX_ERRORS_IN_A_ROW};
pub use url::{Part, file_url, parts, url_paths};

use crate::lock;
use crate::metainfo::Info;
use crate::storage::{FileMode, Storage};

/// Lease holders of web seed workers are numbered from here, apart from
/// the shards (which are numbered from 0).
pub const HOLDER_BASE: usize = 1 << 24;

/// Bytes fetched by one request, at most (a piece bigger than this is
/// fetched alone): big enough that per-request costs vanish, small enough
/// to keep every worker's buffer modest.
const RUN_BYTES: u64 = 4 << 20;
/// Workers per server, at most; fewer for huge pieces (their buffers).
const WORKERS: usize = 4;
const WORKER_MEMORY: u64 = 256 << 20;

/// What a worker tells the coordinator.
#[derive(Debug)]
pub enum WebMsg {
    /// Lease up to `max` consecutive pieces at or after `from` to `holder`.
    /// The answer is `None` when nothing is left to fetch (the torrent is
    /// complete or gone), else the pieces (maybe none, for now).
    Want {
        holder: usize,
        from: u32,
        max: u32,
        reply: SyncSender<Option<Vec<u32>>>,
    },
    /// A piece passed its hash and is written.
    Done { piece: u32, bytes: u64 },
    /// Leased pieces given back unfetched (`bad`: one of them failed its
    /// hash).
    Return {
        holder: usize,
        pieces: Vec<u32>,
        bad: bool,
    },
    /// A request failed.
    Error,
    /// A server was given up.
    Dropped(Dropped),
}

/// Counters of a torrent's web seeds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WebSeedStats {
    /// Payload bytes of verified pieces.
    pub downloaded: u64,
    pub pieces: u64,
    pub bad_pieces: u64,
    pub errors: u64,
    pub dropped: u64,
}

impl WebSeedStats {
    pub fn record(&mut self, msg: &WebMsg) {
        match msg {
            WebMsg::Done { bytes, .. } => {
                self.downloaded += bytes;
                self.pieces += 1;
            }
            WebMsg::Return { bad: true, .. } => self.bad_pieces += 1,
            WebMsg::Error => self.errors += 1,
            WebMsg::Dropped(_) => self.dropped += 1,
            WebMsg::Want { .. } | WebMsg::Return { .. } => {}
        }
    }
}

/// How a worker reaches the coordinator.
pub type Tell = Arc<dyn Fn(WebMsg) + Send + Sync>;

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("{0}")]
    Transport(Box<ureq::Transport>),
    #[error("the server ignored the range (status 200 for bytes from {0})")]
    NoRange(u64),
    #[error("the server answered another range ({0:?})")]
    WrongRange(String),
    #[error("reading the body")]
    Body(#[source] std::io::Error),
}

/// What a torrent's web seeds need: the servers, the files' layout (as
/// the storage has it) and their names on the servers ([`url_paths`]).
pub struct WebSeedSetup {
    pub urls: Vec<String>,
    pub info: Arc<Info>,
    pub paths: Arc<[String]>,
}

/// A torrent's web seeds. Dropping it stops the workers (a request in
/// flight finishes or times out first; nothing waits for it).
pub struct WebSeeds {
    stop: Arc<AtomicBool>,
}

impl WebSeeds {
    /// Starts the workers.
    pub fn start(setup: WebSeedSetup, storage: Arc<Storage>, tell: Tell) -> WebSeeds {
        let WebSeedSetup { urls, info, paths } = setup;
        let stop = Arc::new(AtomicBool::new(false));
        let piece = u64::from(info.piece_length);
        let run = (RUN_BYTES / piece).clamp(1, 1024) as u32;
        let workers = ((WORKER_MEMORY / piece.max(RUN_BYTES)) as usize).clamp(1, WORKERS);
        let total = urls.len() * workers;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(30))
            .user_agent(concat!("ringtorrent/", env!("CARGO_PKG_VERSION")))
            .build();
        for (s, base) in urls.iter().enumerate() {
            let server = Arc::new(Mutex::new(Server::default()));
            for w in 0..workers {
                let k = s * workers + w;
                let worker = Worker {
                    holder: HOLDER_BASE + k,
                    base: base.clone(),
                    info: info.clone(),
                    paths: paths.clone(),
                    storage: storage.clone(),
                    server: server.clone(),
                    tell: tell.clone(),
                    stop: stop.clone(),
                    agent: agent.clone(),
                    // Spread over the torrent, so workers take different runs.
                    cursor: (u64::from(info.piece_count()) * k as u64 / total as u64) as u32,
                    run,
                    buf: Vec::new(),
                };
                let spawned = std::thread::Builder::new()
                    .name("web-seed".into())
                    .spawn(move || worker.run());
                if let Err(e) = spawned {
                    log::warn!("web seed {base}: cannot start a worker: {e}");
                }
            }
        }
        WebSeeds { stop }
    }
}

impl Drop for WebSeeds {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Worker {
    holder: usize,
    base: String,
    info: Arc<Info>,
    paths: Arc<[String]>,
    storage: Arc<Storage>,
    server: Arc<Mutex<Server>>,
    tell: Tell,
    stop: Arc<AtomicBool>,
    agent: ureq::Agent,
    cursor: u32,
    run: u32,
    buf: Vec<u8>,
}

impl Worker {
    fn run(mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            let wait = {
                let s = lock(&self.server);
                if s.dropped().is_some() {
                    return;
                }
                s.wait_until(Instant::now())
            };
            if let Some(t) = wait {
                let left = t.saturating_duration_since(Instant::now());
                std::thread::sleep(left.min(Duration::from_millis(200)));
                continue;
            }
            let (tx, rx) = sync_channel(1);
            (self.tell)(WebMsg::Want {
                holder: self.holder,
                from: self.cursor,
                max: self.run,
                reply: tx,
            });
            let pieces = match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Some(p)) => p,
                Ok(None) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => continue,
            };
            let Some(&last) = pieces.last() else {
                // Everything left is being fetched by others for now.
                std::thread::sleep(Duration::from_millis(500));
                continue;
            };
            self.cursor = (last + 1) % self.info.piece_count();
            if !self.fetch(&pieces) {
                return;
            }
        }
    }

    /// Fetches, checks and writes a run of consecutive pieces; false when
    /// this worker cannot go on (the disk failed).
    fn fetch(&mut self, pieces: &[u32]) -> bool {
        // One buffer for the worker's life: a fresh one per request would
        // fault in every page of it again.
        let mut buf = std::mem::take(&mut self.buf);
        let go = self.fetch_into(pieces, &mut buf);
        self.buf = buf;
        go
    }

    fn fetch_into(&mut self, pieces: &[u32], buf: &mut Vec<u8>) -> bool {
        let info = &*self.info;
        let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
        let start = info.piece_offset(first);
        let end = info.piece_offset(last) + u64::from(info.piece_len(last));
        buf.resize((end - start) as usize, 0);
        if let Err(e) = self.download(start..end, buf) {
            log::debug!("web seed {}: {e}", self.base);
            (self.tell)(WebMsg::Error);
            let dropped = {
                let mut server = lock(&self.server);
                match e {
                    FetchError::NoRange(_) => server
                        .give_up(Dropped::NoRanges)
                        .then_some(Dropped::NoRanges),
                    _ => server.on_error(Instant::now()).then_some(Dropped::Errors),
                }
            };
            if let Some(why) = dropped {
                log::warn!("web seed {} dropped: {e}", self.base);
                (self.tell)(WebMsg::Dropped(why));
            }
            self.give_back(pieces.to_vec(), false);
            return true;
        }
        lock(&self.server).on_success();
        for (i, &p) in pieces.iter().enumerate() {
            if self.stop.load(Ordering::Relaxed) {
                self.give_back(pieces[i..].to_vec(), false);
                return false;
            }
            let at = (info.piece_offset(p) - start) as usize;
            let data = &buf[at..at + info.piece_len(p) as usize];
            if !info.verify(p, data, None) {
                self.give_back(vec![p], true);
                if lock(&self.server).on_bad_piece() {
                    log::warn!("web seed {} dropped: its data fails the hash", self.base);
                    (self.tell)(WebMsg::Dropped(Dropped::WrongData));
                }
                continue;
            }
            if let Err(e) = self.write(info.piece_offset(p), data) {
                log::warn!("web seed {}: cannot write piece {p}: {e}", self.base);
                self.give_back(pieces[i..].to_vec(), false);
                return false;
            }
            (self.tell)(WebMsg::Done {
                piece: p,
                bytes: data.len() as u64,
            });
        }
        true
    }

    fn give_back(&self, pieces: Vec<u32>, bad: bool) {
        (self.tell)(WebMsg::Return {
            holder: self.holder,
            pieces,
            bad,
        });
    }

    fn download(&self, range: std::ops::Range<u64>, buf: &mut [u8]) -> Result<(), FetchError> {
        for part in parts(&self.base, &self.info, &self.paths, range) {
            let (url, file_range, at) = match part {
                Part::Http {
                    url,
                    file_range,
                    at,
                } => (url, file_range, at),
                Part::Zeros { len, at } => {
                    buf[at..at + len].fill(0);
                    continue;
                }
            };
            let len = (file_range.end - file_range.start) as usize;
            let last = file_range.end - 1;
            let resp = self
                .agent
                .get(&url)
                .set("Range", &format!("bytes={}-{last}", file_range.start))
                // The bytes as stored, not a compressed form of them.
                .set("Accept-Encoding", "identity")
                .call()
                .map_err(|e| match e {
                    ureq::Error::Status(code, _) => FetchError::Status(code),
                    ureq::Error::Transport(t) => FetchError::Transport(Box::new(t)),
                })?;
            if resp.status() == 206 {
                let answered = resp.header("Content-Range").unwrap_or("");
                if !answered.starts_with(&format!("bytes {}-{last}/", file_range.start)) {
                    return Err(FetchError::WrongRange(answered.to_owned()));
                }
            } else if file_range.start != 0 {
                // A whole file answered for a range from its start will do.
                return Err(FetchError::NoRange(file_range.start));
            }
            resp.into_reader()
                .take(len as u64)
                .read_exact(&mut buf[at..at + len])
                .map_err(FetchError::Body)?;
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let end = offset + data.len() as u64;
        for s in self.info.spans(offset..end) {
            if !self.info.files[s.file].is_stored() {
                continue;
            }
            let from = (self.info.files[s.file].offset + s.offset - offset) as usize;
            let file = self.storage.open_file(s.file, FileMode::Write)?;
            file.write_all_at(&data[from..from + s.len as usize], s.offset)?;
            self.storage.mark_written(s.file);
        }
        Ok(())
    }
}
