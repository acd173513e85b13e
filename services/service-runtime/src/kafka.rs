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
//!
//! Each service builds its clients' configurations once, in its `from_vars`, through
//! [`KafkaSettings::producer`], [`KafkaSettings::consumer`] or [`KafkaSettings::admin`]; these
//! also ask librdkafka to parse the result, so an unknown property or a refused value stops the
//! service at start naming its variable, and `run` only creates clients from a [`ClientSettings`].
//!
//! An operator property reaches only the clients it applies to, by librdkafka's own table
//! (`build.rs`): `KAFKA_SESSION_TIMEOUT_MS` configures the tracker's consumer, not its
//! dead-letter producer, which librdkafka would otherwise warn "will be ignored by this
//! producer instance" about at every start, as if the setting were lost. Its value is still
//! checked with every client's configuration. A property that applies to none of a service's
//! clients is named in one warning at start ([`KafkaSettings::without_effect`]).
//!
//! The same table gives librdkafka's aliases (`acks` is `request.required.acks`), which are one
//! property under two names: the fixed settings and the defaults are matched under either
//! name, so an alias can neither slip past a fixed setting nor compete with a default, and
//! setting one property under both names is refused at start.

use crate::config::{ConfigError, Env, Setting};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::{FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{Producer, ProducerContext};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PREFIX: &str = "KAFKA_";
const BOOTSTRAP: &str = "bootstrap.servers";

/// The broker list: the one `KAFKA_*` variable with a default and a rule of its own.
pub const BOOTSTRAP_SERVERS: Setting<String> = Setting {
    name: "KAFKA_BOOTSTRAP_SERVERS",
    default: Some("localhost:9092"),
    accepts: "a comma-separated list of host:port brokers, e.g. kafka:29092",
    parse: |text| {
        let well_formed = |broker: &str| {
            broker
                .trim()
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        };
        text.split(',').all(well_formed).then(|| text.to_string())
    },
};

/// Every other `KAFKA_*` variable: any value passes here; librdkafka checks it when
/// [`KafkaSettings::producer`] and its siblings build a client configuration.
pub const CLIENT_PROPERTIES: Setting<String> = Setting {
    name: "KAFKA_*",
    default: None,
    accepts: "any librdkafka client property, upper-cased with `.` written `_` (`__` for `_`, `___` for `-`): KAFKA_SECURITY_PROTOCOL=SASL_SSL sets security.protocol; unknown properties are refused",
    parse: |text| Some(text.to_string()),
};

/// The kinds of client a service creates. An admin client is a producer to librdkafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    Consumer,
    Producer,
}

/// The kind of client a librdkafka property applies to (librdkafka's "C/P" column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppliesTo {
    Consumer,
    Producer,
    Both,
}

include!(concat!(env!("OUT_DIR"), "/property_tables.rs"));

impl AppliesTo {
    /// What librdkafka's table says of `property`; `Both` for one it does not list (a hidden
    /// property), which is then given to every client as before.
    pub fn property(property: &str) -> AppliesTo {
        PROPERTY_APPLIES_TO
            .binary_search_by(|(name, _)| name.cmp(&property))
            .map_or(AppliesTo::Both, |found| PROPERTY_APPLIES_TO[found].1)
    }

    /// Whether a client of kind `client` takes such a property.
    fn reaches(self, client: ClientKind) -> bool {
        match self {
            AppliesTo::Both => true,
            AppliesTo::Consumer => client == ClientKind::Consumer,
            AppliesTo::Producer => client == ClientKind::Producer,
        }
    }
}

/// The name librdkafka keeps `property` under: the property an alias stands for
/// (`acks` → `request.required.acks`, `linger.ms` → `queue.buffering.max.ms`), else itself.
pub fn canonical_property(property: &str) -> &str {
    PROPERTY_ALIASES
        .binary_search_by(|(alias, _)| alias.cmp(&property))
        .map_or(property, |found| PROPERTY_ALIASES[found].1)
}

/// Whether two names set the same librdkafka property.
fn same_property(a: &str, b: &str) -> bool {
    canonical_property(a) == canonical_property(b)
}

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

