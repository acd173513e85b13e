//! `order-producer` settings, from environment variables only.

use serde::Deserialize;
use service_runtime::config::{
    COMMON_VARIABLES, CommonConfig, ConfigError, Variable, entry, load, positive_secs,
};
use service_runtime::kafka::KafkaSettings;
use std::time::Duration;

/// The producer's own variables (the common and `KAFKA_*` ones are in [`COMMON_VARIABLES`]).
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "ORDERS_PER_SECOND",
        default: "5",
        accepts: "a number >= 0; fractions allowed (0.5 = one order every 2 s); 0 = as fast as possible",
    },
    Variable {
        name: "ORDER_COUNT",
        default: "(unset: run until stopped)",
        accepts: "a whole number >= 1: produce that many orders, flush, and exit",
    },
    Variable {
        name: "CUSTOMER_COUNT",
        default: "300",
        accepts: "a whole number from 1 to 1000000: how many distinct customers place orders",
    },
    Variable {
        name: "STATS_INTERVAL_SECS",
        default: "10",
        accepts: "a whole number of seconds >= 1 between throughput summaries",
    },
    Variable {
        name: "FLUSH_TIMEOUT_SECS",
        default: "10",
        accepts: "a whole number of seconds >= 1 to wait for outstanding deliveries at shutdown",
    },
    Variable {
        name: "HEALTH_PORT",
        default: "8080",
        accepts: "a TCP port from 1 to 65535 for /healthz, /readyz and /metrics",
    },
];

/// The producer's Kafka `client.id`.
pub const CLIENT_ID: &str = "order-producer";

/// Everything the producer needs, validated.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub common: CommonConfig,
    pub kafka: KafkaSettings,
    /// `None` means as fast as possible.
    pub orders_per_second: Option<f64>,
    /// `None` means until stopped.
    pub order_count: Option<u64>,
    pub customer_count: u32,
    pub stats_interval: Duration,
    pub flush_timeout: Duration,
    pub health_port: u16,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default = "default_rate")]
    orders_per_second: f64,
    #[serde(default)]
    order_count: Option<u64>,
    #[serde(default = "default_customers")]
    customer_count: u32,
    #[serde(default = "default_ten")]
    stats_interval_secs: u64,
    #[serde(default = "default_ten")]
    flush_timeout_secs: u64,
    #[serde(default = "default_port")]
    health_port: u16,
}

fn default_rate() -> f64 {
    5.0
}
fn default_customers() -> u32 {
    300
}
fn default_ten() -> u64 {
    10
}
fn default_port() -> u16 {
    service_runtime::launch::DEFAULT_HEALTH_PORT
}

