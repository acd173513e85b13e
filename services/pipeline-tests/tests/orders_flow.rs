//! Scenario 1: every produced order is tracked exactly once, every message on the wire
//! matches the published JSON Schema and is keyed by its customer.

mod common;

use common::{Pipeline, counts, stop_gracefully, tracked, wait_for_tracked};
use order_contract::ORDER_SCHEMA_JSON;
use std::collections::HashSet;
use std::time::Duration;
use test_broker::read_topic;

#[test]
fn every_produced_order_is_tracked_once_and_matches_the_schema() {
    let pipeline = Pipeline::new(6);
    let delivered = pipeline.produce(300);

    let mut tracker = pipeline.tracker("flow").spawn();
    assert!(
        wait_for_tracked(&tracker, 300, Duration::from_secs(60)),
        "not every order was tracked\n{}",
        tracker.report()
    );
    // Give a late duplicate the chance to show up before judging.
    std::thread::sleep(Duration::from_secs(1));
    stop_gracefully(&mut tracker);

    let tracked = tracked(&tracker.events());
    let per_order = counts(&tracked);
    assert!(
        per_order.values().all(|n| *n == 1),
        "an order was counted twice"
    );
    let delivered_ids: HashSet<_> = delivered.iter().map(|d| d.order_id.clone()).collect();
    let tracked_ids: HashSet<_> = per_order.keys().cloned().collect();
    assert_eq!(tracked_ids, delivered_ids);

    // Each order is one readable line: "2 x Pizza Pepperoni, ... for customer-42, 25.00 EUR [orders-…/3@1042]".
    for order in &tracked {
        let (body, _) = order.line.rsplit_once(" [").expect("source suffix");
        assert!(body.contains(" x "), "{}", order.line);
        assert!(body.contains(" for customer-"), "{}", order.line);
        assert!(body.ends_with(" EUR"), "{}", order.line);
        assert!(order.source.starts_with(&pipeline.orders), "{}", order.line);
    }
    // The tracker's source positions are the producer's delivery positions.
    let delivered_at: HashSet<String> = delivered
        .iter()
        .map(|d| format!("{}/{}@{}", pipeline.orders, d.partition, d.offset))
        .collect();
    let tracked_at: HashSet<String> = tracked.iter().map(|t| t.source.clone()).collect();
    assert_eq!(tracked_at, delivered_at);

    // The final statistics agree.
    let final_stats = tracker
        .events()
        .into_iter()
        .find(|e| e.message.starts_with("stopping"))
        .expect("final statistics");
    assert_eq!(
        final_stats.json["orders"].as_u64(),
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
