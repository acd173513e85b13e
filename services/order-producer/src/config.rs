//! `order-producer` settings, from environment variables only. Each variable is declared once
//! below (or in `service_runtime::config` when other services read it too); see that module's
//! header for how to add one.

use service_runtime::config::{
    COMMON_VARIABLES, CommonConfig, ConfigError, Env, HEALTH_PORT, MAX_ORDER_BYTES,
    STATS_INTERVAL_SECS, Setting, Variables, rule,
};
use service_runtime::kafka::{ClientSettings, KafkaSettings};
use std::time::Duration;

/// `None` means as fast as possible. A rate is bounded so that one order's interval (1/rate)
/// is a time the generator can wait for: from a microsecond to about 17 minutes.
pub const ORDERS_PER_SECOND: Setting<Option<f64>> = Setting {
    name: "ORDERS_PER_SECOND",
    default: Some("5"),
    accepts: "0 (as fast as possible) or a rate from 0.001 to 1000000 orders/s; fractions allowed (0.5 = one order every 2 s)",
    parse: |text| {
        let rate = rule::within(text, 0.0, MAX_RATE)?;
        if rate == 0.0 {
            Some(None)
        } else {
            (rate >= MIN_RATE).then_some(Some(rate))
        }
    },
};

/// The slowest and the fastest paced rate, in orders per second (see [`ORDERS_PER_SECOND`]).
const MIN_RATE: f64 = 0.001;
const MAX_RATE: f64 = 1_000_000.0;

pub const ORDER_COUNT: Setting<u64> = Setting {
    name: "ORDER_COUNT",
    default: None,
    accepts: "a whole number >= 1: produce that many orders, flush, and exit (1 if any delivery failed); unset: run until stopped",
    parse: |text| rule::within(text, 1, u64::MAX),
};

pub const CUSTOMER_COUNT: Setting<u32> = Setting {
    name: "CUSTOMER_COUNT",
    default: Some("300"),
    accepts: "a whole number from 1 to 1000000: how many distinct customers place orders",
    parse: |text| rule::within(text, 1, 1_000_000),
};

pub const FLUSH_TIMEOUT_SECS: Setting<Duration> = Setting {
    name: "FLUSH_TIMEOUT_SECS",
    default: Some("10"),
    accepts: "a whole number of seconds >= 1 to wait for outstanding deliveries at shutdown",
    parse: rule::positive_secs,
};

// --- HTTP intake (POST /orders), see `crate::intake` ---

/// `None` (unset) means no HTTP intake: it has no authentication, so it is opened on purpose.
pub const INTAKE_PORT: Setting<u16> = Setting {
    name: "INTAKE_PORT",
    default: None,
    accepts: "a TCP port from 1 to 65535, not HEALTH_PORT, for POST /orders and GET /openapi.json (no authentication); unset: no HTTP intake",
    parse: |text| rule::within(text, 1, u16::MAX),
};

pub const INTAKE_ACK_TIMEOUT_MS: Setting<Duration> = Setting {
    name: "INTAKE_ACK_TIMEOUT_MS",
    default: Some("5000"),
    accepts: "a whole number of milliseconds from 1 to 300000: how long a POST /orders waits for the broker's acknowledgement before answering 503",
    parse: |text| rule::within(text, 1, 300_000).map(Duration::from_millis),
};

pub const GENERATE_ORDERS: Setting<bool> = Setting {
    name: "GENERATE_ORDERS",
    default: Some("true"),
    accepts: "`true` or `false`; `false` turns the generator off so that only orders posted to the intake are produced (needs INTAKE_PORT)",
    parse: |text| match text {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    },
};

/// The producer's own variables, in README order (the common ones: [`COMMON_VARIABLES`]).
pub const VARIABLES: Variables = &[
    &ORDERS_PER_SECOND,
    &ORDER_COUNT,
    &CUSTOMER_COUNT,
    &STATS_INTERVAL_SECS,
    &FLUSH_TIMEOUT_SECS,
    &HEALTH_PORT,
    &INTAKE_PORT,
    &INTAKE_ACK_TIMEOUT_MS,
    &GENERATE_ORDERS,
    &MAX_ORDER_BYTES,
];

/// The producer's Kafka `client.id`.
pub const CLIENT_ID: &str = "order-producer";

/// Everything the producer needs, validated.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub common: CommonConfig,
    pub kafka: KafkaSettings,
    /// The order producer's client configuration, built and checked once.
    pub producer: ClientSettings,
    /// `None` means as fast as possible.
    pub orders_per_second: Option<f64>,
    /// `None` means until stopped.
    pub order_count: Option<u64>,
    pub customer_count: u32,
    pub stats_interval: Duration,
    pub flush_timeout: Duration,
    pub health_port: u16,
    /// `INTAKE_PORT`; `None` means no HTTP intake.
    pub intake_port: Option<u16>,
    /// `INTAKE_ACK_TIMEOUT_MS`: the longest a POST waits for the broker before answering 503.
    pub intake_ack_timeout: Duration,
    /// `GENERATE_ORDERS`: whether the generator runs (false: HTTP orders only).
    pub generate_orders: bool,
    /// `MAX_ORDER_BYTES`: the largest order the intake accepts; the tracker reads the same
    /// declaration and dead-letters larger messages.
    pub max_order_bytes: usize,
}

