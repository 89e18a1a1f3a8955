//! Serving the tracker: one thread, a single-threaded tokio runtime, the
//! HTTP listener (`http_conn`) and the UDP socket on it, and the [`Tracker`]
//! owned by that thread alone (no locks). Once a second it forgets expired
//! peers and, when asked (SIGHUP), reloads the allow-list.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::udp::ConnectionIds;
use super::{Limits, Tracker, read_allow_list};

#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    pub http: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    pub limits: Limits,
    /// One hex info-hash per line; `None`: every torrent is served.
    pub allow_file: Option<PathBuf>,
    /// Set (by SIGHUP, say) to reload the allow-list.
    pub reload: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the allow-list {path}")]
    AllowList {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tracker thread")]
    Thread(#[source] std::io::Error),
}

pub struct Server {
    /// Where it listens (ports picked when 0 was asked for).
    pub http_addr: Option<SocketAddr>,
    pub udp_addr: Option<SocketAddr>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(cfg: ServerConfig) -> Result<Server, ServerError> {
        let allow = match &cfg.allow_file {
            Some(path) => Some(
                read_allow_list(path).map_err(|source| ServerError::AllowList {
                    path: path.clone(),
                    source,
                })?,
            ),
            None => None,
        };
        let bind_err = |addr| move |source| ServerError::Bind { addr, source };
        let http = cfg
            .http
            .map(|a| std::net::TcpListener::bind(a).map_err(bind_err(a)))
            .transpose()?;
        let udp = cfg
            .udp
            .map(|a| std::net::UdpSocket::bind(a).map_err(bind_err(a)))
            .transpose()?;
        let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());
        let udp_addr = udp.as_ref().and_then(|s| s.local_addr().ok());
        for fd_nonblocking in [
            http.as_ref().map(|l| l.set_nonblocking(true)),
            udp.as_ref().map(|s| s.set_nonblocking(true)),
        ]
        .into_iter()
        .flatten()
        {
            fd_nonblocking.map_err(ServerError::Thread)?;
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let tracker = Tracker::new(cfg.limits.clone(), allow);
        let thread = std::thread::Builder::new()
            .name("tracker".into())
            .spawn(move || serve(tracker, cfg, http, udp, stopped))
            .map_err(ServerError::Thread)?;
        Ok(Server {
            http_addr,
            udp_addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve(
    tracker: Tracker,
    cfg: ServerConfig,
    http: Option<std::net::TcpListener>,
    udp: Option<std::net::UdpSocket>,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log::error!("tracker: {e}");
            return;
        }
    };
    let tracker = Rc::new(RefCell::new(tracker));
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        if let Some(l) = http {
            tokio::task::spawn_local(super::http_conn::serve(tracker.clone(), l, stopped.clone()));
        }
        if let Some(s) = udp.and_then(|s| tokio::net::UdpSocket::from_std(s).ok()) {
            tokio::task::spawn_local(serve_udp(tracker.clone(), s, stopped.clone()));
        }
        housekeeping(tracker, cfg, stopped).await;
    });
}

/// Expiry and allow-list reloads, once a second, until stopped.
async fn housekeeping(
    tracker: Rc<RefCell<Tracker>>,
    cfg: ServerConfig,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tick.tick() => {}
        }
        tracker.borrow_mut().expire(Instant::now());
        if cfg.reload.swap(false, Ordering::Relaxed)
            && let Some(path) = &cfg.allow_file
        {
            match read_allow_list(path) {
                Ok(list) => {
                    log::info!("tracker: allow-list reloaded, {} torrents", list.len());
                    tracker.borrow_mut().set_allow(Some(list));
                }
                // Keep serving with the list we have.
                Err(e) => log::warn!("tracker: allow-list not reloaded: {e}"),
            }
        }
    }
}

async fn serve_udp(
    tracker: Rc<RefCell<Tracker>>,
    socket: tokio::net::UdpSocket,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let ids = ConnectionIds::new();
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::with_capacity(2048);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            r = socket.readable() => if r.is_err() { continue },
        }
        // Everything queued at once, without going back to the runtime
        // between packets.
        loop {
            let (n, from) = match socket.try_recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::debug!("tracker UDP: {e}");
                    continue;
                }
            };
            super::udp::handle(
                &mut tracker.borrow_mut(),
                &ids,
                Instant::now(),
                None,
                from,
                &buf[..n],
                &mut out,
            );
            if !out.is_empty()
                && let Err(e) = socket.try_send_to(&out, from)
                && e.kind() == std::io::ErrorKind::WouldBlock
            {
                let _ = socket.send_to(&out, from).await;
            }
        }
    }
}
