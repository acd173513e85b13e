//! Stopping within a budget: SIGTERM ends the tracker with exit 0 within `SHUTDOWN_TIMEOUT_SECS`,
//! whatever the group coordinator is doing.
//!
//! The shutdown steps (flush dead letters, final commit, leave the group, close the consumer;
//! see [`crate::group`]) talk to a broker that may be rebalancing, holding a JoinGroup, or gone.
//! librdkafka's synchronous calls then block for up to its socket timeouts (60 s), and closing a
//! consumer (its `Drop`) polls until the group says goodbye, which can be never. So:
//!
//! - every step has a deadline inside one overall budget ([`Stopping::deadline_for`]); a step
//!   that misses it is logged as timed out under its own `event`, and the next one runs;
//! - the blocking calls run on threads of their own, never on the async runtime's workers, so a
//!   stuck call cannot stop the clock that times it out;
//! - a watchdog thread, armed when shutdown is asked for ([`Stopping::begin`], called by `run`
//!   as soon as the signal arrives, even if the run loop is busy), ends the process with
//!   exit 0 once the budget (plus [`Stopping::WATCHDOG_GRACE`]) is spent, after logging
//!   `event="shutdown_budget_spent"` with the steps that completed and those that did not. This
//!   holds even if the async side itself is stuck (a rebalance callback blocked inside
//!   librdkafka), and it is what turns "close blocks" into "exit without a clean close, said so".
//!
//! Exiting without a clean close loses nothing: what the next owner of a partition reads first is
//! decided by the last commit, and the final commit's own line says whether it happened.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{error, info};

/// The shutdown steps, in order, by the names the log uses.
pub const STEPS: &[&str] = &[
    "dead_letter_flush",
    "final_commit",
    "leave_group",
    "consumer_close",
];

/// How much of the budget a shutdown step may take: at most `of_budget` of the whole budget,
/// and never past the budget minus `reserve` of it, which is left for the steps after it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    pub of_budget: f64,
    pub reserve: f64,
}

/// Flushing the dead letters not yet acknowledged: a quarter, keeping three quarters for the
/// group.
pub const DEAD_LETTER_FLUSH: Share = Share {
    of_budget: 0.25,
    reserve: 0.75,
};

/// The final commit: up to three quarters, leaving a fifth for leaving and closing
/// (`group::commit_leave_close` says why it needs that much).
pub const FINAL_COMMIT: Share = Share {
    of_budget: 0.75,
    reserve: 0.2,
};

/// Leaving the group: up to half, leaving a tenth for closing. Closing takes what is left.
pub const LEAVE_GROUP: Share = Share {
    of_budget: 0.5,
    reserve: 0.1,
};

/// What a step with `share` may take of `budget` once `spent` of it is gone.
fn allowance(budget: Duration, spent: Duration, share: Share) -> Duration {
    let cap = budget.mul_f64(share.of_budget);
    let until_reserve = budget
        .saturating_sub(spent)
        .saturating_sub(budget.mul_f64(share.reserve));
    cap.min(until_reserve)
}

/// A shutdown in progress: its budget, the steps done, and the armed watchdog.
#[derive(Debug)]
pub struct Stopping {
    started: Instant,
    budget: Duration,
    completed: Arc<Mutex<Vec<&'static str>>>,
}

impl Stopping {
    /// How long after the budget the watchdog waits for the process to end by itself.
    pub const WATCHDOG_GRACE: Duration = Duration::from_millis(500);

    /// Starts the clock and arms the watchdog.
    pub fn begin(budget: Duration) -> Stopping {
        let started = Instant::now();
        let completed: Arc<Mutex<Vec<&'static str>>> = Arc::default();
        let seen = completed.clone();
        let limit = budget + Self::WATCHDOG_GRACE;
        // Never disarmed: after `run` returns, `main` still drops the runtime, which waits for
        // its worker threads; the process normally ends long before this thread wakes.
        let spawned = std::thread::Builder::new()
            .name("shutdown-watchdog".into())
            .spawn(move || {
                std::thread::sleep(limit.saturating_sub(started.elapsed()));
                let done = seen.lock().map(|steps| steps.clone()).unwrap_or_default();
                let pending: Vec<&str> = STEPS
                    .iter()
                    .copied()
                    .filter(|step| !done.contains(step))
                    .collect();
                error!(
                    event = "shutdown_budget_spent",
                    budget_secs = budget.as_secs(),
                    completed = %done.join(","),
                    not_completed = %pending.join(","),
                    "shutdown budget of {} s spent; exiting now without a clean close \
                     (completed: {}; not completed: {})",
                    budget.as_secs(),
                    if done.is_empty() { "none".into() } else { done.join(", ") },
                    if pending.is_empty() { "none".into() } else { pending.join(", ") },
                );
                std::process::exit(0);
            });
        if let Err(err) = spawned {
            error!(error = %err, "cannot start the shutdown watchdog");
        }
        info!(
            event = "shutdown_started",
            budget_secs = budget.as_secs(),
            "stopping: no new orders taken after the one in hand; {} s from now to commit, \
             leave the group and close",
            budget.as_secs()
        );
        Stopping {
            started,
            budget,
            completed,
        }
    }

