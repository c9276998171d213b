//! The processor's clock, in its own module: the count path (enrichment, flow table) and the
//! shared state both use it, and it must not pull either in.

use std::time::{Duration, Instant};

/// The processor's clock: ticks of one second since start, for idle and capacity eviction.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            start: Instant::now(),
        }
    }
}

impl Clock {
    /// The tick at instant `at`: seconds since start (wraps after 136 years). The caller reads
    /// the clock once and uses it for several things.
    #[inline]
    pub fn tick_at(&self, at: Instant) -> u32 {
        at.saturating_duration_since(self.start).as_secs() as u32
    }

    /// A duration in ticks, rounded up, saturating.
    pub fn ticks(d: Duration) -> u32 {
        u32::try_from(d.as_millis().div_ceil(1000)).unwrap_or(u32::MAX)
    }
}
