//! A budget for log lines that strangers can cause (a refused certificate, a refused
//! attach): each is worth a line, but one peer reconnecting as fast as it can must not
//! flood the log, where it would push the server's real errors past journald's rate
//! limit.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a budget lasts.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Lines of one kind allowed per [`WINDOW`].
pub const LINES_PER_WINDOW: u32 = 20;

/// Up to [`LINES_PER_WINDOW`] lines per [`WINDOW`]; the rest are counted, and the first
/// line of the next window says how many were left out.
#[derive(Debug, Default)]
pub struct LogBudget {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    window: Option<Instant>,
    logged: u32,
    quiet: u64,
}

impl LogBudget {
    /// Whether to log a line now: `Some(n)` with the `n` lines left out before it.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.window
            .is_none_or(|start| now.duration_since(start) >= WINDOW)
        {
            s.window = Some(now);
            s.logged = 0;
        }
        if s.logged < LINES_PER_WINDOW {
            s.logged += 1;
            Some(std::mem::take(&mut s.quiet))
        } else {
            s.quiet += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_its_lines_and_the_next_says_how_many_were_left_out() {
        let budget = LogBudget::default();
        let t0 = Instant::now();
        for _ in 0..LINES_PER_WINDOW {
            assert_eq!(budget.allow(t0), Some(0));
        }
        for i in 0..100 {
            assert_eq!(budget.allow(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(budget.allow(t0 + WINDOW), Some(100));
        assert_eq!(budget.allow(t0 + WINDOW), Some(0));
    }
}
