//! `order-tracker`: a consumer-group member that prints each order, keeps statistics, raises
//! alerts, and sends what is not an order to the dead-letter topic.
//!
//! # At-least-once, stated once
//!
//! - librdkafka never stores an offset by itself (`enable.auto.offset.store=false`, fixed in
//!   `service_runtime::kafka`). The tracker stores a message's offset only after the message is
//!   fully handled: its order counted and printed, or its dead-letter copy acknowledged by the
//!   broker. The background auto-commit (every second) commits only stored offsets.
//! - So a committed offset never passes a message that was not handled. A crash replays at most
//!   the messages handled since the last commit; those are redeliveries, recognised by
//!   `order_id` in a bounded memory ([`stats::SeenOrders`]) when the same process sees them
//!   again, and never counted twice there.
//! - Rebalances happen only inside `recv()`, i.e. between messages, so the message in hand is
//!   always finished before a partition can be taken away. On revocation the stored offsets are
//!   committed synchronously before the partitions are released, so the next owner starts
//!   exactly after the last handled message. Lost partitions (session expired) are not
//!   committed: another member may already own them.
//! - On shutdown the tracker stops taking messages, commits synchronously ("final commit"),
//!   unsubscribes so that librdkafka revokes its partitions and sends LeaveGroup (the others
//!   rebalance at once instead of waiting for a session timeout), then closes the consumer.

pub mod config;
pub mod dead_letter;
pub mod stats;

use crate::config::{StartFrom, TrackerConfig};
use crate::dead_letter::{DeadLetterOutcome, DeadLetterWriter};
use crate::stats::{Alert, AlertRules, SeenOrders, Statistics};
use order_contract::{Money, Order};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use service_runtime::config::ConfigError;
use service_runtime::health::{HealthBindError, HealthServer, Readiness};
use service_runtime::kafka::{ErrorLog, QuietContext};
use service_runtime::launch::Outcome;
use service_runtime::shutdown::Shutdown;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{debug, error, info, warn};

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

type Labels = Vec<(&'static str, &'static str)>;

/// The tracker's metrics, exposed on `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct TrackerMetrics {
    pub tracked: Counter,
    pub revenue_cents: Counter,
    pub duplicates: Counter,
    pub dead_lettered: Family<Labels, Counter>,
    pub alerts: Family<Labels, Counter>,
    pub assigned_partitions: Gauge,
    pub rebalances: Counter,
}

impl TrackerMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "orders_tracked",
            "Distinct orders tracked",
            self.tracked.clone(),
        );
        registry.register(
            "revenue_cents",
            "Revenue of tracked orders, in cents",
            self.revenue_cents.clone(),
        );
        registry.register(
            "duplicates_recognised",
            "Redelivered orders recognised by order_id and not counted again",
            self.duplicates.clone(),
        );
        registry.register(
            "dead_lettered",
            "Messages written to the dead-letter topic, by reason",
            self.dead_lettered.clone(),
        );
        registry.register("alerts", "Alerts raised, by kind", self.alerts.clone());
        registry.register(
            "assigned_partitions",
            "Partitions currently assigned to this tracker",
            self.assigned_partitions.clone(),
        );
        registry.register("rebalances", "Rebalance events", self.rebalances.clone());
    }
}

/// Offsets this tracker stored, by partition: what a commit will write.
type StoredOffsets = Arc<Mutex<BTreeMap<i32, i64>>>;

/// Rebalance and commit handling; see the module header for why it is shaped so.
pub struct TrackerContext {
    start_from: StartFrom,
    first_assignment_done: AtomicBool,
    readiness: Readiness,
    metrics: TrackerMetrics,
    stored: StoredOffsets,
    errors: ErrorLog,
}

impl std::fmt::Debug for TrackerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerContext")
            .field("start_from", &self.start_from)
            .finish_non_exhaustive()
    }
}

