//! The windowed statistics on the wire: the record each window part becomes on the stats topic
//! (`WINDOW_STATS_TOPIC`, schema in `schema/order-stats.v1.schema.json`), the producer that
//! publishes them and counts their acknowledgements, and the reader behind
//! `order-tracker window-totals`, which turns the records back into whole-window totals.
//!
//! A record is one *part* of one window (see [`crate::windows`]): the orders of one partition in
//! one contiguous offset range. Its key, `group/window_start/partition/first_offset`, is what a
//! replay after a crash reproduces exactly, so a reader keeps the **last record per key** (as
//! compaction does) and sums the parts of each window. Money is per currency, never summed
//! across currencies.
//!
//! Acknowledgements are counted rather than awaited one by one, because the question a
//! checkpoint asks is "is everything sent so far acknowledged?" ([`StatsPublisher::wait_acked`]):
//! only then may an offset after those parts be committed.

use crate::metrics::TrackerMetrics;
use crate::windows::{ItemTotals, Part, PartEnd};
use chrono::{DateTime, Utc};
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use service_runtime::delivery::ServedProducer;
use service_runtime::kafka::{ClientSettings, ErrorLog};
use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The record format's version, `schema_version` in every record.
pub const RECORD_VERSION: u32 = 1;

/// One window part on the stats topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowRecord {
    pub schema_version: u32,
    /// The consumer group whose tracker counted it (`GROUP_ID`).
    pub group: String,
    /// The orders topic it counts.
    pub orders_topic: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub partition: i32,
    /// The offsets of the part's first and last order.
    pub first_offset: i64,
    pub last_offset: i64,
    /// Why the part ended: `window_closed` (the window's last part from this partition),
    /// `span_ended` (the window goes on in a later part), `handed_over` (the partition changed
    /// owner; the next owner counts the rest), or `quiet`: nothing arrived from the partition
    /// for a grace period, so the part ended there; the window goes on in a later part. A
    /// `closed_quiet` record counts no order (its offsets are empty: `first_offset` is where
    /// reading stopped): the partition stayed quiet past the window's end plus twice the grace
    /// period, and the record only carries the `closed_through` that closes the window.
    pub part_end: String,
    pub orders: u64,
    /// Revenue per currency, in cents.
    pub revenue_cents: BTreeMap<String, i64>,
    /// Quantity and revenue per currency of each item, by SKU.
    pub items: BTreeMap<String, ItemTotals>,
    /// Every window ending at or before this time was closed on this partition when the part
    /// was published (the partition's watermark minus the grace period); `null` before the
    /// partition had a watermark. A window is closed once each partition with a part of it has
    /// published a record with `closed_through` at or after its end.
    pub closed_through: Option<DateTime<Utc>>,
}

impl WindowRecord {
    pub fn of(part: &Part, end: PartEnd, group: &str, orders_topic: &str) -> WindowRecord {
        WindowRecord {
            schema_version: RECORD_VERSION,
            group: group.to_string(),
            orders_topic: orders_topic.to_string(),
            window_start: part.key.window_start,
            window_end: part.window_end,
            partition: part.key.partition,
            first_offset: part.key.first_offset,
            last_offset: part.last_offset,
            part_end: end.as_str().to_string(),
            orders: part.orders,
            revenue_cents: part.revenue_cents.clone(),
            items: part
                .items
                .iter()
                .map(|(sku, totals)| (sku.clone(), totals.clone()))
                .collect(),
            closed_through: part.closed_through,
        }
    }

    /// `group/window_start/partition/first_offset`: what a replay reproduces exactly.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.group,
            self.window_start
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            self.partition,
            self.first_offset
        )
    }
}

/// `2026-11-21T12:00:00Z..2026-11-21T12:01:00Z`
fn describe_window(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    format!(
        "{}..{}",
        start.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        end.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    )
}

