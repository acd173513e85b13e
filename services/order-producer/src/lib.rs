//! `order-producer`: generates orders at a steady rate, and takes orders posted over HTTP
//! ([`intake`], when `INTAKE_PORT` is set), and writes them to the orders topic, reporting every
//! delivery. Both share one idempotent producer.
//!
//! Delivery guarantees, in one place:
//! - The producer is idempotent with `acks=all` (fixed in `service_runtime::kafka`): librdkafka
//!   retries transient failures without duplicating or reordering, and an order counts as
//!   delivered only when every in-sync replica has it.
//! - Each order is keyed by its `customer_id`, so one customer's orders land on one partition in
//!   the order they were placed.
//! - Every send carries a [`DeliveryNote`]; librdkafka hands it back in exactly one delivery
//!   report, success or failure, and [`OrderDeliveryContext`] logs and counts it. So
//!   `delivered + failed` always reaches `produced` once the queue is drained.
//! - An order posted to the intake carries a reply channel in its [`DeliveryNote`]: the HTTP
//!   answer (201 with partition and offset) waits for that same delivery report.
//! - On shutdown the generator and the intake stop first (the intake answers the requests in
//!   hand), then the producer is flushed with a bounded
//!   timeout; whatever is still queued after it is purged, which reports it as failed. Nothing
//!   is dropped unreported, and the final line says how many were delivered and failed.
//!
//! The librdkafka producer runs on its own polling thread (`ThreadedProducer`), so delivery
//! reports never wait on the async runtime; the blocking `flush` runs on a blocking thread.

pub mod config;
pub mod intake;
mod intake_request;

use crate::config::ProducerConfig;
use crate::intake::{Intake, IntakeBindError};
use order_contract::samples::OrderGenerator;
use order_contract::{Money, Order, SCHEMA_VERSION, SCHEMA_VERSION_TEXT};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use rdkafka::statistics::Statistics;
use service_runtime::config::ConfigError;
use service_runtime::health::{HealthBindError, HealthServer, Readiness};
use service_runtime::kafka::{ErrorLog, flush_promptly};
use service_runtime::launch::Outcome;
use service_runtime::metrics::{LatencyHistogram, register_build_info};
use service_runtime::shutdown::Shutdown;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;
use tracing::{error, info, warn};

/// Why the producer could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create the Kafka producer: {0}")]
    Kafka(KafkaError),
    #[error(transparent)]
    Health(#[from] HealthBindError),
    #[error(transparent)]
    Intake(#[from] IntakeBindError),
}

/// Where the broker put a message: (partition, offset).
pub type Placement = (i32, i64);

/// Receives one message's delivery report, for a sender that waits for it (the HTTP intake).
pub type DeliveryReply = tokio::sync::oneshot::Sender<Result<Placement, KafkaError>>;

/// What travels with each message to its delivery report.
#[derive(Debug)]
pub struct DeliveryNote {
    /// When the order was handed to librdkafka: the start of its delivery latency.
    sent_at: Instant,
    order_id: uuid::Uuid,
    customer_id: order_contract::CompactString,
    item_count: i64,
    /// The order's total, formatted only if its delivery line is written.
    total_cents: i64,
    currency: order_contract::CompactString,
    /// Set for orders posted over HTTP: the report is also sent here.
    reply: Option<DeliveryReply>,
}

impl DeliveryNote {
    fn of(order: &Order) -> Box<Self> {
        Box::new(DeliveryNote {
            sent_at: Instant::now(),
            order_id: order.order_id,
            customer_id: order.customer_id.clone(),
            // Saturating: a posted order's quantities are checked, but their sum may be huge.
            item_count: order
                .items
                .iter()
                .fold(0i64, |sum, item| sum.saturating_add(item.quantity)),
            total_cents: order.total_cents,
            currency: order.currency.clone(),
            reply: None,
        })
    }

    fn with_reply(mut self: Box<Self>, reply: DeliveryReply) -> Box<Self> {
        self.reply = Some(reply);
        self
    }
}

/// The producer's metrics, exposed on `/metrics`; the counters also feed the summaries.
///
/// The HTTP intake's own metrics (answers by status, request duration) are in `intake`.
#[derive(Debug, Clone, Default)]
pub struct ProducerMetrics {
    pub produced: Counter,
    pub delivered: Counter,
    pub failed: Counter,
    /// From handing an order to librdkafka to its successful delivery report.
    pub delivery_latency: LatencyHistogram,
    /// librdkafka's `msg_cnt` statistic: messages in its queues, waiting to be sent or for
    /// their acknowledgement. Updated every `statistics.interval.ms`.
    pub queue_messages: Gauge,
}

impl ProducerMetrics {
    fn register(&self, registry: &mut Registry) {
        register_build_info(registry, env!("CARGO_PKG_VERSION"));
        registry.register(
            "delivery_latency_seconds",
            "Time from handing an order to the Kafka client to the broker's acknowledgement",
            self.delivery_latency.histogram(),
        );
        registry.register(
            "kafka_queue_messages",
            "Messages in the Kafka client's queues, not yet acknowledged (librdkafka msg_cnt)",
            self.queue_messages.clone(),
        );
        registry.register(
            "orders_produced",
            "Orders handed to the Kafka producer",
            self.produced.clone(),
        );
        registry.register(
            "orders_delivered",
            "Orders acknowledged by the broker",
            self.delivered.clone(),
        );
        registry.register(
            "orders_failed",
            "Orders that could not be delivered",
            self.failed.clone(),
        );
    }
}

/// Logs and counts every delivery report.
#[derive(Debug)]
pub struct OrderDeliveryContext {
    metrics: ProducerMetrics,
    errors: ErrorLog,
}

impl ClientContext for OrderDeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.error(&error, reason);
    }

    /// librdkafka's statistics, every `statistics.interval.ms`: the client's queue depth.
    fn stats(&self, statistics: Statistics) {
        self.metrics.queue_messages.set(statistics.msg_cnt as i64);
    }
}

