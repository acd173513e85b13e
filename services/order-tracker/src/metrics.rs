//! The tracker's Prometheus metrics, exposed on `/metrics` by the health server.
//!
//! Counters are updated where the fact happens (a verdict reported, a dead letter acknowledged,
//! a rebalance served), so a metric never runs ahead of the log line that explains it.
//!
//! Consumer lag is named as the tools people already scrape name it: `kafka_consumer_lag`
//! (Vector's Kafka source) with `topic` and `partition` labels (kafka-lag-exporter's label
//! names), unprefixed so that dashboards written for those work here too. It is librdkafka's
//! own `consumer_lag` from its statistics (every `statistics.interval.ms`): the partition's
//! high watermark minus the group's committed offset, so it trails processing by the open
//! windows while orders flow (commits wait for their parts; see `windows`) and drains to 0
//! once a quiet partition's parts end. librdkafka knows it only for partitions this tracker holds and has
//! fetched from; a partition that moves away loses its series here and gains one at the
//! tracker that takes it.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdkafka::statistics::Statistics;
use service_runtime::metrics::{LatencyHistogram, register_build_info};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Labels = Vec<(&'static str, &'static str)>;
type PartitionLabels = Vec<(&'static str, String)>;

/// The tracker's metrics; clones share the same counters.
#[derive(Debug, Clone, Default)]
pub struct TrackerMetrics {
    pub tracked: Counter,
    pub revenue_cents: Counter,
    pub duplicates: Counter,
    pub dead_lettered: Family<Labels, Counter>,
    pub alerts: Family<Labels, Counter>,
    pub assigned_partitions: Gauge,
    pub rebalances: Counter,
    /// Window parts published to the stats topic, by why they ended.
    pub window_parts: Family<Labels, Counter>,
    /// Orders whose window had closed when they were read (counted in no part).
    pub late_orders: Counter,
    /// From the order's `created_at` to the moment it is tracked.
    pub order_latency: LatencyHistogram,
    /// `kafka_consumer_lag{topic, partition}`; see the module header.
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    /// The label sets `consumer_lag` holds now, so that partitions no longer reported lose
    /// their series instead of showing a stale lag forever.
    lag_series: Arc<Mutex<HashSet<PartitionLabels>>>,
}

impl TrackerMetrics {
    /// Adds every metric to `registry`: `kafka_consumer_lag` as it is, the others under the
    /// prefix `order_tracker_`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "kafka_consumer_lag",
            "Messages between the partition's high watermark and the group's committed offset (librdkafka statistics)",
            self.consumer_lag.clone(),
        );
        let registry = registry.sub_registry_with_prefix("order_tracker");
        register_build_info(registry, env!("CARGO_PKG_VERSION"));
        registry.register(
            "order_latency_seconds",
            "Time from an order's created_at to the moment it was tracked",
            self.order_latency.histogram(),
        );
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
        registry.register(
            "window_parts_published",
            "Window parts sent to the stats topic, by why the part ended",
            self.window_parts.clone(),
        );
        registry.register(
            "late_orders",
            "Orders read after their window had closed (watermark past the window end plus grace)",
            self.late_orders.clone(),
        );
    }

    /// One message written to the dead-letter topic for `reason`.
    pub fn dead_lettered(&self, reason: &'static str) {
        self.dead_lettered
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }

    /// One window part sent to the stats topic.
    pub fn window_part(&self, end: crate::windows::PartEnd) {
        self.window_parts
            .get_or_create(&vec![("part_end", end.as_str())])
            .inc();
    }

    /// One alert of `kind` raised.
    pub fn alert(&self, kind: &'static str) {
        self.alerts.get_or_create(&vec![("kind", kind)]).inc();
    }

    /// One order tracked, `age` after its `created_at`.
    pub fn order_latency(&self, age: Duration) {
        self.order_latency.observe(age);
    }

    /// Sets `kafka_consumer_lag` from one statistics report: every partition librdkafka is
    /// fetching for this consumer with a known lag gets its value; every other series goes.
    pub fn record_consumer_lag(&self, statistics: &Statistics) {
        let mut now = HashSet::new();
        for (topic, stats) in &statistics.topics {
            for (partition, partition_stats) in &stats.partitions {
                // -1 is librdkafka's internal "unassigned" partition; a lag of -1 means not
                // known yet (no committed offset or no high watermark).
                let fetching = !matches!(
                    partition_stats.fetch_state.as_str(),
                    "none" | "stopping" | "stopped"
                );
                if *partition < 0 || partition_stats.consumer_lag < 0 || !fetching {
                    continue;
                }
                let labels = vec![
                    ("topic", topic.clone()),
                    ("partition", partition.to_string()),
                ];
                self.consumer_lag
                    .get_or_create(&labels)
                    .set(partition_stats.consumer_lag);
                now.insert(labels);
            }
        }
        let mut series = self.lag_series.lock().unwrap_or_else(|e| e.into_inner());
        for gone in series.difference(&now) {
            self.consumer_lag.remove(gone);
        }
        *series = now;
    }
}