/// `EUR 12.50, USD 3.00`
fn describe_money(cents: &BTreeMap<String, i64>) -> String {
    if cents.is_empty() {
        return "none".into();
    }
    cents
        .iter()
        .map(|(currency, cents)| {
            let sign = if *cents < 0 { "-" } else { "" };
            let cents = cents.unsigned_abs();
            format!("{currency} {sign}{}.{:02}", cents / 100, cents % 100)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sent and acknowledged counts of the stats producer; see the module header.
#[derive(Debug, Default)]
pub struct StatsAcks {
    counts: Mutex<AckCounts>,
    changed: Condvar,
    errors: ErrorLog,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct AckCounts {
    outstanding: u64,
    failed: u64,
}

/// What [`StatsPublisher::wait_acked`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    /// Every record sent so far is acknowledged.
    All,
    /// Some are still unanswered at the deadline.
    Pending(u64),
    /// The broker refused, or librdkafka gave up on, this many records: the parts they carry
    /// are not on the topic, and no offset after them may be committed.
    Failed(u64),
}

impl ClientContext for StatsAcks {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.error(&error, reason);
    }

    /// Statistics are not exported for this producer; rdkafka's default would parse them and
    /// log the whole structure at info every interval.
    fn stats_raw(&self, _statistics: &[u8]) {}
}

impl ProducerContext for StatsAcks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        counts.outstanding = counts.outstanding.saturating_sub(1);
        if let Err((err, _)) = result {
            counts.failed += 1;
            warn!(event = "window_part_failed", error = %err, "a window part was not written to the stats topic");
        }
        self.changed.notify_all();
    }
}

/// Publishes window parts to the stats topic.
pub struct StatsPublisher {
    producer: ServedProducer<StatsAcks>,
    topic: String,
    group: String,
    orders_topic: String,
}

impl std::fmt::Debug for StatsPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsPublisher")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl StatsPublisher {
    pub fn new(
        producer: ServedProducer<StatsAcks>,
        topic: String,
        group: String,
        orders_topic: String,
    ) -> Self {
        StatsPublisher {
            producer,
            topic,
            group,
            orders_topic,
        }
    }

    /// Sends each part (see [`StatsPublisher::publish`]) and counts it in `metrics`.
    pub fn publish_all(&self, parts: &[(Part, PartEnd)], metrics: &TrackerMetrics) {
        for (part, end) in parts {
            self.publish(part, *end);
            metrics.window_part(*end);
        }
    }

    /// Sends one part and logs it; its acknowledgement is counted in the background. A part
    /// that cannot even be queued counts as failed.
    pub fn publish(&self, part: &Part, end: PartEnd) {
        let record = WindowRecord::of(part, end, &self.group, &self.orders_topic);
        let key = record.key();
        let payload = match serde_json::to_vec(&record) {
            Ok(payload) => payload,
            Err(err) => {
                // Cannot happen with these types; counted as a failure all the same.
                self.count(|counts| counts.failed += 1);
                warn!(event = "window_part_failed", error = %err, "cannot encode a window part");
                return;
            }
        };
        self.count(|counts| counts.outstanding += 1);
        let mut attempts = 0;
        let mut outgoing = BaseRecord::to(&self.topic).key(&key).payload(&payload);
        loop {
            match self.producer.kafka().send(outgoing) {
                Ok(()) => break,
                // The queue is full of other parts: wait for room, briefly.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record))
                    if attempts < 100 =>
                {
                    attempts += 1;
                    outgoing = record;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((err, _)) => {
                    self.count(|counts| {
                        counts.outstanding -= 1;
                        counts.failed += 1;
                    });
                    warn!(event = "window_part_failed", error = %err, key = %key, "cannot queue a window part");
                    return;
                }
            }
        }
        if end == PartEnd::ClosedQuiet {
            info!(
                target: "order_tracker::windows",
                event = "window_closed_quiet",
                key = %key,
                window_start = %record.window_start,
                partition = record.partition,
                "window {} closed on partition {}: nothing arrived from it since offset {} \
                 (a record of no order says so)",
                describe_window(record.window_start, record.window_end),
                record.partition,
                record.last_offset
            );
            return;
        }
        info!(
            target: "order_tracker::windows",
            event = "window_part",
            key = %key,
            window_start = %record.window_start,
            partition = record.partition,
            part_end = end.as_str(),
            orders = record.orders,
            "window {} part of partition {} (offsets {}..={}, {}): {} orders, revenue {}",
            describe_window(record.window_start, record.window_end),
            record.partition,
            record.first_offset,
            record.last_offset,
            end.as_str(),
            record.orders,
            describe_money(&record.revenue_cents)
        );
    }

    fn count(&self, change: impl FnOnce(&mut AckCounts)) {
        let acks = self.producer.kafka().context();
        if let Ok(mut counts) = acks.counts.lock() {
            change(&mut counts);
        }
        acks.changed.notify_all();
    }

    /// Waits up to `limit` for every record sent so far to be acknowledged. Blocking: call it
    /// off the async runtime or where blocking is intended (the rebalance callback).
    pub fn wait_acked(&self, limit: Duration) -> Acked {
        let acks = self.producer.kafka().context();
        let deadline = Instant::now() + limit;
        let Ok(mut counts) = acks.counts.lock() else {
            return Acked::Failed(0);
        };
        loop {
            if counts.failed > 0 {
                return Acked::Failed(counts.failed);
            }
            if counts.outstanding == 0 {
                return Acked::All;
            }
            let now = Instant::now();
            if now >= deadline {
                return Acked::Pending(counts.outstanding);
            }
            counts = match acks.changed.wait_timeout(counts, deadline - now) {
                Ok((counts, _)) => counts,
                Err(_) => return Acked::Failed(0),
            };
        }
    }

    /// Without waiting: whether everything sent so far is acknowledged.
    pub fn acked_now(&self) -> Acked {
        self.wait_acked(Duration::ZERO)
    }

    /// Flushes what is queued, within `limit`. Blocking.
    pub fn flush(&self, limit: Duration) -> bool {
        service_runtime::kafka::flush_promptly(self.producer.kafka(), limit).is_ok()
    }
}

