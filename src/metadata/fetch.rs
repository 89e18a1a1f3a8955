//! The driver of an [`Exchange`]: connects to candidate peers, a thread per
//! connection that reads and reports what arrives, and one loop (the
//! caller's thread) that owns the exchange and writes the requests.
//!
//! These connections speak only the handshakes and `ut_metadata`, and for
//! a v2 link (`btmh`) BEP 52 hash requests: the piece layers of its files
//! are fetched on them after the `info` dictionary. Once all is verified
//! they are closed, and the torrent starts on the
//! session engine with the peers that had it. They follow the session's
//! `--encryption` policy as its own connections do: MSE first under
//! `prefer` (plaintext again for a peer that fails it) and `require`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::{
    Exchange, LayerMisbehaviour, LayerProgress, Layers, MetadataMsg, Misbehaviour, Progress,
    Refusal,
};
use crate::metainfo::InfoHash;
use crate::mse::{self, Keystream, Policy};
use crate::wire::{
    self, ExtHandshake, HANDSHAKE_LEN, Handshake, HashRequest, Message, PeerId, UT_METADATA,
};

/// The biggest message read on a metadata connection (a bitfield of a
/// torrent of 16 million pieces; metadata pieces are 16 KiB).
const MAX_MESSAGE: usize = 2 << 20;
/// Addresses waiting to be dialled, and addresses remembered (tried, or
/// not to be tried again): the DHT and trackers keep reporting peers to a
/// fetch that may run for as long as the daemon does.
const MAX_CANDIDATES: usize = 2000;
const MAX_REMEMBERED: usize = 4096;
/// A keep-alive on every metadata connection this often, so that peers
/// waiting for their turn are not dropped as idle.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(60);

/// Between failed attempt `n` (from 1) at an address and the next: 1, 3, 9,
/// 27, 81 s, then 5 minutes. Quick at first: a seeder named in the link may
/// still be starting; never given up, as the fetch may wait for a long time.
fn retry_after(n: u32) -> Duration {
    Duration::from_secs(3u64.pow(n.saturating_sub(1).min(4))).max(if n > 5 {
        Duration::from_secs(300)
    } else {
        Duration::ZERO
    })
}

#[derive(Debug, Clone)]
pub struct FetchConfig {
    pub info_hash: InfoHash,
    /// For a v2 link: the SHA-256 info-hash the metadata is checked
    /// against (`info_hash` is then this cut to 20 bytes).
    pub info_hash_v2: Option<[u8; 32]>,
    /// The `info` dictionary when known already (a v2 torrent file without
    /// its piece layers): only the layers are fetched, from any peer.
    pub known_info: Option<std::sync::Arc<[u8]>>,
    pub peer_id: PeerId,
    /// Our listen port, told to peers (0: none).
    pub listen_port: u16,
    pub max_size: u64,
    /// Metadata connections at once.
    pub max_connections: usize,
    pub connect_timeout: Duration,
    /// Give up after this long without the metadata.
    pub timeout: Option<Duration>,
    pub encryption: Policy,
}

impl FetchConfig {
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> FetchConfig {
        FetchConfig {
            info_hash,
            info_hash_v2: None,
            known_info: None,
            peer_id,
            listen_port: 0,
            max_size: super::MAX_SIZE,
            max_connections: 8,
            connect_timeout: Duration::from_secs(5),
            timeout: None,
            encryption: Policy::PreferPlain,
        }
    }
}

/// The verified metadata and what the exchange saw.
#[derive(Debug)]
pub struct Fetched {
    /// The `info` dictionary, hashing to the info-hash.
    pub info: Vec<u8>,
    /// Peers that had the torrent (they offered its metadata).
    pub peers: Vec<SocketAddr>,
    /// Peers that sent at least one piece of the verified copy.
    pub sources: usize,
    /// Peers dropped or refused, by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// A v2 torrent's piece layers, each checked against its file's root:
    /// (root, piece hashes end to end). Empty for v1 and hybrid torrents.
    pub piece_layers: Vec<([u8; 32], Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("stopped before the metadata arrived")]
    Cancelled,
    #[error(
        "no metadata after {secs} s: {tried} peers tried, {offered} offered it{}",
        refused_text(refused)
    )]
    TimedOut {
        secs: u64,
        tried: usize,
        offered: usize,
        refused: BTreeMap<&'static str, u64>,
    },
}

