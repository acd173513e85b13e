//! `order-tracker`: a consumer-group member that prints each order, keeps statistics, raises
//! alerts, and sends what is not an order to the dead-letter topic.
//!
//! One file per job:
//! - [`group`]: group membership and offsets, with the at-least-once rules in its header;
//! - [`fetching`]: the fetcher thread, which polls the consumer and decodes each message ahead
//!   of the run loop, and the rule that keeps rebalances between handled messages;
//! - [`handling`]: the per-message work as plain code (decode, deduplicate, count, alert, and
//!   the verdict: track or dead-letter);
//! - [`dead_letter`]: writing a rejected message to the dead-letter topic;
//! - [`stats`]: statistics, alerts and the duplicate memory; [`metrics`]: `/metrics`;
//! - [`windows`]: tumbling windows by order time, one partition at a time (pure arithmetic);
//!   [`checkpoints`]: the owned partitions' windows and where each may be committed;
//!   [`window_stats`]: the stats topic's records, their publisher, and the `window-totals`
//!   reader;
//! - [`stopping`]: the shutdown budget (`SHUTDOWN_TIMEOUT_SECS`): a deadline per step, blocking
//!   calls on their own threads, and a watchdog that exits 0 when the budget is spent;
//! - this file: [`run`], which wires them to the Kafka clients, and the per-message glue that
//!   acts on each verdict.

pub mod checkpoints;
pub mod config;
pub mod dead_letter;
pub mod fetching;
pub mod group;
pub mod handling;
pub mod metrics;
pub mod stats;
pub mod stopping;
pub mod window_stats;
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
                name: format!("Item {sku}").into(),
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

use crate::checkpoints::{Book, SharedBook};
use crate::config::{StartFrom, TrackerConfig};
use crate::dead_letter::{DeadLetterOutcome, DeadLetterWriter};
use crate::fetching::{Fetched, Pipeline, Rejected};
use crate::group::TrackerContext;
use crate::handling::{MessageHandler, Source, Verdict};
use crate::metrics::TrackerMetrics;
use crate::stats::AlertRules;
use crate::window_stats::{Acked, StatsAcks, StatsPublisher};
use crate::windows::Placement;
use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use prometheus_client::registry::Registry;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use service_runtime::config::ConfigError;
use service_runtime::delivery::{ReplyContext, ServedProducer};
use service_runtime::health::{HealthBindError, HealthServer, Readiness};
use service_runtime::launch::Outcome;
use service_runtime::shutdown::Shutdown;
use std::sync::Arc;
use std::time::Duration;
use stopping::{DEAD_LETTER_FLUSH, Stopping, on_own_thread};
use tracing::{error, info, warn};

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
    #[error("cannot start the fetcher thread: {0}")]
    Fetcher(std::io::Error),
    #[error("cannot start a producer's delivery-report thread: {0}")]
    ReportThread(std::io::Error),
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

/// How often the tracker checkpoints: publishes quiet partitions' open parts and, once every
/// part sent is acknowledged, commits (what the background auto-commit's one second used to be).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// How long a checkpoint that ended quiet partitions' parts may wait for their acknowledgements,
/// and then for its commit, while the loop handles no message. Together well under the shutdown
/// budget (7 s by default), so that a SIGTERM in the meantime still leaves time to hand over.
const QUIET_ACK_LIMIT: Duration = Duration::from_secs(2);
const QUIET_COMMIT_LIMIT: Duration = Duration::from_secs(2);

/// Where a handled message goes in the book.
#[derive(Debug, Clone, Copy)]
struct Counting {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
}

/// The per-message glue: the handler's verdict, carried out with the Kafka clients.
struct Tracker {
    /// The orders topic, for the log lines that name where a message was read.
    topic: String,
    handler: MessageHandler,
    metrics: TrackerMetrics,
    dead_letters: DeadLetterWriter,
    book: SharedBook,
    publisher: Arc<StatsPublisher>,
    pipeline: Arc<Pipeline>,
    /// The orders of the batch being handled, once handled: they go back to the fetcher, which
    /// decodes the next orders into their item lists and frees the rest ([`Pipeline::recycle`]
    /// says why).
    handled_orders: Vec<order_contract::Order>,
}

