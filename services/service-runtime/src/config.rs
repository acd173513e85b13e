//! Configuration from environment variables, and nothing else: each setting declared once.
//!
//! A [`Setting`] is the whole truth about one variable: its name, its default (written as the
//! text a user would set, and parsed by the same rule as a user's value, so the default the code
//! uses is the one documented), what it accepts (one sentence, shown in the error line and in
//! the README), and the rule that turns text into a typed value (`None` = refused). There is no
//! other place that validates a single variable. Parsing, the one-line error, the README tables
//! and `deploy/example.env` follow from the declarations: `pipeline-tests --test readme`
//! compares the README tables and `example.env` with them exactly, and `--test bad_config` starts
//! each binary with a refused value of every declared variable.
//!
//! A wrong value must stop the service at start with a single line that names the variable and
//! what it accepts: [`ConfigError`]'s `Display` is that line, and `main` prints it and exits
//! with [`EXIT_CONFIG`]. Loading is a pure function of the variables handed in, so tests never
//! have to mutate the process environment.
//!
//! # Adding a variable
//! 1. Declare it as a `pub const NAME: Setting<T>` in the config module of the service that
//!    reads it (or here, if several services read it: [`HEALTH_PORT`], [`MAX_ORDER_BYTES`]), with
//!    a parse rule built from the helpers in [`rule`] where one fits.
//! 2. Add it to that service's `VARIABLES` list (the order there is the README's order).
//! 3. Read it in the service's `from_vars` with `env.read(&NAME)?` (or `env.read_optional` when
//!    unset means something of its own). Reading a setting that no list declares is refused at
//!    start, so every test that loads a configuration catches a forgotten step 2.
//! 4. Run `cargo test -p pipeline-tests --test readme`: it prints the README rows and the
//!    `example.env` line to paste. Add the variable to `docker-compose.yml` if compose users
//!    should be able to set it (`deploy/lint.sh` then wants it in `example.env`).
//!
//! Rules that involve two variables (the dead-letter topic differs from the orders topic) are
//! checked in the `from_vars` that reads both, and name the variable to change.

use crate::kafka;
use std::ffi::OsString;
use std::str::FromStr;
use std::time::Duration;

/// The exit code for a configuration error (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: u8 = 78;

/// A documented environment variable, whatever the type of its value: what the README lists,
/// `example.env` shows and `bad_config` tries.
pub trait Variable: Sync + std::fmt::Debug {
    /// The variable's name, e.g. `ORDERS_PER_SECOND`.
    fn name(&self) -> &'static str;
    /// The value used when the variable is unset, as a user would write it; `None` when being
    /// unset means something of its own (said in [`Variable::accepts`]).
    fn default(&self) -> Option<&'static str>;
    /// What it accepts and what it means: the end of the error line and the README's cell.
    fn accepts(&self) -> &'static str;
    /// Whether `value` passes the variable's own rule. (`KAFKA_*` properties pass any value
    /// here: librdkafka checks them when the client configuration is built.)
    fn accepts_value(&self, value: &str) -> bool;
}

/// One typed setting. See the module header for how to add one.
#[derive(Clone, Copy)]
pub struct Setting<T: 'static> {
    pub name: &'static str,
    /// Parsed with `parse` like any user value; `None`: unset means something (see `accepts`).
    pub default: Option<&'static str>,
    pub accepts: &'static str,
    /// The rule: the typed value, or `None` when the text is not accepted.
    pub parse: fn(&str) -> Option<T>,
}

impl<T: 'static> std::fmt::Debug for Setting<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl<T: 'static> Variable for Setting<T> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn default(&self) -> Option<&'static str> {
        self.default
    }
    fn accepts(&self) -> &'static str {
        self.accepts
    }
    fn accepts_value(&self, value: &str) -> bool {
        (self.parse)(value).is_some()
    }
}

