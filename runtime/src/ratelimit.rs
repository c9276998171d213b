//! Rate-limited warnings: per-packet and per-record problems are counted in metrics always, and
//! logged at most once per interval with the number suppressed since the last line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Lets one event through per interval; counts the rest.
#[derive(Debug)]
pub struct RateLimit {
    start: Instant,
    interval_ms: u64,
    /// Milliseconds since `start` of the last event let through, plus one (0 = never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    pub fn new(interval: Duration) -> Self {
        RateLimit {
            start: Instant::now(),
            interval_ms: interval.as_millis().max(1) as u64,
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this event may be logged, `n` being how many were suppressed since the
    /// last one; `None` when it should be suppressed.
    pub fn check(&self) -> Option<u64> {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.interval_ms {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::new(Duration::from_secs(10))
    }
}

/// `warn!` at most once per interval of the given [`RateLimit`], noting how many were
/// suppressed.
#[macro_export]
macro_rules! warn_limited {
    ($limit:expr, $($arg:tt)+) => {
        if let Some(suppressed) = $limit.check() {
            tracing::warn!(suppressed, $($arg)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_one_through_per_interval() {
        let rl = RateLimit::new(Duration::from_millis(200));
        assert_eq!(rl.check(), Some(0));
        assert_eq!(rl.check(), None);
        assert_eq!(rl.check(), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(rl.check(), Some(2));
    }
}
