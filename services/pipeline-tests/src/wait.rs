//! The one way the tests wait: [`eventually`]. Every "until this holds or time runs out" in the
//! harness and the tests goes through it, so the polling interval and the timeout rule live in
//! one place and no test hand-writes a loop with its own idea of a deadline.

use std::time::{Duration, Instant};

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(50);

/// Checks `condition` until it holds (true) or `timeout` has passed (false); it is always
/// checked at least once.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_that_becomes_true_is_seen_and_one_that_never_does_times_out() {
        let mut calls = 0;
        assert!(eventually(Duration::from_secs(5), || {
            calls += 1;
            calls == 3
        }));
        assert_eq!(calls, 3);
        let started = Instant::now();
        assert!(!eventually(Duration::from_millis(200), || false));
        assert!(started.elapsed() >= Duration::from_millis(200));
    }
}
