//! Log lines a remote party can trigger at will (a malformed frame, a refused peer) go through
//! a [`Throttle`]: at most one per interval at their level, the rest at debug, and the next
//! line that passes says how many were held back. A flood must not flood the log; the metrics
//! count every one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One throttled kind of log line. Lock-free; share it as a `static`.
pub struct Throttle {
    every_ms: u64,
    /// Milliseconds since [`origin`] of the last line let through, plus one (0 = never).
    last: AtomicU64,
    held: AtomicU64,
}

fn origin() -> Instant {
    static O: OnceLock<Instant> = OnceLock::new();
    *O.get_or_init(Instant::now)
}

impl Throttle {
    pub const fn new(every: Duration) -> Self {
        Throttle {
            every_ms: every.as_millis() as u64,
            last: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last one)` when this line may be logged at its level now;
    /// `None` when it is to be held back (log it at debug).
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(origin().elapsed().as_millis() as u64 + 1)
    }

    fn allow_at(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.every_ms {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // One thread wins the slot; the others count as held back.
        match self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => Some(self.held.swap(0, Ordering::Relaxed)),
            Err(_) => {
                self.held.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_interval_and_the_count_of_the_rest() {
        let t = Throttle::new(Duration::from_secs(1));
        assert_eq!(t.allow_at(1), Some(0));
        assert_eq!(t.allow_at(2), None);
        assert_eq!(t.allow_at(999), None);
        assert_eq!(t.allow_at(1001), Some(2));
        assert_eq!(t.allow_at(1500), None);
        assert_eq!(t.allow_at(2001), Some(1));
    }
}
