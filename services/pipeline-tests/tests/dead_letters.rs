//! Scenario 4: malformed messages land in the dead-letter topic with their reasons, and the
//! tracker goes on tracking the good orders around them. Every reason the contract knows
//! ([`RejectKind`]) is covered: the list of poison messages is built by an exhaustive `match`
//! over it, so a new reason does not compile here until it has a poison message.

use order_contract::RejectKind;
use pipeline_tests::events::{named, order_lines, the};
use pipeline_tests::{Pipeline, RawMessage, Record, produce_raw, read_topic, stop_gracefully};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use strum::IntoEnumIterator;

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

fn with(change: impl FnOnce(&mut serde_json::Value)) -> Option<Vec<u8>> {
    let mut order = good_order("00000000-0000-4000-8000-000000000000");
    change(&mut order);
    Some(order.to_string().into_bytes())
}

/// A message value rejected for `kind` (`None` is a tombstone).
fn poison_for(kind: RejectKind) -> Option<Vec<u8>> {
    match kind {
        RejectKind::Tombstone => None,
        RejectKind::Empty => Some(Vec::new()),
        RejectKind::TooLarge => with(|o| o["padding"] = "x".repeat(100 * 1024).into()),
        RejectKind::InvalidUtf8 => Some(b"{\"order\": \"\xff\xfe\"}".to_vec()),
        RejectKind::NotJson => Some(b"this is not an order".to_vec()),
        RejectKind::UnknownSchemaVersion => with(|o| o["schema_version"] = 99.into()),
        RejectKind::InvalidField => with(|o| {
            o.as_object_mut().expect("object").remove("customer_id");
        }),
        RejectKind::NoItems => with(|o| {
            o["items"] = serde_json::json!([]);
            o["total_cents"] = 0.into();
        }),
        RejectKind::NonPositiveQuantity => with(|o| {
            o["items"][0]["quantity"] = 0.into();
            o["total_cents"] = 0.into();
        }),
        RejectKind::NegativePrice => with(|o| {
            o["items"][0]["unit_price_cents"] = (-950).into();
            o["total_cents"] = (-1900).into();
        }),
        RejectKind::TotalMismatch => with(|o| o["total_cents"] = 1.into()),
    }
}

#[test]
fn poison_messages_are_dead_lettered_with_their_reasons_and_good_orders_still_flow() {
    // One partition, so that "around them" is a strict interleaving.
    let pipeline = Pipeline::new(1);
    // One message per reason the contract knows, and a second way to be an invalid field.
    let mut poison: Vec<(&str, Option<Vec<u8>>)> = RejectKind::iter()
        .map(|kind| (kind.code(), poison_for(kind)))
        .collect();
    poison.push((
        RejectKind::InvalidField.code(),
        with(|o| o["order_id"] = "not-a-uuid".into()),
    ));

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
        order_lines(events).len() >= good_ids.len()
            && named(events, "dead_lettered").count() >= poison.len()
    });
    assert!(done, "{}", tracker.report());
    stop_gracefully(&mut tracker);

    let tracked_ids: Vec<String> = order_lines(&tracker.events())
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
    let mut by_offset: HashMap<i64, &Record> = HashMap::new();
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
    // Every reason of the contract, exhaustively, is in the dead-letter topic.
    let every_reason: BTreeSet<&str> = RejectKind::iter().map(RejectKind::code).collect();
    assert_eq!(
        every_reason.len(),
        RejectKind::iter().count(),
        "each reason has its own code"
    );
    let dead_lettered_reasons: BTreeSet<String> =
        dead.iter().filter_map(|r| r.header("dlq.reason")).collect();
    assert_eq!(
        dead_lettered_reasons,
        every_reason.iter().map(|r| r.to_string()).collect(),
        "one dead letter for every reason the contract knows"
    );
    // ...and each was logged under the same reason.
    let logged: BTreeSet<String> = named(&tracker.events(), "dead_lettered")
        .filter_map(|e| e.field("reason"))
        .collect();
    assert_eq!(logged, dead_lettered_reasons);

    let events = tracker.events();
    assert_eq!(
        the(&events, "final_stats").number("dead_lettered"),
        Some(poison.len() as u64)
    );
}