    /// The time left in the budget.
    pub fn remaining(&self) -> Duration {
        self.budget.saturating_sub(self.started.elapsed())
    }

    /// How long a step may take now, by its [`Share`].
    pub fn deadline_for(&self, share: Share) -> Duration {
        allowance(self.budget, self.started.elapsed(), share)
    }

    /// Records that `step` (one of [`STEPS`]) completed, for the watchdog's report.
    pub fn completed(&self, step: &'static str) {
        if let Ok(mut steps) = self.completed.lock() {
            steps.push(step);
        }
    }

    /// Logs how the shutdown went; the watchdog stays armed until the process exits.
    pub fn finish(self) {
        let done = self
            .completed
            .lock()
            .map(|steps| steps.clone())
            .unwrap_or_default();
        let clean = STEPS.iter().all(|step| done.contains(step));
        info!(
            event = "shutdown_finished",
            elapsed_ms = self.started.elapsed().as_millis() as u64,
            clean,
            completed = %done.join(","),
            "shutdown steps over in {} ms ({})",
            self.started.elapsed().as_millis(),
            if clean { "all completed" } else { "some did not complete, see above" }
        );
    }
}

/// Runs `work` on a thread of its own and waits up to `timeout` for its result: `None` if it
/// did not finish in time (it goes on running, detached; the watchdog bounds the process).
pub async fn on_own_thread<T: Send + 'static>(
    name: &str,
    timeout: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = sender.send(work());
        });
    if spawned.is_err() {
        return None;
    }
    match tokio::time::timeout(timeout, receiver).await {
        Ok(Ok(result)) => Some(result),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_gets_its_share_but_never_eats_the_reserve_of_later_steps() {
        let stopping = Stopping {
            started: Instant::now(),
            budget: Duration::from_secs(8),
            completed: Arc::default(),
        };
        let share = |of_budget, reserve| Share { of_budget, reserve };
        let commit = stopping.deadline_for(share(0.25, 0.5));
        assert!(commit <= Duration::from_secs(2) && commit > Duration::from_millis(1900));
        let close = stopping.deadline_for(share(1.0, 0.0));
        assert!(close <= Duration::from_secs(8) && close > Duration::from_millis(7900));
        let squeezed = stopping.deadline_for(share(1.0, 0.99));
        assert!(squeezed <= Duration::from_millis(80));
    }

    /// The arithmetic of the real shares, chained in the order a shutdown runs them from the
    /// moment its clock starts, each step using all it is allowed: the steps together fit the
    /// budget, and each gets what the README states (the final commit 55% of the budget, or
    /// three quarters with nothing to flush; leaving and closing a tenth each). Closing's tenth
    /// also covers the leave's own 200 ms of slack and the statistics producer's close.
    #[test]
    fn the_steps_fit_the_budget_even_when_each_uses_all_it_may() {
        let budget = Duration::from_secs(7);
        let fraction = |taken: Duration| taken.as_secs_f64() / budget.as_secs_f64();
        let mut spent = Duration::ZERO;
        let mut taken = Vec::new();
        for share in [DEAD_LETTER_FLUSH, FINAL_COMMIT, LEAVE_GROUP] {
            let step = allowance(budget, spent, share);
            spent += step;
            taken.push(fraction(step));
        }
        let close = budget.saturating_sub(spent);
        taken.push(fraction(close));
        let close_enough = |got: f64, want: f64| (got - want).abs() < 1e-6;
        assert!(close_enough(taken[0], 0.25), "{taken:?}");
        assert!(close_enough(taken[1], 0.55), "{taken:?}");
        assert!(close_enough(taken[2], 0.1), "{taken:?}");
        assert!(close_enough(taken[3], 0.1), "{taken:?}");
        // With nothing to flush, the final commit gets its whole three quarters, and leaving
        // and closing still a tenth each.
        let commit = allowance(budget, Duration::ZERO, FINAL_COMMIT);
        let leave = allowance(budget, commit, LEAVE_GROUP);
        assert!(close_enough(fraction(commit), 0.75));
        assert!(close_enough(fraction(leave), 0.15));
        assert!(close_enough(fraction(budget - commit - leave), 0.1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_that_blocks_past_its_deadline_is_left_behind() {
        let started = Instant::now();
        let result = on_own_thread("stuck", Duration::from_millis(200), || {
            std::thread::sleep(Duration::from_secs(5));
            1
        })
        .await;
        assert_eq!(result, None);
        assert!(started.elapsed() < Duration::from_secs(1));
        let quick = on_own_thread("quick", Duration::from_secs(5), || 2).await;
        assert_eq!(quick, Some(2));
    }
}
