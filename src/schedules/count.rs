//! Counting and locating ticks in a range (placeholder: walks with a step budget; the
//! bounded-cost version replaces it).

use chrono::{DateTime, Utc};

use super::spec::Window;

/// How many ticks a range holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickCount {
    pub count: u64,
    /// `false`: `count` is a lower bound.
    pub exact: bool,
    /// Cron steps spent.
    pub steps: usize,
}

/// Ticks `t` of `window` with `from <= t < to`.
pub fn count_ticks(
    window: &Window,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    budget: usize,
) -> TickCount {
    let mut count = 0u64;
    let mut steps = 0usize;
    for t in window.ticks_from(from) {
        steps += 1;
        if t >= to {
            return TickCount {
                count,
                exact: true,
                steps,
            };
        }
        count += 1;
        if steps >= budget {
            return TickCount {
                count,
                exact: false,
                steps,
            };
        }
    }
    TickCount {
        count,
        exact: true,
        steps,
    }
}

/// The latest `n` ticks in `[from, to)`, ascending.
pub fn last_ticks_before(
    window: &Window,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    n: usize,
) -> Vec<DateTime<Utc>> {
    let mut last = std::collections::VecDeque::with_capacity(n + 1);
    for t in window.ticks_from(from).take_while(|t| *t < to) {
        if last.len() == n {
            last.pop_front();
        }
        if n > 0 {
            last.push_back(t);
        }
    }
    last.into()
}
