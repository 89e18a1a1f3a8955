/// A transfer rate: bytes are added as they move, and `tick` turns the
/// bytes of the last interval into a smoothed bytes-per-second figure.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    pub total: u64,
    window: u64,
    per_second: f64,
}

impl Rate {
    pub fn add(&mut self, bytes: u64) {
        self.total += bytes;
        self.window += bytes;
    }

    /// Closes an interval of `secs` seconds.
    pub fn tick(&mut self, secs: f64) {
        if secs <= 0.0 {
            return;
        }
        let now = self.window as f64 / secs;
        // Quick to rise, so pipelines open fast; still smooths noise.
        self.per_second = if now > self.per_second {
            now
        } else {
            0.6 * self.per_second + 0.4 * now
        };
        self.window = 0;
    }

    pub fn per_second(&self) -> u64 {
        self.per_second as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rises_fast_and_decays() {
        let mut r = Rate::default();
        r.add(1000);
        r.tick(0.5);
        assert_eq!(r.per_second(), 2000);
        r.tick(1.0);
        assert_eq!(r.per_second(), 1200);
        assert_eq!(r.total, 1000);
    }
}