impl ProducerConfig {
    pub fn from_vars(vars: &[(String, String)]) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_vars(vars)?;
        let kafka = KafkaSettings::from_vars(vars)?;
        kafka.check(&kafka.producer(CLIENT_ID)?)?;
        let table: Vec<Variable> = VARIABLES.iter().chain(COMMON_VARIABLES).copied().collect();
        let raw: Raw = load(vars, &table)?;
        let rate = raw.orders_per_second;
        if !rate.is_finite() || rate < 0.0 {
            return Err(ConfigError::invalid(
                &entry(VARIABLES, "ORDERS_PER_SECOND"),
                rate.to_string(),
            ));
        }
        if raw.order_count == Some(0) {
            return Err(ConfigError::invalid(&entry(VARIABLES, "ORDER_COUNT"), "0"));
        }
        if !(1..=1_000_000).contains(&raw.customer_count) {
            return Err(ConfigError::invalid(
                &entry(VARIABLES, "CUSTOMER_COUNT"),
                raw.customer_count.to_string(),
            ));
        }
        if raw.health_port == 0 {
            return Err(ConfigError::invalid(&entry(VARIABLES, "HEALTH_PORT"), "0"));
        }
        Ok(ProducerConfig {
            common,
            kafka,
            orders_per_second: (rate > 0.0).then_some(rate),
            order_count: raw.order_count,
            customer_count: raw.customer_count,
            stats_interval: positive_secs(
                raw.stats_interval_secs,
                VARIABLES,
                "STATS_INTERVAL_SECS",
            )?,
            flush_timeout: positive_secs(raw.flush_timeout_secs, VARIABLES, "FLUSH_TIMEOUT_SECS")?,
            health_port: raw.health_port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_runtime::config::vars;

    fn error_for(pairs: &[(&str, &str)]) -> ConfigError {
        ProducerConfig::from_vars(&vars(pairs)).expect_err("must be refused")
    }

    #[test]
    fn defaults_give_a_gentle_endless_stream() {
        let config = ProducerConfig::from_vars(&[]).expect("defaults");
        assert_eq!(config.orders_per_second, Some(5.0));
        assert_eq!(config.order_count, None);
        assert_eq!(config.customer_count, 300);
        assert_eq!(config.health_port, 8080);
        assert_eq!(config.flush_timeout, Duration::from_secs(10));
    }

    #[test]
    fn fractional_rates_and_flat_out_are_accepted() {
        let config =
            ProducerConfig::from_vars(&vars(&[("ORDERS_PER_SECOND", "0.5")])).expect("0.5");
        assert_eq!(config.orders_per_second, Some(0.5));
        let config = ProducerConfig::from_vars(&vars(&[("ORDERS_PER_SECOND", "0")])).expect("0");
        assert_eq!(config.orders_per_second, None);
    }

    #[test]
    fn a_rate_that_is_not_a_number_names_the_variable() {
        let err = error_for(&[("ORDERS_PER_SECOND", "fast")]);
        assert_eq!(err.variable(), "ORDERS_PER_SECOND");
        assert!(err.to_string().contains("a number >= 0"), "{err}");
    }

    #[test]
    fn a_negative_or_infinite_rate_is_refused() {
        assert_eq!(
            error_for(&[("ORDERS_PER_SECOND", "-1")]).variable(),
            "ORDERS_PER_SECOND"
        );
        assert_eq!(
            error_for(&[("ORDERS_PER_SECOND", "inf")]).variable(),
            "ORDERS_PER_SECOND"
        );
        assert_eq!(
            error_for(&[("ORDERS_PER_SECOND", "NaN")]).variable(),
            "ORDERS_PER_SECOND"
        );
    }

    #[test]
    fn an_order_count_must_be_a_positive_whole_number() {
        assert_eq!(error_for(&[("ORDER_COUNT", "0")]).variable(), "ORDER_COUNT");
        assert_eq!(
            error_for(&[("ORDER_COUNT", "-3")]).variable(),
            "ORDER_COUNT"
        );
        assert_eq!(
            error_for(&[("ORDER_COUNT", "1.5")]).variable(),
            "ORDER_COUNT"
        );
        let config = ProducerConfig::from_vars(&vars(&[("ORDER_COUNT", "42")])).expect("42");
        assert_eq!(config.order_count, Some(42));
    }

    #[test]
    fn ports_and_periods_are_checked() {
        assert_eq!(
            error_for(&[("HEALTH_PORT", "70000")]).variable(),
            "HEALTH_PORT"
        );
        assert_eq!(error_for(&[("HEALTH_PORT", "0")]).variable(), "HEALTH_PORT");
        assert_eq!(
            error_for(&[("STATS_INTERVAL_SECS", "0")]).variable(),
            "STATS_INTERVAL_SECS"
        );
        assert_eq!(
            error_for(&[("FLUSH_TIMEOUT_SECS", "soon")]).variable(),
            "FLUSH_TIMEOUT_SECS"
        );
        assert_eq!(
            error_for(&[("CUSTOMER_COUNT", "0")]).variable(),
            "CUSTOMER_COUNT"
        );
    }

    #[test]
    fn an_empty_bootstrap_list_is_refused() {
        assert_eq!(
            error_for(&[("KAFKA_BOOTSTRAP_SERVERS", "")]).variable(),
            "KAFKA_BOOTSTRAP_SERVERS"
        );
    }
}
