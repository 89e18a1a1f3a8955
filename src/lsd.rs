//! Local service discovery (BEP 14): announcing our torrents to the local
//! network by multicast, and hearing the neighbours' announces. For a
//! fleet in one data centre this finds peers with no tracker and no DHT.
//!
//! The message codec is plain code; `Lsd` is its driver, a thread with a
//! UDP socket in the multicast group. Our own announces come back to us
//! (several processes on one host must hear each other) and are told apart
//! by a cookie.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::metainfo::InfoHash;

/// BEP 14's IPv4 group and port.
pub const GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 192, 152, 143), 6771);
/// Each torrent is announced this often (BEP 14: at most once a minute).
const ANNOUNCE_EVERY: Duration = Duration::from_secs(5 * 60);
/// Info-hashes in one announce.
const MAX_HASHES: usize = 16;
/// Announces read from the network per second; the rest are dropped.
const MAX_HEARD_PER_SECOND: u32 = 100;

/// An announce: where the sender takes connections, and for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub port: u16,
    pub hashes: Vec<InfoHash>,
    pub cookie: Option<String>,
}

impl Announce {
    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!(
            "BT-SEARCH * HTTP/1.1\r\nHost: {}:{}\r\nPort: {}\r\n",
            GROUP.ip(),
            GROUP.port(),
            self.port
        );
        for h in &self.hashes {
            s.push_str(&format!("Infohash: {}\r\n", h.to_hex()));
        }
        if let Some(c) = &self.cookie {
            s.push_str(&format!("cookie: {c}\r\n"));
        }
        s.push_str("\r\n\r\n");
        s.into_bytes()
    }

    /// Reads an announce; `None` for anything else. Header names are not
    /// case-sensitive; unknown headers are ignored.
    pub fn parse(bytes: &[u8]) -> Option<Announce> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split("\r\n");
        if !lines.next()?.starts_with("BT-SEARCH * HTTP/1.1") {
            return None;
        }
        let mut out = Announce {
            port: 0,
            hashes: Vec::new(),
            cookie: None,
        };
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "port" => out.port = value.parse().ok()?,
                "infohash" if out.hashes.len() < MAX_HASHES => {
                    if let Ok(h) = InfoHash::parse(value) {
                        out.hashes.push(h);
                    }
                }
                "cookie" => out.cookie = Some(value.chars().take(64).collect()),
                _ => {}
            }
        }
        (out.port != 0 && !out.hashes.is_empty()).then_some(out)
    }
}

/// Who is told about a neighbour with the torrent.
pub type PeerSink = Box<dyn FnMut(Vec<SocketAddr>) + Send>;

enum Cmd {
    Add {
        key: u64,
        info_hash: InfoHash,
        sink: PeerSink,
    },
    Remove(u64),
    Stop,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct LsdStats {
    pub sent: u64,
    pub heard: u64,
    /// Announces dropped for coming too fast, or unreadable.
    pub refused: u64,
}

/// The session's LSD thread.
pub struct Lsd {
    cmds: Sender<Cmd>,
    thread: JoinHandle<()>,
    counters: Arc<[AtomicU64; 3]>,
}

impl Lsd {
    /// Joins the group on the interface of `bind` (any, if unspecified),
    /// announcing that we take connections on `port`.
    pub fn start(bind: Ipv4Addr, port: u16) -> std::io::Result<Lsd> {
        let socket = socket(bind)?;
        let mut cookie = [0u8; 8];
        fastrand::fill(&mut cookie);
        let cookie: String = cookie.iter().map(|b| format!("{b:02x}")).collect();
        let counters = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
        let (tx, rx) = std::sync::mpsc::channel();
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("lsd".into())
            .spawn(move || run(&socket, port, &cookie, &rx, &c))?;
        Ok(Lsd {
            cmds: tx,
            thread,
            counters,
        })
    }

    pub fn add(&self, key: u64, info_hash: InfoHash, sink: PeerSink) {
        let _ = self.cmds.send(Cmd::Add {
            key,
            info_hash,
            sink,
        });
    }

    pub fn remove(&self, key: u64) {
        let _ = self.cmds.send(Cmd::Remove(key));
    }