impl Tracker {
    /// Handles one fetched message of batch `batch`, handled at `now`: the clock is read once
    /// per batch (a batch takes well under a millisecond), and again after anything that may
    /// wait: a dead-letter write, or window parts published (the stats producer's queue may be
    /// full).
    async fn handle(
        &mut self,
        fetched: Fetched,
        batch: u64,
        now: &mut DateTime<Utc>,
        shutdown: &mut Shutdown,
    ) -> Handled {
        let Fetched {
            partition,
            offset,
            timestamp_ms,
            decoded,
        } = fetched;
        // Formatted only if a log line is written: at high rates the lines are turned down.
        let source = Source {
            topic: &self.topic,
            partition,
            offset,
        };
        let counted = Counting {
            partition,
            offset,
            timestamp_ms,
        };
        let Rejected { reason, message } = match decoded {
            Ok(order) => {
                let verdict = self.handler.handle_order(order);
                verdict.report(source, *now, &self.metrics);
                if let Verdict::Track { order, .. } | Verdict::Duplicate { order } = verdict {
                    // Every valid order counts in its window, a redelivery too: the duplicate
                    // memory is per process, the window parts must not depend on it.
                    self.count_in_window(counted, Some(&order), now);
                    self.handled_orders.push(order);
                }
                return Handled::Done;
            }
            Err(rejected) => rejected,
        };
        handling::report_rejected(&reason, source);
        match self.dead_letters.write(&message, &reason, shutdown).await {
            DeadLetterOutcome::Written {
                partition: written_partition,
                offset: written_offset,
            } => {
                self.handler.dead_lettered();
                self.metrics.dead_lettered(reason.code());
                info!(
                    event = "dead_lettered",
                    reason = reason.code(),
                    source = %source,
                    "dead-lettered {source} as {}/{written_partition}@{written_offset} ({})",
                    self.dead_letters.topic(),
                    reason.code()
                );
                *now = Utc::now();
                // A rebalance that gave up waiting for this write has let the partition go:
                // the next owner reads the message again (a second dead-letter copy at worst).
                if !self.pipeline.discarded(batch, partition) {
                    self.count_in_window(counted, None, now);
                }
                Handled::Done
            }
            DeadLetterOutcome::Abandoned => Handled::Abandoned,
            DeadLetterOutcome::GaveUp => Handled::GaveUp,
        }
    }

    /// Records the fully handled message `counted` (`order` if it is one) in the book: its
    /// window part, or a late order reported; parts that ended with it are published, and then
    /// `now` is read again (publishing may have waited for room in the stats producer's queue).
    fn count_in_window(
        &self,
        counted: Counting,
        order: Option<&order_contract::Order>,
        now: &mut DateTime<Utc>,
    ) {
        let Counting {
            partition,
            offset,
            timestamp_ms,
        } = counted;
        let message_time = timestamp_ms
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or(*now);
        let counted = match self.book.lock() {
            Ok(mut book) => book.handled(partition, offset, order, message_time, *now),
            Err(_) => return,
        };
        if let (
            Some(Placement::Late {
                window_start,
                behind,
            }),
            Some(order),
        ) = (counted.placement, order)
        {
            self.metrics.late_orders.inc();
            warn!(
                event = "late_order",
                order_id = %order.order_id,
                window_start = %window_start,
                partition,
                offset,
                "late order {} (created {}): its window starting {window_start} had closed {} s \
                 before; counted as late, in no window part",
                order.order_id,
                order.created_at,
                behind.num_milliseconds() as f64 / 1000.0
            );
        }
        if !counted.ended.is_empty() {
            self.publisher.publish_all(&counted.ended, &self.metrics);
            *now = Utc::now();
        }
    }

