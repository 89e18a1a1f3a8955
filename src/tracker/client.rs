//! The session's announce worker: a few threads that announce every
//! torrent on schedule through its tiers, hand peers to the session, and
//! say `stopped` on the way out without holding the exit up for more than
//! its deadline. Idle torrents cost nothing between announces (the threads
//! sleep until the next one is due). All protocol work is in `http`, `udp`
//! and `tiers`; this file only moves bytes and keeps time.

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::tiers::Tiers;
use super::udp::{self, Reply, Step, UdpTracker};
use super::{AnnounceRequest, AnnounceResponse, Event, ScrapeStats, TrackerError, http};
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

/// What one tracker said last, for `trackerStats` and `ringtorrent health`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackerStat {
    pub url: String,
    pub tier: usize,
    /// Unix seconds of the last announce, and whether it worked.
    pub last_announce: Option<(u64, bool)>,
    /// Peers the last answer gave, or why it failed.
    pub last_peers: u32,
    pub last_error: Option<String>,
    /// Unix seconds of the next announce (the whole torrent's).
    pub next_announce: u64,
    /// The tracker's own counts of the swarm: from a scrape (or, lacking
    /// one, the announce's), `None` until known.
    pub seeders: Option<u32>,
    pub leechers: Option<u32>,
    pub downloads: Option<u32>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
    /// Told what every tracker said, after each round.
    pub on_stats: Option<Box<dyn FnMut(Vec<TrackerStat>) + Send>>,
}

/// Threads announcing at once.
const THREADS: usize = 4;

/// One torrent's place in the schedule.
struct Entry {
    /// Taken by the thread announcing it.
    worker: Option<Worker>,
    next: Instant,
    event: Event,
    backoff: Duration,
    /// Removed: say `stopped`, then forget it.
    removed: bool,
}

#[derive(Default)]
struct Schedule {
    entries: HashMap<u64, Entry>,
    /// Set by `stop`: every torrent says `stopped` by then.
    stopping: Option<Instant>,
}

struct Shared {
    schedule: Mutex<Schedule>,
    wake: Condvar,
    /// Interrupts UDP waits when stopping.
    interrupt: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Handle to the announce threads.
pub struct Announcer {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Announcer {
    pub fn spawn() -> std::io::Result<Announcer> {
        let shared = Arc::new(Shared {
            schedule: Mutex::new(Schedule::default()),
            wake: Condvar::new(),
            interrupt: AtomicBool::new(false),
        });
        let mut threads = Vec::with_capacity(THREADS);
        for i in 0..THREADS {
            let shared = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("announce-{i}"))
                    .spawn(move || run(&shared))?,
            );
        }
        Ok(Announcer { shared, threads })
    }

    /// Starts announcing a torrent (`key` names it in later calls).
    pub fn add(&self, key: u64, setup: TrackerSetup) {
        if setup.tiers.is_empty() {
            return;
        }
        let backoff = setup.config.min_backoff;
        self.shared.lock().entries.insert(
            key,
            Entry {
                worker: Some(Worker::new(setup)),
                next: Instant::now(),
                event: Event::Started,
                backoff,
                removed: false,
            },
        );
        self.shared.wake.notify_all();
    }

    /// The download finished: announce `completed` now.
    pub fn completed(&self, key: u64) {
        if let Some(e) = self.shared.lock().entries.get_mut(&key) {
            e.event = Event::Completed;
            e.next = Instant::now();
        }
        self.shared.wake.notify_all();
    }

    /// Announces now (a user asked for it).
    pub fn reannounce(&self, key: u64) {
        if let Some(e) = self.shared.lock().entries.get_mut(&key) {
            e.next = Instant::now();
        }
        self.shared.wake.notify_all();
    }

    /// Stops announcing a torrent (after a `stopped` announce).
    pub fn remove(&self, key: u64) {
        if let Some(e) = self.shared.lock().entries.get_mut(&key) {
            e.removed = true;
            e.next = Instant::now();
        }
        self.shared.wake.notify_all();
    }