impl<T: 'static> Setting<T> {
    /// The error line for `value`.
    pub fn refuse(&self, value: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            variable: self.name.to_string(),
            value: value.into(),
            accepts: self.accepts.to_string(),
        }
    }

    fn parse_or_refuse(&self, value: &str) -> Result<T, ConfigError> {
        (self.parse)(value).ok_or_else(|| self.refuse(value))
    }
}

/// A list of declared variables, in README order.
pub type Variables = &'static [&'static dyn Variable];

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
    /// The variable the error is about.
    pub fn variable(&self) -> &str {
        match self {
            ConfigError::Invalid { variable, .. } | ConfigError::Rejected { variable, .. } => {
                variable
            }
        }
    }
}

/// The environment a service reads, with the lists of variables it declares.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    vars: &'a [(String, String)],
    declared: &'a [Variables],
}

/// Names only: values may be secrets.
impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.vars.iter().map(|(name, _)| name))
            .finish()
    }
}

impl<'a> Env<'a> {
    pub fn new(vars: &'a [(String, String)], declared: &'a [Variables]) -> Self {
        Env { vars, declared }
    }

    /// Every variable, for readers of open-ended families such as `KAFKA_*`.
    pub fn all(&self) -> &'a [(String, String)] {
        self.vars
    }

    /// The raw value of `name`, if set (the last one wins, as in a shell).
    pub fn raw(&self, name: &str) -> Option<&'a str> {
        self.vars
            .iter()
            .rev()
            .find(|(variable, _)| variable == name)
            .map(|(_, value)| value.as_str())
    }

    /// The value of `setting`, or its default; a setting without default must be set.
    pub fn read<T: 'static>(&self, setting: &Setting<T>) -> Result<T, ConfigError> {
        match self.read_optional(setting)? {
            Some(value) => Ok(value),
            None => Err(ConfigError::Rejected {
                variable: setting.name.to_string(),
                reason: format!("it must be set; expected {}", setting.accepts),
            }),
        }
    }

    /// The value of `setting`, its default, or `None` when it is unset and has no default.
    pub fn read_optional<T: 'static>(
        &self,
        setting: &Setting<T>,
    ) -> Result<Option<T>, ConfigError> {
        if !self
            .declared
            .iter()
            .flat_map(|list| list.iter())
            .any(|variable| variable.name() == setting.name)
        {
            // A programming error, caught by every test that loads a configuration.
            return Err(ConfigError::Rejected {
                variable: setting.name.to_string(),
                reason: "the service reads it but does not declare it in its VARIABLES".into(),
            });
        }
        match self.raw(setting.name).or(setting.default) {
            Some(text) => setting.parse_or_refuse(text).map(Some),
            None => Ok(None),
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

/// Building blocks for parse rules. Numbers are parsed as written (no trimming, no `_`).
pub mod rule {
    use super::*;

    /// A number of type `T` within `min..=max`.
    pub fn within<T: FromStr + PartialOrd>(text: &str, min: T, max: T) -> Option<T> {
        text.parse::<T>()
            .ok()
            .filter(|value| *value >= min && *value <= max)
    }

    /// A whole number of seconds, at least one.
    pub fn positive_secs(text: &str) -> Option<Duration> {
        within(text, 1, u64::MAX).map(Duration::from_secs)
    }

    /// A non-blank name, trimmed.
    pub fn non_blank(text: &str) -> Option<String> {
        let trimmed = text.trim();
        (!trimmed.is_empty()).then(|| trimmed.to_string())
    }

    /// A legal Kafka topic name: 1-249 characters of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
    pub fn topic_name(text: &str) -> Option<String> {
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let ok = !text.is_empty()
            && text.len() <= 249
            && text.chars().all(legal)
            && text != "."
            && text != "..";
        ok.then(|| text.to_string())
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event, for `docker compose logs`.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

pub const LOG_FORMAT: Setting<LogFormat> = Setting {
    name: "LOG_FORMAT",
    default: Some("text"),
    accepts: "`text` (readable lines) or `json` (one JSON object per line)",
    parse: |text| match text.trim().to_ascii_lowercase().as_str() {
        "text" => Some(LogFormat::Text),
        "json" => Some(LogFormat::Json),
        _ => None,
    },
};

/// Checked here so that a filter `tracing` cannot read stops the service instead of silently
/// logging at `info`; [`crate::telemetry`] reads it from the environment.
pub const RUST_LOG: Setting<String> = Setting {
    name: "RUST_LOG",
    default: Some("info"),
    accepts: "a tracing filter such as `info` or `info,order_tracker::orders=warn`",
    parse: |text| {
        tracing_subscriber::EnvFilter::try_new(text)
            .ok()
            .map(|_| text.to_string())
    },
};

pub const ORDERS_TOPIC: Setting<String> = Setting {
    name: "ORDERS_TOPIC",
    default: Some("orders"),
    accepts: "a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -",
    parse: rule::topic_name,
};

pub const DEAD_LETTER_TOPIC: Setting<String> = Setting {
    name: "DEAD_LETTER_TOPIC",
    default: Some("orders.dlq"),
    accepts: "a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -, not the orders topic",
    parse: rule::topic_name,
};

/// The topic the trackers publish windowed statistics to; topic-init creates it compacted.
pub const WINDOW_STATS_TOPIC: Setting<String> = Setting {
    name: "WINDOW_STATS_TOPIC",
    default: Some("order-stats"),
    accepts: "a Kafka topic name: 1-249 characters of a-z A-Z 0-9 . _ -, not the orders or dead-letter topic",
    parse: rule::topic_name,
};

/// Reads [`WINDOW_STATS_TOPIC`], refusing the orders and dead-letter topics.
pub fn window_stats_topic(env: &Env, common: &CommonConfig) -> Result<String, ConfigError> {
    let topic = env.read(&WINDOW_STATS_TOPIC)?;
    if topic == common.orders_topic || topic == common.dead_letter_topic {
        return Err(WINDOW_STATS_TOPIC.refuse(topic));
    }
    Ok(topic)
}

/// The variables every service reads (the `KAFKA_*` ones are declared in [`crate::kafka`]).
pub const COMMON_VARIABLES: Variables = &[
    &kafka::BOOTSTRAP_SERVERS,
    &kafka::CLIENT_PROPERTIES,
    &LOG_FORMAT,
    &RUST_LOG,
    &ORDERS_TOPIC,
    &DEAD_LETTER_TOPIC,
];

// Settings read by more than one service, declared once here so that no service depends on
// another for them. Each service lists the ones it reads in its own `VARIABLES`.

pub const HEALTH_PORT: Setting<u16> = Setting {
    name: "HEALTH_PORT",
    default: Some("8080"),
    accepts: "a TCP port from 1 to 65535 for /healthz, /readyz and /metrics",
    parse: |text| rule::within(text, 1, u16::MAX),
};

pub const STATS_INTERVAL_SECS: Setting<Duration> = Setting {
    name: "STATS_INTERVAL_SECS",
    default: Some("10"),
    accepts: "a whole number of seconds >= 1 between statistics summaries",
    parse: rule::positive_secs,
};

/// The largest order message accepted: the tracker dead-letters larger ones, and the producer's
/// HTTP intake will refuse them.
pub const MAX_ORDER_BYTES: Setting<usize> = Setting {
    name: "MAX_ORDER_BYTES",
    default: Some("65536"),
    accepts: "a whole number of bytes >= 1: the largest order message; the tracker dead-letters larger ones, the producer's HTTP intake refuses them with 413",
    parse: |text| rule::within(text, 1, usize::MAX),
};

/// Settings every service shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonConfig {
    pub log_format: LogFormat,
    pub orders_topic: String,
    pub dead_letter_topic: String,
}

impl CommonConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        env.read(&RUST_LOG)?;
        let config = CommonConfig {
            log_format: env.read(&LOG_FORMAT)?,
            orders_topic: env.read(&ORDERS_TOPIC)?,
            dead_letter_topic: env.read(&DEAD_LETTER_TOPIC)?,
        };
        if config.orders_topic == config.dead_letter_topic {
            return Err(DEAD_LETTER_TOPIC.refuse(config.dead_letter_topic));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(pairs: &[(&str, &str)]) -> Result<CommonConfig, ConfigError> {
        CommonConfig::from_env(&Env::new(&vars(pairs), &[COMMON_VARIABLES]))
    }

    #[test]
    fn common_defaults_apply_when_nothing_is_set() {
        let config = common(&[]).expect("defaults");
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.orders_topic, "orders");
        assert_eq!(config.dead_letter_topic, "orders.dlq");
    }

    #[test]
    fn log_format_accepts_json_in_any_case() {
        let config = common(&[("LOG_FORMAT", " JSON")]).expect("json");
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn an_unknown_log_format_is_one_line_naming_the_variable_value_and_choices() {
        let err = common(&[("LOG_FORMAT", "xml")]).expect_err("xml");
        assert_eq!(
            err.to_string(),
            "invalid configuration: LOG_FORMAT=\"xml\" is not accepted; expected \
             `text` (readable lines) or `json` (one JSON object per line)"
        );
    }

    #[test]
    fn a_filter_tracing_cannot_read_is_refused() {
        assert_eq!(
            common(&[("RUST_LOG", "info,x=loud")])
                .expect_err("")
                .variable(),
            "RUST_LOG"
        );
        assert!(common(&[("RUST_LOG", "info,order_tracker::orders=warn")]).is_ok());
    }

    #[test]
    fn topic_names_follow_kafkas_rules() {
        for bad in ["", "my orders", ".", "..", "ä", &"x".repeat(250)] {
            assert_eq!(rule::topic_name(bad), None, "{bad}");
        }
        for good in ["orders", "orders.dlq", "A-b_9", "...", &"x".repeat(249)] {
            assert_eq!(rule::topic_name(good).as_deref(), Some(good), "{good}");
        }
        let err = common(&[("ORDERS_TOPIC", "my orders")]).expect_err("");
        assert_eq!(err.variable(), "ORDERS_TOPIC");
    }

    #[test]
    fn the_window_stats_topic_is_neither_the_orders_nor_the_dead_letter_topic() {
        let variables: Variables = &[&WINDOW_STATS_TOPIC];
        let read = |pairs: &[(&str, &str)]| {
            let pairs = vars(pairs);
            let lists = [COMMON_VARIABLES, variables];
            let env = Env::new(&pairs, &lists);
            window_stats_topic(&env, &CommonConfig::from_env(&env).expect("common"))
        };
        assert_eq!(read(&[]).expect("default"), "order-stats");
        for clash in ["orders", "orders.dlq"] {
            let err = read(&[("WINDOW_STATS_TOPIC", clash)]).expect_err(clash);
            assert_eq!(err.variable(), "WINDOW_STATS_TOPIC");
        }
    }

    #[test]
    fn the_dead_letter_topic_cannot_be_the_orders_topic() {
        let err = common(&[("ORDERS_TOPIC", "x"), ("DEAD_LETTER_TOPIC", "x")]).expect_err("");
        assert_eq!(err.variable(), "DEAD_LETTER_TOPIC");
    }

    #[test]
    fn numbers_are_read_as_written_and_checked_against_their_bounds() {
        assert_eq!(rule::within("1", 1, 3), Some(1));
        assert_eq!(rule::within("3", 1, 3), Some(3));
        assert_eq!(rule::within("0", 1, 3), None);
        assert_eq!(rule::within("4", 1, 3), None);
        assert_eq!(rule::within::<u8>(" 1", 1, 3), None);
        assert_eq!(rule::within::<u8>("1e3", 1, 255), None);
        assert_eq!(rule::positive_secs("0"), None);
        assert_eq!(rule::positive_secs("3"), Some(Duration::from_secs(3)));
        assert_eq!(rule::non_blank("  "), None);
        assert_eq!(rule::non_blank(" g ").as_deref(), Some("g"));
    }

    #[test]
    fn the_refusal_quotes_the_value_and_what_the_setting_accepts() {
        let env_vars = vars(&[("HEALTH_PORT", "0")]);
        let env = Env::new(&env_vars, &[&[&HEALTH_PORT]]);
        assert_eq!(
            env.read(&HEALTH_PORT).expect_err("0").to_string(),
            "invalid configuration: HEALTH_PORT=\"0\" is not accepted; expected \
             a TCP port from 1 to 65535 for /healthz, /readyz and /metrics"
        );
    }

    #[test]
    fn unset_uses_the_declared_default_and_the_last_value_wins() {
        const LIST: Variables = &[&HEALTH_PORT];
        assert_eq!(Env::new(&[], &[LIST]).read(&HEALTH_PORT), Ok(8080));
        let set = vars(&[("HEALTH_PORT", "1"), ("HEALTH_PORT", "2")]);
        assert_eq!(Env::new(&set, &[LIST]).read(&HEALTH_PORT), Ok(2));
    }

    #[test]
    fn a_setting_without_default_is_none_when_unset_and_required_by_read() {
        const NEEDED: Setting<u8> = Setting {
            name: "NEEDED",
            default: None,
            accepts: "a byte",
            parse: |text| text.parse().ok(),
        };
        const LIST: Variables = &[&NEEDED];
        let env = Env::new(&[], &[LIST]);
        assert_eq!(env.read_optional(&NEEDED), Ok(None));
        assert_eq!(env.read(&NEEDED).expect_err("").variable(), "NEEDED");
    }

    #[test]
    fn reading_an_undeclared_setting_is_refused() {
        let err = Env::new(&[], &[COMMON_VARIABLES])
            .read(&HEALTH_PORT)
            .expect_err("not declared");
        assert!(err.to_string().contains("does not declare"), "{err}");
    }

    #[test]
    fn every_shared_default_passes_its_own_rule() {
        let shared: Variables = &[&HEALTH_PORT, &STATS_INTERVAL_SECS, &MAX_ORDER_BYTES];
        for variable in COMMON_VARIABLES.iter().chain(shared) {
            if let Some(default) = variable.default() {
                assert!(variable.accepts_value(default), "{}", variable.name());
            }
        }
    }

    /// The README and `example.env` tests and the bad-configuration test see settings only
    /// through [`Variable`]: what it reports must be the declaration itself.
    #[test]
    fn a_settings_variable_view_is_its_declaration() {
        let variable: &dyn Variable = &HEALTH_PORT;
        assert_eq!(variable.name(), "HEALTH_PORT");
        assert_eq!(variable.default(), Some("8080"));
        assert_eq!(variable.accepts(), HEALTH_PORT.accepts);
        assert!(variable.accepts_value("8081"));
        assert!(!variable.accepts_value("0"));
        assert!(!variable.accepts_value("port"));
        let unset: &dyn Variable = &Setting::<u16> {
            default: None,
            ..HEALTH_PORT
        };
        assert_eq!(unset.default(), None);
    }

    #[test]
    fn debug_output_names_variables_and_never_shows_values() {
        assert_eq!(format!("{HEALTH_PORT:?}"), "HEALTH_PORT");
        let pairs = vars(&[("KAFKA_SASL_PASSWORD", "hunter2"), ("LOG_FORMAT", "json")]);
        let env = Env::new(&pairs, &[COMMON_VARIABLES]);
        let shown = format!("{env:?}");
        assert!(
            shown.contains("KAFKA_SASL_PASSWORD") && shown.contains("LOG_FORMAT"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn the_process_environment_is_read_whole() {
        let read = process_env();
        let expected: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .collect();
        assert!(
            !expected.is_empty(),
            "a test process has an environment (PATH at least)"
        );
        assert_eq!(read, expected);
    }
}
