//! `order-tracker` settings, from environment variables only. Each variable is declared once
//! below (or in `service_runtime::config` when other services read it too); see that module's
//! header for how to add one.

use crate::windows::WindowSettings;
use service_runtime::config::{
    COMMON_VARIABLES, CommonConfig, ConfigError, Env, HEALTH_PORT, MAX_ORDER_BYTES,
    STATS_INTERVAL_SECS, Setting, Variables, WINDOW_STATS_TOPIC, rule, window_stats_topic,
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
    accepts: "a whole number from 1 to 10000000: how many recent order ids are remembered to recognise redeliveries (about 30 bytes each, allocated at start)",
    parse: |text| rule::within(text, 1, 10_000_000).and_then(|n: usize| NonZeroUsize::new(n)),
};

pub const SHUTDOWN_TIMEOUT_SECS: Setting<Duration> = Setting {
    name: "SHUTDOWN_TIMEOUT_SECS",
    default: Some("7"),
    accepts: "a whole number of seconds from 1 to 60: the budget after SIGTERM for the final commit, leaving the group and closing; past it the tracker exits 0 without a clean close, saying so",
    parse: |text| rule::within(text, 1, 60).map(Duration::from_secs),
};

pub const WINDOW_SECS: Setting<Duration> = Setting {
    name: "WINDOW_SECS",
    default: Some("60"),
    accepts: "a whole number of seconds from 1 to 86400: the length of the tumbling windows (by the order's created_at) published to WINDOW_STATS_TOPIC",
    parse: |text| rule::within(text, 1, 86_400).map(Duration::from_secs),
};

pub const WINDOW_GRACE_SECS: Setting<Duration> = Setting {
    name: "WINDOW_GRACE_SECS",
    default: Some("10"),
    accepts: "a whole number of seconds from 1 to 3600: how long after its end (by order time) a window still takes late orders; also how far ahead of its message an order may be dated and still move the watermark, how long a partition must be quiet before its open parts end, and half of how long after a window's end a quiet partition closes it",
    parse: |text| rule::within(text, 1, 3_600).map(Duration::from_secs),
};

pub const WINDOW_PART_SPAN_OFFSETS: Setting<i64> = Setting {
    name: "WINDOW_PART_SPAN_OFFSETS",
    default: Some("50000"),
    accepts: "a whole number >= 1: a window part covers at most this aligned span of offsets of one partition, which bounds how far a crash replays",
    parse: |text| rule::within(text, 1, i64::MAX),
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
    &WINDOW_SECS,
    &WINDOW_GRACE_SECS,
    &WINDOW_PART_SPAN_OFFSETS,
    &WINDOW_STATS_TOPIC,
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
pub const WINDOW_STATS_CLIENT_ID: &str = "order-tracker-window-stats";
pub const WINDOW_TOTALS_CLIENT_ID: &str = "order-tracker-window-totals";

/// Everything the tracker needs, validated.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    pub common: CommonConfig,
    pub kafka: KafkaSettings,
    /// The group consumer's client configuration, built and checked once.
    pub consumer: ClientSettings,
    /// The dead-letter producer's client configuration, built and checked once.
    pub dead_letter_producer: ClientSettings,
    /// The window stats producer's client configuration.
    pub window_stats_producer: ClientSettings,
    /// The reader behind `order-tracker window-totals`.
    pub window_totals_reader: ClientSettings,
    pub windows: WindowSettings,
    pub window_stats_topic: String,
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
        let window_stats_producer = kafka.producer(WINDOW_STATS_CLIENT_ID)?;
        let window_totals_reader = kafka.topic_reader(WINDOW_TOTALS_CLIENT_ID)?;
        let grace = chrono_delta(env.read(&WINDOW_GRACE_SECS)?);
        let windows = WindowSettings {
            length: chrono_delta(env.read(&WINDOW_SECS)?),
            grace,
            future_tolerance: grace,
            part_span: env.read(&WINDOW_PART_SPAN_OFFSETS)?,
        };
        let window_stats_topic = window_stats_topic(&env, &common)?;
        Ok(TrackerConfig {
            common,
            kafka,
            consumer,
            dead_letter_producer,
            window_stats_producer,
            window_totals_reader,
            windows,
            window_stats_topic,
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

/// Whole seconds as a chrono duration (the settings above bound them well within range).
fn chrono_delta(duration: Duration) -> chrono::Duration {
    chrono::Duration::seconds(duration.as_secs() as i64)
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
        assert_eq!(config.windows.length, chrono::Duration::seconds(60));
        assert_eq!(config.windows.grace, chrono::Duration::seconds(10));
        assert_eq!(config.windows.part_span, 50_000);
        assert_eq!(config.window_stats_topic, "order-stats");
    }

    #[test]
    fn window_settings_are_bounded_and_name_their_variable() {
        for (variable, bad) in [
            ("WINDOW_SECS", "0"),
            ("WINDOW_SECS", "86401"),
            ("WINDOW_GRACE_SECS", "0"),
            ("DEDUP_CAPACITY", "10000001"),
            ("WINDOW_GRACE_SECS", "3601"),
            ("WINDOW_PART_SPAN_OFFSETS", "0"),
            ("WINDOW_STATS_TOPIC", "orders"),
        ] {
            assert_eq!(error_for(&[(variable, bad)]).variable(), variable, "{bad}");
        }
        let config = TrackerConfig::from_vars(&service_runtime::config::vars(&[
            ("WINDOW_SECS", "5"),
            ("WINDOW_GRACE_SECS", "1"),
        ]))
        .expect("short windows");
        assert_eq!(config.windows.length, chrono::Duration::seconds(5));
        assert_eq!(
            config.windows.future_tolerance,
            chrono::Duration::seconds(1)
        );
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
