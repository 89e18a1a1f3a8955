//! The HTTP side: `/transmission/rpc`, the web UI and `/metrics`, served by
//! hyper on a single-threaded tokio runtime of its own, so that nothing a
//! client does (slow headers, huge bodies, many connections) reaches the
//! transfers' threads.
//!
//! Guards, in order: connections beyond [`MAX_CONNECTIONS`] are closed;
//! headers must arrive within [`HEADER_TIMEOUT`] and bodies within
//! [`BODY_TIMEOUT`], at most [`MAX_BODY`] bytes; the `Host` header must name
//! an IP address, `localhost` or a whitelisted name unless a password is
//! set (against DNS rebinding, as Transmission's `rpc-host-whitelist`); basic
//! auth when credentials are set, each failure from an address answered
//! more slowly; the RPC wants Transmission's session-id header (against
//! cross-site requests).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use super::config::Settings;
use super::control::Daemon;
use super::{metrics, rpc, web};

pub const MAX_CONNECTIONS: usize = 128;
/// Connections served at once for one address.
pub const MAX_PER_IP: usize = 32;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Room for a base64 .torrent of the largest size we accept.
pub const MAX_BODY: usize = 140 << 20;
const SESSION_HEADER: &str = "x-transmission-session-id";

pub struct Server {
    stop: tokio::sync::watch::Sender<bool>,
    thread: JoinHandle<()>,
}

impl Server {
    pub fn spawn(d: Arc<Daemon>, listener: std::net::TcpListener) -> std::io::Result<Server> {
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("rpc".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => serve(d, l, stopped).await,
                        Err(e) => log::error!("RPC: {e}"),
                    }
                });
            })?;
        Ok(Server { stop, thread })
    }

    /// Stops accepting and drops every connection.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.thread.join();
    }
}

