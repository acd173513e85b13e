//! `order-tracker` settings, from environment variables only.

use serde::Deserialize;
use service_runtime::config::{
    COMMON_VARIABLES, CommonConfig, ConfigError, Variable, entry, load, positive_secs,
};
use service_runtime::kafka::KafkaSettings;
use std::num::NonZeroUsize;
use std::time::Duration;

/// The tracker's own variables (the common and `KAFKA_*` ones are in [`COMMON_VARIABLES`]).
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "GROUP_ID",
        default: "order-tracker",
        accepts: "a consumer group name (non-empty); trackers with the same GROUP_ID share the partitions",
    },
    Variable {
        name: "START_FROM",
        default: "committed",
        accepts: "`committed`, `earliest`, `latest`, or partition:offset pairs like `0:42,3:0` (manual assignment)",
    },
    Variable {
        name: "STATS_INTERVAL_SECS",
        default: "10",
        accepts: "a whole number of seconds >= 1 between statistics summaries",
    },
    Variable {
        name: "ALERT_ORDER_TOTAL_CENTS",
        default: "15000",
        accepts: "a whole number of cents >= 1; an order above it raises a high-value alert",
    },
    Variable {
        name: "ALERT_BURST_COUNT",
        default: "5",
        accepts: "a whole number >= 1; a customer placing more orders than this within the window raises a burst alert",
    },
    Variable {
        name: "ALERT_BURST_WINDOW_SECS",
        default: "60",
        accepts: "a whole number of seconds >= 1: the window for burst alerts",
    },
    Variable {
        name: "DEDUP_CAPACITY",
        default: "100000",
        accepts: "a whole number >= 1: how many recent order ids are remembered to recognise redeliveries",
    },
    Variable {
        name: "MAX_ORDER_BYTES",
        default: "65536",
        accepts: "a whole number of bytes >= 1; a larger message value is dead-lettered",
    },
    Variable {
        name: "HEALTH_PORT",
        default: "8080",
        accepts: "a TCP port from 1 to 65535 for /healthz, /readyz and /metrics",
    },
];

/// Where a tracker starts reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    /// The group's committed offsets (a new group starts at the beginning).
    Committed,
    /// The beginning of each partition in the first assignment, whatever was committed.
    Earliest,
    /// The end of each partition in the first assignment: only new orders.
    Latest,
    /// Exactly these partitions from these offsets, without group membership: replay and
    /// debugging. Offsets are still committed to `GROUP_ID`.
    Explicit(Vec<(i32, i64)>),
}

impl StartFrom {
    fn parse(text: &str) -> Option<StartFrom> {
        match text.trim().to_ascii_lowercase().as_str() {
            "committed" => return Some(StartFrom::Committed),
            "earliest" => return Some(StartFrom::Earliest),
            "latest" => return Some(StartFrom::Latest),
            _ => {}
        }
        let mut pairs = Vec::new();
        for pair in text.split(',') {
            let (partition, offset) = pair.trim().split_once(':')?;
            let partition: i32 = partition.trim().parse().ok().filter(|p| *p >= 0)?;
            let offset: i64 = offset.trim().parse().ok().filter(|o| *o >= 0)?;
            if pairs.iter().any(|(p, _)| *p == partition) {
                return None;
            }
            pairs.push((partition, offset));
        }
        (!pairs.is_empty()).then_some(StartFrom::Explicit(pairs))
    }
}

/// The Kafka `client.id` of the tracker's consumer and of its dead-letter producer.
pub const CONSUMER_CLIENT_ID: &str = "order-tracker";
pub const DEAD_LETTER_CLIENT_ID: &str = "order-tracker-dead-letters";

/// Everything the tracker needs, validated.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    pub common: CommonConfig,
    pub kafka: KafkaSettings,
    pub group_id: String,
    pub start_from: StartFrom,
    pub stats_interval: Duration,
    pub alert_order_total_cents: i64,
    pub alert_burst_count: u32,
    pub alert_burst_window: Duration,
    pub dedup_capacity: NonZeroUsize,
    pub max_order_bytes: usize,
    pub health_port: u16,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default = "default_group")]
    group_id: String,
    #[serde(default = "default_start")]
    start_from: String,
    #[serde(default = "default_stats")]
    stats_interval_secs: u64,
    #[serde(default = "default_alert_total")]
    alert_order_total_cents: i64,
    #[serde(default = "default_burst_count")]
    alert_burst_count: u32,
    #[serde(default = "default_burst_window")]
    alert_burst_window_secs: u64,
    #[serde(default = "default_dedup")]
    dedup_capacity: usize,
    #[serde(default = "default_max_bytes")]
    max_order_bytes: usize,
    #[serde(default = "default_port")]
    health_port: u16,
}

fn default_group() -> String {
    "order-tracker".into()
}
fn default_start() -> String {
    "committed".into()
}
fn default_stats() -> u64 {
    10
}
fn default_alert_total() -> i64 {
    15_000
}
fn default_burst_count() -> u32 {
    5
}
fn default_burst_window() -> u64 {
    60
}
fn default_dedup() -> usize {
    100_000
}
fn default_max_bytes() -> usize {
    64 * 1024
}
fn default_port() -> u16 {
    service_runtime::launch::DEFAULT_HEALTH_PORT
}

