//! The tracker thread: announces on schedule through the tiers, hands peers
//! to the engine, and says `stopped` on the way out without holding the exit
//! up for more than its deadline. All protocol work is in `http`, `udp` and
//! `tiers`; this file only moves bytes and keeps time.

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::tiers::Tiers;
use super::udp::{self, Reply, Step, UdpTracker};
use super::{AnnounceRequest, AnnounceResponse, Event, TrackerError, http};
use crate::metainfo::InfoHash;
use crate::wire::PeerId;

#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// First UDP retransmission timeout (doubles each attempt).
    pub udp_timeout: Duration,
    pub udp_attempts: u32,
    pub http_timeout: Duration,
    pub num_want: u32,
    /// Wait after every tracker failed; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Never announce more often than this, whatever a tracker says.
    pub min_interval: Duration,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            udp_timeout: Duration::from_secs(3),
            udp_attempts: 4,
            http_timeout: Duration::from_secs(15),
            num_want: 200,
            min_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(30 * 60),
            min_interval: Duration::from_secs(30),
        }
    }
}

/// Transfer totals for announces.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
}

/// Called with each announce's tracker URL and outcome.
pub type ResultHook = Box<dyn FnMut(&str, Result<&AnnounceResponse, &TrackerError>) + Send>;

pub struct TrackerSetup {
    pub tiers: Vec<Vec<String>>,
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub port: u16,
    pub config: TrackerConfig,
    pub totals: Arc<dyn Fn() -> Totals + Send + Sync>,
    pub on_peers: Box<dyn FnMut(Vec<SocketAddr>) + Send>,
    /// Told about every announce outcome (for counters and `--json`).
    pub on_result: ResultHook,
}

enum Command {
    Completed,
    Stop(Instant),
}

/// Handle to the tracker thread.
pub struct Announcer {
    tx: Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl Announcer {
    pub fn spawn(setup: TrackerSetup) -> std::io::Result<Announcer> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("tracker".into())
            .spawn(move || Worker::new(setup).run(rx))?;
        Ok(Announcer {
            tx,
            thread: Some(thread),
        })
    }

    /// The download finished: announce `completed` now.
    pub fn completed(&self) {
        let _ = self.tx.send(Command::Completed);
    }

    /// Announces `stopped` and waits for the thread, for at most `budget`.
    /// A tracker that does not answer in time is left behind.
    pub fn stop(mut self, budget: Duration) {
        let deadline = Instant::now() + budget;
        let _ = self.tx.send(Command::Stop(deadline));
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

struct Worker {
    setup: TrackerSetup,
    tiers: Tiers,
    udp: HashMap<String, UdpTracker>,
    agent: ureq::Agent,
    key: u32,
    tracker_id: Option<Vec<u8>>,
    /// The tracker that last answered: `stopped` goes there.
    last_good: Option<String>,
}

impl Worker {
    fn new(setup: TrackerSetup) -> Worker {
        let agent = ureq::AgentBuilder::new()
            .timeout(setup.config.http_timeout)
            .user_agent(concat!("ringtorrent/", env!("CARGO_PKG_VERSION")))
            .build();
        Worker {
            tiers: Tiers::new(setup.tiers.clone()),
            setup,
            udp: HashMap::new(),
            agent,
            key: fastrand::u32(..),
            tracker_id: None,
            last_good: None,
        }
    }

    fn run(mut self, rx: Receiver<Command>) {
        if self.tiers.is_empty() {
            // Nothing to announce to; wait for the stop.
            let _ = rx.recv();
            return;
        }
        let cfg = self.setup.config.clone();
        let mut event = Event::Started;
        let mut next = Instant::now();
        let mut backoff = cfg.min_backoff;
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Command::Completed) => {
                    event = Event::Completed;
                    next = Instant::now();
                    continue;
                }
                Ok(Command::Stop(deadline)) => return self.stopped(event, deadline),
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            match self.announce(event, None, &rx) {
                Ok(resp) => {
                    event = Event::None;
                    backoff = cfg.min_backoff;
                    let interval = Duration::from_secs(u64::from(
                        resp.min_interval.unwrap_or(0).max(resp.interval),
                    ));
                    next = Instant::now() + interval.max(cfg.min_interval);
                    (self.setup.on_peers)(resp.peers);
                }
                Err(Interrupted::Stop(deadline)) => return self.stopped(event, deadline),
                Err(Interrupted::Completed) => {
                    event = Event::Completed;
                    next = Instant::now();
                }
                Err(Interrupted::Failed) => {
                    next = Instant::now() + backoff;
                    backoff = (backoff * 2).min(cfg.max_backoff);
                }
            }
        }
    }

