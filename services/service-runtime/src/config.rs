//! Configuration from environment variables, and nothing else.
//!
//! Each service declares one `serde` struct whose fields are its variables (envy maps
//! `orders_per_second` to `ORDERS_PER_SECOND`), with defaults in the type, plus a table of
//! [`Variable`]s saying what each accepts. Loading is a pure function of the variables handed
//! in, so tests never have to mutate the process environment.
//!
//! A wrong value must stop the service at start with a single line that names the variable and
//! what it accepts: [`ConfigError`]'s `Display` is that line, and `main` prints it and exits
//! with [`EXIT_CONFIG`].

use serde::de::DeserializeOwned;
use std::ffi::OsString;

/// The exit code for a configuration error (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: u8 = 78;

/// One documented environment variable: the README lists exactly these.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    pub name: &'static str,
    pub default: &'static str,
    pub accepts: &'static str,
}

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A variable has a value outside what it accepts.
    #[error("invalid configuration: {variable}={value:?} is not accepted; expected {accepts}")]
    Invalid {
        variable: String,
        value: String,
        accepts: String,
    },
    /// A variable is wrong in a way where echoing the value could leak a secret.
    #[error("invalid configuration: {variable} is not accepted: {reason}")]
    Rejected { variable: String, reason: String },
}

impl ConfigError {
    /// A value outside what `variable` accepts, with the text from its [`Variable`] entry.
    pub fn invalid(variable: &Variable, value: impl Into<String>) -> Self {
        ConfigError::Invalid {
            variable: variable.name.to_string(),
            value: value.into(),
            accepts: variable.accepts.to_string(),
        }
    }

    /// The variable the error is about.
    pub fn variable(&self) -> &str {
        match self {
            ConfigError::Invalid { variable, .. } | ConfigError::Rejected { variable, .. } => {
                variable
            }
        }
    }
}

/// The process environment as UTF-8 pairs. Variables that are not UTF-8 cannot be ours (all our
/// names are ASCII) and are skipped rather than panicking as `std::env::vars` would.
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value): (OsString, OsString)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        })
        .collect()
}

/// Owned `(name, value)` pairs from literals: the form every `from_vars` takes, for tests and
/// for callers that assemble a configuration in code.
pub fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// Deserializes `T` from `vars` with envy, turning envy's parse errors into a [`ConfigError`]
/// that names the variable and quotes its entry in `table`.
pub fn load<T: DeserializeOwned>(
    vars: &[(String, String)],
    table: &[Variable],
) -> Result<T, ConfigError> {
    envy::from_iter::<_, T>(vars.iter().cloned()).map_err(|err| from_envy_error(err, table))
}

fn from_envy_error(err: envy::Error, table: &[Variable]) -> ConfigError {
    match err {
        envy::Error::MissingValue(field) => {
            let name = field.to_ascii_uppercase();
            let accepts = lookup(table, &name).map_or("a value", |v| v.accepts);
            ConfigError::Rejected {
                reason: format!("it must be set; expected {accepts}"),
                variable: name,
            }
        }
        // envy words its parse errors as "<why> while parsing value '<v>' provided by <VAR>".
        envy::Error::Custom(message) => match message.rsplit_once(" provided by ") {
            Some((head, name)) => {
                let value = head
                    .split_once(" while parsing value '")
                    .map(|(_, rest)| rest.strip_suffix('\'').unwrap_or(rest))
                    .unwrap_or_default();
                match lookup(table, name) {
                    Some(variable) => ConfigError::invalid(variable, value),
                    None => ConfigError::Rejected {
                        variable: name.to_string(),
                        reason: message.clone(),
                    },
                }
            }
            None => ConfigError::Rejected {
                variable: "environment".into(),
                reason: message,
            },
        },
    }
}

/// The entry for `name` in `table`.
pub fn lookup<'t>(table: &'t [Variable], name: &str) -> Option<&'t Variable> {
    table.iter().find(|variable| variable.name == name)
}

/// Returns the entry for `name`; a missing entry is a programming error caught by every test
/// that loads the table, so it falls back to a generic description rather than panicking.
pub fn entry(table: &[Variable], name: &'static str) -> Variable {
    lookup(table, name).copied().unwrap_or(Variable {
        name,
        default: "",
        accepts: "a valid value",
    })
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event, for `docker compose logs`.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Settings every service shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonConfig {
    pub log_format: LogFormat,
    pub orders_topic: String,
    pub dead_letter_topic: String,
}

#[derive(serde::Deserialize)]
struct RawCommon {
    #[serde(default = "default_log_format")]
    log_format: String,
    #[serde(default = "default_orders_topic")]
    orders_topic: String,
    #[serde(default = "default_dead_letter_topic")]
    dead_letter_topic: String,
}

fn default_log_format() -> String {
    "text".into()
}
fn default_orders_topic() -> String {
    "orders".into()
}
fn default_dead_letter_topic() -> String {
    "orders.dlq".into()
}

/// The variables of [`CommonConfig`] plus the Kafka ones of [`crate::kafka::KafkaSettings`].
pub const COMMON_VARIABLES: &[Variable] = &[
    Variable {
        name: "KAFKA_BOOTSTRAP_SERVERS",
        default: "localhost:9092",
        accepts: "a comma-separated list of host:port brokers, e.g. kafka:29092",
    },
    Variable {
        name: "KAFKA_*",
        default: "(none)",
        accepts: "any librdkafka client property, upper-cased with `.` written `_` (KAFKA_SECURITY_PROTOCOL=SASL_SSL sets security.protocol)",
    },
    Variable {
        name: "LOG_FORMAT",
        default: "text",
        accepts: "`text` (readable lines) or `json` (one JSON object per line)",
    },
    Variable {
        name: "RUST_LOG",
        default: "info",
        accepts: "a tracing filter such as `info` or `info,order_tracker::orders=warn`",
    },
    Variable {
        name: "ORDERS_TOPIC",
        default: "orders",
        accepts: "a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -",
    },
    Variable {
        name: "DEAD_LETTER_TOPIC",
        default: "orders.dlq",
        accepts: "a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -, not the orders topic",
    },
];

impl CommonConfig {
    pub fn from_vars(vars: &[(String, String)]) -> Result<Self, ConfigError> {
        let raw: RawCommon = load(vars, COMMON_VARIABLES)?;
        let log_format = match raw.log_format.trim().to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                return Err(ConfigError::invalid(
                    &entry(COMMON_VARIABLES, "LOG_FORMAT"),
                    raw.log_format,
                ));
            }
        };
        let orders_topic = check_topic_name(&raw.orders_topic, "ORDERS_TOPIC")?;
        let dead_letter_topic = check_topic_name(&raw.dead_letter_topic, "DEAD_LETTER_TOPIC")?;
        if orders_topic == dead_letter_topic {
            return Err(ConfigError::invalid(
                &entry(COMMON_VARIABLES, "DEAD_LETTER_TOPIC"),
                raw.dead_letter_topic,
            ));
        }
        Ok(CommonConfig {
            log_format,
            orders_topic,
            dead_letter_topic,
        })
    }
}

