//! Scenarios 6 and 7: SIGTERM is a clean stop. The producer flushes what it logged as sent;
//! the tracker commits what it tracked, so its successor re-reads nothing.

mod common;

use common::{Pipeline, deliveries, stop_gracefully, tracked, wait_for_tracked};
use std::collections::HashSet;
use std::time::Duration;
use test_broker::read_topic;

#[test]
fn a_producer_stopped_mid_run_flushes_every_order_it_reported_as_sent() {
    let pipeline = Pipeline::new(3);
    // Endless, fast enough that orders are in flight when the signal lands.
    let mut producer = pipeline.producer().env("ORDERS_PER_SECOND", 500).spawn();
    assert!(
        producer.wait_until(Duration::from_secs(30), |e| deliveries(e).len() >= 200),
        "{}",
        producer.report()
    );
    stop_gracefully(&mut producer);

    let events = producer.events();
    let flushed = events
        .iter()
        .find(|e| e.message.starts_with("producer flushed"))
        .unwrap_or_else(|| panic!("no flush line\n{}", producer.report()));
    let delivered = deliveries(&events);
    assert_eq!(
        flushed.json["delivered"].as_u64(),
        Some(delivered.len() as u64)
    );
    assert_eq!(flushed.json["failed"].as_u64(), Some(0));
    assert_eq!(
        flushed.json["produced"].as_u64(),
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
        wait_for_tracked(&first, 120, Duration::from_secs(60)),
        "{}",
        first.report()
    );
    let started = std::time::Instant::now();
    stop_gracefully(&mut first);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        first
            .events()
            .iter()
            .any(|e| e.message.starts_with("final commit done")),
        "{}",
        first.report()
    );

    let more = pipeline.produce(30);
    let mut second = pipeline.tracker("handover").spawn();
    assert!(
        wait_for_tracked(&second, 30, Duration::from_secs(60)),
        "{}",
        second.report()
    );
    std::thread::sleep(Duration::from_secs(2));
    stop_gracefully(&mut second);
    let reread: HashSet<String> = tracked(&second.events())
        .into_iter()
        .map(|t| t.order_id)
        .collect();
    let expected: HashSet<String> = more.into_iter().map(|d| d.order_id).collect();
    assert_eq!(
        reread, expected,
        "the successor tracked exactly the new orders"
    );
}