    pub fn stats(&self) -> LsdStats {
        let [sent, heard, refused] = &*self.counters;
        LsdStats {
            sent: sent.load(Ordering::Relaxed),
            heard: heard.load(Ordering::Relaxed),
            refused: refused.load(Ordering::Relaxed),
        }
    }

    pub fn stop(self) {
        let _ = self.cmds.send(Cmd::Stop);
        let _ = self.thread.join();
    }
}

fn socket(bind: Ipv4Addr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Every process on the host listens on the same port.
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, GROUP.port())).into())?;
    s.join_multicast_v4(GROUP.ip(), &bind)?;
    if !bind.is_unspecified() {
        s.set_multicast_if_v4(&bind)?;
    }
    s.set_multicast_loop_v4(true)?;
    s.set_multicast_ttl_v4(1)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s.into())
}

struct Entry {
    info_hash: InfoHash,
    sink: PeerSink,
    next: Instant,
}

fn run(
    socket: &UdpSocket,
    port: u16,
    cookie: &str,
    cmds: &Receiver<Cmd>,
    counters: &[AtomicU64; 3],
) {
    let [sent, heard, refused] = counters;
    let mut entries = BTreeMap::<u64, Entry>::new();
    let mut buf = [0u8; 1500];
    let mut second = (Instant::now(), 0u32);
    loop {
        loop {
            match cmds.try_recv() {
                Ok(Cmd::Stop) | Err(TryRecvError::Disconnected) => return,
                Ok(Cmd::Add {
                    key,
                    info_hash,
                    sink,
                }) => {
                    entries.insert(
                        key,
                        Entry {
                            info_hash,
                            sink,
                            next: Instant::now(),
                        },
                    );
                }
                Ok(Cmd::Remove(key)) => {
                    entries.remove(&key);
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        let now = Instant::now();
        let due: Vec<InfoHash> = entries
            .values_mut()
            .filter(|e| e.next <= now)
            .take(MAX_HASHES)
            .map(|e| {
                e.next = now + ANNOUNCE_EVERY;
                e.info_hash
            })
            .collect();
        if !due.is_empty() {
            let msg = Announce {
                port,
                hashes: due,
                cookie: Some(cookie.to_owned()),
            };
            if socket.send_to(&msg.encode(), GROUP).is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        let Ok((n, SocketAddr::V4(from))) = socket.recv_from(&mut buf) else {
            continue;
        };
        let now = Instant::now();
        if now.duration_since(second.0) >= Duration::from_secs(1) {
            second = (now, 0);
        }
        second.1 += 1;
        if second.1 > MAX_HEARD_PER_SECOND {
            refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Some(a) = Announce::parse(&buf[..n]) else {
            refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if a.cookie.as_deref() == Some(cookie) {
            continue;
        }
        heard.fetch_add(1, Ordering::Relaxed);
        let peer = SocketAddr::new(IpAddr::V4(*from.ip()), a.port);
        for e in entries
            .values_mut()
            .filter(|e| a.hashes.contains(&e.info_hash))
        {
            (e.sink)(vec![peer]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announces_round_trip_and_odd_ones_are_refused() {
        let a = Announce {
            port: 6881,
            hashes: vec![InfoHash([1; 20]), InfoHash([2; 20])],
            cookie: Some("abc".into()),
        };
        assert_eq!(Announce::parse(&a.encode()), Some(a));
        // libtorrent's shape: header names in another case, no cookie.
        let lt = b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 7000\r\nInfohash: 0101010101010101010101010101010101010101\r\n\r\n\r\n";
        let got = Announce::parse(lt).unwrap();
        assert_eq!((got.port, got.hashes.len(), got.cookie), (7000, 1, None));
        assert_eq!(Announce::parse(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(
            Announce::parse(b"BT-SEARCH * HTTP/1.1\r\nPort: 0\r\nInfohash: 0101010101010101010101010101010101010101\r\n"),
            None
        );
        assert_eq!(
            Announce::parse(b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n"),
            None
        );
        assert_eq!(Announce::parse(&[0xff; 100]), None);
    }
}
