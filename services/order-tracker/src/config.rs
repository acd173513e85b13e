//! `order-tracker` settings, from environment variables only. Each variable is declared once
//! below (or in `service_runtime::config` when other services read it too); see that module's
//! header for how to add one.

use service_runtime::config::{
    COMMON_VARIABLES, CommonConfig, ConfigError, Env, HEALTH_PORT, MAX_ORDER_BYTES,
    STATS_INTERVAL_SECS, Setting, Variables, rule,
};
use service_runtime::kafka::{ClientSettings, KafkaSettings};
use std::num::NonZeroUsize;
use std::time::Duration;

pub const GROUP_ID: Setting<String> = Setting {
    name: "GROUP_ID",
    default: Some("order-tracker"),
    accepts: "a consumer group name (non-empty); trackers with the same GROUP_ID share the partitions",
    parse: rule::non_blank,
};

pub const START_FROM: Setting<StartFrom> = Setting {
    name: "START_FROM",
    default: Some("committed"),
    accepts: "`committed`, `earliest`, `latest`, or partition:offset pairs like `0:42,3:0` (manual assignment)",
    parse: StartFrom::parse,
};

pub const ALERT_ORDER_TOTAL_CENTS: Setting<i64> = Setting {
    name: "ALERT_ORDER_TOTAL_CENTS",
    default: Some("15000"),
    accepts: "a whole number of cents >= 1; an order above it raises a high-value alert",
    parse: |text| rule::within(text, 1, i64::MAX),
};

pub const ALERT_BURST_COUNT: Setting<u32> = Setting {
    name: "ALERT_BURST_COUNT",
    default: Some("5"),
    accepts: "a whole number >= 1; a customer placing more orders than this within the window raises a burst alert",
    parse: |text| rule::within(text, 1, u32::MAX),
};

pub const ALERT_BURST_WINDOW_SECS: Setting<Duration> = Setting {
    name: "ALERT_BURST_WINDOW_SECS",
    default: Some("60"),
    accepts: "a whole number of seconds >= 1: the window for burst alerts",
    parse: rule::positive_secs,
};

pub const DEDUP_CAPACITY: Setting<NonZeroUsize> = Setting {
    name: "DEDUP_CAPACITY",
    default: Some("100000"),
    accepts: "a whole number >= 1: how many recent order ids are remembered to recognise redeliveries",
    parse: |text| text.parse().ok(),
};

pub const SHUTDOWN_TIMEOUT_SECS: Setting<Duration> = Setting {
    name: "SHUTDOWN_TIMEOUT_SECS",
    default: Some("7"),
    accepts: "a whole number of seconds from 1 to 60: the budget after SIGTERM for the final commit, leaving the group and closing; past it the tracker exits 0 without a clean close, saying so",
    parse: |text| rule::within(text, 1, 60).map(Duration::from_secs),
};

/// The tracker's own variables, in README order (the common ones: [`COMMON_VARIABLES`]).
pub const VARIABLES: Variables = &[
    &GROUP_ID,
    &START_FROM,
    &STATS_INTERVAL_SECS,
    &ALERT_ORDER_TOTAL_CENTS,
    &ALERT_BURST_COUNT,
    &ALERT_BURST_WINDOW_SECS,
    &DEDUP_CAPACITY,
    &MAX_ORDER_BYTES,
    &SHUTDOWN_TIMEOUT_SECS,
    &HEALTH_PORT,
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
    /// The group consumer's client configuration, built and checked once.
    pub consumer: ClientSettings,
    /// The dead-letter producer's client configuration, built and checked once.
    pub dead_letter_producer: ClientSettings,
    pub group_id: String,
    pub start_from: StartFrom,
    pub stats_interval: Duration,
    pub alert_order_total_cents: i64,
    pub alert_burst_count: u32,
    pub alert_burst_window: Duration,
    pub dedup_capacity: NonZeroUsize,
    pub max_order_bytes: usize,
    /// The budget for the shutdown steps after SIGTERM.
    pub shutdown_timeout: Duration,
    pub health_port: u16,
}

impl TrackerConfig {
    pub fn from_vars(vars: &[(String, String)]) -> Result<Self, ConfigError> {
        let env = Env::new(vars, &[COMMON_VARIABLES, VARIABLES]);
        let common = CommonConfig::from_env(&env)?;
        let kafka = KafkaSettings::from_env(&env)?;
        let group_id = env.read(&GROUP_ID)?;
        let consumer = kafka.consumer(CONSUMER_CLIENT_ID, &group_id)?;
        let dead_letter_producer = kafka.producer(DEAD_LETTER_CLIENT_ID)?;
        Ok(TrackerConfig {
            common,
            kafka,
            consumer,
            dead_letter_producer,
            group_id,
            start_from: env.read(&START_FROM)?,
            stats_interval: env.read(&STATS_INTERVAL_SECS)?,
            alert_order_total_cents: env.read(&ALERT_ORDER_TOTAL_CENTS)?,
            alert_burst_count: env.read(&ALERT_BURST_COUNT)?,
            alert_burst_window: env.read(&ALERT_BURST_WINDOW_SECS)?,
            dedup_capacity: env.read(&DEDUP_CAPACITY)?,
            max_order_bytes: env.read(&MAX_ORDER_BYTES)?,
            shutdown_timeout: env.read(&SHUTDOWN_TIMEOUT_SECS)?,
            health_port: env.read(&HEALTH_PORT)?,
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
    fn the_group_timeouts_default_for_quick_failover_and_stay_overridable() {
        let config = TrackerConfig::from_vars(&[]).expect("defaults");
        let ms = |property: &str| -> u64 {
            config
                .consumer
                .get(property)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{property} set"))
        };
        assert_eq!(ms("session.timeout.ms"), 10_000);
        assert!(ms("heartbeat.interval.ms") * 3 <= ms("session.timeout.ms"));
        // The run loop holds a poison message without polling while its dead-letter write is
        // retried; max.poll.interval.ms (also the rebalance timeout) must outlast the longest
        // such write, or a tracker retrying a write would be put out of the group.
        assert!(
            Duration::from_millis(ms("max.poll.interval.ms")) > crate::dead_letter::LONGEST_WRITE,
            "max.poll.interval.ms must stay above the longest dead-letter write ({:?})",
            crate::dead_letter::LONGEST_WRITE
        );
        let tuned = TrackerConfig::from_vars(&vars(&[("KAFKA_SESSION_TIMEOUT_MS", "30000")]))
            .expect("override");
        assert_eq!(tuned.consumer.get("session.timeout.ms"), Some("30000"));
        assert_eq!(config.shutdown_timeout, Duration::from_secs(7));
    }

    #[test]
    fn the_shutdown_budget_is_checked() {
        for bad in ["0", "61", "5s", ""] {
            assert_eq!(
                error_for(&[("SHUTDOWN_TIMEOUT_SECS", bad)]).variable(),
                "SHUTDOWN_TIMEOUT_SECS",
                "{bad}"
            );
        }
    }

    #[test]
    fn an_empty_group_is_refused() {
        assert_eq!(error_for(&[("GROUP_ID", "  ")]).variable(), "GROUP_ID");
    }
}
