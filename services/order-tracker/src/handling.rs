//! The per-message work, as plain code with no Kafka in it: decode a message value, recognise
//! a redelivered order, count it, check the alerts, and say what the Kafka layer must do with
//! the message. The run loop calls [`MessageHandler::handle_order`] for every order it
//! receives, decoded by the fetcher with [`Order::decode`]; [`MessageHandler::handle`] is the
//! two together, which the benchmark and the unit tests call, so what they measure and prove is
//! what runs.
//!
//! The answer is a [`Verdict`]:
//! - [`Verdict::Track`]: a new order, counted in the statistics, with the alerts it raised;
//! - [`Verdict::Duplicate`]: an order whose `order_id` was seen recently (a redelivery), not
//!   counted again and raising no alert (its first sighting did);
//! - [`Verdict::DeadLetter`]: not a valid order; the Kafka layer writes it to the dead-letter
//!   topic with its reason and calls [`MessageHandler::dead_lettered`] once that write is
//!   acknowledged.
//!
//! [`Verdict::report`] writes the per-message log line (with a stable `event` field) and
//! updates the metrics; it is kept apart from `handle` so that the benchmark measures the work,
//! not the logging.

use crate::metrics::TrackerMetrics;
use crate::stats::{Alert, AlertRules, SeenOrders, Statistics};
use chrono::{DateTime, Utc};
use order_contract::{Money, Order, RejectReason};
use std::fmt;
use std::num::NonZeroUsize;
use tracing::{info, warn};

/// Decodes, deduplicates, counts and checks each message value.
#[derive(Debug)]
pub struct MessageHandler {
    statistics: Statistics,
    seen: SeenOrders,
    alerts: AlertRules,
    max_order_bytes: usize,
}

/// What the Kafka layer must do with one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A new order: counted; these alerts were raised by it.
    Track { order: Order, alerts: Vec<Alert> },
    /// A redelivery of an order already tracked: not counted again.
    Duplicate { order: Order },
    /// Not a valid order: dead-letter it with this reason.
    DeadLetter { reason: RejectReason },
}

impl MessageHandler {
    /// A handler remembering `dedup_capacity` recent order ids, refusing values over
    /// `max_order_bytes`, and raising alerts by `alerts`.
    pub fn new(dedup_capacity: NonZeroUsize, alerts: AlertRules, max_order_bytes: usize) -> Self {
        MessageHandler {
            statistics: Statistics::default(),
            seen: SeenOrders::new(dedup_capacity),
            alerts,
            max_order_bytes,
        }
    }

    /// Handles one message value (`None` for a tombstone): decodes it, then
    /// [`MessageHandler::handle_order`] if it is an order.
    pub fn handle(&mut self, payload: Option<&[u8]>) -> Verdict {
        match Order::decode(payload, self.max_order_bytes) {
            Ok(order) => self.handle_order(order),
            Err(reason) => Verdict::DeadLetter { reason },
        }
    }

    /// Handles one order already decoded by [`Order::decode`] (the tracker decodes on its
    /// fetcher thread, see [`crate::fetching`]): [`Verdict::Track`] or [`Verdict::Duplicate`].
    pub fn handle_order(&mut self, order: Order) -> Verdict {
        if !self.seen.first_sighting(order.order_id) {
            self.statistics.duplicates += 1;
            return Verdict::Duplicate { order };
        }
        self.statistics.record(&order);
        let alerts = self.alerts.check(&order);
        Verdict::Track { order, alerts }
    }

    /// Prepares for handling `upcoming` orders, in order ([`SeenOrders::warm_up`]).
    pub fn warm_up_for<'a>(&self, upcoming: impl Iterator<Item = &'a Order>) {
        self.seen.warm_up(upcoming.map(|order| order.order_id));
    }

    /// Counts one dead letter, once the broker has acknowledged it.
    pub fn dead_lettered(&mut self) {
        self.statistics.dead_lettered += 1;
    }

    /// The running statistics, for the periodic summary.
    pub fn statistics(&mut self) -> &mut Statistics {
        &mut self.statistics
    }
}

/// Where a message was read, shown as `topic/partition@offset`. A value, not a string: it is
/// formatted only when a log line that names it is actually written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

