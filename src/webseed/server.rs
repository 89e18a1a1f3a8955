//! One web seed's health: backoff after errors, and when to give up on it.

use std::time::{Duration, Instant};

/// Failed requests in a row before a server is dropped.
pub const MAX_ERRORS_IN_A_ROW: u32 = 6;
/// Pieces failing their hash before a server is dropped: a file on a web
/// server does not heal, so one retry is enough.
pub const MAX_BAD_PIECES: u32 = 2;
/// The longest wait between tries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// It kept failing requests.
    Errors,
    /// It served bytes that fail their hash.
    WrongData,
    /// It answers range requests with whole files.
    NoRanges,
}

#[derive(Debug, Default)]
pub struct Server {
    errors_in_a_row: u32,
    bad_pieces: u32,
    retry_at: Option<Instant>,
    dropped: Option<Dropped>,
}

impl Server {
    pub fn dropped(&self) -> Option<Dropped> {
        self.dropped
    }

    /// When the next request may go out (`None`: now).
    pub fn wait_until(&self, now: Instant) -> Option<Instant> {
        self.retry_at.filter(|&t| t > now)
    }

    pub fn on_success(&mut self) {
        self.errors_in_a_row = 0;
        self.retry_at = None;
    }

    /// A request failed: wait 1, 2, 4 ... 60 s before the next, and give up
    /// after [`MAX_ERRORS_IN_A_ROW`]. Failures while it is already waiting
    /// (other workers' requests of the same outage) count once. Returns
    /// true when this dropped it.
    pub fn on_error(&mut self, now: Instant) -> bool {
        if self.wait_until(now).is_some() {
            return false;
        }
        self.errors_in_a_row += 1;
        let backoff = Duration::from_secs(1 << (self.errors_in_a_row - 1).min(6)).min(MAX_BACKOFF);
        self.retry_at = Some(now + backoff);
        self.drop_if(self.errors_in_a_row >= MAX_ERRORS_IN_A_ROW, Dropped::Errors)
    }

    /// A piece it served failed its hash. Returns true when this dropped it.
    pub fn on_bad_piece(&mut self) -> bool {
        self.bad_pieces += 1;
        self.drop_if(self.bad_pieces >= MAX_BAD_PIECES, Dropped::WrongData)
    }

    /// It cannot serve us at all. Returns true when this dropped it.
    pub fn give_up(&mut self, why: Dropped) -> bool {
        self.drop_if(true, why)
    }

    fn drop_if(&mut self, cond: bool, why: Dropped) -> bool {
        if cond && self.dropped.is_none() {
            self.dropped = Some(why);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_back_off_then_drop_and_success_resets() {
        let t0 = Instant::now();
        let mut s = Server::default();
        assert!(!s.on_error(t0));
        assert_eq!(s.wait_until(t0), Some(t0 + Duration::from_secs(1)));
        // The same outage seen by another worker.
        assert!(!s.on_error(t0));
        assert_eq!(s.wait_until(t0), Some(t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert!(!s.on_error(t1));
        assert_eq!(s.wait_until(t1), Some(t1 + Duration::from_secs(2)));
        s.on_success();
        assert_eq!(s.wait_until(t1), None);
        let mut now = t1;
        for _ in 1..MAX_ERRORS_IN_A_ROW {
            assert!(!s.on_error(now));
            now = s.wait_until(now).unwrap();
        }
        assert!(s.on_error(now));
        assert_eq!(s.dropped(), Some(Dropped::Errors));
        assert!(!s.on_error(now + Duration::from_secs(100)), "dropped once");
    }

    #[test]
    fn wrong_data_drops_it() {
        let mut s = Server::default();
        assert!(!s.on_bad_piece());
        assert!(s.on_bad_piece());
        assert_eq!(s.dropped(), Some(Dropped::WrongData));
    }
}