/// `orders[0,2,4]`
fn describe_partitions(list: &TopicPartitionList) -> String {
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for element in list.elements() {
        by_topic
            .entry(element.topic().to_string())
            .or_default()
            .push(element.partition());
    }
    if by_topic.is_empty() {
        return "none".into();
    }
    by_topic
        .into_iter()
        .map(|(topic, mut partitions)| {
            partitions.sort_unstable();
            let list: Vec<String> = partitions.iter().map(i32::to_string).collect();
            format!("{topic}[{}]", list.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `orders/0@12 orders/3@40`
fn describe_offsets(topic: &str, stored: &BTreeMap<i32, i64>) -> String {
    if stored.is_empty() {
        return "none".into();
    }
    stored
        .iter()
        .map(|(partition, offset)| format!("{topic}/{partition}@{offset}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl ClientContext for TrackerContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.error(&error, reason);
    }
}

impl ConsumerContext for TrackerContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        self.metrics.rebalances.inc();
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let first = !self.first_assignment_done.swap(true, Ordering::SeqCst);
                let start = match (&self.start_from, first) {
                    (StartFrom::Earliest, true) => Some(Offset::Beginning),
                    (StartFrom::Latest, true) => Some(Offset::End),
                    _ => None,
                };
                if let Some(offset) = start
                    && let Err(err) = partitions.set_all_offsets(offset)
                {
                    warn!(error = %err, "cannot set the START_FROM offsets");
                }
                let result = if cooperative {
                    consumer.incremental_assign(partitions)
                } else {
                    consumer.assign(partitions)
                };
                match result {
                    Ok(()) => info!(
                        partitions = %describe_partitions(partitions),
                        "partitions assigned: {}",
                        describe_partitions(partitions)
                    ),
                    Err(err) => error!(error = %err, "cannot take the assigned partitions"),
                }
                self.metrics
                    .assigned_partitions
                    .set(consumer.assignment().map_or(0, |a| a.count() as i64));
                self.readiness.set(true);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                if lost {
                    warn!(
                        partitions = %describe_partitions(partitions),
                        "partitions lost (session expired); not committing, another member owns them"
                    );
                } else {
                    // Commit what was handled before letting the partitions go, so the next
                    // owner starts right after it.
                    if let Err(err) = commit_stored(consumer) {
                        warn!(error = %err, "commit on revocation failed");
                    }
                }
                let result = if cooperative {
                    consumer.incremental_unassign(partitions)
                } else {
                    consumer.unassign()
                };
                if let Err(err) = result {
                    error!(error = %err, "cannot release the revoked partitions");
                }
                if let Ok(mut stored) = self.stored.lock() {
                    for element in partitions.elements() {
                        stored.remove(&element.partition());
                    }
                }
                self.metrics
                    .assigned_partitions
                    .set(consumer.assignment().map_or(0, |a| a.count() as i64));
                info!(
                    partitions = %describe_partitions(partitions),
                    "partitions revoked: {}",
                    describe_partitions(partitions)
                );
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                warn!(error = %code, "rebalance failed; releasing all partitions");
                let _ = consumer.unassign();
                self.readiness.set(false);
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => debug!(partitions = %describe_partitions(offsets), "offsets committed"),
            // Nothing stored since the last commit: normal when idle.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => warn!(error = %err, "offset commit failed; will retry on the next commit"),
        }
    }
}

/// Commits the stored offsets synchronously; "nothing stored since the last commit" is success.
fn commit_stored<C: ConsumerContext>(consumer: &impl Consumer<C>) -> KafkaResult<()> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
        result => result,
    }
}

/// What became of one message.
enum Handled {
    /// Fully handled: its offset may be stored.
    Done,
    /// Shutdown interrupted a dead-letter write: its offset must not be stored.
    Abandoned,
}

/// The per-message work.
struct Tracker {
    statistics: Statistics,
    seen: SeenOrders,
    alerts: AlertRules,
    metrics: TrackerMetrics,
    dead_letters: DeadLetterWriter,
    dead_letter_topic: String,
    max_order_bytes: usize,
}

impl Tracker {
    async fn handle(&mut self, message: &BorrowedMessage<'_>, shutdown: &mut Shutdown) -> Handled {
        let source = format!(
            "{}/{}@{}",
            message.topic(),
            message.partition(),
            message.offset()
        );
        match Order::decode(message.payload(), self.max_order_bytes) {
            Ok(order) => {
                self.track(&order, &source);
                Handled::Done
            }
            Err(reason) => {
                warn!(
                    reason = reason.code(),
                    source = %source,
                    "not a valid order at {source}: {reason}; sending it to {}",
                    self.dead_letter_topic
                );
                match self.dead_letters.write(message, &reason, shutdown).await {
                    DeadLetterOutcome::Written { partition, offset } => {
                        self.statistics.dead_lettered += 1;
                        self.metrics
                            .dead_lettered
                            .get_or_create(&vec![("reason", reason.code())])
                            .inc();
                        info!(
                            reason = reason.code(),
                            source = %source,
                            "dead-lettered {source} as {}/{partition}@{offset} ({})",
                            self.dead_letter_topic,
                            reason.code()
                        );
                        Handled::Done
                    }
                    DeadLetterOutcome::Abandoned => Handled::Abandoned,
                }
            }
        }
    }