fn check_topic_name(name: &str, variable: &'static str) -> Result<String, ConfigError> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty()
        || name.len() > 249
        || !name.chars().all(legal)
        || name == "."
        || name == ".."
    {
        return Err(ConfigError::invalid(
            &entry(COMMON_VARIABLES, variable),
            name,
        ));
    }
    Ok(name.to_string())
}

/// Parses a whole-seconds duration field that must be at least one second.
pub fn positive_secs(
    value: u64,
    table: &[Variable],
    name: &'static str,
) -> Result<std::time::Duration, ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(&entry(table, name), "0"));
    }
    Ok(std::time::Duration::from_secs(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_defaults_apply_when_nothing_is_set() {
        let config = CommonConfig::from_vars(&[]).expect("defaults");
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.orders_topic, "orders");
        assert_eq!(config.dead_letter_topic, "orders.dlq");
    }

    #[test]
    fn log_format_accepts_json_in_any_case() {
        let config = CommonConfig::from_vars(&vars(&[("LOG_FORMAT", "JSON")])).expect("json");
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn an_unknown_log_format_names_the_variable_and_the_choices() {
        let err = CommonConfig::from_vars(&vars(&[("LOG_FORMAT", "xml")])).expect_err("xml");
        let line = err.to_string();
        assert!(line.contains("LOG_FORMAT=\"xml\""), "{line}");
        assert!(line.contains("`text`") && line.contains("`json`"), "{line}");
    }

    #[test]
    fn an_illegal_topic_name_is_refused() {
        let err = CommonConfig::from_vars(&vars(&[("ORDERS_TOPIC", "my orders")])).expect_err("");
        assert_eq!(err.variable(), "ORDERS_TOPIC");
    }

    #[test]
    fn the_dead_letter_topic_cannot_be_the_orders_topic() {
        let err = CommonConfig::from_vars(&vars(&[
            ("ORDERS_TOPIC", "orders"),
            ("DEAD_LETTER_TOPIC", "orders"),
        ]))
        .expect_err("same topic");
        assert_eq!(err.variable(), "DEAD_LETTER_TOPIC");
    }

    #[derive(serde::Deserialize, Debug)]
    struct Numbers {
        #[serde(default)]
        rate: f64,
        #[serde(default)]
        count: Option<u64>,
    }

    const NUMBER_TABLE: &[Variable] = &[
        Variable {
            name: "RATE",
            default: "0",
            accepts: "a number",
        },
        Variable {
            name: "COUNT",
            default: "(unset)",
            accepts: "a whole number",
        },
    ];

    #[test]
    fn envy_parse_errors_become_one_line_naming_the_variable_and_value() {
        let err = load::<Numbers>(&vars(&[("RATE", "fast")]), NUMBER_TABLE).expect_err("");
        assert_eq!(
            err.to_string(),
            "invalid configuration: RATE=\"fast\" is not accepted; expected a number"
        );
        let err = load::<Numbers>(&vars(&[("COUNT", "-5")]), NUMBER_TABLE).expect_err("");
        assert_eq!(
            err.to_string(),
            "invalid configuration: COUNT=\"-5\" is not accepted; expected a whole number"
        );
    }

    #[test]
    fn numbers_parse_and_unset_options_stay_unset() {
        let numbers = load::<Numbers>(&vars(&[("RATE", "2.5")]), NUMBER_TABLE).expect("ok");
        assert_eq!(numbers.rate, 2.5);
        assert_eq!(numbers.count, None);
    }

    #[test]
    fn zero_seconds_is_refused_where_a_period_is_needed() {
        let table = &[Variable {
            name: "STATS_INTERVAL_SECS",
            default: "10",
            accepts: "a whole number of seconds, at least 1",
        }];
        assert!(positive_secs(0, table, "STATS_INTERVAL_SECS").is_err());
        assert_eq!(
            positive_secs(3, table, "STATS_INTERVAL_SECS").expect("3 s"),
            std::time::Duration::from_secs(3)
        );
    }
}