impl TrackerConfig {
    pub fn from_vars(vars: &[(String, String)]) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_vars(vars)?;
        let kafka = KafkaSettings::from_vars(vars)?;
        let table: Vec<Variable> = VARIABLES.iter().chain(COMMON_VARIABLES).copied().collect();
        let raw: Raw = load(vars, &table)?;
        let refuse = |name: &'static str, value: String| {
            Err(ConfigError::invalid(&entry(VARIABLES, name), value))
        };
        if raw.group_id.trim().is_empty() {
            return refuse("GROUP_ID", raw.group_id);
        }
        let Some(start_from) = StartFrom::parse(&raw.start_from) else {
            return refuse("START_FROM", raw.start_from);
        };
        if raw.alert_order_total_cents < 1 {
            return refuse(
                "ALERT_ORDER_TOTAL_CENTS",
                raw.alert_order_total_cents.to_string(),
            );
        }
        if raw.alert_burst_count < 1 {
            return refuse("ALERT_BURST_COUNT", raw.alert_burst_count.to_string());
        }
        let Some(dedup_capacity) = NonZeroUsize::new(raw.dedup_capacity) else {
            return refuse("DEDUP_CAPACITY", "0".into());
        };
        if raw.max_order_bytes < 1 {
            return refuse("MAX_ORDER_BYTES", "0".into());
        }
        if raw.health_port == 0 {
            return refuse("HEALTH_PORT", "0".into());
        }
        let group_id = raw.group_id.trim().to_string();
        kafka.check(&kafka.consumer(CONSUMER_CLIENT_ID, &group_id)?)?;
        kafka.check(&kafka.producer(DEAD_LETTER_CLIENT_ID)?)?;
        Ok(TrackerConfig {
            common,
            kafka,
            group_id,
            start_from,
            stats_interval: positive_secs(
                raw.stats_interval_secs,
                VARIABLES,
                "STATS_INTERVAL_SECS",
            )?,
            alert_order_total_cents: raw.alert_order_total_cents,
            alert_burst_count: raw.alert_burst_count,
            alert_burst_window: positive_secs(
                raw.alert_burst_window_secs,
                VARIABLES,
                "ALERT_BURST_WINDOW_SECS",
            )?,
            dedup_capacity,
            max_order_bytes: raw.max_order_bytes,
            health_port: raw.health_port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_runtime::config::vars;

    fn error_for(pairs: &[(&str, &str)]) -> ConfigError {
        TrackerConfig::from_vars(&vars(pairs)).expect_err("must be refused")
    }

    #[test]
    fn defaults_read_from_committed_offsets_in_the_order_tracker_group() {
        let config = TrackerConfig::from_vars(&[]).expect("defaults");
        assert_eq!(config.group_id, "order-tracker");
        assert_eq!(config.start_from, StartFrom::Committed);
        assert_eq!(config.alert_burst_window, Duration::from_secs(60));
        assert_eq!(config.dedup_capacity.get(), 100_000);
    }

    #[test]
    fn start_from_accepts_its_keywords_and_partition_offset_pairs() {
        let parse = |text| StartFrom::parse(text);
        assert_eq!(parse("EARLIEST"), Some(StartFrom::Earliest));
        assert_eq!(parse("latest"), Some(StartFrom::Latest));
        assert_eq!(
            parse("0:42, 3:0"),
            Some(StartFrom::Explicit(vec![(0, 42), (3, 0)]))
        );
    }

    #[test]
    fn an_unknown_start_from_names_the_variable_and_the_choices() {
        for bad in ["yesterday", "0:", ":5", "0:-1", "-1:0", "0:1,0:2", ""] {
            let err = error_for(&[("START_FROM", bad)]);
            assert_eq!(err.variable(), "START_FROM", "{bad}");
            assert!(err.to_string().contains("partition:offset"), "{err}");
        }
    }

    #[test]
    fn numbers_are_checked() {
        assert_eq!(
            error_for(&[("ALERT_BURST_COUNT", "many")]).variable(),
            "ALERT_BURST_COUNT"
        );
        assert_eq!(
            error_for(&[("ALERT_BURST_COUNT", "0")]).variable(),
            "ALERT_BURST_COUNT"
        );
        assert_eq!(
            error_for(&[("ALERT_ORDER_TOTAL_CENTS", "-5")]).variable(),
            "ALERT_ORDER_TOTAL_CENTS"
        );
        assert_eq!(
            error_for(&[("ALERT_BURST_WINDOW_SECS", "0")]).variable(),
            "ALERT_BURST_WINDOW_SECS"
        );
        assert_eq!(
            error_for(&[("DEDUP_CAPACITY", "0")]).variable(),
            "DEDUP_CAPACITY"
        );
        assert_eq!(
            error_for(&[("MAX_ORDER_BYTES", "1e3")]).variable(),
            "MAX_ORDER_BYTES"
        );
        assert_eq!(
            error_for(&[("STATS_INTERVAL_SECS", "-1")]).variable(),
            "STATS_INTERVAL_SECS"
        );
    }

    #[test]
    fn an_empty_group_is_refused() {
        assert_eq!(error_for(&[("GROUP_ID", "  ")]).variable(), "GROUP_ID");
    }
}
