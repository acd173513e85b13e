//! Scenario 2: a tracker killed with SIGKILL mid-stream and started again loses no order.
//!
//! What a crash can and cannot do, and what this proves:
//! - Offsets are stored only after an order is tracked and committed every second, so the
//!   successor starts at the last commit: every order is tracked by the first run or the
//!   second, none is lost.
//! - The orders between the last commit and the kill are delivered again. Each is the same
//!   order at the same partition and offset, which is how the test recognises them as
//!   redeliveries; each process counts every order it sees once.
//! - Duplicates that reach a running tracker (a replay or a re-sent copy of an order it has
//!   already tracked) are recognised by `order_id`, reported, and not counted again.

use pipeline_tests::events::{counts, deliveries, duplicates, order_lines, the, tracked};
use pipeline_tests::{Pipeline, RawMessage, produce_raw, read_topic, stop_gracefully};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

#[test]
fn a_tracker_killed_mid_stream_and_restarted_loses_no_order_and_recognises_duplicates() {
    let pipeline = Pipeline::new(3);
    let total = 1200;
    let mut producer = pipeline
        .producer()
        .env("ORDER_COUNT", total)
        .env("ORDERS_PER_SECOND", 150)
        .spawn();

    let mut first = pipeline.tracker("crash").spawn();
    assert!(
        first.wait_until(Duration::from_secs(60), |e| tracked(e).len() >= 300),
        "{}",
        first.report()
    );
    // Four more seconds of live traffic: with the pipeline's 2 s windows and 1 s grace, windows
    // close and at least one checkpoint lands, and more orders are tracked after it, which the
    // successor will receive again.
    std::thread::sleep(Duration::from_secs(4));
    first.kill(); // SIGKILL: no final commit, no leaving the group
    let first_run = tracked(&first.events());
    assert!(
        first_run.len() < total,
        "killed mid-stream, not after the end"
    );

    let mut second = pipeline.tracker("crash").spawn();
    let status = producer
        .wait_exit(Duration::from_secs(60))
        .expect("producer ends");
    assert!(status.success(), "{}", producer.report());
    let delivered = deliveries(&producer.events());
    assert_eq!(delivered.len(), total);
    let delivered_ids: HashSet<String> = delivered.iter().map(|d| d.order_id.clone()).collect();

    let first_ids: HashSet<String> = first_run.iter().map(|t| t.order_id.clone()).collect();
    let everything_seen = second.wait_until(Duration::from_secs(90), |events| {
        let second_ids: HashSet<String> = tracked(events).into_iter().map(|t| t.order_id).collect();
        delivered_ids
            .iter()
            .all(|id| first_ids.contains(id) || second_ids.contains(id))
    });
    assert!(
        everything_seen,
        "an order was lost across the crash\n{}",
        second.report()
    );

    // Each process handled each order it saw once (every line, duplicates included).
    let second_run = order_lines(&second.events());
    assert!(
        counts(&order_lines(&first.events()))
            .values()
            .all(|n| *n == 1)
    );
    assert!(counts(&second_run).values().all(|n| *n == 1));
    // Orders seen by both runs are redeliveries of the very same messages.
    let first_at: HashMap<&str, &str> = first_run
        .iter()
        .map(|t| (t.order_id.as_str(), t.source.as_str()))
        .collect();
    let redelivered: Vec<_> = second_run
        .iter()
        .filter(|t| first_at.contains_key(t.order_id.as_str()))
        .collect();
    for order in &redelivered {
        assert_eq!(
            first_at[order.order_id.as_str()],
            order.source,
            "same message"
        );
    }
    // The replay is bounded by the checkpoints (a window and its grace), not the whole topic.
    assert!(
        redelivered.len() < first_run.len(),
        "the successor resumed from a commit, it did not start over ({} of {})",
        redelivered.len(),
        first_run.len()
    );

    // Copies of orders the running tracker has already tracked arrive again: recognised.
    let records = read_topic(&pipeline.bootstrap(), &pipeline.orders, total);
    let second_ids: HashSet<&str> = second_run.iter().map(|t| t.order_id.as_str()).collect();
    let copies: Vec<(Vec<u8>, Vec<u8>)> = records
        .iter()
        .filter_map(|r| {
            let value = r.value.clone()?;
            let json: serde_json::Value = serde_json::from_slice(&value).ok()?;
            let id = json["order_id"].as_str()?;
            second_ids
                .contains(id)
                .then(|| (r.key.clone().unwrap_or_default(), value))
        })
        .take(25)
        .collect();
    assert_eq!(copies.len(), 25);
    let borrowed: Vec<RawMessage<'_>> = copies
        .iter()
        .map(|(k, v)| (Some(k.as_slice()), Some(v.as_slice())))
        .collect();
    produce_raw(&pipeline.bootstrap(), &pipeline.orders, &borrowed);
    assert!(
        second.wait_until(Duration::from_secs(30), |e| duplicates(e).len() >= 25),
        "{}",
        second.report()
    );
    std::thread::sleep(Duration::from_secs(1));
    stop_gracefully(&mut second);
    let events = second.events();
    let recognised: HashSet<String> = duplicates(&events).into_iter().collect();
    let copied: HashSet<String> = copies
        .iter()
        .map(|(_, v)| {
            let json: serde_json::Value = serde_json::from_slice(v).expect("json");
            json["order_id"].as_str().expect("id").to_string()
        })
        .collect();
    assert_eq!(recognised, copied);
    let final_stats = the(&events, "final_stats");
    assert_eq!(final_stats.number("duplicates"), Some(25));
    assert_eq!(
        final_stats.number("orders"),
        Some(tracked(&events).len() as u64),
        "duplicates are not counted"
    );
    assert_eq!(
        tracked(&events).len(),
        second_run.len(),
        "no copy tracked as new"
    );
}
