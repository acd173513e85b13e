//! `topic-init` settings, from environment variables only.

use serde::Deserialize;
use service_runtime::config::{COMMON_VARIABLES, CommonConfig, ConfigError, Variable, entry, load};
use service_runtime::kafka::KafkaSettings;
use std::time::Duration;

/// topic-init's own variables (the common and `KAFKA_*` ones are in [`COMMON_VARIABLES`]).
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "TOPIC_PARTITIONS",
        default: "6",
        accepts: "a whole number from 1 to 10000: partitions of the orders topic (the most trackers that can share the work)",
    },
    Variable {
        name: "TOPIC_REPLICATION_FACTOR",
        default: "1",
        accepts: "a whole number from 1 to 32, at most the number of brokers",
    },
    Variable {
        name: "TOPIC_RETENTION_MS",
        default: "604800000 (7 days)",
        accepts: "a whole number of milliseconds >= 1, or -1 to keep orders forever",
    },
    Variable {
        name: "DEAD_LETTER_PARTITIONS",
        default: "1",
        accepts: "a whole number from 1 to 10000: partitions of the dead-letter topic",
    },
    Variable {
        name: "DEAD_LETTER_RETENTION_MS",
        default: "2592000000 (30 days)",
        accepts: "a whole number of milliseconds >= 1, or -1 to keep dead letters forever",
    },
    Variable {
        name: "CONNECT_MAX_ATTEMPTS",
        default: "30",
        accepts: "a whole number >= 1: how many times to try reaching the broker before giving up",
    },
    Variable {
        name: "CONNECT_MAX_BACKOFF_MS",
        default: "5000",
        accepts: "a whole number of milliseconds >= 1: the longest wait between attempts (waits start at 250 ms and double)",
    },
];

/// The wanted shape of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub retention_ms: i64,
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
    pub topics: Vec<TopicSpec>,
    pub connect_max_attempts: u32,
    pub connect_max_backoff: Duration,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default = "default_partitions")]
    topic_partitions: i32,
    #[serde(default = "one")]
    topic_replication_factor: i32,
    #[serde(default = "default_retention")]
    topic_retention_ms: i64,
    #[serde(default = "one")]
    dead_letter_partitions: i32,
    #[serde(default = "default_dead_letter_retention")]
    dead_letter_retention_ms: i64,
    #[serde(default = "default_attempts")]
    connect_max_attempts: u32,
    #[serde(default = "default_backoff")]
    connect_max_backoff_ms: u64,
}

fn default_partitions() -> i32 {
    6
}
fn one() -> i32 {
    1
}
fn default_retention() -> i64 {
    7 * 24 * 3600 * 1000
}
fn default_dead_letter_retention() -> i64 {
    30 * 24 * 3600 * 1000
}
fn default_attempts() -> u32 {
    30
}
fn default_backoff() -> u64 {
    5000
}

impl TopicInitConfig {
    pub fn from_vars(vars: &[(String, String)]) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_vars(vars)?;
        let kafka = KafkaSettings::from_vars(vars)?;
        kafka.check(&kafka.admin(CLIENT_ID)?)?;
        let table: Vec<Variable> = VARIABLES.iter().chain(COMMON_VARIABLES).copied().collect();
        let raw: Raw = load(vars, &table)?;
        let check = |ok: bool, name: &'static str, value: String| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::invalid(&entry(VARIABLES, name), value))
            }
        };
        let retention_ok = |ms: i64| ms == -1 || ms >= 1;
        check(
            (1..=10_000).contains(&raw.topic_partitions),
            "TOPIC_PARTITIONS",
            raw.topic_partitions.to_string(),
        )?;
        check(
            (1..=32).contains(&raw.topic_replication_factor),
            "TOPIC_REPLICATION_FACTOR",
            raw.topic_replication_factor.to_string(),
        )?;
        check(
            retention_ok(raw.topic_retention_ms),
            "TOPIC_RETENTION_MS",
            raw.topic_retention_ms.to_string(),
        )?;
        check(
            (1..=10_000).contains(&raw.dead_letter_partitions),
            "DEAD_LETTER_PARTITIONS",
            raw.dead_letter_partitions.to_string(),
        )?;
        check(
            retention_ok(raw.dead_letter_retention_ms),
            "DEAD_LETTER_RETENTION_MS",
            raw.dead_letter_retention_ms.to_string(),
        )?;
        check(
            raw.connect_max_attempts >= 1,
            "CONNECT_MAX_ATTEMPTS",
            raw.connect_max_attempts.to_string(),
        )?;
        check(
            raw.connect_max_backoff_ms >= 1,
            "CONNECT_MAX_BACKOFF_MS",
            raw.connect_max_backoff_ms.to_string(),
        )?;
        let topics = vec![
            TopicSpec {
                name: common.orders_topic.clone(),
                partitions: raw.topic_partitions,
                replication_factor: raw.topic_replication_factor,
                retention_ms: raw.topic_retention_ms,
                partitions_variable: "TOPIC_PARTITIONS",
                retention_variable: "TOPIC_RETENTION_MS",
            },
            TopicSpec {
                name: common.dead_letter_topic.clone(),
                partitions: raw.dead_letter_partitions,
                replication_factor: raw.topic_replication_factor,
                retention_ms: raw.dead_letter_retention_ms,
                partitions_variable: "DEAD_LETTER_PARTITIONS",
                retention_variable: "DEAD_LETTER_RETENTION_MS",
            },
        ];
        Ok(TopicInitConfig {
            common,
            kafka,
            topics,
            connect_max_attempts: raw.connect_max_attempts,
            connect_max_backoff: Duration::from_millis(raw.connect_max_backoff_ms),
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
