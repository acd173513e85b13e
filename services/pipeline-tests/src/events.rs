//! Reading the services' JSON logs as facts.
//!
//! Every lifecycle line the services write carries a stable `event` field
//! (`event="final_commit"`, `event="order_tracked"`, ...); the readers here select lines by that
//! field and take numbers and ids from structured fields, never from the human message, so a
//! reworded message cannot make a test pass or fail. The same readers serve the integration
//! tests (binaries started by [`crate::Service`]) and the compose checks (container logs).

use std::collections::{BTreeSet, HashMap};

/// One log event, from a JSON log line.
#[derive(Debug, Clone)]
pub struct Event {
    pub level: String,
    pub target: String,
    /// The human message: for reports only, tests do not assert on it.
    pub message: String,
    /// The whole JSON object, for structured fields like `order_id` and `partition`.
    pub json: serde_json::Value,
}

impl Event {
    /// The event of one JSON log line (`tracing-subscriber`'s flattened JSON format); `None`
    /// for a line that is not a JSON object.
    pub fn parse(line: &str) -> Option<Event> {
        let json: serde_json::Value = serde_json::from_str(line).ok()?;
        json.as_object()?;
        let text = |key: &str| {
            json.get(key)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        Some(Event {
            level: text("level"),
            target: text("target"),
            message: text("message"),
            json: json.clone(),
        })
    }

    /// A field as text (`order_id`, `reason`, …); numbers and booleans in their JSON form.
    pub fn field(&self, name: &str) -> Option<String> {
        match self.json.get(name)? {
            serde_json::Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        }
    }

    /// A whole-number field, also when it was logged as text.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.json.get(name)? {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(text) => text.parse().ok(),
            _ => None,
        }
    }

    /// A numeric field.
    pub fn number(&self, name: &str) -> Option<u64> {
        self.json.get(name)?.as_u64()
    }

    /// The `event` field: what happened, as a stable name.
    pub fn name(&self) -> Option<&str> {
        self.json.get("event")?.as_str()
    }

    /// When it was logged (the `timestamp` field every JSON line carries).
    pub fn at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let text = self.json.get("timestamp")?.as_str()?;
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|at| at.with_timezone(&chrono::Utc))
    }

    /// Whether this is the lifecycle event `name`.
    pub fn is(&self, name: &str) -> bool {
        self.name() == Some(name)
    }
}

/// Every event named `name`.
pub fn named<'a>(events: &'a [Event], name: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
    events.iter().filter(move |e| e.is(name))
}

/// The one event named `name`; panics if there is none.
pub fn the<'a>(events: &'a [Event], name: &str) -> &'a Event {
    events
        .iter()
        .find(|e| e.is(name))
        .unwrap_or_else(|| panic!("no event=\"{name}\" logged"))
}

/// One order as the producer reported its delivery (`event="order_delivered"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delivered {
    pub order_id: String,
    pub partition: i64,
    pub offset: i64,
}

/// The deliveries a producer logged.
pub fn deliveries(events: &[Event]) -> Vec<Delivered> {
    named(events, "order_delivered")
        .map(|e| Delivered {
            order_id: e.field("order_id").expect("order_id"),
            partition: e.json["partition"].as_i64().expect("partition"),
            offset: e.json["offset"].as_i64().expect("offset"),
        })
        .collect()
}

/// One order line a tracker printed: a new order (`event="order_tracked"`) or a recognised
/// redelivery (`event="duplicate_skipped"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub order_id: String,
    /// `topic/partition@offset` the message was read at.
    pub source: String,
    pub duplicate: bool,
}

impl OrderLine {
    /// `topic/partition` of [`OrderLine::source`].
    pub fn partition(&self) -> &str {
        self.source
            .rsplit_once('@')
            .map_or(self.source.as_str(), |(partition, _)| partition)
    }
}

/// Every order line a tracker printed, duplicates included, in log order: counting these is
/// counting every time an order was handled, so a redelivery cannot hide.
pub fn order_lines(events: &[Event]) -> Vec<OrderLine> {
    events
        .iter()
        .filter_map(|e| {
            let duplicate = match e.name()? {
                "order_tracked" => false,
                "duplicate_skipped" => true,
                _ => return None,
            };
            Some(OrderLine {
                order_id: e.field("order_id").expect("order_id"),
                source: e.field("source").expect("source"),
                duplicate,
            })
        })
        .collect()
}

