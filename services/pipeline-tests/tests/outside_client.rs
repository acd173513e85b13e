//! The contract as another team meets it: a client the project did not write (Python's
//! `confluent-kafka`, see `python/outside_client.py`) produces orders carrying exactly the
//! contract's required fields, and every kind of poison; and the same outside view checks the
//! producer's output against the JSON Schema with a validator the project did not write.

use order_contract::RejectKind;
use pipeline_tests::events::{counts, order_lines};
use pipeline_tests::python::{outside_client, python_dir};
use pipeline_tests::{Pipeline, read_topic, stop_gracefully};
use std::collections::BTreeSet;
use std::time::Duration;
use strum::IntoEnumIterator;

/// The tracker's size limit in this test, and the outside client's idea of "too large".
const MAX_ORDER_BYTES: usize = 4096;
const VALID_ORDERS: usize = 40;

/// One line of `outside_client.py produce`.
#[derive(Debug)]
struct Produced {
    kind: String,
    order_id: Option<String>,
    partition: i64,
    offset: i64,
}

fn produce_from_outside(pipeline: &Pipeline) -> Vec<Produced> {
    let output = outside_client(&[
        "produce",
        "--bootstrap",
        &pipeline.bootstrap(),
        "--topic",
        &pipeline.orders,
        "--valid",
        &VALID_ORDERS.to_string(),
        "--max-order-bytes",
        &MAX_ORDER_BYTES.to_string(),
    ]);
    assert!(
        output.status.success(),
        "outside client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let json: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            Produced {
                kind: json["kind"].as_str().expect("kind").to_string(),
                order_id: json["order_id"].as_str().map(str::to_string),
                partition: json["partition"].as_i64().expect("partition"),
                offset: json["offset"].as_i64().expect("offset"),
            }
        })
        .collect()
}

#[test]
fn an_outside_clients_minimal_orders_are_tracked_once_and_its_poison_dead_lettered() {
    let pipeline = Pipeline::new(3);
    let produced = produce_from_outside(&pipeline);
    let valid: Vec<&Produced> = produced.iter().filter(|p| p.kind == "valid").collect();
    let poison: Vec<&Produced> = produced.iter().filter(|p| p.kind != "valid").collect();
    assert_eq!(valid.len(), VALID_ORDERS);
    // The outside client covers every reason the contract has, no more and no fewer.
    let poison_kinds: BTreeSet<&str> = poison.iter().map(|p| p.kind.as_str()).collect();
    let contract_kinds: BTreeSet<&str> = RejectKind::iter().map(RejectKind::code).collect();
    assert_eq!(poison_kinds, contract_kinds);

    let mut tracker = pipeline
        .tracker("outside")
        .env("MAX_ORDER_BYTES", MAX_ORDER_BYTES)
        .spawn();
    // Every order line, duplicates included: "tracked once" must be able to fail.
    let all_tracked = tracker.wait_until(Duration::from_secs(60), |events| {
        order_lines(events).len() >= VALID_ORDERS
    });
    assert!(all_tracked, "{}", tracker.report());
    let dead_letters = read_topic(&pipeline.bootstrap(), &pipeline.dead_letters, poison.len());
    stop_gracefully(&mut tracker);

    let times_tracked = counts(&order_lines(&tracker.events()));
    for order in &valid {
        let order_id = order.order_id.as_deref().expect("a valid order has an id");
        assert_eq!(
            times_tracked.get(order_id),
            Some(&1),
            "order {order_id} must be tracked exactly once\n{}",
            tracker.report()
        );
    }
    assert_eq!(
        times_tracked.len(),
        VALID_ORDERS,
        "only the valid orders are tracked"
    );

    // Each poison message is dead-lettered once, from where the client wrote it, with the
    // reason the contract gives for it; no valid order is among the dead letters.
    assert_eq!(dead_letters.len(), poison.len(), "{dead_letters:?}");
    let reasons_by_source: std::collections::HashMap<(String, String), String> = dead_letters
        .iter()
        .map(|record| {
            let source = (
                record.header("dlq.source.partition").expect("partition"),
                record.header("dlq.source.offset").expect("offset"),
            );
            (source, record.header("dlq.reason").expect("reason"))
        })
        .collect();
    for message in &poison {
        let source = (message.partition.to_string(), message.offset.to_string());
        assert_eq!(
            reasons_by_source.get(&source),
            Some(&message.kind),
            "the {} message at {source:?}",
            message.kind
        );
    }
}

#[test]
fn the_producers_orders_pass_an_outside_json_schema_validator() {
    let pipeline = Pipeline::new(3);
    let count = 50;
    pipeline.produce(count);
    let schema = python_dir().join("../../order-contract/schema/order.v1.schema.json");
    let output = outside_client(&[
        "validate",
        "--bootstrap",
        &pipeline.bootstrap(),
        "--topic",
        &pipeline.orders,
        "--count",
        &count.to_string(),
        "--schema",
        schema.to_str().expect("a UTF-8 path"),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the producer's orders break the schema: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("a JSON summary");
    assert_eq!(summary["validated"], count);
}