    /// Says goodbye to the tracker that last answered, within `deadline`:
    /// `completed` first if that announce is still owed, then `stopped`.
    fn stopped(&mut self, pending: Event, deadline: Instant) {
        let Some(url) = self.last_good.clone() else {
            return;
        };
        if pending == Event::Completed {
            let _ = self.announce_one(&url, Event::Completed, Some(deadline), None);
        }
        if Instant::now() < deadline {
            let _ = self.announce_one(&url, Event::Stopped, Some(deadline), None);
        }
    }

    /// Tries the trackers in tier order until one answers.
    fn announce(
        &mut self,
        event: Event,
        deadline: Option<Instant>,
        rx: &Receiver<Command>,
    ) -> Result<AnnounceResponse, Interrupted> {
        let order: Vec<(usize, usize, String)> = self
            .tiers
            .order()
            .map(|(t, i, u)| (t, i, u.to_owned()))
            .collect();
        for (tier, index, url) in order {
            match self.announce_one(&url, event, deadline, Some(rx)) {
                Ok(resp) => {
                    self.tiers.promote(tier, index);
                    self.last_good = Some(url.clone());
                    if let Some(id) = &resp.tracker_id {
                        self.tracker_id = Some(id.clone());
                    }
                    if let Some(w) = &resp.warning {
                        log::warn!("tracker {url}: {w}");
                    }
                    log::info!(
                        "tracker {url}: {} peers, next in {} s",
                        resp.peers.len(),
                        resp.interval
                    );
                    (self.setup.on_result)(&url, Ok(&resp));
                    return Ok(resp);
                }
                Err(Outcome::Interrupted(i)) => return Err(i),
                Err(Outcome::Error(e)) => {
                    log::warn!("tracker {url}: {e}");
                    (self.setup.on_result)(&url, Err(&e));
                }
            }
        }
        Err(Interrupted::Failed)
    }

    fn request(&self, event: Event) -> AnnounceRequest {
        let t = (self.setup.totals)();
        AnnounceRequest {
            info_hash: self.setup.info_hash,
            peer_id: self.setup.peer_id,
            port: self.setup.port,
            uploaded: t.uploaded,
            downloaded: t.downloaded,
            left: t.left,
            event,
            num_want: if event == Event::Stopped {
                0
            } else {
                self.setup.config.num_want
            },
            key: self.key,
            tracker_id: self.tracker_id.clone(),
        }
    }

    fn announce_one(
        &mut self,
        url: &str,
        event: Event,
        deadline: Option<Instant>,
        rx: Option<&Receiver<Command>>,
    ) -> Result<AnnounceResponse, Outcome> {
        let req = self.request(event);
        if url.starts_with("http://") || url.starts_with("https://") {
            self.http(url, &req, deadline)
        } else if let Some(rest) = url.strip_prefix("udp://") {
            self.udp(url, rest, req, deadline, rx)
        } else {
            Err(Outcome::Error(TrackerError::UnsupportedUrl(url.to_owned())))
        }
    }