impl ProducerConfig {
    pub fn from_vars(vars: &[(String, String)]) -> Result<Self, ConfigError> {
        let env = Env::new(vars, &[COMMON_VARIABLES, VARIABLES]);
        let common = CommonConfig::from_env(&env)?;
        let kafka = KafkaSettings::from_env(&env)?;
        let producer = kafka.producer(CLIENT_ID)?;
        let config = ProducerConfig {
            common,
            kafka,
            producer,
            orders_per_second: env.read(&ORDERS_PER_SECOND)?,
            order_count: env.read_optional(&ORDER_COUNT)?,
            customer_count: env.read(&CUSTOMER_COUNT)?,
            stats_interval: env.read(&STATS_INTERVAL_SECS)?,
            flush_timeout: env.read(&FLUSH_TIMEOUT_SECS)?,
            health_port: env.read(&HEALTH_PORT)?,
            intake_port: env.read_optional(&INTAKE_PORT)?,
            intake_ack_timeout: env.read(&INTAKE_ACK_TIMEOUT_MS)?,
            generate_orders: env.read(&GENERATE_ORDERS)?,
            max_order_bytes: env.read(&MAX_ORDER_BYTES)?,
        };
        config.check_intake(&env)?;
        Ok(config)
    }

    /// The rules that tie the intake's variables to the others'.
    fn check_intake(&self, env: &Env) -> Result<(), ConfigError> {
        if let Some(port) = self.intake_port
            && port == self.health_port
        {
            return Err(ConfigError::Rejected {
                variable: INTAKE_PORT.name.into(),
                reason: format!("{port} is HEALTH_PORT too; the intake needs its own port"),
            });
        }
        if !self.generate_orders {
            if self.intake_port.is_none() {
                return Err(ConfigError::Rejected {
                    variable: GENERATE_ORDERS.name.into(),
                    reason: "with the generator off and no INTAKE_PORT the producer would take \
                             no orders at all; set INTAKE_PORT too"
                        .into(),
                });
            }
            if env.raw(ORDER_COUNT.name).is_some() {
                return Err(ConfigError::Rejected {
                    variable: ORDER_COUNT.name.into(),
                    reason: "it counts generated orders, and GENERATE_ORDERS=false turns the \
                             generator off; unset one of them"
                        .into(),
                });
            }
        }
        Ok(())
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
        assert!(
            err.to_string()
                .contains("0 (as fast as possible) or a rate"),
            "{err}"
        );
    }

    #[test]
    fn a_rate_too_slow_or_too_fast_to_pace_is_refused_and_the_bounds_are_accepted() {
        for rate in ["0.0009", "1e-320", "1000001", "1e300"] {
            assert_eq!(
                error_for(&[("ORDERS_PER_SECOND", rate)]).variable(),
                "ORDERS_PER_SECOND",
                "{rate}"
            );
        }
        for (rate, expected) in [("0.001", 0.001), ("1000000", 1_000_000.0)] {
            let config =
                ProducerConfig::from_vars(&vars(&[("ORDERS_PER_SECOND", rate)])).expect("accepted");
            assert_eq!(config.orders_per_second, Some(expected));
        }
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
    fn intake_settings_are_checked() {
        assert_eq!(error_for(&[("INTAKE_PORT", "0")]).variable(), "INTAKE_PORT");
        assert_eq!(
            error_for(&[("INTAKE_PORT", "8080"), ("HEALTH_PORT", "8080")]).variable(),
            "INTAKE_PORT"
        );
        assert_eq!(
            error_for(&[("INTAKE_ACK_TIMEOUT_MS", "0")]).variable(),
            "INTAKE_ACK_TIMEOUT_MS"
        );
        assert_eq!(
            error_for(&[("INTAKE_ACK_TIMEOUT_MS", "300001")]).variable(),
            "INTAKE_ACK_TIMEOUT_MS"
        );
        assert_eq!(
            error_for(&[("MAX_ORDER_BYTES", "0")]).variable(),
            "MAX_ORDER_BYTES"
        );
        assert_eq!(
            error_for(&[("GENERATE_ORDERS", "off")]).variable(),
            "GENERATE_ORDERS"
        );
        let config = ProducerConfig::from_vars(&vars(&[("INTAKE_PORT", "8081")])).expect("8081");
        assert_eq!(config.intake_port, Some(8081));
        assert!(config.generate_orders);
        assert_eq!(config.intake_ack_timeout, Duration::from_secs(5));
    }

    #[test]
    fn a_producer_with_nothing_to_produce_is_refused() {
        let err = error_for(&[("GENERATE_ORDERS", "false")]);
        assert_eq!(err.variable(), "GENERATE_ORDERS");
        assert!(err.to_string().contains("INTAKE_PORT"), "{err}");
        let err = error_for(&[
            ("GENERATE_ORDERS", "false"),
            ("INTAKE_PORT", "8081"),
            ("ORDER_COUNT", "10"),
        ]);
        assert_eq!(err.variable(), "ORDER_COUNT");
    }

    #[test]
    fn an_empty_bootstrap_list_is_refused() {
        assert_eq!(
            error_for(&[("KAFKA_BOOTSTRAP_SERVERS", "")]).variable(),
            "KAFKA_BOOTSTRAP_SERVERS"
        );
    }
}