/// The totals of one whole window, summed over its parts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WindowTotals {
    pub group: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub orders: u64,
    pub revenue_cents: BTreeMap<String, i64>,
    pub items: BTreeMap<String, ItemTotals>,
    /// How many parts, from which partitions.
    pub parts: u64,
    pub partitions: Vec<i32>,
    /// Every partition with a part of this window has closed it (a record from that partition,
    /// of any window, says `closed_through` at or after this window's end): no more orders will
    /// count in it. Until then a later part may add orders.
    pub closed: bool,
}

/// Sums records into whole-window totals, keeping the last record per key (records in the
/// order they were read from one partition of the stats topic; one key always lands on one
/// partition). Records of another schema version are skipped and counted.
#[derive(Debug, Default)]
pub struct TotalsReader {
    latest: BTreeMap<String, WindowRecord>,
    pub unreadable: u64,
}

impl TotalsReader {
    /// Takes one record value in the order read.
    pub fn read(&mut self, payload: &[u8]) {
        match serde_json::from_slice::<WindowRecord>(payload) {
            Ok(record) if record.schema_version == RECORD_VERSION => {
                self.latest.insert(record.key(), record);
            }
            _ => self.unreadable += 1,
        }
    }

    /// The whole-window totals, by group then window start.
    pub fn totals(&self) -> Vec<WindowTotals> {
        let mut windows: BTreeMap<(String, DateTime<Utc>), WindowTotals> = BTreeMap::new();
        // How far each partition of each group has closed its windows, from any record.
        let mut closed_through: BTreeMap<(&str, i32), DateTime<Utc>> = BTreeMap::new();
        for record in self.latest.values() {
            if let Some(at) = record.closed_through {
                let known = closed_through
                    .entry((record.group.as_str(), record.partition))
                    .or_insert(at);
                *known = (*known).max(at);
            }
            if record.orders == 0 {
                continue; // `closed_quiet`: it only closes windows
            }
            let totals = windows
                .entry((record.group.clone(), record.window_start))
                .or_insert_with(|| WindowTotals {
                    group: record.group.clone(),
                    window_start: record.window_start,
                    window_end: record.window_end,
                    ..WindowTotals::default()
                });
            totals.orders += record.orders;
            totals.parts += 1;
            if !totals.partitions.contains(&record.partition) {
                totals.partitions.push(record.partition);
                totals.partitions.sort_unstable();
            }
            for (currency, cents) in &record.revenue_cents {
                *totals.revenue_cents.entry(currency.clone()).or_default() += cents;
            }
            for (sku, item) in &record.items {
                let sum = totals.items.entry(sku.clone()).or_default();
                sum.quantity += item.quantity;
                for (currency, cents) in &item.revenue_cents {
                    *sum.revenue_cents.entry(currency.clone()).or_default() += cents;
                }
            }
        }
        windows
            .into_values()
            .map(|mut totals| {
                totals.closed = totals.partitions.iter().all(|partition| {
                    closed_through
                        .get(&(totals.group.as_str(), *partition))
                        .is_some_and(|at| *at >= totals.window_end)
                });
                totals
            })
            .collect()
    }
}

