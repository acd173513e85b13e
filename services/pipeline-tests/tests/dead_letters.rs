//! Scenario 4: malformed messages land in the dead-letter topic with their reasons, and the
//! tracker goes on tracking the good orders around them.

mod common;

use common::{Pipeline, stop_gracefully, tracked};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use test_broker::{RawMessage, produce_raw, read_topic};

/// (key, value) owned, before borrowing as [`RawMessage`]s.
type OwnedMessage = (Option<Vec<u8>>, Option<Vec<u8>>);

fn good_order(id: &str) -> serde_json::Value {
    serde_json::json!({
        "schema_version": 1,
        "order_id": id,
        "customer_id": "customer-7",
        "created_at": "2026-11-21T12:00:00Z",
        "restaurant": "Chez Luigi",
        "delivery_address": {"street": "1 rue de la Paix", "postal_code": "75002", "city": "Paris"},
        "items": [{"sku": "PIZ-MAR", "name": "Pizza Margherita", "quantity": 2, "unit_price_cents": 950}],
        "total_cents": 1900,
        "currency": "EUR"
    })
}

fn with(mut order: serde_json::Value, change: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    change(&mut order);
    order.to_string().into_bytes()
}

#[test]
fn poison_messages_are_dead_lettered_with_their_reasons_and_good_orders_still_flow() {
    // One partition, so that "around them" is a strict interleaving.
    let pipeline = Pipeline::new(1);
    let base = || good_order("00000000-0000-4000-8000-000000000000");
    let poison: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("tombstone", None),
        ("empty", Some(Vec::new())),
        ("invalid-utf8", Some(b"{\"order\": \"\xff\xfe\"}".to_vec())),
        ("not-json", Some(b"this is not an order".to_vec())),
        (
            "invalid-field",
            Some(with(base(), |o| {
                o.as_object_mut().expect("object").remove("customer_id");
            })),
        ),
        (
            "non-positive-quantity",
            Some(with(base(), |o| {
                o["items"][0]["quantity"] = 0.into();
                o["total_cents"] = 0.into();
            })),
        ),
        (
            "negative-price",
            Some(with(base(), |o| {
                o["items"][0]["unit_price_cents"] = (-950).into();
                o["total_cents"] = (-1900).into();
            })),
        ),
        (
            "total-mismatch",
            Some(with(base(), |o| o["total_cents"] = 1.into())),
        ),
        (
            "unknown-schema-version",
            Some(with(base(), |o| o["schema_version"] = 99.into())),
        ),
        (
            "too-large",
            Some({
                let mut big = base();
                big["padding"] = "x".repeat(100 * 1024).into();
                big.to_string().into_bytes()
            }),
        ),
        (
            "invalid-field",
            Some(with(base(), |o| o["order_id"] = "not-a-uuid".into())),
        ),
    ];

    // good, poison, good, poison, ..., good
    let mut messages: Vec<OwnedMessage> = Vec::new();
    let mut good_ids = Vec::new();
    for (index, (_, value)) in poison.iter().enumerate() {
        let id = format!("00000000-0000-4000-8000-{index:012}");
        messages.push((
            Some(b"customer-7".to_vec()),
            Some(good_order(&id).to_string().into_bytes()),
        ));
        good_ids.push(id);
        messages.push((Some(b"customer-7".to_vec()), value.clone()));
    }
    let last = "00000000-0000-4000-8000-999999999999".to_string();
    messages.push((
        Some(b"customer-7".to_vec()),
        Some(good_order(&last).to_string().into_bytes()),
    ));
    good_ids.push(last);
    let borrowed: Vec<RawMessage<'_>> = messages
        .iter()
        .map(|(k, v)| (k.as_deref(), v.as_deref()))
        .collect();
    produce_raw(&pipeline.bootstrap(), &pipeline.orders, &borrowed);

    let mut tracker = pipeline.tracker("poison").spawn();
    let done = tracker.wait_until(Duration::from_secs(60), |events| {
        tracked(events).len() >= good_ids.len()
            && events
                .iter()
                .filter(|e| e.message.starts_with("dead-lettered"))
                .count()
                >= poison.len()
    });
    assert!(done, "{}", tracker.report());
    stop_gracefully(&mut tracker);

    let tracked_ids: Vec<String> = tracked(&tracker.events())
        .into_iter()
        .map(|t| t.order_id)
        .collect();
    assert_eq!(tracked_ids, good_ids, "every good order, in order, once");

    let dead = read_topic(&pipeline.bootstrap(), &pipeline.dead_letters, poison.len());
    assert_eq!(
        dead.len(),
        poison.len(),
        "one dead letter per poison message"
    );
    let mut by_offset: HashMap<i64, &test_broker::Record> = HashMap::new();
    for record in &dead {
        assert_eq!(
            record.header("dlq.source.topic").as_deref(),
            Some(pipeline.orders.as_str())
        );
        assert_eq!(record.header("dlq.source.partition").as_deref(), Some("0"));
        assert_eq!(record.header("dlq.group").as_deref(), Some("poison"));
        assert!(record.header("dlq.detail").is_some_and(|d| !d.is_empty()));
        assert!(record.header("dlq.failed-at").is_some());
        assert_eq!(
            record.header("origin").as_deref(),
            Some("test"),
            "original headers kept"
        );
        assert_eq!(
            record.key.as_deref(),
            Some(&b"customer-7"[..]),
            "original key kept"
        );
        let offset: i64 = record
            .header("dlq.source.offset")
            .expect("offset")
            .parse()
            .expect("number");
        by_offset.insert(offset, record);
    }
    // Poison message i sits at offset 2i + 1, between good orders.
    for (index, (reason, value)) in poison.iter().enumerate() {
        let record = by_offset
            .get(&(2 * index as i64 + 1))
            .unwrap_or_else(|| panic!("no dead letter for {reason}"));
        assert_eq!(record.header("dlq.reason").as_deref(), Some(*reason));
        assert_eq!(&record.value, value, "original value kept for {reason}");
    }
    let kinds: HashSet<&str> = poison.iter().map(|(reason, _)| *reason).collect();
    assert!(
        kinds.len() >= 8,
        "at least eight kinds of malformed message"
    );

    let final_stats = tracker
        .events()
        .into_iter()
        .find(|e| e.message.starts_with("stopping"))
        .expect("final stats");
    assert_eq!(
        final_stats.json["dead_lettered"].as_u64(),
        Some(poison.len() as u64)
    );
}