/// How often librdkafka hands its statistics (JSON) to the client context: the services turn
/// them into metrics (the tracker's `kafka_consumer_lag`, the producer's queue depth), so this
/// is how fresh those are. Clients whose context does not read them ([`QuietContext`]) ignore
/// them.
const STATISTICS_INTERVAL: (&str, &str) = ("statistics.interval.ms", "5000");

const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    // A short linger batches bursts without adding visible latency at demo rates.
    ("linger.ms", "10"),
    ("compression.type", "lz4"),
    // Bounded send queue. librdkafka queues up to 100,000 messages (and 1 GiB) by default: a
    // producer running flat out peaked between 28 and 130 MB (38 MB typical). At 6 MiB it
    // peaked at 27-29 MB with the same wall time within the noise (400,000 orders, five runs
    // each on tansu; README, Performance); 4 MiB saved 6 MB more but cost about a tenth of the
    // rate. A full queue is back-pressure the services already handle: the generator waits,
    // the intake answers 503 with Retry-After. Overridable (`KAFKA_QUEUE_BUFFERING_MAX_KBYTES`).
    ("queue.buffering.max.kbytes", "6144"),
    STATISTICS_INTERVAL,
];

const CONSUMER_FIXED: &[Fixed] = &[
    Fixed {
        property: "enable.auto.offset.store",
        value: "false",
        why: "an offset may be stored only after its order is processed (at-least-once)",
    },
    Fixed {
        property: "enable.auto.commit",
        value: "false",
        why: "the tracker commits an offset only at a checkpoint, once every window part before it is acknowledged",
    },
];

const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    // A new group reads the topic from the start rather than only new orders.
    ("auto.offset.reset", "earliest"),
    // Incremental rebalances: scaling the group moves only the partitions that must move.
    ("partition.assignment.strategy", "cooperative-sticky"),
    // Bounded prefetch. librdkafka fetches ahead into its local queue up to 64 MiB by default,
    // plus the fetch responses in flight: a tracker catching up 1,000,000 orders peaked at
    // 165 MB. The short queue backoff is what makes a small queue work: when the queue is full
    // librdkafka waits `fetch.queue.backoff.ms` (1 s by default) before fetching again, which
    // with a small queue cost two thirds of the catch-up rate. The queue's size decides how
    // long the tracker waits on the broker: with 2 MiB it sat idle about a third of the time,
    // between a drained queue and the next fetch. Catching up 1,000,000 orders on tansu
    // (three alternated runs each): 2 MiB, about 409,000 orders/s at 38 MB peak RSS; 8 MiB,
    // about 513,000 at 50 MB (a quarter faster); 16 MiB, no faster at 71 MB. Fetches of
    // 2 MiB: 4 MiB fetches (with a 4 MiB queue) added 18 MB and no speed. Overridable like
    // any default (`KAFKA_QUEUED_MAX_MESSAGES_KBYTES`, `KAFKA_FETCH_MAX_BYTES`,
    // `KAFKA_FETCH_QUEUE_BACKOFF_MS`).
    ("queued.max.messages.kbytes", "8192"),
    ("fetch.max.bytes", "2097152"),
    ("fetch.queue.backoff.ms", "10"),
    // Failover. A crashed member's partitions wait for its session to expire, so the session
    // timeout is the main term of the failover time: 10 s (librdkafka's default is 45 s) is
    // the lowest Kafka brokers accept by default (group.min.session.timeout.ms = 6 s) with
    // room for a few lost heartbeats. Lower would evict healthy members on a network hiccup;
    // heartbeats come from librdkafka's own thread, so slow processing cannot cause that.
    ("session.timeout.ms", "10000"),
    // A member hears of a rebalance with its next heartbeat: 1 s keeps that term small.
    ("heartbeat.interval.ms", "1000"),
    // The longest the tracker may go without polling before it is put out of the group, and
    // also how long a rebalance waits for members to rejoin. The tracker stops polling while
    // it retries a dead-letter write (as soon as its fetcher's few batches of read-ahead are
    // full), so this must stay above the longest such write
    // (order_tracker::dead_letter::LONGEST_WRITE, 95 s; a test there checks it). Lower than
    // librdkafka's 300 s so that a stuck member blocks a rebalance for less long.
    ("max.poll.interval.ms", "120000"),
    STATISTICS_INTERVAL,
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

