//! The one place where librdkafka settings are decided.
//!
//! Every client the services create gets its configuration from [`KafkaSettings`]: the broker
//! list, the operator's own `KAFKA_*` properties (SASL, SSL, tuning), and the role defaults
//! below. Settings that the delivery guarantees depend on are *fixed*: an operator variable
//! that tries to change one stops the service at start, because a silently non-idempotent
//! producer or an auto-storing consumer would break at-least-once without anyone noticing.
//!
//! Variable names map to properties the way Confluent's images do it: strip `KAFKA_`, lower-case,
//! then `_` → `.`, `__` → `_`, `___` → `-` (`KAFKA_SASL_PASSWORD` → `sasl.password`).
//! Values of properties that may hold secrets are never logged or echoed in errors.

use crate::config::{COMMON_VARIABLES, ConfigError, entry};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PREFIX: &str = "KAFKA_";
const BOOTSTRAP: &str = "bootstrap.servers";

/// A setting the service fixes, with why, so the refusal can say it.
struct Fixed {
    property: &'static str,
    value: &'static str,
    why: &'static str,
}

const PRODUCER_FIXED: &[Fixed] = &[
    Fixed {
        property: "enable.idempotence",
        value: "true",
        why: "retries must not duplicate or reorder orders",
    },
    Fixed {
        property: "acks",
        value: "all",
        why: "an order counts as delivered only once every in-sync replica has it",
    },
];

const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    // A short linger batches bursts without adding visible latency at demo rates.
    ("linger.ms", "10"),
    ("compression.type", "lz4"),
];

const CONSUMER_FIXED: &[Fixed] = &[Fixed {
    property: "enable.auto.offset.store",
    value: "false",
    why: "an offset may be stored only after its order is processed (at-least-once)",
}];

const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    // The background commit only commits offsets the tracker stored explicitly, so it is safe;
    // a short interval keeps the replay after a crash small.
    ("enable.auto.commit", "true"),
    ("auto.commit.interval.ms", "1000"),
    // A new group reads the topic from the start rather than only new orders.
    ("auto.offset.reset", "earliest"),
    // Incremental rebalances: scaling the group moves only the partitions that must move.
    ("partition.assignment.strategy", "cooperative-sticky"),
];

/// Kafka client settings from the environment.
#[derive(Clone)]
pub struct KafkaSettings {
    /// property → (value, the variable it came from)
    properties: BTreeMap<String, (String, String)>,
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Converts the part after `KAFKA_` of a variable name into a librdkafka property name.
pub fn property_name(variable_suffix: &str) -> String {
    let mut name = String::with_capacity(variable_suffix.len());
    let mut underscores = 0;
    let flush = |name: &mut String, count: usize| match count {
        0 => {}
        1 => name.push('.'),
        2 => name.push('_'),
        _ => name.push('-'),
    };
    for c in variable_suffix.chars() {
        if c == '_' {
            underscores += 1;
        } else {
            flush(&mut name, underscores);
            underscores = 0;
            name.push(c.to_ascii_lowercase());
        }
    }
    flush(&mut name, underscores);
    name
}

/// Whether a property's value may be a secret (passwords, keys, tokens, JAAS/OAuth configs).
pub fn is_secret(property: &str) -> bool {
    const MARKERS: &[&str] = &[
        "password",
        "secret",
        "key",
        "token",
        "jaas",
        "oauthbearer.config",
        "credential",
    ];
    MARKERS.iter().any(|marker| property.contains(marker))
}

impl KafkaSettings {
    /// Reads `KAFKA_BOOTSTRAP_SERVERS` (default `localhost:9092`) and every other `KAFKA_*`.
    pub fn from_vars(vars: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut properties = BTreeMap::new();
        for (variable, value) in vars {
            let Some(suffix) = variable.strip_prefix(PREFIX) else {
                continue;
            };
            if suffix.is_empty() {
                continue;
            }
            properties.insert(property_name(suffix), (value.clone(), variable.clone()));
        }
        let bootstrap = properties.entry(BOOTSTRAP.to_string()).or_insert_with(|| {
            (
                "localhost:9092".to_string(),
                "KAFKA_BOOTSTRAP_SERVERS".to_string(),
            )
        });
        let brokers: Vec<&str> = bootstrap.0.split(',').map(str::trim).collect();
        let well_formed = |broker: &&str| {
            broker
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        };
        if brokers.is_empty() || !brokers.iter().all(well_formed) {
            return Err(ConfigError::invalid(
                &entry(COMMON_VARIABLES, "KAFKA_BOOTSTRAP_SERVERS"),
                bootstrap.0.clone(),
            ));
        }
        Ok(KafkaSettings { properties })
    }

    /// The broker list.
    pub fn bootstrap_servers(&self) -> &str {
        self.properties
            .get(BOOTSTRAP)
            .map_or("localhost:9092", |(value, _)| value)
    }