fn refused_text(refused: &BTreeMap<&'static str, u64>) -> String {
    refused.iter().map(|(k, n)| format!(", {k}: {n}")).collect()
}

enum Report {
    /// The handshake went through; this half is for writing.
    Connected(Box<Writer>),
    /// The peer's extension handshake: its id for `ut_metadata` and the
    /// size it offers.
    Offers {
        id: Option<u8>,
        size: Option<u64>,
    },
    Data {
        piece: u32,
        total_size: u64,
        data: Vec<u8>,
    },
    Reject(u32),
    Hashes {
        req: HashRequest,
        hashes: Vec<u8>,
    },
    HashReject(HashRequest),
    Gone(String),
}

/// After the `info` dictionary of a v2 torrent: its piece layers.
struct LayerPhase {
    info: Vec<u8>,
    sources: usize,
    layers: Layers<SocketAddr>,
}

struct Conn {
    writer: Option<Box<Writer>>,
    /// The peer's id for `ut_metadata`, once it offered the metadata (for
    /// a known `info` dictionary, 0 once it sent its extension handshake):
    /// only such peers are asked.
    ut_metadata: Option<u8>,
}

/// Fetches the metadata of `cfg.info_hash` from `peers` and whatever
/// arrives on `more` (trackers, the DHT, ...), until it is verified or
/// `stop` says so.
pub fn fetch(
    cfg: &FetchConfig,
    peers: &[SocketAddr],
    more: &Receiver<Vec<SocketAddr>>,
    stop: &dyn Fn() -> bool,
) -> Result<Fetched, FetchError> {
    let mut exchange =
        Exchange::<SocketAddr>::new(cfg.info_hash, cfg.max_size).verifying_v2(cfg.info_hash_v2);
    let mut phase: Option<LayerPhase> = None;
    if let Some(info) = &cfg.known_info {
        match crate::metainfo::layers_needed(info) {
            Ok(Some(needs)) if !needs.files.is_empty() => {
                phase = Some(LayerPhase {
                    info: info.to_vec(),
                    sources: 0,
                    layers: Layers::new(needs.piece_length, &needs.files),
                })
            }
            _ => {
                return Ok(Fetched {
                    info: info.to_vec(),
                    peers: peers.to_vec(),
                    sources: 0,
                    refused: BTreeMap::new(),
                    piece_layers: Vec::new(),
                });
            }
        }
    }
    let (tx, rx) = mpsc::channel::<(SocketAddr, Report)>();
    let mut conns = BTreeMap::<SocketAddr, Conn>::new();
    let mut candidates = VecDeque::<SocketAddr>::new();
    // Per address: attempts so far and when the last one ended.
    let mut tried = BTreeMap::<SocketAddr, (u32, Option<Instant>)>::new();
    let mut had_it = Vec::<SocketAddr>::new();
    let mut refused = BTreeMap::<&'static str, u64>::new();
    // Addresses not to try again: refused for good, or misbehaved.
    let mut never = BTreeSet::<SocketAddr>::new();
    let learn = |list: &[SocketAddr],
                 candidates: &mut VecDeque<SocketAddr>,
                 never: &BTreeSet<SocketAddr>| {
        for &a in list {
            if candidates.len() < MAX_CANDIDATES && !candidates.contains(&a) && !never.contains(&a)
            {
                candidates.push_back(a);
            }
        }
    };
    let mut last_keepalive = Instant::now();
    learn(peers, &mut candidates, &never);
    let started = Instant::now();
    loop {
        if stop() {
            close_all(&conns);
            return Err(FetchError::Cancelled);
        }
        if let Some(t) = cfg.timeout
            && started.elapsed() >= t
        {
            close_all(&conns);
            return Err(FetchError::TimedOut {
                secs: t.as_secs(),
                tried: tried.len(),
                offered: had_it.len(),
                refused,
            });
        }
        while let Ok(list) = more.try_recv() {
            learn(&list, &mut candidates, &never);
        }
        let now = Instant::now();
        // Dial what is due, oldest candidates first.
        let mut i = 0;
        while conns.len() < cfg.max_connections && i < candidates.len() {
            let addr = candidates[i];
            let (attempts, last) = tried.get(&addr).copied().unwrap_or((0, None));
            let due =
                last.is_none_or(|t| now.saturating_duration_since(t) >= retry_after(attempts));
            if conns.contains_key(&addr) || !due {
                i += 1;
                continue;
            }
            candidates.remove(i);
            if tried.len() >= MAX_REMEMBERED {
                tried.retain(|a, _| conns.contains_key(a) || candidates.contains(a));
            }
            tried.insert(addr, (attempts + 1, None));
            conns.insert(
                addr,
                Conn {
                    writer: None,
                    ut_metadata: None,
                },
            );
            let (cfg, tx) = (cfg.clone(), tx.clone());
            let spawned = std::thread::Builder::new()
                .name("metadata-peer".into())
                .spawn(move || {
                    let why = talk(&cfg, addr, &tx)
                        .err()
                        .map_or_else(|| "closed".to_owned(), |e| crate::error_chain(&e));
                    let _ = tx.send((addr, Report::Gone(why)));
                });
            if spawned.is_err() {
                conns.remove(&addr);
            }
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((addr, report)) => match report {
                Report::Connected(w) => {
                    if let Some(c) = conns.get_mut(&addr) {
                        c.writer = Some(w);
                    }
                }
                // Knowing the metadata, any peer of the torrent may be
                // asked for its layers.
                Report::Offers { .. } if cfg.known_info.is_some() => {
                    if !had_it.contains(&addr) {
                        had_it.push(addr);
                    }
                    if let Some(c) = conns.get_mut(&addr) {
                        c.ut_metadata = Some(0);
                    }
                }
                Report::Offers { id, size } => match id
                    .ok_or(Refusal::NoMetadata)
                    .and_then(|_| exchange.add_peer(addr, size))
                {
                    Ok(()) => {
                        if !had_it.contains(&addr) {
                            had_it.push(addr);
                        }
                        // It answered: later drops are not failed dials.
                        if let Some(t) = tried.get_mut(&addr) {
                            t.0 = 0;
                        }
                        if let Some(c) = conns.get_mut(&addr) {
                            c.ut_metadata = id;
                        }
                    }
                    Err(r) => {
                        log::debug!("metadata: {addr}: {r}");
                        if r != Refusal::NoMetadata {
                            never.insert(addr);
                        }
                        drop_peer(&mut refused, &conns, addr, refusal_kind(r));
                    }
                },
                // The metadata is in; late pieces of it are not needed.
                Report::Data { .. } if phase.is_some() => {}
                Report::Data {
                    piece,
                    total_size,
                    data,
                } => match exchange.on_data(addr, piece, total_size, &data) {
                    Ok(Progress::Pending) => {}
                    Ok(Progress::Done {
                        info,
                        liars,
                        sources,
                    }) => {
                        for l in liars {
                            log::info!("metadata: {l} sent pieces of a copy that failed its check");
                            drop_peer(
                                &mut refused,
                                &conns,
                                l,
                                misbehaviour_kind(Misbehaviour::Lied),
                            );
                        }
                        had_it.retain(|a| !exchange.is_banned(*a));
                        match crate::metainfo::layers_needed(&info) {
                            Ok(Some(needs)) if !needs.files.is_empty() => {
                                log::info!("metadata: fetching {} piece layers", needs.files.len());
                                phase = Some(LayerPhase {
                                    info,
                                    sources,
                                    layers: Layers::new(needs.piece_length, &needs.files),
                                });
                            }
                            // No layers to fetch, or a torrent that will
                            // not load (adding it says why).
                            _ => {
                                close_all(&conns);
                                return Ok(Fetched {
                                    info,
                                    peers: had_it,
                                    sources,
                                    refused,
                                    piece_layers: Vec::new(),
                                });
                            }
                        }
                    }
                    Ok(Progress::Failed { banned }) => {
                        for b in banned {
                            never.insert(b);
                            log::info!(
                                "metadata: {b} sent metadata that does not match the info-hash"
                            );
                            had_it.retain(|a| *a != b);
                            drop_peer(
                                &mut refused,
                                &conns,
                                b,
                                misbehaviour_kind(Misbehaviour::BadMetadata),
                            );
                        }
                    }
                    Err(m) => {
                        log::info!("metadata: dropping {addr}: {m}");
                        never.insert(addr);
                        exchange.remove_peer(addr);
                        drop_peer(&mut refused, &conns, addr, misbehaviour_kind(m));
                    }
                },
                Report::Hashes { req, hashes } => {
                    let progress = match &mut phase {
                        Some(p) => p.layers.on_hashes(addr, &req, &hashes),
                        None => Ok(LayerProgress::Pending),
                    };
                    match progress {
                        Ok(LayerProgress::Pending) => {}
                        Ok(LayerProgress::Done(piece_layers)) => {
                            close_all(&conns);
                            let p = phase.take().expect("in the layer phase");
                            had_it.retain(|a| !p.layers.is_banned(*a));
                            return Ok(Fetched {
                                info: p.info,
                                peers: had_it,
                                sources: p.sources,
                                refused,
                                piece_layers,
                            });
                        }
                        Err(m) => {
                            log::info!("metadata: dropping {addr}: {m}");
                            never.insert(addr);
                            had_it.retain(|a| *a != addr);
                            if let Some(p) = &mut phase {
                                p.layers.remove_peer(addr);
                            }
                            drop_peer(&mut refused, &conns, addr, layer_kind(m));
                        }
                    }
                }
                Report::HashReject(req) => {
                    if let Some(p) = &mut phase {
                        p.layers.on_reject(addr, &req);
                    }
                }
                Report::Reject(piece) => {
                    if let Err(m) = exchange.on_reject(now, addr, piece) {
                        never.insert(addr);
                        exchange.remove_peer(addr);
                        drop_peer(&mut refused, &conns, addr, misbehaviour_kind(m));
                    }
                }
                Report::Gone(why) => {
                    log::debug!("metadata: {addr} gone: {why}");
                    exchange.remove_peer(addr);
                    if let Some(p) = &mut phase {
                        p.layers.remove_peer(addr);
                    }
                    conns.remove(&addr);
                    if let Some(t) = tried.get_mut(&addr) {
                        t.1 = Some(Instant::now());
                    }
                    if !never.contains(&addr) && !exchange.is_banned(addr) {
                        candidates.push_back(addr);
                    }
                }
            },
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => unreachable!("the loop holds a sender"),
        }
        let now = Instant::now();
        if now.saturating_duration_since(last_keepalive) >= KEEPALIVE_EVERY {
            last_keepalive = now;
            for w in conns.values_mut().filter_map(|c| c.writer.as_mut()) {
                let _ = w.write(&[0, 0, 0, 0]);
            }
        }
        if never.len() >= MAX_REMEMBERED {
            never.clear();
        }
        for addr in exchange.stalled(now) {
            log::debug!("metadata: {addr} does not answer");
            never.insert(addr);
            exchange.remove_peer(addr);
            drop_peer(&mut refused, &conns, addr, "metadata_timeout");
        }
        if let Some(p) = &mut phase {
            for addr in p.layers.stalled(now) {
                log::debug!("metadata: {addr} does not answer hash requests");
                p.layers.remove_peer(addr);
                drop_peer(&mut refused, &conns, addr, "hashes_timeout");
            }
        }
        for (addr, c) in &mut conns {
            let (Some(w), Some(id)) = (&mut c.writer, c.ut_metadata) else {
                continue;
            };
            if let Some(p) = &mut phase {
                while let Some(req) = p.layers.next_request(now, *addr) {
                    let mut out = Vec::with_capacity(4 + 1 + HashRequest::LEN);
                    Message::HashRequest(req).encode(&mut out);
                    if w.write(&out).is_err() {
                        w.shutdown();
                        break;
                    }
                }
                continue;
            }
            while let Some(piece) = exchange.next_request(now, *addr) {
                let payload = MetadataMsg::Request(piece).encode();
                if w.send(id, &payload).is_err() {
                    w.shutdown();
                    break;
                }
            }
        }
    }
}