async fn serve(
    d: Arc<Daemon>,
    listener: tokio::net::TcpListener,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let logins = Arc::new(Logins::default());
    let per_ip = Arc::new(Mutex::new(HashMap::new()));
    loop {
        let Some((stream, peer)) = crate::serve::accept(&listener, &mut stopped, "RPC").await
        else {
            return;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            log::debug!("RPC: {peer} refused: {MAX_CONNECTIONS} connections open");
            continue;
        };
        let Some(own) = PerIp::enter(&per_ip, peer.ip()) else {
            log::debug!("RPC: {peer} refused: {MAX_PER_IP} connections from its address");
            continue;
        };
        let (d, logins) = (d.clone(), logins.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (d, logins) = (d.clone(), logins.clone());
                async move { Ok::<_, Infallible>(respond(&d, &logins, peer, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                log::debug!("RPC connection from {peer}: {e}");
            }
            drop((slot, own));
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn text(status: StatusCode, body: &str) -> Reply {
    reply(status, "text/html; charset=utf-8", body.to_owned())
}

async fn respond(
    d: &Arc<Daemon>,
    logins: &Logins,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Reply {
    let settings = d.settings();
    let credentials = settings.credentials();
    if credentials.is_none() && !host_allowed(req.headers().get(header::HOST), &settings) {
        return closing(text(
            StatusCode::MISDIRECTED_REQUEST,
            "<h1>421: Misdirected Request</h1><p>Unauthorized Host header. Add the name to \
             rpc-host-whitelist, or use an IP address.</p>",
        ));
    }
    if let Some((user, pass)) = &credentials {
        if !authorized(req.headers().get(header::AUTHORIZATION), user, pass) {
            let wait = logins.failed(peer.ip());
            tokio::time::sleep(wait).await;
            let mut r = text(StatusCode::UNAUTHORIZED, "<h1>401: Unauthorized</h1>");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ringtorrent\""),
            );
            // Its body is not read: the connection cannot carry another request.
            return closing(r);
        }
        logins.succeeded(peer.ip());
    }
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (_, "/transmission/rpc" | "/transmission/rpc/") => rpc_call(d, req).await,
        (Method::GET, "/metrics") => {
            let d = d.clone();
            match tokio::task::spawn_blocking(move || metrics::render(&d)).await {
                Ok(body) => reply(StatusCode::OK, metrics::CONTENT_TYPE, body),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "metrics failed"),
            }
        }
        (Method::GET | Method::HEAD, _) => static_file(&settings, &path),
        _ => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "<h1>405: Method Not Allowed</h1>",
        ),
    }
}

/// A reply after which the connection closes (the request's body was
/// left unread, so nothing after it on the connection can be parsed).
fn closing(mut r: Reply) -> Reply {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Reads and drops a body of at most [`MAX_BODY`] bytes that arrives
/// within [`BODY_TIMEOUT`]; whether it did.
async fn discard(mut body: Incoming) -> bool {
    let read = async {
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > MAX_BODY {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or(false)
}

async fn rpc_call(d: &Arc<Daemon>, req: Request<Incoming>) -> Reply {
    let id = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok());
    if id != Some(d.session_id.as_str()) {
        let mut r = text(
            StatusCode::CONFLICT,
            "<h1>409: Conflict</h1><p>Your request had an invalid session-id header.</p>\
             <p>To fix this, follow these steps:<ol><li> When reading a response, get its \
             X-Transmission-Session-Id header and remember it<li> Add the updated header to \
             your outgoing requests<li> When you get this 409 error message, resend your \
             request with the updated header</ol></p>",
        );
        if let Ok(v) = HeaderValue::from_str(&d.session_id) {
            r.headers_mut().insert(SESSION_HEADER, v);
        }
        // Clients resend at once on the same connection: read the body
        // they sent first, or say the connection ends here.
        return if discard(req.into_body()).await {
            r
        } else {
            closing(r)
        };
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return closing(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "<h1>413: Payload Too Large</h1>",
        ));
    }
    let body = Limited::new(req.into_body(), MAX_BODY).collect();
    let body = match tokio::time::timeout(BODY_TIMEOUT, body).await {
        Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "<h1>408: Request Timeout</h1>"),
        Ok(Err(_)) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "<h1>413: Payload Too Large</h1>",
            );
        }
        Ok(Ok(b)) => b.to_bytes(),
    };
    // Methods may read files or take locks: off the server's thread.
    let d2 = d.clone();
    let out = match tokio::task::spawn_blocking(move || rpc::handle(&d2, &body)).await {
        Ok(out) => out,
        Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "RPC failed"),
    };
    let mut r = reply(StatusCode::OK, "application/json; charset=UTF-8", out);
    if let Ok(v) = HeaderValue::from_str(&d.session_id) {
        r.headers_mut().insert(SESSION_HEADER, v);
    }
    r
}

fn static_file(settings: &Settings, path: &str) -> Reply {
    let rel = path.trim_start_matches('/');
    let asset = match &settings.web_dir {
        // Transmission's client lives at /transmission/web/.
        Some(dir) => match rel.strip_prefix("transmission/web") {
            Some(r) => web::from_dir(dir, r.trim_start_matches('/')),
            None if rel.is_empty() => {
                let mut r = text(StatusCode::FOUND, "");
                r.headers_mut().insert(
                    header::LOCATION,
                    HeaderValue::from_static("/transmission/web/"),
                );
                return r;
            }
            None => None,
        },
        None => web::builtin(rel.strip_prefix("transmission/web/").unwrap_or(rel)),
    };
    match asset {
        Some(a) => {
            let mut r = reply(StatusCode::OK, a.content_type, a.body);
            if settings.web_dir.is_none() {
                r.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static("default-src 'self'; img-src 'self' data:"),
                );
                r.headers_mut()
                    .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            }
            r
        }
        None => text(StatusCode::NOT_FOUND, "<h1>404: Not Found</h1>"),
    }
}

/// Whether the `Host` header names us by address, as localhost, or by a
/// whitelisted name (`*.example.org` matches its subdomains).
fn host_allowed(host: Option<&HeaderValue>, settings: &Settings) -> bool {
    let Some(host) = host.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<IpAddr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    if name.parse::<IpAddr>().is_ok() || name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let name = name.to_ascii_lowercase();
    settings
        .rpc_host_whitelist
        .iter()
        .flatten()
        .map(|w| w.trim().to_ascii_lowercase())
        .any(|w| match w.strip_prefix("*.") {
            Some(suffix) => name.ends_with(&format!(".{suffix}")),
            None => w == name,
        })
}

