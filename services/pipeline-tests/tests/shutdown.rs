//! Scenarios 6 and 7: SIGTERM is a clean stop. The producer flushes what it logged as sent;
//! the tracker commits what it tracked, so its successor re-reads nothing.

use pipeline_tests::events::{deliveries, named, order_lines, the};
use pipeline_tests::pipeline::wait_for_order_lines;
use pipeline_tests::{Pipeline, read_topic, stop_gracefully};
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
    let mut second = pipeline.tracker("handover").spawn();
    assert!(
        wait_for_order_lines(&second, 30, Duration::from_secs(60)),
        "{}",
        second.report()
    );
    std::thread::sleep(Duration::from_secs(2));
    stop_gracefully(&mut second);
    // Every line, duplicates included: a re-read order shows up here either way.
    let reread: Vec<String> = order_lines(&second.events())
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