    /// Announces `stopped` for every torrent and waits for the threads, for
    /// at most `budget`. A tracker that does not answer in time is left
    /// behind.
    pub fn stop(self, budget: Duration) {
        let deadline = Instant::now() + budget;
        self.shared.lock().stopping = Some(deadline);
        self.shared.interrupt.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        for t in self.threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// What an announce thread does: the torrent due first, over and over.
fn run(shared: &Shared) {
    loop {
        let (key, mut worker, event, removed, stopping) = {
            let mut s = shared.lock();
            loop {
                let now = Instant::now();
                let stopping = s.stopping;
                // Stopping: every torrent still here says goodbye, once.
                let due = s
                    .entries
                    .iter()
                    .filter(|(_, e)| e.worker.is_some() && (stopping.is_some() || e.next <= now))
                    .min_by_key(|(_, e)| e.next)
                    .map(|(k, _)| *k);
                if let Some(k) = due {
                    let e = s.entries.get_mut(&k).expect("found above");
                    let worker = e.worker.take().expect("checked above");
                    break (k, worker, e.event, e.removed, stopping);
                }
                if stopping.is_some() {
                    return;
                }
                let next = s
                    .entries
                    .values()
                    .filter(|e| e.worker.is_some())
                    .map(|e| e.next)
                    .min();
                s = match next {
                    Some(at) => {
                        let wait = at.saturating_duration_since(now);
                        shared
                            .wake
                            .wait_timeout(s, wait)
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                    }
                    None => shared.wake.wait(s).unwrap_or_else(|p| p.into_inner()),
                };
            }
        };
        if let Some(deadline) = stopping {
            worker.stopped(event, deadline);
            shared.lock().entries.remove(&key);
            continue;
        }
        if removed {
            worker.stopped(event, Instant::now() + Duration::from_secs(1));
            shared.lock().entries.remove(&key);
            continue;
        }
        let cfg = worker.setup.config.clone();
        let result = worker.announce(event, None, &shared.interrupt);
        let next = match &result {
            Ok(resp) => {
                let interval = u64::from(resp.min_interval.unwrap_or(0).max(resp.interval))
                    .max(cfg.min_interval.as_secs());
                unix_now() + interval
            }
            Err(_) => unix_now(),
        };
        if worker.setup.on_stats.is_some() {
            // Not after `completed`: the next announce is `stopped`, and a
            // slow scrape must not hold it up.
            let scrape = event != Event::Completed;
            worker.scrape_and_report(next, scrape, &shared.interrupt);
        }
        let mut s = shared.lock();
        let Some(e) = s.entries.get_mut(&key) else {
            continue;
        };
        match result {
            Ok(resp) => {
                e.event = Event::None;
                e.backoff = cfg.min_backoff;
                let interval = Duration::from_secs(u64::from(
                    resp.min_interval.unwrap_or(0).max(resp.interval),
                ));
                e.next = Instant::now() + interval.max(cfg.min_interval);
                drop(s);
                (worker.setup.on_peers)(resp.peers);
                s = shared.lock();
            }
            Err(_) => {
                e.next = Instant::now() + e.backoff;
                e.backoff = (e.backoff * 2).min(cfg.max_backoff);
            }
        }
        if let Some(e) = s.entries.get_mut(&key) {
            // A `completed` that came in meanwhile is still owed.
            if e.event == Event::Completed && event != Event::Completed {
                e.next = Instant::now();
            }
            e.worker = Some(worker);
        }
        drop(s);
        shared.wake.notify_all();
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
    /// What each tracker said last.
    stats: Vec<TrackerStat>,
    last_scrape: Option<Instant>,
}

/// How often a torrent's tracker is scraped (announces carry the counts
/// too, where the tracker sends them).
const SCRAPE_EVERY: Duration = Duration::from_secs(300);

impl Worker {
    fn new(setup: TrackerSetup) -> Worker {
        let agent = ureq::AgentBuilder::new()
            .timeout(setup.config.http_timeout)
            .user_agent(concat!("ringtorrent/", env!("CARGO_PKG_VERSION")))
            .build();
        let stats = setup
            .tiers
            .iter()
            .enumerate()
            .flat_map(|(tier, urls)| {
                urls.iter().map(move |url| TrackerStat {
                    url: url.clone(),
                    tier,
                    ..TrackerStat::default()
                })
            })
            .collect();
        Worker {
            tiers: Tiers::new(setup.tiers.clone()),
            setup,
            udp: HashMap::new(),
            agent,
            key: fastrand::u32(..),
            tracker_id: None,
            last_good: None,
            stats,
            last_scrape: None,
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
        interrupt: &AtomicBool,
    ) -> Result<AnnounceResponse, Interrupted> {
        let order: Vec<(usize, usize, String)> = self
            .tiers
            .order()
            .map(|(t, i, u)| (t, i, u.to_owned()))
            .collect();
        for (tier, index, url) in order {
            let result = self.announce_one(&url, event, deadline, Some(interrupt));
            self.note(&url, &result);
            match result {
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

    /// Records an announce's outcome for the tracker's stats.
    fn note(&mut self, url: &str, result: &Result<AnnounceResponse, Outcome>) {
        let Some(st) = self.stats.iter_mut().find(|s| s.url == url) else {
            return;
        };
        match result {
            Ok(r) => {
                st.last_announce = Some((unix_now(), true));
                st.last_peers = r.peers.len() as u32;
                st.last_error = None;
                st.seeders = r.seeders.or(st.seeders);
                st.leechers = r.leechers.or(st.leechers);
            }
            Err(Outcome::Error(e)) => {
                st.last_announce = Some((unix_now(), false));
                st.last_error = Some(e.to_string());
            }
            Err(Outcome::Interrupted(_)) => {}
        }
    }

    /// Asks the tracker that answered last for the swarm's counts (at most
    /// every [`SCRAPE_EVERY`], and only if `scrape`), and reports every
    /// tracker's stats (`next` in Unix seconds).
    fn scrape_and_report(&mut self, next: u64, scrape: bool, interrupt: &AtomicBool) {
        let due = self
            .last_scrape
            .is_none_or(|at| at.elapsed() >= SCRAPE_EVERY);
        if let Some(url) = self.last_good.clone().filter(|_| scrape && due) {
            self.last_scrape = Some(Instant::now());
            match self.scrape_one(&url, interrupt) {
                Ok(s) => {
                    if let Some(st) = self.stats.iter_mut().find(|x| x.url == url) {
                        st.seeders = Some(s.seeders);
                        st.leechers = Some(s.leechers);
                        st.downloads = Some(s.completed);
                    }
                }
                Err(e) => log::debug!("tracker {url}: scrape: {e}"),
            }
        }
        for st in &mut self.stats {
            st.next_announce = next;
        }
        if let Some(f) = self.setup.on_stats.as_mut() {
            f(self.stats.clone());
        }
    }

    /// One scrape of `url` for this torrent (BEP 48 over HTTP, BEP 15 over UDP).
    fn scrape_one(
        &mut self,
        url: &str,
        interrupt: &AtomicBool,
    ) -> Result<ScrapeStats, TrackerError> {
        let hash = self.setup.info_hash;
        if url.starts_with("http://") || url.starts_with("https://") {
            http_scrape(&self.agent, url, &hash)
        } else if let Some(rest) = url.strip_prefix("udp://") {
            let deadline = Instant::now() + self.setup.config.http_timeout;
            match self.udp(
                url,
                rest,
                udp::Request::Scrape(hash),
                Some(deadline),
                Some(interrupt),
            ) {
                Ok(Reply::Scrape(s)) => Ok(s),
                Ok(Reply::Announce(_)) => {
                    Err(TrackerError::BadPacket("announce reply to a scrape"))
                }
                Err(Outcome::Error(e)) => Err(e),
                Err(Outcome::Interrupted(_)) => Err(TrackerError::TimedOut(0)),
            }
        } else {
            Err(TrackerError::UnsupportedUrl(url.to_owned()))
        }
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
        interrupt: Option<&AtomicBool>,
    ) -> Result<AnnounceResponse, Outcome> {
        let req = self.request(event);
        if url.starts_with("http://") || url.starts_with("https://") {
            self.http(url, &req, deadline)
        } else if let Some(rest) = url.strip_prefix("udp://") {
            match self.udp(url, rest, udp::Request::Announce(req), deadline, interrupt)? {
                Reply::Announce(r) => Ok(r),
                Reply::Scrape(_) => Err(Outcome::Error(TrackerError::BadPacket(
                    "scrape reply to an announce",
                ))),
            }
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
        req: udp::Request,
        deadline: Option<Instant>,
        interrupt: Option<&AtomicBool>,
    ) -> Result<Reply, Outcome> {
        let (sock, addr) = udp_socket(rest)?;
        let cfg = &self.setup.config;
        let client = self
            .udp
            .entry(url.to_owned())
            .or_insert_with(|| UdpTracker::new(cfg.udp_timeout, cfg.udp_attempts, addr.is_ipv6()));
        udp_exchange(&sock, client, req, deadline, interrupt)
    }
}

/// A UDP socket connected to the tracker at `rest` (`host:port/...`).
fn udp_socket(rest: &str) -> Result<(UdpSocket, SocketAddr), Outcome> {
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
    Ok((sock, addr))
}

/// Drives one BEP 15 exchange (`client`'s state machine) over `sock`.
fn udp_exchange(
    sock: &UdpSocket,
    client: &mut UdpTracker,
    req: udp::Request,
    deadline: Option<Instant>,
    interrupt: Option<&AtomicBool>,
) -> Result<Reply, Outcome> {
    let io = |e: std::io::Error| Outcome::Error(TrackerError::Io(e.to_string()));
    let now = Instant::now();
    let mut step = client.start(now, req);
    let mut buf = [0u8; 8192];
    loop {
        let wait_until = match step {
            Step::Done(r) => return Ok(r),
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
        if interrupt.is_some_and(|i| i.load(Ordering::Relaxed)) {
            return Err(Outcome::Interrupted(Interrupted::Stop));
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

/// A scrape (BEP 48) of `url` over HTTP(S).
fn http_scrape(
    agent: &ureq::Agent,
    url: &str,
    hash: &InfoHash,
) -> Result<ScrapeStats, TrackerError> {
    let Some(full) = http::scrape_url(url, hash) else {
        return Err(TrackerError::UnsupportedUrl(url.to_owned()));
    };
    let resp = agent
        .get(&full)
        .call()
        .map_err(|e| TrackerError::Io(e.to_string()))?;
    let mut body = Vec::new();
    resp.into_reader()
        .take(http::MAX_RESPONSE as u64)
        .read_to_end(&mut body)
        .map_err(|e| TrackerError::Io(e.to_string()))?;
    http::parse_scrape(&body, hash)
}

/// One scrape of `info_hash` at the tracker `url` (HTTP, HTTPS or UDP),
/// given up after `timeout`: what `ringtorrent health` asks each tracker.
pub fn scrape(
    url: &str,
    info_hash: InfoHash,
    timeout: Duration,
) -> Result<ScrapeStats, TrackerError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        let agent = ureq::AgentBuilder::new()
            .timeout(timeout)
            .user_agent(concat!("ringtorrent/", env!("CARGO_PKG_VERSION")))
            .build();
        http_scrape(&agent, url, &info_hash)
    } else if let Some(rest) = url.strip_prefix("udp://") {
        let outcome = |o| match o {
            Outcome::Error(e) => e,
            Outcome::Interrupted(_) => TrackerError::TimedOut(0),
        };
        let (sock, addr) = udp_socket(rest).map_err(outcome)?;
        // BEP 15's retry schedule, within the caller's time.
        let mut client = UdpTracker::new(Duration::from_secs(2), 3, addr.is_ipv6());
        let deadline = Instant::now() + timeout;
        match udp_exchange(
            &sock,
            &mut client,
            udp::Request::Scrape(info_hash),
            Some(deadline),
            None,
        )
        .map_err(outcome)?
        {
            Reply::Scrape(s) => Ok(s),
            Reply::Announce(_) => Err(TrackerError::BadPacket("announce reply to a scrape")),
        }
    } else {
        Err(TrackerError::UnsupportedUrl(url.to_owned()))
    }
}

enum Interrupted {
    Stop,
    Failed,
}

enum Outcome {
    Interrupted(Interrupted),
    Error(TrackerError),
}
