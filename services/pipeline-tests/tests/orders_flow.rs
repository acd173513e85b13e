//! Scenario 1: every produced order is tracked exactly once, every message on the wire
//! matches the published JSON Schema and is keyed by its customer.

use order_contract::ORDER_SCHEMA_JSON;
use pipeline_tests::events::{counts, named, order_lines, the};
use pipeline_tests::pipeline::wait_for_order_lines;
use pipeline_tests::{Pipeline, read_topic, stop_gracefully};
use std::collections::HashSet;
use std::time::Duration;

#[test]
fn every_produced_order_is_tracked_once_and_matches_the_schema() {
    let pipeline = Pipeline::new(6);
    let delivered = pipeline.produce(300);

    let mut tracker = pipeline.tracker("flow").spawn();
    assert!(
        wait_for_order_lines(&tracker, 300, Duration::from_secs(60)),
        "not every order was tracked\n{}",
        tracker.report()
    );
    // Give a late duplicate the chance to show up before judging.
    std::thread::sleep(Duration::from_secs(1));
    stop_gracefully(&mut tracker);
    let events = tracker.events();

    // Every order line counts, duplicates included: an order handled twice (tracked, then
    // recognised as a redelivery) is an order delivered twice, and fails here.
    let lines = order_lines(&events);
    let per_order = counts(&lines);
    assert!(
        per_order.values().all(|n| *n == 1),
        "an order was handled twice: {:?}",
        per_order
            .iter()
            .filter(|(_, n)| **n > 1)
            .take(5)
            .collect::<Vec<_>>()
    );
    let delivered_ids: HashSet<_> = delivered.iter().map(|d| d.order_id.clone()).collect();
    let tracked_ids: HashSet<_> = per_order.keys().cloned().collect();
    assert_eq!(tracked_ids, delivered_ids);
    assert!(lines.iter().all(|line| !line.duplicate));

    // Each order is one readable line: "2 x Pizza Pepperoni, ... for customer-42, 25.00 EUR [orders-…/3@1042]".
    for event in named(&events, "order_tracked") {
        let source = event.field("source").expect("source");
        let body = event
            .message
            .strip_suffix(&format!(" [{source}]"))
            .unwrap_or_else(|| panic!("source suffix: {}", event.message));
        assert!(body.contains(" x "), "{}", event.message);
        assert!(body.contains(" for customer-"), "{}", event.message);
        assert!(body.ends_with(" EUR"), "{}", event.message);
        assert!(source.starts_with(&pipeline.orders), "{}", event.message);
    }
    // The tracker's source positions are the producer's delivery positions.
    let delivered_at: HashSet<String> = delivered
        .iter()
        .map(|d| format!("{}/{}@{}", pipeline.orders, d.partition, d.offset))
        .collect();
    let tracked_at: HashSet<String> = lines.iter().map(|t| t.source.clone()).collect();
    assert_eq!(tracked_at, delivered_at);

    // The final statistics agree.
    let final_stats = the(&events, "final_stats");
    assert_eq!(
        final_stats.number("orders"),
        Some(300),
        "{:?}",
        final_stats.json
    );

    // On the wire: schema-valid JSON keyed by customer.
    let schema: serde_json::Value = serde_json::from_str(ORDER_SCHEMA_JSON).expect("schema");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let records = read_topic(&pipeline.bootstrap(), &pipeline.orders, 300);
    assert_eq!(records.len(), 300);
    let mut partitions_used = HashSet::new();
    for record in &records {
        let value: serde_json::Value =
            serde_json::from_slice(record.value.as_deref().expect("a value")).expect("JSON");
        if let Err(error) = validator.validate(&value) {
            panic!("message does not match the schema: {error}\n{value}");
        }
        let key = String::from_utf8(record.key.clone().expect("a key")).expect("UTF-8 key");
        assert_eq!(Some(key.as_str()), value["customer_id"].as_str());
        partitions_used.insert(record.partition);
    }
    assert!(partitions_used.len() > 1, "keys spread over partitions");
}

#[test]
fn one_customer_always_lands_on_one_partition() {
    let pipeline = Pipeline::new(6);
    pipeline.produce(300);
    let records = read_topic(&pipeline.bootstrap(), &pipeline.orders, 300);
    assert_eq!(records.len(), 300);
    let mut partition_of = std::collections::HashMap::new();
    for record in &records {
        let key = record.key.clone().expect("key");
        let previous = partition_of.insert(key.clone(), record.partition);
        assert!(
            previous.is_none_or(|p| p == record.partition),
            "customer {} on two partitions",
            String::from_utf8_lossy(&key)
        );
    }
}