    fn track(&mut self, order: &Order, source: &str) {
        if !self.seen.first_sighting(order.order_id) {
            self.statistics.duplicates += 1;
            self.metrics.duplicates.inc();
            info!(
                target: "order_tracker::orders",
                order_id = %order.order_id,
                duplicate = true,
                "duplicate of order {} recognised and skipped [{source}]",
                order.order_id
            );
            return;
        }
        self.statistics.record(order);
        self.metrics.tracked.inc();
        self.metrics
            .revenue_cents
            .inc_by(order.total_cents.max(0) as u64);
        // The line a person reads in `docker compose logs`; its own target so that high rates
        // can turn it down: RUST_LOG=info,order_tracker::orders=warn
        info!(
            target: "order_tracker::orders",
            order_id = %order.order_id,
            "{} [{source}]",
            order.summary()
        );
        for alert in self.alerts.check(order) {
            self.metrics
                .alerts
                .get_or_create(&vec![("kind", alert.kind())])
                .inc();
            match alert {
                Alert::HighValue {
                    total_cents,
                    threshold_cents,
                } => warn!(
                    target: "order_tracker::alerts",
                    order_id = %order.order_id,
                    customer_id = %order.customer_id,
                    alert = "high-value",
                    "ALERT high-value order {} for {}: {} (threshold {})",
                    order.order_id,
                    order.customer_id,
                    Money::new(total_cents, &order.currency),
                    Money::new(threshold_cents, &order.currency)
                ),
                Alert::Burst {
                    orders_in_window,
                    threshold,
                    window,
                } => warn!(
                    target: "order_tracker::alerts",
                    customer_id = %order.customer_id,
                    alert = "burst",
                    "ALERT burst: {} placed {orders_in_window} orders within {} s (threshold {threshold})",
                    order.customer_id,
                    window.as_secs()
                ),
            }
        }
    }
}

/// Leaves the consumer group now, so that the remaining trackers rebalance at once instead of
/// waiting for this member's session to time out.
///
/// Unsubscribing makes librdkafka revoke the assignment (our rebalance callback commits and
/// releases it) and send LeaveGroup; the callbacks are served by polling, so the consumer is
/// polled until its assignment is empty. A message fetched meanwhile is not handled and its
/// offset not stored: the next owner reads it. Closing the consumer alone also leaves, but a
/// close that races an in-flight commit was seen to finish without sending LeaveGroup.
async fn leave_group(consumer: &StreamConsumer<TrackerContext>, manual: bool) {
    let result = if manual {
        consumer.unassign()
    } else {
        consumer.unsubscribe();
        Ok(())
    };
    if let Err(err) = result {
        warn!(error = %err, "cannot release the partitions");
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if consumer.assignment().map_or(true, |a| a.count() == 0) {
            break;
        }
        // Serves the revocation callback; any message that arrives is left unhandled.
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }
}

/// Logs the statistics summary, with its numbers as structured fields too.
fn log_summary(what: &str, statistics: &mut Statistics) {
    let summary = statistics.summary();
    info!(
        orders = summary.orders,
        duplicates = summary.duplicates,
        dead_lettered = summary.dead_lettered,
        "{what}: {summary}"
    );
}