impl Verdict {
    /// Logs what became of the message read at `source` and counts it in `metrics`. Order
    /// lines have their own target, so that high rates can turn them down:
    /// `RUST_LOG=info,order_tracker::orders=warn`. Nothing is formatted for a line that is
    /// turned down (`tracing` evaluates a line's fields only when the line is enabled).
    /// `now` is when it was handled: the end of the order's latency.
    pub fn report(&self, source: Source<'_>, now: DateTime<Utc>, metrics: &TrackerMetrics) {
        match self {
            Verdict::Track { order, alerts } => {
                metrics.tracked.inc();
                // A created_at in the future (clock skew between hosts) counts as no delay.
                let age = now.signed_duration_since(order.created_at);
                metrics.order_latency(age.to_std().unwrap_or_default());
                metrics
                    .revenue_cents
                    .inc_by(order.total_cents.max(0) as u64);
                info!(
                    target: "order_tracker::orders",
                    event = "order_tracked",
                    order_id = %order.order_id,
                    source = %source,
                    "{} [{source}]",
                    order.summarised()
                );
                for alert in alerts {
                    metrics.alert(alert.kind());
                    report_alert(order, alert);
                }
            }
            Verdict::Duplicate { order } => {
                metrics.duplicates.inc();
                info!(
                    target: "order_tracker::orders",
                    event = "duplicate_skipped",
                    order_id = %order.order_id,
                    source = %source,
                    "duplicate of order {} recognised and skipped [{source}]",
                    order.order_id
                );
            }
            Verdict::DeadLetter { reason } => report_rejected(reason, source),
        }
    }
}

/// Logs that the message read at `source` is not a valid order and goes to the dead-letter
/// topic (a [`Verdict::DeadLetter`]'s report).
pub fn report_rejected(reason: &RejectReason, source: Source<'_>) {
    warn!(
        event = "rejected",
        reason = reason.code(),
        source = %source,
        "not a valid order at {source}: {reason}; sending it to the dead-letter topic"
    );
}

fn report_alert(order: &Order, alert: &Alert) {
    match alert {
        Alert::HighValue {
            total_cents,
            threshold_cents,
        } => warn!(
            target: "order_tracker::alerts",
            event = "alert",
            alert = alert.kind(),
            order_id = %order.order_id,
            customer_id = %order.customer_id,
            "ALERT high-value order {} for {}: {} (threshold {})",
            order.order_id,
            order.customer_id,
            Money::new(*total_cents, &order.currency),
            Money::new(*threshold_cents, &order.currency)
        ),
        Alert::Burst {
            orders_in_window,
            threshold,
            window,
        } => warn!(
            target: "order_tracker::alerts",
            event = "alert",
            alert = alert.kind(),
            customer_id = %order.customer_id,
            "ALERT burst: {} placed {orders_in_window} orders within {} s (threshold {threshold})",
            order.customer_id,
            window.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_contract::RejectKind;
    use order_contract::samples::OrderGenerator;
    use std::time::Duration;

    fn handler(high_value_cents: i64) -> MessageHandler {
        MessageHandler::new(
            NonZeroUsize::new(100).expect("100"),
            AlertRules::new(high_value_cents, 1000, Duration::from_secs(60)),
            64 * 1024,
        )
    }

    #[test]
    fn a_new_order_is_tracked_and_counted_once_and_its_redelivery_is_a_duplicate() {
        let mut handler = handler(i64::MAX);
        let order = OrderGenerator::seeded(10, 1).next_order();
        let json = order.to_json();
        assert_eq!(
            handler.handle(Some(&json)),
            Verdict::Track {
                order: order.clone(),
                alerts: vec![]
            }
        );
        assert_eq!(handler.handle(Some(&json)), Verdict::Duplicate { order });
        assert_eq!(handler.statistics().orders, 1);
        assert_eq!(handler.statistics().duplicates, 1);
    }

    #[test]
    fn a_redelivered_high_value_order_alerts_only_the_first_time() {
        let mut handler = handler(0);
        let json = OrderGenerator::seeded(10, 2).next_order().to_json();
        let Verdict::Track { alerts, .. } = handler.handle(Some(&json)) else {
            panic!("tracked")
        };
        assert_eq!(alerts.len(), 1);
        assert!(matches!(
            handler.handle(Some(&json)),
            Verdict::Duplicate { .. }
        ));
    }

    #[test]
    fn a_message_that_is_not_an_order_is_dead_lettered_with_its_reason_and_not_counted() {
        let mut handler = handler(i64::MAX);
        let verdict = handler.handle(Some(b"not json"));
        let Verdict::DeadLetter { reason } = verdict else {
            panic!("dead-lettered: {verdict:?}")
        };
        assert_eq!(RejectKind::from(&reason), RejectKind::NotJson);
        assert_eq!(
            handler.handle(None),
            Verdict::DeadLetter {
                reason: RejectReason::Tombstone
            }
        );
        assert_eq!(handler.statistics().orders, 0);
        assert_eq!(handler.statistics().dead_lettered, 0, "only once written");
        handler.dead_lettered();
        assert_eq!(handler.statistics().dead_lettered, 1);
    }
}
