//! `topic-init`: the one-shot job that makes the topics exist with the wanted settings, so
//! that the producer and trackers can start on a broker whose automatic topic creation is off.
//!
//! It is idempotent: run it on every `docker compose up`. It waits for the broker with bounded
//! retries and backoff (the broker's health check and the job's own retries both guard the
//! start), then for each topic:
//! - absent: created with its partitions, replication factor, `retention.ms` and
//!   `cleanup.policy` (the window stats topic is compacted as well as deleted by age);
//! - present with the wanted settings: nothing to do;
//! - present with fewer partitions than wanted: grown (keys then map to other partitions for
//!   new orders; per-customer order holds from then on, which is why it is logged loudly);
//! - anything else (more partitions, another replication factor, retention or cleanup policy):
//!   exit 1 with the
//!   reason, because silently keeping or changing a topic's shape is the operator's decision.

pub mod config;

use crate::config::{TopicInitConfig, TopicSpec};
use rdkafka::admin::{
    AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::util::Timeout;
use service_runtime::config::ConfigError;
use service_runtime::kafka::{ClientKind, QuietContext};
use service_runtime::launch::Outcome;
use service_runtime::shutdown::Shutdown;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Why topic-init failed.
#[derive(Debug, thiserror::Error)]
pub enum TopicInitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot create the Kafka admin client: {0}")]
    Kafka(KafkaError),
    #[error("broker {bootstrap} not reachable after {attempts} attempts: {last_error}")]
    BrokerUnreachable {
        bootstrap: String,
        attempts: u32,
        last_error: String,
    },
    #[error("stopped before the topics were ready")]
    Interrupted,
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
}

/// What was done for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    Created,
    AlreadyAsWanted,
    Grown { from: i32, to: i32 },
}

type Admin = Arc<AdminClient<QuietContext>>;

/// Waits for the broker, then makes every topic match its spec.
pub async fn run(config: TopicInitConfig, shutdown: Shutdown) -> Result<Outcome, TopicInitError> {
    config
        .kafka
        .warn_without_effect("topic-init", &[ClientKind::Producer]);
    let admin: Admin = Arc::new(
        config
            .admin
            .create_with_context(QuietContext::default())
            .map_err(|err| match config.kafka.explain(err) {
                Ok(config_error) => TopicInitError::Config(config_error),
                Err(err) => TopicInitError::Kafka(err),
            })?,
    );
    wait_for_broker(&admin, &config, shutdown).await?;
    for spec in &config.topics {
        let outcome = ensure_topic(&admin, spec).await?;
        match outcome {
            TopicOutcome::Created => info!(
                event = "topic_created",
                topic = %spec.name,
                partitions = spec.partitions,
                replication_factor = spec.replication_factor,
                retention_ms = spec.retention_ms,
                "created topic {} ({} partitions, replication factor {}, retention.ms {})",
                spec.name, spec.partitions, spec.replication_factor, spec.retention_ms
            ),
            TopicOutcome::AlreadyAsWanted => info!(
                event = "topic_as_wanted",
                topic = %spec.name,
                "topic {} already exists with the wanted settings",
                spec.name
            ),
            TopicOutcome::Grown { from, to } => warn!(
                event = "topic_grown",
                topic = %spec.name,
                "grew topic {} from {from} to {to} partitions; new orders of a customer may now land on another partition than their older ones",
                spec.name
            ),
        }
    }
    info!(event = "topics_ready", "topics ready");
    Ok(Outcome::Completed)
}

/// Asks for cluster metadata until it answers, with doubling waits capped at the maximum.
async fn wait_for_broker(
    admin: &Admin,
    config: &TopicInitConfig,
    mut shutdown: Shutdown,
) -> Result<(), TopicInitError> {
    let bootstrap = config.kafka.bootstrap_servers().to_string();
    let mut backoff = Duration::from_millis(250).min(config.connect_max_backoff);
    let mut last_error = String::new();
    for attempt in 1..=config.connect_max_attempts {
        let probe = admin.clone();
        let answered = tokio::task::spawn_blocking(move || {
            probe
                .inner()
                .fetch_metadata(None, Duration::from_secs(5))
                .map(|metadata| metadata.brokers().len())
        })
        .await;
        match answered {
            Ok(Ok(brokers)) => {
                info!(
                    event = "broker_reachable",
                    attempt,
                    brokers,
                    bootstrap = %bootstrap,
                    "broker reachable ({brokers} broker(s)) on attempt {attempt}"
                );
                return Ok(());
            }
            Ok(Err(err)) => last_error = err.to_string(),
            Err(err) => last_error = err.to_string(),
        }
        if attempt == config.connect_max_attempts {
            break;
        }
        info!(
            event = "broker_not_reachable_yet",
            attempt,
            max_attempts = config.connect_max_attempts,
            retry_in_ms = backoff.as_millis() as u64,
            error = %last_error,
            "broker {bootstrap} not reachable yet (attempt {attempt}/{}); retrying in {} ms",
            config.connect_max_attempts,
            backoff.as_millis()
        );
        tokio::select! {
            _ = shutdown.requested() => return Err(TopicInitError::Interrupted),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(config.connect_max_backoff);
    }
    Err(TopicInitError::BrokerUnreachable {
        bootstrap,
        attempts: config.connect_max_attempts,
        last_error,
    })
}

fn options() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(Timeout::After(Duration::from_secs(30))))
        .request_timeout(Some(Timeout::After(Duration::from_secs(30))))
}

