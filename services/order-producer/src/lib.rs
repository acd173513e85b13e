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
//! Delivery reports never wait on the async runtime: a thread of the producer's own serves them,
//! except while the generator runs flat out, when the generator's thread serves them itself
//! between sends (`service_runtime::delivery` says why). The blocking `flush` runs on a blocking
//! thread.

pub mod config;
pub mod intake;
mod intake_request;

use crate::config::ProducerConfig;
use crate::intake::{Intake, IntakeBindError};
use order_contract::samples::{GeneratedOrder, OrderGenerator};
use order_contract::{
    CONTENT_TYPE, CONTENT_TYPE_HEADER, Money, Order, SCHEMA_VERSION, SCHEMA_VERSION_HEADER,
    SCHEMA_VERSION_TEXT,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use rdkafka::statistics::Statistics;
use service_runtime::config::ConfigError;
use service_runtime::delivery::ServedProducer;
use service_runtime::health::{HealthBindError, HealthServer, Readiness};
use service_runtime::kafka::{ClientKind, ErrorLog, flush_promptly};
use service_runtime::launch::Outcome;
use service_runtime::metrics::{LatencyHistogram, register_build_info};
use service_runtime::shutdown::Shutdown;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// Why the producer could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create the Kafka producer: {0}")]
    Kafka(KafkaError),
    #[error("cannot start the producer's delivery-report thread: {0}")]
    ReportThread(std::io::Error),
    #[error(transparent)]
    Health(#[from] HealthBindError),
    #[error(transparent)]
    Intake(#[from] IntakeBindError),
}

/// The Kafka producer of orders, as librdkafka builds it.
pub(crate) type Kafka = BaseProducer<OrderDeliveryContext>;

/// The orders producer with its report thread; shared by the generator and the HTTP intake.
pub(crate) type OrderProducer = ServedProducer<OrderDeliveryContext>;

/// One message to send: an order's record with its delivery note.
pub(crate) type OrderRecord<'a> = BaseRecord<'a, str, [u8], Box<DeliveryNote>>;

/// Receives one message's delivery report, for a sender that waits for it (the HTTP intake):
/// its partition and offset, or why it was not delivered.
pub type DeliveryReply = service_runtime::delivery::Reply;

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
    /// The note of a posted order.
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

    /// The note of a generated order.
    fn of_generated(order: GeneratedOrder) -> Box<Self> {
        Box::new(DeliveryNote {
            sent_at: Instant::now(),
            order_id: order.order_id,
            customer_id: order.customer_id,
            item_count: order.item_count,
            total_cents: order.total_cents,
            currency: order_contract::samples::CURRENCY.into(),
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
    config
        .kafka
        .warn_without_effect("order-producer", &[ClientKind::Producer]);
    let kafka: Kafka = config
        .producer
        .create_with_context(OrderDeliveryContext {
            metrics: metrics.clone(),
            errors: ErrorLog::default(),
        })
        .map_err(|err| match config.kafka.explain(err) {
            Ok(config_error) => ProducerError::Config(config_error),
            Err(err) => ProducerError::Kafka(err),
        })?;
    let producer = Arc::new(
        OrderProducer::start(kafka, "delivery-reports").map_err(ProducerError::ReportThread)?,
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
    // Whether the generator thread ended without finishing (a panic): what it queued is still
    // flushed, and the run ends as failed.
    let mut generator_failed = false;
    if config.generate_orders {
        let (config, producer, metrics) = (config.clone(), producer.clone(), metrics.clone());
        match tokio::task::spawn_blocking(move || {
            generate_orders(&config, &producer, &metrics, &shutdown)
        })
        .await
        {
            Ok(produced) => info!(
                event = "generation_stopped",
                produced, "stopped generating orders"
            ),
            Err(err) => {
                error!(
                    event = "generation_failed",
                    error = %err,
                    "the order generator failed; flushing what it queued, then exiting 1"
                );
                generator_failed = true;
            }
        }
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

    if generator_failed || (config.order_count.is_some() && summary.failed > 0) {
        Ok(Outcome::PartlyFailed)
    } else {
        Ok(Outcome::Completed)
    }
}

/// The generation loop, on a blocking thread of its own: one order at a time until the count
/// is reached or shutdown is requested, paced by `ORDERS_PER_SECOND` or flat out. Flat out, this
/// thread also serves the delivery reports, every [`SERVE_REPORTS_EVERY`] sends, as the
/// thinnest produce loop does (`service_runtime::delivery` says why); paced, the producer's report
/// thread serves them, so that nothing (an intake request above all) waits for the next order
/// to be due (at very high paced rates the frees then cross threads again, as they did before
/// for every rate). Returns how many orders were generated: queued, or refused outright by
/// librdkafka (those are counted as failed).
fn generate_orders(
    config: &ProducerConfig,
    producer: &OrderProducer,
    metrics: &ProducerMetrics,
    shutdown: &Shutdown,
) -> u64 {
    match config.orders_per_second {
        Some(rate) => generate(
            config,
            producer.kafka(),
            Some(Duration::from_secs_f64(1.0 / rate)),
            metrics,
            shutdown,
        ),
        None => {
            producer.serving_own_reports(|kafka| generate(config, kafka, None, metrics, shutdown))
        }
    }
}

/// [`generate_orders`]' loop: one order every `interval` (on a fixed schedule, so that a late
/// order is followed by the next at once and the average rate stays exact), or flat out and
/// serving the delivery reports for `None`.
fn generate(
    config: &ProducerConfig,
    kafka: &Kafka,
    interval: Option<Duration>,
    metrics: &ProducerMetrics,
    shutdown: &Shutdown,
) -> u64 {
    let serves_reports = interval.is_none();
    let mut generator = OrderGenerator::new(config.customer_count);
    let topic = config.common.orders_topic.as_str();
    let started = Instant::now();
    let mut sent: u64 = 0;
    // One buffer for every order's JSON: librdkafka copies the payload when it is sent.
    let mut payload = Vec::with_capacity(1024);
    while config.order_count.is_none_or(|count| sent < count) && !shutdown.is_requested() {
        if let Some(interval) = interval
            && !sleep_until(started + interval.mul_f64(sent as f64), shutdown)
        {
            break;
        }
        // Straight to JSON: the generator writes the bytes the contract's writer would write
        // for the order it draws, without building the order first.
        let order = generator.next_json(&mut payload);
        let (order_id, key) = (order.order_id, order.customer_id.clone());
        let note = DeliveryNote::of_generated(order);
        let mut record = order_record(topic, &key, SCHEMA_VERSION, &payload, note);
        loop {
            match kafka.send(record) {
                Ok(()) => {
                    metrics.produced.inc();
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), mut back)) => {
                    // Back-pressure: librdkafka's queue is full because the broker is slow or
                    // away. Wait for deliveries to drain it (serving them, if that is this
                    // thread's job), unless we are asked to stop.
                    if shutdown.is_requested() {
                        return sent;
                    }
                    // The delivery latency starts when librdkafka takes the order, not now.
                    back.delivery_opaque.sent_at = Instant::now();
                    record = back;
                    if serves_reports {
                        kafka.poll(QUEUE_FULL_WAIT);
                    } else {
                        std::thread::sleep(QUEUE_FULL_WAIT);
                    }
                }
                Err((err, _)) => {
                    not_queued(order_id, &err, metrics);
                    break;
                }
            }
        }
        sent += 1;
        if serves_reports && sent.is_multiple_of(SERVE_REPORTS_EVERY) {
            kafka.poll(Duration::ZERO);
        }
    }
    sent
}

/// Sleeps until `due`, looking for a shutdown request at least every [`SHUTDOWN_LOOK_EVERY`];
/// `false` if one came first.
fn sleep_until(due: Instant, shutdown: &Shutdown) -> bool {
    loop {
        let now = Instant::now();
        if now >= due {
            return true;
        }
        if shutdown.is_requested() {
            return false;
        }
        std::thread::sleep((due - now).min(SHUTDOWN_LOOK_EVERY));
    }
}

/// How often a paced generator waiting for its next order looks whether it is asked to stop.
const SHUTDOWN_LOOK_EVERY: Duration = Duration::from_millis(50);

/// How many orders a flat-out generator sends between two looks at the delivery reports. A
/// look costs three clock reads and a lock even when nothing is waiting, and serves one event,
/// which reports a whole batch of messages (hundreds running flat out), so looking after every
/// send was about a twentieth of the generator's time. At 300,000 orders/s, a look every 32
/// orders is about 9,000 looks a second, far more than the batches acknowledged, and delays a
/// report by about 0.1 ms; while the queue is full the generator serves every report that
/// comes, waiting for room.
pub const SERVE_REPORTS_EVERY: u64 = 32;

/// How long the generator waits for room when librdkafka's queue is full before it tries again
/// (the thinnest produce loop waits the same).
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(10);

/// An order librdkafka refused outright (e.g. too large for the broker): logged, and counted
/// as produced and failed, since it will get no delivery report.
fn not_queued(order_id: uuid::Uuid, err: &KafkaError, metrics: &ProducerMetrics) {
    metrics.produced.inc();
    metrics.failed.inc();
    error!(event = "order_not_queued", order_id = %order_id, error = %err, "order {order_id} could not be queued: {err}");
}

/// The message of an order, with `payload` as its value (a generated order's JSON, or for a
/// posted order the posted JSON with its missing fields filled in): keyed by `customer_id`, with
/// the contract's headers.
fn order_record<'a>(
    topic: &'a str,
    customer_id: &'a str,
    schema_version: u32,
    payload: &'a [u8],
    note: Box<DeliveryNote>,
) -> OrderRecord<'a> {
    BaseRecord::with_opaque_to(topic, note)
        .key(customer_id)
        .payload(payload)
        .headers(contract_headers(schema_version))
}

/// The headers the order contract puts on every order message: `content-type` and
/// `schema-version`. Public so that the benchmark's produce loop can send the same ones (its
/// row with them says what they cost by themselves).
pub fn contract_headers(schema_version: u32) -> OwnedHeaders {
    // Every order sent has been validated, so its version is this build's: no text to format.
    let version = if schema_version == SCHEMA_VERSION {
        Cow::Borrowed(SCHEMA_VERSION_TEXT)
    } else {
        Cow::Owned(schema_version.to_string())
    };
    OwnedHeaders::new_with_capacity(2)
        .insert(Header {
            key: CONTENT_TYPE_HEADER,
            value: Some(CONTENT_TYPE),
        })
        .insert(Header {
            key: SCHEMA_VERSION_HEADER,
            value: Some(version.as_ref()),
        })
}

/// Flushes with a bounded timeout, purges what is left (each purged message gets a failed
/// delivery report), and logs the final counts.
async fn flush(
    producer: Arc<OrderProducer>,
    metrics: &ProducerMetrics,
    timeout: Duration,
) -> RunSummary {
    let started = Instant::now();
    let in_flight = producer.kafka().in_flight_count();
    info!(
        event = "flushing",
        in_flight,
        timeout_secs = timeout.as_secs(),
        "flushing the producer"
    );
    let drained = tokio::task::spawn_blocking(move || {
        let kafka = producer.kafka();
        let result = flush_promptly(kafka, timeout);
        if result.is_err() {
            // Anything still queued will never be delivered now: purge it so that its delivery
            // report (as failed) is emitted rather than lost silently with the producer.
            kafka.purge(PurgeConfig::default().queue().inflight());
            let _ = flush_promptly(kafka, Duration::from_secs(1));
        }
        (result, kafka.in_flight_count())
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
                .kafka()
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
