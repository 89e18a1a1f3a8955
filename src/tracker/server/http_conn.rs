//! The tracker's HTTP connections. An announce is one small GET on a
//! connection of its own, so the per-connection cost is the tracker's
//! cost: the listener accepts only once a request has arrived
//! (`TCP_DEFER_ACCEPT`), and a request found whole is answered and closed
//! on the spot, without a task and without registering the socket with
//! the runtime (accept, read, write, close). A request in pieces, or an
//! answer the socket cannot take at once, is finished by a task, with one
//! deadline for the whole connection. One request per connection, parsed
//! by `httparse`, answered with `Connection: close`.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::Tracker;

/// Slow connections (finished by a task) open at once, at most.
const MAX_SLOW_CONNECTIONS: usize = 1024;
/// How long a slow connection may stay open.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of request line and headers, at most: an announce's URL is a
/// few hundred bytes, a scrape of 100 torrents about 6 KiB.
const MAX_REQUEST: usize = 16 * 1024;
/// Connections accepted before the other tasks get a turn.
const ACCEPT_BATCH: usize = 64;
/// Seconds the kernel holds a connection that has sent nothing before
/// handing it to us anyway.
const DEFER_ACCEPT_SECS: libc::c_int = 5;

pub(super) async fn serve(
    tracker: Rc<RefCell<Tracker>>,
    listener: std::net::TcpListener,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    defer_accept(&listener);
    // SAFETY: a `TcpListener` owns its descriptor: open, and the same one,
    // until the `AsyncFd` that takes it is dropped.
    let listener = match unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) } {
        Ok(l) => l,
        Err(e) => {
            log::error!("tracker HTTP: {e}");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SLOW_CONNECTIONS));
    let mut buf = vec![0u8; MAX_REQUEST];
    loop {
        let mut ready = tokio::select! {
            _ = stopped.changed() => return,
            r = listener.readable() => match r {
                Ok(r) => r,
                Err(e) => {
                    log::error!("tracker HTTP: {e}");
                    return;
                }
            },
        };
        // The connections queued, without going back to the runtime, but
        // at most a batch, so that a flood does not starve UDP.
        let mut more = true;
        for _ in 0..ACCEPT_BATCH {
            let sock = socket2::SockRef::from(listener.get_ref());
            match sock.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) {
                Ok((s, addr)) => {
                    if let Some(peer) = addr.as_socket() {
                        exchange(&tracker, s.into(), peer, &mut buf, &slots);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    ready.clear_ready();
                    more = false;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors, say: wait instead of spinning.
                    log::warn!("tracker HTTP: cannot accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    break;
                }
            }
        }
        drop(ready);
        if more {
            tokio::task::yield_now().await;
        }
    }
}

/// Asks the kernel to hand us connections only once they have sent
/// something; without it (another OS), requests just arrive later.
fn defer_accept(listener: &std::net::TcpListener) {
    if let Err(e) = crate::sockopt::set_tcp_int(listener, libc::TCP_DEFER_ACCEPT, DEFER_ACCEPT_SECS)
    {
        log::debug!("tracker HTTP: no TCP_DEFER_ACCEPT: {e}");
    }
}

/// Answers a new connection at once if its request is whole, else hands
/// it to a task. `buf` is scratch space of `MAX_REQUEST` bytes.
fn exchange(
    tracker: &Rc<RefCell<Tracker>>,
    mut stream: std::net::TcpStream,
    peer: SocketAddr,
    buf: &mut [u8],
    slots: &Arc<tokio::sync::Semaphore>,
) {
    let n = match stream.read(buf) {
        Ok(0) => return,
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
        Err(_) => return,
    };
    let pending = match answer(&mut tracker.borrow_mut(), peer, &buf[..n]) {
        Some(out) => match stream.write(&out) {
            Ok(sent) if sent == out.len() => return,
            Ok(sent) => Pending::Writing(out, sent),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Pending::Writing(out, 0),
            Err(_) => return,
        },
        None => Pending::Reading(buf[..n].to_vec()),
    };
    // No slot: the connection is closed, and the client retries.
    let Ok(slot) = slots.clone().try_acquire_owned() else {
        return;
    };
    let tracker = tracker.clone();
    tokio::task::spawn_local(async move {
        let _ =
            tokio::time::timeout(CONNECTION_TIMEOUT, finish(&tracker, stream, peer, pending)).await;
        drop(slot);
    });
}