/// One client's librdkafka configuration, built and checked at configuration time; `run`
/// creates the client from it (it dereferences to rdkafka's [`ClientConfig`]). Its `Debug`
/// redacts secrets, so a configuration struct holding it can be printed.
#[derive(Clone)]
pub struct ClientSettings(ClientConfig);

impl std::ops::Deref for ClientSettings {
    type Target = ClientConfig;
    fn deref(&self) -> &ClientConfig {
        &self.0
    }
}

impl ClientSettings {
    /// Creates the client. librdkafka decides once, when a client is created, which of its
    /// log lines to emit at all; rdkafka takes that level from the logger as it is when the
    /// `ClientConfig` is made. Ours are made while the configuration is read, before logging
    /// is set up, which would leave librdkafka at "errors only" (its warnings, and the debug
    /// lines `RUST_LOG=librdkafka=debug` asks for, silently lost). So the level is taken
    /// again here, from the logger now in place.
    pub fn create_with_context<C, T>(&self, context: C) -> KafkaResult<T>
    where
        C: ClientContext,
        T: FromClientConfigAndContext<C>,
    {
        let mut config = self.0.clone();
        config.set_log_level(librdkafka_log_level());
        config.create_with_context(context)
    }
}

/// The most detailed librdkafka level the installed logger keeps for target `librdkafka`.
fn librdkafka_log_level() -> RDKafkaLogLevel {
    use tracing::{Level, enabled};
    if enabled!(target: "librdkafka", Level::DEBUG) {
        RDKafkaLogLevel::Debug
    } else if enabled!(target: "librdkafka", Level::INFO) {
        RDKafkaLogLevel::Info
    } else if enabled!(target: "librdkafka", Level::WARN) {
        RDKafkaLogLevel::Warning
    } else {
        RDKafkaLogLevel::Error
    }
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // rdkafka's `config_map` hides the secrets it knows of; `redacted` hides all of ours.
        f.write_str(&redacted(self.0.config_map()))
    }
}

