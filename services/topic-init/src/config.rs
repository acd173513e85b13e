//! `topic-init` settings, from environment variables only. Each variable is declared once
//! below (or in `service_runtime::config` when other services read it too); see that module's
//! header for how to add one.

use service_runtime::config::{
    COMMON_VARIABLES, CommonConfig, ConfigError, Env, Setting, Variables, WINDOW_STATS_TOPIC, rule,
    window_stats_topic,
};
use service_runtime::kafka::{ClientSettings, KafkaSettings};
use std::time::Duration;

/// Partitions of a topic: Kafka allows more, but more than this is a typo.
fn partitions(text: &str) -> Option<i32> {
    rule::within(text, 1, 10_000)
}

/// A retention in milliseconds, or -1 for forever.
fn retention_ms(text: &str) -> Option<i64> {
    rule::within(text, -1, i64::MAX).filter(|ms| *ms != 0)
}

pub const TOPIC_PARTITIONS: Setting<i32> = Setting {
    name: "TOPIC_PARTITIONS",
    default: Some("6"),
    accepts: "a whole number from 1 to 10000: partitions of the orders topic (the most trackers that can share the work)",
    parse: partitions,
};

pub const TOPIC_REPLICATION_FACTOR: Setting<i32> = Setting {
    name: "TOPIC_REPLICATION_FACTOR",
    default: Some("1"),
    accepts: "a whole number from 1 to 32, at most the number of brokers",
    parse: |text| rule::within(text, 1, 32),
};

pub const TOPIC_RETENTION_MS: Setting<i64> = Setting {
    name: "TOPIC_RETENTION_MS",
    default: Some("604800000"),
    accepts: "a whole number of milliseconds >= 1 (604800000 is 7 days), or -1 to keep orders forever",
    parse: retention_ms,
};

pub const DEAD_LETTER_PARTITIONS: Setting<i32> = Setting {
    name: "DEAD_LETTER_PARTITIONS",
    default: Some("1"),
    accepts: "a whole number from 1 to 10000: partitions of the dead-letter topic",
    parse: partitions,
};

pub const DEAD_LETTER_RETENTION_MS: Setting<i64> = Setting {
    name: "DEAD_LETTER_RETENTION_MS",
    default: Some("2592000000"),
    accepts: "a whole number of milliseconds >= 1 (2592000000 is 30 days), or -1 to keep dead letters forever",
    parse: retention_ms,
};

pub const CONNECT_MAX_ATTEMPTS: Setting<u32> = Setting {
    name: "CONNECT_MAX_ATTEMPTS",
    default: Some("30"),
    accepts: "a whole number >= 1: how many times to try reaching the broker before giving up",
    parse: |text| rule::within(text, 1, u32::MAX),
};

pub const CONNECT_MAX_BACKOFF_MS: Setting<Duration> = Setting {
    name: "CONNECT_MAX_BACKOFF_MS",
    default: Some("5000"),
    accepts: "a whole number of milliseconds >= 1: the longest wait between attempts (waits start at 250 ms and double)",
    parse: |text| rule::within(text, 1, u64::MAX).map(Duration::from_millis),
};

pub const WINDOW_STATS_PARTITIONS: Setting<i32> = Setting {
    name: "WINDOW_STATS_PARTITIONS",
    default: Some("3"),
    accepts: "a whole number from 1 to 10000: partitions of the window stats topic",
    parse: |text| rule::within(text, 1, 10_000),
};

pub const WINDOW_STATS_RETENTION_MS: Setting<i64> = Setting {
    name: "WINDOW_STATS_RETENTION_MS",
    default: Some("604800000"),
    accepts: "milliseconds >= 1, or -1 for forever: how long window stats records are kept (the topic is also compacted: only the last record per key stays)",
    parse: |text| rule::within(text, -1, i64::MAX).filter(|ms| *ms != 0),
};

/// topic-init's own variables, in README order (the common ones: [`COMMON_VARIABLES`]).
pub const VARIABLES: Variables = &[
    &TOPIC_PARTITIONS,
    &TOPIC_REPLICATION_FACTOR,
    &TOPIC_RETENTION_MS,
    &DEAD_LETTER_PARTITIONS,
    &DEAD_LETTER_RETENTION_MS,
    &WINDOW_STATS_TOPIC,
    &WINDOW_STATS_PARTITIONS,
    &WINDOW_STATS_RETENTION_MS,
    &CONNECT_MAX_ATTEMPTS,
    &CONNECT_MAX_BACKOFF_MS,
];

/// The wanted shape of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub retention_ms: i64,
    /// `delete`, or `compact,delete` for the window stats (last record per key, and a
    /// retention so that the topic does not grow forever).
    pub cleanup_policy: &'static str,
    /// The variables that set `partitions` and `retention_ms`, for error messages.
    pub partitions_variable: &'static str,
    pub retention_variable: &'static str,
}

/// topic-init's Kafka `client.id`.
pub const CLIENT_ID: &str = "topic-init";

