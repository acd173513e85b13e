//! SIGTERM ends the tracker with exit 0 within 10 s whatever the group coordinator is doing,
//! and the log says which shutdown steps completed and which did not.
//!
//! - while a JoinGroup is pending (a second tracker has just started; on tansu a join waits
//!   about half the session timeout) and while the first one is being rebalanced for it;
//! - with the broker gone (killed): nothing can be committed or left, and the log must not
//!   claim otherwise.
//!
//! The trackers run with the default group timeouts and shutdown budget, which are what the
//! bound is about.

use pipeline_tests::events::{named, order_lines};
use pipeline_tests::{Event, Pipeline, Service};
use std::time::{Duration, Instant};

/// Each shutdown step with the events that can report its outcome, the success first.
const STEPS: &[(&str, &[&str])] = &[
    (
        "final_commit",
        &[
            "final_commit",
            "final_commit_failed",
            "final_commit_timed_out",
        ],
    ),
    (
        "leave_group",
        &["left_group", "leave_group_failed", "leave_group_timed_out"],
    ),
    (
        "consumer_close",
        &["consumer_closed", "consumer_close_timed_out"],
    ),
];

/// The outcome event of each step; a step with none must be named as not completed by the
/// watchdog's `shutdown_budget_spent` (the process was ended while the step was running).
fn step_outcomes(tracker: &Service) -> Vec<(&'static str, String)> {
    let events = tracker.events();
    let spent: Option<&Event> = named(&events, "shutdown_budget_spent").next();
    STEPS
        .iter()
        .map(|(step, outcomes)| {
            let logged: Vec<&str> = events
                .iter()
                .filter_map(Event::name)
                .filter(|name| outcomes.contains(name))
                .collect();
            let outcome = match (logged.as_slice(), spent) {
                ([one], _) => one.to_string(),
                ([], Some(spent)) => {
                    let pending = spent.field("not_completed").unwrap_or_default();
                    assert!(
                        pending.split(',').any(|p| p == *step),
                        "{step}: no outcome logged and not named as not completed\n{}",
                        tracker.report()
                    );
                    format!("not completed ({})", "shutdown_budget_spent")
                }
                (other, _) => panic!(
                    "{step}: expected exactly one outcome event, got {other:?}\n{}",
                    tracker.report()
                ),
            };
            (*step, outcome)
        })
        .collect()
}

/// SIGTERMs every tracker at once and requires each to exit 0 within 10 s of the signal.
fn terminate_all_within_ten_seconds(trackers: &mut [&mut Service]) -> Vec<Duration> {
    let signalled = Instant::now();
    for tracker in trackers.iter() {
        tracker.terminate();
    }
    trackers
        .iter_mut()
        .map(|tracker| {
            let left = Duration::from_secs(10).saturating_sub(signalled.elapsed());
            let status = tracker.wait_exit(left).unwrap_or_else(|| {
                panic!("still running 10 s after SIGTERM\n{}", tracker.report())
            });
            assert!(status.success(), "exit {status:?}\n{}", tracker.report());
            signalled
                .elapsed()
                .saturating_sub(Duration::from_millis(100))
        })
        .collect()
}

#[test]
fn sigterm_during_a_pending_join_and_a_rebalance_exits_0_within_10_s_saying_which_steps_completed()
{
    let pipeline = Pipeline::new(4);
    let mut first = pipeline
        .tracker_with_default_group_timeouts("joining")
        .spawn();
    assert!(
        first.wait_for_event("partitions_assigned", Duration::from_secs(60)),
        "{}",
        first.report()
    );
    pipeline.produce(40);
    assert!(
        first.wait_until(Duration::from_secs(30), |e| order_lines(e).len() >= 40),
        "{}",
        first.report()
    );
    let mut second = pipeline
        .tracker_with_default_group_timeouts("joining")
        .spawn();
    // Started and asked to join, not yet answered: its JoinGroup is pending, and the first
    // member is being asked to rejoin for it.
    assert!(second.wait_for_event("starting", Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        named(&second.events(), "partitions_assigned")
            .next()
            .is_none(),
        "the join was already answered: this run does not test a pending join\n{}",
        second.report()
    );

    let took = terminate_all_within_ten_seconds(&mut [&mut first, &mut second]);
    let (first_steps, second_steps) = (step_outcomes(&first), step_outcomes(&second));
    eprintln!("exits after {took:?}\nfirst: {first_steps:?}\nsecond (joining): {second_steps:?}");
    // The first member had tracked orders: its final commit either says it was done or says
    // it was not, under its own event (step_outcomes checked there is exactly one).
    assert!(first_steps[0].1.starts_with("final_commit"));
}

#[test]
fn sigterm_with_the_broker_gone_exits_0_within_10_s_and_claims_no_commit_it_could_not_make() {
    let pipeline = Pipeline::new(2);
    let mut tracker = pipeline
        .tracker_with_default_group_timeouts("orphaned")
        .spawn();
    assert!(
        tracker.wait_for_event("partitions_assigned", Duration::from_secs(60)),
        "{}",
        tracker.report()
    );
    // Orders keep arriving up to the moment the broker dies, so the tracker holds stored
    // offsets that no background commit has written yet.
    let mut producer = pipeline.producer().env("ORDERS_PER_SECOND", 100).spawn();
    assert!(
        tracker.wait_until(Duration::from_secs(30), |e| order_lines(e).len() >= 200),
        "{}",
        tracker.report()
    );
    let Pipeline { broker, .. } = pipeline;
    drop(broker); // SIGKILL: the broker is gone, its port closed
    producer.kill();
    std::thread::sleep(Duration::from_millis(300));

    let took = terminate_all_within_ten_seconds(&mut [&mut tracker]);
    let steps = step_outcomes(&tracker);
    let events = tracker.events();
    eprintln!(
        "exit after {took:?}: {steps:?}; watchdog ended the process: {}",
        named(&events, "shutdown_budget_spent").next().is_some()
    );
    // Orders were tracked after the last commit could have reached the broker (the last
    // background commit ran at most a second before the kill, at 100 orders/s), so a final
    // commit logged as done would be a lie.
    assert_ne!(
        steps[0].1,
        "final_commit",
        "final commit claimed with the broker gone\n{}",
        tracker.report()
    );
    // And the run as a whole is not reported clean.
    let finished = named(&events, "shutdown_finished").next();
    assert!(
        finished.is_none_or(|f| f.field("clean").as_deref() == Some("false")),
        "{}",
        tracker.report()
    );
}
