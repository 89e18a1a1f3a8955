//! Peers that speak just enough BitTorrent (BEP 3) to serve a payload, or
//! to misbehave in one precise way. Written from the spec, independent of
//! the crate's own codec, so the tests check ringtorrent against the wire
//! format rather than against itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub const BLOCK: u32 = 16384;

/// How a fake seeder treats requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// Serves every request correctly.
    Honest,
    /// Serves every block with one byte flipped.
    Corrupt,
    /// Unchokes, then never answers a request.
    Stall,
    /// Answers the handshake with another info-hash.
    WrongInfoHash,
}

pub struct SeederSpec {
    pub info_hash: [u8; 20],
    /// The whole payload, in torrent order.
    pub data: Arc<Vec<u8>>,
    pub piece_length: u32,
    pub behavior: Behavior,
    /// Pause before each block sent (paces the transfer).
    pub block_delay: Duration,
    /// A loopback address of its own, so bans by IP hit only this peer.
    pub ip: [u8; 4],
}

/// A fake seeder listening on 127.0.0.1; it stops when dropped.
pub struct FakeSeeder {
    pub addr: SocketAddr,
    /// Blocks served, per piece and per epoch (see `next_epoch`).
    pub served: Arc<Mutex<Vec<Vec<u32>>>>,
    epoch: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeSeeder {
    pub fn start(spec: SeederSpec) -> FakeSeeder {
        let listener = TcpListener::bind(SocketAddr::from((spec.ip, 0))).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let pieces = spec.data.len().div_ceil(spec.piece_length as usize);
        let served = Arc::new(Mutex::new(vec![vec![0u32; pieces]]));
        let epoch = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let spec = Arc::new(spec);
        let thread = {
            let (served, epoch, stop, conns) =
                (served.clone(), epoch.clone(), stop.clone(), conns.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(false).unwrap();
                            conns.lock().unwrap().push(s.try_clone().unwrap());
                            let (spec, served, epoch) =
                                (spec.clone(), served.clone(), epoch.clone());
                            std::thread::spawn(move || {
                                let _ = serve(s, &spec, &served, &epoch);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        FakeSeeder {
            addr,
            served,
            epoch,
            stop,
            conns,
            thread: Some(thread),
        }
    }

    /// Starts counting served blocks afresh (one epoch per run of a client).
    pub fn next_epoch(&self) {
        let mut s = self.served.lock().unwrap();
        let pieces = s[0].len();
        s.push(vec![0; pieces]);
        self.epoch.store(s.len() - 1, Ordering::SeqCst);
    }

    /// Closes every connection (the peer on the other side sees EOF).
    pub fn drop_connections(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for FakeSeeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.drop_connections();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn handshake(info_hash: &[u8; 20], peer_id: &[u8; 20]) -> Vec<u8> {
    let mut h = Vec::with_capacity(68);
    h.push(19);
    h.extend_from_slice(b"BitTorrent protocol");
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(info_hash);
    h.extend_from_slice(peer_id);
    h
}

pub fn message(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    m.push(id);
    m.extend_from_slice(payload);
    m
}

pub fn request(piece: u32, begin: u32, len: u32) -> Vec<u8> {
    let mut p = piece.to_be_bytes().to_vec();
    p.extend_from_slice(&begin.to_be_bytes());
    p.extend_from_slice(&len.to_be_bytes());
    message(6, &p)
}

/// Reads one length-prefixed message: `None` for a keep-alive.
pub fn read_message(s: &mut TcpStream) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut len = [0; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        return Ok(None);
    }
    if len > (1 << 20) + 64 {
        return Err(std::io::Error::other(format!("message of {len} bytes")));
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body)?;
    let id = body.remove(0);
    Ok(Some((id, body)))
}

/// Reads messages until one with `id` arrives; returns its payload.
pub fn read_until(s: &mut TcpStream, id: u8) -> Vec<u8> {
    loop {
        match read_message(s) {
            Ok(Some((got, body))) if got == id => return body,
            Ok(_) => {}
            Err(e) => panic!("connection lost waiting for message {id}: {e}"),
        }
    }
}

fn serve(
    mut s: TcpStream,
    spec: &SeederSpec,
    served: &Mutex<Vec<Vec<u32>>>,
    epoch: &AtomicUsize,
) -> std::io::Result<()> {
    let mut theirs = [0; 68];
    s.read_exact(&mut theirs)?;
    if theirs[28..48] != spec.info_hash {
        return Ok(());
    }
    let mut ours = spec.info_hash;
    if spec.behavior == Behavior::WrongInfoHash {
        ours[0] ^= 0xff;
    }
    // A peer id of its own (clients drop a second connection to one id).
    let mut id = *b"-FK0001-seeder000000";
    let port = s.local_addr()?.port().to_string();
    id[20 - port.len()..].copy_from_slice(port.as_bytes());
    s.write_all(&handshake(&ours, &id))?;
    let pieces = spec.data.len().div_ceil(spec.piece_length as usize);
    let mut bits = vec![0u8; pieces.div_ceil(8)];
    for p in 0..pieces {
        bits[p / 8] |= 0x80 >> (p % 8);
    }
    s.write_all(&message(5, &bits))?;
    s.write_all(&message(1, &[]))?; // unchoke
    loop {
        let Some((id, body)) = read_message(&mut s)? else {
            continue;
        };
        if id != 6 || spec.behavior == Behavior::Stall {
            continue;
        }
        let word = |i: usize| u32::from_be_bytes(body[i..i + 4].try_into().unwrap());
        if body.len() != 12 {
            return Ok(());
        }
        let (piece, begin, len) = (word(0), word(4), word(8));
        let start = piece as usize * spec.piece_length as usize + begin as usize;
        let Some(block) = spec.data.get(start..start + len as usize) else {
            return Ok(());
        };
        std::thread::sleep(spec.block_delay);
        let mut payload = Vec::with_capacity(8 + block.len());
        payload.extend_from_slice(&piece.to_be_bytes());
        payload.extend_from_slice(&begin.to_be_bytes());
        payload.extend_from_slice(block);
        if spec.behavior == Behavior::Corrupt {
            payload[8] ^= 0x55;
        }
        s.write_all(&message(7, &payload))?;
        let e = epoch.load(Ordering::SeqCst);
        served.lock().unwrap()[e][piece as usize] += 1;
    }
}

/// Connects to `addr` and completes a handshake for `info_hash`; returns
/// the stream and the first bytes the other side answered (its handshake).
pub fn connect_and_handshake(
    addr: SocketAddr,
    info_hash: &[u8; 20],
) -> std::io::Result<(TcpStream, [u8; 68])> {
    let mut id = *b"-FK0001-hostile00000";
    let n = fastrand::u32(..).to_string();
    id[20 - n.len()..].copy_from_slice(n.as_bytes());
    connect_with(addr, &handshake(info_hash, &id))
}

/// [`connect_and_handshake`], offering the extension protocol (BEP 10).
pub fn connect_and_handshake_ext(
    addr: SocketAddr,
    info_hash: &[u8; 20],
) -> std::io::Result<(TcpStream, [u8; 68])> {
    let mut h = handshake(info_hash, b"-FK0001-extension000");
    h[25] |= 0x10;
    connect_with(addr, &h)
}

/// The other side's BEP 10 extension handshake (its bencoded dictionary,
/// as text), skipping the messages before it.
pub fn their_ext_handshake(s: &mut TcpStream) -> String {
    loop {
        match read_message(s).expect("the extension handshake") {
            Some((20, body)) if body.first() == Some(&0) => {
                return String::from_utf8_lossy(&body[1..]).into_owned();
            }
            _ => {}
        }
    }
}

/// Sends a `ut_pex` message (our id 2 for it) adding one peer; a peer that
/// did not offer `ut_pex` hangs up.
pub fn send_pex(s: &mut TcpStream) -> std::io::Result<()> {
    let mut pex = vec![2u8];
    pex.extend_from_slice(b"d5:added6:\x7f\x00\x00\x01\x1a\xe1e");
    s.write_all(&message(20, &pex))
}

fn connect_with(addr: SocketAddr, ours: &[u8]) -> std::io::Result<(TcpStream, [u8; 68])> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(ours)?;
    let mut theirs = [0; 68];
    s.read_exact(&mut theirs)?;
    Ok((s, theirs))
}

/// Reads until the other side closes the connection (`true`) or `limit`
/// passes with it still open (`false`).
pub fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let start = std::time::Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0; 65536];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}