/// Everything topic-init needs, validated.
#[derive(Debug, Clone)]
pub struct TopicInitConfig {
    pub common: CommonConfig,
    pub kafka: KafkaSettings,
    /// The admin client's configuration, built and checked once.
    pub admin: ClientSettings,
    pub topics: Vec<TopicSpec>,
    pub connect_max_attempts: u32,
    pub connect_max_backoff: Duration,
}

impl TopicInitConfig {
    pub fn from_vars(vars: &[(String, String)]) -> Result<Self, ConfigError> {
        let env = Env::new(vars, &[COMMON_VARIABLES, VARIABLES]);
        let common = CommonConfig::from_env(&env)?;
        let kafka = KafkaSettings::from_env(&env)?;
        let admin = kafka.admin(CLIENT_ID)?;
        let replication_factor = env.read(&TOPIC_REPLICATION_FACTOR)?;
        let topics = vec![
            TopicSpec {
                name: common.orders_topic.clone(),
                partitions: env.read(&TOPIC_PARTITIONS)?,
                replication_factor,
                retention_ms: env.read(&TOPIC_RETENTION_MS)?,
                cleanup_policy: "delete",
                partitions_variable: TOPIC_PARTITIONS.name,
                retention_variable: TOPIC_RETENTION_MS.name,
            },
            TopicSpec {
                name: common.dead_letter_topic.clone(),
                partitions: env.read(&DEAD_LETTER_PARTITIONS)?,
                replication_factor,
                retention_ms: env.read(&DEAD_LETTER_RETENTION_MS)?,
                cleanup_policy: "delete",
                partitions_variable: DEAD_LETTER_PARTITIONS.name,
                retention_variable: DEAD_LETTER_RETENTION_MS.name,
            },
            TopicSpec {
                name: window_stats_topic(&env, &common)?,
                partitions: env.read(&WINDOW_STATS_PARTITIONS)?,
                replication_factor,
                retention_ms: env.read(&WINDOW_STATS_RETENTION_MS)?,
                cleanup_policy: "compact,delete",
                partitions_variable: WINDOW_STATS_PARTITIONS.name,
                retention_variable: WINDOW_STATS_RETENTION_MS.name,
            },
        ];
        Ok(TopicInitConfig {
            common,
            kafka,
            admin,
            topics,
            connect_max_attempts: env.read(&CONNECT_MAX_ATTEMPTS)?,
            connect_max_backoff: env.read(&CONNECT_MAX_BACKOFF_MS)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_runtime::config::vars;

    fn error_for(pairs: &[(&str, &str)]) -> ConfigError {
        TopicInitConfig::from_vars(&vars(pairs)).expect_err("must be refused")
    }

    #[test]
    fn defaults_create_six_order_partitions_and_a_dead_letter_topic() {
        let config = TopicInitConfig::from_vars(&[]).expect("defaults");
        assert_eq!(config.topics[0].name, "orders");
        assert_eq!(config.topics[0].partitions, 6);
        assert_eq!(config.topics[0].retention_ms, 604_800_000);
        assert_eq!(config.topics[1].name, "orders.dlq");
        assert_eq!(config.topics[1].partitions, 1);
        assert_eq!(config.topics[2].name, "order-stats");
        assert_eq!(config.topics[2].cleanup_policy, "compact,delete");
        assert_eq!(config.topics[2].retention_ms, 604_800_000);
        assert_eq!(config.topics[2].partitions, 3);
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert_eq!(
            error_for(&[("TOPIC_PARTITIONS", "0")]).variable(),
            "TOPIC_PARTITIONS"
        );
        assert_eq!(
            error_for(&[("TOPIC_PARTITIONS", "six")]).variable(),
            "TOPIC_PARTITIONS"
        );
        assert_eq!(
            error_for(&[("TOPIC_REPLICATION_FACTOR", "0")]).variable(),
            "TOPIC_REPLICATION_FACTOR"
        );
        assert_eq!(
            error_for(&[("TOPIC_RETENTION_MS", "-2")]).variable(),
            "TOPIC_RETENTION_MS"
        );
        for (variable, bad) in [
            ("WINDOW_STATS_PARTITIONS", "0"),
            ("WINDOW_STATS_RETENTION_MS", "0"),
            ("WINDOW_STATS_TOPIC", "orders.dlq"),
        ] {
            assert_eq!(error_for(&[(variable, bad)]).variable(), variable);
        }
        assert_eq!(
            error_for(&[("CONNECT_MAX_ATTEMPTS", "0")]).variable(),
            "CONNECT_MAX_ATTEMPTS"
        );
        assert_eq!(
            error_for(&[("CONNECT_MAX_BACKOFF_MS", "-1")]).variable(),
            "CONNECT_MAX_BACKOFF_MS"
        );
    }

    #[test]
    fn infinite_retention_is_allowed() {
        let config =
            TopicInitConfig::from_vars(&vars(&[("TOPIC_RETENTION_MS", "-1")])).expect("-1");
        assert_eq!(config.topics[0].retention_ms, -1);
    }
}
