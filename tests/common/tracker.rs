//! A small tracker for tests: HTTP and UDP (BEP 15) on one loopback port,
//! with modes that misbehave on purpose.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answers correctly.
    Good,
    /// Never answers.
    Silent,
    /// HTTP: 200 with a body that is not bencode. UDP: replies with the
    /// wrong transaction id.
    Garbage,
    /// HTTP: a bencoded failure reason. UDP: the error action.
    Failure,
    /// HTTP: status 500.
    ServerError,
    /// HTTP: every peer as `[::1]:port`, in `peers6` only (BEP 7).
    Peers6,
}

/// One announce the tracker saw.
#[derive(Debug, Clone)]
pub struct Announce {
    pub port: u16,
    pub event: String,
    pub left: u64,
    pub udp: bool,
}

pub struct FakeTracker {
    pub port: u16,
    pub announces: Arc<Mutex<Vec<Announce>>>,
    stop: Arc<AtomicBool>,
}

impl FakeTracker {
    pub fn start(mode: Mode) -> FakeTracker {
        let (tcp, udp) = loop {
            let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = tcp.local_addr().unwrap().port();
            if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
                break (tcp, udp);
            }
        };
        let port = tcp.local_addr().unwrap().port();
        let announces = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        tcp.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        {
            let (a, s) = (announces.clone(), stop.clone());
            std::thread::spawn(move || serve_http(tcp, mode, &a, &s));
        }
        {
            let (a, s) = (announces.clone(), stop.clone());
            std::thread::spawn(move || serve_udp(udp, mode, &a, &s));
        }
        FakeTracker {
            port,
            announces,
            stop,
        }
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }

    pub fn udp_url(&self) -> String {
        format!("udp://127.0.0.1:{}/announce", self.port)
    }

    pub fn events(&self) -> Vec<Announce> {
        self.announces.lock().unwrap().clone()
    }
}

impl Drop for FakeTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Compact peers of everyone who announced, except `port` and those stopped,
/// at 127.0.0.1 or (`v6`) at ::1.
fn peers(all: &[Announce], port: u16, v6: bool) -> Vec<u8> {
    let mut seen = std::collections::BTreeMap::new();
    for a in all.iter().filter(|a| a.port != 0) {
        seen.insert(a.port, a.event != "stopped");
    }
    let mut out = Vec::new();
    for (p, alive) in seen {
        if alive && p != port {
            if v6 {
                out.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
            } else {
                out.extend_from_slice(&[127, 0, 0, 1]);
            }
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    out
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn serve_http(
    listener: TcpListener,
    mode: Mode,
    announces: &Mutex<Vec<Announce>>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut s, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        s.set_nonblocking(false).unwrap();
        let mut line = String::new();
        if BufReader::new(&s).read_line(&mut line).is_err() {
            continue;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("");
        let query = path.split_once('?').map_or("", |(_, q)| q);
        let port: u16 = query_value(query, "port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let a = Announce {
            port,
            event: query_value(query, "event").unwrap_or("").to_owned(),
            left: query_value(query, "left")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0),
            udp: false,
        };
        announces.lock().unwrap().push(a);
        let (status, body): (&str, Vec<u8>) = match mode {
            Mode::Silent => {
                std::thread::sleep(Duration::from_secs(30));
                continue;
            }
            Mode::Garbage => ("200 OK", b"<html>not a tracker</html>".to_vec()),
            Mode::Failure => ("200 OK", b"d14:failure reason12:unregisterede".to_vec()),
            Mode::ServerError => ("500 Internal Server Error", b"oops".to_vec()),
            Mode::Good | Mode::Peers6 => {
                let v6 = mode == Mode::Peers6;
                let p = peers(&announces.lock().unwrap(), port, v6);
                let key = if v6 { "5:peers0:6:peers6" } else { "5:peers" };
                let mut b = format!("d8:intervali30e{key}{}:", p.len()).into_bytes();
                b.extend_from_slice(&p);
                b.push(b'e');
                ("200 OK", b)
            }
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(&body);
    }
}

fn serve_udp(sock: UdpSocket, mode: Mode, announces: &Mutex<Vec<Announce>>, stop: &AtomicBool) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let p = &buf[..n];
        if n < 16 {
            continue;
        }
        let action = u32::from_be_bytes(p[8..12].try_into().unwrap());
        let tid = u32::from_be_bytes(p[12..16].try_into().unwrap());
        if action != 1 {
            // Connects (and anything else) are recorded as seen, with port 0.
            announces.lock().unwrap().push(Announce {
                port: 0,
                event: format!("action {action}"),
                left: 0,
                udp: true,
            });
        }
        let reply_tid = if mode == Mode::Garbage {
            tid.wrapping_add(1)
        } else {
            tid
        };
        let reply: Vec<u8> = match (mode, action) {
            (Mode::Silent, _) => continue,
            (Mode::Failure, _) => {
                let mut r = 3u32.to_be_bytes().to_vec();
                r.extend_from_slice(&reply_tid.to_be_bytes());
                r.extend_from_slice(b"unregistered torrent");
                r
            }
            (_, 0) => {
                let mut r = 0u32.to_be_bytes().to_vec();
                r.extend_from_slice(&reply_tid.to_be_bytes());
                r.extend_from_slice(&0x1234_5678_9abc_def0u64.to_be_bytes());
                r
            }
            (_, 1) if n >= 98 => {
                let event = match u32::from_be_bytes(p[80..84].try_into().unwrap()) {
                    1 => "completed",
                    2 => "started",
                    3 => "stopped",
                    _ => "",
                };
                let port = u16::from_be_bytes([p[96], p[97]]);
                let left = u64::from_be_bytes(p[64..72].try_into().unwrap());
                announces.lock().unwrap().push(Announce {
                    port,
                    event: event.to_owned(),
                    left,
                    udp: true,
                });
                let mut r = 1u32.to_be_bytes().to_vec();
                r.extend_from_slice(&reply_tid.to_be_bytes());
                r.extend_from_slice(&30u32.to_be_bytes());
                r.extend_from_slice(&0u32.to_be_bytes());
                r.extend_from_slice(&1u32.to_be_bytes());
                r.extend_from_slice(&peers(&announces.lock().unwrap(), port, false));
                r
            }
            _ => continue,
        };
        let _ = sock.send_to(&reply, from);
    }
}

/// The address every test peer listens on.
pub fn peer_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
