//! What the daemon needs of a session, as a trait: the real [`Session`],
//! or a stand-in for RPC tests and fuzzing that starts no threads.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::bitfield::Bitfield;
use crate::metadata::{FetchError, Fetched};
use crate::session::{
    AddTorrent, Added, FindMetadata, Session, SessionError, SessionEvent, TorrentStats,
};
use crate::torrent::{PeerInfo, TorrentId};
use crate::tracker::client::TrackerStat;

pub trait Engine: Send + Sync + 'static {
    /// Adds a torrent (checking its data first: this can take a while).
    fn add(&self, t: AddTorrent) -> Result<Added, SessionError>;
    fn remove(&self, id: TorrentId);
    fn stats(&self, id: TorrentId) -> Option<TorrentStats>;
    fn peers(&self, id: TorrentId) -> Vec<PeerInfo>;
    fn trackers(&self, id: TorrentId) -> Vec<TrackerStat>;
    fn have(&self, id: TorrentId) -> Option<Bitfield>;
    fn set_limits(&self, id: TorrentId, up: Option<u64>, down: Option<u64>);
    fn set_session_limits(&self, up: Option<u64>, down: Option<u64>);
    fn reannounce(&self, id: TorrentId);
    fn next_event(&self, timeout: Duration) -> Option<SessionEvent>;
    /// The port peers reach us on.
    fn port(&self) -> u16;
    /// Fetches a magnet link's metadata (blocks until it is verified or
    /// `cancel` is set).
    fn fetch_metadata(
        &self,
        find: FindMetadata,
        cancel: &AtomicBool,
    ) -> Result<Fetched, FetchError>;
}

impl Engine for Session {
    fn add(&self, t: AddTorrent) -> Result<Added, SessionError> {
        Session::add(self, t)
    }
    fn remove(&self, id: TorrentId) {
        Session::remove(self, id);
    }
    fn stats(&self, id: TorrentId) -> Option<TorrentStats> {
        Session::stats(self, id)
    }
    fn peers(&self, id: TorrentId) -> Vec<PeerInfo> {
        Session::peers(self, id)
    }
    fn trackers(&self, id: TorrentId) -> Vec<TrackerStat> {
        Session::trackers(self, id)
    }
    fn have(&self, id: TorrentId) -> Option<Bitfield> {
        Session::have(self, id)
    }
    fn set_limits(&self, id: TorrentId, up: Option<u64>, down: Option<u64>) {
        Session::set_limits(self, id, up, down);
    }
    fn set_session_limits(&self, up: Option<u64>, down: Option<u64>) {
        Session::set_session_limits(self, up, down);
    }
    fn reannounce(&self, id: TorrentId) {
        Session::reannounce(self, id);
    }
    fn next_event(&self, timeout: Duration) -> Option<SessionEvent> {
        Session::next_event(self, timeout)
    }
    fn port(&self) -> u16 {
        Session::port(self)
    }
    fn fetch_metadata(
        &self,
        find: FindMetadata,
        cancel: &AtomicBool,
    ) -> Result<Fetched, FetchError> {
        Session::fetch_metadata(self, find, cancel)
    }
}

/// A session that moves no data: every add succeeds at once with no pieces,
/// and a removal is reported by `next_event` as it would be. For the RPC's
/// tests and its fuzz target.
#[derive(Debug, Default)]
pub struct StandIn {
    next: std::sync::atomic::AtomicU32,
    /// Torrents added and not removed.
    pub running: std::sync::Mutex<Vec<TorrentId>>,
    events: std::sync::Mutex<std::collections::VecDeque<SessionEvent>>,
}

impl Engine for StandIn {
    fn add(&self, t: AddTorrent) -> Result<Added, SessionError> {
        let id = TorrentId(self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
        if let Ok(mut r) = self.running.lock() {
            r.push(id);
        }
        Ok(Added {
            id,
            check_seconds: 0.0,
            resumed_pieces: 0,
            have: 0,
            pieces: Bitfield::new(t.metainfo.info.piece_count()),
        })
    }
    fn remove(&self, id: TorrentId) {
        if let Ok(mut r) = self.running.lock() {
            r.retain(|t| *t != id);
        }
        if let Ok(mut e) = self.events.lock() {
            e.push_back(SessionEvent::Removed(id));
        }
    }
    fn stats(&self, _: TorrentId) -> Option<TorrentStats> {
        None
    }
    fn peers(&self, _: TorrentId) -> Vec<PeerInfo> {
        Vec::new()
    }
    fn trackers(&self, _: TorrentId) -> Vec<TrackerStat> {
        Vec::new()
    }
    fn have(&self, _: TorrentId) -> Option<Bitfield> {
        None
    }
    fn set_limits(&self, _: TorrentId, _: Option<u64>, _: Option<u64>) {}
    fn set_session_limits(&self, _: Option<u64>, _: Option<u64>) {}
    fn reannounce(&self, _: TorrentId) {}
    fn next_event(&self, _: Duration) -> Option<SessionEvent> {
        self.events.lock().ok()?.pop_front()
    }
    fn port(&self) -> u16 {
        0
    }
    /// No peers here: nothing arrives.
    fn fetch_metadata(&self, _: FindMetadata, _: &AtomicBool) -> Result<Fetched, FetchError> {
        Err(FetchError::Cancelled)
    }
}
