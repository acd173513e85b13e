//! `order-tracker`: a consumer-group member that prints each order, keeps statistics, raises
//! alerts, and sends what is not an order to the dead-letter topic.
//!
//! One file per job:
//! - [`group`]: group membership and offsets, with the at-least-once rules in its header;
//! - [`handling`]: the per-message work as plain code (decode, deduplicate, count, alert, and
//!   the verdict: track or dead-letter);
//! - [`dead_letter`]: writing a rejected message to the dead-letter topic;
//! - [`stats`]: statistics, alerts and the duplicate memory; [`metrics`]: `/metrics`;
//! - [`stopping`]: the shutdown budget (`SHUTDOWN_TIMEOUT_SECS`): a deadline per step, blocking
//!   calls on their own threads, and a watchdog that exits 0 when the budget is spent;
//! - this file: [`run`], which wires them to the Kafka clients, and the per-message glue that
//!   acts on each verdict.

pub mod config;
pub mod dead_letter;
pub mod group;
pub mod handling;
pub mod metrics;
pub mod stats;
pub mod stopping;
pub mod windows;

/// Orders built field by field for unit tests (the generator's are random).
#[cfg(test)]
pub(crate) mod test_orders {
    use chrono::{DateTime, Utc};
    use order_contract::{DeliveryAddress, Order, OrderItem};

    /// An order of `customer` at `created_at` in `currency`, with `(sku, quantity, unit price)`
    /// items, whose total is the sum of its lines.
    pub fn order(
        customer: &str,
        created_at: DateTime<Utc>,
        currency: &str,
        items: &[(&str, i64, i64)],
    ) -> Order {
        let items: Vec<OrderItem> = items
            .iter()
            .map(|(sku, quantity, price)| OrderItem {
                sku: (*sku).into(),
                name: format!("Item {sku}"),
                quantity: *quantity,
                unit_price_cents: *price,
            })
            .collect();
        Order {
            schema_version: 1,
            order_id: uuid::Uuid::new_v4(),
            customer_id: customer.into(),
            created_at,
            restaurant: Some("Chez Luigi".into()),
            delivery_address: Some(DeliveryAddress {
                street: "1 rue".into(),
                postal_code: "75001".into(),
                city: "Paris".into(),
            }),
            total_cents: items.iter().map(|i| i.quantity * i.unit_price_cents).sum(),
            items,
            currency: currency.into(),
        }
    }
}

use crate::config::{StartFrom, TrackerConfig};
use crate::dead_letter::{DeadLetterOutcome, DeadLetterWriter};
use crate::group::{StoredOffsets, TrackerContext};
use crate::handling::{MessageHandler, Source, Verdict};
use crate::metrics::TrackerMetrics;
use crate::stats::AlertRules;
use prometheus_client::registry::Registry;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use service_runtime::config::ConfigError;
use service_runtime::health::{HealthBindError, HealthServer, Readiness};
use service_runtime::kafka::QuietContext;
use service_runtime::launch::Outcome;
use service_runtime::shutdown::Shutdown;
use std::time::Duration;
use stopping::{Stopping, on_own_thread};
use tracing::{info, warn};

/// Why the tracker could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create the Kafka client: {0}")]
    Kafka(KafkaError),
    #[error("cannot read the orders topic: {0}")]
    Subscribe(KafkaError),
    #[error(transparent)]
    Health(#[from] HealthBindError),
}

/// What became of one message in the Kafka layer.
enum Handled {
    /// Fully handled: its offset may be stored.
    Done,
    /// Shutdown interrupted a dead-letter write: its offset must not be stored.
    Abandoned,
    /// A dead-letter write failed for its whole retry window: its offset must not be stored,
    /// and the tracker stops with a failure (exit 1) so that it is restarted.
    GaveUp,
}

/// The per-message glue: the handler's verdict, carried out with the Kafka clients.
struct Tracker {
    handler: MessageHandler,
    metrics: TrackerMetrics,
    dead_letters: DeadLetterWriter,
}

impl Tracker {
    async fn handle(&mut self, message: &BorrowedMessage<'_>, shutdown: &mut Shutdown) -> Handled {
        // Formatted only if a log line is written: at high rates the lines are turned down.
        let source = Source {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
        };
        let verdict = self.handler.handle(message.payload());
        verdict.report(source, &self.metrics);
        let Verdict::DeadLetter { reason } = verdict else {
            return Handled::Done;
        };
        match self.dead_letters.write(message, &reason, shutdown).await {
            DeadLetterOutcome::Written { partition, offset } => {
                self.handler.dead_lettered();
                self.metrics.dead_lettered(reason.code());
                info!(
                    event = "dead_lettered",
                    reason = reason.code(),
                    source = %source,
                    "dead-lettered {source} as {}/{partition}@{offset} ({})",
                    self.dead_letters.topic(),
                    reason.code()
                );
                Handled::Done
            }
            DeadLetterOutcome::Abandoned => Handled::Abandoned,
            DeadLetterOutcome::GaveUp => Handled::GaveUp,
        }
    }

    /// Logs the statistics summary, with its numbers as structured fields too.
    fn log_summary(&mut self, event: &'static str, what: &str) {
        let summary = self.handler.statistics().summary();
        info!(
            event,
            orders = summary.orders,
            duplicates = summary.duplicates,
            dead_lettered = summary.dead_lettered,
            "{what}: {summary}"
        );
    }
}