impl ProducerContext for OrderDeliveryContext {
    type DeliveryOpaque = Box<DeliveryNote>;

    fn delivery(&self, result: &DeliveryResult<'_>, mut note: Box<DeliveryNote>) {
        if let Some(reply) = note.reply.take() {
            // The waiting request may have given up (timed out, or its client went away): the
            // report below is then the only record, which is what it is for anyway.
            let _ = reply.send(match result {
                Ok(message) => Ok((message.partition(), message.offset())),
                Err((err, _)) => Err(err.clone()),
            });
        }
        match result {
            Ok(message) => {
                self.metrics
                    .delivery_latency
                    .observe(note.sent_at.elapsed());
                self.metrics.delivered.inc();
                // Its own target so that high rates can turn these lines down alone:
                // RUST_LOG=info,order_producer::delivery=warn
                info!(
                    target: "order_producer::delivery",
                    event = "order_delivered",
                    order_id = %note.order_id,
                    customer_id = %note.customer_id,
                    partition = message.partition(),
                    offset = message.offset(),
                    "delivered order {} ({} items, {}) for {} to {}/{}@{}",
                    note.order_id,
                    note.item_count,
                    Money::new(note.total_cents, &note.currency),
                    note.customer_id,
                    message.topic(),
                    message.partition(),
                    message.offset(),
                );
            }
            Err((err, _)) => {
                self.metrics.failed.inc();
                error!(
                    target: "order_producer::delivery",
                    event = "order_not_delivered",
                    order_id = %note.order_id,
                    customer_id = %note.customer_id,
                    error = %err,
                    "order {} for {} was not delivered: {err}",
                    note.order_id,
                    note.customer_id,
                );
            }
        }
    }
}

/// Counts at the end of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    pub produced: u64,
    pub delivered: u64,
    pub failed: u64,
}

pub(crate) type OrderProducer = ThreadedProducer<OrderDeliveryContext>;