/// Where a connection handed to a task stands.
enum Pending {
    /// The request so far.
    Reading(Vec<u8>),
    /// The response, and how much of it has been sent.
    Writing(Vec<u8>, usize),
}

async fn finish(
    tracker: &RefCell<Tracker>,
    stream: std::net::TcpStream,
    peer: SocketAddr,
    mut pending: Pending,
) -> std::io::Result<()> {
    let stream = tokio::net::TcpStream::from_std(stream)?;
    let mut chunk = [0u8; 4096];
    loop {
        pending = match pending {
            Pending::Reading(mut req) => {
                stream.readable().await?;
                match stream.try_read(&mut chunk) {
                    Ok(0) => return Ok(()),
                    Ok(n) => req.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                match answer(&mut tracker.borrow_mut(), peer, &req) {
                    Some(out) => Pending::Writing(out, 0),
                    None => Pending::Reading(req),
                }
            }
            Pending::Writing(out, sent) if sent == out.len() => return Ok(()),
            Pending::Writing(out, mut sent) => {
                stream.writable().await?;
                match stream.try_write(&out[sent..]) {
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                Pending::Writing(out, sent)
            }
        };
    }
}

/// The whole response to `req` from `peer`, or `None` while the request
/// is incomplete.
pub(crate) fn answer(tracker: &mut Tracker, peer: SocketAddr, req: &[u8]) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let (status, body) = match parsed.parse(req) {
        Ok(httparse::Status::Partial) if req.len() < MAX_REQUEST => return None,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => (
            "431 Request Header Fields Too Large",
            b"request too large".to_vec(),
        ),
        Err(_) => ("400 Bad Request", b"bad request".to_vec()),
        Ok(httparse::Status::Complete(_)) => match (parsed.method, parsed.path) {
            (Some("GET"), Some(target)) => {
                let target = origin_form(target);
                match super::http::respond(tracker, Instant::now(), peer, target) {
                    Some(body) => ("200 OK", body),
                    None => ("404 Not Found", b"not found".to_vec()),
                }
            }
            _ => ("405 Method Not Allowed", b"GET only".to_vec()),
        },
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

/// `http://host/announce?...` (absolute form, as to a proxy) as
/// `/announce?...`.
fn origin_form(target: &str) -> &str {
    match target.split_once("://") {
        Some((_, rest)) if !target.starts_with('/') => rest.find('/').map_or("/", |i| &rest[i..]),
        _ => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::server::Limits;

    fn ask(req: &[u8]) -> Option<String> {
        let mut t = Tracker::new(Limits::default(), None);
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        answer(&mut t, peer, req).map(|r| String::from_utf8_lossy(&r).into_owned())
    }

    #[test]
    fn requests_are_answered_once_whole_and_refused_when_odd() {
        assert_eq!(ask(b"GET /announce?info_hash=x HTTP/1.1\r\nHost: a"), None);
        let ok = ask(b"GET /scrape HTTP/1.0\r\n\r\n").unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Length: 11\r\n") && ok.ends_with("d5:filesdee"));
        let absolute = ask(b"GET http://t:6969/scrape HTTP/1.1\r\n\r\n").unwrap();
        assert!(absolute.ends_with("d5:filesdee"), "{absolute}");
        let missing = ask(b"GET /elsewhere HTTP/1.1\r\n\r\n").unwrap();
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
        let post = ask(b"POST /announce HTTP/1.1\r\n\r\n").unwrap();
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        let bad = ask(b"GET /announce\x01 HTTP/1.1\r\n\r\n").unwrap();
        assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
        let mut huge = b"GET /announce?".to_vec();
        huge.resize(MAX_REQUEST, b'a');
        let big = ask(&huge).unwrap();
        assert!(big.starts_with("HTTP/1.1 431 "), "{big}");
    }
}