/// Drops a peer's connection and counts why.
fn drop_peer(
    refused: &mut BTreeMap<&'static str, u64>,
    conns: &BTreeMap<SocketAddr, Conn>,
    addr: SocketAddr,
    why: &'static str,
) {
    *refused.entry(why).or_default() += 1;
    if let Some(c) = conns.get(&addr)
        && let Some(w) = &c.writer
    {
        w.shutdown();
    }
}

fn close_all(conns: &BTreeMap<SocketAddr, Conn>) {
    for c in conns.values() {
        if let Some(w) = &c.writer {
            w.shutdown();
        }
    }
}

/// The writing half of a metadata connection: plaintext or RC4.
struct Writer {
    socket: TcpStream,
    rc4: Option<Keystream>,
}

impl Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.rc4 {
            None => (&self.socket).write_all(bytes),
            Some(k) => {
                let mut out = bytes.to_vec();
                k.apply(&mut out);
                (&self.socket).write_all(&out)
            }
        }
    }

    fn send(&mut self, id: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 6);
        Message::Extended { id, payload }.encode(&mut out);
        self.write(&out)
    }

    /// Ends the connection; its reading thread then sees it closed.
    fn shutdown(&self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}

/// The reading half: bytes the exchange already took in first, then the
/// socket's, decrypted under RC4.
struct Reader {
    socket: TcpStream,
    rc4: Option<Keystream>,
    early: VecDeque<u8>,
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.early.is_empty() {
            return self.early.read(buf);
        }
        let n = self.socket.read(buf)?;
        if let Some(k) = &mut self.rc4 {
            k.apply(&mut buf[..n]);
        }
        Ok(n)
    }
}

