//! A pipeline under test: a fresh broker with its own orders and dead-letter topics (created by
//! the real `topic-init`), and the real producer and tracker binaries configured for it.

use crate::broker::{TestBroker, free_port};
use crate::events::{Delivered, deliveries, order_lines};
use crate::process::{Service, ServiceBuilder};
use crate::topics::{create_topics, unique_name};
use std::time::Duration;

/// A broker with its own orders, dead-letter and window stats topics.
#[derive(Debug)]
pub struct Pipeline {
    pub broker: TestBroker,
    pub orders: String,
    pub dead_letters: String,
    pub stats: String,
}

impl Pipeline {
    /// A fresh broker with an orders topic of `partitions` partitions.
    pub fn new(partitions: i32) -> Pipeline {
        let broker = TestBroker::start();
        let orders = unique_name("orders");
        let dead_letters = format!("{orders}.dlq");
        let stats = format!("{orders}.stats");
        create_topics(
            &broker.bootstrap(),
            &orders,
            &dead_letters,
            &stats,
            partitions,
        );
        Pipeline {
            broker,
            orders,
            dead_letters,
            stats,
        }
    }

    pub fn bootstrap(&self) -> String {
        self.broker.bootstrap()
    }

    /// The producer, configured for this pipeline.
    pub fn producer(&self) -> ServiceBuilder {
        Service::builder("order-producer", &self.bootstrap())
            .env("ORDERS_TOPIC", &self.orders)
            .env("DEAD_LETTER_TOPIC", &self.dead_letters)
            .env("HEALTH_PORT", free_port())
            .env("STATS_INTERVAL_SECS", 1)
    }

    /// A tracker in `group`, with a short session timeout so that group joins are quick.
    pub fn tracker(&self, group: &str) -> ServiceBuilder {
        self.tracker_with_default_group_timeouts(group)
            .env("KAFKA_SESSION_TIMEOUT_MS", 6000)
            .env("KAFKA_HEARTBEAT_INTERVAL_MS", 500)
    }

    /// A tracker in `group` with the group timeouts a user gets (`service_runtime::kafka`), for
    /// the tests that prove the failover and shutdown bounds those defaults promise. Its
    /// windows are short (2 s, 1 s grace) so that windows close, and checkpoints move, within
    /// a test's few seconds.
    pub fn tracker_with_default_group_timeouts(&self, group: &str) -> ServiceBuilder {
        Service::builder("order-tracker", &self.bootstrap())
            .env("ORDERS_TOPIC", &self.orders)
            .env("DEAD_LETTER_TOPIC", &self.dead_letters)
            .env("WINDOW_STATS_TOPIC", &self.stats)
            .env("WINDOW_SECS", 2)
            .env("WINDOW_GRACE_SECS", 1)
            .env("GROUP_ID", group)
            .env("HEALTH_PORT", free_port())
            .env("STATS_INTERVAL_SECS", 1)
    }

    /// Produces `count` orders flat out with the real producer and returns their deliveries.
    pub fn produce(&self, count: usize) -> Vec<Delivered> {
        run_producer(self.producer(), count)
    }
}

/// Produces `count` orders to the default topics of any broker (the mock cluster, say).
pub fn produce_on(bootstrap: &str, count: usize) -> Vec<Delivered> {
    run_producer(
        Service::builder("order-producer", bootstrap).env("HEALTH_PORT", free_port()),
        count,
    )
}

/// Runs a bounded, flat-out producer to completion and returns its deliveries.
fn run_producer(producer: ServiceBuilder, count: usize) -> Vec<Delivered> {
    let mut producer = producer
        .env("ORDER_COUNT", count)
        .env("ORDERS_PER_SECOND", 0)
        .spawn();
    let status = producer
        .wait_exit(Duration::from_secs(60))
        .expect("a bounded producer run ends");
    assert!(status.success(), "producer failed\n{}", producer.report());
    let delivered = deliveries(&producer.events());
    assert_eq!(delivered.len(), count, "{}", producer.report());
    delivered
}

/// Waits up to `timeout` for `tracker` to have printed `count` order lines (duplicates
/// included: a test that then requires each order exactly once sees any redelivery).
pub fn wait_for_order_lines(tracker: &Service, count: usize, timeout: Duration) -> bool {
    tracker.wait_until(timeout, |events| order_lines(events).len() >= count)
}

/// SIGTERM, then require a clean exit well within ten seconds.
pub fn stop_gracefully(service: &mut Service) {
    let took = stop_within_ten_seconds(service);
    assert!(took < Duration::from_secs(10));
}

/// SIGTERM; requires exit 0 within ten seconds and returns how long the exit took.
pub fn stop_within_ten_seconds(service: &mut Service) -> Duration {
    let started = std::time::Instant::now();
    service.terminate();
    let status = service
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("did not stop within 10 s\n{}", service.report()));
    // `wait_exit` lets the log readers drain for 100 ms after the exit.
    let took = started.elapsed().saturating_sub(Duration::from_millis(100));
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        service.report()
    );
    took
}
