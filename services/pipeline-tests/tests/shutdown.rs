//! Scenarios 6 and 7: SIGTERM is a clean stop. The producer flushes what it logged as sent;
//! the tracker commits what it tracked, so its successor re-reads nothing, also when it is
//! stopped while its group rebalances for another member that has just left.

use pipeline_tests::events::{deliveries, held_partitions, named, order_lines, the};
use pipeline_tests::pipeline::wait_for_order_lines;
use pipeline_tests::{
    Delivered, Pipeline, Service, eventually, read_topic, stop_gracefully, stop_within_ten_seconds,
};
use std::collections::HashSet;
use std::time::Duration;

#[test]
fn a_producer_stopped_mid_run_flushes_every_order_it_reported_as_sent() {
    // Endless, fast enough that orders are in flight when the signal lands.
    stopped_mid_run_flushes_every_order_it_reported_as_sent(500);
}

/// Flat out, the generator serves its own delivery reports and hands them back to the
/// producer's report thread when it stops: the flush after SIGTERM must still see every one.
#[test]
fn a_producer_stopped_while_running_flat_out_flushes_every_order_it_reported_as_sent() {
    stopped_mid_run_flushes_every_order_it_reported_as_sent(0);
}

fn stopped_mid_run_flushes_every_order_it_reported_as_sent(orders_per_second: u32) {
    let pipeline = Pipeline::new(3);
    let mut producer = pipeline
        .producer()
        .env("ORDERS_PER_SECOND", orders_per_second)
        .spawn();
    assert!(
        producer.wait_until(Duration::from_secs(30), |e| deliveries(e).len() >= 200),
        "{}",
        producer.report()
    );
    stop_gracefully(&mut producer);

    let events = producer.events();
    assert!(
        named(&events, "producer_flush_timed_out").next().is_none(),
        "{}",
        producer.report()
    );
    let flushed = the(&events, "producer_flushed");
    let delivered = deliveries(&events);
    assert_eq!(flushed.number("delivered"), Some(delivered.len() as u64));
    assert_eq!(flushed.number("failed"), Some(0));
    assert_eq!(
        flushed.number("produced"),
        Some(delivered.len() as u64),
        "every order handed to the producer got its delivery report before exit"
    );

    let in_topic: HashSet<String> =
        read_topic(&pipeline.bootstrap(), &pipeline.orders, delivered.len())
            .into_iter()
            .map(|r| {
                let value: serde_json::Value =
                    serde_json::from_slice(&r.value.expect("value")).expect("json");
                value["order_id"].as_str().expect("id").to_string()
            })
            .collect();
    let logged: HashSet<String> = delivered.into_iter().map(|d| d.order_id).collect();
    assert_eq!(in_topic, logged);
}

#[test]
fn a_tracker_stopped_with_sigterm_commits_so_its_successor_rereads_nothing() {
    let pipeline = Pipeline::new(3);
    pipeline.produce(120);
    let mut first = pipeline.tracker("handover").spawn();
    assert!(
        wait_for_order_lines(&first, 120, Duration::from_secs(60)),
        "{}",
        first.report()
    );
    let started = std::time::Instant::now();
    stop_gracefully(&mut first);
    assert!(started.elapsed() < Duration::from_secs(10));
    let events = first.events();
    for step in ["final_commit", "left_group", "consumer_closed"] {
        assert!(
            named(&events, step).next().is_some(),
            "no event=\"{step}\"\n{}",
            first.report()
        );
    }

    let more = pipeline.produce(30);
    successor_handles_exactly(pipeline.tracker("handover").spawn(), more);
}

/// Lets `successor` (a fresh member of the group) read what was produced after its predecessors
/// stopped, then stops it and requires it to have handled exactly `more`, each once.
fn successor_handles_exactly(mut successor: Service, more: Vec<Delivered>) {
    assert!(
        wait_for_order_lines(&successor, more.len(), Duration::from_secs(60)),
        "{}",
        successor.report()
    );
    std::thread::sleep(Duration::from_secs(2));
    stop_gracefully(&mut successor);
    let reread: Vec<String> = order_lines(&successor.events())
        .into_iter()
        .map(|t| t.order_id)
        .collect();
    let expected: HashSet<String> = more.into_iter().map(|d| d.order_id).collect();
    assert_eq!(reread.len(), expected.len(), "{reread:?}");
    assert_eq!(
        reread.into_iter().collect::<HashSet<_>>(),
        expected,
        "the successor handled exactly the new orders"
    );
}

/// `docker compose down` stops a service's replicas at about the same time, not at once: the
/// first tracker's LeaveGroup starts a rebalance, the second hears of it at its next heartbeat
/// and sends its JoinGroup, and its final commit, sent after that on the same connection, is
/// answered only once the join is (on tansu a join waits half the session timeout: 5 s with the
/// default group timeouts). The final commit must wait for it within the shutdown budget, not
/// time out and leave the next owner to re-read.
#[test]
fn a_tracker_stopped_while_its_group_rebalances_for_a_member_that_left_still_makes_its_final_commit()
 {
    let pipeline = Pipeline::new(4);
    let mut first = pipeline
        .tracker_with_default_group_timeouts("leaving")
        .spawn();
    assert!(
        first.wait_for_event("partitions_assigned", Duration::from_secs(60)),
        "{}",
        first.report()
    );
    let mut second = pipeline
        .tracker_with_default_group_timeouts("leaving")
        .spawn();
    let both_hold_partitions = |first: &Service, second: &Service| {
        let (a, b) = (
            held_partitions(&first.events()),
            held_partitions(&second.events()),
        );
        !a.is_empty() && !b.is_empty() && a.is_disjoint(&b) && a.len() + b.len() == 4
    };
    assert!(
        eventually(Duration::from_secs(60), || both_hold_partitions(
            &first, &second
        )),
        "the group did not settle on two members\n{}\n{}",
        first.report(),
        second.report()
    );
    // Orders for both, so that each has something of its own to commit.
    let produced = pipeline.produce(80);
    let expected: HashSet<String> = produced.iter().map(|d| d.order_id.clone()).collect();
    let handled = |service: &Service| -> HashSet<String> {
        order_lines(&service.events())
            .into_iter()
            .map(|line| line.order_id)
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(60), || {
            let second_handled = handled(&second);
            !second_handled.is_empty()
                && handled(&first).union(&second_handled).count() == expected.len()
        }),
        "the two trackers did not handle the 80 orders between them\n{}\n{}",
        first.report(),
        second.report()
    );

    stop_gracefully(&mut first);
    // The second hears of the rebalance at its next heartbeat (1 s) and asks to rejoin; tansu
    // answers that join 5 s later.
    std::thread::sleep(Duration::from_millis(1500));
    let took = stop_within_ten_seconds(&mut second);
    let events = second.events();
    let final_commit = named(&events, "final_commit").next().unwrap_or_else(|| {
        panic!(
            "no final commit while the group rebalanced (stopped in {took:?})\n{}",
            second.report()
        )
    });
    let offsets = final_commit.field("offsets").unwrap_or_default();
    assert_ne!(offsets, "none", "{}", second.report());
    eprintln!("second tracker stopped in {took:?}, final commit at {offsets}");

    let more = pipeline.produce(30);
    let successor = pipeline
        .tracker_with_default_group_timeouts("leaving")
        .spawn();
    successor_handles_exactly(successor, more);
}