/// A connection's reading and writing halves, under `cipher` if RC4 was
/// chosen; `early` is payload the exchange already took in.
fn halves(
    s: TcpStream,
    cipher: Option<Box<mse::Cipher>>,
    early: Vec<u8>,
) -> Result<(Reader, Writer), TalkError> {
    let (send, recv) = cipher.map(|c| c.split()).unzip();
    Ok((
        Reader {
            socket: s.try_clone()?,
            rc4: recv,
            early: early.into(),
        },
        Writer {
            socket: s,
            rc4: send,
        },
    ))
}

/// Dials `addr` under the fetch's encryption policy: the two halves of the
/// connection, ready for the BitTorrent handshake.
fn dial(cfg: &FetchConfig, addr: SocketAddr) -> Result<(Reader, Writer), TalkError> {
    let connect = || -> Result<TcpStream, TalkError> {
        let s =
            TcpStream::connect_timeout(&addr, cfg.connect_timeout).map_err(TalkError::Connect)?;
        s.set_nodelay(true)?;
        // The handshakes must come soon; after them, no read timeout (the
        // peer may have nothing to say while others give the pieces, and
        // the fetch shuts the socket down when it is done).
        s.set_read_timeout(Some(cfg.connect_timeout))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(s)
    };
    let plain = |s: TcpStream| halves(s, None, Vec::new());
    let encrypted = |mut s: TcpStream| -> Result<(Reader, Writer), TalkError> {
        let e = mse::initiate(&mut s, cfg.info_hash, cfg.encryption)?;
        halves(s, e.cipher, e.payload)
    };
    match cfg.encryption {
        Policy::PreferPlain => plain(connect()?),
        Policy::Require => encrypted(connect()?),
        // A peer that fails the exchange may speak plaintext only.
        Policy::Prefer => match encrypted(connect()?) {
            Err(TalkError::Exchange(e)) => {
                log::debug!("metadata: {addr} failed the MSE exchange ({e}); plaintext");
                plain(connect()?)
            }
            other => other,
        },
    }
}

