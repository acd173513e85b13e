//! Shared set-up for the integration tests: a fresh broker with fresh topics, and the real
//! binaries configured for it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;
use test_broker::{
    Event, Service, ServiceBuilder, TestBroker, create_topics, free_port, unique_name,
};

/// A broker with its own orders and dead-letter topics.
pub struct Pipeline {
    pub broker: TestBroker,
    pub orders: String,
    pub dead_letters: String,
}

/// One order as the producer reported its delivery.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delivered {
    pub order_id: String,
    pub partition: i64,
    pub offset: i64,
}

/// One order line as a tracker printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub order_id: String,
    pub source: String,
    pub line: String,
}

impl Pipeline {
    pub fn new(partitions: i32) -> Pipeline {
        let broker = TestBroker::start();
        let orders = unique_name("orders");
        let dead_letters = format!("{orders}.dlq");
        create_topics(&broker.bootstrap(), &orders, &dead_letters, partitions);
        Pipeline {
            broker,
            orders,
            dead_letters,
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
        Service::builder("order-tracker", &self.bootstrap())
            .env("ORDERS_TOPIC", &self.orders)
            .env("DEAD_LETTER_TOPIC", &self.dead_letters)
            .env("GROUP_ID", group)
            .env("HEALTH_PORT", free_port())
            .env("STATS_INTERVAL_SECS", 1)
            .env("KAFKA_SESSION_TIMEOUT_MS", 6000)
            .env("KAFKA_HEARTBEAT_INTERVAL_MS", 500)
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

/// The deliveries a producer logged.
pub fn deliveries(events: &[Event]) -> Vec<Delivered> {
    events
        .iter()
        .filter(|e| e.target == "order_producer::delivery" && e.message.starts_with("delivered"))
        .map(|e| Delivered {
            order_id: e.field("order_id").expect("order_id"),
            partition: e.json["partition"].as_i64().expect("partition"),
            offset: e.json["offset"].as_i64().expect("offset"),
        })
        .collect()
}

/// The orders a tracker printed (not counting recognised duplicates).
pub fn tracked(events: &[Event]) -> Vec<Tracked> {
    events
        .iter()
        .filter(|e| e.target == "order_tracker::orders" && e.json.get("duplicate").is_none())
        .map(|e| Tracked {
            order_id: e.field("order_id").expect("order_id"),
            source: e
                .message
                .rsplit_once('[')
                .map(|(_, s)| s.trim_end_matches(']').to_string())
                .unwrap_or_default(),
            line: e.message.clone(),
        })
        .collect()
}

/// The duplicates a tracker recognised.
pub fn duplicates(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.target == "order_tracker::orders" && e.json.get("duplicate").is_some())
        .filter_map(|e| e.field("order_id"))
        .collect()
}

/// How many times each order id was tracked.
pub fn counts(tracked: &[Tracked]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for order in tracked {
        *counts.entry(order.order_id.clone()).or_insert(0) += 1;
    }
    counts
}

/// The partitions of `topic` named in a tracker's "partitions assigned" lines.
pub fn assigned_partitions(events: &[Event]) -> Vec<i32> {
    let mut partitions = Vec::new();
    for event in events {
        if let Some(list) = event.message.strip_prefix("partitions assigned: ")
            && let Some((_, inner)) = list.split_once('[')
        {
            partitions.extend(
                inner
                    .trim_end_matches(']')
                    .split(',')
                    .filter_map(|p| p.trim().parse::<i32>().ok()),
            );
        }
    }
    partitions
}

/// Polls `condition` until it holds or `timeout` passes; for conditions over several services.
pub fn eventually(timeout: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits up to `timeout` for `service` to have tracked `count` orders.
pub fn wait_for_tracked(service: &Service, count: usize, timeout: Duration) -> bool {
    service.wait_until(timeout, |events| tracked(events).len() >= count)
}

/// SIGTERM, then require a clean exit well within ten seconds.
pub fn stop_gracefully(service: &mut Service) {
    service.terminate();
    let status = service
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("did not stop within 10 s\n{}", service.report()));
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        service.report()
    );
}