    fn http(
        &self,
        url: &str,
        req: &AnnounceRequest,
        deadline: Option<Instant>,
    ) -> Result<AnnounceResponse, Outcome> {
        let full = http::announce_url(url, req);
        let mut call = self.agent.get(&full);
        if let Some(d) = deadline {
            call = call.timeout(
                d.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            );
        }
        let resp = match call.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                // Some trackers send a bencoded failure with an error status.
                let mut body = Vec::new();
                let _ = r.into_reader().take(64 * 1024).read_to_end(&mut body);
                return Err(Outcome::Error(match http::parse_announce(&body) {
                    Err(TrackerError::Failure(f)) => TrackerError::Failure(f),
                    _ => TrackerError::Io(format!("HTTP status {code}")),
                }));
            }
            Err(e) => return Err(Outcome::Error(TrackerError::Io(e.to_string()))),
        };
        let mut body = Vec::new();
        resp.into_reader()
            .take(http::MAX_RESPONSE as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| Outcome::Error(TrackerError::Io(e.to_string())))?;
        if body.len() > http::MAX_RESPONSE {
            return Err(Outcome::Error(TrackerError::Malformed(
                "response larger than 4 MiB",
            )));
        }
        http::parse_announce(&body).map_err(Outcome::Error)
    }

    fn udp(
        &mut self,
        url: &str,
        rest: &str,
        req: AnnounceRequest,
        deadline: Option<Instant>,
        rx: Option<&Receiver<Command>>,
    ) -> Result<AnnounceResponse, Outcome> {
        let io = |e: std::io::Error| Outcome::Error(TrackerError::Io(e.to_string()));
        let hostport = rest.split('/').next().unwrap_or(rest);
        let addr = hostport
            .to_socket_addrs()
            .map_err(io)?
            .next()
            .ok_or_else(|| Outcome::Error(TrackerError::Io(format!("{hostport}: no address"))))?;
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0".parse().expect("literal")
        } else {
            "0.0.0.0:0".parse().expect("literal")
        };
        let sock = UdpSocket::bind(bind).map_err(io)?;
        sock.connect(addr).map_err(io)?;
        let cfg = &self.setup.config;
        let client = self
            .udp
            .entry(url.to_owned())
            .or_insert_with(|| UdpTracker::new(cfg.udp_timeout, cfg.udp_attempts, addr.is_ipv6()));
        let now = Instant::now();
        let mut step = client.start(now, udp::Request::Announce(req));
        let mut buf = [0u8; 8192];
        loop {
            let wait_until = match step {
                Step::Done(Reply::Announce(r)) => return Ok(r),
                Step::Done(Reply::Scrape(_)) => {
                    return Err(Outcome::Error(TrackerError::BadPacket(
                        "scrape reply to an announce",
                    )));
                }
                Step::Send(ref packet, d) => {
                    sock.send(packet).map_err(io)?;
                    d
                }
                Step::Wait(d) => d,
            };
            let until = deadline.map_or(wait_until, |d| d.min(wait_until));
            // Wake at least every 100 ms to notice a stop.
            let now = Instant::now();
            if let Some(d) = deadline
                && now >= d
            {
                return Err(Outcome::Error(TrackerError::TimedOut(0)));
            }
            let slice = until
                .saturating_duration_since(now)
                .clamp(Duration::from_millis(1), Duration::from_millis(100));
            sock.set_read_timeout(Some(slice)).map_err(io)?;
            if let Some(rx) = rx {
                match rx.try_recv() {
                    Ok(Command::Stop(d)) => return Err(Outcome::Interrupted(Interrupted::Stop(d))),
                    Ok(Command::Completed) => {
                        return Err(Outcome::Interrupted(Interrupted::Completed));
                    }
                    Err(_) => {}
                }
            }
            step = match sock.recv(&mut buf) {
                Ok(n) => client
                    .handle_packet(Instant::now(), &buf[..n])
                    .map_err(Outcome::Error)?,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if Instant::now() >= wait_until {
                        client
                            .handle_timeout(Instant::now())
                            .map_err(Outcome::Error)?
                    } else {
                        Step::Wait(wait_until)
                    }
                }
                // ICMP port unreachable shows up here: the tracker is down.
                Err(e) => {
                    client.reset_connection();
                    return Err(io(e));
                }
            };
        }
    }
}

enum Interrupted {
    Stop(Instant),
    Completed,
    Failed,
}

enum Outcome {
    Interrupted(Interrupted),
    Error(TrackerError),
}