fn refusal_kind(r: Refusal) -> &'static str {
    match r {
        Refusal::NoMetadata => "metadata_not_offered",
        Refusal::TooLarge(_) => "metadata_too_large",
        Refusal::Banned => "metadata_banned",
    }
}

fn layer_kind(m: LayerMisbehaviour) -> &'static str {
    match m {
        LayerMisbehaviour::Unrequested => "hashes_unrequested",
        LayerMisbehaviour::WrongCount { .. } => "hashes_wrong_count",
        LayerMisbehaviour::BadLayer => "hashes_bad_layer",
    }
}

fn misbehaviour_kind(m: Misbehaviour) -> &'static str {
    match m {
        Misbehaviour::Unrequested(_) => "metadata_unrequested",
        Misbehaviour::WrongSize { .. } => "metadata_wrong_size",
        Misbehaviour::WrongLength { .. } => "metadata_wrong_length",
        Misbehaviour::BadMetadata => "metadata_hash_failed",
        Misbehaviour::Lied => "metadata_lied",
        Misbehaviour::Rejects => "metadata_rejects",
    }
}

#[derive(Debug, thiserror::Error)]
enum TalkError {
    #[error("connect")]
    Connect(#[source] std::io::Error),
    #[error("socket")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    #[error("the peer is on another torrent")]
    WrongTorrent,
    #[error("the peer does not speak the extension protocol")]
    NoExtensions,
    #[error("message of {0} bytes")]
    Oversized(usize),
    #[error(transparent)]
    Metadata(#[from] super::MetadataMsgError),
    #[error("encryption")]
    Exchange(#[from] mse::ExchangeError),
}

/// One metadata connection, read side: handshakes, then every message
/// until the socket closes.
fn talk(
    cfg: &FetchConfig,
    addr: SocketAddr,
    tx: &Sender<(SocketAddr, Report)>,
) -> Result<(), TalkError> {
    let (mut s, mut w) = dial(cfg, addr)?;
    w.write(&Handshake::ours(cfg.info_hash, cfg.peer_id).encode())?;
    let mut hs = [0u8; HANDSHAKE_LEN];
    s.read_exact(&mut hs)?;
    let theirs = Handshake::decode(&hs)?;
    if theirs.info_hash != cfg.info_hash {
        return Err(TalkError::WrongTorrent);
    }
    if !theirs.supports_extensions() {
        return Err(TalkError::NoExtensions);
    }
    let ours = ExtHandshake {
        m: vec![("ut_metadata".to_owned(), UT_METADATA)],
        v: Some(concat!("ringtorrent ", env!("CARGO_PKG_VERSION")).to_owned()),
        p: Some(cfg.listen_port).filter(|&p| p != 0),
        yourip: Some(addr.ip()),
        ..ExtHandshake::default()
    };
    w.send(wire::EXT_HANDSHAKE, &ours.encode())?;
    s.socket.set_read_timeout(None)?;
    if tx.send((addr, Report::Connected(Box::new(w)))).is_err() {
        return Ok(());
    }
    let mut body = Vec::new();
    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_MESSAGE {
            return Err(TalkError::Oversized(len));
        }
        body.resize(len, 0);
        s.read_exact(&mut body)?;
        let report = match body.as_slice() {
            [wire::MSG_EXTENDED, wire::EXT_HANDSHAKE, payload @ ..] => {
                let h = ExtHandshake::decode(payload)?;
                Report::Offers {
                    id: h.id_of("ut_metadata"),
                    size: h.metadata_size,
                }
            }
            [wire::MSG_EXTENDED, UT_METADATA, payload @ ..] => {
                match MetadataMsg::decode(payload)? {
                    MetadataMsg::Data {
                        piece,
                        total_size,
                        data,
                    } => Report::Data {
                        piece,
                        total_size,
                        data: data.to_vec(),
                    },
                    MetadataMsg::Reject(p) => Report::Reject(p),
                    // We have no metadata to give; nor do we answer requests.
                    MetadataMsg::Request(_) | MetadataMsg::Unknown => continue,
                }
            }
            [id @ (wire::MSG_HASHES | wire::MSG_HASH_REJECT), rest @ ..] => {
                match Message::parse(*id, rest)? {
                    Message::Hashes { req, hashes } => Report::Hashes {
                        req,
                        hashes: hashes.to_vec(),
                    },
                    Message::HashReject(req) => Report::HashReject(req),
                    _ => continue,
                }
            }
            _ => continue,
        };
        if tx.send((addr, report)).is_err() {
            return Ok(());
        }
    }
}