/// Runs the tracker until `shutdown` fires, then commits and leaves the group.
pub async fn run(config: TrackerConfig, mut shutdown: Shutdown) -> Result<Outcome, TrackerError> {
    let metrics = TrackerMetrics::default();
    let mut registry = Registry::with_prefix("order_tracker");
    metrics.register(&mut registry);
    let readiness = Readiness::default();
    let health_task =
        HealthServer::start(config.health_port, readiness.clone(), registry, &shutdown).await?;

    let explain = |err: KafkaError| match config.kafka.explain(err) {
        Ok(config_error) => TrackerError::Config(config_error),
        Err(err) => TrackerError::Kafka(err),
    };
    let stored: StoredOffsets = Arc::default();
    let consumer: StreamConsumer<TrackerContext> = config
        .kafka
        .consumer(config::CONSUMER_CLIENT_ID, &config.group_id)?
        .create_with_context(TrackerContext {
            start_from: config.start_from.clone(),
            first_assignment_done: AtomicBool::new(false),
            readiness: readiness.clone(),
            metrics: metrics.clone(),
            stored: stored.clone(),
            errors: ErrorLog::default(),
        })
        .map_err(explain)?;
    let dead_letter_producer: FutureProducer<QuietContext> = config
        .kafka
        .producer(config::DEAD_LETTER_CLIENT_ID)?
        .create_with_context(QuietContext::default())
        .map_err(explain)?;

    let topic = config.common.orders_topic.clone();
    info!(
        kafka = %config.kafka.describe(),
        group = %config.group_id,
        topic = %topic,
        dead_letter_topic = %config.common.dead_letter_topic,
        start_from = ?config.start_from,
        "order-tracker starting"
    );
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
                partitions = %describe_partitions(&assignment),
                "partitions assigned manually (START_FROM): {}",
                describe_partitions(&assignment)
            );
            metrics.assigned_partitions.set(pairs.len() as i64);
            readiness.set(true);
        }
        _ => consumer
            .subscribe(&[topic.as_str()])
            .map_err(TrackerError::Subscribe)?,
    }

    let mut tracker = Tracker {
        statistics: Statistics::default(),
        seen: SeenOrders::new(config.dedup_capacity),
        alerts: AlertRules::new(
            config.alert_order_total_cents,
            config.alert_burst_count,
            config.alert_burst_window,
        ),
        metrics,
        dead_letters: DeadLetterWriter::new(
            dead_letter_producer,
            config.common.dead_letter_topic.clone(),
            config.group_id.clone(),
        ),
        dead_letter_topic: config.common.dead_letter_topic.clone(),
        max_order_bytes: config.max_order_bytes,
    };
    let mut stats_tick = tokio::time::interval(config.stats_interval);
    stats_tick.tick().await;

    loop {
        tokio::select! {
            biased;
            _ = shutdown.requested() => break,
            _ = stats_tick.tick() => log_summary("stats", &mut tracker.statistics),
            received = consumer.recv() => match received {
                Ok(message) => match tracker.handle(&message, &mut shutdown).await {
                    Handled::Done => {
                        match consumer.store_offset_from_message(&message) {
                            Ok(()) => {
                                if let Ok(mut stored) = stored.lock() {
                                    stored.insert(message.partition(), message.offset() + 1);
                                }
                            }
                            // The partition was taken away meanwhile; its next owner re-reads.
                            Err(err) => debug!(error = %err, "offset not stored"),
                        }
                    }
                    Handled::Abandoned => break,
                },
                Err(err) => {
                    warn!(error = %err, "consumer error");
                    tokio::select! {
                        _ = shutdown.requested() => break,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            },
        }
    }

    log_summary(
        "stopping, no new orders taken; final stats",
        &mut tracker.statistics,
    );
    let offsets = stored
        .lock()
        .map(|stored| describe_offsets(&topic, &stored))
        .unwrap_or_default();
    tracker.dead_letters.flush(Duration::from_secs(5));
    let committed = tokio::task::block_in_place(|| commit_stored(&consumer));
    leave_group(
        &consumer,
        matches!(config.start_from, StartFrom::Explicit(_)),
    )
    .await;
    // Dropping the consumer closes it; with the group already left this is quick. It runs on a
    // blocking thread because librdkafka's close waits.
    let closed = tokio::task::spawn_blocking(move || drop(consumer)).await;
    let committed = closed.map(|()| committed);
    match committed {
        Ok(Ok(())) => info!(offsets = %offsets, "final commit done: {offsets}; left the group"),
        Ok(Err(err)) => {
            warn!(error = %err, offsets = %offsets, "final commit failed; the next owner re-reads from the previous commit")
        }
        Err(err) => error!(error = %err, "the shutdown task failed"),
    }
    health_task.abort();
    Ok(Outcome::Completed)
}