    /// Ends and publishes the open parts of quiet partitions and closes their windows (only if
    /// `caught_up`: no fetched message is waiting), then commits the checkpoints if every part
    /// sent is acknowledged; after a quiet end or close it waits for both (see [`windows`]:
    /// that commit should land before another message is handled). `false` if the tracker must
    /// stop: a part could not be written.
    async fn checkpoint(
        &self,
        consumer: &Arc<BaseConsumer<TrackerContext>>,
        caught_up: bool,
    ) -> bool {
        let quiet = match self.book.lock() {
            Ok(mut book) => book.tick(Utc::now(), caught_up),
            Err(_) => return false,
        };
        self.publisher.publish_all(&quiet, &self.metrics);
        let acked = if quiet.is_empty() {
            self.publisher.acked_now()
        } else {
            // Blocking, like a handover: no message is handled while this and the commit wait.
            self.publisher.wait_acked(QUIET_ACK_LIMIT)
        };
        match acked {
            Acked::All => {}
            Acked::Pending(_) if quiet.is_empty() => return true,
            Acked::Pending(pending) => {
                warn!(
                    event = "quiet_commit_delayed",
                    pending,
                    "window parts of quiet partitions not acknowledged within {} ms; the commit \
                     past them waits for a later checkpoint",
                    QUIET_ACK_LIMIT.as_millis()
                );
                return true;
            }
            Acked::Failed(failed) => {
                error!(
                    event = "window_parts_failed",
                    failed,
                    "{failed} window part(s) could not be written to the stats topic; stopping \
                     without committing past them, so that a restart rewrites them"
                );
                return false;
            }
        }
        let commits = {
            let Ok(mut book) = self.book.lock() else {
                return false;
            };
            let commits = match book.checkpoints() {
                Ok(commits) => commits,
                Err(err) => {
                    warn!(event = "commit_failed", error = %err, "cannot build the checkpoint");
                    return quiet.is_empty();
                }
            };
            if quiet.is_empty() {
                // Handed to librdkafka under the book's lock, so that a hand-over's commit
                // comes after it (see `group`'s header).
                group::commit_checkpoint(consumer, &commits);
                return true;
            }
            commits
        };
        // On a thread of its own: librdkafka's synchronous commit has no deadline of its own.
        let committing = consumer.clone();
        let book = self.book.clone();
        let outcome = on_own_thread(
            "quiet-commit",
            QUIET_COMMIT_LIMIT + Duration::from_millis(200),
            move || group::commit_synchronously(&*committing, &book, &commits, QUIET_COMMIT_LIMIT),
        )
        .await;
        match outcome {
            Some(Ok(())) => true,
            // A group in a rebalance refuses commits for seconds; stopping would only add
            // churn. The next checkpoints send it again (see the README's "Not covered").
            Some(Err(err)) => {
                warn!(
                    event = "quiet_commit_failed",
                    error = %err,
                    "cannot commit past the window parts of quiet partitions yet; a later \
                     checkpoint sends the commit again"
                );
                true
            }
            None => {
                warn!(
                    event = "quiet_commit_timed_out",
                    "the commit past the window parts of quiet partitions did not complete within \
                     {} ms; a later checkpoint sends it again if it failed",
                    QUIET_COMMIT_LIMIT.as_millis()
                );
                true
            }
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
    let topic = config.common.orders_topic.clone();
    let book = Book::new(topic.clone(), config.windows).shared();
    let stats_producer = ServedProducer::start(
        config
            .window_stats_producer
            .create_with_context(StatsAcks::default())
            .map_err(explain)?,
        "stats-reports",
    )
    .map_err(TrackerError::ReportThread)?;
    let publisher = Arc::new(StatsPublisher::new(
        stats_producer,
        config.window_stats_topic.clone(),
        config.group_id.clone(),
        topic.clone(),
    ));
    let (pipeline, mut batches) = Pipeline::new();
    let consumer: Arc<BaseConsumer<TrackerContext>> = config
        .consumer
        .create_with_context(TrackerContext::new(
            config.start_from.clone(),
            readiness.clone(),
            metrics.clone(),
            book.clone(),
            publisher.clone(),
            pipeline.clone(),
        ))
        .map(Arc::new)
        .map_err(explain)?;
    let dead_letter_producer = ServedProducer::start(
        config
            .dead_letter_producer
            .create_with_context(ReplyContext::default())
            .map_err(explain)?,
        "dlq-reports",
    )
    .map_err(TrackerError::ReportThread)?;

    info!(
        event = "starting",
        kafka = %config.kafka.describe(),
        group = %config.group_id,
        topic = %topic,
        dead_letter_topic = %config.common.dead_letter_topic,
        window_stats_topic = %config.window_stats_topic,
        window_secs = config.windows.length.num_seconds(),
        window_grace_secs = config.windows.grace.num_seconds(),
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
            if let Ok(mut book) = book.lock() {
                for (partition, _) in pairs {
                    book.take_over(*partition, None, Utc::now());
                }
            }
            consumer
                .assign(&assignment)
                .map_err(TrackerError::Subscribe)?;
            let partitions: Vec<i32> = pairs.iter().map(|(partition, _)| *partition).collect();
            pipeline.own(&partitions);
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

    pipeline
        .start(consumer.clone(), config.max_order_bytes)
        .map_err(TrackerError::Fetcher)?;

    let mut tracker = Tracker {
        topic: topic.clone(),
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
        book,
        publisher,
        pipeline: pipeline.clone(),
        handled_orders: Vec::with_capacity(fetching::BATCH),
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
    let mut checkpoint_tick = tokio::time::interval(CHECKPOINT_INTERVAL);
    checkpoint_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    checkpoint_tick.tick().await;

    let mut outcome = Outcome::Completed;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.requested() => break,
            _ = stats_tick.tick() => tracker.log_summary("stats", "stats"),
            // Before the checkpoint tick, so that it runs here only when no message is waiting,
            // and its quiet partitions are truly quiet (see `Tracker::checkpoint`).
            batch = batches.recv() => {
                let Some(batch) = batch else {
                    error!(event = "fetcher_stopped", "the fetcher thread stopped; stopping");
                    outcome = Outcome::PartlyFailed;
                    break;
                };
                // The fetched messages one after the other, without a trip through `select!`
                // each (a batch is well under a millisecond; the ticks wait that long).
                let mut now = Utc::now();
                let mut handled = Handled::Done;
                let mut messages = batch.messages;
                // Their duplicate lookups first, all together, so that their cache misses
                // overlap (`SeenOrders::warm_up`).
                tracker.handler.warm_up_for(
                    messages.iter().filter_map(|fetched| fetched.decoded.as_ref().ok()),
                );
                for fetched in messages.drain(..) {
                    if shutdown.is_requested() {
                        break; // unhandled, so not in the book: the next owner reads it
                    }
                    if pipeline.discarded(batch.number, fetched.partition) {
                        continue; // of a partition let go before it was handled
                    }
                    handled = tracker.handle(fetched, batch.number, &mut now, &mut shutdown).await;
                    if !matches!(handled, Handled::Done) {
                        break;
                    }
                }
                pipeline.settle(batch.number);
                pipeline.recycle(messages, &mut tracker.handled_orders);
                match handled {
                    Handled::Done => {}
                    Handled::Abandoned => break,
                    Handled::GaveUp => {
                        outcome = Outcome::PartlyFailed;
                        break;
                    }
                }
                // `recv` on a full channel never yields: give the runtime its turn now and
                // then, or tokio's cooperative budget runs out and keeps the timers from firing.
                tokio::task::consume_budget().await;
                // Under a steady flow a batch is always ready: the checkpoint is due here.
                if checkpoint_tick.tick().now_or_never().is_some()
                    && !tracker.checkpoint(&consumer, pipeline.caught_up()).await
                {
                    outcome = Outcome::PartlyFailed;
                    break;
                }
            }
            _ = checkpoint_tick.tick() => {
                if !tracker.checkpoint(&consumer, pipeline.caught_up()).await {
                    outcome = Outcome::PartlyFailed;
                    break;
                }
            }
        }
    }

    // Stop taking messages (the loop above has ended): the fetcher drops what it fetches from
    // now on. Then the shutdown steps, each with a deadline inside the budget; see `stopping`.
    pipeline.loop_stopped();
    drop(batches);
    let stopping = if shutdown.is_requested() {
        clock.await.unwrap_or_else(|_| Stopping::begin(budget))
    } else {
        // Stopping on its own (a dead-letter write gave up): the clock starts now.
        clock.abort();
        Stopping::begin(budget)
    };
    tracker.log_summary("final_stats", "stopping, no new orders taken; final stats");
    let limit = stopping.deadline_for(DEAD_LETTER_FLUSH);
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
    group::commit_leave_close(consumer, &pipeline, manual, &stopping).await;
    let publisher = tracker.publisher;
    let limit = stopping.remaining();
    // Only parts the final handover could not wait for are still queued; dropping the
    // producer waits too, so both run off the runtime.
    if on_own_thread("window-stats-close", limit, move || {
        publisher.flush(limit);
        drop(publisher);
    })
    .await
    .is_none()
    {
        warn!(
            event = "window_stats_close_timed_out",
            "window stats producer not closed within {} ms",
            limit.as_millis()
        );
    }
    stopping.finish();
    health_task.abort();
    Ok(outcome)
}

/// How long `window-totals` may take to read the stats topic to its end.
const WINDOW_TOTALS_LIMIT: Duration = Duration::from_secs(60);

/// `order-tracker window-totals [--json]`: reads the whole stats topic (`WINDOW_STATS_TOPIC`,
/// with the tracker's Kafka settings) and writes to `out` one line per window with its totals
/// summed over its parts, the last record per key (see [`window_stats`]); `--json` writes one
/// JSON object per window instead. Exit 0, 2 for bad arguments, 78 for a bad setting, 1 when
/// the topic cannot be read.
pub fn window_totals(
    args: &[String],
    vars: &[(String, String)],
    out: &mut impl std::io::Write,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    let json = match args {
        [] => false,
        [flag] if flag == "--json" => true,
        _ => {
            eprintln!(
                "order-tracker window-totals: unexpected arguments {args:?}\nusage: order-tracker window-totals [--json]"
            );
            return ExitCode::from(2);
        }
    };
    let config = match TrackerConfig::from_vars(vars) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("order-tracker window-totals: {err}");
            return ExitCode::from(service_runtime::config::EXIT_CONFIG);
        }
    };
    let reader = match window_stats::read_stats_topic(
        &config.window_totals_reader,
        &config.window_stats_topic,
        WINDOW_TOTALS_LIMIT,
    ) {
        Ok(reader) => reader,
        Err(err) => {
            eprintln!("order-tracker window-totals: {err}");
            return ExitCode::FAILURE;
        }
    };
    let totals = reader.totals();
    let mut written = Ok(());
    for window in &totals {
        if written.is_err() {
            break;
        }
        written = if json {
            serde_json::to_string(window)
                .map_err(std::io::Error::other)
                .and_then(|line| writeln!(out, "{line}"))
        } else {
            writeln!(out, "{window}")
        };
    }
    if !json && written.is_ok() {
        let skipped = if reader.unreadable > 0 {
            format!(
                "; {} record(s) of another format skipped",
                reader.unreadable
            )
        } else {
            String::new()
        };
        written = writeln!(
            out,
            "{} window(s) from {}{skipped}",
            totals.len(),
            config.window_stats_topic
        );
    }
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("order-tracker window-totals: cannot write the totals: {err}");
            ExitCode::FAILURE
        }
    }
}