/// `property=value` pairs joined by spaces, secrets replaced by `[redacted]`.
fn redacted<'a>(properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    properties
        .into_iter()
        .map(|(property, value)| {
            if is_secret(property) {
                format!("{property}=[redacted]")
            } else {
                format!("{property}={value}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
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
    /// Reads [`BOOTSTRAP_SERVERS`] and every other `KAFKA_*` variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut properties = BTreeMap::new();
        let bootstrap = env.read(&BOOTSTRAP_SERVERS)?;
        properties.insert(
            BOOTSTRAP.to_string(),
            (bootstrap, BOOTSTRAP_SERVERS.name.to_string()),
        );
        for (variable, value) in env.all() {
            match variable.strip_prefix(PREFIX) {
                Some(suffix) if !suffix.is_empty() && variable != BOOTSTRAP_SERVERS.name => {
                    properties.insert(property_name(suffix), (value.clone(), variable.clone()));
                }
                _ => {}
            }
        }
        // Two names of one property (a property and its alias) would each be given to
        // librdkafka, in no fixed order: which value won would change from start to start.
        for (property, (_, variable)) in &properties {
            if let Some((other, (_, other_variable))) = properties
                .iter()
                .find(|(other, _)| *other != property && same_property(other, property))
            {
                return Err(ConfigError::Rejected {
                    variable: variable.clone(),
                    reason: format!(
                        "{property} and {other} (set by {other_variable}) are one librdkafka \
                         property, {}: set only one of the two",
                        canonical_property(property)
                    ),
                });
            }
        }
        Ok(KafkaSettings { properties })
    }

    /// The broker list.
    pub fn bootstrap_servers(&self) -> &str {
        self.properties
            .get(BOOTSTRAP)
            .map_or("", |(value, _)| value)
    }

    /// The settings as `property=value` pairs with secrets replaced by `[redacted]`, for logs.
    pub fn describe(&self) -> String {
        redacted(
            self.properties
                .iter()
                .map(|(property, (value, _))| (property.as_str(), value.as_str())),
        )
    }

    /// An idempotent producer: `acks=all`, `enable.idempotence=true`, lz4, 10 ms linger.
    pub fn producer(&self, client_id: &str) -> Result<ClientSettings, ConfigError> {
        self.build(
            client_id,
            ClientKind::Producer,
            PRODUCER_DEFAULTS,
            PRODUCER_FIXED,
        )
    }

    /// A group consumer that never stores or commits an offset by itself
    /// (`enable.auto.offset.store=false`, `enable.auto.commit=false`: the tracker commits at its
    /// checkpoints) and uses cooperative-sticky assignment, with group timeouts chosen for quick
    /// failover (10 s session, 1 s heartbeat, 120 s poll interval; each overridable through
    /// `KAFKA_*`). `group.id` comes from the service's own `GROUP_ID`, never from
    /// `KAFKA_GROUP_ID`.
    pub fn consumer(&self, client_id: &str, group_id: &str) -> Result<ClientSettings, ConfigError> {
        if let Some((_, variable)) = self.properties.get("group.id") {
            return Err(ConfigError::Rejected {
                variable: variable.clone(),
                reason: "set the consumer group with GROUP_ID instead".into(),
            });
        }
        self.build(
            client_id,
            ClientKind::Consumer,
            &[CONSUMER_DEFAULTS, &[("group.id", group_id)]].concat(),
            CONSUMER_FIXED,
        )
    }

    /// A consumer that reads whole topics by assignment, without joining or committing to a
    /// group, and reports each partition's end (`enable.partition.eof`).
    pub fn topic_reader(&self, client_id: &str) -> Result<ClientSettings, ConfigError> {
        self.build(
            client_id,
            ClientKind::Consumer,
            &[
                ("group.id", client_id),
                ("enable.partition.eof", "true"),
                ("enable.auto.commit", "false"),
            ],
            &[],
        )
    }

    /// An admin client (a producer, to librdkafka: it takes producer properties only).
    pub fn admin(&self, client_id: &str) -> Result<ClientSettings, ConfigError> {
        self.build(client_id, ClientKind::Producer, &[], &[])
    }

    /// The operator's variables whose property applies to none of `clients` (the kinds of
    /// client a service creates), with their property: each has no effect on that service.
    pub fn without_effect(&self, clients: &[ClientKind]) -> Vec<(&str, &str)> {
        self.properties
            .iter()
            .filter(|(property, _)| {
                let applies = AppliesTo::property(property);
                !clients.iter().any(|&client| applies.reaches(client))
            })
            .map(|(property, (_, variable))| (variable.as_str(), property.as_str()))
            .collect()
    }

    /// Warns once for each variable of [`KafkaSettings::without_effect`], naming `service`.
    pub fn warn_without_effect(&self, service: &str, clients: &[ClientKind]) {
        for (variable, property) in self.without_effect(clients) {
            // Both would reach any client: only ever one of the two here.
            let applies = match AppliesTo::property(property) {
                AppliesTo::Consumer => "consumers",
                AppliesTo::Producer | AppliesTo::Both => "producers",
            };
            tracing::warn!(
                event = "kafka_setting_without_effect",
                variable,
                property,
                "{variable} sets {property}, which librdkafka applies to {applies} only; \
                 {service} has none, so it has no effect here"
            );
        }
    }

    fn build(
        &self,
        client_id: &str,
        kind: ClientKind,
        defaults: &[(&str, &str)],
        fixed: &[Fixed],
    ) -> Result<ClientSettings, ConfigError> {
        let mut config = ClientConfig::new();
        config.set("client.id", client_id);
        for (property, value) in defaults {
            // The operator's value wins, under whichever name (an alias) it was given.
            if !self
                .properties
                .keys()
                .any(|set| same_property(set, property))
            {
                config.set(*property, *value);
            }
        }
        for (property, (value, variable)) in &self.properties {
            if let Some(rule) = fixed
                .iter()
                .find(|rule| same_property(rule.property, property))
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
        // librdkafka parses the configuration without connecting: an unknown property or a
        // refused value stops the service at start, naming its variable.
        if let Err(err) = config.create_native_config() {
            return Err(self
                .explain(err)
                .unwrap_or_else(|err| ConfigError::Rejected {
                    variable: CLIENT_PROPERTIES.name.into(),
                    reason: err.to_string(),
                }));
        }
        // Checked above with the rest; given only to the clients they apply to.
        for property in self.properties.keys() {
            if !AppliesTo::property(property).reaches(kind) {
                config.remove(property);
            }
        }
        Ok(ClientSettings(config))
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

    /// A producer with its own polling thread on librdkafka's mock cluster (or on `bootstrap`),
    /// counting its delivery reports.
    fn threaded_producer(
        bootstrap: &str,
    ) -> rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
        from_pairs(&[("KAFKA_BOOTSTRAP_SERVERS", bootstrap)])
            .and_then(|settings| settings.producer("flush-test"))
            .expect("settings")
            .create()
            .expect("producer")
    }

    fn send_some(
        producer: &rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    ) {
        for i in 0..200 {
            let payload = format!("message {i}");
            producer
                .send(rdkafka::producer::BaseRecord::<str, str>::to("flushed").payload(&payload))
                .map_err(|(err, _)| err)
                .expect("queued");
        }
    }

    #[test]
    fn a_prompt_flush_returns_as_soon_as_everything_is_delivered() {
        let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        mock.create_topic("flushed", 1, 1).expect("topic");
        let producer = threaded_producer(&mock.bootstrap_servers());
        // Once, so that the connection and the producer id are in place before timing.
        send_some(&producer);
        flush_promptly(&producer, Duration::from_secs(10)).expect("first flush");
        send_some(&producer);
        let started = Instant::now();
        flush_promptly(&producer, Duration::from_secs(10)).expect("flushed");
        let took = started.elapsed();
        assert_eq!(producer.in_flight_count(), 0);
        // rdkafka's own flush takes at least 100 ms whenever anything is in flight.
        assert!(took < Duration::from_millis(90), "took {took:?}");
    }

    #[test]
    fn a_prompt_flush_to_an_absent_broker_times_out_with_the_messages_still_in_flight() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .expect("a free port");
        let producer = threaded_producer(&format!("127.0.0.1:{port}"));
        send_some(&producer);
        let started = Instant::now();
        let flushed = flush_promptly(&producer, Duration::from_millis(300));
        assert!(
            matches!(
                flushed,
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
            ),
            "{flushed:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(producer.in_flight_count(), 200);
    }
    use super::*;
    use crate::config::{COMMON_VARIABLES, vars};

    fn from_pairs(pairs: &[(&str, &str)]) -> Result<KafkaSettings, ConfigError> {
        KafkaSettings::from_env(&Env::new(&vars(pairs), &[COMMON_VARIABLES]))
    }

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
        let settings = from_pairs(&[]).expect("defaults");
        assert_eq!(settings.bootstrap_servers(), "localhost:9092");
    }

    #[test]
    fn an_empty_or_malformed_broker_list_is_refused() {
        for bad in ["", " ", "kafka", "kafka:port", "a:1,,b:2"] {
            let err = from_pairs(&[("KAFKA_BOOTSTRAP_SERVERS", bad)]).expect_err(bad);
            assert_eq!(err.variable(), "KAFKA_BOOTSTRAP_SERVERS", "{bad}");
            assert!(err.to_string().contains("host:port"), "{err}");
        }
    }

    #[test]
    fn operator_properties_reach_the_client_config() {
        let settings = from_pairs(&[
            ("KAFKA_BOOTSTRAP_SERVERS", "kafka:29092"),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_LINGER_MS", "50"),
        ])
        .expect("ok");
        let config = settings.producer("test").expect("producer");
        assert_eq!(config.get("bootstrap.servers"), Some("kafka:29092"));
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("linger.ms"), Some("50"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
    }

    /// The memory bounds (README, Performance) are defaults an operator can still raise.
    #[test]
    fn send_and_fetch_queues_are_bounded_by_default_and_overridable() {
        let settings = from_pairs(&[]).expect("ok");
        let producer = settings.producer("p").expect("producer");
        assert_eq!(producer.get("queue.buffering.max.kbytes"), Some("6144"));
        let consumer = settings.consumer("c", "g").expect("consumer");
        assert_eq!(consumer.get("queued.max.messages.kbytes"), Some("8192"));
        let raised = from_pairs(&[("KAFKA_QUEUE_BUFFERING_MAX_KBYTES", "65536")]).expect("ok");
        assert_eq!(
            raised
                .producer("p")
                .expect("producer")
                .get("queue.buffering.max.kbytes"),
            Some("65536")
        );
    }

    #[test]
    fn the_consumer_never_stores_or_commits_offsets_by_itself() {
        let settings = from_pairs(&[]).expect("ok");
        let config = settings.consumer("tracker", "group-a").expect("consumer");
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        let err = from_pairs(&[("KAFKA_ENABLE_AUTO_COMMIT", "true")])
            .and_then(|settings| settings.consumer("tracker", "group-a"))
            .expect_err("a fixed setting cannot be overridden");
        assert_eq!(err.variable(), "KAFKA_ENABLE_AUTO_COMMIT");
        assert_eq!(config.get("group.id"), Some("group-a"));
        assert_eq!(
            config.get("partition.assignment.strategy"),
            Some("cooperative-sticky")
        );
    }

    #[test]
    fn a_variable_that_would_weaken_delivery_guarantees_is_refused() {
        let settings = from_pairs(&[("KAFKA_ENABLE_IDEMPOTENCE", "false")]).expect("");
        let err = settings.producer("p").expect_err("must refuse");
        assert_eq!(err.variable(), "KAFKA_ENABLE_IDEMPOTENCE");
        let settings = from_pairs(&[("KAFKA_ACKS", "1")]).expect("");
        assert!(settings.producer("p").is_err());
        let settings = from_pairs(&[("KAFKA_ENABLE_AUTO_OFFSET_STORE", "true")]).expect("");
        assert!(settings.consumer("c", "g").is_err());
        let settings = from_pairs(&[("KAFKA_ACKS", "ALL")]).expect("");
        assert!(settings.producer("p").is_ok(), "the same value is fine");
    }

    #[test]
    fn the_group_comes_from_group_id_only() {
        let settings = from_pairs(&[("KAFKA_GROUP_ID", "x")]).expect("");
        assert_eq!(
            settings.consumer("c", "g").expect_err("").variable(),
            "KAFKA_GROUP_ID"
        );
    }

    #[test]
    fn secrets_are_redacted_when_described() {
        let settings = from_pairs(&[
            ("KAFKA_SASL_USERNAME", "alice"),
            ("KAFKA_SASL_PASSWORD", "hunter2"),
            ("KAFKA_SSL_KEY_PASSWORD", "s3cret"),
        ])
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
    fn an_unknown_property_is_refused_when_the_client_is_built_naming_its_variable() {
        let settings = from_pairs(&[("KAFKA_NOT_A_REAL_SETTING", "1")]).expect("read");
        let err = settings.producer("p").expect_err("librdkafka refuses it");
        assert_eq!(err.variable(), "KAFKA_NOT_A_REAL_SETTING");
        assert_eq!(
            settings.admin("a").expect_err("refused").variable(),
            "KAFKA_NOT_A_REAL_SETTING"
        );
    }

    #[test]
    fn a_built_client_configuration_redacts_secrets_when_printed() {
        let settings = from_pairs(&[("KAFKA_SASL_PASSWORD", "hunter2")]).expect("read");
        let printed = format!("{:?}", settings.producer("p").expect("built"));
        assert!(printed.contains("sasl.password=[redacted]"), "{printed}");
        assert!(printed.contains("client.id=p"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn a_refused_secret_value_is_not_echoed() {
        use rdkafka::types::RDKafkaConfRes;
        let settings = from_pairs(&[("KAFKA_SASL_PASSWORD", "topsecret")]).expect("");
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

    /// librdkafka's table, read by build.rs: a few properties whose kind is well known.
    #[test]
    fn librdkafkas_table_says_which_client_each_property_applies_to() {
        assert_eq!(
            AppliesTo::property("session.timeout.ms"),
            AppliesTo::Consumer
        );
        assert_eq!(AppliesTo::property("fetch.max.bytes"), AppliesTo::Consumer);
        assert_eq!(AppliesTo::property("linger.ms"), AppliesTo::Producer);
        assert_eq!(AppliesTo::property("acks"), AppliesTo::Producer);
        assert_eq!(AppliesTo::property("bootstrap.servers"), AppliesTo::Both);
        assert_eq!(AppliesTo::property("security.protocol"), AppliesTo::Both);
        assert_eq!(AppliesTo::property("no.such.property"), AppliesTo::Both);
    }

    fn operator_tuning() -> KafkaSettings {
        from_pairs(&[
            ("KAFKA_SESSION_TIMEOUT_MS", "7000"),
            ("KAFKA_LINGER_MS", "50"),
            ("KAFKA_SOCKET_KEEPALIVE_ENABLE", "true"),
        ])
        .expect("settings")
    }

    #[test]
    fn an_operator_property_reaches_only_the_clients_it_applies_to() {
        let settings = operator_tuning();
        for producer in [
            settings.producer("p").expect("producer"),
            settings.admin("a").expect("admin"),
        ] {
            assert_eq!(producer.get("linger.ms"), Some("50"));
            assert_eq!(producer.get("socket.keepalive.enable"), Some("true"));
            assert_eq!(producer.get("session.timeout.ms"), None);
        }
        for consumer in [
            settings.consumer("c", "g").expect("consumer"),
            settings.topic_reader("r").expect("reader"),
        ] {
            assert_eq!(consumer.get("session.timeout.ms"), Some("7000"));
            assert_eq!(consumer.get("socket.keepalive.enable"), Some("true"));
            assert_eq!(consumer.get("linger.ms"), None);
        }
    }

    #[test]
    fn a_value_is_checked_even_by_a_client_it_does_not_reach() {
        let settings = from_pairs(&[("KAFKA_SESSION_TIMEOUT_MS", "soon")]).expect("settings");
        let err = settings.producer("p").expect_err("refused");
        assert_eq!(err.variable(), "KAFKA_SESSION_TIMEOUT_MS");
    }

    /// Keeps what librdkafka logs while a client is created.
    #[derive(Default)]
    struct LogCapture(Mutex<Vec<String>>);

    impl ClientContext for LogCapture {
        fn log(&self, _level: RDKafkaLogLevel, fac: &str, log_message: &str) {
            if let Ok(mut lines) = self.0.lock() {
                lines.push(format!("{fac}: {log_message}"));
            }
        }
    }

    impl rdkafka::consumer::ConsumerContext for LogCapture {}

    impl ProducerContext for LogCapture {
        type DeliveryOpaque = ();
        fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
    }

    /// The point of the table: librdkafka itself, with its warnings on, says nothing about
    /// the operator's properties when the tracker's kinds of client are created.
    #[test]
    fn librdkafka_warns_of_no_operator_property_as_ignored() {
        let settings = operator_tuning();
        let created = |config: ClientSettings, consumer: bool| {
            let mut config = config.0;
            config.set("bootstrap.servers", "127.0.0.1:1");
            config.set_log_level(RDKafkaLogLevel::Warning);
            let context = LogCapture::default();
            if consumer {
                let client: rdkafka::consumer::BaseConsumer<LogCapture> =
                    config.create_with_context(context).expect("consumer");
                // Its start-up log lines wait in its queue until it is polled.
                for _ in 0..5 {
                    let _ = client.poll(Duration::from_millis(20));
                }
                rdkafka::consumer::Consumer::context(&client)
                    .0
                    .lock()
                    .expect("lines")
                    .clone()
            } else {
                let client: rdkafka::producer::BaseProducer<LogCapture> =
                    config.create_with_context(context).expect("producer");
                for _ in 0..5 {
                    client.poll(Duration::from_millis(20));
                }
                Producer::context(&client).0.lock().expect("lines").clone()
            }
        };
        let mut lines = created(settings.producer("p").expect("producer"), false);
        lines.extend(created(
            settings.consumer("c", "g").expect("consumer"),
            true,
        ));
        assert!(
            !lines.iter().any(|line| line.contains("will be ignored")),
            "{lines:#?}"
        );
    }

    #[test]
    fn a_property_no_client_of_the_service_takes_is_named() {
        let settings = operator_tuning();
        assert_eq!(
            settings.without_effect(&[ClientKind::Producer]),
            vec![("KAFKA_SESSION_TIMEOUT_MS", "session.timeout.ms")]
        );
        assert_eq!(
            settings.without_effect(&[ClientKind::Consumer]),
            vec![("KAFKA_LINGER_MS", "linger.ms")]
        );
        assert!(
            settings
                .without_effect(&[ClientKind::Consumer, ClientKind::Producer])
                .is_empty()
        );
    }

    #[test]
    fn an_alias_is_known_as_the_property_it_stands_for() {
        assert_eq!(canonical_property("acks"), "request.required.acks");
        assert_eq!(canonical_property("linger.ms"), "queue.buffering.max.ms");
        assert_eq!(
            canonical_property("bootstrap.servers"),
            "metadata.broker.list"
        );
        assert_eq!(
            canonical_property("session.timeout.ms"),
            "session.timeout.ms"
        );
    }

    /// `acks` is fixed: its other name may not weaken it either.
    #[test]
    fn a_fixed_setting_is_refused_under_its_other_name_too() {
        let err = from_pairs(&[("KAFKA_REQUEST_REQUIRED_ACKS", "1")])
            .and_then(|settings| settings.producer("p"))
            .expect_err("refused");
        assert_eq!(err.variable(), "KAFKA_REQUEST_REQUIRED_ACKS");
        assert!(err.to_string().contains("fixed to all"), "{err}");
    }

    /// The operator's value, given under an alias of a defaulted property, replaces the
    /// default rather than competing with it in librdkafka's configuration.
    #[test]
    fn an_operator_value_under_another_name_replaces_the_default() {
        let settings = from_pairs(&[("KAFKA_QUEUE_BUFFERING_MAX_MS", "50")]).expect("settings");
        let producer = settings.producer("p").expect("producer");
        assert_eq!(producer.get("queue.buffering.max.ms"), Some("50"));
        assert_eq!(producer.get("linger.ms"), None);
        let defaulted = from_pairs(&[])
            .expect("settings")
            .producer("p")
            .expect("producer");
        assert_eq!(defaulted.get("linger.ms"), Some("10"));
    }

    #[test]
    fn one_property_set_under_two_names_is_refused_at_start() {
        let err = from_pairs(&[
            ("KAFKA_LINGER_MS", "5"),
            ("KAFKA_QUEUE_BUFFERING_MAX_MS", "50"),
        ])
        .expect_err("refused");
        assert!(
            ["KAFKA_LINGER_MS", "KAFKA_QUEUE_BUFFERING_MAX_MS"].contains(&err.variable()),
            "{err}"
        );
        assert!(err.to_string().contains("queue.buffering.max.ms"), "{err}");
        let err = from_pairs(&[("KAFKA_METADATA_BROKER_LIST", "kafka:29092")])
            .expect_err("refused: the broker list is KAFKA_BOOTSTRAP_SERVERS");
        assert!(err.to_string().contains("bootstrap.servers"), "{err}");
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
/// (the admin client).
#[derive(Debug, Default)]
pub struct QuietContext {
    errors: ErrorLog,
}

impl ClientContext for QuietContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.error(&error, reason);
    }

    /// Statistics are not exported for these clients; rdkafka's default would parse them and
    /// log the whole structure at info every interval.
    fn stats_raw(&self, _statistics: &[u8]) {}
}

impl rdkafka::consumer::ConsumerContext for QuietContext {}

/// How often [`flush_promptly`] looks whether everything was delivered.
const FLUSH_CHECK_EVERY: Duration = Duration::from_millis(2);

/// Flushes a producer whose delivery reports another thread serves meanwhile (rdkafka's
/// `ThreadedProducer`, `FutureProducer` built on it, or the order producer's report thread once
/// no sender stands it aside): waits until nothing is in flight or `timeout` has passed,
/// looking every [`FLUSH_CHECK_EVERY`]. Blocking. What is still queued leaves as usual, within
/// `linger.ms` (each look is a zero-timeout `rd_kafka_flush`, which bypasses the linger only
/// for that instant).
///
/// Why not rdkafka's own `flush`: between two checks it polls the producer's queue for up to
/// 100 ms, and that poll never returns early, so a flush with anything in flight took at least
/// 100 ms (a fifth of a 100,000-order run at the producer's rate) while the polling thread
/// served the delivery reports. Here that thread serves them and the check comes back at once.
/// A producer without a polling thread would never see its reports served: it must use
/// rdkafka's `flush`.
pub fn flush_promptly<C: ProducerContext>(
    producer: &impl Producer<C>,
    timeout: Duration,
) -> KafkaResult<()> {
    let deadline = Instant::now() + timeout;
    loop {
        // A zero timeout only says whether anything is still in flight.
        match producer.flush(Duration::ZERO) {
            Ok(()) => return Ok(()),
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
                }
                std::thread::sleep(FLUSH_CHECK_EVERY.min(deadline - now));
            }
            Err(err) => return Err(err),
        }
    }
}
