//! A tracker load generator: announces as fast as a tracker answers them,
//! over UDP (BEP 15, a window of requests in flight per socket) or HTTP
//! (a new connection per announce, as clients make them), to a pool of
//! torrents whose info-hashes are SHA-1 of their index. Prints one line of
//! JSON. Used by `perf/tracker-vs-opentracker`.
//!
//!   cargo run --release --example tracker_load -- udp 127.0.0.1:6969 [SECONDS] [THREADS]
//!   cargo run --release --example tracker_load -- http 127.0.0.1:6969 [SECONDS] [THREADS]
//!   cargo run --release --example tracker_load -- hashes    (the pool, hex, one per line)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TORRENTS: u32 = 1000;
const WINDOW: usize = 32;

fn hash(i: u32) -> [u8; 20] {
    ringtorrent::hash::sha1(&i.to_be_bytes())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("");
    if mode == "hashes" {
        for i in 0..TORRENTS {
            println!("{}", ringtorrent::metainfo::InfoHash(hash(i)).to_hex());
        }
        return;
    }
    let (Some(addr), true) = (
        args.get(1).and_then(|a| a.parse::<SocketAddr>().ok()),
        matches!(mode, "udp" | "http"),
    ) else {
        eprintln!("usage: tracker_load udp|http ADDR [SECONDS] [THREADS] | hashes");
        std::process::exit(2);
    };
    let seconds: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let threads: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (done, stop) = (done.clone(), stop.clone());
            let mode = mode.to_owned();
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t as u64 + 1);
                if mode == "udp" {
                    udp(addr, &mut rng, &done, &stop);
                } else {
                    http(addr, &mut rng, &done, &stop);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let n = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    println!(
        "{{\"mode\":\"{mode}\",\"threads\":{threads},\"announces\":{n},\"seconds\":{elapsed:.3},\"per_second\":{:.0}}}",
        n as f64 / elapsed
    );
}

fn udp(addr: SocketAddr, rng: &mut fastrand::Rng, done: &AtomicU64, stop: &AtomicBool) {
    use ringtorrent::tracker::udp::{announce_packet, connect_packet};
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut buf = [0u8; 4096];
    let mut cid = None;
    let mut since = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // A connection id, renewed every 50 s.
        if cid.is_none() || since.elapsed() > Duration::from_secs(50) {
            let _ = sock.send(&connect_packet(7));
            if let Ok(16) = sock.recv(&mut buf) {
                cid = Some(u64::from_be_bytes(
                    buf[8..16].try_into().unwrap_or_default(),
                ));
                since = Instant::now();
            }
            continue;
        }
        let Some(c) = cid else { continue };
        for _ in 0..WINDOW {
            let _ = sock.send(&announce_packet(c, rng.u32(..), &request(rng)));
        }
        // Collect the window's answers (a lost one times out the wait).
        for _ in 0..WINDOW {
            match sock.recv(&mut buf) {
                Ok(n) if n >= 20 && buf[3] == 1 => {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}

fn request(rng: &mut fastrand::Rng) -> ringtorrent::tracker::AnnounceRequest {
    ringtorrent::tracker::AnnounceRequest {
        info_hash: ringtorrent::metainfo::InfoHash(hash(rng.u32(..TORRENTS))),
        peer_id: ringtorrent::wire::PeerId([rng.u8(..); 20]),
        port: rng.u16(1024..),
        uploaded: 0,
        downloaded: 0,
        left: u64::from(rng.bool()),
        event: ringtorrent::tracker::Event::Started,
        num_want: 50,
        key: rng.u32(..),
        tracker_id: None,
    }
}

fn http(addr: SocketAddr, rng: &mut fastrand::Rng, done: &AtomicU64, stop: &AtomicBool) {
    let base = format!("http://{addr}/announce");
    let mut body = Vec::with_capacity(4096);
    while !stop.load(Ordering::Relaxed) {
        let url = ringtorrent::tracker::http::announce_url(&base, &request(rng));
        let path = &url[url.find("/announce").unwrap_or(0)..];
        let Ok(mut s) = TcpStream::connect(addr) else {
            continue;
        };
        let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        body.clear();
        if s.write_all(req.as_bytes()).is_ok()
            && s.read_to_end(&mut body).is_ok()
            && body.windows(8).any(|w| w == b"interval")
        {
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
}