/// Runs the producer until `ORDER_COUNT` orders are sent or `shutdown` fires, then flushes.
///
/// Returns [`Outcome::PartlyFailed`] when a bounded run (`ORDER_COUNT`) had failed deliveries;
/// an endless run stopped by a signal completes normally and reports its failures in the log.
pub async fn run(config: ProducerConfig, shutdown: Shutdown) -> Result<Outcome, ProducerError> {
    let metrics = ProducerMetrics::default();
    let mut registry = Registry::with_prefix("order_producer");
    metrics.register(&mut registry);
    let readiness = Readiness::default();
    // Bound before anything else starts, so that a port in use stops the service at start.
    let intake = match config.intake_port {
        Some(port) => Some(Intake::bind(port, &mut registry).await?),
        None => None,
    };

    let health_task =
        HealthServer::start(config.health_port, readiness.clone(), registry, &shutdown).await?;

    info!(
        event = "starting",
        kafka = %config.kafka.describe(),
        topic = %config.common.orders_topic,
        rate = config.orders_per_second.map_or("unlimited".to_string(), |r| format!("{r}/s")),
        count = config.order_count.map_or("until stopped".to_string(), |n| n.to_string()),
        generator = if config.generate_orders { "on" } else { "off" },
        intake_port = config.intake_port.map_or("off".to_string(), |p| p.to_string()),
        "order-producer starting"
    );
    let producer: Arc<OrderProducer> = Arc::new(
        config
            .producer
            .create_with_context(OrderDeliveryContext {
                metrics: metrics.clone(),
                errors: ErrorLog::default(),
            })
            .map_err(|err| match config.kafka.explain(err) {
                Ok(config_error) => ProducerError::Config(config_error),
                Err(err) => ProducerError::Kafka(err),
            })?,
    );

    let readiness_task = tokio::spawn(watch_broker(
        producer.clone(),
        config.common.orders_topic.clone(),
        readiness,
        shutdown.clone(),
    ));
    let summary_task = tokio::spawn(log_throughput(
        metrics.clone(),
        config.stats_interval,
        shutdown.clone(),
    ));

    let intake = intake
        .map(|intake| intake.start(&config, producer.clone(), metrics.clone(), shutdown.clone()));
    if config.generate_orders {
        produce_orders(&config, &producer, &metrics, shutdown).await;
    }
    if let Some(intake) = intake {
        // After a bounded run (ORDER_COUNT) the intake stops now; otherwise it serves until
        // shutdown is requested, then answers the requests in hand.
        intake.finish(config.order_count.is_some()).await;
    }
    let summary = flush(producer, &metrics, config.flush_timeout).await;

    summary_task.abort();
    readiness_task.abort();
    health_task.abort();

    if config.order_count.is_some() && summary.failed > 0 {
        Ok(Outcome::PartlyFailed)
    } else {
        Ok(Outcome::Completed)
    }
}

/// The generation loop: one order per tick of the pacer until the count is reached or shutdown.
async fn produce_orders(
    config: &ProducerConfig,
    producer: &OrderProducer,
    metrics: &ProducerMetrics,
    mut shutdown: Shutdown,
) {
    let mut generator = OrderGenerator::new(config.customer_count);
    let topic = config.common.orders_topic.as_str();
    // Burst keeps the average rate exact when a tick is late (timer granularity is 1 ms, so
    // rates above 1000/s rely on it).
    let mut pacer = config.orders_per_second.map(|rate| {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
        interval
    });
    let mut sent: u64 = 0;
    // One buffer for every order's JSON: librdkafka copies the payload when it is sent.
    let mut payload = Vec::with_capacity(1024);
    loop {
        if config.order_count.is_some_and(|count| sent >= count) || shutdown.is_requested() {
            break;
        }
        match pacer.as_mut() {
            Some(interval) => {
                tokio::select! {
                    _ = shutdown.requested() => break,
                    _ = interval.tick() => {}
                }
            }
            // Flat out: still give other tasks (signals, health) a turn now and then.
            None if sent.is_multiple_of(256) => tokio::task::yield_now().await,
            None => {}
        }
        let order = generator.next_order();
        order.write_json(&mut payload);
        if enqueue(producer, topic, &order, &payload, metrics, &mut shutdown).await {
            sent += 1;
        }
    }
    info!(
        event = "generation_stopped",
        produced = sent,
        "stopped generating orders"
    );
}

/// Hands one order, written as `payload`, to librdkafka, waiting while its queue is full.
/// Returns whether it was queued; an order refused outright (e.g. too large for the broker) is
/// logged and counted as failed, and one not queued because of shutdown is simply never
/// produced.
async fn enqueue(
    producer: &OrderProducer,
    topic: &str,
    order: &Order,
    payload: &[u8],
    metrics: &ProducerMetrics,
    shutdown: &mut Shutdown,
) -> bool {
    loop {
        match producer.send(order_record(topic, order, payload, DeliveryNote::of(order))) {
            Ok(()) => {
                metrics.produced.inc();
                return true;
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                // Back-pressure: librdkafka's queue is full because the broker is slow or away.
                // Wait for deliveries to drain it, unless we are asked to stop.
                tokio::select! {
                    _ = shutdown.requested() => return false,
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
            Err((err, _)) => {
                metrics.produced.inc();
                metrics.failed.inc();
                error!(event = "order_not_queued", order_id = %order.order_id, error = %err, "order {} could not be queued: {err}", order.order_id);
                return true;
            }
        }
    }
}

/// The message for `order`, with `payload` as its value (the order's own JSON, or for a posted
/// order the posted JSON with its missing fields filled in): keyed by customer, with the
/// contract's headers.
fn order_record<'a>(
    topic: &'a str,
    order: &'a Order,
    payload: &'a [u8],
    note: Box<DeliveryNote>,
) -> BaseRecord<'a, str, [u8], Box<DeliveryNote>> {
    // Every order sent has been validated, so its version is this build's: no text to format.
    let version = if order.schema_version == SCHEMA_VERSION {
        Cow::Borrowed(SCHEMA_VERSION_TEXT)
    } else {
        Cow::Owned(order.schema_version.to_string())
    };
    let headers = OwnedHeaders::new_with_capacity(2)
        .insert(Header {
            key: "content-type",
            value: Some("application/json"),
        })
        .insert(Header {
            key: "schema-version",
            value: Some(version.as_ref()),
        });
    BaseRecord::with_opaque_to(topic, note)
        .key(order.key())
        .payload(payload)
        .headers(headers)
}