/// The orders a tracker tracked as new (its first sightings).
pub fn tracked(events: &[Event]) -> Vec<OrderLine> {
    order_lines(events)
        .into_iter()
        .filter(|line| !line.duplicate)
        .collect()
}

/// The order ids of the redeliveries a tracker recognised.
pub fn duplicates(events: &[Event]) -> Vec<String> {
    order_lines(events)
        .into_iter()
        .filter(|line| line.duplicate)
        .map(|line| line.order_id)
        .collect()
}

/// How many lines name each order id.
pub fn counts(lines: &[OrderLine]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in lines {
        *counts.entry(line.order_id.clone()).or_insert(0) += 1;
    }
    counts
}

/// The partitions an assignment event lists in its `partitions` field (`orders-…[0,2,4]`;
/// `none` lists none).
fn listed_partitions(event: &Event) -> Vec<i32> {
    event
        .field("partitions")
        .and_then(|list| {
            list.split_once('[')
                .map(|(_, inner)| inner.trim_end_matches(']').to_string())
        })
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| p.trim().parse::<i32>().ok())
        .collect()
}

/// The partitions named in a tracker's `event="partitions_assigned"` events, from their
/// `partitions` field (`orders-…[0,2,4]`).
pub fn assigned_partitions(events: &[Event]) -> Vec<i32> {
    named(events, "partitions_assigned")
        .flat_map(listed_partitions)
        .collect()
}

/// The partitions a tracker holds after its events so far: each `partitions_assigned` adds
/// its list (assignments are incremental with the cooperative protocol), each
/// `partitions_revoked` or `partitions_lost` takes its list away.
pub fn held_partitions(events: &[Event]) -> BTreeSet<i32> {
    let mut held = BTreeSet::new();
    for event in events {
        match event.name() {
            Some("partitions_assigned") => held.extend(listed_partitions(event)),
            Some("partitions_revoked" | "partitions_lost") => {
                for partition in listed_partitions(event) {
                    held.remove(&partition);
                }
            }
            _ => {}
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_partitions_follow_incremental_assignments_revocations_and_losses() {
        let events: Vec<Event> = [
            r#"{"event":"partitions_assigned","partitions":"o[0,2]","message":"a"}"#,
            r#"{"event":"partitions_assigned","partitions":"none","message":"b"}"#,
            r#"{"event":"partitions_assigned","partitions":"o[5]","message":"c"}"#,
            r#"{"event":"partitions_revoked","partitions":"o[2]","message":"d"}"#,
            r#"{"event":"partitions_lost","partitions":"o[0]","message":"e"}"#,
            r#"{"event":"partitions_assigned","partitions":"o[3]","message":"f"}"#,
        ]
        .into_iter()
        .filter_map(Event::parse)
        .collect();
        assert_eq!(held_partitions(&events), BTreeSet::from([3, 5]));
        assert_eq!(held_partitions(&events[..3]), BTreeSet::from([0, 2, 5]));
    }

    #[test]
    fn order_lines_include_duplicates_and_come_from_fields() {
        let events: Vec<Event> = [
            r#"{"event":"order_tracked","order_id":"a","source":"o/1@5","message":"x"}"#,
            r#"{"event":"duplicate_skipped","order_id":"a","source":"o/1@5","message":"y"}"#,
            r#"{"event":"partitions_assigned","partitions":"o[0,2]","message":"z"}"#,
            "not json",
        ]
        .into_iter()
        .filter_map(Event::parse)
        .collect();
        let lines = order_lines(&events);
        assert_eq!(lines.len(), 2);
        assert_eq!(counts(&lines)["a"], 2);
        assert_eq!(tracked(&events).len(), 1);
        assert_eq!(duplicates(&events), vec!["a".to_string()]);
        assert_eq!(lines[0].partition(), "o/1");
        assert_eq!(assigned_partitions(&events), vec![0, 2]);
    }
}
