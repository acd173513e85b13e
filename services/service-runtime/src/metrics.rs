//! Metrics both services export the same way: which build and which Kafka client is running,
//! and the buckets of their latency histograms.
//!
//! The rest of each service's metrics lives with the service (`order_tracker::metrics`,
//! `order_producer::ProducerMetrics`); only what must not differ between them is here.

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Registers `build` (exposed as `<prefix>_build_info{version, librdkafka_version} 1`): the
/// crate version of the running service and the librdkafka version it is linked with, as
/// `rdkafka::util::get_rdkafka_version` reports it at run time.
pub fn register_build_info(registry: &mut Registry, version: &'static str) {
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    registry.register(
        "build",
        "The service's version and the librdkafka version it runs with",
        Info::new(vec![
            ("version", version.to_string()),
            ("librdkafka_version", librdkafka),
        ]),
    );
}

/// A latency histogram in seconds, with the buckets both services use: 5 ms doubling up to
/// about 41 s (14 buckets), which spans a healthy local broker (milliseconds) to a tracker
/// catching up on a backlog (tens of seconds).
#[derive(Debug, Clone)]
pub struct LatencyHistogram(Histogram);

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram(Histogram::new(exponential_buckets(0.005, 2.0, 14)))
    }
}

impl LatencyHistogram {
    /// Records one latency.
    pub fn observe(&self, latency: Duration) {
        self.0.observe(latency.as_secs_f64());
    }

    /// The histogram to register (clones share their observations).
    pub fn histogram(&self) -> Histogram {
        self.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn build_info_names_this_version_and_the_linked_librdkafka() {
        let mut registry = Registry::with_prefix("svc");
        register_build_info(&mut registry, "1.2.3");
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        let librdkafka = rdkafka::util::get_rdkafka_version().1;
        assert!(
            text.contains(&format!(
                "svc_build_info{{version=\"1.2.3\",librdkafka_version=\"{librdkafka}\"}} 1"
            )),
            "{text}"
        );
    }

    #[test]
    fn latency_is_recorded_in_seconds() {
        let latency = LatencyHistogram::default();
        latency.observe(Duration::from_millis(7));
        let mut registry = Registry::default();
        registry.register("latency_seconds", "test", latency.histogram());
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        assert!(text.contains("latency_seconds_count 1"), "{text}");
        assert!(
            text.contains("latency_seconds_bucket{le=\"0.005\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_bucket{le=\"0.01\"} 1"),
            "{text}"
        );
    }
}