impl std::fmt::Display for WindowTotals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let partitions: Vec<String> = self.partitions.iter().map(i32::to_string).collect();
        let open = if self.closed { "" } else { ", still open" };
        write!(
            f,
            "window {} group {}: {} orders, revenue {} ({} parts from partitions {}{open})",
            describe_window(self.window_start, self.window_end),
            self.group,
            self.orders,
            describe_money(&self.revenue_cents),
            self.parts,
            partitions.join(",")
        )
    }
}

/// Why the stats topic could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum ReadTotalsError {
    #[error("cannot create the Kafka client: {0}")]
    Kafka(#[from] KafkaError),
    #[error("stats topic {topic} not found (is WINDOW_STATS_TOPIC right, and did topic-init run?)")]
    NoTopic { topic: String },
    #[error(
        "stats topic {topic}: partitions {partitions:?} not read to their end within {limit:?}"
    )]
    TimedOut {
        topic: String,
        partitions: Vec<i32>,
        limit: Duration,
    },
}

/// Reads the whole stats topic, from the beginning of every partition to its current end, into
/// a [`TotalsReader`]. No consumer group is joined and nothing is committed.
pub fn read_stats_topic(
    consumer_settings: &ClientSettings,
    topic: &str,
    limit: Duration,
) -> Result<TotalsReader, ReadTotalsError> {
    let consumer: BaseConsumer = consumer_settings.create_with_context(Default::default())?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(ReadTotalsError::NoTopic {
            topic: topic.to_string(),
        });
    }
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        assignment.add_partition_offset(topic, *partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut reader = TotalsReader::default();
    let mut not_at_end: Vec<i32> = partitions;
    let deadline = Instant::now() + limit;
    while !not_at_end.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            return Err(ReadTotalsError::TimedOut {
                topic: topic.to_string(),
                partitions: not_at_end,
                limit,
            });
        }
        match consumer.poll(deadline - now) {
            None => {}
            Some(Ok(message)) => {
                if let Some(payload) = message.payload() {
                    reader.read(payload);
                }
            }
            // `enable.partition.eof`: this partition is read to its end.
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                not_at_end.retain(|p| *p != partition);
            }
            Some(Err(err)) => return Err(err.into()),
        }
    }
    Ok(reader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::windows::{PartitionWindows, WindowSettings};
    use chrono::Duration as TimeDelta;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("time")
    }

    fn part(partition: i32, first_offset: i64, orders: &[(&str, i64)]) -> Part {
        let settings = WindowSettings {
            length: TimeDelta::seconds(60),
            grace: TimeDelta::seconds(5),
            future_tolerance: TimeDelta::seconds(5),
            part_span: 1_000_000,
        };
        let mut windows = PartitionWindows::new(settings, partition);
        for (i, (currency, cents)) in orders.iter().enumerate() {
            let order =
                crate::test_orders::order("c", at(i as i64), currency, &[("PIZ", 1, *cents)]);
            let offset = first_offset + i as i64;
            windows.read(offset, at(i as i64));
            windows.add(offset, &order, at(i as i64));
        }
        windows.open_parts().next().expect("a part").clone()
    }

    #[test]
    fn a_record_carries_its_part_and_is_keyed_by_group_window_partition_and_first_offset() {
        let record = WindowRecord::of(
            &part(3, 40, &[("EUR", 1250), ("USD", 300)]),
            PartEnd::WindowClosed,
            "kitchen",
            "orders",
        );
        assert_eq!(record.key(), "kitchen/2027-01-15T08:00:00Z/3/40");
        let json = serde_json::to_value(&record).expect("json");
        assert_eq!(json["window_start"], "2027-01-15T08:00:00Z");
        assert_eq!(json["window_end"], "2027-01-15T08:01:00Z");
        assert_eq!(json["part_end"], "window_closed");
        assert_eq!(
            (json["first_offset"].as_i64(), json["last_offset"].as_i64()),
            (Some(40), Some(41))
        );
        assert_eq!(
            json["revenue_cents"],
            serde_json::json!({"EUR": 1250, "USD": 300})
        );
        assert_eq!(
            json["items"]["PIZ"],
            serde_json::json!({"quantity": 2, "revenue_cents": {"EUR": 1250, "USD": 300}})
        );
        let back: WindowRecord = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, record);
    }

    #[test]
    fn totals_keep_the_last_record_per_key_and_sum_the_parts_per_currency() {
        let encode = |part: &Part, end, closed_through: Option<i64>| {
            let part = Part {
                closed_through: closed_through.map(at),
                ..part.clone()
            };
            serde_json::to_vec(&WindowRecord::of(&part, end, "g", "orders")).expect("json")
        };
        let mut reader = TotalsReader::default();
        // A part published at a handover, then rewritten with more orders by a replay that
        // closed the window on partition 0 (its end is at(60)).
        reader.read(&encode(
            &part(0, 10, &[("EUR", 100)]),
            PartEnd::HandedOver,
            None,
        ));
        reader.read(&encode(
            &part(0, 10, &[("EUR", 100), ("EUR", 200)]),
            PartEnd::WindowClosed,
            Some(61),
        ));
        // Partition 1 went quiet before its watermark passed the window's end plus grace.
        reader.read(&encode(
            &part(1, 7, &[("USD", 50)]),
            PartEnd::Quiet,
            Some(-4),
        ));
        reader.read(b"{\"not\": \"a record\"}");
        let totals = reader.totals();
        assert_eq!(totals.len(), 1);
        let window = &totals[0];
        assert_eq!((window.orders, window.parts, window.closed), (3, 2, false));
        assert_eq!(window.partitions, [0, 1]);
        assert_eq!(
            window.revenue_cents,
            BTreeMap::from([("EUR".into(), 300), ("USD".into(), 50)])
        );
        assert_eq!(window.items["PIZ"].quantity, 3);
        assert_eq!(reader.unreadable, 1);
        assert_eq!(
            window.to_string(),
            "window 2027-01-15T08:00:00Z..2027-01-15T08:01:00Z group g: 3 orders, revenue \
             EUR 3.00, USD 0.50 (2 parts from partitions 0,1, still open)"
        );
        // Partition 1 goes on in the next window, and a part of that one says the first is
        // closed there too: no part of the first window needs to say so itself.
        let mut next = part(1, 8, &[("USD", 70)]);
        next.key.window_start = at(60);
        next.window_end = at(120);
        reader.read(&encode(&next, PartEnd::Quiet, Some(62)));
        let totals = reader.totals();
        assert_eq!(totals.len(), 2);
        assert_eq!((totals[0].orders, totals[0].closed), (3, true));
        assert_eq!((totals[1].orders, totals[1].closed), (1, false));
        // Partition 1 stays quiet: a record of no order closes the second window there, and
        // is neither a part nor an order.
        let mut marker = next.clone();
        marker.key.first_offset = 9;
        marker.last_offset = 8;
        marker.orders = 0;
        marker.revenue_cents.clear();
        marker.items.clear();
        reader.read(&encode(&marker, PartEnd::ClosedQuiet, Some(120)));
        let totals = reader.totals();
        assert_eq!(totals.len(), 2);
        assert_eq!(
            (totals[1].orders, totals[1].parts, totals[1].closed),
            (1, 1, true)
        );
    }

    #[test]
    fn money_is_written_per_currency_with_cents() {
        let cents = BTreeMap::from([("EUR".into(), 123_456), ("USD".into(), -5)]);
        assert_eq!(describe_money(&cents), "EUR 1234.56, USD -0.05");
        assert_eq!(describe_money(&BTreeMap::new()), "none");
    }
}