/// Runs the tracker until `shutdown` fires, then commits and leaves the group.
pub async fn run(config: TrackerConfig, mut shutdown: Shutdown) -> Result<Outcome, TrackerError> {
    let metrics = TrackerMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let readiness = Readiness::default();
    let health_task =
        HealthServer::start(config.health_port, readiness.clone(), registry, &shutdown).await?;

    let explain = |err: KafkaError| match config.kafka.explain(err) {
        Ok(config_error) => TrackerError::Config(config_error),
        Err(err) => TrackerError::Kafka(err),
    };
    let stored = StoredOffsets::default();
    let consumer: StreamConsumer<TrackerContext> = config
        .consumer
        .create_with_context(TrackerContext::new(
            config.start_from.clone(),
            readiness.clone(),
            metrics.clone(),
            stored.clone(),
        ))
        .map_err(explain)?;
    let dead_letter_producer: FutureProducer<QuietContext> = config
        .dead_letter_producer
        .create_with_context(QuietContext::default())
        .map_err(explain)?;

    let topic = config.common.orders_topic.clone();
    info!(
        event = "starting",
        kafka = %config.kafka.describe(),
        group = %config.group_id,
        topic = %topic,
        dead_letter_topic = %config.common.dead_letter_topic,
        start_from = ?config.start_from,
        "order-tracker starting"
    );
    let manual = matches!(config.start_from, StartFrom::Explicit(_));
    match &config.start_from {
        StartFrom::Explicit(pairs) => {
            let mut assignment = TopicPartitionList::new();
            for (partition, offset) in pairs {
                assignment
                    .add_partition_offset(&topic, *partition, Offset::Offset(*offset))
                    .map_err(TrackerError::Subscribe)?;
            }
            consumer
                .assign(&assignment)
                .map_err(TrackerError::Subscribe)?;
            info!(
                event = "partitions_assigned",
                manual = true,
                partitions = %group::describe_partitions(&assignment),
                "partitions assigned manually (START_FROM): {}",
                group::describe_partitions(&assignment)
            );
            metrics.assigned_partitions.set(pairs.len() as i64);
            readiness.set(true);
        }
        _ => consumer
            .subscribe(&[topic.as_str()])
            .map_err(TrackerError::Subscribe)?,
    }

    let mut tracker = Tracker {
        handler: MessageHandler::new(
            config.dedup_capacity,
            AlertRules::new(
                config.alert_order_total_cents,
                config.alert_burst_count,
                config.alert_burst_window,
            ),
            config.max_order_bytes,
        ),
        metrics,
        dead_letters: DeadLetterWriter::new(
            dead_letter_producer,
            config.common.dead_letter_topic.clone(),
            config.group_id.clone(),
        ),
    };
    // The shutdown budget runs from the signal, not from the end of the loop: the loop may be
    // held up (a revocation callback waiting on an unreachable broker) before it sees it.
    let budget = config.shutdown_timeout;
    let clock = tokio::spawn({
        let mut shutdown = shutdown.clone();
        async move {
            shutdown.requested().await;
            Stopping::begin(budget)
        }
    });
    let mut stats_tick = tokio::time::interval(config.stats_interval);
    stats_tick.tick().await;

    let mut outcome = Outcome::Completed;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.requested() => break,
            _ = stats_tick.tick() => tracker.log_summary("stats", "stats"),
            received = consumer.recv() => match received {
                Ok(message) => match tracker.handle(&message, &mut shutdown).await {
                    Handled::Done => group::store_handled(&consumer, &stored, &message),
                    Handled::Abandoned => break,
                    Handled::GaveUp => {
                        outcome = Outcome::PartlyFailed;
                        break;
                    }
                },
                Err(err) => {
                    warn!(event = "consumer_error", error = %err, "consumer error");
                    tokio::select! {
                        _ = shutdown.requested() => break,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            },
        }
    }

    // Stop taking messages (the loop above has ended), then the shutdown steps, each with a
    // deadline inside the budget; see `stopping`.
    let stopping = if shutdown.is_requested() {
        clock.await.unwrap_or_else(|_| Stopping::begin(budget))
    } else {
        // Stopping on its own (a dead-letter write gave up): the clock starts now.
        clock.abort();
        Stopping::begin(budget)
    };
    tracker.log_summary("final_stats", "stopping, no new orders taken; final stats");
    let limit = stopping.deadline_for(0.25, 0.75);
    let dead_letters = tracker.dead_letters;
    let flushed = on_own_thread("dead-letter-flush", limit, move || {
        let flushed = dead_letters.flush(limit);
        // Dropping the producer purges and waits too: off the runtime, like the flush.
        drop(dead_letters);
        flushed
    })
    .await;
    match flushed {
        Some(true) => stopping.completed("dead_letter_flush"),
        Some(false) => {} // logged by `flush` as dead_letter_flush_incomplete
        None => warn!(
            event = "dead_letter_flush_timed_out",
            timeout_ms = limit.as_millis() as u64,
            "dead-letter producer not flushed and closed within {} ms",
            limit.as_millis()
        ),
    }
    let offsets = group::describe_offsets(&topic, &stored);
    group::commit_leave_close(consumer, manual, offsets, &stopping).await;
    stopping.finish();
    health_task.abort();
    Ok(outcome)
}