fn authorized(header: Option<&HeaderValue>, user: &str, pass: &str) -> bool {
    let Some(given) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| data_encoding::BASE64.decode(b.trim().as_bytes()).ok())
    else {
        return false;
    };
    let want = format!("{user}:{pass}");
    // Compared in constant time: no timing hint of how much matched.
    given.len() == want.len()
        && given
            .iter()
            .zip(want.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// One address's share of the connections, released on drop.
struct PerIp {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PerIp {
    /// A share for `ip`, unless it holds [`MAX_PER_IP`] connections already
    /// (so one client, slowed down for bad passwords, cannot take them all).
    fn enter(counts: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr) -> Option<PerIp> {
        let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.entry(ip).or_insert(0);
        if *n >= MAX_PER_IP {
            return None;
        }
        *n += 1;
        Some(PerIp {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for PerIp {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
    }
}

/// Failed logins by address: after a few, each answer waits longer.
#[derive(Default)]
struct Logins {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// Failures forgiven after this long without another.
const FORGIVE: Duration = Duration::from_secs(600);
const MAX_TRACKED: usize = 10_000;

impl Logins {
    /// Records a failure; how long to wait before answering it.
    fn failed(&self, ip: IpAddr) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if f.len() >= MAX_TRACKED && !f.contains_key(&ip) {
            f.retain(|_, (_, at)| now.duration_since(*at) < FORGIVE);
            if f.len() >= MAX_TRACKED {
                // Too many failing addresses to remember: all of them wait.
                return penalty(u32::MAX);
            }
        }
        let e = f.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) >= FORGIVE {
            e.0 = 0;
        }
        e.0 += 1;
        e.1 = now;
        penalty(e.0)
    }

    fn succeeded(&self, ip: IpAddr) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.remove(&ip);
    }
}

/// No wait for the first three failures (typos), then 1, 2, 4 .. 30 s.
fn penalty(failures: u32) -> Duration {
    match failures {
        0..=3 => Duration::ZERO,
        n => Duration::from_secs((1u64 << (n - 4).min(5)).min(30)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str, whitelist: &[&str]) -> bool {
        let s = Settings {
            rpc_host_whitelist: Some(whitelist.iter().map(|s| s.to_string()).collect()),
            ..Settings::default()
        };
        host_allowed(Some(&HeaderValue::from_str(h).unwrap()), &s)
    }

    #[test]
    fn hosts_by_address_or_whitelist_only() {
        assert!(host("127.0.0.1:9091", &[]));
        assert!(host("[::1]:9091", &[]));
        assert!(host("localhost:9091", &[]));
        assert!(host("192.168.1.5", &[]));
        assert!(!host("evil.example.com:9091", &[]));
        assert!(host("box.example.com:9091", &["box.example.com"]));
        assert!(host("a.seed.example.com", &["*.seed.example.com"]));
        assert!(!host("seed.example.com.evil.net", &["*.seed.example.com"]));
        assert!(!host("[evil]:80", &[]));
    }

    #[test]
    fn basic_auth() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        let good = format!("Basic {}", data_encoding::BASE64.encode(b"u:p w"));
        assert!(authorized(Some(&h(&good)), "u", "p w"));
        assert!(!authorized(Some(&h(&good)), "u", "p"));
        assert!(!authorized(Some(&h("Basic !!")), "u", "p"));
        assert!(!authorized(None, "u", "p"));
    }

    #[test]
    fn failed_logins_slow_down() {
        let l = Logins::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let waits: Vec<u64> = (0..12).map(|_| l.failed(ip).as_secs()).collect();
        assert_eq!(waits, [0, 0, 0, 1, 2, 4, 8, 16, 30, 30, 30, 30]);
        l.succeeded(ip);
        assert_eq!(l.failed(ip), Duration::ZERO);
    }
}