/// Creates `spec`'s topic, or checks and reconciles the existing one.
pub async fn ensure_topic(admin: &Admin, spec: &TopicSpec) -> Result<TopicOutcome, TopicInitError> {
    let fail = |reason: String| TopicInitError::Topic {
        topic: spec.name.clone(),
        reason,
    };
    let retention = spec.retention_ms.to_string();
    let new_topic = NewTopic::new(
        &spec.name,
        spec.partitions,
        TopicReplication::Fixed(spec.replication_factor),
    )
    .set("retention.ms", &retention)
    .set("cleanup.policy", spec.cleanup_policy);
    let results = admin
        .create_topics(&[new_topic], &options())
        .await
        .map_err(|err| fail(format!("create request failed: {err}")))?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(TopicOutcome::Created),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => reconcile(admin, spec).await,
        Some(Err((_, code))) => Err(fail(format!("cannot be created: {code}"))),
        None => Err(fail("the broker gave no answer for it".into())),
    }
}

/// Compares an existing topic with `spec`; grows its partitions if it has fewer.
async fn reconcile(admin: &Admin, spec: &TopicSpec) -> Result<TopicOutcome, TopicInitError> {
    let fail = |reason: String| TopicInitError::Topic {
        topic: spec.name.clone(),
        reason,
    };
    let probe = admin.clone();
    let name = spec.name.clone();
    let shape = tokio::task::spawn_blocking(move || {
        let metadata = probe
            .inner()
            .fetch_metadata(Some(&name), Duration::from_secs(10))?;
        Ok::<_, KafkaError>(metadata.topics().first().map(|topic| {
            let replicas = topic
                .partitions()
                .iter()
                .map(|p| p.replicas().len())
                .max()
                .unwrap_or(0);
            (topic.partitions().len() as i32, replicas as i32)
        }))
    })
    .await
    .map_err(|err| fail(err.to_string()))?
    .map_err(|err| fail(format!("cannot read its metadata: {err}")))?;
    let Some((partitions, replicas)) = shape else {
        return Err(fail("exists but has no metadata".into()));
    };
    // A broker that does not report replicas (0) cannot be checked; it is not a mismatch.
    if replicas != 0 && replicas != spec.replication_factor {
        return Err(fail(format!(
            "exists with replication factor {replicas}, but TOPIC_REPLICATION_FACTOR={}; replication must be changed with a partition reassignment, not by this job",
            spec.replication_factor
        )));
    }
    if partitions > spec.partitions {
        return Err(fail(format!(
            "exists with {partitions} partitions, more than {}={}; partitions cannot be removed, so set {}={partitions} or recreate the topic",
            spec.partitions_variable, spec.partitions, spec.partitions_variable
        )));
    }
    check_retention(admin, spec).await?;
    if partitions < spec.partitions {
        let grow = NewPartitions::new(&spec.name, spec.partitions as usize);
        let results = admin
            .create_partitions(&[grow], &options())
            .await
            .map_err(|err| {
                fail(format!(
                    "exists with {partitions} partitions, fewer than {}={}, and could not be grown: {err}",
                    spec.partitions_variable, spec.partitions
                ))
            })?;
        return match results.into_iter().next() {
            Some(Ok(_)) => Ok(TopicOutcome::Grown {
                from: partitions,
                to: spec.partitions,
            }),
            Some(Err((_, code))) => Err(fail(format!(
                "exists with {partitions} partitions, fewer than {}={}, and the broker refused to grow it: {code}",
                spec.partitions_variable, spec.partitions
            ))),
            None => Err(fail("the broker gave no answer to growing it".into())),
        };
    }
    Ok(TopicOutcome::AlreadyAsWanted)
}

/// Compares `retention.ms`. A broker that cannot describe configs is reported, not failed:
/// the check cannot be made, which is not the same as a mismatch.
async fn check_retention(admin: &Admin, spec: &TopicSpec) -> Result<(), TopicInitError> {
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(&spec.name)], &options())
        .await;
    let (entry, policy) = match described {
        Ok(mut results) => match results.pop() {
            Some(Ok(resource)) => (
                resource
                    .get("retention.ms")
                    .and_then(|entry| entry.value.clone()),
                resource
                    .get("cleanup.policy")
                    .and_then(|entry| entry.value.clone()),
            ),
            Some(Err(err)) => {
                warn!(topic = %spec.name, error = %err, "cannot check retention.ms of the existing topic");
                return Ok(());
            }
            None => (None, None),
        },
        Err(err) => {
            warn!(topic = %spec.name, error = %err, "cannot check retention.ms of the existing topic");
            return Ok(());
        }
    };
    let policies = |text: &str| -> Vec<String> {
        let mut list: Vec<String> = text.split(',').map(|p| p.trim().to_string()).collect();
        list.sort();
        list
    };
    if let Some(actual) = &policy
        && policies(actual) != policies(spec.cleanup_policy)
    {
        return Err(TopicInitError::Topic {
            topic: spec.name.clone(),
            reason: format!(
                "exists with cleanup.policy={actual}, but it must be {}; change the topic's \
                 cleanup.policy or recreate it",
                spec.cleanup_policy
            ),
        });
    }
    match entry {
        Some(actual) if actual.trim() != spec.retention_ms.to_string() => {
            Err(TopicInitError::Topic {
                topic: spec.name.clone(),
                reason: format!(
                    "exists with retention.ms={actual}, but {}={}; change the topic's retention or the variable",
                    spec.retention_variable, spec.retention_ms
                ),
            })
        }
        Some(_) => Ok(()),
        None => {
            warn!(topic = %spec.name, "the broker did not report retention.ms; not checked");
            Ok(())
        }
    }
}
