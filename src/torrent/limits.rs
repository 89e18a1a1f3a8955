//! Rate limits: token buckets fed by the time passed in.
//!
//! A bucket holds up to `burst` bytes of allowance and refills at `rate`
//! bytes per second. Uploads take from it before a block is queued;
//! downloads before a block is requested, so the data that arrives is
//! bounded by what was asked for. Over any window longer than a few bursts
//! the bytes that pass are within a burst of `rate × time`.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Bytes per second.
    rate: u64,
    burst: u64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket refilling at `rate` bytes per second that holds at most a
    /// tenth of a second of it (but at least `min_burst`, so one block always
    /// fits), full at `now`.
    pub fn new(rate: u64, min_burst: u64, now: Instant) -> TokenBucket {
        let burst = (rate / 10).max(min_burst).max(1);
        TokenBucket {
            rate,
            burst,
            tokens: burst as f64,
            last: now,
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Changes the rate, keeping the allowance earned so far.
    pub fn set_rate(&mut self, rate: u64, min_burst: u64, now: Instant) {
        self.refill(now);
        self.rate = rate;
        self.burst = (rate / 10).max(min_burst).max(1);
        self.tokens = self.tokens.min(self.burst as f64);
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + dt * self.rate as f64).min(self.burst as f64);
    }

    /// Whether `n` bytes of allowance are there (taking none).
    pub fn has(&mut self, n: u64, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= n as f64
    }

    /// Takes `n` bytes of allowance if there are that many.
    pub fn take(&mut self, n: u64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }

    /// When `n` bytes of allowance will be there. At rate 0 never: look
    /// again in a second (the rate may have changed by then), not at once.
    pub fn ready_at(&self, n: u64) -> Instant {
        let missing = n as f64 - self.tokens;
        if missing <= 0.0 {
            return self.last;
        }
        if self.rate == 0 {
            return self.last + Duration::from_secs(1);
        }
        self.last + Duration::from_secs_f64(missing / self.rate as f64)
    }
}

/// The limits a shard applies to one torrent (its share of the torrent's
/// and the session's limits, as the coordinator splits them).
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub up: Option<TokenBucket>,
    pub down: Option<TokenBucket>,
}

impl Limits {
    /// Sets a direction's rate (`None`: unlimited).
    pub fn set(slot: &mut Option<TokenBucket>, rate: Option<u64>, min_burst: u64, now: Instant) {
        match (slot.as_mut(), rate) {
            (_, None) => *slot = None,
            (Some(b), Some(r)) => b.set_rate(r, min_burst, now),
            (None, Some(r)) => *slot = Some(TokenBucket::new(r, min_burst, now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_rate_waits_instead_of_spinning() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, 16384, t0);
        assert!(b.take(16384, t0));
        assert!(!b.take(16384, t0));
        assert_eq!(b.ready_at(16384), t0 + Duration::from_secs(1));
    }

    #[test]
    fn passes_the_rate_over_time() {
        let t0 = Instant::now();
        let rate = 20 << 20;
        let mut b = TokenBucket::new(rate, 16384, t0);
        let mut passed = 0u64;
        let mut now = t0;
        // Ten seconds in steps of a millisecond, taking blocks greedily.
        while now < t0 + Duration::from_secs(10) {
            while b.take(16384, now) {
                passed += 16384;
            }
            now += Duration::from_millis(1);
        }
        let expect = rate as f64 * 10.0;
        let off = (passed as f64 - expect).abs() / expect;
        assert!(off < 0.02, "{passed} bytes in 10 s, {off:.3} off");
    }

    #[test]
    fn ready_at_names_when_a_block_fits() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(16384, 16384, t0);
        assert!(b.take(16384, t0));
        assert!(!b.take(16384, t0));
        let at = b.ready_at(16384);
        assert!(at > t0 && at <= t0 + Duration::from_millis(1001));
        assert!(b.take(16384, at));
    }
}
