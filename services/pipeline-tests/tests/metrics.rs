//! Consumer lag, end-to-end latency, delivery latency, queue depth and version metrics of the
//! real binaries, read from their `/metrics` while they run against the real test broker.
//!
//! librdkafka computes a partition's lag from the high watermark the broker returns in Fetch
//! responses (`hi_offset` in its statistics) minus the group's committed offset. So the first
//! test checks the premise with a plain librdkafka consumer, not the tracker: that tansu's
//! Fetch responses carry the true high watermark, partition by partition.

use pipeline_tests::events::tracked;
use pipeline_tests::pipeline::wait_for_order_lines;
use pipeline_tests::{Pipeline, eventually, free_port, stop_gracefully, unique_name};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Keeps the latest `hi_offset` librdkafka reported for each partition of one topic.
struct HighWatermarks {
    topic: String,
    seen: Arc<Mutex<BTreeMap<i32, i64>>>,
}

impl ClientContext for HighWatermarks {
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            let mut seen = self.seen.lock().expect("lock");
            for (partition, stats) in &topic.partitions {
                if *partition >= 0 && stats.hi_offset >= 0 {
                    seen.insert(*partition, stats.hi_offset);
                }
            }
        }
    }
}
impl ConsumerContext for HighWatermarks {}

#[test]
fn the_test_broker_reports_the_true_high_watermark_in_fetch_responses() {
    let pipeline = Pipeline::new(3);
    let delivered = pipeline.produce(90);
    // The true high watermark of a partition: one past the last offset written to it.
    let mut expected = BTreeMap::new();
    for order in &delivered {
        let end = expected.entry(order.partition as i32).or_insert(0);
        *end = (*end).max(order.offset + 1);
    }
    assert_eq!(
        expected.len(),
        3,
        "every partition got orders: {expected:?}"
    );

    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let consumer: BaseConsumer<HighWatermarks> = ClientConfig::new()
        .set("bootstrap.servers", pipeline.bootstrap())
        .set("group.id", unique_name("hwm"))
        .set("enable.auto.commit", "false")
        .set("statistics.interval.ms", "200")
        .create_with_context(HighWatermarks {
            topic: pipeline.orders.clone(),
            seen: seen.clone(),
        })
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..3 {
        assignment
            .add_partition_offset(&pipeline.orders, partition, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");

    // Read a few messages only: the watermark must be known long before the end is reached.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut read = 0;
    while Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message.expect("message");
            read += 1;
        }
        if read >= 3 && *seen.lock().expect("lock") == expected {
            break;
        }
    }
    assert_eq!(
        *seen.lock().expect("lock"),
        expected,
        "hi_offset per partition from librdkafka's statistics vs. the offsets the producer was acknowledged"
    );
}

/// The samples of one `/metrics` scrape: series (name and labels, as written) → value.
fn scrape(port: u16) -> HashMap<String, f64> {
    let Ok(mut response) = ureq::get(format!("http://127.0.0.1:{port}/metrics")).call() else {
        return HashMap::new();
    };
    let text = response.body_mut().read_to_string().unwrap_or_default();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(series, value)| Some((series.to_string(), value.parse().ok()?)))
        .collect()
}

/// `kafka_consumer_lag` by partition, for `topic`.
fn lag_by_partition(samples: &HashMap<String, f64>, topic: &str) -> BTreeMap<String, f64> {
    let prefix = format!("kafka_consumer_lag{{topic=\"{topic}\",partition=\"");
    samples
        .iter()
        .filter_map(|(series, value)| {
            let partition = series.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            Some((partition.to_string(), *value))
        })
        .collect()
}

fn librdkafka_version() -> String {
    rdkafka::util::get_rdkafka_version().1
}