    /// The settings as `property=value` pairs with secrets replaced by `[redacted]`, for logs.
    pub fn describe(&self) -> String {
        self.properties
            .iter()
            .map(|(property, (value, _))| {
                if is_secret(property) {
                    format!("{property}=[redacted]")
                } else {
                    format!("{property}={value}")
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// An idempotent producer: `acks=all`, `enable.idempotence=true`, lz4, 10 ms linger.
    pub fn producer(&self, client_id: &str) -> Result<ClientConfig, ConfigError> {
        self.build(client_id, PRODUCER_DEFAULTS, PRODUCER_FIXED)
    }

    /// A group consumer that never stores an offset by itself (`enable.auto.offset.store=false`)
    /// and uses cooperative-sticky assignment. `group.id` comes from the service's own
    /// `GROUP_ID`, never from `KAFKA_GROUP_ID`.
    pub fn consumer(&self, client_id: &str, group_id: &str) -> Result<ClientConfig, ConfigError> {
        if let Some((_, variable)) = self.properties.get("group.id") {
            return Err(ConfigError::Rejected {
                variable: variable.clone(),
                reason: "set the consumer group with GROUP_ID instead".into(),
            });
        }
        let mut config = self.build(client_id, CONSUMER_DEFAULTS, CONSUMER_FIXED)?;
        config.set("group.id", group_id);
        Ok(config)
    }

    /// An admin client.
    pub fn admin(&self, client_id: &str) -> Result<ClientConfig, ConfigError> {
        self.build(client_id, &[], &[])
    }

    fn build(
        &self,
        client_id: &str,
        defaults: &[(&str, &str)],
        fixed: &[Fixed],
    ) -> Result<ClientConfig, ConfigError> {
        let mut config = ClientConfig::new();
        config.set("client.id", client_id);
        for (property, value) in defaults {
            config.set(*property, *value);
        }
        for (property, (value, variable)) in &self.properties {
            if let Some(rule) = fixed.iter().find(|rule| rule.property == property)
                && !value.trim().eq_ignore_ascii_case(rule.value)
            {
                return Err(ConfigError::Rejected {
                    variable: variable.clone(),
                    reason: format!(
                        "{} is fixed to {} because {}",
                        rule.property, rule.value, rule.why
                    ),
                });
            }
            config.set(property, value);
        }
        for rule in fixed {
            config.set(rule.property, rule.value);
        }
        Ok(config)
    }

    /// Asks librdkafka to parse `config` without connecting, so that an unknown property or a
    /// refused value stops the service at start, naming its variable.
    pub fn check(&self, config: &ClientConfig) -> Result<(), ConfigError> {
        match config.create_native_config() {
            Ok(_) => Ok(()),
            Err(err) => Err(self
                .explain(err)
                .unwrap_or_else(|err| ConfigError::Rejected {
                    variable: "KAFKA_*".into(),
                    reason: err.to_string(),
                })),
        }
    }

    /// Turns librdkafka's refusal of a configuration into an error naming the variable to fix.
    /// Other errors come back unchanged.
    pub fn explain(&self, err: KafkaError) -> Result<ConfigError, KafkaError> {
        let KafkaError::ClientConfig(_, description, property, _) = &err else {
            return Err(err);
        };
        let variable = self
            .properties
            .get(property)
            .map_or_else(|| format!("(the {property} property)"), |(_, v)| v.clone());
        let reason = if is_secret(property) {
            format!("librdkafka refused the value of {property}")
        } else {
            description.clone()
        };
        Ok(ConfigError::Rejected { variable, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::vars;

    #[test]
    fn variable_names_map_to_librdkafka_properties() {
        assert_eq!(property_name("BOOTSTRAP_SERVERS"), "bootstrap.servers");
        assert_eq!(property_name("SASL_PASSWORD"), "sasl.password");
        assert_eq!(
            property_name("SOME__UNDERSCORED_NAME"),
            "some_underscored.name"
        );
        assert_eq!(property_name("CLIENT___RACK"), "client-rack");
    }

    #[test]
    fn the_broker_list_defaults_to_localhost() {
        let settings = KafkaSettings::from_vars(&[]).expect("defaults");
        assert_eq!(settings.bootstrap_servers(), "localhost:9092");
    }

    #[test]
    fn an_empty_or_malformed_broker_list_is_refused() {
        for bad in ["", " ", "kafka", "kafka:port", "a:1,,b:2"] {
            let err = KafkaSettings::from_vars(&vars(&[("KAFKA_BOOTSTRAP_SERVERS", bad)]))
                .expect_err(bad);
            assert_eq!(err.variable(), "KAFKA_BOOTSTRAP_SERVERS", "{bad}");
            assert!(err.to_string().contains("host:port"), "{err}");
        }
    }

    #[test]
    fn operator_properties_reach_the_client_config() {
        let settings = KafkaSettings::from_vars(&vars(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "kafka:29092"),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_LINGER_MS", "50"),
        ]))
        .expect("ok");
        let config = settings.producer("test").expect("producer");
        assert_eq!(config.get("bootstrap.servers"), Some("kafka:29092"));
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("linger.ms"), Some("50"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
    }

    #[test]
    fn the_consumer_never_stores_offsets_by_itself() {
        let settings = KafkaSettings::from_vars(&[]).expect("ok");
        let config = settings.consumer("tracker", "group-a").expect("consumer");
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(config.get("group.id"), Some("group-a"));
        assert_eq!(
            config.get("partition.assignment.strategy"),
            Some("cooperative-sticky")
        );
    }

    #[test]
    fn a_variable_that_would_weaken_delivery_guarantees_is_refused() {
        let settings =
            KafkaSettings::from_vars(&vars(&[("KAFKA_ENABLE_IDEMPOTENCE", "false")])).expect("");
        let err = settings.producer("p").expect_err("must refuse");
        assert_eq!(err.variable(), "KAFKA_ENABLE_IDEMPOTENCE");
        let settings = KafkaSettings::from_vars(&vars(&[("KAFKA_ACKS", "1")])).expect("");
        assert!(settings.producer("p").is_err());
        let settings =
            KafkaSettings::from_vars(&vars(&[("KAFKA_ENABLE_AUTO_OFFSET_STORE", "true")]))
                .expect("");
        assert!(settings.consumer("c", "g").is_err());
        let settings = KafkaSettings::from_vars(&vars(&[("KAFKA_ACKS", "ALL")])).expect("");
        assert!(settings.producer("p").is_ok(), "the same value is fine");
    }

    #[test]
    fn the_group_comes_from_group_id_only() {
        let settings = KafkaSettings::from_vars(&vars(&[("KAFKA_GROUP_ID", "x")])).expect("");
        assert_eq!(
            settings.consumer("c", "g").expect_err("").variable(),
            "KAFKA_GROUP_ID"
        );
    }

    #[test]
    fn secrets_are_redacted_when_described() {
        let settings = KafkaSettings::from_vars(&vars(&[
            ("KAFKA_SASL_USERNAME", "alice"),
            ("KAFKA_SASL_PASSWORD", "hunter2"),
            ("KAFKA_SSL_KEY_PASSWORD", "s3cret"),
        ]))
        .expect("ok");
        let described = format!("{settings:?}");
        assert!(described.contains("sasl.username=alice"), "{described}");
        assert!(!described.contains("hunter2"), "{described}");
        assert!(!described.contains("s3cret"), "{described}");
        assert!(
            described.contains("sasl.password=[redacted]"),
            "{described}"
        );
    }

    #[test]
    fn an_unknown_property_is_explained_with_its_variable() {
        use rdkafka::producer::BaseProducer;
        let settings =
            KafkaSettings::from_vars(&vars(&[("KAFKA_NOT_A_REAL_SETTING", "1")])).expect("");
        let Err(err) = settings
            .producer("p")
            .expect("built")
            .create::<BaseProducer>()
        else {
            panic!("librdkafka must refuse an unknown property");
        };
        let explained = settings.explain(err).expect("a config error");
        assert_eq!(explained.variable(), "KAFKA_NOT_A_REAL_SETTING");
    }

    #[test]
    fn a_refused_secret_value_is_not_echoed() {
        use rdkafka::types::RDKafkaConfRes;
        let settings =
            KafkaSettings::from_vars(&vars(&[("KAFKA_SASL_PASSWORD", "topsecret")])).expect("");
        let refusal = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"topsecret\" for configuration property \"sasl.password\"".into(),
            "sasl.password".into(),
            "topsecret".into(),
        );
        let explained = settings.explain(refusal).expect("a config error");
        assert_eq!(explained.variable(), "KAFKA_SASL_PASSWORD");
        assert!(!explained.to_string().contains("topsecret"), "{explained}");
    }
}

/// Logs client-level errors (broker down, authentication failed…) without flooding: librdkafka
/// reports the same errors on every reconnect attempt, so each kind of error is logged at most
/// once per [`ErrorLog::REPEAT_AFTER`], with how many repeats were held back.
#[derive(Debug, Default)]
pub struct ErrorLog {
    /// error text → (when last logged, repeats held back since)
    seen: Mutex<std::collections::HashMap<String, (Instant, u64)>>,
}

impl ErrorLog {
    /// How long a repeated error stays quiet.
    pub const REPEAT_AFTER: Duration = Duration::from_secs(30);

    /// Logs `error` unless the same error was logged within [`Self::REPEAT_AFTER`].
    pub fn error(&self, error: &KafkaError, reason: &str) {
        // Keyed on the error alone: the reason text varies between attempts ("0/1 brokers are
        // down", "1/1 brokers are down") for what is one condition.
        let key = error.to_string();
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        let held_back = match seen.get_mut(&key) {
            Some((logged, repeats)) if logged.elapsed() < Self::REPEAT_AFTER => {
                *repeats += 1;
                return;
            }
            Some((_, repeats)) => *repeats,
            None => 0,
        };
        tracing::error!(
            target: "librdkafka",
            repeats_held_back = held_back,
            "kafka client error: {key}: {reason}"
        );
        seen.insert(key, (Instant::now(), 0));
    }
}

/// A client context that only throttles error logs, for clients with no callbacks of their own
/// (the admin client, the dead-letter producer).
#[derive(Debug, Default)]
pub struct QuietContext {
    errors: ErrorLog,
}

impl ClientContext for QuietContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.error(&error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for QuietContext {}
