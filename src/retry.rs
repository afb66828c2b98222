//! Waiting between attempts. Every retry loop of the service takes its delays from
//! [`Backoff`] (backon's exponential backoff with jitter), never from doubling by hand, so
//! replicas that failed together do not retry in step.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Delays growing from `min` to at most `max`, with jitter; [`Backoff::reset`] after a
/// success starts again from `min`.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    delays: ExponentialBackoff,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            delays: build(min, max),
        }
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        // backon's jitter adds up to one more delay: the cap holds after it.
        self.delays.next().unwrap_or(self.max).min(self.max)
    }

    /// After a success: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.delays = build(self.min, self.max);
    }
}

fn build(min: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_reset() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        let mut b = Backoff::new(min, max);
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d >= min && *d <= max), "{delays:?}");
        assert!(delays[11] > delays[0] * 4, "grows: {delays:?}");
        assert!(
            delays[8..].iter().all(|d| *d >= max / 2),
            "near the cap: {delays:?}"
        );
        b.reset();
        assert!(b.next_delay() < min * 2, "starts over");
    }
}