#[test]
fn a_tracker_started_behind_a_backlog_reports_that_lag_and_drains_it_to_zero() {
    const BACKLOG: usize = 300;
    let pipeline = Pipeline::new(3);
    let group = unique_name("lag");
    // A first tracker commits a position, so that the group has committed offsets to be
    // behind of (librdkafka's lag counts from the committed offset).
    pipeline.produce(30);
    let mut first = pipeline.tracker(&group).spawn();
    assert!(
        wait_for_order_lines(&first, 30, Duration::from_secs(60)),
        "{}",
        first.report()
    );
    stop_gracefully(&mut first);

    // The backlog, produced while no tracker runs.
    pipeline.produce(BACKLOG);
    let port = free_port();
    let tracker = pipeline
        .tracker(&group)
        .env("HEALTH_PORT", port)
        // Statistics often. The commits lag the open windows, so the lag drains to zero only
        // once the partitions are quiet and their parts end (a grace period, 1 s here).
        .env("KAFKA_STATISTICS_INTERVAL_MS", 100)
        .spawn();

    // Highest total lag seen while every partition had a value, and whether all drained.
    let mut highest = 0.0_f64;
    let mut drained = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let lag = lag_by_partition(&scrape(port), &pipeline.orders);
        if lag.len() == 3 {
            let total: f64 = lag.values().sum();
            highest = highest.max(total);
            if highest > 0.0 && total == 0.0 {
                drained = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        highest >= BACKLOG as f64 * 0.9 && highest <= BACKLOG as f64,
        "the lag reported behind a backlog of {BACKLOG} peaked at {highest}\n{}",
        tracker.report()
    );
    assert!(
        drained,
        "the lag never drained to zero on all three partitions\n{}",
        tracker.report()
    );

    // Statistics every 100 ms feed the metrics, never the log (rdkafka's default would write
    // each one, whole, at info, for every client that has no handler of its own).
    let raw_stats = tracker
        .events()
        .iter()
        .filter(|e| e.message.starts_with("Client stats"))
        .count();
    assert_eq!(raw_stats, 0, "librdkafka statistics reached the log");

    // Every tracked order was timed once, from its created_at: the backlog waited seconds.
    let tracked_orders = tracked(&tracker.events()).len();
    assert_eq!(tracked_orders, BACKLOG, "{}", tracker.report());
    let samples = scrape(port);
    assert_eq!(
        samples.get("order_tracker_order_latency_seconds_count"),
        Some(&(tracked_orders as f64)),
        "latency observations vs. tracked orders"
    );
    assert_eq!(
        samples.get("order_tracker_orders_tracked_total"),
        Some(&(tracked_orders as f64))
    );
    let mean = samples["order_tracker_order_latency_seconds_sum"] / tracked_orders as f64;
    assert!(
        mean > 0.5,
        "orders that waited for a tracker to start show a mean latency of {mean} s"
    );
    let info = format!(
        "order_tracker_build_info{{version=\"{}\",librdkafka_version=\"{}\"}}",
        env!("CARGO_PKG_VERSION"),
        librdkafka_version()
    );
    assert_eq!(
        samples.get(&info),
        Some(&1.0),
        "{info} in {:?}",
        samples.keys()
    );
}

#[test]
fn the_producer_times_every_acknowledged_delivery_and_counts_what_its_client_still_holds() {
    const COUNT: usize = 400;
    let pipeline = Pipeline::new(3);
    let port = free_port();
    let mut producer = pipeline
        .producer()
        .env("HEALTH_PORT", port)
        .env("ORDER_COUNT", COUNT)
        .env("ORDERS_PER_SECOND", 100)
        .env("FLUSH_TIMEOUT_SECS", 60)
        .env("KAFKA_STATISTICS_INTERVAL_MS", 100)
        .spawn();
    let value =
        |samples: &HashMap<String, f64>, series: &str| samples.get(series).copied().unwrap_or(-1.0);
    assert!(
        eventually(Duration::from_secs(30), || {
            value(&scrape(port), "order_producer_orders_delivered_total") >= 100.0
        }),
        "{}",
        producer.report()
    );
    // The broker goes away: deliveries stop (librdkafka retries until message.timeout.ms),
    // the rest of the orders pile up in the client's queue.
    let Pipeline { broker, .. } = pipeline;
    drop(broker);

    let settled = |samples: &HashMap<String, f64>| {
        let produced = value(samples, "order_producer_orders_produced_total");
        let delivered = value(samples, "order_producer_orders_delivered_total");
        let queued = value(samples, "order_producer_kafka_queue_messages");
        produced == COUNT as f64 && queued == produced - delivered
    };
    assert!(
        eventually(Duration::from_secs(30), || settled(&scrape(port))),
        "the queue depth never settled at produced - delivered: {:?}\n{}",
        scrape(port),
        producer.report()
    );
    let samples = scrape(port);
    let delivered = value(&samples, "order_producer_orders_delivered_total");
    assert!(
        delivered < COUNT as f64,
        "the broker stopped before every delivery"
    );
    assert_eq!(value(&samples, "order_producer_orders_failed_total"), 0.0);
    assert_eq!(
        value(&samples, "order_producer_delivery_latency_seconds_count"),
        delivered,
        "delivery-latency observations vs. acknowledged deliveries"
    );
    assert!(value(&samples, "order_producer_kafka_queue_messages") > 0.0);
    let info = format!(
        "order_producer_build_info{{version=\"{}\",librdkafka_version=\"{}\"}}",
        env!("CARGO_PKG_VERSION"),
        librdkafka_version()
    );
    assert_eq!(samples.get(&info), Some(&1.0), "{info}");
    producer.kill();
}

#[test]
fn every_answer_of_the_http_intake_is_timed_and_counted_by_status() {
    let pipeline = Pipeline::new(1);
    let health = free_port();
    let intake = free_port();
    let producer = pipeline
        .producer()
        .env("HEALTH_PORT", health)
        .env("INTAKE_PORT", intake)
        .env("GENERATE_ORDERS", "false")
        .spawn();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let post = |body: &str| {
        agent
            .post(format!("http://127.0.0.1:{intake}/orders"))
            .header("content-type", "application/json")
            .send(body)
            .map(|response| response.status().as_u16())
            .unwrap_or(0)
    };
    let good = r#"{"customer_id":"customer-1","items":[{"sku":"PIZ-MAR","name":"Pizza Margherita","quantity":1,"unit_price_cents":950}],"total_cents":950,"currency":"EUR"}"#;
    // The first good order waits until the producer is ready; earlier answers count too.
    let mut answers = 0;
    assert!(
        eventually(Duration::from_secs(30), || {
            let status = post(good);
            // 0: no answer at all (not listening yet), which the intake cannot count.
            if status != 0 {
                answers += 1;
            }
            status == 201
        }),
        "{}",
        producer.report()
    );
    for _ in 0..2 {
        assert_eq!(post(good), 201);
        assert_eq!(post("{}"), 422);
        answers += 2;
    }
    let samples = scrape(health);
    let by_status: f64 = samples
        .iter()
        .filter(|(series, _)| series.starts_with("order_producer_intake_responses_total{"))
        .map(|(_, value)| value)
        .sum();
    assert_eq!(by_status, answers as f64, "{samples:?}");
    assert_eq!(
        samples.get("order_producer_intake_request_duration_seconds_count"),
        Some(&(answers as f64)),
        "request-duration observations vs. answers"
    );
}