/// Flushes with a bounded timeout, purges what is left (each purged message gets a failed
/// delivery report), and logs the final counts.
async fn flush(
    producer: Arc<OrderProducer>,
    metrics: &ProducerMetrics,
    timeout: Duration,
) -> RunSummary {
    let started = Instant::now();
    let in_flight = producer.in_flight_count();
    info!(
        event = "flushing",
        in_flight,
        timeout_secs = timeout.as_secs(),
        "flushing the producer"
    );
    let drained = tokio::task::spawn_blocking(move || {
        let result = flush_promptly(&*producer, timeout);
        if result.is_err() {
            // Anything still queued will never be delivered now: purge it so that its delivery
            // report (as failed) is emitted rather than lost silently with the producer.
            producer.purge(PurgeConfig::default().queue().inflight());
            let _ = flush_promptly(&*producer, Duration::from_secs(1));
        }
        (result, producer.in_flight_count())
    })
    .await;
    let summary = RunSummary {
        produced: metrics.produced.get(),
        delivered: metrics.delivered.get(),
        failed: metrics.failed.get(),
    };
    match drained {
        Ok((Ok(()), _)) => info!(
            event = "producer_flushed",
            delivered = summary.delivered,
            failed = summary.failed,
            produced = summary.produced,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "producer flushed: {} delivered, {} failed",
            summary.delivered,
            summary.failed
        ),
        Ok((Err(err), left)) => warn!(
            event = "producer_flush_timed_out",
            delivered = summary.delivered,
            failed = summary.failed,
            produced = summary.produced,
            still_queued = left,
            error = %err,
            "producer flushed with timeout: {} delivered, {} failed (undelivered orders purged)",
            summary.delivered,
            summary.failed
        ),
        Err(err) => error!(event = "producer_flush_failed", error = %err, "the flush task failed"),
    }
    summary
}

/// Ready while the broker answers metadata requests for the orders topic.
async fn watch_broker(
    producer: Arc<OrderProducer>,
    topic: String,
    readiness: Readiness,
    mut shutdown: Shutdown,
) {
    let mut was_ready = false;
    loop {
        let producer = producer.clone();
        let probe_topic = topic.clone();
        let reachable = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&probe_topic), Duration::from_secs(5))
                .map(|metadata| {
                    metadata
                        .topics()
                        .iter()
                        .any(|t| t.error().is_none() && !t.partitions().is_empty())
                })
        })
        .await;
        let ready = matches!(reachable, Ok(Ok(true)));
        if ready != was_ready {
            if ready {
                info!(event = "ready", topic = %topic, "broker reachable and topic present: ready");
            } else {
                warn!(event = "not_ready", topic = %topic, "broker or topic not reachable: not ready");
            }
            was_ready = ready;
        }
        readiness.set(ready);
        tokio::select! {
            _ = shutdown.requested() => return,
            _ = tokio::time::sleep(Duration::from_secs(if ready { 10 } else { 1 })) => {}
        }
    }
}

/// Logs a throughput summary every `interval`.
async fn log_throughput(metrics: ProducerMetrics, interval: Duration, mut shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    let mut last = (metrics.delivered.get(), Instant::now());
    loop {
        tokio::select! {
            _ = shutdown.requested() => return,
            _ = ticker.tick() => {}
        }
        let delivered = metrics.delivered.get();
        let elapsed = last.1.elapsed().as_secs_f64().max(f64::EPSILON);
        let rate = (delivered - last.0) as f64 / elapsed;
        info!(
            event = "throughput",
            produced = metrics.produced.get(),
            delivered,
            failed = metrics.failed.get(),
            per_second = format!("{rate:.1}"),
            "throughput: {rate:.1} orders/s delivered; {} delivered, {} failed in total",
            delivered,
            metrics.failed.get()
        );
        last = (delivered, Instant::now());
    }
}
